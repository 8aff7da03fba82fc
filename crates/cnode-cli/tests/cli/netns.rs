//! Tests in network namespaces the test creates itself (needs root and `ip`):
//! mDNS discovery on a private link, and relay / hole punching through NATs.

use std::{process::Command, time::Duration};

use crate::harness::Cnode;

/// A network namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("cnode-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        ip(&["netns", "add", &name]);
        Self(name)
    }

    fn ip(&self, args: &[&str]) {
        let mut full = vec!["-n", &self.0];
        full.extend_from_slice(args);
        ip(&full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("the `ip` tool (iproute2) is needed");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn two_nodes_on_one_host_find_each_other_by_mdns() {
    // One host (namespace) with a private link. Multicast stays inside it.
    let ns = Netns::new("mdns");
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&["link", "add", "va", "type", "veth", "peer", "name", "vb"]);
    ns.ip(&["addr", "add", "10.231.0.1/24", "dev", "va"]);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);

    let mut a = Cnode::new();
    let mut b = Cnode::new();
    a.netns = Some(ns.0.clone());
    b.netns = Some(ns.0.clone());
    a.init();
    b.init();
    let wild = ["--listen", "/ip4/0.0.0.0/tcp/0", "--mdns-on"];
    let mut ra = a.spawn_run(&wild);
    let mut rb = b.spawn_run(&wild);
    ra.wait_api(Duration::from_secs(20));
    rb.wait_api(Duration::from_secs(20));
    let b_id = b.status_json()["peer_id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let peers = a.peers_json();
        if let Some(p) = peers
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["peer_id"] == b_id)
        {
            // Found through the private link, not configured anywhere.
            assert!(
                p["addrs"][0].as_str().unwrap().contains("10.231.0.1"),
                "{p}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mDNS discovery within 30 s: {peers}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Whichever node's mDNS saw the other first dialled it, so the line is
    // in one of the two logs (the other may stop before its own query).
    let (sa, _, log_a) = ra.terminate(Duration::from_secs(5));
    let (sb, _, log_b) = rb.terminate(Duration::from_secs(5));
    let found = "found on the local network (mDNS)";
    assert!(
        log_a.contains(found) || log_b.contains(found),
        "{log_a}\n---\n{log_b}"
    );
    assert!(sa.success() && sb.success());
}

#[test]
fn relayed_then_hole_punched_connection_between_two_nated_hosts() {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/netns-relay-test.sh"
    );
    // Both parts are required: the relayed connection, and the direct one
    // that DCUtR hole punching makes through the two NATs.
    let out = Command::new("bash")
        .arg(script)
        .arg(crate::harness::BIN)
        .env("REQUIRE_DIRECT", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "relay scenario failed:\n{stdout}\n{stderr}"
    );
    let result = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with("RESULT"))
        .unwrap_or("");
    eprintln!("{result}");
    assert!(result.contains("relayed=yes"), "{stdout}\n{stderr}");
    assert!(result.contains("direct=yes"), "{stdout}\n{stderr}");
}
