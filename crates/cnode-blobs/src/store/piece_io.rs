//! Pieces in and out with few copies and few system calls.
//!
//! bao-tree's `decode_ranges` copies each 16 KiB leaf of a response into a
//! fresh zeroed buffer and writes leaves and parent hashes one at a time, and
//! `encode_ranges` reads them one at a time: for a 1 MiB piece that is about
//! 130 system calls each way. Here:
//! - a received piece is verified where it lies in the response, with the
//!   same checks in the same order as bao-tree's `DecodeResponseIter` (the
//!   parent and leaf hashes from the root down), and only then written: its
//!   leaves straight from the response, its parent hashes in one write per
//!   contiguous run of the outboard;
//! - a piece is encoded by reading its leaves straight into their places in
//!   the response (one `preadv`) and its parent hashes a run at a time.
//!
//! Requests that are not whole chunk groups (16 KiB) go through bao-tree's
//! own encoder; the tests check that both produce the same bytes.

use std::{fs::File, io, os::unix::fs::FileExt};

use super::files;

use bao_tree::{
    BaoTree, ChunkRangesRef, TreeNode,
    blake3::{
        self,
        hazmat::{ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root},
    },
    io::{outboard::PreOrderOutboard, sync::truncate_ranges},
    iter::{BaoChunk, ResponseIterRef},
};

/// Why a response was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// The response ends before its proof does.
    #[error("response truncated at byte {0}")]
    Truncated(usize),
    /// A parent hash pair does not hash to the hash above it.
    #[error("parent hash mismatch at {0:?}")]
    Parent(TreeNode),
    /// Leaf data does not hash to its hash.
    #[error("leaf hash mismatch at chunk {0}")]
    Leaf(u64),
    /// Bytes after the end of the proof.
    #[error("{0} bytes after the end of the response")]
    Trailing(usize),
}

/// The parts of a verified response, as positions in it.
#[derive(Debug, Default)]
struct Verified {
    /// (byte offset in the blob, start in the response, length)
    leaves: Vec<(u64, usize, usize)>,
    /// (byte offset in the outboard, start of the 64-byte pair in the response)
    parents: Vec<(u64, usize)>,
}

fn hash_leaf(start_chunk: u64, data: &[u8], is_root: bool) -> blake3::Hash {
    if is_root {
        blake3::hash(data)
    } else {
        let mut hasher = blake3::Hasher::new();
        hasher.set_input_offset(start_chunk * 1024);
        hasher.update(data);
        let cv: ChainingValue = hasher.finalize_non_root();
        blake3::Hash::from(cv)
    }
}

fn hash_parent(left: &[u8; 32], right: &[u8; 32], is_root: bool) -> blake3::Hash {
    if is_root {
        merge_subtrees_root(left, right, Mode::Hash)
    } else {
        blake3::Hash::from(merge_subtrees_non_root(left, right, Mode::Hash))
    }
}

/// Where a response's parent hashes and leaves are: interleaved, as sent, or
/// apart (parents in order in one buffer, leaves one after another in
/// another), as a scattered read leaves them.
#[derive(Clone, Copy)]
pub(super) enum Layout<'a> {
    Interleaved(&'a [u8]),
    Apart { parents: &'a [u8], leaves: &'a [u8] },
}

impl<'a> Layout<'a> {
    /// The buffers parent hashes and leaves are in (the same one when
    /// interleaved).
    fn parts(self) -> (&'a [u8], &'a [u8]) {
        match self {
            Layout::Interleaved(b) => (b, b),
            Layout::Apart { parents, leaves } => (parents, leaves),
        }
    }
}

