//! Regional records: one piece of a region's information (an event, a
//! listing, a notice), signed by its author and encoded canonically.
//!
//! - [`record`]: the [`Record`] format, its canonical DAG-CBOR encoding, the
//!   record id (`BLAKE3` of that encoding) and the versioned proof.
//! - [`validate`] and [`schema`]: the rules a record must pass before it is
//!   stored or forwarded.
//! - [`merge`]: the CRDT merge rule per slot.
//! - [`store`] and [`geo`]: the SQLite store, text search and geohash queries.
//! - [`sync`]: range-based set reconciliation (negentropy) of a region's
//!   records.

pub mod geo;
pub mod merge;
pub mod record;
pub mod schema;
pub mod store;
pub mod sync;
pub mod validate;

pub use record::{DecodeError, Proof, Record, RecordId, UnsignedRecord};
pub use store::now_ms;
