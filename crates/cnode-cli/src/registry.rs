//! `cnode registry …`: the chain registry from the command line.
//!
//! Reads (`status`, `nodes`, `routes`, `services`) ask the running node,
//! which follows the chain and answers from its snapshot. Writes go straight
//! to the chain, signed with the operator key in the data directory
//! ([`key`]), so they need no running node; the chain comes from
//! config.toml's `[chain]` table or flags ([`write`]).

pub(crate) mod amount;
pub(crate) mod key;
pub(crate) mod write;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use cnode_node::DataDir;
use cnode_types::{RegistryInfo, RegistryNode, RegistryRoute, RegistryService};
use libp2p::Multiaddr;

use self::amount::{eth_of_decimal, short_address, short_peer};
use crate::{client::ApiClient, output};

/// The long help of `cnode registry`: the reference for the commands.
pub(crate) const LONG_ABOUT: &str = "\
The chain registry: which nodes exist and what they staked, which nodes serve \
each region (the routing table), their credit, and the API list of services, \
kept on a chain by stewards.

Reads ask the running node, which follows the chain and answers from its \
local snapshot (configure [chain] in config.toml first):
  cnode registry status | nodes | routes [--region GH4] | services

Writes are transactions sent straight to the chain (no running node needed), \
signed with the operator key in <data>/operator/key.json, a standard v3 \
keystore (cnode registry key new | import | show). The chain is config.toml's \
[chain] table (rpc_url, registry_address, chain_id), or --rpc-url, --registry \
and --chain-id; the chain id is checked against the RPC before anything is \
sent. A write prints its transaction hash, block and gas used; a call the \
registry refuses prints its error, e.g. StakeTooLow(sent 0.5 ETH, minStake \
1 ETH), and exits with status 1.
  operators: register, update, add-stake, deregister, withdraw, publish
  stewards:  steward set-route | attest-credit | approve-service | \
revoke-service | propose … | approve | execute

AMOUNT: 1.5eth, 1.5 ether, 250000gwei, 1000wei; a bare number is ETH (2 = 2 ETH).
Passphrases come from CNODE_PASSPHRASE, else a prompt.
A local chain to try all this on: cnode devnet --help.";

/// Where writes are sent, and how their result is printed.
#[derive(Debug, Args)]
pub(crate) struct TxArgs {
    /// The chain's JSON-RPC endpoint [default: config.toml's [chain] rpc_url]
    #[arg(long, value_name = "URL")]
    pub(crate) rpc_url: Option<String>,
    /// The registry contract [default: config.toml's [chain] registry_address]
    #[arg(long, value_name = "ADDRESS")]
    pub(crate) registry: Option<String>,
    /// The chain id the RPC must report, checked before sending [default: config.toml's [chain] chain_id]
    #[arg(long, value_name = "ID")]
    pub(crate) chain_id: Option<u64>,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `cnode registry …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RegistryCommand {
    /// Where the running node's registry view comes from and how far behind the chain it is.
    Status {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Every registered node, active and unbonding (from the running node's snapshot).
    Nodes {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The routing table: each region's service nodes, in the stewards' order.
    Routes {
        /// Only this region (4-character geohash, e.g. w5q6).
        #[arg(long, value_name = "GH4")]
        region: Option<String>,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The API list: proposed, approved and revoked services.
    Services {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// The operator key (an Ethereum key in <data>/operator/key.json): new, import, show.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Register this node: stake, peer id, addresses and regions.
    ///
    /// The peer id is the data directory's node key. Addresses default to the
    /// running node's listen addresses, else config.toml's listen addresses
    /// (0.0.0.0 becomes 127.0.0.1: fine for a devnet; on a real chain pass
    /// --addr with addresses other machines can reach).
    ///
    /// Example: cnode registry register --stake 1eth --region w5q6 --addr /ip4/203.0.113.7/udp/4040/quic-v1
    Register(RegisterArgs),
    /// Replace this node's registered peer id, addresses and regions.
    ///
    /// What is not given is taken as for `register`; regions default to those
    /// the registry has for this operator (read through the running node),
    /// else config.toml's [records] regions.
    Update(UpdateArgs),
    /// Add to this node's stake.
    AddStake {
        /// How much, e.g. 0.5eth (see `cnode registry --help` for amounts).
        amount: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Leave the registry: the node leaves every route and its stake starts unbonding.
    Deregister {
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Take the stake back once unbonding has ended.
    Withdraw {
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Propose a service (plugin) for the API list; a steward approves it.
    ///
    /// Example: cnode registry publish org.cnode.events 1.0.0 --package bafkr4… --manifest 9f86d0…
    Publish {
        /// Reverse-domain id, e.g. org.cnode.events.
        id: String,
        /// Version, e.g. 1.0.0.
        #[arg(value_name = "VERSION")]
        service_version: String,
        /// BLAKE3 hash of the package blob: 64 hex digits (0x optional) or its bafkr4… CID.
        #[arg(long, value_name = "HASH")]
        package: String,
        /// BLAKE3 hash of the package's plugin.toml: 64 hex digits or a CID.
        #[arg(long, value_name = "HASH")]
        manifest: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Steward actions: routes, credit, services, m-of-n proposals.
    Steward {
        #[command(subcommand)]
        command: StewardCommand,
    },
}

/// Arguments of `cnode registry register`.
#[derive(Debug, Args)]
pub(crate) struct RegisterArgs {
    /// Stake to lock, at least the registry's minimum, e.g. 1eth.
    #[arg(long, value_name = "AMOUNT")]
    pub(crate) stake: String,
    /// A region to serve, 4-character geohash (repeatable) [default: config.toml's [records] regions]
    #[arg(long = "region", value_name = "GH4")]
    pub(crate) regions: Vec<String>,
    /// An address peers reach this node at (repeatable, at most 8) [default: see above]
    #[arg(long = "addr", value_name = "MULTIADDR")]
    pub(crate) addrs: Vec<Multiaddr>,
    #[command(flatten)]
    pub(crate) tx: TxArgs,
}

/// Arguments of `cnode registry update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// A region to serve (repeatable; replaces the registered list).
    #[arg(long = "region", value_name = "GH4")]
    pub(crate) regions: Vec<String>,
    /// An address peers reach this node at (repeatable; replaces the registered list).
    #[arg(long = "addr", value_name = "MULTIADDR")]
    pub(crate) addrs: Vec<Multiaddr>,
    #[command(flatten)]
    pub(crate) tx: TxArgs,
}

