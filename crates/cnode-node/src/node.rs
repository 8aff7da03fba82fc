//! [`NodeBuilder`] -> [`Node`]: one running node.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock},
    time::Instant,
};

use cnode_net::{Keypair, Multiaddr, NetClient, NetConfig, NetEvent, NetHandle, PeerId};
use cnode_store::Store;
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tokio::{sync::broadcast, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::{DataDir, KeyError, NodeConfig};

/// How many known peers are loaded from the address book at start.
const KNOWN_PEERS_AT_START: usize = 64;
/// Requests from peers answered at once.
const MAX_INBOUND_TASKS: usize = 64;
/// Blobs announced in the DHT at start (Kademlia re-publishes them later).
const ANNOUNCE_AT_START: usize = 1000;
/// Capacity of the in-process event broadcast.
const EVENT_BROADCAST_CAPACITY: usize = 1024;

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The node key could not be read.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The database could not be opened.
    #[error(transparent)]
    Store(#[from] cnode_store::OpenError),
    /// The network could not start.
    #[error(transparent)]
    Net(#[from] cnode_net::SpawnError),
    /// The blob store could not open.
    #[error(transparent)]
    Blobs(#[from] cnode_blobs::BlobError),
    /// The registry snapshot could not be opened or the `[chain]` settings
    /// are unusable (an unreachable RPC is not an error: the node serves the
    /// snapshot and retries).
    #[error("registry: {0}")]
    Registry(#[from] cnode_registry::SpawnError),
    /// The plugin host could not start (installed plugins that fail to load
    /// are reported, not fatal).
    #[error("plugins: {0}")]
    Plugins(#[from] cnode_plugins::HostInitError),
}

/// Builds a [`Node`] from a [`NodeConfig`].
#[derive(Debug)]
pub struct NodeBuilder {
    config: NodeConfig,
    keypair: Option<Keypair>,
}

impl NodeBuilder {
    /// A builder for `config`; the key is read from the data directory unless
    /// [`NodeBuilder::keypair`] gives one.
    pub fn new(config: NodeConfig) -> Self {
        Self {
            config,
            keypair: None,
        }
    }

    /// Uses this key instead of the data directory's `node.key` (tests).
    pub fn keypair(mut self, keypair: Keypair) -> Self {
        self.keypair = Some(keypair);
        self
    }

    /// Opens the store, starts the network and the event task.
    pub async fn spawn(self) -> Result<Node, NodeError> {
        let started = Instant::now();
        let data_dir = DataDir::new(&self.config.data_dir);
        let keypair = match self.keypair {
            Some(k) => k,
            None => data_dir.load_key()?,
        };
        let store = Store::open(data_dir.root())?;

        let known_peers = match store.known_peers(KNOWN_PEERS_AT_START).await {
            Ok(peers) => peers
                .into_iter()
                .filter_map(|p| {
                    let id: PeerId = p.peer_id.parse().ok()?;
                    let addrs: Vec<Multiaddr> =
                        p.addrs.iter().filter_map(|a| a.parse().ok()).collect();
                    Some((id, addrs))
                })
                .collect(),
            Err(e) => {
                warn!("cannot read the address book: {e}");
                Vec::new()
            }
        };

        let mut registry = Registry::default();
        let cancel = CancellationToken::new();
        let mut net_config = NetConfig::new(keypair);
        net_config.listen = self.config.listen.clone();
        net_config.bootstrap = self.config.bootstrap.clone();
        net_config.known_peers = known_peers;
        net_config.mdns = self.config.mdns;
        net_config.relay_server = self.config.relay_server;
        net_config.relays = self.config.relays.clone();
        net_config.external_addrs = self.config.external.clone();
        net_config.dht_mode = self.config.dht_mode;
        net_config.autonat_only_global = self.config.autonat_only_global;
        net_config.lanes = self.config.lanes;
        net_config.lane_port = self.config.lane_port;
        net_config.limits = self.config.limits.clone();
        let spawned = cnode_net::spawn(net_config, &mut registry, cancel.child_token()).await?;

        let blob_store = cnode_blobs::BlobStore::open(
            data_dir.path("blobs"),
            store.clone(),
            self.config.blob_quota,
        )
        .await?;
        let blob_server =
            cnode_blobs::BlobServer::new(blob_store.clone(), self.config.upload_slots)
                .with_upload_limit(self.config.max_upload_bytes_per_sec);
        let blobs = crate::BlobService::new(blob_store, spawned.client.clone());
        let records = crate::RecordService::new(
            store.clone(),
            spawned.client.clone(),
            crate::RecordsConfig {
                regions: self.config.regions.clone(),
                gossip: self.config.record_gossip,
                sync_interval: self.config.sync_interval,
                sync_on_connect: self.config.sync_on_connect,
                regions_file: data_dir.path("regions"),
            },
            registry.sub_registry_with_prefix("cnode"),
        );
        records.start(cancel.child_token()).await;
        let chain = crate::chain::open(
            self.config.chain.as_ref(),
            data_dir.root(),
            cancel.child_token(),
        )?;
        let mut tasks = Vec::new();
        if let Some(chain) = &chain {
            tasks.push(tokio::spawn(
                crate::chain::bootstrap_task(
                    chain.clone(),
                    spawned.client.clone(),
                    records.clone(),
                    cancel.child_token(),
                )
                .in_current_span(),
            ));
        }
        let mut host_config = cnode_plugins::HostConfig::new(data_dir.root());
        host_config.idle_unload = self.config.plugin_idle_unload;
        host_config.compiler = self.config.plugin_compiler.clone();
        let plugins =
            crate::PluginService::with_config(host_config, records.clone(), blobs.clone())?;
        plugins.load_installed().await;
        tasks.extend(plugins.start(records.subscribe(), cancel.child_token()));
        let services = crate::plugins::rpc::ServiceRouter::new(
            plugins.clone(),
            spawned.client.clone(),
            crate::plugins::rpc::RpcConfig::default(),
            registry.sub_registry_with_prefix("cnode"),
        );
        tasks.push(services.start(cancel.child_token()));
        let inbound_task = tokio::spawn(
            inbound_task(
                spawned.inbound,
                spawned.client.clone(),
                blob_server,
                records.clone(),
                services.clone(),
                cancel.child_token(),
            )
            .in_current_span(),
        );
        {
            let blobs = blobs.clone();
            tokio::spawn(
                async move {
                    blobs.announce_all(ANNOUNCE_AT_START).await;
                    blobs.resume_partials().await;
                }
                .in_current_span(),
            );
        }

        let metrics = NodeMetrics::default();
        let ours = registry.sub_registry_with_prefix("cnode");
        ours.register(
            "address_book_writes",
            "Peer address book updates",
            metrics.address_book_writes.clone(),
        );
        ours.register(
            "api_requests",
            "HTTP API requests served",
            metrics.api_requests.clone(),
        );
        ours.register(
            "uptime_seconds",
            "Seconds since the node started",
            metrics.uptime_seconds.clone(),
        );

        let (events_tx, _) = broadcast::channel(EVENT_BROADCAST_CAPACITY);
        let event_task = tokio::spawn(
            event_task(
                spawned.events,
                store.clone(),
                records.clone(),
                events_tx.clone(),
                metrics.clone(),
                cancel.child_token(),
            )
            .in_current_span(),
        );
        let peer_id = spawned.client.local_peer_id();
        info!(%peer_id, elapsed_ms = started.elapsed().as_millis() as u64, "node started");
        Ok(Node {
            inner: Arc::new(Inner {
                net: spawned.client,
                store,
                data_dir,
                config: self.config,
                registry,
                metrics,
                events: events_tx,
                started,
                listen_addrs: spawned.listen_addrs,
                api_addr: OnceLock::new(),
                cancel,
                blobs,
                records,
                plugins,
                services,
                chain,
                tasks: Mutex::new(Some((spawned.handle, {
                    tasks.extend([event_task, inbound_task]);
                    tasks
                }))),
            }),
        })
    }
}

/// Node-level metrics (beside libp2p's and the network's).
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    /// Peer address book updates.
    pub address_book_writes: Counter,
    /// HTTP API requests served.
    pub api_requests: Counter,
    /// Seconds since start (updated when metrics are read).
    pub uptime_seconds: Gauge,
}

#[derive(Debug)]
struct Inner {
    net: NetClient,
    store: Store,
    data_dir: DataDir,
    config: NodeConfig,
    registry: Registry,
    metrics: NodeMetrics,
    events: broadcast::Sender<NetEvent>,
    started: Instant,
    listen_addrs: Vec<Multiaddr>,
    api_addr: OnceLock<SocketAddr>,
    cancel: CancellationToken,
    blobs: crate::BlobService,
    records: crate::RecordService,
    plugins: crate::PluginService,
    services: crate::plugins::rpc::ServiceRouter,
    chain: Option<cnode_registry::RegistryHandle>,
    tasks: Mutex<Option<(NetHandle, Vec<JoinHandle<()>>)>>,
}

/// A running node. Cheap to clone; every clone is the same node.
#[derive(Debug, Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

impl Node {
    /// The records service (regions, posting, queries, sync).
    pub fn records(&self) -> &crate::RecordService {
        &self.inner.records
    }

    /// Service plugins: installed plugins, calls, grants, audit.
    pub fn plugins(&self) -> &crate::PluginService {
        &self.inner.plugins
    }

    /// Service calls between nodes: forwarding to nodes that run a service
    /// (`/cnode/rpc/1`), serving theirs, announcing ours.
    pub fn services(&self) -> &crate::plugins::rpc::ServiceRouter {
        &self.inner.services
    }

    /// The chain registry, when one is configured or a snapshot exists.
    pub fn registry(&self) -> Option<&cnode_registry::RegistryHandle> {
        self.inner.chain.as_ref()
    }

    /// The network client.
    pub fn net(&self) -> &NetClient {
        &self.inner.net
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Blobs: the store, downloads, announcements.
    pub fn blobs(&self) -> &crate::BlobService {
        &self.inner.blobs
    }

    /// The data directory.
    pub fn data_dir(&self) -> &DataDir {
        &self.inner.data_dir
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.inner.net.local_peer_id()
    }

    /// The addresses bound at start, with `/p2p/<id>`.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.inner.listen_addrs
    }

    /// Node-level metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.inner.metrics
    }

    /// When the node started.
    pub fn started(&self) -> Instant {
        self.inner.started
    }

    /// A receiver of network events from now on (bounded: a receiver that
    /// falls more than 1024 events behind skips the oldest).
    pub fn subscribe_events(&self) -> broadcast::Receiver<NetEvent> {
        self.inner.events.subscribe()
    }

    /// Records the address the HTTP API bound (set once by the API server).
    pub fn set_api_addr(&self, addr: SocketAddr) {
        let _ = self.inner.api_addr.set(addr);
    }

    /// The HTTP API address, once an API server runs.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.inner.api_addr.get().copied()
    }

    /// A token that is cancelled when the node shuts down.
    pub fn cancelled(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    /// Prometheus text exposition of every metric (libp2p's and ours).
    pub fn encode_metrics(&self) -> Result<String, std::fmt::Error> {
        self.inner
            .metrics
            .uptime_seconds
            .set(self.inner.started.elapsed().as_secs() as i64);
        let mut out = String::new();
        encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    /// Stops the node: the event task, then the swarm (connections close).
    /// Safe to call more than once.
    pub async fn shutdown(&self) {
        self.inner.cancel.cancel();
        let tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((net, node_tasks)) = tasks {
            for t in node_tasks {
                let _ = t.await;
            }
            if let Some(chain) = &self.inner.chain {
                chain.shutdown().await;
            }
            net.shutdown().await;
            debug!("node stopped");
        }
    }
}

/// Answers requests from peers, several at once (bounded), each on its own task.
async fn inbound_task(
    mut inbound: tokio::sync::mpsc::Receiver<cnode_net::InboundRequest>,
    net: NetClient,
    blobs: cnode_blobs::BlobServer,
    records: crate::RecordService,
    services: crate::plugins::rpc::ServiceRouter,
    cancel: CancellationToken,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_TASKS));
    loop {
        let req = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = inbound.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        let Ok(permit) = limit.clone().acquire_owned().await else {
            break;
        };
        let net = net.clone();
        let blobs = blobs.clone();
        let records = records.clone();
        let services = services.clone();
        tokio::spawn(
            async move {
                let answer = match req.protocol {
                    cnode_net::ReqProtocol::Blobs => blobs.answer(&req.data).await,
                    cnode_net::ReqProtocol::Sync => {
                        records.handle_request(req.peer, &req.data).await.into()
                    }
                    cnode_net::ReqProtocol::Rpc => {
                        services.handle_inbound(req.peer, &req.data).await.into()
                    }
                };
                let _ = net
                    .respond(req.protocol, req.channel, answer.bytes, answer.leaves)
                    .await;
                drop(permit);
            }
            .in_current_span(),
        );
    }
}

/// Consumes network events: keeps the address book and re-broadcasts.
async fn event_task(
    mut events: tokio::sync::mpsc::Receiver<NetEvent>,
    store: Store,
    records: crate::RecordService,
    broadcast: broadcast::Sender<NetEvent>,
    metrics: NodeMetrics,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        if let NetEvent::PeerIdentified {
            peer,
            listen_addrs,
            agent,
        } = &event
            && agent.starts_with("cnode/")
            && !listen_addrs.is_empty()
        {
            let addrs = listen_addrs.iter().map(|a| a.to_string()).collect();
            match store.upsert_peer(peer.to_string(), addrs).await {
                Ok(()) => {
                    metrics.address_book_writes.inc();
                }
                Err(e) => warn!(%peer, "cannot update the address book: {e}"),
            }
        }
        match &event {
            NetEvent::Gossip {
                topic,
                data,
                pending,
                ..
            } if topic.starts_with(cnode_net::VALIDATED_TOPIC_PREFIX) => {
                // Validation and storage off this loop; gossipsub waits for
                // the verdict (bounded by its own message cache).
                let records = records.clone();
                let (topic, data, pending) = (topic.clone(), data.clone(), pending.clone());
                tokio::spawn(
                    async move { records.on_gossip(&topic, &data, pending).await }
                        .in_current_span(),
                );
            }
            NetEvent::PeerConnected { peer, .. } => records.on_peer_connected(*peer),
            _ => {}
        }
        // No receivers is fine: nobody is listening in-process.
        let _ = broadcast.send(event);
    }
}
