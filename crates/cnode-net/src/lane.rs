//! Lanes: `/cnode/blobs/1` requests on a TCP + TLS connection of their own.
//!
//! Why: on the libp2p connection every byte of a piece goes through Yamux and
//! the request-response machinery, which zero and copy it twice more than
//! the transfer needs, all on the connection's one task. On a 2-core machine
//! a 1 GiB transfer is CPU-bound, so those copies are the transfer's speed.
//!
//! What: a node that listens on TCP also listens on a lane port (on each IP
//! it listens on TCP, one port number, chosen by the OS) and tells connected peers which one on
//! `/cnode/lane/2` (an empty request, a 2-byte little-endian port, 0 for
//! none). When the node sends a blobs request to a peer it has no lane to, it
//! starts opening one in the background and sends that request the usual way;
//! later requests take the lane. A lane is:
//!
//! 1. TCP to the port, at the IP of our direct libp2p connection to the peer
//!    (relayed or DNS-only peers get no lane);
//! 2. the same TLS 1.3 handshake as libp2p's (`crate::tls`), so the peer id
//!    comes from the certificate, and it must be the peer we asked;
//! 3. [`PREFACE`] from the client and the same 8 bytes back from the
//!    server, over TLS; then neither side speaks TLS on the connection again;
//! 4. requests from the client and answers from the server, each a message
//!    in AEAD records keyed from the TLS exporter ([`sealed`]: our own
//!    record layer, which reads a piece's leaves straight into place where
//!    rustls copied every byte three times), answered in order (pipelined,
//!    at most [`PIPELINE`] waiting). An empty answer means "refused": the
//!    client then asks the usual way.
//!
//! Bounds: lanes are accepted only from peers that have a libp2p connection
//! to us (so a blocked or disconnected peer has none, and a peer's lanes close
//! with its last connection), at most [`MAX_LANES_IN`] at once and
//! [`MAX_LANES_PER_PEER`] per peer; handshakes time out; requests and answers
//! have the blobs protocol's size caps; a lane idle for [`IDLE_TIMEOUT`] is
//! closed. Inbound lane requests go to the node's one inbound queue, like the
//! swarm's, so the blob server's upload slots and rate limit cover both.
//! Whatever fails, a request is never lost: the caller asks the usual way,
//! and a peer whose lane could not be opened is not tried again for
//! [`RETRY_AFTER`].

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use cnode_types::{Scatter, Scattered};
use futures::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::TlsStream;
use libp2p::{
    Multiaddr, PeerId,
    core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    multiaddr::Protocol,
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, oneshot},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace};

mod sealed;
mod tcp_io;

use self::{
    sealed::{ROLLOVER, SealedReader, SealedWriter},
    tcp_io::TcpIo,
};
use crate::{
    NetMetrics,
    client::{InboundRequest, LaneAnswer, NetClient, Reply, ReplyChannel, ReqProtocol},
    tls::{Coalesced, Tls},
};

/// The libp2p protocol that tells a peer our lane port.
pub(crate) const LANE_PROTOCOL: &str = "/cnode/lane/2";
/// What a client sends first on a lane, and the server sends back.
pub(crate) const PREFACE: &[u8; 8] = b"cnlane/2";
/// Most inbound lanes at once (handshakes included).
pub(crate) const MAX_LANES_IN: usize = 32;
/// Most requests taken from all inbound lanes together whose answers have
/// not been written yet: this bounds the answers lanes hold while they wait
/// for their sockets to 32 x (4 MiB + proofs) at worst, where lanes x
/// [`PIPELINE`] alone allowed 256. A lane's next request waits for one.
pub(crate) const MAX_LANE_ANSWERS: usize = 32;
/// Most inbound lanes from one peer.
pub(crate) const MAX_LANES_PER_PEER: usize = 2;
/// Most requests waiting for their answers on one lane: the client sends no
/// more, the server reads no more, until an answer has gone out.
pub(crate) const PIPELINE: usize = 8;
/// An answer that cannot be written within this long ends the lane (a peer
/// that asks and does not read holds no memory for longer).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting, TLS and the preface must each finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a TCP connect to a lane port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A lane with no request for this long is closed by the server...
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// ...and a little earlier by the client, so that it is the client that
/// closes an idle lane (and opens a new one when it needs one) rather than
/// finding it closed under its next request.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(100);
/// After a lane could not be opened, or broke, ask that peer the usual way
/// for this long.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(60);

