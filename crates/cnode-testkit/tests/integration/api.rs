//! The HTTP API over a real socket.

use anyhow::Result;
use cnode_testkit::{DEFAULT_TIMEOUT, NodeOptions, TestNode, Transports};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_auth_status_peers_dht_openapi_metrics() -> Result<()> {
    let a = TestNode::spawn(NodeOptions {
        api: true,
        ..Default::default()
    })
    .await?;
    let b = TestNode::spawn(NodeOptions {
        bootstrap: vec![a.addr(Transports::Quic)],
        ..Default::default()
    })
    .await?;
    a.wait_connected(b.peer_id(), DEFAULT_TIMEOUT).await?;
    let base = format!("http://{}", a.api.as_ref().unwrap().addr());
    let token = a.node.data_dir().load_token()?;
    let http = reqwest::Client::new();

    // healthz needs no token.
    let r = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(r.status(), StatusCode::OK);

    // No token, wrong token, malformed header: 401 everywhere that is protected.
    for path in [
        "/v1/status",
        "/v1/peers",
        "/v1/dht/x",
        "/v1/openapi.json",
        "/metrics",
    ] {
        let r = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} without token");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        let r = http
            .get(format!("{base}{path}"))
            .bearer_auth("wrong")
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} wrong token");
        let r = http
            .get(format!("{base}{path}"))
            .header("authorization", format!("Basic {token}"))
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path} basic auth");
    }
    let r = http
        .put(format!("{base}/v1/dht/x"))
        .body("v")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // status JSON has the promised fields.
    let status: serde_json::Value = http
        .get(format!("{base}/v1/status"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(status["peer_id"], a.peer_id().to_string());
    let addrs = status["listen_addrs"].as_array().unwrap();
    assert_eq!(addrs.len(), 2);
    for addr in addrs {
        let s = addr.as_str().unwrap();
        assert!(s.starts_with("/ip4/127.0.0.1/"), "{s}");
        assert!(s.ends_with(&format!("/p2p/{}", a.peer_id())), "{s}");
        assert!(
            !s.contains("/tcp/0/") && !s.contains("/udp/0/"),
            "actual port: {s}"
        );
    }
    assert_eq!(status["connected_peers"], 1);
    // Lanes listen on a real TCP port of their own.
    let lane_port = status["lane_port"].as_u64().expect("lane_port");
    assert!(
        lane_port > 0
            && addrs
                .iter()
                .all(|a| !a.as_str().unwrap().contains(&format!("/tcp/{lane_port}/")))
    );
    assert_eq!(status["api"], a.api.as_ref().unwrap().addr().to_string());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));

    let peers: serde_json::Value = http
        .get(format!("{base}/v1/peers"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(peers[0]["peer_id"], b.peer_id().to_string());
    assert_eq!(peers[0]["transport"], "quic");
    assert_eq!(peers[0]["direction"], "inbound");

    // DHT through the API: put, get, missing, bad key, oversize value.
    let r = http
        .put(format!("{base}/v1/dht/hello"))
        .bearer_auth(&token)
        .body("world")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let v: serde_json::Value = http
        .get(format!("{base}/v1/dht/hello"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(v["value"], "world");
    let r = http
        .get(format!("{base}/v1/dht/absent"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let long = "k".repeat(300);
    let r = http
        .get(format!("{base}/v1/dht/{long}"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .put(format!("{base}/v1/dht/big"))
        .bearer_auth(&token)
        .body(vec![b'x'; 70 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: serde_json::Value = r.json().await?;
    assert!(err["error"].as_str().unwrap().contains("at most"), "{err}");
    // Over the HTTP body limit. The server closes that connection without
    // reading the body, so the request gets a client of its own.
    let r = reqwest::Client::new()
        .put(format!("{base}/v1/dht/huge"))
        .bearer_auth(&token)
        .body(vec![b'x'; 2 * 1024 * 1024])
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // OpenAPI parses and names the routes.
    let doc: serde_json::Value = http
        .get(format!("{base}/v1/openapi.json"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/v1/status"]["get"].is_object());
    assert!(doc["components"]["schemas"]["StatusInfo"].is_object());

    // Metrics: libp2p's and ours.
    let text = http
        .get(format!("{base}/metrics"))
        .bearer_auth(&token)
        .send()
        .await?
        .text()
        .await?;
    assert!(text.contains("cnode_net_connected_peers 1"), "{text}");
    assert!(
        text.contains("libp2p_swarm_connections_established_total"),
        "missing libp2p metrics"
    );
    assert!(text.contains("cnode_api_requests_total"));

    // Unknown route: 404 with a JSON error.
    let r = http
        .get(format!("{base}/v1/nope"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
