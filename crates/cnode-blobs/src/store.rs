//! The blob store: data files plus BLAKE3 outboards on disk, metadata in SQLite.
//!
//! Layout under `<data>/blobs/`:
//! - `<hex>.data`, `<hex>.obao`: a complete blob and its pre-order outboard
//!   (16 KiB chunk groups), so any range is served with its proof;
//! - `partial/<hex>.data`, `partial/<hex>.obao`: a download in progress; the
//!   `blobs` table holds its bitfield of verified pieces, so it resumes after a
//!   crash and unverified bytes are never trusted;
//! - `tmp/`: imports in progress, deleted if they fail.
//!
//! A complete blob can also be *handed over* to a file outside the store
//! ([`ExportMode::Move`], what `cnode get -o` does): the store then keeps only
//! its outboard and serves the data from that file for as long as the file is
//! unchanged, like a BitTorrent client seeding from its download folder. See
//! [`external`].
//!
//! All file work runs on the blocking pool; nothing here blocks a runtime thread.

use std::{
    collections::HashMap,
    fs::{self, File},
    io::{self, BufReader},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use bao_tree::{BaoTree, BlockSize, io::outboard::PreOrderOutboard};
use cnode_store::Store;
use cnode_types::BlobHash;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

mod external;
pub(crate) mod files;
mod import;
mod partial;
mod piece_io;

use crate::protocol::{self, CHUNK_GROUP_LOG, piece_count, set_piece};

/// Frees the store's pooled write buffers when dropped (see
/// [`files::gather_aligned`]); a download holds one while it runs.
pub(crate) struct ReleaseBuffersOnDrop;

impl Drop for ReleaseBuffersOnDrop {
    fn drop(&mut self) {
        files::release_buffers();
    }
}

/// `SELECT` of the columns [`read_row`] reads, in order, `FROM blobs`, then `$tail`.
macro_rules! select_rows {
    ($tail:literal) => {
        concat!(
            "SELECT hash, size, complete, pinned, kind, bitfield, external, external_stamp FROM blobs",
            $tail
        )
    };
}

/// How often a download's verified-piece set is saved to the database.
const BITFIELD_SAVE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// The block size of every outboard: 16 KiB chunk groups.
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(CHUNK_GROUP_LOG);

/// What kind of blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// Plain bytes (a file).
    Raw,
    /// A folder: a JSON list of (path, hash, size), see [`crate::Collection`].
    Collection,
}

impl BlobKind {
    fn as_str(self) -> &'static str {
        match self {
            BlobKind::Raw => "raw",
            BlobKind::Collection => "collection",
        }
    }
    fn parse(s: &str) -> Self {
        if s == "collection" {
            BlobKind::Collection
        } else {
            BlobKind::Raw
        }
    }
}

/// What the store knows of one blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    /// The blob id.
    pub hash: BlobHash,
    /// Size in bytes.
    pub size: u64,
    /// Whether every piece is here and verified.
    pub complete: bool,
    /// Pinned blobs survive garbage collection.
    pub pinned: bool,
    /// Raw bytes or a collection.
    pub kind: BlobKind,
    /// Verified bytes held (equals `size` when complete).
    pub have_bytes: u64,
    /// Where the data lives when the blob was handed over to a file outside
    /// the store ([`ExportMode::Move`]); `None` for the store's own copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<PathBuf>,
}

/// How a complete blob is written out of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportMode {
    /// Write a copy; the store keeps its own.
    #[default]
    Copy,
    /// Hand the store's copy over: the file at the target *is* the data from
    /// then on (no bytes copied, no second copy on disk) and the store serves
    /// it from there until the file is changed, moved or deleted, when the
    /// store forgets the blob. Falls back to a copy when the target is on
    /// another filesystem or the blob already lives outside the store.
    Move,
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// Not enough room under the storage quota.
    #[error(
        "storage quota exceeded: {need} bytes needed, {free} of {quota} bytes free (raise blobs.quota_bytes or run `cnode blobs gc`)"
    )]
    Quota {
        /// Bytes the operation needs.
        need: u64,
        /// Bytes free under the quota.
        free: u64,
        /// The quota.
        quota: u64,
    },
    /// The blob is not in the store.
    #[error("blob {0} is not in the store")]
    NotFound(BlobHash),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing, with the path.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] cnode_store::StoreError),
    /// Data did not verify against its hash.
    #[error("data for blob {hash} does not verify: {reason}")]
    Verify {
        /// The blob.
        hash: BlobHash,
        /// What failed.
        reason: String,
    },
    /// A request that cannot be served as asked.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> BlobError {
    let context = context.into();
    move |source| BlobError::Io { context, source }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A partial blob being downloaded: its files and bitfield.
