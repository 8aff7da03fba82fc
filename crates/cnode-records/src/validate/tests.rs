//! Tests of the parent module.

use cnode_identity::UserKey;
use serde_json::{Value, json};

use super::*;
use crate::{UnsignedRecord, schema};

const NOW: u64 = 1_764_000_000_000;
const MIN: u64 = 60 * 1000;
const CID: &str = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";

fn key() -> UserKey {
    UserKey::from_seed(&[1; 32])
}

fn unsigned(collection: &str, body: Value) -> UnsignedRecord {
    UnsignedRecord {
        key: "k1".into(),
        body,
        author: key().did(),
        region: "w5q6u8j".into(),
        deleted: false,
        collection: collection.into(),
        created_at: NOW,
        expires_at: None,
    }
}

fn notice() -> UnsignedRecord {
    unsigned(
        schema::NOTICES,
        json!({"title": "Water cut", "body": "Tuesday"}),
    )
}

fn with(f: impl FnOnce(&mut UnsignedRecord)) -> Record {
    let mut r = notice();
    f(&mut r);
    r.sign(&key())
}

fn check_live(r: &Record) -> Result<(), Reject> {
    check(r, Path::Live, NOW, &Limits::default())
}

fn label(r: &Record) -> &'static str {
    check_live(r).expect_err("refused").label()
}

#[test]
fn valid_records_of_every_built_in_collection_pass() {
    let records = [
        unsigned(
            schema::EVENTS,
            json!({"title": "Sunday market", "starts_at": NOW, "ends_at": NOW + 3_600_000,
                   "place": "Tha Phae Gate", "url": "https://example.org", "image": CID}),
        ),
        unsigned(
            schema::LISTINGS,
            json!({"title": "Bicycle", "price": 1500, "currency": "THB",
                   "contact": "Line: @bike", "images": [CID]}),
        ),
        notice(),
        unsigned(
            "com.example.chat",
            json!({"anything": [1, 2.5, null, {"x": true}]}),
        ),
        UnsignedRecord {
            deleted: true,
            body: Value::Null,
            ..notice()
        },
        UnsignedRecord {
            deleted: true,
            body: json!({}),
            expires_at: Some(NOW + 1),
            region: "w5q6".into(),
            ..notice()
        },
    ];
    for r in records {
        let r = r.sign(&key());
        assert_eq!(check_live(&r), Ok(()), "{r:?}");
        assert_eq!(check(&r, Path::Sync, NOW, &Limits::default()), Ok(()));
    }
}

#[test]
fn signature_and_proof_version() {
    let mut r = notice().sign(&key());
    r.proof.sig[0] ^= 1;
    assert_eq!(check_live(&r), Err(Reject::BadSignature));
    // Signed by someone else than the author.
    let mut u = notice();
    u.author = UserKey::from_seed(&[2; 32]).did();
    assert_eq!(label(&u.sign(&key())), "bad_signature");
    let mut r = notice().sign(&key());
    r.proof.sig.truncate(10);
    assert_eq!(label(&r), "bad_signature");
    let mut r = notice().sign(&key());
    r.proof.v = 2;
    assert_eq!(check_live(&r), Err(Reject::UnsupportedProofVersion(2)));
    assert_eq!(
        Reject::UnsupportedProofVersion(2).to_string(),
        "unsupported proof version 2"
    );
}

