use std::collections::BTreeSet;

use cnode_identity::UserKey;
use proptest::prelude::*;
use serde_json::json;

use super::{query::Strategy as Via, *};
use crate::record::UnsignedRecord;

const T0: u64 = 1_764_000_000_000;
const CHIANG_MAI: (f64, f64) = (18.7883, 98.9853);

fn key(n: u8) -> UserKey {
    UserKey::from_seed(&[n; 32])
}

struct R {
    author: u8,
    key: String,
    collection: &'static str,
    region: String,
    created_at: u64,
    body: serde_json::Value,
    deleted: bool,
    expires_at: Option<u64>,
}

impl R {
    fn new(author: u8, key: &str, created_at: u64) -> Self {
        Self {
            author,
            key: key.into(),
            collection: "org.cnode.notices",
            region: "w5q6u8j".into(),
            created_at,
            body: json!({"title": key}),
            deleted: false,
            expires_at: None,
        }
    }
    fn body(mut self, body: serde_json::Value) -> Self {
        self.body = body;
        self
    }
    fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }
    fn deleted(mut self) -> Self {
        self.deleted = true;
        self.body = json!({});
        self
    }
    fn expires(mut self, at: u64) -> Self {
        self.expires_at = Some(at);
        self
    }
    fn collection(mut self, c: &'static str) -> Self {
        self.collection = c;
        self
    }
    fn sign(self) -> Record {
        let k = key(self.author);
        UnsignedRecord {
            key: self.key,
            body: self.body,
            author: k.did(),
            region: self.region,
            deleted: self.deleted,
            collection: self.collection.into(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        }
        .sign(&k)
    }
}

fn open() -> (tempfile::TempDir, RecordStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = RecordStore::new(Store::open(dir.path()).unwrap());
    (dir, store)
}

fn region(s: &str) -> RegionId {
    s.parse().unwrap()
}

async fn ids(store: &RecordStore, q: Query) -> Vec<RecordId> {
    store
        .query_at(q, T0)
        .await
        .unwrap()
        .records
        .iter()
        .map(|r| r.id)
        .collect()
}

fn text(t: &str) -> Query {
    Query {
        text: Some(t.into()),
        ..Query::default()
    }
}

/// Runs `q` with candidates found by `strategy`, following every cursor.
async fn all_pages(store: &RecordStore, mut q: Query, strategy: Option<Via>) -> Vec<StoredRecord> {
    let mut out = Vec::new();
    for _ in 0..1000 {
        let plan = query::Plan::new(q.clone(), T0).unwrap();
        let page = store
            .db()
            .call(move |c| plan.run_with(c, strategy))
            .await
            .unwrap()
            .unwrap();
        out.extend(page.records);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn merge_rule_newer_wins_older_is_stale_same_is_duplicate() {
    let (_dir, store) = open();
    let v1 = R::new(1, "cafe", T0).sign();
    let v2 = R::new(1, "cafe", T0 + 1)
        .body(json!({"title": "v2"}))
        .sign();
    assert_eq!(
        store.insert(v1.clone(), T0).await.unwrap(),
        InsertOutcome::Inserted { replaced: None }
    );
    assert_eq!(
        store.insert(v1.clone(), T0).await.unwrap(),
        InsertOutcome::Duplicate
    );
    assert_eq!(
        store.insert(v2.clone(), T0).await.unwrap(),
        InsertOutcome::Inserted {
            replaced: Some((T0, v1.id()))
        }
    );
    assert_eq!(
        store.insert(v1.clone(), T0).await.unwrap(),
        InsertOutcome::Stale
    );
    assert_eq!(store.count(None).await.unwrap(), 1);
    assert!(store.get(&v1.id()).await.unwrap().is_none());
    let got = store.get(&v2.id()).await.unwrap().unwrap();
    assert_eq!(got.record, v2);
    assert_eq!(got.received_ms, T0);

    // Same created_at: the greater id wins, whatever the arrival order.
    let a = R::new(2, "k", T0).body(json!({"title": "a"})).sign();
    let b = R::new(2, "k", T0).body(json!({"title": "b"})).sign();
    let (lo, hi) = if a.id() < b.id() { (a, b) } else { (b, a) };
    let out = store
        .insert_many(vec![hi.clone(), lo.clone()], T0)
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            InsertOutcome::Inserted { replaced: None },
            InsertOutcome::Stale
        ]
    );
    let (_dir2, other) = open();
    let out = other
        .insert_many(vec![lo.clone(), hi.clone()], T0)
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            InsertOutcome::Inserted { replaced: None },
            InsertOutcome::Inserted {
                replaced: Some((T0, lo.id()))
            }
        ]
    );
    for s in [&store, &other] {
        assert!(s.get(&hi.id()).await.unwrap().is_some());
        assert!(s.get(&lo.id()).await.unwrap().is_none());
    }

    // Different slots (author, collection or key) do not interact.
    let out = store
        .insert_many(
            vec![
                R::new(3, "cafe", T0).sign(),
                R::new(1, "cafe", T0).collection("org.cnode.events").sign(),
                R::new(1, "cafe2", T0).sign(),
            ],
            T0,
        )
        .await
        .unwrap();
    assert!(
        out.iter()
            .all(|o| *o == InsertOutcome::Inserted { replaced: None })
    );
    assert_eq!(store.count(None).await.unwrap(), 5);
}

