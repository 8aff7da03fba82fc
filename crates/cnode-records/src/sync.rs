//! Range-based set reconciliation of a region's records (`/cnode/sync/1`).
//!
//! Each node keeps, per region it serves, the sorted set of `(created_at, id)`
//! of the records it holds ([`RegionSet`]). Two nodes find the difference of
//! their sets with the negentropy protocol: the initiator sends fingerprints of
//! ranges, the responder answers with fingerprints of sub-ranges or the ids
//! themselves where ranges differ, and after a few rounds (logarithmic in the
//! set size) the initiator knows exactly which ids it lacks. It then fetches
//! those records and validates each one like any other input. Sync is pull
//! only: a node never accepts records it did not ask for, and both sides
//! initiate on their own schedule, so both converge.
//!
//! The responder is stateless: every `Reconcile` request carries everything
//! needed to answer it. Negentropy's id lists travel in a compact form
//! ([`compact`]). Messages are documented in `docs/protocol.md`.

mod compact;

use std::collections::HashSet;
use std::sync::Arc;

use cnode_types::RegionId;
use negentropy::{Bound, Id, Item, Negentropy, NegentropyStorageBase};

use crate::record::RecordId;

/// The first byte of every `/cnode/sync/1` message (2: compact id lists).
pub const VERSION: u8 = 2;
/// The most ids one `Fetch` request may name.
pub const MAX_FETCH_IDS: usize = 1024;
/// Negentropy's frame size limit: one reconcile message (in negentropy's own
/// form, before the compact lists) stays below this. Large enough that a
/// million records differing in 1 % settle without a cut: after a cut
/// negentropy resumes the rest of the set from a single fingerprint, and
/// the descent through every level of fingerprints is paid again (with
/// 1 MiB frames that tripled the traffic of that case).
pub const FRAME_LIMIT: usize = 8 * 1024 * 1024;
/// A `Records` response stops adding records past this many bytes (the
/// requester asks again for the rest).
pub const RECORDS_RESPONSE_BUDGET: usize = 4 * 1024 * 1024;
/// The largest request accepted (a reconcile frame plus the header).
pub const MAX_REQUEST: usize = FRAME_LIMIT + 64;
/// The largest response accepted: a reconcile frame (compact lists add at
/// most a bitmap bit per id) or a records batch, plus slack.
pub const MAX_RESPONSE: usize = FRAME_LIMIT + FRAME_LIMIT / 64 + 128 * 1024;
/// The most reconcile rounds one session may take before it gives up.
pub const MAX_ROUNDS: usize = 64;

const KIND_RECONCILE: u8 = 1;
const KIND_FETCH: u8 = 2;
const KIND_RECORDS: u8 = 2;
const KIND_REFUSED: u8 = 3;

/// A `/cnode/sync/1` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// One negentropy round for a region.
    Reconcile {
        /// The region whose records are reconciled.
        region: RegionId,
        /// The negentropy message.
        msg: Vec<u8>,
    },
    /// Send these records (canonical encodings) of a region.
    Fetch {
        /// The region the records belong to.
        region: RegionId,
        /// At most [`MAX_FETCH_IDS`] record ids.
        ids: Vec<RecordId>,
    },
}

/// A `/cnode/sync/1` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    /// The responder's negentropy message.
    Reconcile(Vec<u8>),
    /// Canonical record encodings, in request order, skipping ids the
    /// responder no longer has; may stop early at the response budget.
    Records(Vec<Vec<u8>>),
    /// The request was refused, with a reason (e.g. region not served).
    Refused(String),
}

/// Why a sync message could not be decoded or a round failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// Malformed message.
    #[error("malformed sync message: {0}")]
    Malformed(&'static str),
    /// A version this node does not speak.
    #[error("unsupported sync message version {0}")]
    Version(u8),
    /// Larger than the limit.
    #[error("sync message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The negentropy state machine refused the message.
    #[error("reconciliation failed: {0}")]
    Negentropy(String),
    /// The session went on for more than [`MAX_ROUNDS`] rounds.
    #[error("reconciliation did not finish in {MAX_ROUNDS} rounds")]
    TooManyRounds,
}

