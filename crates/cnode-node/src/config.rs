//! Configuration: `config.toml` in the data directory, `CNODE_*` environment
//! variables and command-line flags, in that order of precedence (lowest
//! first). This module reads the file and applies [`Overrides`]; the CLI fills
//! the overrides from the environment and flags (clap does flag > env).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use cnode_net::{DhtMode, Multiaddr, NetLimits, RelayServerMode};
use serde::{Deserialize, Serialize};

/// The default p2p port, for QUIC and TCP.
pub const DEFAULT_P2P_PORT: u16 = 4040;
/// The default HTTP API address.
pub const DEFAULT_API: &str = "127.0.0.1:7700";

/// `config.toml` as written on disk. Unknown keys are an error, so a typo is
/// caught instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// The `[network]` table.
    pub network: NetworkSection,
    /// The `[api]` table.
    pub api: ApiSection,
    /// The `[blobs]` table.
    pub blobs: BlobsSection,
    /// The `[records]` table.
    pub records: RecordsSection,
    /// The `[plugins]` table.
    pub plugins: PluginsSection,
    /// The `[chain]` table: the registry to follow (none: the node runs on
    /// its last registry snapshot, if any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<cnode_registry::ChainConfig>,
}

/// The `[records]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsSection {
    /// Regions (4-character geohashes) served from the start.
    pub regions: Vec<cnode_types::RegionId>,
    /// Seconds between reconciliations with peers of each region.
    pub sync_interval_secs: u64,
    /// Reconcile with a peer of the region soon after it connects, and with
    /// the region's peers right after joining it.
    pub sync_on_connect: bool,
    /// Receive and forward new records by gossip (off: reconciliation only).
    pub gossip: bool,
}

impl Default for RecordsSection {
    fn default() -> Self {
        Self {
            regions: Vec::new(),
            sync_interval_secs: 30,
            sync_on_connect: true,
            gossip: true,
        }
    }
}

/// The `[plugins]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsSection {
    /// Seconds without a call after which a plugin's compiled code is
    /// unmapped (mapped again on its next call); 0 = never.
    pub idle_unload_secs: u64,
}

impl Default for PluginsSection {
    fn default() -> Self {
        Self {
            idle_unload_secs: 300,
        }
    }
}

/// The `[blobs]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsSection {
    /// Most bytes of blobs kept (complete and partial).
    pub quota_bytes: u64,
    /// Most pieces served to peers at once; over it peers are told "busy".
    pub upload_slots: usize,
    /// Upload rate cap in bytes per second (0 = none).
    pub max_upload_bytes_per_sec: u64,
}

impl Default for BlobsSection {
    fn default() -> Self {
        Self {
            quota_bytes: DEFAULT_BLOB_QUOTA,
            upload_slots: 8,
            max_upload_bytes_per_sec: 0,
        }
    }
}

/// The default blob storage quota: 20 GiB.
pub const DEFAULT_BLOB_QUOTA: u64 = 20 * 1024 * 1024 * 1024;

/// The `[network]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkSection {
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Peers to connect to at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Local discovery by mDNS.
    pub mdns: bool,
    /// `auto`, `on` or `off`.
    pub relay_server: RelayServerSetting,
    /// Relays to reserve a slot on when this node is behind a NAT.
    pub relays: Vec<Multiaddr>,
    /// Addresses to announce as reachable (a VPS's public address).
    pub external: Vec<Multiaddr>,
    /// `server`, `client` or `auto`.
    pub dht_mode: DhtModeSetting,
    /// Most established connections.
    pub max_connections: u32,
    /// Most established connections per peer.
    pub max_connections_per_peer: u32,
    /// Stop re-dialling known peers once this many are connected.
    pub target_peers: usize,
    /// Close connections idle for this many seconds.
    pub idle_timeout_secs: u64,
    /// Blob pieces on lanes: TCP + TLS connections of their own beside the
    /// libp2p connection, on a second, OS-chosen port (see docs/protocol.md).
    pub lanes: bool,
    /// The lane port; 0 lets the OS choose (set one to open it in a firewall).
    pub lane_port: u16,
}

