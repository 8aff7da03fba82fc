//! The piece protocol `/cnode/blobs/1`: messages and their binary encoding.
//!
//! Every message starts with a version byte (1) and a tag byte; integers are
//! little-endian. Decoders check every length against the fixed caps below and
//! never allocate more than the message they were given. The exact layout and
//! test vectors are in `docs/protocol.md`; `tests` below reads the vectors.

use bao_tree::{ChunkNum, ChunkRanges};
use cnode_types::BlobHash;

/// The libp2p protocol name.
pub const PROTOCOL: &str = "/cnode/blobs/1";
/// The wire version this code speaks.
pub const VERSION: u8 = 1;
/// BLAKE3 chunk: 1 KiB.
pub const CHUNK: u64 = 1024;
/// Chunk groups of 16 chunks (16 KiB): the outboard's granularity.
pub const CHUNK_GROUP_LOG: u8 = 4;
/// A piece: the unit of scheduling and of the have-bitfield (1 MiB).
pub const PIECE_SIZE: u64 = 1024 * 1024;
/// Chunks per piece.
pub const PIECE_CHUNKS: u64 = PIECE_SIZE / CHUNK;
/// The largest request accepted.
pub const MAX_REQUEST: usize = 4096;
/// The most ranges in one `Get`.
pub const MAX_RANGES: usize = 64;
/// The most data one `Get` may ask for (then proofs are added).
pub const MAX_GET_BYTES: u64 = 4 * PIECE_SIZE;
/// The largest response accepted: the data plus its proof and headers.
pub const MAX_RESPONSE: usize = (MAX_GET_BYTES + MAX_GET_BYTES / 8 + 64 * 1024) as usize;
/// The largest blob this protocol will transfer (1 TiB).
pub const MAX_BLOB_SIZE: u64 = 1 << 40;

/// A request from a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Which pieces of `hash` do you have?
    Have {
        /// The blob.
        hash: BlobHash,
    },
    /// Send these chunk ranges of `hash`, with their BLAKE3 proofs.
    Get {
        /// The blob.
        hash: BlobHash,
        /// Half-open chunk ranges `[start, end)`, sorted and disjoint.
        ranges: Vec<(u64, u64)>,
    },
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The pieces we hold, one bit per piece (LSB first).
    Have {
        /// The blob's size in bytes.
        size: u64,
        /// Whether we have all of it.
        complete: bool,
        /// Piece bitfield, `ceil(pieces / 8)` bytes.
        bitfield: Vec<u8>,
    },
    /// The requested ranges, bao-encoded (parents and data, pre-order).
    Data {
        /// The blob's size in bytes (needed to shape the tree).
        size: u64,
        /// The encoding.
        encoded: Vec<u8>,
    },
    /// We do not have the blob.
    NotFound,
    /// We will not answer (busy, bad request, missing ranges).
    Error {
        /// A short reason.
        message: String,
    },
}

pub use cnode_types::wire::DecodeError;
use cnode_types::wire::Reader;

/// Bytes before the encoding in a `Data` response: version, tag, size.
pub const DATA_HEADER: usize = 10;

/// If `bytes` is a `Data` response, its blob size: the encoding then starts
/// at [`DATA_HEADER`], so a receiver can verify it in place without copying.
pub fn data_size(bytes: &[u8]) -> Option<u64> {
    if bytes.len() >= DATA_HEADER && bytes[0] == VERSION && bytes[1] == 1 {
        let mut sz = [0u8; 8];
        sz.copy_from_slice(&bytes[2..DATA_HEADER]);
        let size = u64::from_le_bytes(sz);
        (size <= MAX_BLOB_SIZE).then_some(size)
    } else {
        None
    }
}

/// Writes the size into a response started with [`Response::begin_data`].
pub fn finish_data(out: &mut [u8], size: u64) {
    if out.len() >= DATA_HEADER {
        out[2..DATA_HEADER].copy_from_slice(&size.to_le_bytes());
    }
}

/// Number of pieces of a blob of `size` bytes.
pub fn piece_count(size: u64) -> u64 {
    size.div_ceil(PIECE_SIZE)
}

/// The chunk range of piece `i` of a blob of `size` bytes.
pub fn piece_chunks(size: u64, i: u64) -> (u64, u64) {
    let chunks = size.div_ceil(CHUNK).max(1);
    let start = i * PIECE_CHUNKS;
    (start, ((i + 1) * PIECE_CHUNKS).min(chunks))
}

/// The byte range of piece `i`.
pub fn piece_bytes(size: u64, i: u64) -> (u64, u64) {
    (i * PIECE_SIZE, ((i + 1) * PIECE_SIZE).min(size))
}

/// Converts wire ranges to bao-tree's range set.
pub fn to_chunk_ranges(ranges: &[(u64, u64)]) -> ChunkRanges {
    let mut out = ChunkRanges::empty();
    for &(s, e) in ranges {
        out |= ChunkRanges::from(ChunkNum(s)..ChunkNum(e));
    }
    out
}