impl From<negentropy::Error> for SyncError {
    fn from(e: negentropy::Error) -> Self {
        Self::Negentropy(e.to_string())
    }
}

impl SyncRequest {
    /// The wire form: `version, kind, region (4 bytes ASCII), payload`.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, region) = match self {
            Self::Reconcile { region, .. } => (KIND_RECONCILE, region),
            Self::Fetch { region, .. } => (KIND_FETCH, region),
        };
        let mut out = vec![VERSION, kind];
        out.extend_from_slice(region.as_str().as_bytes());
        match self {
            Self::Reconcile { msg, .. } => out.extend_from_slice(msg),
            Self::Fetch { ids, .. } => ids.iter().for_each(|id| out.extend_from_slice(&id.0)),
        }
        out
    }

    /// Parses and checks a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        if bytes.len() > MAX_REQUEST {
            return Err(SyncError::TooLarge(bytes.len()));
        }
        let [version, kind, r0, r1, r2, r3, payload @ ..] = bytes else {
            return Err(SyncError::Malformed("truncated header"));
        };
        if *version != VERSION {
            return Err(SyncError::Version(*version));
        }
        let raw = [*r0, *r1, *r2, *r3];
        // Exactly the canonical (lower-case) spelling: `RegionId` parsing
        // also accepts upper case, which would give one region two encodings.
        let region = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| s.parse::<RegionId>().ok())
            .filter(|r| r.as_str().as_bytes() == raw)
            .ok_or(SyncError::Malformed("bad region"))?;
        match *kind {
            KIND_RECONCILE => Ok(Self::Reconcile {
                region,
                msg: payload.to_vec(),
            }),
            KIND_FETCH => {
                if payload.len() % 32 != 0 {
                    return Err(SyncError::Malformed("fetch ids are 32 bytes each"));
                }
                if payload.len() / 32 > MAX_FETCH_IDS {
                    return Err(SyncError::Malformed("too many ids in one fetch"));
                }
                let ids = payload
                    .chunks_exact(32)
                    .map(|c| {
                        let mut id = [0u8; 32];
                        id.copy_from_slice(c);
                        RecordId(id)
                    })
                    .collect();
                Ok(Self::Fetch { region, ids })
            }
            _ => Err(SyncError::Malformed("unknown request kind")),
        }
    }
}

impl SyncResponse {
    /// The wire form: `version, kind, payload`; records are each prefixed
    /// by their length as a big-endian u32.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Reconcile(msg) => {
                let mut out = vec![VERSION, KIND_RECONCILE];
                out.extend_from_slice(msg);
                out
            }
            Self::Records(records) => {
                let len = records.iter().map(|r| r.len() + 4).sum::<usize>();
                let mut out = Vec::with_capacity(2 + len);
                out.extend_from_slice(&[VERSION, KIND_RECORDS]);
                for r in records {
                    out.extend_from_slice(&(r.len() as u32).to_be_bytes());
                    out.extend_from_slice(r);
                }
                out
            }
            Self::Refused(reason) => {
                let mut out = vec![VERSION, KIND_REFUSED];
                out.extend_from_slice(&reason.as_bytes()[..reason.len().min(256)]);
                out
            }
        }
    }

    /// Parses and checks a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, SyncError> {
        if bytes.len() > MAX_RESPONSE {
            return Err(SyncError::TooLarge(bytes.len()));
        }
        let [version, kind, payload @ ..] = bytes else {
            return Err(SyncError::Malformed("truncated header"));
        };
        if *version != VERSION {
            return Err(SyncError::Version(*version));
        }
        match *kind {
            KIND_RECONCILE => Ok(Self::Reconcile(payload.to_vec())),
            KIND_RECORDS => {
                let mut records = Vec::new();
                let mut rest = payload;
                while !rest.is_empty() {
                    let [a, b, c, d, tail @ ..] = rest else {
                        return Err(SyncError::Malformed("truncated record length"));
                    };
                    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
                    if len > crate::record::MAX_ENCODED_LEN || len > tail.len() {
                        return Err(SyncError::Malformed("bad record length"));
                    }
                    records.push(tail[..len].to_vec());
                    rest = &tail[len..];
                }
                Ok(Self::Records(records))
            }
            KIND_REFUSED => Ok(Self::Refused(
                String::from_utf8_lossy(&payload[..payload.len().min(256)]).into_owned(),
            )),
            _ => Err(SyncError::Malformed("unknown response kind")),
        }
    }
}

