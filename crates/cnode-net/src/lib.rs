//! libp2p networking for cnode.
//!
//! Actors: one — the swarm actor ([`spawn`] starts it), which owns the libp2p
//! `Swarm`, the connected-peer table, pending replies and the re-dial schedule.
//! The rest of the node holds a cloneable [`NetClient`] that sends it typed
//! commands with oneshot replies, and reads [`NetEvent`]s from one bounded
//! channel. There are no locks around the swarm.
//!
//! Transports: QUIC v1 and TCP + TLS 1.3 (or Noise) + Yamux, with DNS and the circuit-relay
//! client. Behaviours: identify, ping, Kademlia (`/cnode/kad/1.0.0`), gossipsub
//! with peer scoring, mDNS, AutoNAT, relay server (switchable), DCUtR, connection
//! and memory limits.

#![deny(missing_docs, unreachable_pub)]

mod addr;
mod behaviour;
mod client;
mod codec;
mod config;
mod event;
mod event_loop;
mod lane;
mod switch;
mod tls;

use std::time::{Duration, Instant};

pub use addr::transport_of;
pub use behaviour::{
    ANNOUNCE_TOPIC, BLOBS_PROTOCOL, RPC_PROTOCOL, RPC_TIMEOUT, SYNC_PROTOCOL,
    VALIDATED_TOPIC_PREFIX,
};
pub use client::{
    Closed, DhtError, DhtRecord, DialError, GossipError, GossipId, GossipVerdict, InboundRequest,
    ListenError, NetClient, ReplyChannel, ReqProtocol, RequestError,
};
pub use config::{DhtMode, NetConfig, NetLimits, RelayServerMode};
pub use event::NetEvent;
use futures::StreamExt;
pub use libp2p::{Multiaddr, PeerId, identity::Keypair};
use libp2p::{metrics::Metrics, swarm::SwarmEvent};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
pub use tls::seed_random_early;
use tokio::{sync::mpsc, task::JoinHandle};
use tokio_util::sync::CancellationToken;

/// Capacity of the command channel from [`NetClient`]s to the actor.
pub const COMMAND_CAPACITY: usize = 256;
/// Capacity of the [`NetEvent`] channel from the actor to the node.
pub const EVENT_CAPACITY: usize = 1024;
/// How long [`spawn`] waits for each listener to report its address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A snapshot of the network's state.
#[derive(Debug, Clone)]
pub struct NetStatus {
    /// This node's peer id.
    pub peer_id: PeerId,
    /// Bound listen addresses, each ending in `/p2p/<peer_id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Confirmed external addresses.
    pub external_addrs: Vec<Multiaddr>,
    /// Number of connected peers.
    pub connected_peers: usize,
    /// `unknown`, `public` or `private`.
    pub nat_status: String,
    /// Whether the relay server is on.
    pub relay_server: bool,
    /// Time since the network started.
    pub uptime: Duration,
    /// The TCP port lanes listen on, if they do.
    pub lane_port: Option<u16>,
}

/// cnode's own network metrics (libp2p's are registered beside them).
#[derive(Debug, Clone, Default)]
pub struct NetMetrics {
    /// Peers connected right now.
    pub connected_peers: Gauge,
    /// Network events dropped because the node did not keep up.
    pub events_dropped: Counter,
    /// Inbound requests refused because too many were waiting.
    pub inbound_refused: Counter,
    /// Lanes open right now, both directions (see [`NetConfig::lanes`]).
    pub lanes: Gauge,
    /// Requests to peers answered over a lane.
    pub lane_requests: Counter,
}

/// Starting the network failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The transport stack could not be built.
    #[error("cannot set up the transport: {0}")]
    Transport(String),
    /// A behaviour could not be configured.
    #[error("cannot set up the network: {0}")]
    Behaviour(String),
    /// Listening on an address failed (port in use, unsupported address, …).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// What went wrong.
        reason: String,
    },
}

/// The running swarm actor. Call [`NetHandle::shutdown`] to stop it.
#[must_use = "the network stops when shutdown() is called; keep the handle"]
#[derive(Debug)]
pub struct NetHandle {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl NetHandle {
    /// Stops the swarm actor and waits for it: connections close, pending
    /// requests fail with [`Closed`].
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::warn!("swarm actor ended badly: {e}");
        }
    }
}

/// Everything [`spawn`] returns.
#[derive(Debug)]
pub struct Spawned {
    /// The handle to send commands.
    pub client: NetClient,
    /// Events from the network.
    pub events: mpsc::Receiver<NetEvent>,
    /// Requests from peers, to be answered with [`NetClient::respond`].
    pub inbound: mpsc::Receiver<InboundRequest>,
    /// The actor's lifetime.
    pub handle: NetHandle,
    /// The addresses bound at start, each ending in `/p2p/<id>`.
    pub listen_addrs: Vec<Multiaddr>,
}

