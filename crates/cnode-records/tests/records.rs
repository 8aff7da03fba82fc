//! Records as another implementation sees them: the test vectors of
//! `docs/protocol.md` recomputed from the code, and arbitrary bytes fed to the
//! decoder and validator.
//!
//! `PRINT_VECTORS=1 cargo test -p cnode-records --test records -- --nocapture`
//! prints fresh `vector` lines to paste into the document.

use std::collections::HashMap;

use cnode_identity::UserKey;
use cnode_records::{
    Record, UnsignedRecord,
    schema::NOTICES,
    validate::{self, Path, Validator},
};
use proptest::prelude::*;
use serde_json::json;

/// 2025-11-24 16:00:00 UTC.
const CREATED_AT: u64 = 1_764_000_000_000;
/// The clock the vectors are validated at: one minute after `CREATED_AT`.
const NOW: u64 = CREATED_AT + 60_000;

fn author() -> UserKey {
    UserKey::from_seed(&[1; 32])
}

/// The notice of the `record-signed` vector, unsigned.
fn notice() -> UnsignedRecord {
    UnsignedRecord {
        key: "welcome".into(),
        body: json!({"title": "Hello, Chiang Mai", "body": "สวัสดี — the first notice"}),
        author: author().did(),
        region: "w5q6u8j".into(),
        deleted: false,
        collection: NOTICES.into(),
        created_at: CREATED_AT,
        expires_at: Some(CREATED_AT + 30 * 24 * 3600 * 1000),
    }
}

