//! Imports: a file, a folder (as a collection), bytes or a stream, each read
//! once through a tee that writes the store's copy and feeds the outboard
//! builder; both land in `tmp/`, are synced to disk, and are renamed into
//! place at the end, so a blob recorded as complete survives a crash.

use std::{
    fs::{self, File},
    io::{self, BufReader, Read, Write},
    path::Path,
};

use bao_tree::{BaoTree, io::outboard::PreOrderOutboard};
use cnode_types::BlobHash;
use rusqlite::params;

use super::{BLOCK_SIZE, BlobError, BlobKind, BlobStore, ImportReport, files, io_err, now_ms};

impl BlobStore {
    /// Imports a file or, recursively, a folder (which becomes a collection).
    pub async fn import_path(&self, path: &Path, pin: bool) -> Result<ImportReport, BlobError> {
        let meta = fs::metadata(path).map_err(io_err(format!("cannot read {}", path.display())))?;
        if meta.is_dir() {
            return crate::collection::import_dir(self, path, pin).await;
        }
        let (hash, size) = self.import_file(path, pin, BlobKind::Raw).await?;
        Ok(ImportReport {
            hash,
            kind: BlobKind::Raw,
            size,
            files: 1,
        })
    }

    /// Imports one file: streams it once, writing our copy and its outboard.
    pub async fn import_file(
        &self,
        path: &Path,
        pin: bool,
        kind: BlobKind,
    ) -> Result<(BlobHash, u64), BlobError> {
        let size = fs::metadata(path)
            .map_err(io_err(format!("cannot read {}", path.display())))?
            .len();
        let _guard = self.inner.reserve.lock().await;
        self.check_quota(size).await?;
        let this = self.clone();
        let path = path.to_owned();
        let (hash, size) = tokio::task::spawn_blocking(move || {
            let file =
                File::open(&path).map_err(io_err(format!("cannot open {}", path.display())))?;
            this.import_reader_blocking(file, size)
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("import task failed: {e}")))??;
        self.insert_complete(hash, size, pin, kind).await?;
        Ok((hash, size))
    }

    /// Imports bytes held in memory (collections, small uploads).
    pub async fn import_bytes(
        &self,
        bytes: Vec<u8>,
        pin: bool,
        kind: BlobKind,
    ) -> Result<BlobHash, BlobError> {
        let size = bytes.len() as u64;
        let _guard = self.inner.reserve.lock().await;
        self.check_quota(size).await?;
        let this = self.clone();
        let (hash, size) = tokio::task::spawn_blocking(move || {
            this.import_reader_blocking(io::Cursor::new(bytes), size)
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("import task failed: {e}")))??;
        self.insert_complete(hash, size, pin, kind).await?;
        Ok(hash)
    }

