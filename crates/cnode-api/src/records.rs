//! Record routes: post a signed record, query, fetch one, stream new ones;
//! and the regions this node serves.

use std::convert::Infallible;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use cnode_node::{Posted, RecordError, RegionInfo};
use cnode_records::store::{Near, Order, Query as RecordQuery, StoredRecord};
use cnode_records::{Record, RecordId};
use cnode_types::RegionId;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::{ApiError, AppState};

/// The media type of a canonically encoded record.
pub(crate) const CBOR: &str = "application/cbor";

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Rejected(_) | RecordError::RegionNotServed(_) => {
                ApiError::BadRequest(e.to_string())
            }
            RecordError::Closed => ApiError::Unavailable(e.to_string()),
            RecordError::Store(e) => e.into(),
        }
    }
}

impl From<cnode_records::store::RecordStoreError> for ApiError {
    fn from(e: cnode_records::store::RecordStoreError) -> Self {
        match e {
            // A query the store refused (bad cursor, too many words, …).
            cnode_records::store::RecordStoreError::Query(q) => ApiError::BadRequest(q.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A record as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordView {
    /// BLAKE3 of the canonical encoding, hex.
    pub id: String,
    /// The author's did:key.
    pub author: String,
    /// Reverse-domain collection name.
    pub collection: String,
    /// The author's key for the slot.
    pub key: String,
    /// The record's geohash (its first 4 characters are the region).
    pub geohash: String,
    /// Latitude of the geohash cell's centre.
    pub lat: f64,
    /// Longitude of the geohash cell's centre.
    pub lon: f64,
    /// Author clock, ms since the Unix epoch.
    pub created_at: u64,
    /// Expiry, ms since the Unix epoch.
    pub expires_at: Option<u64>,
    /// Tombstone.
    pub deleted: bool,
    /// The record's data.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
    /// Distance from the query point in metres (radius queries).
    pub distance_m: Option<f64>,
}

impl RecordView {
    pub(crate) fn new(id: RecordId, record: &Record, distance_m: Option<f64>) -> Self {
        let (lat, lon) = cnode_records::geo::decode(&record.region)
            .map(|c| (c.lat, c.lon))
            .unwrap_or((0.0, 0.0));
        Self {
            id: id.to_hex(),
            author: record.author.to_string(),
            collection: record.collection.clone(),
            key: record.key.clone(),
            geohash: record.region.clone(),
            lat,
            lon,
            created_at: record.created_at,
            expires_at: record.expires_at,
            deleted: record.deleted,
            body: record.body.clone(),
            distance_m,
        }
    }

    fn from_stored(s: &StoredRecord) -> Self {
        Self::new(s.id, &s.record, s.distance_m)
    }
}

/// What `POST /v1/records` did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PostResult {
    /// The record id.
    pub id: String,
    /// `stored`, `unchanged` (already here, or a newer record holds the
    /// slot) or `forwarded` (region not served here; sent to its nodes).
    pub status: String,
}

/// Posts a signed record (its canonical DAG-CBOR encoding, as made by
/// `cnode post`). It is validated like any record from the network.
#[utoipa::path(post, path = "/v1/records", request_body(content = Vec<u8>, content_type = "application/cbor"), responses(
    (status = 201, body = PostResult, description = "Stored or forwarded"),
    (status = 200, body = PostResult, description = "Already here"),
    (status = 400, body = crate::ErrorBody, description = "Malformed or rejected, with the reason"),
))]
pub(crate) async fn post_record(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ctype.starts_with(CBOR) {
        return Err(ApiError::BadRequest(format!(
            "send the signed record as {CBOR} (cnode post makes one)"
        )));
    }
    let record =
        Record::decode(&body).map_err(|e| ApiError::BadRequest(format!("record rejected: {e}")))?;
    let (status, code, id) = match state.node.records().post(record).await? {
        Posted::Stored { id } => ("stored", StatusCode::CREATED, id),
        Posted::Forwarded { id } => ("forwarded", StatusCode::CREATED, id),
        Posted::Unchanged { id } => ("unchanged", StatusCode::OK, id),
    };
    let result = PostResult {
        id: id.to_hex(),
        status: status.into(),
    };
    Ok((code, Json(result)).into_response())
}

