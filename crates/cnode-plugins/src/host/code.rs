//! Compiled code: the wasmtime engine and linker (made when the first
//! plugin loads), code shared by every plugin that compiles to it, and the
//! compiled-code cache in `<data>/plugins/cache/`.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Weak, atomic::AtomicU64},
    time::Instant,
};

use wasmtime::{Engine, component::Component};

use super::Inner;
use crate::{
    HostConfig,
    runtime::{self, EpochTicker, PluginState, bindings},
};

/// Compiled and linked code, shared by every loaded plugin whose component
/// compiles to it: plugins built for the shared JavaScript engine differ only
/// in their `cnode:script` section, which is not part of the code.
pub(super) struct Code {
    /// The BLAKE3 of the component without its script section (hex).
    pub(super) hash: String,
    /// The linked code: `None` while unloaded for being idle.
    pub(super) pre: tokio::sync::Mutex<Option<bindings::ServicePre<PluginState>>>,
    /// The compiled-code cache file the code is mapped from (and reloaded
    /// from after an idle unload); `None` when not cached: never unloaded.
    pub(super) cache_file: Option<PathBuf>,
    /// When a plugin on it was last called, in milliseconds since the host
    /// started.
    pub(super) last_used_ms: AtomicU64,
}

/// The wasmtime side, made when the first plugin loads: a node without
/// plugins runs no epoch thread and keeps none of this in memory.
pub(super) struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: wasmtime::component::Linker<PluginState>,
    pub(super) engine_hash: String,
    _ticker: EpochTicker,
}

impl Runtime {
    fn new(config: &HostConfig) -> Result<Self, String> {
        let failed =
            |e: &dyn std::fmt::Display| format!("cannot set up the WebAssembly engine: {e}");
        let engine = runtime::engine(config).map_err(|e| failed(&format!("{e:#}")))?;
        let linker = runtime::linker(&engine).map_err(|e| failed(&format!("{e:#}")))?;
        let ticker = EpochTicker::start(engine.clone())
            .map_err(|e| failed(&format!("cannot start the epoch thread: {e}")))?;
        Ok(Self {
            engine_hash: runtime::engine_compat_hash(&engine),
            engine,
            linker,
            _ticker: ticker,
        })
    }
}

impl Inner {
    /// The wasmtime engine and linker, made on first use.
    pub(super) fn runtime(&self) -> Result<&Runtime, String> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let _making = self.runtime_init.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = Runtime::new(&self.shared.config)?;
        Ok(self.runtime.get_or_init(|| rt))
    }

    /// The loaded plugins' code with this hash, if any is loaded.
    pub(super) fn code_in_use(&self, hash: &str) -> Option<Arc<Code>> {
        let codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.get(hash).and_then(Weak::upgrade)
    }

    /// Registers freshly compiled code for sharing. When a load of the same
    /// code finished first, its copy is kept and this one dropped.
    pub(super) fn share_code(&self, code: Code) -> Arc<Code> {
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        codes.retain(|_, c| c.strong_count() > 0);
        if let Some(existing) = codes.get(&code.hash).and_then(Weak::upgrade) {
            return existing;
        }
        let code = Arc::new(code);
        codes.insert(code.hash.clone(), Arc::downgrade(&code));
        code
    }

    /// The compiled component (`hash` is the BLAKE3 of `bytes`, hex): from
    /// the cache when it holds this component for this engine, else compiled
    /// (and cached). Returns whether it came from the cache. Blocking.
    pub(super) fn compile(
        &self,
        bytes: &[u8],
        hash: &str,
    ) -> wasmtime::Result<(Component, bool, Option<PathBuf>)> {
        let config = &self.shared.config;
        let rt = self.runtime().map_err(wasmtime::Error::msg)?;
        if !config.precompile_cache {
            return Ok((Component::new(&rt.engine, bytes)?, false, None));
        }
        let dir = config.plugins_dir().join("cache");
        let path = dir.join(format!("{hash}-{}.cwasm", rt.engine_hash));
        if path.exists() {
            match deserialize_cached(&rt.engine, &path) {
                Ok(component) => return Ok((component, true, Some(path))),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "dropping an unusable compiled-plugin cache entry");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        if let Some(command) = &config.compiler {
            let started = Instant::now();
            match crate::compiler::compile_in_child(command, config, bytes, &path)
                .and_then(|()| deserialize_cached(&rt.engine, &path).map_err(|e| format!("{e:#}")))
            {
                Ok(component) => {
                    tracing::info!(code = %hash, took_ms = started.elapsed().as_millis() as u64, "plugin compiled in a child process");
                    return Ok((component, false, Some(path)));
                }
                Err(e) => {
                    tracing::warn!(code = %hash, error = %e, "compiling a plugin in a child process failed; compiling in-process");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let compiled = rt.engine.precompile_component(bytes);
        release_compiler_memory();
        let compiled = compiled?;
        match write_atomically(&dir, &path, &compiled) {
            // Loaded from the file just written, like a cached plugin after a
            // restart: the code is then a file mapping whose pages are
            // resident only once run, not an anonymous copy of all of it
            // (37 MB for a JavaScript plugin).
            Ok(()) => {
                drop(compiled);
                Ok((deserialize_cached(&rt.engine, &path)?, false, Some(path)))
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot cache a compiled plugin");
                // SAFETY: `compiled` was produced just now by this engine's
                // `precompile_component`.
                #[allow(unsafe_code)]
                let component = unsafe { Component::deserialize(&rt.engine, &compiled)? };
                Ok((component, false, None))
            }
        }
    }
}

/// Hands the memory a compilation freed back to the OS. Cranelift compiles
/// on several threads and frees hundreds of megabytes for a large component
/// (a JavaScript engine); glibc keeps freed memory in its per-thread arenas,
/// so without this a node that compiled ten JavaScript plugins kept ~830 MB
/// resident (`bench/plugins.py`).
fn release_compiler_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's
    // arenas; it takes no pointers and is thread-safe.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads a cache entry.
#[allow(unsafe_code)]
pub(super) fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: wasmtime trusts precompiled code, so only bytes we produced may
    // be deserialized. Cache files are written only by `Inner::compile`
    // (atomically, via a temporary file and a rename) into the node's own
    // data directory, named by the BLAKE3 hash of the source component and
    // the engine's compatibility hash; wasmtime also checks the header and
    // engine compatibility. Anyone able to replace them can replace the node
    // binary in the same directory tree as well.
    unsafe { Component::deserialize_file(engine, path) }
}

pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}