/// The `(created_at, id)` set of one region's records, kept sorted for
/// negentropy. Changes are buffered and merged in one pass when the next
/// [`snapshot`](Self::snapshot) is taken, so a burst of inserts costs
/// O(n + k log k), not O(n·k).
#[derive(Debug, Default)]
pub struct RegionSet {
    items: Arc<Vec<Item>>,
    added: Vec<Item>,
    removed: HashSet<Item>,
}

impl RegionSet {
    /// A set from `(created_at, id)` pairs in any order.
    pub fn from_items(items: impl IntoIterator<Item = (u64, RecordId)>) -> Self {
        let mut items: Vec<Item> = items.into_iter().map(item).collect();
        items.sort_unstable();
        items.dedup();
        Self {
            items: Arc::new(items),
            ..Self::default()
        }
    }

    /// Adds a record.
    pub fn insert(&mut self, created_at: u64, id: RecordId) {
        let it = item((created_at, id));
        self.removed.remove(&it);
        self.added.push(it);
    }

    /// Removes a record (replaced by a newer one, or expired).
    pub fn remove(&mut self, created_at: u64, id: RecordId) {
        let it = item((created_at, id));
        self.added.retain(|a| *a != it);
        self.removed.insert(it);
    }

    /// How many records the set holds (after pending changes).
    pub fn len(&mut self) -> usize {
        self.apply();
        self.items.len()
    }

    /// True when the set is empty (after pending changes).
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// An immutable view of the current set for one reconciliation; cheap
    /// (a reference count) when nothing changed since the last one.
    pub fn snapshot(&mut self) -> Snapshot {
        self.apply();
        Snapshot(self.items.clone())
    }

    fn apply(&mut self) {
        if self.added.is_empty() && self.removed.is_empty() {
            return;
        }
        let mut added = std::mem::take(&mut self.added);
        added.sort_unstable();
        added.dedup();
        let removed = std::mem::take(&mut self.removed);
        let old = &self.items;
        let mut merged = Vec::with_capacity(old.len() + added.len());
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < added.len() {
            let next = match (old.get(i), added.get(j)) {
                (Some(a), Some(b)) if a < b => {
                    i += 1;
                    *a
                }
                (Some(a), Some(b)) if a == b => {
                    i += 1;
                    j += 1;
                    *a
                }
                (_, Some(b)) => {
                    j += 1;
                    *b
                }
                (Some(a), None) => {
                    i += 1;
                    *a
                }
                (None, None) => break,
            };
            if !removed.contains(&next) {
                merged.push(next);
            }
        }
        self.items = Arc::new(merged);
    }
}

fn item((created_at, id): (u64, RecordId)) -> Item {
    Item::with_timestamp_and_id(created_at, Id::from_byte_array(id.0))
}

/// A frozen, sorted view of a [`RegionSet`]: negentropy's storage.
#[derive(Debug, Clone)]
pub struct Snapshot(Arc<Vec<Item>>);

impl Snapshot {
    /// How many records the snapshot holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the snapshot is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl NegentropyStorageBase for Snapshot {
    fn size(&self) -> Result<usize, negentropy::Error> {
        Ok(self.0.len())
    }

    fn get_item(&self, i: usize) -> Result<Option<Item>, negentropy::Error> {
        Ok(self.0.get(i).copied())
    }

    fn iterate(
        &self,
        begin: usize,
        end: usize,
        cb: &mut dyn FnMut(Item, usize) -> Result<bool, negentropy::Error>,
    ) -> Result<(), negentropy::Error> {
        let items = self.0.get(begin..end).ok_or(negentropy::Error::BadRange)?;
        for (offset, it) in items.iter().enumerate() {
            if !cb(*it, begin + offset)? {
                break;
            }
        }
        Ok(())
    }

    fn find_lower_bound(&self, first: usize, last: usize, value: &Bound) -> usize {
        let last = last.min(self.0.len());
        let first = first.min(last);
        first + self.0[first..last].partition_point(|it| *it < value.item)
    }
}

