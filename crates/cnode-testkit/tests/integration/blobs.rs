//! Blobs between real nodes over libp2p on 127.0.0.1.

use std::time::Duration;

use anyhow::Result;
use cnode_blobs::{DownloadOptions, ExportMode};
use cnode_testkit::{
    DEFAULT_TIMEOUT, NodeOptions, TestNode, Transports, shutdown_all, timeout, wait_until,
};
use reqwest::StatusCode;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// Seeder first, then leechers each bootstrapped to the seeder and to every
/// earlier leecher, so all are connected.
async fn swarm(leechers: usize, seeder_slots: usize) -> Result<Vec<TestNode>> {
    let mut nodes = vec![
        TestNode::spawn(NodeOptions {
            upload_slots: Some(seeder_slots),
            // A seeder with one slot and a modest uplink (like a home
            // connection) cannot serve everyone alone.
            upload_limit: (seeder_slots == 1).then_some(30 * 1024 * 1024),
            ..Default::default()
        })
        .await?,
    ];
    for _ in 0..leechers {
        let bootstrap = nodes.iter().map(|n| n.addr(Transports::Quic)).collect();
        nodes.push(
            TestNode::spawn(NodeOptions {
                bootstrap,
                ..Default::default()
            })
            .await?,
        );
    }
    for n in &nodes[1..] {
        for m in &nodes {
            if m.peer_id() != n.peer_id() {
                n.wait_connected(m.peer_id(), DEFAULT_TIMEOUT).await?;
            }
        }
    }
    Ok(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seeder_three_leechers_trade_pieces() -> Result<()> {
    // One upload slot on the seeder: leechers are often told "busy" and must
    // get pieces from each other, like a BitTorrent swarm.
    let nodes = swarm(3, 1).await?;
    let bytes = data(40 * 1024 * 1024 + 12345, 5);
    let src = tempfile::NamedTempFile::new()?;
    std::fs::write(src.path(), &bytes)?;
    let report = nodes[0].node.blobs().add(src.path(), true).await?;
    assert_eq!(report.hash, cnode_types::BlobHash::of(&bytes));

    let downloads = nodes[1..].iter().map(|n| {
        let blobs = n.node.blobs().clone();
        async move {
            blobs
                .download(report.hash, DownloadOptions::default())
                .await
        }
    });
    let results = timeout(
        "three downloads",
        Duration::from_secs(120),
        futures::future::join_all(downloads),
    )
    .await?;
    let seeder = nodes[0].peer_id();
    let mut from_leechers = 0;
    for (n, r) in nodes[1..].iter().zip(results) {
        let stats = r.map_err(anyhow::Error::msg)?;
        let s = &stats[0];
        let total: u64 = s.pieces_from.values().sum();
        assert_eq!(
            total,
            cnode_blobs::protocol::piece_count(bytes.len() as u64)
        );
        from_leechers += s
            .pieces_from
            .iter()
            .filter(|(p, _)| **p != seeder)
            .map(|(_, c)| *c)
            .sum::<u64>();
        eprintln!("{}: pieces per source {:?}", n.name, s.pieces_from);
        let got = stored(n, report.hash, bytes.len()).await?;
        assert!(got == bytes, "{}: content differs", n.name);
        assert!(n.node.blobs().store().verify(report.hash).await?);
    }
    assert!(
        from_leechers > 0,
        "leechers never traded pieces with each other"
    );
    shutdown_all(nodes).await;
    Ok(())
}

/// The whole content of a complete blob in `node`'s store.
async fn stored(node: &TestNode, hash: cnode_types::BlobHash, len: usize) -> Result<Vec<u8>> {
    Ok(node
        .node
        .blobs()
        .store()
        .read_at(hash, 0, len)
        .await?
        .expect("complete"))
}

/// A counter from the node's Prometheus text (0 when absent).
fn metric(node: &TestNode, name: &str) -> f64 {
    let text = node.node.encode_metrics().expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_carry_pieces_and_a_node_without_lanes_is_asked_the_usual_way() -> Result<()> {
    let bytes = data(24 * 1024 * 1024 + 777, 3);
    let src = tempfile::NamedTempFile::new()?;
    std::fs::write(src.path(), &bytes)?;
    // Over IPv4 and IPv6 (lanes listen on every TCP IP), and with a seeder
    // that has no lanes.
    for (seeder_lanes, transports) in [
        (true, Transports::Tcp),
        (true, Transports::Tcp6),
        (false, Transports::Tcp),
    ] {
        let seeder = TestNode::spawn(NodeOptions {
            lanes: seeder_lanes,
            transports,
            ..Default::default()
        })
        .await?;
        let leecher = TestNode::spawn(NodeOptions {
            bootstrap: vec![seeder.addr(transports)],
            transports,
            ..Default::default()
        })
        .await?;
        leecher
            .wait_connected(seeder.peer_id(), DEFAULT_TIMEOUT)
            .await?;
        let hash = seeder.node.blobs().add(src.path(), true).await?.hash;
        let stats = timeout(
            "download",
            DEFAULT_TIMEOUT,
            leecher
                .node
                .blobs()
                .download(hash, DownloadOptions::default()),
        )
        .await?
        .map_err(anyhow::Error::msg)?;
        let pieces = cnode_blobs::protocol::piece_count(bytes.len() as u64);
        assert_eq!(stats[0].pieces_from.values().sum::<u64>(), pieces);
        let got = stored(&leecher, hash, bytes.len()).await?;
        assert!(
            got == bytes,
            "content differs (seeder lanes {seeder_lanes}, {transports:?})"
        );
        let on_lanes = metric(&leecher, "cnode_net_lane_requests_total");
        eprintln!(
            "seeder lanes {seeder_lanes}, {transports:?}: {on_lanes} of the requests on a lane"
        );
        if seeder_lanes {
            // The first requests go the usual way while the lane opens.
            assert!(
                on_lanes >= (pieces / 2) as f64,
                "only {on_lanes} of {pieces} pieces came over the lane"
            );
            assert_eq!(metric(&leecher, "cnode_net_lanes"), 1.0);
        } else {
            assert_eq!(on_lanes, 0.0, "a seeder without lanes has no lane port");
        }
        shutdown_all(vec![leecher, seeder]).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupting_peer_is_detected_and_dropped() -> Result<()> {
    let nodes = swarm(2, 32).await?;
    // nodes[1] has the blob and corrupts every piece it serves (its size
    // proof is honest, so the leecher gets as far as asking it for pieces).
    // Only once the leecher is asking it does nodes[0] get the blob too:
    // left to a race, the honest peer could serve all 12 pieces before the
    // corrupting one was ever asked.
    let bytes = data(12 * 1024 * 1024, 9);
    let src = tempfile::NamedTempFile::new()?;
    std::fs::write(src.path(), &bytes)?;
    let hash = nodes[1].node.blobs().add(src.path(), true).await?.hash;
    nodes[1].node.blobs().store().set_corrupt_responses(true);
    let leecher = nodes[2].node.blobs().clone();
    let download =
        tokio::spawn(async move { leecher.download(hash, DownloadOptions::default()).await });
    // The size is known once the (honest) size proof held; pieces are asked
    // of the only provider right after.
    let leecher = &nodes[2];
    wait_until("size proven", DEFAULT_TIMEOUT, || async {
        let p = leecher.node.blobs().progress(hash);
        p.is_some_and(|p| p.size.is_some())
    })
    .await?;
    nodes[0].node.blobs().add(src.path(), true).await?;
    let stats = timeout("download", DEFAULT_TIMEOUT, download)
        .await??
        .map_err(anyhow::Error::msg)?;
    let s = &stats[0];
    let bad = nodes[1].peer_id();
    eprintln!("stats: {s:?}");
    // The bad peer was asked, every piece it sent failed verification, and
    // it was dropped.
    assert!(s.bad_pieces.get(&bad).copied().unwrap_or(0) >= 1, "{s:?}");
    assert_eq!(
        s.pieces_from.get(&bad),
        None,
        "no piece from the corrupting peer was accepted"
    );
    assert_eq!(
        s.dropped,
        vec![bad],
        "dropped once, however many bad pieces were in flight"
    );
    assert_eq!(s.pieces_from.get(&nodes[0].peer_id()).copied(), Some(12));
    assert!(
        nodes[2]
            .node
            .blobs()
            .misbehaviour()
            .get(&bad)
            .copied()
            .unwrap_or(0)
            >= 1
    );
    assert!(stored(&nodes[2], hash, bytes.len()).await? == bytes);
    shutdown_all(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_round_trips_between_nodes() -> Result<()> {
    let nodes = swarm(2, 32).await?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("photos/2026/songkran"))?;
    std::fs::write(dir.path().join("README"), b"hello")?;
    std::fs::write(
        dir.path().join("photos/2026/songkran/a.jpg"),
        data(3_000_000, 1),
    )?;
    std::fs::write(dir.path().join("photos/b.txt"), b"b")?;
    let report = nodes[0].node.blobs().add(dir.path(), true).await?;
    assert_eq!(report.files, 3);
    timeout(
        "download",
        DEFAULT_TIMEOUT,
        nodes[1]
            .node
            .blobs()
            .download(report.hash, DownloadOptions::default()),
    )
    .await?
    .map_err(anyhow::Error::msg)?;
    // Handed over to a folder (what `cnode get -o` does): the files are
    // there, and the store keeps serving them from there.
    let out = tempfile::tempdir()?;
    let dest = out.path().join("copy");
    cnode_blobs::collection::export(
        nodes[1].node.blobs().store(),
        report.hash,
        &dest,
        ExportMode::Move,
    )
    .await?;
    let paths = ["README", "photos/2026/songkran/a.jpg", "photos/b.txt"];
    let same_tree = |at: &std::path::Path| -> Result<()> {
        for p in paths {
            assert_eq!(
                std::fs::read(at.join(p))?,
                std::fs::read(dir.path().join(p))?,
                "{p}"
            );
        }
        Ok(())
    };
    same_tree(&dest)?;
    // The seeder drops everything; the last node can only fetch the tree
    // from the handed-over files.
    let seeder = nodes[0].node.blobs().store();
    for b in seeder.list().await? {
        seeder.remove(b.hash).await?;
    }
    timeout(
        "download from the handed-over files",
        DEFAULT_TIMEOUT,
        nodes[2]
            .node
            .blobs()
            .download(report.hash, DownloadOptions::default()),
    )
    .await?
    .map_err(anyhow::Error::msg)?;
    let dest2 = out.path().join("again");
    cnode_blobs::collection::export(
        nodes[2].node.blobs().store(),
        report.hash,
        &dest2,
        ExportMode::Copy,
    )
    .await?;
    same_tree(&dest2)?;
    shutdown_all(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_range_requests_and_quota() -> Result<()> {
    let seeder = TestNode::spawn(NodeOptions::default()).await?;
    let node = TestNode::spawn(NodeOptions {
        api: true,
        bootstrap: vec![seeder.addr(Transports::Quic)],
        blob_quota: Some(16 * 1024 * 1024),
        ..Default::default()
    })
    .await?;
    node.wait_connected(seeder.peer_id(), DEFAULT_TIMEOUT)
        .await?;
    let base = format!("http://{}", node.api.as_ref().unwrap().addr());
    let token = node.node.data_dir().load_token()?;
    let http = reqwest::Client::new();

    // Upload through the API (streamed).
    let bytes = data(3 * 1024 * 1024 + 17, 3);
    let r: serde_json::Value = http
        .post(format!("{base}/v1/blobs"))
        .bearer_auth(&token)
        .body(bytes.clone())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let cid = r["cid"].as_str().unwrap().to_owned();
    assert_eq!(cid, cnode_types::BlobHash::of(&bytes).to_cid());

    let get = |range: Option<&str>| {
        let mut req = http
            .get(format!("{base}/v1/blobs/{cid}"))
            .bearer_auth(&token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let full = get(None).await?;
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert!(full.bytes().await? == bytes);
    let part = get(Some("bytes=1048570-1048589")).await?;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1048570-1048589/{}", bytes.len())
    );
    assert_eq!(part.bytes().await?.as_ref(), &bytes[1048570..1048590]);
    let tail = get(Some("bytes=-5")).await?;
    assert_eq!(tail.bytes().await?.as_ref(), &bytes[bytes.len() - 5..]);
    let past = get(Some(&format!("bytes={}-", bytes.len()))).await?;
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", bytes.len())
    );

    // Server-sent transfer events: subscribe, then fetch something.
    let mut events = http
        .get(format!("{base}/v1/events"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let third = data(3 * 1024 * 1024, 6);
    let src3 = tempfile::NamedTempFile::new()?;
    std::fs::write(src3.path(), &third)?;
    let cid3 = seeder
        .node
        .blobs()
        .add(src3.path(), true)
        .await?
        .hash
        .to_cid();
    let r = http
        .post(format!("{base}/v1/blobs/{cid3}/download"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "wait": true }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let done: serde_json::Value = r.json().await?;
    assert_eq!(done["fetched_bytes"], third.len());
    let mut seen = String::new();
    timeout("a done transfer event", DEFAULT_TIMEOUT, async {
        while !(seen.contains("event: transfer") && seen.contains("\"state\":\"done\"")) {
            match events.chunk().await {
                Ok(Some(c)) => seen.push_str(&String::from_utf8_lossy(&c)),
                _ => break,
            }
        }
    })
    .await?;
    assert!(seen.contains(&cid3), "{seen}");

    // A blob the node does not have is fetched from the seeder while streamed.
    let other = data(2 * 1024 * 1024, 8);
    let src = tempfile::NamedTempFile::new()?;
    std::fs::write(src.path(), &other)?;
    let ocid = seeder
        .node
        .blobs()
        .add(src.path(), true)
        .await?
        .hash
        .to_cid();
    let r = http
        .get(format!("{base}/v1/blobs/{ocid}"))
        .bearer_auth(&token)
        .header("range", "bytes=1000000-1000009")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await?.as_ref(), &other[1000000..1000010]);

    // Over the quota (16 MiB; ~8 MiB used): a clear 507, nothing half-written.
    let big = data(9 * 1024 * 1024, 4);
    let r = http
        .post(format!("{base}/v1/blobs"))
        .bearer_auth(&token)
        .body(big.clone())
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::INSUFFICIENT_STORAGE);
    let err: serde_json::Value = r.json().await?;
    assert!(err["error"].as_str().unwrap().contains("quota"), "{err}");
    let list: serde_json::Value = http
        .get(format!("{base}/v1/blobs"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    let tmp = node.data_dir().join("blobs/tmp");
    assert_eq!(std::fs::read_dir(tmp)?.count(), 0);

    // gc frees unpinned only.
    http.delete(format!("{base}/v1/blobs/{ocid}/pin"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    let gc: serde_json::Value = http
        .post(format!("{base}/v1/blobs/gc"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(gc["removed"], 1);
    assert_eq!(
        gc["hashes"],
        serde_json::json!([ocid]),
        "gc names what it removed"
    );
    let r = http
        .get(format!("{base}/v1/blobs/{cid}/status"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);

    // Export: `move` hands the store's file over and the node still serves
    // the blob from it; a mode it does not know or a relative path is a 4xx
    // and writes nothing.
    let out = tempfile::tempdir()?;
    let export = |body: serde_json::Value| {
        http.post(format!("{base}/v1/blobs/{cid3}/export"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let moved = out.path().join("moved.bin");
    export(serde_json::json!({ "path": moved, "mode": "move" }))
        .await?
        .error_for_status()?;
    assert!(std::fs::read(&moved)? == third);
    let st: serde_json::Value = http
        .get(format!("{base}/v1/blobs/{cid3}/status"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        st["info"]["external"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(std::fs::canonicalize(&moved)?),
        "{st}"
    );
    let again = http
        .get(format!("{base}/v1/blobs/{cid3}"))
        .bearer_auth(&token)
        .header("range", "bytes=5-14")
        .send()
        .await?;
    assert_eq!(again.bytes().await?.as_ref(), &third[5..15]);
    for bad in [
        serde_json::json!({ "path": out.path().join("x"), "mode": "teleport" }),
        serde_json::json!({ "path": "relative/x", "mode": "copy" }),
    ] {
        let r = export(bad.clone()).await?;
        assert!(r.status().is_client_error(), "{bad}: {}", r.status());
    }
    assert!(!out.path().join("x").exists());
    shutdown_all(vec![node, seeder]).await;
    Ok(())
}
