//! `cnode plugin new`: a scaffolded Rust plugin builds for wasm32-wasip2,
//! installs into a running node and answers its routes; a scaffolded
//! JavaScript plugin's files parse and (when componentize-js is installed,
//! as scripts/build-plugins does for the board) build into a valid
//! component.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use cnode_node::plugins::cnode_plugins::{Manifest, test_guests};

use crate::harness::{BIN, Cnode};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where the scaffolded plugins are built: one directory under the test
/// target dir shared by every run, so the second build is incremental.
fn build_target_dir() -> PathBuf {
    let bin = Path::new(BIN);
    bin.parent()
        .and_then(Path::parent)
        .unwrap_or(bin)
        .join("plugin-new")
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn scaffold(c: &Cnode, lang: &str, name: &str, dir: &Path) -> serde_json::Value {
    let out = c
        .command()
        .args(["plugin", "new", "--lang", lang, name, "--json", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out, "plugin new")).unwrap()
}

/// Installs the scaffolded plugin in `dist` into the running node and calls
/// its `/` twice: the template counts visits in kv.
fn install_and_count_visits(c: &Cnode, dist: &Path, id: &str) {
    let out = c
        .command()
        .args(["plugin", "install", "--yes", "--json"])
        .arg(dist)
        .output()
        .unwrap();
    ok(&out, "plugin install");
    for visits in [1, 2] {
        let out = c.run_cmd(&["plugin", "call", id, "/"]);
        let body: serde_json::Value = serde_json::from_str(&ok(&out, "plugin call /")).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"plugin": id, "visits": visits}),
            "the kv counter survives between calls"
        );
    }
}

#[test]
fn plugin_new_rust_builds_installs_and_answers() {
    if let Err(e) = test_guests::require_wasm_target() {
        panic!("{e}");
    }
    let c = Cnode::new();
    c.init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hello");

    let created = scaffold(&c, "rust", "org.test.hello", &dir);
    assert_eq!(created["id"], "org.test.hello");
    assert_eq!(created["lang"], "rust");
    let files: Vec<&str> = created["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "Cargo.toml",
        "plugin.toml",
        "src/lib.rs",
        "build.sh",
        "README.md",
        "wit/cnode-plugin.wit",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
        assert!(dir.join(f).is_file(), "{f} not written");
    }
    assert_eq!(
        std::fs::read_to_string(dir.join("wit/cnode-plugin.wit")).unwrap(),
        std::fs::read_to_string(repo().join("wit/cnode-plugin.wit")).unwrap(),
        "the project's WIT is the node's"
    );

    // Refusals: an existing non-empty directory, a bad name or id.
    let out = c
        .command()
        .args(["plugin", "new", "--lang", "rust", "again", "--dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not empty"), "{err}");
    for (name, id, says) in [
        ("Bad_Name", None, "a plugin name is"),
        ("ok", Some("nodots"), "reverse-domain"),
    ] {
        let mut cmd = c.command();
        cmd.args(["plugin", "new", "--lang", "rust", name, "--dir"])
            .arg(tmp.path().join("refused"));
        if let Some(id) = id {
            cmd.args(["--id", id]);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{name} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}: {err}");
        assert!(!tmp.path().join("refused").exists(), "nothing written");
    }

    // Build it as the README says, offline, in a shared target dir.
    let out = Command::new("sh")
        .arg(dir.join("build.sh"))
        .arg("--offline")
        .env("CARGO_TARGET_DIR", build_target_dir())
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .unwrap();
    ok(&out, "build.sh");
    let dist = dir.join("dist");
    let wasm = std::fs::read(dist.join("hello.wasm")).unwrap();
    assert_eq!(&wasm[..4], b"\0asm");
    let manifest =
        Manifest::from_toml(&std::fs::read_to_string(dist.join("plugin.toml")).unwrap()).unwrap();
    assert_eq!(manifest.id.as_str(), "org.test.hello");
    assert_eq!(manifest.name, "Hello");

    // Install into a running node and call its routes.
    let mut node = c.spawn_run(&[]);
    node.wait_api(Duration::from_secs(30));
    install_and_count_visits(&c, &dist, "org.test.hello");
    let out = c.run_cmd(&["plugin", "call", "org.test.hello", "/notices?region=u33d"]);
    let body: serde_json::Value = serde_json::from_str(&ok(&out, "plugin call /notices")).unwrap();
    assert_eq!(body, serde_json::json!({"notices": []}));
    let (status, _, err) = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "{err}");
}