#[tokio::test]
async fn invalid_regions_are_reported_not_stored() {
    let (_dir, store) = open();
    let out = store
        .insert_many(
            vec![
                R::new(1, "a", T0).region("w5q").sign(),
                R::new(1, "b", T0).region("w5q6u8jx").sign(),
                R::new(1, "c", T0).region("w5qa").sign(),
                R::new(1, "d", T0).region("w5q6").sign(),
            ],
            T0,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], InsertOutcome::Invalid { .. }), "{out:?}");
    assert!(matches!(out[1], InsertOutcome::Invalid { .. }), "{out:?}");
    assert!(matches!(out[2], InsertOutcome::Invalid { .. }), "{out:?}");
    assert_eq!(out[3], InsertOutcome::Inserted { replaced: None });
    assert_eq!(store.count(None).await.unwrap(), 1);
}

#[tokio::test]
async fn tombstone_hides_the_slot_but_stays_in_sync_items() {
    let (_dir, store) = open();
    let live = R::new(1, "cafe", T0)
        .body(json!({"title": "coffee"}))
        .sign();
    let tomb = R::new(1, "cafe", T0 + 5).deleted().sign();
    store.insert(live.clone(), T0).await.unwrap();
    assert_eq!(ids(&store, text("coffee")).await, vec![live.id()]);
    assert_eq!(
        store.insert(tomb.clone(), T0).await.unwrap(),
        InsertOutcome::Inserted {
            replaced: Some((T0, live.id()))
        }
    );
    // The older live record cannot come back.
    assert_eq!(
        store.insert(live.clone(), T0).await.unwrap(),
        InsertOutcome::Stale
    );
    assert!(ids(&store, Query::default()).await.is_empty());
    assert!(ids(&store, text("coffee")).await.is_empty());
    let with_deleted = Query {
        include_deleted: true,
        ..Query::default()
    };
    assert_eq!(ids(&store, with_deleted).await, vec![tomb.id()]);
    assert_eq!(
        store.sync_items(region("w5q6")).await.unwrap(),
        vec![(T0 + 5, tomb.id())]
    );
    assert_eq!(store.get(&tomb.id()).await.unwrap().unwrap().record, tomb);
}

