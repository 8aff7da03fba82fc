//! The audit log of denied host calls: a bounded ring in memory (for
//! `PluginHost::audit`) and a JSON-lines file
//! (`<data>/plugins/audit.jsonl`) rotated by size into `audit.jsonl.1`.
//!
//! Writes are small appends under a mutex, done inline: denied calls are
//! rare for well-behaved plugins, and the host caps how many one call may
//! write (the rest are summarised in one entry) so a plugin looping on a
//! denied call cannot flood the disk.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};

use crate::manifest::PluginId;

/// One denied host call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Which plugin.
    pub plugin: PluginId,
    /// Which host function: `records.publish`, `http.fetch`, …
    pub call: String,
    /// Why it was denied.
    pub reason: String,
}

/// The audit log.
#[derive(Debug)]
pub struct AuditLog {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    ring: VecDeque<AuditEntry>,
    ring_cap: usize,
    path: Option<PathBuf>,
    file: Option<File>,
    file_len: u64,
    max_file: u64,
    write_failed: bool,
}

impl AuditLog {
    /// An audit log keeping `ring` entries in memory and appending to
    /// `path` (rotated when it passes `max_file` bytes); `path: None` keeps
    /// it in memory only.
    pub fn open(path: Option<&Path>, ring: usize, max_file: u64) -> io::Result<Self> {
        let (file, file_len) = match path {
            Some(p) => {
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                let len = f.metadata()?.len();
                (Some(f), len)
            }
            None => (None, 0),
        };
        Ok(Self {
            inner: Mutex::new(Inner {
                ring: VecDeque::with_capacity(ring.min(1024)),
                ring_cap: ring.max(1),
                path: path.map(Path::to_path_buf),
                file,
                file_len,
                max_file,
                write_failed: false,
            }),
        })
    }

    /// Appends an entry.
    pub fn record(&self, entry: AuditEntry) {
        tracing::warn!(plugin = %entry.plugin, call = %entry.call, reason = %entry.reason, "plugin call denied");
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if let Err(e) = inner.append_to_file(&entry) {
            if !inner.write_failed {
                tracing::error!(error = %e, "cannot write the plugin audit log; keeping it in memory only");
            }
            inner.write_failed = true;
        }
        if inner.ring.len() == inner.ring_cap {
            inner.ring.pop_front();
        }
        inner.ring.push_back(entry);
    }

    /// The newest `limit` entries, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<AuditEntry> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let skip = inner.ring.len().saturating_sub(limit);
        inner.ring.iter().skip(skip).cloned().collect()
    }
}

impl Inner {
    fn append_to_file(&mut self, entry: &AuditEntry) -> io::Result<()> {
        let (Some(path), Some(_)) = (&self.path, &self.file) else {
            return Ok(());
        };
        let mut line = serde_json::to_vec(entry).map_err(io::Error::other)?;
        line.push(b'\n');
        if self.file_len > 0 && self.file_len + line.len() as u64 > self.max_file {
            // Keep one previous generation: audit.jsonl.1.
            let mut old = path.clone().into_os_string();
            old.push(".1");
            self.file = None;
            fs::rename(path, &old)?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(path)?);
            self.file_len = 0;
        }
        if let Some(f) = &mut self.file {
            f.write_all(&line)?;
            self.file_len += line.len() as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            at_ms: n,
            plugin: "org.test.a".parse().unwrap(),
            call: "kv.set".into(),
            reason: "kv:write is not granted".into(),
        }
    }

    #[test]
    fn ring_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Some(&path), 3, 300).unwrap();
        for n in 0..5 {
            log.record(entry(n));
        }
        let recent = log.recent(10);
        assert_eq!(
            recent.iter().map(|e| e.at_ms).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        assert_eq!(log.recent(1)[0].at_ms, 4);

        // Each line is ~100 bytes: the file rotated and both stay bounded.
        let current = fs::read_to_string(&path).unwrap();
        let old = fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        assert!(current.len() <= 300 && old.len() <= 300);
        let last: AuditEntry = serde_json::from_str(current.lines().last().unwrap()).unwrap();
        assert_eq!(last, entry(4));
    }
}
