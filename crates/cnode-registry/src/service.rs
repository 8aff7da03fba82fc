//! The follower task and its handle.

use std::{
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::primitives::Address;
use tokio::{sync::watch, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    config::ChainConfig,
    db::{SnapshotDb, SnapshotError},
    follower::{Chain as _, FollowError, FollowParams, Follower, Progress},
    rpc::{Endpoint, Rpc, RpcError},
    state::{History, Snapshot},
    types::{RegistryStatus, Source},
};

/// Chunks of `eth_getLogs` per poll before the task yields.
const MAX_CHUNKS_PER_POLL: usize = 16;

/// Starting the registry service failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The snapshot database could not be opened.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The RPC URL is not usable.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Opening offline found no snapshot.
    #[error("no registry snapshot in {0} (configure [chain] so the node can follow the registry)")]
    NoSnapshot(std::path::PathBuf),
}

/// What [`check_chain`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainInfo {
    /// The chain id (equal to the configured one).
    pub chain_id: u64,
    /// The chain's latest block.
    pub head: u64,
    /// The block the registry was deployed in.
    pub deploy_block: u64,
}

/// Checks once that the RPC serves the configured chain and that the
/// registry is deployed there (`eth_chainId`, `eth_getCode`,
/// `deployBlock()`, `eth_blockNumber`). The service does the same before it
/// follows; this is for `cnode registry status`-style checks and tests.
pub async fn check_chain(config: &ChainConfig) -> Result<ChainInfo, FollowError> {
    let endpoint = Endpoint::parse(&config.rpc_url, config.rpc_timeout)?;
    let rpc = Rpc::new(endpoint, Arc::new(AtomicU64::new(0)))?;
    check(&rpc, config).await
}

async fn check(rpc: &Rpc, config: &ChainConfig) -> Result<ChainInfo, FollowError> {
    let chain_id = rpc.chain_id().await?;
    if chain_id != config.chain_id {
        return Err(FollowError::ChainIdMismatch {
            rpc: chain_id,
            config: config.chain_id,
        });
    }
    let code = rpc.code(config.registry_address).await?;
    if code.is_empty() {
        return Err(FollowError::NoContract {
            address: config.registry_address,
            chain_id,
        });
    }
    let deploy_block = rpc.deploy_block(config.registry_address).await?;
    let head = rpc.head().await?;
    Ok(ChainInfo {
        chain_id,
        head,
        deploy_block,
    })
}

/// Starts registry followers (see [`RegistryService::spawn`]).
#[derive(Debug)]
pub struct RegistryService;

impl RegistryService {
    /// Opens the snapshot in `data_dir` (`registry.sqlite`) and spawns the
    /// follower task for `config`'s chain; returns at once. Reads are served
    /// from the snapshot immediately, before the RPC has answered (with
    /// [`Source::Snapshot`]), and whenever it fails. A snapshot of another
    /// chain id or contract is discarded. The task stops when `cancel` is
    /// cancelled or [`RegistryHandle::shutdown`] is called.
    ///
    /// Must be called within a tokio runtime.
    pub fn spawn(
        config: ChainConfig,
        data_dir: &Path,
        cancel: CancellationToken,
    ) -> Result<RegistryHandle, SpawnError> {
        let endpoint = Endpoint::parse(&config.rpc_url, config.rpc_timeout)?;
        let db = SnapshotDb::open(data_dir)?;
        let (history, deploy_block) = match db.load_blocking()? {
            Some(l) if l.chain_id == config.chain_id && l.contract == config.registry_address => {
                (l.history, l.deploy_block)
            }
            other => {
                if let Some(l) = other {
                    tracing::warn!(
                        old_chain = l.chain_id,
                        old_contract = %l.contract,
                        chain = config.chain_id,
                        contract = %config.registry_address,
                        "registry snapshot is for another chain or contract; starting over"
                    );
                }
                db.reset_blocking(config.chain_id, config.registry_address)?;
                (History::default(), None)
            }
        };
        let calls = Arc::new(AtomicU64::new(0));
        let rpc = Rpc::new(endpoint, calls.clone())?;
        let status = RegistryStatus {
            chain_id: config.chain_id,
            contract: config.registry_address,
            head_block: None,
            applied_block: history.applied(),
            lag: None,
            source: Source::Snapshot,
            last_error: None,
            rpc_calls: 0,
        };
        let (state_tx, state_rx) = watch::channel(history.current().clone());
        let (status_tx, status_rx) = watch::channel(status);
        let (error_tx, error_rx) = watch::channel(None);
        let cancel = cancel.child_token();
        let task = Task {
            config,
            rpc,
            db,
            start: Some((history, deploy_block)),
            follower: None,
            state_tx,
            status_tx,
            error_tx,
            calls: calls.clone(),
        };
        let span = tracing::info_span!(
            "registry",
            chain = task.config.chain_id,
            contract = %short(&task.config.registry_address)
        );
        let join = tokio::spawn(task.run(cancel.clone()).instrument(span));
        Ok(RegistryHandle {
            state: state_rx,
            status: status_rx,
            error: error_rx,
            calls,
            cancel,
            task: Arc::new(Mutex::new(Some(join))),
        })
    }