/// Builds the swarm, binds every listen address, and starts the swarm actor.
///
/// libp2p's metrics and cnode's own network metrics are registered in
/// `registry`. The actor stops when `cancel` is cancelled or
/// [`NetHandle::shutdown`] is called. Returns once every listener has reported
/// its bound address, so callers can show real ports straight away.
pub async fn spawn(
    config: NetConfig,
    registry: &mut Registry,
    cancel: CancellationToken,
) -> Result<Spawned, SpawnError> {
    let local = config.keypair.public().to_peer_id();
    // One certificate and one pair of rustls configurations, for the swarm's
    // TCP connections and the lanes alike.
    let tls =
        tls::Tls::new(&config.keypair).map_err(|e| SpawnError::Transport(format!("TLS: {e}")))?;
    let mut swarm = behaviour::build_swarm(
        &config,
        registry.sub_registry_with_prefix("libp2p"),
        tls.clone(),
    )?;
    let metrics = Metrics::new(registry.sub_registry_with_prefix("libp2p"));
    let net_metrics = NetMetrics::default();
    let ours = registry.sub_registry_with_prefix("cnode_net");
    ours.register(
        "connected_peers",
        "Peers connected right now",
        net_metrics.connected_peers.clone(),
    );
    ours.register(
        "inbound_refused",
        "Inbound requests refused because too many were waiting",
        net_metrics.inbound_refused.clone(),
    );
    ours.register(
        "lanes",
        "Lanes (blob transfers beside the libp2p connection) open right now",
        net_metrics.lanes.clone(),
    );
    ours.register(
        "lane_requests",
        "Requests to peers answered over a lane",
        net_metrics.lane_requests.clone(),
    );
    ours.register(
        "events_dropped",
        "Network events dropped because the node did not keep up",
        net_metrics.events_dropped.clone(),
    );

    let mut listeners = Vec::new();
    for addr in &config.listen {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|e| SpawnError::Listen {
                addr: addr.clone(),
                reason: e.to_string(),
            })?;
        listeners.push((id, addr.clone()));
    }
    // Drive the swarm until every listener has an address (or failed).
    let mut bound = Vec::new();
    let mut waiting: Vec<_> = listeners.clone();
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while !waiting.is_empty() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(event)) = tokio::time::timeout(remaining, swarm.next()).await else {
            let (_, addr) = &waiting[0];
            return Err(SpawnError::Listen {
                addr: addr.clone(),
                reason: "no address reported in time".into(),
            });
        };
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                waiting.retain(|(id, _)| *id != listener_id);
                bound.push(address.with_p2p(local).unwrap_or_else(|a| a));
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some((_, addr)) = listeners.iter().find(|(id, _)| *id == listener_id) {
                    return Err(SpawnError::Listen {
                        addr: addr.clone(),
                        reason: match reason {
                            Ok(()) => "listener closed".into(),
                            Err(e) => e.to_string(),
                        },
                    });
                }
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                if let Some((_, addr)) = listeners.iter().find(|(id, _)| *id == listener_id) {
                    return Err(SpawnError::Listen {
                        addr: addr.clone(),
                        reason: error.to_string(),
                    });
                }
            }
            _ => {}
        }
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_CAPACITY);
    let (in_tx, in_rx) = mpsc::channel(config.limits.max_pending_inbound.max(1));
    let lanes = if config.lanes {
        let lane_config = lane::LaneConfig {
            tls,
            listen: lane::listen_ips(&config.listen),
            port: config.lane_port,
            max_request: config.limits.max_blob_request,
            max_response: config.limits.max_blob_response,
            timeout: behaviour::BLOBS_TIMEOUT,
            max_answers: lane::MAX_LANE_ANSWERS,
        };
        Some(
            lane::Lanes::start(
                lane_config,
                in_tx.clone(),
                net_metrics.clone(),
                cancel.clone(),
            )
            .await,
        )
    } else {
        None
    };
    let event_loop = event_loop::EventLoop::new(
        swarm,
        event_loop::Channels {
            commands: cmd_rx,
            events: ev_tx,
            inbound: in_tx,
        },
        cancel.clone(),
        metrics,
        net_metrics,
        config,
        lanes.clone(),
    );
    let task = tokio::spawn(tracing::Instrument::in_current_span(event_loop.run()));
    Ok(Spawned {
        client: NetClient {
            tx: cmd_tx,
            local_peer_id: local,
            lanes,
        },
        events: ev_rx,
        inbound: in_rx,
        handle: NetHandle { cancel, task },
        listen_addrs: bound,
    })
}
