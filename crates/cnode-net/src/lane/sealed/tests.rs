use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::*;

/// An AES-128-GCM key (00…0f) and IV (10…1b).
const K: [u8; 28] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27,
];

async fn sockets() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(listener.local_addr().unwrap());
    let (a, b) = tokio::join!(a, listener.accept());
    (a.unwrap(), b.unwrap().0)
}

fn key() -> Key {
    Key::new(&AES_128_GCM, &K).unwrap()
}

/// A writer and the reader at the other end of a real socket, sharing `K`.
async fn pair() -> (SealedWriter, SealedReader) {
    let (a, b) = sockets().await;
    let (_, w) = ends(a, key(), key());
    let (r, _) = ends(b, key(), key());
    (w, r)
}

/// What a writer sends for `msgs` (each cut at [`MAX_RECORD`] only), as
/// raw bytes off the socket.
async fn raw(msgs: &[&[u8]]) -> Vec<u8> {
    let (a, mut b) = sockets().await;
    let (_, mut w) = ends(a, key(), key());
    for m in msgs {
        w.write_message(&mut m.to_vec(), &[]).await.unwrap();
    }
    drop(w);
    let mut out = Vec::new();
    b.read_to_end(&mut out).await.unwrap();
    out
}

/// A reader fed `bytes` over a real socket.
async fn reader_of(bytes: Vec<u8>) -> SealedReader {
    let (mut a, b) = sockets().await;
    tokio::spawn(async move {
        let _ = a.write_all(&bytes).await;
    });
    ends(b, key(), key()).0
}

/// How a reader fed `bytes` fails to read a message of at most `max` bytes.
async fn refusal(bytes: Vec<u8>, max: usize) -> io::ErrorKind {
    let mut r = reader_of(bytes).await;
    r.read_message(max, None).await.unwrap_err().kind()
}

/// A message laid out like a blob answer: a header, then 16 KiB leaves with
/// 64-byte parents between some of them; its leaves' (offset, length).
fn answer_like(leaves: usize) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut runs = Vec::new();
    let mut at = 40;
    for i in 0..leaves {
        if i % 2 == 0 {
            at += 64 * (1 + i % 3);
        }
        let n = if i + 1 == leaves { 5000 } else { 16 * 1024 };
        runs.push((at, n));
        at += n;
    }
    let msg = (0..at).map(|i| (i * 7 % 251) as u8).collect();
    (msg, runs)
}

fn plan_for(len: usize, runs: &[(usize, usize)], at: usize) -> Scatter {
    let total: usize = runs.iter().map(|r| r.1).sum();
    Scatter {
        frame_len: len,
        runs: runs.to_vec(),
        tail: vec![0; at + total + 3],
        at,
    }
}

/// What a plan makes of `msg`: the bytes outside the runs, in order, and
/// the plan's buffer with the runs from `at`.
fn reference(msg: &[u8], plan: Scatter) -> (Vec<u8>, Vec<u8>) {
    let (mut head, mut tail, mut pos, mut to) = (Vec::new(), plan.tail, 0, plan.at);
    for &(off, n) in &plan.runs {
        head.extend_from_slice(&msg[pos..off]);
        tail[to..to + n].copy_from_slice(&msg[off..off + n]);
        (pos, to) = (off + n, to + n);
    }
    head.extend_from_slice(&msg[pos..]);
    (head, tail)
}

