//! JSON-RPC access: one HTTP client with a per-call deadline, typed errors,
//! and a counter of calls made.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::{
    primitives::{Address, B256, Bytes},
    providers::{Provider, RootProvider},
    rpc::{
        client::RpcClient,
        types::{Filter, Log},
    },
    transports::{
        RpcError as AlloyRpcError, TransportError, TransportErrorKind,
        http::reqwest::{self, Url},
    },
};

use crate::bindings::ICnodeRegistry;

/// A JSON-RPC call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The RPC URL cannot be used.
    #[error("bad RPC URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No connection could be made (refused, DNS, TLS...).
    #[error("RPC {endpoint} unreachable ({method}): {detail}")]
    Unreachable {
        /// `scheme://host:port` of the RPC (paths may hold API keys: left out).
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The transport's message.
        detail: String,
    },
    /// No answer within the deadline.
    #[error("RPC {endpoint} did not answer {method} within {after:?}")]
    Timeout {
        /// `scheme://host:port` of the RPC.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The answer was not the JSON-RPC response expected.
    #[error("RPC {endpoint} answered {method} with garbage: {detail}")]
    BadResponse {
        /// `scheme://host:port` of the RPC.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// What was wrong, with the start of the answer.
        detail: String,
    },
    /// The server answered with an HTTP error status.
    #[error("RPC {endpoint} answered {method} with HTTP {status}: {body}")]
    Http {
        /// `scheme://host:port` of the RPC.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The server answered with a JSON-RPC error object.
    #[error("RPC {endpoint} refused {method}: error {code}: {message}")]
    Server {
        /// `scheme://host:port` of the RPC.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The JSON-RPC error code.
        code: i64,
        /// The JSON-RPC error message.
        message: String,
        /// Revert data, when the error is a contract revert.
        data: Option<Bytes>,
    },
    /// Any other failure of the call.
    #[error("RPC {endpoint} call {method} failed: {detail}")]
    Other {
        /// `scheme://host:port` of the RPC.
        endpoint: String,
        /// The JSON-RPC method.
        method: &'static str,
        /// The message.
        detail: String,
    },
}

impl RpcError {
    /// Whether the RPC answered with an error object (as opposed to not
    /// answering or answering nonsense).
    pub fn is_server_error(&self) -> bool {
        matches!(self, Self::Server { .. })
    }
}

/// How long the whole call may take beyond the HTTP client's own deadline
/// before it is abandoned anyway (a stuck body read, a slow DNS lookup).
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// Longest piece of a bad answer quoted in an error.
const QUOTE_MAX: usize = 120;

/// A parsed RPC endpoint and an HTTP client with per-request deadlines.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) url: Url,
    /// `scheme://host:port`, safe to log.
    pub(crate) display: String,
    pub(crate) timeout: Duration,
}

impl Endpoint {
    pub(crate) fn parse(url: &str, timeout: Duration) -> Result<Self, RpcError> {
        let bad = |reason: String| RpcError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        match parsed.scheme() {
            "http" => {}
            "https" if cfg!(feature = "https") => {}
            "https" => {
                return Err(bad(
                    "https needs cnode-registry's `https` feature (this build has plain http only)"
                        .into(),
                ));
            }
            other => return Err(bad(format!("scheme {other:?} is not http(s)"))),
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| bad("no host".into()))?
            .to_owned();
        let port = parsed
            .port_or_known_default()
            .map_or(String::new(), |p| format!(":{p}"));
        Ok(Self {
            display: format!("{}://{host}{port}", parsed.scheme()),
            url: parsed,
            timeout,
        })
    }