/// The blob hash that comes next.
fn hash(r: &mut Reader<'_>) -> Result<BlobHash, DecodeError> {
    r.array().map(BlobHash::from_bytes)
}

fn header(r: &mut Reader<'_>) -> Result<u8, DecodeError> {
    r.header(VERSION)
}

impl Request {
    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Request::Have { hash } => {
                out.push(0);
                out.extend_from_slice(hash.as_bytes());
            }
            Request::Get { hash, ranges } => {
                out.push(1);
                out.extend_from_slice(hash.as_bytes());
                out.extend_from_slice(&(ranges.len() as u16).to_le_bytes());
                for (s, e) in ranges {
                    out.extend_from_slice(&s.to_le_bytes());
                    out.extend_from_slice(&e.to_le_bytes());
                }
            }
        }
        out
    }

    /// Parses and validates a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_REQUEST {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        match header(&mut r)? {
            0 => {
                let hash = hash(&mut r)?;
                r.end()?;
                Ok(Request::Have { hash })
            }
            1 => {
                let hash = hash(&mut r)?;
                let n = r.u16()? as usize;
                if n == 0 || n > MAX_RANGES {
                    return Err(DecodeError::Invalid("range count"));
                }
                let mut ranges = Vec::with_capacity(n);
                let mut prev_end = 0u64;
                let mut total = 0u64;
                for i in 0..n {
                    let (s, e) = (r.u64()?, r.u64()?);
                    if s >= e || (i > 0 && s < prev_end) {
                        return Err(DecodeError::Invalid(
                            "ranges must be non-empty, sorted and disjoint",
                        ));
                    }
                    total = total.saturating_add(e - s);
                    prev_end = e;
                    ranges.push((s, e));
                }
                if total.saturating_mul(CHUNK) > MAX_GET_BYTES {
                    return Err(DecodeError::Invalid("asks for too much data at once"));
                }
                r.end()?;
                Ok(Request::Get { hash, ranges })
            }
            t => Err(DecodeError::Tag(t)),
        }
    }
}

impl Response {
    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        match self {
            Response::Have {
                size,
                complete,
                bitfield,
            } => {
                out.push(0);
                out.extend_from_slice(&size.to_le_bytes());
                out.push(u8::from(*complete));
                out.extend_from_slice(&(bitfield.len() as u32).to_le_bytes());
                out.extend_from_slice(bitfield);
            }
            Response::Data { size, encoded } => {
                out.reserve(8 + encoded.len());
                out.push(1);
                out.extend_from_slice(&size.to_le_bytes());
                out.extend_from_slice(encoded);
            }
            Response::NotFound => out.push(2),
            Response::Error { message } => {
                out.push(3);
                let m = &message.as_bytes()[..message.len().min(1024)];
                out.extend_from_slice(&(m.len() as u16).to_le_bytes());
                out.extend_from_slice(m);
            }
        }
        out
    }

    /// Starts a `Data` response in place: the header with a zero size, to be
    /// followed by the encoding and finished with [`finish_data`].
    pub fn begin_data(capacity: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(DATA_HEADER + capacity);
        out.extend_from_slice(&[VERSION, 1]);
        out.extend_from_slice(&[0u8; 8]);
        out
    }

    /// Parses and validates a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RESPONSE {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        match header(&mut r)? {
            0 => {
                let size = r.u64()?;
                if size > MAX_BLOB_SIZE {
                    return Err(DecodeError::Invalid("blob too large"));
                }
                let complete = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("complete flag")),
                };
                let n = r.u32()? as usize;
                if n as u64 != piece_count(size).div_ceil(8) {
                    return Err(DecodeError::Invalid("bitfield length does not match size"));
                }
                let bitfield = r.take(n)?.to_vec();
                r.end()?;
                Ok(Response::Have {
                    size,
                    complete,
                    bitfield,
                })
            }
            1 => {
                let size = r.u64()?;
                if size > MAX_BLOB_SIZE {
                    return Err(DecodeError::Invalid("blob too large"));
                }
                Ok(Response::Data {
                    size,
                    encoded: r.rest().to_vec(),
                })
            }
            2 => {
                r.end()?;
                Ok(Response::NotFound)
            }
            3 => {
                let n = r.u16()? as usize;
                if n > 1024 {
                    return Err(DecodeError::Invalid("error message too long"));
                }
                let message = String::from_utf8(r.take(n)?.to_vec())
                    .map_err(|_| DecodeError::Invalid("error message is not UTF-8"))?;
                r.end()?;
                Ok(Response::Error { message })
            }
            t => Err(DecodeError::Tag(t)),
        }
    }
}

