//! The node's records service: the regions it serves, and how their records
//! arrive, are checked, stored and spread.
//!
//! - Serving a region = holding all its records, subscribing to its gossip
//!   topic `cnode/1/region/<gh4>`, advertising the DHT provider key
//!   `cnode/region/<gh4>` and keeping a few connections to other nodes of the
//!   region.
//! - New records travel by gossip; gossipsub forwards a message only after
//!   this service accepted it (validated and stored), so invalid records are
//!   never forwarded.
//! - Missed records are pulled by set reconciliation (`/cnode/sync/1`) with a
//!   peer of the region when it connects and every `sync_interval`.
//! - Every record from anywhere passes the same validator before it is
//!   stored; rejections are counted per reason in the metrics.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cnode_net::{GossipId, GossipVerdict, NetClient, PeerId};
use cnode_records::store::{InsertOutcome, Query, QueryPage, RecordStore, StoredRecord};
use cnode_records::sync::RegionSet;
use cnode_records::validate::{Path as Arrival, Reject, Validator};
use cnode_records::{Record, RecordId, now_ms};
use cnode_types::RegionId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

mod session;

pub use session::{SyncFailure, SyncReport};

/// New records fanned out to in-process subscribers (the API's stream).
const NEW_RECORDS_CAPACITY: usize = 1024;
/// Peers of a region this node tries to stay connected to.
const REGION_PEERS_WANTED: usize = 3;
/// Peers one periodic round reconciles with, per region.
const SYNC_PEERS_PER_ROUND: usize = 2;
/// Delay after a connection before reconciling (gossipsub subscriptions
/// are exchanged first, which tells us what the peer serves).
const SYNC_AFTER_CONNECT: Duration = Duration::from_millis(800);
/// How often expired records are swept.
const EXPIRY_SWEEP: Duration = Duration::from_secs(30);
/// Gossiped records validated and stored at once; more are ignored.
pub const MAX_GOSSIP_IN_FLIGHT: usize = 512;

/// Settings of the records service.
#[derive(Debug, Clone)]
pub struct RecordsConfig {
    /// Regions served from the start (besides those joined at run time).
    pub regions: Vec<RegionId>,
    /// Subscribe to the regions' gossip topics (off: reconciliation only).
    pub gossip: bool,
    /// How often to reconcile with peers of each region.
    pub sync_interval: Duration,
    /// Reconcile with a region peer soon after it connects, and with the
    /// region's peers right after joining it (off: only every
    /// `sync_interval`).
    pub sync_on_connect: bool,
    /// Where the regions joined at run time are remembered.
    pub regions_file: PathBuf,
}

/// Why a record was not taken.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The record broke a rule.
    #[error("record rejected: {0}")]
    Rejected(#[from] Reject),
    /// The node does not serve the record's region and no peer of it is known.
    #[error(
        "this node does not serve region {0} and knows no node that does; join it with `cnode region join {0}`"
    )]
    RegionNotServed(String),
    /// The database failed.
    #[error("record store: {0}")]
    Store(#[from] cnode_records::store::RecordStoreError),
    /// The network is gone (shutting down).
    #[error("the node is shutting down")]
    Closed,
}

/// What happened to a posted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// Stored here and published to the region.
    Stored {
        /// The record's id.
        id: RecordId,
    },
    /// Already here (same record, or a newer one holds the slot).
    Unchanged {
        /// The record's id.
        id: RecordId,
    },
    /// Not a region this node serves: published to the region's nodes only.
    Forwarded {
        /// The record's id.
        id: RecordId,
    },
}

/// One served region, as listed by `cnode region ls`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct RegionInfo {
    /// The 4-character geohash.
    pub region: String,
    /// Records held for it.
    pub records: usize,
    /// Connected peers that serve it too.
    pub peers: usize,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Counters of the records service.
