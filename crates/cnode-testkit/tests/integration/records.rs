//! Regional records across real nodes: the Chiang Mai scenario, convergence
//! of concurrent edits, deletion and expiry, catch-up by reconciliation,
//! partition healing, and bad input that is rejected and never forwarded.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use cnode_identity::UserKey;
use cnode_node::Posted;
use cnode_records::store::Query;
use cnode_records::{Record, RecordId, UnsignedRecord};
use cnode_testkit::{NodeOptions, TestNode, Transports, wait_until};
use cnode_types::RegionId;

const CHIANG_MAI: &str = "w5q6";
const BANGKOK: &str = "w4rq";
/// A geohash in Chiang Mai's old city (w5q6…).
const NIMMAN: &str = "w5q6u8j";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn region(r: &str) -> RegionId {
    r.parse().unwrap()
}

fn user(n: u8) -> UserKey {
    UserKey::from_seed(&[n; 32])
}

fn notice(key: &UserKey, slot: &str, title: &str, created_at: u64) -> Record {
    UnsignedRecord {
        key: slot.into(),
        body: serde_json::json!({ "title": title, "body": format!("{title} — details") }),
        author: key.did(),
        region: NIMMAN.into(),
        deleted: false,
        collection: "org.cnode.notices".into(),
        created_at,
        expires_at: None,
    }
    .sign(key)
}

/// Spawns nodes serving `regions[i]`, all bootstrapped to the first one.
async fn spawn_region_nodes(
    regions: &[&str],
    tweak: impl Fn(usize, &mut NodeOptions),
) -> Result<Vec<TestNode>> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let mut opts = NodeOptions {
            transports: Transports::Tcp,
            bootstrap: nodes
                .first()
                .map(|n| vec![n.addr(Transports::Tcp)])
                .unwrap_or_default(),
            regions: vec![region(r)],
            ..Default::default()
        };
        tweak(i, &mut opts);
        nodes.push(TestNode::spawn(opts).await?);
    }
    Ok(nodes)
}

async fn has(node: &TestNode, id: &RecordId) -> bool {
    matches!(node.node.records().store().get(id).await, Ok(Some(_)))
}

async fn wait_all_have(
    what: &str,
    nodes: &[&TestNode],
    ids: &[RecordId],
    limit: Duration,
) -> Result<()> {
    wait_until(what, limit, || async {
        for n in nodes {
            for id in ids {
                if !has(n, id).await {
                    return false;
                }
            }
        }
        true
    })
    .await
}

async fn query_ids(node: &TestNode, q: Query) -> Vec<String> {
    node.node
        .records()
        .query(q)
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.id.to_hex())
        .collect()
}

fn region_query(r: &str) -> Query {
    Query {
        region: Some(region(r)),
        limit: 500,
        ..Default::default()
    }
}

