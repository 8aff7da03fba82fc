//! Human and JSON output.

use cnode_node::InitReport;
use cnode_types::{PeerInfo, StatusInfo};
use serde::Serialize;

pub(crate) fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot encode JSON: {e}"),
    }
}

pub(crate) fn print_init(report: &InitReport, as_json: bool) {
    if as_json {
        json(&serde_json::json!({
            "data_dir": report.dir,
            "peer_id": report.peer_id,
            "created_key": report.created_key,
            "created_config": report.created_config,
        }));
        return;
    }
    println!("initialised {}", report.dir.display());
    println!("peer id     {}", report.peer_id);
    if report.created_config {
        println!(
            "config      {}",
            report.dir.join(cnode_node::CONFIG_FILE).display()
        );
    }
}

pub(crate) fn print_status(s: &StatusInfo) {
    println!("peer id     {}", s.peer_id);
    println!("version     {}", s.version);
    println!("api         http://{}", s.api);
    println!("peers       {} connected", s.connected_peers);
    println!(
        "nat         {}{}",
        s.nat_status,
        if s.relay_server {
            " (relaying for others)"
        } else {
            ""
        }
    );
    println!("uptime      {}s", s.uptime_secs);
    match s.lane_port {
        Some(port) => println!("lanes       tcp port {port}"),
        None => println!("lanes       off"),
    }
    println!("data        {}", s.data_dir);
    if let Some(r) = &s.registry {
        println!("registry    {}", crate::registry::summary_line(r));
    }
    for (i, a) in s.listen_addrs.iter().enumerate() {
        println!(
            "{}{a}",
            if i == 0 {
                "listening   "
            } else {
                "            "
            }
        );
    }
    for (i, a) in s.external_addrs.iter().enumerate() {
        println!(
            "{}{a}",
            if i == 0 {
                "external    "
            } else {
                "            "
            }
        );
    }
}

pub(crate) fn print_peers(peers: &[PeerInfo]) {
    if peers.is_empty() {
        println!("no peers connected");
        return;
    }
    println!(
        "{:<54} {:<9} {:<9} {:>9}  ADDRESS",
        "PEER", "TRANSPORT", "DIRECTION", "LATENCY"
    );
    for p in peers {
        let latency = p
            .latency_ms
            .map(|ms| format!("{ms:.1} ms"))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<54} {:<9} {:<9} {:>9}  {}",
            p.peer_id,
            p.transport,
            p.direction,
            latency,
            p.addrs.first().map(String::as_str).unwrap_or("")
        );
    }
}
