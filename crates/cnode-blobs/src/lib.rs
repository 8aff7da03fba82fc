//! Content-addressed blobs for cnode, moved BitTorrent-style.
//!
//! - [`BlobStore`]: data files plus BLAKE3 outboards (`bao-tree`, 16 KiB chunk
//!   groups) on disk and metadata in SQLite; pinning, a quota, garbage
//!   collection; partial downloads that survive a crash.
//! - [`protocol`]: the `/cnode/blobs/1` messages (`Have`, `Get` → bitfield or
//!   data with proofs), size-capped and versioned.
//! - [`BlobServer`]: answers peers, with bounded upload slots.
//! - [`download`]: the swarm downloader (rarest-first, adaptive depth, endgame,
//!   bad peers dropped), over any [`PeerRequester`].
//! - [`collection`]: folders as collection blobs, with confined export paths;
//!   export by copy or by handing the store's file over ([`ExportMode`]).
//!
//! This crate does not know libp2p: `cnode-node` implements [`PeerRequester`]
//! over the network client, and tests can use anything.

#![deny(missing_docs, unreachable_pub)]

pub mod collection;
pub mod download;
pub mod protocol;
mod server;
mod store;

pub use collection::{Collection, Entry};
pub use download::{
    DownloadError, DownloadOptions, DownloadStats, PeerRequester, Progress, download, download_tree,
};
pub use server::{Answer, BlobServer};
pub use store::{
    BLOCK_SIZE, BlobError, BlobInfo, BlobKind, BlobStore, ExportMode, GcReport, ImportReport,
};