/// `cnode registry key …`. Passphrases come from CNODE_PASSPHRASE, else a prompt.
#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Create a new random operator key, protected by a passphrase.
    New {
        /// Store the key unprotected (anyone who can read the file can spend its ETH and act as the operator).
        #[arg(long)]
        insecure_no_passphrase: bool,
        /// Replace an existing operator key (it is lost unless you have a copy).
        #[arg(long)]
        force: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Bring an existing key: a hex private key file, or a geth/foundry v3 keystore.
    Import {
        /// A file holding the private key as 64 hex digits (0x optional).
        #[arg(
            long,
            value_name = "FILE",
            conflicts_with = "from_keystore",
            required_unless_present = "from_keystore"
        )]
        private_key_file: Option<PathBuf>,
        /// A Web3 Secret Storage (v3) keystore JSON, as geth or `cast wallet` write; it keeps its passphrase.
        #[arg(long, value_name = "FILE")]
        from_keystore: Option<PathBuf>,
        /// Store the key unprotected.
        #[arg(long)]
        insecure_no_passphrase: bool,
        /// Replace an existing operator key.
        #[arg(long)]
        force: bool,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Print the operator address (no passphrase needed).
    Show {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// `cnode registry steward …`: actions only stewards may take, signed with
/// the operator key.
#[derive(Debug, Subcommand)]
pub(crate) enum StewardCommand {
    /// Set a region's route: its service nodes in order (replaces the list).
    ///
    /// Example: cnode registry steward set-route w5q6 0x7099…79C8 0x3C44…93BC
    SetRoute {
        /// The region, e.g. w5q6.
        region: String,
        /// Operator addresses of active nodes, in order (at most 32).
        #[arg(required = true, value_name = "OPERATOR")]
        operators: Vec<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Attest credit scores (0..=1000000) for an epoch (a day since the Unix epoch).
    ///
    /// Example: cnode registry steward attest-credit --epoch 20417 0x7099…79C8=800000
    AttestCredit {
        /// The epoch: the current or the previous day number (unix time / 86400).
        #[arg(long)]
        epoch: u64,
        /// An operator and its score (repeatable).
        #[arg(required = true, value_name = "OPERATOR=SCORE")]
        scores: Vec<String>,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Approve a proposed service so nodes may install it.
    ApproveService {
        /// The service key (0x + 64 hex digits) or ID@VERSION.
        #[arg(value_name = "KEY|ID@VERSION")]
        service: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Revoke a service.
    RevokeService {
        /// The service key (0x + 64 hex digits) or ID@VERSION.
        #[arg(value_name = "KEY|ID@VERSION")]
        service: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Propose an m-of-n action (it counts as your approval).
    Propose {
        #[command(subcommand)]
        action: ProposeCommand,
    },
    /// Approve a proposal.
    Approve {
        /// The proposal id.
        id: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Execute a proposal that has enough approvals (anyone may).
    Execute {
        /// The proposal id.
        id: String,
        #[command(flatten)]
        tx: TxArgs,
    },
}

/// `cnode registry steward propose …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProposeCommand {
    /// Add a steward.
    AddSteward {
        /// The new steward's address.
        address: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Remove a steward.
    RemoveSteward {
        /// The steward's address.
        address: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Change how many stewards must approve a proposal.
    SetThreshold {
        /// The new threshold (1..=number of stewards).
        threshold: u64,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Take part of an operator's stake.
    Slash {
        /// The operator's address.
        operator: String,
        /// How much, e.g. 0.5eth.
        amount: String,
        /// Why, for the record (at most 256 bytes).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        tx: TxArgs,
    },
    /// Change the parameters; those not given keep their current value.
    SetParams {
        /// Minimum stake to register, e.g. 1eth.
        #[arg(long, value_name = "AMOUNT")]
        min_stake: Option<String>,
        /// Seconds a deregistered node's stake stays bonded.
        #[arg(long, value_name = "SECS")]
        unbonding_delay: Option<u64>,
        /// Seconds a proposal stays open.
        #[arg(long, value_name = "SECS")]
        proposal_ttl: Option<u64>,
        #[command(flatten)]
        tx: TxArgs,
    },
}

/// `cnode registry …`.
pub(crate) async fn registry(dir: &DataDir, command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Status { json } => {
            let info: RegistryInfo = ApiClient::from_data_dir(dir)?
                .get_json(&["v1", "registry"])
                .await?;
            if json {
                output::json(&info);
            } else {
                print_info(&info);
            }
            Ok(())
        }
        RegistryCommand::Nodes { json } => {
            let nodes: Vec<RegistryNode> = ApiClient::from_data_dir(dir)?
                .get_json(&["v1", "registry", "nodes"])
                .await?;
            if json {
                output::json(&nodes);
            } else if nodes.is_empty() {
                println!("no registered nodes");
            } else {
                print_nodes(&nodes);
            }
            Ok(())
        }
        RegistryCommand::Routes { region, json } => {
            let client = ApiClient::from_data_dir(dir)?;
            let routes: Vec<RegistryRoute> = match region {
                Some(r) => {
                    let r = amount::parse_region(&r)?;
                    client
                        .get_json_query(
                            &["v1", "registry", "routes"],
                            &[("region", r.as_str().to_owned())],
                        )
                        .await?
                }
                None => client.get_json(&["v1", "registry", "routes"]).await?,
            };
            if json {
                output::json(&routes);
            } else {
                print_routes(&routes);
            }
            Ok(())
        }
        RegistryCommand::Services { json } => {
            let services: Vec<RegistryService> = ApiClient::from_data_dir(dir)?
                .get_json(&["v1", "registry", "services"])
                .await?;
            if json {
                output::json(&services);
            } else {
                print_services(&services);
            }
            Ok(())
        }
        RegistryCommand::Key { command } => key::command(dir, command),
        RegistryCommand::Register(args) => write::register(dir, args).await,
        RegistryCommand::Update(args) => write::update(dir, args).await,
        RegistryCommand::AddStake { amount, tx } => write::add_stake(dir, &amount, tx).await,
        RegistryCommand::Deregister { tx } => write::deregister(dir, tx).await,
        RegistryCommand::Withdraw { tx } => write::withdraw(dir, tx).await,
        RegistryCommand::Publish {
            id,
            service_version,
            package,
            manifest,
            tx,
        } => write::publish(dir, &id, &service_version, &package, &manifest, tx).await,
        RegistryCommand::Steward { command } => write::steward(dir, command).await,
    }
}

/// One line for `cnode status`: `chain 31337 0x5FbD…0aa3, block 42 (lag 2),
/// live, 3 nodes, 1 route`.
pub(crate) fn summary_line(info: &RegistryInfo) -> String {
    let block = match (info.head_block, info.lag) {
        (Some(head), Some(lag)) => format!("block {head} (lag {lag})"),
        (Some(head), None) => format!("block {head}"),
        (None, _) => match info.applied_block {
            Some(applied) => format!("snapshot at block {applied}"),
            None => "no block yet".to_owned(),
        },
    };
    let source = match (&info.last_error, info.source.as_str()) {
        (Some(e), "snapshot") => format!("snapshot ({})", one_line(e)),
        (_, source) => source.to_owned(),
    };
    format!(
        "chain {} {}, {block}, {source}, {}, {}, {}",
        info.chain_id,
        short_address(&info.contract),
        plural(info.nodes, "node"),
        plural(info.routes, "route"),
        plural(info.services, "service"),
    )
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn print_info(info: &RegistryInfo) {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |b| b.to_string());
    println!("chain       {}", info.chain_id);
    println!("contract    {}", info.contract);
    println!("source      {}", info.source);
    println!("head block  {}", opt(info.head_block));
    println!("applied     {}", opt(info.applied_block));
    println!("lag         {} blocks", opt(info.lag));
    println!("nodes       {}", info.nodes);
    println!("routes      {}", info.routes);
    println!("services    {}", info.services);
    println!("rpc calls   {}", info.rpc_calls);
    if let Some(e) = &info.last_error {
        println!("last error  {}", one_line(e));
    }
}

fn print_nodes(nodes: &[RegistryNode]) {
    println!(
        "{:<12} {:<9} {:>10} {:>7}  {:<16} REGIONS",
        "OPERATOR", "STATUS", "STAKE", "CREDIT", "PEER"
    );
    for n in nodes {
        println!(
            "{:<12} {:<9} {:>10} {:>7}  {:<16} {}",
            short_address(&n.operator),
            n.status,
            eth_of_decimal(&n.stake_wei),
            n.credit,
            n.peer_id
                .as_deref()
                .map_or_else(|| "?".to_owned(), short_peer),
            n.regions.join(",")
        );
    }
}

fn print_routes(routes: &[RegistryRoute]) {
    if routes.is_empty() {
        println!("no routes");
        return;
    }
    println!(
        "{:<6} {:>2}  {:<12} {:<16} {:>10} {:>7}  ADDRESS",
        "REGION", "#", "OPERATOR", "PEER", "STAKE", "CREDIT"
    );
    for r in routes {
        if r.nodes.is_empty() {
            println!("{:<6}  -  (no active nodes)", r.region);
        }
        for (i, n) in r.nodes.iter().enumerate() {
            println!(
                "{:<6} {:>2}  {:<12} {:<16} {:>10} {:>7}  {}",
                if i == 0 { r.region.as_str() } else { "" },
                i + 1,
                short_address(&n.operator),
                n.peer_id
                    .as_deref()
                    .map_or_else(|| "?".to_owned(), short_peer),
                eth_of_decimal(&n.stake_wei),
                n.credit,
                n.multiaddrs.first().map(String::as_str).unwrap_or("-")
            );
        }
    }
}

fn print_services(services: &[RegistryService]) {
    if services.is_empty() {
        println!("no services");
        return;
    }
    println!("{:<40} {:<9} {:<12} KEY", "SERVICE", "STATUS", "PUBLISHER");
    for s in services {
        println!(
            "{:<40} {:<9} {:<12} {}",
            format!("{}@{}", s.id, s.version),
            s.status,
            short_address(&s.publisher),
            s.key
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> RegistryInfo {
        RegistryInfo {
            chain_id: 31337,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            head_block: Some(42),
            applied_block: Some(40),
            lag: Some(2),
            source: "live".into(),
            last_error: None,
            rpc_calls: 10,
            nodes: 3,
            routes: 1,
            services: 0,
        }
    }

    #[test]
    fn status_line() {
        assert_eq!(
            summary_line(&info()),
            "chain 31337 0x5FbD…0aa3, block 42 (lag 2), live, 3 nodes, 1 route, 0 services"
        );
        let offline = RegistryInfo {
            source: "snapshot".into(),
            last_error: Some("RPC http://127.0.0.1:8545 unreachable\n(eth_blockNumber)".into()),
            head_block: None,
            lag: None,
            ..info()
        };
        assert_eq!(
            summary_line(&offline),
            "chain 31337 0x5FbD…0aa3, snapshot at block 40, snapshot (RPC http://127.0.0.1:8545 unreachable (eth_blockNumber)), 3 nodes, 1 route, 0 services"
        );
    }
}
