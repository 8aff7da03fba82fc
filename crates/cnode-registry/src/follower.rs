//! Following the chain: poll, apply confirmed events, undo reorgs.
//!
//! [`Follower`] is the pure-ish core (one `poll` = reorg check + catch-up,
//! over any [`Chain`]); [`crate::service`] runs it in a task against the RPC.
//!
//! One poll:
//! 1. `eth_blockNumber` → head.
//! 2. Reorg check: the stored hash of the last applied block is compared
//!    with the chain's (one `eth_getBlockByNumber`). On a mismatch the
//!    stored hashes are walked newest first to the newest one the chain
//!    still has (the common ancestor); the events of the blocks above it
//!    are dropped and the state re-derived. No common ancestor within the
//!    kept history → start over from the deploy block.
//! 3. Catch up to `head - confirmations` in chunks: `eth_getLogs` for the
//!    chunk, then the hash of the chunk's last block; each block that had
//!    events is checked against the chain too, so logs from a fork that lost
//!    while the chunk was read are never applied.

use std::{collections::BTreeMap, future::Future};

use alloy::{
    primitives::{Address, B256},
    rpc::types::Log,
    sol_types::SolEventInterface,
};

use crate::{
    bindings::RegistryEvents,
    db::{SnapshotDb, SnapshotError},
    rpc::RpcError,
    state::{AppliedEvent, History},
};

/// Following the chain failed (this poll; the follower retries).
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The RPC serves another chain than configured.
    #[error("chain id mismatch: RPC says {rpc}, config says {config}")]
    ChainIdMismatch {
        /// What `eth_chainId` answered.
        rpc: u64,
        /// `chain.chain_id` in the config.
        config: u64,
    },
    /// Nothing is deployed at the configured address.
    #[error("no contract at {address} on chain {chain_id}")]
    NoContract {
        /// The configured registry address.
        address: Address,
        /// The chain asked.
        chain_id: u64,
    },
    /// An RPC call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The RPC answered `eth_getLogs` with a log that cannot be used.
    #[error("RPC returned a bad log: {0}")]
    BadLog(String),
    /// A block changed while its logs were read (a reorg in progress).
    #[error("block {block} changed while it was read (reorg in progress); will retry")]
    ReorgDuringFetch {
        /// The block.
        block: u64,
    },
    /// The RPC does not know a block at or below its own head.
    #[error("RPC has no block {block} (head {head})")]
    MissingBlock {
        /// The block asked for.
        block: u64,
        /// The head it reported.
        head: u64,
    },
    /// The snapshot database failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// The chain as the follower needs it.
pub(crate) trait Chain {
    /// The latest block number.
    fn head(&self) -> impl Future<Output = Result<u64, RpcError>> + Send;
    /// The hash of block `number`, `None` if the chain has no such block.
    fn block_hash(
        &self,
        number: u64,
    ) -> impl Future<Output = Result<Option<B256>, RpcError>> + Send;
    /// The logs of `address` in blocks `from..=to`.
    fn logs(
        &self,
        address: Address,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<Log>, RpcError>> + Send;
}

/// Knobs of one follower.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FollowParams {
    pub(crate) confirmations: u64,
    pub(crate) log_chunk_blocks: u64,
    /// Chunks per poll before yielding (so status and cancellation are seen
    /// during a long catch-up).
    pub(crate) max_chunks_per_poll: usize,
}

/// What a poll did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) head: u64,
    pub(crate) applied: Option<u64>,
    /// More confirmed blocks are waiting: poll again at once.
    pub(crate) behind: bool,
    /// Blocks were undone.
    pub(crate) reorged: bool,
    /// No common ancestor was found: the snapshot was cleared and nothing
    /// applied yet. The chain may have been replaced (a devnet restarted
    /// and the registry deployed again), so check it again before following.
    pub(crate) rebuilt: bool,
}

/// What the reorg check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reorg {
    None,
    /// Blocks above a common ancestor were undone.
    Undone,
    /// No common ancestor: everything was dropped.
    Rebuilt,
}

/// The follower core: a chain, the persisted snapshot and its history.
pub(crate) struct Follower<C> {
    chain: C,
    address: Address,
    deploy_block: u64,
    db: SnapshotDb,
    history: History,
    params: FollowParams,
    chunk: u64,
}

impl<C: Chain> Follower<C> {
    pub(crate) fn new(
        chain: C,
        address: Address,
        deploy_block: u64,
        db: SnapshotDb,
        history: History,
        params: FollowParams,
    ) -> Self {
        Self {
            chain,
            address,
            deploy_block,
            db,
            history,
            chunk: params.log_chunk_blocks.max(1),
            params,
        }
    }

    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// Gives the history back (to make a new follower after re-checking the chain).
    pub(crate) fn into_history(self) -> History {
        self.history
    }

