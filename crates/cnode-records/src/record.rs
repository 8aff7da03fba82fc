//! The record format and its canonical encoding.
//!
//! A record is encoded as deterministic CBOR following the DAG-CBOR rules
//! (map keys sorted by length, then bytewise; shortest integer forms; floats
//! as 64-bit; no indefinite lengths; no tags). The struct fields below are
//! declared in that key order so the encoder's output is canonical by
//! construction, and [`Record::decode`] refuses any input that does not
//! re-encode to the very same bytes, so one record has exactly one encoding
//! and therefore one id.
//!
//! What is signed is the record without its proof ([`UnsignedRecord`]),
//! prefixed by a domain-separation string, so a signature over a record can
//! never be replayed as a signature over anything else.

use std::fmt;
use std::str::FromStr;

use cnode_identity::{Did, UserKey};
use serde::{Deserialize, Serialize};

/// Domain separation for record signatures (proof version 1).
pub const SIGNING_DOMAIN_V1: &[u8] = b"cnode/record/v1\0";

/// The largest encoded record accepted from anyone (body ≤ 64 KiB plus the
/// envelope). Checked before decoding.
pub const MAX_ENCODED_LEN: usize = 72 * 1024;

/// A record's id: `BLAKE3(canonical encoding of the signed record)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId(pub [u8; 32]);

impl RecordId {
    /// The id of a record from its canonical encoding (what
    /// [`Record::encode`] gives, or bytes [`Record::decode`] accepted) —
    /// saves encoding it again.
    pub fn of_encoded(canonical: &[u8]) -> Self {
        Self(*blake3::hash(canonical).as_bytes())
    }

    /// The id as lowercase hex (64 characters), as shown to users.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", &self.to_hex()[..12])
    }
}

/// Why a string is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a record id is 64 hex characters")]
pub struct RecordIdError;

impl FromStr for RecordId {
    type Err = RecordIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| RecordIdError)?;
        Ok(Self(out))
    }
}

/// The signature(s) that make a record the author's. Versioned so that the
/// joint passkey + device-key grants of the identity design can be added as a
/// new version without breaking records already stored.
///
/// Version 1: `sig` is the author's ed25519 signature of
/// [`SIGNING_DOMAIN_V1`] ‖ canonical(`UnsignedRecord`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    // Field order = DAG-CBOR key order ("v" < "sig").
    /// The proof version.
    pub v: u32,
    /// The signature bytes.
    #[serde(with = "serde_bytes_compat")]
    pub sig: Vec<u8>,
}

impl fmt::Debug for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proof(v{}, {} bytes)", self.v, self.sig.len())
    }
}

/// A record before it is signed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsignedRecord {
    // Field order = DAG-CBOR key order: by length, then bytewise.
    /// Author-chosen name; `(author, collection, key)` names the slot.
    pub key: String,
    /// Structured data (JSON data model), at most 64 KiB encoded.
    pub body: serde_json::Value,
    /// The author's identity.
    pub author: Did,
    /// Precise geohash (≤ 7 characters); its first 4 characters are the region.
    pub region: String,
    /// Tombstone: this record deletes its slot.
    pub deleted: bool,
    /// Reverse-domain collection name, e.g. `org.cnode.events`.
    pub collection: String,
    /// The author's clock when the record was made, ms since the Unix epoch.
    pub created_at: u64,
    /// When the record stops existing everywhere, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// A signed record as it travels and is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    // Field order = DAG-CBOR key order: by length, then bytewise.
    /// See [`UnsignedRecord::key`].
    pub key: String,
    /// See [`UnsignedRecord::body`].
    pub body: serde_json::Value,
    /// The author's signature(s).
    pub proof: Proof,
    /// See [`UnsignedRecord::author`].
    pub author: Did,
    /// See [`UnsignedRecord::region`].
    pub region: String,
    /// See [`UnsignedRecord::deleted`].
    pub deleted: bool,
    /// See [`UnsignedRecord::collection`].
    pub collection: String,
    /// See [`UnsignedRecord::created_at`].
    pub created_at: u64,
    /// See [`UnsignedRecord::expires_at`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_ENCODED_LEN`].
    #[error("record is {0} bytes, the limit is {MAX_ENCODED_LEN}")]
    TooLarge(usize),
    /// Not CBOR of the record shape.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// Valid CBOR, but not the one canonical encoding of its content.
    #[error("record is not canonically encoded (DAG-CBOR rules)")]
    NotCanonical,
}

