//! The node as the plugin's logic sees it: plain Rust mirrors of the
//! `cnode:plugin` types the plugin uses, and a [`Host`] trait over the host
//! calls it makes.
//!
//! The WebAssembly build implements [`Host`] with the `wit-bindgen` imports
//! (`guest.rs`); the unit tests implement it with records in memory. That
//! keeps every line of request handling testable with `cargo test` on the
//! build machine.

/// A request for the plugin (WIT `request`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case HTTP method.
    pub method: String,
    /// The path below the service's prefix, starting with `/`.
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
}

/// The plugin's answer (WIT `response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with one `content-type` header.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::new(status, "application/json", body),
            Err(e) => Self::error(500, &format!("cannot encode the answer: {e}")),
        }
    }

    /// An error as `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        let body = serde_json::json!({ "error": message }).to_string();
        Self::new(status, "application/json", body)
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A stored record (WIT `stored-record`, without `expires-at`, which the
/// plugin does not use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Record id.
    pub id: String,
    /// Author DID.
    pub author: String,
    /// Collection.
    pub collection: String,
    /// Slot key.
    pub key: String,
    /// Geohash (region = first 4 characters).
    pub region: String,
    /// Creation time, ms.
    pub created_at: u64,
    /// A tombstone.
    pub deleted: bool,
    /// Body as JSON text.
    pub body_json: String,
}

/// A records query (the subset of WIT `record-query` the plugin uses).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Region (4-character geohash).
    pub region: String,
    /// Collection.
    pub collection: String,
    /// Page size.
    pub limit: u32,
    /// Continuation cursor.
    pub cursor: Option<String>,
}

/// One page of results, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The records.
    pub records: Vec<Record>,
    /// The cursor of the next page, none on the last.
    pub next_cursor: Option<String>,
}

/// WIT `error-code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Outside the plugin's grants.
    Denied,
    /// Does not exist.
    NotFound,
    /// Malformed argument.
    Invalid,
    /// Over a limit.
    TooLarge,
    /// Try again later.
    Unavailable,
    /// The host failed.
    Internal,
}

/// WIT `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// Kind.
    pub code: ErrorCode,
    /// Explanation.
    pub message: String,
}

/// WIT `log.level`, the levels the plugin uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something odd the operator may want to know.
    Warn,
    /// Routine.
    Debug,
}

/// The host calls the plugin makes.
pub trait Host {
    /// `records.query`.
    fn query(&self, query: &Query) -> Result<Page, HostError>;
    /// `clock.now-ms`.
    fn now_ms(&self) -> u64;
    /// `log.log`.
    fn log(&self, level: Level, message: &str);
}