    /// One poll. Cancel-safe only in the sense that the persisted snapshot
    /// stays consistent; drop the follower after cancelling it.
    pub(crate) async fn poll(&mut self) -> Result<Progress, FollowError> {
        let head = self.chain.head().await?;
        let reorg = self.check_reorg(head).await?;
        if reorg == Reorg::Rebuilt {
            return Ok(Progress {
                head,
                applied: None,
                behind: true,
                reorged: true,
                rebuilt: true,
            });
        }
        let target = head.saturating_sub(self.params.confirmations);
        let mut chunks = 0;
        let behind = loop {
            let from = self.history.applied().map_or(self.deploy_block, |a| a + 1);
            if from > target {
                break false;
            }
            if chunks == self.params.max_chunks_per_poll {
                break true;
            }
            let to = target.min(from.saturating_add(self.chunk - 1));
            let logs = match self.chain.logs(self.address, from, to).await {
                Ok(logs) => logs,
                // Providers refuse ranges with too many logs or blocks:
                // halve the chunk and try again.
                Err(e) if e.is_server_error() && self.chunk > 1 => {
                    self.chunk = (self.chunk / 2).max(1);
                    tracing::debug!(chunk = self.chunk, error = %e, "eth_getLogs refused; smaller chunks");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let to_hash = self
                .chain
                .block_hash(to)
                .await?
                .ok_or(FollowError::MissingBlock { block: to, head })?;
            let events = self.verified_events(logs, from, to, to_hash).await?;
            if !events.is_empty() {
                tracing::debug!(from, to, events = events.len(), "applying registry events");
            }
            // Persist first: if that fails the in-memory history is unchanged.
            self.db.append(to, to_hash, events.clone()).await?;
            self.history.append(to, to_hash, events);
            if let Some(c) = self.history.compact() {
                let base = c.base_changed.then(|| self.history.base().clone());
                self.db.compact(c, base).await?;
            }
            self.chunk = (self.chunk * 2).min(self.params.log_chunk_blocks.max(1));
            chunks += 1;
        };
        Ok(Progress {
            head,
            applied: self.history.applied(),
            behind,
            reorged: reorg == Reorg::Undone,
            rebuilt: false,
        })
    }

    /// Undoes orphaned blocks.
    ///
    /// Only the newest applied block is compared in the common case: block
    /// hashes chain, so if any earlier block had changed, this one would
    /// have too. That is also why hashes are kept only for chunk ends and
    /// blocks with events, not for every block.
    async fn check_reorg(&mut self, head: u64) -> Result<Reorg, FollowError> {
        let Some(applied) = self.history.applied() else {
            return Ok(Reorg::None);
        };
        let stored = self.history.hashes().get(&applied).copied();
        let on_chain = self.hash_at(applied, head).await?;
        if stored.is_some() && stored == on_chain {
            return Ok(Reorg::None);
        }
        let candidates: Vec<(u64, B256)> = self
            .history
            .hashes_newest_first()
            .filter(|(n, _)| **n < applied)
            .map(|(n, h)| (*n, *h))
            .collect();
        let mut ancestor = None;
        for (n, h) in candidates {
            if self.hash_at(n, head).await? == Some(h) {
                ancestor = Some(n);
                break;
            }
        }
        match ancestor {
            Some(a) => {
                tracing::warn!(
                    applied,
                    ancestor = a,
                    "chain reorganised: undoing the registry events of blocks {}..={applied}",
                    a + 1
                );
                self.db.rollback(a).await?;
                self.history.rollback(a);
                Ok(Reorg::Undone)
            }
            None => {
                tracing::warn!(
                    applied,
                    "chain reorganised beyond the kept history (or was replaced): rebuilding the registry snapshot from block {}",
                    self.deploy_block
                );
                self.db.clear().await?;
                self.history.reset();
                Ok(Reorg::Rebuilt)
            }
        }
    }

    async fn hash_at(&self, n: u64, head: u64) -> Result<Option<B256>, FollowError> {
        if n > head {
            return Ok(None);
        }
        Ok(self.chain.block_hash(n).await?)
    }

    /// Decodes the chunk's logs and checks their blocks are still on the chain.
    async fn verified_events(
        &self,
        logs: Vec<Log>,
        from: u64,
        to: u64,
        to_hash: B256,
    ) -> Result<Vec<AppliedEvent>, FollowError> {
        let mut events = Vec::with_capacity(logs.len());
        let mut blocks: BTreeMap<u64, B256> = BTreeMap::new();
        for log in logs {
            if log.removed || log.address() != self.address {
                continue;
            }
            let (Some(block), Some(block_hash), Some(log_index)) =
                (log.block_number, log.block_hash, log.log_index)
            else {
                return Err(FollowError::BadLog(
                    "log without block number, block hash or index".into(),
                ));
            };
            if !(from..=to).contains(&block) {
                return Err(FollowError::BadLog(format!(
                    "log of block {block} in an answer for blocks {from}..={to}"
                )));
            }
            if *blocks.entry(block).or_insert(block_hash) != block_hash {
                return Err(FollowError::ReorgDuringFetch { block });
            }
            match RegistryEvents::decode_raw_log(log.topics(), &log.data().data) {
                Ok(event) => events.push(AppliedEvent {
                    block,
                    block_hash,
                    log_index,
                    tx_hash: log.transaction_hash,
                    event,
                }),
                Err(e) => {
                    tracing::warn!(block, log_index, error = %e, "registry log not in the interface; skipped");
                }
            }
        }
        for (&block, &hash) in &blocks {
            let on_chain = if block == to {
                Some(to_hash)
            } else {
                self.chain.block_hash(block).await?
            };
            if on_chain != Some(hash) {
                return Err(FollowError::ReorgDuringFetch { block });
            }
        }
        events.sort_by_key(|e| (e.block, e.log_index));
        Ok(events)
    }
}

#[cfg(test)]
#[path = "follower/tests.rs"]
mod tests;
