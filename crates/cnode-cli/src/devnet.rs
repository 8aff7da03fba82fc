//! `cnode devnet`: a local chain with the registry and the given nodes
//! registered on it, for trying the registry on one machine.
//!
//! Steps: plan each node (init its data directory if missing, its regions,
//! ports and addresses), start anvil, deploy the registry from development
//! key 0 (the only steward, threshold 1) or find it on a continued chain,
//! register node i with development key i+1 and 1 ETH, set each region's
//! route, mine a block, then write each node's operator key and `[chain]`
//! table. anvil then runs in the foreground until Ctrl-C / SIGTERM.

mod ports;

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    time::Duration,
};

use alloy::primitives::{Address, U256};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use cnode_node::{CONFIG_FILE, ConfigFile, DataDir};
use cnode_registry::{
    ChainConfig, TxError, Writer,
    bindings::{ICnodeRegistry, RegistryErrors},
    check_chain,
    devnet::{Anvil, AnvilOptions, DEV_KEYS, DEVNET_CHAIN_ID, dev_key},
    pack_region,
};
use cnode_types::RegionId;
use libp2p::PeerId;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use self::ports::{plan_api, plan_listen, ports};
use crate::{
    config_edit::{self, ChainTable, Edits},
    output,
    registry::{
        amount::{parse_region, short_address, short_peer},
        key,
        write::{config_addrs, running_addrs, tx_error},
    },
};

/// The long help of `cnode devnet`.
pub(crate) const LONG_ABOUT: &str = "\
Run a local development chain with the registry, and register nodes on it.

Starts anvil on 127.0.0.1 (install it with scripts/setup-chain-tools), deploys \
the registry with anvil's development key 0 as the only steward (threshold 1), \
and for each --node data directory (default: --data's; created like `cnode init` \
if missing):

  - writes development key i+1 as the node's operator key, UNPROTECTED: these \
keys are public, for this devnet only;
  - registers it with 1 ETH in its regions (config.toml's [records] regions, else \
--region, default w5q6; written into [records] when it had none) and its \
addresses (the running node's, else its config's listen addresses; a listen \
port of 0, or one another node of the devnet already uses, is replaced by a \
fixed free port in its config.toml, and so is a clashing API port);
  - writes [chain] (rpc_url, registry_address, chain_id 31337, confirmations 1) \
into its config.toml, replacing an old [chain] table and keeping the rest of \
the file as it was.

The steward then routes each region to all its registered nodes, and anvil \
keeps running in the foreground until Ctrl-C, with a block mined on top of \
every transaction's block so the nodes (confirmations 1) apply it at once.

With --state FILE the chain is saved there at exit and a later \
`cnode devnet --state FILE` continues it (the registry is found again; \
registered nodes are updated); without it the chain is lost on exit.

Example, two nodes on one machine:
  cnode devnet --node ~/cnode-a --node ~/cnode-b --region w5q6
  cnode --data ~/cnode-a run          # in another terminal
  cnode --data ~/cnode-b run          # and another
  cnode --data ~/cnode-a registry routes";

/// Arguments of `cnode devnet`.
#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// anvil's JSON-RPC port on 127.0.0.1.
    #[arg(long, default_value_t = 8545)]
    port: u16,
    /// A node's data directory to register (repeatable, at most 9) [default: --data's directory]
    #[arg(long = "node", value_name = "DATA_DIR")]
    nodes: Vec<PathBuf>,
    /// Region for nodes whose config.toml serves none (repeatable) [default: w5q6]
    #[arg(long = "region", value_name = "GH4")]
    regions: Vec<String>,
    /// Keep the chain in FILE: loaded at start, saved at exit.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Print the summary as JSON (then keep running).
    #[arg(long)]
    json: bool,
}

/// The stake each devnet node registers with.
const DEV_STAKE_ETH: u64 = 1;
/// The region when neither the config nor `--region` gives one.
const DEFAULT_REGION: &str = "w5q6";
/// Most operators in one route (`MAX_ROUTE`).
const MAX_ROUTE: usize = 32;
/// Most addresses per node (`MAX_MULTIADDRS`).
const MAX_ADDRS: usize = 8;
/// How often the foreground loop looks for new blocks (and checks that
/// anvil still answers).
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// One node of the devnet, as planned before anything is sent.
#[derive(Debug)]
struct NodePlan {
    /// As given on the command line.
    shown: PathBuf,
    dir: DataDir,
    created: bool,
    key_index: usize,
    peer: PeerId,
    regions: Vec<RegionId>,
    running: bool,
    multiaddrs: Vec<String>,
    edits: Edits,
    changes: Vec<String>,
}

