//! The registry's state, derived only from its events (event sourcing).
//!
//! [`Snapshot`] is the state after some prefix of the event log;
//! [`History`] keeps a compacted base snapshot plus the events of the last
//! [`HISTORY_BLOCKS`] applied blocks and their block hashes, so a reorg is
//! undone by dropping the orphaned blocks' events and re-deriving the state
//! from the base. Nothing here does I/O.

use std::{
    collections::{BTreeMap, btree_map},
    sync::Arc,
};

use alloy::{
    primitives::{Address, B256, Bytes, U256},
    sol_types::SolValue,
};
use cnode_types::RegionId;
use serde::{Deserialize, Serialize};

use crate::{
    bindings::{ICnodeRegistry::ProposalKind, RegistryEvents},
    types::{
        Credit, Node, NodeStatus, Params, Proposal, ProposalAction, Service, ServiceStatus,
        Stewards,
    },
};

/// Blocks of history kept for undoing reorgs: events and block hashes of
/// the last this-many applied blocks. A reorg deeper than this makes the
/// follower rebuild the snapshot from the deploy block.
pub const HISTORY_BLOCKS: u64 = 256;

/// The registry state after the events up to [`Snapshot::block`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    block: Option<u64>,
    nodes: BTreeMap<Address, Node>,
    routes: BTreeMap<RegionId, Vec<Address>>,
    services: BTreeMap<B256, Service>,
    stewards: Stewards,
    params: Params,
    proposals: BTreeMap<U256, Proposal>,
}