#[derive(Debug)]
pub(crate) struct Partial {
    pub(crate) hash: BlobHash,
    pub(crate) size: u64,
    pub(crate) data: File,
    /// The same file opened with `O_DIRECT`, for whole pieces (see
    /// `piece_io::verify_and_write`); `None` where that is not supported.
    pub(crate) direct: Option<File>,
    pub(crate) outboard: PreOrderOutboard<File>,
    pub(crate) bitfield: Mutex<Vec<u8>>,
    /// When the bitfield was last written to the database.
    pub(crate) persisted: Mutex<std::time::Instant>,
}

impl Partial {
    pub(crate) fn pieces(&self) -> u64 {
        piece_count(self.size)
    }
    pub(crate) fn has(&self, i: u64) -> bool {
        protocol::has_piece(&self.bitfield.lock().unwrap_or_else(|e| e.into_inner()), i)
    }
    /// How to read the answer for `piece` so that its leaves land, one
    /// after another, in an aligned buffer that is written as it is
    /// (`O_DIRECT`); `None` where such a write is not possible (no direct
    /// handle, or a last piece that does not end on a page).
    pub(crate) fn scatter_plan(&self, piece: u64) -> Option<cnode_types::Scatter> {
        self.direct.as_ref()?;
        let (start, end) = protocol::piece_bytes(self.size, piece);
        if !(end - start).is_multiple_of(files::DIRECT_ALIGN as u64) {
            return None;
        }
        let (s, e) = protocol::piece_chunks(self.size, piece);
        let ranges = protocol::to_chunk_ranges(&[(s, e)]);
        let (frame_len, runs) = piece_io::response_layout(self.outboard.tree, &ranges);
        let total: usize = runs.iter().map(|r| r.1).sum();
        if total as u64 != end - start {
            return None;
        }
        let (tail, at) = files::aligned_to_fill(total).into_parts();
        Some(cnode_types::Scatter {
            frame_len,
            runs,
            tail,
            at,
        })
    }
    pub(crate) fn bitfield(&self) -> Vec<u8> {
        self.bitfield
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn have_bytes(&self) -> u64 {
        let bf = self.bitfield();
        (0..self.pieces())
            .filter(|i| protocol::has_piece(&bf, *i))
            .map(|i| {
                let (s, e) = protocol::piece_bytes(self.size, i);
                e - s
            })
            .sum()
    }
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    db: Store,
    quota: u64,
    partials: Mutex<HashMap<BlobHash, Arc<Partial>>>,
    /// Test-only: flip bytes in served data (see [`BlobStore::set_corrupt_responses`]).
    corrupt: AtomicBool,
    /// Serialises quota checks with the reservations they make.
    reserve: tokio::sync::Mutex<()>,
}

/// The blob store handle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// The id to share: the file's, or the collection's for a folder.
    pub hash: BlobHash,
    /// Raw or collection.
    pub kind: BlobKind,
    /// Total bytes of the content (for a folder: of all files).
    pub size: u64,
    /// Number of files.
    pub files: u64,
}

/// What garbage collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcReport {
    /// Blobs removed.
    pub removed: u64,
    /// Bytes freed.
    pub freed_bytes: u64,
    /// The blobs removed.
    pub hashes: Vec<BlobHash>,
}

