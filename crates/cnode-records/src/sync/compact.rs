//! Compact id lists: how negentropy messages travel on `/cnode/sync/1`.
//!
//! Negentropy settles a differing range of fewer than 32 items by listing
//! its ids in full, 32 bytes each: the initiator lists its ids, the
//! responder answers with its own list. When differences are scattered
//! (every hundredth record missing), almost every difference costs two such
//! lists of 16–31 ids — about 1 KB beside a ~330-byte record — and the lists
//! name mostly ids both sides hold. On the wire, therefore:
//!
//! - an initiator's list carries 8-byte id prefixes. The responder never
//!   needs the initiator's ids: it answers a list with its own list, and
//!   only the initiator computes the difference;
//! - a responder's list names an id by its prefix when the initiator's
//!   lists in the same request had that prefix (the initiator restores the
//!   full id from what it sent), and in full otherwise — those are the ids
//!   the initiator lacks, and it needs them whole to fetch them.
//!
//! Bounds, fingerprints and skips pass through byte for byte. A prefix
//! collision (two different ids sharing 8 bytes, ~2⁻⁶⁴ per pair) can at
//! worst hide one record from one session; the next session with another
//! peer or after a change in the range finds it.
//!
//! Layout of a list (mode 2) on the wire, after its bound and mode:
//! - from the initiator: `count` (negentropy varint), then `count` 8-byte
//!   prefixes;
//! - from the responder: `count`, then a bitmap of `ceil(count / 8)` bytes
//!   (bit `i` = byte `i / 8`, mask `0x80 >> i % 8`; set = entry `i` is a
//!   prefix), then the entries: 8 bytes where the bit is set, 32 where not.

use std::collections::{HashMap, HashSet};

use super::SyncError;

/// Bytes of an id kept in a compact list entry.
pub(super) const PREFIX: usize = 8;

const ID: usize = 32;
/// How far past its frame limit negentropy may write (it checks the limit
/// between ranges; a range's list holds under 32 ids).
const MAX_RANGE_OVERSHOOT: usize = 64 * 1024;
const FINGERPRINT: usize = 16;
const MODE_SKIP: u64 = 0;
const MODE_FINGERPRINT: u64 = 1;
const MODE_ID_LIST: u64 = 2;

type Prefix = [u8; PREFIX];

fn prefix(id: &[u8]) -> Prefix {
    let mut p = [0u8; PREFIX];
    p.copy_from_slice(&id[..PREFIX]);
    p
}

/// The ids an initiator's message listed, by prefix: what lets it restore
/// the responder's prefix entries.
#[derive(Debug, Default)]
pub(super) struct Sent(HashMap<Prefix, [u8; ID]>);