#[tokio::test]
async fn messages_arrive_whole_and_by_plan_however_the_sender_cut_them() {
    let (msg, runs) = answer_like(9);
    // Cut at the leaves (as the blob server does), not at all, and at odd
    // places no plan expects (a peer may cut as it likes).
    let odd: Vec<(usize, usize)> = vec![(1, 3), (5000, 70_000), (90_000, 10)];
    let (mut w, mut r) = pair().await;
    for cuts in [&runs[..], &[], &odd[..]] {
        // Whole.
        w.write_message(&mut msg.clone(), cuts).await.unwrap();
        let got = r.read_message(1 << 20, None).await.unwrap();
        assert!(matches!(got, Scattered::Whole(ref b) if *b == msg));
        // By plan: the same head and buffer as the plain frame reader.
        w.write_message(&mut msg.clone(), cuts).await.unwrap();
        let got = r
            .read_message(1 << 20, Some(plan_for(msg.len(), &runs, 7)))
            .await
            .unwrap();
        let Scattered::Split(head, plan) = got else {
            panic!("not split")
        };
        let (want_head, want_tail) = reference(&msg, plan_for(msg.len(), &runs, 7));
        assert!(head == want_head, "head differs with cuts {cuts:?}");
        assert!(plan.tail == want_tail, "buffer differs with cuts {cuts:?}");
    }
    // A plan for another length (an error answer): whole.
    w.write_message(&mut b"busy".to_vec(), &[]).await.unwrap();
    let got = r
        .read_message(1 << 20, Some(plan_for(msg.len(), &runs, 0)))
        .await
        .unwrap();
    assert!(matches!(got, Scattered::Whole(ref b) if b == b"busy"));
    // Empty messages too.
    w.write_message(&mut [], &[]).await.unwrap();
    let got = r.read_message(10, None).await.unwrap();
    assert!(matches!(got, Scattered::Whole(ref b) if b.is_empty()));
}

#[tokio::test]
async fn a_flipped_bit_a_replay_or_a_reordering_ends_the_lane() {
    let (a, b) = (vec![1u8; 3000], vec![2u8; 3000]);
    let one = raw(&[&a]).await;
    let two = raw(&[&a, &b]).await;
    // Untouched, both arrive.
    let mut r = reader_of(two.clone()).await;
    for want in [&a, &b] {
        let got = r.read_message(1 << 20, None).await.unwrap();
        assert!(matches!(got, Scattered::Whole(ref g) if g == want));
    }
    // A flipped bit anywhere in the body: refused.
    for at in [30, 1000, one.len() - 1] {
        let mut bad = two.clone();
        bad[at] ^= 1;
        assert_eq!(
            refusal(bad, 1 << 20).await,
            io::ErrorKind::InvalidData,
            "bit at {at}"
        );
    }
    // The first message again instead of the second (a replay), and the
    // second message's bytes first (a reordering).
    let mut replay = one.clone();
    replay.extend_from_slice(&one);
    let mut r = reader_of(replay).await;
    r.read_message(1 << 20, None).await.unwrap();
    let err = r.read_message(1 << 20, None).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    let mut reordered = two[one.len()..].to_vec();
    reordered.extend_from_slice(&one);
    assert_eq!(
        refusal(reordered, 1 << 20).await,
        io::ErrorKind::InvalidData
    );
    // Cut short: an error, not a short message.
    assert_eq!(
        refusal(one[..one.len() - 5].to_vec(), 1 << 20).await,
        io::ErrorKind::UnexpectedEof
    );
}

#[tokio::test]
async fn lengths_over_their_caps_are_refused_before_the_body_is_read() {
    let msg = vec![9u8; 5000];
    let bytes = raw(&[&msg]).await;
    let err = reader_of(bytes.clone())
        .await
        .read_message(4999, None)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(
        err.to_string().contains("over the 4999-byte limit"),
        "{err}"
    );
    // A record header claiming more than a record may hold, nothing, or
    // more than is left of its message.
    for len in [MAX_RECORD as u32 + 1, 0, 5001] {
        let mut bad = bytes[..24].to_vec();
        bad.extend_from_slice(&len.to_le_bytes());
        assert_eq!(
            refusal(bad, 1 << 20).await,
            io::ErrorKind::InvalidData,
            "record of {len}"
        );
    }
}