impl Snapshot {
    /// The state after `events` (block number and event, in chain order),
    /// starting from nothing: for building fakes in tests.
    pub fn from_events<'a>(events: impl IntoIterator<Item = (u64, &'a RegistryEvents)>) -> Self {
        let mut s = Self::default();
        for (block, e) in events {
            s.apply(block, e);
        }
        s
    }

    /// The last block whose events are included, if any.
    pub fn block(&self) -> Option<u64> {
        self.block
    }

    /// All known nodes (active and unbonding), by operator.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// One node by operator.
    pub fn node(&self, operator: &Address) -> Option<&Node> {
        self.nodes.get(operator)
    }

    /// A region's route: its operators in order, mapped to their nodes, with
    /// operators that are unknown or not active left out.
    pub fn route(&self, region: &RegionId) -> Vec<&Node> {
        self.route_operators(region)
            .iter()
            .filter_map(|op| self.nodes.get(op))
            .filter(|n| n.is_active())
            .collect()
    }

    /// A region's operators exactly as the last `RouteSet` listed them.
    pub fn route_operators(&self, region: &RegionId) -> &[Address] {
        self.routes.get(region).map_or(&[], Vec::as_slice)
    }

    /// All regions with a route, and their operators as set.
    pub fn routes(&self) -> &BTreeMap<RegionId, Vec<Address>> {
        &self.routes
    }

    /// An operator's credit, if the node is known.
    pub fn credit(&self, operator: &Address) -> Option<Credit> {
        self.nodes.get(operator).map(|n| n.credit)
    }

    /// The API list, by key.
    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// One service by key.
    pub fn service(&self, key: &B256) -> Option<&Service> {
        self.services.get(key)
    }

    /// Stewards and threshold.
    pub fn stewards(&self) -> &Stewards {
        &self.stewards
    }

    /// Governance parameters.
    pub fn params(&self) -> Params {
        self.params
    }

    /// m-of-n proposals, by id.
    pub fn proposals(&self) -> impl Iterator<Item = &Proposal> {
        self.proposals.values()
    }

    /// Applies one event emitted in `block`.
    pub(crate) fn apply(&mut self, block: u64, event: &RegistryEvents) {
        use RegistryEvents as E;
        self.block = Some(self.block.map_or(block, |b| b.max(block)));
        match event {
            E::NodeRegistered(e) => {
                self.nodes.insert(
                    e.operator,
                    Node {
                        operator: e.operator,
                        status: NodeStatus::Active,
                        stake: e.stake,
                        unbonding_ends: 0,
                        credit: Credit::default(),
                        peer_id_bytes: e.peerId.clone(),
                        multiaddrs: e.multiaddrs.clone(),
                        regions: regions(&e.regions),
                        details_block: block,
                    },
                );
            }
            E::NodeUpdated(e) => {
                if let Some(n) = self.known(&e.operator, "NodeUpdated") {
                    n.peer_id_bytes = e.peerId.clone();
                    n.multiaddrs = e.multiaddrs.clone();
                    n.regions = regions(&e.regions);
                    n.details_block = block;
                }
            }
            E::StakeAdded(e) => {
                if let Some(n) = self.known(&e.operator, "StakeAdded") {
                    n.stake = e.total;
                }
            }
            E::NodeDeregistered(e) => {
                if let Some(n) = self.known(&e.operator, "NodeDeregistered") {
                    n.status = NodeStatus::Unbonding;
                    n.unbonding_ends = e.unbondingEnds;
                }
            }
            E::StakeWithdrawn(e) => {
                self.nodes.remove(&e.operator);
            }
            E::Slashed(e) => {
                if let Some(n) = self.known(&e.operator, "Slashed") {
                    n.stake = n.stake.saturating_sub(e.amount);
                }
            }
            E::RouteSet(e) => match region(&e.region) {
                Some(r) if e.operators.is_empty() => {
                    self.routes.remove(&r);
                }
                Some(r) => {
                    self.routes.insert(r, e.operators.clone());
                }
                None => {
                    tracing::warn!(region = %e.region, "RouteSet for a region that is not a geohash; ignored")
                }
            },
            E::CreditAttested(_) => {}
            E::CreditUpdated(e) => {
                if let Some(n) = self.known(&e.operator, "CreditUpdated") {
                    n.credit = Credit {
                        score: e.score,
                        epoch: e.epoch,
                    };
                }
            }
            E::ServiceProposed(e) => {
                self.services.insert(
                    e.key,
                    Service {
                        key: e.key,
                        id: e.id.clone(),
                        version: e.version.clone(),
                        package_hash: e.packageHash,
                        manifest_hash: e.manifestHash,
                        publisher: e.publisher,
                        status: ServiceStatus::Proposed,
                    },
                );
            }
            E::ServiceApproved(e) => {
                if let Some(s) = self.services.get_mut(&e.key) {
                    s.status = ServiceStatus::Approved;
                }
            }
            E::ServiceRevoked(e) => {
                if let Some(s) = self.services.get_mut(&e.key) {
                    s.status = ServiceStatus::Revoked;
                }
            }
            E::ProposalCreated(e) => {
                self.proposals.insert(
                    e.proposalId,
                    Proposal {
                        id: e.proposalId,
                        action: ProposalAction::decode(e.kind, &e.data),
                        proposer: e.proposer,
                        expires_at: e.expiresAt,
                        approvals: U256::from(1),
                        executed: false,
                    },
                );
            }
            E::ProposalApproved(e) => {
                if let Some(p) = self.proposals.get_mut(&e.proposalId) {
                    p.approvals = e.approvals;
                }
            }
            E::ProposalExecuted(e) => {
                if let Some(p) = self.proposals.get_mut(&e.proposalId) {
                    p.executed = true;
                }
            }
            E::StewardAdded(e) => {
                if !self.stewards.stewards.contains(&e.steward) {
                    self.stewards.stewards.push(e.steward);
                }
            }
            E::StewardRemoved(e) => {
                // As the contract does: the last steward takes the removed one's place.
                if let Some(i) = self.stewards.stewards.iter().position(|s| *s == e.steward) {
                    self.stewards.stewards.swap_remove(i);
                }
            }
            E::ThresholdChanged(e) => self.stewards.threshold = e.threshold,
            E::ParamsChanged(e) => {
                self.params = Params {
                    min_stake: e.minStake,
                    unbonding_delay: e.unbondingDelay,
                    proposal_ttl: e.proposalTtl,
                }
            }
        }
    }

    fn known(&mut self, operator: &Address, event: &'static str) -> Option<&mut Node> {
        let node = self.nodes.get_mut(operator);
        if node.is_none() {
            tracing::warn!(%operator, event, "event for an unknown node; ignored");
        }
        node
    }
}

