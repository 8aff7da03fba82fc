//! Blob store, piece protocol and swarm downloader over an in-process
//! transport (real stores and files; the libp2p path is tested in cnode-testkit).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use cnode_blobs::{
    BlobError, BlobServer, BlobStore, DownloadOptions, ExportMode, PeerRequester, collection,
    download,
    protocol::{self, PIECE_SIZE},
};
use cnode_types::{BlobHash, PeerId, Scatter, Scattered};

struct Node {
    _dir: tempfile::TempDir,
    store: BlobStore,
    server: BlobServer,
}

async fn node(quota: u64, slots: usize) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let db = cnode_store::Store::open(dir.path()).unwrap();
    let store = BlobStore::open(dir.path().join("blobs"), db, quota)
        .await
        .unwrap();
    let server = BlobServer::new(store.clone(), slots);
    Node {
        _dir: dir,
        store,
        server,
    }
}

/// Routes requests to in-process servers; can fail after a number of pieces.
#[derive(Clone)]
struct Fake {
    servers: Arc<HashMap<PeerId, BlobServer>>,
    gets: Arc<AtomicUsize>,
    fail_after_gets: Option<usize>,
    /// Providers that never answer (a node that has gone, still in the DHT).
    silent: Vec<PeerId>,
    /// A provider lookup that never ends (a DHT query waiting on such nodes).
    silent_lookup: bool,
    /// Providers whose every data answer, a size proof too, has a byte flipped.
    liars: Vec<PeerId>,
    /// Until this peer is asked for a piece, it is the only one listed.
    first: Option<(PeerId, Arc<std::sync::atomic::AtomicBool>)>,
    /// Read answers by the download's scatter plan, as a lane does.
    scatter: bool,
    /// Answers read apart.
    split: Arc<AtomicUsize>,
}

