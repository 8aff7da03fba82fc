//! Multiaddr helpers: peer ids in addresses, circuits, loopback, display.

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol, swarm::DialError as SwarmDialError};

/// The `/p2p/<id>` at the end of an address, if any.
pub(crate) fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    match addr.iter().last() {
        Some(Protocol::P2p(id)) => Some(id),
        _ => None,
    }
}

pub(crate) fn strip_peer_id(addr: Multiaddr, peer: &PeerId) -> Multiaddr {
    match addr.iter().last() {
        Some(Protocol::P2p(id)) if id == *peer => {
            let mut a = addr;
            a.pop();
            a
        }
        _ => addr,
    }
}

pub(crate) fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| matches!(p, Protocol::P2pCircuit))
}

pub(crate) fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// The relay in a circuit address `/…/p2p/<relay>/p2p-circuit/…`.
pub(crate) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last = Some(id),
            Protocol::P2pCircuit => return last,
            _ => {}
        }
    }
    None
}

pub(crate) fn is_unspecified(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

/// `quic`, `tcp`, `relay` or `other`, for display.
pub fn transport_of(addr: &Multiaddr) -> &'static str {
    let mut transport = "other";
    for p in addr.iter() {
        match p {
            Protocol::P2pCircuit => return "relay",
            Protocol::QuicV1 => transport = "quic",
            Protocol::Tcp(_) if transport == "other" => transport = "tcp",
            _ => {}
        }
    }
    transport
}

pub(crate) fn dial_error_text(e: &SwarmDialError) -> String {
    match e {
        SwarmDialError::Transport(errs) => errs
            .iter()
            .map(|(addr, err)| format!("{addr}: {err}"))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_named() {
        let q: Multiaddr = "/ip4/127.0.0.1/udp/1/quic-v1".parse().unwrap();
        let t: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let r: Multiaddr = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit"
            .parse()
            .unwrap();
        assert_eq!(transport_of(&q), "quic");
        assert_eq!(transport_of(&t), "tcp");
        assert_eq!(transport_of(&r), "relay");
        assert!(is_circuit(&r));
        assert!(peer_id_of(&t).is_none());
        assert_eq!(
            relay_of(&r).map(|p| p.to_string()).as_deref(),
            Some("12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")
        );
        assert_eq!(relay_of(&t), None);
        assert!(is_loopback(&t));
    }

    #[test]
    fn peer_id_is_stripped_only_when_it_matches() {
        let peer = PeerId::random();
        let other = PeerId::random();
        let base: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().unwrap();
        let with = base.clone().with(Protocol::P2p(peer));
        assert_eq!(peer_id_of(&with), Some(peer));
        assert_eq!(strip_peer_id(with.clone(), &peer), base);
        assert_eq!(strip_peer_id(with.clone(), &other), with);
    }
}
