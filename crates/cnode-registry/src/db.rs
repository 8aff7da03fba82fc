//! The persisted snapshot: `registry.sqlite` in the data directory.
//!
//! A file of its own rather than a migration of the node's `cnode.db`:
//! everything in it is a cache of the chain that can be thrown away and
//! re-read from the RPC (it is reset whenever the configured chain id or
//! contract changes, or a reorg is deeper than the kept history), its writes
//! come from one follower task at the chain's pace and should not queue
//! behind the node's single store connection, and this crate stays usable
//! without `cnode-store` (the CLI can open a snapshot read-only).
//!
//! It mirrors [`History`]: the compacted base state (JSON), the events of
//! the recent blocks (raw topics and data, decoded again on load with the
//! bindings), the recent block hashes, and which chain and contract it
//! belongs to.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, Bytes, IntoLogData, LogData},
    sol_types::SolEventInterface,
};
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

use crate::{
    bindings::RegistryEvents,
    state::{AppliedEvent, Compaction, History, Snapshot},
};

/// The snapshot's file name in the data directory.
pub const SNAPSHOT_FILE: &str = "registry.sqlite";

/// Schema, oldest first. Never edit a released migration: append.
const MIGRATIONS: &[M<'static>] = &[M::up(
    "CREATE TABLE meta (
        id           INTEGER PRIMARY KEY CHECK (id = 1),
        chain_id     INTEGER NOT NULL,
        contract     BLOB NOT NULL,
        deploy_block INTEGER,
        applied      INTEGER,          -- last applied block, NULL before the first
        base         TEXT NOT NULL     -- JSON Snapshot with the compacted events
    );
    CREATE TABLE events (
        block      INTEGER NOT NULL,
        log_index  INTEGER NOT NULL,
        block_hash BLOB NOT NULL,
        tx_hash    BLOB,
        topics     BLOB NOT NULL,      -- 32-byte topics, concatenated
        data       BLOB NOT NULL,
        PRIMARY KEY (block, log_index)
    ) WITHOUT ROWID;
    CREATE TABLE blocks (
        number INTEGER PRIMARY KEY,
        hash   BLOB NOT NULL
    );",
)];

/// Opening, reading or writing the snapshot failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// SQLite could not open or configure the file.
    #[error("cannot open registry snapshot {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate registry snapshot {path}: {source}")]
    Migrate {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite_migration::Error,
    },
    /// A query failed.
    #[error("registry snapshot database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Stored data does not decode.
    #[error("registry snapshot is corrupt: {0}")]
    Corrupt(String),
    /// The blocking task running the query panicked or was cancelled.
    #[error("registry snapshot task failed: {0}")]
    Task(String),
}

/// What was persisted, as loaded at start.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) chain_id: u64,
    pub(crate) contract: Address,
    pub(crate) deploy_block: Option<u64>,
    pub(crate) history: History,
}

/// The open snapshot database. One connection, used from the blocking pool.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDb {
    conn: Arc<Mutex<Connection>>,
}

