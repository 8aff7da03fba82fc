//! The node's one SQLite database (`cnode.db` in the data directory).
//!
//! Actors: none of its own. [`Store`] is a cloneable handle around one
//! connection behind a mutex; every call runs on tokio's blocking pool, so async
//! code never blocks a runtime thread on disk. SQLite serialises writers anyway,
//! and one connection keeps things sequential until that is shown to be slow.
//!
//! Tables are created by versioned migrations (`rusqlite_migration`); each later
//! feature (blobs, records, registry snapshot) adds its own migration.

#![deny(missing_docs, unreachable_pub)]

mod peers;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

pub use peers::{KnownPeer, MAX_ADDRS_PER_PEER, MAX_PEERS};
use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

/// The database file name inside the data directory.
pub const DB_FILE: &str = "cnode.db";

/// The schema, oldest first. Never edit a released migration: append a new one.
const MIGRATIONS: &[M<'static>] = &[
    M::up(
        "CREATE TABLE peers (
        peer_id      TEXT PRIMARY KEY NOT NULL,
        addrs        TEXT NOT NULL,          -- newline-separated multiaddrs
        last_seen_ms INTEGER NOT NULL,
        failures     INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX peers_last_seen ON peers(last_seen_ms DESC);",
    ),
    // Blobs (cnode-blobs): one row per complete or partial blob. `bitfield`
    // holds the verified pieces of a partial one (NULL when complete).
    M::up(
        "CREATE TABLE blobs (
        hash       BLOB PRIMARY KEY NOT NULL,
        size       INTEGER NOT NULL,
        complete   INTEGER NOT NULL,
        pinned     INTEGER NOT NULL,
        kind       TEXT NOT NULL DEFAULT 'raw',
        bitfield   BLOB,
        created_ms INTEGER NOT NULL
    );",
    ),
    // Records (cnode-records `RecordStore`): one row per slot winner
    // (tombstones included). `cell` is the 7-character geohash of the
    // record's position as an integer (prefix = range); `text` is the body's
    // string values, lowercased, indexed by the trigram FTS table (external
    // content). No triggers keep the three tables in step: a trigger makes
    // every insert a statement savepoint, and FTS5 flushes its pending terms
    // at each savepoint, which made batch inserts several times slower; the
    // records store writes all three itself. The canonical encoding lives in
    // its own table so that scans over `records` stay small. `rid` is an
    // INTEGER PRIMARY KEY so VACUUM never renumbers the FTS rowids.
    M::up(
        "CREATE TABLE records (
        rid         INTEGER PRIMARY KEY,
        id          BLOB NOT NULL,
        author      BLOB NOT NULL,
        collection  TEXT NOT NULL,
        key         TEXT NOT NULL,
        region      TEXT NOT NULL,
        cell        INTEGER NOT NULL,
        lat         REAL NOT NULL,
        lon         REAL NOT NULL,
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER,
        deleted     INTEGER NOT NULL,
        received_ms INTEGER NOT NULL,
        text        TEXT NOT NULL
    );
    CREATE TABLE record_data (
        rid     INTEGER PRIMARY KEY,
        encoded BLOB NOT NULL
    );
    CREATE UNIQUE INDEX records_id ON records(id);
    CREATE UNIQUE INDEX records_slot ON records(author, collection, key);
    -- Newest-first walks and sync: covering for the region, time, expiry,
    -- tombstone and bounding-box checks, so rows are read only for the rest.
    CREATE INDEX records_region
        ON records(region, created_at, id, expires_at, deleted, lat, lon);
    CREATE INDEX records_created ON records(created_at, id);
    -- Radius queries: geohash ranges, covering likewise.
    CREATE INDEX records_geo
        ON records(cell, created_at, id, expires_at, deleted, lat, lon);
    CREATE INDEX records_expiry ON records(expires_at) WHERE expires_at IS NOT NULL;
    CREATE VIRTUAL TABLE records_fts USING fts5(
        text, content='records', content_rowid='rid',
        tokenize='trigram case_sensitive 1', detail='none'
    );",
    ),
    // Radius queries walk each ~1 km cell (a 6-character geohash, the
    // stored 7-character cell >> 5) newest-first and merge the walks, so a
    // page is found without reading every record in the circle. The stored
    // cell stays in the index for cover ranges finer than that.
    M::up(
        "DROP INDEX records_geo;
    CREATE INDEX records_geo
        ON records(cell >> 5, created_at, id, expires_at, deleted, lat, lon, cell);",
    ),
    // Blobs handed over to a file outside the store (`cnode get -o`): the
    // store keeps the outboard and serves the data from `external` while the
    // file still matches `external_stamp` (size, mtime, inode, device).
    M::up(
        "ALTER TABLE blobs ADD COLUMN external TEXT;
    ALTER TABLE blobs ADD COLUMN external_stamp TEXT;",
    ),
];

/// Opening the database failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite could not open or configure the file.
    #[error("cannot open database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The migration lock could not be taken.
    #[error("cannot lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate database {path}: {source}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite_migration::Error,
    },
}

/// A query or update failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The blocking task running the query panicked or was cancelled.
    #[error("database task failed: {0}")]
    Task(String),
}

/// A cloneable handle to the node's database.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