impl UnsignedRecord {
    /// The canonical encoding of the unsigned record.
    pub fn encode(&self) -> Vec<u8> {
        encode_canonical(self)
    }

    /// The bytes the author signs (proof version 1).
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = SIGNING_DOMAIN_V1.to_vec();
        out.extend_from_slice(&self.encode());
        out
    }

    /// Signs the record with `key` (proof version 1). The caller sets
    /// `author` to `key.did()`; a mismatch yields a record that fails
    /// verification.
    pub fn sign(self, key: &UserKey) -> Record {
        let sig = key.sign(&self.signing_bytes()).to_vec();
        let UnsignedRecord {
            key,
            body,
            author,
            region,
            deleted,
            collection,
            created_at,
            expires_at,
        } = self;
        Record {
            key,
            body,
            proof: Proof { v: 1, sig },
            author,
            region,
            deleted,
            collection,
            created_at,
            expires_at,
        }
    }
}

impl Record {
    /// The record without its proof: what the proof signs.
    pub fn unsigned(&self) -> UnsignedRecord {
        UnsignedRecord {
            key: self.key.clone(),
            body: self.body.clone(),
            author: self.author,
            region: self.region.clone(),
            deleted: self.deleted,
            collection: self.collection.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
    }

    /// The canonical encoding of the signed record.
    pub fn encode(&self) -> Vec<u8> {
        encode_canonical(self)
    }

    /// The record id: `BLAKE3(self.encode())`.
    pub fn id(&self) -> RecordId {
        RecordId::of_encoded(&self.encode())
    }

    /// Decodes a record, refusing oversized, malformed and non-canonical
    /// input. Does not check the signature or any rule: see validation.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(DecodeError::TooLarge(bytes.len()));
        }
        let record: Record = serde_ipld_dagcbor::from_slice(bytes)
            .map_err(|e| DecodeError::Malformed(short(&e.to_string())))?;
        if record.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(record)
    }

    /// Checks the proof: version 1, the author's signature over
    /// [`UnsignedRecord::signing_bytes`].
    pub fn verify_proof(&self) -> Result<(), ProofError> {
        match self.proof.v {
            1 => self
                .author
                .verify(&self.unsigned().signing_bytes(), &self.proof.sig)
                .map_err(|_| ProofError::BadSignature),
            v => Err(ProofError::UnsupportedVersion(v)),
        }
    }

    /// The slot this record writes: `(author, collection, key)`.
    pub fn slot(&self) -> (Did, &str, &str) {
        (self.author, &self.collection, &self.key)
    }

    /// The 4-character region prefix of the record's geohash, if it has one.
    pub fn region_prefix(&self) -> Option<&str> {
        self.region.get(..4)
    }
}

/// Why a record's proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// A proof version this node does not know.
    #[error("unsupported proof version {0}")]
    UnsupportedVersion(u32),
    /// The signature does not match the author and content.
    #[error("bad signature")]
    BadSignature,
}

fn encode_canonical<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising plain data into a Vec cannot fail: the only fallible parts
    // are I/O (none) and unsupported types (none in our shapes).
    serde_ipld_dagcbor::to_vec(value).unwrap_or_default()
}

