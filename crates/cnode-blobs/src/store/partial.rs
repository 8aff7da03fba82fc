//! Partial blobs: opening or resuming a download's files, verifying and
//! writing pieces, saving the verified set, and completing the blob.

use std::{
    fs, io,
    path::Path,
    sync::{Arc, Mutex},
};

use bao_tree::{BaoTree, ChunkRanges, io::outboard::PreOrderOutboard};
use cnode_types::BlobHash;
use rusqlite::{OptionalExtension, params};

use super::{
    BITFIELD_SAVE_INTERVAL, BLOCK_SIZE, BlobError, BlobKind, BlobStore, Partial, files, io_err,
    now_ms,
    piece_io::{self, Layout, VerifyError},
};
use crate::protocol::{self, piece_count, set_piece};

impl BlobStore {
    /// Opens (or resumes) a partial download of `hash`, `size` bytes, reserving
    /// the room under the quota.
    pub(crate) async fn open_partial(
        &self,
        hash: BlobHash,
        size: u64,
        pin: bool,
    ) -> Result<Arc<Partial>, BlobError> {
        if let Some(p) = self.partial(&hash) {
            return Ok(p);
        }
        let _guard = self.inner.reserve.lock().await;
        let existing = self
            .inner
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT size, bitfield FROM blobs WHERE hash = ?1 AND complete = 0",
                    params![hash.as_bytes().as_slice()],
                    |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Option<Vec<u8>>>(1)?)),
                )
                .optional()
            })
            .await?;
        let pieces_len = piece_count(size).div_ceil(8) as usize;
        let bitfield = match existing {
            Some((s, Some(bf))) if s == size && bf.len() == pieces_len => bf,
            Some(_) => {
                // A record that does not fit the verified size: start over.
                self.remove(hash).await.ok();
                self.check_quota(size).await?;
                vec![0u8; pieces_len]
            }
            None => {
                self.check_quota(size).await?;
                vec![0u8; pieces_len]
            }
        };
        let data_path = self.data_path(&hash, true);
        let obao_path = self.obao_path(&hash, true);
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(p)
                .map_err(io_err(format!("cannot open {}", p.display())))
        };
        let data = open(&data_path)?;
        let obao = open(&obao_path)?;
        data.set_len(size)
            .map_err(io_err(format!("cannot size {}", data_path.display())))?;
        files::reserve_blocks(&data, size);
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let direct = files::open_direct(&data_path);
        let partial = Arc::new(Partial {
            hash,
            size,
            data,
            direct,
            outboard: PreOrderOutboard {
                root: hash.into(),
                tree,
                data: obao,
            },
            bitfield: Mutex::new(bitfield.clone()),
            persisted: Mutex::new(std::time::Instant::now()),
        });
        let now = now_ms();
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO blobs (hash, size, complete, pinned, kind, bitfield, created_ms)
                     VALUES (?1, ?2, 0, ?3, 'raw', ?4, ?5)
                     ON CONFLICT(hash) DO UPDATE SET pinned = MAX(pinned, excluded.pinned)",
                    params![hash.as_bytes().as_slice(), size as i64, pin, bitfield, now],
                )
            })
            .await?;
        self.inner
            .partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash, partial.clone());
        Ok(partial)
    }

    /// Verifies a bao-encoded response for `piece` (the encoding starts at
    /// `offset` of `encoded`) and writes it; on success
    /// marks the piece verified (in memory and in the database). Returns
    /// `false` when another answer for the same piece got there first (both
    /// verified, so both wrote the same bytes).
    pub(crate) async fn write_piece(
        &self,
        partial: &Arc<Partial>,
        piece: u64,
        encoded: Vec<u8>,
        offset: usize,
    ) -> Result<bool, BlobError> {
        self.verify_and_write(partial, piece, move |p, ranges| {
            let encoded = encoded.get(offset..).unwrap_or_default();
            let layout = Layout::Interleaved(encoded);
            piece_io::verify_and_write(layout, ranges, &p.data, p.direct.as_ref(), &p.outboard)
        })
        .await
    }

    /// As [`write_piece`](Self::write_piece), for an answer read apart (see
    /// `download`): `head` is the answer without its leaves (header, then
    /// parent hashes), `leaves` holds the leaves one after another.
    pub(crate) async fn write_piece_apart(
        &self,
        partial: &Arc<Partial>,
        piece: u64,
        head: Vec<u8>,
        leaves: files::Aligned,
    ) -> Result<bool, BlobError> {
        self.verify_and_write(partial, piece, move |p, ranges| {
            let parents = head.get(protocol::DATA_HEADER..).unwrap_or_default();
            let layout = Layout::Apart {
                parents,
                leaves: &leaves,
            };
            piece_io::verify_and_write(layout, ranges, &p.data, p.direct.as_ref(), &p.outboard)
        })
        .await
    }

    /// Runs `write` (verify `piece`, then write it) on the blocking pool and
    /// marks the piece if it held.
    async fn verify_and_write(
        &self,
        partial: &Arc<Partial>,
        piece: u64,
        write: impl FnOnce(&Partial, &ChunkRanges) -> io::Result<Result<(), VerifyError>>
        + Send
        + 'static,
    ) -> Result<bool, BlobError> {
        let p = partial.clone();
        tokio::task::spawn_blocking(move || {
            let (s, e) = protocol::piece_chunks(p.size, piece);
            let ranges = protocol::to_chunk_ranges(&[(s, e)]);
            write(&p, &ranges)
                .map_err(io_err("cannot write a piece"))?
                .map_err(|e| BlobError::Verify {
                    hash: p.hash,
                    reason: e.to_string(),
                })?;
            if p.direct.is_none() {
                let (start, end) = protocol::piece_bytes(p.size, piece);
                files::start_writeback(&p.data, start, end - start);
            }
            Ok::<(), BlobError>(())
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("verify task failed: {e}")))??;
        self.mark_piece(partial, piece).await
    }

    /// Records a verified, written piece in the partial's set; `false` if it
    /// was there already.
    async fn mark_piece(&self, partial: &Arc<Partial>, piece: u64) -> Result<bool, BlobError> {
        let bitfield = {
            let mut bf = partial.bitfield.lock().unwrap_or_else(|e| e.into_inner());
            if protocol::has_piece(&bf, piece) {
                return Ok(false);
            }
            set_piece(&mut bf, piece);
            bf.clone()
        };
        // The verified set is saved a few times a second, not per piece: after
        // a crash at most the last moments' pieces are fetched again, and a
        // piece is never marked before its data is written.
        let due = {
            let mut last = partial.persisted.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.elapsed() >= BITFIELD_SAVE_INTERVAL;
            if due {
                *last = std::time::Instant::now();
            }
            due
        };
        if due {
            self.save_bitfield(partial.hash, bitfield).await?;
        }
        Ok(true)
    }

    async fn save_bitfield(&self, hash: BlobHash, bitfield: Vec<u8>) -> Result<(), BlobError> {
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE blobs SET bitfield = ?2 WHERE hash = ?1 AND complete = 0",
                    params![hash.as_bytes().as_slice(), bitfield],
                )
            })
            .await?;
        Ok(())
    }

    /// Saves a partial download's verified set now (when a download stops).
    pub(crate) async fn flush_partial(&self, partial: &Arc<Partial>) -> Result<(), BlobError> {
        self.save_bitfield(partial.hash, partial.bitfield()).await
    }

    /// Turns a fully verified partial blob into a complete one.
    pub(crate) async fn finish_partial(
        &self,
        partial: &Arc<Partial>,
        kind: BlobKind,
    ) -> Result<(), BlobError> {
        if (0..partial.pieces()).any(|i| !partial.has(i)) {
            return Err(BlobError::Invalid("download not finished".into()));
        }
        let hash = partial.hash;
        partial
            .data
            .sync_all()
            .map_err(io_err("cannot sync data"))?;
        partial
            .outboard
            .data
            .sync_all()
            .map_err(io_err("cannot sync outboard"))?;
        for (from, to) in [
            (self.data_path(&hash, true), self.data_path(&hash, false)),
            (self.obao_path(&hash, true), self.obao_path(&hash, false)),
        ] {
            fs::rename(&from, &to).map_err(io_err(format!("cannot move {}", from.display())))?;
        }
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE blobs SET complete = 1, bitfield = NULL, kind = ?2 WHERE hash = ?1",
                    params![hash.as_bytes().as_slice(), kind.as_str()],
                )
            })
            .await?;
        self.inner
            .partials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&hash);
        Ok(())
    }
}
