//! User identities for cnode.
//!
//! A user is named by a [`Did`] of the `did:key` method over an ed25519 public
//! key (`did:key:z6Mk…`). The matching [`UserKey`] signs the user's records.
//! Keys are kept in an encrypted keystore in the data directory (see
//! `keystore`). The joint passkey + TPM authority of the architecture (§7) is
//! a later proof version; this crate is its first form.

pub mod keystore;

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// The multicodec prefix of an ed25519 public key (`0xed`, varint-encoded).
const ED25519_PUB_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// Every `did:key` starts with this; `z` is the multibase prefix of base58btc.
const DID_KEY_PREFIX: &str = "did:key:z";

/// A user's decentralised identifier: `did:key` over an ed25519 public key.
///
/// The text form is computed once (base58 is quadratic in the key length and
/// records print their author on every encode).
#[derive(Clone, Copy)]
pub struct Did(VerifyingKey, DidText);

/// `did:key:z` + at most 48 base58 characters, kept next to the key.
#[derive(Clone, Copy)]
struct DidText {
    buf: [u8; 64],
    len: u8,
}

impl DidText {
    fn of(key: &VerifyingKey) -> Self {
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(&ED25519_PUB_MULTICODEC);
        bytes[2..].copy_from_slice(key.as_bytes());
        let mut buf = [0u8; 64];
        buf[..DID_KEY_PREFIX.len()].copy_from_slice(DID_KEY_PREFIX.as_bytes());
        // 34 bytes are at most 47 base58 characters: it always fits.
        let n = bs58::encode(bytes)
            .onto(&mut buf[DID_KEY_PREFIX.len()..])
            .unwrap_or(0);
        Self {
            buf,
            len: (DID_KEY_PREFIX.len() + n) as u8,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or("did:key:?")
    }
}

impl PartialEq for Did {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Did {}

impl std::hash::Hash for Did {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl Ord for Did {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.as_bytes().cmp(other.0.as_bytes())
    }
}

impl PartialOrd for Did {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a usable `did:key`, or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    /// Not of the form `did:key:z…`.
    #[error("not a did:key (expected did:key:z6Mk…)")]
    Prefix,
    /// The multibase payload is not base58btc.
    #[error("did:key payload is not base58btc")]
    Base58,
    /// The key is not an ed25519 public key.
    #[error("only ed25519 did:key identities are supported")]
    KeyType,
    /// The key bytes are not a valid ed25519 point.
    #[error("did:key holds an invalid ed25519 public key")]
    Key,
    /// The signature is malformed or does not match.
    #[error("bad signature")]
    Signature,
}

impl Did {
    fn from_key(key: VerifyingKey) -> Self {
        Self(key, DidText::of(&key))
    }

    /// The text form, `did:key:z6Mk…`.
    pub fn as_str(&self) -> &str {
        self.1.as_str()
    }

    /// The raw 32-byte ed25519 public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The DID of a raw 32-byte ed25519 public key.
    pub fn from_public_key_bytes(bytes: &[u8; 32]) -> Result<Self, DidError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self::from_key)
            .map_err(|_| DidError::Key)
    }

    /// Checks that `signature` (64 bytes) is this identity's signature of
    /// `message`. Strict verification: no malleable or small-order signatures.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), DidError> {
        let signature = Signature::from_slice(signature).map_err(|_| DidError::Signature)?;
        self.0
            .verify_strict(message, &signature)
            .map_err(|_| DidError::Signature)
    }
}

impl fmt::Display for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Did {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Did({self})")
    }
}

impl FromStr for Did {
    type Err = DidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let payload = s.strip_prefix(DID_KEY_PREFIX).ok_or(DidError::Prefix)?;
        let bytes = bs58::decode(payload)
            .into_vec()
            .map_err(|_| DidError::Base58)?;
        let key = bytes
            .strip_prefix(&ED25519_PUB_MULTICODEC[..])
            .ok_or(DidError::KeyType)?;
        let key: &[u8; 32] = key.try_into().map_err(|_| DidError::Key)?;
        let key = VerifyingKey::from_bytes(key).map_err(|_| DidError::Key)?;
        // Base58 has one spelling per byte string, so the input is the
        // canonical text: keep it instead of encoding again.
        let mut buf = [0u8; 64];
        let text = if s.len() <= buf.len() {
            buf[..s.len()].copy_from_slice(s.as_bytes());
            DidText {
                buf,
                len: s.len() as u8,
            }
        } else {
            DidText::of(&key)
        };
        Ok(Self(key, text))
    }
}

impl serde::Serialize for Did {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Did {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A user's secret signing key. Its bytes are wiped from memory on drop.
#[derive(Clone)]
pub struct UserKey(SigningKey);

impl UserKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte secret seed. Handle with care: this is the identity.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public identity of this key.
    pub fn did(&self) -> Did {
        Did::from_key(self.0.verifying_key())
    }

    /// Signs `message` (ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey({})", self.did())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_key_round_trips_and_matches_the_spec_vector() {
        // did:key spec test vector (ed25519, "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp").
        let did: Did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
            .parse()
            .expect("spec vector parses");
        assert_eq!(
            did.to_string(),
            "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
        );
        let key = UserKey::generate();
        let text = key.did().to_string();
        assert!(text.starts_with("did:key:z6Mk"), "{text}");
        assert_eq!(text.parse::<Did>(), Ok(key.did()));
    }

    #[test]
    fn bad_dids_are_refused_with_a_reason() {
        assert_eq!("did:web:example.com".parse::<Did>(), Err(DidError::Prefix));
        assert_eq!("did:key:z0OIl".parse::<Did>(), Err(DidError::Base58));
        // A secp256k1 key (multicodec 0xe7) is not supported.
        let k1 = format!(
            "did:key:z{}",
            bs58::encode([0xe7, 0x01, 2, 3]).into_string()
        );
        assert_eq!(k1.parse::<Did>(), Err(DidError::KeyType));
        let short = format!(
            "did:key:z{}",
            bs58::encode([0xed, 0x01, 2, 3]).into_string()
        );
        assert_eq!(short.parse::<Did>(), Err(DidError::Key));
    }

    #[test]
    fn signatures_verify_only_for_the_signer_and_the_message() {
        let alice = UserKey::generate();
        let bob = UserKey::generate();
        let sig = alice.sign(b"hello");
        assert_eq!(alice.did().verify(b"hello", &sig), Ok(()));
        assert_eq!(alice.did().verify(b"hellO", &sig), Err(DidError::Signature));
        assert_eq!(bob.did().verify(b"hello", &sig), Err(DidError::Signature));
        assert_eq!(
            alice.did().verify(b"hello", &sig[..63]),
            Err(DidError::Signature)
        );
    }
}
