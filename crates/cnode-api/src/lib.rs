//! The node's local HTTP API.
//!
//! [`router`] builds the axum `Router` for a [`Node`] (tests call it with
//! `oneshot`, no server needed); [`serve`] binds it to a TCP address and runs
//! it until the node shuts down. Every route but `GET /healthz` needs the
//! bearer token from the data directory's `api.token`.

#![deny(missing_docs, unreachable_pub)]

mod blobs;
mod error;
pub mod plugins;
pub mod records;
mod registry;
mod routes;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::header::AUTHORIZATION,
    middleware::{self, Next},
    response::Response,
    routing::{any, get, post, put},
};
use cnode_node::Node;
pub use error::{ApiError, ErrorBody};
pub use records::{PostResult, RecordPage, RecordView, RegionChange};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use utoipa::OpenApi;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long shutdown waits for open requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Requests taking longer are answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Node,
    token: Arc<str>,
    /// Cancelled when the server shuts down: endless responses (event
    /// streams) end then, so graceful shutdown does not wait on them.
    pub(crate) shutdown: CancellationToken,
}

/// The API's routes for `node`, with auth, limits and timeouts applied.
///
/// The token is read from the node's data directory; a node without one gets a
/// fresh random token nobody knows, so the API is closed rather than open.
pub fn router(node: Node) -> Router {
    router_with_shutdown(node, CancellationToken::new())
}

/// [`router`], with event streams ending when `shutdown` is cancelled.
pub fn router_with_shutdown(node: Node, shutdown: CancellationToken) -> Router {
    let token = node
        .data_dir()
        .load_token()
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| {
            tracing::warn!("no API token in the data directory: the API refuses every request");
            cnode_node::new_token()
        });
    let state = AppState {
        node,
        token: token.into(),
        shutdown,
    };
    let timeout =
        || TimeoutLayer::with_status_code(axum::http::StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT);
    // Quick requests: answered within REQUEST_TIMEOUT or 408.
    let quick = Router::new()
        .route("/v1/status", get(routes::status))
        .route("/v1/peers", get(routes::peers))
        .route("/v1/dial", post(routes::dial))
        .route("/v1/dht/{key}", get(routes::dht_get).put(routes::dht_put))
        .route("/v1/openapi.json", get(routes::openapi))
        .route("/metrics", get(routes::metrics))
        .route("/v1/blobs/gc", post(blobs::gc))
        .route("/v1/blobs/{cid}/status", get(blobs::status))
        .route("/v1/blobs/{cid}/pin", put(blobs::pin).delete(blobs::unpin))
        .route("/v1/blobs/{cid}", axum::routing::delete(blobs::remove))
        .route(
            "/v1/records",
            get(records::query).post(records::post_record),
        )
        .route("/v1/records/{id}", get(records::get_record))
        .route("/v1/regions", get(records::regions))
        .route("/v1/registry", get(registry::status))
        .route("/v1/registry/nodes", get(registry::nodes))
        .route("/v1/registry/routes", get(registry::routes))
        .route("/v1/registry/services", get(registry::services))
        .route(
            "/v1/regions/{region}",
            put(records::join).delete(records::leave),
        )
        .route("/v1/plugins", get(plugins::list))
        .route("/v1/plugins/audit", get(plugins::audit))
        .route(
            "/v1/plugins/{id}",
            get(plugins::info).delete(plugins::remove),
        )
        .route("/v1/plugins/{id}/grants", put(plugins::set_grants))
        .route("/v1/plugins/{id}/disable", post(plugins::disable))
        .route("/v1/plugins/{id}/enable", post(plugins::enable))
        .layer(timeout());
    // Plugins: installing compiles the component (seconds for a large one);
    // a service call is bounded by the plugin host's own call timeout.
    let plugin_calls = Router::new()
        .route("/v1/plugins", post(plugins::install))
        .route("/v1/services/{id}", any(plugins::service))
        .route("/v1/services/{id}/", any(plugins::service))
        .route("/v1/services/{id}/{*path}", any(plugins::service));
    // Transfers: as long as the data takes (each bounds its own waits).
    let transfers = Router::new()
        .route(
            "/v1/blobs",
            get(blobs::list)
                .post(blobs::upload)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/blobs/import", post(blobs::import))
        .route("/v1/blobs/{cid}", get(blobs::get))
        .route("/v1/blobs/{cid}/download", post(blobs::download))
        .route("/v1/blobs/{cid}/export", post(blobs::export))
        .route("/v1/events", get(blobs::events))
        .route("/v1/records/stream", get(records::stream));
    let protected = quick
        .merge(transfers)
        .merge(plugin_calls)
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/healthz", get(routes::healthz))
        .merge(protected)
        .fallback(routes::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::ApiDoc::openapi()
}

async fn auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), state.token.as_bytes()) {
        return Err(ApiError::Unauthorized);
    }
    Ok(next.run(req).await)
}