/// Checks a bao response for `ranges` of the blob `root` (a tree of `tree`'s
/// shape) and says where its verified leaves and parent hashes go (their
/// positions in the buffer each is in).
fn verify(
    root: blake3::Hash,
    tree: BaoTree,
    ranges: &ChunkRangesRef,
    layout: Layout<'_>,
) -> Result<Verified, VerifyError> {
    let ranges = truncate_ranges(ranges, tree.size());
    let mut expected = vec![root];
    let (parents, leaves) = layout.parts();
    let interleaved = matches!(layout, Layout::Interleaved(_));
    // Read positions in `parents` and in `leaves` (the same one when
    // interleaved).
    let (mut at_p, mut at_l) = (0usize, 0usize);
    let mut out = Verified::default();
    fn take(buf: &[u8], at: usize, len: usize) -> Result<&[u8], VerifyError> {
        buf.get(at..at + len)
            .ok_or(VerifyError::Truncated(buf.len()))
    }
    for item in ResponseIterRef::new(tree, ranges) {
        match item {
            BaoChunk::Parent {
                node,
                is_root,
                left,
                right,
                ..
            } => {
                let pair = take(parents, at_p, 64)?;
                let (l, r): (&[u8; 32], &[u8; 32]) = (
                    pair[..32].try_into().expect("32 bytes"),
                    pair[32..].try_into().expect("32 bytes"),
                );
                let want = expected.pop().ok_or(VerifyError::Parent(node))?;
                if hash_parent(l, r, is_root) != want {
                    return Err(VerifyError::Parent(node));
                }
                if right {
                    expected.push(blake3::Hash::from(*r));
                }
                if left {
                    expected.push(blake3::Hash::from(*l));
                }
                if let Some(offset) = tree.pre_order_offset(node) {
                    out.parents.push((offset * 64, at_p));
                }
                at_p += 64;
                if interleaved {
                    at_l = at_p;
                }
            }
            BaoChunk::Leaf {
                start_chunk,
                size,
                is_root,
                ..
            } => {
                let data = take(leaves, at_l, size)?;
                let want = expected.pop().ok_or(VerifyError::Leaf(start_chunk.0))?;
                if hash_leaf(start_chunk.0, data, is_root) != want {
                    return Err(VerifyError::Leaf(start_chunk.0));
                }
                out.leaves.push((start_chunk.to_bytes(), at_l, size));
                at_l += size;
                if interleaved {
                    at_p = at_l;
                }
            }
        }
    }
    let trailing = if interleaved {
        parents.len() - at_p
    } else {
        (parents.len() - at_p) + (leaves.len() - at_l)
    };
    if trailing != 0 {
        return Err(VerifyError::Trailing(trailing));
    }
    Ok(out)
}

/// Verifies a bao response for `ranges` against the outboard's root and,
/// only if all of it checks out, writes its data to `data` and its parent
/// hashes to the outboard.
///
/// With `direct` (an `O_DIRECT` handle on the same file), a contiguous,
/// page-aligned run of leaves (every whole piece) is written with one call
/// that bypasses the page cache: as it lies when the response was read
/// apart into an aligned buffer, else gathered into one. Anything else, or
/// a direct write the file system refuses, goes through `data`.
pub(super) fn verify_and_write(
    layout: Layout<'_>,
    ranges: &ChunkRangesRef,
    data: &File,
    direct: Option<&File>,
    outboard: &PreOrderOutboard<File>,
) -> Result<Result<(), VerifyError>, io::Error> {
    let v = match verify(outboard.root, outboard.tree, ranges, layout) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let (parents, leaves) = layout.parts();
    if direct.is_none_or(|d| write_direct(d, leaves, &v.leaves).is_err()) {
        // Leaves: one write each (a chunk group, `files::SMALL_WRITE`),
        // straight from where they lie; bigger buffered writes are slower
        // here (see `files`).
        for &(offset, start, len) in &v.leaves {
            data.write_all_at(&leaves[start..start + len], offset)?;
        }
    }
    write_parents(outboard, parents, v.parents)?;
    Ok(Ok(()))
}