/// Ten nodes serve Chiang Mai, two serve Bangkok: a record posted on any
/// Chiang Mai node reaches all ten and no Bangkok node, and every Chiang Mai
/// node answers a query the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chiang_mai_scenario() -> Result<()> {
    let mut regions = vec![CHIANG_MAI; 10];
    regions.insert(3, BANGKOK);
    regions.insert(8, BANGKOK);
    let nodes = spawn_region_nodes(&regions, |_, _| {}).await?;
    let pick = |want: &str| -> Vec<&TestNode> {
        nodes
            .iter()
            .zip(&regions)
            .filter(|(_, r)| **r == want)
            .map(|(n, _)| n)
            .collect()
    };
    let (cm, bkk) = (pick(CHIANG_MAI), pick(BANGKOK));
    assert_eq!((cm.len(), bkk.len()), (10, 2));
    // Wait until every Chiang Mai node sees at least one other node of the region.
    for n in &cm {
        wait_until("region peers", Duration::from_secs(20), || async {
            n.node
                .records()
                .regions()
                .await
                .first()
                .is_some_and(|r| r.peers > 0)
        })
        .await?;
    }

    let cafe = UnsignedRecord {
        key: "cafe".into(),
        body: serde_json::json!({ "title": "ร้านกาแฟดอยช้าง นิมมาน", "body": "Doi Chaang coffee, soi 7" }),
        author: user(1).did(),
        region: NIMMAN.into(),
        deleted: false,
        collection: "org.cnode.notices".into(),
        created_at: now_ms(),
        expires_at: None,
    }
    .sign(&user(1));
    let market = notice(
        &user(2),
        "market",
        "清迈周日夜市 Sunday walking street",
        now_ms(),
    );
    let songkran = notice(
        &user(3),
        "songkran",
        "Songkran water fight at Tha Phae gate",
        now_ms(),
    );
    let posted = [(0, cafe), (5, market), (9, songkran)];
    let started = Instant::now();
    let mut ids = Vec::new();
    for (i, record) in posted {
        ids.push(record.id());
        let outcome = cm[i].node.records().post(record).await?;
        assert!(matches!(outcome, Posted::Stored { .. }), "{outcome:?}");
    }
    wait_all_have(
        "records on all ten Chiang Mai nodes",
        &cm,
        &ids,
        Duration::from_secs(15),
    )
    .await?;
    eprintln!(
        "3 records on all 10 Chiang Mai nodes after {:?}",
        started.elapsed()
    );

    // Bangkok holds none of it (give gossip and sync time to misbehave).
    tokio::time::sleep(Duration::from_secs(3)).await;
    for n in &bkk {
        for id in &ids {
            assert!(
                !has(n, id).await,
                "a Bangkok node stored a Chiang Mai record"
            );
        }
        assert_eq!(n.node.records().store().count(None).await?, 0);
    }

    // Every Chiang Mai node answers the same, for several kinds of query.
    let queries = [
        region_query(CHIANG_MAI),
        Query {
            text: Some("กาแฟ".into()),
            ..region_query(CHIANG_MAI)
        },
        Query {
            text: Some("夜市".into()),
            ..region_query(CHIANG_MAI)
        },
        Query {
            text: Some("songkran".into()),
            ..region_query(CHIANG_MAI)
        },
    ];
    for q in queries {
        let first = query_ids(cm[0], q.clone()).await;
        assert!(!first.is_empty(), "{q:?} found nothing");
        for n in &cm[1..] {
            assert_eq!(
                query_ids(n, q.clone()).await,
                first,
                "{q:?} differs between nodes"
            );
        }
    }
    let thai = query_ids(
        cm[7],
        Query {
            text: Some("กาแฟ".into()),
            ..region_query(CHIANG_MAI)
        },
    )
    .await;
    assert_eq!(thai, vec![ids[0].to_hex()]);
    Ok(())
}