/// The lanes of one node: its listener's port, its lanes to peers, and the
/// peers it accepts lanes from.
pub(crate) struct Lanes {
    tls: Tls,
    port: Option<u16>,
    max_request: usize,
    max_response: usize,
    timeout: Duration,
    inbound: mpsc::Sender<InboundRequest>,
    metrics: NetMetrics,
    handshakes: Arc<Semaphore>,
    /// See [`MAX_LANE_ANSWERS`].
    answers: Arc<Semaphore>,
    cancel: CancellationToken,
    state: Mutex<State>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("port", &self.port).finish()
    }
}

#[derive(Default)]
struct State {
    /// Peers with a libp2p connection, each with the token that ends its lanes.
    connected: HashMap<PeerId, CancellationToken>,
    /// Our lanes to peers.
    out: HashMap<PeerId, Out>,
    /// Inbound lanes per peer.
    served: HashMap<PeerId, usize>,
}

enum Out {
    Opening,
    Ready(LaneTx),
    Failed(Instant),
}

/// A request, how to read its answer (whole without a plan), and where the
/// answer goes.
type Job = (Vec<u8>, Option<Scatter>, oneshot::Sender<Scattered>);

/// The sending end of an open lane.
#[derive(Clone)]
pub(crate) struct LaneTx(mpsc::Sender<Job>);

impl LaneTx {
    /// Sends `data` and waits for the answer, read by `plan` if there is one
    /// (whole otherwise); `None` if the lane broke, timed out or the peer
    /// refused (an empty answer): then ask the usual way.
    pub(crate) async fn request(
        &self,
        data: Vec<u8>,
        plan: Option<Scatter>,
        timeout: Duration,
    ) -> Option<Scattered> {
        let (tx, rx) = oneshot::channel();
        self.0.send((data, plan, tx)).await.ok()?;
        match tokio::time::timeout(timeout, rx).await.ok()?.ok()? {
            Scattered::Whole(answer) if answer.is_empty() => None,
            answer => Some(answer),
        }
    }
}

/// Settings for [`Lanes::start`].
pub(crate) struct LaneConfig {
    /// The node's TLS configuration (the swarm's).
    pub(crate) tls: Tls,
    /// The IPs to listen on (none: no inbound lanes)...
    pub(crate) listen: Vec<IpAddr>,
    /// ...and the port, the same on each (0: the OS chooses one).
    pub(crate) port: u16,
    pub(crate) max_request: usize,
    pub(crate) max_response: usize,
    pub(crate) timeout: Duration,
    /// Answers in flight over all inbound lanes ([`MAX_LANE_ANSWERS`]).
    pub(crate) max_answers: usize,
}

impl Lanes {
    /// Binds the lane listeners (if any) and starts accepting lanes until
    /// `cancel`.
    pub(crate) async fn start(
        config: LaneConfig,
        inbound: mpsc::Sender<InboundRequest>,
        metrics: NetMetrics,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        // One port number on every IP: peers learn one port, and reach it at
        // whichever IP their connection to us has.
        let mut listeners = Vec::new();
        let mut port = config.port;
        for ip in config.listen {
            let addr = SocketAddr::new(ip, port);
            match bind(addr) {
                Ok(l) => {
                    port = l.local_addr().map(|a| a.port()).unwrap_or(port);
                    listeners.push(l);
                }
                // Lanes are an optimisation: without them, peers ask the usual way.
                Err(e) => tracing::warn!(%addr, "no lanes here: cannot listen: {e}"),
            }
        }
        let port = (!listeners.is_empty()).then_some(port);
        let lanes = Arc::new(Self {
            tls: config.tls,
            port,
            max_request: config.max_request,
            max_response: config.max_response,
            timeout: config.timeout,
            inbound,
            metrics,
            handshakes: Arc::new(Semaphore::new(MAX_LANES_IN)),
            answers: Arc::new(Semaphore::new(config.max_answers.max(1))),
            cancel,
            state: Mutex::new(State::default()),
        });
        for listener in listeners {
            tokio::spawn(lanes.clone().accept(listener));
        }
        lanes
    }

