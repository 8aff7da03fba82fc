//! `cnode add`, `cnode get`, `cnode blobs …`: through the running node's API
//! when there is one, else directly on the data directory.

use std::{
    io::IsTerminal,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use cnode_blobs::{BlobInfo, BlobStore, DownloadOptions, ExportMode};
use cnode_node::{DataDir, NodeBuilder, NodeConfig, Overrides, TransferEvent, TransferState};
use cnode_types::BlobHash;
use libp2p::Multiaddr;
use serde_json::json;

use crate::{cli::BlobsCommand, client::ApiClient, output};

/// A running node's API, if one answers.
async fn running_node(dir: &DataDir) -> Option<ApiClient> {
    let client = ApiClient::from_data_dir(dir).ok()?;
    client.healthz().await.then_some(client)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("bad path {}", p.display()))
}

async fn local_store(dir: &DataDir) -> Result<BlobStore> {
    if !dir.is_initialized() {
        bail!(
            "no node in {}; create one with `cnode init`",
            dir.root().display()
        );
    }
    let config = NodeConfig::resolve(
        dir.root().to_owned(),
        dir.load_config()?,
        Overrides::default(),
    );
    let db = cnode_store::Store::open(dir.root())?;
    Ok(BlobStore::open(dir.path("blobs"), db, config.blob_quota).await?)
}

