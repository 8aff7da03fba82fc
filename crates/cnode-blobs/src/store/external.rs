//! Blobs handed over to a file outside the store ([`ExportMode::Move`]).
//!
//! `cnode get -o FILE` used to copy the downloaded blob out of the store: a
//! second full write of every byte, and two copies on disk. Now the store's
//! data file is renamed to `FILE` (same filesystem; otherwise it is copied as
//! before) and the row records the path and a *stamp* of the file: size,
//! modification time, inode and device. The store keeps the outboard and
//! serves ranges from `FILE` while the stamp still matches; once the file is
//! changed, replaced, moved or deleted, the store forgets the blob (row and
//! outboard) the next time it looks at it. A change the stamp cannot see (an
//! in-place rewrite that restores the modification time) makes this node
//! serve data that fails its peers' verification: they drop it for that blob,
//! as for any corrupting peer. The file is the user's: `rm`, `gc` and quota
//! accounting never touch or count it.
//!
//! [`ExportMode::Move`]: super::ExportMode::Move

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use cnode_types::BlobHash;
use rusqlite::params;

use super::{BlobError, BlobInfo, BlobStore, Row, io_err};

/// What identifies one version of an external file.
fn stamp(meta: &fs::Metadata) -> String {
    format!(
        "{}:{}.{:09}:{}:{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino(),
        meta.dev()
    )
}

impl BlobStore {
    /// A row as a [`BlobInfo`], after checking that a handed-over blob's file
    /// is still the one it was handed to; if not, the blob is forgotten.
    pub(super) async fn checked_info(&self, row: Row) -> Result<Option<BlobInfo>, BlobError> {
        let (Some(path), Some(expected)) = (row.external.clone(), row.external_stamp.clone())
        else {
            return Ok(self.to_info(row));
        };
        let now = tokio::fs::metadata(&path).await.ok().map(|m| stamp(&m));
        if now.as_deref() == Some(expected.as_str()) {
            return Ok(self.to_info(row));
        }
        let Some(info) = self.to_info(row) else {
            return Ok(None);
        };
        tracing::warn!(
            hash = %info.hash,
            path,
            "the file this blob was handed over to changed or is gone; forgetting the blob"
        );
        let obao = self.obao_path(&info.hash, false);
        let hash = info.hash;
        // Only if nothing re-imported it meanwhile (that clears the stamp).
        let n = self
            .inner
            .db
            .call(move |c| {
                c.execute(
                    "DELETE FROM blobs WHERE hash = ?1 AND external_stamp = ?2",
                    params![hash.as_bytes().as_slice(), expected],
                )
            })
            .await?;
        if n == 1 {
            let _ = tokio::fs::remove_file(obao).await;
        }
        Ok(None)
    }

    /// At open: finishes hand-overs a crash interrupted, and forgets complete
    /// blobs whose data file is gone (a hand-over that crashed after the
    /// rename, or a file deleted by hand).
    pub(super) async fn finish_hand_overs(&self) -> Result<(), BlobError> {
        let rows: Vec<(Vec<u8>, bool)> = self
            .inner
            .db
            .call(|c| {
                let mut st =
                    c.prepare("SELECT hash, external IS NOT NULL FROM blobs WHERE complete = 1")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        // One stat or unlink per complete blob: on the blocking pool.
        let this = self.clone();
        let missing: Vec<BlobHash> = tokio::task::spawn_blocking(move || {
            let mut missing = Vec::new();
            for (hash, external) in rows {
                let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()).map(BlobHash::from_bytes)
                else {
                    continue;
                };
                let data = this.data_path(&hash, false);
                if external {
                    // The rename happened and the row was written; a leftover
                    // here is a later re-import that crashed before its row
                    // update, and the external file still serves.
                    let _ = fs::remove_file(&data);
                } else if !data.exists() {
                    tracing::warn!(%hash, "blob data file is missing; forgetting the blob");
                    let _ = fs::remove_file(this.obao_path(&hash, false));
                    missing.push(hash);
                }
            }
            missing
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("store check task failed: {e}")))?;
        if !missing.is_empty() {
            self.inner
                .db
                .call(move |c| {
                    let mut st = c.prepare("DELETE FROM blobs WHERE hash = ?1")?;
                    for hash in &missing {
                        st.execute(params![hash.as_bytes().as_slice()])?;
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(())
    }

    /// Hands a complete blob's data over to `out` by renaming the store's file
    /// there. Returns the file's absolute path, or `None` when that cannot be
    /// done (another filesystem, or the data already lives outside the store)
    /// and the caller should copy instead. On any error the store's copy is
    /// left where it was.
    pub(crate) async fn hand_over(
        &self,
        hash: BlobHash,
        out: &Path,
    ) -> Result<Option<PathBuf>, BlobError> {
        let info = self
            .info(hash)
            .await?
            .filter(|i| i.complete)
            .ok_or(BlobError::NotFound(hash))?;
        if info.external.is_some() {
            return Ok(None);
        }
        let from = self.data_path(&hash, false);
        let out = out.to_owned();
        let moved = tokio::task::spawn_blocking(move || -> Result<_, BlobError> {
            // The absolute target, known before anything moves; the database
            // holds paths as text, so a name that is not UTF-8 is copied.
            let name = out.file_name().ok_or_else(|| {
                BlobError::Invalid(format!("{} does not name a file", out.display()))
            })?;
            let parent = out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dir = fs::canonicalize(parent)
                .map_err(io_err(format!("cannot resolve {}", parent.display())))?;
            let to = dir.join(name);
            if to.to_str().is_none() {
                return Ok(None);
            }
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => return Ok(None),
                Err(e) => return Err(io_err(format!("cannot write {}", to.display()))(e)),
            }
            if let Ok(d) = fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            let meta =
                fs::metadata(&to).map_err(io_err(format!("cannot stat {}", to.display())))?;
            Ok(Some((to, stamp(&meta))))
        })
        .await
        .map_err(|e| BlobError::Invalid(format!("hand-over task failed: {e}")))??;
        let Some((abs, stamp)) = moved else {
            return Ok(None);
        };
        let path = abs.to_string_lossy().into_owned(); // UTF-8, checked above
        self.inner
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE blobs SET external = ?2, external_stamp = ?3 WHERE hash = ?1",
                    params![hash.as_bytes().as_slice(), path, stamp],
                )
            })
            .await?;
        Ok(Some(abs))
    }
}
