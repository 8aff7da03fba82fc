//! Plugin packages over the swarm and the on-chain API list, with two real
//! nodes and a real `anvil`: node A publishes the `events` example (a
//! signed package folder added to its blobs, `proposeService`), a steward
//! approves it, and node B installs `org.cnode.events` by service id — the
//! package comes from A over `/cnode/blobs/1` — and serves it. Refused, each
//! with a clear error while B keeps serving its other plugin: a manifest
//! hash that does not match the API list, a package signed by another key
//! than the on-chain publisher, a revoked service, a CID whose folder has
//! no component.wasm. An unsigned package installs by CID, shown unsigned.
//!
//! Needs anvil (`scripts/setup-chain-tools`) and the wasm32-wasip2 target.

use crate::support::{Api, build_example};
use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use cnode_node::{
    cnode_registry::{
        Address, B256, ChainConfig, PrivateKeySigner, ServiceStatus, Writer,
        devnet::{Anvil, AnvilOptions, DEVNET_CHAIN_ID, deploy_dev_registry, dev_key, mine},
    },
    plugins::package::{PublisherSig, write_package},
};
use cnode_testkit::{NodeOptions, TestNode, Transports, wait_until};
use cnode_types::BlobHash;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn build_events() -> (String, Vec<u8>) {
    let dist = build_example("events");
    (
        std::fs::read_to_string(dist.join("plugin.toml")).unwrap(),
        std::fs::read(dist.join("events.wasm")).unwrap(),
    )
}

/// The events manifest under another id and version.
fn renamed(manifest: &str, id: &str, version: &str) -> String {
    manifest
        .replace("id = \"org.cnode.events\"", &format!("id = \"{id}\""))
        .replace("version = \"0.1.0\"", &format!("version = \"{version}\""))
}

/// Writes a package folder under `dir/name`, signed by `signer` if given,
/// adds it to `node`'s blobs (pinned, announced); returns its root.
async fn add_package(
    node: &TestNode,
    dir: &Path,
    name: &str,
    manifest: &str,
    component: &[u8],
    signer: Option<&PrivateKeySigner>,
) -> Result<BlobHash> {
    let out = dir.join(name);
    let sig = signer
        .map(|s| PublisherSig::sign(s, manifest, component))
        .transpose()?;
    write_package(&out, manifest, component, sig.as_ref())?;
    Ok(node.node.blobs().add(&out, true).await?.hash)
}

fn b256(h: BlobHash) -> B256 {
    B256::from(*h.as_bytes())
}

