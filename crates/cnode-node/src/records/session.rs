//! Reconciliation sessions of the records service over `/cnode/sync/1`:
//! the initiator's pipeline (negentropy rounds, batched fetches validated on
//! the blocking pool, storage) and the rate-limited responder.

use std::collections::HashSet;
use std::time::Instant;

use cnode_net::{PeerId, ReqProtocol};
use cnode_records::sync::{self, SyncRequest, SyncResponse};
use cnode_records::validate::Path as Arrival;
use cnode_records::{Record, RecordId};
use cnode_types::RegionId;
use tracing::warn;

use cnode_records::now_ms;

use super::{RecordError, RecordService};

/// Ids fetched per round trip (the protocol's maximum).
const FETCH_BATCH: usize = sync::MAX_FETCH_IDS;
/// Fetch requests in flight per session.
const FETCHES_IN_FLIGHT: usize = 3;
/// The most ids one session pulls; the rest waits for the next session.
const MAX_NEED_PER_SESSION: usize = 2_000_000;
/// The most records stored in one transaction during a session.
const STORE_BATCH: usize = 4096;

/// Inbound sync requests one peer may make per second (burst = 4 s worth).
const SYNC_REQUESTS_PER_SEC: f64 = 200.0;

/// The outcome of one reconciliation session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Negentropy rounds.
    pub rounds: usize,
    /// Records the peer had and we lacked.
    pub needed: usize,
    /// Records stored from the peer.
    pub stored: usize,
    /// Bytes sent and received.
    pub wire_bytes: usize,
    /// From the start until the set difference was known (the last
    /// negentropy round).
    pub reconcile_time: std::time::Duration,
    /// From the start until the last record was fetched and validated.
    pub fetch_time: std::time::Duration,
}

impl RecordService {
    /// Reconciles `region` with `peer` now and pulls what we lack, unless a
    /// session with that peer for that region is already running
    /// ([`SyncFailure::Busy`]).
    pub async fn sync_now(
        &self,
        peer: PeerId,
        region: RegionId,
    ) -> Result<SyncReport, SyncFailure> {
        let claimed = self
            .inner
            .syncing
            .lock()
            .is_ok_and(|mut s| s.insert((peer, region)));
        if !claimed {
            return Err(SyncFailure::Busy);
        }
        let result = self.sync_with(peer, region).await;
        if let Ok(mut s) = self.inner.syncing.lock() {
            s.remove(&(peer, region));
        }
        result
    }

