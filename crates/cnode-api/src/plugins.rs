//! Service plugins over HTTP: `/v1/services/{id}/{path…}` calls a plugin's
//! `handle`; `/v1/plugins…` installs and manages plugins.
//!
//! A plugin's answer is passed through with its status and body and only
//! the headers in [`SAFE_HEADERS`] (plus `x-cnode-*`); every answer gets
//! `x-content-type-options: nosniff` and a sandboxing
//! `content-security-policy`, so a plugin's page cannot act as the API's
//! origin. A plugin that traps or runs out of memory answers 502, one
//! stopped at its time limit 504, with a JSON error body.
//!
//! A service this node does not have installed is forwarded over
//! `/cnode/rpc/1` to a node that runs it ([`cnode_node::plugins::rpc`]); its
//! answer carries `x-cnode-served-by: <peer id>`. 404 only when no node
//! serves it; 502 when every node asked failed, 504 when none answered in
//! time, 413 for a body over the 1 MiB limit. A service installed here but
//! disabled answers 503 and is not forwarded.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
};
use cnode_node::plugins::rpc::{ErrorCode, ForwardError, RemoteError, SAFE_REQUEST_HEADERS};
use cnode_node::{
    PluginError, PluginView,
    plugins::{
        GrantChoice, cnode_plugins,
        package::{self, PackageError, PackagePreview, PackageSource},
        parse_capability,
    },
};
use cnode_plugins::{CallError, PluginId, Request};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{AppState, ErrorBody};

/// Response headers a plugin may set.
pub const SAFE_HEADERS: &[&str] = &[
    "content-type",
    "content-disposition",
    "content-language",
    "cache-control",
    "etag",
    "last-modified",
    "expires",
    "allow",
    "retry-after",
    "vary",
];

/// An error answered by the plugin routes: a status and a JSON body.
#[derive(Debug)]
pub(crate) struct PluginApiError(StatusCode, String);

impl IntoResponse for PluginApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<PluginError> for PluginApiError {
    fn from(e: PluginError) -> Self {
        let status = match &e {
            PluginError::NotInstalled(_) => StatusCode::NOT_FOUND,
            PluginError::AlreadyInstalled(_) => StatusCode::CONFLICT,
            PluginError::Invalid(_) | PluginError::Load(_) | PluginError::Io { .. } => {
                StatusCode::BAD_REQUEST
            }
        };
        Self(status, e.to_string())
    }
}