/// Parent hashes: pre-order keeps a piece's subtree together; its ancestors
/// are single pairs elsewhere. One write per contiguous run.
fn write_parents(
    outboard: &PreOrderOutboard<File>,
    buf: &[u8],
    mut parents: Vec<(u64, usize)>,
) -> io::Result<()> {
    parents.sort_unstable();
    for run in parents.chunk_by(|a, b| b.0 == a.0 + 64) {
        let bytes: Vec<u8> = run
            .iter()
            .flat_map(|&(_, s)| &buf[s..s + 64])
            .copied()
            .collect();
        outboard.data.write_all_at(&bytes, run[0].0)?;
    }
    Ok(())
}

/// Where each part of the response for `ranges` lies, for a scattered read:
/// the response's length (header included) and the (offset, length) of each
/// leaf, in order.
pub(crate) fn response_layout(
    tree: BaoTree,
    ranges: &ChunkRangesRef,
) -> (usize, Vec<(usize, usize)>) {
    let ranges = truncate_ranges(ranges, tree.size());
    let mut at = crate::protocol::DATA_HEADER;
    let mut leaves = Vec::new();
    for item in ResponseIterRef::new(tree, ranges) {
        match item {
            BaoChunk::Parent { .. } => at += 64,
            BaoChunk::Leaf { size, .. } => {
                leaves.push((at, size));
                at += size;
            }
        }
    }
    (at, leaves)
}

/// Writes `leaves` (contiguous in the blob, page-aligned start and length)
/// with one `O_DIRECT` write: as they lie in `buf` when they are one aligned
/// run there (read apart), else gathered into an aligned buffer. An error if
/// they do not qualify or the write fails, so that the caller writes them
/// through the page cache instead.
fn write_direct(direct: &File, buf: &[u8], leaves: &[(u64, usize, usize)]) -> io::Result<()> {
    let align = files::DIRECT_ALIGN as u64;
    let (Some(&(first, ..)), Some(&(last, _, last_len))) = (leaves.first(), leaves.last()) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let total = (last - first) as usize + last_len;
    let contiguous = leaves.windows(2).all(|w| w[0].0 + w[0].2 as u64 == w[1].0);
    if !contiguous || !first.is_multiple_of(align) || !(total as u64).is_multiple_of(align) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let start = leaves[0].1;
    let in_place = leaves.windows(2).all(|w| w[0].1 + w[0].2 == w[1].1)
        && (buf[start..].as_ptr() as usize).is_multiple_of(files::DIRECT_ALIGN);
    if in_place {
        return direct.write_all_at(&buf[start..start + total], first);
    }
    let parts = leaves.iter().map(|&(_, s, len)| &buf[s..s + len]);
    direct.write_all_at(&files::gather_aligned(parts, total), first)
}

