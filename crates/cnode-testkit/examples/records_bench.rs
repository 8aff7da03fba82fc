//! The records benchmark (`bench/records` runs it in release mode).
//!
//! 1. catch-up: a fresh node pulls N records (default 100,000) from one peer;
//! 2. reconcile: two nodes holding M records (default 1,000,000) that differ
//!    in 1 % reconcile;
//! 3. query: text + radius queries over the M-record store, p50 / p99;
//! 4. gossip: time until a record posted on one of 10 nodes is stored on all.
//!
//! Every figure is printed with its target and PASS / FAIL.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnode_identity::UserKey;
use cnode_node::DataDir;
use cnode_records::store::{Near, Query, RecordStore};
use cnode_records::{Record, RecordId, UnsignedRecord, now_ms};
use cnode_testkit::{NodeOptions, TestNode, Transports, wait_until};
use cnode_types::RegionId;

const REGION: &str = "w5q6";
const WORDS: &[&str] = &[
    "กาแฟ",
    "ตลาด",
    "ดนตรี",
    "อาหาร",
    "夜市",
    "咖啡",
    "寺庙",
    "market",
    "coffee",
    "concert",
    "temple",
    "noodles",
    "bicycle",
    "yoga",
    "festival",
    "lantern",
    "rental",
    "scooter",
    "mango",
    "river",
];

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn only() -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned())
}

/// A cheap deterministic generator (SplitMix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Record `i` of the synthetic region: 1,000 authors, positions spread over
/// the region's cell, titles from a small multilingual vocabulary.
fn record(i: u64, authors: &[UserKey], base_ms: u64) -> Record {
    let cell = cnode_records::geo::decode(REGION).unwrap();
    let r = mix(i);
    let lat = cell.lat + (unit(mix(r)) * 2.0 - 1.0) * cell.lat_err * 0.98;
    let lon = cell.lon + (unit(mix(r ^ 1)) * 2.0 - 1.0) * cell.lon_err * 0.98;
    let w = |k: u64| WORDS[(mix(r ^ k) % WORDS.len() as u64) as usize];
    let author = &authors[(i % authors.len() as u64) as usize];
    UnsignedRecord {
        key: format!("k{i}"),
        body: serde_json::json!({
            "title": format!("{} {} #{i}", w(2), w(3)),
            "body": format!("{} {} {} near the old city, ask for details", w(4), w(5), w(6)),
        }),
        author: author.did(),
        region: cnode_records::geo::encode(lat, lon, 7),
        deleted: false,
        collection: "org.cnode.notices".into(),
        created_at: base_ms + i,
        expires_at: None,
    }
    .sign(author)
}

/// Signs records `range` on two threads.
fn make(range: std::ops::Range<u64>, authors: &[UserKey], base_ms: u64) -> Vec<Record> {
    let mid = range.start + (range.end - range.start) / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| {
            (range.start..mid)
                .map(|i| record(i, authors, base_ms))
                .collect::<Vec<_>>()
        });
        let mut b: Vec<Record> = (mid..range.end)
            .map(|i| record(i, authors, base_ms))
            .collect();
        let mut out = a.join().unwrap();
        out.append(&mut b);
        out
    })
}

/// Creates data directories holding records `0..n` (the second one skips
/// every index for which `skip` is true); returns the records' total
/// encoded size and the sizes of the skipped ones.
async fn seed(dirs: &[(&Path, &dyn Fn(u64) -> bool)], n: u64, base_ms: u64) -> Result<(u64, u64)> {
    let authors: Vec<UserKey> = (0..1000u32)
        .map(|a| {
            let mut seed = [7u8; 32];
            seed[..4].copy_from_slice(&a.to_be_bytes());
            UserKey::from_seed(&seed)
        })
        .collect();
    let mut stores = Vec::new();
    for (dir, _) in dirs {
        let dd = DataDir::new(dir);
        dd.init(false).context("init")?;
        stores.push(RecordStore::new(cnode_store::Store::open(dir)?));
    }
    let (mut total, mut skipped) = (0u64, 0u64);
    let started = Instant::now();
    let chunk = 20_000;
    let mut i = 0;
    while i < n {
        let end = (i + chunk).min(n);
        let records = make(i..end, &authors, base_ms);
        for (j, r) in records.iter().enumerate() {
            let len = r.encode().len() as u64;
            total += len;
            if dirs.iter().any(|(_, skip)| skip(i + j as u64)) {
                skipped += len;
            }
        }
        for ((_, skip), store) in dirs.iter().zip(&stores) {
            let keep: Vec<Record> = records
                .iter()
                .enumerate()
                .filter(|(j, _)| !skip(i + *j as u64))
                .map(|(_, r)| r.clone())
                .collect();
            store.insert_many(keep, now_ms()).await?;
        }
        i = end;
        eprint!(
            "\r  seeded {i}/{n} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    Ok((total, skipped))
}

fn region() -> RegionId {
    REGION.parse().unwrap()
}

async fn spawn(
    dir: &Path,
    bootstrap: Vec<cnode_net::Multiaddr>,
    regions: Vec<RegionId>,
) -> Result<TestNode> {
    TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        bootstrap,
        regions,
        data_dir: Some(dir.to_path_buf()),
        sync_interval: Some(Duration::from_secs(3600)),
        // The benchmark starts the session it measures itself.
        sync_on_connect: false,
        ..Default::default()
    })
    .await
}

