//! What the registry says, as plain Rust values (the answers of [`crate::Registry`]).

use std::fmt;

use alloy::primitives::{Address, B256, Bytes, U256};
use cnode_types::{PeerId, RegionId};
use serde::{Deserialize, Serialize};

/// A node's state in the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Registered and staked: may serve routes.
    Active,
    /// Deregistered; the stake unbonds until `unbonding_ends`.
    Unbonding,
}

/// A registered node: on-chain state plus the details from its latest
/// `NodeRegistered` / `NodeUpdated` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The operator's address (the key of the node in the registry).
    pub operator: Address,
    /// Active or unbonding.
    pub status: NodeStatus,
    /// Stake held for this operator, in wei.
    pub stake: U256,
    /// Unix seconds when unbonding ends; 0 unless unbonding.
    pub unbonding_ends: u64,
    /// Latest accepted credit score (0..=1_000_000) and its epoch.
    pub credit: Credit,
    /// The libp2p peer id's multihash bytes, as registered.
    pub peer_id_bytes: Bytes,
    /// The node's multiaddrs, as registered (not validated here).
    pub multiaddrs: Vec<String>,
    /// The regions the node serves.
    pub regions: Vec<RegionId>,
    /// Block of the latest `NodeRegistered` / `NodeUpdated` event.
    pub details_block: u64,
}

impl Node {
    /// The libp2p peer id, if the registered bytes are one.
    pub fn peer_id(&self) -> Option<PeerId> {
        PeerId::from_bytes(&self.peer_id_bytes).ok()
    }

    /// Whether the node may serve routes.
    pub fn is_active(&self) -> bool {
        self.status == NodeStatus::Active
    }
}

/// A node's credit: the median of the stewards' attestations for an epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    /// Score, 0..=1_000_000.
    pub score: u64,
    /// The epoch the score belongs to.
    pub epoch: u64,
}

/// Where a service is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// Proposed by a publisher, not yet approved by a steward.
    Proposed,
    /// Approved: nodes may install it.
    Approved,
    /// Revoked by a steward.
    Revoked,
}

/// An entry of the API list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// `keccak256(id ‖ "@" ‖ version)`, see [`crate::service_key`].
    pub key: B256,
    /// Reverse-domain id, e.g. `org.cnode.events`.
    pub id: String,
    /// Version string.
    pub version: String,
    /// BLAKE3 root of the package blob.
    pub package_hash: B256,
    /// BLAKE3 of the package's `plugin.toml`.
    pub manifest_hash: B256,
    /// Who proposed it.
    pub publisher: Address,
    /// Proposed, approved or revoked.
    pub status: ServiceStatus,
}

/// The governance parameters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Minimum stake to register, in wei.
    pub min_stake: U256,
    /// Seconds a deregistered node's stake stays bonded.
    pub unbonding_delay: u64,
    /// Seconds a proposal stays open.
    pub proposal_ttl: u64,
}

/// The stewards and how many of them must approve a sensitive action.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stewards {
    /// Steward addresses, in the order they were added.
    pub stewards: Vec<Address>,
    /// Approvals an m-of-n proposal needs.
    pub threshold: U256,
}

/// What an m-of-n proposal does, decoded from its `(kind, data)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum ProposalAction {
    /// Add a steward.
    AddSteward {
        /// The new steward.
        steward: Address,
    },
    /// Remove a steward.
    RemoveSteward {
        /// The steward to remove.
        steward: Address,
    },
    /// Change the approval threshold.
    SetThreshold {
        /// The new threshold.
        threshold: U256,
    },
    /// Take part of an operator's stake.
    Slash {
        /// The operator.
        operator: Address,
        /// Wei to take.
        amount: U256,
        /// Why, for the record.
        reason: String,
    },
    /// Change the parameters.
    SetParams {
        /// The new parameters.
        params: Params,
    },
    /// A kind or data this client cannot decode (kept as it came).
    Unknown {
        /// The kind as a number.
        kind: u8,
        /// The raw data.
        data: Bytes,
    },
}

/// An m-of-n proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposal id.
    pub id: U256,
    /// What it does.
    pub action: ProposalAction,
    /// The steward that proposed it.
    pub proposer: Address,
    /// Unix seconds after which it can no longer be executed.
    pub expires_at: u64,
    /// Approvals so far (the proposer's included).
    pub approvals: U256,
    /// Whether it was executed.
    pub executed: bool,
}

/// Where the answers of a [`crate::Registry`] come from right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The last poll of the RPC succeeded; the snapshot is up to date with
    /// the chain (minus confirmations).
    Live,
    /// The RPC is not reachable (or not configured, or not valid): answers
    /// come from the last persisted snapshot.
    Snapshot,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Live => "live",
            Self::Snapshot => "snapshot",
        })
    }
}

/// The follower's state, for `cnode status` and the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryStatus {
    /// The configured chain id (or the snapshot's, offline).
    pub chain_id: u64,
    /// The registry contract.
    pub contract: Address,
    /// The chain's latest block, as last seen.
    pub head_block: Option<u64>,
    /// The last block whose events are in the snapshot.
    pub applied_block: Option<u64>,
    /// `head_block - applied_block` (includes the confirmations).
    pub lag: Option<u64>,
    /// Live or snapshot.
    pub source: Source,
    /// The last error, cleared by the next successful poll.
    pub last_error: Option<String>,
    /// JSON-RPC calls made so far by this follower.
    pub rpc_calls: u64,
}