/// Negentropy's varint: base 128, most significant group first, the high
/// bit set on every byte but the last. At most 10 bytes.
fn read_varint(r: &mut &[u8]) -> Result<u64, SyncError> {
    let mut n: u64 = 0;
    for i in 0..10 {
        let [b, rest @ ..] = *r else {
            return Err(SyncError::Malformed("truncated varint"));
        };
        *r = rest;
        if i == 9 && (n >> 57) != 0 {
            return Err(SyncError::Malformed("varint overflows"));
        }
        n = (n << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
    Err(SyncError::Malformed("varint too long"))
}

fn write_varint(out: &mut Vec<u8>, mut n: u64) {
    let mut groups = [0u8; 10];
    let mut len = 0;
    loop {
        groups[len] = (n & 0x7f) as u8;
        len += 1;
        n >>= 7;
        if n == 0 {
            break;
        }
    }
    for i in (0..len).rev() {
        out.push(groups[i] | if i > 0 { 0x80 } else { 0 });
    }
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Result<&'a [u8], SyncError> {
    if r.len() < n {
        return Err(SyncError::Malformed("truncated reconcile message"));
    }
    let (head, tail) = r.split_at(n);
    *r = tail;
    Ok(head)
}

/// A list's entry count, checked against the bytes left (each entry takes
/// at least `min_entry` bytes), so a lying count cannot make us allocate.
fn read_count(r: &mut &[u8], min_entry: usize) -> Result<usize, SyncError> {
    let n = read_varint(r)?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= r.len() / min_entry)
        .ok_or(SyncError::Malformed("id list longer than the message"))
}

/// Copies `msg` to a new message, rewriting every id list with `list`
/// (which reads one list's payload after its mode and writes the new one).
fn transcode(
    msg: &[u8],
    mut list: impl FnMut(&mut &[u8], &mut Vec<u8>) -> Result<(), SyncError>,
) -> Result<Vec<u8>, SyncError> {
    let mut r = msg;
    let mut out = Vec::with_capacity(msg.len());
    let version = take(&mut r, 1)?;
    out.extend_from_slice(version);
    while !r.is_empty() {
        // The bound: a timestamp, an id prefix length and that prefix.
        let start = r;
        read_varint(&mut r)?;
        let len = read_varint(&mut r)?;
        if len > ID as u64 {
            return Err(SyncError::Malformed("bound longer than an id"));
        }
        take(&mut r, len as usize)?;
        let mode = read_varint(&mut r)?;
        out.extend_from_slice(&start[..start.len() - r.len()]);
        match mode {
            MODE_SKIP => {}
            MODE_FINGERPRINT => out.extend_from_slice(take(&mut r, FINGERPRINT)?),
            MODE_ID_LIST => list(&mut r, &mut out)?,
            _ => return Err(SyncError::Malformed("unknown reconcile mode")),
        }
    }
    Ok(out)
}

/// Initiator, sending: full lists → prefixes; remembers what it sent.
pub(super) fn compact_request(msg: &[u8]) -> Result<(Vec<u8>, Sent), SyncError> {
    let mut sent = Sent::default();
    let wire = transcode(msg, |r, out| {
        let n = read_count(r, ID)?;
        write_varint(out, n as u64);
        for id in take(r, n * ID)?.chunks_exact(ID) {
            out.extend_from_slice(&id[..PREFIX]);
            let mut full = [0u8; ID];
            full.copy_from_slice(id);
            sent.0.insert(prefix(id), full);
        }
        Ok(())
    })?;
    Ok((wire, sent))
}

/// Responder, receiving: prefixes → ids the negentropy responder accepts
/// (it only counts them; the prefix padded with zeros stands for the id),
/// and the set of prefixes the initiator listed.
pub(super) fn expand_request(wire: &[u8]) -> Result<(Vec<u8>, HashSet<Prefix>), SyncError> {
    let mut theirs = HashSet::new();
    let msg = transcode(wire, |r, out| {
        let n = read_count(r, PREFIX)?;
        // Prefixes grow fourfold: a request may not expand past what
        // negentropy itself would send (its frame limit, and one range).
        if out.len() + n * ID > super::FRAME_LIMIT + MAX_RANGE_OVERSHOOT {
            return Err(SyncError::Malformed("id lists larger than a frame"));
        }
        write_varint(out, n as u64);
        for p in take(r, n * PREFIX)?.chunks_exact(PREFIX) {
            out.extend_from_slice(p);
            out.extend_from_slice(&[0u8; ID - PREFIX]);
            theirs.insert(prefix(p));
        }
        Ok(())
    })?;
    Ok((msg, theirs))
}

/// Responder, sending: ids the initiator listed go as prefixes, the rest
/// in full.
pub(super) fn compact_response(msg: &[u8], theirs: &HashSet<Prefix>) -> Result<Vec<u8>, SyncError> {
    transcode(msg, |r, out| {
        let n = read_count(r, ID)?;
        let ids = take(r, n * ID)?;
        write_varint(out, n as u64);
        let bitmap_at = out.len();
        out.resize(bitmap_at + n.div_ceil(8), 0);
        for (i, id) in ids.chunks_exact(ID).enumerate() {
            if theirs.contains(&prefix(id)) {
                out[bitmap_at + i / 8] |= 0x80 >> (i % 8);
                out.extend_from_slice(&id[..PREFIX]);
            } else {
                out.extend_from_slice(id);
            }
        }
        Ok(())
    })
}

/// Initiator, receiving: prefix entries → the full ids it sent.
pub(super) fn expand_response(wire: &[u8], sent: &Sent) -> Result<Vec<u8>, SyncError> {
    transcode(wire, |r, out| {
        let n = read_count(r, PREFIX)?;
        let bitmap = take(r, n.div_ceil(8))?;
        write_varint(out, n as u64);
        for i in 0..n {
            if bitmap[i / 8] & (0x80 >> (i % 8)) != 0 {
                let p = prefix(take(r, PREFIX)?);
                let id = sent
                    .0
                    .get(&p)
                    .ok_or(SyncError::Malformed("id prefix this node did not send"))?;
                out.extend_from_slice(id);
            } else {
                out.extend_from_slice(take(r, ID)?);
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; ID] {
        *blake3::hash(&[n]).as_bytes()
    }

    /// A message with each mode: a skip, a fingerprint, and an id list.
    fn message(ids: &[[u8; ID]]) -> Vec<u8> {
        let mut m = vec![0x61];
        // skip up to timestamp 5 (encoded 6), no id prefix
        m.extend_from_slice(&[6, 0, 0]);
        // fingerprint up to +3 with a 2-byte id prefix
        m.extend_from_slice(&[4, 2, 0xab, 0xcd, 1]);
        m.extend_from_slice(&[7; FINGERPRINT]);
        // id list up to infinity
        m.extend_from_slice(&[0, 0, 2]);
        write_varint(&mut m, ids.len() as u64);
        ids.iter().for_each(|i| m.extend_from_slice(i));
        m
    }

    #[test]
    fn varints_match_negentropy() {
        for (n, bytes) in [
            (0u64, &[0u8][..]),
            (127, &[0x7f]),
            (128, &[0x81, 0x00]),
            (300, &[0x82, 0x2c]),
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(out, bytes, "{n}");
            assert_eq!(read_varint(&mut &out[..]), Ok(n));
        }
        let mut max = Vec::new();
        write_varint(&mut max, u64::MAX);
        assert_eq!(read_varint(&mut &max[..]), Ok(u64::MAX));
        assert!(read_varint(&mut &[0xff; 11][..]).is_err());
        assert!(read_varint(&mut &[0x80][..]).is_err());
    }

    #[test]
    fn lists_shrink_and_come_back_whole() {
        let mine: Vec<_> = (0..20).map(id).collect();
        let (wire, sent) = compact_request(&message(&mine)).unwrap();
        assert_eq!(wire.len(), message(&[]).len() + 20 * PREFIX);
        let (expanded, theirs) = expand_request(&wire).unwrap();
        assert_eq!(theirs.len(), 20);
        assert_eq!(expanded.len(), message(&mine).len());
        // The responder holds 18 of ours and 2 of its own.
        let mut its: Vec<_> = mine[..18].to_vec();
        its.extend([id(100), id(101)]);
        let answer = message(&its);
        let wire = compact_response(&answer, &theirs).unwrap();
        assert_eq!(
            wire.len(),
            message(&[]).len() + 3 + 18 * PREFIX + 2 * ID,
            "bitmap, 18 prefixes, 2 ids"
        );
        assert_eq!(expand_response(&wire, &sent).unwrap(), answer);
        // A prefix the initiator never sent is refused.
        assert!(expand_response(&wire, &Sent::default()).is_err());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let good = message(&[id(1)]);
        for cut in 0..good.len() {
            // Every strict prefix either ends at a range boundary or is refused.
            let _ = compact_request(&good[..cut]);
            let _ = expand_request(&good[..cut]);
            let _ = expand_response(&good[..cut], &Sent::default());
        }
        assert!(compact_request(&[0x61, 0, 0, 9]).is_err(), "unknown mode");
        assert!(compact_request(&[0x61, 0, 33]).is_err(), "bound too long");
        assert!(
            expand_request(&[0x61, 0, 0, 2, 0x84, 0]).is_err(),
            "count past the end"
        );
        assert!(compact_request(&[]).is_err());
    }
}
