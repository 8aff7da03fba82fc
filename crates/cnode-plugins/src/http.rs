//! [`HttpClient`]: the node's [`HttpFetcher`] — plugins' outgoing HTTP,
//! `http://` and `https://`, over hyper with rustls (ring, TLS 1.2 and 1.3,
//! the platform's root certificates).
//!
//! Not reqwest: TLS in reqwest is a crate feature, and Cargo unifies features
//! across the build, so turning it on here changed every other reqwest client
//! in the binary (the CLI's API client, the registry's RPC client), which
//! then panicked without a process-wide rustls provider. This client brings
//! its own TLS configuration with an explicit crypto provider instead.
//!
//! The host has already checked the grant, the method, the headers and the
//! request size, and bounds the time ([`crate::HostConfig::http_timeout`]
//! and the call's own deadline). This client never follows a redirect (a
//! redirect to another host would bypass the grant: the 3xx goes back to
//! the plugin), uses no proxy, and reads the response body frame by frame,
//! stopping as soon as it passes the limit.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Uri,
    header::{HeaderMap, HeaderName, HeaderValue, USER_AGENT},
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rustls::pki_types::CertificateDer;

use crate::{
    manifest::PluginId,
    services::{HostError, HttpFetcher, OutgoingRequest, Response},
};

/// Response headers passed back to the plugin, at most.
const MAX_RESPONSE_HEADERS: usize = 100;

/// The outgoing HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// rustls refused the configuration.
    #[error("cannot build the HTTP client for plugins: {0}")]
    Tls(#[from] rustls::Error),
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Sends plugins' outgoing requests. Cheap to clone (one connection pool).
///
/// The platform's root certificates are read on the first fetch, not when
/// the client is made: reading them (a bundle and ~150 files) took ~4 ms of
/// every node's start, most of which never fetch anything.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Arc<tokio::sync::OnceCell<Client<Connector, Full<Bytes>>>>,
    extra_roots: Arc<Vec<CertificateDer<'static>>>,
    /// The host's bound on one fetch.
    timeout: Duration,
}

impl HttpClient {
    /// A client trusting the platform's root certificates. `timeout` is the
    /// host's bound on one fetch ([`crate::HostConfig::http_timeout`]); the
    /// client's own limit is a second later, a backstop that leaves the
    /// host's (clearer) error to fire first.
    pub fn new(timeout: Duration) -> Result<Self, HttpClientError> {
        Self::with_roots(timeout, Vec::new())
    }

    /// [`HttpClient::new`], also trusting `extra_roots` (DER certificates:
    /// a private network's CA, or a test server's own certificate). They
    /// are checked now; the platform's are read on the first fetch.
    pub fn with_roots(
        timeout: Duration,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, HttpClientError> {
        let mut check = rustls::RootCertStore::empty();
        for cert in &extra_roots {
            check.add(cert.clone())?;
        }
        Ok(Self {
            client: Arc::default(),
            extra_roots: Arc::new(extra_roots),
            timeout,
        })
    }

    /// The hyper client, built on first use (on the blocking pool: reading
    /// the platform's certificates is file I/O).
    async fn client(&self) -> Result<&Client<Connector, Full<Bytes>>, HostError> {
        self.client
            .get_or_try_init(|| async {
                let extra = self.extra_roots.clone();
                let connect_timeout = self.timeout.min(Duration::from_secs(5));
                tokio::task::spawn_blocking(move || build(&extra, connect_timeout))
                    .await
                    .map_err(|e| HostError::unavailable(format!("http client: {e}")))?
                    .map_err(|e| HostError::unavailable(e.to_string()))
            })
            .await
    }
}

fn build(
    extra_roots: &[CertificateDer<'static>],
    connect_timeout: Duration,
) -> Result<Client<Connector, Full<Bytes>>, HttpClientError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if let Some(e) = native.errors.first() {
        tracing::warn!(error = %e, "some platform root certificates could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(
        added,
        ignored,
        "platform root certificates for plugins' https"
    );
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(2)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
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
        let scheme = request.url.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(HostError::invalid(format!(
                "{scheme}:// is not supported (http:// and https:// are)"
            )));
        }
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HostError::invalid(format!("{:?} is not a method", request.method)))?;
        let mut headers = header_map(&request.headers)?;
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!(
                "cnode-plugins/",
                env!("CARGO_PKG_VERSION")
            )));
        let target = format!(
            "{}:{}",
            request.url.host_str().unwrap_or(""),
            request.url.port_or_known_default().unwrap_or(0)
        );
        let uri: Uri = request
            .url
            .as_str()
            .parse()
            .map_err(|_| HostError::invalid("the URL is not a valid request target"))?;
        let mut builder = hyper::Request::builder().method(method).uri(uri);
        if let Some(h) = builder.headers_mut() {
            h.extend(headers);
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| HostError::invalid(format!("cannot build the request: {e}")))?;

        let exchange = async {
            let response = self.client().await?.request(outgoing).await.map_err(|e| {
                tracing::debug!(plugin = %plugin, %target, error = ?e, "plugin fetch failed");
                HostError::unavailable(describe(&e, &target))
            })?;
            let too_large =
                || HostError::too_large(format!("the response body is over {max_response} bytes"));
            let declared = response
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max_response as u64) {
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
            let mut incoming = response.into_body();
            let mut body = Vec::new();
            while let Some(frame) = incoming.frame().await {
                let frame = frame.map_err(|e| {
                    HostError::unavailable(format!(
                        "http.fetch to {target}: the response body failed ({e})"
                    ))
                })?;
                if let Ok(chunk) = frame.into_data() {
                    if body.len() + chunk.len() > max_response {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
            }
            Ok(Response {
                status,
                headers,
                body,
            })
        };
        // A backstop a second after the host's own (clearer) limit.
        tokio::time::timeout(self.timeout + Duration::from_secs(1), exchange)
            .await
            .map_err(|_| HostError::unavailable(format!("http.fetch to {target}: timed out")))?
    }
}

/// A one-line reason for a failed request, without the URL's path and query
/// (they may hold secrets the plugin would not want in a log).
fn describe(e: &hyper_util::client::legacy::Error, target: &str) -> String {
    let what = if e.is_connect() {
        "cannot connect"
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