    /// Our lane port, if we listen for lanes.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    /// How long a request on a lane may wait for its answer.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Counts a request a lane answered.
    pub(crate) fn answered(&self) {
        self.metrics.lane_requests.inc();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The swarm actor: `peer` has its first libp2p connection.
    pub(crate) fn peer_connected(&self, peer: PeerId) {
        self.lock()
            .connected
            .entry(peer)
            .or_insert_with(|| self.cancel.child_token());
    }

    /// The swarm actor: `peer`'s last libp2p connection closed; its lanes close.
    pub(crate) fn peer_disconnected(&self, peer: PeerId) {
        let mut st = self.lock();
        if let Some(token) = st.connected.remove(&peer) {
            token.cancel();
        }
        st.out.remove(&peer);
    }

    /// The open lane to `peer`, if there is one. If there is none and one
    /// may be opened, starts opening it in the background (`client` asks the
    /// peer for its port) and returns `None`: this request goes the usual way.
    pub(crate) fn lane_to(self: &Arc<Self>, peer: PeerId, client: &NetClient) -> Option<LaneTx> {
        let mut st = self.lock();
        let token = st.connected.get(&peer)?.clone();
        match st.out.get(&peer) {
            Some(Out::Ready(tx)) if !tx.0.is_closed() => return Some(tx.clone()),
            Some(Out::Opening) => return None,
            Some(Out::Failed(until)) if Instant::now() < *until => return None,
            _ => {}
        }
        st.out.insert(peer, Out::Opening);
        drop(st);
        tokio::spawn(self.clone().open(client.clone(), peer, token));
        None
    }

    /// Opens a lane to `peer` and runs it until it breaks, the peer
    /// disconnects or the node stops.
    async fn open(self: Arc<Self>, client: NetClient, peer: PeerId, token: CancellationToken) {
        let ends = tokio::select! {
            _ = token.cancelled() => return,
            s = self.connect(&client, peer) => s,
        };
        let (rd, wr) = match ends {
            Ok(s) => s,
            Err(e) => {
                debug!(%peer, "no lane: {e}");
                self.set_failed(peer);
                return;
            }
        };
        let (tx, rx) = mpsc::channel(PIPELINE);
        {
            let mut st = self.lock();
            if !st.connected.contains_key(&peer) {
                return;
            }
            st.out.insert(peer, Out::Ready(LaneTx(tx)));
        }
        debug!(%peer, "lane open");
        self.metrics.lanes.inc();
        let res = tokio::select! {
            _ = token.cancelled() => Ok(()),
            r = run_client(rd, wr, rx, self.max_response, ROLLOVER) => r,
        };
        self.metrics.lanes.dec();
        if let Err(e) = res {
            debug!(%peer, "lane to peer broke: {e}");
            self.set_failed(peer);
        }
    }

    fn set_failed(&self, peer: PeerId) {
        let mut st = self.lock();
        if st.connected.contains_key(&peer) {
            st.out
                .insert(peer, Out::Failed(Instant::now() + RETRY_AFTER));
        }
    }

    async fn connect(
        &self,
        client: &NetClient,
        peer: PeerId,
    ) -> io::Result<(SealedReader, SealedWriter)> {
        let addr = client
            .lane_addr(peer)
            .await
            .ok()
            .flatten()
            .ok_or_else(|| io::Error::other("the peer offers no lane"))?;
        self.connect_to(addr, peer).await
    }

    /// TCP to `addr`, TLS, and the preface both ways; the TLS certificate
    /// must be `peer`'s.
    async fn connect_to(
        &self,
        addr: SocketAddr,
        peer: PeerId,
    ) -> io::Result<(SealedReader, SealedWriter)> {
        let sock = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        sock.set_nodelay(true)?;
        let handshake = async {
            let (who, mut stream) = self
                .tls
                .clone()
                .upgrade_outbound(TcpIo::new(sock), "")
                .await
                .map_err(io::Error::other)?;
            if who != peer {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("lane at {addr} is {who}, not {peer}"),
                ));
            }
            stream.write_all(PREFACE).await?;
            stream.flush().await?;
            let mut back = [0u8; PREFACE.len()];
            stream.read_exact(&mut back).await?;
            if &back != PREFACE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a cnode lane",
                ));
            }
            sealed_ends(stream, true)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "lane handshake timed out"))?
    }

    async fn accept(self: Arc<Self>, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.cancel.cancelled() => return,
                a = listener.accept() => a,
            };
            let (sock, from) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    debug!("lane accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = self.handshakes.clone().try_acquire_owned() else {
                trace!(%from, "lane refused: too many lanes");
                continue;
            };
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve(sock).await {
                    debug!(%from, "lane: {e}");
                }
                drop(slot);
            });
        }
    }

    /// Admits an inbound lane from `peer`: the token that ends it, or `None`
    /// if the peer has no libp2p connection or enough lanes.
    fn admit(&self, peer: PeerId) -> Option<CancellationToken> {
        let mut st = self.lock();
        let token = st.connected.get(&peer)?.child_token();
        let n = st.served.entry(peer).or_default();
        if *n >= MAX_LANES_PER_PEER {
            return None;
        }
        *n += 1;
        Some(token)
    }

    fn release(&self, peer: PeerId) {
        let mut st = self.lock();
        if let Some(n) = st.served.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                st.served.remove(&peer);
            }
        }
    }

    async fn serve(&self, sock: TcpStream) -> io::Result<()> {
        sock.set_nodelay(true)?;
        let handshake = async {
            let (peer, mut stream) = self
                .tls
                .clone()
                .upgrade_inbound(TcpIo::new(sock), "")
                .await
                .map_err(io::Error::other)?;
            let mut preface = [0u8; PREFACE.len()];
            stream.read_exact(&mut preface).await?;
            if &preface != PREFACE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a cnode lane",
                ));
            }
            stream.write_all(PREFACE).await?;
            stream.flush().await?;
            Ok((peer, sealed_ends(stream, false)?))
        };
        let (peer, (rd, wr)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "lane handshake timed out"))??;
        let Some(token) = self.admit(peer) else {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("lane from {peer} refused (not connected, or enough lanes)"),
            ));
        };
        trace!(%peer, "lane accepted");
        self.metrics.lanes.inc();
        let res = tokio::select! {
            _ = token.cancelled() => Ok(()),
            r = self.run_server(peer, rd, wr) => r,
        };
        self.metrics.lanes.dec();
        self.release(peer);
        res
    }

    /// Reads requests, hands them to the node, writes the answers in order.
    async fn run_server(
        &self,
        peer: PeerId,
        mut rd: SealedReader,
        mut wr: SealedWriter,
    ) -> io::Result<()> {
        let (wait_tx, mut wait_rx) = mpsc::channel::<(
            oneshot::Receiver<LaneAnswer>,
            tokio::sync::OwnedSemaphorePermit,
        )>(PIPELINE);
        let reader = async {
            loop {
                let data = match tokio::time::timeout(
                    IDLE_TIMEOUT,
                    rd.read_message(self.max_request, None),
                )
                .await
                {
                    Err(_) => return Ok(()), // idle
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Ok(Ok(Scattered::Whole(data))) => data,
                    Ok(Ok(Scattered::Split(..))) => unreachable!("no plan, no split"),
                    Ok(Err(e)) => return Err(e),
                };
                let Ok(slot) = wait_tx.reserve().await else {
                    return Ok(());
                };
                // Held until the answer is written (never closed).
                let Ok(permit) = self.answers.clone().acquire_owned().await else {
                    return Ok(());
                };
                let (tx, rx) = oneshot::channel();
                slot.send((rx, permit));
                let req = InboundRequest {
                    peer,
                    protocol: ReqProtocol::Blobs,
                    data,
                    channel: ReplyChannel(Reply::Lane(tx)),
                };
                // Too many waiting: the dropped sender answers "refused".
                if self.inbound.try_send(req).is_err() {
                    self.metrics.inbound_refused.inc();
                }
            }
        };
        let writer = async {
            while let Some((rx, _permit)) = wait_rx.recv().await {
                let (mut answer, runs) = rx.await.unwrap_or_default();
                if answer.len() > self.max_response {
                    answer.clear();
                }
                tokio::time::timeout(WRITE_TIMEOUT, wr.write_message(&mut answer, &runs))
                    .await
                    .map_err(|_| {
                        io::Error::new(io::ErrorKind::TimedOut, "lane answer not read")
                    })??;
            }
            Ok(())
        };
        tokio::select! {
            r = reader => r,
            r = writer => r,
        }
    }
}