#[test]
fn sizes_and_depth() {
    // A body just over 64 KiB (the whole record is still under 72 KiB).
    let r = with(|u| u.body = json!({"title": "t", "body": "x".repeat(64 * 1024)}));
    assert!(matches!(
        check_live(&r),
        Err(Reject::BodyTooLarge { max: 65536, .. })
    ));
    let r = with(|u| u.body = json!("x".repeat(64 * 1024 - 10)));
    assert_eq!(label(&r), "schema_violation", "a string is not a notice");
    let r = with(|u| {
        u.collection = "com.example.raw".into();
        u.body = json!("x".repeat(64 * 1024 - 10));
    });
    assert_eq!(check_live(&r), Ok(()));
    // The whole-record limit, tightened so a small record exceeds it.
    let limits = Limits {
        max_record_bytes: 100,
        ..Limits::default()
    };
    let r = notice().sign(&key());
    assert!(matches!(
        check(&r, Path::Live, NOW, &limits),
        Err(Reject::TooLarge { max: 100, .. })
    ));
    // Depth: 16 levels pass, 17 do not.
    let nest = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    let r = with(|u| {
        u.collection = "com.example.raw".into();
        u.body = nest(16);
    });
    assert_eq!(check_live(&r), Ok(()));
    let r = with(|u| {
        u.collection = "com.example.raw".into();
        u.body = json!({"a": nest(16)});
    });
    assert_eq!(check_live(&r), Err(Reject::TooDeep { max: 16 }));
    assert!(!depth_exceeds(&json!(1), 0));
    assert!(depth_exceeds(&json!({}), 0));
    assert!(!depth_exceeds(&json!({"a": [], "b": {"c": 1}}), 2));
    assert!(depth_exceeds(&json!({"a": [], "b": {"c": []}}), 2));
}

#[test]
fn clock_window_and_expiry() {
    let r = with(|u| u.created_at = NOW + 10 * MIN);
    assert_eq!(check_live(&r), Ok(()));
    let r = with(|u| u.created_at = NOW + 10 * MIN + 1);
    assert_eq!(label(&r), "from_the_future");
    assert_eq!(
        check(&r, Path::Sync, NOW, &Limits::default())
            .expect_err("future on sync too")
            .label(),
        "from_the_future"
    );
    let r = with(|u| u.created_at = NOW - 10 * MIN);
    assert_eq!(check_live(&r), Ok(()));
    let r = with(|u| u.created_at = NOW - 10 * MIN - 1);
    assert_eq!(label(&r), "too_old");
    // Sync accepts old records.
    let r = with(|u| u.created_at = NOW - 365 * 24 * 60 * MIN);
    assert_eq!(check(&r, Path::Sync, NOW, &Limits::default()), Ok(()));

    let r = with(|u| {
        u.created_at = NOW - 5 * MIN;
        u.expires_at = Some(NOW);
    });
    assert_eq!(
        check(&r, Path::Sync, NOW, &Limits::default()),
        Err(Reject::Expired {
            expires_at: NOW,
            now_ms: NOW
        })
    );
    let r = with(|u| u.expires_at = Some(NOW));
    assert_eq!(label(&r), "bad_expiry");
    let r = with(|u| u.expires_at = Some(NOW - 1));
    assert_eq!(label(&r), "bad_expiry");
    // Near the ends of u64 nothing overflows.
    let r = with(|u| u.created_at = u64::MAX);
    assert_eq!(check(&r, Path::Live, u64::MAX, &Limits::default()), Ok(()));
    let r = with(|u| u.created_at = 0);
    assert_eq!(check(&r, Path::Live, 0, &Limits::default()), Ok(()));
}

