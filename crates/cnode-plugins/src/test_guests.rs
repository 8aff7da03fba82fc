//! Builds this crate's test guests (`tests/guests/<name>`, each its own
//! crate) for `wasm32-wasip2`, into `<target dir>/plugin-guests`. Used by
//! this crate's tests and by the node's integration tests; not part of the
//! host's API.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// One build at a time in a process (cargo would block on its lock anyway).
static BUILDING: Mutex<()> = Mutex::new(());

/// Fails with the fix when the `wasm32-wasip2` target is not installed.
pub fn require_wasm_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc --print sysroot: {e}"))?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if sysroot.join("lib/rustlib/wasm32-wasip2").exists() {
        Ok(())
    } else {
        Err(
            "the wasm32-wasip2 Rust target is not installed (needed to build plugins): \
             run scripts/setup-test-deps or `rustup target add wasm32-wasip2`"
                .into(),
        )
    }
}

/// Builds the guest `name` (a no-op when up to date) and returns the path
/// of its component.
pub fn build(name: &str) -> Result<PathBuf, String> {
    let _one_at_a_time = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    require_wasm_target()?;
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate_dir.join("../../target"),
    }
    .join("plugin-guests");
    let manifest = crate_dir.join("tests/guests").join(name).join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build (coverage, sanitizers) do not apply.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .map_err(|e| format!("cannot run cargo to build test guest {name}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building test guest {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(target_dir.join(format!(
        "wasm32-wasip2/release/cnode_test_guest_{name}.wasm"
    )))
}