/// The lane's own record layer on a TLS stream whose handshake (and the
/// lane's) is done: the socket and keys from the TLS exporter.
fn sealed_ends(
    stream: Coalesced<TlsStream<TcpIo>>,
    client: bool,
) -> io::Result<(SealedReader, SealedWriter)> {
    let (io, conn): (TcpIo, rustls::Connection) = match stream.into_inner() {
        TlsStream::Client(s) => {
            let (io, c) = s.into_inner();
            (io, c.into())
        }
        TlsStream::Server(s) => {
            let (io, c) = s.into_inner();
            (io, c.into())
        }
    };
    let (sock, early) = io.into_parts();
    sealed::split(sock, early, &conn, client)
}

/// A client lane: writes requests from `jobs`, reads their answers in order.
/// Ends (and the next request opens a new lane, with new keys) once it has
/// received `rollover` bytes ([`ROLLOVER`]).
async fn run_client(
    mut rd: SealedReader,
    mut wr: SealedWriter,
    mut jobs: mpsc::Receiver<Job>,
    max_response: usize,
    rollover: u64,
) -> io::Result<()> {
    let (wait_tx, mut wait_rx) =
        mpsc::channel::<(Option<Scatter>, oneshot::Sender<Scattered>)>(PIPELINE);
    let received = std::sync::atomic::AtomicU64::new(0);
    let writer = async {
        // Ends quietly when idle (see CLIENT_IDLE_TIMEOUT) or when the lane
        // is dropped (the peer disconnected).
        while let Ok(Some((mut data, plan, reply))) =
            tokio::time::timeout(CLIENT_IDLE_TIMEOUT, jobs.recv()).await
        {
            if received.load(std::sync::atomic::Ordering::Relaxed) >= rollover
                || wait_tx.send((plan, reply)).await.is_err()
            {
                break;
            }
            wr.write_message(&mut data, &[]).await?;
        }
        Ok(())
    };
    let reader = async {
        while let Some((plan, reply)) = wait_rx.recv().await {
            let answer = rd.read_message(max_response, plan).await?;
            received.store(rd.received(), std::sync::atomic::Ordering::Relaxed);
            let _ = reply.send(answer);
        }
        Ok(())
    };
    tokio::select! {
        r = writer => r,
        r = reader => r,
    }
}

