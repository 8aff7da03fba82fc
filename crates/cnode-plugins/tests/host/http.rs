//! `http.fetch` through the real client ([`cnode_plugins::HttpClient`])
//! against a local HTTP server on 127.0.0.1: grants by host and port,
//! limits on size and time, redirects not followed, forbidden headers,
//! and https against a local TLS server with its own certificate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::{any, get},
};
use cnode_plugins::{
    CallError, Grants, HostConfig, HttpClient, Manifest, PluginHost, PluginId, Request, Response,
    Services,
};

use super::{guest, manifest};

/// The test server: `/hello` (201, a header), `/echo` (method, a header
/// and the body back), `/big` (5 MiB with a length), `/big-chunked` (5 MiB
/// streamed without one), `/slow` (answers after 5 s), `/redirect` (302 to
/// `/hello`).
async fn server() -> (u16, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/hello",
            get(|| async { (StatusCode::CREATED, [("x-test", "yes")], "hello") }),
        )
        .route(
            "/echo",
            any(
                |method: axum::http::Method, headers: HeaderMap, body: String| async move {
                    let agent = headers
                        .get("x-agent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned();
                    format!("{method} {agent} {body}")
                },
            ),
        )
        .route("/big", get(|| async { vec![b'x'; 5 << 20] }))
        .route(
            "/big-chunked",
            get(|| async {
                let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 64 << 10]));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/redirect",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, "http://127.0.0.1:1/elsewhere")],
                )
                    .into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (port, task)
}

