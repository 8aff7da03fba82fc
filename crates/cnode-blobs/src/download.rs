//! Swarm download: fetch a blob's pieces from many peers at once.
//!
//! One task per download runs this state machine:
//! 1. find providers (the [`PeerRequester`] knows connected peers and the DHT)
//!    and ask each which pieces it has (`Have`), taking answers as they come:
//!    a provider that cannot be reached holds up nobody;
//! 2. learn the size and prove it: the last chunk is fetched with its proof and
//!    checked against the root hash before any room is reserved;
//! 3. request 1 MiB pieces rarest-first (ties broken at random, so leechers hold
//!    different pieces and trade), a bounded and adaptive number in flight per
//!    peer; when every missing piece is in flight, the last ones are asked of a
//!    second peer too (endgame), and the first verified answer wins;
//! 4. verify each piece against the root before writing it; a peer that sends
//!    a bad proof is dropped for this blob and counted as misbehaving;
//! 5. re-ask `Have` every 250 ms (leechers' bitfields grow) and look for new
//!    providers, until the blob is complete. A peer that answers "busy" (its
//!    upload slots are full) is asked less for a while, not dropped.
//!
//! Verified pieces are recorded as they land, so a download killed at any
//! point resumes without fetching them again.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use bao_tree::{BaoTree, ChunkNum, ChunkRanges, io::sync::DecodeResponseIter};
use cnode_types::{BlobHash, PeerId, Scatter, Scattered};
use futures::{StreamExt, stream::FuturesUnordered};
use rand::{RngCore, seq::SliceRandom};
use tracing::{debug, info, warn};

use crate::{
    protocol::{self, Request, Response, has_piece, piece_count},
    store::{BLOCK_SIZE, BlobError, BlobKind, BlobStore, Partial},
};

/// How often peers are asked again which pieces they have (leechers' sets
/// grow quickly; this is our stand-in for BitTorrent's pushed HAVE messages).
const HAVE_REFRESH: Duration = Duration::from_millis(250);
/// How often new providers are looked for during a download.
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(2);
/// Most piece requests in flight for one download, over all peers: bounds the
/// memory a download holds (each answer is up to a piece plus its proof).
/// 6 MiB in flight keeps a loopback or LAN swarm busy; 12 was no faster in
/// `bench/swarm.py` (1 GiB, 4 leechers: 9.0-9.4 s against 8.3-8.9 s with 6)
/// and peaked 7 MB higher per leecher.
pub const MAX_IN_FLIGHT: usize = 6;

/// How a download reaches peers. `cnode-node` implements it over libp2p; tests
/// can implement it over anything.
pub trait PeerRequester: Clone + Send + Sync + 'static {
    /// Sends one `/cnode/blobs/1` request to `peer` and returns its answer.
    fn request(
        &self,
        peer: PeerId,
        request: Vec<u8>,
    ) -> impl Future<Output = Result<Vec<u8>, String>> + Send;
    /// Peers to ask at once, known without a lookup: connected peers.
    fn peers(&self) -> impl Future<Output = Vec<PeerId>> + Send;
    /// Peers that announced `hash` (a DHT lookup). May take seconds: a
    /// download asks [`peers`](Self::peers) meanwhile and never waits for it.
    fn providers(&self, hash: BlobHash) -> impl Future<Output = Vec<PeerId>> + Send;
    /// As [`request`](Self::request), for a piece whose answer's layout is
    /// known: a requester that can read the answer by `plan` (straight into
    /// its buffer) answers [`Scattered::Split`]. The default asks the usual
    /// way and answers [`Scattered::Whole`].
    fn request_scattered(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        plan: Scatter,
    ) -> impl Future<Output = Result<Scattered, String>> + Send {
        drop(plan);
        let answer = self.request(peer, request);
        async move { answer.await.map(Scattered::Whole) }
    }
}

/// Settings of one download.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Pin the blob (it survives `gc`).
    pub pin: bool,
    /// Most requests in flight to one peer (the adaptive depth's ceiling).
    pub max_in_flight_per_peer: usize,
    /// Give up when no piece arrived for this long.
    pub stall_timeout: Duration,
    /// Peers to ask besides the requester's providers.
    pub extra_peers: Vec<PeerId>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            pin: true,
            max_in_flight_per_peer: 8,
            stall_timeout: Duration::from_secs(60),
            extra_peers: Vec::new(),
        }
    }
}