/// Two nodes edit the same slot at the same moment: every node ends with
/// the same winner. A deletion and an expiry reach every node too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_edits_delete_and_expiry_converge() -> Result<()> {
    let nodes = spawn_region_nodes(&[CHIANG_MAI; 3], |_, _| {}).await?;
    let all: Vec<&TestNode> = nodes.iter().collect();
    for n in &all {
        wait_until("region peers", Duration::from_secs(20), || async {
            n.node
                .records()
                .regions()
                .await
                .first()
                .is_some_and(|r| r.peers > 0)
        })
        .await?;
    }
    let alice = user(7);
    let t = now_ms();
    let a = notice(&alice, "stall", "Khao soi stall opens at 8", t);
    let b = notice(&alice, "stall", "Khao soi stall opens at 9", t);
    let (winner, loser) = if (a.created_at, a.id()) > (b.created_at, b.id()) {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    };
    let (pa, pb) = tokio::join!(
        nodes[0].node.records().post(a),
        nodes[2].node.records().post(b)
    );
    pa?;
    pb?;
    wait_all_have(
        "the winner everywhere",
        &all,
        &[winner.id()],
        Duration::from_secs(15),
    )
    .await?;
    wait_until("the loser nowhere", Duration::from_secs(15), || async {
        for n in &all {
            if has(n, &loser.id()).await {
                return false;
            }
        }
        true
    })
    .await?;

    // Delete on another node: the tombstone wins everywhere; queries hide it.
    let tombstone = UnsignedRecord {
        deleted: true,
        body: serde_json::json!({}),
        created_at: t + 1,
        ..winner.unsigned()
    }
    .sign(&alice);
    nodes[1].node.records().post(tombstone.clone()).await?;
    wait_all_have(
        "the tombstone everywhere",
        &all,
        &[tombstone.id()],
        Duration::from_secs(15),
    )
    .await?;
    for n in &all {
        assert!(!has(n, &winner.id()).await);
        assert!(query_ids(n, region_query(CHIANG_MAI)).await.is_empty());
    }

    // A record that expires in 3 s disappears from every node's answers.
    let short = UnsignedRecord {
        expires_at: Some(now_ms() + 3_000),
        ..notice(&user(8), "flash", "Flash sale at Warorot market", now_ms()).unsigned()
    }
    .sign(&user(8));
    nodes[2].node.records().post(short.clone()).await?;
    wait_all_have(
        "the short-lived record",
        &all,
        &[short.id()],
        Duration::from_secs(15),
    )
    .await?;
    for n in &all {
        assert_eq!(
            query_ids(n, region_query(CHIANG_MAI)).await,
            vec![short.id().to_hex()]
        );
    }
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    for n in &all {
        assert!(
            query_ids(n, region_query(CHIANG_MAI)).await.is_empty(),
            "expired record still answered"
        );
    }
    Ok(())
}

/// A node that was offline while 1,000 records were posted catches up by
/// reconciliation alone (it takes no part in gossip) within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_node_catches_up_by_reconciliation() -> Result<()> {
    let nodes = spawn_region_nodes(&[CHIANG_MAI; 2], |_, _| {}).await?;
    // The late node: started once (so it has a data directory), then stopped.
    let late_dir = tempfile::tempdir()?;
    let late_opts = || NodeOptions {
        transports: Transports::Tcp,
        bootstrap: vec![nodes[0].addr(Transports::Tcp)],
        regions: vec![region(CHIANG_MAI)],
        record_gossip: false,
        data_dir: Some(late_dir.path().join("data")),
        ..Default::default()
    };
    let late = TestNode::spawn(late_opts()).await?;
    late.node.shutdown().await;
    drop(late);

    // 1,000 records from 50 authors (20 each: within the live rate limit).
    let mut ids = BTreeSet::new();
    let t = now_ms();
    for n in 0..1000u32 {
        let key = user(100 + (n % 50) as u8);
        let r = notice(
            &key,
            &format!("item-{n}"),
            &format!("Listing number {n}"),
            t + u64::from(n),
        );
        ids.insert(r.id());
        nodes[(n % 2) as usize].node.records().post(r).await?;
    }
    wait_until(
        "both online nodes hold 1000",
        Duration::from_secs(30),
        || async {
            let mut ok = true;
            for n in &nodes {
                ok &= n.node.records().store().count(None).await.unwrap_or(0) == 1000;
            }
            ok
        },
    )
    .await?;

    let back = Instant::now();
    let late = TestNode::spawn(late_opts()).await?;
    wait_until(
        "the late node catches up",
        Duration::from_secs(20),
        || async { late.node.records().store().count(None).await.unwrap_or(0) == 1000 },
    )
    .await?;
    let took = back.elapsed();
    eprintln!("caught up 1000 records in {took:?} after restarting");
    assert!(took < Duration::from_secs(10), "catch-up took {took:?}");
    for id in ids.iter().take(50) {
        assert!(has(&late, id).await);
    }
    // It did not get them by gossip: it is not subscribed, so gossip never
    // stored anything. The session counts what it pulled when it ends, which
    // may be a moment after the records are in the store.
    let pulled = || {
        let metrics = late.node.encode_metrics().unwrap_or_default();
        let n = metrics
            .lines()
            .find(|l| l.starts_with("cnode_sync_pulled_total"))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        (n, metrics)
    };
    let _ = wait_until(
        "the reconciliation session ends",
        Duration::from_secs(10),
        || async { pulled().0 >= 1000 },
    )
    .await;
    let (n, metrics) = pulled();
    assert_eq!(n, 1000, "{metrics}");
    Ok(())
}