#[tokio::test]
async fn expired_records_are_dropped_hidden_and_swept() {
    let (_dir, store) = open();
    let now = now_ms();
    let gone = R::new(1, "old", T0).expires(T0 + 10).sign();
    assert_eq!(
        store.insert(gone, T0 + 10).await.unwrap(),
        InsertOutcome::Expired
    );

    let soon = R::new(1, "soon", T0).expires(T0 + 100).sign();
    let later = R::new(2, "later", T0).expires(now + 3_600_000).sign();
    let never = R::new(3, "never", T0 + 1).sign();
    store
        .insert_many(vec![soon.clone(), later.clone(), never.clone()], T0)
        .await
        .unwrap();
    // Before the sweep: hidden from queries at a later time, and (the system
    // clock being past T0 + 100) from get, serving and sync.
    let page = store.query_at(Query::default(), T0 + 50).await.unwrap();
    assert_eq!(page.records.len(), 3);
    let page = store.query_at(Query::default(), T0 + 100).await.unwrap();
    let got: BTreeSet<_> = page.records.iter().map(|r| r.id).collect();
    assert_eq!(got, BTreeSet::from([later.id(), never.id()]));
    assert!(store.get(&soon.id()).await.unwrap().is_none());
    assert_eq!(
        store
            .get_encoded_many(vec![soon.id(), never.id()])
            .await
            .unwrap(),
        vec![never.encode()]
    );
    let sync: Vec<_> = store.sync_items(region("w5q6")).await.unwrap();
    assert_eq!(sync.len(), 2);
    assert_eq!(store.count(None).await.unwrap(), 3);

    let swept = store.expire(T0 + 100).await.unwrap();
    assert_eq!(swept, vec![(region("w5q6"), T0, soon.id())]);
    assert_eq!(store.count(None).await.unwrap(), 2);
    // Once expired, it is refused on arrival too.
    assert_eq!(
        store.insert(soon, T0 + 100).await.unwrap(),
        InsertOutcome::Expired
    );
    assert_eq!(store.expire(now + 3_600_000).await.unwrap().len(), 1);
    assert_eq!(store.count(None).await.unwrap(), 1);
}

#[tokio::test]
async fn text_search_thai_chinese_english() {
    let (_dir, store) = open();
    let thai = R::new(1, "thai", T0)
        .body(json!({"title": "ร้านกาแฟดอยช้าง", "tags": ["coffee"]}))
        .sign();
    let chinese = R::new(2, "zh", T0 + 1)
        .body(json!({"title": "清迈夜市", "place": {"name": "Night Bazaar"}}))
        .sign();
    let english = R::new(3, "en", T0 + 2)
        .body(json!({"title": "Coffee Roasters Workshop", "description": "Learn to roast beans", "n": 5}))
        .sign();
    store
        .insert_many(vec![thai.clone(), chinese.clone(), english.clone()], T0)
        .await
        .unwrap();
    for strategy in [None, Some(Via::Walk), Some(Via::Text)] {
        let find = |t: &str| {
            let q = text(t);
            let store = store.clone();
            async move {
                let mut v: Vec<_> = all_pages(&store, q, strategy)
                    .await
                    .iter()
                    .map(|r| r.id)
                    .collect();
                v.sort();
                v
            }
        };
        let sorted = |mut v: Vec<RecordId>| {
            v.sort();
            v
        };
        assert_eq!(find("กาแฟ").await, vec![thai.id()], "{strategy:?}");
        assert_eq!(find("ดอยช้าง").await, vec![thai.id()]);
        assert_eq!(
            find("夜市").await,
            vec![chinese.id()],
            "two characters: no trigram"
        );
        assert_eq!(find("清迈夜市").await, vec![chinese.id()]);
        assert_eq!(find("COFFEE").await, sorted(vec![thai.id(), english.id()]));
        assert_eq!(find("roast").await, vec![english.id()]);
        assert_eq!(find("bazaar 夜").await, vec![chinese.id()]);
        assert_eq!(find("coffee beans").await, vec![english.id()]);
        assert_eq!(find("coffee tea").await, Vec::<RecordId>::new());
        // Short words fall back to substring checks.
        assert_eq!(find("ro").await, vec![english.id()]);
        assert_eq!(find("e").await, sorted(vec![thai.id(), english.id()]));
        assert_eq!(find("t").await, sorted(vec![chinese.id(), english.id()]));
        // Keys and numbers are not text; FTS5 syntax is taken literally.
        assert!(find("title").await.is_empty());
        assert!(find("5").await.is_empty());
        for hostile in [
            "\"",
            "coffee\" OR \"x",
            "NEAR(coffee roast)",
            "cof*",
            "a:b",
            "'); DROP",
            "%",
            "_",
            "\\",
            "\0x",
        ] {
            assert!(find(hostile).await.is_empty(), "{hostile}");
        }
    }
    // Word order and case do not matter; the whole text is limited.
    assert_eq!(
        ids(&store, text("  WORKSHOP   coffee ")).await,
        vec![english.id()]
    );
    let long = "x".repeat(MAX_QUERY_TEXT + 1);
    assert!(matches!(
        store.query(text(&long)).await,
        Err(RecordStoreError::Query(QueryError::TextTooLong(_)))
    ));
}

