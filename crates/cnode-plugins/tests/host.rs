//! The plugin host against real components: the test guests in
//! `tests/guests/` are built for `wasm32-wasip2` on first use (cached in
//! `<target>/plugin-guests`), and the host runs them with in-memory fakes
//! for records and HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use cnode_plugins::{
    Access, CallError, Capability, Grants, HostConfig, HostError, HostRecords, HttpFetcher,
    LoadError, Manifest, PluginHost, PluginId, PluginRecord, Request, Resource, Response, Services,
    services::{OutgoingRequest, Publish, RecordPage, RecordQuery},
};

#[path = "host/http.rs"]
mod http;

// ---------------------------------------------------------------- guests

/// Builds `tests/guests/<name>` (cargo makes later builds no-ops) and
/// returns the component bytes.
fn guest(name: &str) -> Vec<u8> {
    let wasm = cnode_plugins::test_guests::build(name).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read(&wasm).unwrap_or_else(|e| panic!("read {}: {e}", wasm.display()))
}

// ----------------------------------------------------------------- fakes

/// Records in a vector; `publish` stores, `query` filters by collection and
/// region.
#[derive(Default)]
struct FakeRecords {
    records: Mutex<Vec<PluginRecord>>,
}

#[async_trait]
impl HostRecords for FakeRecords {
    async fn query(&self, _: &PluginId, q: RecordQuery) -> Result<RecordPage, HostError> {
        let records = self.records.lock().unwrap();
        let records = records
            .iter()
            .rev()
            .filter(|r| q.collection.as_ref().is_none_or(|c| *c == r.collection))
            .filter(|r| {
                q.region
                    .as_ref()
                    .is_none_or(|g| r.region.starts_with(g.as_str()))
            })
            .take(q.limit.max(1) as usize)
            .cloned()
            .collect();
        Ok(RecordPage {
            records,
            next_cursor: None,
        })
    }

    async fn publish(&self, _: &PluginId, p: Publish) -> Result<String, HostError> {
        let id = blake3::hash(p.body.to_string().as_bytes())
            .to_hex()
            .to_string();
        self.records.lock().unwrap().push(PluginRecord {
            id: id.clone(),
            author: "did:key:plugin-publisher".into(),
            collection: p.collection,
            key: p.key,
            region: p.region,
            created_at: 1,
            expires_at: p.expires_at,
            deleted: false,
            body: p.body,
        });
        Ok(id)
    }
}

/// Answers 200 to every request it gets, and remembers the URLs.
#[derive(Default)]
struct FakeHttp {
    urls: Mutex<Vec<String>>,
}

#[async_trait]
impl HttpFetcher for FakeHttp {
    async fn fetch(
        &self,
        _: &PluginId,
        r: OutgoingRequest,
        _: usize,
    ) -> Result<Response, HostError> {
        self.urls.lock().unwrap().push(r.url.to_string());
        Ok(Response {
            status: 200,
            headers: vec![],
            body: b"fake".to_vec(),
        })
    }
}

struct Harness {
    host: PluginHost,
    records: Arc<FakeRecords>,
    http: Arc<FakeHttp>,
    dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    harness_in(dir)
}

fn harness_in(dir: tempfile::TempDir) -> Harness {
    let config = HostConfig::new(dir.path());
    harness_with(dir, config)
}

fn harness_with(dir: tempfile::TempDir, config: HostConfig) -> Harness {
    let records = Arc::new(FakeRecords::default());
    let http = Arc::new(FakeHttp::default());
    let services = Services {
        records: records.clone(),
        http: http.clone(),
        ..Services::default()
    };
    let host = PluginHost::new(config, services).unwrap();
    Harness {
        host,
        records,
        http,
        dir,
    }
}

fn manifest(id: &str, extra: &str) -> Manifest {
    Manifest::from_toml(&format!(
        "id = \"{id}\"\nname = \"{id}\"\nversion = \"0.1.0\"\napi-version = \"0.1\"\nroutes = [\"/*\"]\n{extra}"
    ))
    .unwrap()
}