    /// One session, as a three-stage pipeline so the network, the CPU and
    /// the disk work at the same time: (1) negentropy rounds yield the ids we
    /// lack, (2) they are fetched in batches of 1024 and validated on two
    /// threads, (3) valid records are stored. Bounded queues between the
    /// stages keep memory flat.
    async fn sync_with(&self, peer: PeerId, region: RegionId) -> Result<SyncReport, SyncFailure> {
        let snapshot = {
            let mut regions = self.lock_regions();
            let set = regions.get_mut(&region).ok_or(SyncFailure::NotServed)?;
            set.snapshot()
        };
        self.inner.metrics.sync_sessions.inc();
        let (need_tx, mut need_rx) = tokio::sync::mpsc::channel::<Vec<RecordId>>(8);
        let (valid_tx, mut valid_rx) = tokio::sync::mpsc::channel::<Vec<(RecordId, Record)>>(2);

        let started = std::time::Instant::now();
        let reconcile = async move {
            let (mut wire, mut rounds, mut needed) = (0usize, 0usize, 0usize);
            let (mut reconciler, mut msg) = sync::Reconciler::start(snapshot)?;
            loop {
                let request = SyncRequest::Reconcile { region, msg };
                let answer = self.ask(peer, request, &mut wire).await?;
                let SyncResponse::Reconcile(answer) = answer else {
                    return Err(SyncFailure::Peer("unexpected answer to reconcile".into()));
                };
                let round = reconciler.step(&answer)?;
                rounds += 1;
                let mut ids = round.need;
                ids.truncate(MAX_NEED_PER_SESSION.saturating_sub(needed));
                needed += ids.len();
                if !ids.is_empty() && need_tx.send(ids).await.is_err() {
                    break; // a later stage failed; its error is reported
                }
                match round.next {
                    Some(next) if needed < MAX_NEED_PER_SESSION => msg = next,
                    _ => break,
                }
            }
            Ok::<_, SyncFailure>((wire, rounds, needed, started.elapsed()))
        };

        let fetch = async move {
            let mut wire = 0usize;
            let mut queue: std::collections::VecDeque<RecordId> = Default::default();
            let mut inflight = futures::stream::FuturesUnordered::new();
            let mut open = true;
            loop {
                // Take what stage 1 has found: wait for it only when there
                // is nothing else to do.
                while open && queue.len() < FETCH_BATCH * FETCHES_IN_FLIGHT {
                    let next = if inflight.is_empty() && queue.len() < FETCH_BATCH {
                        need_rx.recv().await
                    } else {
                        match need_rx.try_recv() {
                            Ok(ids) => Some(ids),
                            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => None,
                        }
                    };
                    match next {
                        Some(ids) => queue.extend(ids),
                        None => open = false,
                    }
                }
                while inflight.len() < FETCHES_IN_FLIGHT
                    && !queue.is_empty()
                    && (queue.len() >= FETCH_BATCH || !open)
                {
                    let take = queue.len().min(FETCH_BATCH);
                    let ids: Vec<RecordId> = queue.drain(..take).collect();
                    inflight.push(self.fetch_batch(peer, region, ids));
                }
                let Some(result) = futures::StreamExt::next(&mut inflight).await else {
                    if queue.is_empty() && !open {
                        break;
                    }
                    continue;
                };
                let (valid, leftover, bytes) = result?;
                wire += bytes;
                queue.extend(leftover);
                if !valid.is_empty() && valid_tx.send(valid).await.is_err() {
                    break;
                }
            }
            Ok::<_, SyncFailure>((wire, started.elapsed()))
        };

        let store = async move {
            let mut stored = 0usize;
            while let Some(mut batch) = valid_rx.recv().await {
                // Whatever else is already waiting goes in the same
                // transaction: fewer commits, each page of the indexes
                // written once for more records.
                while batch.len() < STORE_BATCH {
                    match valid_rx.try_recv() {
                        Ok(more) => batch.extend(more),
                        Err(_) => break,
                    }
                }
                stored += self.store_many(batch, now_ms()).await?;
            }
            Ok::<_, SyncFailure>(stored)
        };

        let (reconciled, fetched, stored) = tokio::join!(reconcile, fetch, store);
        let (wire_a, rounds, needed, reconcile_time) = reconciled?;
        let (wire_b, fetch_time) = fetched?;
        let stored = stored?;
        let report = SyncReport {
            rounds,
            needed,
            stored,
            wire_bytes: wire_a + wire_b,
            reconcile_time,
            fetch_time,
        };
        self.inner.metrics.sync_pulled.inc_by(stored as u64);
        self.inner
            .metrics
            .sync_wire_bytes
            .inc_by(report.wire_bytes as u64);
        Ok(report)
    }

    /// Fetches one batch of ids and validates what comes back; returns the
    /// valid records, the ids to ask again (the response was cut at its size
    /// budget) and the bytes on the wire.
    async fn fetch_batch(
        &self,
        peer: PeerId,
        region: RegionId,
        ids: Vec<RecordId>,
    ) -> Result<(Vec<(RecordId, Record)>, Vec<RecordId>, usize), SyncFailure> {
        let mut wire = 0;
        let asked: HashSet<RecordId> = ids.iter().copied().collect();
        let request = SyncRequest::Fetch {
            region,
            ids: ids.clone(),
        };
        let SyncResponse::Records(encoded) = self.ask(peer, request, &mut wire).await? else {
            return Err(SyncFailure::Peer("unexpected answer to fetch".into()));
        };
        if encoded.is_empty() {
            // The peer no longer has them; a later session will tell.
            return Ok((Vec::new(), Vec::new(), wire));
        }
        let leftover = ids[encoded.len().min(ids.len())..].to_vec();
        let now = now_ms();
        // Signature checks are CPU work: two halves on the blocking pool.
        let half = encoded.len().div_ceil(2);
        let second = encoded[half..].to_vec();
        let mut first = encoded;
        first.truncate(half);
        let (a, b) = tokio::join!(
            self.validate_batch(first, region, now),
            self.validate_batch(second, region, now)
        );
        let mut valid = Vec::with_capacity(half * 2);
        for checked in a.into_iter().chain(b) {
            match checked {
                Ok((id, r)) if asked.contains(&id) => valid.push((id, r)),
                Ok(_) => self.count_reject_label("unrequested"),
                Err(label) => self.count_reject_label(label),
            }
        }
        Ok((valid, leftover, wire))
    }