fn call_error(state: &AppState, e: CallError) -> PluginApiError {
    let status = match &e {
        CallError::NotLoaded(id) => {
            return if state.node.plugins().is_installed(id) {
                PluginApiError(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "plugin {id} is installed but not running (disabled or failed to load; see `cnode plugin info {id}`)"
                    ),
                )
            } else {
                PluginApiError(
                    StatusCode::NOT_FOUND,
                    format!("no service {id} on this node"),
                )
            };
        }
        CallError::NoRoute { .. } => StatusCode::NOT_FOUND,
        CallError::Trap { .. } | CallError::MemoryLimit { .. } | CallError::Instantiate { .. } => {
            StatusCode::BAD_GATEWAY
        }
        CallError::Timeout { .. } | CallError::OutOfFuel { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    PluginApiError(status, e.to_string())
}

/// The answer header naming the node that ran a forwarded call.
pub const SERVED_BY_HEADER: &str = "x-cnode-served-by";

fn forward_error(e: ForwardError) -> PluginApiError {
    let status = match &e {
        ForwardError::NotServed { service, .. } => {
            return PluginApiError(
                StatusCode::NOT_FOUND,
                format!(
                    "no service {service} on this node, and no node it can reach serves it ({e})"
                ),
            );
        }
        ForwardError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ForwardError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        ForwardError::AllFailed { .. } => StatusCode::BAD_GATEWAY,
    };
    PluginApiError(status, e.to_string())
}

fn remote_error(e: RemoteError) -> Response {
    let status = match e.code {
        ErrorCode::NoRoute => StatusCode::NOT_FOUND,
        ErrorCode::TimeLimit => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_GATEWAY,
    };
    let peer = e.peer;
    let mut out = PluginApiError(status, e.to_string()).into_response();
    if let Ok(v) = HeaderValue::from_str(&peer.to_string()) {
        out.headers_mut().insert(SERVED_BY_HEADER, v);
    }
    out
}

/// Calls a service plugin: the rest of the path, the query, safe request
/// headers and the body go to its `handle`; its answer comes back. A service
/// not installed here is forwarded to a node that runs it.
#[utoipa::path(get, path = "/v1/services/{id}/{path}",
    params(("id" = String, Path, description = "The service (plugin) id, e.g. org.cnode.events"),
           ("path" = String, Path, description = "The path below the service (any method is passed on)")),
    request_body(content = String, content_type = "application/octet-stream", description = "Passed to the plugin as is"),
    responses(
        (status = 200, description = "The plugin's answer (its status, safe headers and body)"),
        (status = 404, description = "No node serves the service, or not one of its routes", body = ErrorBody),
        (status = 413, description = "The body is over 1 MiB", body = ErrorBody),
        (status = 502, description = "The plugin trapped or hit its memory limit, or every node asked failed", body = ErrorBody),
        (status = 503, description = "Installed but disabled, or the host is busy", body = ErrorBody),
        (status = 504, description = "The plugin ran past its time limit, or no node answered in time", body = ErrorBody),
))]
pub(crate) async fn service(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, PluginApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            PluginApiError(
                status,
                format!(
                    "the request body is over the {} MiB limit for service calls",
                    crate::MAX_BODY_BYTES >> 20
                ),
            )
        } else {
            PluginApiError(status, e.body_text())
        }
    })?;
    let rest = uri.path().strip_prefix("/v1/services/").unwrap_or_default();
    let (id, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let id: PluginId = id.parse().map_err(|_| {
        PluginApiError(
            StatusCode::NOT_FOUND,
            format!("no service {id:?} on this node"),
        )
    })?;
    let request = Request {
        method: method.as_str().to_ascii_uppercase(),
        path: path.to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers: headers
            .iter()
            .filter(|(n, _)| SAFE_REQUEST_HEADERS.contains(&n.as_str()))
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
    };
    let (answer, served_by) = if state.node.plugins().is_installed(&id) {
        let answer = state
            .node
            .plugins()
            .call(&id, request)
            .await
            .map_err(|e| call_error(&state, e))?;
        (answer, None)
    } else {
        let forwarded = state
            .node
            .services()
            .forward(&id, request)
            .await
            .map_err(forward_error)?;
        match forwarded.answer {
            Ok(answer) => (answer, Some(forwarded.peer)),
            Err(e) => return Ok(remote_error(e)),
        }
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = (status, answer.body).into_response();
    let h = out.headers_mut();
    h.remove(axum::http::header::CONTENT_TYPE);
    for (name, value) in answer.headers {
        let lower = name.to_ascii_lowercase();
        if !(SAFE_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-cnode-")) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.append(n, v);
        }
    }
    if !h.contains_key(axum::http::header::CONTENT_TYPE) {
        h.insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox allow-scripts allow-forms"),
    );
    h.insert(
        "x-cnode-service",
        HeaderValue::from_str(id.as_str()).unwrap_or(HeaderValue::from_static("")),
    );
    // Only the node says who served a call, never the plugin.
    h.remove(SERVED_BY_HEADER);
    if let Some(peer) = served_by
        && let Ok(v) = HeaderValue::from_str(&peer.to_string())
    {
        h.insert(SERVED_BY_HEADER, v);
    }
    Ok(out)
}

/// Which capabilities: `"all"` (everything requested), `"none"`, or a list
/// in the `resource:access[:key=v1,v2…]` syntax, e.g.
/// `records:write:collections=org.cnode.notices`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum GrantsSpec {
    /// `"all"` or `"none"`.
    Word(String),
    /// Capabilities.
    List(Vec<String>),
}

impl GrantsSpec {
    fn choice(&self) -> Result<GrantChoice, PluginApiError> {
        let bad = |m: String| PluginApiError(StatusCode::BAD_REQUEST, m);
        match self {
            GrantsSpec::Word(w) if w == "all" => Ok(GrantChoice::All),
            GrantsSpec::Word(w) if w == "none" => Ok(GrantChoice::Some(Vec::new())),
            GrantsSpec::Word(w) => Err(bad(format!(
                "grants: expected \"all\", \"none\" or a list of capabilities, got {w:?}"
            ))),
            GrantsSpec::List(l) => l
                .iter()
                .map(|s| parse_capability(s).map_err(|e| bad(format!("grants: {e}"))))
                .collect::<Result<Vec<_>, _>>()
                .map(GrantChoice::Some),
        }
    }
}

