//! Blob routes: upload, import, download, stream with `Range`, status, pins,
//! garbage collection, and server-sent transfer events.

use std::{convert::Infallible, path::PathBuf, time::Duration};

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use cnode_blobs::{BlobError, BlobInfo, DownloadOptions, GcReport, ImportReport};
use cnode_node::TransferEvent;
use cnode_types::BlobHash;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ApiError, AppState};

/// Bytes read from the store per streamed chunk.
const STREAM_CHUNK: usize = 256 * 1024;
/// How long a stream waits for a missing piece before giving up.
const PIECE_WAIT: Duration = Duration::from_secs(60);

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound(_) => ApiError::NotFound(e.to_string()),
            BlobError::Quota { .. } => ApiError::Quota(e.to_string()),
            BlobError::Invalid(_) | BlobError::Verify { .. } => ApiError::BadRequest(e.to_string()),
            BlobError::Io { .. } | BlobError::Db(_) => ApiError::Internal(e.to_string()),
        }
    }
}

fn parse_cid(cid: &str) -> Result<BlobHash, ApiError> {
    cid.parse()
        .map_err(|e: cnode_types::BlobHashError| ApiError::BadRequest(e.to_string()))
}

/// `POST /v1/blobs/import` body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ImportBody {
    /// A file or folder on the node's machine (absolute path).
    path: String,
    /// Keep it through `gc` (default true).
    #[serde(default = "yes")]
    pin: bool,
}

fn yes() -> bool {
    true
}

/// What an upload or import produced.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AddResult {
    /// The CID to share.
    cid: String,
    /// `raw` or `collection`.
    kind: String,
    /// Total bytes.
    size: u64,
    /// Files (1 for a file).
    files: u64,
}

impl From<ImportReport> for AddResult {
    fn from(r: ImportReport) -> Self {
        Self {
            cid: r.hash.to_cid(),
            kind: format!("{:?}", r.kind).to_lowercase(),
            size: r.size,
            files: r.files,
        }
    }
}

/// How long a refused upload's remaining bytes are read (and discarded) so
/// the client gets the answer.
const UPLOAD_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Uploads the request body as a blob (streamed to disk, any size under the quota).
#[utoipa::path(post, path = "/v1/blobs", request_body(content = String, content_type = "application/octet-stream"),
    responses((status = 200, body = AddResult), (status = 507, description = "Storage quota exceeded", body = crate::ErrorBody)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    body: Body,
) -> Result<Json<AddResult>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let imported = state
        .node
        .blobs()
        .store()
        .import_stream(stream.by_ref(), true)
        .await;
    let (hash, size) = match imported {
        Ok(v) => v,
        Err(e) => {
            // Read the rest of the upload before answering: a server that
            // answers and closes while the client is still sending makes the
            // client see a reset connection instead of this error (the 507 of
            // a quota refusal). Bounded in time; the bytes are discarded.
            let _ = tokio::time::timeout(UPLOAD_DRAIN_LIMIT, async {
                while let Some(Ok(_)) = stream.next().await {}
            })
            .await;
            return Err(e.into());
        }
    };
    state.node.blobs().announce(hash).await;
    Ok(Json(AddResult {
        cid: hash.to_cid(),
        kind: "raw".into(),
        size,
        files: 1,
    }))
}

/// Imports a file or folder from the node's disk (what `cnode add` uses).
#[utoipa::path(post, path = "/v1/blobs/import", request_body = ImportBody,
    responses((status = 200, body = AddResult), (status = 400, body = crate::ErrorBody), (status = 507, body = crate::ErrorBody)))]
pub(crate) async fn import(
    State(state): State<AppState>,
    Json(body): Json<ImportBody>,
) -> Result<Json<AddResult>, ApiError> {
    let path = PathBuf::from(&body.path);
    if !path.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not an absolute path",
            body.path
        )));
    }
    if !path.exists() {
        return Err(ApiError::BadRequest(format!(
            "{} does not exist",
            path.display()
        )));
    }
    Ok(Json(state.node.blobs().add(&path, body.pin).await?.into()))
}

/// Every blob in the store.
#[utoipa::path(get, path = "/v1/blobs", responses((status = 200, description = "Blobs", body = Vec<Object>)))]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Vec<BlobInfo>>, ApiError> {
    Ok(Json(state.node.blobs().store().list().await?))
}

/// A blob's state and its transfer, if one runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct BlobStatus {
    /// The CID.
    cid: String,
    /// What the store holds (absent when nothing yet).
    #[schema(value_type = Option<Object>)]
    info: Option<BlobInfo>,
    /// The running or last transfer.
    #[schema(value_type = Option<Object>)]
    transfer: Option<TransferEvent>,
}

