//! The chain registry from the command line, against a real anvil:
//! `cnode devnet` with two nodes, their operator keys, a node following the
//! registry, reads, writes, a steward command, reverts and bad settings.
//!
//! Needs anvil (`scripts/setup-chain-tools` installs it into
//! `~/.cache/cnode/chain-tools`); without it `cnode devnet` fails with that
//! instruction, and so does this test.

use std::{
    fs,
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::harness::{Cnode, assert_one_line_error, signal};

/// anvil's development accounts 0 (the devnet's steward), 1 and 2 (the
/// first two nodes' operators).
const STEWARD: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
const OPERATOR_A: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const OPERATOR_B: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
const STEWARD_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A `cnode devnet` in the background; stopped with SIGTERM when dropped.
struct Devnet {
    child: Child,
    out: std::path::PathBuf,
    err: std::path::PathBuf,
}

impl Devnet {
    /// Waits (bounded) for the JSON summary on stdout.
    fn summary(&mut self, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let text = fs::read_to_string(&self.out).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                return v;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "cnode devnet exited with {status}: {}",
                    fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no devnet summary within {limit:?}; stderr: {}",
                fs::read_to_string(&self.err).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (bounded).
    fn stop(&mut self, limit: Duration) -> std::process::ExitStatus {
        if let Some(s) = self.child.try_wait().unwrap() {
            return s;
        }
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("cnode devnet did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: devnet stops its anvil on the way out.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.stop(Duration::from_secs(10));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cnode --data <c> ARGS` and parses its JSON stdout, failing with stderr.
fn json_of(c: &Cnode, args: &[&str]) -> Value {
    let out = c.run_cmd(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn stdout_of(c: &Cnode, args: &[&str]) -> String {
    let out = c.run_cmd(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asks until `check` holds for `args`' JSON (bounded).
fn wait_json(c: &Cnode, args: &[&str], limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let out = c.run_cmd(args);
        if out.status.success()
            && let Ok(v) = serde_json::from_slice::<Value>(&out.stdout)
            && check(&v)
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never matched within {limit:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn operators(route: &Value) -> Vec<String> {
    route["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["operator"].as_str().unwrap().to_owned())
        .collect()
}

fn config_text(c: &Cnode) -> String {
    fs::read_to_string(c.file("config.toml")).unwrap()
}

#[test]
fn devnet_then_registry_reads_writes_and_reverts() {
    let t0 = Instant::now();
    // Node A exists and listens on port 0; node B does not exist yet.
    let a = Cnode::new();
    a.init();
    let default_listen = "listen = [\"/ip4/0.0.0.0/udp/4040/quic-v1\", \"/ip4/0.0.0.0/tcp/4040\"]";
    let before = config_text(&a).replace(
        default_listen,
        "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\", \"/ip4/0.0.0.0/tcp/0\"]",
    );
    assert!(before.contains("/tcp/0\"]"));
    fs::write(a.file("config.toml"), &before).unwrap();
    let b = Cnode::new();

    let port = free_port().to_string();
    let out = a.data.with_file_name("devnet.out");
    let err = a.data.with_file_name("devnet.err");
    let child = a
        .command()
        .args(["devnet", "--node"])
        .arg(&a.data)
        .arg("--node")
        .arg(&b.data)
        .args(["--port", &port, "--json"])
        .stdout(Stdio::from(fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let mut devnet = Devnet { child, out, err };
    let summary = devnet.summary(Duration::from_secs(60));
    eprintln!("devnet ready after {:?}", t0.elapsed());

    let rpc_url = summary["rpc_url"].as_str().unwrap().to_owned();
    let registry = summary["registry_address"].as_str().unwrap().to_owned();
    assert_eq!(rpc_url, format!("http://127.0.0.1:{port}"));
    assert_eq!(summary["chain_id"], 31337);
    assert_eq!(summary["deployed"], true);
    assert_eq!(summary["steward"], STEWARD);
    let nodes = summary["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["operator"], OPERATOR_A);
    assert_eq!(nodes[1]["operator"], OPERATOR_B);
    assert_eq!(
        (nodes[0]["created"].clone(), nodes[1]["created"].clone()),
        (false.into(), true.into())
    );
    for n in nodes {
        assert_eq!(n["regions"], serde_json::json!(["w5q6"]));
        assert_eq!(n["registration"], "registered");
        let addrs = n["multiaddrs"].as_array().unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| {
                let a = a.as_str().unwrap();
                a.starts_with("/ip4/127.0.0.1/") && !a.contains("/tcp/0") && !a.contains("/udp/0/")
            }),
            "{addrs:?}"
        );
    }
    assert_eq!(
        summary["routes"],
        serde_json::json!([{ "region": "w5q6", "operators": [OPERATOR_A, OPERATOR_B] }])
    );

    // A's config: fixed ports, its region and [chain]; everything else as it was.
    let after = config_text(&a);
    let listen_line = after
        .lines()
        .find(|l| l.starts_with("listen = [\"/ip4/0.0.0.0/udp/"))
        .unwrap()
        .to_owned();
    let a_tcp = nodes[0]["multiaddrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .find(|a| a.contains("/tcp/"))
        .unwrap()
        .to_owned();
    let tcp_port = a_tcp.rsplit('/').next().unwrap();
    assert!(
        listen_line.contains(&format!("/tcp/{tcp_port}\"")),
        "{listen_line}"
    );
    let expected_prefix = before
        .replace(
            "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\", \"/ip4/0.0.0.0/tcp/0\"]",
            &listen_line,
        )
        .replace("regions = []", "regions = [\"w5q6\"]");
    assert!(after.starts_with(&expected_prefix), "{after}");
    let chain_table = &after[expected_prefix.len()..];
    assert!(
        chain_table.contains("[chain]")
            && chain_table.contains(&format!("rpc_url = \"{rpc_url}\""))
            && chain_table.contains(&format!("registry_address = \"{registry}\""))
            && chain_table.contains("chain_id = 31337")
            && chain_table.contains("confirmations = 1"),
        "{chain_table}"
    );
    assert!(config_text(&b).contains(&format!("registry_address = \"{registry}\"")));

    // The operator keys: development keys 1 and 2, unprotected, private files.
    let key = json_of(&a, &["registry", "key", "show", "--json"]);
    assert_eq!(key["address"], OPERATOR_A);
    assert_eq!(key["protected"], false);
    assert_eq!(
        json_of(&b, &["registry", "key", "show", "--json"])["address"],
        OPERATOR_B
    );
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&a.file("operator/key.json")), 0o600);
    assert_eq!(mode(&a.file("operator")), 0o700);
    // A key is not replaced without --force, and a new one needs a passphrase.
    let refused = a.run_cmd(&["registry", "key", "new", "--insecure-no-passphrase"]);
    let line = assert_one_line_error(&refused, "key new over a key");
    assert!(
        line.contains("--force") && line.contains(OPERATOR_A),
        "{line}"
    );
    let c = Cnode::new();
    c.init();
    let no_pass = c.run_cmd(&["registry", "key", "new"]);
    let line = assert_one_line_error(&no_pass, "key new without a passphrase");
    assert!(line.contains("CNODE_PASSPHRASE"), "{line}");

    // A protected key: made with CNODE_PASSPHRASE, shown without it, carried
    // to another node as a keystore file (it keeps its passphrase).
    let with_pass = |c: &Cnode, pass: &str, args: &[&str]| {
        c.command()
            .env("CNODE_PASSPHRASE", pass)
            .args(args)
            .output()
            .unwrap()
    };
    let d = Cnode::new();
    let made = with_pass(&d, "correct horse", &["registry", "key", "new", "--json"]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    assert_eq!(made["protected"], true);
    let shown = json_of(&d, &["registry", "key", "show", "--json"]);
    assert_eq!(shown["address"], made["address"]);
    assert_eq!(shown["protected"], true);
    let e = Cnode::new();
    let keystore = d.file("operator/key.json");
    let import = [
        "registry",
        "key",
        "import",
        "--from-keystore",
        keystore.to_str().unwrap(),
        "--json",
    ];
    let wrong = with_pass(&e, "wrong horse", &import);
    let line = assert_one_line_error(&wrong, "wrong passphrase");
    assert!(line.contains("wrong passphrase"), "{line}");
    let no_pass = e.run_cmd(&import);
    let line = assert_one_line_error(&no_pass, "no passphrase for a keystore");
    assert!(line.contains("CNODE_PASSPHRASE"), "{line}");
    let imported = with_pass(&e, "correct horse", &import);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let imported: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(imported["address"], made["address"]);
    assert_eq!(imported["protected"], true);

    // Node A follows the registry (listening where it registered).
    let mut run = a.spawn_run(&["--listen", &a_tcp]);
    run.wait_api(Duration::from_secs(20));
    let listed = wait_json(
        &a,
        &["registry", "nodes", "--json"],
        Duration::from_secs(20),
        |v| v.as_array().is_some_and(|n| n.len() == 2),
    );
    let ops: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["operator"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&OPERATOR_A) && ops.contains(&OPERATOR_B),
        "{ops:?}"
    );
    let status = wait_json(&a, &["status", "--json"], Duration::from_secs(20), |s| {
        s["registry"]["source"] == "live" && s["registry"]["nodes"] == 2
    });
    assert_eq!(status["registry"]["contract"], registry.as_str());
    let human = stdout_of(&a, &["status"]);
    let line = human.lines().find(|l| l.starts_with("registry")).unwrap();
    assert!(
        line.contains("chain 31337") && line.contains("live") && line.contains("2 nodes"),
        "{line}"
    );
    let human = stdout_of(&a, &["registry", "nodes"]);
    assert!(
        human.contains("0x7099…79C8") && human.contains("1 ETH"),
        "{human}"
    );
    let routes = json_of(&a, &["registry", "routes", "--region", "w5q6", "--json"]);
    assert_eq!(operators(&routes[0]), [OPERATOR_A, OPERATOR_B]);

    // A write from A's key.
    let tx = json_of(&a, &["registry", "add-stake", "0.5eth", "--json"]);
    assert!(tx["tx_hash"].as_str().unwrap().starts_with("0x"), "{tx}");
    assert!(tx["gas_used"].as_u64().unwrap() > 0, "{tx}");
    assert!(tx["block_number"].as_u64().is_some(), "{tx}");

    // Reverts are one line, exit code 1.
    let again = b.run_cmd(&[
        "registry", "register", "--stake", "0.1eth", "--region", "w5q6",
    ]);
    let line = assert_one_line_error(&again, "register twice");
    assert_eq!(again.status.code(), Some(1));
    assert!(
        line.contains("AlreadyRegistered") && line.contains(OPERATOR_B),
        "{line}"
    );

    // C holds the steward's key and no [chain]: flags give the chain.
    let key_file = c.data.with_file_name("steward.hex");
    fs::write(&key_file, format!("0x{STEWARD_KEY}\n")).unwrap();
    let imported = json_of(
        &c,
        &[
            "registry",
            "key",
            "import",
            "--private-key-file",
            key_file.to_str().unwrap(),
            "--insecure-no-passphrase",
            "--json",
        ],
    );
    assert_eq!(imported["address"], STEWARD);
    let chain = [
        "--rpc-url",
        &rpc_url,
        "--registry",
        &registry,
        "--chain-id",
        "31337",
    ];
    let register_c = [
        "registry",
        "register",
        "--stake",
        "0.1eth",
        "--region",
        "w5q6",
        "--addr",
        "/ip4/127.0.0.1/tcp/4999",
    ];
    let no_chain = c.run_cmd(&register_c);
    let line = assert_one_line_error(&no_chain, "no chain");
    assert!(
        line.contains("no chain to send to") && line.contains("--rpc-url"),
        "{line}"
    );
    let too_low = c.run_cmd(&[&register_c[..], &chain[..]].concat());
    let line = assert_one_line_error(&too_low, "stake too low");
    assert_eq!(too_low.status.code(), Some(1));
    assert!(
        line.contains("StakeTooLow(sent 0.1 ETH, minStake 1 ETH)"),
        "{line}"
    );
    let wrong_chain = [
        "--rpc-url",
        &rpc_url,
        "--registry",
        &registry,
        "--chain-id",
        "1",
    ];
    let wrong = c.run_cmd(&[&register_c[..], &wrong_chain[..]].concat());
    let line = assert_one_line_error(&wrong, "wrong chain id");
    assert!(line.contains("chain id mismatch"), "{line}");

    // The steward reorders the route; A's node sees it.
    let set = json_of(
        &c,
        &[
            &[
                "registry",
                "steward",
                "set-route",
                "w5q6",
                OPERATOR_B,
                OPERATOR_A,
                "--json",
            ][..],
            &chain[..],
        ]
        .concat(),
    );
    assert!(set["tx_hash"].is_string(), "{set}");
    wait_json(
        &a,
        &["registry", "routes", "--region", "w5q6", "--json"],
        Duration::from_secs(20),
        |r| operators(&r[0]) == [OPERATOR_B, OPERATOR_A],
    );
    // B (not running) moves, then leaves; withdrawing early is refused.
    let moved = json_of(
        &b,
        &[
            "registry",
            "update",
            "--addr",
            "/ip4/127.0.0.1/tcp/4998",
            "--json",
        ],
    );
    assert_eq!(moved["regions"], serde_json::json!(["w5q6"]), "{moved}");
    json_of(&b, &["registry", "deregister", "--json"]);
    let early = b.run_cmd(&["registry", "withdraw"]);
    let line = assert_one_line_error(&early, "withdraw while unbonding");
    assert!(line.contains("StillUnbonding"), "{line}");
    let listed = wait_json(
        &a,
        &["registry", "nodes", "--json"],
        Duration::from_secs(20),
        |v| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|n| n["operator"] == OPERATOR_B && n["status"] == "unbonding")
        },
    );
    let node_b = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["operator"] == OPERATOR_B)
        .unwrap();
    assert_eq!(
        node_b["multiaddrs"],
        serde_json::json!(["/ip4/127.0.0.1/tcp/4998"])
    );

    // A service: proposed by anyone, approved by the steward, listed by A.
    let package = "11".repeat(32);
    let published = json_of(
        &c,
        &[
            &[
                "registry",
                "publish",
                "org.cnode.events",
                "1.0.0",
                "--package",
                &package,
                "--manifest",
                &package,
                "--json",
            ][..],
            &chain[..],
        ]
        .concat(),
    );
    assert!(published["service_key"].is_string(), "{published}");
    json_of(
        &c,
        &[
            &[
                "registry",
                "steward",
                "approve-service",
                "org.cnode.events@1.0.0",
                "--json",
            ][..],
            &chain[..],
        ]
        .concat(),
    );
    wait_json(
        &a,
        &["registry", "services", "--json"],
        Duration::from_secs(20),
        |v| v[0]["id"] == "org.cnode.events" && v[0]["status"] == "approved",
    );

    let not_steward = a.run_cmd(&["registry", "steward", "set-route", "w5q6", OPERATOR_A]);
    let line = assert_one_line_error(&not_steward, "not a steward");
    assert!(line.contains("NotSteward"), "{line}");

    // The reference help.
    let help = stdout_of(&a, &["registry", "--help"]);
    assert!(
        help.contains("steward") && help.contains("AMOUNT") && help.contains("add-stake"),
        "{help}"
    );
    stdout_of(
        &a,
        &["registry", "steward", "propose", "set-params", "--help"],
    );
    stdout_of(&a, &["devnet", "--help"]);

    // Stopping: the node, then the devnet, which takes anvil with it.
    let (status, _, _) = run.terminate(Duration::from_secs(10));
    assert!(status.success(), "node exit: {status}");
    let status = devnet.stop(Duration::from_secs(10));
    assert!(status.success(), "devnet exit: {status}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err(),
        "anvil still answers after devnet stopped"
    );
    eprintln!("whole scenario: {:?}", t0.elapsed());
}

#[test]
fn a_killed_devnet_takes_its_anvil_with_it() {
    let a = Cnode::new();
    a.init();
    let cfg = config_text(&a).replace(
        "listen = [\"/ip4/0.0.0.0/udp/4040/quic-v1\", \"/ip4/0.0.0.0/tcp/4040\"]",
        "listen = [\"/ip4/0.0.0.0/udp/0/quic-v1\", \"/ip4/0.0.0.0/tcp/0\"]",
    );
    fs::write(a.file("config.toml"), cfg).unwrap();
    let port = free_port();
    let out = a.data.with_file_name("devnet.out");
    let err = a.data.with_file_name("devnet.err");
    let child = a
        .command()
        .args(["devnet", "--port", &port.to_string(), "--json"])
        .stdout(Stdio::from(fs::File::create(&out).unwrap()))
        .stderr(Stdio::from(fs::File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let mut devnet = Devnet { child, out, err };
    devnet.summary(Duration::from_secs(60));
    let anvil_up = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(anvil_up());
    // No chance to clean up: SIGKILL. Anvil must go with it.
    signal(devnet.child.id(), "KILL");
    let _ = devnet.child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while anvil_up() {
        assert!(
            Instant::now() < deadline,
            "anvil still answers on {port} 10 s after its devnet was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
