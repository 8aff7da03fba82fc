//! Blobs in the node: the network side of `cnode-blobs`.
//!
//! - [`NetRequester`] implements `PeerRequester` over libp2p: requests go out on
//!   `/cnode/blobs/1`; providers are the connected peers plus the DHT's
//!   provider records for the blob.
//! - [`BlobService`] runs downloads (one task per blob, at most
//!   [`MAX_DOWNLOADS`] at once, deduplicated), announces what the node holds
//!   in the DHT, and broadcasts [`TransferEvent`]s for progress bars and SSE.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use cnode_blobs::{BlobError, BlobStore, DownloadOptions, DownloadStats, PeerRequester, Progress};
use cnode_net::{NetClient, PeerId, ReqProtocol};
use cnode_types::BlobHash;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

/// Downloads running at once; more are refused with a clear error.
pub const MAX_DOWNLOADS: usize = 64;
/// How long a DHT provider lookup may take before we go on without it.
const PROVIDER_LOOKUP: Duration = Duration::from_secs(5);

/// `PeerRequester` over the node's network client.
#[derive(Debug, Clone)]
pub struct NetRequester {
    net: NetClient,
}

impl NetRequester {
    /// A requester using `net`.
    pub fn new(net: NetClient) -> Self {
        Self { net }
    }
}

impl PeerRequester for NetRequester {
    async fn request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, String> {
        self.net
            .request(peer, ReqProtocol::Blobs, request)
            .await
            .map_err(|e| e.to_string())
    }

    async fn request_scattered(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        plan: cnode_types::Scatter,
    ) -> Result<cnode_types::Scattered, String> {
        self.net
            .request_scattered(peer, ReqProtocol::Blobs, request, plan)
            .await
            .map_err(|e| e.to_string())
    }

    async fn peers(&self) -> Vec<PeerId> {
        let me = self.net.local_peer_id();
        self.net
            .peers()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| p.peer_id.parse().ok())
            .filter(|p| *p != me)
            .collect()
    }

    async fn providers(&self, hash: BlobHash) -> Vec<PeerId> {
        let me = self.net.local_peer_id();
        let mut found =
            tokio::time::timeout(PROVIDER_LOOKUP, self.net.get_providers(hash.provider_key()))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
        found.retain(|p| *p != me);
        found
    }
}

/// The state of a transfer, as events and `status` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Fetching pieces.
    Running,
    /// Complete and verified.
    Done,
    /// Gave up (see `error`).
    Failed,
}

/// Progress of one transfer, broadcast to subscribers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferEvent {
    /// The blob.
    pub hash: BlobHash,
    /// Its size, once known.
    pub size: Option<u64>,
    /// Verified bytes held.
    pub have_bytes: u64,
    /// Peers sending pieces.
    pub peers: usize,
    /// Recent rate, bytes per second.
    pub bytes_per_sec: f64,
    /// Running, done or failed.
    pub state: TransferState,
    /// Why it failed.
    pub error: Option<String>,
}

impl TransferEvent {
    /// A transfer that has just started: nothing known yet.
    pub fn started(hash: BlobHash) -> Self {
        Self {
            hash,
            size: None,
            have_bytes: 0,
            peers: 0,
            bytes_per_sec: 0.0,
            state: TransferState::Running,
            error: None,
        }
    }

    /// A downloader's progress report as an event.
    pub fn from_progress(p: &Progress) -> Self {
        Self {
            hash: p.hash,
            size: p.size,
            have_bytes: p.have_bytes,
            peers: p.peers,
            bytes_per_sec: p.bytes_per_sec,
            state: if p.done {
                TransferState::Done
            } else {
                TransferState::Running
            },
            error: None,
        }
    }
}

/// Starting a download failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Too many downloads at once.
    #[error("too many downloads running ({MAX_DOWNLOADS}); wait for one to finish")]
    Busy,
}

type Outcome = Option<Result<Vec<DownloadStats>, String>>;

#[derive(Debug)]
struct Running {
    last: Arc<Mutex<TransferEvent>>,
    done: watch::Receiver<Outcome>,
}

/// Downloads and announcements of the node's blobs.
#[derive(Debug, Clone)]
pub struct BlobService {
    store: BlobStore,
    net: NetClient,
    requester: NetRequester,
    events: broadcast::Sender<TransferEvent>,
    running: Arc<Mutex<HashMap<BlobHash, Running>>>,
    /// Bad pieces each peer sent us, over all downloads (reputation input).
    misbehaviour: Arc<Mutex<HashMap<PeerId, u64>>>,
}

impl BlobService {
    pub(crate) fn new(store: BlobStore, net: NetClient) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            requester: NetRequester::new(net.clone()),
            store,
            net,
            events,
            running: Arc::new(Mutex::new(HashMap::new())),
            misbehaviour: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The store.
    pub fn store(&self) -> &BlobStore {
        &self.store
    }

    /// A receiver of transfer progress from now on (bounded; slow receivers
    /// skip the oldest events).
    pub fn subscribe(&self) -> broadcast::Receiver<TransferEvent> {
        self.events.subscribe()
    }

    /// Broadcasts the progress of a transfer this service did not start (a
    /// plugin package's files, fetched with their own size caps), so that
    /// progress bars and `/v1/events` show it like any other.
    pub fn report(&self, event: TransferEvent) {
        let _ = self.events.send(event);
    }

    /// Announces `hash` in the DHT, so other nodes find us as a provider.
    pub async fn announce(&self, hash: BlobHash) {
        if let Err(e) = self.net.start_providing(hash.provider_key()).await {
            debug!(%hash, "cannot announce: {e}");
        }
    }

