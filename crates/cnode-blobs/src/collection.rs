//! Collections: a folder as one blob listing `(path, hash, size)` per file.
//!
//! Encoding: compact JSON `{"format":"cnode-collection/1","entries":[{"path":
//! "a/b.txt","hash":"bafkr4…","size":3},…]}` with entries sorted by path, so the
//! same folder always gives the same collection hash. Paths use `/`, are
//! relative, and have only normal components: an entry like `../../etc/passwd`
//! or `/etc/passwd` is refused on export and never written.

use std::{
    fs,
    path::{Component, Path, PathBuf},
};

use cnode_types::BlobHash;
use serde::{Deserialize, Serialize};

use crate::store::{BlobError, BlobKind, BlobStore, ExportMode, ImportReport};

/// The format tag of a collection.
pub const FORMAT: &str = "cnode-collection/1";
/// How every collection's bytes begin (the encoder writes `format` first).
pub const PREFIX: &str = "{\"format\":\"cnode-collection/1\"";

/// The most entries a collection may list.
pub const MAX_ENTRIES: usize = 100_000;
/// The largest collection blob accepted (its JSON).
pub const MAX_COLLECTION_BYTES: u64 = 32 * 1024 * 1024;

/// One file of a collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path with `/` separators.
    pub path: String,
    /// The file's blob.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
}

/// A folder's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Collection {
    /// Always [`FORMAT`].
    pub format: String,
    /// The files, sorted by path.
    pub entries: Vec<Entry>,
}

impl Collection {
    /// Parses and checks a collection blob.
    pub fn decode(bytes: &[u8]) -> Result<Self, BlobError> {
        let c: Collection = serde_json::from_slice(bytes)
            .map_err(|e| BlobError::Invalid(format!("not a collection: {e}")))?;
        if c.format != FORMAT {
            return Err(BlobError::Invalid(format!(
                "unknown collection format {:?}",
                c.format
            )));
        }
        if c.entries.len() > MAX_ENTRIES {
            return Err(BlobError::Invalid(format!(
                "collection lists over {MAX_ENTRIES} files"
            )));
        }
        for e in &c.entries {
            safe_relative_path(&e.path)?;
        }
        Ok(c)
    }

    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Checks that `p` is a relative path of normal components and returns it.
pub fn safe_relative_path(p: &str) -> Result<PathBuf, BlobError> {
    let refuse = |why: &str| {
        Err(BlobError::Invalid(format!(
            "refusing collection entry {p:?}: {why}"
        )))
    };
    if p.is_empty() || p.contains('\0') || p.contains('\\') {
        return refuse("empty or contains NUL or backslash");
    }
    let path = Path::new(p);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return refuse("it leaves the output folder (..)"),
            Component::RootDir | Component::Prefix(_) => return refuse("it is an absolute path"),
        }
    }
    if out.as_os_str().is_empty() {
        return refuse("no file name");
    }
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), BlobError> {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .map_err(|e| BlobError::Io {
            context: format!("cannot list {}", dir.display()),
            source: e,
        })?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        // Symlinks are not followed: they could leave the folder or loop.
        let ft = e.file_type().map_err(|err| BlobError::Io {
            context: format!("cannot stat {}", path.display()),
            source: err,
        })?;
        if ft.is_dir() {
            walk(root, &path, out)?;
        } else if ft.is_file() {
            let rel = path
                .strip_prefix(root)
                .map_err(|_| BlobError::Invalid("path outside the folder".into()))?;
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
            if out.len() > MAX_ENTRIES {
                return Err(BlobError::Invalid(format!(
                    "folder has over {MAX_ENTRIES} files"
                )));
            }
        }
    }
    Ok(())
}

/// Imports every file under `dir` and a collection listing them.
pub(crate) async fn import_dir(
    store: &BlobStore,
    dir: &Path,
    pin: bool,
) -> Result<ImportReport, BlobError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files)?;
    let mut entries = Vec::with_capacity(files.len());
    let mut total = 0;
    for (rel, path) in files {
        let (hash, size) = store.import_file(&path, pin, BlobKind::Raw).await?;
        total += size;
        entries.push(Entry {
            path: rel,
            hash,
            size,
        });
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let n = entries.len() as u64;
    let coll = Collection {
        format: FORMAT.into(),
        entries,
    };
    let hash = store
        .import_bytes(coll.encode(), pin, BlobKind::Collection)
        .await?;
    Ok(ImportReport {
        hash,
        kind: BlobKind::Collection,
        size: total,
        files: n,
    })
}