/// Query parameters of `GET /v1/records`.
#[derive(Debug, Default, Deserialize, IntoParams)]
pub(crate) struct RecordsQuery {
    /// Only this region (4-character geohash).
    region: Option<String>,
    /// Centre of a radius query, `LAT,LON`.
    near: Option<String>,
    /// Radius around `near`: `500m`, `5km` or metres (default 5km).
    radius: Option<String>,
    /// Text to find (substring; works for Thai and Chinese).
    text: Option<String>,
    /// Only this collection.
    collection: Option<String>,
    /// Only this author (did:key).
    author: Option<String>,
    /// Created at or after (ms since the epoch).
    since: Option<u64>,
    /// Created at or before (ms since the epoch).
    until: Option<u64>,
    /// Page size (default 50, at most 500).
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `newest` (default) or `relevance` (with `text`).
    order: Option<String>,
    /// Include tombstones.
    include_deleted: Option<bool>,
}

/// A page of query results.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RecordPage {
    /// The records.
    pub records: Vec<RecordView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Parses `500m`, `5km`, `2.5 km` or plain metres.
pub(crate) fn parse_distance(s: &str) -> Option<f64> {
    let s = s.trim().to_ascii_lowercase();
    let (num, factor) = if let Some(n) = s.strip_suffix("km") {
        (n, 1000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 1.0)
    } else {
        (s.as_str(), 1.0)
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * factor)
}

impl RecordsQuery {
    fn into_query(self) -> Result<RecordQuery, ApiError> {
        let bad = |m: String| ApiError::BadRequest(m);
        let region = self
            .region
            .map(|r| r.parse::<RegionId>().map_err(|e| bad(e.to_string())))
            .transpose()?;
        let near = match self.near {
            Some(n) => {
                let (lat, lon) = cnode_records::geo::parse_point(&n)
                    .map_err(|e| bad(format!("near={n:?} (LAT,LON): {e}")))?;
                let radius_m = match self.radius.as_deref() {
                    Some(r) => parse_distance(r).ok_or_else(|| {
                        bad(format!("radius={r:?}: expected e.g. 500m, 5km or metres"))
                    })?,
                    None => 5000.0,
                };
                Some(Near { lat, lon, radius_m })
            }
            None if self.radius.is_some() => {
                return Err(bad("radius needs near=LAT,LON".into()));
            }
            None => None,
        };
        let author = self
            .author
            .map(|a| {
                a.parse()
                    .map_err(|e: cnode_identity::DidError| bad(e.to_string()))
            })
            .transpose()?;
        let order = match self.order.as_deref() {
            None | Some("newest") => Order::Newest,
            Some("relevance") => Order::Relevance,
            Some(o) => return Err(bad(format!("order={o:?}: use newest or relevance"))),
        };
        Ok(RecordQuery {
            region,
            near,
            text: self.text.filter(|t| !t.trim().is_empty()),
            collection: self.collection,
            author,
            since_ms: self.since,
            until_ms: self.until,
            limit: self.limit.unwrap_or(50),
            cursor: self.cursor,
            order,
            include_deleted: self.include_deleted.unwrap_or(false),
        })
    }
}