/// Bao-encodes `ranges` of a blob held in `data` with `outboard`, appending
/// to `out`. Whole chunk groups take the fast path; anything else goes
/// through bao-tree's encoder. Returns where the leaves lie in `out`
/// ((position, length), in order; none from bao-tree's encoder), for a lane
/// to send as records of their own.
pub(super) fn encode(
    data: &File,
    outboard: &PreOrderOutboard<&File>,
    ranges: &ChunkRangesRef,
    out: &mut Vec<u8>,
) -> io::Result<Vec<(usize, usize)>> {
    let tree = outboard.tree;
    let items: Vec<_> = tree
        .ranges_pre_order_chunks_iter_ref(truncate_ranges(ranges, tree.size()), 0)
        .collect();
    if items
        .iter()
        .any(|i| matches!(i, BaoChunk::Leaf { ranges, .. } if !ranges.is_all()))
    {
        bao_tree::io::sync::encode_ranges(data, outboard, ranges, out).map_err(io::Error::other)?;
        return Ok(Vec::new());
    }
    // Lay the response out: where each parent pair and each leaf goes.
    let base = out.len();
    let mut leaves = Vec::new(); // (blob offset, position in out, len)
    let mut parents = Vec::new(); // (outboard offset, position in out)
    let mut len = 0usize;
    for item in &items {
        match *item {
            BaoChunk::Parent { node, .. } => {
                let offset = tree.pre_order_offset(node).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no hashes for {node:?}"))
                })?;
                parents.push((offset * 64, base + len));
                len += 64;
            }
            BaoChunk::Leaf {
                start_chunk, size, ..
            } => {
                leaves.push((start_chunk.to_bytes(), base + len, size));
                len += size;
            }
        }
    }
    // Filled in place, without zeroing it first (1 MiB per piece served):
    // every byte of `base..base + len` is a leaf's or a parent pair's slot.
    out.reserve(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    // Leaves: one vectored read per contiguous run of the blob.
    for run in leaves.chunk_by(|a, b| b.0 == a.0 + a.2 as u64) {
        let slots: Vec<(usize, usize)> = run.iter().map(|&(_, p, l)| (p - base, l)).collect();
        read_exact_vectored_at(data, run[0].0, spare, &slots)?;
    }
    // Parent hashes: one read per contiguous run of the outboard.
    parents.sort_unstable();
    let mut buf = Vec::new();
    for run in parents.chunk_by(|a, b| b.0 == a.0 + 64) {
        buf.resize(64 * run.len(), 0);
        outboard.data.read_exact_at(&mut buf, run[0].0)?;
        for (pair, &(_, pos)) in buf.chunks_exact(64).zip(run) {
            for (slot, byte) in spare[pos - base..pos - base + 64].iter_mut().zip(pair) {
                slot.write(*byte);
            }
        }
    }
    // SAFETY: the layout above gives every byte of `base..base + len` to
    // exactly one leaf or parent pair, and each was written just above
    // (`read_exact_vectored_at` fills its slots completely or fails, and a
    // failure returned before this point).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(base + len);
    }
    Ok(leaves.into_iter().map(|(_, pos, len)| (pos, len)).collect())
}

