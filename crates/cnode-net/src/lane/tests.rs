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
