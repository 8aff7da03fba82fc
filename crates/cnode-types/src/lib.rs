//! Plain types shared by every cnode crate: peer ids, regions and the shapes the
//! HTTP API returns. No I/O and no async runtime live here, so any crate (and
//! any other implementation reading `docs/`) can use them.

#![deny(missing_docs, unreachable_pub)]

mod api;
mod blob;
mod region;
mod scatter;
pub mod wire;

pub use api::{
    DhtValue, PeerInfo, RegistryInfo, RegistryNode, RegistryRoute, RegistryService, StatusInfo,
};
pub use blob::{BlobHash, BlobHashError};
pub use libp2p_identity::{Keypair, PeerId, PublicKey};
pub use region::{RegionId, RegionIdError};
pub use scatter::{Scatter, Scattered};

/// The cnode software version, as shown in `status` and identify.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Kademlia protocol name; our DHT is separate from the public IPFS one.
pub const KAD_PROTOCOL: &str = "/cnode/kad/1.0.0";

/// The identify protocol version string every cnode node announces.
pub const IDENTIFY_PROTOCOL: &str = "/cnode/id/1.0.0";
