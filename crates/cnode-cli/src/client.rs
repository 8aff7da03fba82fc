//! A small client for the running node's HTTP API.

use anyhow::{Context, Result, anyhow, bail};
use cnode_node::DataDir;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;

pub(crate) struct ApiClient {
    base: Url,
    token: String,
    http: reqwest::Client,
}

fn not_running(dir: &DataDir, detail: &str) -> anyhow::Error {
    anyhow!(
        "the node is not running ({detail}); start it with `cnode run --data {}`",
        dir.root().display()
    )
}

impl ApiClient {
    /// Finds the running node's API address and token in the data directory.
    pub(crate) fn from_data_dir(dir: &DataDir) -> Result<Self> {
        if !dir.is_initialized() {
            bail!(
                "no node in {} (no node key); create one with `cnode init`, then start it with `cnode run`",
                dir.root().display()
            );
        }
        let info = dir
            .read_api_info()
            .ok_or_else(|| not_running(dir, "no api.json in the data directory"))?;
        let token = dir
            .load_token()
            .with_context(|| format!("cannot read the API token in {}", dir.root().display()))?;
        let base = Url::parse(&format!("http://{}/", info.addr)).context("bad API address")?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { base, token, http })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response> {
        self.send_with(method, self.url(segments), |req| match body {
            Some(body) => req.body(body),
            None => req,
        })
        .await
    }

    /// Sends a request to `url` with the token, after `build` added what it
    /// needs (body, headers, a longer timeout).
    pub(crate) async fn send_with(
        &self,
        method: Method,
        url: Url,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response> {
        let req = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        build(req).send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "the node is not running (nothing answers at {}); start it with `cnode run`",
                    self.base.as_str().trim_end_matches('/')
                )
            } else {
                anyhow!("request to {url} failed: {e}")
            }
        })
    }

    /// A successful answer's JSON, or the node's error.
    async fn json_of<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T> {
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        resp.json()
            .await
            .context("the node sent an unreadable answer")
    }

    async fn error_of(resp: reqwest::Response) -> anyhow::Error {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        if status == StatusCode::UNAUTHORIZED {
            return anyhow!(
                "the node refused our API token ({msg}); is another node using this data directory?"
            );
        }
        anyhow!("{msg} (HTTP {})", status.as_u16())
    }

    /// GET a JSON document.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T> {
        Self::json_of(self.send(Method::GET, segments, None).await?).await
    }

    /// GET, returning `None` on 404.
    pub(crate) async fn get_json_opt<T: DeserializeOwned>(
        &self,
        segments: &[&str],
    ) -> Result<Option<T>> {
        let resp = self.send(Method::GET, segments, None).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(Self::json_of(resp).await?))
    }

    /// True when `GET /healthz` answers.
    pub(crate) async fn healthz(&self) -> bool {
        let url = self.url(&["healthz"]);
        matches!(self.http.get(url).timeout(std::time::Duration::from_secs(2)).send().await, Ok(r) if r.status().is_success())
    }

    /// POST a JSON body, parse a JSON answer (no time limit: it may wait
    /// for a transfer).
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        body: &serde_json::Value,
    ) -> Result<T> {
        let resp = self
            .send_with(Method::POST, self.url(segments), |req| {
                req.json(body)
                    .timeout(std::time::Duration::from_secs(24 * 3600))
            })
            .await?;
        Self::json_of(resp).await
    }

    /// A request without a body whose answer is only its status.
    pub(crate) async fn send_empty(&self, method: Method, segments: &[&str]) -> Result<()> {
        let resp = self.send(method, segments, None).await?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }

    /// PUT raw bytes.
    pub(crate) async fn put(&self, segments: &[&str], body: Vec<u8>) -> Result<()> {
        let resp = self.send(Method::PUT, segments, Some(body)).await?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        Ok(())
    }

    /// GET a JSON document with query parameters.
    pub(crate) async fn get_json_query<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        let mut url = self.url(segments);
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        Self::json_of(self.send_with(Method::GET, url, |req| req).await?).await
    }

    /// POST raw bytes of `content_type`, parse a JSON answer.
    pub(crate) async fn post_bytes<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<T> {
        let resp = self
            .send_with(Method::POST, self.url(segments), |req| {
                req.header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(body)
            })
            .await?;
        Self::json_of(resp).await
    }

    /// A request with an optional JSON body, parse a JSON answer. Allowed
    /// 10 minutes: installing a plugin compiles it on the node.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<T> {
        let resp = self
            .send_with(method, self.url(segments), |req| {
                let req = req.timeout(std::time::Duration::from_secs(600));
                match body {
                    Some(b) => req.json(b),
                    None => req,
                }
            })
            .await?;
        Self::json_of(resp).await
    }

    /// The API URL of a path relative to the node's API root (may carry a
    /// query), e.g. `v1/services/org.cnode.events/?region=w5q6`.
    pub(crate) fn join(&self, relative: &str) -> Result<Url> {
        self.base.join(relative).context("bad path")
    }
}
