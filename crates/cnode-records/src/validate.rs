//! The rules a record must pass before a node stores or forwards it.
//!
//! [`check`] is stateless: size, nesting depth, clock window, expiry, region
//! geohash, collection name, key, the schema of built-in collections
//! ([`crate::schema`]) and, last because it is the expensive part, the proof.
//! The per-author rate limit ([`RateLimiter`]) is the only state; a
//! [`Validator`] holds both and is what the rest of the node calls.
//!
//! Records arrive on two [`Path`]s. `Live` records (posted locally or pushed
//! by gossip) are new, so they must carry a recent clock and are rate
//! limited. `Sync` records (pulled by reconciliation) may be old: only the
//! future bound of the clock window applies, and no rate limit.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    sync::Mutex,
};

use cnode_identity::Did;
use cnode_types::RegionId;

use crate::{
    record::{self, DecodeError, ProofError, Record},
    schema::{self, Problem, SchemaError},
};

/// How a record reached this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Path {
    /// Posted locally or pushed on a region's gossip topic: must be recent,
    /// and counts against its author's rate limit.
    Live,
    /// Pulled by set reconciliation: may be old.
    Sync,
}

/// The geohash base-32 alphabet (no `a`, `i`, `l`, `o`).
const GEOHASH_ALPHABET: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
/// Shortest record geohash: the 4-character region itself.
pub const MIN_GEOHASH_LEN: usize = 4;
/// Longest record geohash (≈ 153 × 153 m).
pub const MAX_GEOHASH_LEN: usize = 7;
/// Longest collection name, in bytes.
pub const MAX_COLLECTION_LEN: usize = 128;
/// Fewest dot-separated labels in a collection name (`org.cnode.events`).
pub const MIN_COLLECTION_LABELS: usize = 3;
/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 128;

/// Attacker-supplied strings echoed in errors are cut to this many characters.
const MAX_ECHO_CHARS: usize = 32;

/// The tunable limits of validation. [`Limits::default`] is the network's
/// rule set; lower values are fine for a node's own policy, higher ones make
/// it accept records its peers refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole record, encoded (at most [`record::MAX_ENCODED_LEN`],
    /// which the decoder enforces anyway).
    pub max_record_bytes: usize,
    /// Largest body, encoded on its own as DAG-CBOR.
    pub max_body_bytes: usize,
    /// Deepest body nesting (each array or map is one level; a scalar body
    /// has depth 0).
    pub max_body_depth: usize,
    /// How far `created_at` may be ahead of this node's clock (both paths).
    pub max_future_ms: u64,
    /// How far `created_at` may be behind this node's clock on [`Path::Live`].
    pub max_live_age_ms: u64,
    /// Records an author may post at once on [`Path::Live`] (bucket size).
    pub rate_burst: u32,
    /// One more record is allowed every this many ms (bucket refill).
    pub rate_refill_ms: u64,
    /// Authors the rate limiter remembers; the least recently seen are
    /// forgotten beyond this.
    pub rate_max_authors: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: record::MAX_ENCODED_LEN,
            max_body_bytes: 64 * 1024,
            max_body_depth: 16,
            max_future_ms: 10 * 60 * 1000,
            max_live_age_ms: 10 * 60 * 1000,
            rate_burst: 30,
            rate_refill_ms: 2000,
            rate_max_authors: 10_000,
        }
    }
}

