//! The CRDT merge rule: which record a slot shows.
//!
//! A slot is `(author, collection, key)`. Of all records written to a slot,
//! the one with the greatest `(created_at, id)` wins — `created_at` first,
//! then the 32 id bytes compared bytewise — and is the only one kept.
//! Tombstones (`deleted = true`) compete like any other record. A record whose
//! `expires_at` has passed is dropped everywhere.
//!
//! [`MergeState`] is an in-memory reference model of the rule: small, obviously
//! right, and used as the test oracle for the SQLite store. For a fixed clock
//! its state depends only on the set of records applied, never on their order
//! or on duplicates (checked by a property test below).
//!
//! Expiry is the one place where timing matters: a slot whose winner expires
//! becomes empty, and an older record of that slot arriving afterwards (for
//! example from a peer that never saw the winner) is accepted as new, because
//! nothing remembers the expired winner.

use std::collections::{BTreeMap, BTreeSet};

use cnode_identity::Did;

use crate::record::{Record, RecordId};

/// Where a record is written: `(author, collection, key)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    /// The author.
    pub author: Did,
    /// The collection.
    pub collection: String,
    /// The author-chosen key.
    pub key: String,
}

impl SlotKey {
    /// The slot `record` writes.
    pub fn of(record: &Record) -> Self {
        Self {
            author: record.author,
            collection: record.collection.clone(),
            key: record.key.clone(),
        }
    }
}

/// A record's rank in its slot: the greater rank wins. Ordered by
/// `created_at`, then by id bytes (the derived order follows field order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Rank {
    /// The author's clock when the record was made.
    pub created_at: u64,
    /// The record id, breaking ties between equal clocks.
    pub id: RecordId,
}

impl Rank {
    /// The rank of `record`.
    pub fn of(record: &Record) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id(),
        }
    }
}

/// Whether a record ranked `a = (created_at, id)` beats one ranked `b` in the
/// same slot: a greater `created_at`, or an equal one and a greater id.
/// A record never beats itself.
pub fn wins(a: (u64, &RecordId), b: (u64, &RecordId)) -> bool {
    a > b
}

/// What [`MergeState::apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The slot was empty; the record now fills it.
    New,
    /// The record beat the slot's previous winner, whose id is given.
    Replaced(RecordId),
    /// The slot already holds a record that beats this one; it was dropped.
    Stale,
    /// The slot already holds this very record.
    Duplicate,
    /// The record has expired; it was dropped.
    Expired,
}