const ECHO_CAPS: &str = r#"
[[capabilities]]
resource = "kv"
access = "write"

[[capabilities]]
resource = "records"
access = "write"
scope = { collections = ["org.test.echo"], regions = ["u33d"] }

[[capabilities]]
resource = "log"
access = "write"
"#;

async fn load_echo(h: &Harness) -> PluginId {
    let m = manifest("org.test.echo", ECHO_CAPS);
    let grants = Grants::all_requested(&m);
    h.host.load(m, &guest("echo"), grants).await.unwrap()
}

async fn load_plain(h: &Harness, name: &str) -> PluginId {
    let m = manifest(&format!("org.test.{name}"), "");
    h.host.load(m, &guest(name), Grants::none()).await.unwrap()
}

async fn assert_echo_serves(h: &Harness, echo: &PluginId) {
    let r = h
        .host
        .call(echo, Request::post("/echo?still=here", "alive"))
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"alive"[..]));
}

fn text(r: &Response) -> &str {
    std::str::from_utf8(&r.body).unwrap()
}

// ----------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_is_fast() {
    let h = harness();
    let echo = load_echo(&h).await;

    let r = h
        .host
        .call(&echo, Request::post("/echo?a=1", "hello"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello");
    assert_eq!(r.header("x-method"), Some("POST"));
    assert_eq!(r.header("x-query"), Some("a=1"));

    // A fresh instance per call from the InstancePre: cheap even in a debug
    // build of the host (the guest itself is compiled by Cranelift).
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        h.host.call(&echo, Request::get("/echo")).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let (p50, p99) = (times[100], times[198]);
    eprintln!("echo: instantiate + handle p50 {p50:?}, p99 {p99:?}");
    assert!(p50 < Duration::from_millis(20), "p50 {p50:?}");

    let stats = &h.host.stats()[0];
    assert_eq!((stats.calls, stats.ok), (201, 201));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_uses_the_host_interfaces() {
    let h = harness();
    let echo = load_echo(&h).await;
    let call = |path: &str, body: &str| h.host.call(&echo, Request::post(path, body));

    // kv
    assert_eq!(
        text(&call("/kv/set?key=greeting", "hi there").await.unwrap()),
        "ok"
    );
    assert_eq!(
        text(&call("/kv/get?key=greeting", "").await.unwrap()),
        "hi there"
    );
    assert_eq!(call("/kv/get?key=nothing", "").await.unwrap().status, 404);
    call("/kv/set?key=greeting2", "x").await.unwrap();
    assert_eq!(
        text(&call("/kv/keys?prefix=greet", "").await.unwrap()),
        "greeting,greeting2"
    );

    // log (and stdout captured into the log), clock, random
    assert_eq!(
        text(&call("/log", "a message from the guest").await.unwrap()),
        "logged"
    );
    let now: u64 = text(&call("/clock", "").await.unwrap()).parse().unwrap();
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(host_now.abs_diff(now) < 5_000);
    assert_eq!(text(&call("/random", "").await.unwrap()), "16");

    // records: publish (inside the grant), then query it back
    let r = call(
        "/publish?collection=org.test.echo&region=u33dc0",
        "{\"title\":\"picnic\"}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", text(&r));
    assert_eq!(text(&r).len(), 64);
    assert_eq!(
        h.records.records.lock().unwrap()[0].collection,
        "org.test.echo"
    );
    // The grant has no records:read... but records:write includes read.
    let r = call("/query?collection=org.test.echo&region=u33d", "")
        .await
        .unwrap();
    assert_eq!(text(&r), "{\"title\":\"picnic\"}");
    // A body that is not JSON is refused as invalid, not denied.
    let r = call(
        "/publish?collection=org.test.echo&region=u33dc0",
        "not json",
    )
    .await
    .unwrap();
    assert!(
        text(&r).starts_with("invalid: body is not JSON"),
        "{}",
        text(&r)
    );
    // Outside the region: denied.
    let r = call("/publish?collection=org.test.echo&region=gcpvj0", "{}")
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", text(&r));

    // tick and on-record
    h.host.tick(&echo).await.unwrap();
    h.host.tick(&echo).await.unwrap();
    let ticks = h
        .host
        .kv()
        .get(&echo, "ticks".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ticks.len(), 2);
    let record = h.records.records.lock().unwrap()[0].clone();
    assert!(h.host.on_record(&echo, &record).await.unwrap());
    let last = h
        .host
        .kv()
        .get(&echo, "last-record".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, record.id.as_bytes());
    let elsewhere = PluginRecord {
        region: "gcpvj0".into(),
        ..record
    };
    assert!(
        !h.host.on_record(&echo, &elsewhere).await.unwrap(),
        "outside the grant: not delivered"
    );

    let stats = &h.host.stats()[0];
    assert_eq!(stats.host_calls["records"].denied, 1);
    assert!(stats.host_calls["kv"].allowed >= 6);
    assert_eq!(stats.host_calls["log"].allowed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_within_a_second() {
    let h = harness();
    let echo = load_echo(&h).await;
    let looper = load_plain(&h, "looper").await;

    let t = Instant::now();
    let err = h.host.call(&looper, Request::get("/")).await.unwrap_err();
    let took = t.elapsed();
    assert!(matches!(err, CallError::Timeout { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "plugin org.test.looper stopped: exceeded 1 s"
    );
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
    eprintln!("looper stopped after {took:?}");

    // The host keeps serving, the looper too (with a fresh instance).
    assert_echo_serves(&h, &echo).await;
    let stats = h.host.stats();
    let looper_stats = stats.iter().find(|s| s.plugin == looper).unwrap();
    assert_eq!((looper_stats.calls, looper_stats.timeouts), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_plugins_are_served_while_one_loops() {
    let h = harness();
    let echo = load_echo(&h).await;
    let looper = load_plain(&h, "looper").await;

    // Two loopers hold both worker threads' worth of guests; echo calls
    // still complete because a looping guest yields at every epoch tick.
    let spin = |host: PluginHost, id: PluginId| {
        tokio::spawn(async move { host.call(&id, Request::get("/")).await })
    };
    let a = spin(h.host.clone(), looper.clone());
    let b = spin(h.host.clone(), looper.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    for _ in 0..10 {
        assert_echo_serves(&h, &echo).await;
    }
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "echo took {:?} beside the loopers",
        t.elapsed()
    );
    assert!(matches!(a.await.unwrap(), Err(CallError::Timeout { .. })));
    assert!(matches!(b.await.unwrap(), Err(CallError::Timeout { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_stops_a_loop_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        fuel_per_call: Some(20_000_000),
        ..HostConfig::new(dir.path())
    };
    let h = harness_with(dir, config);
    let echo = load_echo(&h).await;
    let looper = load_plain(&h, "looper").await;

    let t = Instant::now();
    let err = h.host.call(&looper, Request::get("/")).await.unwrap_err();
    assert_eq!(
        err,
        CallError::OutOfFuel {
            plugin: looper.clone(),
            fuel: 20_000_000
        }
    );
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "fuel ran out after {:?}",
        t.elapsed()
    );
    assert_echo_serves(&h, &echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_memory_cap_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = HostConfig {
        memory_limit: 8 << 20,
        ..HostConfig::new(dir.path())
    };
    let h = harness_with(dir, config);
    let echo = load_echo(&h).await;
    let hog = load_plain(&h, "hog").await;
    let err = h.host.call(&hog, Request::get("/")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin org.test.hog stopped: memory limit of 8 MiB reached"
    );
    assert_echo_serves(&h, &echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_is_trapped_at_the_cap() {
    let h = harness();
    let echo = load_echo(&h).await;
    let hog = load_plain(&h, "hog").await;

    let t = Instant::now();
    let err = h.host.call(&hog, Request::get("/")).await.unwrap_err();
    assert_eq!(
        err,
        CallError::MemoryLimit {
            plugin: hog.clone(),
            limit: 64 << 20
        }
    );
    assert_eq!(
        err.to_string(),
        "plugin org.test.hog stopped: memory limit of 64 MiB reached"
    );
    eprintln!("hog stopped after {:?}", t.elapsed());

    assert_echo_serves(&h, &echo).await;
    let err = h.host.call(&hog, Request::get("/")).await.unwrap_err();
    assert!(
        matches!(err, CallError::MemoryLimit { .. }),
        "a fresh instance, the same fate"
    );
    let stats = h.host.stats();
    assert_eq!(
        stats
            .iter()
            .find(|s| s.plugin == hog)
            .unwrap()
            .memory_limits,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_calls_fail_inside_the_guest_and_are_audited() {
    let h = harness();
    let echo = load_echo(&h).await;
    let m = manifest(
        "org.test.sneaky",
        r#"
[[capabilities]]
resource = "records"
access = "write"
scope = { collections = ["org.test.sneaky"] }

[[capabilities]]
resource = "http"
access = "read"
scope = { hosts = ["api.example.com"] }
"#,
    );
    let grants = Grants::all_requested(&m);
    let sneaky = h.host.load(m, &guest("sneaky"), grants).await.unwrap();

    let r = h.host.call(&sneaky, Request::get("/")).await.unwrap();
    assert_eq!(text(&r), "publish=denied;fetch=denied;allowed=fetched 200");
    assert!(
        h.records.records.lock().unwrap().is_empty(),
        "nothing was published"
    );
    assert_eq!(
        *h.http.urls.lock().unwrap(),
        ["https://api.example.com/ok"],
        "only the allowed host was fetched"
    );

    let audit = h.host.audit(10);
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert_eq!(
        (audit[0].plugin.as_str(), audit[0].call.as_str()),
        ("org.test.sneaky", "records.publish")
    );
    assert!(
        audit[0].reason.contains("org.evil.spam"),
        "{}",
        audit[0].reason
    );
    assert_eq!(audit[1].call, "http.fetch");
    assert!(
        audit[1].reason.contains("evil.example.net"),
        "{}",
        audit[1].reason
    );

    // The same entries are in <data>/plugins/audit.jsonl.
    let file = std::fs::read_to_string(h.dir.path().join("plugins/audit.jsonl")).unwrap();
    let lines: Vec<cnode_plugins::AuditEntry> = file
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, audit);

    let stats = h.host.stats();
    let s = stats.iter().find(|s| s.plugin == sneaky).unwrap();
    assert_eq!(
        (
            s.host_calls["records"].denied,
            s.host_calls["http"].denied,
            s.host_calls["http"].allowed
        ),
        (1, 1, 1)
    );
    assert_echo_serves(&h, &echo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_grant_takes_effect_on_the_next_call() {
    let h = harness();
    let echo = load_echo(&h).await;
    assert_eq!(
        text(
            &h.host
                .call(&echo, Request::post("/kv/set?key=a", "1"))
                .await
                .unwrap()
        ),
        "ok"
    );

    let without_kv: Vec<Capability> = h
        .host
        .info(&echo)
        .unwrap()
        .grants
        .capabilities()
        .iter()
        .filter(|c| c.resource != Resource::Kv)
        .cloned()
        .collect();
    h.host.set_grants(&echo, Grants::new(without_kv)).unwrap();
    let r = h
        .host
        .call(&echo, Request::post("/kv/set?key=a", "2"))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(text(&r), "denied: kv:write is not granted");
    let r = h
        .host
        .call(&echo, Request::get("/kv/get?key=a"))
        .await
        .unwrap();
    assert_eq!(text(&r), "denied: kv:read is not granted");
    assert_eq!(h.host.audit(10).len(), 2);

    // Granting it back works the same way; the value was never changed.
    let m = h.host.info(&echo).unwrap().manifest;
    h.host.set_grants(&echo, Grants::all_requested(&m)).unwrap();
    assert_eq!(
        text(
            &h.host
                .call(&echo, Request::get("/kv/get?key=a"))
                .await
                .unwrap()
        ),
        "1"
    );

    // Only requested capabilities can be granted.
    let err = h
        .host
        .set_grants(
            &echo,
            Grants::new([Capability::new(Resource::Blobs, Access::Read)]),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin org.test.echo: grants[0] (blobs:read) is not one of the capabilities the manifest requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_is_reported_and_the_next_call_gets_a_fresh_instance() {
    let h = harness();
    let echo = load_echo(&h).await;
    let err = h.host.call(&echo, Request::get("/trap")).await.unwrap_err();
    let CallError::Trap { message, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("unreachable"), "{message}");
    assert!(
        message.contains("asked to trap"),
        "the panic message is kept: {message}"
    );
    assert_echo_serves(&h, &echo).await;
    assert_eq!(h.host.stats()[0].traps, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_components_are_refused() {
    let h = harness();
    let echo = load_echo(&h).await;
    let cases: [(&str, Vec<u8>); 4] = [
        ("empty", Vec::new()),
        ("garbage", b"this is not wasm at all".to_vec()),
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        ("truncated component", guest("echo")[..1000].to_vec()),
    ];
    for (i, (what, bytes)) in cases.into_iter().enumerate() {
        let m = manifest(&format!("org.test.bad{i}"), "");
        let err = h.host.load(m, &bytes, Grants::none()).await.unwrap_err();
        assert!(
            matches!(err, LoadError::Malformed { .. }),
            "{what}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "plugin org.test.bad{i}: not a valid WebAssembly component: "
            )),
            "{msg}"
        );
        eprintln!("{what}: {msg}");
        assert_echo_serves(&h, &echo).await;
    }
    assert_eq!(h.host.plugin_ids(), std::slice::from_ref(&echo));

    // Loading the same id twice, and grants the manifest does not request.
    let err = load_echo_again(&h).await;
    assert_eq!(err.to_string(), "plugin org.test.echo is already loaded");
    let m = manifest("org.test.greedy", "");
    let err = h
        .host
        .load(
            m,
            &guest("echo"),
            Grants::new([Capability::new(Resource::Kv, Access::Write)]),
        )
        .await;
    assert!(matches!(err, Err(LoadError::Grants { .. })), "{err:?}");
    assert_echo_serves(&h, &echo).await;
}

async fn load_echo_again(h: &Harness) -> LoadError {
    let m = manifest("org.test.echo", ECHO_CAPS);
    h.host
        .load(m, &guest("echo"), Grants::none())
        .await
        .unwrap_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_with_clear_errors() {
    let h = harness();
    let echo = load_echo(&h).await;
    let base = "id = \"org.test.x\"\nname = \"x\"\nversion = \"0.1.0\"\napi-version = \"0.1\"\n";
    let cases = [
        (
            format!("{base}homepage = \"https://x\"\n"),
            "unknown field `homepage`",
        ),
        (
            base.replace("org.test.x", "Not_An_Id"),
            "plugin.toml: id: \"Not_An_Id\" has 1 labels",
        ),
        (
            base.replace("org.test.x", "org..x"),
            "plugin.toml: id: \"org..x\" has an empty label",
        ),
        (
            base.replace("api-version = \"0.1\"", "api-version = \"2.0\""),
            "plugin.toml: api-version: \"2.0\" is not supported; this node implements plugin API \"0.1\"",
        ),
        (
            format!("{base}[[capabilities]]\nresource = \"kv\"\naccess = \"root\"\n"),
            "plugin.toml: capabilities[0].access: expected read, write or admin",
        ),
    ];
    for (text, want) in cases {
        let err = Manifest::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains(want), "got {err:?}, want {want:?}");
        assert_echo_serves(&h, &echo).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_unload_and_the_compile_cache() {
    let h = harness();
    let m = manifest("org.test.echo", ECHO_CAPS);
    let m = Manifest {
        routes: vec!["/echo".to_owned().try_into().unwrap()],
        ..m
    };
    let echo = h
        .host
        .load(m, &guest("echo"), Grants::none())
        .await
        .unwrap();
    let err = h
        .host
        .call(&echo, Request::get("/kv/get?key=a"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin org.test.echo has no route for /kv/get"
    );
    assert_echo_serves(&h, &echo).await;

    // The compiled component was cached; a second host on the same data
    // directory loads it from there.
    let cache: Vec<_> = std::fs::read_dir(h.dir.path().join("plugins/cache"))
        .unwrap()
        .collect();
    assert_eq!(cache.len(), 1);
    assert!(h.host.unload(&echo));
    assert!(!h.host.unload(&echo));
    assert_eq!(
        h.host.call(&echo, Request::get("/echo")).await.unwrap_err(),
        CallError::NotLoaded(echo.clone())
    );

    let Harness { host, dir, .. } = h;
    drop(host);
    let h = harness_in(dir);
    let t = Instant::now();
    let echo = load_echo(&h).await;
    eprintln!("load from the cache: {:?}", t.elapsed());
    assert_echo_serves(&h, &echo).await;
    assert_eq!(
        std::fs::read_dir(h.dir.path().join("plugins/cache"))
            .unwrap()
            .count(),
        1
    );
}

/// A compiler command that cannot run (here: a program that does not exist,
/// or one that exits with an error) is not fatal: the host compiles
/// in-process, caches the result and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_compiler_process_falls_back_to_compiling_in_process() {
    for program in ["/nonexistent/cnode-compiler", "false"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = HostConfig::new(dir.path());
        config.compiler = Some(cnode_plugins::CompilerCommand {
            program: program.into(),
            args: vec!["__compile-plugin".into()],
        });
        let h = harness_with(dir, config);
        let echo = load_echo(&h).await;
        assert_echo_serves(&h, &echo).await;
        let cached: Vec<_> = std::fs::read_dir(h.dir.path().join("plugins/cache"))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(cached.len(), 1, "{program}: {cached:?}");
        assert!(cached[0].ends_with(".cwasm"), "{cached:?}");
    }
}

/// An idle plugin's compiled code is unmapped and mapped again from the
/// cache on its next call, which then works as before (its kv data kept);
/// a plugin used recently, or loaded without the cache, stays resident.
/// Calls and instantiations land in the latency histograms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_plugins_are_unmapped_and_come_back_on_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = HostConfig::new(dir.path());
    config.idle_unload = Some(Duration::from_secs(1));
    let h = harness_with(dir, config);
    let echo = load_echo(&h).await;
    let set = h
        .host
        .call(&echo, Request::post("/kv/set?key=k", "kept"))
        .await
        .unwrap();
    assert_eq!(text(&set), "ok");

    // Used just now: stays.
    assert!(h.host.unload_idle().await.is_empty());
    assert_eq!(h.host.is_resident(&echo).await, Some(true));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.host.unload_idle().await, vec![echo.clone()]);
    assert_eq!(h.host.is_resident(&echo).await, Some(false));
    assert!(h.host.unload_idle().await.is_empty(), "unloaded once");

    let got = h
        .host
        .call(&echo, Request::get("/kv/get?key=k"))
        .await
        .unwrap();
    assert_eq!((got.status, text(&got)), (200, "kept"));
    assert_eq!(h.host.is_resident(&echo).await, Some(true));
    assert_echo_serves(&h, &echo).await;

    let stats = &h.host.stats()[0];
    assert_eq!(stats.latency.count, 3);
    assert_eq!(stats.instantiate.count, 3);
    assert!(stats.latency.p50_us > 0 && stats.latency.p50_us <= stats.latency.max_us);
    assert!(stats.instantiate.p50_us <= stats.latency.max_us);

    // Without the compiled-code cache there is nothing to map again from.
    let dir = tempfile::tempdir().unwrap();
    let mut config = HostConfig::new(dir.path());
    config.precompile_cache = false;
    config.idle_unload = Some(Duration::ZERO);
    let h = harness_with(dir, config);
    let echo = load_echo(&h).await;
    assert!(h.host.unload_idle().await.is_empty());
    assert_echo_serves(&h, &echo).await;
}