pub(crate) async fn add(dir: &DataDir, path: &Path, pin: bool, as_json: bool) -> Result<()> {
    let path = absolute(path)?;
    if !path.exists() {
        bail!("{} does not exist", path.display());
    }
    let t = Instant::now();
    let v: serde_json::Value = match running_node(dir).await {
        Some(api) => {
            api.post_json(
                &["v1", "blobs", "import"],
                &json!({ "path": path, "pin": pin }),
            )
            .await?
        }
        None => {
            let store = local_store(dir).await?;
            let r = store.import_path(&path, pin).await?;
            json!({ "cid": r.hash.to_cid(), "kind": format!("{:?}", r.kind).to_lowercase(), "size": r.size, "files": r.files })
        }
    };
    if as_json {
        let mut v = v;
        v["seconds"] = json!(t.elapsed().as_secs_f64());
        output::json(&v);
    } else {
        println!("{}", v["cid"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// Shows progress on a terminal as a bar, elsewhere as a line a second.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    last_line: Instant,
    quiet: bool,
}

impl Bar {
    fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        });
        Self {
            bar,
            last_line: Instant::now() - Duration::from_secs(10),
            quiet,
        }
    }

    fn update(&mut self, ev: &TransferEvent) {
        if self.quiet {
            return;
        }
        let total = ev.size.unwrap_or(0);
        match &self.bar {
            Some(b) => {
                b.set_length(total);
                b.set_position(ev.have_bytes);
                b.set_message(format!("{} peers", ev.peers));
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(1)
                    || ev.state != TransferState::Running
                {
                    self.last_line = Instant::now();
                    let pct = (ev.have_bytes * 100).checked_div(total).unwrap_or(0);
                    eprintln!(
                        "{} / {} bytes ({pct}%) from {} peers at {:.1} MiB/s",
                        ev.have_bytes,
                        total,
                        ev.peers,
                        ev.bytes_per_sec / 1048576.0
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `cnode get`: `out` is where to write and how ([`ExportMode`]).
pub(crate) async fn get(
    dir: &DataDir,
    cid: &str,
    out: Option<(&Path, ExportMode)>,
    peers: Vec<Multiaddr>,
    pin: bool,
    as_json: bool,
) -> Result<()> {
    let hash: BlobHash = cid.parse()?;
    let mode = out.map(|(_, m)| m).unwrap_or_default();
    let out = out.map(|(o, _)| absolute(o)).transpose()?;
    if let Some(o) = &out
        && o.exists()
    {
        bail!("{} already exists; refusing to overwrite it", o.display());
    }
    let t = Instant::now();
    let mut bar = Bar::new(as_json);
    let result = match running_node(dir).await {
        Some(api) => {
            for p in &peers {
                // Best effort: the node may already know it.
                let _ = api
                    .post_json::<serde_json::Value>(
                        &["v1", "dial"],
                        &json!({ "addr": p.to_string() }),
                    )
                    .await;
            }
            api.post_json::<serde_json::Value>(
                &["v1", "blobs", &hash.to_cid(), "download"],
                &json!({ "pin": pin }),
            )
            .await?;
            let last = loop {
                let st: serde_json::Value = api
                    .get_json(&["v1", "blobs", &hash.to_cid(), "status"])
                    .await?;
                if let Some(ev) = st.get("transfer").filter(|t| !t.is_null()) {
                    let ev: TransferEvent = serde_json::from_value(ev.clone())?;
                    bar.update(&ev);
                    match ev.state {
                        TransferState::Done => break ev,
                        TransferState::Failed => {
                            bar.finish();
                            bail!("{}", ev.error.unwrap_or_else(|| "download failed".into()));
                        }
                        TransferState::Running => {}
                    }
                } else if st["info"]["complete"] == json!(true) {
                    break TransferEvent {
                        hash,
                        size: st["info"]["size"].as_u64(),
                        have_bytes: st["info"]["size"].as_u64().unwrap_or(0),
                        peers: 0,
                        bytes_per_sec: 0.0,
                        state: TransferState::Done,
                        error: None,
                    };
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            bar.finish();
            if let Some(o) = &out {
                api.post_json::<serde_json::Value>(
                    &["v1", "blobs", &hash.to_cid(), "export"],
                    &json!({ "path": o, "mode": mode }),
                )
                .await?;
            }
            json!({ "cid": hash.to_cid(), "size": last.size, "path": out, "seconds": t.elapsed().as_secs_f64() })
        }
        None => {
            let out = out.as_deref().map(|o| (o, mode));
            let r = get_embedded(dir, hash, out, peers, pin, &mut bar).await;
            bar.finish();
            let mut v = r?;
            v["seconds"] = json!(t.elapsed().as_secs_f64());
            v
        }
    };
    if as_json {
        output::json(&result);
    } else if let Some(o) = &out {
        println!("{}", o.display());
    } else {
        println!(
            "{} ({} bytes) is in the store",
            hash.to_cid(),
            result["size"]
        );
    }
    Ok(())
}

/// No node running: run one for this download, then stop it.
async fn get_embedded(
    dir: &DataDir,
    hash: BlobHash,
    out: Option<(&Path, ExportMode)>,
    peers: Vec<Multiaddr>,
    pin: bool,
    bar: &mut Bar,
) -> Result<serde_json::Value> {
    if !dir.is_initialized() {
        bail!(
            "no node in {}; create one with `cnode init`",
            dir.root().display()
        );
    }
    let _lock = crate::run::lock_data_dir(dir)?;
    let mut config = NodeConfig::resolve(
        dir.root().to_owned(),
        dir.load_config()?,
        Overrides {
            bootstrap: peers.clone(),
            ..Default::default()
        },
    );
    // Ephemeral ports: this node lives only as long as the download.
    config.listen = ["/ip4/0.0.0.0/udp/0/quic-v1", "/ip4/0.0.0.0/tcp/0"]
        .iter()
        .filter_map(|a| a.parse().ok())
        .collect();
    let node = NodeBuilder::new(config).spawn().await?;
    let result = async {
        // Give bootstrap and known peers a moment to connect, and start as
        // soon as the first one has: on a LAN that is a few milliseconds,
        // and a 256 MiB download takes well under a second. Any network
        // event (or a lag) is a reason to look again.
        let mut net_events = node.subscribe_events();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while node.net().status().await?.connected_peers == 0 {
            match tokio::time::timeout_at(deadline, net_events.recv()).await {
                Err(_) | Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                Ok(_) => {}
            }
        }
        for p in &peers {
            let _ = node.net().dial(p.clone()).await;
        }
        let mut events = node.blobs().subscribe();
        let mut done = node
            .blobs()
            .start(
                hash,
                DownloadOptions {
                    pin,
                    ..Default::default()
                },
            )
            .map_err(|e| anyhow!("{e}"))?;
        let outcome = loop {
            tokio::select! {
                ev = events.recv() => {
                    if let Ok(ev) = ev && ev.hash == hash {
                        bar.update(&ev);
                    }
                }
                changed = done.changed() => {
                    if changed.is_err() {
                        bail!("the download stopped");
                    }
                    if let Some(o) = done.borrow().clone() {
                        break o;
                    }
                }
            }
        };
        let stats = outcome.map_err(|e| anyhow!(e))?;
        if let Some((o, mode)) = out {
            cnode_blobs::collection::export(node.blobs().store(), hash, o, mode).await?;
        }
        let size = node.blobs().store().info(hash).await?.map(|i| i.size);
        Ok(json!({
            "cid": hash.to_cid(),
            "size": size,
            "path": out.map(|(o, _)| o),
            "fetched_bytes": stats.iter().map(|s| s.fetched_bytes).sum::<u64>(),
            "resumed_pieces": stats.iter().map(|s| s.resumed_pieces).sum::<u64>(),
            "sources": stats.first().map(|s| s.pieces_from.len()).unwrap_or(0),
        }))
    }
    .await;
    node.shutdown().await;
    result
}

fn print_list(list: &[BlobInfo], as_json: bool) {
    if as_json {
        output::json(&list);
        return;
    }
    if list.is_empty() {
        println!("no blobs");
        return;
    }
    println!(
        "{:<62} {:>14} {:<10} {:<8} KIND",
        "CID", "SIZE", "STATE", "PINNED"
    );
    for b in list {
        let state = if b.complete {
            "complete".to_owned()
        } else {
            format!("{}%", (b.have_bytes * 100).checked_div(b.size).unwrap_or(0))
        };
        println!(
            "{:<62} {:>14} {:<10} {:<8} {:?}{}",
            b.hash.to_cid(),
            b.size,
            state,
            if b.pinned { "yes" } else { "no" },
            b.kind,
            b.external
                .as_ref()
                .map(|p| format!(" (data at {})", p.display()))
                .unwrap_or_default()
        );
    }
}

pub(crate) async fn blobs(dir: &DataDir, cmd: BlobsCommand) -> Result<()> {
    let api = running_node(dir).await;
    match cmd {
        BlobsCommand::Ls { json: as_json } => {
            let list: Vec<BlobInfo> = match &api {
                Some(api) => api.get_json(&["v1", "blobs"]).await?,
                None => local_store(dir).await?.list().await?,
            };
            print_list(&list, as_json);
        }
        BlobsCommand::Pin { cid } | BlobsCommand::Unpin { cid } | BlobsCommand::Rm { cid }
            if cid.parse::<BlobHash>().is_err() =>
        {
            cid.parse::<BlobHash>()?;
        }
        BlobsCommand::Pin { cid } => {
            let hash: BlobHash = cid.parse()?;
            match &api {
                Some(api) => {
                    api.send_empty(
                        reqwest::Method::PUT,
                        &["v1", "blobs", &hash.to_cid(), "pin"],
                    )
                    .await?
                }
                None => local_store(dir).await?.set_pinned(hash, true).await?,
            }
            println!("pinned {}", hash.to_cid());
        }
        BlobsCommand::Unpin { cid } => {
            let hash: BlobHash = cid.parse()?;
            match &api {
                Some(api) => {
                    api.send_empty(
                        reqwest::Method::DELETE,
                        &["v1", "blobs", &hash.to_cid(), "pin"],
                    )
                    .await?
                }
                None => local_store(dir).await?.set_pinned(hash, false).await?,
            }
            println!("unpinned {}", hash.to_cid());
        }
        BlobsCommand::Rm { cid } => {
            let hash: BlobHash = cid.parse()?;
            match &api {
                Some(api) => {
                    api.send_empty(reqwest::Method::DELETE, &["v1", "blobs", &hash.to_cid()])
                        .await?
                }
                None => {
                    local_store(dir).await?.remove(hash).await?;
                }
            }
            println!("removed {}", hash.to_cid());
        }
        BlobsCommand::Gc { json: as_json } => {
            let report: cnode_blobs::GcReport = match &api {
                Some(api) => api.post_json(&["v1", "blobs", "gc"], &json!({})).await?,
                None => local_store(dir).await?.gc().await?,
            };
            if as_json {
                output::json(&report);
            } else {
                println!(
                    "removed {} blobs, freed {} bytes",
                    report.removed, report.freed_bytes
                );
            }
        }
    }
    Ok(())
}