/// Answers one `Reconcile` request (its wire message) from the
/// responder's snapshot.
pub fn respond(snapshot: Snapshot, msg: &[u8]) -> Result<Vec<u8>, SyncError> {
    let (msg, theirs) = compact::expand_request(msg)?;
    let mut neg = Negentropy::owned(snapshot, FRAME_LIMIT as u64)?;
    compact::compact_response(&neg.reconcile(&msg)?, &theirs)
}

/// The initiator's side of one reconciliation session.
pub struct Reconciler {
    neg: Negentropy<'static, Snapshot>,
    /// The ids the last message sent listed.
    sent: compact::Sent,
    rounds: usize,
}

/// What one round taught the initiator.
#[derive(Debug, Default)]
pub struct Round {
    /// Ids the responder has and we lack: fetch them.
    pub need: Vec<RecordId>,
    /// Ids we have and the responder lacks (it will pull them itself).
    pub have: Vec<RecordId>,
    /// The next message to send, or `None` when the session is complete.
    pub next: Option<Vec<u8>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reconciler(round {})", self.rounds)
    }
}

impl Reconciler {
    /// Starts a session; returns it and the first message to send.
    pub fn start(snapshot: Snapshot) -> Result<(Self, Vec<u8>), SyncError> {
        let mut neg = Negentropy::owned(snapshot, FRAME_LIMIT as u64)?;
        let (first, sent) = compact::compact_request(&neg.initiate()?)?;
        Ok((
            Self {
                neg,
                sent,
                rounds: 0,
            },
            first,
        ))
    }

    /// Feeds the responder's answer (its wire message).
    pub fn step(&mut self, response: &[u8]) -> Result<Round, SyncError> {
        self.rounds += 1;
        if self.rounds > MAX_ROUNDS {
            return Err(SyncError::TooManyRounds);
        }
        let response = compact::expand_response(response, &self.sent)?;
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let next = match self
            .neg
            .reconcile_with_ids(&response, &mut have, &mut need)?
        {
            Some(msg) => {
                let (wire, sent) = compact::compact_request(&msg)?;
                self.sent = sent;
                Some(wire)
            }
            None => None,
        };
        let ids = |v: Vec<Id>| v.into_iter().map(|id| RecordId(id.to_bytes())).collect();
        Ok(Round {
            need: ids(need),
            have: ids(have),
            next,
        })
    }
}

