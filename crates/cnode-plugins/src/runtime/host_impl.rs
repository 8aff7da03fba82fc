//! The host side of the `cnode:plugin` imports: each function checks the
//! call's grants, counts the call, audits a denial, and hands the work to
//! the node's services ([`crate::services`]) or the kv store.

use rand::RngCore;

use super::{
    PluginState,
    bindings::cnode::plugin::{blobs, clock, http, kv, log, random, records, types},
};
use crate::{
    audit::AuditEntry,
    manifest::{Access, Resource},
    now_ms,
    services::{ErrorCode, HostError, Near, OutgoingRequest, PluginRecord, Publish, RecordQuery},
};

/// Denials one call writes to the audit log; the rest are counted and
/// summarised in one entry when the call ends.
pub(crate) const MAX_AUDIT_PER_CALL: u32 = 16;

/// The longest message `log.log` keeps, bytes.
const MAX_LOG_MESSAGE: usize = 4096;

/// The most bytes `random.bytes` returns.
const MAX_RANDOM: u32 = 4096;

/// The largest record body a plugin may publish (JSON text), bytes.
const MAX_BODY_JSON: usize = 64 * 1024;

const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";

fn wit_error(e: HostError) -> types::Error {
    let code = match e.code {
        ErrorCode::Denied => types::ErrorCode::Denied,
        ErrorCode::NotFound => types::ErrorCode::NotFound,
        ErrorCode::Invalid => types::ErrorCode::Invalid,
        ErrorCode::TooLarge => types::ErrorCode::TooLarge,
        ErrorCode::Unavailable => types::ErrorCode::Unavailable,
        ErrorCode::Internal => types::ErrorCode::Internal,
    };
    types::Error {
        code,
        message: e.message,
    }
}

impl PluginState {
    /// Counts the call and turns a refused check into the WIT `denied`
    /// error, auditing it.
    fn check(
        &mut self,
        interface: Resource,
        call: &str,
        check: Result<(), String>,
    ) -> Result<(), types::Error> {
        match check {
            Ok(()) => {
                self.counters.host_call(interface, true);
                Ok(())
            }
            Err(reason) => {
                self.counters.host_call(interface, false);
                if self.audited < MAX_AUDIT_PER_CALL {
                    self.audited += 1;
                    self.shared.audit.record(AuditEntry {
                        at_ms: now_ms(),
                        plugin: self.plugin.clone(),
                        call: call.to_owned(),
                        reason: reason.clone(),
                    });
                } else {
                    self.unaudited += 1;
                }
                Err(types::Error {
                    code: types::ErrorCode::Denied,
                    message: reason,
                })
            }
        }
    }
}

impl types::Host for PluginState {}

fn to_wit_record(r: PluginRecord) -> types::StoredRecord {
    types::StoredRecord {
        id: r.id,
        author: r.author,
        collection: r.collection,
        key: r.key,
        region: r.region,
        created_at: r.created_at,
        expires_at: r.expires_at,
        deleted: r.deleted,
        body_json: r.body.to_string(),
    }
}

/// The WIT form of a record, for `on-record`.
pub(crate) fn wit_record(r: &PluginRecord) -> types::StoredRecord {
    to_wit_record(r.clone())
}

