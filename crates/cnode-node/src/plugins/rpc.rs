//! Service calls between nodes over `/cnode/rpc/1`: a node that does not run
//! a service forwards `/v1/services/{id}/…` calls to nodes that do.
//!
//! - **Discovery.** A node provides the DHT key `cnode/service/<id>` for every
//!   plugin it has loaded: the advertiser task (started by
//!   [`ServiceRouter::start`]) follows [`PluginService::watch`] and starts
//!   providing on install, enable and load at start, and stops on disable and
//!   remove. Kademlia re-publishes the provider records on its own schedule,
//!   as for regions and blobs.
//! - **Forwarding** ([`ServiceRouter::forward`]): candidates are the peers
//!   that recently answered for the service (cached for [`RpcConfig::cache_ttl`]),
//!   else the DHT's providers, connected peers first. Up to
//!   [`RpcConfig::in_flight`] are asked at once, a new one every
//!   [`RpcConfig::stagger`] or as soon as one fails; the first answer from a
//!   node that ran the plugin wins (a plugin's 5xx included). "Not served",
//!   "disabled", "busy" and "rate limited" are not answers: the next
//!   candidate is asked. The whole call is bounded by
//!   [`RpcConfig::forward_timeout`].
//! - **Serving** ([`ServiceRouter::handle_inbound`]): a call for a plugin
//!   loaded here runs through [`PluginService::call`]; anything else answers
//!   a typed error. Calls from one peer are rate-limited by a token bucket
//!   and at most [`RpcConfig::max_inbound`] run at once. A served call is
//!   never forwarded further.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cnode_net::{NetClient, PeerId, ReqProtocol};
use cnode_plugins::{CallError, PluginId, Request, Response};
use futures::{StreamExt, stream::FuturesUnordered};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info};

use super::PluginService;

pub mod wire;

pub use wire::{
    DecodeError, ErrorCode, MAX_REQUEST, MAX_REQUEST_BODY, MAX_RESPONSE, MAX_RESPONSE_BODY,
    RpcRequest, RpcResponse, TooLarge, VERSION, fuzz_check,
};

/// Request headers a plugin call carries, local (the HTTP API passes only
/// these) or forwarded (no credentials, no cookies).
pub const SAFE_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "content-type",
    "if-none-match",
    "if-modified-since",
    "user-agent",
];

/// The most peers asked for one call.
const MAX_CANDIDATES: usize = 8;
/// The most services whose serving peers are cached.
const MAX_CACHED_SERVICES: usize = 256;
/// The most peers whose rate-limit buckets are kept (then they start over).
const MAX_BUCKETS: usize = 4096;
/// How long a DHT provider lookup may take within a forwarded call.
const PROVIDER_LOOKUP: Duration = Duration::from_secs(5);
/// How long the advertiser waits before retrying a failed announcement.
const ANNOUNCE_RETRY: Duration = Duration::from_secs(30);

/// The DHT key under which nodes that run service `id` announce themselves.
pub fn provider_key(id: &PluginId) -> Vec<u8> {
    format!("cnode/service/{id}").into_bytes()
}

/// Limits of forwarding and serving.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// Inbound calls one peer may make per second, sustained.
    pub requests_per_sec: f64,
    /// How many calls one peer may make in a burst.
    pub burst: f64,
    /// Inbound calls running at once (over all peers); more answer `busy`.
    pub max_inbound: usize,
    /// The longest a forwarded call may take, DHT lookup included.
    pub forward_timeout: Duration,
    /// Peers asked at once for one call.
    pub in_flight: usize,
    /// How long to wait for the first peer before asking the next as well.
    pub stagger: Duration,
    /// How long a peer that answered stays the first choice for its service.
    pub cache_ttl: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self {
            requests_per_sec: 50.0,
            burst: 200.0,
            max_inbound: 16,
            forward_timeout: Duration::from_secs(10),
            in_flight: 3,
            stagger: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(60),
        }
    }
}

