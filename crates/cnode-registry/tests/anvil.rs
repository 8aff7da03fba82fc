//! The registry client against a real `anvil` running the compiled
//! `CnodeRegistry` (contracts/artifacts): deploy, register, follow, RPC
//! outage and restart, reorg, governance, and bad input.
//!
//! Needs `anvil` at `$CNODE_CHAIN_TOOLS/bin/anvil` (default
//! `~/.cache/cnode/chain-tools`); `scripts/setup-chain-tools` installs it.
//! Without it every test here fails with that instruction.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    time::{Duration, Instant},
};

use alloy::providers::{Provider, ProviderBuilder};
use anyhow::Result;
use cnode_registry::{
    Address, ChainConfig, FollowError, NodeStatus, Params, PrivateKeySigner, ProposalAction,
    Registry, RegistryHandle, RegistryService, RpcError, ServiceStatus, Source, TxError, U256,
    Writer,
    artifact::RegistryInit,
    bindings::RegistryErrors,
    check_chain,
    devnet::{self, AnvilOptions},
    service_key,
};
use cnode_types::{Keypair, RegionId};
use tokio_util::sync::CancellationToken;

/// anvil's default chain id.
const CHAIN_ID: u64 = devnet::DEVNET_CHAIN_ID;

/// anvil's well-known development keys.
fn key(i: usize) -> PrivateKeySigner {
    devnet::dev_key(i)
}

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10).pow(U256::from(18))
}

fn w5q6() -> RegionId {
    "w5q6".parse().expect("region")
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One anvil on 127.0.0.1 (`cnode_registry::devnet`), optionally persisting
/// its chain to a state file so a restart continues the same chain, with the
/// raw JSON-RPC calls the tests need.
struct Anvil(devnet::Anvil);

impl Anvil {
    fn start(state: Option<&Path>) -> Result<Self> {
        Ok(Self(devnet::Anvil::start(AnvilOptions {
            state: state.map(Path::to_owned),
            ..AnvilOptions::default()
        })?))
    }

    fn restart(&mut self) -> Result<()> {
        Ok(self.0.restart()?)
    }

    /// Stops anvil with SIGTERM, so it writes its state file.
    fn stop(&mut self) -> Result<()> {
        Ok(self.0.stop()?)
    }

    fn url(&self) -> String {
        self.0.url()
    }

    async fn rpc<R: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        params: serde_json::Value,
    ) -> Result<R> {
        let p = ProviderBuilder::new().connect_http(self.url().parse()?);
        let v: serde_json::Value = p.raw_request(method.into(), params).await?;
        Ok(serde_json::from_value(v)?)
    }

    async fn mine(&self, blocks: u64) -> Result<()> {
        Ok(devnet::mine(&self.url(), blocks).await?)
    }
}

fn params() -> Params {
    Params {
        min_stake: ether(1),
        unbonding_delay: 0,
        proposal_ttl: 3600,
    }
}

/// Deploys the registry with account 0 as the only steward (threshold 1).
async fn deploy(anvil: &Anvil) -> Result<Writer> {
    let init = RegistryInit {
        stewards: vec![key(0).address()],
        threshold: U256::from(1),
        params: params(),
    };
    let (w, outcome) = Writer::deploy_registry(&anvil.url(), key(0), &init).await?;
    assert!(outcome.gas_used > 0);
    Ok(w)
}

fn config(anvil: &Anvil, registry: Address, confirmations: u64) -> ChainConfig {
    ChainConfig {
        confirmations,
        poll_interval: Duration::from_millis(100),
        rpc_timeout: Duration::from_secs(2),
        max_backoff: Duration::from_millis(300),
        ..ChainConfig::new(anvil.url(), registry, CHAIN_ID)
    }
}

