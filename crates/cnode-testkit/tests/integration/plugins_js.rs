//! JavaScript plugins on the node's shared engine: the `board` example and
//! three small scripts built on the same engine file
//! (`plugins/js-engine/dist/js-engine.wasm` + a `cnode:script` section) are
//! installed on one node. The engine is compiled once: every plugin shows
//! the same code hash and the compiled-code cache holds one file. Each
//! script runs with its own exports and grants; an instance is reused for a
//! plugin's successful calls, replaced after a failed one, and a revoked
//! grant applies to the next call either way; a script that throws while
//! loading, or requires something other than a cnode:plugin interface,
//! fails its calls with the reason while the others keep serving.

use crate::support::{Api, build_example, root};
use std::{path::Path, time::Instant};

use anyhow::Result;
use cnode_testkit::{NodeOptions, TestNode, Transports};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HELLO: &str = r#"
const { nowMs } = require('cnode:plugin/clock@0.1.0');
const { get, set } = require('cnode:plugin/kv@0.1.0');
const text = (status, value) => ({
  status,
  headers: [['content-type', 'application/json']],
  body: new TextEncoder().encode(JSON.stringify(value)),
});
// Calls this instance has served: shows when the node reuses an instance.
let served = 0;
exports.handle = (request) => {
  served += 1;
  if (request.path === '/fail') throw new Error('failing on purpose');
  let visits;
  try {
    const seen = get('visits');
    visits = (seen === undefined ? 0 : Number(new TextDecoder().decode(seen))) + 1;
    set('visits', new TextEncoder().encode(String(visits)));
  } catch (e) {
    return text(403, { error: e.payload.code, served });
  }
  return text(200, { hello: request.path, visits, served, at: Number(nowMs()) });
};
"#;

const THROWS: &str = "throw new Error('broken on purpose while loading');";

const SNEAKY: &str = r#"
const fs = require('fs');
exports.handle = () => ({ status: 200, headers: [], body: new Uint8Array() });
"#;

/// A plugin folder: `plugin.toml` and the engine with `script` attached.
fn script_plugin(dir: &Path, id: &str, engine: &[u8], script: &str, kv: bool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = format!(
        "id = \"{id}\"\nname = \"{id}\"\nversion = \"0.1.0\"\napi-version = \"0.1\"\nroutes = [\"/\", \"/fail\"]\n"
    );
    if kv {
        manifest.push_str(
            "\n[[capabilities]]\nresource = \"kv\"\naccess = \"write\"\n\
             \n[[capabilities]]\nresource = \"clock\"\naccess = \"read\"\n",
        );
    }
    std::fs::write(dir.join("plugin.toml"), manifest)?;
    std::fs::write(
        dir.join("component.wasm"),
        cnode_plugins::script::attach(engine, script),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_plugins_share_one_compiled_engine() -> Result<()> {
    let board = build_example("board");
    let engine = std::fs::read(root().join("plugins/js-engine/dist/js-engine.wasm"))?;
    let scratch = tempfile::tempdir()?;
    for (id, script, kv) in [
        ("org.example.hello", HELLO, true),
        ("org.example.throws", THROWS, false),
        ("org.example.sneaky", SNEAKY, false),
    ] {
        script_plugin(&scratch.path().join(id), id, &engine, script, kv)?;
    }

    let a = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        ..Default::default()
    })
    .await?;
    let api = Api::of(&a)?;
    let install = |dir: &Path| {
        api.http
            .post(format!("{}/v1/plugins", api.base))
            .bearer_auth(&api.token)
            .json(&json!({ "path": dir, "grants": "all", "approve": true }))
            .send()
    };

    let started = Instant::now();
    let r = install(&board).await?;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await?);
    let first = started.elapsed();
    let started = Instant::now();
    for id in [
        "org.example.hello",
        "org.example.throws",
        "org.example.sneaky",
    ] {
        let r = install(&scratch.path().join(id)).await?;
        assert_eq!(r.status(), StatusCode::CREATED, "{id}: {}", r.text().await?);
    }
    let rest = started.elapsed();
    eprintln!("board installed in {first:?} (engine compiled); three more scripts in {rest:?}");

    // One code hash for all four, each marked as a script; one compiled file.
    let mut codes = Vec::new();
    for id in [
        "org.cnode.board",
        "org.example.hello",
        "org.example.throws",
        "org.example.sneaky",
    ] {
        let view: Value = api.get(&format!("/v1/plugins/{id}")).await?.json().await?;
        assert_eq!(view["loaded"], true, "{view}");
        assert_eq!(view["script"], true, "{view}");
        codes.push(view["code"].as_str().expect("a code hash").to_owned());
    }
    assert!(codes.iter().all(|c| c == &codes[0]), "{codes:?}");
    assert_eq!(
        codes[0],
        blake3::hash(&engine).to_hex().as_str(),
        "the code is the engine without the script"
    );
    let cache = a.data_dir().join("plugins/cache");
    let compiled: Vec<_> = std::fs::read_dir(&cache)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .collect();
    assert_eq!(
        compiled.len(),
        1,
        "one compiled engine in {}",
        cache.display()
    );

    // Each script runs its own code with its own state. Its instance is
    // kept between successful calls (the script is evaluated once); after a
    // failed call the next one gets a fresh instance.
    let hello = async |path: &str| -> Result<(StatusCode, Value)> {
        let r = api
            .get(&format!("/v1/services/org.example.hello{path}"))
            .await?;
        let status = r.status();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    };
    for (visits, served) in [(1, 1), (2, 2), (3, 3)] {
        let (status, body) = hello("/").await?;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["hello"], "/", "{body}");
        assert_eq!(body["visits"], visits, "{body}");
        assert_eq!(body["served"], served, "one warm instance: {body}");
    }
    let (status, body) = hello("/fail").await?;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.to_string().contains("failing on purpose"), "{body}");
    let (status, body) = hello("/").await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (&body["visits"], &body["served"]),
        (&json!(4), &json!(1)),
        "a fresh instance after the failure: {body}"
    );
    // Revoking kv takes effect on the next call, warm instance or not.
    let r = api
        .http
        .put(format!("{}/v1/plugins/org.example.hello/grants", api.base))
        .bearer_auth(&api.token)
        .json(&json!({ "grants": ["clock:read"] }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await?);
    let (status, body) = hello("/").await?;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        (&body["error"], &body["served"]),
        (&json!("denied"), &json!(2)),
        "{body}"
    );
    let board_ok = async || -> Result<()> {
        let r = api
            .get("/v1/services/org.cnode.board/notices?region=w5q6")
            .await?;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await?);
        Ok(())
    };
    board_ok().await?;

    // A script that throws while loading, and one that requires `fs`: their
    // calls fail with the reason; the others keep serving.
    for (id, reason) in [
        ("org.example.throws", "broken on purpose while loading"),
        (
            "org.example.sneaky",
            "only the cnode:plugin@0.1.0 interfaces",
        ),
    ] {
        let r = api.get(&format!("/v1/services/{id}/")).await?;
        let status = r.status();
        let text = r.text().await?;
        assert!(status.is_server_error(), "{id}: {status} {text}");
        let view: Value = api.get(&format!("/v1/plugins/{id}")).await?.json().await?;
        assert_eq!(view["stats"]["traps"], 1, "{view}");
        assert!(text.contains(reason), "{id}: {status} {text}");
        board_ok().await?;
        let r = api.get("/v1/services/org.example.hello/").await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "kv is still revoked");
    }
    a.shutdown().await;
    Ok(())
}