#[test]
fn records_are_cut_at_runs_and_at_the_cap() {
    let big = MAX_RECORD;
    assert_eq!(records(0, &[]), Vec::<usize>::new());
    assert_eq!(records(10, &[]), vec![10]);
    assert_eq!(records(big + 5, &[]), vec![big, 5]);
    // Runs, with adjacent ones merged.
    assert_eq!(
        records(100, &[(10, 20), (30, 20), (60, 10)]),
        vec![10, 40, 10, 10, 30]
    );
    assert_eq!(records(30, &[(0, 10), (20, 10)]), vec![10, 10, 10]);
    // Runs that do not fit the message are ignored.
    assert_eq!(records(100, &[(10, 20), (5, 5)]), vec![100]);
    assert_eq!(records(100, &[(90, 20)]), vec![100]);
    assert_eq!(records(100, &[(usize::MAX, 2)]), vec![100]);
}

#[test]
fn keys_count_their_bytes_and_stop_at_the_limit() {
    let mut k = key();
    assert!(k.next(1000).is_ok());
    assert_eq!((k.seq, k.bytes), (1, 1000));
    k.bytes = KEY_LIMIT - 10;
    assert!(k.next(10).is_ok());
    assert!(k.next(1).is_err());
}

/// The `lane-sealed-*` vector in docs/protocol.md: the request `req-have`
/// as the first message a lane's client sends, sealed with AES-128-GCM, the
/// key 000102…0f and the IV 101112…1b.
#[tokio::test]
async fn protocol_md_test_vector() {
    let vector = crate::lane::tests::protocol_md_vector;
    assert_eq!(vector("lane-sealed-key"), K[..16]);
    assert_eq!(vector("lane-sealed-iv"), K[16..]);
    let have = vector("req-have");
    let sealed = raw(&[&have]).await;
    let hex: String = sealed.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sealed, vector("lane-sealed-have"), "got {hex}");
    let got = reader_of(sealed)
        .await
        .read_message(1024, None)
        .await
        .unwrap();
    assert!(matches!(got, Scattered::Whole(ref b) if *b == have));
}

#[test]
fn each_tls13_suite_seals_with_its_own_aead() {
    assert_eq!(
        algorithm(CipherSuite::TLS13_AES_128_GCM_SHA256),
        Some(&AES_128_GCM)
    );
    assert_eq!(
        algorithm(CipherSuite::TLS13_AES_256_GCM_SHA384),
        Some(&AES_256_GCM)
    );
    assert_eq!(
        algorithm(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
        Some(&CHACHA20_POLY1305)
    );
    assert_eq!(
        algorithm(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
        None
    );
}

/// Random plans, random cuts, random garbage: a planned read always equals
/// the reference split, and bytes that were not sealed with the key are an
/// error, never a panic or a message.
#[tokio::test]
async fn random_plans_and_cuts_read_right_and_garbage_is_refused() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(0x5ea1);
    // Sorted, non-overlapping (offset, length) parts of 0..len.
    let parts = |rng: &mut StdRng, len: usize| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < len {
            at += rng.gen_range(0..len / 8 + 2);
            let n = rng.gen_range(1..len / 4 + 2).min(len.saturating_sub(at));
            if n == 0 {
                break;
            }
            out.push((at, n));
            at += n;
        }
        out
    };
    let (mut w, mut r) = pair().await;
    for case in 0..60 {
        let len = rng.gen_range(0..200_000);
        let msg: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        let (runs, cuts) = (parts(&mut rng, len), parts(&mut rng, len));
        let at = rng.gen_range(0..64);
        w.write_message(&mut msg.clone(), &cuts).await.unwrap();
        let got = r
            .read_message(1 << 20, Some(plan_for(len, &runs, at)))
            .await
            .unwrap();
        let Scattered::Split(head, plan) = got else {
            panic!("case {case}: not split")
        };
        let (want_head, want_tail) = reference(&msg, plan_for(len, &runs, at));
        assert!(head == want_head && plan.tail == want_tail, "case {case}");
    }
    for case in 0..40 {
        let garbage: Vec<u8> = (0..rng.gen_range(0..5000)).map(|_| rng.r#gen()).collect();
        let got = reader_of(garbage).await.read_message(1 << 20, None).await;
        assert!(got.is_err(), "case {case}: garbage read as a message");
    }
}
