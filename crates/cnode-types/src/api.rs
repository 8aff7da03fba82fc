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
    /// The data directory.
    pub data_dir: String,
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