fn region(b: &alloy::primitives::FixedBytes<4>) -> Option<RegionId> {
    std::str::from_utf8(b.as_slice()).ok()?.parse().ok()
}

fn regions(list: &[alloy::primitives::FixedBytes<4>]) -> Vec<RegionId> {
    list.iter().filter_map(region).collect()
}

impl ProposalAction {
    /// Decodes a proposal's `(kind, data)`; anything undecodable becomes
    /// [`ProposalAction::Unknown`].
    pub(crate) fn decode(kind: ProposalKind, data: &Bytes) -> Self {
        let decoded = match kind {
            ProposalKind::AddSteward => Address::abi_decode(data)
                .ok()
                .map(|steward| Self::AddSteward { steward }),
            ProposalKind::RemoveSteward => Address::abi_decode(data)
                .ok()
                .map(|steward| Self::RemoveSteward { steward }),
            ProposalKind::SetThreshold => U256::abi_decode(data)
                .ok()
                .map(|threshold| Self::SetThreshold { threshold }),
            ProposalKind::Slash => <(Address, U256, String)>::abi_decode_params(data).ok().map(
                |(operator, amount, reason)| Self::Slash {
                    operator,
                    amount,
                    reason,
                },
            ),
            ProposalKind::SetParams => <(U256, u64, u64)>::abi_decode_params(data).ok().map(
                |(min_stake, unbonding_delay, proposal_ttl)| Self::SetParams {
                    params: Params {
                        min_stake,
                        unbonding_delay,
                        proposal_ttl,
                    },
                },
            ),
            _ => None,
        };
        decoded.unwrap_or_else(|| Self::Unknown {
            kind: kind as u8,
            data: data.clone(),
        })
    }

    /// The `(kind, data)` pair `propose` takes for this action; `None` for
    /// [`ProposalAction::Unknown`] with a kind the interface does not have.
    pub fn encode(&self) -> Option<(ProposalKind, Bytes)> {
        Some(match self {
            Self::AddSteward { steward } => (ProposalKind::AddSteward, steward.abi_encode().into()),
            Self::RemoveSteward { steward } => {
                (ProposalKind::RemoveSteward, steward.abi_encode().into())
            }
            Self::SetThreshold { threshold } => {
                (ProposalKind::SetThreshold, threshold.abi_encode().into())
            }
            Self::Slash {
                operator,
                amount,
                reason,
            } => (
                ProposalKind::Slash,
                (*operator, *amount, reason.clone())
                    .abi_encode_params()
                    .into(),
            ),
            Self::SetParams { params } => (
                ProposalKind::SetParams,
                (
                    params.min_stake,
                    params.unbonding_delay,
                    params.proposal_ttl,
                )
                    .abi_encode_params()
                    .into(),
            ),
            Self::Unknown { kind, data } => (ProposalKind::try_from(*kind).ok()?, data.clone()),
        })
    }
}

/// One applied registry event and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppliedEvent {
    pub(crate) block: u64,
    pub(crate) block_hash: B256,
    pub(crate) log_index: u64,
    pub(crate) tx_hash: Option<B256>,
    pub(crate) event: RegistryEvents,
}

/// The event-sourced snapshot: a base state, the recent events on top of it,
/// recent block hashes, and the derived current state.
#[derive(Debug, Clone)]
pub(crate) struct History {
    /// State with every event of blocks `<=` the compaction cutoff folded in.
    base: Snapshot,
    /// Events above the base, in chain order.
    events: Vec<AppliedEvent>,
    /// Hashes of recently applied blocks (chunk ends and blocks with events).
    hashes: BTreeMap<u64, B256>,
    /// The last block applied.
    applied: Option<u64>,
    /// `base` + `events`, shared with readers.
    current: Arc<Snapshot>,
}

