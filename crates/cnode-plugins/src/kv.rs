//! The plugins' private key-value store: one SQLite file
//! (`<data>/plugins/kv.sqlite`), one namespace per plugin, with per-value and
//! per-plugin size caps.
//!
//! One connection behind a mutex; every operation runs on tokio's blocking
//! pool so async code never waits on disk on a runtime thread (the same
//! pattern as `cnode-store`). A plugin's usage (key + value bytes) is kept in
//! its own table and updated in the same transaction as the data, so the
//! quota check does not scan the plugin's keys.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::{
    manifest::PluginId,
    services::{ErrorCode, HostError},
};

/// Size limits of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// The longest key, bytes.
    pub max_key: usize,
    /// The largest value, bytes.
    pub max_value: usize,
    /// The most a plugin may store (keys + values), bytes.
    pub max_total: u64,
    /// The most keys one `list-keys` returns.
    pub max_list: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_key: 1024,
            max_value: 64 * 1024,
            max_total: 10 * 1024 * 1024,
            max_list: 1000,
        }
    }
}

/// The store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the plugin key-value store {path}: {source}")]
pub struct KvOpenError {
    /// The database file.
    pub path: String,
    /// What SQLite said.
    #[source]
    pub source: rusqlite::Error,
}

/// A cloneable handle to the key-value store.
#[derive(Debug, Clone)]
pub struct KvStore {
    path: Arc<std::path::PathBuf>,
    /// Opened on first use when made by [`KvStore::lazy`].
    conn: Arc<tokio::sync::OnceCell<Arc<Mutex<Connection>>>>,
    limits: KvLimits,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    plugin TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_usage (
    plugin TEXT PRIMARY KEY NOT NULL,
    bytes  INTEGER NOT NULL
) WITHOUT ROWID;
";

fn connect(path: &Path) -> Result<Connection, KvOpenError> {
    let err = |source| KvOpenError {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(err)?;
    // No checkpoint when the node closes it: committed data is durable in
    // the WAL, and a short-lived process (`cnode get`) saves the fsyncs.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(err)?;
    conn.execute_batch(SCHEMA).map_err(err)?;
    Ok(conn)
}

impl KvStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path, limits: KvLimits) -> Result<Self, KvOpenError> {
        let conn = Arc::new(Mutex::new(connect(path)?));
        Ok(Self {
            path: Arc::new(path.to_owned()),
            conn: Arc::new(tokio::sync::OnceCell::new_with(Some(conn))),
            limits,
        })
    }

