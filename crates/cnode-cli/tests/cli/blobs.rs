//! `cnode add` / `get` / `blobs` with the real binary, including a download
//! killed with SIGKILL halfway and resumed.

use std::time::{Duration, Instant};

use crate::harness::{Cnode, signal};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed)
        .collect()
}

fn blob_state(c: &Cnode, cid: &str) -> Option<(u64, u64, bool)> {
    let out = c.run_cmd(&["blobs", "ls", "--json"]);
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|b| b["hash"] == cid).map(|b| {
        (
            b["have_bytes"].as_u64().unwrap_or(0),
            b["size"].as_u64().unwrap_or(0),
            b["complete"] == true,
        )
    })
}

#[test]
fn killed_get_resumes_without_refetching_verified_pieces() {
    let size = 48 * 1024 * 1024;
    let bytes = data(size, 42);
    // A seeder capped at 12 MiB/s, so the download takes a few seconds.
    let seeder = Cnode::new();
    seeder.init();
    let cfg = std::fs::read_to_string(seeder.file("config.toml")).unwrap();
    std::fs::write(
        seeder.file("config.toml"),
        cfg.replace(
            "max_upload_bytes_per_sec = 0",
            &format!("max_upload_bytes_per_sec = {}", 12 * 1024 * 1024),
        ),
    )
    .unwrap();
    let mut run = seeder.spawn_run(&["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"]);
    run.wait_api(Duration::from_secs(20));
    let file = seeder.data.parent().unwrap().join("video.bin");
    std::fs::write(&file, &bytes).unwrap();
    let out = seeder.run_cmd(&["add", file.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let added: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cid = added["cid"].as_str().unwrap().to_owned();
    assert!(cid.starts_with("bafkr4"), "{cid}");
    let addr = seeder.status_json()["listen_addrs"][0]
        .as_str()
        .unwrap()
        .to_owned();

    let leecher = Cnode::new();
    leecher.init();
    let dest = leecher.data.parent().unwrap().join("out.bin");
    let mut get = leecher
        .command()
        .args([
            "get",
            &cid,
            "-o",
            dest.to_str().unwrap(),
            "--peer",
            &addr,
            "--json",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(leecher.data.parent().unwrap().join("get.log")).unwrap())
        .spawn()
        .unwrap();
    // Kill it between a quarter and three quarters of the way.
    let deadline = Instant::now() + Duration::from_secs(60);
    let have_at_kill = loop {
        if let Some((have, total, _)) = blob_state(&leecher, &cid)
            && total == size as u64
            && have >= total / 4
        {
            signal(get.id(), "KILL");
            let _ = get.wait();
            break have;
        }
        assert!(
            get.try_wait().unwrap().is_none(),
            "get finished before it could be killed: {}",
            std::fs::read_to_string(leecher.data.parent().unwrap().join("get.log"))
                .unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no progress within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (have, total, complete) = blob_state(&leecher, &cid).expect("partial blob recorded");
    assert!(
        !complete && have >= have_at_kill && have < total,
        "have {have} of {total}"
    );
    assert!(!dest.exists(), "no output before the download is complete");

    // Again: it resumes, fetches only what was missing, and the file is right.
    let out = leecher.run_cmd(&[
        "get",
        &cid,
        "-o",
        dest.to_str().unwrap(),
        "--peer",
        &addr,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resumed = v["resumed_pieces"].as_u64().unwrap();
    let fetched = v["fetched_bytes"].as_u64().unwrap();
    assert!(
        resumed * 1024 * 1024 >= have,
        "resumed {resumed} pieces, had {have} bytes verified"
    );
    assert_eq!(
        fetched + have,
        total,
        "fetched {fetched} bytes after resuming with {have}"
    );
    assert!(
        std::fs::read(&dest).unwrap() == bytes,
        "output differs from the original"
    );

    // The store handed its copy over to `dest` and lists it there.
    let ls = leecher.run_cmd(&["blobs", "ls", "--json"]);
    let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(
        ls[0]["external"].as_str().map(std::path::PathBuf::from),
        Some(std::fs::canonicalize(&dest).unwrap()),
        "{ls}"
    );

    // blobs ls / unpin / gc / rm through the binary; gc forgets the blob and
    // leaves the user's file alone.
    let (_, _, complete) = blob_state(&leecher, &cid).unwrap();
    assert!(complete);
    assert!(leecher.run_cmd(&["blobs", "unpin", &cid]).status.success());
    let gc = leecher.run_cmd(&["blobs", "gc", "--json"]);
    let gc: serde_json::Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(gc["removed"], 1);
    assert!(blob_state(&leecher, &cid).is_none());
    assert!(
        std::fs::read(&dest).unwrap() == bytes,
        "gc touched the file"
    );
    let bad = leecher.run_cmd(&["blobs", "rm", "not-a-cid"]);
    crate::harness::assert_one_line_error(&bad, "rm bad cid");

    let (status, _, _) = run.terminate(Duration::from_secs(5));
    assert!(status.success());
}

#[test]
fn get_refuses_to_overwrite_and_bad_cids() {
    let a = Cnode::new();
    a.init();
    let existing = a.data.parent().unwrap().join("exists");
    std::fs::write(&existing, b"keep").unwrap();
    let cid = cnode_types::BlobHash::of(b"x").to_cid();
    let out = a.run_cmd(&["get", &cid, "-o", existing.to_str().unwrap()]);
    let err = crate::harness::assert_one_line_error(&out, "overwrite");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep");
    let out = a.run_cmd(&[
        "get",
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    ]);
    let err = crate::harness::assert_one_line_error(&out, "wrong cid kind");
    assert!(err.contains("not a raw BLAKE3"), "{err}");
}
