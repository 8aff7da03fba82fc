//! [`HttpClient`]: the node's [`HttpFetcher`] — plugins' outgoing HTTP over
//! `reqwest`.
//!
//! Plain `http://` only for now: an `https://` fetch answers `unavailable`.
//! TLS in reqwest is a crate feature, and Cargo unifies features across the
//! build: turning on reqwest's `rustls-no-provider` here makes *every*
//! reqwest client in the binary (the CLI's API client, the registry's RPC
//! client) panic at build time unless a rustls crypto provider was installed
//! process-wide first, and reqwest's `rustls` feature pulls in aws-lc-sys (a
//! C build). Doing TLS here needs either a provider installed at every
//! entry point or a TLS connector of our own; until then, the scheme is
//! refused clearly.
//!
//! The host has already checked the grant, the method, the headers and the
//! request size, and bounds the time ([`crate::HostConfig::http_timeout`]
//! and the call's own deadline). This client never follows a redirect (a
//! redirect to another host would bypass the grant: the 3xx goes back to
//! the plugin), ignores proxy settings from the environment, and reads the
//! response body chunk by chunk, stopping as soon as it passes the limit.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{
    Method,
    header::{HeaderMap, HeaderName, HeaderValue},
    redirect,
};

use crate::{
    manifest::PluginId,
    services::{HostError, HttpFetcher, OutgoingRequest, Response},
};

/// Response headers passed back to the plugin, at most.
const MAX_RESPONSE_HEADERS: usize = 100;

/// The outgoing HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// reqwest refused the configuration.
    #[error("cannot build the HTTP client for plugins: {0}")]
    Build(#[from] reqwest::Error),
}

/// Sends plugins' outgoing requests. Cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// A client for plain `http://`. `timeout` is the host's bound on one
    /// fetch ([`crate::HostConfig::http_timeout`]); the client's own limit
    /// is a second later, a backstop that leaves the host's (clearer) error
    /// to fire first.
    pub fn new(timeout: Duration) -> Result<Self, HttpClientError> {
        let client = reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .no_proxy()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout + Duration::from_secs(1))
            .pool_max_idle_per_host(2)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("cnode-plugins/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client })
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, HostError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| HostError::invalid(format!("{name:?} is not a header name")))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| HostError::invalid(format!("the value of header {name} is not valid")))?;
        map.append(n, v);
    }
    Ok(map)
}

#[async_trait]
impl HttpFetcher for HttpClient {
    async fn fetch(
        &self,
        plugin: &PluginId,
        request: OutgoingRequest,
        max_response: usize,
    ) -> Result<Response, HostError> {
        if request.url.scheme() != "http" {
            return Err(HostError::unavailable(format!(
                "{}:// is not supported by this node's plugin HTTP client yet (http:// only)",
                request.url.scheme()
            )));
        }
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HostError::invalid(format!("{:?} is not a method", request.method)))?;
        let headers = header_map(&request.headers)?;
        let target = format!(
            "{}:{}",
            request.url.host_str().unwrap_or(""),
            request.url.port_or_known_default().unwrap_or(0)
        );
        let mut response = self
            .client
            .request(method, request.url)
            .headers(headers)
            .body(request.body)
            .send()
            .await
            .map_err(|e| {
                tracing::debug!(plugin = %plugin, %target, error = ?e, "plugin fetch failed");
                HostError::unavailable(describe(&e, &target))
            })?;
        let too_large =
            || HostError::too_large(format!("the response body is over {max_response} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > max_response as u64)
        {
            return Err(too_large());
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .take(MAX_RESPONSE_HEADERS)
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max_response {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(HostError::unavailable(describe(&e, &target))),
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// A one-line reason for a failed request, without the URL's path and query
/// (they may hold secrets the plugin would not want in a log).
fn describe(e: &reqwest::Error, target: &str) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the response body failed"
    } else {
        "the request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        format!("http.fetch to {target}: {what}")
    } else {
        format!("http.fetch to {target}: {what} ({detail})")
    }
}
