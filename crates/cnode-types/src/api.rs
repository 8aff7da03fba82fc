//! The shapes the HTTP API returns, shared by the server and the CLI client.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What `GET /v1/status` returns: who this node is and how it is connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusInfo {
    /// This node's libp2p peer id.
    pub peer_id: String,
    /// The addresses the node is actually listening on, each ending in `/p2p/<peer_id>`.
    pub listen_addrs: Vec<String>,
    /// Addresses other peers have confirmed they can reach us at.
    pub external_addrs: Vec<String>,
    /// How many peers are connected right now.
    pub connected_peers: usize,
    /// The HTTP API address (`host:port`).
    pub api: String,
    /// The cnode version.
    pub version: String,
    /// Reachability as AutoNAT sees it: `unknown`, `public` or `private`.
    pub nat_status: String,
    /// Whether this node currently serves as a circuit relay for others.
    pub relay_server: bool,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// The TCP port lanes listen on (blob transfers beside the peer
    /// connection); none when lanes are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lane_port: Option<u16>,
    /// The data directory.
    pub data_dir: String,
    /// The chain registry, when one is configured or a snapshot exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryInfo>,
}

/// Where the node's registry view comes from (`GET /v1/registry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryInfo {
    /// The chain id followed (or the snapshot's).
    pub chain_id: u64,
    /// The registry contract, `0x…`.
    pub contract: String,
    /// The chain's latest block, as last seen.
    pub head_block: Option<u64>,
    /// The last block whose events the snapshot holds.
    pub applied_block: Option<u64>,
    /// Blocks the snapshot is behind the head (includes the confirmations).
    pub lag: Option<u64>,
    /// `live` (the last poll succeeded) or `snapshot` (serving the last
    /// persisted snapshot: the RPC is unreachable, invalid or not configured).
    pub source: String,
    /// The last error, until a poll succeeds.
    pub last_error: Option<String>,
    /// JSON-RPC calls made since start.
    pub rpc_calls: u64,
    /// Registered nodes in the snapshot (active and unbonding).
    pub nodes: usize,
    /// Regions with a route.
    pub routes: usize,
    /// Services in the API list.
    pub services: usize,
}

/// A registered node (`GET /v1/registry/nodes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryNode {
    /// The operator's address, `0x…` (the node's key in the registry).
    pub operator: String,
    /// `active` or `unbonding`.
    pub status: String,
    /// Stake in wei (decimal).
    pub stake_wei: String,
    /// Unix seconds when unbonding ends; 0 unless unbonding.
    pub unbonding_ends: u64,
    /// Latest accepted credit score (0..=1,000,000).
    pub credit: u64,
    /// The epoch of that score.
    pub credit_epoch: u64,
    /// The libp2p peer id, or `None` if the registered bytes are not one.
    pub peer_id: Option<String>,
    /// Registered multiaddrs.
    pub multiaddrs: Vec<String>,
    /// Regions served.
    pub regions: Vec<String>,
}

/// One region's route: its service nodes in the stewards' order
/// (`GET /v1/registry/routes`; active nodes only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryRoute {
    /// The region (4-character geohash).
    pub region: String,
    /// Its service nodes, in order.
    pub nodes: Vec<RegistryNode>,
}

/// A service in the API list (`GET /v1/registry/services`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryService {
    /// `keccak256(id "@" version)`, `0x…`.
    pub key: String,
    /// Reverse-domain id.
    pub id: String,
    /// Version.
    pub version: String,
    /// BLAKE3 root of the package blob, hex.
    pub package_hash: String,
    /// BLAKE3 of the manifest, hex.
    pub manifest_hash: String,
    /// The publisher's address.
    pub publisher: String,
    /// `proposed`, `approved` or `revoked`.
    pub status: String,
}

/// One connected peer, as `GET /v1/peers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PeerInfo {
    /// The peer's id.
    pub peer_id: String,
    /// The remote addresses of our open connections to it.
    pub addrs: Vec<String>,
    /// The transport of the first connection: `quic`, `tcp`, `relay` or `other`.
    pub transport: String,
    /// Whether we dialled it (`outbound`) or it dialled us (`inbound`).
    pub direction: String,
    /// The last ping round-trip time in milliseconds, once measured.
    pub latency_ms: Option<f64>,
    /// The peer's software, from identify (e.g. `cnode/0.1.0`).
    pub agent: Option<String>,
    /// The protocols the peer supports, from identify.
    pub protocols: Vec<String>,
}

/// A DHT value as `GET /v1/dht/{key}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DhtValue {
    /// The key, as given.
    pub key: String,
    /// The value, as UTF-8 text when it is valid UTF-8, else lossy.
    pub value: String,
    /// The peer that published the record, when known.
    pub publisher: Option<String>,
}
