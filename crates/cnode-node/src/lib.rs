//! The cnode composition root: it reads the configuration and data directory,
//! opens the store, starts the network, and hands out a cloneable [`Node`].
//!
//! Actors and tasks:
//! - the swarm actor (in `cnode-net`), which owns the libp2p swarm;
//! - the node's event task (here), which consumes [`cnode_net::NetEvent`]s,
//!   keeps the peer address book in the store and re-broadcasts events to
//!   in-process subscribers (bounded; slow subscribers lose old events);
//! - with a registry (a `[chain]` configured, or a snapshot from an earlier
//!   run), its follower task (in `cnode-registry`) and the bootstrap task
//!   (here, `chain`), which dials the service nodes the routing table lists
//!   for the regions this node serves;
//! - the plugin service's record fan-out and tick tasks (`plugins`), which
//!   hand new records to service plugins and run their periodic jobs.
//!
//! Shutdown order, in [`Node::shutdown`]: cancel the event task, stop the swarm
//! actor (connections close), then the store closes when the last handle drops.

#![deny(missing_docs, unreachable_pub)]

mod blobs;
mod chain;
mod config;
mod datadir;
mod node;
pub mod plugins;
mod records;

pub use blobs::{
    BlobService, MAX_DOWNLOADS, NetRequester, StartError, TransferEvent, TransferState,
};
pub use chain::{BOOTSTRAP_EVERY, MAX_BOOTSTRAP_DIALS, REDIAL_AFTER};
pub use cnode_plugins::compiler::{CompilerCommand, compile_file as compile_plugin_file};
pub use cnode_registry;
pub use config::{
    ApiSection, BlobsSection, ConfigError, ConfigFile, DEFAULT_API, DEFAULT_BLOB_QUOTA,
    DEFAULT_P2P_PORT, DhtModeSetting, NetworkSection, NodeConfig, Overrides, RelayServerSetting,
    default_listen,
};
pub use datadir::{
    API_INFO_FILE, ApiInfo, CONFIG_FILE, DataDir, InitError, InitReport, KEY_FILE, KeyError,
    TOKEN_FILE, default_data_dir, new_token,
};
pub use node::{Node, NodeBuilder, NodeError};
pub use plugins::{Origin, PluginError, PluginService, PluginView};
pub use records::{
    MAX_GOSSIP_IN_FLIGHT, Posted, RecordError, RecordMetrics, RecordService, RecordsConfig,
    RegionInfo, SyncFailure, SyncReport,
};

/// The `vector PREFIX<name> <value>` lines of `docs/protocol.md`, by name:
/// the test vectors the wire-format tests check against.
#[cfg(test)]
pub(crate) fn protocol_md_vectors(prefix: &str) -> std::collections::HashMap<String, String> {
    include_str!("../../../docs/protocol.md")
        .lines()
        .filter_map(|l| l.strip_prefix("vector "))
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}
