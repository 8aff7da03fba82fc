//! The records store: slot winners in the node's SQLite database, with
//! trigram full-text search and geohash radius queries.
//!
//! Actors: none. [`RecordStore`] is a cloneable handle over
//! [`cnode_store::Store`]; every operation is one closure on the blocking
//! pool, and a batch of inserts is one transaction.
//!
//! Tables (migration in `cnode-store`): `records` holds one row per slot
//! `(author, collection, key)` — the winner by `(created_at, id)`, tombstones
//! included — with the columns queries need; `record_data` holds the
//! canonical encoding, served to peers byte for byte; `records_fts` is an
//! FTS5 trigram index over the body's string values (lowercased), so Thai and
//! Chinese, which have no spaces, match by substring.
//!
//! The store writes the three tables itself, without triggers: a trigger
//! makes each insert a statement savepoint, at which FTS5 flushes its pending
//! terms, and that made batch inserts several times slower.
//!
//! Records arrive validated: the store checks no signature. It applies the
//! merge rule itself (a losing or older record is not kept) and never returns
//! an expired record, even before [`RecordStore::expire`] sweeps it. Reads
//! other than [`RecordStore::query_at`] take "now" from the system clock.
//!
//! Performance depends on SQLite's page cache: the default 2 MiB is small for
//! a million records (see the `scale` test for figures).

mod query;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use cnode_identity::Did;
use cnode_store::{Store, StoreError};
use cnode_types::RegionId;
use rusqlite::{Connection, OptionalExtension, params};

pub use self::query::{
    DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY_TERMS, MAX_QUERY_TEXT, Near, Order, Query, QueryError,
    QueryPage,
};
use crate::{
    geo,
    record::{DecodeError, Record, RecordId},
};

/// What became of one record given to [`RecordStore::insert_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored as its slot's winner; `replaced` is the `(created_at, id)` of
    /// the winner it displaced, which is no longer held.
    Inserted {
        /// The former winner of the slot, if there was one.
        replaced: Option<(u64, RecordId)>,
    },
    /// This very record is already held.
    Duplicate,
    /// The slot holds a newer record (greater `(created_at, id)`): not kept.
    Stale,
    /// The record has expired (`expires_at <= now`): not kept.
    Expired,
    /// The record cannot be stored (validation should have refused it): its
    /// region is not a 4- to 7-character geohash, or `created_at` is beyond
    /// what SQLite can order.
    Invalid {
        /// Why.
        reason: String,
    },
}

/// A record as held by this node.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The record id.
    pub id: RecordId,
    /// The record.
    pub record: Record,
    /// When this node stored it, ms since the Unix epoch.
    pub received_ms: u64,
    /// Distance from the query's point to the record's position (the centre
    /// of its geohash cell), metres; only for queries with [`Query::near`].
    pub distance_m: Option<f64>,
}

/// A records-store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordStoreError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored encoding no longer decodes (the database was altered).
    #[error("stored record {id} does not decode: {source}")]
    Corrupt {
        /// The record's id.
        id: RecordId,
        /// The decoding error.
        #[source]
        source: DecodeError,
    },
    /// The query was refused.
    #[error("invalid query: {0}")]
    Query(#[from] QueryError),
}

impl From<rusqlite::Error> for RecordStoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}

/// The records store: a cheap-to-clone handle over the node's database.
#[derive(Debug, Clone)]
pub struct RecordStore {
    store: Store,
}

/// What a row of `records` needs that is computed from the record.
struct Row {
    id: RecordId,
    encoded: Vec<u8>,
    author: [u8; 32],
    region: String,
    cell: i64,
    lat: f64,
    lon: f64,
    created_at: i64,
    expires_at: Option<i64>,
    text: String,
}

/// How long a query may run on the calling async worker before it is
/// interrupted and run again off it ([`cnode_store::Store::call_read`]).
/// Text searches skip that first try: over a large store they take longer.
const QUERY_ON_WORKER: std::time::Duration = std::time::Duration::from_millis(1);

impl RecordStore {
    /// A records store over the node's database (the records tables are
    /// created by its migrations).
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The underlying database handle.
    pub fn db(&self) -> &Store {
        &self.store
    }