    /// Announces `hash` and, for a collection, every file it lists.
    async fn announce_tree(&self, hash: BlobHash) {
        self.announce(hash).await;
        if let Ok(Some(info)) = self.store.info(hash).await
            && info.kind == cnode_blobs::BlobKind::Collection
            && let Ok(c) = cnode_blobs::collection::read_collection(&self.store, hash).await
        {
            for e in c.entries {
                self.announce(e.hash).await;
            }
        }
    }

    /// Imports a file or folder, announces it, and returns the report.
    pub async fn add(
        &self,
        path: &std::path::Path,
        pin: bool,
    ) -> Result<cnode_blobs::ImportReport, BlobError> {
        let report = self.store.import_path(path, pin).await?;
        self.announce_tree(report.hash).await;
        Ok(report)
    }

    /// Deletes a blob and stops announcing it. Returns the bytes freed.
    pub async fn remove(&self, hash: BlobHash) -> Result<u64, BlobError> {
        let freed = self.store.remove(hash).await?;
        let _ = self.net.stop_providing(hash.provider_key()).await;
        Ok(freed)
    }

    /// Removes every unpinned blob and stops announcing them.
    pub async fn gc(&self) -> Result<cnode_blobs::GcReport, BlobError> {
        let report = self.store.gc().await?;
        for hash in &report.hashes {
            let _ = self.net.stop_providing(hash.provider_key()).await;
        }
        Ok(report)
    }

    /// Bad pieces received from each peer so far (peers that sent data failing
    /// verification). Reputation (issue: reputation) will build on this.
    pub fn misbehaviour(&self) -> HashMap<PeerId, u64> {
        self.misbehaviour
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The latest progress of a running (or just finished) download.
    pub fn progress(&self, hash: BlobHash) -> Option<TransferEvent> {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .map(|r| r.last.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Starts downloading `hash` (and, for a collection, its files) in the
    /// background; a download already running is joined, not repeated.
    pub fn start(
        &self,
        hash: BlobHash,
        opts: DownloadOptions,
    ) -> Result<watch::Receiver<Outcome>, StartError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = running.get(&hash)
            && r.done.borrow().is_none()
        {
            return Ok(r.done.clone());
        }
        let active = running
            .values()
            .filter(|r| r.done.borrow().is_none())
            .count();
        if active >= MAX_DOWNLOADS {
            return Err(StartError::Busy);
        }
        // Forget finished ones so the map stays bounded.
        running.retain(|_, r| r.done.borrow().is_none());
        let (tx, rx) = watch::channel(None);
        let last = Arc::new(Mutex::new(TransferEvent::started(hash)));
        running.insert(
            hash,
            Running {
                last: last.clone(),
                done: rx.clone(),
            },
        );
        drop(running);
        let this = self.clone();
        tokio::spawn(async move {
            let events = this.events.clone();
            let last2 = last.clone();
            // Partial holders serve what they have: announce right away.
            this.announce(hash).await;
            let result =
                cnode_blobs::download_tree(&this.store, &this.requester, hash, &opts, move |p| {
                    let ev = TransferEvent::from_progress(&p);
                    *last2.lock().unwrap_or_else(|e| e.into_inner()) = ev.clone();
                    let _ = events.send(ev);
                })
                .await;
            if let Ok(stats) = &result {
                let mut m = this.misbehaviour.lock().unwrap_or_else(|e| e.into_inner());
                for s in stats {
                    for (peer, n) in &s.bad_pieces {
                        warn!(%peer, bad_pieces = n, %hash, "peer sent data that failed verification");
                        *m.entry(*peer).or_default() += n;
                    }
                }
            }
            let outcome = match result {
                Ok(stats) => {
                    this.announce_tree(hash).await;
                    let mut ev = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    ev.state = TransferState::Done;
                    if let Ok(Some(info)) = this.store.info(hash).await {
                        ev.size = Some(info.size);
                        ev.have_bytes = info.size;
                    }
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = ev.clone();
                    let _ = this.events.send(ev);
                    Ok(stats)
                }
                Err(e) => {
                    warn!(%hash, "download failed: {e}");
                    let mut ev = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    ev.state = TransferState::Failed;
                    ev.error = Some(e.to_string());
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = ev.clone();
                    let _ = this.events.send(ev);
                    Err(e.to_string())
                }
            };
            let _ = tx.send(Some(outcome));
        });
        Ok(rx)
    }

    /// Downloads `hash` and waits for the outcome.
    pub async fn download(
        &self,
        hash: BlobHash,
        opts: DownloadOptions,
    ) -> Result<Vec<DownloadStats>, String> {
        let mut rx = self.start(hash, opts).map_err(|e| e.to_string())?;
        loop {
            if let Some(outcome) = rx.borrow().clone() {
                return outcome;
            }
            if rx.changed().await.is_err() {
                return Err("the download task stopped".into());
            }
        }
    }

    /// Resumes downloads that were running when the node last stopped.
    pub(crate) async fn resume_partials(&self) {
        match self.store.partial_hashes().await {
            Ok(hashes) => {
                for hash in hashes.into_iter().take(MAX_DOWNLOADS) {
                    debug!(%hash, "resuming download");
                    let _ = self.start(hash, DownloadOptions::default());
                }
            }
            Err(e) => warn!("cannot list partial downloads: {e}"),
        }
    }

    /// Announces every complete blob (at start; Kademlia re-publishes later).
    pub(crate) async fn announce_all(&self, max: usize) {
        match self.store.list().await {
            Ok(list) => {
                for info in list.into_iter().filter(|i| i.complete).take(max) {
                    self.announce(info.hash).await;
                }
            }
            Err(e) => warn!("cannot list blobs to announce: {e}"),
        }
    }
}