/// Counters of `/cnode/rpc/1`, registered as `cnode_rpc_*`.
#[derive(Debug, Clone, Default)]
pub struct RpcMetrics {
    /// Inbound calls answered by a local plugin.
    pub served: Counter,
    /// Inbound calls refused by the per-peer rate limit.
    pub rate_limited: Counter,
    /// Inbound calls refused because every slot was busy.
    pub busy: Counter,
    /// Calls forwarded and answered by another node.
    pub forwarded: Counter,
    /// Calls forwarded without an answer (no node, all failed, timed out).
    pub forward_failed: Counter,
}

impl RpcMetrics {
    fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("rpc");
        r.register(
            "served",
            "Inbound service calls answered by a local plugin",
            self.served.clone(),
        );
        r.register(
            "rate_limited",
            "Inbound service calls refused by the per-peer rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "busy",
            "Inbound service calls refused because every slot was busy",
            self.busy.clone(),
        );
        r.register(
            "forwarded",
            "Service calls answered by another node",
            self.forwarded.clone(),
        );
        r.register(
            "forward_failed",
            "Service calls forwarded without an answer",
            self.forward_failed.clone(),
        );
    }
}

/// An answer from another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarded {
    /// The node that ran the plugin.
    pub peer: PeerId,
    /// The plugin's answer, or how the call failed there (a trap, its time
    /// limit, no such route, a request over that node's limits).
    pub answer: Result<Response, RemoteError>,
}

/// A call that ran on another node and failed there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (on {peer}: {})", code.name())]
pub struct RemoteError {
    /// The node.
    pub peer: PeerId,
    /// What happened.
    pub code: ErrorCode,
    /// Its reason.
    pub message: String,
}

/// Forwarding a call got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForwardError {
    /// No reachable node runs the service.
    #[error("no node serves {service} (asked {asked})")]
    NotServed {
        /// The service.
        service: PluginId,
        /// How many nodes said they do not run it (0: none was found).
        asked: usize,
    },
    /// The request cannot be forwarded.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// No answer within the time limit.
    #[error("no node answered for {service} within {} s", limit.as_secs())]
    TimedOut {
        /// The service.
        service: PluginId,
        /// The limit.
        limit: Duration,
    },
    /// Every node asked failed (unreachable, busy, rate limited).
    #[error("no node could answer for {service}: asked {asked}, the last said: {last}")]
    AllFailed {
        /// The service.
        service: PluginId,
        /// How many nodes were asked.
        asked: usize,
        /// The last failure.
        last: String,
    },
}

/// Forwards service calls to other nodes and serves theirs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceRouter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    plugins: PluginService,
    net: NetClient,
    config: RpcConfig,
    metrics: RpcMetrics,
    slots: Arc<Semaphore>,
    buckets: Mutex<Buckets>,
    /// Per service: peers that answered, and when that list expires.
    served_by: Mutex<HashMap<PluginId, (Vec<PeerId>, Instant)>>,
}

/// How one peer's attempt ended.
enum Attempt {
    /// The plugin ran there.
    Final(Result<Response, RemoteError>),
    /// It does not run the service.
    NotServed(String),
    /// Unreachable, busy, rate limited, or nonsense.
    Failed(String),
}

