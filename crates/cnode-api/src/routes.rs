//! Handlers.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use cnode_types::{DhtValue, PeerInfo, StatusInfo, VERSION};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{ApiError, AppState, ErrorBody};

/// The longest DHT key accepted, in bytes.
const MAX_DHT_KEY: usize = 256;

#[derive(OpenApi)]
#[openapi(
    info(title = "Community Node local API", description = "The HTTP API of one cnode node. Listens on 127.0.0.1; every route but /healthz needs `Authorization: Bearer <token>` with the token from the data directory's api.token."),
    paths(healthz, status, peers, dial, dht_get, dht_put, metrics,
        crate::blobs::upload, crate::blobs::import, crate::blobs::list, crate::blobs::status,
        crate::blobs::download, crate::blobs::export, crate::blobs::pin, crate::blobs::unpin,
        crate::blobs::remove, crate::blobs::gc, crate::blobs::events, crate::blobs::get,
        crate::records::post_record, crate::records::query, crate::records::get_record,
        crate::records::stream, crate::records::regions, crate::records::join, crate::records::leave,
        crate::registry::status, crate::registry::nodes, crate::registry::routes, crate::registry::services,
        crate::plugins::service, crate::plugins::list, crate::plugins::info, crate::plugins::install,
        crate::plugins::set_grants, crate::plugins::disable, crate::plugins::enable, crate::plugins::remove,
        crate::plugins::audit),
    components(schemas(StatusInfo, PeerInfo, DhtValue, ErrorBody, crate::blobs::AddResult, crate::blobs::BlobStatus, crate::blobs::DownloadResult,
        crate::records::RecordView, crate::records::PostResult, crate::records::RecordPage, crate::records::RegionChange, cnode_node::RegionInfo,
        cnode_types::RegistryInfo, cnode_types::RegistryNode, cnode_types::RegistryRoute, cnode_types::RegistryService,
        cnode_node::PluginView, crate::plugins::InstallBody, cnode_node::plugins::package::PackagePreview, crate::plugins::GrantsBody, crate::plugins::GrantsSpec, crate::plugins::AuditView)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Liveness: answers `ok` without a token.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "The node is up", body = String)))]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// Who this node is and how it is connected.
#[utoipa::path(get, path = "/v1/status", responses(
    (status = 200, body = StatusInfo),
    (status = 401, body = ErrorBody),
))]
pub(crate) async fn status(State(state): State<AppState>) -> Result<Json<StatusInfo>, ApiError> {
    let node = &state.node;
    let net = node.net().status().await?;
    Ok(Json(StatusInfo {
        peer_id: net.peer_id.to_string(),
        listen_addrs: net.listen_addrs.iter().map(ToString::to_string).collect(),
        external_addrs: net.external_addrs.iter().map(ToString::to_string).collect(),
        connected_peers: net.connected_peers,
        api: node.api_addr().map(|a| a.to_string()).unwrap_or_default(),
        version: VERSION.to_owned(),
        nat_status: net.nat_status,
        relay_server: net.relay_server,
        uptime_secs: node.started().elapsed().as_secs(),
        lane_port: net.lane_port,
        data_dir: node.data_dir().root().display().to_string(),
        registry: node.registry().map(crate::registry::info),
    }))
}

/// The connected peers, with addresses, transport and latency.
#[utoipa::path(get, path = "/v1/peers", responses(
    (status = 200, body = [PeerInfo]),
    (status = 401, body = ErrorBody),
))]
pub(crate) async fn peers(State(state): State<AppState>) -> Result<Json<Vec<PeerInfo>>, ApiError> {
    Ok(Json(state.node.net().peers().await?))
}

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > MAX_DHT_KEY {
        return Err(ApiError::BadRequest(format!(
            "a DHT key is 1 to {MAX_DHT_KEY} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

/// Looks a key up in the DHT (debug access).
#[utoipa::path(get, path = "/v1/dht/{key}", params(("key" = String, Path, description = "The key")), responses(
    (status = 200, body = DhtValue),
    (status = 404, description = "No peer has the key", body = ErrorBody),
    (status = 400, body = ErrorBody),
    (status = 401, body = ErrorBody),
))]
pub(crate) async fn dht_get(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<DhtValue>, ApiError> {
    check_key(&key)?;
    match state.node.net().dht_get(key.clone().into_bytes()).await {
        Ok(Some(rec)) => Ok(Json(DhtValue {
            key,
            value: String::from_utf8_lossy(&rec.value).into_owned(),
            publisher: rec.publisher.map(|p| p.to_string()),
        })),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no value for key {key:?} in the DHT"
        ))),
        Err(cnode_net::DhtError::Closed(_)) => Err(cnode_net::Closed.into()),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// Stores the request body under a key in the DHT (debug access).
#[utoipa::path(put, path = "/v1/dht/{key}", params(("key" = String, Path, description = "The key")),
    request_body(content = String, content_type = "application/octet-stream", description = "The value (at most 64 KiB)"),
    responses(
        (status = 204, description = "Stored locally and on at least one peer"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 503, description = "No peer accepted the record", body = ErrorBody),
))]
pub(crate) async fn dht_put(
    State(state): State<AppState>,
    Path(key): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    check_key(&key)?;
    match state
        .node
        .net()
        .dht_put(key.into_bytes(), body.to_vec())
        .await
    {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ cnode_net::DhtError::TooLarge { .. }) => Err(ApiError::BadRequest(e.to_string())),
        Err(cnode_net::DhtError::Closed(_)) => Err(cnode_net::Closed.into()),
        Err(e) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// `POST /v1/dial` body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct DialBody {
    /// The peer's address, e.g. `/ip4/…/udp/4040/quic-v1/p2p/12D3Koo…`.
    addr: String,
}

/// Connects to a peer by address and waits until connected.
#[utoipa::path(post, path = "/v1/dial", request_body = DialBody, responses(
    (status = 200, description = "Connected; the peer id", body = Object),
    (status = 400, body = ErrorBody),
    (status = 503, description = "Could not connect", body = ErrorBody),
))]
pub(crate) async fn dial(
    State(state): State<AppState>,
    Json(body): Json<DialBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let addr: cnode_net::Multiaddr = body
        .addr
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("bad multiaddr {:?}: {e}", body.addr)))?;
    match tokio::time::timeout(
        std::time::Duration::from_secs(20),
        state.node.net().dial(addr),
    )
    .await
    {
        Ok(Ok(peer)) => Ok(Json(serde_json::json!({ "peer_id": peer.to_string() }))),
        Ok(Err(e)) => Err(ApiError::Unavailable(e.to_string())),
        Err(_) => Err(ApiError::Unavailable("timed out connecting".into())),
    }
}

/// Prometheus metrics: libp2p's and cnode's own.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text format", body = String),
    (status = 401, body = ErrorBody),
))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = state
        .node
        .encode_metrics()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

/// The OpenAPI document.
pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; see /v1/openapi.json".into())
}