    /// Merges `records` in, in order, in one transaction: each is kept only
    /// if it beats the slot's current winner. `now_ms` is the receive time
    /// and the clock for expiry. Not cancel-safe in the sense that a
    /// cancelled call may still commit.
    pub async fn insert_many(
        &self,
        records: Vec<Record>,
        now_ms: u64,
    ) -> Result<Vec<InsertOutcome>, RecordStoreError> {
        let outcomes = self
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let mut out = Vec::with_capacity(records.len());
                for record in &records {
                    out.push(insert_one(&tx, record, now_ms)?);
                }
                tx.commit()?;
                Ok(out)
            })
            .await?;
        Ok(outcomes)
    }

    /// Merges one record in; see [`insert_many`](Self::insert_many).
    pub async fn insert(
        &self,
        record: Record,
        now_ms: u64,
    ) -> Result<InsertOutcome, RecordStoreError> {
        let mut out = self.insert_many(vec![record], now_ms).await?;
        Ok(out.pop().unwrap_or(InsertOutcome::Duplicate))
    }

    /// The record with this id, if held and not expired (tombstones
    /// included).
    pub async fn get(&self, id: &RecordId) -> Result<Option<StoredRecord>, RecordStoreError> {
        let id = *id;
        let now = clamp_i64(now_ms());
        let row = self
            .store
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT r.received_ms, d.encoded FROM records r
                     JOIN record_data d ON d.rid = r.rid
                     WHERE r.id = ?1 AND (r.expires_at IS NULL OR r.expires_at > ?2)",
                )?
                .query_row(params![&id.0[..], now], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .optional()
            })
            .await?;
        row.map(|(received, encoded)| stored(id, received, &encoded, None))
            .transpose()
    }

    /// The canonical encodings of the records with these ids that are held
    /// and not expired, in the order asked (missing ones left out): what a
    /// peer that asked for them is sent. The caller bounds `ids`.
    pub async fn get_encoded_many(
        &self,
        ids: Vec<RecordId>,
    ) -> Result<Vec<Vec<u8>>, RecordStoreError> {
        let now = clamp_i64(now_ms());
        let out = self
            .store
            .call(move |conn| {
                let mut st = conn.prepare_cached(
                    "SELECT d.encoded FROM records r JOIN record_data d ON d.rid = r.rid
                     WHERE r.id = ?1 AND (r.expires_at IS NULL OR r.expires_at > ?2)",
                )?;
                let mut out = Vec::with_capacity(ids.len());
                for id in &ids {
                    if let Some(bytes) = st
                        .query_row(params![&id.0[..], now], |row| row.get::<_, Vec<u8>>(0))
                        .optional()?
                    {
                        out.push(bytes);
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(out)
    }

    /// The `(created_at, id)` of every record held in `region` (slot
    /// winners, tombstones included, expired ones left out), ascending: the
    /// item set of range-based reconciliation. Read from one index.
    pub async fn sync_items(
        &self,
        region: RegionId,
    ) -> Result<Vec<(u64, RecordId)>, RecordStoreError> {
        let now = clamp_i64(now_ms());
        let items = self
            .store
            .call(move |conn| {
                let mut st = conn.prepare_cached(
                    "SELECT created_at, id FROM records INDEXED BY records_region
                     WHERE region = ?1 AND (expires_at IS NULL OR expires_at > ?2)
                     ORDER BY created_at, id",
                )?;
                let rows = st.query_map(params![region.as_str(), now], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get_ref(1)?.as_blob()?.try_into().ok(),
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    // Every stored id is 32 bytes; anything else is skipped.
                    if let (created_at, Some(id)) = row? {
                        out.push((u64::try_from(created_at).unwrap_or(0), RecordId(id)));
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(items)
    }

    /// Runs a query at the current time; see [`Query`].
    pub async fn query(&self, q: Query) -> Result<QueryPage, RecordStoreError> {
        self.query_at(q, now_ms()).await
    }

    /// Runs a query with `now_ms` as the clock for expiry (records with
    /// `expires_at <= now_ms` are never returned).
    pub async fn query_at(&self, q: Query, now_ms: u64) -> Result<QueryPage, RecordStoreError> {
        let plan = query::Plan::new(q, now_ms)?;
        if plan.searches_text() {
            self.store.call_inline(move |conn| plan.run(conn)).await?
        } else {
            self.store
                .call_read(QUERY_ON_WORKER, move |conn| plan.run(conn))
                .await?
        }
    }

    /// Deletes every record with `expires_at <= now_ms` and returns what
    /// went, as `(region, created_at, id)`.
    pub async fn expire(
        &self,
        now_ms: u64,
    ) -> Result<Vec<(RegionId, u64, RecordId)>, RecordStoreError> {
        let now = clamp_i64(now_ms);
        let gone = self
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let rows = delete_where(&tx, "expires_at <= ?1", &now)?;
                tx.commit()?;
                let mut out = Vec::with_capacity(rows.len());
                for (region, created_at, id) in rows {
                    if let (Ok(region), Ok(id)) = (region.parse(), id.try_into()) {
                        out.push((region, u64::try_from(created_at).unwrap_or(0), RecordId(id)));
                    }
                }
                Ok(out)
            })
            .await?;
        Ok(gone)
    }

    /// Deletes every record of `region` (the node stopped serving it) and
    /// returns how many went.
    pub async fn drop_region(&self, region: RegionId) -> Result<u64, RecordStoreError> {
        let n = self
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let n = delete_where(&tx, "region = ?1", &region.as_str())?.len();
                tx.commit()?;
                Ok(n)
            })
            .await?;
        Ok(n as u64)
    }

    /// How many records are held (tombstones and not yet swept expired ones
    /// included), in `region` or in all.
    pub async fn count(&self, region: Option<RegionId>) -> Result<u64, RecordStoreError> {
        let n = self
            .store
            .call(move |conn| match region {
                Some(r) => conn
                    .prepare_cached("SELECT count(*) FROM records WHERE region = ?1")?
                    .query_row([r.as_str()], |row| row.get::<_, i64>(0)),
                None => conn
                    .prepare_cached("SELECT count(*) FROM records")?
                    .query_row([], |row| row.get::<_, i64>(0)),
            })
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The regions of which at least one record is held, sorted.
    pub async fn regions_held(&self) -> Result<Vec<RegionId>, RecordStoreError> {
        let regions = self
            .store
            .call(|conn| {
                // One index seek per region instead of a scan of all rows.
                let mut st = conn.prepare_cached(
                    "SELECT region FROM records INDEXED BY records_region
                     WHERE region > ?1 ORDER BY region LIMIT 1",
                )?;
                let mut out = Vec::new();
                let mut after = String::new();
                while let Some(region) = st
                    .query_row([&after], |row| row.get::<_, String>(0))
                    .optional()?
                {
                    if let Ok(id) = region.parse::<RegionId>() {
                        out.push(id);
                    }
                    after = region;
                }
                Ok(out)
            })
            .await?;
        Ok(regions)
    }
}

/// Merges one record inside the batch's transaction.
fn insert_one(conn: &Connection, record: &Record, now_ms: u64) -> rusqlite::Result<InsertOutcome> {
    if record.expires_at.is_some_and(|e| e <= now_ms) {
        return Ok(InsertOutcome::Expired);
    }
    let row = match prepare_row(record) {
        Ok(row) => row,
        Err(reason) => return Ok(InsertOutcome::Invalid { reason }),
    };
    let current = conn
        .prepare_cached(
            "SELECT rid, created_at, id FROM records
             WHERE author = ?1 AND collection = ?2 AND key = ?3",
        )?
        .query_row(
            params![&row.author[..], record.collection, record.key],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        )
        .optional()?;
    let mut replaced = None;
    if let Some((rid, created_at, id)) = current {
        if id == row.id.0 {
            return Ok(InsertOutcome::Duplicate);
        }
        // The merge rule: the greatest (created_at, id) wins, the id
        // compared bytewise.
        if (created_at, id.as_slice()) > (row.created_at, &row.id.0[..]) {
            return Ok(InsertOutcome::Stale);
        }
        delete_row(conn, rid)?;
        let id = id.try_into().map(RecordId).unwrap_or(RecordId([0; 32]));
        replaced = Some((u64::try_from(created_at).unwrap_or(0), id));
    }
    conn.prepare_cached(
        "INSERT INTO records (id, author, collection, key, region, cell, lat, lon,
                              created_at, expires_at, deleted, received_ms, text)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?
    .execute(params![
        &row.id.0[..],
        &row.author[..],
        record.collection,
        record.key,
        row.region,
        row.cell,
        row.lat,
        row.lon,
        row.created_at,
        row.expires_at,
        record.deleted,
        clamp_i64(now_ms),
        row.text,
    ])?;
    let rid = conn.last_insert_rowid();
    conn.prepare_cached("INSERT INTO records_fts (rowid, text) VALUES (?1, ?2)")?
        .execute(params![rid, row.text])?;
    conn.prepare_cached("INSERT INTO record_data (rid, encoded) VALUES (?1, ?2)")?
        .execute(params![rid, row.encoded])?;
    Ok(InsertOutcome::Inserted { replaced })
}

// The three tables are kept in step here, not by triggers: see the
// migration's comment in `cnode-store`. Single-row statements without
// triggers need no statement savepoint, so FTS5 keeps a whole batch's terms
// in memory and writes them once.

/// Deletes one row from `records`, the text index and `record_data`.
fn delete_row(conn: &Connection, rid: i64) -> rusqlite::Result<()> {
    let text: String = conn
        .prepare_cached("DELETE FROM records WHERE rid = ?1 RETURNING text")?
        .query_row([rid], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO records_fts (records_fts, rowid, text) VALUES ('delete', ?1, ?2)",
    )?
    .execute(params![rid, text])?;
    conn.prepare_cached("DELETE FROM record_data WHERE rid = ?1")?
        .execute([rid])?;
    Ok(())
}

/// Deletes every row of `records` matching `filter` (an SQL condition on
/// `?1`) with its text and encoding; returns `(region, created_at, id)` of
/// each. Call inside a transaction.
fn delete_where(
    conn: &Connection,
    filter: &str,
    arg: &dyn rusqlite::ToSql,
) -> rusqlite::Result<Vec<(String, i64, Vec<u8>)>> {
    conn.prepare_cached(&format!(
        "INSERT INTO records_fts (records_fts, rowid, text)
         SELECT 'delete', rid, text FROM records WHERE {filter}"
    ))?
    .execute([arg])?;
    conn.prepare_cached(&format!(
        "DELETE FROM record_data WHERE rid IN (SELECT rid FROM records WHERE {filter})"
    ))?
    .execute([arg])?;
    let mut st = conn.prepare_cached(&format!(
        "DELETE FROM records WHERE {filter} RETURNING region, created_at, id"
    ))?;
    let rows = st.query_map([arg], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    rows.collect()
}

/// Computes the stored columns of a record, or why it cannot be stored.
fn prepare_row(record: &Record) -> Result<Row, String> {
    let region = record.region.as_str();
    if !(4..=7).contains(&region.len()) {
        return Err(format!(
            "region {region:?} is not a 4- to 7-character geohash"
        ));
    }
    let cell = geo::decode(region).ok_or_else(|| format!("region {region:?} is not a geohash"))?;
    let created_at = i64::try_from(record.created_at)
        .map_err(|_| format!("created_at {} is out of range", record.created_at))?;
    let encoded = record.encode();
    Ok(Row {
        id: RecordId(*blake3::hash(&encoded).as_bytes()),
        encoded,
        author: author_key(&record.author),
        region: region[..4].to_owned(),
        cell: clamp_i64(geo::cell_index(cell.lat, cell.lon)),
        lat: cell.lat,
        lon: cell.lon,
        created_at,
        expires_at: record.expires_at.map(clamp_i64),
        text: search_text(&record.body),
    })
}

/// The author as stored: the 32-byte ed25519 public key.
fn author_key(did: &Did) -> [u8; 32] {
    did.public_key_bytes()
}

/// The searchable text of a body: all its string values (not its keys),
/// lowercased, one per line.
pub(crate) fn search_text(body: &serde_json::Value) -> String {
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(s);
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(body, &mut out);
    out.to_lowercase()
}

/// Decodes a stored row into a [`StoredRecord`].
fn stored(
    id: RecordId,
    received_ms: i64,
    encoded: &[u8],
    distance_m: Option<f64>,
) -> Result<StoredRecord, RecordStoreError> {
    let record =
        Record::decode(encoded).map_err(|source| RecordStoreError::Corrupt { id, source })?;
    Ok(StoredRecord {
        id,
        record,
        received_ms: u64::try_from(received_ms).unwrap_or(0),
        distance_m,
    })
}

/// SQLite integers are signed: times beyond `i64::MAX` ms (292 million
/// years) are clamped to it.
fn clamp_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The system clock, ms since the Unix epoch.
/// The clock records use: ms since the Unix epoch (0 before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
