//! What the host needs from the node: records, blobs and outgoing HTTP,
//! behind traits so that the node plugs in its services and tests use
//! in-memory fakes.
//!
//! The plugin host checks grants *before* it calls these traits; an
//! implementation only does the work. Every method gets the calling plugin's
//! id (for attribution, quotas and logs).

use std::{fmt, sync::Arc};

use async_trait::async_trait;

use crate::manifest::PluginId;

/// An HTTP header: (name, value).
pub type Header = (String, String);

/// A request for a plugin's `handle` export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path below the service's prefix, starting with `/`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
    /// Request headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A `GET` of `path` (which may carry `?query`).
    pub fn get(path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            ..Self::default()
        }
    }

    /// A `POST` of `body` to `path` (which may carry `?query`).
    pub fn post(path: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            method: "POST".into(),
            body: body.into(),
            ..Self::get(path)
        }
    }
}

/// A plugin's answer, or the answer to an outgoing HTTP request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The kind of a failed host call, as the guest sees it (WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// Outside the plugin's grants.
    Denied,
    /// Does not exist.
    NotFound,
    /// A malformed argument.
    Invalid,
    /// Over a size limit or quota.
    TooLarge,
    /// Not possible right now; may work later.
    Unavailable,
    /// The host failed.
    Internal,
}

impl ErrorCode {
    /// The WIT name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Denied => "denied",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A failed host call, returned to the guest as the WIT `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct HostError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// Explanation for the plugin's logs.
    pub message: String,
}

impl HostError {
    /// An error of `code` with `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `invalid`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    /// `too-large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::TooLarge, message)
    }

    /// `unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// `not-found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
}

/// A circle to search in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    /// Latitude of the centre, degrees.
    pub lat: f64,
    /// Longitude of the centre, degrees.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
}

/// A records query from a plugin (the WIT `record-query`; mirrors
/// `cnode_records::store::Query`, newest first, no tombstones).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordQuery {
    /// Only this region (4-character geohash).
    pub region: Option<String>,
    /// Only within this circle.
    pub near: Option<Near>,
    /// Only records whose body contains every word.
    pub text: Option<String>,
    /// Only this collection.
    pub collection: Option<String>,
    /// Only this author (a DID).
    pub author: Option<String>,
    /// `created_at >= since_ms`.
    pub since_ms: Option<u64>,
    /// `created_at < until_ms`.
    pub until_ms: Option<u64>,
    /// Page size (0: the store's default).
    pub limit: u32,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A stored record as plugins see it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginRecord {
    /// The record id, 64 hex characters.
    pub id: String,
    /// The author's DID.
    pub author: String,
    /// Collection.
    pub collection: String,
    /// Key.
    pub key: String,
    /// Precise geohash; the first 4 characters are the region.
    pub region: String,
    /// ms since the Unix epoch.
    pub created_at: u64,
    /// ms since the Unix epoch.
    pub expires_at: Option<u64>,
    /// A tombstone.
    pub deleted: bool,
    /// The body.
    pub body: serde_json::Value,
}

/// One page of query results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordPage {
    /// The records, newest first.
    pub records: Vec<PluginRecord>,
    /// Where the next page starts; `None` on the last.
    pub next_cursor: Option<String>,
}

/// A record a plugin asks the node to sign and post.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Collection (checked against the grant).
    pub collection: String,
    /// Key.
    pub key: String,
    /// Precise geohash, 4 to 7 characters (its region checked against the
    /// grant).
    pub region: String,
    /// The body (parsed from the guest's JSON text).
    pub body: serde_json::Value,
    /// ms since the Unix epoch.
    pub expires_at: Option<u64>,
}

/// Records for plugins: the node implements it over its `RecordService`,
/// signing published records with its plugin-publishing identity.
#[async_trait]
pub trait HostRecords: Send + Sync + 'static {
    /// Runs a query (already checked against the grants).
    async fn query(&self, plugin: &PluginId, query: RecordQuery) -> Result<RecordPage, HostError>;

    /// Signs and posts a record (already checked against the grants);
    /// returns its id.
    async fn publish(&self, plugin: &PluginId, record: Publish) -> Result<String, HostError>;
}

/// Blobs for plugins: the node implements it over its `BlobService`.
#[async_trait]
pub trait HostBlobs: Send + Sync + 'static {
    /// The whole blob `cid`, fetched from the swarm if needed; `too-large`
    /// if it is larger than `max_len` bytes (check before downloading).
    async fn get(&self, plugin: &PluginId, cid: &str, max_len: u64) -> Result<Vec<u8>, HostError>;

    /// Stores `bytes` and returns the cid.
    async fn put(&self, plugin: &PluginId, bytes: Vec<u8>) -> Result<String, HostError>;
}

/// An outgoing request whose host the grants allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    /// Upper-case method.
    pub method: String,
    /// The absolute URL (scheme http or https; the host is allow-listed).
    pub url: url::Url,
    /// Headers.
    pub headers: Vec<Header>,
    /// Body.
    pub body: Vec<u8>,
}

/// Sends plugins' outgoing HTTP requests.
///
/// The host has checked the URL's host against the plugin's allow-list; an
/// implementation must therefore **not follow redirects** (a redirect to
/// another host would bypass the check — return the 3xx to the plugin) and
/// must not send more than `max_response` bytes of body back (`too-large`).
#[async_trait]
pub trait HttpFetcher: Send + Sync + 'static {
    /// Sends the request and reads the whole response.
    async fn fetch(
        &self,
        plugin: &PluginId,
        request: OutgoingRequest,
        max_response: usize,
    ) -> Result<Response, HostError>;
}

/// The node services a [`crate::PluginHost`] uses. Missing ones answer
/// `unavailable`.
#[derive(Clone)]
pub struct Services {
    /// Records.
    pub records: Arc<dyn HostRecords>,
    /// Blobs.
    pub blobs: Arc<dyn HostBlobs>,
    /// Outgoing HTTP.
    pub http: Arc<dyn HttpFetcher>,
}

impl Default for Services {
    fn default() -> Self {
        Self {
            records: Arc::new(Unavailable),
            blobs: Arc::new(Unavailable),
            http: Arc::new(Unavailable),
        }
    }
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

/// Stands in for a service the node did not provide: every call answers
/// `unavailable`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unavailable;

#[async_trait]
impl HostRecords for Unavailable {
    async fn query(&self, _: &PluginId, _: RecordQuery) -> Result<RecordPage, HostError> {
        Err(HostError::unavailable(
            "this node provides no records to plugins",
        ))
    }

    async fn publish(&self, _: &PluginId, _: Publish) -> Result<String, HostError> {
        Err(HostError::unavailable(
            "this node provides no records to plugins",
        ))
    }
}

#[async_trait]
impl HostBlobs for Unavailable {
    async fn get(&self, _: &PluginId, _: &str, _: u64) -> Result<Vec<u8>, HostError> {
        Err(HostError::unavailable(
            "this node provides no blobs to plugins",
        ))
    }

    async fn put(&self, _: &PluginId, _: Vec<u8>) -> Result<String, HostError> {
        Err(HostError::unavailable(
            "this node provides no blobs to plugins",
        ))
    }
}

#[async_trait]
impl HttpFetcher for Unavailable {
    async fn fetch(
        &self,
        _: &PluginId,
        _: OutgoingRequest,
        _: usize,
    ) -> Result<Response, HostError> {
        Err(HostError::unavailable(
            "this node has no HTTP client for plugins",
        ))
    }
}
