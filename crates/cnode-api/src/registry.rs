//! Registry routes: the node's view of the chain registry (status, nodes,
//! routes, services). Answers come from the snapshot and never wait for the
//! chain; `source` says whether the snapshot is live.

use axum::{
    Json,
    extract::{Query, State},
};
use cnode_node::{
    Node,
    cnode_registry::{self, NodeStatus, Registry as _, RegistryHandle, ServiceStatus, Source},
};
use cnode_types::{RegionId, RegistryInfo, RegistryNode, RegistryRoute, RegistryService};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::{ApiError, AppState};

fn handle(node: &Node) -> Result<&RegistryHandle, ApiError> {
    node.registry().ok_or_else(|| {
        ApiError::NotFound(
            "this node has no registry: configure [chain] (rpc_url, registry_address, chain_id) \
             in config.toml, or run `cnode devnet`"
                .into(),
        )
    })
}

/// The registry's state for `GET /v1/status` and `GET /v1/registry`.
pub(crate) fn info(registry: &RegistryHandle) -> RegistryInfo {
    let status = registry.status();
    let snapshot = registry.snapshot();
    RegistryInfo {
        chain_id: status.chain_id,
        contract: status.contract.to_string(),
        head_block: status.head_block,
        applied_block: status.applied_block,
        lag: status.lag,
        source: match status.source {
            Source::Live => "live",
            Source::Snapshot => "snapshot",
        }
        .into(),
        last_error: status.last_error,
        rpc_calls: status.rpc_calls,
        nodes: snapshot.nodes().count(),
        routes: snapshot.routes().len(),
        services: snapshot.services().count(),
    }
}

fn node_view(n: &cnode_registry::Node) -> RegistryNode {
    RegistryNode {
        operator: n.operator.to_string(),
        status: match n.status {
            NodeStatus::Active => "active",
            NodeStatus::Unbonding => "unbonding",
        }
        .into(),
        stake_wei: n.stake.to_string(),
        unbonding_ends: n.unbonding_ends,
        credit: n.credit.score,
        credit_epoch: n.credit.epoch,
        peer_id: n.peer_id().map(|p| p.to_string()),
        multiaddrs: n.multiaddrs.clone(),
        regions: n.regions.iter().map(|r| r.as_str().to_owned()).collect(),
    }
}

/// Where the registry view comes from and how far behind the chain it is.
#[utoipa::path(get, path = "/v1/registry", responses(
    (status = 200, body = RegistryInfo),
    (status = 404, description = "No registry configured", body = crate::ErrorBody)))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<RegistryInfo>, ApiError> {
    Ok(Json(info(handle(&state.node)?)))
}

/// Every registered node, active and unbonding, by operator address.
#[utoipa::path(get, path = "/v1/registry/nodes", responses(
    (status = 200, body = Vec<RegistryNode>),
    (status = 404, description = "No registry configured", body = crate::ErrorBody)))]
pub(crate) async fn nodes(
    State(state): State<AppState>,
) -> Result<Json<Vec<RegistryNode>>, ApiError> {
    let registry = handle(&state.node)?;
    Ok(Json(registry.nodes().await.iter().map(node_view).collect()))
}

/// Which region's route to show.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct RouteParams {
    /// A 4-character geohash; all routes when absent.
    region: Option<String>,
}

/// The routing table: each region's service nodes in the stewards' order
/// (active nodes only).
#[utoipa::path(get, path = "/v1/registry/routes", params(RouteParams), responses(
    (status = 200, body = Vec<RegistryRoute>),
    (status = 400, body = crate::ErrorBody),
    (status = 404, description = "No registry configured", body = crate::ErrorBody)))]
pub(crate) async fn routes(
    State(state): State<AppState>,
    Query(params): Query<RouteParams>,
) -> Result<Json<Vec<RegistryRoute>>, ApiError> {
    let registry = handle(&state.node)?;
    let snapshot = registry.snapshot();
    let regions: Vec<RegionId> = match params.region {
        Some(r) => vec![
            r.parse()
                .map_err(|e: cnode_types::RegionIdError| ApiError::BadRequest(e.to_string()))?,
        ],
        None => snapshot.routes().keys().copied().collect(),
    };
    Ok(Json(
        regions
            .into_iter()
            .map(|region| RegistryRoute {
                region: region.as_str().to_owned(),
                nodes: snapshot.route(&region).into_iter().map(node_view).collect(),
            })
            .collect(),
    ))
}

/// The API list: every proposed, approved or revoked service.
#[utoipa::path(get, path = "/v1/registry/services", responses(
    (status = 200, body = Vec<RegistryService>),
    (status = 404, description = "No registry configured", body = crate::ErrorBody)))]
pub(crate) async fn services(
    State(state): State<AppState>,
) -> Result<Json<Vec<RegistryService>>, ApiError> {
    let registry = handle(&state.node)?;
    Ok(Json(
        registry
            .services()
            .await
            .iter()
            .map(|s| RegistryService {
                key: s.key.to_string(),
                id: s.id.clone(),
                version: s.version.clone(),
                package_hash: hex::encode(s.package_hash),
                manifest_hash: hex::encode(s.manifest_hash),
                publisher: s.publisher.to_string(),
                status: match s.status {
                    ServiceStatus::Proposed => "proposed",
                    ServiceStatus::Approved => "approved",
                    ServiceStatus::Revoked => "revoked",
                }
                .into(),
            })
            .collect(),
    ))
}
