//! The record layer of a lane: after the TLS 1.3 handshake, a lane's
//! messages travel in AEAD records keyed from the TLS exporter, read and
//! written by us rather than by rustls.
//!
//! Why: rustls's reader copies every received byte three times (socket
//! buffer → deframer → a fresh `Vec` per record → the caller's buffer), and
//! its writer once; on a 2-core machine a 1 GiB transfer is CPU-bound, and
//! those copies were 19 % of a leecher's CPU (`perf`). Here a record's
//! ciphertext is read straight from the socket into where its bytes belong
//! (a piece's aligned write buffer, or the answer being built) and opened in
//! place; a sender seals an answer in place and hands it to `writev`.
//!
//! What (see docs/protocol.md, "Lanes"):
//!
//! - keys: per direction, a key and a 12-byte IV, from
//!   `export_keying_material(label = `[`LABEL`]`, context = "client to
//!   server" | "server to client")` of the lane's TLS connection (RFC 8446
//!   §7.5), as long as the negotiated suite's AEAD key plus 12 bytes; the
//!   AEAD is the suite's (AES-128-GCM, AES-256-GCM or ChaCha20-Poly1305);
//! - a record: `u32` little-endian plaintext length (1 to [`MAX_RECORD`]),
//!   the ciphertext, the 16-byte tag; the nonce is the IV XOR the record's
//!   sequence number in that direction (from 0, as TLS 1.3 makes its
//!   nonces, RFC 8446 §5.3), the additional data is the 4-byte length;
//! - a message: a record of 4 bytes holding the message length (`u32`
//!   little-endian, capped), then records carrying exactly that many bytes.
//!   Where a sender cuts the records is its choice: a blob answer is cut at
//!   its leaves, so that each leaf record is read into place.
//!
//! A record that does not open (a flipped bit, a record replayed, dropped or
//! reordered) ends the lane; so does any length over its cap. A direction's
//! key seals at most [`KEY_LIMIT`] bytes; the client opens a new lane, with
//! new keys, well before that ([`ROLLOVER`]).

use std::io::{self, IoSlice, IoSliceMut};

use aws_lc_rs::aead::{
    AES_128_GCM, AES_256_GCM, Aad, Algorithm, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey,
};
use cnode_types::{Scatter, Scattered};
use rustls::CipherSuite;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The exporter label of lane keys.
pub(crate) const LABEL: &[u8] = b"EXPORTER-cnode-lane/2";
/// The largest record's plaintext.
pub(crate) const MAX_RECORD: usize = 64 * 1024;
/// An AEAD tag.
const TAG: usize = 16;
/// The most bytes one direction's key seals (AES-GCM's margin in TLS 1.3
/// is ~2^38 bytes of 16 KiB records; this stays well inside it).
pub(crate) const KEY_LIMIT: u64 = 1 << 36;
/// After receiving this many bytes a client ends the lane (no new requests;
/// the next one opens a new lane), so that a server never reaches
/// [`KEY_LIMIT`].
pub(crate) const ROLLOVER: u64 = 1 << 35;
/// How many bytes past the one being filled a read may take into the
/// staging buffer (a tag, the next length, a few proof records): what ends
/// up there is copied once, so it is kept small.
const STAGE: usize = 512;
/// Most buffers one `writev` is given (Linux's `IOV_MAX` is 1024).
const IOV_BATCH: usize = 512;

/// An AEAD nonce (and IV).
const NONCE: usize = 12;

/// One direction's key, IV and record counter.
struct Key {
    key: LessSafeKey,
    iv: [u8; NONCE],
    seq: u64,
    bytes: u64,
}

impl Key {
    /// From key material: the AEAD's key, then the IV.
    fn new(alg: &'static Algorithm, material: &[u8]) -> io::Result<Self> {
        let bad = || io::Error::other("bad lane key");
        let (secret, iv) = material.split_at(alg.key_len());
        let key = UnboundKey::new(alg, secret).map_err(|_| bad())?;
        Ok(Self {
            key: LessSafeKey::new(key),
            iv: iv.try_into().map_err(|_| bad())?,
            seq: 0,
            bytes: 0,
        })
    }