#[test]
fn plugin_new_js_builds_on_the_shared_engine_installs_and_answers() {
    let c = Cnode::new();
    c.init();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("town-board");
    let created = scaffold(&c, "js", "town-board", &dir);
    assert_eq!(created["id"], "org.example.town-board");

    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    assert_eq!(package["name"], "cnode-plugin-town-board");
    assert_eq!(
        package["devDependencies"]["@bytecodealliance/componentize-js"],
        "0.23.0"
    );
    assert_eq!(package["devDependencies"]["rolldown"], "1.3.2");
    let manifest =
        Manifest::from_toml(&std::fs::read_to_string(dir.join("plugin.toml")).unwrap()).unwrap();
    assert_eq!(manifest.id.as_str(), "org.example.town-board");
    assert_eq!(manifest.name, "Town board");
    let js = std::fs::read_to_string(dir.join("src/component.js")).unwrap();
    assert!(js.contains("export function handle"), "{js}");
    assert!(!js.contains("{{"), "unfilled placeholder");
    assert!(dir.join("wit/cnode-plugin.wit").is_file());
    for (file, shipped) in [
        ("engine/loader.js", "plugins/js-engine/loader.js"),
        ("engine/jsplugin.mjs", "plugins/js-engine/jsplugin.mjs"),
    ] {
        assert_eq!(
            std::fs::read_to_string(dir.join(file)).unwrap(),
            std::fs::read_to_string(repo().join(shipped)).unwrap(),
            "{file} is the engine cnode ships"
        );
    }

    // Build it with the board's installed packages when they are there
    // (scripts/build-plugins installs them): the engine from the project's
    // own engine/loader.js, then the script.
    let modules = repo().join("plugins/board/node_modules");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !modules.join("@bytecodealliance/componentize-js").is_dir() || !node_ok {
        eprintln!(
            "skipping the JS build: no node or no componentize-js in {} (run scripts/build-plugins)",
            modules.display()
        );
        return;
    }
    std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
    let out = Command::new("node")
        .arg("build.mjs")
        .current_dir(&dir)
        .output()
        .unwrap();
    ok(&out, "node build.mjs");
    assert!(dir.join("engine/dist/js-engine.wasm").is_file());
    let dist = dir.join("dist");
    let wasm = std::fs::read(dist.join("town-board.wasm")).unwrap();
    // A component, not a core module: version 0x0d, layer 1.
    assert_eq!(&wasm[..8], b"\0asm\x0d\x00\x01\x00");
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&wasm)
        .unwrap();
    let script = wasmparser::Parser::new(0)
        .parse_all(&wasm)
        .filter_map(Result::ok)
        .find_map(|p| match p {
            wasmparser::Payload::CustomSection(s) if s.name() == "cnode:script" => {
                Some(String::from_utf8(s.data().to_vec()).unwrap())
            }
            _ => None,
        })
        .expect("a cnode:script section");
    assert!(script.contains("exports.handle"), "{script}");

    // Install into a running node and call it.
    let mut node = c.spawn_run(&[]);
    node.wait_api(Duration::from_secs(30));
    install_and_count_visits(&c, &dist, "org.example.town-board");
    let out = c.run_cmd(&["plugin", "info", "org.example.town-board"]);
    let info = ok(&out, "plugin info");
    assert!(info.contains("shared JavaScript engine"), "{info}");
    assert!(info.contains("source:    a local install"), "{info}");
    let (status, _, err) = node.terminate(Duration::from_secs(15));
    assert!(status.success(), "{err}");
    // `cnode run` compiles in a child process (its own binary), so
    // Cranelift's memory is not left in the node.
    assert!(err.contains("plugin compiled in a child process"), "{err}");
}