impl NodePlan {
    fn operator(&self) -> Address {
        dev_key(self.key_index).address()
    }
}

/// A node in the summary.
#[derive(Debug, Serialize)]
struct NodeSummary {
    data_dir: PathBuf,
    created: bool,
    operator: String,
    peer_id: String,
    regions: Vec<RegionId>,
    multiaddrs: Vec<String>,
    running: bool,
    /// `registered` or `updated` (already registered on a continued chain).
    registration: &'static str,
    config_changes: Vec<String>,
}

/// A route in the summary.
#[derive(Debug, Serialize)]
struct RouteSummary {
    region: RegionId,
    operators: Vec<String>,
}

/// What `cnode devnet` prints once the chain is ready.
#[derive(Debug, Serialize)]
struct Summary {
    rpc_url: String,
    chain_id: u64,
    registry_address: String,
    deployed: bool,
    steward: String,
    state_file: Option<PathBuf>,
    nodes: Vec<NodeSummary>,
    routes: Vec<RouteSummary>,
}

/// `cnode devnet`.
pub(crate) async fn devnet(dir: DataDir, args: DevnetArgs) -> Result<()> {
    // Signals first: a Ctrl-C during setup still stops anvil cleanly.
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;

    // Before touching any data directory.
    cnode_registry::devnet::anvil_bin().map_err(|e| anyhow!("cannot start the devnet: {e}"))?;
    let default_regions = if args.regions.is_empty() {
        vec![parse_region(DEFAULT_REGION)?]
    } else {
        args.regions
            .iter()
            .map(|r| parse_region(r))
            .collect::<Result<Vec<_>>>()?
    };
    let dirs = if args.nodes.is_empty() {
        vec![dir.root().to_owned()]
    } else {
        args.nodes.clone()
    };
    let plans = plan_nodes(&dirs, &default_regions, args.json).await?;

    let options = AnvilOptions {
        port: Some(args.port),
        state: args.state.clone(),
        block_time: None,
        die_with_parent: true,
    };
    // Started from this thread, the one `main` blocks on for the whole run:
    // anvil is tied to it (`die_with_parent`), so even a SIGKILLed devnet
    // does not leave anvil holding the port. (A blocking-pool thread would
    // end while idle and take anvil with it.)
    let mut anvil = tokio::task::block_in_place(|| Anvil::start(options))
        .map_err(|e| anyhow!("cannot start the devnet: {e}"))?;
    let url = anvil.url();
    progress(args.json, &format!("anvil answering at {url}"));

    let setup = setup(&url, plans, args.state.clone(), args.json);
    let summary = tokio::select! {
        biased;
        _ = term.recv() => return stop(anvil, args.state.as_deref(), args.json).await,
        _ = int.recv() => return stop(anvil, args.state.as_deref(), args.json).await,
        s = setup => s?,
    };
    if args.json {
        output::json(&summary);
    } else {
        print_summary(&summary);
    }

    // anvil mines a block per transaction only, so the block of the last
    // write would wait for the next write to get its confirmation: mine one
    // on top of every block someone else made. This also notices anvil dying.
    let provider = alloy::providers::ProviderBuilder::new().connect_http(
        url.parse()
            .map_err(|e| anyhow!("bad anvil URL {url}: {e}"))?,
    );
    let mut seen = alloy::providers::Provider::get_block_number(&provider)
        .await
        .ok();
    let mut failures = 0;
    loop {
        tokio::select! {
            biased;
            _ = term.recv() => break,
            _ = int.recv() => break,
            () = tokio::time::sleep(WATCH_EVERY) => {
                match alloy::providers::Provider::get_block_number(&provider).await {
                    Ok(head) => {
                        failures = 0;
                        if seen.is_some_and(|s| head > s) {
                            cnode_registry::devnet::mine(&url, 1).await.map_err(|e| anyhow!("{e}"))?;
                            seen = Some(head + 1);
                        } else {
                            seen = Some(head);
                        }
                    }
                    Err(_) => {
                        failures += 1;
                        if failures >= 5 {
                            anvil.kill();
                            bail!("anvil stopped answering at {url}; the devnet is gone");
                        }
                    }
                }
            }
        }
    }
    stop(anvil, args.state.as_deref(), args.json).await
}