/// SQLite VM instructions between checks of a [`Store::call_read`] budget.
const PROGRESS_OPS: std::os::raw::c_int = 1000;

impl Store {
    /// Opens (creating if needed) `cnode.db` in `dir` and migrates it to the latest schema.
    pub fn open(dir: &Path) -> Result<Self, OpenError> {
        let path = dir.join(DB_FILE);
        let sqlite = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };
        // Two processes opening a fresh database must not both create the
        // tables, and switching a new file to WAL while another process
        // migrates it fails with "locked" instead of waiting: configuring and
        // migrating run under an exclusive file lock.
        let lock_path = dir.join("cnode.db.migrate-lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .and_then(|f| f.lock().map(|()| f))
            .map_err(|e| OpenError::Lock {
                path: lock_path.clone(),
                source: e,
            })?;
        let mut conn = Connection::open(&path).map_err(sqlite)?;
        // First, so that every statement below waits for other processes
        // (a node and a CLI command) instead of failing with "locked".
        conn.busy_timeout(Duration::from_secs(5)).map_err(sqlite)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        // Page cache of at most 64 MiB (SQLite's default is 2 MiB): record
        // inserts with their text index run about twice as fast at 100k+.
        conn.pragma_update(None, "cache_size", -65536)
            .map_err(sqlite)?;
        // Checkpoint the WAL every 8192 pages (32 MiB) instead of 1000: a
        // batch of records dirties a few thousand index pages, and with the
        // default every commit copied them back and synced the database file.
        conn.pragma_update(None, "wal_autocheckpoint", 8192)
            .map_err(sqlite)?;
        // The last connection to close does not checkpoint the WAL into the
        // database (two fsyncs, a copy of every page in it): a short CLI
        // command such as `cnode get` spent milliseconds on that at exit.
        // Committed data is durable in the WAL either way; the next process
        // goes on from it, and the automatic checkpoint above still bounds it.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(sqlite)?;
        let migrated = Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|source| OpenError::Migrate {
                path: path.clone(),
                source,
            });
        drop(lock);
        migrated?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic in an earlier closure poisons the mutex; the connection
            // itself is still consistent (SQLite rolled back), so keep going.
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// For reads that are usually short (record queries from plugins and
    /// the API): runs `f` right here on the calling thread when the
    /// connection is free, under a time budget — SQLite's progress handler
    /// interrupts it after `budget` — and otherwise, or when interrupted,
    /// runs it again with [`Store::call_inline`]. A small indexed query so
    /// costs no thread hand-off at all, and an async worker is never held
    /// for much more than `budget`. `f` must be a read: it may run twice.
    pub async fn call_read<T, F>(&self, budget: std::time::Duration, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        if let Ok(mut guard) = self.conn.try_lock() {
            let started = std::time::Instant::now();
            guard.progress_handler(PROGRESS_OPS, Some(move || started.elapsed() > budget));
            let result = f(&mut guard);
            guard.progress_handler(PROGRESS_OPS, None::<fn() -> bool>);
            match result {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::OperationInterrupted => {}
                other => return other.map_err(StoreError::from),
            }
        }
        self.call_inline(f).await
    }

    /// Like [`Store::call`], for short reads on a latency-sensitive path
    /// (queries from plugins and the API): on a multi-threaded runtime `f`
    /// runs on the calling worker thread (`block_in_place`: the worker's
    /// other tasks move to another thread meanwhile) instead of being handed
    /// to the blocking pool and back, a round trip of two thread wake-ups
    /// that cost more than a small indexed query. On a current-thread
    /// runtime, or outside one, it is [`Store::call`].
    pub async fn call_inline<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi_thread {
            return self.call(f).await;
        }
        let conn = self.conn.clone();
        tokio::task::block_in_place(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard).map_err(StoreError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
    }

    /// A read over its budget is interrupted on the worker and run again
    /// off it, with the same answer; a short one answers directly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn call_read_falls_back_when_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let budget = std::time::Duration::from_millis(1);
        let one: i64 = store
            .call_read(budget, |c| c.query_row("SELECT 1", [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(one, 1);
        // ~3 million VM steps: well over 1 ms.
        let slow = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) SELECT sum(i) FROM n";
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = runs.clone();
        let sum: i64 = store
            .call_read(budget, move |c| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                c.query_row(slow, [], |r| r.get(0))
            })
            .await
            .unwrap();
        assert_eq!(sum, 300_000 * 300_001 / 2);
        assert_eq!(
            runs.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "interrupted once, then run again off the worker"
        );
        // The budget does not stay behind on the connection.
        let again: i64 = store
            .call(move |c| c.query_row(slow, [], |r| r.get(0)))
            .await
            .unwrap();
        assert_eq!(again, sum);
    }

    #[tokio::test]
    async fn reopen_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .upsert_peer("12D3KooWA".into(), vec!["/ip4/127.0.0.1/tcp/1".into()])
            .await
            .unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let peers = store.known_peers(10).await.unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].addrs, vec!["/ip4/127.0.0.1/tcp/1".to_owned()]);
    }

    #[test]
    fn concurrent_first_opens_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let p = dir.path().to_owned();
                std::thread::spawn(move || Store::open(&p).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn garbage_file_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x55; 4096]).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("cnode.db"), "{err}");
    }
}
