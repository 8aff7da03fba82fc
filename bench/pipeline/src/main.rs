//! The bare pipeline: what one encrypted, verified 1 -> 1 transfer costs on
//! this machine with no protocol around it, as a reference for the node.
//!
//! `bare-pipeline [--direct] SRC DST` copies SRC to DST through 127.0.0.1
//! TCP, three threads: the sender reads 1 MiB pieces and seals them in
//! 16 KiB AES-128-GCM records; the receiver opens the records; a writer
//! BLAKE3-hashes each 16 KiB and writes it into a preallocated DST, then
//! `fsync`s. No framing, no multiplexing, no proofs, no peers: everything a
//! node does on top of this is overhead this program does not pay.
//!
//! By default it writes through the page cache in 16 KiB writes, as the node
//! does. `--direct` writes each 1 MiB piece with `O_DIRECT` from an aligned
//! buffer instead (the tail of a file whose size is not a multiple of 4 KiB
//! through the page cache), which skips the kernel's copy and page cache.
//! Prints `bare_pipeline_mb_per_s=… seconds=…` (MB = 10^6 bytes).

use std::{
    fs::{File, OpenOptions},
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, OpenOptionsExt},
    },
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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let direct = args.first().is_some_and(|a| a == "--direct");
    if direct {
        args.remove(0);
    }
    let [src, dst] = <[String; 2]>::try_from(args).unwrap_or_else(|_| {
        eprintln!("usage: bare-pipeline [--direct] SRC DST");
        std::process::exit(2);
    });
    let size = std::fs::metadata(&src).expect("stat SRC").len();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let start = Instant::now();
    let sender = std::thread::spawn(move || send(src, size, addr));
    let (mut sock, _) = listener.accept().expect("accept");
    let out = File::create(&dst).expect("create DST");
    let direct_out = direct.then(|| {
        OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(&dst)
            .expect("open DST with O_DIRECT")
    });
    out.set_len(size).expect("size DST");
    // SAFETY: a file descriptor we own and plain integers.
    unsafe { libc::fallocate(out.as_raw_fd(), 0, 0, size as libc::off_t) };
    let (tx, rx) = mpsc::sync_channel::<(u64, Vec<u8>)>(8);
    let writer = std::thread::spawn(move || {
        let mut aligned = AlignedPiece::new();
        for (offset, piece) in rx {
            for record in piece.chunks(RECORD) {
                std::hint::black_box(blake3::hash(record));
            }
            match &direct_out {
                Some(d) => {
                    let whole = piece.len() / 4096 * 4096;
                    let buf = aligned.get();
                    buf[..whole].copy_from_slice(&piece[..whole]);
                    d.write_all_at(&buf[..whole], offset).expect("write DST");
                    out.write_all_at(&piece[whole..], offset + whole as u64)
                        .expect("write DST");
                }
                None => {
                    for (i, record) in piece.chunks(RECORD).enumerate() {
                        out.write_all_at(record, offset + (i * RECORD) as u64)
                            .expect("write DST");
                    }
                }
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

/// One piece-sized buffer aligned for `O_DIRECT`.
struct AlignedPiece(*mut u8);

impl AlignedPiece {
    const LAYOUT: std::alloc::Layout = match std::alloc::Layout::from_size_align(PIECE, 4096) {
        Ok(l) => l,
        Err(_) => panic!("layout"),
    };

    fn new() -> Self {
        // SAFETY: a non-zero size; zeroed, so every byte is initialised.
        let p = unsafe { std::alloc::alloc_zeroed(Self::LAYOUT) };
        assert!(!p.is_null(), "out of memory");
        Self(p)
    }

    fn get(&mut self) -> &mut [u8] {
        // SAFETY: PIECE initialised bytes owned by self, borrowed mutably once.
        unsafe { std::slice::from_raw_parts_mut(self.0, PIECE) }
    }
}

impl Drop for AlignedPiece {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with the same layout.
        unsafe { std::alloc::dealloc(self.0, Self::LAYOUT) }
    }
}
