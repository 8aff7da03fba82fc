//! Service plugins on a real node over HTTP: the `events` example installed
//! through the API, serving a region's records as JSON and iCalendar; a
//! revoked grant failing inside the plugin and audited; unknown services;
//! a looping plugin stopped while the node keeps serving.
//!
//! The Rust components are built with `scripts/build-plugins events` and
//! cargo (`wasm32-wasip2`). The JavaScript `board` example is exercised in
//! `plugins_rpc.rs` (installed on one node, reached from another).

use crate::support::{build_example, event, now_ms};
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Result;
use cnode_identity::UserKey;
use cnode_testkit::{NodeOptions, TestNode, Transports};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHIANG_MAI: &str = "w5q6";

/// `scripts/build-plugins events`; returns plugins/events/dist.
fn build_events() -> PathBuf {
    build_example("events")
}

/// Builds cnode-plugins' `looper` test guest (shared cache with its tests)
/// into `dir` with a manifest beside it.
fn build_looper(dir: &Path) -> PathBuf {
    let built = cnode_plugins::test_guests::build("looper").unwrap_or_else(|e| panic!("{e}"));
    let pkg = dir.join("looper");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::copy(&built, pkg.join("looper.wasm")).unwrap();
    std::fs::write(
        pkg.join("plugin.toml"),
        "id = \"org.test.looper\"\nname = \"Looper\"\nversion = \"0.1.0\"\napi-version = \"0.1\"\nroutes = [\"/*\"]\n",
    )
    .unwrap();
    pkg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_plugin_serves_records_over_http_grants_and_audit() -> Result<()> {
    let started = Instant::now();
    let dist = build_events();
    let scratch = tempfile::tempdir()?;
    let looper = build_looper(scratch.path());
    eprintln!("components built in {:?}", started.elapsed());

    let a = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        regions: vec![CHIANG_MAI.parse().unwrap()],
        ..Default::default()
    })
    .await?;
    let base = format!("http://{}", a.api.as_ref().unwrap().addr());
    let token = a.node.data_dir().load_token()?;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&token).send();

    // Not approved: refused. Approved: installed with everything requested.
    let r = http
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(&token)
        .json(&json!({ "path": dist, "grants": "all" }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(&token)
        .json(&json!({ "path": dist, "grants": "all", "approve": true }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await?);
    let view: Value = get("/v1/plugins/org.cnode.events").await?.json().await?;
    assert_eq!(view["enabled"], true);
    assert_eq!(view["loaded"], true);
    assert!(
        view["granted"]
            .as_array()
            .unwrap()
            .contains(&json!("records:read:collections=org.cnode.events")),
        "{view}"
    );
    eprintln!("installed after {:?}", started.elapsed());

    // Two upcoming events in Chiang Mai.
    let key = UserKey::from_seed(&[7; 32]);
    let soon = now_ms() + 3_600_000;
    for (slot, title, at) in [
        ("market", "Night market", soon),
        ("concert", "Temple concert", soon + 86_400_000),
    ] {
        a.node.records().post(event(&key, slot, title, at)).await?;
    }

    let r = get("/v1/services/org.cnode.events/?region=w5q6").await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("application/json")
    );
    let events: Value = r.json().await?;
    let titles: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Night market", "Temple concert"], "{events}");

    let r = get("/v1/services/org.cnode.events/calendar.ics?region=w5q6").await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("text/calendar")
    );
    let ics = r.text().await?;
    assert!(ics.contains("BEGIN:VCALENDAR"), "{ics}");
    assert!(
        ics.contains("Night market") && ics.contains("Temple concert"),
        "{ics}"
    );

    // Unknown service, unknown route.
    let r = get("/v1/services/org.example.nothing/").await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get("/v1/services/org.cnode.events/nope/deeper").await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Revoke records:read: the next call fails inside the plugin (403 from
    // the plugin) and the denied host call is audited.
    let r = http
        .put(format!("{base}/v1/plugins/org.cnode.events/grants"))
        .bearer_auth(&token)
        .json(&json!({ "grants": ["log:write", "clock:read"] }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await?);
    let r = get("/v1/services/org.cnode.events/?region=w5q6").await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let audit: Value = get("/v1/plugins/audit").await?.json().await?;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["plugin"] == "org.cnode.events"
                && e["call"].as_str().unwrap().starts_with("records.")),
        "{audit}"
    );
    // A grant the manifest does not request is refused.
    let r = http
        .put(format!("{base}/v1/plugins/org.cnode.events/grants"))
        .bearer_auth(&token)
        .json(&json!({ "grants": ["records:write"] }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Granted again: served again.
    let r = http
        .put(format!("{base}/v1/plugins/org.cnode.events/grants"))
        .bearer_auth(&token)
        .json(&json!({ "grants": "all" }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get("/v1/services/org.cnode.events/?region=w5q6").await?;
    assert_eq!(r.status(), StatusCode::OK);

    // A plugin that loops is stopped (504) and the node keeps serving.
    let r = http
        .post(format!("{base}/v1/plugins"))
        .bearer_auth(&token)
        .json(&json!({ "path": looper, "grants": "all", "approve": true }))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await?);
    let t = Instant::now();
    let r = get("/v1/services/org.test.looper/").await?;
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let err: Value = r.json().await?;
    assert!(err["error"].as_str().unwrap().contains("exceeded"), "{err}");
    let r = get("/v1/services/org.cnode.events/?region=w5q6").await?;
    assert_eq!(r.status(), StatusCode::OK);

    // Disable -> 503; enable -> served; remove -> 404; list.
    let r = http
        .post(format!("{base}/v1/plugins/org.test.looper/disable"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = get("/v1/services/org.test.looper/").await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let r = http
        .delete(format!("{base}/v1/plugins/org.test.looper"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = get("/v1/services/org.test.looper/").await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = get("/v1/plugins").await?.json().await?;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");

    // Installed plugins survive a restart.
    let data_dir = a.data_dir().clone();
    let tmp = a.shutdown().await;
    let b = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        regions: vec![CHIANG_MAI.parse().unwrap()],
        data_dir: Some(data_dir),
        ..Default::default()
    })
    .await?;
    let base = format!("http://{}", b.api.as_ref().unwrap().addr());
    let r = http
        .get(format!("{base}/v1/services/org.cnode.events/?region=w5q6"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let events: Value = r.json().await?;
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    b.shutdown().await;
    drop(tmp);
    eprintln!("plugins test took {:?}", started.elapsed());
    Ok(())
}