impl Default for NetworkSection {
    fn default() -> Self {
        let limits = NetLimits::default();
        Self {
            listen: default_listen(),
            bootstrap: Vec::new(),
            mdns: true,
            relay_server: RelayServerSetting::Auto,
            relays: Vec::new(),
            external: Vec::new(),
            dht_mode: DhtModeSetting::Server,
            max_connections: limits.max_connections,
            max_connections_per_peer: limits.max_connections_per_peer,
            target_peers: limits.target_peers,
            idle_timeout_secs: limits.idle_timeout.as_secs(),
            lanes: true,
            lane_port: 0,
        }
    }
}

/// The `[api]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
}

impl Default for ApiSection {
    fn default() -> Self {
        Self {
            listen: default_api(),
        }
    }
}

/// Relay server setting as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RelayServerSetting {
    /// On once AutoNAT says the node is public.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Never.
    Off,
}

/// DHT mode as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DhtModeSetting {
    /// Answer queries.
    #[default]
    Server,
    /// Only ask.
    Client,
    /// Decide from confirmed external addresses.
    Auto,
}

/// QUIC and TCP on all interfaces, port 4040.
pub fn default_listen() -> Vec<Multiaddr> {
    [
        format!("/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1"),
        format!("/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}"),
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

fn default_api() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7700))
}

/// Settings from the environment and flags; `None` / empty means "not given".
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `CNODE_LISTEN`.
    pub listen: Vec<Multiaddr>,
    /// `--api` / `CNODE_API`.
    pub api: Option<SocketAddr>,
    /// `--bootstrap` / `CNODE_BOOTSTRAP` (added to the file's list).
    pub bootstrap: Vec<Multiaddr>,
    /// `--no-mdns` / `CNODE_NO_MDNS`.
    pub no_mdns: bool,
    /// `--relay` (added to the file's list).
    pub relays: Vec<Multiaddr>,
    /// `--relay-server`.
    pub relay_server: Option<RelayServerSetting>,
    /// `--external` (added to the file's list).
    pub external: Vec<Multiaddr>,
}

/// Reading `config.toml` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown / mistyped keys.
    #[error("{path} is not a valid cnode config: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where, on one line.
        message: String,
    },
}