/// The IP of a direct connection's remote address (none for relayed
/// circuits and DNS names).
pub(crate) fn direct_ip(addr: &Multiaddr) -> Option<IpAddr> {
    if crate::addr::is_circuit(addr) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// The IPs to listen for lanes on: those of the TCP listen addresses, each
/// once.
pub(crate) fn listen_ips(listen: &[Multiaddr]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for a in listen {
        let tcp = a.iter().any(|p| matches!(p, Protocol::Tcp(_)));
        if let Some(ip) = tcp.then(|| direct_ip(a)).flatten()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    ips
}

/// A listener on `addr`; IPv6 only for an IPv6 address (as libp2p's TCP
/// listeners are), so that `::` and `0.0.0.0` can both be bound at one port.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(128)?;
    TcpListener::from_std(sock.into())
}

/// Encodes our lane port for `/cnode/lane/2` (0: no lanes).
pub(crate) fn encode_port(port: Option<u16>) -> Vec<u8> {
    port.unwrap_or(0).to_le_bytes().to_vec()
}

/// Decodes a `/cnode/lane/2` answer: the port, if the peer offers lanes.
pub(crate) fn decode_port(bytes: &[u8]) -> Option<u16> {
    let port = u16::from_le_bytes(bytes.try_into().ok()?);
    (port != 0).then_some(port)
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::codec::{read_frame, write_frame};

    /// A lane server on 127.0.0.1 and the receiving end of its inbound queue.
    async fn server_with(
        max_answers: usize,
        aes: bool,
    ) -> (Arc<Lanes>, Keypair, mpsc::Receiver<InboundRequest>) {
        server_on(max_answers, aes, vec!["127.0.0.1".parse().unwrap()]).await
    }

    async fn server_on(
        max_answers: usize,
        aes: bool,
        listen: Vec<IpAddr>,
    ) -> (Arc<Lanes>, Keypair, mpsc::Receiver<InboundRequest>) {
        let key = Keypair::generate_ed25519();
        let (tx, rx) = mpsc::channel(64);
        let config = LaneConfig {
            tls: Tls::with_suites(&key, aes).unwrap(),
            listen,
            port: 0,
            max_request: 64,
            max_response: 1 << 20,
            timeout: Duration::from_secs(5),
            max_answers,
        };
        let lanes = Lanes::start(config, tx, NetMetrics::default(), CancellationToken::new()).await;
        (lanes, key, rx)
    }

    async fn server() -> (Arc<Lanes>, Keypair, mpsc::Receiver<InboundRequest>) {
        server_with(MAX_LANE_ANSWERS, true).await
    }

    async fn client() -> (Arc<Lanes>, PeerId) {
        let (lanes, key, _) = server().await;
        (lanes, key.public().to_peer_id())
    }

    fn addr(lanes: &Lanes) -> SocketAddr {
        SocketAddr::new("127.0.0.1".parse().unwrap(), lanes.port().unwrap())
    }

    /// A lane from `cli` to `srv`, and the task that runs it.
    async fn open(
        cli: &Lanes,
        srv: &Lanes,
        srv_key: &Keypair,
    ) -> (LaneTx, tokio::task::JoinHandle<io::Result<()>>) {
        let (lane, run, _) = open_with(cli, srv, srv_key, ROLLOVER).await;
        (lane, run)
    }

    /// [`open`], rolling over after `rollover` bytes; also says which AEAD
    /// the lane's records use.
    async fn open_with(
        cli: &Lanes,
        srv: &Lanes,
        srv_key: &Keypair,
        rollover: u64,
    ) -> (
        LaneTx,
        tokio::task::JoinHandle<io::Result<()>>,
        &'static aws_lc_rs::aead::Algorithm,
    ) {
        let (rd, wr) = cli
            .connect_to(addr(srv), srv_key.public().to_peer_id())
            .await
            .unwrap();
        let aead = rd.aead();
        let (tx, jobs) = mpsc::channel(PIPELINE);
        let run = tokio::spawn(run_client(rd, wr, jobs, 1 << 20, rollover));
        (LaneTx(tx), run, aead)
    }

    /// Answers every request with its bytes reversed, like a node would.
    /// A request whose answer is read whole.
    async fn request(lane: &LaneTx, data: Vec<u8>, timeout: Duration) -> Option<Vec<u8>> {
        match lane.request(data, None, timeout).await? {
            Scattered::Whole(answer) => Some(answer),
            Scattered::Split(..) => unreachable!("no plan, no split"),
        }
    }

    fn answer_all(mut rx: mpsc::Receiver<InboundRequest>) -> tokio::task::JoinHandle<Vec<PeerId>> {
        tokio::spawn(async move {
            let mut from = Vec::new();
            while let Some(req) = rx.recv().await {
                from.push(req.peer);
                let mut answer = req.data.clone();
                answer.reverse();
                if let Reply::Lane(tx) = req.channel.0 {
                    let _ = tx.send((answer, Vec::new()));
                }
            }
            from
        })
    }

    #[tokio::test]
    async fn a_connected_peer_gets_pipelined_answers_in_order() {
        let (srv, srv_key, rx) = server().await;
        let (cli, cli_peer) = client().await;
        srv.peer_connected(cli_peer);
        let answers = answer_all(rx);
        let (lane, run) = open(&cli, &srv, &srv_key).await;
        let asks = (0..40u8).map(|i| {
            let lane = lane.clone();
            async move { request(&lane, vec![i, 1, 2], Duration::from_secs(5)).await }
        });
        let got = futures::future::join_all(asks).await;
        for (i, g) in got.into_iter().enumerate() {
            assert_eq!(g, Some(vec![2, 1, i as u8]));
        }
        drop(lane);
        run.await.unwrap().unwrap();
        srv.peer_disconnected(cli_peer);
        srv.cancel.cancel();
        let from = tokio::time::timeout(Duration::from_secs(5), async {
            // The server's lane ends with the peer; the queue closes with it.
            drop(srv);
            answers.await.unwrap()
        })
        .await
        .unwrap();
        // The peer id the server saw is the one in the client's certificate.
        assert!(from.iter().all(|p| *p == cli_peer) && from.len() == 40);
    }

    #[tokio::test]
    async fn lanes_seal_with_the_aead_of_whichever_suite_tls_chose() {
        // Both sides preferring ChaCha20-Poly1305 (as on CPUs without AES
        // instructions) agree on it; the lane's records use it too.
        for aes in [true, false] {
            let (srv, srv_key, rx) = server_with(MAX_LANE_ANSWERS, aes).await;
            let (cli, cli_key, _) = server_with(MAX_LANE_ANSWERS, aes).await;
            srv.peer_connected(cli_key.public().to_peer_id());
            let answers = answer_all(rx);
            let (lane, _run, aead) = open_with(&cli, &srv, &srv_key, ROLLOVER).await;
            let want = if aes {
                &aws_lc_rs::aead::AES_128_GCM
            } else {
                &aws_lc_rs::aead::CHACHA20_POLY1305
            };
            assert_eq!(aead, want);
            let asked: Vec<u8> = (0..60).collect();
            let got = request(&lane, asked.clone(), Duration::from_secs(5)).await;
            let want: Vec<u8> = asked.into_iter().rev().collect();
            assert_eq!(got, Some(want), "aes first: {aes}");
            answers.abort();
        }
    }

    #[tokio::test]
    async fn lanes_listen_on_every_tcp_ip_at_one_port() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        let (srv, srv_key, rx) = server_on(MAX_LANE_ANSWERS, true, ips.clone()).await;
        let (cli, cli_peer) = client().await;
        srv.peer_connected(cli_peer);
        let answers = answer_all(rx);
        let port = srv.port().unwrap();
        for ip in ips {
            let (rd, wr) = cli
                .connect_to(SocketAddr::new(ip, port), srv_key.public().to_peer_id())
                .await
                .unwrap_or_else(|e| panic!("no lane at {ip}: {e}"));
            let (tx, jobs) = mpsc::channel(PIPELINE);
            let _run = tokio::spawn(run_client(rd, wr, jobs, 1 << 20, ROLLOVER));
            let got = request(&LaneTx(tx), vec![1, 2], Duration::from_secs(5)).await;
            assert_eq!(got, Some(vec![2, 1]), "over {ip}");
        }
        // One IP that cannot be bound (not ours) does not cost the others.
        let (srv, ..) = server_on(
            MAX_LANE_ANSWERS,
            true,
            vec!["192.0.2.77".parse().unwrap(), "127.0.0.1".parse().unwrap()],
        )
        .await;
        assert!(srv.port().is_some());
        answers.abort();
    }

    #[tokio::test]
    async fn a_client_lane_ends_once_it_has_received_its_share_and_loses_nothing() {
        let (srv, srv_key, rx) = server().await;
        let (cli, cli_peer) = client().await;
        srv.peer_connected(cli_peer);
        let answers = answer_all(rx);
        // Rolls over after 10 bytes: the first answer (3 bytes) and the
        // second (60) come; the third request is not sent on this lane but
        // answered "ask the usual way", and the lane ends cleanly.
        let (lane, run, _) = open_with(&cli, &srv, &srv_key, 10).await;
        let t = Duration::from_secs(5);
        assert_eq!(request(&lane, vec![1, 2, 3], t).await, Some(vec![3, 2, 1]));
        assert_eq!(request(&lane, vec![7; 60], t).await, Some(vec![7; 60]));
        assert_eq!(request(&lane, vec![1], t).await, None);
        tokio::time::timeout(t, run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(lane.0.is_closed(), "the next request opens a new lane");
        answers.abort();
    }

    #[tokio::test]
    async fn answers_not_yet_written_are_bounded_across_lanes() {
        let (srv, srv_key, mut rx) = server_with(1, true).await;
        let (cli, cli_peer) = client().await;
        srv.peer_connected(cli_peer);
        let (lane, _run) = open(&cli, &srv, &srv_key).await;
        let asks: Vec<_> = (0..3u8)
            .map(|i| {
                let lane = lane.clone();
                tokio::spawn(async move { request(&lane, vec![i], Duration::from_secs(10)).await })
            })
            .collect();
        for i in 0..3u8 {
            let req = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(req.data, vec![i], "in order");
            // With one answer allowed in flight, the next request is not
            // handed over while this one is unanswered.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(rx.try_recv().is_err(), "request {} came early", i + 1);
            if let Reply::Lane(tx) = req.channel.0 {
                tx.send((vec![i, i], Vec::new())).unwrap();
            }
        }
        for (i, a) in asks.into_iter().enumerate() {
            assert_eq!(a.await.unwrap(), Some(vec![i as u8, i as u8]));
        }
    }

    #[tokio::test]
    async fn lanes_from_unconnected_peers_and_to_the_wrong_peer_are_refused() {
        let (srv, srv_key, rx) = server().await;
        let (cli, _) = client().await;
        let answers = answer_all(rx);
        // Not connected over libp2p: the server closes the lane after TLS.
        let (lane, run) = open(&cli, &srv, &srv_key).await;
        let answer = request(&lane, vec![1], Duration::from_secs(5)).await;
        assert_eq!(answer, None);
        assert!(
            run.await.unwrap().is_err(),
            "the lane should have been closed"
        );
        // Expecting another peer at that address: the client refuses.
        let other = Keypair::generate_ed25519().public().to_peer_id();
        let err = cli.connect_to(addr(&srv), other).await.err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        answers.abort();
    }

    #[tokio::test]
    async fn an_oversized_request_closes_the_lane_and_answers_nothing() {
        let (srv, srv_key, rx) = server().await;
        let (cli, cli_peer) = client().await;
        srv.peer_connected(cli_peer);
        let answers = answer_all(rx);
        let (lane, run) = open(&cli, &srv, &srv_key).await;
        assert_eq!(
            request(&lane, vec![7; 65], Duration::from_secs(5)).await,
            None
        );
        assert!(run.await.unwrap().is_err());
        answers.abort();
        let from = answers.await;
        assert!(from.is_err() || from.unwrap().is_empty());
    }

    /// The vector `name` in docs/protocol.md.
    pub(super) fn protocol_md_vector(name: &str) -> Vec<u8> {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/protocol.md"
        ))
        .unwrap();
        let hex = doc
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("vector ")?
                    .strip_prefix(name)?
                    .strip_prefix(' ')
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no vector {name}"));
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The `lane-*` vectors in docs/protocol.md (the sealed one: in `sealed`).
    #[tokio::test]
    async fn protocol_md_test_vectors() {
        let vector = protocol_md_vector;
        assert_eq!(encode_port(Some(40123)), vector("lane-port-40123"));
        assert_eq!(encode_port(None), vector("lane-port-none"));
        assert_eq!(PREFACE.to_vec(), vector("lane-preface"));
    }

    #[test]
    fn port_round_trips_and_zero_means_none() {
        assert_eq!(decode_port(&encode_port(Some(40123))), Some(40123));
        assert_eq!(decode_port(&encode_port(None)), None);
        assert_eq!(decode_port(&[1, 2, 3]), None);
        assert_eq!(decode_port(&[]), None);
    }

    #[test]
    fn lanes_listen_on_each_tcp_address_once_and_skip_circuits() {
        let quic: Multiaddr = "/ip4/10.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let tcp6: Multiaddr = "/ip6/::1/tcp/4001".parse().unwrap();
        let again: Multiaddr = "/ip4/127.0.0.1/tcp/4002".parse().unwrap();
        assert_eq!(
            listen_ips(&[quic, tcp.clone(), tcp6, again]),
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        let circuit: Multiaddr =
            "/ip4/1.2.3.4/tcp/4001/p2p/12D3KooWGzBvEBdqNkBNsBHuGMfe8cGwLFvvFmM9Q8NaSXLsz6Ux/p2p-circuit"
                .parse()
                .unwrap();
        assert_eq!(direct_ip(&circuit), None);
        assert_eq!(direct_ip(&"/dns4/example.org/tcp/1".parse().unwrap()), None);
        assert!(listen_ips(&[]).is_empty());
    }

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = Vec::new();
        write_frame(&mut futures::io::Cursor::new(&mut buf), b"hello")
            .await
            .unwrap();
        assert_eq!(&buf[..4], &5u32.to_le_bytes());
        let got = read_frame(&mut &buf[..], 5).await.unwrap();
        assert_eq!(got, b"hello");
        let err = read_frame(&mut &buf[..], 4).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = read_frame(&mut &buf[..6], 5).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
