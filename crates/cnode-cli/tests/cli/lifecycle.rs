//! init → run → status → SIGTERM, with the real binary.

use std::time::Duration;

use crate::harness::{Cnode, read};

#[test]
fn init_run_status_peers_sigterm() {
    let a = Cnode::new();
    a.init();
    let key = read(&a.file("node.key"));
    let id = String::from_utf8(a.run_cmd(&["id"]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    assert!(id.starts_with("12D3Koo"), "{id}");

    let mut run = a.spawn_run(&[]);
    let up = run.wait_api(Duration::from_secs(20));
    eprintln!("cnode run → API answering: {up:?}");

    let s = a.status_json();
    assert_eq!(s["peer_id"], id);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["connected_peers"], 0);
    assert!(s["api"].as_str().unwrap().starts_with("127.0.0.1:"));
    let addrs: Vec<&str> = s["listen_addrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        addrs
            .iter()
            .any(|a| a.contains("/tcp/") && !a.contains("/tcp/0/")),
        "{addrs:?}"
    );
    assert!(addrs.iter().any(|a| a.contains("/quic-v1/")), "{addrs:?}");
    assert!(addrs.iter().all(|a| a.ends_with(&format!("/p2p/{id}"))));

    // A second node bootstrapped to the first: both see one peer.
    let b = Cnode::new();
    b.init();
    let mut run_b = b.spawn_run(&["--bootstrap", addrs[0]]);
    run_b.wait_api(Duration::from_secs(20));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let peers = b.peers_json();
        if peers.as_array().unwrap().iter().any(|p| p["peer_id"] == id) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b never connected to a: {peers}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let human = String::from_utf8(b.run_cmd(&["peers"]).stdout).unwrap();
    assert!(human.contains(&id) && human.contains("LATENCY"), "{human}");
    let human = String::from_utf8(b.run_cmd(&["status"]).stdout).unwrap();
    assert!(human.contains("1 connected"), "{human}");

    // DHT through the CLI.
    let put = b.run_cmd(&["dht", "put", "greeting", "sawasdee"]);
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let got = a.run_cmd(&["dht", "get", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "sawasdee");
    let missing = a.run_cmd(&["dht", "get", "nothing-here"]);
    assert!(!missing.status.success());

    let (status, took, _) = run_b.terminate(Duration::from_secs(5));
    assert!(status.success(), "b exit: {status}");
    assert!(took < Duration::from_secs(5));
    // An open event stream (a UI watching transfers) must not delay shutdown.
    let api_addr = s["api"].as_str().unwrap().to_owned();
    let token = std::fs::read_to_string(a.file("api.token")).unwrap();
    let mut sse = std::net::TcpStream::connect(&api_addr).unwrap();
    std::io::Write::write_all(
        &mut sse,
        format!(
            "GET /v1/events HTTP/1.1\r\nHost: {api_addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let (status, took, log) = run.terminate(Duration::from_secs(5));
    drop(sse);
    assert_eq!(status.code(), Some(0), "exit status {status}, log:\n{log}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(log.contains("stopped cleanly"), "{log}");
    assert!(
        !a.file("api.json").exists(),
        "api.json removed at clean shutdown"
    );
    assert_eq!(read(&a.file("node.key")), key, "key untouched");

    // With the node gone, client commands say how to start it.
    let out = a.run_cmd(&["status"]);
    let err = crate::harness::assert_one_line_error(&out, "status with no node");
    assert!(err.contains("cnode run"), "{err}");
}

#[test]
fn bare_cnode_initialises_and_runs() {
    let a = Cnode::new();
    // `cnode` with no command: init + run with defaults. Keep it off the real
    // ports and off the LAN through the environment (flags are for `run`).
    let mut c = a.command();
    c.env("CNODE_API", "127.0.0.1:0")
        .env("CNODE_LISTEN", "/ip4/127.0.0.1/tcp/0")
        .env("CNODE_NO_MDNS", "true")
        .env("CNODE_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let mut run = crate::harness::Running::from_child(child, a.data.clone());
    run.wait_api(Duration::from_secs(20));
    assert!(
        a.file("node.key").exists()
            && a.file("api.token").exists()
            && a.file("config.toml").exists()
    );
    let s = a.status_json();
    assert!(
        s["listen_addrs"][0]
            .as_str()
            .unwrap()
            .starts_with("/ip4/127.0.0.1/tcp/")
    );
    let (status, _, _) = run.terminate(Duration::from_secs(5));
    assert!(status.success());
}

#[test]
fn init_refuses_to_overwrite_the_key() {
    let a = Cnode::new();
    a.init();
    let key = read(&a.file("node.key"));
    let out = a.run_cmd(&["init"]);
    let err = crate::harness::assert_one_line_error(&out, "second init");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(read(&a.file("node.key")), key);
    let out = a.run_cmd(&["init", "--force", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["peer_id"].as_str().unwrap().starts_with("12D3Koo"));
    assert_ne!(read(&a.file("node.key")), key);
}

#[test]
fn help_lists_every_command() {
    let out = std::process::Command::new(crate::harness::BIN)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for c in ["init", "run", "status", "peers", "id", "dht"] {
        assert!(text.contains(c), "--help lacks {c}");
    }
}

/// On AMD CPUs the node runs with glibc's `rep movsb` threshold raised
/// (`tune::memcpy_threshold`), unless `GLIBC_TUNABLES` already sets it.
#[test]
fn memcpy_threshold_is_raised_on_amd_unless_already_set() {
    // The environment as the process holds it (glibc's loader writes into
    // the variable while parsing it, so it is searched as bytes).
    fn environ(pid: u32) -> String {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap())
            .into_owned()
    }
    let amd = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .contains("AuthenticAMD");
    let raised = amd && cfg!(all(target_arch = "x86_64", target_env = "gnu"));
    let a = Cnode::new();
    a.init();
    let mut run = a.spawn_run_env(&[], &[("GLIBC_TUNABLES", "glibc.malloc.tcache_count=7")]);
    run.wait_api(Duration::from_secs(20));
    let env = environ(run.child.id());
    assert!(
        env.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=7"),
        "{env}"
    );
    assert_eq!(
        env.contains("glibc.cpu.x86_rep_movsb_threshold=1073741824"),
        raised,
        "amd={amd}: {env}"
    );
    assert_eq!(env.contains("CNODE_MEMCPY_TUNED=1"), raised, "{env}");
    // The node restarted itself with the same arguments and under its own
    // name (not "exe", as `/proc/self/exe` would have it), and works.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", run.child.id())).unwrap();
    assert!(String::from_utf8_lossy(&cmdline).contains("--no-mdns"));
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm(run.child.id()).trim_end(), "cnode");
    for task in std::fs::read_dir(format!("/proc/{}/task", run.child.id())).unwrap() {
        let name = std::fs::read_to_string(task.unwrap().path().join("comm")).unwrap();
        assert_ne!(
            name.trim_end(),
            "exe",
            "a thread is named after /proc/self/exe"
        );
    }
    assert!(a.status_json()["peer_id"].is_string());
    let (status, _, log) = run.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{log}");

    // Set by the user: left alone.
    let mut run = a.spawn_run_env(
        &[],
        &[("GLIBC_TUNABLES", "glibc.cpu.x86_rep_movsb_threshold=4096")],
    );
    run.wait_api(Duration::from_secs(20));
    let env = environ(run.child.id());
    assert!(
        env.contains("glibc.cpu.x86_rep_movsb_threshold=4096"),
        "{env}"
    );
    assert!(!env.contains("1073741824"), "{env}");
    let (status, _, log) = run.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{log}");

    // Already re-executed once (the mark is set) but the tunable is gone, as
    // when glibc drops it: no second exec, however often it would be asked.
    let mut run = a.spawn_run_env(&[], &[("CNODE_MEMCPY_TUNED", "1")]);
    run.wait_api(Duration::from_secs(20));
    let env = environ(run.child.id());
    assert!(!env.contains("x86_rep_movsb_threshold"), "{env}");
    let (status, _, log) = run.terminate(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{log}");
}