/// Finds records held by this node: by region or radius, text, collection,
/// author and time; newest first or by relevance; paginated.
#[utoipa::path(get, path = "/v1/records", params(RecordsQuery), responses(
    (status = 200, body = RecordPage),
    (status = 400, body = crate::ErrorBody),
))]
pub(crate) async fn query(
    State(state): State<AppState>,
    Query(params): Query<RecordsQuery>,
) -> Result<Json<RecordPage>, ApiError> {
    let q = params.into_query()?;
    let page = state.node.records().query(q).await?;
    Ok(Json(RecordPage {
        records: page.records.iter().map(RecordView::from_stored).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// One record by id: JSON, or its canonical encoding with
/// `Accept: application/cbor`.
#[utoipa::path(get, path = "/v1/records/{id}", params(("id" = String, Path, description = "Record id (64 hex)")), responses(
    (status = 200, body = RecordView),
    (status = 404, body = crate::ErrorBody),
))]
pub(crate) async fn get_record(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: RecordId = id
        .parse()
        .map_err(|e: cnode_records::record::RecordIdError| ApiError::BadRequest(e.to_string()))?;
    let stored = state
        .node
        .records()
        .store()
        .get(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no record {id} here")))?;
    let wants_cbor = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(CBOR));
    if wants_cbor {
        return Ok(([(header::CONTENT_TYPE, CBOR)], stored.record.encode()).into_response());
    }
    Ok(Json(RecordView::from_stored(&stored)).into_response())
}

/// Query of `GET /v1/records/stream`.
#[derive(Debug, Deserialize, IntoParams)]
pub(crate) struct StreamQuery {
    /// Only records of this region (default: all served regions).
    region: Option<String>,
}

/// Server-sent events: every record stored from now on (`event: record`,
/// data: a record view), optionally of one region.
#[utoipa::path(get, path = "/v1/records/stream", params(StreamQuery), responses(
    (status = 200, description = "text/event-stream of records"),
))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let region = q
        .region
        .map(|r| {
            r.parse::<RegionId>()
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        })
        .transpose()?;
    let rx = state.node.records().subscribe();
    let shutdown = state.shutdown.clone().cancelled_owned();
    let stream = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(stored) => {
                    if let Some(r) = &region
                        && stored.record.region_prefix() != Some(r.as_str())
                    {
                        continue;
                    }
                    let view = RecordView::from_stored(&stored);
                    let data = serde_json::to_string(&view).unwrap_or_default();
                    return Some((Ok(Event::default().event("record").data(data)), rx));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream.take_until(shutdown)).keep_alive(KeepAlive::default()))
}

/// The regions this node serves.
#[utoipa::path(get, path = "/v1/regions", responses((status = 200, body = Vec<RegionInfo>)))]
pub(crate) async fn regions(State(state): State<AppState>) -> Json<Vec<RegionInfo>> {
    Json(state.node.records().regions().await)
}

/// Result of joining or leaving a region.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RegionChange {
    /// The region.
    pub region: String,
    /// False when nothing changed (already joined / not joined).
    pub changed: bool,
}

fn parse_region(r: &str) -> Result<RegionId, ApiError> {
    r.parse()
        .map_err(|e: cnode_types::RegionIdError| ApiError::BadRequest(e.to_string()))
}

/// Starts serving a region (subscribe, announce, sync its records).
#[utoipa::path(put, path = "/v1/regions/{region}", params(("region" = String, Path, description = "4-character geohash")), responses(
    (status = 200, body = RegionChange),
    (status = 400, body = crate::ErrorBody),
))]
pub(crate) async fn join(
    State(state): State<AppState>,
    Path(region): Path<String>,
) -> Result<Json<RegionChange>, ApiError> {
    let region = parse_region(&region)?;
    let changed = state.node.records().join(region).await?;
    Ok(Json(RegionChange {
        region: region.as_str().into(),
        changed,
    }))
}

/// Stops serving a region and deletes its records from this node.
#[utoipa::path(delete, path = "/v1/regions/{region}", params(("region" = String, Path, description = "4-character geohash")), responses(
    (status = 200, body = RegionChange),
    (status = 400, body = crate::ErrorBody),
))]
pub(crate) async fn leave(
    State(state): State<AppState>,
    Path(region): Path<String>,
) -> Result<Json<RegionChange>, ApiError> {
    let region = parse_region(&region)?;
    let changed = state.node.records().leave(region).await?;
    Ok(Json(RegionChange {
        region: region.as_str().into(),
        changed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_parse() {
        assert_eq!(parse_distance("5km"), Some(5000.0));
        assert_eq!(parse_distance("2.5 KM"), Some(2500.0));
        assert_eq!(parse_distance("500m"), Some(500.0));
        assert_eq!(parse_distance("750"), Some(750.0));
        assert_eq!(parse_distance("-1km"), None);
        assert_eq!(parse_distance("far"), None);
    }
}
