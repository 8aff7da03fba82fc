//! Registry writes: transactions signed with the operator key and sent
//! straight to the chain (no running node needed).
//!
//! Every write first checks that the RPC serves the configured chain id and
//! that the registry is deployed there; the writer then estimates gas, so a
//! call the contract would refuse fails with its decoded custom error before
//! anything is sent.

use alloy::{
    primitives::{Address, B256, U256},
    signers::local::PrivateKeySigner,
};
use anyhow::{Result, anyhow, bail};
use cnode_node::DataDir;
use cnode_registry::{
    ChainConfig, Params, TxError, TxOutcome, Writer, bindings::RegistryErrors, check_chain,
    service_key,
};
use cnode_types::{RegionId, RegistryNode, StatusInfo};
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

use super::{
    ProposeCommand, RegisterArgs, StewardCommand, TxArgs, UpdateArgs,
    amount::{eth, parse_address, parse_amount, parse_hash, parse_proposal_id, parse_region},
    key,
};
use crate::{client::ApiClient, output};

/// Most addresses the registry keeps per node (`MAX_MULTIADDRS`).
const MAX_ADDRS: usize = 8;

/// The chain to write to: config.toml's `[chain]` table, flags over it.
pub(crate) fn chain_config(dir: &DataDir, tx: &TxArgs) -> Result<ChainConfig> {
    let file = dir.load_config()?.chain;
    let rpc_url = tx
        .rpc_url
        .clone()
        .or_else(|| file.as_ref().map(|c| c.rpc_url.clone()));
    let registry = match &tx.registry {
        Some(text) => Some(parse_address("--registry", text)?),
        None => file.as_ref().map(|c| c.registry_address),
    };
    let chain_id = tx.chain_id.or_else(|| file.as_ref().map(|c| c.chain_id));
    let (Some(rpc_url), Some(registry), Some(chain_id)) = (rpc_url, registry, chain_id) else {
        let missing: Vec<&str> = [
            (tx.rpc_url.is_none(), "--rpc-url"),
            (tx.registry.is_none(), "--registry"),
            (tx.chain_id.is_none(), "--chain-id"),
        ]
        .into_iter()
        .filter_map(|(m, flag)| m.then_some(flag))
        .collect();
        bail!(
            "no chain to send to: {} has no [chain] table; pass {} (or run `cnode devnet` for a local chain, which writes [chain])",
            dir.path(cnode_node::CONFIG_FILE).display(),
            missing.join(" ")
        );
    };
    let mut config = file.unwrap_or_else(|| ChainConfig::new(&rpc_url, registry, chain_id));
    config.rpc_url = rpc_url;
    config.registry_address = registry;
    config.chain_id = chain_id;
    Ok(config)
}

/// A writer for the data directory's operator key, after checking the chain.
async fn connect(dir: &DataDir, tx: &TxArgs) -> Result<Writer> {
    let config = chain_config(dir, tx)?;
    let signer = key::unlock(dir)?;
    writer_for(&config, signer).await
}

/// A writer for `signer` on `config`'s registry, after checking the chain.
pub(crate) async fn writer_for(config: &ChainConfig, signer: PrivateKeySigner) -> Result<Writer> {
    check_chain(config).await.map_err(|e| {
        anyhow!(
            "cannot use the registry {} at {}: {e}",
            config.registry_address,
            config.rpc_url
        )
    })?;
    Writer::new(&config.rpc_url, signer, config.registry_address).map_err(tx_error)
}