/// Progress of a download.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// The blob.
    pub hash: BlobHash,
    /// Its size, once known.
    pub size: Option<u64>,
    /// Verified bytes held.
    pub have_bytes: u64,
    /// Peers currently useful.
    pub peers: usize,
    /// Recent rate in bytes per second.
    pub bytes_per_sec: f64,
    /// Finished.
    pub done: bool,
}

/// How one piece request ended, once its answer was verified and written.
enum Outcome {
    /// Verified and written.
    Written,
    /// Already verified from another peer (an endgame duplicate).
    Duplicate,
    /// Data that failed verification, or a malformed data answer.
    Bad(String),
    /// The peer answered with an error (e.g. busy).
    Refused(String),
    /// No usable answer (network error, timeout, wrong message).
    Failed,
    /// Our own store failed: the download cannot go on.
    Fatal(BlobError),
}

/// Verifies and writes a piece answer. Runs inside the request's future, so
/// that several pieces are verified and written at once (on the blocking
/// pool) while the download loop goes on asking for more.
async fn settle(
    store: &BlobStore,
    partial: &Arc<Partial>,
    piece: u64,
    answer: Result<Scattered, String>,
) -> Outcome {
    // A whole answer, or (read apart) its head and the leaves in the plan's
    // aligned buffer.
    let (bytes, leaves) = match answer {
        Err(_) => return Outcome::Failed,
        Ok(Scattered::Whole(bytes)) => (bytes, None),
        Ok(Scattered::Split(head, plan)) => (
            head,
            Some(crate::store::files::Aligned::from_parts(plan.tail, plan.at)),
        ),
    };
    match protocol::data_size(&bytes) {
        Some(s) if s == partial.size => {
            if partial.has(piece) {
                return Outcome::Duplicate;
            }
            // Verified where it lies (no copy of the piece).
            written(match leaves {
                Some(leaves) => store.write_piece_apart(partial, piece, bytes, leaves).await,
                None => {
                    store
                        .write_piece(partial, piece, bytes, protocol::DATA_HEADER)
                        .await
                }
            })
        }
        Some(s) => Outcome::Bad(format!("claims size {s}, not {}", partial.size)),
        None if leaves.is_some() => Outcome::Bad("malformed data answer".into()),
        None => match Response::decode(&bytes) {
            Ok(Response::Data { .. }) => Outcome::Bad("malformed data answer".into()),
            Ok(Response::Error { message }) => Outcome::Refused(message),
            _ => Outcome::Failed,
        },
    }
}

/// The outcome of verifying and writing a piece.
fn written(result: Result<bool, BlobError>) -> Outcome {
    match result {
        Ok(true) => Outcome::Written,
        Ok(false) => Outcome::Duplicate,
        Err(BlobError::Verify { reason, .. }) => Outcome::Bad(reason),
        Err(e) => Outcome::Fatal(e),
    }
}

/// What a finished download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadStats {
    /// Verified pieces received from each peer.
    pub pieces_from: HashMap<PeerId, u64>,
    /// Pieces that failed verification, per peer.
    pub bad_pieces: HashMap<PeerId, u64>,
    /// Peers dropped for this blob (bad data or repeated failures).
    pub dropped: Vec<PeerId>,
    /// Pieces already verified on disk when the download started (resumed).
    pub resumed_pieces: u64,
    /// Bytes fetched over the network (verified).
    pub fetched_bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// A download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No peer has the blob.
    #[error("no peer has blob {0} (is a node that has it connected?)")]
    NoProviders(BlobHash),
    /// Peers stopped sending pieces.
    #[error("download of {hash} stalled: no piece for {secs} s ({have} of {size} bytes)")]
    Stalled {
        /// The blob.
        hash: BlobHash,
        /// Seconds without progress.
        secs: u64,
        /// Bytes held.
        have: u64,
        /// Blob size.
        size: u64,
    },
    /// The store refused (quota, disk).
    #[error(transparent)]
    Store(#[from] BlobError),
}

