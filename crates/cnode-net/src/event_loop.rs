//! The swarm actor: the one task that owns the libp2p [`Swarm`].
//!
//! It owns, and nobody else touches: the swarm, the table of connected peers,
//! the pending replies (keyed by dial connection id and Kademlia query id), and
//! the re-dial schedule of known peers. Everything else talks to it through
//! [`crate::NetClient`].

use std::{
    collections::{HashMap, hash_map::Entry},
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use cnode_types::PeerInfo;
use futures::StreamExt;
use libp2p::{
    Multiaddr, PeerId, Swarm, autonat,
    core::ConnectedPoint,
    core::transport::ListenerId,
    gossipsub, identify, kad,
    metrics::{Metrics, Recorder},
    multiaddr::Protocol,
    request_response,
    swarm::{ConnectionId, DialError as SwarmDialError, SwarmEvent, dial_opts::DialOpts},
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, trace, warn};

mod commands;
mod results;

use crate::{
    NetEvent, NetMetrics, NetStatus,
    addr::{
        dial_error_text, is_circuit, is_loopback, is_unspecified, peer_id_of, relay_of,
        strip_peer_id, transport_of,
    },
    behaviour::{Behaviour, BehaviourEvent, VALIDATED_TOPIC_PREFIX},
    client::{
        Command, DhtError, DhtRecord, DialError, GossipId, InboundRequest, ReqProtocol,
        RequestError,
    },
    config::{NetConfig, RelayServerMode},
    lane::Lanes,
};

/// The shortest and longest wait before re-dialling a known peer.
const REDIAL_MIN: Duration = Duration::from_secs(1);
const REDIAL_MAX: Duration = Duration::from_secs(300);
/// Most Kademlia queries waiting for an answer at once.
const MAX_PENDING_QUERIES: usize = 256;
/// Most outbound requests waiting for an answer at once.
const MAX_PENDING_REQUESTS: usize = 4096;
/// Most dials waiting for an answer at once.
const MAX_PENDING_DIALS: usize = 256;
/// Most addresses kept per known peer.
const MAX_ADDRS: usize = 16;

/// A relay we keep a reservation on, so peers can reach us through it.
#[derive(Debug)]
struct RelaySlot {
    /// The relay's address, ending in `/p2p/<relay>`.
    addr: Multiaddr,
    /// The circuit listener while a reservation is wanted or held.
    listener: Option<ListenerId>,
    backoff: Duration,
    next_try: Instant,
}

/// A peer we want to stay connected to, with its re-dial schedule.
#[derive(Debug)]
struct KnownPeer {
    addrs: Vec<Multiaddr>,
    backoff: Duration,
    next_dial: Instant,
}

/// What we know about a connected peer.
#[derive(Debug, Default)]
struct PeerState {
    conns: Vec<(ConnectionId, Multiaddr, bool)>,
    rtt: Option<Duration>,
    agent: Option<String>,
    protocols: Vec<String>,
}

/// An outbound request's peer and the caller waiting for the answer.
type PendingRequest = (PeerId, oneshot::Sender<Result<Vec<u8>, RequestError>>);
/// A lane port question: the IP to connect to and who waits for the address.
type PendingLane = (IpAddr, oneshot::Sender<Option<SocketAddr>>);

enum PendingQuery {
    Put(oneshot::Sender<Result<(), DhtError>>),
    Get(oneshot::Sender<Result<Option<DhtRecord>, DhtError>>),
    Providers(oneshot::Sender<Vec<PeerId>>, Vec<PeerId>),
}

/// The most providers returned for one key.
const MAX_PROVIDERS: usize = 32;

/// The actor's channels: commands in, events and peer requests out.
pub(crate) struct Channels {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) events: mpsc::Sender<NetEvent>,
    pub(crate) inbound: mpsc::Sender<InboundRequest>,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    inbound: mpsc::Sender<InboundRequest>,
    cancel: CancellationToken,
    metrics: Metrics,
    net_metrics: NetMetrics,
    peers: HashMap<PeerId, PeerState>,
    known: HashMap<PeerId, KnownPeer>,
    relays: HashMap<PeerId, RelaySlot>,
    /// Bootstrap addresses without a peer id: dialled while we have no peers.
    anonymous_bootstrap: Vec<Multiaddr>,
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, DialError>>)>,
    pending_queries: HashMap<kad::QueryId, PendingQuery>,
    pending_requests: HashMap<request_response::OutboundRequestId, PendingRequest>,
    /// `/cnode/lane/2` questions: the peer's IP and who waits for its lane address.
    pending_lanes: HashMap<request_response::OutboundRequestId, PendingLane>,
    lanes: Option<Arc<Lanes>>,
    nat_status: &'static str,
    config: NetConfig,
    started: Instant,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        channels: Channels,
        cancel: CancellationToken,
        metrics: Metrics,
        net_metrics: NetMetrics,
        config: NetConfig,
        lanes: Option<Arc<Lanes>>,
    ) -> Self {
        let Channels {
            commands,
            events,
            inbound,
        } = channels;
        let mut this = Self {
            swarm,
            commands,
            events,
            inbound,
            cancel,
            metrics,
            net_metrics,
            peers: HashMap::new(),
            known: HashMap::new(),
            relays: HashMap::new(),
            anonymous_bootstrap: Vec::new(),
            pending_dials: HashMap::new(),
            pending_queries: HashMap::new(),
            pending_requests: HashMap::new(),
            pending_lanes: HashMap::new(),
            lanes,
            nat_status: "unknown",
            config,
            started: Instant::now(),
        };
        let now = Instant::now();
        for addr in this.config.bootstrap.clone() {
            match peer_id_of(&addr) {
                Some(peer) => this.remember(peer, vec![addr], now),
                None => this.anonymous_bootstrap.push(addr),
            }
        }
        for (peer, addrs) in this.config.known_peers.clone() {
            this.remember(peer, addrs, now);
        }
        for addr in this.config.relays.clone() {
            let Some(relay) = peer_id_of(&addr) else {
                warn!(%addr, "ignoring relay without /p2p/<peer id>");
                continue;
            };
            // Connect first; the reservation is made once the relay is identified.
            this.remember(relay, vec![addr.clone()], now);
            this.relays.insert(
                relay,
                RelaySlot {
                    addr,
                    listener: None,
                    backoff: REDIAL_MIN,
                    next_try: now,
                },
            );
        }
        for addr in this.config.external_addrs.clone() {
            this.swarm.add_external_address(addr);
        }
        if this.config.relay_server == RelayServerMode::On && this.config.external_addrs.is_empty()
        {
            // Addresses bound before the loop started (see NewListenAddr below).
            let bound: Vec<Multiaddr> = this.swarm.listeners().cloned().collect();
            for addr in bound {
                this.announce_relay_addr(addr);
            }
        }
        this
    }

    /// Adds a peer to the re-dial set (bounded) and to Kademlia's routing table.
    fn remember(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, next_dial: Instant) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        let addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .map(|a| strip_peer_id(a, &peer))
            .take(MAX_ADDRS)
            .collect();
        for a in addrs.iter().filter(|a| !is_circuit(a)) {
            self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
        }
        let full = self.known.len() >= self.config.limits.max_known_peers;
        match self.known.entry(peer) {
            Entry::Occupied(mut e) => {
                // Newest first; keep older ones (e.g. several bootstrap entries).
                let known = &mut e.get_mut().addrs;
                let mut merged = addrs;
                for old in known.drain(..) {
                    if !merged.contains(&old) {
                        merged.push(old);
                    }
                }
                merged.truncate(MAX_ADDRS);
                *known = merged;
            }
            Entry::Vacant(e) => {
                if full {
                    return;
                }
                e.insert(KnownPeer {
                    addrs,
                    backoff: REDIAL_MIN,
                    next_dial,
                });
            }
        }
    }

    pub(crate) async fn run(mut self) {
        let mut redial = tokio::time::interval(Duration::from_millis(500));
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // Every client is gone: nobody can ask us anything any more.
                    None => break,
                },
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                _ = redial.tick() => {
                    self.redial_due();
                    self.reserve_relays();
                }
            }
        }
        debug!("swarm actor stopping");
        // Pending replies are dropped here, which their callers see as `Closed`.
    }

    fn emit(&self, event: NetEvent) {
        if self.events.try_send(event).is_err() {
            self.net_metrics.events_dropped.inc();
        }
    }

    fn status(&self) -> NetStatus {
        let local = *self.swarm.local_peer_id();
        NetStatus {
            peer_id: local,
            listen_addrs: self
                .swarm
                .listeners()
                .map(|a| a.clone().with_p2p(local).unwrap_or_else(|a| a))
                .collect(),
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            connected_peers: self.swarm.connected_peers().count(),
            nat_status: self.nat_status.to_owned(),
            relay_server: self.swarm.behaviour().relay_server.is_enabled(),
            uptime: self.started.elapsed(),
            lane_port: self.lanes.as_ref().and_then(|l| l.port()),
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut out: Vec<PeerInfo> = self
            .peers
            .iter()
            .filter(|(_, s)| !s.conns.is_empty())
            .map(|(peer, s)| {
                let (_, first, outbound) = &s.conns[0];
                PeerInfo {
                    peer_id: peer.to_string(),
                    addrs: s.conns.iter().map(|(_, a, _)| a.to_string()).collect(),
                    transport: transport_of(first).to_owned(),
                    direction: if *outbound { "outbound" } else { "inbound" }.to_owned(),
                    latency_ms: s.rtt.map(|d| d.as_secs_f64() * 1000.0),
                    agent: s.agent.clone(),
                    protocols: s.protocols.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.peer_id.cmp(&b.peer_id));
        out
    }

    fn redial_due(&mut self) {
        let connected = self.swarm.connected_peers().count();
        if connected >= self.config.limits.target_peers {
            return;
        }
        if connected == 0 {
            for addr in self.anonymous_bootstrap.clone() {
                // Only when idle: these cannot be matched to a peer, so they would
                // otherwise be dialled again on every tick.
                if self.pending_dials.is_empty() && self.started.elapsed() > REDIAL_MIN {
                    let _ = self.swarm.dial(addr);
                }
            }
        }
        let now = Instant::now();
        let peers = &self.peers;
        let swarm = &self.swarm;
        let due: Vec<(PeerId, Vec<Multiaddr>)> = self
            .known
            .iter_mut()
            .filter(|(p, k)| k.next_dial <= now && !swarm.is_connected(p))
            .filter_map(|(p, k)| {
                // A circuit address is only worth dialling through a relay we
                // are connected to and identified with: then the relay has told
                // us our observed address, which hole punching needs.
                let usable: Vec<Multiaddr> = k
                    .addrs
                    .iter()
                    .filter(|a| match relay_of(a) {
                        None => true,
                        Some(relay) => peers.get(&relay).is_some_and(|s| s.agent.is_some()),
                    })
                    .cloned()
                    .collect();
                if usable.is_empty() {
                    return None;
                }
                // Schedule the next try now; a success resets it.
                k.next_dial = now + k.backoff;
                k.backoff = (k.backoff * 2).min(REDIAL_MAX);
                Some((*p, usable))
            })
            .collect();
        for (peer, addrs) in due {
            trace!(%peer, "re-dialling known peer");
            let opts = DialOpts::peer_id(peer).addresses(addrs).build();
            if let Err(e) = self.swarm.dial(opts) {
                trace!(%peer, "re-dial not started: {}", dial_error_text(&e));
            }
        }
    }

    /// An operator who runs a relay (mode `On`) says its addresses are
    /// reachable; relay reservations carry them to clients, who need them.
    fn announce_relay_addr(&mut self, addr: Multiaddr) {
        if !is_circuit(&addr) && !is_unspecified(&addr) {
            self.swarm.add_external_address(addr);
        }
    }

    /// Asks each configured relay we are connected to for a reservation, and
    /// asks again (with backoff) when one is refused or lost.
    fn reserve_relays(&mut self) {
        let now = Instant::now();
        let ready: Vec<PeerId> = self
            .relays
            .iter()
            .filter(|(relay, slot)| {
                slot.listener.is_none()
                    && slot.next_try <= now
                    && self.peers.get(relay).is_some_and(|s| s.agent.is_some())
            })
            .map(|(relay, _)| *relay)
            .collect();
        for relay in ready {
            let Some(slot) = self.relays.get_mut(&relay) else {
                continue;
            };
            let circuit = slot.addr.clone().with(Protocol::P2pCircuit);
            slot.next_try = now + slot.backoff;
            slot.backoff = (slot.backoff * 2).min(REDIAL_MAX);
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => {
                    info!(%circuit, "reserving a slot on relay");
                    slot.listener = Some(id);
                }
                Err(e) => warn!(%circuit, "cannot listen via relay: {e}"),
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            SwarmEvent::NewListenAddr {
                address,
                listener_id,
            } => {
                info!(%address, "listening");
                if let Some(slot) = self
                    .relays
                    .values_mut()
                    .find(|s| s.listener == Some(listener_id))
                {
                    slot.backoff = REDIAL_MIN;
                } else if self.config.relay_server == RelayServerMode::On
                    && self.config.external_addrs.is_empty()
                {
                    self.announce_relay_addr(address.clone());
                }
                self.emit(NetEvent::NewListenAddr(address));
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                let (addr, outbound) = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => (address.clone(), true),
                    // An inbound relayed connection's remote address is only
                    // `/p2p/<src>`; our circuit address says how it came.
                    ConnectedPoint::Listener { local_addr, .. } if is_circuit(local_addr) => {
                        (local_addr.clone(), false)
                    }
                    ConnectedPoint::Listener { send_back_addr, .. } => {
                        (send_back_addr.clone(), false)
                    }
                };
                debug!(peer = %peer_id, %addr, "connection established");
                if let Some((_, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                if let Some(k) = self.known.get_mut(&peer_id) {
                    k.backoff = REDIAL_MIN;
                }
                self.peers.entry(peer_id).or_default().conns.push((
                    connection_id,
                    addr.clone(),
                    outbound,
                ));
                self.net_metrics
                    .connected_peers
                    .set(self.swarm.connected_peers().count() as i64);
                if num_established.get() == 1 {
                    if let Some(lanes) = &self.lanes {
                        lanes.peer_connected(peer_id);
                    }
                    self.emit(NetEvent::PeerConnected {
                        peer: peer_id,
                        addr,
                    });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "connection closed");
                if let Some(state) = self.peers.get_mut(&peer_id) {
                    state.conns.retain(|(id, _, _)| *id != connection_id);
                }
                self.net_metrics
                    .connected_peers
                    .set(self.swarm.connected_peers().count() as i64);
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    if let Some(lanes) = &self.lanes {
                        lanes.peer_disconnected(peer_id);
                    }
                    if let Some(k) = self.known.get_mut(&peer_id) {
                        // Try again soon, then back off if it keeps failing.
                        k.next_dial = Instant::now() + k.backoff;
                    }
                    self.emit(NetEvent::PeerDisconnected { peer: peer_id });
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => {
                debug!(peer = ?peer_id, "dial failed: {}", dial_error_text(&error));
                if let Some((addr, reply)) = self.pending_dials.remove(&connection_id) {
                    let _ = reply.send(Err(DialError::Failed {
                        addr,
                        reason: dial_error_text(&error),
                    }));
                }
                if let SwarmDialError::WrongPeerId { address, .. } = &error
                    && let Some(peer) = peer_id
                    && let Some(k) = self.known.get_mut(&peer)
                {
                    // That address now belongs to someone else: stop trying it.
                    let bad = strip_peer_id(address.clone(), &peer);
                    k.addrs.retain(|a| *a != bad);
                }
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!("incoming connection failed: {error}");
            }
            SwarmEvent::ListenerError { error, .. } => warn!("listener error: {error}"),
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(slot) = self
                    .relays
                    .values_mut()
                    .find(|s| s.listener == Some(listener_id))
                {
                    // Refused or lost: ask again later.
                    warn!(relay = %slot.addr, ?reason, "relay reservation ended; retrying in {:?}", slot.backoff);
                    slot.listener = None;
                    slot.next_try = Instant::now() + slot.backoff;
                }
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                info!(%address, "external address confirmed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(ev) => {
                self.metrics.record(&ev);
                if let identify::Event::Received { peer_id, info, .. } = ev {
                    self.on_identified(peer_id, info);
                }
            }
            BehaviourEvent::Ping(ev) => {
                self.metrics.record(&ev);
                if let Ok(rtt) = ev.result
                    && let Some(state) = self.peers.get_mut(&ev.peer)
                {
                    state.rtt = Some(rtt);
                }
            }
            BehaviourEvent::Kad(ev) => {
                self.metrics.record(&ev);
                self.on_kad_event(ev);
            }
            BehaviourEvent::Gossipsub(ev) => {
                self.metrics.record(&ev);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = ev
                {
                    let topic = message.topic.into_string();
                    let pending = if topic.starts_with(VALIDATED_TOPIC_PREFIX) {
                        Some(GossipId {
                            id: message_id,
                            via: propagation_source,
                        })
                    } else {
                        self.swarm
                            .behaviour_mut()
                            .gossipsub
                            .report_message_validation_result(
                                &message_id,
                                &propagation_source,
                                gossipsub::MessageAcceptance::Accept,
                            );
                        None
                    };
                    self.emit(NetEvent::Gossip {
                        topic,
                        source: message.source,
                        via: propagation_source,
                        data: message.data,
                        pending,
                    });
                }
            }
            BehaviourEvent::Mdns(ev) => match ev {
                libp2p::mdns::Event::Discovered(found) => {
                    let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
                    for (peer, addr) in found {
                        by_peer.entry(peer).or_default().push(addr);
                    }
                    let now = Instant::now();
                    for (peer, addrs) in by_peer {
                        info!(%peer, "found on the local network (mDNS)");
                        self.remember(peer, addrs.clone(), now);
                        if !self.swarm.is_connected(&peer) {
                            let _ = self
                                .swarm
                                .dial(DialOpts::peer_id(peer).addresses(addrs).build());
                        }
                    }
                }
                libp2p::mdns::Event::Expired(_) => {}
            },
            BehaviourEvent::Autonat(ev) => {
                if let autonat::Event::StatusChanged { new, .. } = ev {
                    self.nat_status = match new {
                        autonat::NatStatus::Public(_) => "public",
                        autonat::NatStatus::Private => "private",
                        autonat::NatStatus::Unknown => "unknown",
                    };
                    info!(status = self.nat_status, "reachability changed");
                    if self.nat_status == "public"
                        && self.config.relay_server == RelayServerMode::Auto
                        && !self.swarm.behaviour().relay_server.is_enabled()
                    {
                        info!("publicly reachable: serving as a circuit relay from now on");
                        let server = &mut self.swarm.behaviour_mut().relay_server;
                        server.enable();
                        server
                            .inner_mut()
                            .set_status(Some(libp2p::relay::Status::Enable));
                    }
                    self.emit(NetEvent::NatStatus(self.nat_status.to_owned()));
                }
            }
            BehaviourEvent::RelayServer(ev) => {
                self.metrics.record(&ev);
                debug!(?ev, "relay server");
            }
            BehaviourEvent::RelayClient(ev) => {
                info!(?ev, "relay client");
            }
            BehaviourEvent::Dcutr(ev) => {
                self.metrics.record(&ev);
                match &ev.result {
                    Ok(_) => {
                        info!(peer = %ev.remote_peer_id, "hole punch succeeded: direct connection")
                    }
                    Err(e) => info!(peer = %ev.remote_peer_id, "hole punch failed: {e}"),
                }
            }
            BehaviourEvent::Blobs(ev) => self.on_request_event(ReqProtocol::Blobs, ev),
            BehaviourEvent::Sync(ev) => self.on_request_event(ReqProtocol::Sync, ev),
            BehaviourEvent::Rpc(ev) => self.on_request_event(ReqProtocol::Rpc, ev),
            BehaviourEvent::Lane(ev) => self.on_lane_event(ev),
            BehaviourEvent::Limits(never) => match never {},
            BehaviourEvent::Blocked(never) => match never {},
            BehaviourEvent::Memory(never) => match never {},
        }
    }

    fn on_identified(&mut self, peer: PeerId, info: identify::Info) {
        let state = self.peers.entry(peer).or_default();
        state.agent = Some(info.agent_version.clone());
        state.protocols = info.protocols.iter().map(|p| p.to_string()).collect();
        // Only cnode nodes go into our DHT and re-dial set.
        let speaks_kad = info
            .protocols
            .iter()
            .any(|p| p.as_ref() == cnode_types::KAD_PROTOCOL);
        // A peer reached over the network cannot be reached at its loopback
        // addresses: dialling those would reach ourselves or a stranger.
        let via_loopback = state.conns.iter().any(|(_, a, _)| is_loopback(a));
        let listen: Vec<Multiaddr> = info
            .listen_addrs
            .iter()
            .filter(|a| !is_unspecified(a) && (via_loopback || !is_loopback(a)))
            .cloned()
            .collect();
        if speaks_kad {
            let now = Instant::now();
            // Already connected: the next dial is only due when it disconnects.
            self.remember(peer, listen.clone(), now + REDIAL_MIN);
        }
        self.emit(NetEvent::PeerIdentified {
            peer,
            listen_addrs: listen,
            agent: info.agent_version,
        });
    }
}