/// The tombstone of the `record-tombstone` vector: deletes the notice's slot
/// ten minutes later.
fn tombstone() -> UnsignedRecord {
    UnsignedRecord {
        body: serde_json::Value::Null,
        deleted: true,
        created_at: CREATED_AT + 600_000,
        expires_at: None,
        ..notice()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("pattern present in the encoding")
}

/// The invalid encodings of the document: (name, bytes). Each is derived from
/// the signed notice.
fn invalid_encodings() -> Vec<(&'static str, Vec<u8>)> {
    let good = notice().sign(&author()).encode();

    // The signature's last byte flipped: still canonical CBOR.
    let mut record = notice().sign(&author());
    if let Some(b) = record.proof.sig.last_mut() {
        *b ^= 0x01;
    }
    let bad_sig = record.encode();

    // The "key" and "body" entries swapped: same content, keys out of order.
    let (k, b, p) = (
        find(&good, b"\x63key"),
        find(&good, b"\x64body"),
        find(&good, b"\x65proof"),
    );
    let mut unsorted = good[..k].to_vec();
    unsorted.extend_from_slice(&good[b..p]);
    unsorted.extend_from_slice(&good[k..b]);
    unsorted.extend_from_slice(&good[p..]);

    // The proof version 1 written in two bytes (0x18 0x01) instead of one.
    let v = find(&good, b"\x65proof\xa2\x61v\x01") + 9;
    let mut long_int = good[..v].to_vec();
    long_int.extend_from_slice(b"\x18\x01");
    long_int.extend_from_slice(&good[v + 1..]);

    // The tombstone with `"expires_at": null` added: decodes to the same
    // record (no expiry), which encodes without the entry.
    let mut null_expiry = tombstone().sign(&author()).encode();
    null_expiry[0] += 1; // one more map entry
    null_expiry.extend_from_slice(b"\x6aexpires_at\xf6");

    // A correctly signed notice with a field its schema does not have.
    let mut extra = notice();
    extra.body["price"] = json!(100);
    let schema = extra.sign(&author()).encode();

    vec![
        ("record-invalid-signature", bad_sig),
        ("record-invalid-key-order", unsorted),
        ("record-invalid-long-int", long_int),
        ("record-invalid-null-expiry", null_expiry),
        ("record-invalid-schema", schema),
    ]
}

#[test]
fn protocol_md_test_vectors() {
    let key = author();
    let signed = notice().sign(&key);
    let tomb = tombstone().sign(&key);
    let mut computed: Vec<(String, String)> = vec![
        ("record-seed".into(), hex(&[1; 32])),
        ("record-did".into(), key.did().to_string()),
        (
            "record-signing-blake3".into(),
            blake3::hash(&notice().signing_bytes()).to_hex().to_string(),
        ),
        ("record-sig".into(), hex(&signed.proof.sig)),
        ("record-signed".into(), hex(&signed.encode())),
        ("record-signed-id".into(), signed.id().to_hex()),
        ("record-tombstone".into(), hex(&tomb.encode())),
        ("record-tombstone-id".into(), tomb.id().to_hex()),
    ];
    let validator = Validator::default();
    for (name, bytes) in invalid_encodings() {
        let label = validator
            .decode_and_validate(&bytes, Path::Sync, NOW)
            .map_or_else(|e| e.label(), |_| "accepted");
        computed.push((name.into(), hex(&bytes)));
        computed.push((format!("{name}-reject"), label.into()));
    }

    if std::env::var_os("PRINT_VECTORS").is_some() {
        for (k, v) in &computed {
            println!("vector {k} {v}");
        }
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol.md"
    ))
    .expect("docs/protocol.md is readable");
    let documented: HashMap<&str, &str> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix("vector "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (k, v) in &computed {
        assert_eq!(
            documented.get(k.as_str()).copied(),
            Some(v.as_str()),
            "vector {k} in docs/protocol.md"
        );
    }

    // The documented bytes themselves behave as the document says: the valid
    // records decode, verify and keep their ids; the invalid ones are refused
    // with the documented label.
    let bytes = |name: &str| {
        let text = documented.get(name).expect("documented vector");
        ::hex::decode(text).expect("vector is hex")
    };
    for (name, id) in [
        ("record-signed", "record-signed-id"),
        ("record-tombstone", "record-tombstone-id"),
    ] {
        let record = validator
            .decode_and_validate(&bytes(name), Path::Sync, NOW)
            .expect("documented record is valid");
        assert_eq!(record.id().to_hex(), documented[id]);
        assert_eq!(record.author.to_string(), documented["record-did"]);
    }
    for (name, _) in invalid_encodings() {
        let e = validator
            .decode_and_validate(&bytes(name), Path::Sync, NOW)
            .expect_err("documented invalid record");
        assert_eq!(e.label(), documented[format!("{name}-reject").as_str()]);
    }
}

#[test]
fn the_tombstone_wins_the_notices_slot() {
    use cnode_records::merge::{Applied, MergeState, SlotKey};
    let (signed, tomb) = (notice().sign(&author()), tombstone().sign(&author()));
    let mut state = MergeState::new();
    assert_eq!(state.apply(tomb.clone(), NOW), Applied::New);
    assert_eq!(state.apply(signed.clone(), NOW), Applied::Stale);
    assert_eq!(state.get(&SlotKey::of(&signed)), Some(&tomb));
}

/// Valid encodings of every built-in collection and a tombstone: seeds for
/// the mutation test.
fn seeds() -> Vec<Vec<u8>> {
    let key = author();
    let cid = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";
    let event = UnsignedRecord {
        collection: "org.cnode.events".into(),
        body: json!({"title": "Market", "starts_at": CREATED_AT, "place": "Gate", "image": cid}),
        expires_at: None,
        ..notice()
    };
    let listing = UnsignedRecord {
        collection: "org.cnode.listings".into(),
        body: json!({"title": "Bike", "price": 1.5, "currency": "THB", "contact": "x",
                     "images": [cid]}),
        ..notice()
    };
    [notice(), tombstone(), event, listing]
        .into_iter()
        .map(|u| u.sign(&key).encode())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        validate::fuzz_check(&bytes);
    }

    #[test]
    fn mutated_records_never_panic(
        which in 0usize..4,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        insert in prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[which].clone();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if let Some((at, b)) = insert {
            let i = at.index(bytes.len() + 1);
            bytes.insert(i, b);
        }
        if let Some(at) = cut {
            bytes.truncate(at.index(bytes.len() + 1));
        }
        validate::fuzz_check(&bytes);
    }
}

#[test]
fn unmutated_seeds_are_valid() {
    let validator = Validator::default();
    for bytes in seeds() {
        validate::fuzz_check(&bytes);
        let record = Record::decode(&bytes).expect("seed decodes");
        assert_eq!(
            validator.decode_and_validate(&bytes, Path::Sync, NOW),
            Ok(record)
        );
    }
}