#[derive(Debug)]
struct PeerState {
    bitfield: Vec<u8>,
    complete: bool,
    in_flight: usize,
    depth: usize,
    failures: u32,
    dropped: bool,
}

impl PeerState {
    /// A peer that has just said what it holds.
    fn new(bitfield: Vec<u8>, complete: bool) -> Self {
        Self {
            bitfield,
            complete,
            in_flight: 0,
            depth: 4,
            failures: 0,
            dropped: false,
        }
    }
}

/// One `Have` question to one peer, and its answer. Each is awaited on its
/// own: a provider that cannot be reached (a DHT record of a node that has
/// gone, whose dial only fails after its timeout) holds up nobody else.
type HaveAnswer = std::pin::Pin<Box<dyn Future<Output = (PeerId, Result<Vec<u8>, String>)> + Send>>;

/// A pending provider lookup.
type Lookup = std::pin::Pin<Box<dyn Future<Output = Vec<PeerId>> + Send>>;

/// The `Have` questions in flight, at most one per peer.
struct Asking {
    pending: FuturesUnordered<HaveAnswer>,
    peers: HashSet<PeerId>,
}

impl Asking {
    fn new() -> Self {
        Self {
            pending: FuturesUnordered::new(),
            peers: HashSet::new(),
        }
    }

    /// Asks `peer` which pieces of `hash` it has, unless it is being asked.
    fn ask<R: PeerRequester>(&mut self, requester: &R, peer: PeerId, hash: BlobHash) {
        if self.peers.insert(peer) {
            let r = requester.clone();
            self.pending.push(Box::pin(async move {
                (peer, r.request(peer, Request::Have { hash }.encode()).await)
            }));
        }
    }

    /// The next answer; pending forever when nobody is being asked.
    async fn next(&mut self) -> (PeerId, Result<Vec<u8>, String>) {
        match self.pending.next().await {
            Some((peer, answer)) => {
                self.peers.remove(&peer);
                (peer, answer)
            }
            None => std::future::pending().await,
        }
    }

    fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// A decoded `Have` answer: (size, complete, bitfield).
fn decode_have(answer: Result<Vec<u8>, String>) -> Option<(u64, bool, Vec<u8>)> {
    match Response::decode(&answer.ok()?) {
        Ok(Response::Have {
            size,
            complete,
            bitfield,
        }) => Some((size, complete, bitfield)),
        _ => None,
    }
}

/// A piece request and then the verification and write of its answer:
/// (peer, piece, outcome, time until the answer arrived).
type InFlight = std::pin::Pin<Box<dyn Future<Output = (PeerId, u64, Outcome, Duration)> + Send>>;

/// Proves `size` by fetching the blob's last chunk with its proof from `peer`.
async fn verify_size<R: PeerRequester>(
    requester: &R,
    peer: PeerId,
    hash: BlobHash,
    size: u64,
) -> Result<(), String> {
    let chunks = size.div_ceil(protocol::CHUNK).max(1);
    let req = Request::Get {
        hash,
        ranges: vec![(chunks - 1, chunks)],
    };
    let bytes = requester.request(peer, req.encode()).await?;
    let Response::Data { size: s, encoded } =
        Response::decode(&bytes).map_err(|e| e.to_string())?
    else {
        return Err("no data for the last chunk".into());
    };
    if s != size {
        return Err(format!("peer said {size} bytes, then {s}"));
    }
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let ranges = ChunkRanges::from(ChunkNum(chunks - 1)..ChunkNum(chunks));
    // Verify without writing anywhere: a decoder writing into a Vec at the
    // last chunk's offset would allocate the whole blob's size.
    tokio::task::spawn_blocking(move || {
        let items =
            DecodeResponseIter::new(hash.into(), tree, std::io::Cursor::new(encoded), &ranges);
        for item in items {
            item.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Downloads `hash` into `store` from the swarm, calling `progress` as pieces land.
pub async fn download<R: PeerRequester>(
    store: &BlobStore,
    requester: &R,
    hash: BlobHash,
    opts: &DownloadOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<DownloadStats, DownloadError> {
    let started = Instant::now();
    let mut stats = DownloadStats::default();
    if store.info(hash).await?.is_some_and(|i| i.complete) {
        return Ok(stats);
    }

    // 1-2. Providers, their bitfields, and a proven size. Answers are taken
    // as they come: the first complete peer whose size proof holds starts the
    // download, and later answers join it in the piece loop.
    let mut peers: HashMap<PeerId, PeerState> = HashMap::new();
    let mut size: Option<u64> = None;
    let mut asking = Asking::new();
    let mut lookup: Option<Lookup> = None;
    let discovery_deadline =
        tokio::time::Instant::now() + opts.stall_timeout.min(Duration::from_secs(15));
    let mut rounds = 0u32;
    while size.is_none() {
        if asking.is_empty() && lookup.is_none() {
            if rounds > 0 {
                if tokio::time::Instant::now() >= discovery_deadline {
                    return Err(DownloadError::NoProviders(hash));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            rounds += 1;
            let r = requester.clone();
            lookup = Some(Box::pin(async move { r.providers(hash).await }));
            let mut now = requester.peers().await;
            now.extend(opts.extra_peers.iter().copied());
            for peer in now {
                if !stats.dropped.contains(&peer) {
                    asking.ask(requester, peer, hash);
                }
            }
        }
        tokio::select! {
            (peer, answer) = asking.next() => {
                let Some((s, complete, bitfield)) = decode_have(answer) else {
                    continue;
                };
                if complete && size.is_none() {
                    match verify_size(requester, peer, hash, s).await {
                        Ok(()) => size = Some(s),
                        Err(e) => {
                            warn!(%peer, %hash, "size proof failed: {e}");
                            *stats.bad_pieces.entry(peer).or_default() += 1;
                            stats.dropped.push(peer);
                            continue;
                        }
                    }
                }
                peers.insert(peer, PeerState::new(bitfield, complete));
            }
            found = async { lookup.as_mut().expect("checked").await }, if lookup.is_some() => {
                lookup = None;
                for peer in found {
                    if !stats.dropped.contains(&peer) {
                        asking.ask(requester, peer, hash);
                    }
                }
            }
            () = tokio::time::sleep_until(discovery_deadline) => {
                return Err(DownloadError::NoProviders(hash));
            }
        }
    }
    let size = size.unwrap_or(0);
    // A peer whose bitfield does not fit the proven size is useless.
    let expect = piece_count(size).div_ceil(8) as usize;
    peers.retain(|_, p| p.bitfield.len() == expect);
    for d in &stats.dropped {
        peers.remove(d);
    }

    let partial = store.open_partial(hash, size, opts.pin).await?;
    // However this download ends, the write buffers it pooled are freed.
    let _buffers = crate::store::ReleaseBuffersOnDrop;
    let pieces = partial.pieces();
    stats.resumed_pieces = (0..pieces).filter(|i| partial.has(*i)).count() as u64;
    if stats.resumed_pieces > 0 {
        info!(%hash, resumed = stats.resumed_pieces, of = pieces, "resuming download");
    }

    // 3-5. The piece loop.
    let mut in_flight: FuturesUnordered<InFlight> = FuturesUnordered::new();
    let mut requested: HashMap<u64, HashSet<PeerId>> = HashMap::new();
    let mut last_progress = Instant::now();
    let mut last_refresh = Instant::now();
    let mut last_discovery = Instant::now();
    let mut rate_window: (Instant, u64) = (Instant::now(), 0);
    let mut rate = 0.0;
    let mut have_bytes = partial.have_bytes();

    let report = |have_bytes: u64, peers: usize, rate: f64, done: bool| Progress {
        hash,
        size: Some(size),
        have_bytes,
        peers,
        bytes_per_sec: rate,
        done,
    };
    progress(report(have_bytes, peers.len(), 0.0, false));
    // The missing pieces rarest first, ranked again only when what the peers
    // have changes (`None`), not on every event: ranking them all each time
    // made scheduling quadratic in the blob's piece count.
    let mut order: Option<Vec<u64>> = None;

    loop {
        // One look at the bitfield per turn, not one lock per piece.
        let have = partial.bitfield();
        let missing: Vec<u64> = (0..pieces).filter(|&i| !has_piece(&have, i)).collect();
        if missing.is_empty() && in_flight.is_empty() {
            break;
        }
        if !missing.is_empty() {
            schedule(
                store,
                &partial,
                &missing,
                &have,
                &mut order,
                &mut peers,
                &mut requested,
                &mut in_flight,
                requester,
                hash,
                size,
                opts.max_in_flight_per_peer,
            );
        }

        if last_refresh.elapsed() >= HAVE_REFRESH {
            last_refresh = Instant::now();
            for (id, p) in &peers {
                if !p.complete && !p.dropped {
                    asking.ask(requester, *id, hash);
                }
            }
            // Looking for new providers (a DHT query) is slower and rarer
            // than re-asking the ones we know.
            if last_discovery.elapsed() >= DISCOVERY_INTERVAL {
                last_discovery = Instant::now();
                for peer in requester.peers().await {
                    if !peers.contains_key(&peer) && !stats.dropped.contains(&peer) {
                        asking.ask(requester, peer, hash);
                    }
                }
                if lookup.is_none() {
                    let r = requester.clone();
                    lookup = Some(Box::pin(async move { r.providers(hash).await }));
                }
            }
        }

        if in_flight.is_empty() && last_progress.elapsed() > opts.stall_timeout {
            store.flush_partial(&partial).await?;
            return Err(DownloadError::Stalled {
                hash,
                secs: opts.stall_timeout.as_secs(),
                have: have_bytes,
                size,
            });
        }

        tokio::select! {
            Some((peer, piece, outcome, took)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(set) = requested.get_mut(&piece) {
                    set.remove(&peer);
                }
                let mut emit = false;
                let Some(state) = peers.get_mut(&peer) else { continue };
                state.in_flight = state.in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Written => {
                        let (a, b) = protocol::piece_bytes(size, piece);
                        have_bytes += b - a;
                        stats.fetched_bytes += b - a;
                        *stats.pieces_from.entry(peer).or_default() += 1;
                        last_progress = Instant::now();
                        state.failures = 0;
                        // Adaptive depth: fast answers earn more in flight.
                        if took < Duration::from_millis(250) {
                            state.depth = (state.depth + 1).min(opts.max_in_flight_per_peer);
                        } else if took > Duration::from_secs(2) {
                            state.depth = (state.depth / 2).max(1);
                        }
                        if rate_window.0.elapsed() >= Duration::from_millis(500) {
                            rate = (stats.fetched_bytes - rate_window.1) as f64 / rate_window.0.elapsed().as_secs_f64();
                            rate_window = (Instant::now(), stats.fetched_bytes);
                        }
                        emit = true;
                    }
                    Outcome::Fatal(e) => return Err(e.into()),
                    Outcome::Bad(reason) => {
                        warn!(%peer, %hash, piece, "bad piece, dropping peer for this blob: {reason}");
                        *stats.bad_pieces.entry(peer).or_default() += 1;
                        if !std::mem::replace(&mut state.dropped, true) {
                            stats.dropped.push(peer);
                        }
                    }
                    // Someone else was faster; no fault of this peer's.
                    _ if partial.has(piece) => continue,
                    Outcome::Duplicate => continue,
                    Outcome::Refused(message) => {
                        debug!(%peer, piece, "peer refused: {message}");
                        // Busy (all upload slots taken) is no fault: ask less
                        // of it for now. Anything else counts as a failure.
                        state.depth = (state.depth / 2).max(1);
                        if !message.starts_with("busy") {
                            state.failures += 1;
                            if state.failures >= 5 && !std::mem::replace(&mut state.dropped, true) {
                                stats.dropped.push(peer);
                            }
                        }
                    }
                    Outcome::Failed => {
                        state.failures += 1;
                        if state.failures >= 5 {
                            debug!(%peer, "dropping unresponsive peer for this blob");
                            if !std::mem::replace(&mut state.dropped, true) {
                                stats.dropped.push(peer);
                            }
                        }
                    }
                }
                if state.dropped {
                    // Its pieces may be asked of others now, and no longer
                    // count towards how rare a piece is.
                    for set in requested.values_mut() {
                        set.remove(&peer);
                    }
                    order = None;
                }
                if emit {
                    let useful = peers.values().filter(|p| !p.dropped).count();
                    progress(report(have_bytes, useful, rate, false));
                }
            }
            (peer, answer) = asking.next() => {
                if let Some((s, complete, bitfield)) = decode_have(answer)
                    && s == size
                    && bitfield.len() == expect
                {
                    let state = peers
                        .entry(peer)
                        .or_insert_with(|| PeerState::new(Vec::new(), complete));
                    if !state.dropped {
                        if state.bitfield != bitfield || state.complete != complete {
                            order = None;
                        }
                        state.bitfield = bitfield;
                        state.complete = complete;
                        // A busy peer gets another chance after a refresh.
                        state.failures = state.failures.saturating_sub(1);
                    }
                }
            }
            found = async { lookup.as_mut().expect("checked").await }, if lookup.is_some() => {
                lookup = None;
                for peer in found.into_iter().chain(opts.extra_peers.iter().copied()) {
                    if !peers.contains_key(&peer) && !stats.dropped.contains(&peer) {
                        asking.ask(requester, peer, hash);
                    }
                }
            }
            // Time to ask again (or to notice a stall).
            () = tokio::time::sleep_until((last_refresh + HAVE_REFRESH).into()) => {}
        }
    }

    let kind = BlobKind::Raw;
    store.finish_partial(&partial, kind).await?;
    stats.elapsed = started.elapsed();
    let useful = peers.values().filter(|p| !p.dropped).count();
    progress(report(size, useful, rate, true));
    info!(%hash, size, secs = stats.elapsed.as_secs_f64(), sources = stats.pieces_from.len(), "download complete");
    Ok(stats)
}

/// Downloads `hash` and, when it is a collection, every file it lists.
/// Returns the stats of every blob fetched, the root's first.
pub async fn download_tree<R: PeerRequester>(
    store: &BlobStore,
    requester: &R,
    hash: BlobHash,
    opts: &DownloadOptions,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Vec<DownloadStats>, DownloadError> {
    let mut all = vec![download(store, requester, hash, opts, &mut progress).await?];
    let Some(info) = store.info(hash).await? else {
        return Ok(all);
    };
    let coll = if info.kind == BlobKind::Collection {
        crate::collection::read_collection(store, hash).await.ok()
    } else if info.size <= crate::collection::MAX_COLLECTION_BYTES
        && store
            .read_at(hash, 0, crate::collection::PREFIX.len())
            .await?
            .is_some_and(|p| p == crate::collection::PREFIX.as_bytes())
    {
        // Freshly fetched: a collection is recognised by its format tag,
        // which leads every collection's bytes; other files are not read.
        match store.read_at(hash, 0, info.size as usize).await? {
            Some(bytes) => crate::Collection::decode(&bytes).ok(),
            None => None,
        }
    } else {
        None
    };
    if let Some(coll) = coll {
        store.set_kind(hash, BlobKind::Collection).await?;
        for e in &coll.entries {
            all.push(download(store, requester, e.hash, opts, &mut progress).await?);
        }
    }
    Ok(all)
}

/// The pieces of `missing`, rarest among usable peers first, ties in random
/// order (so that leechers spread out over different pieces).
fn rank(missing: &[u64], peers: &HashMap<PeerId, PeerState>, rng: &mut impl RngCore) -> Vec<u64> {
    let mut ranked: Vec<(usize, u32, u64)> = missing
        .iter()
        .map(|&i| {
            let n = peers
                .values()
                .filter(|p| !p.dropped && (p.complete || has_piece(&p.bitfield, i)))
                .count();
            (n, rng.next_u32(), i)
        })
        .collect();
    ranked.sort_unstable();
    ranked.into_iter().map(|(_, _, i)| i).collect()
}

/// Hands out work: per peer with room, the rarest missing piece it has that is
/// not in flight; in endgame, a piece in flight elsewhere but not here.
/// `order` is [`rank`]ed when it is `None`; pieces `have` marks are skipped.
#[allow(clippy::too_many_arguments)]
fn schedule<R: PeerRequester>(
    store: &BlobStore,
    partial: &Arc<Partial>,
    missing: &[u64],
    have: &[u8],
    order: &mut Option<Vec<u64>>,
    peers: &mut HashMap<PeerId, PeerState>,
    requested: &mut HashMap<u64, HashSet<PeerId>>,
    in_flight: &mut FuturesUnordered<InFlight>,
    requester: &R,
    hash: BlobHash,
    size: u64,
    max_depth: usize,
) {
    let mut rng = rand::thread_rng();
    let order = order.get_or_insert_with(|| rank(missing, peers, &mut rng));
    let endgame = missing
        .iter()
        .all(|i| requested.get(i).is_some_and(|s| !s.is_empty()));

    let mut ids: Vec<PeerId> = peers.keys().copied().collect();
    ids.shuffle(&mut rng);
    loop {
        let mut assigned = false;
        for id in &ids {
            let Some(state) = peers.get_mut(id) else {
                continue;
            };
            if in_flight.len() >= MAX_IN_FLIGHT {
                return;
            }
            if state.dropped || state.in_flight >= state.depth.min(max_depth) {
                continue;
            }
            let has =
                |i: u64| !has_piece(have, i) && (state.complete || has_piece(&state.bitfield, i));
            let pick = order
                .iter()
                .copied()
                .find(|&i| has(i) && requested.get(&i).is_none_or(|s| s.is_empty()))
                .or_else(|| {
                    if !endgame {
                        return None;
                    }
                    order.iter().copied().find(|&i| {
                        has(i)
                            && requested
                                .get(&i)
                                .is_some_and(|s| s.len() < 2 && !s.contains(id))
                    })
                });
            let Some(piece) = pick else { continue };
            requested.entry(piece).or_default().insert(*id);
            state.in_flight += 1;
            assigned = true;
            let r = requester.clone();
            let peer = *id;
            let (s, e) = protocol::piece_chunks(size, piece);
            let req = Request::Get {
                hash,
                ranges: vec![(s, e)],
            }
            .encode();
            let (store, partial) = (store.clone(), partial.clone());
            in_flight.push(Box::pin(async move {
                let t = Instant::now();
                let answer = match partial.scatter_plan(piece) {
                    Some(plan) => r.request_scattered(peer, req, plan).await,
                    None => r.request(peer, req).await.map(Scattered::Whole),
                };
                let took = t.elapsed();
                let outcome = settle(&store, &partial, piece, answer).await;
                (peer, piece, outcome, took)
            }));
        }
        if !assigned {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(bits: &[u64], complete: bool, dropped: bool) -> (PeerId, PeerState) {
        let mut bitfield = vec![0u8; 1];
        for &i in bits {
            protocol::set_piece(&mut bitfield, i);
        }
        let mut state = PeerState::new(bitfield, complete);
        state.dropped = dropped;
        (PeerId::random(), state)
    }

    #[test]
    fn rarest_pieces_come_first_and_ties_are_shuffled() {
        let peers: HashMap<PeerId, PeerState> = [
            peer(&[], true, false), // a seeder: has all
            peer(&[0, 1, 2], false, false),
            peer(&[0, 1], false, false),
            peer(&[3], false, true), // dropped: counts for nothing
        ]
        .into_iter()
        .collect();
        // Holders: 0 -> 3, 1 -> 3, 2 -> 2, 3 -> 1, 4 -> 1.
        let mut rng = rand::thread_rng();
        let mut firsts = HashSet::new();
        for _ in 0..200 {
            let order = rank(&[0, 1, 2, 3, 4], &peers, &mut rng);
            let (rare, rest) = order.split_at(2);
            let mut rare = rare.to_vec();
            rare.sort_unstable();
            assert_eq!(rare, [3, 4], "{order:?}");
            assert_eq!(rest[0], 2, "{order:?}");
            let mut common = rest[1..].to_vec();
            common.sort_unstable();
            assert_eq!(common, [0, 1], "{order:?}");
            firsts.insert(order[0]);
        }
        assert_eq!(firsts.len(), 2, "ties are broken at random");
        assert_eq!(rank(&[], &peers, &mut rng), Vec::<u64>::new());
    }
}
