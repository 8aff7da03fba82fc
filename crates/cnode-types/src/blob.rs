//! Blob ids: a BLAKE3 root hash, shown as a CIDv1 (raw codec, blake3
//! multihash, base32) so the ids look familiar to IPFS users: `bafkr4…`.

use std::{fmt, str::FromStr};

use cid::{Cid, multihash::Multihash};
use serde::{Deserialize, Serialize};

/// The multicodec of raw bytes.
const RAW_CODEC: u64 = 0x55;
/// The multihash code of BLAKE3 (32-byte digest).
const BLAKE3_CODE: u64 = 0x1e;

/// A blob's BLAKE3 root hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash([u8; 32]);

/// Why a string is not a blob id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobHashError {
    /// Not a CID and not 64 hex digits.
    #[error("{0:?} is not a blob id (expected a CID like bafkr4… or 64 hex digits)")]
    Syntax(String),
    /// A CID, but not a raw BLAKE3 one.
    #[error("CID {0} is not a raw BLAKE3 blob id (codec 0x55, multihash 0x1e)")]
    WrongKind(String),
}

impl BlobHash {
    /// The hash from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash of `data` (for small, in-memory data).
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Lower-case hex (file names, logs).
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The CIDv1 form, `bafkr4…`.
    pub fn to_cid(&self) -> String {
        match Multihash::<64>::wrap(BLAKE3_CODE, &self.0) {
            Ok(mh) => Cid::new_v1(RAW_CODEC, mh).to_string(),
            // A 32-byte digest always fits a 64-byte multihash.
            Err(_) => self.to_hex(),
        }
    }

    /// The DHT key under which providers of this blob are announced.
    pub fn provider_key(&self) -> Vec<u8> {
        let mut k = b"cnode/blob/".to_vec();
        k.extend_from_slice(&self.0);
        k
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(h: blake3::Hash) -> Self {
        Self(*h.as_bytes())
    }
}

impl From<BlobHash> for blake3::Hash {
    fn from(h: BlobHash) -> Self {
        blake3::Hash::from_bytes(h.0)
    }
}

impl FromStr for BlobHash {
    type Err = BlobHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut out = [0u8; 32];
            for (i, o) in out.iter_mut().enumerate() {
                *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                    .map_err(|_| BlobHashError::Syntax(s.to_owned()))?;
            }
            return Ok(Self(out));
        }
        let cid = Cid::try_from(s).map_err(|_| BlobHashError::Syntax(s.to_owned()))?;
        let mh = cid.hash();
        if cid.codec() != RAW_CODEC || mh.code() != BLAKE3_CODE || mh.digest().len() != 32 {
            return Err(BlobHashError::WrongKind(s.to_owned()));
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(mh.digest());
        Ok(Self(out))
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cid())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.to_cid())
    }
}

impl Serialize for BlobHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_cid())
    }
}

impl<'de> Deserialize<'de> for BlobHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_round_trip_and_vector() {
        // Test vector: the BLAKE3 hash of the empty input.
        let h = BlobHash::of(b"");
        assert_eq!(
            h.to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let cid = h.to_cid();
        assert!(cid.starts_with("bafkr4"), "{cid}");
        assert_eq!(cid.parse::<BlobHash>().unwrap(), h);
        assert_eq!(h.to_hex().parse::<BlobHash>().unwrap(), h);
        assert_eq!(
            serde_json::from_str::<BlobHash>(&serde_json::to_string(&h).unwrap()).unwrap(),
            h
        );
    }

    #[test]
    fn rejects_other_cids_and_garbage() {
        assert!(matches!(
            "hello".parse::<BlobHash>(),
            Err(BlobHashError::Syntax(_))
        ));
        // A CIDv1 with the dag-pb codec and sha2-256 (an IPFS directory).
        let other = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        assert!(matches!(
            other.parse::<BlobHash>(),
            Err(BlobHashError::WrongKind(_))
        ));
    }
}