#[test]
fn geohash_collection_and_key() {
    for region in ["w5q6", "w5q6u8j", "0000", "zzzzzzz"] {
        assert_eq!(
            check_live(&with(|u| u.region = region.into())),
            Ok(()),
            "{region}"
        );
    }
    for region in [
        "", "w5q", "w5q6u8jx", "W5Q6", "w5qa", "w5q6 ", "w5qé", "w5q6i",
    ] {
        assert_eq!(
            label(&with(|u| u.region = region.into())),
            "bad_geohash",
            "{region}"
        );
    }
    let long = "x".repeat(1000);
    let e = check_live(&with(|u| u.region = long.clone())).expect_err("long region");
    assert!(e.to_string().len() < 200, "{e}");

    for collection in ["org.cnode.events", "com.example.a-b.c9", "a.b.c"] {
        let r = with(|u| {
            u.collection = collection.into();
            u.body = json!({"title": "x", "starts_at": 1, "place": "p"});
        });
        assert_eq!(check_live(&r), Ok(()), "{collection}");
    }
    let long = format!("org.cnode.{}", "a".repeat(119));
    for collection in [
        "org.cnode",
        "events",
        "",
        "org..cnode.events",
        ".org.cnode.events",
        "org.cnode.events.",
        "org.cnode.Events",
        "org.cnode.ev_ents",
        "org.cnode.évents",
        &long,
    ] {
        assert_eq!(
            label(&with(|u| u.collection = collection.into())),
            "bad_collection",
            "{collection}"
        );
    }
    let ok_long = format!("org.cnode.{}", "a".repeat(118));
    let r = with(|u| {
        u.collection = ok_long;
        u.body = json!(null);
    });
    assert_eq!(check_live(&r), Ok(()));

    for k in ["a", "event/2025-11-24", "ร้านกาแฟ", &"k".repeat(128)] {
        assert_eq!(check_live(&with(|u| u.key = k.into())), Ok(()), "{k}");
    }
    for k in [
        "",
        "a\nb",
        "tab\t",
        "nul\0",
        "del\u{7f}",
        "c1\u{85}",
        &"k".repeat(129),
    ] {
        assert_eq!(label(&with(|u| u.key = k.into())), "bad_key", "{k:?}");
    }
}

#[test]
fn schema_violations_and_tombstones() {
    let r = with(|u| u.body = json!({"title": "t", "body": "b", "price": 3}));
    assert_eq!(
        check_live(&r),
        Err(Reject::SchemaViolation {
            collection: schema::NOTICES.into(),
            field: "price".into(),
            reason: Problem::Unknown,
        })
    );
    assert_eq!(
        check_live(&r).expect_err("refused").to_string(),
        "schema violation in org.cnode.notices: field price: unknown field"
    );
    // A tombstone skips the schema but must be empty.
    let r = with(|u| {
        u.deleted = true;
        u.body = json!({"title": "t"});
    });
    assert_eq!(label(&r), "schema_violation");
    let r = with(|u| {
        u.deleted = true;
        u.body = json!({});
    });
    assert_eq!(check_live(&r), Ok(()));
}

#[test]
fn rate_limiter_token_bucket() {
    let limits = Limits {
        rate_burst: 3,
        rate_refill_ms: 2000,
        ..Limits::default()
    };
    let mut rl = RateLimiter::new(&limits);
    let alice = key().did();
    let bob = UserKey::from_seed(&[2; 32]).did();
    for _ in 0..3 {
        assert_eq!(rl.check(&alice, 0), Ok(()));
    }
    assert_eq!(
        rl.check(&alice, 500),
        Err(Reject::RateLimited {
            author: alice.to_string(),
            retry_after_ms: 1500
        })
    );
    // Bob has his own bucket.
    assert_eq!(rl.check(&bob, 500), Ok(()));
    // One record per 2 s afterwards.
    assert_eq!(rl.check(&alice, 2000), Ok(()));
    assert!(rl.check(&alice, 2001).is_err());
    assert_eq!(rl.check(&alice, 4000), Ok(()));
    // A long pause refills to the burst, not beyond.
    for _ in 0..3 {
        assert_eq!(rl.check(&alice, 1_000_000), Ok(()));
    }
    assert_eq!(
        rl.check(&alice, 1_000_000).expect_err("empty").label(),
        "rate_limited"
    );
    // A clock going backwards refills nothing.
    assert!(rl.check(&alice, 0).is_err());
}