impl BlobStore {
    /// Opens the store in `dir` (created if needed) with `quota` bytes of room.
    /// Partial downloads found on disk are picked up again.
    pub async fn open(dir: PathBuf, db: Store, quota: u64) -> Result<Self, BlobError> {
        for d in [dir.clone(), dir.join("partial"), dir.join("tmp")] {
            fs::create_dir_all(&d).map_err(io_err(format!("cannot create {}", d.display())))?;
        }
        // Leftovers of imports that crashed: never trusted, never kept.
        if let Ok(entries) = fs::read_dir(dir.join("tmp")) {
            for e in entries.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
        let store = Self {
            inner: Arc::new(Inner {
                dir,
                db,
                quota,
                partials: Mutex::new(HashMap::new()),
                corrupt: AtomicBool::new(false),
                reserve: tokio::sync::Mutex::new(()),
            }),
        };
        store.finish_hand_overs().await?;
        Ok(store)
    }

    /// The storage quota in bytes.
    pub fn quota(&self) -> u64 {
        self.inner.quota
    }

    /// Test-only switch: flip bytes in the data this node serves, to test
    /// that peers detect and drop a corrupting peer. Answers for exactly a
    /// blob's last chunk (its size proof) stay honest, so the peer gets as far
    /// as being asked for pieces, the way a cunning one would; so does a last
    /// piece of a single chunk. Never enable it in production.
    pub fn set_corrupt_responses(&self, on: bool) {
        self.inner.corrupt.store(on, Ordering::Relaxed);
    }

    pub(crate) fn corrupt_responses(&self) -> bool {
        self.inner.corrupt.load(Ordering::Relaxed)
    }

    fn data_path(&self, hash: &BlobHash, partial: bool) -> PathBuf {
        let name = format!("{}.data", hash.to_hex());
        if partial {
            self.inner.dir.join("partial").join(name)
        } else {
            self.inner.dir.join(name)
        }
    }

    fn obao_path(&self, hash: &BlobHash, partial: bool) -> PathBuf {
        let name = format!("{}.obao", hash.to_hex());
        if partial {
            self.inner.dir.join("partial").join(name)
        } else {
            self.inner.dir.join(name)
        }
    }

    /// Bytes counted against the quota: every blob's full size, partial ones
    /// included; blobs handed over to files outside the store are not counted.
    pub async fn used_bytes(&self) -> Result<u64, BlobError> {
        Ok(self
            .inner
            .db
            .call(|c| {
                c.query_row(
                    "SELECT COALESCE(SUM(size), 0) FROM blobs WHERE external IS NULL",
                    [],
                    |r| r.get::<_, i64>(0),
                )
            })
            .await? as u64)
    }

    async fn check_quota(&self, need: u64) -> Result<(), BlobError> {
        let used = self.used_bytes().await?;
        let free = self.inner.quota.saturating_sub(used);
        if need > free {
            return Err(BlobError::Quota {
                need,
                free,
                quota: self.inner.quota,
            });
        }
        Ok(())
    }

    /// Information about one blob.
    pub async fn info(&self, hash: BlobHash) -> Result<Option<BlobInfo>, BlobError> {
        let row = self
            .inner
            .db
            .call(move |c| {
                // Asked for every piece a peer requests: prepared once.
                c.prepare_cached(select_rows!(" WHERE hash = ?1"))?
                    .query_row(params![hash.as_bytes().as_slice()], read_row)
                    .optional()
            })
            .await?;
        match row {
            Some(r) => self.checked_info(r).await,
            None => Ok(None),
        }
    }

    /// A database row as a [`BlobInfo`]; a partial blob's progress comes from
    /// its open download when there is one, else from the saved bitfield.
    fn to_info(&self, row: Row) -> Option<BlobInfo> {
        let Row {
            hash,
            size,
            complete,
            pinned,
            kind,
            bitfield,
            external,
            ..
        } = row;
        let hash = BlobHash::from_bytes(<[u8; 32]>::try_from(hash.as_slice()).ok()?);
        let have_bytes = if complete {
            size
        } else if let Some(p) = self.partial(&hash) {
            p.have_bytes()
        } else {
            // Not open in this process (e.g. another process downloads it).
            let bf = bitfield.unwrap_or_default();
            (0..piece_count(size))
                .filter(|i| protocol::has_piece(&bf, *i))
                .map(|i| {
                    let (s, e) = protocol::piece_bytes(size, i);
                    e - s
                })
                .sum()
        };
        Some(BlobInfo {
            hash,
            size,
            complete,
            pinned,
            kind: BlobKind::parse(&kind),
            have_bytes,
            external: external.map(PathBuf::from),
        })
    }

    /// Hashes of the blobs a `SELECT hash FROM blobs …` query returns.
    async fn hashes(&self, sql: &'static str) -> Result<Vec<BlobHash>, BlobError> {
        let rows = self
            .inner
            .db
            .call(move |c| {
                let mut st = c.prepare_cached(sql)?;
                let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|h| {
                <[u8; 32]>::try_from(h.as_slice())
                    .ok()
                    .map(BlobHash::from_bytes)
            })
            .collect())
    }

    /// Every blob, complete ones and downloads in progress.
    pub async fn list(&self) -> Result<Vec<BlobInfo>, BlobError> {
        let rows = self
            .inner
            .db
            .call(|c| {
                let mut st = c.prepare_cached(select_rows!(" ORDER BY created_ms"))?;
                let rows = st.query_map([], read_row)?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.extend(self.checked_info(r).await?);
        }
        Ok(out)
    }

    /// Marks a blob pinned or not; pinned blobs survive [`BlobStore::gc`].
    pub async fn set_pinned(&self, hash: BlobHash, pinned: bool) -> Result<(), BlobError> {
        let n = self
            .inner
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE blobs SET pinned = ?2 WHERE hash = ?1",
                    params![hash.as_bytes().as_slice(), pinned],
                )
            })
            .await?;
        if n == 0 {
            return Err(BlobError::NotFound(hash));
        }
        Ok(())
    }

    /// Deletes a blob (complete or partial) and its files; returns the bytes
    /// freed. A blob handed over to a file outside the store is forgotten;
    /// that file is left alone.
    pub async fn remove(&self, hash: BlobHash) -> Result<u64, BlobError> {
        let info = self.info(hash).await?.ok_or(BlobError::NotFound(hash))?;
        self.inner
            .partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash);
        for partial in [false, true] {
            let _ = fs::remove_file(self.data_path(&hash, partial));
            let _ = fs::remove_file(self.obao_path(&hash, partial));
        }
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "DELETE FROM blobs WHERE hash = ?1",
                    params![hash.as_bytes().as_slice()],
                )
            })
            .await?;
        // A handed-over file is the user's: nothing freed here.
        Ok(if info.external.is_some() {
            0
        } else {
            info.size
        })
    }

    /// Removes every unpinned blob that is not being downloaded.
    pub async fn gc(&self) -> Result<GcReport, BlobError> {
        let mut report = GcReport::default();
        for info in self.list().await? {
            let active = self.partial(&info.hash).is_some() && !info.complete;
            if info.pinned || active {
                continue;
            }
            report.freed_bytes += self.remove(info.hash).await?;
            report.removed += 1;
            report.hashes.push(info.hash);
        }
        Ok(report)
    }

    /// The in-memory state of a partial download, if one is open.
    pub(crate) fn partial(&self, hash: &BlobHash) -> Option<Arc<Partial>> {
        self.inner
            .partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(hash)
            .cloned()
    }

    /// Sets the kind of a blob (a downloaded collection).
    pub async fn set_kind(&self, hash: BlobHash, kind: BlobKind) -> Result<(), BlobError> {
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE blobs SET kind = ?2 WHERE hash = ?1",
                    params![hash.as_bytes().as_slice(), kind.as_str()],
                )
            })
            .await?;
        Ok(())
    }

    /// Which pieces we hold, for a `Have` answer.
    pub(crate) async fn have(
        &self,
        hash: BlobHash,
    ) -> Result<Option<(u64, bool, Vec<u8>)>, BlobError> {
        if let Some(p) = self.partial(&hash) {
            return Ok(Some((p.size, false, p.bitfield())));
        }
        Ok(self.info(hash).await?.filter(|i| i.complete).map(|i| {
            let n = piece_count(i.size);
            let mut bf = vec![0u8; n.div_ceil(8) as usize];
            for p in 0..n {
                set_piece(&mut bf, p);
            }
            (i.size, true, bf)
        }))
    }

    /// Bao-encodes `ranges` of `hash` (data with proofs), from a complete blob
    /// or from the verified pieces of a partial one, as a whole `Data` response
    /// (header included, so the piece is not copied again): the blob's size,
    /// the wire bytes, and where in them the leaves lie ((offset, length), in
    /// order; see `piece_io::encode`).
    pub(crate) async fn encode(
        &self,
        hash: BlobHash,
        ranges: Vec<(u64, u64)>,
    ) -> Result<(u64, Vec<u8>, Vec<(usize, usize)>), BlobError> {
        let partial = self.partial(&hash);
        let complete = if partial.is_none() {
            Some(
                self.info(hash)
                    .await?
                    .filter(|i| i.complete)
                    .ok_or(BlobError::NotFound(hash))?,
            )
        } else {
            None
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let chunk_ranges = protocol::to_chunk_ranges(&ranges);
            let estimate = ranges
                .iter()
                .map(|(a, b)| (b - a) * protocol::CHUNK)
                .sum::<u64>();
            let mut out =
                protocol::Response::begin_data(estimate as usize + estimate as usize / 16 + 1024);
            let (size, leaves) = match (&partial, &complete) {
                (Some(p), _) => {
                    // Only ranges inside verified pieces may be served.
                    let bf = p.bitfield();
                    for &(s, e) in &ranges {
                        let first = s / protocol::PIECE_CHUNKS;
                        let last = (e - 1) / protocol::PIECE_CHUNKS;
                        if (first..=last).any(|i| !protocol::has_piece(&bf, i)) {
                            return Err(BlobError::Invalid(
                                "asked for pieces we do not have".into(),
                            ));
                        }
                    }
                    let ob = PreOrderOutboard {
                        root: p.outboard.root,
                        tree: p.outboard.tree,
                        data: &p.outboard.data,
                    };
                    let leaves = piece_io::encode(&p.data, &ob, &chunk_ranges, &mut out)
                        .map_err(|e| BlobError::Invalid(format!("cannot encode: {e}")))?;
                    (p.size, leaves)
                }
                (None, Some(info)) => {
                    let data = File::open(this.complete_data_path(info))
                        .map_err(io_err(format!("cannot open blob {hash}")))?;
                    let obao = File::open(this.obao_path(&hash, false))
                        .map_err(io_err(format!("cannot open outboard of {hash}")))?;
                    let ob = PreOrderOutboard {
                        root: hash.into(),
                        tree: BaoTree::new(info.size, BLOCK_SIZE),
                        data: &obao,
                    };
                    let leaves = piece_io::encode(&data, &ob, &chunk_ranges, &mut out)
                        .map_err(|e| BlobError::Invalid(format!("cannot encode: {e}")))?;
                    (info.size, leaves)
                }
                (None, None) => return Err(BlobError::NotFound(hash)),
            };
            protocol::finish_data(&mut out, size);
            Ok((size, out, leaves))
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("encode task failed: {e}")))?
    }

    /// Reads `len` bytes at `offset` of a complete blob, or of the verified
    /// pieces of a partial one (`None` if that range is not verified yet).
    pub async fn read_at(
        &self,
        hash: BlobHash,
        offset: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        let (path, size, partial) = match self.partial(&hash) {
            Some(p) => (self.data_path(&hash, true), p.size, Some(p)),
            None => {
                let info = self
                    .info(hash)
                    .await?
                    .filter(|i| i.complete)
                    .ok_or(BlobError::NotFound(hash))?;
                (self.complete_data_path(&info), info.size, None)
            }
        };
        if offset >= size {
            return Ok(Some(Vec::new()));
        }
        let len = len.min((size - offset) as usize);
        if let Some(p) = &partial {
            let first = offset / protocol::PIECE_SIZE;
            let last = (offset + len as u64 - 1) / protocol::PIECE_SIZE;
            if (first..=last).any(|i| !p.has(i)) {
                return Ok(None);
            }
        }
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let f = File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, offset)
                .map_err(io_err(format!("cannot read {}", path.display())))?;
            Ok(Some(buf))
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("read task failed: {e}")))?
    }

    /// The path of a complete blob's data file (for export by copy).
    pub(crate) async fn complete_path(&self, hash: BlobHash) -> Result<(PathBuf, u64), BlobError> {
        let info = self
            .info(hash)
            .await?
            .filter(|i| i.complete)
            .ok_or(BlobError::NotFound(hash))?;
        Ok((self.complete_data_path(&info), info.size))
    }

    /// Where a complete blob's data lives: its own file in the store, or the
    /// file it was handed over to.
    fn complete_data_path(&self, info: &BlobInfo) -> PathBuf {
        info.external
            .clone()
            .unwrap_or_else(|| self.data_path(&info.hash, false))
    }

    /// Checks a complete blob's data against its hash (slow: reads it all).
    pub async fn verify(&self, hash: BlobHash) -> Result<bool, BlobError> {
        let (path, size) = self.complete_path(hash).await?;
        tokio::task::spawn_blocking(move || {
            let f = File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
            let mut hasher = blake3::Hasher::new();
            let mut r = BufReader::with_capacity(1 << 20, f);
            let n = io::copy(&mut r, &mut hasher).map_err(io_err("cannot read"))?;
            Ok(n == size && BlobHash::from(hasher.finalize()) == hash)
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("verify task failed: {e}")))?
    }

    /// Partial downloads recorded in the database (to resume them).
    pub async fn partial_hashes(&self) -> Result<Vec<BlobHash>, BlobError> {
        self.hashes("SELECT hash FROM blobs WHERE complete = 0 ORDER BY created_ms")
            .await
    }
}

/// One `blobs` row.
#[derive(Debug)]
struct Row {
    hash: Vec<u8>,
    size: u64,
    complete: bool,
    pinned: bool,
    kind: String,
    bitfield: Option<Vec<u8>>,
    external: Option<String>,
    external_stamp: Option<String>,
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        hash: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        complete: r.get(2)?,
        pinned: r.get(3)?,
        kind: r.get(4)?,
        bitfield: r.get(5)?,
        external: r.get(6)?,
        external_stamp: r.get(7)?,
    })
}