/// Why a record is refused. [`Reject::label`] names the reason for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The bytes are not a canonically encoded record.
    #[error(transparent)]
    Malformed(DecodeError),
    /// The proof does not verify for the author and content.
    #[error("bad signature")]
    BadSignature,
    /// A proof version this node does not know.
    #[error("unsupported proof version {0}")]
    UnsupportedProofVersion(u32),
    /// The whole record is too large.
    #[error("record is {len} bytes encoded, the limit is {max}")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is too large.
    #[error("body is {len} bytes encoded, the limit is {max}")]
    BodyTooLarge {
        /// Encoded size of the body alone.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body nests arrays or maps too deeply.
    #[error("body nests deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// `created_at` is too far ahead of this node's clock.
    #[error(
        "created_at {created_at} is more than {max_ms} ms ahead of this node's clock ({now_ms})"
    )]
    FromTheFuture {
        /// The record's `created_at`.
        created_at: u64,
        /// This node's clock.
        now_ms: u64,
        /// The allowed lead.
        max_ms: u64,
    },
    /// `created_at` is too far behind this node's clock for a live record.
    #[error(
        "created_at {created_at} is more than {max_ms} ms behind this node's clock ({now_ms}) for a live record"
    )]
    TooOld {
        /// The record's `created_at`.
        created_at: u64,
        /// This node's clock.
        now_ms: u64,
        /// The allowed lag.
        max_ms: u64,
    },
    /// The record has expired.
    #[error("record expired at {expires_at} (now {now_ms})")]
    Expired {
        /// The record's `expires_at`.
        expires_at: u64,
        /// This node's clock.
        now_ms: u64,
    },
    /// `region` is not a 4..=7-character geohash.
    #[error("region {region:?} is not a geohash of 4 to 7 characters: {reason}")]
    BadGeohash {
        /// The region as given (cut to a few characters).
        region: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `collection` is not a reverse-domain name.
    #[error("collection {collection:?} is not a reverse-domain name: {reason}")]
    BadCollection {
        /// The collection as given (cut to a few characters).
        collection: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `key` is empty, too long or holds control characters.
    #[error("bad key: {reason}")]
    BadKey {
        /// What is wrong.
        reason: &'static str,
    },
    /// `expires_at` is not after `created_at`.
    #[error("expires_at {expires_at} is not after created_at {created_at}")]
    BadExpiry {
        /// The record's `created_at`.
        created_at: u64,
        /// The record's `expires_at`.
        expires_at: u64,
    },
    /// The body does not fit the collection's schema (or a tombstone has a
    /// body).
    #[error("schema violation in {collection}: field {field}: {reason}")]
    SchemaViolation {
        /// The collection whose schema was applied.
        collection: String,
        /// The offending field.
        field: String,
        /// What is wrong with it.
        reason: Problem,
    },
    /// The author has posted too many live records recently.
    #[error("author {author} is rate limited; retry in {retry_after_ms} ms")]
    RateLimited {
        /// The author's DID (as text: a [`Did`] would make every `Result`
        /// of this module large).
        author: String,
        /// When the next record would be accepted.
        retry_after_ms: u64,
    },
}

impl Reject {
    /// A stable short label for metrics and logs, e.g. `"bad_signature"`.
    /// Malformed input is split into `"not_canonical"` (valid CBOR, wrong
    /// form) and `"malformed"` (everything else).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(DecodeError::NotCanonical) => "not_canonical",
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedProofVersion(_) => "unsupported_proof_version",
            Self::TooLarge { .. } => "too_large",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::TooDeep { .. } => "too_deep",
            Self::FromTheFuture { .. } => "from_the_future",
            Self::TooOld { .. } => "too_old",
            Self::Expired { .. } => "expired",
            Self::BadGeohash { .. } => "bad_geohash",
            Self::BadCollection { .. } => "bad_collection",
            Self::BadKey { .. } => "bad_key",
            Self::BadExpiry { .. } => "bad_expiry",
            Self::SchemaViolation { .. } => "schema_violation",
            Self::RateLimited { .. } => "rate_limited",
        }
    }

    /// Every label [`Reject::label`] can return, e.g. to pre-register metric
    /// series.
    pub const LABELS: [&'static str; 16] = [
        "malformed",
        "not_canonical",
        "bad_signature",
        "unsupported_proof_version",
        "too_large",
        "body_too_large",
        "too_deep",
        "from_the_future",
        "too_old",
        "expired",
        "bad_geohash",
        "bad_collection",
        "bad_key",
        "bad_expiry",
        "schema_violation",
        "rate_limited",
    ];

    fn schema(collection: &str, e: SchemaError) -> Self {
        Self::SchemaViolation {
            collection: collection.to_owned(),
            field: e.field,
            reason: e.problem,
        }
    }
}