/// The property the fuzz target checks: any bytes decode or are refused
/// without a panic, whatever decodes re-encodes to the same bytes, and a
/// responder or initiator given garbage answers with an error, not a panic.
#[doc(hidden)]
pub fn fuzz_check(bytes: &[u8]) {
    if let Ok(req) = SyncRequest::decode(bytes) {
        assert_eq!(req.encode(), bytes, "request re-encodes differently");
        if let SyncRequest::Reconcile { msg, .. } = req {
            let mut set = RegionSet::from_items((0..64u32).map(|n| {
                (
                    u64::from(n) * 1000,
                    RecordId(*blake3::hash(&n.to_be_bytes()).as_bytes()),
                )
            }));
            let _ = respond(set.snapshot(), &msg);
        }
    }
    if let Ok(resp) = SyncResponse::decode(bytes) {
        // Refused reasons are lossy (UTF-8, 256 bytes); the rest round-trips.
        if !matches!(resp, SyncResponse::Refused(_)) {
            assert_eq!(resp.encode(), bytes, "response re-encodes differently");
        }
        // An initiator given a garbage answer fails the round, no panic.
        if let SyncResponse::Reconcile(msg) = resp {
            let mut set = RegionSet::from_items((0..64u32).map(|n| {
                (
                    u64::from(n) * 1000,
                    RecordId(*blake3::hash(&n.to_be_bytes()).as_bytes()),
                )
            }));
            if let Ok((mut reconciler, _)) = Reconciler::start(set.snapshot()) {
                let _ = reconciler.step(&msg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> RecordId {
        RecordId(*blake3::hash(&n.to_be_bytes()).as_bytes())
    }

    /// Runs a whole session between two sets; returns (need, have, rounds,
    /// wire bytes).
    fn session(
        a: &mut RegionSet,
        b: &mut RegionSet,
    ) -> (HashSet<RecordId>, HashSet<RecordId>, usize, usize) {
        let (mut rec, mut msg) = Reconciler::start(a.snapshot()).expect("start");
        let (mut need, mut have, mut rounds, mut bytes) = (HashSet::new(), HashSet::new(), 0, 0);
        loop {
            bytes += msg.len();
            let answer = respond(b.snapshot(), &msg).expect("respond");
            bytes += answer.len();
            let round = rec.step(&answer).expect("step");
            rounds += 1;
            need.extend(round.need);
            have.extend(round.have);
            match round.next {
                Some(next) => msg = next,
                None => break,
            }
        }
        (need, have, rounds, bytes)
    }

    #[test]
    fn reconciliation_finds_exactly_the_difference() {
        let common: Vec<(u64, RecordId)> =
            (0..20_000).map(|n| (1_000 + u64::from(n), id(n))).collect();
        let only_a: Vec<(u64, RecordId)> = (20_000..20_050)
            .map(|n| (u64::from(n) * 7, id(n)))
            .collect();
        let only_b: Vec<(u64, RecordId)> = (30_000..30_200)
            .map(|n| (u64::from(n) * 3, id(n)))
            .collect();
        let mut a = RegionSet::from_items(common.iter().chain(&only_a).copied());
        let mut b = RegionSet::from_items(common.iter().chain(&only_b).copied());
        let (need, have, rounds, bytes) = session(&mut a, &mut b);
        assert_eq!(need, only_b.iter().map(|x| x.1).collect());
        assert_eq!(have, only_a.iter().map(|x| x.1).collect());
        assert!(rounds <= 8, "{rounds} rounds");
        // 250 differences: well under the ids of the whole set (640 KB).
        assert!(bytes < 100_000, "{bytes} bytes on the wire");
    }

    /// Every hundredth record missing: negentropy settles each difference
    /// with id lists of the ~20 ids around it, from the initiator and back
    /// (at this set size, as at 1,000,000, the initiator's split is the one
    /// that falls under 32 items); the compact lists cut that traffic to a
    /// fraction of negentropy's own messages. (At sizes where the
    /// responder's split falls under 32, it lists the range unasked, in full
    /// ids, and the compact form saves nothing.)
    #[test]
    fn scattered_differences_cost_little_on_the_wire() {
        let all: Vec<(u64, RecordId)> = (0..6_000).map(|n| (u64::from(n) * 10, id(n))).collect();
        let gappy = || {
            RegionSet::from_items(
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| i % 100 != 0)
                    .map(|(_, x)| *x),
            )
        };
        let mut full = RegionSet::from_items(all.iter().copied());
        let (need, have, _, bytes) = session(&mut gappy(), &mut full);
        assert_eq!(need.len(), 60);
        assert!(have.is_empty());
        // The same session in negentropy's own message form.
        let mut plain = Negentropy::owned(gappy().snapshot(), FRAME_LIMIT as u64).unwrap();
        let mut msg = plain.initiate().unwrap();
        let mut plain_bytes = 0;
        loop {
            let mut responder = Negentropy::owned(full.snapshot(), FRAME_LIMIT as u64).unwrap();
            let answer = responder.reconcile(&msg).unwrap();
            plain_bytes += msg.len() + answer.len();
            let (mut h, mut n) = (Vec::new(), Vec::new());
            match plain.reconcile_with_ids(&answer, &mut h, &mut n).unwrap() {
                Some(next) => msg = next,
                None => break,
            }
        }
        assert!(
            bytes * 2 < plain_bytes,
            "compact {bytes} bytes, plain negentropy {plain_bytes}"
        );
    }

    #[test]
    fn equal_and_empty_sets() {
        let items: Vec<_> = (0..1000).map(|n| (u64::from(n), id(n))).collect();
        let mut a = RegionSet::from_items(items.clone());
        let mut b = RegionSet::from_items(items);
        let (need, have, rounds, _) = session(&mut a, &mut b);
        assert!(need.is_empty() && have.is_empty());
        assert_eq!(rounds, 1);
        let mut empty = RegionSet::default();
        let (need, have, _, _) = session(&mut empty, &mut a);
        assert_eq!(need.len(), 1000);
        assert!(have.is_empty());
    }

    #[test]
    fn buffered_changes_merge_like_a_sorted_set() {
        let mut set = RegionSet::from_items((0..100).map(|n| (u64::from(n), id(n))));
        set.insert(5, id(500));
        set.insert(5, id(500));
        set.remove(7, id(7));
        set.insert(9, id(9)); // already present
        set.remove(1000, id(1000)); // absent
        set.insert(1, id(1001));
        set.remove(1, id(1001)); // added then removed
        assert_eq!(set.len(), 100);
        let snap = set.snapshot();
        assert!(snap.0.windows(2).all(|w| w[0] < w[1]));
        assert!(snap.0.contains(&item((5, id(500)))));
        assert!(!snap.0.contains(&item((7, id(7)))));
    }

    #[test]
    fn messages_round_trip_and_bad_ones_are_refused() {
        let region: RegionId = "w5q6".parse().expect("region");
        let reqs = [
            SyncRequest::Reconcile {
                region,
                msg: vec![0x61, 1, 2],
            },
            SyncRequest::Fetch {
                region,
                ids: vec![id(1), id(2)],
            },
        ];
        for r in reqs {
            assert_eq!(SyncRequest::decode(&r.encode()), Ok(r));
        }
        let resps = [
            SyncResponse::Reconcile(vec![0x61]),
            SyncResponse::Records(vec![vec![1, 2, 3], vec![]]),
            SyncResponse::Refused("region not served".into()),
        ];
        for r in resps {
            assert_eq!(SyncResponse::decode(&r.encode()), Ok(r));
        }
        assert_eq!(
            SyncRequest::decode(&[VERSION + 1, 1, b'w', b'5', b'q', b'6']),
            Err(SyncError::Version(VERSION + 1))
        );
        assert!(SyncRequest::decode(&[VERSION, 1, b'w', b'5']).is_err());
        assert!(SyncRequest::decode(&[VERSION, 1, b'a', b'a', b'a', b'a']).is_err());
        assert!(SyncRequest::decode(&[VERSION, 2, b'w', b'5', b'q', b'6', 0]).is_err());
        assert!(SyncRequest::decode(&[VERSION, 9, b'w', b'5', b'q', b'6']).is_err());
        assert!(SyncResponse::decode(&[VERSION, 2, 0, 0, 0, 9, 1]).is_err());
        assert!(SyncResponse::decode(&[VERSION, 2, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(SyncRequest::decode(&vec![1; MAX_REQUEST + 1]).is_err());
        let mut too_many = vec![VERSION, 2, b'w', b'5', b'q', b'6'];
        too_many.extend(std::iter::repeat_n(0u8, 32 * (MAX_FETCH_IDS + 1)));
        assert!(SyncRequest::decode(&too_many).is_err());
        // Found by cargo fuzz: an upper-case region decoded, then re-encoded
        // differently.
        assert!(SyncRequest::decode(b"\x02\x01Keyy\0\0").is_err());
        assert!(SyncRequest::decode(b"\x02\x01W5Q6").is_err());
        for junk in [
            &[VERSION, 1, b'w', b'5', b'q', b'6', 0x61, 0, 0][..],
            &[VERSION, 2],
            &[VERSION, 2, 0, 0, 0, 1, 7],
        ] {
            fuzz_check(junk);
        }
        // Garbage negentropy messages are errors, not panics.
        let mut set = RegionSet::from_items((0..10).map(|n| (u64::from(n), id(n))));
        for junk in [
            &[][..],
            &[0x61],
            &[0x99, 1, 2, 3],
            &[0x61, 0xff, 0xff, 0xff],
        ] {
            let _ = respond(set.snapshot(), junk);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Random bytes, and valid messages with random tails, never panic.
        #[test]
        fn decoders_survive_any_bytes(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
                                      kind in 0u8..4) {
            fuzz_check(&bytes);
            let mut framed = vec![VERSION, kind, b'w', b'5', b'q', b'6', 0x61];
            framed.extend_from_slice(&bytes);
            fuzz_check(&framed);
        }
    }
}