#[test]
fn rate_limiter_forgets_least_recently_seen_authors() {
    let limits = Limits {
        rate_burst: 1,
        rate_max_authors: 3,
        ..Limits::default()
    };
    let mut rl = RateLimiter::new(&limits);
    let dids: Vec<Did> = (0..5u8)
        .map(|i| UserKey::from_seed(&[i; 32]).did())
        .collect();
    for d in &dids[..3] {
        assert_eq!(rl.check(d, 0), Ok(()));
    }
    // Touch 0 so that 1 is the least recently seen, then add 3: 1 goes.
    assert!(rl.check(&dids[0], 0).is_err());
    assert_eq!(rl.check(&dids[3], 0), Ok(()));
    assert_eq!(rl.len(), 3);
    assert!(rl.check(&dids[0], 0).is_err(), "0 is still remembered");
    assert!(rl.check(&dids[2], 0).is_err(), "2 is still remembered");
    assert_eq!(rl.check(&dids[1], 0), Ok(()), "1 was forgotten");
    assert_eq!(rl.len(), 3);
    assert_eq!(rl.lru.len(), rl.buckets.len());
}

#[test]
fn validator_rate_limits_live_only_and_after_the_proof() {
    let v = Validator::new(Limits {
        rate_burst: 2,
        ..Limits::default()
    });
    let r = notice().sign(&key());
    let mut forged = r.clone();
    forged.proof.sig[5] ^= 0x40;
    // Forged records in the author's name do not drain the bucket.
    for _ in 0..10 {
        assert_eq!(
            v.validate(&forged, Path::Live, NOW),
            Err(Reject::BadSignature)
        );
    }
    assert_eq!(v.validate(&r, Path::Live, NOW), Ok(()));
    assert_eq!(v.validate(&r, Path::Live, NOW), Ok(()));
    assert_eq!(
        v.validate(&r, Path::Live, NOW)
            .expect_err("limited")
            .label(),
        "rate_limited"
    );
    // Sync is not limited.
    for _ in 0..10 {
        assert_eq!(v.validate(&r, Path::Sync, NOW), Ok(()));
    }
}

#[test]
fn decode_and_validate_maps_decode_errors() {
    let v = Validator::default();
    let r = notice().sign(&key());
    let bytes = r.encode();
    assert_eq!(v.decode_and_validate(&bytes, Path::Sync, NOW), Ok(r));
    let e = v
        .decode_and_validate(&bytes[..bytes.len() - 3], Path::Sync, NOW)
        .expect_err("truncated");
    assert_eq!(e.label(), "malformed");
    assert!(e.to_string().starts_with("malformed record"), "{e}");
    let big = vec![0u8; record::MAX_ENCODED_LEN + 1];
    assert_eq!(
        v.decode_and_validate(&big, Path::Sync, NOW)
            .expect_err("too large")
            .label(),
        "too_large"
    );
    assert_eq!(Reject::from(DecodeError::TooLarge(5)).label(), "too_large");
    assert_eq!(
        Reject::from(DecodeError::NotCanonical).label(),
        "not_canonical"
    );
}

#[test]
fn labels_are_listed() {
    let samples = [
        Reject::Malformed(DecodeError::Malformed("x".into())),
        Reject::Malformed(DecodeError::NotCanonical),
        Reject::BadSignature,
        Reject::UnsupportedProofVersion(9),
        Reject::TooLarge { len: 1, max: 0 },
        Reject::BodyTooLarge { len: 1, max: 0 },
        Reject::TooDeep { max: 0 },
        Reject::FromTheFuture {
            created_at: 1,
            now_ms: 0,
            max_ms: 0,
        },
        Reject::TooOld {
            created_at: 0,
            now_ms: 1,
            max_ms: 0,
        },
        Reject::Expired {
            expires_at: 0,
            now_ms: 0,
        },
        Reject::BadGeohash {
            region: String::new(),
            reason: "",
        },
        Reject::BadCollection {
            collection: String::new(),
            reason: "",
        },
        Reject::BadKey { reason: "" },
        Reject::BadExpiry {
            created_at: 1,
            expires_at: 0,
        },
        Reject::SchemaViolation {
            collection: String::new(),
            field: String::new(),
            reason: Problem::Missing,
        },
        Reject::RateLimited {
            author: key().did().to_string(),
            retry_after_ms: 1,
        },
    ];
    for (i, r) in samples.iter().enumerate() {
        assert_eq!(r.label(), Reject::LABELS[i]);
        assert!(!r.to_string().is_empty());
    }
}