/// `POST /v1/plugins` body: exactly one of `path`, `cid` or `service`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallBody {
    /// A path on the node's machine: a directory with `plugin.toml` and a
    /// `.wasm` component, or a `.wasm` file with `plugin.toml` beside it.
    #[serde(default)]
    pub path: Option<String>,
    /// A package (a folder blob with `plugin.toml`, `component.wasm`,
    /// optionally `publisher.sig`) by CID, fetched over the swarm.
    #[serde(default)]
    pub cid: Option<String>,
    /// A service id of the registry's API list: its package is fetched by
    /// hash and checked against the entry and the on-chain publisher.
    #[serde(default)]
    pub service: Option<String>,
    /// With `service`: this version instead of the newest approved one.
    #[serde(default)]
    pub version: Option<String>,
    /// With `cid` or `service`: the package CID the user approved (from a
    /// preview); the install is refused if the package is now another.
    #[serde(default)]
    pub package: Option<String>,
    /// What to grant (default `"all"`).
    #[serde(default = "all_grants")]
    pub grants: GrantsSpec,
    /// Must be `true` to install: the user has seen and approved the capabilities.
    #[serde(default)]
    pub approve: bool,
    /// With `cid` or `service`: fetch and check the package and answer what
    /// would be installed (a [`PackagePreview`]), installing nothing.
    #[serde(default)]
    pub preview: bool,
}

fn all_grants() -> GrantsSpec {
    GrantsSpec::Word("all".into())
}

/// `PUT /v1/plugins/{id}/grants` body.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct GrantsBody {
    /// The new grants (replacing the old ones).
    pub grants: GrantsSpec,
}

/// One denied host call.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// Which plugin.
    pub plugin: String,
    /// Which host function.
    pub call: String,
    /// Why it was denied.
    pub reason: String,
}

/// `GET /v1/plugins/audit` parameters.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct AuditParams {
    /// How many of the newest entries (default 100, at most 1000).
    limit: Option<usize>,
}

/// The installed plugins.
#[utoipa::path(get, path = "/v1/plugins", responses((status = 200, body = Vec<PluginView>)))]
pub(crate) async fn list(State(state): State<AppState>) -> Json<Vec<PluginView>> {
    Json(state.node.plugins().list())
}

/// One installed plugin: manifest, grants, state and counters.
#[utoipa::path(get, path = "/v1/plugins/{id}", params(("id" = String, Path, description = "The plugin id")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub(crate) async fn info(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, PluginApiError> {
    state
        .node
        .plugins()
        .info(&id)
        .map(Json)
        .ok_or_else(|| PluginError::NotInstalled(id).into())
}

fn package_error(e: PackageError) -> PluginApiError {
    let e = match e {
        PackageError::Plugin(p) => return p.into(),
        e => e,
    };
    let status = match &e {
        PackageError::Plugin(_) => StatusCode::BAD_REQUEST,
        PackageError::NoRegistry(_) | PackageError::UnknownService(_) => StatusCode::NOT_FOUND,
        PackageError::NotApproved(_) => StatusCode::FORBIDDEN,
        PackageError::Fetch { .. } => StatusCode::BAD_GATEWAY,
        PackageError::Layout(_) | PackageError::Mismatch(_) | PackageError::Signature(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    };
    PluginApiError(status, e.to_string())
}

/// Installs a plugin — from a path on the node's machine, a package CID,
/// or a service of the registry's API list — with the approved grants; or,
/// with `preview: true`, fetches and checks a package and answers what it
/// would install.
#[utoipa::path(post, path = "/v1/plugins", request_body = InstallBody, responses(
    (status = 201, body = PluginView, description = "Installed (for a package, with its `package` preview added)"),
    (status = 200, body = PackagePreview, description = "preview: what would be installed"),
    (status = 400, description = "Bad manifest, component, path or grants; or not approved", body = ErrorBody),
    (status = 403, description = "The service is proposed or revoked, not approved", body = ErrorBody),
    (status = 404, description = "No such service in the API list, or no registry", body = ErrorBody),
    (status = 409, description = "Already installed", body = ErrorBody),
    (status = 422, description = "The package does not match the API list, is badly laid out, or its signature is not the publisher's", body = ErrorBody),
    (status = 502, description = "The package could not be fetched from the swarm", body = ErrorBody)))]
