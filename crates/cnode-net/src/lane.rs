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
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
use tokio_util::{
    compat::{Compat, TokioAsyncReadCompatExt},
    sync::CancellationToken,
};
use tracing::{debug, trace};

mod sealed;

use self::sealed::{ROLLOVER, SealedReader, SealedWriter};
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
                .upgrade_outbound(sock.compat(), "")
                .await
                .map_err(io::Error::other)?;
            if who != peer {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("lane at {addr} is {who}, not {peer}"),
                ));
            }
            send_preface(&mut stream).await?;
            read_preface(&mut stream).await?;
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
                .upgrade_inbound(sock.compat(), "")
                .await
                .map_err(io::Error::other)?;
            read_preface(&mut stream).await?;
            send_preface(&mut stream).await?;
            Ok::<_, io::Error>((peer, sealed_ends(stream, false)?))
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

/// Sends [`PREFACE`] over TLS, now.
async fn send_preface<S: AsyncWrite + Unpin>(stream: &mut S) -> io::Result<()> {
    stream.write_all(PREFACE).await?;
    stream.flush().await
}

/// Reads [`PREFACE`] over TLS; anything else is not a lane.
async fn read_preface<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<()> {
    let mut got = [0u8; PREFACE.len()];
    stream.read_exact(&mut got).await?;
    if &got != PREFACE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a cnode lane",
        ));
    }
    Ok(())
}

/// The lane's own record layer on a TLS stream whose handshake (and the
/// lane's) is done: the socket and keys from the TLS exporter. Bytes the
/// peer sent too early stay in rustls's buffer and are lost with it; the
/// records after them then do not open.
fn sealed_ends(
    stream: Coalesced<TlsStream<Compat<TcpStream>>>,
    client: bool,
) -> io::Result<(SealedReader, SealedWriter)> {
    let (io, conn): (Compat<TcpStream>, rustls::Connection) = match stream.into_inner() {
        TlsStream::Client(s) => {
            let (io, c) = s.into_inner();
            (io, c.into())
        }
        TlsStream::Server(s) => {
            let (io, c) = s.into_inner();
            (io, c.into())
        }
    };
    sealed::split(io.into_inner(), &conn, client)
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
mod tests;