#[derive(Debug, Clone, Default)]
pub struct RecordMetrics {
    stored: Counter,
    rejected: Family<ReasonLabel, Counter>,
    sync_sessions: Counter,
    sync_pulled: Counter,
    sync_wire_bytes: Counter,
}

impl RecordMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "records_stored",
            "Records stored (new or replacing an older one)",
            self.stored.clone(),
        );
        registry.register(
            "records_rejected",
            "Records rejected, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "sync_sessions",
            "Reconciliation sessions run",
            self.sync_sessions.clone(),
        );
        registry.register(
            "sync_pulled",
            "Records stored from reconciliation",
            self.sync_pulled.clone(),
        );
        registry.register(
            "sync_wire_bytes",
            "Bytes sent and received by reconciliation sessions we started",
            self.sync_wire_bytes.clone(),
        );
    }

    /// Records rejected for `reason` (a [`Reject::label`]).
    pub fn rejected(&self, reason: &str) -> u64 {
        self.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .get()
    }
}

struct Inner {
    store: RecordStore,
    validator: Validator,
    net: NetClient,
    config: RecordsConfig,
    regions: Mutex<BTreeMap<RegionId, RegionSet>>,
    new_records: broadcast::Sender<Arc<StoredRecord>>,
    metrics: RecordMetrics,
    syncing: Mutex<HashSet<(PeerId, RegionId)>>,
    gossip_slots: Arc<tokio::sync::Semaphore>,
    inbound_budget: Mutex<HashMap<PeerId, (f64, Instant)>>,
}

/// The records service. Cheap to clone.
#[derive(Clone)]
pub struct RecordService {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RecordService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordService").finish_non_exhaustive()
    }
}

fn provider_key(region: &RegionId) -> Vec<u8> {
    format!("cnode/region/{}", region.as_str()).into_bytes()
}

fn region_of_topic(topic: &str) -> Option<RegionId> {
    topic
        .strip_prefix(cnode_net::VALIDATED_TOPIC_PREFIX)?
        .parse()
        .ok()
}