impl Api {
    async fn install_json(&self, body: Value) -> Result<(StatusCode, Value)> {
        let r = self
            .http
            .post(format!("{}/v1/plugins", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    async fn get_status(&self, path: &str) -> Result<StatusCode> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .status())
    }

    /// B's other plugin still answers.
    async fn other_serves(&self) -> Result<()> {
        assert_eq!(
            self.get_status("/v1/services/org.test.other/?region=w5q6")
                .await?,
            StatusCode::OK,
            "the other plugin keeps serving"
        );
        Ok(())
    }
}

/// A refusal: `status`, an error containing `want`, nothing installed.
async fn refused(api: &Api, body: Value, status: StatusCode, want: &str, id: &str) -> Result<()> {
    let (got, v) = api.install_json(body.clone()).await?;
    let msg = v["error"].as_str().unwrap_or_default().to_owned();
    eprintln!("refused ({got}): {msg}");
    assert_eq!(got, status, "{body}: {v}");
    assert!(msg.contains(want), "{body}: expected {want:?} in {msg:?}");
    assert_eq!(
        api.get_status(&format!("/v1/plugins/{id}")).await?,
        StatusCode::NOT_FOUND,
        "{id} is not installed"
    );
    api.other_serves().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packages_install_by_service_id_and_cid_and_bad_ones_are_refused() -> Result<()> {
    let (manifest, component) = build_events();
    let scratch = tempfile::tempdir()?;
    let anvil = Anvil::start(AnvilOptions::default())?;
    let (steward, _) = deploy_dev_registry(&anvil.url()).await?;
    let publisher_key = dev_key(1);
    let publisher = Writer::new(&anvil.url(), publisher_key.clone(), steward.address())?;

    let a = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        ..Default::default()
    })
    .await?;
    let b = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        bootstrap: vec![a.addr(Transports::Tcp)],
        chain: Some(ChainConfig {
            confirmations: 1,
            poll_interval: Duration::from_millis(200),
            ..ChainConfig::new(anvil.url(), steward.address(), DEVNET_CHAIN_ID)
        }),
        ..Default::default()
    })
    .await?;
    b.wait_connected(a.peer_id(), Duration::from_secs(20))
        .await?;
    let api = Api::of(&b)?;

    // B's other plugin, installed from a path.
    let other = scratch.path().join("other");
    std::fs::create_dir_all(&other)?;
    std::fs::write(
        other.join("plugin.toml"),
        renamed(&manifest, "org.test.other", "1.0.0"),
    )?;
    std::fs::write(other.join("component.wasm"), &component)?;
    let (s, v) = api
        .install_json(json!({ "path": other, "grants": "all", "approve": true }))
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    api.other_serves().await?;

    // A publishes: the events package signed by the publisher, proposed.
    let events = add_package(
        &a,
        scratch.path(),
        "events",
        &manifest,
        &component,
        Some(&publisher_key),
    )
    .await?;
    let manifest_hash = BlobHash::of(manifest.as_bytes());
    let (_, events_key) = publisher
        .propose_service(
            "org.cnode.events",
            "0.1.0",
            b256(events),
            b256(manifest_hash),
        )
        .await?;
    // Proposed, not approved yet: refused (once B's snapshot has it).
    mine(&anvil.url(), 1).await?;
    let registry = b.node.registry().context("B has a registry")?.clone();
    wait_until("B sees the proposal", Duration::from_secs(20), || {
        let r = registry.clone();
        async move { r.snapshot().services().any(|s| s.id == "org.cnode.events") }
    })
    .await?;
    refused(
        &api,
        json!({ "service": "org.cnode.events", "approve": true }),
        StatusCode::FORBIDDEN,
        "0.1.0 is proposed, not yet approved",
        "org.cnode.events",
    )
    .await?;

    // A package whose manifest hash does not match its API list entry.
    let mm_manifest = renamed(&manifest, "org.test.mismatch", "1.0.0");
    let mm = add_package(
        &a,
        scratch.path(),
        "mismatch",
        &mm_manifest,
        &component,
        Some(&publisher_key),
    )
    .await?;
    let (_, mm_key) = publisher
        .propose_service(
            "org.test.mismatch",
            "1.0.0",
            b256(mm),
            b256(BlobHash::of(b"another plugin.toml")),
        )
        .await?;
    // A package signed by another key than the on-chain publisher.
    let forged_manifest = renamed(&manifest, "org.test.forged", "1.0.0");
    let forged = add_package(
        &a,
        scratch.path(),
        "forged",
        &forged_manifest,
        &component,
        Some(&dev_key(2)),
    )
    .await?;
    let (_, forged_key) = publisher
        .propose_service(
            "org.test.forged",
            "1.0.0",
            b256(forged),
            b256(BlobHash::of(forged_manifest.as_bytes())),
        )
        .await?;
    // A revoked service (its package is fine).
    let revoked_manifest = renamed(&manifest, "org.test.revoked", "1.0.0");
    let revoked = add_package(
        &a,
        scratch.path(),
        "revoked",
        &revoked_manifest,
        &component,
        Some(&publisher_key),
    )
    .await?;
    let (_, revoked_key) = publisher
        .propose_service(
            "org.test.revoked",
            "1.0.0",
            b256(revoked),
            b256(BlobHash::of(revoked_manifest.as_bytes())),
        )
        .await?;
    for key in [events_key, mm_key, forged_key, revoked_key] {
        steward.approve_service(key).await?;
    }
    steward.revoke_service(revoked_key).await?;
    mine(&anvil.url(), 1).await?;
    wait_until("B sees the approvals", Duration::from_secs(20), || {
        let r = registry.clone();
        async move {
            let s = r.snapshot();
            let status = |id: &str| s.services().find(|x| x.id == id).map(|x| x.status);
            status("org.cnode.events") == Some(ServiceStatus::Approved)
                && status("org.test.forged") == Some(ServiceStatus::Approved)
                && status("org.test.mismatch") == Some(ServiceStatus::Approved)
                && status("org.test.revoked") == Some(ServiceStatus::Revoked)
        }
    })
    .await?;

    // B installs org.cnode.events by service id: preview, then install.
    let mut transfers = b.node.blobs().subscribe();
    let (s, preview) = api
        .install_json(json!({ "service": "org.cnode.events", "preview": true }))
        .await?;
    assert_eq!(s, StatusCode::OK, "{preview}");
    // The package's files came with progress events, like any download.
    let component_hash = BlobHash::of(&component);
    let mut done = Vec::new();
    while let Ok(ev) = transfers.try_recv() {
        if ev.state == cnode_node::TransferState::Done {
            done.push(ev.hash);
        }
    }
    assert!(
        done.contains(&events) && done.contains(&component_hash),
        "done transfers: {done:?}"
    );
    let publisher_addr: Address = publisher_key.address();
    assert_eq!(preview["id"], "org.cnode.events");
    assert_eq!(preview["version"], "0.1.0");
    assert_eq!(preview["package"], events.to_cid());
    assert_eq!(preview["manifest_hash"], manifest_hash.to_hex());
    assert_eq!(preview["publisher"], publisher_addr.to_checksum(None));
    assert_eq!(preview["registry_status"], "approved");
    assert_eq!(
        preview["requested"],
        json!([
            "records:read:collections=org.cnode.events",
            "log:write",
            "clock:read"
        ])
    );
    assert_eq!(
        api.get_status("/v1/plugins/org.cnode.events").await?,
        StatusCode::NOT_FOUND,
        "a preview installs nothing"
    );
    // The package came from A over the swarm.
    let info = b.node.blobs().store().info(events).await?.context("on B")?;
    assert!(info.complete);
    // Approval of another package than the previewed one is refused.
    let (s, v) = api
        .install_json(
            json!({ "service": "org.cnode.events", "approve": true, "package": mm.to_cid() }),
        )
        .await?;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api
        .install_json(json!({
            "service": "org.cnode.events", "approve": true, "grants": "all",
            "package": events.to_cid(),
        }))
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["id"], "org.cnode.events");
    assert_eq!(v["package"]["publisher"], publisher_addr.to_checksum(None));
    assert_eq!(
        api.get_status("/v1/services/org.cnode.events/?region=w5q6")
            .await?,
        StatusCode::OK
    );
    let info = b.node.blobs().store().info(events).await?.context("on B")?;
    assert!(info.pinned, "the installed package is kept (pinned)");
    // The plugin shows where it came from, and who signed it.
    let view = b
        .node
        .plugins()
        .info("org.cnode.events")
        .context("events")?;
    assert_eq!(view.package_cid, Some(events.to_cid()));
    assert_eq!(view.publisher, Some(publisher_addr.to_checksum(None)));
    let local = b.node.plugins().info("org.test.other").context("other")?;
    assert_eq!(
        (local.package_cid, local.publisher),
        (None, None),
        "a local install"
    );

    // Refusals.
    refused(
        &api,
        json!({ "service": "org.test.mismatch", "approve": true }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "package mismatch: the package's plugin.toml has BLAKE3",
        "org.test.mismatch",
    )
    .await?;
    refused(
        &api,
        json!({ "service": "org.test.forged", "approve": true }),
        StatusCode::UNPROCESSABLE_ENTITY,
        &format!(
            "publisher signature: signed by {}, but org.test.forged 1.0.0 was published on chain by {}",
            dev_key(2).address(),
            publisher_addr
        ),
        "org.test.forged",
    )
    .await?;
    refused(
        &api,
        json!({ "service": "org.test.revoked", "approve": true }),
        StatusCode::FORBIDDEN,
        "org.test.revoked has no approved version: 1.0.0 is revoked by a steward",
        "org.test.revoked",
    )
    .await?;
    refused(
        &api,
        json!({ "service": "org.test.nothing", "approve": true }),
        StatusCode::NOT_FOUND,
        "no service org.test.nothing in the registry's API list",
        "org.test.nothing",
    )
    .await?;
    // A CID whose folder has no component.wasm.
    let no_wasm = scratch.path().join("no-wasm");
    std::fs::create_dir_all(&no_wasm)?;
    std::fs::write(
        no_wasm.join("plugin.toml"),
        renamed(&manifest, "org.test.nowasm", "1.0.0"),
    )?;
    let no_wasm = a.node.blobs().add(&no_wasm, true).await?.hash;
    refused(
        &api,
        json!({ "cid": no_wasm.to_cid(), "approve": true }),
        StatusCode::UNPROCESSABLE_ENTITY,
        "not a plugin package: it has no component.wasm",
        "org.test.nowasm",
    )
    .await?;
    // A CID nobody has.
    refused(
        &api,
        json!({ "cid": BlobHash::of(b"nobody has this").to_cid(), "approve": true }),
        StatusCode::BAD_GATEWAY,
        "cannot fetch the package",
        "org.test.none",
    )
    .await?;

    // An unsigned package by CID: shown unsigned, installs, serves.
    let unsigned = add_package(
        &a,
        scratch.path(),
        "unsigned",
        &renamed(&manifest, "org.test.unsigned", "1.0.0"),
        &component,
        None,
    )
    .await?;
    let (s, preview) = api
        .install_json(json!({ "cid": unsigned.to_cid(), "preview": true }))
        .await?;
    assert_eq!(s, StatusCode::OK, "{preview}");
    assert_eq!(preview["publisher"], Value::Null, "unsigned");
    assert_eq!(preview["registry_status"], Value::Null);
    let (s, v) = api
        .install_json(
            json!({ "cid": unsigned.to_cid(), "approve": true, "package": unsigned.to_cid() }),
        )
        .await?;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(
        api.get_status("/v1/services/org.test.unsigned/?region=w5q6")
            .await?,
        StatusCode::OK
    );
    let view = b
        .node
        .plugins()
        .info("org.test.unsigned")
        .context("unsigned")?;
    assert_eq!(view.package_cid, Some(unsigned.to_cid()));
    assert_eq!(view.publisher, None, "unsigned");
    // A signed one by CID shows its signer (here: another key than any
    // publisher's; by CID that is only shown, not checked against the chain).
    let (s, preview) = api
        .install_json(json!({ "cid": forged.to_cid(), "preview": true }))
        .await?;
    assert_eq!(s, StatusCode::OK, "{preview}");
    assert_eq!(preview["publisher"], dev_key(2).address().to_checksum(None));
    api.other_serves().await?;

    // Where each plugin came from survives a restart.
    let b_dir = b.data_dir().clone();
    let b_tmp = b.shutdown().await;
    let b = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        data_dir: Some(b_dir),
        ..Default::default()
    })
    .await?;
    let view = b
        .node
        .plugins()
        .info("org.cnode.events")
        .context("events")?;
    assert!(view.loaded, "{view:?}");
    assert_eq!(view.package_cid, Some(events.to_cid()));
    assert_eq!(view.publisher, Some(publisher_addr.to_checksum(None)));
    let local = b.node.plugins().info("org.test.other").context("other")?;
    assert_eq!((local.package_cid, local.publisher), (None, None));

    b.shutdown().await;
    drop(b_tmp);
    a.shutdown().await;
    Ok(())
}