impl Fake {
    fn new(servers: Vec<(PeerId, BlobServer)>) -> Self {
        Self {
            servers: Arc::new(servers.into_iter().collect()),
            gets: Arc::new(AtomicUsize::new(0)),
            fail_after_gets: None,
            silent: Vec::new(),
            silent_lookup: false,
            liars: Vec::new(),
            first: None,
            scatter: false,
            split: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl PeerRequester for Fake {
    async fn request(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, String> {
        if self.silent.contains(&peer) {
            return std::future::pending().await;
        }
        if request.get(1) == Some(&1) {
            if let Some((first, asked)) = &self.first
                && *first == peer
            {
                asked.store(true, Ordering::SeqCst);
            }
            let n = self.gets.fetch_add(1, Ordering::SeqCst);
            if self.fail_after_gets.is_some_and(|max| n >= max) {
                return Err("connection lost".into());
            }
        }
        let server = self.servers.get(&peer).ok_or("unknown peer")?;
        let mut answer = server.handle(&request).await;
        if self.liars.contains(&peer) && answer.len() > protocol::DATA_HEADER {
            *answer.last_mut().expect("longer than the header") ^= 1;
        }
        Ok(answer)
    }
    async fn request_scattered(
        &self,
        peer: PeerId,
        request: Vec<u8>,
        mut plan: Scatter,
    ) -> Result<Scattered, String> {
        let answer = self.request(peer, request).await?;
        if !self.scatter || answer.len() != plan.frame_len || !plan.is_valid() {
            return Ok(Scattered::Whole(answer));
        }
        // What the lane reader does, from a buffer.
        let (mut head, mut pos, mut to) = (Vec::new(), 0, plan.at);
        for &(off, n) in &plan.runs {
            head.extend_from_slice(&answer[pos..off]);
            plan.tail[to..to + n].copy_from_slice(&answer[off..off + n]);
            (pos, to) = (off + n, to + n);
        }
        head.extend_from_slice(&answer[pos..]);
        self.split.fetch_add(1, Ordering::SeqCst);
        Ok(Scattered::Split(head, plan))
    }

    async fn peers(&self) -> Vec<PeerId> {
        if let Some((first, asked)) = &self.first
            && !asked.load(Ordering::SeqCst)
        {
            return vec![*first];
        }
        let mut all: Vec<PeerId> = self.servers.keys().copied().collect();
        all.extend(&self.silent);
        all
    }
    async fn providers(&self, _hash: BlobHash) -> Vec<PeerId> {
        if self.silent_lookup {
            return std::future::pending().await;
        }
        self.peers().await
    }
}

/// Whether `O_DIRECT` files can be opened in `dir` (not on tmpfs).
fn direct_io_works(dir: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(dir.join("direct-probe"))
        .is_ok()
}

fn random_peer() -> PeerId {
    cnode_types::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn import(n: &Node, bytes: &[u8]) -> BlobHash {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    n.store.import_path(f.path(), true).await.unwrap().hash
}

/// Downloads `hash` into `to` from `from` alone.
async fn fetch_from(to: &Node, from: &Node, hash: BlobHash) {
    let fake = Fake::new(vec![(random_peer(), from.server.clone())]);
    download(&to.store, &fake, hash, &DownloadOptions::default(), |_| {})
        .await
        .unwrap();
}

async fn read_all(store: &BlobStore, hash: BlobHash, len: usize) -> Vec<u8> {
    store.read_at(hash, 0, len).await.unwrap().unwrap()
}

#[tokio::test]
async fn import_hash_matches_blake3_and_reads_back() {
    let n = node(u64::MAX, 8).await;
    for len in [0usize, 1, 1024, 16 * 1024 + 7, 3 * PIECE_SIZE as usize + 5] {
        let bytes = data(len, 1);
        let hash = import(&n, &bytes).await;
        assert_eq!(hash, BlobHash::of(&bytes), "len {len}");
        assert!(n.store.verify(hash).await.unwrap());
        assert_eq!(read_all(&n.store, hash, len).await, bytes);
        if len > 10 {
            assert_eq!(
                n.store.read_at(hash, 3, 5).await.unwrap().unwrap(),
                &bytes[3..8]
            );
        }
    }
}

#[tokio::test]
async fn swarm_download_from_several_peers_and_corrupt_peer_is_dropped() {
    // Answers received whole, and read apart (leaves straight into the
    // aligned buffer) as over a lane.
    for scatter in [false, true] {
        swarm_with_a_corrupt_peer(scatter).await;
    }
}

async fn swarm_with_a_corrupt_peer(scatter: bool) {
    // The last piece is more than one chunk (a single last chunk is served
    // honestly: it is also the size proof).
    let bytes = data(9 * PIECE_SIZE as usize + 5000, 7);
    let seeders = [
        node(u64::MAX, 8).await,
        node(u64::MAX, 8).await,
        node(u64::MAX, 8).await,
    ];
    let mut hash = None;
    for s in &seeders {
        hash = Some(import(s, &bytes).await);
    }
    let hash = hash.unwrap();
    // One of them flips bytes in every piece it serves.
    seeders[2].store.set_corrupt_responses(true);
    let ids: Vec<PeerId> = (0..3).map(|_| random_peer()).collect();
    let mut fake = Fake::new(
        ids.iter()
            .copied()
            .zip(seeders.iter().map(|s| s.server.clone()))
            .collect(),
    );
    // The honest ones are found only once the corrupting one is being asked
    // for pieces: left to a race, they could serve every piece before it
    // was asked at all.
    fake.first = Some((ids[2], Arc::default()));
    fake.scatter = scatter;

    let leecher = node(u64::MAX, 8).await;
    let stats = download(
        &leecher.store,
        &fake,
        hash,
        &DownloadOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(read_all(&leecher.store, hash, bytes.len()).await, bytes);
    assert!(leecher.store.verify(hash).await.unwrap());
    // The corrupting peer was caught on its bad piece(s) and dropped; it
    // contributed no verified piece.
    assert!(
        stats.bad_pieces.get(&ids[2]).copied().unwrap_or(0) >= 1,
        "{stats:?}"
    );
    assert!(stats.dropped.contains(&ids[2]));
    assert_eq!(stats.pieces_from.get(&ids[2]), None);
    assert_eq!(
        stats.pieces_from.values().sum::<u64>(),
        protocol::piece_count(bytes.len() as u64)
    );
    // Whole pieces were read apart (where O_DIRECT works), the last one,
    // not ending on a page, whole.
    if scatter && direct_io_works(leecher._dir.path()) {
        assert!(fake.split.load(Ordering::SeqCst) >= 9, "{stats:?}");
    } else {
        assert_eq!(fake.split.load(Ordering::SeqCst), 0);
    }
}

#[tokio::test]
async fn a_lying_size_proof_drops_the_peer_before_any_room_is_reserved() {
    let bytes = data(2 * PIECE_SIZE as usize + 5, 4);
    let (liar, leecher) = (node(u64::MAX, 8).await, node(u64::MAX, 8).await);
    let hash = import(&liar, &bytes).await;
    let id = random_peer();
    let mut fake = Fake::new(vec![(id, liar.server.clone())]);
    fake.liars = vec![id];
    let opts = DownloadOptions {
        stall_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = download(&leecher.store, &fake, hash, &opts, |_| {})
        .await
        .unwrap_err();
    // Its only provider was dropped after the failed proof and never asked
    // again: nobody has the blob.
    assert!(
        matches!(err, cnode_blobs::DownloadError::NoProviders(h) if h == hash),
        "{err}"
    );
    assert_eq!(leecher.store.info(hash).await.unwrap(), None);
    assert_eq!(fake.gets.load(Ordering::SeqCst), 1, "one size proof asked");
}

#[tokio::test]
async fn a_provider_or_lookup_that_never_answers_holds_up_nothing() {
    let bytes = data(3 * PIECE_SIZE as usize + 9, 3);
    let (seeder, leecher) = (node(u64::MAX, 8).await, node(u64::MAX, 8).await);
    let hash = import(&seeder, &bytes).await;
    let mut fake = Fake::new(vec![(random_peer(), seeder.server.clone())]);
    // Listed first and last: neither the first answer nor the last is awaited.
    fake.silent = vec![random_peer(), random_peer()];
    fake.silent_lookup = true;
    let opts = DownloadOptions {
        stall_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    // Before answers were taken one by one, and the DHT lookup awaited on its
    // own, this waited for both (here: forever; over the network: a dial
    // timeout per gone provider).
    let stats = tokio::time::timeout(
        Duration::from_secs(60),
        download(&leecher.store, &fake, hash, &opts, |_| {}),
    )
    .await
    .expect("the download waited for a provider that never answers")
    .unwrap();
    assert_eq!(stats.pieces_from.len(), 1);
    assert_eq!(read_all(&leecher.store, hash, bytes.len()).await, bytes);
}

#[tokio::test]
async fn download_resumes_without_refetching_verified_pieces() {
    let bytes = data(8 * PIECE_SIZE as usize, 3);
    let seeder = node(u64::MAX, 8).await;
    let hash = import(&seeder, &bytes).await;
    let id = random_peer();
    let mut fake = Fake::new(vec![(id, seeder.server.clone())]);
    fake.fail_after_gets = Some(4 + 1); // the size proof is a get too

    let leecher = node(u64::MAX, 8).await;
    let opts = DownloadOptions {
        stall_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let err = download(&leecher.store, &fake, hash, &opts, |_| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("stalled"), "{err}");
    let info = leecher.store.info(hash).await.unwrap().unwrap();
    assert!(!info.complete && info.have_bytes > 0, "{info:?}");

    // A fresh store handle on the same directory (as after a restart).
    let fake = Fake::new(vec![(id, seeder.server.clone())]);
    let stats = download(
        &leecher.store,
        &fake,
        hash,
        &DownloadOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(stats.resumed_pieces >= 1, "{stats:?}");
    assert_eq!(stats.resumed_pieces + stats.pieces_from[&id], 8);
    assert_eq!(read_all(&leecher.store, hash, bytes.len()).await, bytes);
}

#[tokio::test]
async fn quota_refuses_cleanly_and_gc_frees_only_unpinned() {
    let n = node(3 * PIECE_SIZE, 8).await;
    let small = import(&n, &data(PIECE_SIZE as usize, 1)).await;
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), data(3 * PIECE_SIZE as usize, 2)).unwrap();
    let err = n.store.import_path(f.path(), true).await.unwrap_err();
    assert!(matches!(err, BlobError::Quota { .. }), "{err}");
    assert!(err.to_string().contains("quota"), "{err}");
    assert_eq!(
        n.store.list().await.unwrap().len(),
        1,
        "nothing half-written is listed"
    );
    let blobs_dir = n._dir.path().join("blobs");
    assert_eq!(
        std::fs::read_dir(blobs_dir.join("tmp")).unwrap().count(),
        0,
        "no temp files left"
    );

    // Streamed upload over the quota: stopped, nothing kept.
    let chunks: Vec<Result<bytes::Bytes, String>> = (0..4)
        .map(|i| Ok(bytes::Bytes::from(data(PIECE_SIZE as usize, i))))
        .collect();
    let err = n
        .store
        .import_stream(futures::stream::iter(chunks), true)
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Quota { .. }), "{err}");
    assert_eq!(std::fs::read_dir(blobs_dir.join("tmp")).unwrap().count(), 0);

    let loose = import(&n, &data(1000, 9)).await;
    n.store.set_pinned(loose, false).await.unwrap();
    let report = n.store.gc().await.unwrap();
    assert_eq!(report.removed, 1);
    assert_eq!(report.freed_bytes, 1000);
    assert!(n.store.info(loose).await.unwrap().is_none());
    assert!(
        n.store.info(small).await.unwrap().is_some(),
        "pinned blob kept"
    );
}

#[tokio::test]
async fn folder_round_trips_as_a_collection() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("a/b/c")).unwrap();
    std::fs::write(src.path().join("top.txt"), b"top").unwrap();
    std::fs::write(src.path().join("a/one.bin"), data(70_000, 4)).unwrap();
    std::fs::write(src.path().join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(src.path().join("a/b/empty"), b"").unwrap();
    let seeder = node(u64::MAX, 8).await;
    let report = seeder.store.import_path(src.path(), true).await.unwrap();
    assert_eq!(report.files, 4);
    let coll = collection::read_collection(&seeder.store, report.hash)
        .await
        .unwrap();
    let paths: Vec<&str> = coll.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["a/b/c/deep.txt", "a/b/empty", "a/one.bin", "top.txt"]
    );

    // Fetch the collection and every file from the seeder, then export.
    let id = random_peer();
    let fake = Fake::new(vec![(id, seeder.server.clone())]);
    let leecher = node(u64::MAX, 8).await;
    let all = cnode_blobs::download_tree(
        &leecher.store,
        &fake,
        report.hash,
        &DownloadOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 5, "the collection and its four files");
    // Out once by copy, once handed over: both give the same tree, and
    // after the hand-over the store still serves every file (from `moved`).
    let out = tempfile::tempdir().unwrap();
    let (copy, moved) = (out.path().join("copy"), out.path().join("moved"));
    collection::export(&leecher.store, report.hash, &copy, ExportMode::Copy)
        .await
        .unwrap();
    collection::export(&leecher.store, report.hash, &moved, ExportMode::Move)
        .await
        .unwrap();
    for p in ["top.txt", "a/one.bin", "a/b/c/deep.txt", "a/b/empty"] {
        let want = std::fs::read(src.path().join(p)).unwrap();
        assert_eq!(std::fs::read(copy.join(p)).unwrap(), want, "{p}");
        assert_eq!(std::fs::read(moved.join(p)).unwrap(), want, "{p}");
        let e = coll.entries.iter().find(|e| e.path == p).unwrap();
        let info = leecher.store.info(e.hash).await.unwrap().unwrap();
        assert_eq!(
            info.external,
            Some(std::fs::canonicalize(moved.join(p)).unwrap())
        );
        assert_eq!(read_all(&leecher.store, e.hash, want.len()).await, want);
    }
}

#[tokio::test]
async fn hand_over_serves_from_the_file_until_it_changes() {
    let bytes = data(3 * PIECE_SIZE as usize + 99, 5);
    let seeder = node(u64::MAX, 8).await;
    let hash = import(&seeder, &bytes).await;
    let leecher = node(u64::MAX, 8).await;
    fetch_from(&leecher, &seeder, hash).await;
    let own = leecher
        ._dir
        .path()
        .join("blobs")
        .join(format!("{}.data", hash.to_hex()));
    assert!(own.exists());
    assert_eq!(
        leecher.store.used_bytes().await.unwrap(),
        bytes.len() as u64
    );

    // Handed over: the bytes are at `out`, not in the store, and not counted.
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("got.bin");
    collection::export(&leecher.store, hash, &file, ExportMode::Move)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    assert!(!own.exists(), "no second copy in the store");
    let info = leecher.store.info(hash).await.unwrap().unwrap();
    assert!(info.complete);
    assert_eq!(info.external, Some(std::fs::canonicalize(&file).unwrap()));
    assert_eq!(leecher.store.used_bytes().await.unwrap(), 0);
    assert!(leecher.store.verify(hash).await.unwrap());

    // A third node downloads it from the leecher, i.e. from `got.bin`.
    let third = node(u64::MAX, 8).await;
    fetch_from(&third, &leecher, hash).await;
    assert_eq!(read_all(&third.store, hash, bytes.len()).await, bytes);

    // Exporting to the same file again leaves it alone; a copy elsewhere
    // is a plain copy and the blob stays served from `got.bin`.
    let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap());
    collection::export(&leecher.store, hash, &file, ExportMode::Move)
        .await
        .unwrap();
    let copy = out.path().join("copy.bin");
    collection::export(&leecher.store, hash, &copy, ExportMode::Move)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&copy).unwrap(), bytes);
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&file).unwrap()),
        ino
    );
    assert!(leecher.store.info(hash).await.unwrap().unwrap().external == info.external);

    // `rm` forgets the blob and leaves the user's file alone.
    leecher.store.remove(hash).await.unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), bytes);

    // Handed over again (from the third node), then the file is edited: the
    // store forgets the blob and its outboard rather than serve other bytes.
    let edited = out.path().join("edited.bin");
    collection::export(&third.store, hash, &edited, ExportMode::Move)
        .await
        .unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&edited)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"!"))
        .unwrap();
    assert!(third.store.info(hash).await.unwrap().is_none());
    assert!(third.store.read_at(hash, 0, 10).await.is_err());
    let obao = third
        ._dir
        .path()
        .join("blobs")
        .join(format!("{}.obao", hash.to_hex()));
    assert!(!obao.exists());
    assert_eq!(
        std::fs::metadata(&edited).unwrap().len(),
        bytes.len() as u64 + 1
    );
}

