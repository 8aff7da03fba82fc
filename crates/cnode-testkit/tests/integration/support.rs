//! Helpers the plugin tests share: the repository root, building the example
//! plugins, signed event records, and a node's HTTP API with its token.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use cnode_identity::UserKey;
use cnode_records::{Record, UnsignedRecord};
use cnode_testkit::TestNode;
use serde_json::json;

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Panics with the way to install the `wasm32-wasip2` target when missing.
pub(crate) fn require_wasm_target() {
    cnode_plugins::test_guests::require_wasm_target().unwrap_or_else(|e| panic!("{e}"));
}

/// `scripts/build-plugins NAME` (a no-op when up to date); returns
/// `plugins/NAME/dist` (its `plugin.toml` and component).
pub(crate) fn build_example(name: &str) -> PathBuf {
    require_wasm_target();
    let out = Command::new(root().join("scripts/build-plugins"))
        .arg(name)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run scripts/build-plugins");
    assert!(
        out.status.success(),
        "scripts/build-plugins {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    root().join("plugins").join(name).join("dist")
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A signed `org.cnode.events` record in Chiang Mai.
pub(crate) fn event(key: &UserKey, slot: &str, title: &str, starts_at: u64) -> Record {
    UnsignedRecord {
        key: slot.into(),
        body: json!({ "title": title, "starts_at": starts_at, "place": "Tha Phae Gate" }),
        author: key.did(),
        region: "w5q6u8j".into(),
        deleted: false,
        collection: "org.cnode.events".into(),
        created_at: now_ms(),
        expires_at: None,
    }
    .sign(key)
}

/// A node's API: base URL and token.
pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) token: String,
    pub(crate) http: reqwest::Client,
}

impl Api {
    pub(crate) fn of(node: &TestNode) -> Result<Self> {
        Ok(Self {
            base: format!("http://{}", node.api.as_ref().unwrap().addr()),
            token: node.node.data_dir().load_token()?,
            http: reqwest::Client::new(),
        })
    }

    pub(crate) async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?)
    }
}