    /// Opens the last snapshot in `data_dir` without following any chain
    /// (no `[chain]` configured): reads answer from it with
    /// [`Source::Snapshot`]. No bundled genesis snapshot exists yet, so a
    /// data directory without `registry.sqlite` is an error.
    pub fn open_offline(data_dir: &Path) -> Result<RegistryHandle, SpawnError> {
        if !data_dir.join(crate::db::SNAPSHOT_FILE).exists() {
            return Err(SpawnError::NoSnapshot(data_dir.to_owned()));
        }
        let db = SnapshotDb::open(data_dir)?;
        let loaded = db
            .load_blocking()?
            .ok_or_else(|| SpawnError::NoSnapshot(data_dir.to_owned()))?;
        let status = RegistryStatus {
            chain_id: loaded.chain_id,
            contract: loaded.contract,
            head_block: None,
            applied_block: loaded.history.applied(),
            lag: None,
            source: Source::Snapshot,
            last_error: Some("no RPC configured".into()),
            rpc_calls: 0,
        };
        let (_, state) = watch::channel(loaded.history.current().clone());
        let (_, status) = watch::channel(status);
        let (_, error) = watch::channel(None);
        Ok(RegistryHandle {
            state,
            status,
            error,
            calls: Arc::new(AtomicU64::new(0)),
            cancel: CancellationToken::new(),
            task: Arc::new(Mutex::new(None)),
        })
    }
}

/// A cloneable handle to a running (or offline) registry: reads come from
/// the in-memory snapshot and never wait for the RPC. Implements
/// [`crate::Registry`].
#[derive(Debug, Clone)]
#[must_use = "dropping the handle does not stop the follower; call shutdown()"]
pub struct RegistryHandle {
    state: watch::Receiver<Arc<Snapshot>>,
    status: watch::Receiver<RegistryStatus>,
    error: watch::Receiver<Option<Arc<FollowError>>>,
    calls: Arc<AtomicU64>,
    cancel: CancellationToken,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl RegistryHandle {
    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.borrow().clone()
    }

    /// The follower's status now.
    pub fn status(&self) -> RegistryStatus {
        let mut s = self.status.borrow().clone();
        s.rpc_calls = self.rpc_calls();
        s
    }

    /// The error of the last failed poll, until a poll succeeds.
    pub fn last_error(&self) -> Option<Arc<FollowError>> {
        self.error.borrow().clone()
    }

    /// JSON-RPC calls made so far (for a calls-per-minute figure).
    pub fn rpc_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// A receiver that sees every new snapshot.
    pub fn watch_snapshot(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.state.clone()
    }

    /// A receiver that sees every status change (its `rpc_calls` is only
    /// updated with the status; use [`Self::rpc_calls`] for the live count).
    pub fn watch_status(&self) -> watch::Receiver<RegistryStatus> {
        self.status.clone()
    }

    /// Stops the follower and waits for it. The snapshot on disk stays.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let join = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(join) = join
            && let Err(e) = join.await
        {
            tracing::warn!(error = %e, "registry follower task failed");
        }
    }
}

