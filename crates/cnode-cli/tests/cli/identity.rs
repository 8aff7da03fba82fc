//! User identities through the real binary: `cnode id user …` and `init`.

use std::{os::unix::fs::PermissionsExt, process::Output};

use crate::harness::{Cnode, assert_one_line_error};

const PASS: &str = "correct horse battery staple";

/// Runs `cnode ARGS` with `CNODE_PASSPHRASE` set to `pass`, or unset.
fn run(node: &Cnode, args: &[&str], pass: Option<&str>) -> Output {
    let mut c = node.command();
    c.env_remove("CNODE_PASSPHRASE");
    if let Some(p) = pass {
        c.env("CNODE_PASSPHRASE", p);
    }
    c.args(args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ok_json(out: &Output, what: &str) -> serde_json::Value {
    serde_json::from_str(&ok(out, what)).unwrap()
}

fn init(node: &Cnode) {
    ok(&run(node, &["init"], None), "init");
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_list_export_and_import_a_protected_user() {
    let a = Cnode::new();
    init(&a);
    let v = ok_json(
        &run(&a, &["id", "user", "new", "--json"], Some(PASS)),
        "user new",
    );
    let did = v["did"].as_str().unwrap().to_owned();
    assert!(did.starts_with("did:key:z6Mk"), "{v}");
    assert_eq!(v["protected"], true);
    assert_eq!(v["default"], true);

    let ls = ok_json(&run(&a, &["id", "user", "ls", "--json"], None), "ls");
    assert_eq!(
        ls,
        serde_json::json!([{ "did": did, "protected": true, "default": true }])
    );
    let users = a.file("users");
    assert_eq!(mode(&users), 0o700);
    let key_file = users.join(format!("{}.json", did.trim_start_matches("did:key:")));
    assert_eq!(mode(&key_file), 0o600);
    assert!(
        !std::fs::read_to_string(&key_file)
            .unwrap()
            .contains("insecure_seed")
    );

    // `cnode id` alone still prints the node's peer id.
    let id = ok(&run(&a, &["id"], None), "id");
    assert!(id.trim().starts_with("12D3Koo"), "{id}");

    // Export the default user to a file and to stdout: the same bytes.
    let tmp = tempfile::tempdir().unwrap();
    let exported = tmp.path().join("me.json");
    let out = run(
        &a,
        &["id", "user", "export", "-o", exported.to_str().unwrap()],
        None,
    );
    assert!(ok(&out, "export -o").contains(&did));
    assert_eq!(mode(&exported), 0o600);
    let stdout = ok(&run(&a, &["id", "user", "export", &did], None), "export");
    assert_eq!(stdout.as_bytes(), std::fs::read(&exported).unwrap());
    // An existing file is not overwritten.
    let out = run(
        &a,
        &["id", "user", "export", "-o", exported.to_str().unwrap()],
        None,
    );
    let err = assert_one_line_error(&out, "export over a file");
    assert!(err.contains("already exists"), "{err}");

    // Import into a second data directory.
    let b = Cnode::new();
    init(&b);
    let file = exported.to_str().unwrap();
    let out = run(&b, &["id", "user", "import", file], Some("not it"));
    let err = assert_one_line_error(&out, "import with a wrong passphrase");
    assert!(
        err.contains("wrong passphrase") && err.contains(&did),
        "{err}"
    );
    let out = run(&b, &["id", "user", "import", file], None);
    let err = assert_one_line_error(&out, "import with no passphrase");
    assert!(err.contains("CNODE_PASSPHRASE"), "{err}");
    assert_eq!(
        ok_json(&run(&b, &["id", "user", "ls", "--json"], None), "ls b"),
        serde_json::json!([])
    );

    let v = ok_json(
        &run(&b, &["id", "user", "import", file, "--json"], Some(PASS)),
        "import",
    );
    assert_eq!(v["did"], did);
    assert_eq!(v["already_present"], false);
    assert_eq!(v["default"], true);
    // Importing it again is reported, not an error.
    let v = ok_json(
        &run(&b, &["id", "user", "import", file, "--json"], Some(PASS)),
        "import again",
    );
    assert_eq!(v["already_present"], true);
    assert_eq!(
        ok_json(&run(&b, &["id", "user", "ls", "--json"], None), "ls b"),
        serde_json::json!([{ "did": did, "protected": true, "default": true }])
    );

    // Not a key file: one line naming the file.
    let junk = tmp.path().join("junk.json");
    std::fs::write(&junk, b"{\"hello\": 1}").unwrap();
    let out = run(
        &b,
        &["id", "user", "import", junk.to_str().unwrap()],
        Some(PASS),
    );
    let err = assert_one_line_error(&out, "import junk");
    assert!(
        err.contains("junk.json") && err.contains("not a cnode key file"),
        "{err}"
    );
}

#[test]
fn no_passphrase_without_a_terminal_is_a_clear_error() {
    let a = Cnode::new();
    init(&a);
    // stdin is not a terminal in tests and CNODE_PASSPHRASE is unset.
    let out = run(&a, &["id", "user", "new"], None);
    let err = assert_one_line_error(&out, "user new without a passphrase");
    assert!(
        err.contains("CNODE_PASSPHRASE") && err.contains("--insecure-no-passphrase"),
        "{err}"
    );
    let out = run(&a, &["id", "user", "export"], None);
    let err = assert_one_line_error(&out, "export with no user");
    assert!(err.contains("cnode id user new"), "{err}");
    let ls = ok(&run(&a, &["id", "user", "ls"], None), "ls");
    assert!(ls.contains("cnode id user new"), "{ls}");
}

#[test]
fn insecure_users_and_choosing_the_default() {
    let a = Cnode::new();
    init(&a);
    let first = ok_json(
        &run(
            &a,
            &["id", "user", "new", "--insecure-no-passphrase", "--json"],
            None,
        ),
        "insecure new",
    );
    assert_eq!(first["protected"], false);
    assert_eq!(first["default"], true);
    let first = first["did"].as_str().unwrap().to_owned();
    let second = ok_json(
        &run(
            &a,
            &["id", "user", "new", "--insecure-no-passphrase", "--json"],
            None,
        ),
        "second new",
    );
    assert_eq!(second["default"], false);
    let second = second["did"].as_str().unwrap().to_owned();

    ok(
        &run(&a, &["id", "user", "default", &second], None),
        "default",
    );
    let ls = ok_json(&run(&a, &["id", "user", "ls", "--json"], None), "ls");
    let ls = ls.as_array().unwrap();
    assert_eq!(ls.len(), 2);
    for u in ls {
        assert_eq!(u["default"], u["did"] == second.as_str(), "{u}");
        assert_eq!(u["protected"], false);
    }
    let human = ok(&run(&a, &["id", "user", "ls"], None), "ls");
    assert!(human.contains(&format!("* {second}")), "{human}");

    let out = run(&a, &["id", "user", "default", "did:key:nope"], None);
    assert_one_line_error(&out, "default with a bad DID");
    let b = Cnode::new();
    init(&b);
    let out = run(&b, &["id", "user", "default", &first], None);
    let err = assert_one_line_error(&out, "default with an unknown DID");
    assert!(err.contains("no user"), "{err}");

    // An unprotected export imports without any passphrase.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("first.json");
    ok(
        &run(
            &a,
            &["id", "user", "export", &first, "-o", file.to_str().unwrap()],
            None,
        ),
        "export",
    );
    let v = ok_json(
        &run(
            &b,
            &["id", "user", "import", file.to_str().unwrap(), "--json"],
            None,
        ),
        "import",
    );
    assert_eq!(v["did"], first);
    assert_eq!(v["protected"], false);
}

#[test]
fn init_creates_a_first_user_only_when_asked() {
    // No flag, no CNODE_PASSPHRASE: nodes only, and a hint.
    let a = Cnode::new();
    let text = ok(&run(&a, &["init"], None), "init");
    assert!(text.contains("cnode id user new"), "{text}");
    assert!(!a.file("users").exists());

    let b = Cnode::new();
    let v = ok_json(
        &run(&b, &["init", "--insecure-no-passphrase", "--json"], None),
        "init insecure",
    );
    assert_eq!(v["created_user"], true);
    assert!(v["peer_id"].as_str().unwrap().starts_with("12D3Koo"));
    let ls = ok_json(&run(&b, &["id", "user", "ls", "--json"], None), "ls");
    assert_eq!(
        ls,
        serde_json::json!([{ "did": v["user"], "protected": false, "default": true }])
    );
    // init --force keeps the users and creates no second one.
    let v2 = ok_json(
        &run(
            &b,
            &["init", "--force", "--insecure-no-passphrase", "--json"],
            None,
        ),
        "init --force",
    );
    assert_eq!(v2["user"], v["user"]);
    assert_eq!(v2["created_user"], false);

    let c = Cnode::new();
    let v = ok_json(
        &run(&c, &["init", "--json"], Some(PASS)),
        "init with passphrase",
    );
    assert_eq!(v["created_user"], true);
    let ls = ok_json(&run(&c, &["id", "user", "ls", "--json"], None), "ls");
    assert_eq!(ls[0]["did"], v["user"]);
    assert_eq!(ls[0]["protected"], true);
}