#[tokio::test]
async fn hand_over_to_another_file_system_copies() {
    use std::os::unix::fs::MetadataExt;
    let shm = std::path::Path::new("/dev/shm");
    let n = node(u64::MAX, 8).await;
    let bytes = data(PIECE_SIZE as usize + 7, 9);
    let hash = import(&n, &bytes).await;
    let blobs = n._dir.path().join("blobs");
    if !shm.is_dir() || shm.metadata().unwrap().dev() == blobs.metadata().unwrap().dev() {
        panic!("this test needs /dev/shm on another file system than the temp dir");
    }
    let out = tempfile::tempdir_in(shm).unwrap();
    let file = out.path().join("x.bin");
    collection::export(&n.store, hash, &file, ExportMode::Move)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    // A rename cannot cross file systems: the store copied and kept its own.
    let info = n.store.info(hash).await.unwrap().unwrap();
    assert_eq!(info.external, None);
    assert!(blobs.join(format!("{}.data", hash.to_hex())).exists());
    assert_eq!(read_all(&n.store, hash, bytes.len()).await, bytes);
}

#[tokio::test]
async fn blob_whose_data_file_vanished_is_forgotten_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let open = || async {
        let db = cnode_store::Store::open(dir.path()).unwrap();
        BlobStore::open(dir.path().join("blobs"), db, u64::MAX)
            .await
            .unwrap()
    };
    let store = open().await;
    let (keep, gone) = (data(5000, 1), data(6000, 2));
    let mut hashes = vec![];
    for b in [&keep, &gone] {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b).unwrap();
        hashes.push(store.import_path(f.path(), false).await.unwrap().hash);
    }
    drop(store);
    let blobs = dir.path().join("blobs");
    std::fs::remove_file(blobs.join(format!("{}.data", hashes[1].to_hex()))).unwrap();
    let store = open().await;
    let listed: Vec<BlobHash> = store.list().await.unwrap().iter().map(|i| i.hash).collect();
    assert_eq!(listed, [hashes[0]]);
    assert!(!blobs.join(format!("{}.obao", hashes[1].to_hex())).exists());
    assert_eq!(read_all(&store, hashes[0], keep.len()).await, keep);
}