impl Applied {
    /// Whether the record is now its slot's winner (and so worth forwarding).
    pub fn is_stored(&self) -> bool {
        matches!(self, Self::New | Self::Replaced(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Winner {
    rank: Rank,
    record: Record,
}

/// The winner of every slot, in memory: the reference model of the merge
/// rule. Records are assumed validated; nothing is checked here but the rule.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeState {
    slots: BTreeMap<SlotKey, Winner>,
}

impl MergeState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Merges `record` into its slot at time `now_ms`.
    pub fn apply(&mut self, record: Record, now_ms: u64) -> Applied {
        if is_expired(&record, now_ms) {
            return Applied::Expired;
        }
        let rank = Rank::of(&record);
        let slot = SlotKey::of(&record);
        match self.slots.get_mut(&slot) {
            None => {
                self.slots.insert(slot, Winner { rank, record });
                Applied::New
            }
            Some(current) if current.rank == rank => Applied::Duplicate,
            Some(current) if rank > current.rank => {
                let old = current.rank.id;
                *current = Winner { rank, record };
                Applied::Replaced(old)
            }
            Some(_) => Applied::Stale,
        }
    }

    /// Drops every record whose `expires_at <= now_ms`; returns their ids.
    pub fn expire(&mut self, now_ms: u64) -> Vec<RecordId> {
        let mut gone = Vec::new();
        self.slots.retain(|_, w| {
            let keep = !is_expired(&w.record, now_ms);
            if !keep {
                gone.push(w.rank.id);
            }
            keep
        });
        gone
    }

    /// The `(created_at, id)` of every slot's winner: the set that
    /// reconciliation compares between peers.
    pub fn ids(&self) -> BTreeSet<(u64, RecordId)> {
        self.slots
            .values()
            .map(|w| (w.rank.created_at, w.rank.id))
            .collect()
    }

    /// The winner of `slot`, if any.
    pub fn get(&self, slot: &SlotKey) -> Option<&Record> {
        self.slots.get(slot).map(|w| &w.record)
    }

    /// Every slot and its winner, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&SlotKey, &Record)> {
        self.slots.iter().map(|(k, w)| (k, &w.record))
    }

    /// How many slots hold a record.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no slot holds a record.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

fn is_expired(record: &Record, now_ms: u64) -> bool {
    record.expires_at.is_some_and(|e| e <= now_ms)
}

#[cfg(test)]
mod tests {
    use cnode_identity::UserKey;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::UnsignedRecord;

    const NOW: u64 = 1000;

    fn record(
        seed: u8,
        collection: &str,
        key: &str,
        created_at: u64,
        deleted: bool,
        expires_at: Option<u64>,
        salt: u8,
    ) -> Record {
        let user = UserKey::from_seed(&[seed; 32]);
        UnsignedRecord {
            key: key.into(),
            body: if deleted {
                json!(null)
            } else {
                json!({"n": salt})
            },
            author: user.did(),
            region: "w5q6".into(),
            deleted,
            collection: collection.into(),
            created_at,
            expires_at,
        }
        .sign(&user)
    }

    #[test]
    fn wins_compares_created_at_then_id() {
        let (lo, hi) = (RecordId([1; 32]), RecordId([2; 32]));
        assert!(wins((2, &lo), (1, &hi)));
        assert!(!wins((1, &hi), (2, &lo)));
        assert!(wins((5, &hi), (5, &lo)));
        assert!(!wins((5, &lo), (5, &hi)));
        assert!(!wins((5, &lo), (5, &lo)));
        let mut first_byte = [0; 32];
        first_byte[0] = 1;
        let mut last_byte = [0xff; 32];
        last_byte[0] = 0;
        assert!(wins((5, &RecordId(first_byte)), (5, &RecordId(last_byte))));
        let (a, b) = (
            Rank {
                created_at: 5,
                id: hi,
            },
            Rank {
                created_at: 5,
                id: lo,
            },
        );
        assert!(a > b);
    }

    #[test]
    fn apply_reports_what_happened() {
        let mut s = MergeState::new();
        let old = record(1, "a.b.c", "k", 10, false, None, 0);
        let new = record(1, "a.b.c", "k", 20, false, None, 0);
        let tomb = record(1, "a.b.c", "k", 30, true, Some(2000), 0);
        assert_eq!(s.apply(old.clone(), NOW), Applied::New);
        assert_eq!(s.apply(old.clone(), NOW), Applied::Duplicate);
        assert_eq!(s.apply(new.clone(), NOW), Applied::Replaced(old.id()));
        assert_eq!(s.apply(old.clone(), NOW), Applied::Stale);
        assert_eq!(s.apply(tomb.clone(), NOW), Applied::Replaced(new.id()));
        assert!(Applied::Replaced(new.id()).is_stored());
        assert!(!Applied::Stale.is_stored());
        let slot = SlotKey::of(&tomb);
        assert_eq!(s.get(&slot), Some(&tomb));
        assert_eq!(s.ids(), BTreeSet::from([(30, tomb.id())]));
        // Another author's slot of the same collection and key is separate.
        let other = record(2, "a.b.c", "k", 5, false, None, 0);
        assert_eq!(s.apply(other.clone(), NOW), Applied::New);
        assert_eq!(s.len(), 2);
        // An expired record is dropped on arrival...
        let expired = record(3, "a.b.c", "k", 5, false, Some(NOW), 0);
        assert_eq!(s.apply(expired, NOW), Applied::Expired);
        // ...and a stored one when its time comes.
        assert_eq!(s.expire(1999), vec![]);
        assert_eq!(s.expire(2000), vec![tomb.id()]);
        assert_eq!(s.get(&slot), None);
        assert_eq!(
            s.iter().map(|(_, r)| r.id()).collect::<Vec<_>>(),
            vec![other.id()]
        );
    }

    #[test]
    fn equal_clocks_are_broken_by_id() {
        let a = record(1, "a.b.c", "k", 10, false, None, 1);
        let b = record(1, "a.b.c", "k", 10, false, None, 2);
        let (lo, hi) = if a.id() < b.id() { (a, b) } else { (b, a) };
        let mut s = MergeState::new();
        s.apply(hi.clone(), NOW);
        assert_eq!(s.apply(lo.clone(), NOW), Applied::Stale);
        let mut t = MergeState::new();
        t.apply(lo.clone(), NOW);
        assert_eq!(t.apply(hi.clone(), NOW), Applied::Replaced(lo.id()));
        assert_eq!(s, t);
    }

    /// A record over 2 authors × 2 collections × 2 keys, clocks in a narrow
    /// range (so ties happen), some tombstones, some expiring around `NOW`.
    fn arb_record() -> impl Strategy<Value = Record> {
        (
            0u8..2,
            prop::sample::select(vec!["a.b.c", "org.cnode.notices"]),
            prop::sample::select(vec!["k1", "k2"]),
            0u64..8,
            any::<bool>(),
            prop::option::weighted(0.3, 995u64..1005),
            0u8..3,
        )
            .prop_map(|(seed, c, k, t, deleted, exp, salt)| {
                // expires_at > created_at holds for every generated record.
                record(seed, c, k, t, deleted, exp, salt)
            })
    }

    /// The records, and two delivery orders: each a permutation of all of
    /// them with some repeated.
    fn arb_deliveries() -> impl Strategy<Value = (Vec<Record>, Vec<usize>, Vec<usize>)> {
        prop::collection::vec(arb_record(), 1..24).prop_flat_map(|records| {
            let n = records.len();
            let order = move || {
                prop::collection::vec(0..n, 0..n).prop_flat_map(move |dups| {
                    let mut all: Vec<usize> = (0..n).collect();
                    all.extend(dups);
                    Just(all).prop_shuffle()
                })
            };
            (Just(records), order(), order())
        })
    }

    fn run(records: &[Record], order: &[usize]) -> MergeState {
        let mut s = MergeState::new();
        for &i in order {
            s.apply(records[i].clone(), NOW);
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_order_any_duplication_same_state((records, o1, o2) in arb_deliveries()) {
            let s1 = run(&records, &o1);
            let s2 = run(&records, &o2);
            prop_assert_eq!(&s1, &s2);

            // The oracle: per slot, the max (created_at, id) among records
            // not expired at NOW.
            let mut expected: BTreeMap<SlotKey, &Record> = BTreeMap::new();
            for r in records.iter().filter(|r| !is_expired(r, NOW)) {
                let e = expected.entry(SlotKey::of(r)).or_insert(r);
                if wins((r.created_at, &r.id()), (e.created_at, &e.id())) {
                    *e = r;
                }
            }
            prop_assert_eq!(s1.len(), expected.len());
            for (slot, winner) in &expected {
                prop_assert_eq!(s1.get(slot), Some(*winner));
            }
            let ids: BTreeSet<_> = expected.values().map(|r| (r.created_at, r.id())).collect();
            prop_assert_eq!(s1.ids(), ids);

            // Expiring later removes exactly the winners that expire by then,
            // the same way in both states.
            let (mut e1, mut e2) = (s1.clone(), s2);
            let later = NOW + 3;
            let mut gone1 = e1.expire(later);
            let mut gone2 = e2.expire(later);
            gone1.sort();
            gone2.sort();
            prop_assert_eq!(&gone1, &gone2);
            prop_assert_eq!(&e1, &e2);
            let still: BTreeSet<_> = s1
                .iter()
                .filter(|(_, r)| !is_expired(r, later))
                .map(|(_, r)| (r.created_at, r.id()))
                .collect();
            prop_assert_eq!(e1.ids(), still);
        }
    }
}