impl ConfigFile {
    /// Reads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is one line with the position.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}: {msg}")
                }
                None => msg,
            }
        })
    }

    /// The text written by `cnode init`: every default, commented.
    pub fn default_text() -> String {
        format!(
            "# Community Node configuration. Environment variables (CNODE_*) and flags\n\
             # override these values. See `cnode run --help`.\n\n\
             [network]\n\
             # Where to accept peer connections (QUIC and TCP). Port 0 = ephemeral.\n\
             listen = [\"/ip4/0.0.0.0/udp/{DEFAULT_P2P_PORT}/quic-v1\", \"/ip4/0.0.0.0/tcp/{DEFAULT_P2P_PORT}\"]\n\
             # Peers to connect to at start, e.g. \"/ip4/203.0.113.7/udp/4040/quic-v1/p2p/12D3Koo...\".\n\
             bootstrap = []\n\
             # Find peers on the local network.\n\
             mdns = true\n\
             # Relay circuits for NATed peers: \"auto\" (when publicly reachable), \"on\", \"off\".\n\
             relay_server = \"auto\"\n\
             # Relays to reserve a slot on when this node is behind a NAT.\n\
             relays = []\n\
             # Addresses to announce as reachable, e.g. a VPS's public \"/ip4/203.0.113.7/udp/4040/quic-v1\".\n\
             external = []\n\
             # DHT mode: \"server\", \"client\" or \"auto\".\n\
             dht_mode = \"server\"\n\
             max_connections = 256\n\
             max_connections_per_peer = 4\n\
             target_peers = 25\n\
             idle_timeout_secs = 3600\n\
             # Blob transfers on \"lanes\": TCP + TLS connections of their own beside the\n\
             # peer connection, on a second port the OS chooses (faster; peers without\n\
             # lanes are asked the usual way).\n\
             lanes = true\n\
             # Their port; 0 lets the OS choose. Set one to open it in a firewall.\n\
             lane_port = 0\n\n\
             [blobs]\n\
             # Most bytes of blobs kept, complete and partial (20 GiB).\n\
             quota_bytes = {DEFAULT_BLOB_QUOTA}\n\
             # Pieces served to peers at once; over it they are told \"busy\" and ask others.\n\
             upload_slots = 8\n\
             # Upload rate cap in bytes per second; 0 = none.\n\
             max_upload_bytes_per_sec = 0\n\n\
             [records]\n\
             # Regions served (4-character geohashes), e.g. [\"w5q6\"] for Chiang Mai;\n\
             # `cnode region join` adds more at run time.\n\
             regions = []\n\
             # Seconds between reconciliations with other nodes of each region.\n\
             sync_interval_secs = 30\n\
             # Also reconcile with a region peer as soon as it connects (and after a join).\n\
             sync_on_connect = true\n\
             gossip = true\n\n\
             [plugins]\n\
             # Unmap the compiled code of a plugin not called for this long (it comes back\n\
             # on its next call, in milliseconds); 0 = keep every plugin mapped.\n\
             idle_unload_secs = 300\n\n\
             # The on-chain registry (routing table, API list) to follow; without it the\n\
             # node uses its last registry snapshot. `cnode devnet` writes this for a local chain.\n\
             # [chain]\n\
             # rpc_url = \"http://127.0.0.1:8545\"\n\
             # registry_address = \"0x...\"\n\
             # chain_id = 31337\n\
             # confirmations = 2\n\n\
             [api]\n\
             # The local HTTP API. Keep it on 127.0.0.1: it controls the node.\n\
             listen = \"{DEFAULT_API}\"\n"
        )
    }
}

/// The fully resolved settings a node runs with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS on or off.
    pub mdns: bool,
    /// Relay server mode.
    pub relay_server: RelayServerMode,
    /// Relays to reserve a slot on.
    pub relays: Vec<Multiaddr>,
    /// Addresses announced as reachable.
    pub external: Vec<Multiaddr>,
    /// DHT mode.
    pub dht_mode: DhtMode,
    /// AutoNAT counts only global addresses (off for tests on private networks).
    pub autonat_only_global: bool,
    /// Blob pieces on lanes beside the libp2p connection.
    pub lanes: bool,
    /// The lane port (0: the OS chooses).
    pub lane_port: u16,
    /// Network limits.
    pub limits: NetLimits,
    /// The HTTP API address.
    pub api_listen: SocketAddr,
    /// Blob storage quota in bytes.
    pub blob_quota: u64,
    /// Concurrent piece uploads.
    pub upload_slots: usize,
    /// Upload rate cap (bytes per second, 0 = none).
    pub max_upload_bytes_per_sec: u64,
    /// Regions served from the start.
    pub regions: Vec<cnode_types::RegionId>,
    /// Time between reconciliations with each region's peers.
    pub sync_interval: std::time::Duration,
    /// Reconcile with a region peer soon after it connects.
    pub sync_on_connect: bool,
    /// Take part in the regions' gossip.
    pub record_gossip: bool,
    /// The registry to follow.
    pub chain: Option<cnode_registry::ChainConfig>,
    /// Unmap an idle plugin's compiled code after this long (`None`: never).
    pub plugin_idle_unload: Option<std::time::Duration>,
    /// Compile plugins in a child process with this command (the `cnode`
    /// binary sets its own hidden `__compile-plugin`); `None`: in-process.
    pub plugin_compiler: Option<cnode_plugins::CompilerCommand>,
}