/// The store's and the transfer's view of one blob.
#[utoipa::path(get, path = "/v1/blobs/{cid}/status", params(("cid" = String, Path)),
    responses((status = 200, body = BlobStatus), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<Json<BlobStatus>, ApiError> {
    let hash = parse_cid(&cid)?;
    let info = state.node.blobs().store().info(hash).await?;
    let transfer = state.node.blobs().progress(hash);
    if info.is_none() && transfer.is_none() {
        return Err(ApiError::NotFound(format!(
            "blob {hash} is not here and not being fetched"
        )));
    }
    Ok(Json(BlobStatus {
        cid: hash.to_cid(),
        info,
        transfer,
    }))
}

/// `POST /v1/blobs/{cid}/download` body.
#[derive(Debug, Deserialize, ToSchema, Default)]
pub(crate) struct DownloadBody {
    /// Keep it through `gc` (default true).
    #[serde(default = "yes")]
    pin: bool,
    /// Answer only when done (default false: answer at once with 202).
    #[serde(default)]
    wait: bool,
}

/// The outcome of a finished download.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DownloadResult {
    /// The CID.
    cid: String,
    /// Blobs fetched (a collection and its files).
    blobs: usize,
    /// Bytes fetched over the network.
    fetched_bytes: u64,
    /// Pieces that were already here (resumed).
    resumed_pieces: u64,
    /// Verified pieces per peer.
    pieces_from: std::collections::BTreeMap<String, u64>,
    /// Peers dropped for bad data.
    dropped: Vec<String>,
    /// Seconds taken.
    seconds: f64,
}

/// Fetches a blob (and a collection's files) from the swarm.
#[utoipa::path(post, path = "/v1/blobs/{cid}/download", params(("cid" = String, Path)), request_body = DownloadBody,
    responses((status = 200, description = "Done (wait=true)", body = DownloadResult), (status = 202, description = "Started"),
        (status = 503, description = "Failed or too many downloads", body = crate::ErrorBody)))]
pub(crate) async fn download(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    body: Option<Json<DownloadBody>>,
) -> Result<Response, ApiError> {
    let hash = parse_cid(&cid)?;
    let body = body.map(|Json(b)| b).unwrap_or(DownloadBody {
        pin: true,
        wait: false,
    });
    let opts = DownloadOptions {
        pin: body.pin,
        ..Default::default()
    };
    if !body.wait {
        state
            .node
            .blobs()
            .start(hash, opts)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(state.node.blobs().progress(hash)),
        )
            .into_response());
    }
    let stats = state
        .node
        .blobs()
        .download(hash, opts)
        .await
        .map_err(ApiError::Unavailable)?;
    let mut pieces_from = std::collections::BTreeMap::new();
    let mut dropped = Vec::new();
    for s in &stats {
        for (p, n) in &s.pieces_from {
            *pieces_from.entry(p.to_string()).or_default() += n;
        }
        dropped.extend(s.dropped.iter().map(|p| p.to_string()));
    }
    Ok(Json(DownloadResult {
        cid: hash.to_cid(),
        blobs: stats.len(),
        fetched_bytes: stats.iter().map(|s| s.fetched_bytes).sum(),
        resumed_pieces: stats.iter().map(|s| s.resumed_pieces).sum(),
        pieces_from,
        dropped,
        seconds: stats
            .first()
            .map(|s| s.elapsed.as_secs_f64())
            .unwrap_or(0.0),
    })
    .into_response())
}

/// `POST /v1/blobs/{cid}/export` body.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ExportBody {
    /// Where to write (absolute path): a file, or a folder for a collection.
    path: String,
    /// `copy` (the default) writes a copy; `move` hands the store's file over
    /// to `path` (no bytes copied, no second copy on disk) and the node serves
    /// the blob from there until the file changes, when it forgets the blob.
    /// `move` copies when `path` is on another filesystem.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "move")]
    mode: cnode_blobs::ExportMode,
}

/// Writes a complete blob to the node's disk (a collection as a folder).
#[utoipa::path(post, path = "/v1/blobs/{cid}/export", params(("cid" = String, Path)), request_body = ExportBody,
    responses((status = 200, description = "Bytes written"), (status = 400, body = crate::ErrorBody), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn export(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Json(body): Json<ExportBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hash = parse_cid(&cid)?;
    let path = PathBuf::from(&body.path);
    if !path.is_absolute() {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not an absolute path",
            body.path
        )));
    }
    let bytes =
        cnode_blobs::collection::export(state.node.blobs().store(), hash, &path, body.mode).await?;
    Ok(Json(
        serde_json::json!({ "cid": hash.to_cid(), "path": body.path, "bytes": bytes }),
    ))
}