async fn count(State(state): State<AppState>, req: Request, next: Next) -> Response {
    state.node.metrics().api_requests.inc();
    next.run(req).await
}

/// Compares without leaking, through timing, how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binding the API's address failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the HTTP API on {addr}: {source}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// The cause (e.g. address in use).
    #[source]
    pub source: std::io::Error,
}

/// A running API server.
#[must_use = "the server stops when shutdown() is called; keep the handle"]
#[derive(Debug)]
pub struct ApiServer {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl ApiServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        // In-flight requests get a moment to finish; a client that keeps a
        // transfer open longer does not hold the node hostage.
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.task)
            .await
            .is_err()
        {
            tracing::warn!("HTTP API: requests still open after {SHUTDOWN_GRACE:?}; closing them");
            self.task.abort();
        }
    }
}

/// Binds the API's TCP address (separately from [`serve_listener`], so the
/// CLI can fail on a port in use before starting the network).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Binds `addr` and serves [`router`] until `cancel` fires or
/// [`ApiServer::shutdown`] is called. Records the bound address in the node.
pub async fn serve(
    node: Node,
    addr: SocketAddr,
    cancel: CancellationToken,
) -> Result<ApiServer, BindError> {
    let listener = bind(addr).await?;
    serve_listener(node, listener, cancel)
}

/// Serves [`router`] on an already bound listener.
pub fn serve_listener(
    node: Node,
    listener: TcpListener,
    cancel: CancellationToken,
) -> Result<ApiServer, BindError> {
    let bound = listener.local_addr().map_err(|source| BindError {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    node.set_api_addr(bound);
    let app = router_with_shutdown(node, cancel.clone());
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let res = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = res {
            tracing::error!("HTTP API stopped: {e}");
        }
    });
    tracing::info!(addr = %bound, "HTTP API listening");
    Ok(ApiServer {
        addr: bound,
        cancel,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    /// The router answers without a server: auth is enforced, healthz is open.
    #[tokio::test]
    async fn router_without_a_server() {
        use axum::{body::Body, http::Request};
        use tower::ServiceExt;

        let tmp = tempfile::tempdir().unwrap();
        let dir = cnode_node::DataDir::new(tmp.path());
        dir.init(false).unwrap();
        let mut config = cnode_node::NodeConfig::with_defaults(tmp.path().to_owned());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        config.mdns = false;
        let node = cnode_node::NodeBuilder::new(config).spawn().await.unwrap();
        let app = router(node.clone());
        let get = |uri: &str, token: Option<&str>| {
            let mut b = Request::get(uri);
            if let Some(t) = token {
                b = b.header("authorization", format!("Bearer {t}"));
            }
            b.body(Body::empty()).unwrap()
        };
        let token = dir.load_token().unwrap();
        let r = app.clone().oneshot(get("/healthz", None)).await.unwrap();
        assert_eq!(r.status(), 200);
        let r = app.clone().oneshot(get("/v1/status", None)).await.unwrap();
        assert_eq!(r.status(), 401);
        let r = app
            .clone()
            .oneshot(get("/v1/status", Some("nope")))
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = app
            .clone()
            .oneshot(get("/v1/status", Some(&token)))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        node.shutdown().await;
        // After shutdown the API says so instead of hanging or panicking.
        let r = app.oneshot(get("/v1/peers", Some(&token))).await.unwrap();
        assert_eq!(r.status(), 503);
    }

    #[test]
    fn openapi_lists_every_route() {
        let doc = serde_json::to_value(openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/healthz",
            "/v1/status",
            "/v1/peers",
            "/v1/dht/{key}",
            "/metrics",
            "/v1/plugins",
            "/v1/plugins/{id}",
            "/v1/services/{id}/{path}",
        ] {
            assert!(paths.contains_key(p), "missing {p}");
        }
    }
}
