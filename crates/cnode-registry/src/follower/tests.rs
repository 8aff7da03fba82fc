//! The follower over an in-memory chain: confirmations, chunking, reorgs,
//! persistence.

use std::sync::{Arc, Mutex};

use alloy::primitives::{IntoLogData, LogData};

use super::*;
use crate::state::{
    HISTORY_BLOCKS,
    tests::{op, registered, route},
};

const REGISTRY: Address = Address::repeat_byte(0xcc);

/// A chain in memory: block n has hash `hashes[n]` and the events `logs[n]`.
#[derive(Clone, Default)]
struct FakeChain {
    inner: Arc<Mutex<Blocks>>,
}

#[derive(Default)]
struct Blocks {
    blocks: Vec<(B256, Vec<RegistryEvents>)>,
    /// Forks made so far, mixed into new hashes so a replaced block differs.
    fork: u8,
    /// Largest `eth_getLogs` range answered; larger ones are refused.
    max_range: Option<u64>,
    /// When set, logs report this hash for their block (a fork that lost).
    stale_log_hash: Option<B256>,
    calls: u64,
}

impl FakeChain {
    fn new() -> Self {
        let c = Self::default();
        c.mine(vec![]); // genesis
        c
    }

    /// Adds one block with `events`; returns its number.
    fn mine(&self, events: Vec<RegistryEvents>) -> u64 {
        let mut b = self.inner.lock().unwrap();
        let n = b.blocks.len() as u64;
        let mut h = [0u8; 32];
        h[..8].copy_from_slice(&n.to_be_bytes());
        h[8] = b.fork;
        b.blocks.push((B256::from(h), events));
        n
    }

    fn mine_empty(&self, count: usize) {
        for _ in 0..count {
            self.mine(vec![]);
        }
    }

    /// Drops every block above `keep` (a reorg); later blocks get new hashes.
    fn truncate(&self, keep: u64) {
        let mut b = self.inner.lock().unwrap();
        b.blocks.truncate(keep as usize + 1);
        b.fork += 1;
    }

    fn set(&self, f: impl FnOnce(&mut Blocks)) {
        f(&mut self.inner.lock().unwrap());
    }

    fn calls(&self) -> u64 {
        self.inner.lock().unwrap().calls
    }
}

impl Chain for FakeChain {
    async fn head(&self) -> Result<u64, RpcError> {
        let mut b = self.inner.lock().unwrap();
        b.calls += 1;
        Ok(b.blocks.len() as u64 - 1)
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>, RpcError> {
        let mut b = self.inner.lock().unwrap();
        b.calls += 1;
        Ok(b.blocks.get(number as usize).map(|(h, _)| *h))
    }

    async fn logs(&self, address: Address, from: u64, to: u64) -> Result<Vec<Log>, RpcError> {
        let mut b = self.inner.lock().unwrap();
        b.calls += 1;
        if b.max_range.is_some_and(|m| to - from + 1 > m) {
            return Err(RpcError::Server {
                endpoint: "fake".into(),
                method: "eth_getLogs",
                code: -32005,
                message: "query returned more than 10000 results".into(),
                data: None,
            });
        }
        let mut out = Vec::new();
        for n in from..=to.min(b.blocks.len() as u64 - 1) {
            let (hash, events) = &b.blocks[n as usize];
            for (i, e) in events.iter().enumerate() {
                let data: LogData = e.to_log_data();
                out.push(Log {
                    inner: alloy::primitives::Log { address, data },
                    block_hash: Some(b.stale_log_hash.unwrap_or(*hash)),
                    block_number: Some(n),
                    block_timestamp: None,
                    transaction_hash: Some(B256::repeat_byte(n as u8)),
                    transaction_index: Some(0),
                    log_index: Some(i as u64),
                    removed: false,
                });
            }
        }
        Ok(out)
    }
}

fn params(confirmations: u64, chunk: u64) -> FollowParams {
    FollowParams {
        confirmations,
        log_chunk_blocks: chunk,
        max_chunks_per_poll: 1000,
    }
}

fn follower(chain: &FakeChain, db: &SnapshotDb, p: FollowParams) -> Follower<FakeChain> {
    db.reset_blocking(31337, REGISTRY).unwrap();
    Follower::new(
        chain.clone(),
        REGISTRY,
        1,
        db.clone(),
        History::default(),
        p,
    )
}

fn operators(f: &Follower<FakeChain>) -> Vec<Address> {
    f.history().current().nodes().map(|n| n.operator).collect()
}

/// What a restart would load equals what the follower holds.
fn assert_persisted(f: &Follower<FakeChain>, db: &SnapshotDb) {
    let loaded = db.load_blocking().unwrap().unwrap();
    assert_eq!(loaded.history.applied(), f.history().applied());
    assert_eq!(**loaded.history.current(), **f.history().current());
    assert_eq!(loaded.history.hashes(), f.history().hashes());
}

#[tokio::test]
async fn applies_events_after_confirmations() {
    let chain = FakeChain::new();
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(2, 1000));
    chain.mine(vec![registered(1, &["w5q6"])]); // block 1
    let p = f.poll().await.unwrap();
    assert_eq!(p.head, 1);
    assert_eq!(p.applied, None, "block 1 has no confirmations yet");
    chain.mine_empty(1);
    f.poll().await.unwrap();
    assert!(operators(&f).is_empty());
    chain.mine_empty(1); // head 3: block 1 has 2 on top
    let p = f.poll().await.unwrap();
    assert_eq!(p.applied, Some(1));
    assert_eq!(operators(&f), vec![op(1)]);
    assert!(!p.behind);
    assert_persisted(&f, &db);
}

