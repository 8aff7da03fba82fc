//! The [`Registry`] trait: what the rest of the node reads.

use std::sync::Arc;

use alloy::primitives::{Address, B256};
use async_trait::async_trait;
use cnode_types::RegionId;

use crate::{
    service::RegistryHandle,
    state::Snapshot,
    types::{Credit, Node, Params, Proposal, RegistryStatus, Service, Source, Stewards},
};

/// Reads of the chain registry. Implementations answer from a local
/// snapshot and never wait for the chain; every method but
/// [`Registry::status`] and [`Registry::snapshot`] has a default built on
/// the snapshot. Object-safe (`Arc<dyn Registry>`).
#[async_trait]
pub trait Registry: Send + Sync {
    /// Where the answers come from and how far behind the chain they are.
    async fn status(&self) -> RegistryStatus;

    /// The whole current snapshot.
    async fn snapshot(&self) -> Arc<Snapshot>;

    /// All known nodes, active and unbonding, ordered by operator.
    async fn nodes(&self) -> Vec<Node> {
        self.snapshot().await.nodes().cloned().collect()
    }

    /// One node.
    async fn node(&self, operator: Address) -> Option<Node> {
        self.snapshot().await.node(&operator).cloned()
    }

    /// The nodes serving `region`, in the stewards' order, active only.
    async fn route(&self, region: RegionId) -> Vec<Node> {
        self.snapshot()
            .await
            .route(&region)
            .into_iter()
            .cloned()
            .collect()
    }

    /// An operator's credit.
    async fn credit(&self, operator: Address) -> Option<Credit> {
        self.snapshot().await.credit(&operator)
    }

    /// The API list.
    async fn services(&self) -> Vec<Service> {
        self.snapshot().await.services().cloned().collect()
    }

    /// One service by key (see [`crate::service_key`]).
    async fn service(&self, key: B256) -> Option<Service> {
        self.snapshot().await.service(&key).cloned()
    }

    /// Stewards and threshold.
    async fn stewards(&self) -> Stewards {
        self.snapshot().await.stewards().clone()
    }

    /// Governance parameters.
    async fn params(&self) -> Params {
        self.snapshot().await.params()
    }

    /// m-of-n proposals.
    async fn proposals(&self) -> Vec<Proposal> {
        self.snapshot().await.proposals().cloned().collect()
    }
}

#[async_trait]
impl Registry for RegistryHandle {
    async fn status(&self) -> RegistryStatus {
        RegistryHandle::status(self)
    }

    async fn snapshot(&self) -> Arc<Snapshot> {
        RegistryHandle::snapshot(self)
    }
}

/// A registry that always answers with one fixed snapshot: for tests of
/// code that reads the registry, and for a node without any chain.
#[derive(Debug, Clone)]
pub struct StaticRegistry {
    snapshot: Arc<Snapshot>,
    status: RegistryStatus,
}

impl StaticRegistry {
    /// Answers with `snapshot`; the status says [`Source::Snapshot`].
    pub fn new(snapshot: Snapshot, chain_id: u64, contract: Address) -> Self {
        let status = RegistryStatus {
            chain_id,
            contract,
            head_block: None,
            applied_block: snapshot.block(),
            lag: None,
            source: Source::Snapshot,
            last_error: None,
            rpc_calls: 0,
        };
        Self {
            snapshot: Arc::new(snapshot),
            status,
        }
    }
}

#[async_trait]
impl Registry for StaticRegistry {
    async fn status(&self) -> RegistryStatus {
        self.status.clone()
    }

    async fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{op, registered, route};

    #[tokio::test]
    async fn a_static_registry_behind_dyn() {
        let snapshot = Snapshot::from_events([
            (1, &registered(1, &["w5q6"])),
            (1, &registered(2, &["w5q6"])),
            (2, &route("w5q6", &[2, 1])),
        ]);
        let r: Arc<dyn Registry> = Arc::new(StaticRegistry::new(snapshot, 31337, op(9)));
        let route = r.route("w5q6".parse().unwrap()).await;
        assert_eq!(
            route.iter().map(|n| n.operator).collect::<Vec<_>>(),
            vec![op(2), op(1)]
        );
        assert_eq!(r.nodes().await.len(), 2);
        assert!(r.node(op(1)).await.is_some());
        assert_eq!(r.credit(op(1)).await, Some(Credit::default()));
        assert!(r.services().await.is_empty());
        let s = r.status().await;
        assert_eq!(s.source, Source::Snapshot);
        assert_eq!(s.applied_block, Some(2));
    }
}