#[tokio::test]
async fn evil_collection_is_refused_and_nothing_written() {
    let n = node(u64::MAX, 8).await;
    let file = import(&n, b"root:x:0:0").await;
    let evil = format!(
        r#"{{"format":"cnode-collection/1","entries":[{{"path":"ok.txt","hash":"{file}","size":10}},{{"path":"../../etc/passwd","hash":"{file}","size":10}}]}}"#
    );
    let hash = n
        .store
        .import_bytes(evil.into_bytes(), true, cnode_blobs::BlobKind::Collection)
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x");
    let err = collection::export(&n.store, hash, &dest, ExportMode::Move)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("../../etc/passwd"), "{err}");
    assert!(!dest.exists(), "nothing written, not even the good entry");
    let info = n.store.info(file).await.unwrap().unwrap();
    assert_eq!(info.external, None, "and nothing handed over");
    for abs in [r#"/etc/passwd"#] {
        let c = format!(
            r#"{{"format":"cnode-collection/1","entries":[{{"path":"{abs}","hash":"{file}","size":10}}]}}"#
        );
        let h = n
            .store
            .import_bytes(c.into_bytes(), true, cnode_blobs::BlobKind::Collection)
            .await
            .unwrap();
        assert!(
            collection::export(&n.store, h, &dest, ExportMode::Copy)
                .await
                .is_err()
        );
    }
}