impl ServiceRouter {
    /// A router over the node's plugins and network; its counters go into
    /// `registry` (as `rpc_*` below the caller's prefix).
    pub fn new(
        plugins: PluginService,
        net: NetClient,
        config: RpcConfig,
        registry: &mut Registry,
    ) -> Self {
        let metrics = RpcMetrics::default();
        metrics.register(registry);
        Self {
            inner: Arc::new(Inner {
                slots: Arc::new(Semaphore::new(config.max_inbound.max(1))),
                buckets: Mutex::new(Buckets::new(config.requests_per_sec, config.burst)),
                plugins,
                net,
                config,
                metrics,
                served_by: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &RpcMetrics {
        &self.inner.metrics
    }

    /// Starts the advertiser task: provides `cnode/service/<id>` for every
    /// loaded plugin while it is loaded, until `cancel`.
    pub fn start(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let mut changes = self.inner.plugins.watch();
        tokio::spawn(
            async move {
                let mut advertised: BTreeSet<PluginId> = BTreeSet::new();
                loop {
                    let loaded: BTreeSet<PluginId> =
                        this.inner.plugins.host().plugin_ids().into_iter().collect();
                    let mut failed = false;
                    for id in loaded.difference(&advertised).cloned().collect::<Vec<_>>() {
                        match this.inner.net.start_providing(provider_key(&id)).await {
                            Ok(()) => {
                                info!(service = %id, "announcing the service in the DHT");
                                advertised.insert(id);
                            }
                            Err(e) => {
                                debug!(service = %id, "cannot announce the service yet: {e}");
                                failed = true;
                            }
                        }
                    }
                    for id in advertised.difference(&loaded).cloned().collect::<Vec<_>>() {
                        let _ = this.inner.net.stop_providing(provider_key(&id)).await;
                        info!(service = %id, "no longer announcing the service");
                        advertised.remove(&id);
                    }
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        r = changes.changed() => if r.is_err() { break },
                        _ = tokio::time::sleep(ANNOUNCE_RETRY), if failed => {}
                    }
                }
            }
            .in_current_span(),
        )
    }

    /// Answers a `/cnode/rpc/1` request from `peer` (the encoded
    /// [`RpcResponse`]).
    pub async fn handle_inbound(&self, peer: PeerId, data: &[u8]) -> Vec<u8> {
        self.serve(peer, data).await.encode()
    }

    async fn serve(&self, peer: PeerId, data: &[u8]) -> RpcResponse {
        if !self.take_token(peer) {
            self.inner.metrics.rate_limited.inc();
            return RpcResponse::error(
                ErrorCode::RateLimited,
                format!(
                    "more than {} service calls per second",
                    self.inner.config.requests_per_sec
                ),
            );
        }
        let call = match RpcRequest::decode(data) {
            Ok(c) => c,
            Err(DecodeError::Oversized(n)) => {
                return RpcResponse::error(
                    ErrorCode::TooLarge,
                    format!("the request is {n} bytes, over the {MAX_REQUEST}-byte limit"),
                );
            }
            Err(e) => return RpcResponse::error(ErrorCode::BadRequest, e.to_string()),
        };
        let Ok(_permit) = self.inner.slots.clone().try_acquire_owned() else {
            self.inner.metrics.busy.inc();
            return RpcResponse::error(ErrorCode::Busy, "every slot for forwarded calls is busy");
        };
        let id = call.service;
        let mut request = call.request;
        request
            .headers
            .retain(|(n, _)| SAFE_REQUEST_HEADERS.contains(&n.to_ascii_lowercase().as_str()));
        match self.inner.plugins.call(&id, request).await {
            Ok(answer) => {
                self.inner.metrics.served.inc();
                debug!(%peer, service = %id, status = answer.status, "served a forwarded call");
                RpcResponse::answer(answer)
            }
            Err(e) => {
                let code = match &e {
                    CallError::NotLoaded(_) if self.inner.plugins.is_installed(&id) => {
                        ErrorCode::Disabled
                    }
                    CallError::NotLoaded(_) => ErrorCode::NotServed,
                    CallError::NoRoute { .. } => ErrorCode::NoRoute,
                    CallError::Trap { .. }
                    | CallError::MemoryLimit { .. }
                    | CallError::Instantiate { .. } => ErrorCode::Trap,
                    CallError::Timeout { .. } | CallError::OutOfFuel { .. } => ErrorCode::TimeLimit,
                    CallError::Busy { .. } => ErrorCode::Busy,
                };
                let message = match code {
                    ErrorCode::NotServed => format!("{id} is not served here"),
                    ErrorCode::Disabled => format!("{id} is installed but not running here"),
                    _ => e.to_string(),
                };
                RpcResponse::error(code, message)
            }
        }
    }

    fn take_token(&self, peer: PeerId) -> bool {
        self.inner
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(peer, Instant::now())
    }

    /// Forwards a call for `service` (not run here) to nodes that run it and
    /// returns the first answer. Only [`SAFE_REQUEST_HEADERS`] are sent.
    ///
    /// Cancel-safe: dropping the future drops the requests in flight.
    pub async fn forward(
        &self,
        service: &PluginId,
        mut request: Request,
    ) -> Result<Forwarded, ForwardError> {
        request
            .headers
            .retain(|(n, _)| SAFE_REQUEST_HEADERS.contains(&n.to_ascii_lowercase().as_str()));
        let bytes = RpcRequest::new(service.clone(), request)?.encode();
        let limit = self.inner.config.forward_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let outcome = tokio::time::timeout_at(deadline, self.forward_inner(service, bytes)).await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(ForwardError::TimedOut {
                service: service.clone(),
                limit,
            }),
        };
        match &result {
            Ok(_) => self.inner.metrics.forwarded.inc(),
            Err(_) => self.inner.metrics.forward_failed.inc(),
        };
        result
    }

    async fn forward_inner(
        &self,
        service: &PluginId,
        bytes: Vec<u8>,
    ) -> Result<Forwarded, ForwardError> {
        let mut tried: HashSet<PeerId> = HashSet::new();
        let (mut not_served, mut last_failure) = (0usize, None::<String>);
        let cached = self.cached(service);
        // First the peers that answered lately; then (or only) the DHT.
        let rounds = if cached.is_empty() { 1 } else { 2 };
        for round in 0..rounds {
            let candidates = if round == 0 && !cached.is_empty() {
                cached.clone()
            } else {
                self.providers(service).await
            };
            let candidates: VecDeque<PeerId> = candidates
                .into_iter()
                .filter(|p| !tried.contains(p))
                .take(MAX_CANDIDATES)
                .collect();
            tried.extend(candidates.iter().copied());
            match self.ask_all(service, &bytes, candidates).await {
                Ok(answer) => return Ok(answer),
                Err((n, failure)) => {
                    not_served += n;
                    if failure.is_some() {
                        last_failure = failure;
                    }
                }
            }
        }
        self.forget(service);
        match last_failure {
            Some(last) => Err(ForwardError::AllFailed {
                service: service.clone(),
                asked: tried.len(),
                last,
            }),
            None => Err(ForwardError::NotServed {
                service: service.clone(),
                asked: not_served,
            }),
        }
    }

    /// Asks `candidates`, a few at a time (see the module docs). Without an
    /// answer: how many said "not served", and the last other failure.
    async fn ask_all(
        &self,
        service: &PluginId,
        bytes: &[u8],
        mut queue: VecDeque<PeerId>,
    ) -> Result<Forwarded, (usize, Option<String>)> {
        let (mut not_served, mut last_failure) = (0usize, None);
        let mut running = FuturesUnordered::new();
        let stagger = self.inner.config.stagger;
        let mut next_start = tokio::time::Instant::now();
        loop {
            let now = tokio::time::Instant::now();
            if running.len() < self.inner.config.in_flight.max(1)
                && (running.is_empty() || now >= next_start)
                && let Some(peer) = queue.pop_front()
            {
                running.push(self.ask(peer, bytes.to_vec()));
                next_start = now + stagger;
                continue;
            }
            if running.is_empty() {
                return Err((not_served, last_failure));
            }
            let can_start = !queue.is_empty() && running.len() < self.inner.config.in_flight;
            tokio::select! {
                Some((peer, attempt)) = running.next() => match attempt {
                    Attempt::Final(answer) => {
                        self.remember(service, peer);
                        return Ok(Forwarded { peer, answer });
                    }
                    Attempt::NotServed(why) => {
                        debug!(%peer, %service, "not served there: {why}");
                        not_served += 1;
                        next_start = tokio::time::Instant::now();
                    }
                    Attempt::Failed(why) => {
                        debug!(%peer, %service, "forwarded call failed: {why}");
                        last_failure = Some(format!("{peer}: {why}"));
                        next_start = tokio::time::Instant::now();
                    }
                },
                _ = tokio::time::sleep_until(next_start), if can_start => {}
            }
        }
    }

    async fn ask(&self, peer: PeerId, bytes: Vec<u8>) -> (PeerId, Attempt) {
        let answer = match self.inner.net.request(peer, ReqProtocol::Rpc, bytes).await {
            Ok(a) => a,
            Err(e) => return (peer, Attempt::Failed(e.to_string())),
        };
        let attempt = match RpcResponse::decode(&answer) {
            Ok(RpcResponse::Answer(r)) => Attempt::Final(Ok(r)),
            Ok(RpcResponse::Error { code, message }) if code.is_final() => {
                Attempt::Final(Err(RemoteError {
                    peer,
                    code,
                    message,
                }))
            }
            Ok(RpcResponse::Error {
                code: code @ (ErrorCode::NotServed | ErrorCode::Disabled),
                message,
            }) => Attempt::NotServed(format!("{}: {message}", code.name())),
            Ok(RpcResponse::Error { code, message }) => {
                Attempt::Failed(format!("{}: {message}", code.name()))
            }
            Err(e) => Attempt::Failed(format!("bad answer: {e}")),
        };
        (peer, attempt)
    }

    /// DHT providers of the service other than us, connected peers first.
    async fn providers(&self, service: &PluginId) -> Vec<PeerId> {
        let net = &self.inner.net;
        let found = tokio::time::timeout(PROVIDER_LOOKUP, net.get_providers(provider_key(service)))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let connected: HashSet<String> = net
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.peer_id)
            .collect();
        let me = net.local_peer_id();
        let mut providers: Vec<PeerId> = found.into_iter().filter(|p| *p != me).collect();
        providers.sort_by_key(|p| !connected.contains(&p.to_string()));
        providers
    }

    fn cached(&self, service: &PluginId) -> Vec<PeerId> {
        let mut cache = self.lock_cache();
        match cache.get(service) {
            Some((peers, until)) if *until > Instant::now() => peers.clone(),
            Some(_) => {
                cache.remove(service);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    fn remember(&self, service: &PluginId, peer: PeerId) {
        let ttl = self.inner.config.cache_ttl;
        let mut cache = self.lock_cache();
        if cache.len() >= MAX_CACHED_SERVICES && !cache.contains_key(service) {
            let now = Instant::now();
            cache.retain(|_, (_, until)| *until > now);
            if cache.len() >= MAX_CACHED_SERVICES {
                cache.clear();
            }
        }
        let (peers, until) = cache
            .entry(service.clone())
            .or_insert_with(|| (Vec::new(), Instant::now()));
        peers.retain(|p| *p != peer);
        peers.insert(0, peer);
        peers.truncate(MAX_CANDIDATES);
        *until = Instant::now() + ttl;
    }

    fn forget(&self, service: &PluginId) {
        self.lock_cache().remove(service);
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<PluginId, (Vec<PeerId>, Instant)>> {
        self.inner
            .served_by
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A token bucket per peer: `burst` calls at once, then `rate` per second.
#[derive(Debug)]
struct Buckets {
    rate: f64,
    burst: f64,
    /// Per peer: tokens left and when they were last counted.
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl Buckets {
    fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst: burst.max(1.0),
            peers: HashMap::new(),
        }
    }

    fn take(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.peers.len() >= MAX_BUCKETS && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        let (tokens, last) = self.peers.entry(peer).or_insert((self.burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_allows_a_burst_then_the_rate() {
        let mut b = Buckets::new(10.0, 5.0);
        let (p, q) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(b.take(p, t0));
        }
        assert!(!b.take(p, t0), "over the burst");
        // Another peer has its own bucket.
        assert!(b.take(q, t0));
        // 10 per second: one token back after 100 ms, not more than the burst.
        assert!(b.take(p, t0 + Duration::from_millis(110)));
        assert!(!b.take(p, t0 + Duration::from_millis(120)));
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.take(p, later));
        }
        assert!(!b.take(p, later));
    }

    #[test]
    fn provider_keys_name_the_service() {
        let id: PluginId = "org.cnode.events".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider_key(&id), b"cnode/service/org.cnode.events");
    }
}