pub(crate) async fn install(
    State(state): State<AppState>,
    Json(body): Json<InstallBody>,
) -> Result<Response, PluginApiError> {
    let bad = |m: String| PluginApiError(StatusCode::BAD_REQUEST, m);
    let source = match (&body.path, &body.cid, &body.service) {
        (Some(path), None, None) => {
            if body.preview {
                return Err(bad("preview is for cid and service installs; a path is read by `cnode plugin install` itself".into()));
            }
            let _ = path;
            None
        }
        (None, Some(cid), None) => Some(PackageSource::Cid(cid.parse().map_err(|_| {
            bad(format!(
                "cid: {cid:?} is not a blob CID (bafkr4…) or 64 hex digits"
            ))
        })?)),
        (None, None, Some(id)) => Some(PackageSource::Service {
            id: id.clone(),
            version: body.version.clone(),
        }),
        _ => return Err(bad("give exactly one of path, cid and service".into())),
    };
    if body.version.is_some() && body.service.is_none() {
        return Err(bad("version goes with service".into()));
    }
    let Some(source) = source else {
        if !body.approve {
            return Err(bad("approve must be true: installing grants the plugin the capabilities listed in its plugin.toml".into()));
        }
        let grants = body.grants.choice()?;
        let path = body.path.as_deref().unwrap_or_default();
        let view = state
            .node
            .plugins()
            .install_path(std::path::Path::new(path), grants)
            .await?;
        return Ok((StatusCode::CREATED, Json(view)).into_response());
    };
    if body.preview {
        let fetched = package::fetch(&state.node, &source)
            .await
            .map_err(package_error)?;
        return Ok((StatusCode::OK, Json(fetched.preview)).into_response());
    }
    if !body.approve {
        return Err(bad("approve must be true: installing grants the plugin the capabilities listed in its plugin.toml (preview: true shows them)".into()));
    }
    let grants = body.grants.choice()?;
    let expect = match &body.package {
        Some(p) => Some(
            p.parse()
                .map_err(|_| bad(format!("package: {p:?} is not a blob CID")))?,
        ),
        None => None,
    };
    let (view, preview) = package::install(&state.node, &source, expect, grants)
        .await
        .map_err(package_error)?;
    let mut v = serde_json::to_value(&view).unwrap_or_default();
    v["package"] = serde_json::to_value(&preview).unwrap_or_default();
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Replaces a plugin's grants; the next call sees them.
#[utoipa::path(put, path = "/v1/plugins/{id}/grants", params(("id" = String, Path, description = "The plugin id")),
    request_body = GrantsBody, responses(
    (status = 200, body = PluginView),
    (status = 400, body = ErrorBody),
    (status = 404, body = ErrorBody)))]
pub(crate) async fn set_grants(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<GrantsBody>,
) -> Result<Json<PluginView>, PluginApiError> {
    let grants = body.grants.choice()?;
    Ok(Json(state.node.plugins().set_grants(&id, grants).await?))
}

/// Disables a plugin (unloads it; it stays installed).
#[utoipa::path(post, path = "/v1/plugins/{id}/disable", params(("id" = String, Path, description = "The plugin id")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub(crate) async fn disable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, PluginApiError> {
    Ok(Json(state.node.plugins().set_enabled(&id, false).await?))
}

/// Enables (loads) a disabled plugin.
#[utoipa::path(post, path = "/v1/plugins/{id}/enable", params(("id" = String, Path, description = "The plugin id")),
    responses((status = 200, body = PluginView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn enable(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginView>, PluginApiError> {
    Ok(Json(state.node.plugins().set_enabled(&id, true).await?))
}

/// Uninstalls a plugin (its files and kv data are deleted).
#[utoipa::path(delete, path = "/v1/plugins/{id}", params(("id" = String, Path, description = "The plugin id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, PluginApiError> {
    state.node.plugins().remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Denied host calls, newest last.
#[utoipa::path(get, path = "/v1/plugins/audit", params(AuditParams), responses((status = 200, body = Vec<AuditView>)))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    Query(p): Query<AuditParams>,
) -> Json<Vec<AuditView>> {
    let limit = p.limit.unwrap_or(100).min(1000);
    Json(
        state
            .node
            .plugins()
            .audit(limit)
            .into_iter()
            .map(|e| AuditView {
                at_ms: e.at_ms,
                plugin: e.plugin.to_string(),
                call: e.call,
                reason: e.reason,
            })
            .collect(),
    )
}