/// The follower task's state.
struct Task {
    config: ChainConfig,
    rpc: Rpc,
    db: SnapshotDb,
    /// The loaded history, until the chain was checked and the follower made.
    start: Option<(History, Option<u64>)>,
    follower: Option<Follower<Rpc>>,
    state_tx: watch::Sender<Arc<Snapshot>>,
    status_tx: watch::Sender<RegistryStatus>,
    error_tx: watch::Sender<Option<Arc<FollowError>>>,
    calls: Arc<AtomicU64>,
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        let mut failures: u32 = 0;
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(delay) => {}
            }
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                r = self.step() => r,
            };
            match result {
                Ok(p) => {
                    if failures > 0 {
                        tracing::info!(head = p.head, "registry RPC answering again");
                    }
                    failures = 0;
                    self.publish_ok(p);
                    delay = if p.behind {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    };
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    delay = backoff(self.config.poll_interval, self.config.max_backoff, failures);
                    if failures == 1 {
                        tracing::warn!(error = %e, retry_in = ?delay, "registry poll failed; serving the snapshot");
                    } else {
                        tracing::debug!(error = %e, failures, retry_in = ?delay, "registry poll failed again");
                    }
                    self.publish_err(e);
                }
            }
        }
        tracing::debug!("registry follower stopped");
    }

    async fn step(&mut self) -> Result<Progress, FollowError> {
        if self.follower.is_none() {
            let info = check(&self.rpc, &self.config).await?;
            let (history, stored_deploy) = self.start.take().unwrap_or_default();
            if stored_deploy != Some(info.deploy_block) {
                self.db.set_deploy_block(info.deploy_block).await?;
            }
            tracing::info!(
                deploy_block = info.deploy_block,
                head = info.head,
                applied = ?history.applied(),
                "following the registry"
            );
            self.follower = Some(Follower::new(
                self.rpc.clone(),
                self.config.registry_address,
                info.deploy_block,
                self.db.clone(),
                history,
                FollowParams {
                    confirmations: self.config.confirmations,
                    log_chunk_blocks: self.config.log_chunk_blocks,
                    max_chunks_per_poll: MAX_CHUNKS_PER_POLL,
                },
            ));
        }
        let Some(f) = self.follower.as_mut() else {
            unreachable!("the follower was just made")
        };
        let result = f.poll().await;
        // Publish whatever is applied, also after a failure part-way.
        let current = f.history().current().clone();
        if !Arc::ptr_eq(&current, &self.state_tx.borrow()) {
            self.state_tx.send_replace(current);
        }
        if matches!(result, Ok(Progress { rebuilt: true, .. }))
            && let Some(f) = self.follower.take()
        {
            // The chain may be a new one: check it (and the deploy block) again.
            self.start = Some((f.into_history(), None));
        }
        result
    }

    fn publish_ok(&self, p: Progress) {
        self.error_tx.send_replace(None);
        let rpc_calls = self.calls.load(Ordering::Relaxed);
        self.status_tx.send_modify(|s| {
            s.head_block = Some(p.head);
            s.applied_block = p.applied;
            s.lag = Some(p.head.saturating_sub(p.applied.unwrap_or(0)));
            s.source = Source::Live;
            s.last_error = None;
            s.rpc_calls = rpc_calls;
        });
    }

    fn publish_err(&self, e: FollowError) {
        let rpc_calls = self.calls.load(Ordering::Relaxed);
        let applied = self.state_tx.borrow().block();
        let message = e.to_string();
        self.error_tx.send_replace(Some(Arc::new(e)));
        self.status_tx.send_modify(|s| {
            s.applied_block = applied;
            s.source = Source::Snapshot;
            s.last_error = Some(message);
            s.rpc_calls = rpc_calls;
        });
    }
}

fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    base.saturating_mul(factor)
        .min(max)
        .max(Duration::from_millis(10))
}

fn short(a: &Address) -> String {
    let s = a.to_string();
    s[..10.min(s.len())].to_owned()
}