/// Stops anvil (SIGTERM, so it saves `--state`).
async fn stop(mut anvil: Anvil, state: Option<&Path>, json: bool) -> Result<()> {
    tokio::task::spawn_blocking(move || anvil.stop())
        .await
        .context("anvil stop task failed")?
        .map_err(|e| anyhow!("stopping anvil: {e}"))?;
    progress(
        json,
        &match state {
            Some(s) => format!("devnet stopped; chain saved to {}", s.display()),
            None => "devnet stopped; the chain is gone (use --state FILE to keep it)".to_owned(),
        },
    );
    Ok(())
}

fn progress(json: bool, line: &str) {
    if !json {
        eprintln!("{line}");
    }
}

/// Plans every node: data directory, operator key check, regions, ports
/// and addresses. Nothing on the chain yet.
async fn plan_nodes(
    dirs: &[PathBuf],
    default_regions: &[RegionId],
    json: bool,
) -> Result<Vec<NodePlan>> {
    if dirs.len() > DEV_KEYS.len() - 1 {
        bail!(
            "at most {} nodes (one development key each; key 0 is the steward)",
            DEV_KEYS.len() - 1
        );
    }
    let mut seen = HashSet::new();
    let mut used_ports: HashSet<u16> = HashSet::new();
    let mut plans = Vec::new();
    for (i, shown) in dirs.iter().enumerate() {
        let absolute = std::path::absolute(shown).unwrap_or_else(|_| shown.clone());
        if !seen.insert(absolute) {
            bail!("--node {} is given twice", shown.display());
        }
        let dir = DataDir::new(shown);
        let created = !dir.is_initialized();
        if created {
            dir.init(false)?;
            progress(json, &format!("initialised {}", shown.display()));
        }
        let key_index = i + 1;
        check_operator_key(&dir, key_index)?;
        let peer = dir.load_key()?.public().to_peer_id();
        let config = dir.load_config()?;
        let mut edits = Edits::default();
        let mut changes = Vec::new();

        let regions = if config.records.regions.is_empty() {
            edits.regions = Some(
                default_regions
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
            );
            changes.push(format!(
                "[records] regions = {:?}",
                edits.regions.as_deref().unwrap_or_default()
            ));
            default_regions.to_vec()
        } else {
            config.records.regions.clone()
        };

        let (running, addrs) = match running_addrs(&dir).await {
            Some(addrs) => {
                for a in &addrs {
                    used_ports.extend(ports(a));
                }
                if let Some(info) = dir.read_api_info() {
                    used_ports.insert(info.addr.port());
                }
                (true, addrs)
            }
            None => {
                let listen = plan_listen(&config, &mut used_ports);
                if listen != config.network.listen {
                    changes.push(format!(
                        "[network] listen = {:?}",
                        listen.iter().map(ToString::to_string).collect::<Vec<_>>()
                    ));
                    edits.listen = Some(listen.iter().map(ToString::to_string).collect());
                }
                if let Some(api) = plan_api(&config, &mut used_ports) {
                    changes.push(format!("[api] listen = \"{api}\""));
                    edits.api = Some(api.to_string());
                }
                let addrs = config_addrs(&listen).with_context(|| shown.display().to_string())?;
                (false, addrs)
            }
        };
        if addrs.is_empty() {
            bail!("{}: the node has no listen address", shown.display());
        }
        plans.push(NodePlan {
            shown: shown.clone(),
            dir,
            created,
            key_index,
            peer,
            regions,
            running,
            multiaddrs: addrs
                .iter()
                .take(MAX_ADDRS)
                .map(ToString::to_string)
                .collect(),
            edits,
            changes,
        });
    }
    Ok(plans)
}

/// A node may get development key `index` unless it holds another key that
/// is not a development key (that could be someone's real operator key).
fn check_operator_key(dir: &DataDir, index: usize) -> Result<()> {
    let path = key::key_path(dir);
    if !path.exists() {
        return Ok(());
    }
    let stated = key::stated_address(&path).ok().flatten();
    let is_dev = |a: Address| (0..DEV_KEYS.len()).any(|k| dev_key(k).address() == a);
    match stated {
        Some(a) if a == dev_key(index).address() || is_dev(a) => Ok(()),
        Some(a) => bail!(
            "{} holds operator key {a}, which is not a development key; `cnode devnet` would replace it with a public one: move it away or use another data directory",
            path.display()
        ),
        None => bail!(
            "{} holds an operator key cnode cannot identify; `cnode devnet` would replace it: move it away or use another data directory",
            path.display()
        ),
    }
}

