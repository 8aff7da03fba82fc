//! Spawn real cnode nodes in one process for tests.
//!
//! Every node listens on 127.0.0.1 with ephemeral ports, has mDNS off, gets
//! its peers' addresses passed in explicitly, runs inside its own tracing span
//! (`node{id=…}`) so multi-node logs stay readable, and is shut down cleanly by
//! [`TestNode::shutdown`]. Every wait takes a timeout: use [`timeout`] and
//! [`wait_until`] rather than bare `.await`s on network events.

#![deny(missing_docs, unreachable_pub)]

use std::{future::Future, path::PathBuf, time::Duration};

use anyhow::{Context, Result, anyhow};
use cnode_api::ApiServer;
pub use cnode_net::{Multiaddr, NetEvent, PeerId};
use cnode_node::{DataDir, Node, NodeBuilder, NodeConfig};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The default limit for one awaited network event in tests.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// Which transports a test node listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// QUIC v1 only.
    Quic,
    /// TCP only.
    Tcp,
    /// TCP only, on IPv6 (`::1`).
    Tcp6,
    /// Both.
    Both,
}

/// How to start a test node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Transports to listen on (127.0.0.1, port 0).
    pub transports: Transports,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// Start the HTTP API on 127.0.0.1:0.
    pub api: bool,
    /// Reuse this data directory (e.g. to restart a node); else a fresh temp dir.
    pub data_dir: Option<PathBuf>,
    /// Serve as a circuit relay.
    pub relay_server: cnode_net::RelayServerMode,
    /// Relays to reserve a slot on.
    pub relays: Vec<Multiaddr>,
    /// Concurrent piece uploads (default 32).
    pub upload_slots: Option<usize>,
    /// Blob storage quota (default 20 GiB).
    pub blob_quota: Option<u64>,
    /// Upload rate cap in bytes per second (default none).
    pub upload_limit: Option<u64>,
    /// Regions served from the start.
    pub regions: Vec<cnode_types::RegionId>,
    /// Take part in region gossip (default true; false = reconciliation only).
    pub record_gossip: bool,
    /// Time between reconciliations (default 2 s in tests).
    pub sync_interval: Option<std::time::Duration>,
    /// Reconcile with a region peer when it connects (default true).
    pub sync_on_connect: bool,
    /// The chain registry to follow.
    pub chain: Option<cnode_node::cnode_registry::ChainConfig>,
    /// Blob transfers on lanes beside the libp2p connection (default true).
    pub lanes: bool,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            transports: Transports::Both,
            bootstrap: Vec::new(),
            api: false,
            data_dir: None,
            relay_server: cnode_net::RelayServerMode::Off,
            relays: Vec::new(),
            upload_slots: None,
            blob_quota: None,
            upload_limit: None,
            regions: Vec::new(),
            record_gossip: true,
            chain: None,
            sync_interval: None,
            sync_on_connect: true,
            lanes: true,
        }
    }
}

/// One running node with its data directory.
pub struct TestNode {
    /// The node.
    pub node: Node,
    /// The HTTP API server, when asked for.
    pub api: Option<ApiServer>,
    /// A short name for logs (the peer id's tail).
    pub name: String,
    dir: Option<TempDir>,
    data_dir: PathBuf,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("name", &self.name)
            .finish()
    }
}

/// Installs a tracing subscriber once (respects `RUST_LOG`; default `warn`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