    /// Imports a stream of unknown length (an HTTP upload): it is spooled to a
    /// temp file, stopping with [`BlobError::Quota`] as soon as it would not fit.
    pub async fn import_stream<S, E>(
        &self,
        mut stream: S,
        pin: bool,
    ) -> Result<(BlobHash, u64), BlobError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        let free = self.inner.quota.saturating_sub(self.used_bytes().await?);
        let tmp = tempfile::NamedTempFile::new_in(self.inner.dir.join("tmp"))
            .map_err(io_err("cannot create a temp file"))?;
        let mut writer =
            tokio::fs::File::from_std(tmp.reopen().map_err(io_err("cannot open temp file"))?);
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BlobError::Invalid(format!("upload failed: {e}")))?;
            total += chunk.len() as u64;
            if total > free {
                // The temp file is deleted when `tmp` drops.
                return Err(BlobError::Quota {
                    need: total,
                    free,
                    quota: self.inner.quota,
                });
            }
            tokio::io::AsyncWriteExt::write_all(&mut writer, &chunk)
                .await
                .map_err(io_err("cannot write the upload"))?;
        }
        tokio::io::AsyncWriteExt::flush(&mut writer)
            .await
            .map_err(io_err("cannot write the upload"))?;
        drop(writer);
        self.import_file(tmp.path(), pin, BlobKind::Raw).await
    }

    /// One pass over `reader`: the bytes go to a temp data file and through the
    /// outboard builder; both temp files are renamed into place at the end.
    fn import_reader_blocking(
        &self,
        reader: impl Read,
        size: u64,
    ) -> Result<(BlobHash, u64), BlobError> {
        let tmpdir = self.inner.dir.join("tmp");
        let data_tmp = tempfile::NamedTempFile::new_in(&tmpdir)
            .map_err(io_err("cannot create a temp file"))?;
        let obao_tmp = tempfile::NamedTempFile::new_in(&tmpdir)
            .map_err(io_err("cannot create a temp file"))?;
        let mut tee = Tee {
            inner: BufReader::with_capacity(1 << 20, reader),
            copy: io::BufWriter::with_capacity(1 << 20, data_tmp.as_file()),
            count: 0,
            written_back: 0,
        };
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let mut ob = PreOrderOutboard {
            root: blake3::hash(&[]),
            tree,
            data: obao_tmp
                .as_file()
                .try_clone()
                .map_err(io_err("cannot open temp file"))?,
        };
        let root = bao_tree::io::sync::outboard(&mut tee, tree, &mut ob)
            .map_err(io_err("cannot hash the data"))?;
        if tee.count != size {
            return Err(BlobError::Invalid(format!(
                "the file changed while it was read ({} bytes, expected {size})",
                tee.count
            )));
        }
        tee.copy.flush().map_err(io_err("cannot write the data"))?;
        drop(tee);
        // On disk before the blob is recorded as complete (as a finished
        // download is); the writeback started along the way leaves little
        // to wait for here.
        data_tmp
            .as_file()
            .sync_all()
            .map_err(io_err("cannot sync the data"))?;
        obao_tmp
            .as_file()
            .sync_all()
            .map_err(io_err("cannot sync the outboard"))?;
        let hash = BlobHash::from(root);
        let data_path = self.data_path(&hash, false);
        let obao_path = self.obao_path(&hash, false);
        data_tmp
            .persist(&data_path)
            .map_err(|e| io_err(format!("cannot store {}", data_path.display()))(e.error))?;
        obao_tmp
            .persist(&obao_path)
            .map_err(|e| io_err(format!("cannot store {}", obao_path.display()))(e.error))?;
        Ok((hash, size))
    }

    pub(super) async fn insert_complete(
        &self,
        hash: BlobHash,
        size: u64,
        pin: bool,
        kind: BlobKind,
    ) -> Result<(), BlobError> {
        let now = now_ms();
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "INSERT INTO blobs (hash, size, complete, pinned, kind, bitfield, created_ms)
                     VALUES (?1, ?2, 1, ?3, ?4, NULL, ?5)
                     ON CONFLICT(hash) DO UPDATE SET complete = 1, bitfield = NULL,
                         pinned = MAX(pinned, excluded.pinned),
                         external = NULL, external_stamp = NULL",
                    params![
                        hash.as_bytes().as_slice(),
                        size as i64,
                        pin,
                        kind.as_str(),
                        now
                    ],
                )
            })
            .await?;
        Ok(())
    }
}

/// Copies everything read from `inner` into the file behind `copy`, and
/// starts writing each [`WRITEBACK_STEP`] of it to disk as it goes.
struct Tee<'a, R> {
    inner: R,
    copy: io::BufWriter<&'a File>,
    count: u64,
    /// Bytes of the file whose writeback has been started.
    written_back: u64,
}

/// How much an import writes before it starts writing that to disk: the
/// final sync then waits for the last step, not for the whole file.
const WRITEBACK_STEP: u64 = 8 << 20;

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.count += n as u64;
        let in_file = self.count - self.copy.buffer().len() as u64;
        if in_file - self.written_back >= WRITEBACK_STEP {
            files::start_writeback(
                self.copy.get_ref(),
                self.written_back,
                in_file - self.written_back,
            );
            self.written_back = in_file;
        }
        Ok(n)
    }
}