impl SnapshotDb {
    /// Opens (creating) `registry.sqlite` in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Self, SnapshotError> {
        let path = dir.join(SNAPSHOT_FILE);
        let open = |source| SnapshotError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(open)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|source| SnapshotError::Migrate {
                path: path.clone(),
                source,
            })?;
        Ok(Self::from_conn(conn))
    }

    /// An in-memory database, for tests.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Self {
        let mut conn = Connection::open_in_memory().expect("in-memory sqlite");
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .expect("migrate");
        Self::from_conn(conn)
    }

    fn from_conn(conn: Connection) -> Self {
        Self {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, SnapshotError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, SnapshotError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| SnapshotError::Task(e.to_string()))?
    }

    /// Loads the persisted snapshot, if there is one.
    pub(crate) fn load_blocking(&self) -> Result<Option<Loaded>, SnapshotError> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        load(&conn)
    }

    /// Starts over for `chain_id` / `contract`: everything else is dropped.
    pub(crate) fn reset_blocking(
        &self,
        chain_id: u64,
        contract: Address,
    ) -> Result<(), SnapshotError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        reset(&mut conn, chain_id, contract)
    }

    /// Starts over for the same chain and contract (deep reorg).
    pub(crate) async fn clear(&self) -> Result<(), SnapshotError> {
        self.call(|conn| {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM events", [])?;
            tx.execute("DELETE FROM blocks", [])?;
            tx.execute(
                "UPDATE meta SET applied = NULL, base = ?1",
                [to_json(&Snapshot::default())?],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn set_deploy_block(&self, block: u64) -> Result<(), SnapshotError> {
        self.call(move |conn| {
            conn.execute("UPDATE meta SET deploy_block = ?1", [to_i64(block)?])?;
            Ok(())
        })
        .await
    }

    /// Persists [`History::append`]: new events, block hashes, applied block.
    pub(crate) async fn append(
        &self,
        to: u64,
        to_hash: B256,
        events: Vec<AppliedEvent>,
    ) -> Result<(), SnapshotError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut ins_event = tx.prepare_cached(
                    "INSERT OR REPLACE INTO events (block, log_index, block_hash, tx_hash, topics, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let mut ins_block =
                    tx.prepare_cached("INSERT OR REPLACE INTO blocks (number, hash) VALUES (?1, ?2)")?;
                for e in &events {
                    let log = e.event.to_log_data();
                    let topics: Vec<u8> =
                        log.topics().iter().flat_map(|t| t.0).collect();
                    ins_event.execute(params![
                        to_i64(e.block)?,
                        to_i64(e.log_index)?,
                        e.block_hash.as_slice(),
                        e.tx_hash.as_ref().map(|h| h.as_slice()),
                        topics,
                        log.data.as_ref(),
                    ])?;
                    ins_block.execute(params![to_i64(e.block)?, e.block_hash.as_slice()])?;
                }
                ins_block.execute(params![to_i64(to)?, to_hash.as_slice()])?;
            }
            tx.execute("UPDATE meta SET applied = ?1", [to_i64(to)?])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Persists [`History::rollback`].
    pub(crate) async fn rollback(&self, ancestor: u64) -> Result<(), SnapshotError> {
        self.call(move |conn| {
            let a = to_i64(ancestor)?;
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM events WHERE block > ?1", [a])?;
            tx.execute("DELETE FROM blocks WHERE number > ?1", [a])?;
            tx.execute("UPDATE meta SET applied = ?1", [a])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Persists [`History::compact`]; `base` is the history's new base.
    pub(crate) async fn compact(
        &self,
        c: Compaction,
        base: Option<Snapshot>,
    ) -> Result<(), SnapshotError> {
        self.call(move |conn| {
            let tx = conn.transaction()?;
            if let Some(base) = base {
                tx.execute("UPDATE meta SET base = ?1", [to_json(&base)?])?;
                tx.execute(
                    "DELETE FROM events WHERE block <= ?1",
                    [to_i64(c.fold_through)?],
                )?;
            }
            tx.execute(
                "DELETE FROM blocks WHERE number < ?1",
                [to_i64(c.prune_below)?],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }
}

fn reset(conn: &mut Connection, chain_id: u64, contract: Address) -> Result<(), SnapshotError> {
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM events", [])?;
    tx.execute("DELETE FROM blocks", [])?;
    tx.execute("DELETE FROM meta", [])?;
    tx.execute(
        "INSERT INTO meta (id, chain_id, contract, deploy_block, applied, base)
         VALUES (1, ?1, ?2, NULL, NULL, ?3)",
        params![
            to_i64(chain_id)?,
            contract.as_slice(),
            to_json(&Snapshot::default())?
        ],
    )?;
    tx.commit()?;
    Ok(())
}

fn load(conn: &Connection) -> Result<Option<Loaded>, SnapshotError> {
    let Some((chain_id, contract, deploy_block, applied, base)) = conn
        .query_row(
            "SELECT chain_id, contract, deploy_block, applied, base FROM meta WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, String>(4)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let contract = Address::try_from(contract.as_slice()).map_err(|_| {
        SnapshotError::Corrupt(format!("contract address of {} bytes", contract.len()))
    })?;
    let base: Snapshot = serde_json::from_str(&base)
        .map_err(|e| SnapshotError::Corrupt(format!("base state: {e}")))?;

    let mut events = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT block, log_index, block_hash, tx_hash, topics, data FROM events ORDER BY block, log_index",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let block = from_i64(r.get(0)?)?;
        let log_index = from_i64(r.get(1)?)?;
        let block_hash = b256(&r.get::<_, Vec<u8>>(2)?)?;
        let tx_hash = r
            .get::<_, Option<Vec<u8>>>(3)?
            .map(|h| b256(&h))
            .transpose()?;
        let topics: Vec<u8> = r.get(4)?;
        let data: Vec<u8> = r.get(5)?;
        if !topics.len().is_multiple_of(32) {
            return Err(SnapshotError::Corrupt(format!(
                "event at block {block} has {} topic bytes",
                topics.len()
            )));
        }
        let topics: Vec<B256> = topics.chunks_exact(32).map(B256::from_slice).collect();
        let log = LogData::new_unchecked(topics, Bytes::from(data));
        let event = RegistryEvents::decode_raw_log(log.topics(), &log.data).map_err(|e| {
            SnapshotError::Corrupt(format!("event at block {block} index {log_index}: {e}"))
        })?;
        events.push(AppliedEvent {
            block,
            block_hash,
            log_index,
            tx_hash,
            event,
        });
    }

    let mut hashes = BTreeMap::new();
    let mut stmt = conn.prepare("SELECT number, hash FROM blocks")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        hashes.insert(from_i64(r.get(0)?)?, b256(&r.get::<_, Vec<u8>>(1)?)?);
    }

    Ok(Some(Loaded {
        chain_id: from_i64(chain_id)?,
        contract,
        deploy_block: deploy_block.map(from_i64).transpose()?,
        history: History::new(base, events, hashes, applied.map(from_i64).transpose()?),
    }))
}

fn to_json(s: &Snapshot) -> Result<String, SnapshotError> {
    serde_json::to_string(s)
        .map_err(|e| SnapshotError::Corrupt(format!("cannot encode state: {e}")))
}

fn to_i64(n: u64) -> Result<i64, SnapshotError> {
    i64::try_from(n)
        .map_err(|_| SnapshotError::Corrupt(format!("{n} does not fit SQLite's INTEGER")))
}

fn from_i64(n: i64) -> Result<u64, SnapshotError> {
    u64::try_from(n).map_err(|_| SnapshotError::Corrupt(format!("negative number {n}")))
}

fn b256(b: &[u8]) -> Result<B256, SnapshotError> {
    B256::try_from(b).map_err(|_| SnapshotError::Corrupt(format!("hash of {} bytes", b.len())))
}