/// Ten nodes split 6 + 4; both sides receive posts; after the partition
/// heals every node holds every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_heals_and_converges() -> Result<()> {
    let nodes = spawn_region_nodes(&[CHIANG_MAI; 10], |_, _| {}).await?;
    let (left, right) = nodes.split_at(6);
    // Cut every link between the sides.
    for a in left {
        for b in right {
            a.node.net().set_blocked(b.peer_id(), true).await?;
            b.node.net().set_blocked(a.peer_id(), true).await?;
        }
    }
    // Keep each side connected within itself.
    for side in [left, right] {
        for w in side.windows(2) {
            // Already connected is fine.
            let _ = w[1].node.net().dial(w[0].addr(Transports::Tcp)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut left_ids = Vec::new();
    let mut right_ids = Vec::new();
    for n in 0..20u32 {
        let r = notice(
            &user(40 + (n % 5) as u8),
            &format!("l{n}"),
            &format!("Left side post {n}"),
            now_ms(),
        );
        left_ids.push(r.id());
        left[(n % 6) as usize].node.records().post(r).await?;
        let r = notice(
            &user(50 + (n % 5) as u8),
            &format!("r{n}"),
            &format!("Right side post {n}"),
            now_ms(),
        );
        right_ids.push(r.id());
        right[(n % 4) as usize].node.records().post(r).await?;
    }
    let left_refs: Vec<&TestNode> = left.iter().collect();
    let right_refs: Vec<&TestNode> = right.iter().collect();
    wait_all_have(
        "left posts on the left",
        &left_refs,
        &left_ids,
        Duration::from_secs(15),
    )
    .await?;
    wait_all_have(
        "right posts on the right",
        &right_refs,
        &right_ids,
        Duration::from_secs(15),
    )
    .await?;
    for n in &right_refs {
        assert!(!has(n, &left_ids[0]).await, "the partition leaked");
    }

    // Heal.
    let healed = Instant::now();
    for a in left {
        for b in right {
            a.node.net().set_blocked(b.peer_id(), false).await?;
            b.node.net().set_blocked(a.peer_id(), false).await?;
        }
    }
    let _ = right[0]
        .node
        .net()
        .dial(left[0].addr(Transports::Tcp))
        .await;
    let all: Vec<&TestNode> = nodes.iter().collect();
    let every: Vec<RecordId> = left_ids.iter().chain(&right_ids).copied().collect();
    wait_all_have(
        "all posts on all ten",
        &all,
        &every,
        Duration::from_secs(30),
    )
    .await?;
    eprintln!("converged {:?} after healing", healed.elapsed());
    Ok(())
}

/// Each kind of bad record is rejected with its reason on the first node
/// that sees it and never reaches the node behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_rejected_and_not_forwarded() -> Result<()> {
    // A chain a - b - c, all serving the region: what a publishes reaches c
    // only through b.
    let a = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        regions: vec![region(CHIANG_MAI)],
        ..Default::default()
    })
    .await?;
    let b = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        bootstrap: vec![a.addr(Transports::Tcp)],
        regions: vec![region(CHIANG_MAI)],
        ..Default::default()
    })
    .await?;
    let c = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        bootstrap: vec![b.addr(Transports::Tcp)],
        regions: vec![region(CHIANG_MAI)],
        ..Default::default()
    })
    .await?;
    c.node.net().set_blocked(a.peer_id(), true).await?;
    a.node.net().set_blocked(c.peer_id(), true).await?;
    let topic = region(CHIANG_MAI).topic();
    for n in [&a, &c] {
        wait_until("gossip mesh with b", Duration::from_secs(20), || async {
            n.node
                .net()
                .topic_peers(topic.clone())
                .await
                .unwrap_or_default()
                .contains(&b.peer_id())
        })
        .await?;
    }

    let k = user(9);
    let good = notice(&k, "good", "A valid notice", now_ms());
    let mut bad_sig = notice(&k, "sig", "Forged", now_ms());
    bad_sig.proof.sig[0] ^= 1;
    let big = UnsignedRecord {
        collection: "org.example.blob".into(),
        body: serde_json::json!({ "data": "x".repeat(70 * 1024) }),
        ..notice(&k, "big", "Too big", now_ms()).unsigned()
    }
    .sign(&k);
    let future = notice(&k, "future", "From the future", now_ms() + 3_600_000);
    let bad_geohash = UnsignedRecord {
        region: "w5qa".into(),
        ..notice(&k, "geo", "Bad place", now_ms()).unsigned()
    }
    .sign(&k);
    let schema = UnsignedRecord {
        collection: "org.cnode.events".into(),
        body: serde_json::json!({ "title": "No start time", "place": "Tha Phae" }),
        ..notice(&k, "event", "x", now_ms()).unsigned()
    }
    .sign(&k);
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad_signature", bad_sig.encode()),
        ("future", future.encode()),
        ("bad_geohash", bad_geohash.encode()),
        ("schema", schema.encode()),
        ("malformed", b"\xa1\x63key\xff not cbor".to_vec()),
    ];
    // Oversized bodies are refused before decoding or as body_too_large.
    cases.push(("too_large", big.encode()));
    for (_, bytes) in &cases {
        a.node.net().publish(topic.clone(), bytes.clone()).await?;
    }
    // An author over its rate limit: 60 records at once from one author.
    let spammer = user(10);
    let spam: Vec<Record> = (0..60)
        .map(|n| notice(&spammer, &format!("spam{n}"), "Spam", now_ms()))
        .collect();
    for r in &spam {
        a.node.net().publish(topic.clone(), r.encode()).await?;
    }
    a.node.net().publish(topic.clone(), good.encode()).await?;

    // The good record passes b and reaches c; none of the bad ones do.
    wait_all_have(
        "the good record on b and c",
        &[&b, &c],
        &[good.id()],
        Duration::from_secs(15),
    )
    .await?;
    let metrics = b.node.records().metrics();
    let labels: Vec<(&str, u64)> = [
        "bad_signature",
        "from_the_future",
        "bad_geohash",
        "schema_violation",
        "malformed",
        "rate_limited",
    ]
    .iter()
    .map(|l| (*l, metrics.rejected(l)))
    .collect();
    eprintln!(
        "b rejected: {labels:?} (too large: {}, body_too_large: {})",
        metrics.rejected("too_large"),
        metrics.rejected("body_too_large")
    );
    for (label, count) in &labels {
        assert!(*count >= 1, "b did not reject any {label}: {labels:?}");
    }
    assert!(metrics.rejected("too_large") + metrics.rejected("body_too_large") >= 1);
    for r in [&bad_sig, &future, &bad_geohash, &schema, &big] {
        assert!(!has(&b, &r.id()).await && !has(&c, &r.id()).await);
    }
    let spam_on_c = {
        let mut n = 0;
        for r in &spam {
            n += usize::from(has(&c, &r.id()).await);
        }
        n
    };
    assert!(
        spam_on_c < spam.len(),
        "every spam record passed the rate limit"
    );
    // c never saw a bad record, so it rejected nothing.
    let c_metrics = c.node.records().metrics();
    for (label, _) in &labels {
        assert_eq!(c_metrics.rejected(label), 0, "{label} was forwarded to c");
    }
    Ok(())
}

