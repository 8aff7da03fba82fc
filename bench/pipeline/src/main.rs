//! The bare pipeline: what one encrypted, verified 1 -> 1 transfer costs on
//! this machine with no protocol around it, as a reference for the node.
//!
//! `bare-pipeline SRC DST` copies SRC to DST through 127.0.0.1 TCP, three
//! threads: the sender reads 1 MiB pieces and seals them in 16 KiB
//! AES-128-GCM records; the receiver opens the records; a writer BLAKE3-hashes
//! each 16 KiB and writes it into a preallocated DST, then `fsync`s. No
//! framing, no multiplexing, no proofs, no peers: everything a node does on
//! top of this is overhead this program does not pay. Prints
//! `bare_pipeline_mb_per_s=… seconds=…` (MB = 10^6 bytes).

use std::{
    fs::File,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::mpsc,
    time::Instant,
};

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const RECORD: usize = 16 * 1024;
const PIECE: usize = 1 << 20;
const TAG: usize = 16;

fn key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &[7u8; 16]).expect("key"))
}

fn nonce(i: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&i.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

fn send(src: String, size: u64, addr: std::net::SocketAddr) {
    let file = File::open(&src).expect("open SRC");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_nodelay(true).expect("nodelay");
    let key = key();
    let mut piece = vec![0u8; PIECE];
    let mut out = Vec::with_capacity(PIECE + PIECE / RECORD * TAG + TAG);
    let (mut offset, mut seq) = (0u64, 0u64);
    while offset < size {
        let n = ((size - offset) as usize).min(PIECE);
        file.read_exact_at(&mut piece[..n], offset)
            .expect("read SRC");
        out.clear();
        for record in piece[..n].chunks(RECORD) {
            let at = out.len();
            out.extend_from_slice(record);
            let tag = key
                .seal_in_place_separate_tag(nonce(seq), Aad::empty(), &mut out[at..])
                .expect("seal");
            out.extend_from_slice(tag.as_ref());
            seq += 1;
        }
        sock.write_all(&out).expect("send");
        offset += n as u64;
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(src), Some(dst)) = (args.next(), args.next()) else {
        eprintln!("usage: bare-pipeline SRC DST");
        std::process::exit(2);
    };
    let size = std::fs::metadata(&src).expect("stat SRC").len();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let start = Instant::now();
    let sender = std::thread::spawn(move || send(src, size, addr));
    let (mut sock, _) = listener.accept().expect("accept");
    let out = File::create(&dst).expect("create DST");
    out.set_len(size).expect("size DST");
    // SAFETY: a file descriptor we own and plain integers.
    unsafe { libc::fallocate(out.as_raw_fd(), 0, 0, size as libc::off_t) };
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(8);
    let writer = std::thread::spawn(move || {
        for (offset, piece) in rx {
            for (i, record) in piece.chunks(RECORD).enumerate() {
                std::hint::black_box(blake3::hash(record));
                out.write_all_at(record, offset + (i * RECORD) as u64)
                    .expect("write DST");
            }
        }
        out.sync_all().expect("fsync DST");
    });
    let key = key();
    let mut record = vec![0u8; RECORD + TAG];
    let (mut offset, mut seq) = (0u64, 0u64);
    while offset < size {
        let n = ((size - offset) as usize).min(PIECE);
        let mut piece = Vec::with_capacity(n);
        while piece.len() < n {
            let m = (n - piece.len()).min(RECORD);
            sock.read_exact(&mut record[..m + TAG]).expect("receive");
            let plain = key
                .open_in_place(nonce(seq), Aad::empty(), &mut record[..m + TAG])
                .expect("open");
            piece.extend_from_slice(plain);
            seq += 1;
        }
        tx.send((offset, piece)).expect("writer");
        offset += n as u64;
    }
    drop(tx);
    writer.join().expect("writer");
    sender.join().expect("sender");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "bare_pipeline_mb_per_s={:.0} seconds={secs:.3}",
        size as f64 / secs / 1e6
    );
}
