//! File-level tricks the store's writes depend on, measured on this
//! project's reference machine (Linux 6.18, ext4, 2 cores):
//!
//! - data is written in [`SMALL_WRITE`] pieces: larger writes make the page
//!   cache allocate large folios, and those were much slower here (1 GiB
//!   1 -> 1 from ~430 MB/s with 16 KiB writes to 360 with 64 KiB, 280 with
//!   256 KiB and ~240 with one 1 MiB write per piece; 4 KiB: 350);
//! - a download's data file is preallocated ([`reserve_blocks`]);
//! - whole pieces bypass the page cache ([`open_direct`], [`gather_aligned`]):
//!   allocating page-cache pages was the leecher's largest and least stable
//!   cost on the reference VM; the 16 KiB writes are the fallback;
//! - each piece written through the page cache starts its own writeback
//!   ([`start_writeback`]).

use std::{
    fs::{File, OpenOptions},
    path::Path,
};

/// The size of the store's data writes: one chunk group, 16 KiB.
pub(crate) const SMALL_WRITE: usize = 1024 << crate::protocol::CHUNK_GROUP_LOG;

/// Allocates the blocks of a partial blob's data file up front (the room is
/// already reserved under the quota). Writing into allocated blocks costs the
/// kernel less than allocating them on each write: 1 GiB of 16 KiB writes
/// took 0.41-0.59 s of system time here instead of 0.51-0.77 s. Where the
/// file system cannot (tmpfs, some network file systems), the file simply
/// stays sparse.
pub(crate) fn reserve_blocks(file: &File, size: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate takes a file descriptor we own for the duration
        // of the call and plain integers; mode 0 allocates without changing
        // the file's contents or size.
        #[allow(unsafe_code)]
        unsafe {
            if size > 0 {
                libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off64_t);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, size);
}

/// Starts writing a just-written range to disk without waiting for it, so
/// that the `sync_all` when the download finishes has little left to wait
/// for (a 1 GiB blob would otherwise be written out all at once there).
pub(crate) fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: sync_file_range takes a file descriptor we own for the
        // duration of the call and plain integers; SYNC_FILE_RANGE_WRITE
        // only starts writeback.
        #[allow(unsafe_code)]
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// The alignment `O_DIRECT` writes need (offset, length and buffer): the
/// page size, a multiple of every disk's logical block size.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// A second handle on a download's data file that bypasses the page cache
/// (`O_DIRECT`), or `None` where the file system does not support it (tmpfs
/// before Linux 6.6, some FUSE and network file systems).
pub(crate) fn open_direct(path: &Path) -> Option<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = path;
        None
    }
}

/// `parts` gathered into one buffer that starts on a [`DIRECT_ALIGN`]
/// boundary, for an `O_DIRECT` write. Filled by copying, never zeroed first.
///
/// The buffer comes from a small pool and goes back to it when dropped: a
/// fresh 1 MiB allocation per piece was returned to the kernel and faulted
/// in again each time, and those page faults plus the copy into cold pages
/// were 20 % of a leecher's CPU (`perf`, 256 MiB 1 -> 1). The pool holds at
/// most [`POOL_BUFFERS`] buffers of at most [`POOL_MAX_LEN`] bytes, and is
/// emptied by [`release_buffers`] when a download ends.
pub(crate) fn gather_aligned<'a>(parts: impl Iterator<Item = &'a [u8]>, len: usize) -> Aligned {
    let mut buf = pool()
        .pop()
        .filter(|b| b.capacity() >= len + DIRECT_ALIGN)
        .unwrap_or_else(|| Vec::with_capacity(len + DIRECT_ALIGN));
    buf.clear();
    let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
    buf.resize(at, 0);
    for p in parts {
        buf.extend_from_slice(p);
    }
    Aligned { buf, at }
}

/// `len` initialised bytes starting on a [`DIRECT_ALIGN`] boundary, to read a
/// piece's leaves straight into (see `download`). From the pool when it has
/// one: only bytes past what the buffer held before are zeroed.
pub(crate) fn aligned_to_fill(len: usize) -> Aligned {
    let mut buf = pool()
        .pop()
        .filter(|b| b.capacity() >= len + DIRECT_ALIGN)
        .unwrap_or_else(|| Vec::with_capacity(len + DIRECT_ALIGN));
    let at = buf.as_ptr().align_offset(DIRECT_ALIGN);
    buf.resize(at + len, 0);
    Aligned { buf, at }
}