impl TestNode {
    /// Starts a node with `opts`.
    pub async fn spawn(opts: NodeOptions) -> Result<Self> {
        init_tracing();
        let (dir, data_dir) = match opts.data_dir {
            Some(d) => (None, d),
            None => {
                let tmp = tempfile::Builder::new().prefix("cnode-test").tempdir()?;
                let path = tmp.path().join("data");
                (Some(tmp), path)
            }
        };
        let dd = DataDir::new(&data_dir);
        if !dd.is_initialized() {
            dd.init(false).context("init data dir")?;
        }
        let mut config = NodeConfig::with_defaults(data_dir.clone());
        config.listen = listen_addrs(opts.transports);
        config.bootstrap = opts.bootstrap;
        config.mdns = false;
        config.autonat_only_global = false;
        config.lanes = opts.lanes;
        config.relay_server = opts.relay_server;
        config.relays = opts.relays;
        if let Some(n) = opts.upload_slots {
            config.upload_slots = n;
        }
        if let Some(q) = opts.blob_quota {
            config.blob_quota = q;
        }
        if let Some(r) = opts.upload_limit {
            config.max_upload_bytes_per_sec = r;
        }
        config.regions = opts.regions;
        config.record_gossip = opts.record_gossip;
        config.chain = opts.chain;
        config.sync_on_connect = opts.sync_on_connect;
        config.sync_interval = opts
            .sync_interval
            .unwrap_or(std::time::Duration::from_secs(2));
        config.api_listen = ([127, 0, 0, 1], 0).into();
        let peer = dd.load_key()?.public().to_peer_id().to_string();
        let name = peer[peer.len() - 6..].to_owned();
        let span = tracing::info_span!("node", id = %name);
        let node = NodeBuilder::new(config)
            .spawn()
            .instrument(span.clone())
            .await
            .with_context(|| format!("spawn node {name}"))?;
        let api = if opts.api {
            Some(
                cnode_api::serve(
                    node.clone(),
                    ([127, 0, 0, 1], 0).into(),
                    CancellationToken::new(),
                )
                .instrument(span)
                .await?,
            )
        } else {
            None
        };
        Ok(Self {
            node,
            api,
            name,
            dir,
            data_dir,
        })
    }

    /// Starts `n` nodes; node *i* is bootstrapped to node *i-1* only (a chain).
    pub async fn spawn_chain(n: usize, transports: Transports) -> Result<Vec<Self>> {
        let mut nodes: Vec<Self> = Vec::with_capacity(n);
        for _ in 0..n {
            let bootstrap = nodes
                .last()
                .map(|prev| vec![prev.addr(transports)])
                .unwrap_or_default();
            nodes.push(
                Self::spawn(NodeOptions {
                    transports,
                    bootstrap,
                    ..Default::default()
                })
                .await?,
            );
        }
        Ok(nodes)
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.node.peer_id()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &PathBuf {
        &self.data_dir
    }

    /// A listen address (with `/p2p/<id>`) of the given transport; `Both` prefers QUIC.
    pub fn addr(&self, transport: Transports) -> Multiaddr {
        let want_quic = !matches!(transport, Transports::Tcp | Transports::Tcp6);
        self.node
            .listen_addrs()
            .iter()
            .find(|a| (cnode_net::transport_of(a) == "quic") == want_quic)
            .or_else(|| self.node.listen_addrs().first())
            .cloned()
            .unwrap_or_else(Multiaddr::empty)
    }

    /// Waits until this node is connected to `peer`.
    pub async fn wait_connected(&self, peer: PeerId, limit: Duration) -> Result<()> {
        let net = self.node.net().clone();
        wait_until(&format!("{} connected to {peer}", self.name), limit, || {
            let net = net.clone();
            async move {
                net.peers()
                    .await
                    .map(|ps| ps.iter().any(|p| p.peer_id == peer.to_string()))
                    .unwrap_or(false)
            }
        })
        .await
    }

    /// Stops the API (if any) and the node; returns the temp dir so the data
    /// directory survives for a restart.
    pub async fn shutdown(self) -> Option<TempDir> {
        if let Some(api) = self.api {
            api.shutdown().await;
        }
        self.node.shutdown().await;
        self.dir
    }
}

fn listen_addrs(t: Transports) -> Vec<Multiaddr> {
    let quic: Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty());
    let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty());
    match t {
        Transports::Quic => vec![quic],
        Transports::Tcp => vec![tcp],
        Transports::Tcp6 => vec![
            "/ip6/::1/tcp/0"
                .parse()
                .unwrap_or_else(|_| Multiaddr::empty()),
        ],
        Transports::Both => vec![quic, tcp],
    }
}

/// Awaits `fut`, failing with a message naming `what` after `limit`.
pub async fn timeout<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `check` every 50 ms until it returns true, failing after `limit`.
pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    timeout(what, limit, async {
        loop {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Shuts every node down.
pub async fn shutdown_all(nodes: Vec<TestNode>) {
    for n in nodes {
        n.shutdown().await;
    }
}