    /// The next record's nonce; counts its bytes against [`KEY_LIMIT`].
    fn next(&mut self, len: usize) -> io::Result<Nonce> {
        self.bytes += len as u64;
        if self.bytes > KEY_LIMIT {
            return Err(io::Error::other("lane key used up"));
        }
        let mut n = self.iv;
        for (b, s) in n[NONCE - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        Ok(Nonce::assume_unique_for_key(n))
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// The AEAD of a TLS 1.3 suite.
fn algorithm(suite: CipherSuite) -> Option<&'static Algorithm> {
    match suite {
        CipherSuite::TLS13_AES_128_GCM_SHA256 => Some(&AES_128_GCM),
        CipherSuite::TLS13_AES_256_GCM_SHA384 => Some(&AES_256_GCM),
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => Some(&CHACHA20_POLY1305),
        _ => None,
    }
}

/// A lane's two record keys, from its finished TLS connection: (ours to
/// seal, theirs to open).
fn keys(conn: &rustls::Connection, client: bool) -> io::Result<(Key, Key)> {
    let suite = conn
        .negotiated_cipher_suite()
        .ok_or_else(|| io::Error::other("TLS not finished"))?;
    let alg = algorithm(suite.suite())
        .ok_or_else(|| io::Error::other(format!("no lane records for {:?}", suite.suite())))?;
    let export = |context: &[u8]| -> io::Result<Key> {
        let mut material = [0u8; 32 + NONCE];
        let material = &mut material[..alg.key_len() + NONCE];
        conn.export_keying_material(&mut *material, LABEL, Some(context))
            .map_err(io::Error::other)?;
        Key::new(alg, material)
    };
    let (c2s, s2c) = (export(b"client to server")?, export(b"server to client")?);
    Ok(if client { (c2s, s2c) } else { (s2c, c2s) })
}

/// The two ends of a sealed lane over `sock`, after a TLS handshake whose
/// state is `conn`.
pub(crate) fn split(
    sock: tokio::net::TcpStream,
    conn: &rustls::Connection,
    client: bool,
) -> io::Result<(SealedReader, SealedWriter)> {
    let (seal, open) = keys(conn, client)?;
    Ok(ends(sock, seal, open))
}

fn ends(sock: tokio::net::TcpStream, seal: Key, open: Key) -> (SealedReader, SealedWriter) {
    let (rd, wr) = sock.into_split();
    (
        SealedReader {
            sock: rd,
            key: open,
            stage: Box::new([0; STAGE]),
            pos: 0,
            len: 0,
        },
        SealedWriter {
            sock: wr,
            key: seal,
        },
    )
}

/// The receiving end of a sealed lane.
pub(crate) struct SealedReader {
    sock: OwnedReadHalf,
    key: Key,
    /// Bytes read past what was asked for, `pos..len`.
    stage: Box<[u8; STAGE]>,
    pos: usize,
    len: usize,
}

impl SealedReader {
    /// Bytes this lane has received so far (plaintext).
    pub(crate) fn received(&self) -> u64 {
        self.key.bytes
    }

    /// The AEAD its records use.
    #[cfg(test)]
    pub(crate) fn aead(&self) -> &'static Algorithm {
        self.key.key.algorithm()
    }

    /// Fills `dst`: from the staging buffer first, then from the socket,
    /// straight into `dst`, with at most [`STAGE`] bytes more into the
    /// staging buffer in the same system call.
    async fn read_exact_into(&mut self, dst: &mut [u8]) -> io::Result<()> {
        let n = dst.len().min(self.len - self.pos);
        dst[..n].copy_from_slice(&self.stage[self.pos..self.pos + n]);
        self.pos += n;
        let mut filled = n;
        while filled < dst.len() {
            // The staging buffer is empty here: everything in it went to dst.
            self.sock.readable().await?;
            let rest = dst.len() - filled;
            let mut bufs = [
                IoSliceMut::new(&mut dst[filled..]),
                IoSliceMut::new(&mut self.stage[..]),
            ];
            match self.sock.try_read_vectored(&mut bufs) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(got) if got <= rest => filled += got,
                Ok(got) => {
                    filled = dst.len();
                    (self.pos, self.len) = (0, got - rest);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next record's plaintext length, checked against `max`.
    async fn record_len(&mut self, max: usize) -> io::Result<[u8; 4]> {
        let mut hdr = [0u8; 4];
        self.read_exact_into(&mut hdr).await?;
        let len = u32::from_le_bytes(hdr) as usize;
        if len == 0 || len > max.min(MAX_RECORD) {
            return Err(invalid(format!(
                "lane record of {len} bytes (at most {} here)",
                max.min(MAX_RECORD)
            )));
        }
        Ok(hdr)
    }

    /// Reads the record with header `hdr` into `dst` (its length) and opens
    /// it there.
    async fn open_into(&mut self, hdr: [u8; 4], dst: &mut [u8]) -> io::Result<()> {
        self.read_exact_into(dst).await?;
        let mut tag = [0u8; TAG];
        self.read_exact_into(&mut tag).await?;
        let nonce = self.key.next(dst.len())?;
        self.key
            .key
            .open_in_place_separate_tag(nonce, Aad::from(hdr), &tag, dst)
            .map_err(|_| invalid("lane record does not open (damaged, replayed or reordered)"))?;
        Ok(())
    }

    /// The next message's length, at most `max`.
    async fn message_len(&mut self, max: usize) -> io::Result<usize> {
        let hdr = self.record_len(4).await?;
        if u32::from_le_bytes(hdr) != 4 {
            return Err(invalid("lane message does not start with its length"));
        }
        let mut len = [0u8; 4];
        self.open_into(hdr, &mut len).await?;
        let len = u32::from_le_bytes(len) as usize;
        if len > max {
            return Err(invalid(format!(
                "message of {len} bytes is over the {max}-byte limit"
            )));
        }
        Ok(len)
    }

    /// Reads one message of at most `max` bytes: whole, or by `plan` (see
    /// [`Scatter`]) if it has the planned length. The plan's runs are read
    /// straight into its buffer when a record lies inside them (as a blob
    /// answer's leaves do), and copied there otherwise.
    pub(crate) async fn read_message(
        &mut self,
        max: usize,
        plan: Option<Scatter>,
    ) -> io::Result<Scattered> {
        let len = self.message_len(max).await?;
        let Some(mut plan) = plan.filter(|p| p.frame_len == len && p.is_valid()) else {
            let mut whole = Vec::with_capacity(len);
            while whole.len() < len {
                let hdr = self.record_len(len - whole.len()).await?;
                let at = whole.len();
                // Zeroed a record at a time, just before it is filled: the
                // memory is still in the cache when the bytes land.
                whole.resize(at + u32::from_le_bytes(hdr) as usize, 0);
                self.open_into(hdr, &mut whole[at..]).await?;
            }
            return Ok(Scattered::Whole(whole));
        };
        let spans = Spans::of(&plan);
        let mut head = Vec::with_capacity(len - plan.tail_len());
        let mut scratch = Vec::new();
        let mut pos = 0usize;
        while pos < len {
            let hdr = self.record_len(len - pos).await?;
            let n = u32::from_le_bytes(hdr) as usize;
            match spans.place(pos, n) {
                Place::Tail(at) => self.open_into(hdr, &mut plan.tail[at..at + n]).await?,
                Place::Head => {
                    let at = head.len();
                    head.resize(at + n, 0);
                    self.open_into(hdr, &mut head[at..]).await?;
                }
                Place::Both => {
                    scratch.resize(n, 0);
                    self.open_into(hdr, &mut scratch).await?;
                    spans.deliver(pos, &scratch, &mut head, &mut plan.tail);
                }
            }
            pos += n;
        }
        Ok(Scattered::Split(head, plan))
    }
}

/// A plan's runs with adjacent ones merged: (offset in the message, length,
/// offset in the plan's buffer).
struct Spans(Vec<(usize, usize, usize)>);

/// Where a record of a planned message goes.
enum Place {
    /// Wholly inside a span: into the plan's buffer from there.
    Tail(usize),
    /// Wholly outside the spans: onto the head.
    Head,
    /// Partly each.
    Both,
}

impl Spans {
    fn of(plan: &Scatter) -> Self {
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        let mut to = plan.at;
        for &(off, n) in &plan.runs {
            match spans.last_mut() {
                Some(last) if last.0 + last.1 == off => last.1 += n,
                _ => spans.push((off, n, to)),
            }
            to += n;
        }
        Self(spans)
    }

    /// The first span that ends after `pos`.
    fn from(&self, pos: usize) -> usize {
        self.0.partition_point(|s| s.0 + s.1 <= pos)
    }

    fn place(&self, pos: usize, n: usize) -> Place {
        match self.0.get(self.from(pos)) {
            Some(&(off, len, to)) if off <= pos && pos + n <= off + len => {
                Place::Tail(to + pos - off)
            }
            Some(&(off, ..)) if pos + n <= off => Place::Head,
            None => Place::Head,
            Some(_) => Place::Both,
        }
    }

    /// Puts `bytes`, which lie at `pos` in the message, where they belong.
    fn deliver(&self, mut pos: usize, mut bytes: &[u8], head: &mut Vec<u8>, tail: &mut [u8]) {
        let mut i = self.from(pos);
        while !bytes.is_empty() {
            let n = match self.0.get(i) {
                Some(&(off, len, to)) if off <= pos => {
                    let n = bytes.len().min(off + len - pos);
                    tail[to + pos - off..][..n].copy_from_slice(&bytes[..n]);
                    i += 1;
                    n
                }
                Some(&(off, ..)) => {
                    let n = bytes.len().min(off - pos);
                    head.extend_from_slice(&bytes[..n]);
                    n
                }
                None => {
                    head.extend_from_slice(bytes);
                    bytes.len()
                }
            };
            (pos, bytes) = (pos + n, &bytes[n..]);
        }
    }
}

/// The sending end of a sealed lane.
pub(crate) struct SealedWriter {
    sock: OwnedWriteHalf,
    key: Key,
}

impl SealedWriter {
    /// Seals `msg` in place and sends it, cut into records at the edges of
    /// `runs` ((offset, length) parts a reader may want apart, in order; not
    /// fitting `msg`, they are ignored) and at [`MAX_RECORD`].
    pub(crate) async fn write_message(
        &mut self,
        msg: &mut [u8],
        runs: &[(usize, usize)],
    ) -> io::Result<()> {
        let len = u32::try_from(msg.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "message too large"))?;
        let cuts = records(msg.len(), runs);
        // Around the records: [len hdr, len ct, len tag, hdr 0] then
        // [tag i, hdr i+1] between records, and the last tag.
        let mut meta = Vec::with_capacity(28 + cuts.len() * (TAG + 4));
        let mut first = len.to_le_bytes();
        let nonce = self.key.next(4)?;
        let tag = self
            .key
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(4u32.to_le_bytes()), &mut first)
            .map_err(|_| io::Error::other("cannot seal"))?;
        meta.extend_from_slice(&4u32.to_le_bytes());
        meta.extend_from_slice(&first);
        meta.extend_from_slice(tag.as_ref());
        let mut rest = &mut msg[..];
        let mut parts = Vec::with_capacity(cuts.len());
        for &n in &cuts {
            let (record, more) = std::mem::take(&mut rest).split_at_mut(n);
            rest = more;
            let hdr = (n as u32).to_le_bytes();
            meta.extend_from_slice(&hdr);
            let nonce = self.key.next(n)?;
            let tag = self
                .key
                .key
                .seal_in_place_separate_tag(nonce, Aad::from(hdr), record)
                .map_err(|_| io::Error::other("cannot seal"))?;
            meta.extend_from_slice(tag.as_ref());
            parts.push(&*record);
        }
        // meta: the length record (24 bytes), then each record's header
        // and tag; what lies between two records' ciphertexts is one slice.
        let mut slices = Vec::with_capacity(2 + 2 * parts.len());
        slices.push(IoSlice::new(&meta[..meta.len().min(28)]));
        for (i, p) in parts.into_iter().enumerate() {
            slices.push(IoSlice::new(p));
            let at = 28 + i * (TAG + 4);
            slices.push(IoSlice::new(&meta[at..meta.len().min(at + TAG + 4)]));
        }
        self.write_all_vectored(slices).await
    }

    async fn write_all_vectored(&mut self, mut slices: Vec<IoSlice<'_>>) -> io::Result<()> {
        let mut from = &mut slices[..];
        while !from.is_empty() {
            self.sock.writable().await?;
            let batch = from.len().min(IOV_BATCH);
            match self.sock.try_write_vectored(&from[..batch]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut from, n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The record lengths for a message of `len` bytes: cut where a run (with
/// adjacent runs merged) begins or ends, and at [`MAX_RECORD`].
fn records(len: usize, runs: &[(usize, usize)]) -> Vec<usize> {
    let mut edges = Vec::with_capacity(runs.len() * 2 + 1);
    let mut end = 0usize;
    for &(off, n) in runs {
        if off < end || off.checked_add(n).is_none_or(|e| e > len) {
            edges.clear();
            break;
        }
        if edges.last() == Some(&off) {
            edges.pop(); // adjacent to the run before: one record
        } else {
            edges.push(off);
        }
        end = off + n;
        edges.push(end);
    }
    edges.push(len);
    let mut out = Vec::new();
    let mut at = 0;
    for e in edges {
        while at < e {
            let n = (e - at).min(MAX_RECORD);
            out.push(n);
            at += n;
        }
    }
    out
}

#[cfg(test)]
mod tests;
