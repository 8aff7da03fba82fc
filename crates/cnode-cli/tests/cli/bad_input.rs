//! Bad input: a clear one-line error, a non-zero exit, and nothing destroyed.

use std::time::Duration;

use crate::harness::{Cnode, assert_one_line_error, read};

#[test]
fn malformed_multiaddr() {
    let a = Cnode::new();
    a.init();
    for args in [
        &["run", "--listen", "/ip4/999.0.0.1/tcp/1"][..],
        &["run", "--bootstrap", "not-a-multiaddr"][..],
        &["run", "--api", "localhost"][..],
    ] {
        let out = a.run_cmd(args);
        let (err, lines) = crate::harness::stderr_lines(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(lines, 1, "{args:?}: {err}");
        assert!(err.contains("invalid value"), "{args:?}: {err}");
    }
    assert!(a.file("node.key").exists());
}

#[test]
fn api_port_already_in_use() {
    let a = Cnode::new();
    a.init();
    let key = read(&a.file("node.key"));
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = a.run_cmd(&[
        "run",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--api",
        &format!("127.0.0.1:{port}"),
    ]);
    let err = assert_one_line_error(&out, "API port in use");
    assert!(
        err.contains(&port.to_string()) && err.to_lowercase().contains("in use"),
        "{err}"
    );
    assert_eq!(read(&a.file("node.key")), key);
    assert!(!a.file("api.json").exists());
}

#[test]
fn p2p_port_already_in_use() {
    let a = Cnode::new();
    a.init();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = a.run_cmd(&[
        "run",
        "--no-mdns",
        "--api",
        "127.0.0.1:0",
        "--listen",
        &format!("/ip4/127.0.0.1/tcp/{port}"),
    ]);
    let err = assert_one_line_error(&out, "p2p port in use");
    assert!(err.contains(&port.to_string()), "{err}");
}

#[test]
fn unwritable_data_directory() {
    let a = Cnode::new();
    // A data directory under a regular file can never be created, even by root.
    std::fs::create_dir_all(a.data.parent().unwrap()).unwrap();
    let blocker = a.data.parent().unwrap().join("file");
    std::fs::write(&blocker, b"keep me").unwrap();
    let bad = blocker.join("data");
    for cmd in [&["init"][..], &["run", "--no-mdns"][..], &[][..]] {
        let out = std::process::Command::new(crate::harness::BIN)
            .arg("--data")
            .arg(&bad)
            .args(cmd)
            .env("CNODE_LOG", "warn")
            .env("CNODE_API", "127.0.0.1:0")
            .env("CNODE_LISTEN", "/ip4/127.0.0.1/tcp/0")
            .output()
            .unwrap();
        let err = assert_one_line_error(&out, &format!("unwritable data dir {cmd:?}"));
        assert!(
            err.contains(&*bad.to_string_lossy()) || err.contains("file"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&blocker).unwrap(), b"keep me");

    // A data directory we cannot write into (read-only bind is not available to
    // tests; /proc is never writable).
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["--data", "/proc/cnode-test", "init"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "data dir in /proc");
}

#[test]
fn corrupted_config_toml() {
    let a = Cnode::new();
    a.init();
    for (text, expect) in [
        ("[network\nlisten = 1", "line"),
        ("[network]\nmdns = \"yes please\"\n", "line 2"),
        ("[network]\nlisten = [\"/ip4/1.2.3.4/tcp/x\"]\n", "line 2"),
        ("[netwrok]\n", "netwrok"),
        ("\u{0}\u{1}binary garbage", "line"),
    ] {
        std::fs::write(a.file("config.toml"), text).unwrap();
        let out = a.run_cmd(&[
            "run",
            "--no-mdns",
            "--api",
            "127.0.0.1:0",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ]);
        let err = assert_one_line_error(&out, &format!("config {text:?}"));
        assert!(
            err.contains("config.toml") && err.contains(expect),
            "{text:?}: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(a.file("config.toml")).unwrap(),
            text,
            "config untouched"
        );
    }
}

#[test]
fn truncated_key_file() {
    let a = Cnode::new();
    a.init();
    let key = read(&a.file("node.key"));
    std::fs::write(a.file("node.key"), &key[..key.len() / 2]).unwrap();
    for cmd in [
        &["run", "--no-mdns", "--api", "127.0.0.1:0"][..],
        &["id"][..],
    ] {
        let out = a.run_cmd(cmd);
        let err = assert_one_line_error(&out, "truncated key");
        assert!(
            err.contains("corrupted") && err.contains("node.key"),
            "{err}"
        );
    }
    // Neither `run` nor a bare `cnode` replaces the damaged key.
    assert_eq!(read(&a.file("node.key")), &key[..key.len() / 2]);
    std::fs::write(a.file("node.key"), b"").unwrap();
    let out = a.run_cmd(&["id"]);
    assert_one_line_error(&out, "empty key");
    assert_eq!(read(&a.file("node.key")).len(), 0);
}

#[test]
fn second_node_on_the_same_data_dir_is_refused() {
    let a = Cnode::new();
    a.init();
    let mut run = a.spawn_run(&[]);
    run.wait_api(Duration::from_secs(20));
    let out = a.run_cmd(&[
        "run",
        "--no-mdns",
        "--api",
        "127.0.0.1:0",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
    ]);
    let err = assert_one_line_error(&out, "second node");
    assert!(err.contains("already running"), "{err}");
    // The first node is unharmed.
    assert_eq!(a.status_json()["connected_peers"], 0);
    let (status, _, _) = run.terminate(Duration::from_secs(5));
    assert!(status.success());
}