async fn wait_for<T>(
    what: &str,
    handle: &RegistryHandle,
    mut f: impl FnMut(&RegistryHandle) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f(handle) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status {:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

struct Operator {
    writer: Writer,
    peer: cnode_types::PeerId,
    addr: String,
}

async fn register(anvil: &Anvil, registry: Address, i: usize) -> Result<Operator> {
    let writer = Writer::new(&anvil.url(), key(i), registry)?;
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    let addr = format!("/ip4/10.0.0.{i}/udp/4040/quic-v1");
    let out = writer
        .register(ether(1), peer.to_bytes(), vec![addr.clone()], &[w5q6()])
        .await?;
    assert!(out.gas_used > 21_000);
    Ok(Operator { writer, peer, addr })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_registry_and_survives_rpc_outage() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut anvil = Anvil::start(Some(&dir.path().join("chain.json")))?;
    let steward = deploy(&anvil).await?;
    let registry = steward.address();

    let mut ops = Vec::new();
    for i in 1..=3 {
        ops.push(register(&anvil, registry, i).await?);
    }
    let order = vec![
        ops[2].writer.sender(),
        ops[0].writer.sender(),
        ops[1].writer.sender(),
    ];
    steward.set_route(w5q6(), order.clone()).await?;

    let data = dir.path().join("node");
    std::fs::create_dir_all(&data)?;
    let cancel = CancellationToken::new();
    let reg = RegistryService::spawn(config(&anvil, registry, 1), &data, cancel.clone())?;
    // The route's block needs one block on top.
    anvil.mine(1).await?;
    let route = wait_for("the route", &reg, |r| {
        let route = r
            .snapshot()
            .route(&w5q6())
            .into_iter()
            .cloned()
            .collect::<Vec<_>>();
        (route.len() == 3).then_some(route)
    })
    .await;
    assert_eq!(route.iter().map(|n| n.operator).collect::<Vec<_>>(), order);
    let by_order = [&ops[2], &ops[0], &ops[1]];
    for (node, op) in route.iter().zip(by_order) {
        assert_eq!(node.peer_id(), Some(op.peer));
        assert_eq!(node.multiaddrs, vec![op.addr.clone()]);
        assert_eq!(node.regions, vec![w5q6()]);
        assert_eq!(node.stake, ether(1));
        assert_eq!(node.status, NodeStatus::Active);
    }
    let status = Registry::status(&reg).await;
    assert_eq!(status.source, Source::Live);
    assert_eq!(status.chain_id, CHAIN_ID);
    assert_eq!(status.contract, registry);
    assert_eq!(status.lag, Some(1));
    let stewards = reg.stewards().await;
    assert_eq!(stewards.stewards, vec![steward.sender()]);
    assert_eq!(stewards.threshold, U256::from(1));
    assert_eq!(reg.params().await, params());

    // RPC calls while idle (caught up, 100 ms polls): 2 per poll.
    let c0 = reg.rpc_calls();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_poll_interval = reg.rpc_calls() - c0;
    eprintln!(
        "idle: {per_poll_interval} RPC calls/s at a 100 ms poll interval, i.e. ~{} per minute at the default 2 s",
        per_poll_interval * 60 / 20
    );
    assert!(per_poll_interval <= 25, "{per_poll_interval} calls in 1 s");

    // The RPC goes away: answers keep coming from the snapshot.
    anvil.stop()?;
    // (A poll cut off mid-way may report the lost connection first.)
    wait_for("the outage to be noticed", &reg, |r| {
        let s = r.status();
        (s.source == Source::Snapshot && s.last_error?.contains("unreachable")).then_some(())
    })
    .await;
    assert!(matches!(
        reg.last_error().as_deref(),
        Some(FollowError::Rpc(RpcError::Unreachable { .. }))
    ));
    assert_eq!(reg.route(w5q6()).await.len(), 3);

    // A node restarted while the RPC is down serves the persisted snapshot.
    reg.shutdown().await;
    let reg = RegistryService::spawn(config(&anvil, registry, 1), &data, cancel.clone())?;
    assert_eq!(reg.status().source, Source::Snapshot);
    assert_eq!(reg.route(w5q6()).await.len(), 3);
    assert_eq!(reg.nodes().await.len(), 3);
    wait_for("the restarted follower to fail", &reg, |r| {
        r.status().last_error.filter(|e| e.contains("unreachable"))
    })
    .await;
    assert_eq!(reg.route(w5q6()).await.len(), 3);

    // Offline (no [chain] configured) opens the same snapshot.
    let offline = RegistryService::open_offline(&data)?;
    assert_eq!(offline.route(w5q6()).await.len(), 3);
    assert_eq!(offline.status().source, Source::Snapshot);

    // The same chain comes back on the same port: following resumes.
    anvil.restart()?;
    let fourth = register(&anvil, registry, 4).await?;
    anvil.mine(1).await?;
    wait_for("the fourth node", &reg, |r| {
        r.snapshot().node(&fourth.writer.sender()).map(|_| ())
    })
    .await;
    let status = wait_for("live again", &reg, |r| {
        let s = r.status();
        (s.source == Source::Live).then_some(s)
    })
    .await;
    assert_eq!(status.last_error, None);
    assert_eq!(reg.nodes().await.len(), 4);
    reg.shutdown().await;
    cancel.cancel();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorg_undoes_events() -> Result<()> {
    let anvil = Anvil::start(None)?;
    let steward = deploy(&anvil).await?;
    let registry = steward.address();
    let first = register(&anvil, registry, 1).await?;

    let dir = tempfile::tempdir()?;
    let reg = RegistryService::spawn(
        config(&anvil, registry, 0),
        dir.path(),
        CancellationToken::new(),
    )?;
    wait_for("the first node", &reg, |r| {
        r.snapshot().node(&first.writer.sender()).map(|_| ())
    })
    .await;

    // Register a second node and a route in blocks that will be orphaned.
    let snap: U256 = anvil.rpc("evm_snapshot", serde_json::json!([])).await?;
    let second = register(&anvil, registry, 2).await?;
    steward
        .set_route(w5q6(), vec![second.writer.sender(), first.writer.sender()])
        .await?;
    wait_for("the orphan-to-be route", &reg, |r| {
        (r.snapshot().route(&w5q6()).len() == 2).then_some(())
    })
    .await;
    let orphaned_head = reg.status().applied_block.expect("applied");

    // Back to before them, then a longer fork with a third node instead.
    let reverted: bool = anvil.rpc("evm_revert", serde_json::json!([snap])).await?;
    assert!(reverted);
    let third = register(&anvil, registry, 3).await?;
    anvil.mine(3).await?;
    wait_for("the fork", &reg, |r| {
        let s = r.snapshot();
        (s.node(&third.writer.sender()).is_some() && s.block() > Some(orphaned_head)).then_some(())
    })
    .await;
    let snapshot = reg.snapshot();
    assert!(
        snapshot.node(&second.writer.sender()).is_none(),
        "orphaned registration still there"
    );
    assert!(snapshot.routes().is_empty(), "orphaned route still there");
    assert_eq!(snapshot.nodes().count(), 2);

    // What is on disk agrees (a restart loads it).
    reg.shutdown().await;
    let offline = RegistryService::open_offline(dir.path())?;
    assert_eq!(*offline.snapshot(), *snapshot);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_services_and_stake_round_trip() -> Result<()> {
    let anvil = Anvil::start(None)?;
    let steward = deploy(&anvil).await?;
    let registry = steward.address();
    let node = register(&anvil, registry, 1).await?;
    let op = node.writer.sender();

    node.writer.add_stake(ether(2)).await?;
    let peer2 = Keypair::generate_ed25519().public().to_peer_id();
    let w4rq: RegionId = "w4rq".parse()?;
    node.writer
        .update(
            peer2.to_bytes(),
            vec!["/dns4/node.example/tcp/4040".into()],
            &[w5q6(), w4rq],
        )
        .await?;
    steward.set_route(w4rq, vec![op]).await?;

    // Credit: epoch = block time / 1 day; threshold 1 makes it the score.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let epoch = now.as_secs() / 86_400;
    steward.attest_credit(epoch, &[(op, 700_000)]).await?;

    // Services: propose (anyone), approve and revoke (stewards).
    let (_, skey) = node
        .writer
        .propose_service(
            "org.cnode.events",
            "1.0.0",
            [1u8; 32].into(),
            [2u8; 32].into(),
        )
        .await?;
    assert_eq!(skey, service_key("org.cnode.events", "1.0.0"));
    steward.approve_service(skey).await?;
    let (_, key2) = node
        .writer
        .propose_service(
            "org.cnode.notices",
            "0.1.0",
            [3u8; 32].into(),
            [4u8; 32].into(),
        )
        .await?;
    steward.revoke_service(key2).await?;

    // m-of-n with threshold 1: propose executes after one approval.
    let second = key(2).address();
    let (_, id) = steward.propose_add_steward(second).await?;
    steward.execute(id).await?;
    let (_, id) = steward
        .propose_slash(op, ether(1) / U256::from(2), "bad storage proofs")
        .await?;
    steward.execute(id).await?;
    let new_params = Params {
        min_stake: ether(2),
        unbonding_delay: 0,
        proposal_ttl: 7200,
    };
    let (_, id) = steward.propose_set_params(new_params).await?;
    steward.execute(id).await?;
    let (_, id) = steward.propose_set_threshold(U256::from(2)).await?;
    steward.execute(id).await?;
    // Now two approvals are needed.
    let (_, id) = steward.propose_set_threshold(U256::from(1)).await?;
    let err = steward.execute(id).await.unwrap_err();
    assert!(
        matches!(
            err.registry_error(),
            Some(RegistryErrors::NotEnoughApprovals(_))
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "registry reverted: NotEnoughApprovals(have 1, need 2)"
    );
    let other = Writer::new(&anvil.url(), key(2), registry)?;
    other.approve(id).await?;
    other.execute(id).await?;
    // Left open.
    steward.propose_remove_steward(second).await?;

    let dir = tempfile::tempdir()?;
    let reg = RegistryService::spawn(
        config(&anvil, registry, 0),
        dir.path(),
        CancellationToken::new(),
    )?;
    let head: u64 = anvil
        .rpc::<U256>("eth_blockNumber", serde_json::json!([]))
        .await?
        .to();
    wait_for("catch-up", &reg, |r| {
        (r.status().applied_block >= Some(head)).then_some(())
    })
    .await;

    let n = reg.node(op).await.expect("node");
    assert_eq!(n.peer_id(), Some(peer2));
    assert_eq!(n.regions, vec![w5q6(), w4rq]);
    assert_eq!(n.stake, ether(3) - ether(1) / U256::from(2));
    assert_eq!(n.credit.score, 700_000);
    assert_eq!(n.credit.epoch, epoch);
    assert_eq!(reg.credit(op).await, Some(n.credit));
    assert_eq!(reg.route(w4rq).await.len(), 1);
    let services = reg.services().await;
    assert_eq!(services.len(), 2);
    let events = reg.service(skey).await.expect("service");
    assert_eq!(events.status, ServiceStatus::Approved);
    assert_eq!(events.id, "org.cnode.events");
    assert_eq!(events.version, "1.0.0");
    assert_eq!(events.package_hash, cnode_registry::B256::from([1u8; 32]));
    assert_eq!(events.publisher, op);
    assert_eq!(
        reg.service(key2).await.expect("service").status,
        ServiceStatus::Revoked
    );
    let stewards = reg.stewards().await;
    assert_eq!(stewards.stewards, vec![steward.sender(), second]);
    assert_eq!(stewards.threshold, U256::from(1));
    assert_eq!(reg.params().await, new_params);
    let proposals = reg.proposals().await;
    assert_eq!(proposals.len(), 6);
    assert!(proposals[..5].iter().all(|p| p.executed));
    assert_eq!(proposals[4].approvals, U256::from(2));
    assert_eq!(
        proposals[5].action,
        ProposalAction::RemoveSteward { steward: second }
    );
    assert!(!proposals[5].executed);

    // Leave: deregister, then withdraw (unbonding delay 0) forgets the node.
    node.writer.deregister().await?;
    wait_for("unbonding", &reg, |r| {
        r.snapshot()
            .node(&op)
            .filter(|n| n.status == NodeStatus::Unbonding)
            .map(|_| ())
    })
    .await;
    assert!(
        reg.route(w4rq).await.is_empty(),
        "unbonding nodes are not routed"
    );
    let out = node.writer.withdraw().await?;
    assert!(out.gas_used > 0);
    wait_for("withdrawn", &reg, |r| {
        r.snapshot().node(&op).is_none().then_some(())
    })
    .await;
    reg.shutdown().await;
    Ok(())
}

/// A server that answers every request with HTTP 200 and a body that is not JSON.
fn garbage_server() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let body = "<html>502 bad gateway, but with status 200</html>";
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(port)
}

/// A server that accepts connections and never answers.
fn silent_server() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let port = l.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming().flatten() {
            held.push(s);
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_typed_errors() -> Result<()> {
    let anvil = Anvil::start(None)?;
    let steward = deploy(&anvil).await?;
    let registry = steward.address();
    let ok = config(&anvil, registry, 2);
    let info = check_chain(&ok).await?;
    assert_eq!(info.chain_id, CHAIN_ID);
    assert!(info.deploy_block >= 1);

    // Wrong chain id.
    let err = check_chain(&ChainConfig {
        chain_id: 1,
        ..ok.clone()
    })
    .await
    .unwrap_err();
    assert!(matches!(
        err,
        FollowError::ChainIdMismatch {
            rpc: CHAIN_ID,
            config: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "chain id mismatch: RPC says 31337, config says 1"
    );

    // No contract at the address.
    let nothing = Address::repeat_byte(0x42);
    let err = check_chain(&ChainConfig {
        registry_address: nothing,
        ..ok.clone()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, FollowError::NoContract { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("no contract at {nothing} on chain {CHAIN_ID}")
    );

    // An RPC that answers garbage.
    let garbage = format!("http://127.0.0.1:{}", garbage_server()?);
    let err = check_chain(&ChainConfig {
        rpc_url: garbage.clone(),
        ..ok.clone()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FollowError::Rpc(RpcError::BadResponse {
                method: "eth_chainId",
                ..
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("garbage"), "{err}");

    // An RPC that never answers.
    let silent = format!("http://127.0.0.1:{}", silent_server()?);
    let started = Instant::now();
    let err = check_chain(&ChainConfig {
        rpc_url: silent.clone(),
        rpc_timeout: Duration::from_millis(300),
        ..ok.clone()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, FollowError::Rpc(RpcError::Timeout { .. })),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // An RPC that is not there.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let err = check_chain(&ChainConfig {
        rpc_url: closed,
        ..ok.clone()
    })
    .await
    .unwrap_err();
    assert!(
        matches!(err, FollowError::Rpc(RpcError::Unreachable { .. })),
        "{err}"
    );

    // A URL that is not one.
    let err = Writer::new("ftp://example.org", key(1), registry).unwrap_err();
    assert!(
        matches!(err, TxError::Rpc(RpcError::BadUrl { .. })),
        "{err}"
    );

    // The service keeps running against a bad RPC and says why.
    let dir = tempfile::tempdir()?;
    let reg = RegistryService::spawn(
        ChainConfig {
            rpc_url: garbage,
            ..ok.clone()
        },
        dir.path(),
        CancellationToken::new(),
    )?;
    let err = wait_for("the garbage error", &reg, |r| r.status().last_error).await;
    assert!(err.contains("garbage"), "{err}");
    assert_eq!(reg.status().source, Source::Snapshot);
    assert!(reg.nodes().await.is_empty());
    reg.shutdown().await;

    let dir = tempfile::tempdir()?;
    let reg = RegistryService::spawn(
        ChainConfig {
            chain_id: 5,
            ..ok.clone()
        },
        dir.path(),
        CancellationToken::new(),
    )?;
    let err = wait_for("the chain id error", &reg, |r| r.status().last_error).await;
    assert_eq!(err, "chain id mismatch: RPC says 31337, config says 5");
    reg.shutdown().await;

    // A reverting transaction names the custom error and its arguments.
    let w = Writer::new(&anvil.url(), key(1), registry)?;
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    let err = w
        .register(U256::from(1), peer.to_bytes(), vec![], &[w5q6()])
        .await
        .unwrap_err();
    assert!(
        matches!(err.registry_error(), Some(RegistryErrors::StakeTooLow(_))),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "registry reverted: StakeTooLow(sent 1, minStake 1000000000000000000)"
    );
    // Not a steward.
    let err = w.set_route(w5q6(), vec![]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("registry reverted: NotSteward(caller {})", w.sender())
    );
    // Reverts used no nonce: the next transaction goes through at once.
    let w = w.with_receipt_timeout(Duration::from_secs(5));
    w.register(ether(1), peer.to_bytes(), vec![], &[w5q6()])
        .await?;
    Ok(())
}