    /// An alloy RPC client over a reqwest client with this endpoint's deadline.
    pub(crate) fn client(&self) -> Result<RpcClient, RpcError> {
        #[cfg(feature = "https")]
        crate::https::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|e| RpcError::BadUrl {
                url: self.display.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(RpcClient::new_http_with_client(http, self.url.clone()))
    }

    /// Runs one call with the deadline and maps its error.
    pub(crate) async fn run<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(self.timeout + DEADLINE_GRACE, call).await {
            Err(_) => Err(RpcError::Timeout {
                endpoint: self.display.clone(),
                method,
                after: self.timeout,
            }),
            Ok(Err(e)) => Err(self.map_err(method, e)),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Turns alloy's transport error into a typed [`RpcError`].
    pub(crate) fn map_err(&self, method: &'static str, e: TransportError) -> RpcError {
        let endpoint = self.display.clone();
        match e {
            AlloyRpcError::ErrorResp(p) => RpcError::Server {
                endpoint,
                method,
                code: p.code,
                message: p.message.to_string(),
                data: p.as_revert_data(),
            },
            AlloyRpcError::DeserError { err, text } => RpcError::BadResponse {
                endpoint,
                method,
                detail: format!("{err} in {:?}", quote(&text)),
            },
            AlloyRpcError::NullResp => RpcError::BadResponse {
                endpoint,
                method,
                detail: "null result".into(),
            },
            AlloyRpcError::Transport(TransportErrorKind::HttpError(h)) => RpcError::Http {
                endpoint,
                method,
                status: h.status,
                body: quote(&h.body),
            },
            AlloyRpcError::Transport(TransportErrorKind::Custom(inner)) => {
                match inner.downcast_ref::<reqwest::Error>() {
                    Some(r) if r.is_timeout() => RpcError::Timeout {
                        endpoint,
                        method,
                        after: self.timeout,
                    },
                    Some(r) if r.is_connect() => RpcError::Unreachable {
                        endpoint,
                        method,
                        detail: error_chain(r),
                    },
                    // The connection was made, then lost (reset, closed
                    // before the answer): the server went away.
                    Some(r) if connection_lost(r) => RpcError::Unreachable {
                        endpoint,
                        method,
                        detail: format!("connection lost: {}", error_chain(r)),
                    },
                    // An answer that is not HTTP.
                    Some(r) if r.is_request() || r.is_body() || r.is_decode() => {
                        RpcError::BadResponse {
                            endpoint,
                            method,
                            detail: error_chain(r),
                        }
                    }
                    _ => RpcError::Other {
                        endpoint,
                        method,
                        detail: error_chain(inner.as_ref()),
                    },
                }
            }
            other => RpcError::Other {
                endpoint,
                method,
                detail: error_chain(&other),
            },
        }
    }
}

/// Whether a request failed because the connection broke (as opposed to
/// the server sending something that is not HTTP).
fn connection_lost(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    // hyper reports a connection closed before the answer without an io::Error.
    error_chain(e).contains("connection closed before message completed")
}

/// The error and its sources, joined with ": ".
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        source = s.source();
    }
    out
}

fn quote(text: &str) -> String {
    let mut end = text.len().min(QUOTE_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}…", &text[..end])
    } else {
        text.to_owned()
    }
}

/// The follower's view of the chain: the few calls it makes, each counted.
#[derive(Debug, Clone)]
pub(crate) struct Rpc {
    endpoint: Endpoint,
    provider: RootProvider,
    calls: Arc<AtomicU64>,
}

impl Rpc {
    pub(crate) fn new(endpoint: Endpoint, calls: Arc<AtomicU64>) -> Result<Self, RpcError> {
        let provider = RootProvider::new(endpoint.client()?);
        Ok(Self {
            endpoint,
            provider,
            calls,
        })
    }

    async fn run<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, TransportError>>,
    ) -> Result<T, RpcError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.endpoint.run(method, call).await
    }

    pub(crate) async fn chain_id(&self) -> Result<u64, RpcError> {
        self.run("eth_chainId", async { self.provider.get_chain_id().await })
            .await
    }

    pub(crate) async fn code(&self, address: Address) -> Result<Bytes, RpcError> {
        self.run("eth_getCode", async {
            self.provider.get_code_at(address).await
        })
        .await
    }

    pub(crate) async fn deploy_block(&self, address: Address) -> Result<u64, RpcError> {
        let registry = ICnodeRegistry::new(address, &self.provider);
        let block = self
            .run("eth_call", async {
                registry.deployBlock().call().await.map_err(|e| match e {
                    alloy::contract::Error::TransportError(t) => t,
                    other => TransportErrorKind::custom(other),
                })
            })
            .await?;
        u64::try_from(block).map_err(|_| RpcError::BadResponse {
            endpoint: self.endpoint.display.clone(),
            method: "eth_call",
            detail: format!("deployBlock() = {block} does not fit a block number"),
        })
    }
}

impl crate::follower::Chain for Rpc {
    async fn head(&self) -> Result<u64, RpcError> {
        self.run("eth_blockNumber", async {
            self.provider.get_block_number().await
        })
        .await
    }

    async fn block_hash(&self, number: u64) -> Result<Option<B256>, RpcError> {
        let block = self
            .run("eth_getBlockByNumber", async {
                self.provider.get_block_by_number(number.into()).await
            })
            .await?;
        Ok(block.map(|b| b.header.hash))
    }

    async fn logs(&self, address: Address, from: u64, to: u64) -> Result<Vec<Log>, RpcError> {
        let filter = Filter::new().address(address).from_block(from).to_block(to);
        self.run("eth_getLogs", async {
            self.provider.get_logs(&filter).await
        })
        .await
    }
}