#[tokio::test]
async fn filters_by_collection_author_region_and_time() {
    let (_dir, store) = open();
    let a = R::new(1, "a", T0).sign();
    let b = R::new(2, "b", T0 + 10)
        .collection("org.cnode.events")
        .sign();
    let c = R::new(1, "c", T0 + 20).region("w5q7").sign();
    store
        .insert_many(vec![a.clone(), b.clone(), c.clone()], T0)
        .await
        .unwrap();
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        q
    };
    assert_eq!(
        ids(
            &store,
            q(|q| q.collection = Some("org.cnode.events".into()))
        )
        .await,
        vec![b.id()]
    );
    assert_eq!(
        ids(&store, q(|q| q.author = Some(key(1).did()))).await,
        vec![c.id(), a.id()]
    );
    assert_eq!(
        ids(&store, q(|q| q.region = Some(region("w5q6")))).await,
        vec![b.id(), a.id()]
    );
    assert_eq!(
        ids(&store, q(|q| q.since_ms = Some(T0 + 10))).await,
        vec![c.id(), b.id()]
    );
    assert_eq!(
        ids(&store, q(|q| q.until_ms = Some(T0 + 10))).await,
        vec![a.id()]
    );
    assert_eq!(
        ids(
            &store,
            q(|q| {
                q.since_ms = Some(T0 + 5);
                q.until_ms = Some(T0 + 15);
            })
        )
        .await,
        vec![b.id()]
    );
}