impl RecordService {
    /// A service over the node's store and network; call [`Self::start`].
    pub fn new(
        store: cnode_store::Store,
        net: NetClient,
        config: RecordsConfig,
        registry: &mut Registry,
    ) -> Self {
        let metrics = RecordMetrics::default();
        metrics.register(registry);
        let (new_records, _) = broadcast::channel(NEW_RECORDS_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                store: RecordStore::new(store),
                validator: Validator::default(),
                net,
                config,
                regions: Mutex::new(BTreeMap::new()),
                new_records,
                metrics,
                syncing: Mutex::new(HashSet::new()),
                gossip_slots: Arc::new(tokio::sync::Semaphore::new(MAX_GOSSIP_IN_FLIGHT)),
                inbound_budget: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Joins the configured and remembered regions and starts the periodic
    /// work (reconciliation, expiry, region connections) until `cancel`.
    pub async fn start(&self, cancel: CancellationToken) {
        let mut regions = self.inner.config.regions.clone();
        regions.extend(self.remembered_regions());
        for region in regions {
            if let Err(e) = self.join_inner(region, false).await {
                warn!(%region, "cannot join region: {e}");
            }
        }
        let this = self.clone();
        tokio::spawn(
            async move {
                let mut sync_tick = tokio::time::interval(this.inner.config.sync_interval);
                let mut expiry_tick = tokio::time::interval(EXPIRY_SWEEP);
                sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = sync_tick.tick() => this.periodic_sync().await,
                        _ = expiry_tick.tick() => this.sweep_expired().await,
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// The store (queries, lookups).
    pub fn store(&self) -> &RecordStore {
        &self.inner.store
    }

    /// The service's counters.
    pub fn metrics(&self) -> &RecordMetrics {
        &self.inner.metrics
    }

    /// New records as they are stored (from any source).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredRecord>> {
        self.inner.new_records.subscribe()
    }

    /// The regions served, with record and peer counts.
    pub async fn regions(&self) -> Vec<RegionInfo> {
        let served: Vec<(RegionId, usize)> = {
            let mut regions = self.lock_regions();
            regions.iter_mut().map(|(r, set)| (*r, set.len())).collect()
        };
        let mut out = Vec::with_capacity(served.len());
        for (region, records) in served {
            let peers = self
                .inner
                .net
                .topic_peers(region.topic())
                .await
                .map_or(0, |p| p.len());
            out.push(RegionInfo {
                region: region.as_str().to_string(),
                records,
                peers,
            });
        }
        out
    }

    /// True when this node serves `region`.
    pub fn serves(&self, region: &RegionId) -> bool {
        self.lock_regions().contains_key(region)
    }

    /// Starts serving `region`; false when it already did.
    pub async fn join(&self, region: RegionId) -> Result<bool, RecordError> {
        self.join_inner(region, true).await
    }

    async fn join_inner(&self, region: RegionId, remember: bool) -> Result<bool, RecordError> {
        if self.serves(&region) {
            return Ok(false);
        }
        let items = self.inner.store.sync_items(region).await?;
        let set = RegionSet::from_items(items);
        self.lock_regions().insert(region, set);
        if self.inner.config.gossip {
            let _ = self.inner.net.subscribe(region.topic()).await;
        }
        if remember {
            self.remember_regions();
        }
        info!(%region, "serving region");
        let this = self.clone();
        tokio::spawn(
            async move {
                if let Err(e) = this.inner.net.start_providing(provider_key(&region)).await {
                    debug!(%region, "cannot announce the region yet: {e}");
                }
                this.connect_region_peers(region).await;
                if this.inner.config.sync_on_connect {
                    for peer in this.region_peers(region).await {
                        this.spawn_sync(peer, region);
                    }
                }
            }
            .in_current_span(),
        );
        Ok(true)
    }

    /// Stops serving `region` and deletes its records here; false when it
    /// was not served.
    pub async fn leave(&self, region: RegionId) -> Result<bool, RecordError> {
        if self.lock_regions().remove(&region).is_none() {
            return Ok(false);
        }
        self.remember_regions();
        let _ = self.inner.net.unsubscribe(region.topic()).await;
        let _ = self.inner.net.stop_providing(provider_key(&region)).await;
        let dropped = self.inner.store.drop_region(region).await?;
        info!(%region, dropped, "left region");
        Ok(true)
    }

    /// Takes a record from this node's user (API or CLI): validates it as a
    /// live record, stores it if the region is served, and publishes it.
    pub async fn post(&self, record: Record) -> Result<Posted, RecordError> {
        let now = now_ms();
        if let Err(reject) = self.inner.validator.validate(&record, Arrival::Live, now) {
            self.count_reject(&reject);
            return Err(reject.into());
        }
        let region = record
            .region_prefix()
            .and_then(|r| r.parse::<RegionId>().ok())
            .ok_or_else(|| RecordError::RegionNotServed(record.region.clone()))?;
        let encoded = record.encode();
        let id = RecordId::of_encoded(&encoded);
        if !self.serves(&region) {
            return match self.inner.net.publish(region.topic(), encoded).await {
                Ok(()) => Ok(Posted::Forwarded { id }),
                Err(_) => Err(RecordError::RegionNotServed(region.as_str().to_string())),
            };
        }
        let stored = self.store_many(vec![(id, record)], now).await?;
        if stored == 0 {
            return Ok(Posted::Unchanged { id });
        }
        // Nobody else in the region yet is fine: sync will carry it later.
        let _ = self.inner.net.publish(region.topic(), encoded).await;
        Ok(Posted::Stored { id })
    }

    /// Stores validated records (with their ids, which every caller already
    /// has from the canonical bytes) and updates the region sets; returns
    /// how many were new or replaced an older one.
    async fn store_many(
        &self,
        records: Vec<(RecordId, Record)>,
        now: u64,
    ) -> Result<usize, RecordError> {
        let keep: Vec<(Option<RegionId>, u64, RecordId)> = records
            .iter()
            .map(|(id, r)| {
                (
                    r.region_prefix().and_then(|p| p.parse().ok()),
                    r.created_at,
                    *id,
                )
            })
            .collect();
        let fanout = self.inner.new_records.receiver_count() > 0;
        let (ids, records): (Vec<RecordId>, Vec<Record>) = records.into_iter().unzip();
        let fanout = fanout.then(|| records.clone());
        let outcomes = self.inner.store.insert_many(records, now).await?;
        let mut stored = 0;
        {
            let mut regions = self.lock_regions();
            for ((region, created_at, id), outcome) in keep.iter().zip(&outcomes) {
                if let InsertOutcome::Inserted { replaced } = outcome {
                    stored += 1;
                    if let Some(set) = region.as_ref().and_then(|r| regions.get_mut(r)) {
                        set.insert(*created_at, *id);
                        if let Some((old_at, old_id)) = replaced {
                            set.remove(*old_at, *old_id);
                        }
                    }
                }
            }
        }
        self.inner.metrics.stored.inc_by(stored as u64);
        for ((id, record), outcome) in ids
            .into_iter()
            .zip(fanout.into_iter().flatten())
            .zip(&outcomes)
        {
            if matches!(outcome, InsertOutcome::Inserted { .. }) {
                let _ = self.inner.new_records.send(Arc::new(StoredRecord {
                    id,
                    record,
                    received_ms: now,
                    distance_m: None,
                }));
            }
        }
        Ok(stored)
    }

    fn count_reject(&self, reject: &Reject) {
        self.count_reject_label(reject.label());
    }

    /// A gossip message on a region topic: validate, store, and tell
    /// gossipsub whether to forward it. At most [`MAX_GOSSIP_IN_FLIGHT`]
    /// are checked at once; beyond that a message is ignored (not
    /// forwarded, no penalty) and reconciliation brings it later.
    pub async fn on_gossip(&self, topic: &str, data: &[u8], pending: Option<GossipId>) {
        let verdict = match self.inner.gossip_slots.clone().try_acquire_owned() {
            Ok(_permit) => self.gossip_verdict(topic, data).await,
            Err(_) => {
                self.count_reject_label("overloaded");
                GossipVerdict::Ignore
            }
        };
        if let Some(id) = pending {
            let _ = self.inner.net.report_gossip(id, verdict).await;
        }
    }

    async fn gossip_verdict(&self, topic: &str, data: &[u8]) -> GossipVerdict {
        let Some(region) = region_of_topic(topic) else {
            return GossipVerdict::Ignore;
        };
        if !self.serves(&region) {
            return GossipVerdict::Ignore;
        }
        let now = now_ms();
        let record = match self
            .inner
            .validator
            .decode_and_validate(data, Arrival::Live, now)
        {
            Ok(r) => r,
            Err(reject) => {
                debug!(%region, "gossiped record rejected: {reject}");
                self.count_reject(&reject);
                return GossipVerdict::Reject;
            }
        };
        if record.region_prefix() != Some(region.as_str()) {
            return GossipVerdict::Reject;
        }
        // `data` was accepted as canonical, so it is what the id hashes.
        let id = RecordId::of_encoded(data);
        match self.store_many(vec![(id, record)], now).await {
            Ok(0) => GossipVerdict::Ignore,
            Ok(_) => GossipVerdict::Accept,
            Err(e) => {
                warn!("cannot store a gossiped record: {e}");
                GossipVerdict::Ignore
            }
        }
    }

    /// A peer connected: reconcile the regions it serves with it, shortly.
    pub fn on_peer_connected(&self, peer: PeerId) {
        if !self.inner.config.sync_on_connect {
            return;
        }
        let this = self.clone();
        tokio::spawn(
            async move {
                tokio::time::sleep(SYNC_AFTER_CONNECT).await;
                let regions: Vec<RegionId> = this.lock_regions().keys().copied().collect();
                for region in regions {
                    if this.region_peers(region).await.contains(&peer) {
                        this.spawn_sync(peer, region);
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// Connected peers serving `region` (they are subscribed to its topic).
    async fn region_peers(&self, region: RegionId) -> Vec<PeerId> {
        self.inner
            .net
            .topic_peers(region.topic())
            .await
            .unwrap_or_default()
    }

    /// Dials providers of `region` until a few of its nodes are connected.
    async fn connect_region_peers(&self, region: RegionId) {
        let connected = self.region_peers(region).await;
        if connected.len() >= REGION_PEERS_WANTED {
            return;
        }
        let Ok(providers) = self.inner.net.get_providers(provider_key(&region)).await else {
            return;
        };
        let me = self.inner.net.local_peer_id();
        for peer in providers
            .into_iter()
            .filter(|p| *p != me && !connected.contains(p))
            .take(REGION_PEERS_WANTED - connected.len())
        {
            // The DHT knows its address; dialling by peer id is enough.
            let _ = self.inner.net.dial_peer(peer).await;
        }
    }

    fn spawn_sync(&self, peer: PeerId, region: RegionId) {
        let this = self.clone();
        tokio::spawn(
            async move {
                match this.sync_now(peer, region).await {
                    Ok(report) if report.needed > 0 => {
                        info!(%peer, %region, ?report, "reconciled")
                    }
                    Ok(_) | Err(SyncFailure::Busy) => {}
                    Err(e) => debug!(%peer, %region, "reconciliation failed: {e}"),
                }
            }
            .in_current_span(),
        );
    }

    async fn periodic_sync(&self) {
        let regions: Vec<RegionId> = self.lock_regions().keys().copied().collect();
        for region in regions {
            let mut peers = self.region_peers(region).await;
            if peers.len() < REGION_PEERS_WANTED {
                let this = self.clone();
                tokio::spawn(
                    async move { this.connect_region_peers(region).await }.in_current_span(),
                );
            }
            rand::seq::SliceRandom::shuffle(peers.as_mut_slice(), &mut rand::thread_rng());
            for peer in peers.into_iter().take(SYNC_PEERS_PER_ROUND) {
                self.spawn_sync(peer, region);
            }
        }
    }

    async fn sweep_expired(&self) {
        match self.inner.store.expire(now_ms()).await {
            Ok(gone) if !gone.is_empty() => {
                let mut regions = self.lock_regions();
                for (region, created_at, id) in &gone {
                    if let Some(set) = regions.get_mut(region) {
                        set.remove(*created_at, *id);
                    }
                }
                debug!(count = gone.len(), "expired records dropped");
            }
            Ok(_) => {}
            Err(e) => warn!("expiry sweep failed: {e}"),
        }
    }

    fn count_reject_label(&self, label: &str) {
        self.inner
            .metrics
            .rejected
            .get_or_create(&ReasonLabel {
                reason: label.to_string(),
            })
            .inc();
    }

    /// Runs a query against the local store.
    pub async fn query(&self, query: Query) -> Result<QueryPage, RecordError> {
        Ok(self.inner.store.query(query).await?)
    }

    fn lock_regions(&self) -> std::sync::MutexGuard<'_, BTreeMap<RegionId, RegionSet>> {
        // A panic while holding the lock cannot leave the sets half-updated
        // in a way that matters (they are rebuilt from the store on join).
        self.inner
            .regions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remembered_regions(&self) -> Vec<RegionId> {
        std::fs::read_to_string(&self.inner.config.regions_file)
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    fn remember_regions(&self) {
        let list: String = self
            .lock_regions()
            .keys()
            .map(|r| format!("{}\n", r.as_str()))
            .collect();
        let path = &self.inner.config.regions_file;
        let tmp = path.with_extension("tmp");
        let res = std::fs::write(&tmp, list).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            warn!(
                "cannot remember the served regions in {}: {e}",
                path.display()
            );
        }
    }
}
