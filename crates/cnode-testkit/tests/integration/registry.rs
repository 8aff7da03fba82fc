//! The chain registry in real nodes, against a real `anvil` on 127.0.0.1:
//! a fresh node configured with only the RPC URL and the contract address
//! finds the region's service nodes in the routing table and connects to
//! them; it keeps serving its snapshot through an RPC outage (and after a
//! restart with the RPC gone) and resumes following when anvil is back; a
//! wrong `[chain]` is reported, not fatal.
//!
//! Needs anvil (`scripts/setup-chain-tools`); without it these tests fail
//! with that instruction.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cnode_node::cnode_registry::{
    Address, ChainConfig, Registry as _, Source, U256, Writer,
    devnet::{Anvil, AnvilOptions, DEVNET_CHAIN_ID, deploy_dev_registry, dev_key, mine},
};
use cnode_testkit::{NodeOptions, TestNode, Transports, wait_until};
use cnode_types::RegionId;

fn w5q6() -> RegionId {
    "w5q6".parse().unwrap()
}

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10).pow(U256::from(18))
}

fn chain(anvil: &Anvil, registry: Address) -> ChainConfig {
    ChainConfig {
        confirmations: 1,
        poll_interval: Duration::from_millis(200),
        rpc_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_millis(500),
        ..ChainConfig::new(anvil.url(), registry, DEVNET_CHAIN_ID)
    }
}

