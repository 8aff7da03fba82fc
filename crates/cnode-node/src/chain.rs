//! The chain registry inside the node: it follows the configured chain (or
//! reads the last snapshot when none is configured) and keeps the node
//! connected to the service nodes that the routing table lists for the
//! regions it serves.
//!
//! The bootstrap task runs for the node's lifetime. On every new snapshot,
//! on every region joined, and every [`BOOTSTRAP_EVERY`], it picks
//! candidates — the route of each served region in the stewards' order,
//! then other active nodes registered for that region, then (for a node
//! serving nothing yet, so that it still joins the network) any active
//! node — and dials those it is not connected to, at most
//! [`MAX_BOOTSTRAP_DIALS`] at a time, each one at most once per
//! [`REDIAL_AFTER`].

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    time::{Duration, Instant},
};

use cnode_net::{Multiaddr, NetClient, PeerId};
use cnode_registry::{ChainConfig, Node as ChainNode, RegistryHandle, RegistryService};
use cnode_types::RegionId;
use futures::{StreamExt, stream::FuturesUnordered};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::RecordService;

/// How often the bootstrap task looks again without a new snapshot.
pub const BOOTSTRAP_EVERY: Duration = Duration::from_secs(30);
/// The most registry nodes dialled in one pass.
pub const MAX_BOOTSTRAP_DIALS: usize = 8;
/// A registry node whose dial failed is not tried again before this.
pub const REDIAL_AFTER: Duration = Duration::from_secs(60);
/// How long one dial may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Connected region peers that are enough: no more dials for that region.
const ENOUGH_PER_REGION: usize = 3;

/// Opens the registry for a node: follows `config`'s chain, or, with no
/// chain configured, serves the last snapshot in the data directory if
/// there is one (`None` if there is none: the node runs without a registry).
pub(crate) fn open(
    config: Option<&ChainConfig>,
    data_dir: &Path,
    cancel: CancellationToken,
) -> Result<Option<RegistryHandle>, cnode_registry::SpawnError> {
    match config {
        Some(c) => RegistryService::spawn(c.clone(), data_dir, cancel).map(Some),
        None => match RegistryService::open_offline(data_dir) {
            Ok(h) => {
                info!("no [chain] configured: serving the last registry snapshot");
                Ok(Some(h))
            }
            Err(cnode_registry::SpawnError::NoSnapshot(_)) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Keeps the node connected to its regions' service nodes (see the module
/// docs). Ends when `cancel` is cancelled.
pub(crate) async fn bootstrap_task(
    registry: RegistryHandle,
    net: NetClient,
    records: RecordService,
    cancel: CancellationToken,
) {
    let mut snapshots = registry.watch_snapshot();
    let mut tried: HashMap<PeerId, Instant> = HashMap::new();
    let me = net.local_peer_id();
    loop {
        let served: Vec<RegionId> = records
            .regions()
            .await
            .into_iter()
            .filter_map(|r| r.region.parse().ok())
            .collect();
        let snapshot = registry.snapshot();
        let connected: HashSet<PeerId> = match net.peers().await {
            Ok(peers) => peers
                .into_iter()
                .filter_map(|p| p.peer_id.parse().ok())
                .collect(),
            Err(_) => return, // the network stopped
        };
        let mut picked: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        let consider = |n: &ChainNode, picked: &mut Vec<(PeerId, Vec<Multiaddr>)>| {
            let Some(peer) = n.peer_id() else { return };
            if peer == me
                || !n.is_active()
                || connected.contains(&peer)
                || picked.iter().any(|(p, _)| *p == peer)
                || tried.get(&peer).is_some_and(|t| t.elapsed() < REDIAL_AFTER)
            {
                return;
            }
            let addrs = dial_addrs(n, peer);
            if !addrs.is_empty() {
                picked.push((peer, addrs));
            }
        };
        for region in &served {
            let route = snapshot.route(region);
            let in_region = snapshot.nodes().filter(|n| {
                n.regions.contains(region) && !route.iter().any(|r| r.operator == n.operator)
            });
            let members: Vec<&ChainNode> = route.iter().copied().chain(in_region).collect();
            let have = members
                .iter()
                .filter(|n| n.peer_id().is_some_and(|p| connected.contains(&p)))
                .count();
            for n in members
                .into_iter()
                .take(ENOUGH_PER_REGION.saturating_sub(have) * 2)
            {
                consider(n, &mut picked);
            }
        }
        if served.is_empty() && connected.is_empty() {
            for n in snapshot.nodes() {
                consider(n, &mut picked);
            }
        }
        picked.truncate(MAX_BOOTSTRAP_DIALS);
        if !picked.is_empty() {
            debug!(count = picked.len(), "dialling registry nodes");
            let mut dials: FuturesUnordered<_> = picked
                .into_iter()
                .map(|(peer, addrs)| {
                    tried.insert(peer, Instant::now());
                    let net = net.clone();
                    async move { (peer, dial_any(&net, addrs).await) }
                })
                .collect();
            while let Some((peer, result)) = dials.next().await {
                match result {
                    Ok(addr) => info!(%peer, %addr, "connected to a registry node"),
                    Err(e) => warn!(%peer, error = %e, "cannot reach a registry node"),
                }
            }
        }
        tried.retain(|_, t| t.elapsed() < REDIAL_AFTER);
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() {
                // The follower stopped (offline registry): poll the timer only.
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(BOOTSTRAP_EVERY) => {}
                }
            },
            () = tokio::time::sleep(BOOTSTRAP_EVERY) => {}
        }
    }
}

/// A registered node's addresses that parse, each ending in its peer id.
fn dial_addrs(n: &ChainNode, peer: PeerId) -> Vec<Multiaddr> {
    n.multiaddrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .map(|a| match a.iter().last() {
            Some(libp2p::multiaddr::Protocol::P2p(_)) => a,
            _ => a.with(libp2p::multiaddr::Protocol::P2p(peer)),
        })
        .collect()
}

/// Dials the addresses in turn until one connects.
async fn dial_any(net: &NetClient, addrs: Vec<Multiaddr>) -> Result<Multiaddr, String> {
    let mut last = String::from("no address");
    for addr in addrs {
        match tokio::time::timeout(DIAL_TIMEOUT, net.dial(addr.clone())).await {
            Ok(Ok(_)) => return Ok(addr),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
            Err(_) => last = format!("{addr}: timed out"),
        }
    }
    Err(last)
}