async fn wait_region_peer(node: &TestNode, peer: libp2p::PeerId) -> Result<()> {
    wait_until("region peer", Duration::from_secs(30), || async {
        node.node
            .net()
            .topic_peers(region().topic())
            .await
            .unwrap_or_default()
            .contains(&peer)
    })
    .await
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

/// A fresh node pulls `n` records from one peer.
async fn catch_up(n: u64) -> Result<bool> {
    let tmp = tempfile::tempdir()?;
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (total, _) = seed(&[(&a_dir, &|_| false)], n, now_ms() - 3_600_000).await?;
    let a = spawn(&a_dir, vec![], vec![region()]).await?;
    // b serves the region from the start; it has nothing yet.
    let b = spawn(&b_dir, vec![], vec![region()]).await?;
    let _ = b.node.net().dial(a.addr(Transports::Tcp)).await?;
    wait_region_peer(&b, a.peer_id()).await?;
    let started = Instant::now();
    let report = b.node.records().sync_now(a.peer_id(), region()).await?;
    let took = started.elapsed();
    let held = b.node.records().store().count(None).await?;
    let ratio = report.wire_bytes as f64 / total as f64;
    let ok = took <= Duration::from_secs(10) && ratio <= 1.3 && held == n;
    println!(
        "catchup records={n} held={held} secs={:.2} target<=10 wire_bytes={} records_bytes={total} wire_ratio={ratio:.3} target<=1.3 rounds={} {}",
        took.as_secs_f64(),
        report.wire_bytes,
        report.rounds,
        verdict(ok)
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
    Ok(ok)
}

/// Two nodes with `m` records differing in 1 %: reconcile, then query.
async fn reconcile_and_query(m: u64, queries: u64) -> Result<bool> {
    let tmp = tempfile::tempdir()?;
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    // b lacks 1 % of the set: every 100th record (`--spread uniform`, the
    // worst case for range reconciliation) or the newest 1 % (`--spread
    // recent`: a node that was offline for a while).
    let recent = std::env::args().any(|a| a == "recent");
    let skip_uniform = |i: u64| i.is_multiple_of(100);
    let skip_recent = move |i: u64| i >= m - m / 100;
    let skip: &dyn Fn(u64) -> bool = if recent { &skip_recent } else { &skip_uniform };
    let (_, diff_bytes) = seed(
        &[(&a_dir, &|_| false), (&b_dir, skip)],
        m,
        now_ms() - 3_600_000,
    )
    .await?;
    let load = Instant::now();
    let a = spawn(&a_dir, vec![], vec![region()]).await?;
    let b = spawn(&b_dir, vec![], vec![region()]).await?;
    eprintln!(
        "  two nodes loaded in {:.1} s",
        load.elapsed().as_secs_f64()
    );
    let _ = b.node.net().dial(a.addr(Transports::Tcp)).await?;
    wait_region_peer(&b, a.peer_id()).await?;
    let started = Instant::now();
    let report = b.node.records().sync_now(a.peer_id(), region()).await?;
    let took = started.elapsed();
    let held = b.node.records().store().count(None).await?;
    let ratio = report.wire_bytes as f64 / diff_bytes as f64;
    let ok_sync = took <= Duration::from_secs(2) && ratio <= 3.0 && held == m;
    println!(
        "reconcile records={m} spread={} differing={} held={held} secs={:.2} target<=2 (difference known at {:.2} s, fetched and validated at {:.2} s) wire_bytes={} differing_bytes={diff_bytes} wire_ratio={ratio:.2} target<=3 rounds={} {}",
        if recent { "recent" } else { "uniform" },
        report.needed,
        took.as_secs_f64(),
        report.reconcile_time.as_secs_f64(),
        report.fetch_time.as_secs_f64(),
        report.wire_bytes,
        report.rounds,
        verdict(ok_sync)
    );

    // Queries: text + 2 km radius around random points of the region.
    let store = a.node.records().store().clone();
    let cell = cnode_records::geo::decode(REGION).unwrap();
    let mut times = Vec::with_capacity(queries as usize);
    let mut hits = 0usize;
    for q in 0..queries {
        let r = mix(0xABCD ^ q);
        let query = Query {
            near: Some(Near {
                lat: cell.lat + (unit(mix(r)) * 2.0 - 1.0) * cell.lat_err * 0.9,
                lon: cell.lon + (unit(mix(r ^ 1)) * 2.0 - 1.0) * cell.lon_err * 0.9,
                radius_m: 2_000.0,
            }),
            text: Some(WORDS[(r % WORDS.len() as u64) as usize].to_string()),
            limit: 50,
            ..Default::default()
        };
        let t = Instant::now();
        let page = store.query(query).await?;
        times.push(t.elapsed());
        hits += page.records.len();
    }
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    let (p50, p99) = (pct(0.50), pct(0.99));
    let ok_query = p99 <= Duration::from_millis(20);
    println!(
        "query records={m} queries={queries} kind=text+radius2km p50_ms={:.2} p99_ms={:.2} target_p99<=20 mean_hits={:.1} {}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        hits as f64 / queries as f64,
        verdict(ok_query)
    );
    a.node.shutdown().await;
    b.node.shutdown().await;
    Ok(ok_sync && ok_query)
}

/// Ten nodes; `posts` records posted one by one on random nodes.
async fn gossip(nodes_n: usize, posts: u64) -> Result<bool> {
    let mut nodes: Vec<TestNode> = Vec::new();
    let tmp = tempfile::tempdir()?;
    for i in 0..nodes_n {
        let bootstrap = nodes
            .first()
            .map(|n| vec![n.addr(Transports::Tcp)])
            .unwrap_or_default();
        nodes.push(spawn(&tmp.path().join(format!("n{i}")), bootstrap, vec![region()]).await?);
    }
    for n in &nodes {
        wait_until("region peers", Duration::from_secs(30), || async {
            n.node
                .net()
                .topic_peers(region().topic())
                .await
                .unwrap_or_default()
                .len()
                >= 2
        })
        .await?;
    }
    // Let the gossip meshes form (heartbeat 0.7 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let arrivals: Arc<std::sync::Mutex<std::collections::HashMap<RecordId, Vec<Instant>>>> =
        Default::default();
    for n in &nodes {
        let mut rx = n.node.records().subscribe();
        let arrivals = arrivals.clone();
        tokio::spawn(async move {
            while let Ok(r) = rx.recv().await {
                arrivals
                    .lock()
                    .unwrap()
                    .entry(r.id)
                    .or_default()
                    .push(Instant::now());
            }
        });
    }
    let mut posted = Vec::new();
    for p in 0..posts {
        let mut seed = [9u8; 32];
        seed[..8].copy_from_slice(&p.to_be_bytes());
        let key = UserKey::from_seed(&seed);
        let r = UnsignedRecord {
            key: format!("g{p}"),
            body: serde_json::json!({ "title": format!("gossip {p}"), "body": "latency probe" }),
            author: key.did(),
            region: "w5q6u8j".into(),
            deleted: false,
            collection: "org.cnode.notices".into(),
            created_at: now_ms(),
            expires_at: None,
        }
        .sign(&key);
        let at = Instant::now();
        posted.push((r.id(), at));
        nodes[(mix(p) % nodes_n as u64) as usize]
            .node
            .records()
            .post(r)
            .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let arrivals = arrivals.lock().unwrap().clone();
    let mut lat = Vec::new();
    let mut incomplete = 0;
    for (id, at) in &posted {
        match arrivals.get(id) {
            Some(v) if v.len() == nodes_n => {
                lat.push(v.iter().max().unwrap().duration_since(*at));
            }
            _ => incomplete += 1,
        }
    }
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(Duration::MAX)
    };
    let (p50, p99) = (pct(0.5), pct(0.99));
    let ok = incomplete == 0 && p99 <= Duration::from_millis(250);
    println!(
        "gossip nodes={nodes_n} posts={posts} all_nodes_p50_ms={:.1} all_nodes_p99_ms={:.1} target_p99<=250 incomplete={incomplete} {}",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        verdict(ok)
    );
    for n in &nodes {
        n.node.shutdown().await;
    }
    Ok(ok)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let only = only();
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let mut all_ok = true;
    if run("catchup") {
        all_ok &= catch_up(arg("--catchup", 100_000)).await?;
    }
    if run("reconcile") {
        all_ok &= reconcile_and_query(arg("--records", 1_000_000), arg("--queries", 1000)).await?;
    }
    if run("gossip") {
        all_ok &= gossip(arg("--nodes", 10) as usize, arg("--posts", 200)).await?;
    }
    println!("records_bench {}", verdict(all_ok));
    Ok(())
}