#[tokio::test]
async fn pagination_newest_first_without_overlap_or_gap() {
    let (_dir, store) = open();
    let mut all = Vec::new();
    for i in 0..40u64 {
        // Pairs share a created_at, so the id breaks ties across pages.
        let r = R::new((i % 5) as u8, &format!("k{i}"), T0 + i / 2)
            .body(json!({"title": format!("market stall {i}")}))
            .sign();
        all.push(r);
    }
    store.insert_many(all.clone(), T0).await.unwrap();
    let mut expected: Vec<_> = all.iter().map(|r| (r.created_at, r.id())).collect();
    expected.sort();
    expected.reverse();
    let expected: Vec<RecordId> = expected.into_iter().map(|(_, id)| id).collect();
    for strategy in [
        None,
        Some(Via::Walk),
        Some(Via::Text),
        Some(Via::Geo),
        Some(Via::GeoWalk),
        Some(Via::Author),
    ] {
        for q in [
            Query {
                limit: 7,
                ..Query::default()
            },
            Query {
                limit: 7,
                text: Some("market".into()),
                ..Query::default()
            },
            Query {
                limit: 7,
                region: Some(region("w5q6")),
                near: Some(Near {
                    lat: CHIANG_MAI.0,
                    lon: CHIANG_MAI.1,
                    radius_m: 50_000.0,
                }),
                ..Query::default()
            },
            // The records sit in w5q6u8j: a small circle around it is
            // walked cell by cell.
            Query {
                limit: 7,
                near: Some(Near {
                    lat: 18.7653,
                    lon: 98.9944,
                    radius_m: 2_000.0,
                }),
                ..Query::default()
            },
        ] {
            let got: Vec<RecordId> = all_pages(&store, q.clone(), strategy)
                .await
                .iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(got, expected, "{strategy:?} {q:?}");
        }
    }
    // One author's records, through every way of finding them.
    for strategy in [None, Some(Via::Walk), Some(Via::Author)] {
        let q = Query {
            limit: 3,
            author: Some(key(2).did()),
            ..Query::default()
        };
        let mine: Vec<RecordId> = all
            .iter()
            .filter(|r| r.author == key(2).did())
            .map(|r| r.id())
            .collect();
        let got: BTreeSet<RecordId> = all_pages(&store, q.clone(), strategy)
            .await
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(got, mine.iter().copied().collect(), "{strategy:?}");
        let ordered: Vec<RecordId> = all_pages(&store, q, strategy)
            .await
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(
            ordered,
            expected
                .iter()
                .copied()
                .filter(|id| mine.contains(id))
                .collect::<Vec<_>>()
        );
    }
    let first = store
        .query_at(
            Query {
                limit: 7,
                ..Query::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(first.records.len(), 7);
    let exact = store
        .query_at(
            Query {
                limit: 40,
                ..Query::default()
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(exact.records.len(), 40);
    assert_eq!(exact.next_cursor, None);
    // A cursor is checked.
    for bad in ["", "n.1", "x.1.00", "n.1.zz"] {
        let q = Query {
            cursor: Some(bad.into()),
            ..Query::default()
        };
        assert!(
            matches!(
                store.query(q).await,
                Err(RecordStoreError::Query(QueryError::BadCursor))
            ),
            "{bad}"
        );
    }
    let q = Query {
        cursor: first.next_cursor.clone(),
        text: Some("market".into()),
        order: Order::Relevance,
        ..Query::default()
    };
    assert!(matches!(
        store.query(q).await,
        Err(RecordStoreError::Query(QueryError::BadCursor))
    ));
}

#[tokio::test]
async fn relevance_order() {
    let (_dir, store) = open();
    let once = R::new(1, "once", T0 + 3)
        .body(json!({"title": "weekend market", "description": "fruit vegetables flowers handicrafts clothes and much more in the old town"}))
        .sign();
    let twice = R::new(2, "twice", T0 + 2)
        .body(json!({"title": "noodles noodles", "d": "noodle soup"}))
        .sign();
    let best = R::new(3, "best", T0 + 1)
        .body(json!({"title": "noodles"}))
        .sign();
    let none = R::new(4, "none", T0 + 4)
        .body(json!({"title": "coffee"}))
        .sign();
    let weak = R::new(5, "weak", T0).body(json!({"title": "noodles and a very long description of many other things that dilute the match"})).sign();
    store
        .insert_many(
            vec![
                once.clone(),
                twice.clone(),
                best.clone(),
                none.clone(),
                weak.clone(),
            ],
            T0,
        )
        .await
        .unwrap();
    let q = Query {
        text: Some("noodle".into()),
        order: Order::Relevance,
        ..Query::default()
    };
    let got: Vec<RecordId> = ids(&store, q.clone()).await;
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], weak.id(), "the long, diluted body ranks last");
    assert!(got[..2].contains(&twice.id()) && got[..2].contains(&best.id()));
    // Pages in relevance order match the single page.
    let paged: Vec<RecordId> = all_pages(
        &store,
        Query {
            limit: 1,
            ..q.clone()
        },
        None,
    )
    .await
    .iter()
    .map(|r| r.id)
    .collect();
    assert_eq!(paged, got);
    // Newest is the default.
    assert_eq!(
        ids(&store, text("noodle")).await,
        vec![twice.id(), best.id(), weak.id()]
    );
    // Relevance needs text; words under three characters rank by newest.
    let q = Query {
        order: Order::Relevance,
        ..Query::default()
    };
    assert!(matches!(
        store.query(q).await,
        Err(RecordStoreError::Query(QueryError::RelevanceWithoutText))
    ));
    let q = Query {
        order: Order::Relevance,
        text: Some("no".into()),
        ..Query::default()
    };
    assert_eq!(ids(&store, q).await, vec![twice.id(), best.id(), weak.id()]);
}

#[tokio::test]
async fn sync_items_sorted_regions_held_and_drop_region() {
    let (_dir, store) = open();
    let mut w5q6 = Vec::new();
    for i in 0..20u64 {
        let r = R::new(i as u8, "k", T0 + (i * 7) % 5).sign();
        w5q6.push((r.created_at, r.id()));
        store.insert(r, T0).await.unwrap();
    }
    for i in 0..3u64 {
        store
            .insert(R::new(1, &format!("x{i}"), T0).region("w4rq").sign(), T0)
            .await
            .unwrap();
    }
    w5q6.sort();
    assert_eq!(store.sync_items(region("w5q6")).await.unwrap(), w5q6);
    assert_eq!(store.sync_items(region("w4rq")).await.unwrap().len(), 3);
    assert!(store.sync_items(region("u4pr")).await.unwrap().is_empty());
    assert_eq!(
        store.regions_held().await.unwrap(),
        vec![region("w4rq"), region("w5q6")]
    );
    assert_eq!(store.count(Some(region("w5q6"))).await.unwrap(), 20);

    assert_eq!(store.drop_region(region("w5q6")).await.unwrap(), 20);
    assert_eq!(store.regions_held().await.unwrap(), vec![region("w4rq")]);
    assert_eq!(store.count(None).await.unwrap(), 3);
    assert!(store.sync_items(region("w5q6")).await.unwrap().is_empty());
    // The text index went with the rows (checked against the content).
    store
        .db()
        .call(|c| {
            c.execute(
                "INSERT INTO records_fts(records_fts, rank) VALUES ('integrity-check', 1)",
                [],
            )
        })
        .await
        .unwrap();
    assert_eq!(store.drop_region(region("w5q6")).await.unwrap(), 0);
}

#[tokio::test]
async fn encodings_are_served_byte_for_byte() {
    let (_dir, store) = open();
    let a = R::new(1, "a", T0).sign();
    let b = R::new(2, "b", T0)
        .body(json!({"title": "ร้าน", "x": [1.5, null, true]}))
        .sign();
    store
        .insert_many(vec![a.clone(), b.clone()], T0)
        .await
        .unwrap();
    let missing = RecordId([9; 32]);
    let got = store
        .get_encoded_many(vec![b.id(), missing, a.id()])
        .await
        .unwrap();
    assert_eq!(got, vec![b.encode(), a.encode()]);
    assert_eq!(RecordId(*blake3::hash(&got[0]).as_bytes()), b.id());
}

#[tokio::test]
async fn bad_near_is_refused() {
    let (_dir, store) = open();
    let q = Query {
        near: Some(Near {
            lat: 0.0,
            lon: 0.0,
            radius_m: 2_000_000.0,
        }),
        ..Query::default()
    };
    assert!(matches!(
        store.query(q).await,
        Err(RecordStoreError::Query(QueryError::Near(
            geo::GeoError::RadiusTooLarge(_)
        )))
    ));
}

/// Random 7-character geohashes within ~30 km of Chiang Mai, with some
/// coarser ones (positions at the centre of a bigger cell).
fn scattered() -> impl Strategy<Value = Vec<(f64, f64, usize, bool)>> {
    prop::collection::vec(
        (-0.3..0.3f64, -0.3..0.3f64, 4usize..=7, any::<bool>()),
        1..60,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn radius_query_equals_brute_force(
        points in scattered(),
        (dlat, dlon) in (-0.2..0.2f64, -0.2..0.2f64),
        radius in prop_oneof![0.0..3_000.0f64, 0.0..40_000.0f64],
        word in prop_oneof![Just(None), Just(Some("market")), Just(Some("ma"))],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (_dir, store) = open();
            let mut records = Vec::new();
            for (i, &(la, lo, p, market)) in points.iter().enumerate() {
                let g = geo::encode(CHIANG_MAI.0 + la, CHIANG_MAI.1 + lo, p);
                let title = if market { format!("night market {i}") } else { format!("temple {i}") };
                records.push(R::new(i as u8, "k", T0 + i as u64 % 7).region(&g).body(json!({"title": title})).sign());
            }
            store.insert_many(records.clone(), T0).await.unwrap();
            let (clat, clon) = (CHIANG_MAI.0 + dlat, CHIANG_MAI.1 + dlon);
            let mut expected: Vec<(u64, RecordId, f64)> = records
                .iter()
                .filter(|r| word.is_none_or(|w| r.body["title"].as_str().unwrap_or("").contains(w)))
                .filter_map(|r| {
                    let c = geo::decode(&r.region).unwrap();
                    let d = geo::haversine_m((clat, clon), (c.lat, c.lon));
                    (d <= radius).then_some((r.created_at, r.id(), d))
                })
                .collect();
            expected.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
            let q = Query {
                near: Some(Near { lat: clat, lon: clon, radius_m: radius }),
                text: word.map(String::from),
                limit: 5,
                ..Query::default()
            };
            for strategy in [None, Some(Via::Walk), Some(Via::GeoWalk), Some(Via::Geo), Some(Via::Text), Some(Via::Author)] {
                let got = all_pages(&store, q.clone(), strategy).await;
                let got_ids: Vec<(u64, RecordId)> = got.iter().map(|r| (r.record.created_at, r.id)).collect();
                let want: Vec<(u64, RecordId)> = expected.iter().map(|e| (e.0, e.1)).collect();
                assert_eq!(got_ids, want, "{strategy:?}");
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!(g.distance_m, Some(e.2));
                }
            }
        });
    }
}

mod plans;
mod scale;
