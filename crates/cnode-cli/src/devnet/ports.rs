//! Ports for the nodes of a devnet on one machine: a listen port of 0, or
//! one another node of the devnet uses or that is taken, becomes a fixed
//! free port; so does a clashing API port.

use std::{
    collections::HashSet,
    net::{SocketAddr, TcpListener, UdpSocket},
};

use cnode_node::ConfigFile;
use libp2p::{Multiaddr, multiaddr::Protocol};

/// The TCP/UDP ports in a multiaddr.
pub(super) fn ports(a: &Multiaddr) -> Vec<u16> {
    a.iter()
        .filter_map(|p| match p {
            Protocol::Tcp(port) | Protocol::Udp(port) => Some(port),
            _ => None,
        })
        .collect()
}

/// The node's listen addresses with port 0, and ports another devnet node
/// uses or that are taken, replaced by one fixed free port.
pub(super) fn plan_listen(config: &ConfigFile, used: &mut HashSet<u16>) -> Vec<Multiaddr> {
    let listen = &config.network.listen;
    let mine: HashSet<u16> = listen.iter().flat_map(ports).collect();
    let replace: HashSet<u16> = mine
        .iter()
        .copied()
        .filter(|&p| p == 0 || used.contains(&p) || !p2p_port_free(p))
        .collect();
    let out = if replace.is_empty() {
        listen.clone()
    } else {
        let start = replace.iter().copied().max().unwrap_or(0);
        let fresh = free_port(start, used, &mine);
        listen
            .iter()
            .map(|a| {
                a.iter()
                    .map(|p| match p {
                        Protocol::Tcp(port) if replace.contains(&port) => Protocol::Tcp(fresh),
                        Protocol::Udp(port) if replace.contains(&port) => Protocol::Udp(fresh),
                        p => p,
                    })
                    .collect()
            })
            .collect()
    };
    used.extend(out.iter().flat_map(ports));
    out
}

/// A new API address when the configured one clashes with another devnet
/// node or is taken (port 0 is left alone).
pub(super) fn plan_api(config: &ConfigFile, used: &mut HashSet<u16>) -> Option<SocketAddr> {
    let api = config.api.listen;
    if api.port() == 0 {
        return None;
    }
    if !used.contains(&api.port()) && TcpListener::bind(api).is_ok() {
        used.insert(api.port());
        return None;
    }
    let port = (api.port().saturating_add(1)..=u16::MAX)
        .take(1000)
        .find(|&p| !used.contains(&p) && TcpListener::bind(SocketAddr::new(api.ip(), p)).is_ok())?;
    used.insert(port);
    Some(SocketAddr::new(api.ip(), port))
}

/// Whether TCP and UDP `port` are free on all interfaces.
fn p2p_port_free(port: u16) -> bool {
    port != 0
        && TcpListener::bind(("0.0.0.0", port)).is_ok()
        && UdpSocket::bind(("0.0.0.0", port)).is_ok()
}

/// A free port for TCP and UDP not in `used` or `mine`: the next one above
/// `after`, or one the OS picks when `after` is 0.
fn free_port(after: u16, used: &HashSet<u16>, mine: &HashSet<u16>) -> u16 {
    let ok = |p: u16| !used.contains(&p) && !mine.contains(&p) && p2p_port_free(p);
    if after != 0
        && let Some(p) = (after.saturating_add(1)..=u16::MAX)
            .take(1000)
            .find(|&p| ok(p))
    {
        return p;
    }
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(("0.0.0.0", 0))
            && let Ok(a) = l.local_addr()
        {
            drop(l);
            if ok(a.port()) {
                return a.port();
            }
        }
    }
    // Practically unreachable; the node reports a taken port when it starts.
    after.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_ports_zero_and_clashing_get_fixed_free_ports() {
        let mut used = HashSet::new();
        let mut config = ConfigFile::default();
        config.network.listen = vec![
            "/ip4/0.0.0.0/udp/0/quic-v1".parse().unwrap(),
            "/ip4/0.0.0.0/tcp/0".parse().unwrap(),
        ];
        let a = plan_listen(&config, &mut used);
        let pa = ports(&a[0])[0];
        assert_ne!(pa, 0);
        assert_eq!(ports(&a[1]), [pa], "QUIC and TCP share the new port");

        // A second node with the same fixed port as the first gets another one.
        config.network.listen = vec![
            format!("/ip4/0.0.0.0/udp/{pa}/quic-v1").parse().unwrap(),
            format!("/ip4/0.0.0.0/tcp/{pa}").parse().unwrap(),
        ];
        let b = plan_listen(&config, &mut used);
        let pb = ports(&b[0])[0];
        assert_ne!(pb, pa);
        assert_eq!(ports(&b[1]), [pb]);
        assert!(used.contains(&pa) && used.contains(&pb));
    }

    #[test]
    fn api_ports_that_clash_move() {
        let mut used = HashSet::new();
        let mut config = ConfigFile::default();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let free = l.local_addr().unwrap();
        drop(l);
        config.api.listen = free;
        assert_eq!(plan_api(&config, &mut used), None);
        let moved = plan_api(&config, &mut used).unwrap();
        assert_ne!(moved.port(), free.port());
        config.api.listen = "127.0.0.1:0".parse().unwrap();
        assert_eq!(plan_api(&config, &mut used), None);
    }
}