    /// The store at `path`, opened (and created) when a plugin first uses
    /// it: a node without plugins never creates the file, and starting one
    /// costs no database set-up. An error opening it then fails that call.
    pub fn lazy(path: &Path, limits: KvLimits) -> Self {
        Self {
            path: Arc::new(path.to_owned()),
            conn: Arc::new(tokio::sync::OnceCell::new()),
            limits,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> KvLimits {
        self.limits
    }

    async fn run<T, F>(&self, f: F) -> Result<T, HostError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, KvLimits) -> Result<T, HostError> + Send + 'static,
    {
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let path = self.path.clone();
                tokio::task::spawn_blocking(move || connect(&path))
                    .await
                    .map_err(|e| HostError::internal(format!("kv task failed: {e}")))?
                    .map(|c| Arc::new(Mutex::new(c)))
                    .map_err(|e| HostError::internal(e.to_string()))
            })
            .await?
            .clone();
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| HostError::internal("kv store lock poisoned"))?;
            f(&mut conn, limits)
        })
        .await
        .map_err(|e| HostError::internal(format!("kv task failed: {e}")))?
    }

    fn check_key(&self, key: &str) -> Result<(), HostError> {
        if key.len() > self.limits.max_key {
            return Err(HostError::too_large(format!(
                "key is {} bytes, the limit is {}",
                key.len(),
                self.limits.max_key
            )));
        }
        Ok(())
    }

    /// The value of `key`.
    pub async fn get(&self, plugin: &PluginId, key: String) -> Result<Option<Vec<u8>>, HostError> {
        self.check_key(&key)?;
        let plugin = plugin.to_string();
        self.run(move |conn, _| {
            conn.prepare_cached("SELECT value FROM kv WHERE plugin = ?1 AND key = ?2")
                .and_then(|mut s| s.query_row(params![plugin, key], |r| r.get(0)).optional())
                .map_err(sql)
        })
        .await
    }

    /// Sets `key` to `value`, within the value and quota limits.
    pub async fn set(
        &self,
        plugin: &PluginId,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), HostError> {
        self.check_key(&key)?;
        if value.len() > self.limits.max_value {
            return Err(HostError::too_large(format!(
                "value is {} bytes, the limit is {}",
                value.len(),
                self.limits.max_value
            )));
        }
        let plugin = plugin.to_string();
        self.run(move |conn, limits| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let old: Option<i64> = tx
                .query_row(
                    "SELECT length(value) FROM kv WHERE plugin = ?1 AND key = ?2",
                    params![plugin, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            let used = usage(&tx, &plugin)?;
            let entry = (key.len() + value.len()) as u64;
            let freed = old.map_or(0, |v| key.len() as u64 + v as u64);
            let after = used.saturating_sub(freed) + entry;
            if after > limits.max_total {
                return Err(HostError::too_large(format!(
                    "the plugin's key-value store would hold {after} bytes, the limit is {}",
                    limits.max_total
                )));
            }
            tx.execute(
                "INSERT INTO kv (plugin, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
                params![plugin, key, value],
            )
            .map_err(sql)?;
            set_usage(&tx, &plugin, after)?;
            tx.commit().map_err(sql)
        })
        .await
    }

    /// Removes `key` (no error when unset).
    pub async fn delete(&self, plugin: &PluginId, key: String) -> Result<(), HostError> {
        self.check_key(&key)?;
        let plugin = plugin.to_string();
        self.run(move |conn, _| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let old: Option<i64> = tx
                .query_row(
                    "DELETE FROM kv WHERE plugin = ?1 AND key = ?2 RETURNING length(value)",
                    params![plugin, key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(sql)?;
            if let Some(v) = old {
                let used = usage(&tx, &plugin)?;
                set_usage(
                    &tx,
                    &plugin,
                    used.saturating_sub(key.len() as u64 + v as u64),
                )?;
            }
            tx.commit().map_err(sql)
        })
        .await
    }

    /// Keys starting with `prefix`, in byte order, after `start_after`, at
    /// most `limit` (0 or above the cap: the cap).
    pub async fn list_keys(
        &self,
        plugin: &PluginId,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, HostError> {
        self.check_key(&prefix)?;
        let plugin = plugin.to_string();
        self.run(move |conn, limits| {
            let limit = if limit == 0 || limit > limits.max_list {
                limits.max_list
            } else {
                limit
            } as usize;
            // Keys compare bytewise (SQLite's BINARY collation on UTF-8), so
            // the keys with a prefix are one contiguous run from the prefix.
            let (sql_text, from) = match start_after {
                Some(a) if a >= prefix => (
                    "SELECT key FROM kv WHERE plugin = ?1 AND key > ?2 ORDER BY key",
                    a,
                ),
                _ => (
                    "SELECT key FROM kv WHERE plugin = ?1 AND key >= ?2 ORDER BY key",
                    prefix.clone(),
                ),
            };
            let mut stmt = conn.prepare_cached(sql_text).map_err(sql)?;
            let mut rows = stmt.query(params![plugin, from]).map_err(sql)?;
            let mut out = Vec::new();
            while out.len() < limit {
                let Some(row) = rows.next().map_err(sql)? else {
                    break;
                };
                let key: String = row.get(0).map_err(sql)?;
                if !key.starts_with(&prefix) {
                    break;
                }
                out.push(key);
            }
            Ok(out)
        })
        .await
    }

    /// Bytes (keys + values) the plugin stores.
    pub async fn usage(&self, plugin: &PluginId) -> Result<u64, HostError> {
        let plugin = plugin.to_string();
        self.run(move |conn, _| usage(conn, &plugin)).await
    }

    /// Removes everything the plugin stored (when it is uninstalled).
    pub async fn clear(&self, plugin: &PluginId) -> Result<(), HostError> {
        let plugin = plugin.to_string();
        self.run(move |conn, _| {
            let tx = conn.transaction().map_err(sql)?;
            tx.execute("DELETE FROM kv WHERE plugin = ?1", params![plugin])
                .map_err(sql)?;
            tx.execute("DELETE FROM kv_usage WHERE plugin = ?1", params![plugin])
                .map_err(sql)?;
            tx.commit().map_err(sql)
        })
        .await
    }
}

fn usage(conn: &Connection, plugin: &str) -> Result<u64, HostError> {
    conn.query_row(
        "SELECT bytes FROM kv_usage WHERE plugin = ?1",
        params![plugin],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|b| b.unwrap_or(0).max(0) as u64)
    .map_err(sql)
}

fn set_usage(conn: &Connection, plugin: &str, bytes: u64) -> Result<(), HostError> {
    conn.execute(
        "INSERT INTO kv_usage (plugin, bytes) VALUES (?1, ?2)
         ON CONFLICT (plugin) DO UPDATE SET bytes = excluded.bytes",
        params![plugin, bytes as i64],
    )
    .map(|_| ())
    .map_err(sql)
}

fn sql(e: rusqlite::Error) -> HostError {
    HostError::new(ErrorCode::Internal, format!("kv store: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> PluginId {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn a_lazy_store_is_created_on_first_use_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.sqlite");
        let kv = KvStore::lazy(&path, KvLimits::default());
        assert!(!path.exists(), "nothing is created before a plugin uses it");
        let a = id("org.test.a");
        kv.set(&a, "k".into(), b"v".to_vec()).await.unwrap();
        assert!(path.exists());
        drop(kv);
        // Closed without a checkpoint: the value is read back from the WAL.
        let again = KvStore::open(&path, KvLimits::default()).unwrap();
        assert_eq!(
            again.get(&a, "k".into()).await.unwrap().as_deref(),
            Some(&b"v"[..])
        );
        // A store that cannot be opened fails the call, not the node.
        let bad = KvStore::lazy(
            &dir.path().join("missing/dir/kv.sqlite"),
            KvLimits::default(),
        );
        assert!(bad.get(&a, "k".into()).await.is_err());
    }

    #[tokio::test]
    async fn namespaces_quota_and_listing() {
        let dir = tempfile::tempdir().unwrap();
        let limits = KvLimits {
            max_total: 100,
            ..KvLimits::default()
        };
        let kv = KvStore::open(&dir.path().join("kv.sqlite"), limits).unwrap();
        let (a, b) = (id("org.test.a"), id("org.test.b"));

        kv.set(&a, "x/1".into(), b"one".to_vec()).await.unwrap();
        kv.set(&a, "x/2".into(), b"two".to_vec()).await.unwrap();
        kv.set(&a, "y".into(), b"why".to_vec()).await.unwrap();
        assert_eq!(
            kv.get(&a, "x/1".into()).await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        assert_eq!(
            kv.get(&b, "x/1".into()).await.unwrap(),
            None,
            "namespaces are separate"
        );
        assert_eq!(
            kv.list_keys(&a, "x/".into(), None, 0).await.unwrap(),
            ["x/1", "x/2"]
        );
        assert_eq!(
            kv.list_keys(&a, "x/".into(), Some("x/1".into()), 0)
                .await
                .unwrap(),
            ["x/2"]
        );
        assert_eq!(
            kv.list_keys(&a, "".into(), None, 2).await.unwrap(),
            ["x/1", "x/2"]
        );
        assert_eq!(kv.usage(&a).await.unwrap(), 6 + 6 + 4);

        // Overwriting counts the difference; the quota holds.
        kv.set(&a, "y".into(), vec![0; 80]).await.unwrap();
        assert_eq!(kv.usage(&a).await.unwrap(), 6 + 6 + 81);
        let err = kv.set(&a, "z".into(), vec![0; 10]).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge, "{err}");
        kv.delete(&a, "y".into()).await.unwrap();
        kv.delete(&a, "y".into()).await.unwrap();
        assert_eq!(kv.usage(&a).await.unwrap(), 12);
        kv.set(&a, "z".into(), vec![0; 10]).await.unwrap();

        let err = kv
            .set(&a, "big".into(), vec![0; 64 * 1024 + 1])
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::TooLarge);

        kv.clear(&a).await.unwrap();
        assert_eq!(kv.usage(&a).await.unwrap(), 0);
        assert!(
            kv.list_keys(&a, "".into(), None, 0)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