impl NodeConfig {
    /// Applies `overrides` on top of `file` for the data directory `data_dir`.
    pub fn resolve(data_dir: PathBuf, file: ConfigFile, overrides: Overrides) -> Self {
        let net = file.network;
        let limits = NetLimits {
            max_connections: net.max_connections,
            max_connections_per_peer: net.max_connections_per_peer,
            target_peers: net.target_peers,
            idle_timeout: std::time::Duration::from_secs(net.idle_timeout_secs),
            ..NetLimits::default()
        };
        let mut bootstrap = net.bootstrap;
        bootstrap.extend(overrides.bootstrap);
        let mut relays = net.relays;
        relays.extend(overrides.relays);
        let mut external = net.external;
        external.extend(overrides.external);
        let relay_server = match overrides.relay_server.unwrap_or(net.relay_server) {
            RelayServerSetting::Auto => RelayServerMode::Auto,
            RelayServerSetting::On => RelayServerMode::On,
            RelayServerSetting::Off => RelayServerMode::Off,
        };
        Self {
            data_dir,
            listen: if overrides.listen.is_empty() {
                net.listen
            } else {
                overrides.listen
            },
            bootstrap,
            mdns: net.mdns && !overrides.no_mdns,
            relay_server,
            relays,
            external,
            dht_mode: match net.dht_mode {
                DhtModeSetting::Server => DhtMode::Server,
                DhtModeSetting::Client => DhtMode::Client,
                DhtModeSetting::Auto => DhtMode::Auto,
            },
            autonat_only_global: true,
            lanes: net.lanes,
            lane_port: net.lane_port,
            limits,
            api_listen: overrides.api.unwrap_or(file.api.listen),
            blob_quota: file.blobs.quota_bytes,
            upload_slots: file.blobs.upload_slots,
            max_upload_bytes_per_sec: file.blobs.max_upload_bytes_per_sec,
            regions: file.records.regions,
            sync_interval: std::time::Duration::from_secs(file.records.sync_interval_secs.max(1)),
            sync_on_connect: file.records.sync_on_connect,
            record_gossip: file.records.gossip,
            chain: file.chain,
            plugin_idle_unload: (file.plugins.idle_unload_secs > 0)
                .then(|| std::time::Duration::from_secs(file.plugins.idle_unload_secs)),
            plugin_compiler: None,
        }
    }

    /// Defaults for `data_dir`, with nothing read from disk.
    pub fn with_defaults(data_dir: PathBuf) -> Self {
        Self::resolve(data_dir, ConfigFile::default(), Overrides::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_text_parses_to_defaults() {
        let parsed = ConfigFile::parse(&ConfigFile::default_text()).unwrap();
        assert_eq!(parsed, ConfigFile::default());
    }

    #[test]
    fn errors_name_the_line() {
        let err = ConfigFile::parse("[network]\nmdns = true\nlisten = 7\n").unwrap_err();
        assert!(err.starts_with("line 3:"), "{err}");
        let err = ConfigFile::parse("[network]\nmnds = true\n").unwrap_err();
        assert!(err.contains("mnds"), "{err}");
        let err = ConfigFile::parse("[network\n").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        let err = ConfigFile::parse("[network]\nlisten = [\"not an addr\"]\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn precedence_file_then_overrides() {
        let file = ConfigFile::parse(
            "[network]\nmdns = true\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n[api]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let cfg = NodeConfig::resolve("/d".into(), file.clone(), Overrides::default());
        assert_eq!(cfg.api_listen.port(), 9000);
        assert!(cfg.mdns);
        assert_eq!(cfg.listen, default_listen());
        let cfg = NodeConfig::resolve(
            "/d".into(),
            file,
            Overrides {
                api: Some("127.0.0.1:9001".parse().unwrap()),
                no_mdns: true,
                listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
                bootstrap: vec!["/ip4/127.0.0.1/tcp/2".parse().unwrap()],
                ..Default::default()
            },
        );
        assert_eq!(cfg.api_listen.port(), 9001);
        assert!(!cfg.mdns);
        assert_eq!(cfg.listen.len(), 1);
        assert_eq!(cfg.bootstrap.len(), 2);
    }
}
