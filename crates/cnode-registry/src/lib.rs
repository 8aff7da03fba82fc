//! The chain registry client: which nodes exist, which nodes serve each
//! region, their credit, the API list and the stewards — read from the
//! `ICnodeRegistry` contract (`contracts/src/ICnodeRegistry.sol`) over
//! JSON-RPC with `alloy`, kept in a local snapshot.
//!
//! - [`Registry`]: the read interface the node uses; answers come from the
//!   snapshot and never wait for the chain. [`RegistryHandle`] implements it
//!   for a live follower, [`StaticRegistry`] for a fixed snapshot.
//! - [`RegistryService::spawn`]: opens `registry.sqlite` in the data
//!   directory and starts the follower task for a [`ChainConfig`].
//! - [`Writer`]: sends transactions signed with a local key (register,
//!   stake, routes, credit, services, m-of-n proposals, deploy).
//! - [`bindings`]: the `sol!` bindings of the interface.
//!
//! Actors: one follower task per [`RegistryService::spawn`]. It owns the RPC
//! client, the snapshot database (one SQLite connection, used on the
//! blocking pool) and the event history; it publishes each new snapshot and
//! status on `watch` channels, which the cloneable [`RegistryHandle`] reads.
//! Nothing else writes the snapshot.
//!
//! The state is event-sourced: the follower applies the contract's events
//! once they have `confirmations` blocks on top, keeps the events and block
//! hashes of the last [`HISTORY_BLOCKS`] blocks, and on a reorg drops the
//! orphaned blocks' events and re-derives the state.
//!
//! TLS: the default build speaks plain `http://` only (enough for a local
//! node or devnet). The `https` feature adds rustls with the *ring* provider
//! and the platform's roots, so no aws-lc C build is needed; see
//! `install_tls_provider` for the one thing a binary must then do.

#![deny(missing_docs, unreachable_pub)]

pub mod artifact;
pub mod bindings;
mod config;
mod db;
pub mod devnet;
mod follower;
#[cfg(feature = "https")]
mod https;
mod registry;
mod revert;
mod rpc;
mod service;
mod state;
mod types;
mod writer;

pub use alloy::{
    primitives::{Address, B256, Bytes, U256},
    signers::local::PrivateKeySigner,
};
pub use config::ChainConfig;
pub use db::{SNAPSHOT_FILE, SnapshotError};
pub use follower::FollowError;
#[cfg(feature = "https")]
pub use https::install_tls_provider;
pub use registry::{Registry, StaticRegistry};
pub use revert::Revert;
pub use rpc::RpcError;
pub use service::{ChainInfo, RegistryHandle, RegistryService, SpawnError, check_chain};
pub use state::{HISTORY_BLOCKS, Snapshot};
pub use types::{
    Credit, Node, NodeStatus, Params, Proposal, ProposalAction, RegistryStatus, Service,
    ServiceStatus, Source, Stewards,
};
pub use writer::{
    RECEIPT_TIMEOUT, TxError, TxOutcome, WRITER_RPC_TIMEOUT, Writer, pack as pack_region,
    service_key,
};
