//! What the swarm actor tells the rest of the node.

use libp2p::{Multiaddr, PeerId};

/// An event from the network, delivered on the bounded channel returned by
/// [`crate::spawn`]. When the receiver falls behind, events are dropped and
/// counted (`cnode_net_events_dropped_total`) rather than stalling the swarm.
#[derive(Debug, Clone)]
pub enum NetEvent {
    /// A first connection to a peer was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// The remote address of the connection.
        addr: Multiaddr,
    },
    /// The last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A peer told us (via identify) where it listens and what it speaks.
    PeerIdentified {
        /// The peer.
        peer: PeerId,
        /// Its listen addresses, as it reported them.
        listen_addrs: Vec<Multiaddr>,
        /// Its agent string, e.g. `cnode/0.1.0`.
        agent: String,
    },
    /// A gossip message arrived on a subscribed topic.
    Gossip {
        /// The topic name.
        topic: String,
        /// The original author, when signed.
        source: Option<PeerId>,
        /// The peer that forwarded it to us.
        via: PeerId,
        /// The payload.
        data: Vec<u8>,
        /// On a validated topic ([`crate::VALIDATED_TOPIC_PREFIX`]): the
        /// message waits for [`crate::NetClient::report_gossip`] before it
        /// is forwarded. `None` on other topics (already accepted).
        pending: Option<crate::GossipId>,
    },
    /// The node started listening on a new address.
    NewListenAddr(Multiaddr),
    /// AutoNAT changed its view of our reachability (`public`, `private`, `unknown`).
    NatStatus(String),
}