/// Deploys or finds the registry, registers the nodes, sets the routes,
/// writes the nodes' files.
async fn setup(
    url: &str,
    plans: Vec<NodePlan>,
    state: Option<PathBuf>,
    json: bool,
) -> Result<Summary> {
    let (steward, deployed) = registry(url, &plans).await?;
    let registry = steward.address();
    progress(
        json,
        &format!(
            "registry {} at {registry}",
            if deployed { "deployed" } else { "found" }
        ),
    );

    let stake = U256::from(DEV_STAKE_ETH) * U256::from(10).pow(U256::from(18));
    let mut registrations = Vec::new();
    for p in &plans {
        let writer = Writer::new(url, dev_key(p.key_index), registry).map_err(tx_error)?;
        let what = match writer
            .register(stake, p.peer.to_bytes(), p.multiaddrs.clone(), &p.regions)
            .await
        {
            Ok(_) => "registered",
            Err(e) if is_already_registered(&e) => {
                writer
                    .update(p.peer.to_bytes(), p.multiaddrs.clone(), &p.regions)
                    .await
                    .map_err(tx_error)
                    .with_context(|| format!("updating {}", p.shown.display()))?;
                "updated"
            }
            Err(e) => {
                return Err(tx_error(e))
                    .with_context(|| format!("registering {}", p.shown.display()));
            }
        };
        progress(
            json,
            &format!("{what} {} as {}", p.shown.display(), p.operator()),
        );
        registrations.push(what);
    }

    let routes = set_routes(&steward, &plans).await?;
    cnode_registry::devnet::mine(url, 1)
        .await
        .map_err(|e| anyhow!("{e}"))?;

    let chain = ChainTable {
        rpc_url: url.to_owned(),
        registry_address: registry.to_string(),
        chain_id: DEVNET_CHAIN_ID,
        confirmations: 1,
    };
    let mut nodes = Vec::new();
    for (p, what) in plans.into_iter().zip(registrations) {
        key::store(&p.dir, &dev_key(p.key_index), "", true)?;
        let mut edits = p.edits.clone();
        edits.chain = Some(chain.clone());
        write_config(&p.dir, &edits)?;
        nodes.push(NodeSummary {
            data_dir: p.shown.clone(),
            created: p.created,
            operator: p.operator().to_string(),
            peer_id: p.peer.to_string(),
            regions: p.regions.clone(),
            multiaddrs: p.multiaddrs.clone(),
            running: p.running,
            registration: what,
            config_changes: p.changes.clone(),
        });
    }
    Ok(Summary {
        rpc_url: url.to_owned(),
        chain_id: DEVNET_CHAIN_ID,
        registry_address: registry.to_string(),
        deployed,
        steward: dev_key(0).address().to_string(),
        state_file: state,
        nodes,
        routes,
    })
}

fn is_already_registered(e: &TxError) -> bool {
    matches!(
        e.registry_error(),
        Some(RegistryErrors::AlreadyRegistered(_))
    )
}

/// The steward's writer for the registry on this chain: one the nodes'
/// configs (or development key 0's first deployment) point at, if it is
/// there with key 0 as a steward; else a new deployment.
async fn registry(url: &str, plans: &[NodePlan]) -> Result<(Writer, bool)> {
    let mut candidates: Vec<Address> = Vec::new();
    for p in plans {
        if let Ok(ConfigFile { chain: Some(c), .. }) = p.dir.load_config()
            && c.chain_id == DEVNET_CHAIN_ID
            && !candidates.contains(&c.registry_address)
        {
            candidates.push(c.registry_address);
        }
    }
    let first = dev_key(0).address().create(0);
    if !candidates.contains(&first) {
        candidates.push(first);
    }
    for address in candidates {
        let config = ChainConfig::new(url, address, DEVNET_CHAIN_ID);
        if check_chain(&config).await.is_err() {
            continue;
        }
        let writer = Writer::new(url, dev_key(0), address).map_err(tx_error)?;
        if writer
            .contract()
            .isSteward(dev_key(0).address())
            .call()
            .await
            .unwrap_or(false)
        {
            return Ok((writer, false));
        }
    }
    let (writer, _) = cnode_registry::devnet::deploy_dev_registry(url)
        .await
        .map_err(tx_error)
        .context("deploying the registry")?;
    Ok((writer, true))
}