/// Reads a complete collection blob.
pub async fn read_collection(store: &BlobStore, hash: BlobHash) -> Result<Collection, BlobError> {
    let (path, size) = store.complete_path(hash).await?;
    if size > MAX_COLLECTION_BYTES {
        return Err(BlobError::Invalid(format!(
            "collection {hash} is too large ({size} bytes)"
        )));
    }
    let bytes = tokio::fs::read(&path).await.map_err(|e| BlobError::Io {
        context: format!("cannot read {}", path.display()),
        source: e,
    })?;
    Collection::decode(&bytes)
}

/// Writes a complete blob to `out`: a file, or for a collection a folder.
/// Every collection path is checked before anything is written. With
/// [`ExportMode::Move`] each file's data is handed over rather than copied
/// where the filesystem allows (see [`ExportMode`]).
pub async fn export(
    store: &BlobStore,
    hash: BlobHash,
    out: &Path,
    mode: ExportMode,
) -> Result<u64, BlobError> {
    let info = store.info(hash).await?.ok_or(BlobError::NotFound(hash))?;
    let io = |what: String| {
        move |e| BlobError::Io {
            context: what,
            source: e,
        }
    };
    match info.kind {
        BlobKind::Raw => export_file(store, hash, out, mode).await,
        BlobKind::Collection => {
            let coll = read_collection(store, hash).await?;
            let targets: Vec<(PathBuf, &Entry)> = coll
                .entries
                .iter()
                .map(|e| safe_relative_path(&e.path).map(|p| (out.join(p), e)))
                .collect::<Result<_, _>>()?;
            for (_, e) in &targets {
                let i = store.info(e.hash).await?;
                if !i.is_some_and(|i| i.complete) {
                    return Err(BlobError::NotFound(e.hash));
                }
            }
            tokio::fs::create_dir_all(out)
                .await
                .map_err(io(format!("cannot create {}", out.display())))?;
            let mut total = 0;
            for (target, e) in targets {
                if let Some(parent) = target.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(io(format!("cannot create {}", parent.display())))?;
                }
                total += export_file(store, e.hash, &target, mode).await?;
            }
            Ok(total)
        }
    }
}

/// One complete blob to the file `out`: handed over or copied.
async fn export_file(
    store: &BlobStore,
    hash: BlobHash,
    out: &Path,
    mode: ExportMode,
) -> Result<u64, BlobError> {
    let (path, size) = store.complete_path(hash).await?;
    if mode == ExportMode::Move && store.hand_over(hash, out).await?.is_some() {
        return Ok(size);
    }
    // Already handed over to this very file: writing it again would replace
    // the file the store serves from.
    if let (Ok(a), Ok(b)) = (
        tokio::fs::canonicalize(&path).await,
        tokio::fs::canonicalize(out).await,
    ) && a == b
    {
        return Ok(size);
    }
    copy_into_place(&path, out).await?;
    Ok(size)
}

/// Copies via a temp file in the target folder, then renames: a crash never
/// leaves a half-written file under the final name.
async fn copy_into_place(from: &Path, to: &Path) -> Result<(), BlobError> {
    let dir = to
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.cnode-tmp",
        to.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let res = async {
        let (src, dst) = (from.to_owned(), tmp.clone());
        tokio::task::spawn_blocking(move || crate::store::files::copy_in_small_writes(&src, &dst))
            .await
            .map_err(std::io::Error::other)??;
        tokio::fs::rename(&tmp, to).await
    }
    .await;
    if let Err(e) = res {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(BlobError::Io {
            context: format!("cannot write {}", to.display()),
            source: e,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_confinement() {
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "",
            "a\\b",
            "..",
            "./..",
        ] {
            assert!(safe_relative_path(bad).is_err(), "{bad}");
        }
        assert_eq!(
            safe_relative_path("a/b/c.txt").unwrap(),
            PathBuf::from("a/b/c.txt")
        );
        assert_eq!(safe_relative_path("./a").unwrap(), PathBuf::from("a"));
    }

    #[test]
    fn encoding_starts_with_the_prefix() {
        let c = Collection {
            format: FORMAT.into(),
            entries: vec![],
        };
        assert!(c.encode().starts_with(PREFIX.as_bytes()));
    }

    #[test]
    fn decode_refuses_escaping_entries() {
        let c = Collection {
            format: FORMAT.into(),
            entries: vec![Entry {
                path: "../../etc/passwd".into(),
                hash: BlobHash::of(b"x"),
                size: 1,
            }],
        };
        assert!(Collection::decode(&c.encode()).is_err());
    }
}