impl From<DecodeError> for Reject {
    fn from(e: DecodeError) -> Self {
        match e {
            // One label for "too large" whether or not the bytes were decoded.
            DecodeError::TooLarge(len) => Self::TooLarge {
                len,
                max: record::MAX_ENCODED_LEN,
            },
            e => Self::Malformed(e),
        }
    }
}

/// Checks every rule except the rate limit, cheap rules first and the proof
/// last. `now_ms` is this node's clock, ms since the Unix epoch.
pub fn check(record: &Record, path: Path, now_ms: u64, limits: &Limits) -> Result<(), Reject> {
    check_with_len(record, record.encode().len(), path, now_ms, limits)
}

/// [`check`] for a record whose encoded length is already known.
fn check_with_len(
    record: &Record,
    encoded_len: usize,
    path: Path,
    now_ms: u64,
    limits: &Limits,
) -> Result<(), Reject> {
    if encoded_len > limits.max_record_bytes {
        return Err(Reject::TooLarge {
            len: encoded_len,
            max: limits.max_record_bytes,
        });
    }
    if record.proof.v != 1 {
        return Err(Reject::UnsupportedProofVersion(record.proof.v));
    }
    check_clock(record, path, now_ms, limits)?;
    check_geohash(&record.region)?;
    check_collection(&record.collection)?;
    check_key(&record.key)?;
    if depth_exceeds(&record.body, limits.max_body_depth) {
        return Err(Reject::TooDeep {
            max: limits.max_body_depth,
        });
    }
    // Encoding plain JSON data cannot fail; if it ever did, refuse.
    let body_len = serde_ipld_dagcbor::to_vec(&record.body)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if body_len > limits.max_body_bytes {
        return Err(Reject::BodyTooLarge {
            len: body_len,
            max: limits.max_body_bytes,
        });
    }
    let schema = if record.deleted {
        schema::check_tombstone_body(&record.body)
    } else {
        schema::check_body(&record.collection, &record.body)
    };
    schema.map_err(|e| Reject::schema(&record.collection, e))?;
    record.verify_proof().map_err(|e| match e {
        ProofError::UnsupportedVersion(v) => Reject::UnsupportedProofVersion(v),
        ProofError::BadSignature => Reject::BadSignature,
    })
}

fn check_clock(record: &Record, path: Path, now_ms: u64, limits: &Limits) -> Result<(), Reject> {
    let created_at = record.created_at;
    if let Some(expires_at) = record.expires_at {
        if expires_at <= created_at {
            return Err(Reject::BadExpiry {
                created_at,
                expires_at,
            });
        }
        if expires_at <= now_ms {
            return Err(Reject::Expired { expires_at, now_ms });
        }
    }
    if created_at > now_ms.saturating_add(limits.max_future_ms) {
        return Err(Reject::FromTheFuture {
            created_at,
            now_ms,
            max_ms: limits.max_future_ms,
        });
    }
    if path == Path::Live && created_at < now_ms.saturating_sub(limits.max_live_age_ms) {
        return Err(Reject::TooOld {
            created_at,
            now_ms,
            max_ms: limits.max_live_age_ms,
        });
    }
    Ok(())
}

/// A record's region: 4..=7 lower-case geohash characters whose first four
/// are a [`RegionId`].
fn check_geohash(region: &str) -> Result<(), Reject> {
    let bad = |reason| Reject::BadGeohash {
        region: echo(region),
        reason,
    };
    if !(MIN_GEOHASH_LEN..=MAX_GEOHASH_LEN).contains(&region.len()) {
        return Err(bad("wrong length"));
    }
    if !region.bytes().all(|b| GEOHASH_ALPHABET.contains(&b)) {
        return Err(bad("a character outside 0-9 and b-z without a, i, l, o"));
    }
    // All ASCII by now, so slicing at 4 is on a character boundary.
    match region.get(..MIN_GEOHASH_LEN).map(str::parse::<RegionId>) {
        Some(Ok(_)) => Ok(()),
        _ => Err(bad("its first 4 characters are not a region")),
    }
}

