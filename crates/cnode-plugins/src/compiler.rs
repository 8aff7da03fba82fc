//! Compiling components in a child process.
//!
//! Cranelift needs hundreds of megabytes to compile a large component (a
//! JavaScript engine) and the allocator keeps much of it after the compile
//! is done: a node that compiled one engine in-process stayed ~130 MB
//! larger until restarted. With [`HostConfig::compiler`] set, the host runs
//! `PROGRAM ARGS… SETTINGS INPUT OUTPUT` instead — the node's own binary,
//! whose hidden subcommand calls [`compile_file`] — and maps the result from
//! the cache like any cached entry. The child builds its engine from the
//! same settings, and wasmtime refuses to load code compiled for another
//! engine configuration, so a mismatch cannot slip through: the host then
//! compiles in-process.

use std::{
    ffi::OsString,
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::{HostConfig, MAX_COMPONENT_BYTES, runtime};

/// How long a compile in a child process may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

/// The command that compiles a component in a child process: `program`
/// with `args`, then the settings, the input and the output path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompilerCommand {
    /// The program (the node's own executable).
    pub program: PathBuf,
    /// Arguments before the settings (its hidden subcommand).
    pub args: Vec<OsString>,
}

/// What the child needs to build an engine whose code this host loads.
pub(crate) fn settings(config: &HostConfig) -> String {
    format!(
        "v1;memory_limit={};fuel={};calls={};warm={}",
        config.memory_limit,
        u8::from(config.fuel_per_call.is_some()),
        config.max_concurrent_calls,
        config.warm_instances,
    )
}

fn parse_settings(settings: &str) -> Result<HostConfig, String> {
    let mut config = HostConfig::new(std::env::temp_dir());
    let mut parts = settings.split(';');
    if parts.next() != Some("v1") {
        return Err(format!("unknown compiler settings '{settings}'"));
    }
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("bad compiler setting '{part}'"))?;
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("bad compiler setting '{part}'"))
        };
        match key {
            "memory_limit" => config.memory_limit = number(value)? as usize,
            "fuel" => config.fuel_per_call = (number(value)? == 1).then_some(1),
            "calls" => config.max_concurrent_calls = number(value)? as u32,
            "warm" => config.warm_instances = number(value)? as u32,
            _ => return Err(format!("unknown compiler setting '{part}'")),
        }
    }
    Ok(config)
}

/// The child's side: compiles the component in `input` for an engine built
/// from `settings` and writes the result to `output` (atomically).
pub fn compile_file(settings: &str, input: &Path, output: &Path) -> Result<(), String> {
    let config = parse_settings(settings)?;
    let engine = runtime::engine(&config).map_err(|e| format!("{e:#}"))?;
    let mut bytes = Vec::new();
    fs::File::open(input)
        .and_then(|f| {
            f.take(MAX_COMPONENT_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(format!("{} is over the size limit", input.display()));
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(|e| format!("{e:#}"))?;
    let dir = output.parent().unwrap_or(Path::new("."));
    crate::host::code::write_atomically(dir, output, &compiled)
        .map_err(|e| format!("cannot write {}: {e}", output.display()))
}

/// The host's side: compiles `bytes` into `output` with `command`. Blocking.
pub(crate) fn compile_in_child(
    command: &CompilerCommand,
    config: &HostConfig,
    bytes: &[u8],
    output: &Path,
) -> Result<(), String> {
    let dir = output.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let input = output.with_extension(format!("wasm.tmp{}", std::process::id()));
    fs::write(&input, bytes).map_err(|e| format!("cannot write {}: {e}", input.display()))?;
    let result = run(command, config, &input, output);
    let _ = fs::remove_file(&input);
    result
}

fn run(
    command: &CompilerCommand,
    config: &HostConfig,
    input: &Path,
    output: &Path,
) -> Result<(), String> {
    let mut child = Command::new(&command.program)
        .args(&command.args)
        .arg(settings(config))
        .arg(input)
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", command.program.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > CHILD_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("took over {} s", CHILD_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for it: {e}")),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut stderr = String::new();
    if let Some(pipe) = child.stderr.take() {
        let _ = pipe.take(4096).read_to_string(&mut stderr);
    }
    Err(format!("{status}: {}", stderr.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_ones_are_refused() {
        let mut config = HostConfig::new("/tmp");
        config.memory_limit = 32 << 20;
        config.fuel_per_call = Some(5);
        config.max_concurrent_calls = 7;
        config.warm_instances = 3;
        let parsed = parse_settings(&settings(&config)).unwrap();
        assert_eq!(parsed.memory_limit, 32 << 20);
        assert!(parsed.fuel_per_call.is_some());
        assert_eq!(parsed.max_concurrent_calls, 7);
        assert_eq!(parsed.warm_instances, 3);
        for bad in ["v2;calls=1", "v1;calls=x", "v1;nope=1", "v1;calls"] {
            assert!(parse_settings(bad).is_err(), "{bad}");
        }
    }
}