/// The HTTP routes: post canonical CBOR, read back as JSON and CBOR, the
/// server-sent stream of new records, regions, and clear 400s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_routes_for_records() -> Result<()> {
    let a = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        regions: vec![region(CHIANG_MAI)],
        ..Default::default()
    })
    .await?;
    let base = format!("http://{}", a.api.as_ref().unwrap().addr());
    let token = a.node.data_dir().load_token()?;
    let http = reqwest::Client::new();

    // Subscribe to the stream before posting.
    let mut stream = http
        .get(format!("{base}/v1/records/stream?region={CHIANG_MAI}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(stream.status(), 200);

    let record = notice(&user(30), "http", "ตลาดวโรรส posted over HTTP", now_ms());
    let r = http
        .post(format!("{base}/v1/records"))
        .bearer_auth(&token)
        .header("content-type", "application/cbor")
        .body(record.encode())
        .send()
        .await?;
    assert_eq!(r.status(), 201);
    let posted: serde_json::Value = r.json().await?;
    assert_eq!(posted["id"], record.id().to_hex());
    assert_eq!(posted["status"], "stored");
    // The same again: 200, unchanged.
    let r = http
        .post(format!("{base}/v1/records"))
        .bearer_auth(&token)
        .header("content-type", "application/cbor")
        .body(record.encode())
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    // The stream delivered it.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("event: record") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    assert!(
        seen.contains("event: record") && seen.contains(&record.id().to_hex()),
        "{seen}"
    );

    // By id: JSON and canonical CBOR.
    let url = format!("{base}/v1/records/{}", record.id());
    let json: serde_json::Value = http
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(json["body"]["title"], "ตลาดวโรรส posted over HTTP");
    assert_eq!(json["geohash"], NIMMAN);
    let cbor = http
        .get(&url)
        .bearer_auth(&token)
        .header("accept", "application/cbor")
        .send()
        .await?
        .bytes()
        .await?;
    assert_eq!(&cbor[..], &record.encode()[..]);
    let missing = http
        .get(format!("{base}/v1/records/{}", "0".repeat(64)))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    // Query by text and radius.
    let page: serde_json::Value = http
        .get(reqwest::Url::parse_with_params(
            &format!("{base}/v1/records"),
            &[
                ("text", "วโรรส"),
                ("near", "18.80,98.97"),
                ("radius", "10km"),
            ],
        )?)
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(page["records"][0]["id"], record.id().to_hex(), "{page}");
    assert!(page["records"][0]["distance_m"].as_f64().unwrap() < 10_000.0);

    // Bad input: 400 with a reason, nothing stored.
    for (req, what) in [
        (
            http.post(format!("{base}/v1/records"))
                .header("content-type", "application/json")
                .body("{}"),
            "application/cbor",
        ),
        (
            http.post(format!("{base}/v1/records"))
                .header("content-type", "application/cbor")
                .body(&b"\xa1\x61x\x01"[..]),
            "rejected",
        ),
        (http.get(format!("{base}/v1/records?near=200,0")), "LAT,LON"),
        (
            http.get(format!("{base}/v1/records?region=w5qa")),
            "geohash",
        ),
        (http.get(format!("{base}/v1/records?radius=5km")), "near"),
        (
            http.put(format!("{base}/v1/regions/bangkok")),
            "4-character",
        ),
    ] {
        let r = req.bearer_auth(&token).send().await?;
        assert_eq!(r.status(), 400, "{what}");
        let body: serde_json::Value = r.json().await?;
        assert!(
            body["error"].as_str().unwrap().contains(what),
            "{what}: {body}"
        );
    }
    let mut forged = notice(&user(31), "forged", "forged", now_ms());
    forged.proof.sig[5] ^= 0x40;
    let r = http
        .post(format!("{base}/v1/records"))
        .bearer_auth(&token)
        .header("content-type", "application/cbor")
        .body(forged.encode())
        .send()
        .await?;
    assert_eq!(r.status(), 400);
    assert!(r.text().await?.contains("signature"));
    assert!(!has(&a, &forged.id()).await);

    // Regions: join, list, leave.
    let r = http
        .put(format!("{base}/v1/regions/{BANGKOK}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.json::<serde_json::Value>().await?["changed"], true);
    let list: serde_json::Value = http
        .get(format!("{base}/v1/regions"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let r = http
        .delete(format!("{base}/v1/regions/{BANGKOK}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.json::<serde_json::Value>().await?["changed"], true);
    Ok(())
}
