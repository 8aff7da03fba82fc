//! [`NetClient`]: the cloneable handle the rest of the node uses to talk to the
//! swarm actor. Every method sends one [`Command`] over a bounded channel and
//! awaits the actor's reply on a oneshot.
//!
//! All methods are cancel-safe: dropping the future drops the reply receiver,
//! and the actor ignores a reply nobody waits for.

use std::{net::SocketAddr, sync::Arc};

use libp2p::{Multiaddr, PeerId, gossipsub::TopicHash, request_response::ResponseChannel};
use tokio::sync::{mpsc, oneshot};

use cnode_types::{PeerInfo, Scatter, Scattered};

use crate::{NetStatus, lane::Lanes};

/// A request to the swarm actor with the channel for its answer.
#[derive(Debug)]
pub(crate) enum Command {
    Status {
        reply: oneshot::Sender<NetStatus>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, DialError>>,
    },
    DialPeer {
        peer: PeerId,
    },
    Block {
        peer: PeerId,
        blocked: bool,
    },
    ListenOn {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<(), ListenError>>,
    },
    DhtPut {
        key: Vec<u8>,
        value: Vec<u8>,
        reply: oneshot::Sender<Result<(), DhtError>>,
    },
    DhtGet {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<Option<DhtRecord>, DhtError>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<Result<bool, GossipError>>,
    },
    Unsubscribe {
        topic: String,
        reply: oneshot::Sender<bool>,
    },
    Publish {
        topic: String,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), GossipError>>,
    },
    TopicPeers {
        topic: String,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    Request {
        peer: PeerId,
        protocol: ReqProtocol,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<Vec<u8>, RequestError>>,
    },
    Respond {
        protocol: ReqProtocol,
        channel: ResponseChannel<Vec<u8>>,
        data: Vec<u8>,
    },
    LaneAddr {
        peer: PeerId,
        reply: oneshot::Sender<Option<SocketAddr>>,
    },
    ReportGossip {
        id: GossipId,
        verdict: GossipVerdict,
    },
    StartProviding {
        key: Vec<u8>,
        reply: oneshot::Sender<Result<(), DhtError>>,
    },
    StopProviding {
        key: Vec<u8>,
    },
    GetProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
}

/// A request-response protocol the node speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReqProtocol {
    /// `/cnode/blobs/1`: blob pieces.
    Blobs,
    /// `/cnode/sync/1`: record set reconciliation.
    Sync,
    /// `/cnode/rpc/1`: service calls forwarded to a node that runs the service.
    Rpc,
}

/// Identifies a gossip message waiting for validation (see
/// [`NetClient::report_gossip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipId {
    pub(crate) id: libp2p::gossipsub::MessageId,
    pub(crate) via: PeerId,
}

/// The node's verdict on a gossip message on a validated topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// Valid: forward it to the mesh.
    Accept,
    /// Invalid: do not forward, and penalise the peer that sent it.
    Reject,
    /// Not forwarded, no penalty (e.g. a duplicate or a region we do not serve).
    Ignore,
}

/// A request from a peer, waiting for the node's answer.
#[derive(Debug)]
pub struct InboundRequest {
    /// Who asks.
    pub peer: PeerId,
    /// On which protocol.
    pub protocol: ReqProtocol,
    /// The request bytes (already size-capped).
    pub data: Vec<u8>,
    /// Where the answer goes: pass it to [`NetClient::respond`].
    pub channel: ReplyChannel,
}

/// Where the answer to an [`InboundRequest`] goes: the libp2p stream it came
/// on, or the lane (see `lane`).
#[derive(Debug)]
pub struct ReplyChannel(pub(crate) Reply);

#[derive(Debug)]
pub(crate) enum Reply {
    Swarm(ResponseChannel<Vec<u8>>),
    Lane(oneshot::Sender<LaneAnswer>),
}

/// An answer for a lane: its bytes, and the parts of them a lane may send as
/// records of their own (see [`NetClient::respond`]).
pub(crate) type LaneAnswer = (Vec<u8>, Vec<(usize, usize)>);

/// A request to a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The peer could not be reached, timed out, or closed the stream.
    #[error("request to {peer} failed: {reason}")]
    Failed {
        /// The peer.
        peer: PeerId,
        /// What happened.
        reason: String,
    },
    /// The network has shut down.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// The swarm actor has stopped (the node is shutting down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the network has shut down")]
pub struct Closed;