struct Fetch {
    host: PluginHost,
    id: PluginId,
    port: u16,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

/// A host with the real HTTP client and the `fetcher` guest granted
/// `http:read` and `http:write` for the test server's port only.
async fn fetcher(config: impl FnOnce(&mut HostConfig)) -> Fetch {
    fetcher_on(server().await, Vec::new(), config).await
}

/// [`fetcher`] against `server`, with a client that also trusts `roots`.
async fn fetcher_on(
    (port, server): (u16, tokio::task::JoinHandle<()>),
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    config: impl FnOnce(&mut HostConfig),
) -> Fetch {
    let dir = tempfile::tempdir().unwrap();
    let mut c = HostConfig::new(dir.path());
    config(&mut c);
    let client = HttpClient::with_roots(c.http_timeout, roots).unwrap();
    let services = Services {
        http: Arc::new(client),
        ..Services::default()
    };
    let host = PluginHost::new(c, services).unwrap();
    let m = manifest(
        "org.test.fetcher",
        &format!(
            r#"
[[capabilities]]
resource = "http"
access = "read"
scope = {{ hosts = ["127.0.0.1:{port}"] }}

[[capabilities]]
resource = "http"
access = "write"
scope = {{ hosts = ["127.0.0.1:{port}"] }}
"#
        ),
    );
    let grants = Grants::all_requested(&m);
    let id = host.load(m, &guest("fetcher"), grants).await.unwrap();
    Fetch {
        host,
        id,
        port,
        _dir: dir,
        _server: server,
    }
}

impl Fetch {
    /// Asks the guest to fetch `spec` (method, URL, headers, body; see the
    /// guest).
    async fn fetch(&self, spec: &str) -> Result<Response, CallError> {
        self.host
            .call(
                &self.id,
                Request::post("/", spec.replace("{port}", &self.port.to_string())),
            )
            .await
    }
}

/// What the guest reported: `x-fetch` (`ok` or an error code), and the body
/// (the fetched body or the error message).
fn outcome(r: &Response) -> (&str, String) {
    (
        r.header("x-fetch").unwrap_or("?"),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_host_is_fetched_with_status_headers_and_body() {
    let f = fetcher(|_| {}).await;
    let r = f.fetch("GET\nhttp://127.0.0.1:{port}/hello").await.unwrap();
    assert_eq!(outcome(&r), ("ok", "hello".into()));
    assert_eq!(r.header("x-status"), Some("201"));
    assert_eq!(r.header("x-h-x-test"), Some("yes"));

    // Another method (http:write), a header of the plugin's, a body.
    let r = f
        .fetch("PUT\nhttp://127.0.0.1:{port}/echo\nx-agent: fetcher\n\npayload")
        .await
        .unwrap();
    assert_eq!(outcome(&r), ("ok", "PUT fetcher payload".into()));

    let stats = f.host.stats();
    assert_eq!(stats[0].fetches.ok, 2);
    assert_eq!(stats[0].fetches.bytes_received, 5 + 19);
    assert_eq!(stats[0].host_calls["http"].allowed, 2);
    assert!(f.host.audit(10).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ungranted_host_or_port_is_denied_and_audited() {
    let f = fetcher(|_| {}).await;
    // Another port on the same address; the same port under another name.
    let (other_port, _other) = server().await;
    let r = f
        .fetch(&format!("GET\nhttp://127.0.0.1:{other_port}/hello"))
        .await
        .unwrap();
    let (code, message) = outcome(&r);
    assert_eq!(code, "denied");
    assert!(
        message.contains(&format!("127.0.0.1:{other_port}")),
        "{message}"
    );
    let r = f.fetch("GET\nhttp://localhost:{port}/hello").await.unwrap();
    assert_eq!(outcome(&r).0, "denied");

    let audit = f.host.audit(10);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(audit.iter().all(|a| a.call == "http.fetch"));
    assert!(audit[1].reason.contains("localhost"), "{}", audit[1].reason);
    let stats = f.host.stats();
    assert_eq!(stats[0].host_calls["http"].denied, 2);
    assert_eq!(stats[0].fetches.ok + stats[0].fetches.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_is_cut_with_a_clear_error() {
    let f = fetcher(|_| {}).await;
    for path in ["/big", "/big-chunked"] {
        let r = f
            .fetch(&format!("GET\nhttp://127.0.0.1:{{port}}{path}"))
            .await
            .unwrap();
        let (code, message) = outcome(&r);
        assert_eq!(code, "too-large", "{path}: {message}");
        assert!(
            message.contains(&format!("over {} bytes", 4 << 20)),
            "{message}"
        );
    }
    assert_eq!(f.host.stats()[0].fetches.failed, 2);

    // A request body over 1 MiB is refused before anything is sent.
    let big = "z".repeat((1 << 20) + 1);
    let r = f
        .fetch(&format!("POST\nhttp://127.0.0.1:{{port}}/echo\n\n{big}"))
        .await
        .unwrap();
    assert_eq!(outcome(&r).0, "too-large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_hits_the_time_limit() {
    // The fetch limit first: the guest gets `unavailable` and answers.
    let f = fetcher(|c| {
        c.http_timeout = Duration::from_millis(300);
        c.call_timeout = Duration::from_secs(3);
    })
    .await;
    let started = Instant::now();
    let r = f.fetch("GET\nhttp://127.0.0.1:{port}/slow").await.unwrap();
    let took = started.elapsed();
    let (code, message) = outcome(&r);
    assert_eq!(code, "unavailable", "{message}");
    assert!(message.contains("no response within 300 ms"), "{message}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The call's own deadline (1 s) comes before the 10 s fetch limit: the
    // call ends at its deadline, not the server's 5 s.
    let f = fetcher(|_| {}).await;
    let started = Instant::now();
    let r = f.fetch("GET\nhttp://127.0.0.1:{port}/slow").await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1800), "{took:?}");
    match r {
        Err(CallError::Timeout { .. }) => {}
        Ok(r) => assert_eq!(outcome(&r).0, "unavailable"),
        Err(e) => panic!("unexpected {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_returned_not_followed_and_host_cannot_be_overridden() {
    let f = fetcher(|_| {}).await;
    let r = f
        .fetch("GET\nhttp://127.0.0.1:{port}/redirect")
        .await
        .unwrap();
    assert_eq!(outcome(&r).0, "ok");
    assert_eq!(r.header("x-status"), Some("302"));
    assert_eq!(
        r.header("x-h-location"),
        Some("http://127.0.0.1:1/elsewhere")
    );

    let r = f
        .fetch("GET\nhttp://127.0.0.1:{port}/hello\nHost: internal.example")
        .await
        .unwrap();
    let (code, message) = outcome(&r);
    assert_eq!(code, "invalid");
    assert!(message.contains("\"Host\""), "{message}");

    let r = f.fetch("GET\nftp://127.0.0.1:{port}/hello").await.unwrap();
    assert_eq!(outcome(&r).0, "invalid");

    // https to a server that speaks plain http: a clear failure.
    let r = f
        .fetch("GET\nhttps://127.0.0.1:{port}/hello")
        .await
        .unwrap();
    let (code, message) = outcome(&r);
    assert_eq!(code, "unavailable");
    assert!(message.starts_with("http.fetch to 127.0.0.1:"), "{message}");
}

/// A TLS server on 127.0.0.1 with a fresh self-signed certificate for that
/// address, answering `/hello`. Returns its port, the certificate and the
/// task.
async fn tls_server() -> (
    u16,
    rustls::pki_types::CertificateDer<'static>,
    tokio::task::JoinHandle<()>,
) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert = certified.cert.der().clone();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key.into())
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let app = Router::new().route(
        "/hello",
        get(|| async { (StatusCode::CREATED, [("x-test", "tls")], "hello over tls") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (port, cert, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_fetched_and_an_untrusted_certificate_is_refused() {
    // Trusted (the client was given the server's certificate): a normal
    // answer over TLS.
    let (port, cert, task) = tls_server().await;
    let f = fetcher_on((port, task), vec![cert], |_| {}).await;
    let r = f
        .fetch("GET\nhttps://127.0.0.1:{port}/hello")
        .await
        .unwrap();
    assert_eq!(outcome(&r), ("ok", "hello over tls".into()));
    assert_eq!(r.header("x-status"), Some("201"));
    assert_eq!(r.header("x-h-x-test"), Some("tls"));

    // Not trusted (only the platform's roots): refused in the handshake,
    // saying why.
    let (port, _cert, task) = tls_server().await;
    let f = fetcher_on((port, task), Vec::new(), |_| {}).await;
    let r = f
        .fetch("GET\nhttps://127.0.0.1:{port}/hello")
        .await
        .unwrap();
    let (code, message) = outcome(&r);
    assert_eq!(code, "unavailable");
    assert!(
        message.contains("certificate") || message.contains("Certificate"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetches_in_flight_are_bounded_per_plugin() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    // A server that counts the requests it holds at once.
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (n, m) = (now.clone(), most.clone());
    let app = Router::new().route(
        "/held",
        get(move || {
            let (n, m) = (n.clone(), m.clone());
            async move {
                let at_once = n.fetch_add(1, SeqCst) + 1;
                m.fetch_max(at_once, SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                n.fetch_sub(1, SeqCst);
                "held"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let held_port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let f = fetcher(|c| {
        c.max_fetches_per_plugin = 1;
        c.call_timeout = Duration::from_secs(5);
    })
    .await;
    // The grant names the fetcher's own server; widen it to this one.
    let m = f.host.info(&f.id).unwrap().manifest;
    let m = Manifest::from_toml(&format!(
        "id = \"{}\"\nname = \"x\"\nversion = \"0.1.0\"\napi-version = \"0.1\"\nroutes = [\"/*\"]\n\
         [[capabilities]]\nresource = \"http\"\naccess = \"read\"\nscope = {{ hosts = [\"127.0.0.1:{held_port}\"] }}\n",
        m.id
    ))
    .unwrap();
    f.host.unload(&f.id);
    let id = f
        .host
        .load(m.clone(), &guest("fetcher"), Grants::all_requested(&m))
        .await
        .unwrap();
    let calls = (0..3).map(|_| {
        let host = f.host.clone();
        let id = id.clone();
        tokio::spawn(async move {
            host.call(
                &id,
                Request::post("/", format!("GET\nhttp://127.0.0.1:{held_port}/held")),
            )
            .await
        })
    });
    let started = Instant::now();
    for call in calls.collect::<Vec<_>>() {
        let r = call.await.unwrap().unwrap();
        assert_eq!(outcome(&r), ("ok", "held".into()));
    }
    assert_eq!(most.load(SeqCst), 1, "one fetch at a time");
    assert!(started.elapsed() >= Duration::from_millis(600));
}
