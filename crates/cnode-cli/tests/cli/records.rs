//! `cnode post`, `query`, `records rm` and `region` with the real binary.

use std::time::Duration;

use crate::harness::{Cnode, assert_one_line_error};

fn ok_json(c: &Cnode, args: &[&str]) -> serde_json::Value {
    let out = c.run_cmd(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn post_query_delete_and_regions() {
    let c = Cnode::new();
    let out = c.run_cmd(&["init", "--insecure-no-passphrase"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut run = c.spawn_run(&[]);
    run.wait_api(Duration::from_secs(20));

    // Not serving Chiang Mai yet, and nobody else does: a clear error.
    let out = c.run_cmd(&[
        "post",
        "-c",
        "org.cnode.notices",
        "--at",
        "18.7883,98.9853",
        "--title",
        "x",
        "--body",
        r#"{"body": "y"}"#,
    ]);
    let err = assert_one_line_error(&out, "post to an unserved region");
    assert!(err.contains("region join"), "{err}");

    let joined = ok_json(&c, &["region", "join", "w5q6", "--json"]);
    assert_eq!(joined["changed"], true);
    let ls = ok_json(&c, &["region", "ls", "--json"]);
    assert_eq!(ls[0]["region"], "w5q6");

    let posted = ok_json(
        &c,
        &[
            "post",
            "-c",
            "org.cnode.notices",
            "--at",
            "18.7883,98.9853",
            "--key",
            "cafe",
            "--title",
            "ร้านกาแฟดอยช้าง",
            "--body",
            r#"{"body": "Nimman soi 7"}"#,
            "--json",
        ],
    );
    assert_eq!(posted["status"], "stored");
    assert!(posted["geohash"].as_str().unwrap().starts_with("w5q6"));
    let id = posted["id"].as_str().unwrap().to_owned();
    let event = ok_json(
        &c,
        &[
            "post",
            "-c",
            "org.cnode.events",
            "--at",
            "18.7877,99.0001",
            "--title",
            "Loy Krathong",
            "--body",
            r#"{"starts_at": 1795000000000, "place": "Ping river"}"#,
            "--expires",
            "30d",
            "--json",
        ],
    );
    assert_eq!(event["status"], "stored");

    // Thai substring, radius and region queries.
    let found = ok_json(&c, &["query", "--text", "กาแฟ", "--json"]);
    assert_eq!(found["records"].as_array().unwrap().len(), 1);
    assert_eq!(found["records"][0]["id"], id.as_str());
    let near = ok_json(
        &c,
        &[
            "query",
            "--near",
            "18.7883,98.9853",
            "--radius",
            "500m",
            "--json",
        ],
    );
    assert_eq!(near["records"].as_array().unwrap().len(), 1, "{near}");
    let wide = ok_json(
        &c,
        &[
            "query",
            "--near",
            "18.7883,98.9853",
            "--radius",
            "5km",
            "--json",
        ],
    );
    assert_eq!(wide["records"].as_array().unwrap().len(), 2, "{wide}");
    let events = ok_json(
        &c,
        &[
            "query",
            "--region",
            "w5q6",
            "-c",
            "org.cnode.events",
            "--json",
        ],
    );
    assert_eq!(events["records"][0]["body"]["title"], "Loy Krathong");
    let text = c.run_cmd(&["query", "--region", "w5q6"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("Loy Krathong"));

    // Bad input: clear one-line errors, nothing stored.
    for (args, what) in [
        (
            vec![
                "post",
                "-c",
                "org.cnode.notices",
                "--at",
                "95,0",
                "--title",
                "x",
            ],
            "latitude",
        ),
        (
            vec![
                "post",
                "-c",
                "org.cnode.notices",
                "--at",
                "18.78,98.98",
                "--body",
                "[1]",
            ],
            "JSON object",
        ),
        (
            vec![
                "post",
                "-c",
                "org.cnode.notices",
                "--at",
                "18.78,98.98",
                "--body",
                "{",
            ],
            "not valid JSON",
        ),
        (
            vec![
                "post",
                "-c",
                "org.cnode.events",
                "--at",
                "18.78,98.98",
                "--title",
                "No start",
            ],
            "starts_at",
        ),
        (
            vec![
                "post",
                "-c",
                "org.cnode.notices",
                "--at",
                "18.78,98.98",
                "--title",
                "t",
                "--expires",
                "soon",
            ],
            "duration",
        ),
        (
            vec!["query", "--near", "18.78,98.98", "--radius", "far"],
            "radius",
        ),
    ] {
        let err = assert_one_line_error(&c.run_cmd(&args), what);
        assert!(err.contains(what), "{args:?}: {err}");
    }
    let all = ok_json(&c, &["query", "--region", "w5q6", "--json"]);
    assert_eq!(all["records"].as_array().unwrap().len(), 2);

    // Delete: a tombstone hides the record.
    let rm = ok_json(
        &c,
        &[
            "records",
            "rm",
            "-c",
            "org.cnode.notices",
            "-k",
            "cafe",
            "--json",
        ],
    );
    assert_eq!(rm["deleted"], id.as_str());
    let found = ok_json(&c, &["query", "--text", "กาแฟ", "--json"]);
    assert!(found["records"].as_array().unwrap().is_empty(), "{found}");
    let err = assert_one_line_error(
        &c.run_cmd(&["records", "rm", "-c", "org.cnode.notices", "-k", "cafe"]),
        "rm twice",
    );
    assert!(err.contains("no record"), "{err}");

    let left = ok_json(&c, &["region", "leave", "w5q6", "--json"]);
    assert_eq!(left["changed"], true);
    let all = ok_json(&c, &["query", "--json"]);
    assert!(all["records"].as_array().unwrap().is_empty(), "{all}");
    run.terminate(Duration::from_secs(5));
}
