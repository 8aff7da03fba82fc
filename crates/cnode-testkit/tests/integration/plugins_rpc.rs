//! Service calls forwarded over `/cnode/rpc/1`: node A runs the `events`
//! (Rust) and `board` (JavaScript) examples; node B runs neither and serves
//! both through its HTTP API by forwarding to A — events listed from A's
//! records, a notice posted through B and published as a record on A, then
//! listed through B. `x-cnode-served-by` names A; an unknown service is 404,
//! an over-size body 413, a route the plugin lacks 404 from A; once A
//! disables a plugin, B answers an error promptly instead of hanging.

use crate::support::{Api, build_example, event, now_ms};
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Result;
use cnode_identity::{
    UserKey,
    keystore::{Keystore, Protection},
};
use cnode_testkit::{DEFAULT_TIMEOUT, NodeOptions, TestNode, Transports};
use reqwest::StatusCode;
use serde_json::{Value, json};

const CHIANG_MAI: &str = "w5q6";

impl Api {
    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<reqwest::Response> {
        Ok(self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?)
    }

    async fn install(&self, dist: &Path) -> Result<()> {
        let r = self
            .post(
                "/v1/plugins",
                json!({ "path": dist, "grants": "all", "approve": true }).to_string(),
            )
            .await?;
        assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await?);
        Ok(())
    }
}

fn served_by(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("x-cnode-served-by")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_calls_reach_a_node_that_does_not_run_the_plugin() -> Result<()> {
    let started = Instant::now();
    let events_dist = build_example("events");
    let board_dist = build_example("board");
    eprintln!("components built in {:?}", started.elapsed());

    let a = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        regions: vec![CHIANG_MAI.parse().unwrap()],
        ..Default::default()
    })
    .await?;
    let b = TestNode::spawn(NodeOptions {
        api: true,
        transports: Transports::Tcp,
        bootstrap: vec![a.addr(Transports::Tcp)],
        ..Default::default()
    })
    .await?;
    b.wait_connected(a.peer_id(), DEFAULT_TIMEOUT).await?;
    let (api_a, api_b) = (Api::of(&a)?, Api::of(&b)?);
    let a_id = a.peer_id().to_string();

    // A publishes the board's notices as its default user.
    Keystore::open(a.data_dir().join("users"))?.create(Protection::None)?;

    let t = Instant::now();
    api_a.install(&events_dist).await?;
    eprintln!("events installed on A in {:?}", t.elapsed());
    let t = Instant::now();
    api_a.install(&board_dist).await?;
    eprintln!(
        "board installed on A in {:?} (Cranelift compile of the JS component, debug host)",
        t.elapsed()
    );

    let key = UserKey::from_seed(&[7; 32]);
    let soon = now_ms() + 3_600_000;
    for (slot, title, at) in [
        ("market", "Night market", soon),
        ("concert", "Temple concert", soon + 86_400_000),
    ] {
        a.node.records().post(event(&key, slot, title, at)).await?;
    }

    // B does not run events: the call is forwarded to A (found in the DHT
    // under cnode/service/org.cnode.events once A's announcement is out).
    assert!(
        !b.node
            .plugins()
            .is_installed(&"org.cnode.events".parse().unwrap())
    );
    let deadline = Instant::now() + DEFAULT_TIMEOUT;
    let r = loop {
        let r = api_b
            .get("/v1/services/org.cnode.events/?region=w5q6")
            .await?;
        if r.status() == StatusCode::OK {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "B never reached events on A: {} {}",
            r.status(),
            r.text().await?
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "first forwarded call answered after {:?}",
        started.elapsed()
    );
    assert_eq!(served_by(&r).as_deref(), Some(a_id.as_str()));
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

    // The next call skips the DHT (A is cached as serving it).
    let t = Instant::now();
    let r = api_b
        .get("/v1/services/org.cnode.events/calendar.ics?region=w5q6")
        .await?;
    eprintln!("forwarded call (cached peer) took {:?}", t.elapsed());
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(served_by(&r).as_deref(), Some(a_id.as_str()));
    assert!(
        r.headers()["content-type"]
            .to_str()?
            .starts_with("text/calendar")
    );
    let ics = r.text().await?;
    assert!(
        ics.contains("BEGIN:VCALENDAR") && ics.contains("Night market"),
        "{ics}"
    );

    // Board through B: the notice is published on A as an org.cnode.notices
    // record, then listed and found through B.
    let r = api_b
        .post(
            "/v1/services/org.cnode.board/notices",
            json!({ "title": "Water off on Moon Muang Rd", "body": "Tuesday 9-12", "region": "w5q6" })
                .to_string(),
        )
        .await?;
    assert_eq!(served_by(&r).as_deref(), Some(a_id.as_str()));
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await?);
    let posted: Value = r.json().await?;
    let id = posted["id"].as_str().unwrap().to_owned();
    let on_a: Value = api_a
        .get(&format!("/v1/records/{id}"))
        .await?
        .json()
        .await?;
    assert_eq!(on_a["collection"], "org.cnode.notices", "{on_a}");
    let r = api_b
        .get("/v1/services/org.cnode.board/notices?region=w5q6")
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let list: Value = r.json().await?;
    assert_eq!(
        list["notices"][0]["title"], "Water off on Moon Muang Rd",
        "{list}"
    );
    let r = api_b
        .get("/v1/services/org.cnode.board/search?q=water&region=w5q6")
        .await?;
    let found: Value = r.json().await?;
    assert_eq!(found["notices"].as_array().unwrap().len(), 1, "{found}");

    // A route the plugin lacks: A's answer (404), still naming A.
    let r = api_b
        .get("/v1/services/org.cnode.events/nope/deeper")
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(served_by(&r).as_deref(), Some(a_id.as_str()));

    // No node runs it: 404 with a JSON error saying so.
    let r = api_b.get("/v1/services/org.example.nothing/").await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let err: Value = r.json().await?;
    assert!(err["error"].as_str().unwrap().contains("no node"), "{err}");

    // A body over the limit: a clear 413, nothing forwarded.
    let r = api_b
        .post(
            "/v1/services/org.cnode.board/notices",
            vec![b' '; (1 << 20) + 1],
        )
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let err: Value = r.json().await?;
    assert!(err["error"].as_str().unwrap().contains("1 MiB"), "{err}");

    let served = a.node.services().metrics().served.get();
    let forwarded = b.node.services().metrics().forwarded.get();
    assert!(
        served >= 5 && forwarded >= 6,
        "served {served}, forwarded {forwarded}"
    );

    // A disables events: A answers 503 itself (not forwarded), B gets an
    // error promptly, not a hang.
    let r = api_a
        .post("/v1/plugins/org.cnode.events/disable", "")
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    let r = api_a.get("/v1/services/org.cnode.events/").await?;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let t = Instant::now();
    let r = api_b
        .get("/v1/services/org.cnode.events/?region=w5q6")
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "{:?}", r.text().await);
    assert!(t.elapsed() < Duration::from_secs(11), "{:?}", t.elapsed());
    // The board on A still serves B.
    let r = api_b
        .get("/v1/services/org.cnode.board/notices?region=w5q6")
        .await?;
    assert_eq!(r.status(), StatusCode::OK);

    b.shutdown().await;
    a.shutdown().await;
    eprintln!("rpc test took {:?}", started.elapsed());
    Ok(())
}