    /// Decodes and validates fetched records (sync path) on the blocking
    /// pool; each result is the record with its id, or the reject label.
    async fn validate_batch(
        &self,
        encoded: Vec<Vec<u8>>,
        region: RegionId,
        now: u64,
    ) -> Vec<Result<(RecordId, Record), &'static str>> {
        if encoded.is_empty() {
            return Vec::new();
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            encoded
                .iter()
                .map(|bytes| {
                    match this
                        .inner
                        .validator
                        .decode_and_validate(bytes, Arrival::Sync, now)
                    {
                        Ok(r) if r.region_prefix() == Some(region.as_str()) => {
                            Ok((RecordId::of_encoded(bytes), r))
                        }
                        Ok(_) => Err("other_region"),
                        Err(reject) => Err(reject.label()),
                    }
                })
                .collect()
        })
        .await
        .unwrap_or_default()
    }

    async fn ask(
        &self,
        peer: PeerId,
        request: SyncRequest,
        wire_bytes: &mut usize,
    ) -> Result<SyncResponse, SyncFailure> {
        let bytes = request.encode();
        *wire_bytes += bytes.len();
        let answer = self
            .inner
            .net
            .request(peer, ReqProtocol::Sync, bytes)
            .await
            .map_err(|e| SyncFailure::Peer(e.to_string()))?;
        *wire_bytes += answer.len();
        match SyncResponse::decode(&answer)? {
            SyncResponse::Refused(reason) => Err(SyncFailure::Peer(format!("refused: {reason}"))),
            other => Ok(other),
        }
    }

    /// Answers a `/cnode/sync/1` request from `peer`.
    pub async fn handle_request(&self, peer: PeerId, data: &[u8]) -> Vec<u8> {
        if !self.inbound_allowed(peer) {
            return SyncResponse::Refused("rate limited".into()).encode();
        }
        let request = match SyncRequest::decode(data) {
            Ok(r) => r,
            Err(e) => return SyncResponse::Refused(e.to_string()).encode(),
        };
        match request {
            SyncRequest::Reconcile { region, msg } => {
                let snapshot = {
                    let mut regions = self.lock_regions();
                    match regions.get_mut(&region) {
                        Some(set) => set.snapshot(),
                        None => return refused_not_served(&region),
                    }
                };
                // Fingerprinting a large set is CPU work: off the runtime.
                let answer =
                    tokio::task::spawn_blocking(move || sync::respond(snapshot, &msg)).await;
                match answer {
                    Ok(Ok(msg)) => SyncResponse::Reconcile(msg).encode(),
                    Ok(Err(e)) => SyncResponse::Refused(e.to_string()).encode(),
                    Err(_) => SyncResponse::Refused("internal error".into()).encode(),
                }
            }
            SyncRequest::Fetch { region, ids } => {
                if !self.serves(&region) {
                    return refused_not_served(&region);
                }
                match self.inner.store.get_encoded_many(ids).await {
                    Ok(encoded) => {
                        let mut budget = sync::RECORDS_RESPONSE_BUDGET;
                        let records = encoded
                            .into_iter()
                            .take_while(|r| {
                                let fits = r.len() + 4 <= budget;
                                budget = budget.saturating_sub(r.len() + 4);
                                fits
                            })
                            .collect();
                        SyncResponse::Records(records).encode()
                    }
                    Err(e) => {
                        warn!("cannot read records for a peer: {e}");
                        SyncResponse::Refused("internal error".into()).encode()
                    }
                }
            }
        }
    }

    /// A token bucket per peer for inbound sync requests.
    fn inbound_allowed(&self, peer: PeerId) -> bool {
        let Ok(mut budgets) = self.inner.inbound_budget.lock() else {
            return false;
        };
        if budgets.len() > 4096 {
            budgets.clear();
        }
        let now = Instant::now();
        let burst = SYNC_REQUESTS_PER_SEC * 4.0;
        let (tokens, last) = budgets.entry(peer).or_insert((burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * SYNC_REQUESTS_PER_SEC).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refused_not_served(region: &RegionId) -> Vec<u8> {
    SyncResponse::Refused(format!("region {} not served", region.as_str())).encode()
}

/// Why a reconciliation session failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncFailure {
    /// We do not serve the region.
    #[error("region not served here")]
    NotServed,
    /// A session with this peer for this region is already running.
    #[error("already reconciling with this peer")]
    Busy,
    /// The peer failed, refused or answered nonsense.
    #[error("peer: {0}")]
    Peer(String),
    /// The protocol failed.
    #[error(transparent)]
    Protocol(#[from] sync::SyncError),
    /// Storing failed.
    #[error(transparent)]
    Record(#[from] RecordError),
}