/// Reverse-domain: ≥ 3 non-empty labels of `[a-z0-9-]` joined by dots,
/// ≤ 128 bytes.
fn check_collection(collection: &str) -> Result<(), Reject> {
    let bad = |reason| Reject::BadCollection {
        collection: echo(collection),
        reason,
    };
    if collection.len() > MAX_COLLECTION_LEN {
        return Err(bad("longer than 128 bytes"));
    }
    let mut labels = 0;
    for label in collection.split('.') {
        if label.is_empty() {
            return Err(bad("an empty label"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(bad("labels hold only a-z, 0-9 and -"));
        }
        labels += 1;
    }
    if labels < MIN_COLLECTION_LABELS {
        return Err(bad("fewer than 3 labels"));
    }
    Ok(())
}

/// 1..=128 bytes, no control characters.
fn check_key(key: &str) -> Result<(), Reject> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > MAX_KEY_LEN {
        "longer than 128 bytes"
    } else if key.chars().any(char::is_control) {
        "holds a control character"
    } else {
        return Ok(());
    };
    Err(Reject::BadKey { reason })
}

/// Whether `value` nests arrays and maps more than `max` levels deep. The
/// recursion stops one level past `max`, so its own depth is bounded.
fn depth_exceeds(value: &serde_json::Value, max: usize) -> bool {
    use serde_json::Value;
    match value {
        Value::Array(a) => max == 0 || a.iter().any(|c| depth_exceeds(c, max - 1)),
        Value::Object(o) => max == 0 || o.values().any(|c| depth_exceeds(c, max - 1)),
        _ => false,
    }
}

fn echo(s: &str) -> String {
    if s.chars().count() > MAX_ECHO_CHARS {
        let mut cut: String = s.chars().take(MAX_ECHO_CHARS).collect();
        cut.push('…');
        cut
    } else {
        s.to_owned()
    }
}

/// Per-author token buckets for [`Path::Live`] records, remembering at most
/// [`Limits::rate_max_authors`] authors (least recently seen are forgotten;
/// a forgotten author starts again with a full bucket).
///
/// Tokens are counted in milliseconds of refill so the arithmetic is exact:
/// a record costs `rate_refill_ms`, the bucket holds
/// `rate_burst × rate_refill_ms` and gains one per elapsed ms.
pub struct RateLimiter {
    burst: u32,
    refill_ms: u64,
    max_authors: usize,
    buckets: HashMap<Did, Bucket>,
    /// Last-use stamp → author: the first entry is the least recently used.
    lru: BTreeMap<u64, Did>,
    next_stamp: u64,
}

struct Bucket {
    tokens: u64,
    last_ms: u64,
    stamp: u64,
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("burst", &self.burst)
            .field("refill_ms", &self.refill_ms)
            .field("authors", &self.buckets.len())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter with the rate settings of `limits`.
    pub fn new(limits: &Limits) -> Self {
        Self {
            burst: limits.rate_burst,
            // A refill of 0 would make every record free; treat it as 1 ms.
            refill_ms: limits.rate_refill_ms.max(1),
            max_authors: limits.rate_max_authors.max(1),
            buckets: HashMap::new(),
            lru: BTreeMap::new(),
            next_stamp: 0,
        }
    }

    /// Takes one record from `author`'s bucket, or says when to retry. A clock
    /// that goes backwards refills nothing.
    pub fn check(&mut self, author: &Did, now_ms: u64) -> Result<(), Reject> {
        let capacity = u64::from(self.burst).saturating_mul(self.refill_ms);
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if !self.buckets.contains_key(author) {
            while self.buckets.len() >= self.max_authors {
                let Some((_, oldest)) = self.lru.pop_first() else {
                    break;
                };
                self.buckets.remove(&oldest);
            }
        }
        let bucket = self.buckets.entry(*author).or_insert(Bucket {
            tokens: capacity,
            last_ms: now_ms,
            stamp,
        });
        self.lru.remove(&bucket.stamp);
        bucket.stamp = stamp;
        self.lru.insert(stamp, *author);

        let elapsed = now_ms.saturating_sub(bucket.last_ms);
        bucket.tokens = bucket.tokens.saturating_add(elapsed).min(capacity);
        bucket.last_ms = bucket.last_ms.max(now_ms);
        if bucket.tokens >= self.refill_ms {
            bucket.tokens -= self.refill_ms;
            Ok(())
        } else {
            Err(Reject::RateLimited {
                author: author.to_string(),
                retry_after_ms: self.refill_ms - bucket.tokens,
            })
        }
    }

    /// How many authors are remembered.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no author is remembered.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// The validation a node runs on every incoming record: the stateless
/// [`check`] and, on [`Path::Live`], the per-author rate limit. Shared by
/// reference; the rate limiter sits behind a mutex held only for the
/// (constant-time) bucket update.
#[derive(Debug)]
pub struct Validator {
    limits: Limits,
    rate: Mutex<RateLimiter>,
}

impl Default for Validator {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Validator {
    /// A validator with these limits.
    pub fn new(limits: Limits) -> Self {
        let rate = Mutex::new(RateLimiter::new(&limits));
        Self { limits, rate }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Checks `record` arriving on `path` at `now_ms`.
    pub fn validate(&self, record: &Record, path: Path, now_ms: u64) -> Result<(), Reject> {
        self.validate_with_len(record, record.encode().len(), path, now_ms)
    }

    /// Decodes `bytes` (refusing oversized, malformed and non-canonical
    /// input) and validates the record.
    pub fn decode_and_validate(
        &self,
        bytes: &[u8],
        path: Path,
        now_ms: u64,
    ) -> Result<Record, Reject> {
        if bytes.len() > self.limits.max_record_bytes {
            return Err(Reject::TooLarge {
                len: bytes.len(),
                max: self.limits.max_record_bytes,
            });
        }
        let record = Record::decode(bytes)?;
        self.validate_with_len(&record, bytes.len(), path, now_ms)?;
        Ok(record)
    }

    fn validate_with_len(
        &self,
        record: &Record,
        encoded_len: usize,
        path: Path,
        now_ms: u64,
    ) -> Result<(), Reject> {
        check_with_len(record, encoded_len, path, now_ms, &self.limits)?;
        // The rate limit comes after the proof: otherwise anyone could drain
        // an author's bucket with forged records in their name.
        if path == Path::Live {
            let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            rate.check(&record.author, now_ms)?;
        }
        Ok(())
    }
}

/// The property the `records_decode` fuzz target and the stable property
/// tests check on arbitrary bytes: decoding and validating never panic,
/// whatever decodes re-encodes to the same bytes, and validation agrees with
/// decoding. Panics when the property does not hold (that is its job).
#[doc(hidden)]
pub fn fuzz_check(bytes: &[u8]) {
    let decoded = Record::decode(bytes);
    if let Ok(record) = &decoded {
        assert_eq!(
            record.encode(),
            bytes,
            "a decoded record re-encodes differently"
        );
        let _ = (record.id(), record.region_prefix());
    }
    // The record's own clock as "now", so that the checks reach the schema
    // and the proof instead of stopping at the clock window.
    let now_ms = decoded.as_ref().map_or(0, |r| r.created_at);
    let validator = Validator::default();
    for path in [Path::Live, Path::Sync] {
        match validator.decode_and_validate(bytes, path, now_ms) {
            Ok(record) => {
                assert_eq!(
                    decoded.as_ref().ok(),
                    Some(&record),
                    "validated but not decoded"
                );
                assert_eq!(check(&record, path, now_ms, validator.limits()), Ok(()));
            }
            Err(e) => {
                assert!(Reject::LABELS.contains(&e.label()));
                let _ = e.to_string();
            }
        }
    }
}

#[cfg(test)]
mod tests;