/// Dialling a peer failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DialError {
    /// The swarm could not reach the address.
    #[error("cannot dial {addr}: {reason}")]
    Failed {
        /// The address dialled.
        addr: Multiaddr,
        /// What went wrong.
        reason: String,
    },
    /// The network has shut down.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// Listening on an address failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ListenError {
    /// The transport refused the address.
    #[error("cannot listen on {addr}: {reason}")]
    Failed {
        /// The address.
        addr: Multiaddr,
        /// What went wrong.
        reason: String,
    },
    /// The network has shut down.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// A DHT operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DhtError {
    /// The value is larger than the DHT accepts.
    #[error("value is {size} bytes; the DHT accepts at most {max}")]
    TooLarge {
        /// The value's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No peer stored or answered in time.
    #[error("DHT query failed: {0}")]
    Query(String),
    /// The network has shut down.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// A gossip operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GossipError {
    /// Gossipsub refused the operation (no peers, message too large, …).
    #[error("gossip: {0}")]
    Refused(String),
    /// The network has shut down.
    #[error(transparent)]
    Closed(#[from] Closed),
}

/// A record found in the DHT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhtRecord {
    /// The value.
    pub value: Vec<u8>,
    /// The peer that published it, when the record says.
    pub publisher: Option<PeerId>,
}

/// A cloneable handle to the swarm actor.
#[derive(Debug, Clone)]
pub struct NetClient {
    pub(crate) tx: mpsc::Sender<Command>,
    pub(crate) local_peer_id: PeerId,
    pub(crate) lanes: Option<Arc<Lanes>>,
}