/// Three nodes of w5q6 registered by operators 1..=3 and routed by the
/// steward (key 0), on a fresh registry.
async fn registered_region(anvil: &Anvil) -> Result<(Writer, Vec<TestNode>)> {
    let (steward, _) = deploy_dev_registry(&anvil.url()).await?;
    let mut nodes = Vec::new();
    let mut operators = Vec::new();
    for i in 1..=3 {
        let node = TestNode::spawn(NodeOptions {
            transports: Transports::Tcp,
            regions: vec![w5q6()],
            ..NodeOptions::default()
        })
        .await?;
        let operator = Writer::new(&anvil.url(), dev_key(i), steward.address())?;
        operator
            .register(
                ether(1),
                node.peer_id().to_bytes(),
                vec![node.addr(Transports::Tcp).to_string()],
                &[w5q6()],
            )
            .await
            .with_context(|| format!("register node {i}"))?;
        operators.push(operator.sender());
        nodes.push(node);
    }
    steward.set_route(w5q6(), operators).await?;
    // Bury the route under the followers' one confirmation.
    mine(&anvil.url(), 1).await?;
    Ok((steward, nodes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_node_finds_its_region_through_the_registry_and_survives_rpc_outages() -> Result<()> {
    let state = tempfile::tempdir()?;
    let mut anvil = Anvil::start(AnvilOptions {
        state: Some(state.path().join("anvil.json")),
        ..AnvilOptions::default()
    })?;
    let (steward, region_nodes) = registered_region(&anvil).await?;

    // Only the RPC URL and the contract: no bootstrap peers, no mDNS.
    let started = Instant::now();
    let fresh = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        regions: vec![w5q6()],
        chain: Some(chain(&anvil, steward.address())),
        api: true,
        ..NodeOptions::default()
    })
    .await?;
    for n in &region_nodes {
        fresh
            .wait_connected(n.peer_id(), Duration::from_secs(30))
            .await?;
    }
    eprintln!(
        "fresh node connected to its 3 region nodes via the registry in {} ms",
        started.elapsed().as_millis()
    );
    let registry = fresh
        .node
        .registry()
        .context("the node has a registry")?
        .clone();
    let status = registry.status();
    assert_eq!(status.source, Source::Live, "{status:?}");
    let route = registry.route(w5q6()).await;
    let ordered: Vec<_> = route.iter().filter_map(|n| n.peer_id()).collect();
    let expected: Vec<_> = region_nodes.iter().map(|n| n.peer_id()).collect();
    assert_eq!(ordered, expected, "the route, in the stewards' order");

    // The API and `cnode status` show it.
    let api = fresh.api.as_ref().context("api")?;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://{}{path}", api.addr()))
            .bearer_auth(fresh.node.data_dir().load_token().unwrap())
            .send()
    };
    let info: serde_json::Value = get("/v1/registry").await?.json().await?;
    assert_eq!(info["source"], "live", "{info}");
    assert_eq!(info["nodes"], 3, "{info}");
    let routes: serde_json::Value = get("/v1/registry/routes?region=w5q6").await?.json().await?;
    let routed: Vec<String> = routes[0]["nodes"]
        .as_array()
        .context("route nodes")?
        .iter()
        .map(|n| n["peer_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = region_nodes
        .iter()
        .map(|n| n.peer_id().to_string())
        .collect();
    assert_eq!(routed, expected, "the route in the stewards' order");
    let status: serde_json::Value = get("/v1/status").await?.json().await?;
    assert_eq!(status["registry"]["chain_id"], DEVNET_CHAIN_ID, "{status}");
    assert_eq!(
        get("/v1/registry/routes?region=W5Q").await?.status(),
        reqwest::StatusCode::BAD_REQUEST
    );

    // RPC outage: the node keeps serving from its snapshot.
    let calls_before = registry.rpc_calls();
    anvil.stop()?;
    wait_until("registry source snapshot", Duration::from_secs(15), || {
        let r = registry.clone();
        async move { r.status().source == Source::Snapshot && r.status().last_error.is_some() }
    })
    .await?;
    assert_eq!(
        registry.route(w5q6()).await.len(),
        3,
        "snapshot still answers"
    );
    let info: serde_json::Value = get("/v1/registry").await?.json().await?;
    assert_eq!(info["source"], "snapshot", "{info}");
    assert!(calls_before > 0);

    // anvil back with the same chain: the node follows again and sees a
    // new change (node 3 leaves the route).
    anvil.restart()?;
    wait_until("registry live again", Duration::from_secs(20), || {
        let r = registry.clone();
        async move { r.status().source == Source::Live }
    })
    .await?;
    let route = vec![dev_key(1).address(), dev_key(2).address()];
    steward.set_route(w5q6(), route).await?;
    mine(&anvil.url(), 1).await?;
    wait_until("the shorter route applied", Duration::from_secs(20), || {
        let r = registry.clone();
        async move { r.route(w5q6()).await.len() == 2 }
    })
    .await?;

    // Restarted with the RPC gone, the node starts from its snapshot and
    // still finds the region's nodes.
    anvil.kill();
    let data_dir = fresh.data_dir().clone();
    let config = chain(&anvil, steward.address());
    let keep = fresh.shutdown().await;
    let restarted = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        regions: vec![w5q6()],
        chain: Some(config),
        data_dir: Some(data_dir),
        ..NodeOptions::default()
    })
    .await?;
    for n in &region_nodes[..2] {
        restarted
            .wait_connected(n.peer_id(), Duration::from_secs(30))
            .await?;
    }
    let status = restarted.node.registry().context("registry")?.status();
    assert_eq!(status.source, Source::Snapshot, "{status:?}");
    restarted.shutdown().await;
    drop(keep);
    cnode_testkit::shutdown_all(region_nodes).await;
    Ok(())
}

/// A `[chain]` that is wrong does not stop the node: it runs, and the
/// registry status says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_chain_is_reported_and_the_node_keeps_running() -> Result<()> {
    let anvil = Anvil::start(AnvilOptions::default())?;
    let (steward, _) = deploy_dev_registry(&anvil.url()).await?;
    let cases = [
        (
            ChainConfig {
                chain_id: 1,
                ..chain(&anvil, steward.address())
            },
            "chain id",
        ),
        (chain(&anvil, Address::repeat_byte(0x42)), "no contract"),
    ];
    for (config, expect) in cases {
        let node = TestNode::spawn(NodeOptions {
            transports: Transports::Tcp,
            chain: Some(config),
            ..NodeOptions::default()
        })
        .await?;
        let registry = node.node.registry().context("registry")?.clone();
        wait_until(expect, Duration::from_secs(15), || {
            let r = registry.clone();
            async move {
                r.status()
                    .last_error
                    .is_some_and(|e| e.to_lowercase().contains(expect))
            }
        })
        .await?;
        assert_eq!(registry.status().source, Source::Snapshot);
        // The node itself still answers.
        assert!(node.node.net().status().await.is_ok());
        node.shutdown().await;
    }
    Ok(())
}