/// Pins a blob (kept by `gc`).
#[utoipa::path(put, path = "/v1/blobs/{cid}/pin", params(("cid" = String, Path)), responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn pin(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .node
        .blobs()
        .store()
        .set_pinned(parse_cid(&cid)?, true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpins a blob (`gc` may then remove it).
#[utoipa::path(delete, path = "/v1/blobs/{cid}/pin", params(("cid" = String, Path)), responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn unpin(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .node
        .blobs()
        .store()
        .set_pinned(parse_cid(&cid)?, false)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a blob now, pinned or not.
#[utoipa::path(delete, path = "/v1/blobs/{cid}", params(("cid" = String, Path)), responses((status = 204), (status = 404, body = crate::ErrorBody)))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let hash = parse_cid(&cid)?;
    state.node.blobs().remove(hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes every unpinned blob.
#[utoipa::path(post, path = "/v1/blobs/gc", responses((status = 200, description = "What was freed", body = Object)))]
pub(crate) async fn gc(State(state): State<AppState>) -> Result<Json<GcReport>, ApiError> {
    Ok(Json(state.node.blobs().gc().await?))
}

/// Server-sent events: one `transfer` event per progress step of any download.
#[utoipa::path(get, path = "/v1/events", responses((status = 200, description = "text/event-stream of `transfer` events")))]
pub(crate) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.node.blobs().subscribe();
    let shutdown = state.shutdown.clone().cancelled_owned();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).unwrap_or_default();
                    return Some((Ok(Event::default().event("transfer").data(data)), rx));
                }
                // A slow client skips what it missed.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream.take_until(shutdown)).keep_alive(KeepAlive::default())
}

/// Query of `GET /v1/blobs/{cid}`.
#[derive(Debug, Deserialize)]
pub(crate) struct GetQuery {
    /// Fetch from the swarm if not here (default true).
    fetch: Option<bool>,
}

/// A byte range from a `Range: bytes=…` header, resolved against `size`.
fn parse_range(h: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = h.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None; // several ranges: answer with the whole blob
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            b.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        if start >= size || start >= end {
            return Some(Err(()));
        }
        (start, end)
    };
    Some(Ok(range))
}

/// Streams a blob. Honours `Range` (one range), so a video can play while it
/// downloads: a blob that is not here is fetched, and bytes are sent as their
/// pieces are verified.
#[utoipa::path(get, path = "/v1/blobs/{cid}", params(("cid" = String, Path)),
    responses((status = 200, description = "The bytes"), (status = 206, description = "The requested range"),
        (status = 404, body = crate::ErrorBody), (status = 416, description = "Range not satisfiable")))]
pub(crate) async fn get(
    State(state): State<AppState>,
    Path(cid): Path<String>,
    Query(q): Query<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = parse_cid(&cid)?;
    let blobs = state.node.blobs().clone();
    let mut size = blobs.store().info(hash).await?.map(|i| i.size);
    if size.is_none() {
        if !q.fetch.unwrap_or(true) {
            return Err(ApiError::NotFound(format!("blob {hash} is not here")));
        }
        blobs
            .start(hash, DownloadOptions::default())
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        // Wait until the size is proven (first contact with a provider).
        let deadline = tokio::time::Instant::now() + PIECE_WAIT;
        while size.is_none() {
            if let Some(t) = blobs.progress(hash)
                && t.state == cnode_node::TransferState::Failed
            {
                return Err(ApiError::NotFound(
                    t.error.unwrap_or_else(|| "download failed".into()),
                ));
            }
            size = blobs.store().info(hash).await?.map(|i| i.size);
            if tokio::time::Instant::now() > deadline {
                return Err(ApiError::Unavailable(format!(
                    "no provider answered for {hash}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let size = size.unwrap_or(0);
    let (start, end, partial) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(h) => match parse_range(h, size) {
            Some(Ok((s, e))) => (s, e, true),
            Some(Err(())) => {
                let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
            None => (0, size, false),
        },
        None => (0, size, false),
    };
    let stream = futures::stream::unfold(start, move |pos| {
        let blobs = blobs.clone();
        async move {
            if pos >= end {
                return None;
            }
            let len = STREAM_CHUNK.min((end - pos) as usize);
            let deadline = tokio::time::Instant::now() + PIECE_WAIT;
            loop {
                match blobs.store().read_at(hash, pos, len).await {
                    Ok(Some(bytes)) => {
                        let n = bytes.len() as u64;
                        return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), pos + n));
                    }
                    Ok(None) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Ok(None) => {
                        return Some((
                            Err(std::io::Error::other("timed out waiting for a piece")),
                            end,
                        ));
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), end)),
                }
            }
        }
    })
    .boxed();
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hash.to_cid())) {
        h.insert(header::ETAG, v);
    }
    if partial {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", start, end.saturating_sub(1)))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(Ok((0, 10))));
        assert_eq!(parse_range("bytes=90-", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=-10", 100), Some(Ok((90, 100))));
        assert_eq!(parse_range("bytes=95-200", 100), Some(Ok((95, 100))));
        assert_eq!(parse_range("bytes=100-", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=5-2", 100), Some(Err(())));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