/// Routes each region to its registered nodes: operators already in the
/// route that are still active keep their place, this devnet's nodes of
/// the region follow.
async fn set_routes(steward: &Writer, plans: &[NodePlan]) -> Result<Vec<RouteSummary>> {
    let mut regions: Vec<RegionId> = Vec::new();
    for r in plans.iter().flat_map(|p| &p.regions) {
        if !regions.contains(r) {
            regions.push(*r);
        }
    }
    let ours: Vec<Address> = plans.iter().map(NodePlan::operator).collect();
    let mut routes = Vec::new();
    for region in regions {
        let serving: Vec<Address> = plans
            .iter()
            .filter(|p| p.regions.contains(&region))
            .map(NodePlan::operator)
            .collect();
        let existing = steward
            .contract()
            .getRoute(pack_region(region))
            .call()
            .await
            .unwrap_or_default();
        let mut route: Vec<Address> = Vec::new();
        for op in existing {
            let keep = if ours.contains(&op) {
                serving.contains(&op)
            } else {
                steward
                    .contract()
                    .getNode(op)
                    .call()
                    .await
                    .is_ok_and(|n| n.status == ICnodeRegistry::NodeStatus::Active)
            };
            if keep && !route.contains(&op) {
                route.push(op);
            }
        }
        for op in serving {
            if !route.contains(&op) {
                route.push(op);
            }
        }
        route.truncate(MAX_ROUTE);
        steward
            .set_route(region, route.clone())
            .await
            .map_err(tx_error)
            .with_context(|| format!("setting the route of {region}"))?;
        routes.push(RouteSummary {
            region,
            operators: route.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(routes)
}

/// Applies `edits` to the node's config.toml (written whole, then renamed).
fn write_config(dir: &DataDir, edits: &Edits) -> Result<()> {
    let path = dir.path(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let out = config_edit::apply(&text, edits).with_context(|| path.display().to_string())?;
    // The edited file must still be a config the node accepts.
    ConfigFile::parse(&out)
        .map_err(|e| anyhow!("{}: edit gave an invalid config: {e}", path.display()))?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

fn print_summary(s: &Summary) {
    println!();
    println!("devnet ready");
    println!("  rpc        {} (chain {})", s.rpc_url, s.chain_id);
    println!(
        "  registry   {} ({})",
        s.registry_address,
        if s.deployed {
            "deployed now"
        } else {
            "already on the chain"
        }
    );
    println!(
        "  steward    {} (development key 0, threshold 1)",
        s.steward
    );
    match &s.state_file {
        Some(f) => println!(
            "  state      {} (saved at exit; `cnode devnet --state {}` continues this chain)",
            f.display(),
            f.display()
        ),
        None => println!(
            "  state      none: the chain is lost when devnet stops (--state FILE keeps it)"
        ),
    }
    println!();
    println!(
        "nodes (operator keys are anvil's public development keys, stored UNPROTECTED: for this devnet only):"
    );
    for n in &s.nodes {
        println!(
            "  {}{}",
            n.data_dir.display(),
            if n.created { " (new)" } else { "" }
        );
        println!(
            "    operator {}  peer {}  regions {}  ({})",
            short_address(&n.operator),
            short_peer(&n.peer_id),
            n.regions
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(","),
            n.registration
        );
        for a in &n.multiaddrs {
            println!("    {a}");
        }
        for c in &n.config_changes {
            println!("    config.toml: {c}");
        }
        if n.running {
            println!("    running: restart it to follow the registry");
        }
    }
    println!();
    println!("routes:");
    for r in &s.routes {
        println!(
            "  {}  {}",
            r.region,
            r.operators
                .iter()
                .map(|o| short_address(o))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!();
    println!("next steps:");
    println!("  start the nodes (each in its own terminal):");
    for n in &s.nodes {
        println!("    cnode --data {} run", n.data_dir.display());
    }
    if let Some(first) = s.nodes.first() {
        println!("  then look at the routing table:");
        println!(
            "    cnode --data {} registry routes",
            first.data_dir.display()
        );
    }
    println!();
    println!("anvil runs until Ctrl-C.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_operator_keys_are_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("d"));
        assert!(check_operator_key(&dir, 1).is_ok());
        key::store(&dir, &dev_key(3), "", false).unwrap();
        assert!(
            check_operator_key(&dir, 1).is_ok(),
            "another dev key may go"
        );
        let mine = alloy::signers::local::PrivateKeySigner::random();
        key::store(&dir, &mine, "", true).unwrap();
        let err = check_operator_key(&dir, 1).unwrap_err().to_string();
        assert!(err.contains("not a development key"), "{err}");
    }
}