#[tokio::test]
async fn server_rejects_malformed_requests_without_panicking() {
    let n = node(u64::MAX, 8).await;
    for bad in [
        vec![],
        vec![1],
        vec![2, 0],
        vec![1, 7, 0],
        vec![1u8; 5000],
        vec![1, 1, 0, 0],
    ] {
        let resp = protocol::Response::decode(&n.server.handle(&bad).await).unwrap();
        assert!(
            matches!(resp, protocol::Response::Error { .. }),
            "{bad:?} → {resp:?}"
        );
    }
    let missing = protocol::Request::Have {
        hash: BlobHash::of(b"nope"),
    }
    .encode();
    assert_eq!(
        protocol::Response::decode(&n.server.handle(&missing).await).unwrap(),
        protocol::Response::NotFound
    );
}

/// The vectors in docs/protocol.md, recomputed. Run with `PRINT_VECTORS=1` to
/// print them (e.g. after a deliberate, versioned protocol change).
#[tokio::test]
async fn protocol_md_test_vectors() {
    use protocol::{Request, Response};
    let empty = BlobHash::of(b"");
    let mut computed: Vec<(String, String)> = vec![
        ("cid-empty".into(), empty.to_cid()),
        ("cid-hello".into(), BlobHash::of(b"hello world").to_cid()),
        (
            "req-have".into(),
            hex(&Request::Have { hash: empty }.encode()),
        ),
        (
            "req-get".into(),
            hex(&Request::Get {
                hash: empty,
                ranges: vec![(0, 1024), (2048, 2049)],
            }
            .encode()),
        ),
        (
            "resp-have".into(),
            hex(&Response::Have {
                size: 3 * PIECE_SIZE + 1,
                complete: false,
                bitfield: vec![0b0000_0101],
            }
            .encode()),
        ),
        ("resp-notfound".into(), hex(&Response::NotFound.encode())),
        (
            "resp-error".into(),
            hex(&Response::Error {
                message: "busy".into(),
            }
            .encode()),
        ),
    ];
    // Data responses from a real store: "hello world", and chunk 16 of a
    // 17 KiB blob (two chunk groups: the answer carries the root's hash pair).
    let n = node(u64::MAX, 8).await;
    let hello = import(&n, b"hello world").await;
    let resp = n
        .server
        .handle(
            &Request::Get {
                hash: hello,
                ranges: vec![(0, 1)],
            }
            .encode(),
        )
        .await;
    computed.push(("resp-data-hello".into(), hex(&resp)));
    let big: Vec<u8> = (0..17 * 1024).map(|i| (i % 251) as u8).collect();
    let h = import(&n, &big).await;
    computed.push(("cid-17k".into(), h.to_cid()));
    let resp = n
        .server
        .handle(
            &Request::Get {
                hash: h,
                ranges: vec![(16, 17)],
            }
            .encode(),
        )
        .await;
    computed.push(("resp-data-17k-len".into(), resp.len().to_string()));
    computed.push((
        "resp-data-17k-blake3".into(),
        blake3::hash(&resp).to_hex().to_string(),
    ));

    if std::env::var_os("PRINT_VECTORS").is_some() {
        for (k, v) in &computed {
            println!("vector {k} {v}");
        }
    }
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/protocol.md"
    ))
    .unwrap();
    let documented: HashMap<&str, &str> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix("vector "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    for (k, v) in &computed {
        assert_eq!(
            documented.get(k.as_str()).copied(),
            Some(v.as_str()),
            "vector {k} in docs/protocol.md"
        );
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Memory probe (not a CI test): peak RSS while downloading 256 MiB in process.
/// `cargo test --release -p cnode-blobs --test blobs rss_probe -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn rss_probe() {
    let bytes = data(256 * 1024 * 1024, 1);
    let seeder = node(u64::MAX, 16).await;
    let hash = import(&seeder, &bytes).await;
    drop(bytes);
    let hwm = || {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
            .map(str::to_owned)
            .unwrap()
    };
    println!("before: {}", hwm());
    let fake = Fake::new(vec![(random_peer(), seeder.server.clone())]);
    let leecher = node(u64::MAX, 16).await;
    download(
        &leecher.store,
        &fake,
        hash,
        &DownloadOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in status
        .lines()
        .filter(|l| l.starts_with("VmHWM") || l.starts_with("VmRSS"))
    {
        println!("after: {l}");
    }
}