/// Whether bit `i` is set in a piece bitfield.
pub fn has_piece(bitfield: &[u8], i: u64) -> bool {
    bitfield
        .get((i / 8) as usize)
        .is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Sets bit `i` in a piece bitfield.
pub fn set_piece(bitfield: &mut [u8], i: u64) {
    if let Some(b) = bitfield.get_mut((i / 8) as usize) {
        *b |= 1 << (i % 8);
    }
}

/// The fuzz property: decoding arbitrary bytes never panics, and a message
/// that decodes re-encodes to exactly the same bytes (one encoding per message).
pub fn fuzz_check(data: &[u8]) {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(r.encode(), data, "request re-encodes differently");
    }
    if let Ok(r) = Response::decode(data) {
        assert_eq!(r.encode(), data, "response re-encodes differently");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> BlobHash {
        BlobHash::from_bytes([0xab; 32])
    }

    #[test]
    fn round_trips() {
        let reqs = [
            Request::Have { hash: hash() },
            Request::Get {
                hash: hash(),
                ranges: vec![(0, 1024), (2048, 3072)],
            },
        ];
        for r in reqs {
            assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        }
        let resps = [
            Response::Have {
                size: 3 * PIECE_SIZE + 1,
                complete: false,
                bitfield: vec![0b0101],
            },
            Response::Data {
                size: 5,
                encoded: vec![1, 2, 3],
            },
            Response::NotFound,
            Response::Error {
                message: "busy".into(),
            },
        ];
        for r in resps {
            assert_eq!(Response::decode(&r.encode()).unwrap(), r);
        }
    }

    #[test]
    fn rejects_malformed() {
        let good = Request::Get {
            hash: hash(),
            ranges: vec![(0, 16)],
        }
        .encode();
        // Every truncation fails cleanly.
        for n in 0..good.len() {
            assert!(Request::decode(&good[..n]).is_err(), "prefix {n}");
        }
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Request::decode(&v2), Err(DecodeError::Version(2)));
        let mut tag = good.clone();
        tag[1] = 9;
        assert_eq!(Request::decode(&tag), Err(DecodeError::Tag(9)));
        assert!(matches!(
            Request::decode(&vec![1u8; MAX_REQUEST + 1]),
            Err(DecodeError::Oversized(_))
        ));
        let unsorted = Request::Get {
            hash: hash(),
            ranges: vec![(10, 20), (0, 5)],
        };
        assert!(Request::decode(&unsorted.encode()).is_err());
        let too_much = Request::Get {
            hash: hash(),
            ranges: vec![(0, MAX_GET_BYTES / CHUNK + 1)],
        };
        assert!(Request::decode(&too_much.encode()).is_err());
        let mut trailing = good;
        trailing.push(0);
        assert!(Request::decode(&trailing).is_err());
        // A bitfield that does not match the size.
        let bad = Response::Have {
            size: 20 * PIECE_SIZE,
            complete: true,
            bitfield: vec![0xff],
        };
        assert!(Response::decode(&bad.encode()).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            fuzz_check(&data);
        }

        #[test]
        fn mutated_messages_never_panic(
            which in 0usize..4,
            flips in proptest::collection::vec((0usize..200, proptest::num::u8::ANY), 1..6),
            cut in 0usize..200,
        ) {
            let msgs = [
                Request::Have { hash: hash() }.encode(),
                Request::Get { hash: hash(), ranges: vec![(0, 16), (32, 1024)] }.encode(),
                Response::Have { size: 5 * PIECE_SIZE, complete: false, bitfield: vec![0b10101] }.encode(),
                Response::Error { message: "busy".into() }.encode(),
            ];
            let mut m = msgs[which].clone();
            for (i, b) in flips {
                let n = m.len();
                m[i % n] ^= b;
            }
            m.truncate(cut.max(1));
            fuzz_check(&m);
        }
    }

    #[test]
    fn data_built_in_place_matches_encode() {
        let data = Response::Data {
            size: 77,
            encoded: vec![9; 100],
        };
        let mut started = Response::begin_data(100);
        started.extend_from_slice(&[9; 100]);
        finish_data(&mut started, 77);
        assert_eq!(started, data.encode());
        assert_eq!(data_size(&started), Some(77));
        assert_eq!(Response::decode(&started).unwrap(), data);
        assert_eq!(data_size(&Response::NotFound.encode()), None);
        assert_eq!(data_size(&[1, 1, 0]), None);
    }

    #[test]
    fn pieces() {
        assert_eq!(piece_count(0), 0);
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(PIECE_SIZE), 1);
        assert_eq!(piece_count(PIECE_SIZE + 1), 2);
        assert_eq!(piece_chunks(PIECE_SIZE + 1, 1), (1024, 1025));
        assert_eq!(piece_bytes(PIECE_SIZE + 1, 1), (PIECE_SIZE, PIECE_SIZE + 1));
        let mut bf = vec![0u8; 2];
        set_piece(&mut bf, 9);
        assert!(has_piece(&bf, 9) && !has_piece(&bf, 8) && !has_piece(&bf, 100));
    }
}