#[tokio::test]
async fn catches_up_in_chunks_and_shrinks_refused_ranges() {
    let chain = FakeChain::new();
    for n in 1..=30u8 {
        chain.mine(if n % 3 == 0 {
            vec![registered(n, &["w5q6"])]
        } else {
            vec![]
        });
    }
    chain.set(|b| b.max_range = Some(4));
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(0, 1000));
    let p = f.poll().await.unwrap();
    assert_eq!(p.applied, Some(30));
    assert_eq!(operators(&f).len(), 10);
    assert_persisted(&f, &db);

    // A poll that may do only a few chunks says it is behind.
    let chain = FakeChain::new();
    chain.mine_empty(50);
    let mut f = follower(
        &chain,
        &SnapshotDb::in_memory(),
        FollowParams {
            max_chunks_per_poll: 2,
            ..params(0, 10)
        },
    );
    let p = f.poll().await.unwrap();
    assert!(p.behind);
    assert_eq!(p.applied, Some(20));
}

#[tokio::test]
async fn reorg_undoes_orphaned_events() {
    let chain = FakeChain::new();
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(0, 1000));
    chain.mine(vec![registered(1, &["w5q6"])]); // 1
    chain.mine(vec![registered(2, &["w5q6"])]); // 2
    f.poll().await.unwrap();
    chain.mine(vec![registered(3, &["w5q6"]), route("w5q6", &[3, 1])]); // 3
    chain.mine(vec![]); // 4
    f.poll().await.unwrap();
    assert_eq!(operators(&f), vec![op(1), op(2), op(3)]);
    assert_eq!(
        f.history().current().route(&"w5q6".parse().unwrap()).len(),
        2
    );

    // Blocks 3 and 4 are replaced by a longer fork with other events.
    chain.truncate(2);
    chain.mine(vec![registered(4, &["w5q6"])]); // 3'
    chain.mine_empty(2); // 4', 5'
    let p = f.poll().await.unwrap();
    assert!(p.reorged);
    assert_eq!(p.applied, Some(5));
    assert_eq!(operators(&f), vec![op(1), op(2), op(4)]);
    assert!(f.history().current().routes().is_empty());
    assert_persisted(&f, &db);

    // A fork that is shorter than what was applied.
    chain.truncate(2);
    let p = f.poll().await.unwrap();
    assert!(p.reorged);
    assert_eq!(p.applied, Some(2));
    assert_eq!(operators(&f), vec![op(1), op(2)]);
    assert_persisted(&f, &db);
}

#[tokio::test]
async fn reorg_beyond_the_kept_history_rebuilds() {
    let chain = FakeChain::new();
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(0, 1000));
    chain.mine(vec![registered(1, &["w5q6"])]);
    chain.mine_empty(HISTORY_BLOCKS as usize + 10);
    f.poll().await.unwrap();
    chain.mine(vec![registered(2, &["w5q6"])]);
    f.poll().await.unwrap();
    // Block 1 is folded into the base and its hash forgotten.
    assert!(f.history().hashes().keys().all(|n| *n > 1));

    // The whole chain is replaced (a devnet restarted without its state).
    chain.truncate(0);
    chain.mine(vec![registered(7, &["w5q6"])]);
    chain.mine_empty(3);
    let p = f.poll().await.unwrap();
    assert!(p.reorged && p.rebuilt);
    assert_eq!(p.applied, None);
    assert!(operators(&f).is_empty());
    assert_persisted(&f, &db);
    // The next poll follows the new chain from the deploy block.
    let p = f.poll().await.unwrap();
    assert!(!p.reorged);
    assert_eq!(p.applied, Some(4));
    assert_eq!(operators(&f), vec![op(7)]);
    assert_persisted(&f, &db);
}

#[tokio::test]
async fn logs_from_a_losing_fork_are_not_applied() {
    let chain = FakeChain::new();
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(0, 1000));
    chain.mine(vec![registered(1, &["w5q6"])]);
    chain.mine_empty(2);
    chain.set(|b| b.stale_log_hash = Some(B256::repeat_byte(0xdd)));
    let err = f.poll().await.unwrap_err();
    assert!(
        matches!(err, FollowError::ReorgDuringFetch { block: 1 }),
        "{err}"
    );
    assert!(operators(&f).is_empty());
    assert_eq!(f.history().applied(), None);
    chain.set(|b| b.stale_log_hash = None);
    f.poll().await.unwrap();
    assert_eq!(operators(&f), vec![op(1)]);
}

#[tokio::test]
async fn idle_polls_cost_two_calls() {
    let chain = FakeChain::new();
    let mut f = follower(&chain, &SnapshotDb::in_memory(), params(2, 1000));
    chain.mine_empty(10);
    f.poll().await.unwrap();
    let before = chain.calls();
    f.poll().await.unwrap();
    // eth_blockNumber + the applied block's hash.
    assert_eq!(chain.calls() - before, 2);
}

#[tokio::test]
async fn compaction_is_persisted() {
    let chain = FakeChain::new();
    let db = SnapshotDb::in_memory();
    let mut f = follower(&chain, &db, params(0, 64));
    chain.mine(vec![registered(1, &["w5q6"])]);
    chain.mine(vec![route("w5q6", &[1])]);
    chain.mine_empty(HISTORY_BLOCKS as usize * 2);
    f.poll().await.unwrap();
    assert_eq!(f.history().events().len(), 0);
    assert_eq!(f.history().base().nodes().count(), 1);
    assert_persisted(&f, &db);
    // Hashes stay bounded by the window.
    assert!(f.history().hashes().len() as u64 <= HISTORY_BLOCKS + 1);
}