fn short(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Serialises `Vec<u8>` as a CBOR byte string (serde's default is an array
/// of integers).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &UserKey) -> UnsignedRecord {
        UnsignedRecord {
            key: "cafe-1".into(),
            body: serde_json::json!({"title": "ร้านกาแฟ Nimman", "zeta": 1, "a": [1.5, "x"]}),
            author: key.did(),
            region: "w5q6u8j".into(),
            deleted: false,
            collection: "org.cnode.notices".into(),
            created_at: 1_764_000_000_000,
            expires_at: None,
        }
    }

    #[test]
    fn sign_encode_decode_verify_round_trip() {
        let key = UserKey::from_seed(&[7; 32]);
        let record = sample(&key).sign(&key);
        let bytes = record.encode();
        let back = Record::decode(&bytes).expect("decodes");
        assert_eq!(back, record);
        assert_eq!(back.id(), record.id());
        assert_eq!(back.verify_proof(), Ok(()));
        assert_eq!(back.region_prefix(), Some("w5q6"));
    }

    #[test]
    fn map_keys_are_in_dag_cbor_order() {
        let key = UserKey::from_seed(&[7; 32]);
        let bytes = sample(&key).sign(&key).encode();
        // Top-level map of 8 entries, first key "key" (shortest).
        assert_eq!(bytes[0], 0xa8);
        assert_eq!(&bytes[1..5], b"\x63key");
        // Body keys: "a" < "zeta" < "title" by length first, then bytes.
        let pos = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
        let (a, zeta, title) = (pos(b"\x61a"), pos(b"\x64zeta"), pos(b"\x65title"));
        assert!(a < zeta && zeta < title, "{a:?} {zeta:?} {title:?}");
    }

    #[test]
    fn tampering_breaks_the_proof() {
        let key = UserKey::from_seed(&[7; 32]);
        let mut record = sample(&key).sign(&key);
        record.created_at += 1;
        assert_eq!(record.verify_proof(), Err(ProofError::BadSignature));
        let mut record = sample(&key).sign(&key);
        record.proof.v = 2;
        assert_eq!(
            record.verify_proof(),
            Err(ProofError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn non_canonical_and_garbage_input_is_refused() {
        let key = UserKey::from_seed(&[7; 32]);
        let bytes = sample(&key).sign(&key).encode();
        assert!(matches!(
            Record::decode(&bytes[..bytes.len() - 1]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            Record::decode(b"\xff\x00garbage"),
            Err(DecodeError::Malformed(_))
        ));
        assert_eq!(
            Record::decode(&vec![0; MAX_ENCODED_LEN + 1]),
            Err(DecodeError::TooLarge(MAX_ENCODED_LEN + 1))
        );
        // Trailing bytes after a valid record.
        let mut padded = bytes.clone();
        padded.push(0x00);
        assert!(Record::decode(&padded).is_err());
        // The same content with an integer in a longer-than-needed form
        // ("zeta": 1 as 0x18 0x01): not the canonical encoding.
        let at = bytes
            .windows(6)
            .position(|w| w == b"\x64zeta\x01")
            .expect("zeta entry");
        let mut long_int = bytes[..at + 5].to_vec();
        long_int.push(0x18);
        long_int.extend_from_slice(&bytes[at + 5..]);
        assert!(
            matches!(Record::decode(&long_int), Err(DecodeError::Malformed(e)) if e.contains("NonMinimal"))
        );
        // 1.5 as a 32-bit float (DAG-CBOR wants every float as 64-bit).
        let at = bytes
            .windows(9)
            .position(|w| w == b"\xfb\x3f\xf8\0\0\0\0\0\0")
            .expect("1.5 as f64");
        let mut short_float = bytes[..at].to_vec();
        short_float.extend_from_slice(b"\xfa\x3f\xc0\0\0");
        short_float.extend_from_slice(&bytes[at + 9..]);
        assert!(matches!(
            Record::decode(&short_float),
            Err(DecodeError::NotCanonical | DecodeError::Malformed(_))
        ));
    }
}
