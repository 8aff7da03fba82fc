//! Regional records: one piece of a region's information (an event, a
//! listing, a notice), signed by its author and encoded canonically.
//!
//! - [`record`]: the [`Record`] format, its canonical DAG-CBOR encoding, the
//!   record id (`BLAKE3` of that encoding) and the versioned proof.

pub mod record;

pub use record::{DecodeError, Proof, Record, RecordId, UnsignedRecord};