impl NetClient {
    /// This node's peer id (no round-trip to the actor).
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Closed> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Closed)?;
        rx.await.map_err(|_| Closed)
    }

    /// Addresses, connection count, NAT status.
    pub async fn status(&self) -> Result<NetStatus, Closed> {
        self.ask(|reply| Command::Status { reply }).await
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, Closed> {
        self.ask(|reply| Command::Peers { reply }).await
    }

    /// Dials `addr` and waits until the connection is established.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, DialError> {
        self.ask(|reply| Command::Dial { addr, reply }).await?
    }

    /// Starts listening on another address (e.g. a relay circuit).
    pub async fn listen_on(&self, addr: Multiaddr) -> Result<(), ListenError> {
        self.ask(|reply| Command::ListenOn { addr, reply }).await?
    }

    /// Stores `value` under `key` in the DHT (locally and on the closest peers).
    pub async fn dht_put(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DhtError> {
        self.ask(|reply| Command::DhtPut { key, value, reply })
            .await?
    }

    /// Looks `key` up in the DHT; `None` when no peer has it.
    pub async fn dht_get(&self, key: Vec<u8>) -> Result<Option<DhtRecord>, DhtError> {
        self.ask(|reply| Command::DhtGet { key, reply }).await?
    }

    /// Joins a gossip topic. Returns false when already subscribed.
    pub async fn subscribe(&self, topic: impl Into<String>) -> Result<bool, GossipError> {
        let topic = topic.into();
        self.ask(|reply| Command::Subscribe { topic, reply })
            .await?
    }

    /// Leaves a gossip topic. Returns false when not subscribed.
    pub async fn unsubscribe(&self, topic: impl Into<String>) -> Result<bool, Closed> {
        let topic = topic.into();
        self.ask(|reply| Command::Unsubscribe { topic, reply })
            .await
    }

    /// Publishes `data` on a gossip topic.
    pub async fn publish(
        &self,
        topic: impl Into<String>,
        data: Vec<u8>,
    ) -> Result<(), GossipError> {
        let topic = topic.into();
        self.ask(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Sends a request to `peer` (dialling it if needed) and waits for the
    /// answer. Blobs requests to a connected peer take its lane when one is
    /// open (opening one for later requests if not); if the lane fails, the
    /// request goes over the libp2p connection, so nothing is lost.
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: ReqProtocol,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        // Without a plan a lane answers whole.
        if let Some(Scattered::Whole(answer)) = self.over_lane(peer, protocol, &data, None).await {
            return Ok(answer);
        }
        self.request_over_swarm(peer, protocol, data).await
    }

    /// As [`request`](Self::request), for a blobs request whose answer has a
    /// known layout: over a lane the answer is read by `plan` (see
    /// [`Scatter`]), so the parts it names land in its buffer with no
    /// further copy. Over the libp2p connection, or when the lane fails, the
    /// answer comes whole.
    pub async fn request_scattered(
        &self,
        peer: PeerId,
        protocol: ReqProtocol,
        data: Vec<u8>,
        plan: Scatter,
    ) -> Result<Scattered, RequestError> {
        if let Some(answer) = self.over_lane(peer, protocol, &data, Some(plan)).await {
            return Ok(answer);
        }
        let answer = self.request_over_swarm(peer, protocol, data).await?;
        Ok(Scattered::Whole(answer))
    }

    /// A blobs request over `peer`'s lane, when one is open (opening one for
    /// later requests if not); `None`: ask over the libp2p connection.
    async fn over_lane(
        &self,
        peer: PeerId,
        protocol: ReqProtocol,
        data: &[u8],
        plan: Option<Scatter>,
    ) -> Option<Scattered> {
        if protocol != ReqProtocol::Blobs {
            return None;
        }
        let lanes = self.lanes.as_ref()?;
        let lane = lanes.lane_to(peer, self)?;
        let answer = lane.request(data.to_vec(), plan, lanes.timeout()).await?;
        lanes.answered();
        Some(answer)
    }

    /// A request over the libp2p connection (no lane).
    async fn request_over_swarm(
        &self,
        peer: PeerId,
        protocol: ReqProtocol,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, RequestError> {
        self.ask(|reply| Command::Request {
            peer,
            protocol,
            data,
            reply,
        })
        .await?
    }

    /// Where `peer`'s lane listens: the IP of our direct connection to it and
    /// the port it tells us on `/cnode/lane/2` (`None`: no lane).
    pub(crate) async fn lane_addr(&self, peer: PeerId) -> Result<Option<SocketAddr>, Closed> {
        self.ask(|reply| Command::LaneAddr { peer, reply }).await
    }

    /// Dials a peer by id, with the addresses the swarm already knows (from
    /// the DHT, identify, mDNS). Does nothing when it is connected or being
    /// dialled; does not wait for the outcome.
    pub async fn dial_peer(&self, peer: PeerId) -> Result<(), Closed> {
        self.tx
            .send(Command::DialPeer { peer })
            .await
            .map_err(|_| Closed)
    }

    /// Blocks (`true`) or unblocks a peer: a blocked peer is disconnected and
    /// no connection to or from it is allowed until it is unblocked.
    pub async fn set_blocked(&self, peer: PeerId, blocked: bool) -> Result<(), Closed> {
        self.tx
            .send(Command::Block { peer, blocked })
            .await
            .map_err(|_| Closed)
    }

    /// Answers an inbound request received on `protocol`. `runs` are
    /// (offset, length) parts of `data`, in order, that a reader may want
    /// apart (a blob answer's leaves, which the asking peer reads straight
    /// into its write buffer): a lane sends each as records of its own.
    /// Empty for none; runs that do not fit `data` are ignored.
    pub async fn respond(
        &self,
        protocol: ReqProtocol,
        channel: ReplyChannel,
        data: Vec<u8>,
        runs: Vec<(usize, usize)>,
    ) -> Result<(), Closed> {
        let channel = match channel.0 {
            Reply::Swarm(c) => c,
            Reply::Lane(tx) => {
                // The lane is gone if nobody waits: nothing to do then.
                let _ = tx.send((data, runs));
                return Ok(());
            }
        };
        self.tx
            .send(Command::Respond {
                protocol,
                channel,
                data,
            })
            .await
            .map_err(|_| Closed)
    }

    /// Tells gossipsub whether a message on a validated topic may be
    /// forwarded. Until this is called the message goes no further.
    pub async fn report_gossip(&self, id: GossipId, verdict: GossipVerdict) -> Result<(), Closed> {
        self.tx
            .send(Command::ReportGossip { id, verdict })
            .await
            .map_err(|_| Closed)
    }

    /// Announces in the DHT that this node provides `key` (Kademlia re-publishes
    /// the record on its own schedule).
    pub async fn start_providing(&self, key: Vec<u8>) -> Result<(), DhtError> {
        self.ask(|reply| Command::StartProviding { key, reply })
            .await?
    }

    /// Stops announcing `key`.
    pub async fn stop_providing(&self, key: Vec<u8>) -> Result<(), Closed> {
        self.tx
            .send(Command::StopProviding { key })
            .await
            .map_err(|_| Closed)
    }

    /// Peers that announced `key` in the DHT (at most 32).
    pub async fn get_providers(&self, key: Vec<u8>) -> Result<Vec<PeerId>, Closed> {
        self.ask(|reply| Command::GetProviders { key, reply }).await
    }

    /// Peers we know to be subscribed to `topic`.
    pub async fn topic_peers(&self, topic: impl Into<String>) -> Result<Vec<PeerId>, Closed> {
        let topic = topic.into();
        self.ask(|reply| Command::TopicPeers { topic, reply }).await
    }
}

/// The hash gossipsub uses for a topic name.
pub(crate) fn topic_hash(topic: &str) -> TopicHash {
    libp2p::gossipsub::IdentTopic::new(topic).hash()
}
