//! What the network needs to start.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId, identity::Keypair};

/// Whether this node relays circuits for peers that cannot be reached directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayServerMode {
    /// Relay once AutoNAT says this node is publicly reachable.
    #[default]
    Auto,
    /// Always relay (e.g. a VPS the operator dedicates to it).
    On,
    /// Never relay.
    Off,
}

/// Kademlia mode: servers answer DHT queries, clients only ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhtMode {
    /// Answer queries: every cnode node is client and server at once.
    #[default]
    Server,
    /// Only ask (e.g. a phone on metered data).
    Client,
    /// Let libp2p decide from confirmed external addresses.
    Auto,
}

/// Resource limits for the swarm.
#[derive(Debug, Clone)]
pub struct NetLimits {
    /// Most established connections, in and out together.
    pub max_connections: u32,
    /// Most established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Most connections being set up at once, per direction.
    pub max_pending: u32,
    /// Refuse new connections when the process uses more than this fraction of system memory.
    pub max_memory_fraction: f64,
    /// Close a connection after this long without use.
    pub idle_timeout: Duration,
    /// Most known peers kept for re-dialling.
    pub max_known_peers: usize,
    /// Stop re-dialling known peers once this many peers are connected.
    pub target_peers: usize,
    /// The largest gossipsub message accepted or sent.
    pub max_gossip_bytes: usize,
    /// The largest DHT record value accepted.
    pub max_dht_value_bytes: usize,
    /// The largest `/cnode/blobs/1` request accepted.
    pub max_blob_request: usize,
    /// The largest `/cnode/blobs/1` response accepted.
    pub max_blob_response: usize,
    /// The largest `/cnode/sync/1` request accepted.
    pub max_sync_request: usize,
    /// The largest `/cnode/sync/1` response accepted.
    pub max_sync_response: usize,
    /// The largest `/cnode/rpc/1` request accepted (a forwarded service
    /// call: up to 1 MiB of body plus its header).
    pub max_rpc_request: usize,
    /// The largest `/cnode/rpc/1` response accepted (up to 4 MiB of body
    /// plus its header).
    pub max_rpc_response: usize,
    /// Inbound requests waiting for the node to answer; more are refused.
    pub max_pending_inbound: usize,
}

impl Default for NetLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 4,
            max_pending: 64,
            max_memory_fraction: 0.9,
            idle_timeout: Duration::from_secs(3600),
            max_known_peers: 256,
            target_peers: 25,
            max_gossip_bytes: 256 * 1024,
            max_dht_value_bytes: 64 * 1024,
            max_blob_request: 4096,
            max_blob_response: 5 * 1024 * 1024,
            max_sync_request: 8 * 1024 * 1024 + 4096,
            max_sync_response: 8 * 1024 * 1024 + 512 * 1024,
            max_rpc_request: 1024 * 1024 + 64 * 1024,
            max_rpc_response: 4 * 1024 * 1024 + 64 * 1024,
            max_pending_inbound: 256,
        }
    }
}

/// Everything [`crate::spawn`] needs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node key; the peer id derives from it.
    pub keypair: Keypair,
    /// Addresses to listen on (QUIC and/or TCP); port 0 means ephemeral.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and re-dial with backoff; `/p2p/<id>` is optional.
    pub bootstrap: Vec<Multiaddr>,
    /// Peers remembered from earlier runs (the address book).
    pub known_peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Discover peers on the local network by mDNS.
    pub mdns: bool,
    /// Whether to serve as a circuit relay.
    pub relay_server: RelayServerMode,
    /// Relays (`/…/p2p/<relay>`) to reserve a slot on, so that peers can reach
    /// this node through them when it is behind a NAT.
    pub relays: Vec<Multiaddr>,
    /// Addresses to announce as reachable (e.g. a VPS's public address).
    /// With none, a node in relay mode `On` announces its listen addresses.
    pub external_addrs: Vec<Multiaddr>,
    /// Kademlia mode.
    pub dht_mode: DhtMode,
    /// AutoNAT: only count global IP addresses (off in tests on private networks).
    pub autonat_only_global: bool,
    /// Blob pieces on lanes, TCP + TLS connections of their own beside the
    /// libp2p connection (faster: no multiplexer in the way). Off: this node
    /// neither listens for nor opens lanes, and peers ask it the usual way.
    pub lanes: bool,
    /// The lane port (0: the OS chooses); set it to open it in a firewall.
    pub lane_port: u16,
    /// Resource limits.
    pub limits: NetLimits,
}

impl NetConfig {
    /// A configuration with defaults and the given key.
    pub fn new(keypair: Keypair) -> Self {
        Self {
            keypair,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            known_peers: Vec::new(),
            mdns: true,
            relay_server: RelayServerMode::default(),
            relays: Vec::new(),
            external_addrs: Vec::new(),
            dht_mode: DhtMode::default(),
            autonat_only_global: true,
            lanes: true,
            lane_port: 0,
            limits: NetLimits::default(),
        }
    }
}