/// Buffers kept for reuse. A download has up to `MAX_IN_FLIGHT` (6) pieces
/// in flight, each read into one of these; more are allocated and freed.
/// Each kept buffer is a piece of a leecher's RSS (in place of the answer
/// buffer the piece would otherwise have been read into).
pub(crate) const POOL_BUFFERS: usize = 8;
/// Larger buffers are freed, not kept (a piece and its alignment slack).
pub(crate) const POOL_MAX_LEN: usize = (crate::protocol::PIECE_SIZE as usize) + 2 * DIRECT_ALIGN;

static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn pool() -> std::sync::MutexGuard<'static, Vec<Vec<u8>>> {
    POOL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees the pooled buffers (a download has ended; an idle node holds none).
pub(crate) fn release_buffers() {
    pool().clear();
}

/// A pooled buffer whose bytes from `at` on start on a [`DIRECT_ALIGN`]
/// boundary; back to the pool when dropped.
pub(crate) struct Aligned {
    buf: Vec<u8>,
    at: usize,
}

impl std::ops::Deref for Aligned {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.at..]
    }
}

impl Aligned {
    /// The buffer and where its aligned bytes start (for a [`Scatter`] plan;
    /// [`Aligned::from_parts`] takes them back).
    ///
    /// [`Scatter`]: cnode_types::Scatter
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, usize) {
        (std::mem::take(&mut self.buf), self.at)
    }

    /// A buffer given out by [`Aligned::into_parts`], its bytes from `at`
    /// aligned.
    pub(crate) fn from_parts(buf: Vec<u8>, at: usize) -> Self {
        debug_assert!((buf.as_ptr().wrapping_add(at) as usize).is_multiple_of(DIRECT_ALIGN));
        Self { buf, at }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        if buf.capacity() > 0 && buf.capacity() <= POOL_MAX_LEN {
            let mut pool = pool();
            if pool.len() < POOL_BUFFERS {
                pool.push(buf);
            }
        }
    }
}

/// Copies `from` to a new file `to` (preallocated): 1 MiB reads,
/// [`SMALL_WRITE`] writes. Not `copy_file_range`: its splice path writes into
/// large page-cache folios, and exporting 1 GiB after a download took 2.7 s
/// of CPU in `cnode get` (53 % of the process, `perf`).
pub(crate) fn copy_in_small_writes(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::{io::Read, os::unix::fs::FileExt};
    const READ: usize = 1 << 20;
    let mut src = File::open(from)?;
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)?;
    reserve_blocks(&dst, src.metadata()?.len());
    let mut buf = vec![0u8; READ];
    let mut at = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for chunk in buf[..n].chunks(SMALL_WRITE) {
            dst.write_all_at(chunk, at)?;
            at += chunk.len() as u64;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathered_bytes_are_aligned_and_buffers_are_reused_until_released() {
        let (a, b) = (vec![1u8; 5000], vec![2u8; 3192]);
        let first = gather_aligned([&a[..], &b[..]].into_iter(), 8192);
        assert_eq!(first.as_ptr().align_offset(DIRECT_ALIGN), 0);
        assert_eq!(&first[..5000], &a[..]);
        assert_eq!(&first[5000..], &b[..]);
        let ptr = first.buf.as_ptr();
        drop(first);
        // Other tests may gather at the same time: look for ours in the pool.
        assert!(pool().iter().any(|v| v.as_ptr() == ptr));
        let again = gather_aligned([&b[..]].into_iter(), 3192);
        assert_eq!(&again[..], &b[..]);
        assert_eq!(again.as_ptr().align_offset(DIRECT_ALIGN), 0);
        drop(again);
        release_buffers();
        assert!(pool().iter().all(|v| v.as_ptr() != ptr));
        // A buffer too large for the pool is freed, not kept.
        let big = vec![3u8; POOL_MAX_LEN + 1];
        let huge = gather_aligned([&big[..]].into_iter(), big.len());
        let ptr = huge.buf.as_ptr();
        drop(huge);
        assert!(pool().iter().all(|v| v.as_ptr() != ptr));
    }
}