/// What [`History::compact`] changed, for the persistence layer to mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Compaction {
    /// Events of blocks `<=` this were folded into the base (if `base_changed`).
    pub(crate) fold_through: u64,
    /// Hashes of blocks `<` this were dropped.
    pub(crate) prune_below: u64,
    /// Whether any event was folded, i.e. the base must be saved.
    pub(crate) base_changed: bool,
}

impl Default for History {
    fn default() -> Self {
        Self::new(Snapshot::default(), Vec::new(), BTreeMap::new(), None)
    }
}

impl History {
    /// Rebuilds a history from persisted parts.
    pub(crate) fn new(
        base: Snapshot,
        events: Vec<AppliedEvent>,
        hashes: BTreeMap<u64, B256>,
        applied: Option<u64>,
    ) -> Self {
        let mut h = Self {
            current: Arc::new(base.clone()),
            base,
            events,
            hashes,
            applied,
        };
        h.rederive();
        h
    }

    pub(crate) fn applied(&self) -> Option<u64> {
        self.applied
    }

    pub(crate) fn current(&self) -> &Arc<Snapshot> {
        &self.current
    }

    pub(crate) fn base(&self) -> &Snapshot {
        &self.base
    }

    #[cfg(test)]
    pub(crate) fn events(&self) -> &[AppliedEvent] {
        &self.events
    }

    pub(crate) fn hashes(&self) -> &BTreeMap<u64, B256> {
        &self.hashes
    }

    /// Applies the events of blocks `(applied, to]`; `to_hash` is the hash of
    /// block `to`. Events must be in chain order and inside that range.
    pub(crate) fn append(&mut self, to: u64, to_hash: B256, events: Vec<AppliedEvent>) {
        debug_assert!(self.applied.is_none_or(|a| to > a));
        let current = Arc::make_mut(&mut self.current);
        for e in &events {
            debug_assert!(e.block <= to && self.applied.is_none_or(|a| e.block > a));
            current.apply(e.block, &e.event);
            self.hashes.insert(e.block, e.block_hash);
        }
        current.block = Some(to);
        self.hashes.insert(to, to_hash);
        self.events.extend(events);
        self.applied = Some(to);
    }

    /// Undoes every block above `ancestor`: drops their events and hashes and
    /// re-derives the state from the base.
    pub(crate) fn rollback(&mut self, ancestor: u64) {
        self.events.retain(|e| e.block <= ancestor);
        self.hashes.retain(|n, _| *n <= ancestor);
        self.applied = Some(ancestor);
        self.rederive();
    }

    /// Forgets everything (a reorg deeper than the kept history, or a new
    /// chain or contract).
    pub(crate) fn reset(&mut self) {
        *self = Self::default();
    }

    /// Folds events older than [`HISTORY_BLOCKS`] into the base and drops
    /// hashes that old. Returns what changed, or `None` when nothing did.
    pub(crate) fn compact(&mut self) -> Option<Compaction> {
        let cutoff = self.applied?.checked_sub(HISTORY_BLOCKS)?;
        let fold = self.events.partition_point(|e| e.block <= cutoff);
        let old_hashes = self.hashes.range(..cutoff).count();
        if fold == 0 && old_hashes == 0 {
            return None;
        }
        for e in self.events.drain(..fold) {
            self.base.apply(e.block, &e.event);
        }
        self.hashes = self.hashes.split_off(&cutoff);
        Some(Compaction {
            fold_through: cutoff,
            prune_below: cutoff,
            base_changed: fold > 0,
        })
    }

    /// The stored block hashes, newest first.
    pub(crate) fn hashes_newest_first(&self) -> std::iter::Rev<btree_map::Iter<'_, u64, B256>> {
        self.hashes.iter().rev()
    }

    fn rederive(&mut self) {
        let mut s = self.base.clone();
        for e in &self.events {
            s.apply(e.block, &e.event);
        }
        s.block = self.applied;
        self.current = Arc::new(s);
    }
}

#[cfg(test)]
#[path = "state/tests.rs"]
pub(crate) mod tests;