/// A failed transaction as one line; amounts in reverts are shown in ETH.
pub(crate) fn tx_error(e: TxError) -> anyhow::Error {
    match e.registry_error() {
        Some(RegistryErrors::StakeTooLow(s)) => anyhow!(
            "registry reverted: StakeTooLow(sent {}, minStake {})",
            eth(s.sent),
            eth(s.minStake)
        ),
        Some(RegistryErrors::SlashTooLarge(s)) => anyhow!(
            "registry reverted: SlashTooLarge(amount {}, stake {})",
            eth(s.amount),
            eth(s.stake)
        ),
        _ => anyhow!(
            "{}",
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Prints a mined transaction: `what`, then hash, block and gas (or JSON
/// with `extra`'s fields added).
fn report(json: bool, what: &str, outcome: &TxOutcome, extra: serde_json::Value) {
    if json {
        let mut v = serde_json::json!({
            "tx_hash": outcome.tx_hash.to_string(),
            "block_number": outcome.block_number,
            "gas_used": outcome.gas_used,
        });
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        output::json(&v);
        return;
    }
    println!("{what}");
    println!(
        "tx {} in block {}, gas used {}",
        outcome.tx_hash,
        outcome
            .block_number
            .map_or_else(|| "?".to_owned(), |b| b.to_string()),
        outcome.gas_used
    );
}

/// `--region` values, else config.toml's `[records] regions`.
fn regions_or_config(dir: &DataDir, given: &[String]) -> Result<Vec<RegionId>> {
    if !given.is_empty() {
        return given.iter().map(|r| parse_region(r)).collect();
    }
    let regions = dir.load_config()?.records.regions;
    if regions.is_empty() {
        bail!(
            "no region: pass --region GH4 (repeatable), or set [records] regions in {}",
            dir.path(cnode_node::CONFIG_FILE).display()
        );
    }
    Ok(regions)
}

/// A multiaddr without a trailing `/p2p/<peer id>` (the peer id is registered apart).
fn without_peer(mut a: Multiaddr) -> Multiaddr {
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

/// The running node's addresses (external first), if it runs.
pub(crate) async fn running_addrs(dir: &DataDir) -> Option<Vec<Multiaddr>> {
    dir.read_api_info()?;
    let client = ApiClient::from_data_dir(dir).ok()?;
    let status: StatusInfo = client.get_json(&["v1", "status"]).await.ok()?;
    let mut addrs: Vec<Multiaddr> = Vec::new();
    for a in status.external_addrs.iter().chain(&status.listen_addrs) {
        if let Ok(a) = a.parse::<Multiaddr>().map(without_peer)
            && !addrs.contains(&a)
        {
            addrs.push(a);
        }
    }
    Some(addrs)
}

/// config.toml's listen addresses as others on this machine reach them:
/// the unspecified address becomes loopback; port 0 is refused, since the
/// port is only known while the node runs.
pub(crate) fn config_addrs(listen: &[Multiaddr]) -> Result<Vec<Multiaddr>> {
    listen
        .iter()
        .map(|a| {
            let mut out = Multiaddr::empty();
            for p in a.iter() {
                match p {
                    Protocol::Ip4(ip) if ip.is_unspecified() => {
                        out.push(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST))
                    }
                    Protocol::Ip6(ip) if ip.is_unspecified() => {
                        out.push(Protocol::Ip6(std::net::Ipv6Addr::LOCALHOST))
                    }
                    Protocol::Tcp(0) | Protocol::Udp(0) => bail!(
                        "config.toml listens on {a} (port 0: the port is only known while the node runs); start the node first, give its addresses with --addr, or set a fixed port"
                    ),
                    p => out.push(p),
                }
            }
            Ok(without_peer(out))
        })
        .collect()
}

/// The addresses a node registers, and where they came from.
struct NodeAddrs {
    list: Vec<String>,
    from: &'static str,
    loopback_only: bool,
}

impl NodeAddrs {
    /// Printed after a successful transaction.
    fn describe(&self) -> String {
        format!(
            "addresses (from {}): {}{}",
            self.from,
            self.list.join(" "),
            if self.loopback_only {
                "\nnote: loopback addresses only: nodes on other machines cannot reach this one (pass --addr)"
            } else {
                ""
            }
        )
    }
}

/// The addresses to register: `--addr`, else the running node's, else
/// config.toml's. At most [`MAX_ADDRS`].
async fn node_addrs(dir: &DataDir, given: &[Multiaddr]) -> Result<NodeAddrs> {
    let (mut addrs, from) = if !given.is_empty() {
        (given.to_vec(), "--addr")
    } else if let Some(addrs) = running_addrs(dir).await {
        (addrs, "the running node")
    } else {
        (
            config_addrs(&dir.load_config()?.network.listen)?,
            "config.toml; the node is not running",
        )
    };
    if addrs.is_empty() {
        bail!("no address to register: pass --addr MULTIADDR");
    }
    if addrs.len() > MAX_ADDRS {
        if given.is_empty() {
            addrs.truncate(MAX_ADDRS);
        } else {
            bail!("at most {MAX_ADDRS} addresses can be registered");
        }
    }
    Ok(NodeAddrs {
        loopback_only: addrs.iter().all(is_loopback),
        list: addrs.iter().map(ToString::to_string).collect(),
        from,
    })
}

fn is_loopback(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

fn peer_id(dir: &DataDir) -> Result<PeerId> {
    Ok(dir.load_key()?.public().to_peer_id())
}

fn region_list(regions: &[RegionId]) -> String {
    regions
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `cnode registry register`.
pub(super) async fn register(dir: &DataDir, args: RegisterArgs) -> Result<()> {
    let stake = parse_amount(&args.stake)?;
    let peer = peer_id(dir)?;
    let regions = regions_or_config(dir, &args.regions)?;
    let addrs = node_addrs(dir, &args.addrs).await?;
    let writer = connect(dir, &args.tx).await?;
    let outcome = writer
        .register(stake, peer.to_bytes(), addrs.list.clone(), &regions)
        .await
        .map_err(tx_error)?;
    report(
        args.tx.json,
        &format!(
            "registered operator {} (peer {peer}) in {} with {} stake\n{}",
            writer.sender(),
            region_list(&regions),
            eth(stake),
            addrs.describe()
        ),
        &outcome,
        serde_json::json!({
            "operator": writer.sender().to_string(),
            "peer_id": peer.to_string(),
            "stake_wei": stake.to_string(),
            "regions": regions,
            "multiaddrs": addrs.list,
        }),
    );
    Ok(())
}

/// `cnode registry update`.
pub(super) async fn update(dir: &DataDir, args: UpdateArgs) -> Result<()> {
    let peer = peer_id(dir)?;
    let addrs = node_addrs(dir, &args.addrs).await?;
    let writer = connect(dir, &args.tx).await?;
    let regions = if args.regions.is_empty() {
        match registered_regions(dir, writer.sender()).await {
            Some(r) if !r.is_empty() => r,
            _ => regions_or_config(dir, &[])?,
        }
    } else {
        regions_or_config(dir, &args.regions)?
    };
    let outcome = writer
        .update(peer.to_bytes(), addrs.list.clone(), &regions)
        .await
        .map_err(tx_error)?;
    report(
        args.tx.json,
        &format!(
            "updated operator {} (peer {peer}) in {}\n{}",
            writer.sender(),
            region_list(&regions),
            addrs.describe()
        ),
        &outcome,
        serde_json::json!({
            "operator": writer.sender().to_string(),
            "peer_id": peer.to_string(),
            "regions": regions,
            "multiaddrs": addrs.list,
        }),
    );
    Ok(())
}

/// The regions the running node's registry snapshot has for `operator`.
async fn registered_regions(dir: &DataDir, operator: Address) -> Option<Vec<RegionId>> {
    dir.read_api_info()?;
    let client = ApiClient::from_data_dir(dir).ok()?;
    let nodes: Vec<RegistryNode> = client.get_json(&["v1", "registry", "nodes"]).await.ok()?;
    let me = nodes
        .into_iter()
        .find(|n| n.operator.eq_ignore_ascii_case(&operator.to_string()))?;
    me.regions.iter().map(|r| r.parse().ok()).collect()
}

/// `cnode registry add-stake`.
pub(super) async fn add_stake(dir: &DataDir, amount: &str, tx: TxArgs) -> Result<()> {
    let amount = parse_amount(amount)?;
    let writer = connect(dir, &tx).await?;
    let outcome = writer.add_stake(amount).await.map_err(tx_error)?;
    report(
        tx.json,
        &format!("added {} to the stake of {}", eth(amount), writer.sender()),
        &outcome,
        serde_json::json!({
            "operator": writer.sender().to_string(),
            "amount_wei": amount.to_string(),
        }),
    );
    Ok(())
}

/// `cnode registry deregister`.
pub(super) async fn deregister(dir: &DataDir, tx: TxArgs) -> Result<()> {
    let writer = connect(dir, &tx).await?;
    let outcome = writer.deregister().await.map_err(tx_error)?;
    let info = writer.contract().getNode(writer.sender()).call().await.ok();
    let ends = info.map(|n| n.unbondingEnds);
    report(
        tx.json,
        &format!(
            "deregistered {}; the stake unbonds{} — then `cnode registry withdraw`",
            writer.sender(),
            ends.map(|t| format!(" until unix time {t}"))
                .unwrap_or_default()
        ),
        &outcome,
        serde_json::json!({
            "operator": writer.sender().to_string(),
            "unbonding_ends": ends,
        }),
    );
    Ok(())
}

/// `cnode registry withdraw`.
pub(super) async fn withdraw(dir: &DataDir, tx: TxArgs) -> Result<()> {
    let writer = connect(dir, &tx).await?;
    let outcome = writer.withdraw().await.map_err(tx_error)?;
    report(
        tx.json,
        &format!("withdrew the stake of {}", writer.sender()),
        &outcome,
        serde_json::json!({ "operator": writer.sender().to_string() }),
    );
    Ok(())
}

/// `cnode registry publish`.
pub(super) async fn publish(
    dir: &DataDir,
    id: &str,
    version: &str,
    package: &str,
    manifest: &str,
    tx: TxArgs,
) -> Result<()> {
    let package = parse_hash("--package", package)?;
    let manifest = parse_hash("--manifest", manifest)?;
    let writer = connect(dir, &tx).await?;
    let (outcome, key) = writer
        .propose_service(id, version, package, manifest)
        .await
        .map_err(tx_error)?;
    report(
        tx.json,
        &format!(
            "proposed {id}@{version} (key {key}); a steward approves it with `cnode registry steward approve-service {id}@{version}`"
        ),
        &outcome,
        serde_json::json!({ "service_key": key.to_string(), "id": id, "version": version }),
    );
    Ok(())
}

/// A service given as its key or as `ID@VERSION`.
fn parse_service(text: &str) -> Result<B256> {
    let t = text.trim();
    if t.starts_with("0x") || !t.contains('@') {
        return parse_hash("service key", t);
    }
    match t.rsplit_once('@') {
        Some((id, version)) if !id.is_empty() && !version.is_empty() => {
            Ok(service_key(id, version))
        }
        _ => bail!("{text:?} is neither a service key (0x…) nor ID@VERSION"),
    }
}

/// `OPERATOR=SCORE`.
fn parse_score(text: &str) -> Result<(Address, u64)> {
    let (op, score) = text
        .split_once('=')
        .ok_or_else(|| anyhow!("{text:?} is not OPERATOR=SCORE"))?;
    let score: u64 = score
        .trim()
        .parse()
        .map_err(|_| anyhow!("score {score:?} in {text:?} is not a number (0..=1000000)"))?;
    Ok((parse_address("operator", op)?, score))
}

/// `cnode registry steward …`.
pub(super) async fn steward(dir: &DataDir, command: StewardCommand) -> Result<()> {
    match command {
        StewardCommand::SetRoute {
            region,
            operators,
            tx,
        } => {
            let region = parse_region(&region)?;
            let ops = operators
                .iter()
                .map(|o| parse_address("operator", o))
                .collect::<Result<Vec<_>>>()?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer
                .set_route(region, ops.clone())
                .await
                .map_err(tx_error)?;
            report(
                tx.json,
                &format!("route {region}: {} node(s)", ops.len()),
                &outcome,
                serde_json::json!({
                    "region": region,
                    "operators": ops.iter().map(ToString::to_string).collect::<Vec<_>>(),
                }),
            );
        }
        StewardCommand::AttestCredit { epoch, scores, tx } => {
            let scores = scores
                .iter()
                .map(|s| parse_score(s))
                .collect::<Result<Vec<_>>>()?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer
                .attest_credit(epoch, &scores)
                .await
                .map_err(tx_error)?;
            report(
                tx.json,
                &format!("attested {} score(s) for epoch {epoch}", scores.len()),
                &outcome,
                serde_json::json!({ "epoch": epoch, "count": scores.len() }),
            );
        }
        StewardCommand::ApproveService { service, tx } => {
            let key = parse_service(&service)?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer.approve_service(key).await.map_err(tx_error)?;
            report(
                tx.json,
                &format!("approved service {key}"),
                &outcome,
                serde_json::json!({ "service_key": key.to_string() }),
            );
        }
        StewardCommand::RevokeService { service, tx } => {
            let key = parse_service(&service)?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer.revoke_service(key).await.map_err(tx_error)?;
            report(
                tx.json,
                &format!("revoked service {key}"),
                &outcome,
                serde_json::json!({ "service_key": key.to_string() }),
            );
        }
        StewardCommand::Propose { action } => propose(dir, action).await?,
        StewardCommand::Approve { id, tx } => {
            let id = parse_proposal_id(&id)?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer.approve(id).await.map_err(tx_error)?;
            report(
                tx.json,
                &format!(
                    "approved proposal {id}; once it has enough approvals: `cnode registry steward execute {id}`"
                ),
                &outcome,
                serde_json::json!({ "proposal_id": id.to_string() }),
            );
        }
        StewardCommand::Execute { id, tx } => {
            let id = parse_proposal_id(&id)?;
            let writer = connect(dir, &tx).await?;
            let outcome = writer.execute(id).await.map_err(tx_error)?;
            report(
                tx.json,
                &format!("executed proposal {id}"),
                &outcome,
                serde_json::json!({ "proposal_id": id.to_string() }),
            );
        }
    }
    Ok(())
}

/// `cnode registry steward propose …`.
async fn propose(dir: &DataDir, action: ProposeCommand) -> Result<()> {
    let (tx, what) = match &action {
        ProposeCommand::AddSteward { address, tx } => (tx, format!("add steward {address}")),
        ProposeCommand::RemoveSteward { address, tx } => (tx, format!("remove steward {address}")),
        ProposeCommand::SetThreshold { threshold, tx } => {
            (tx, format!("set the threshold to {threshold}"))
        }
        ProposeCommand::Slash {
            operator,
            amount,
            tx,
            ..
        } => (tx, format!("slash {amount} of {operator}")),
        ProposeCommand::SetParams { tx, .. } => (tx, "set the parameters".to_owned()),
    };
    // Parse everything before unlocking the key.
    enum Parsed {
        Add(Address),
        Remove(Address),
        Threshold(u64),
        Slash(Address, U256, String),
        Params(Option<U256>, Option<u64>, Option<u64>),
    }
    let parsed = match &action {
        ProposeCommand::AddSteward { address, .. } => {
            Parsed::Add(parse_address("steward", address)?)
        }
        ProposeCommand::RemoveSteward { address, .. } => {
            Parsed::Remove(parse_address("steward", address)?)
        }
        ProposeCommand::SetThreshold { threshold, .. } => Parsed::Threshold(*threshold),
        ProposeCommand::Slash {
            operator,
            amount,
            reason,
            ..
        } => Parsed::Slash(
            parse_address("operator", operator)?,
            parse_amount(amount)?,
            reason.clone(),
        ),
        ProposeCommand::SetParams {
            min_stake,
            unbonding_delay,
            proposal_ttl,
            ..
        } => {
            if min_stake.is_none() && unbonding_delay.is_none() && proposal_ttl.is_none() {
                bail!(
                    "nothing to change: give --min-stake, --unbonding-delay and/or --proposal-ttl"
                );
            }
            Parsed::Params(
                min_stake.as_deref().map(parse_amount).transpose()?,
                *unbonding_delay,
                *proposal_ttl,
            )
        }
    };
    let writer = connect(dir, tx).await?;
    let result = match parsed {
        Parsed::Add(a) => writer.propose_add_steward(a).await,
        Parsed::Remove(a) => writer.propose_remove_steward(a).await,
        Parsed::Threshold(n) => writer.propose_set_threshold(U256::from(n)).await,
        Parsed::Slash(op, amount, reason) => writer.propose_slash(op, amount, &reason).await,
        Parsed::Params(min_stake, delay, ttl) => {
            let params = current_params(&writer, min_stake, delay, ttl).await?;
            writer.propose_set_params(params).await
        }
    };
    let (outcome, id) = result.map_err(tx_error)?;
    report(
        tx.json,
        &format!(
            "proposal {id}: {what} (your approval counts); other stewards: `cnode registry steward approve {id}`, then `cnode registry steward execute {id}`"
        ),
        &outcome,
        serde_json::json!({ "proposal_id": id.to_string() }),
    );
    Ok(())
}

/// The registry's parameters with the given ones replaced.
async fn current_params(
    writer: &Writer,
    min_stake: Option<U256>,
    unbonding_delay: Option<u64>,
    proposal_ttl: Option<u64>,
) -> Result<Params> {
    let c = writer.contract();
    let read = |e: alloy::contract::Error| anyhow!("cannot read the current parameters: {e}");
    Ok(Params {
        min_stake: match min_stake {
            Some(v) => v,
            None => c.minStake().call().await.map_err(read)?,
        },
        unbonding_delay: match unbonding_delay {
            Some(v) => v,
            None => c.unbondingDelay().call().await.map_err(read)?,
        },
        proposal_ttl: match proposal_ttl {
            Some(v) => v,
            None => c.proposalTtl().call().await.map_err(read)?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_scores() {
        let k = parse_service("org.cnode.events@1.0.0").unwrap();
        assert_eq!(k, service_key("org.cnode.events", "1.0.0"));
        assert_eq!(parse_service(&k.to_string()).unwrap(), k);
        assert!(parse_service("@1.0").is_err());
        assert!(parse_service("nonsense").is_err());

        let (a, s) = parse_score("0x70997970C51812dc3A010C7d01b50e0d17dc79C8=800000").unwrap();
        assert_eq!(s, 800_000);
        assert_eq!(a.to_string(), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        assert!(parse_score("0x70997970C51812dc3A010C7d01b50e0d17dc79C8").is_err());
        assert!(parse_score("0x70997970C51812dc3A010C7d01b50e0d17dc79C8=lots").is_err());
    }

    #[test]
    fn config_addresses_become_reachable_or_are_refused() {
        let listen: Vec<Multiaddr> = [
            "/ip4/0.0.0.0/udp/4040/quic-v1",
            "/ip4/0.0.0.0/tcp/4040",
            "/ip6/::/tcp/4041",
            "/ip4/192.0.2.1/tcp/4042",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let got: Vec<String> = config_addrs(&listen)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "/ip4/127.0.0.1/udp/4040/quic-v1",
                "/ip4/127.0.0.1/tcp/4040",
                "/ip6/::1/tcp/4041",
                "/ip4/192.0.2.1/tcp/4042"
            ]
        );
        let err = config_addrs(&["/ip4/0.0.0.0/tcp/0".parse().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("port 0"), "{err}");
    }

    #[test]
    fn missing_chain_says_which_flags() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let tx = TxArgs {
            rpc_url: Some("http://127.0.0.1:8545".into()),
            registry: None,
            chain_id: None,
            json: false,
        };
        let err = chain_config(&dir, &tx).unwrap_err().to_string();
        assert!(
            err.contains("--registry --chain-id") && !err.contains("--rpc-url"),
            "{err}"
        );
        let tx = TxArgs {
            registry: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
            chain_id: Some(31337),
            ..tx
        };
        let c = chain_config(&dir, &tx).unwrap();
        assert_eq!(c.chain_id, 31337);
        assert_eq!(c.rpc_url, "http://127.0.0.1:8545");
    }
}