/// `preadv` of a contiguous file range into the given (position, length)
/// slots of `out`, in order, until all are filled (or an error).
fn read_exact_vectored_at(
    file: &File,
    mut offset: u64,
    out: &mut [std::mem::MaybeUninit<u8>],
    slots: &[(usize, usize)],
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut slots: Vec<(usize, usize)> = slots.iter().copied().filter(|s| s.1 > 0).collect();
    let mut first = 0;
    while first < slots.len() {
        let iov: Vec<libc::iovec> = slots[first..]
            .iter()
            .take(IOV_MAX)
            .map(|&(p, l)| libc::iovec {
                iov_base: out[p..p + l].as_mut_ptr() as *mut libc::c_void,
                iov_len: l,
            })
            .collect();
        // SAFETY: every iovec points into `out` (bounds checked by the
        // slicing above), which is borrowed mutably for this call; the slots
        // are disjoint.
        #[allow(unsafe_code)]
        let n = unsafe {
            libc::preadv(
                file.as_raw_fd(),
                iov.as_ptr(),
                iov.len() as libc::c_int,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            let (p, l) = slots[first];
            if n >= l {
                n -= l;
                first += 1;
            } else {
                slots[first] = (p + n, l - n);
                n = 0;
            }
        }
    }
    Ok(())
}

/// At most this many buffers per vectored call (Linux's `IOV_MAX`).
const IOV_MAX: usize = 1024;

#[cfg(test)]
mod tests {
    use bao_tree::{
        ChunkNum, ChunkRanges,
        io::{outboard::PreOrderOutboard, sync::CreateOutboard},
    };

    use super::*;
    use crate::store::BLOCK_SIZE;

    /// A blob on disk: its data file, its outboard file and the outboard's
    /// shape.
    struct Blob {
        bytes: Vec<u8>,
        data: File,
        outboard: File,
        root: blake3::Hash,
        tree: BaoTree,
    }

    fn blob(size: usize) -> Blob {
        let bytes: Vec<u8> = (0..size as u64)
            .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
            .collect();
        let ob = PreOrderOutboard::<Vec<u8>>::create(io::Cursor::new(&bytes), BLOCK_SIZE).unwrap();
        let data = tempfile::tempfile().unwrap();
        data.write_all_at(&bytes, 0).unwrap();
        let outboard = tempfile::tempfile().unwrap();
        outboard.write_all_at(&ob.data, 0).unwrap();
        Blob {
            bytes,
            data,
            outboard,
            root: ob.root,
            tree: ob.tree,
        }
    }

    impl Blob {
        fn ob(&self) -> PreOrderOutboard<&File> {
            PreOrderOutboard {
                root: self.root,
                tree: self.tree,
                data: &self.outboard,
            }
        }

        fn encode(&self, ranges: &ChunkRanges) -> Vec<u8> {
            let mut out = Vec::new();
            encode(&self.data, &self.ob(), ranges, &mut out).unwrap();
            out
        }

        /// `encoded` (a response for `ranges`) received interleaved through
        /// the page cache: the reference the other ways are held to.
        fn received(&self, encoded: &[u8], ranges: &ChunkRanges) -> (File, PreOrderOutboard<File>) {
            let (data, ob) = self.receiver();
            verify_and_write(Layout::Interleaved(encoded), ranges, &data, None, &ob)
                .unwrap()
                .unwrap();
            (data, ob)
        }

        /// Empty files of the right sizes to receive into.
        fn receiver(&self) -> (File, PreOrderOutboard<File>) {
            let data = tempfile::tempfile().unwrap();
            data.set_len(self.bytes.len() as u64).unwrap();
            let outboard = tempfile::tempfile().unwrap();
            outboard.set_len(self.tree.outboard_size()).unwrap();
            (
                data,
                PreOrderOutboard {
                    root: self.root,
                    tree: self.tree,
                    data: outboard,
                },
            )
        }
    }

    fn read_all(f: &File) -> Vec<u8> {
        let mut v = vec![0u8; f.metadata().unwrap().len() as usize];
        f.read_exact_at(&mut v, 0).unwrap();
        v
    }

    fn chunks(a: u64, b: u64) -> ChunkRanges {
        ChunkRanges::from(ChunkNum(a)..ChunkNum(b))
    }

    /// Sizes around the block and piece edges, with the requests a peer makes
    /// (whole pieces, the whole blob) and ones it could make (unaligned).
    fn cases() -> Vec<(usize, ChunkRanges)> {
        let mut out = Vec::new();
        for size in [
            1,
            1024,
            1025,
            16 * 1024,
            16 * 1024 + 1,
            1 << 20,
            (1 << 20) + 5,
            3_400_000,
        ] {
            let total = (size as u64).div_ceil(1024);
            out.push((size, chunks(0, total)));
            out.push((size, chunks(0, total.min(1024))));
            out.push((size, chunks(total.saturating_sub(1) / 1024 * 1024, total)));
            if total > 40 {
                out.push((size, chunks(3, 40)));
                out.push((size, chunks(16, 32) | chunks(64, total)));
            }
        }
        out
    }

    #[test]
    fn encodes_exactly_what_bao_tree_encodes() {
        let mut fast = 0;
        for (size, ranges) in cases() {
            let b = blob(size);
            let mut theirs = Vec::new();
            bao_tree::io::sync::encode_ranges(&b.data, b.ob(), &ranges, &mut theirs).unwrap();
            assert_eq!(b.encode(&ranges), theirs, "size {size}, {ranges:?}");
            // The leaves it reports are where the asking side expects them
            // (its scatter plan), or none when bao-tree's encoder took it.
            let mut out = crate::protocol::Response::begin_data(0);
            let leaves = encode(&b.data, &b.ob(), &ranges, &mut out).unwrap();
            let (len, planned) = response_layout(b.tree, &ranges);
            assert_eq!(len, out.len(), "size {size}, {ranges:?}");
            assert!(
                leaves == planned || leaves.is_empty(),
                "size {size}, {ranges:?}"
            );
            fast += usize::from(!leaves.is_empty());
        }
        assert!(fast > 0, "no case took the fast path");
    }

    #[test]
    fn direct_writes_land_the_same_bytes_as_buffered_ones() {
        for (size, ranges) in cases() {
            let b = blob(size);
            let encoded = b.encode(&ranges);
            let (data, ob) = b.received(&encoded, &ranges);
            let named = tempfile::NamedTempFile::new().unwrap();
            named.as_file().set_len(size as u64).unwrap();
            let direct = files::open_direct(named.path())
                .expect("the temp dir's file system supports O_DIRECT");
            let (_, ob2) = b.receiver();
            verify_and_write(
                Layout::Interleaved(&encoded),
                &ranges,
                named.as_file(),
                Some(&direct),
                &ob2,
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                read_all(named.as_file()),
                read_all(&data),
                "size {size}, {ranges:?}"
            );
            assert_eq!(
                read_all(&ob2.data),
                read_all(&ob.data),
                "size {size}, {ranges:?}"
            );
        }
        // A whole piece goes direct; a run that is not page-aligned does not.
        let named = tempfile::NamedTempFile::new().unwrap();
        named.as_file().set_len(2 << 20).unwrap();
        let direct = files::open_direct(named.path()).unwrap();
        let piece = vec![7u8; 1 << 20];
        let leaves: Vec<_> = (0..64)
            .map(|i| ((1 << 20) + i * 16384, i as usize * 16384, 16384))
            .collect();
        write_direct(&direct, &piece, &leaves).unwrap();
        assert_eq!(&read_all(named.as_file())[1 << 20..], &piece[..]);
        assert!(write_direct(&direct, &piece, &[(100, 0, 16384)]).is_err());
        assert!(write_direct(&direct, &piece, &[(0, 0, 16384), (32768, 16384, 16384)]).is_err());
    }

    #[test]
    fn responses_read_apart_write_what_interleaved_ones_do() {
        for (size, ranges) in cases() {
            let b = blob(size);
            let encoded = b.encode(&ranges);
            let (data, ob) = b.received(&encoded, &ranges);
            // Apart, as a scattered read leaves it: parents in order, leaves
            // one after another in an aligned buffer.
            let (frame_len, runs) = response_layout(b.ob().tree, &ranges);
            let header = crate::protocol::DATA_HEADER;
            assert_eq!(frame_len - header, encoded.len(), "size {size}, {ranges:?}");
            let total: usize = runs.iter().map(|r| r.1).sum();
            let mut leaves = files::aligned_to_fill(total).into_parts();
            let (mut parents, mut pos, mut to) = (Vec::new(), 0, leaves.1);
            for &(off, n) in &runs {
                let off = off - header;
                parents.extend_from_slice(&encoded[pos..off]);
                leaves.0[to..to + n].copy_from_slice(&encoded[off..off + n]);
                (pos, to) = (off + n, to + n);
            }
            parents.extend_from_slice(&encoded[pos..]);
            let leaves = files::Aligned::from_parts(leaves.0, leaves.1);
            let named = tempfile::NamedTempFile::new().unwrap();
            named.as_file().set_len(size as u64).unwrap();
            let direct = files::open_direct(named.path()).unwrap();
            let (_, ob2) = b.receiver();
            let apart = Layout::Apart {
                parents: &parents,
                leaves: &leaves,
            };
            verify_and_write(apart, &ranges, named.as_file(), Some(&direct), &ob2)
                .unwrap()
                .unwrap();
            assert_eq!(read_all(named.as_file()), read_all(&data), "size {size}");
            assert_eq!(read_all(&ob2.data), read_all(&ob.data), "size {size}");
            // A flipped bit in a leaf is caught apart too.
            if total > 0 {
                let mut bad = leaves.to_vec();
                bad[total / 2] ^= 1;
                let (d3, ob3) = b.receiver();
                let apart = Layout::Apart {
                    parents: &parents,
                    leaves: &bad,
                };
                assert!(
                    verify_and_write(apart, &ranges, &d3, None, &ob3)
                        .unwrap()
                        .is_err()
                );
            }
        }
    }

    #[test]
    fn a_verified_response_writes_the_data_and_hashes_bao_tree_would() {
        for (size, ranges) in cases() {
            let b = blob(size);
            let encoded = b.encode(&ranges);
            let (data, ob) = b.received(&encoded, &ranges);
            let (their_data, their_ob) = b.receiver();
            let their_ob_file = their_ob.data.try_clone().unwrap();
            bao_tree::io::sync::decode_ranges(
                io::Cursor::new(&encoded),
                &ranges,
                their_data.try_clone().unwrap(),
                their_ob,
            )
            .unwrap();
            assert_eq!(
                read_all(&data),
                read_all(&their_data),
                "size {size}, {ranges:?}"
            );
            assert_eq!(
                read_all(&ob.data),
                read_all(&their_ob_file),
                "size {size}, {ranges:?}"
            );
            // And the data is the blob's wherever it was asked for.
            let got = read_all(&data);
            for c in 0..(size as u64).div_ceil(1024) {
                if ranges.contains(&ChunkNum(c)) {
                    let (a, z) = (c as usize * 1024, ((c as usize + 1) * 1024).min(size));
                    assert_eq!(got[a..z], b.bytes[a..z], "size {size}, chunk {c}");
                }
            }
        }
    }

    #[test]
    fn any_flipped_byte_truncation_or_trailing_byte_is_refused_and_nothing_is_written() {
        let b = blob((1 << 20) + 40_000);
        let ranges = chunks(1024, 1024 + 40); // the last piece: parents and leaves
        let encoded = b.encode(&ranges);
        let step = (encoded.len() / 300).max(1);
        let mut positions: Vec<usize> = (0..encoded.len()).step_by(step).collect();
        positions.extend([0, 63, 64, encoded.len() - 1]);
        for pos in positions {
            let mut bad = encoded.clone();
            bad[pos] ^= 0x20;
            let (data, ob) = b.receiver();
            let err = verify_and_write(Layout::Interleaved(&bad), &ranges, &data, None, &ob)
                .unwrap()
                .unwrap_err();
            assert!(
                matches!(err, VerifyError::Parent(_) | VerifyError::Leaf(_)),
                "{pos}: {err}"
            );
            assert!(
                read_all(&data).iter().all(|&x| x == 0),
                "{pos}: data written"
            );
            assert!(
                read_all(&ob.data).iter().all(|&x| x == 0),
                "{pos}: hashes written"
            );
        }
        let (data, ob) = b.receiver();
        let short = &encoded[..encoded.len() - 1];
        assert!(matches!(
            verify_and_write(Layout::Interleaved(short), &ranges, &data, None, &ob).unwrap(),
            Err(VerifyError::Truncated(_))
        ));
        let mut long = encoded.clone();
        long.push(0);
        assert_eq!(
            verify_and_write(Layout::Interleaved(&long), &ranges, &data, None, &ob).unwrap(),
            Err(VerifyError::Trailing(1))
        );
        assert!(read_all(&data).iter().all(|&x| x == 0));
        // A proof for another blob of the same size fails at the root.
        let other = blob((1 << 20) + 40_000);
        let (data, mut ob) = other.receiver();
        ob.root = blake3::hash(b"another blob");
        assert!(
            verify_and_write(Layout::Interleaved(&encoded), &ranges, &data, None, &ob)
                .unwrap()
                .is_err()
        );
    }
}