impl records::Host for PluginState {
    async fn query(&mut self, q: records::RecordQuery) -> Result<records::Page, types::Error> {
        let check = self
            .grants
            .check_query(q.collection.as_deref(), q.region.as_deref());
        self.check(Resource::Records, "records.query", check)?;
        let query = RecordQuery {
            region: q.region,
            near: q.near.map(|n| Near {
                lat: n.lat,
                lon: n.lon,
                radius_m: n.radius_m,
            }),
            text: q.text,
            collection: q.collection,
            author: q.author,
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            limit: q.limit,
            cursor: q.cursor,
        };
        let records = self.shared.services.records.clone();
        let page = records
            .query(&self.plugin, query)
            .await
            .map_err(wit_error)?;
        // The services answer the query as asked; the grants are applied
        // again to what comes back.
        let grants = &self.grants;
        Ok(records::Page {
            records: page
                .records
                .into_iter()
                .filter(|r| !r.deleted && grants.may_read(&r.collection, &r.region))
                .map(to_wit_record)
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn publish(
        &mut self,
        collection: String,
        key: String,
        region_geohash: String,
        body_json: String,
        expires_at: Option<u64>,
    ) -> Result<String, types::Error> {
        let check = self.grants.check_publish(&collection, &region_geohash);
        self.check(Resource::Records, "records.publish", check)?;
        if !(4..=7).contains(&region_geohash.len())
            || !region_geohash.chars().all(|c| GEOHASH_ALPHABET.contains(c))
        {
            return Err(wit_error(HostError::invalid(format!(
                "region {region_geohash:?} is not a geohash of 4 to 7 characters"
            ))));
        }
        if body_json.len() > MAX_BODY_JSON {
            return Err(wit_error(HostError::too_large(format!(
                "body is {} bytes, the limit is {MAX_BODY_JSON}",
                body_json.len()
            ))));
        }
        let body: serde_json::Value = serde_json::from_str(&body_json)
            .map_err(|e| wit_error(HostError::invalid(format!("body is not JSON: {e}"))))?;
        let records = self.shared.services.records.clone();
        let publish = Publish {
            collection,
            key,
            region: region_geohash,
            body,
            expires_at,
        };
        records
            .publish(&self.plugin, publish)
            .await
            .map_err(wit_error)
    }
}

impl blobs::Host for PluginState {
    async fn get(&mut self, cid: String) -> Result<Vec<u8>, types::Error> {
        let check = self.grants.check(Resource::Blobs, Access::Read);
        self.check(Resource::Blobs, "blobs.get", check)?;
        if cid.is_empty() || cid.len() > 128 {
            return Err(wit_error(HostError::invalid("not a cid")));
        }
        let max = self.shared.config.max_blob_bytes;
        let blobs = self.shared.services.blobs.clone();
        let bytes = blobs
            .get(&self.plugin, &cid, max)
            .await
            .map_err(wit_error)?;
        if bytes.len() as u64 > max {
            return Err(wit_error(HostError::too_large(format!(
                "blob is larger than {max} bytes"
            ))));
        }
        Ok(bytes)
    }

    async fn put(&mut self, bytes: Vec<u8>) -> Result<String, types::Error> {
        let check = self.grants.check(Resource::Blobs, Access::Write);
        self.check(Resource::Blobs, "blobs.put", check)?;
        let max = self.shared.config.max_blob_bytes;
        if bytes.len() as u64 > max {
            return Err(wit_error(HostError::too_large(format!(
                "blob is {} bytes, the limit is {max}",
                bytes.len()
            ))));
        }
        let blobs = self.shared.services.blobs.clone();
        blobs.put(&self.plugin, bytes).await.map_err(wit_error)
    }
}

impl kv::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::Error> {
        let check = self.grants.check(Resource::Kv, Access::Read);
        self.check(Resource::Kv, "kv.get", check)?;
        self.shared
            .kv
            .get(&self.plugin, key)
            .await
            .map_err(wit_error)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), types::Error> {
        let check = self.grants.check(Resource::Kv, Access::Write);
        self.check(Resource::Kv, "kv.set", check)?;
        self.shared
            .kv
            .set(&self.plugin, key, value)
            .await
            .map_err(wit_error)
    }

    async fn delete(&mut self, key: String) -> Result<(), types::Error> {
        let check = self.grants.check(Resource::Kv, Access::Write);
        self.check(Resource::Kv, "kv.delete", check)?;
        self.shared
            .kv
            .delete(&self.plugin, key)
            .await
            .map_err(wit_error)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, types::Error> {
        let check = self.grants.check(Resource::Kv, Access::Read);
        self.check(Resource::Kv, "kv.list-keys", check)?;
        self.shared
            .kv
            .list_keys(&self.plugin, prefix, start_after, limit)
            .await
            .map_err(wit_error)
    }
}

impl http::Host for PluginState {
    async fn fetch(
        &mut self,
        request: http::OutgoingRequest,
    ) -> Result<types::Response, types::Error> {
        let method = request.method.to_ascii_uppercase();
        if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(wit_error(HostError::invalid(format!(
                "{:?} is not an HTTP method",
                request.method
            ))));
        }
        let url = url::Url::parse(&request.url).map_err(|e| {
            wit_error(HostError::invalid(format!(
                "{:?} is not a URL: {e}",
                request.url
            )))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(wit_error(HostError::invalid(format!(
                "scheme {:?} is not http or https",
                url.scheme()
            ))));
        }
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            return Err(wit_error(HostError::invalid(format!(
                "{:?} has no host",
                request.url
            ))));
        };
        let check = self.grants.check_http(&method, host, port);
        self.check(Resource::Http, "http.fetch", check)?;
        let target = format!("{host}:{port}");
        let result = self
            .fetch_allowed(method, url, request.headers, request.body, &target)
            .await;
        self.counters
            .fetch(result.as_ref().ok().map(|r| r.body.len()));
        result.map_err(wit_error)
    }
}

/// Request headers a plugin may not set: the host derives them from the URL
/// and the body (a `Host` override could reach a virtual host the grant
/// does not name).
const FORBIDDEN_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
];

/// Request headers a plugin may send, at most, and their total size.
const MAX_REQUEST_HEADERS: usize = 64;
const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

impl PluginState {
    /// An `http.fetch` the grants allowed: the request's own limits, a slot
    /// among the plugin's fetches, then the fetch bounded by
    /// `http_timeout` and the call's deadline.
    async fn fetch_allowed(
        &mut self,
        method: String,
        url: url::Url,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        target: &str,
    ) -> Result<types::Response, HostError> {
        let config = &self.shared.config;
        if body.len() > config.max_http_request {
            return Err(HostError::too_large(format!(
                "the request body is {} bytes, the limit is {}",
                body.len(),
                config.max_http_request
            )));
        }
        if let Some((name, _)) = headers
            .iter()
            .find(|(n, _)| FORBIDDEN_HEADERS.iter().any(|f| n.eq_ignore_ascii_case(f)))
        {
            return Err(HostError::invalid(format!(
                "header {name:?} is set by the host and may not be given"
            )));
        }
        let header_bytes: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        if headers.len() > MAX_REQUEST_HEADERS || header_bytes > MAX_REQUEST_HEADER_BYTES {
            return Err(HostError::too_large(format!(
                "at most {MAX_REQUEST_HEADERS} request headers of {MAX_REQUEST_HEADER_BYTES} bytes in all"
            )));
        }
        let max = config.max_http_response;
        let remaining = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let limit = config.http_timeout.min(remaining);
        let http = self.shared.services.http.clone();
        let fetches = self.fetches.clone();
        let plugin = self.plugin.clone();
        let outgoing = OutgoingRequest {
            method,
            url,
            headers,
            body,
        };
        let fetch = async {
            let _slot = fetches
                .acquire()
                .await
                .map_err(|_| HostError::internal("the fetch limiter is closed"))?;
            http.fetch(&plugin, outgoing, max).await
        };
        let response = tokio::time::timeout(limit, fetch).await.map_err(|_| {
            HostError::unavailable(format!(
                "http.fetch to {target}: no response within {} ms (the fetch time limit or the call's deadline)",
                limit.as_millis()
            ))
        })??;
        if response.body.len() > max {
            return Err(HostError::too_large(format!(
                "the response body is over {max} bytes"
            )));
        }
        Ok(types::Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

impl log::Host for PluginState {
    async fn log(&mut self, level: log::Level, mut message: String) {
        self.counters.host_call(Resource::Log, true);
        self.log_lines += 1;
        if self.log_lines > self.shared.config.max_log_lines {
            return;
        }
        if message.len() > MAX_LOG_MESSAGE {
            let mut cut = MAX_LOG_MESSAGE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let plugin = self.plugin.as_str();
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "cnode_plugins::guest", plugin, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "cnode_plugins::guest", plugin, "{message}")
            }
            log::Level::Info => tracing::info!(target: "cnode_plugins::guest", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "cnode_plugins::guest", plugin, "{message}"),
            log::Level::Error => {
                tracing::error!(target: "cnode_plugins::guest", plugin, "{message}")
            }
        }
    }
}

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        self.counters.host_call(Resource::Clock, true);
        now_ms()
    }
}

impl random::Host for PluginState {
    async fn bytes(&mut self, n: u32) -> Vec<u8> {
        self.counters.host_call(Resource::Random, true);
        let mut out = vec![0; n.min(MAX_RANDOM) as usize];
        rand::thread_rng().fill_bytes(&mut out);
        out
    }
}
