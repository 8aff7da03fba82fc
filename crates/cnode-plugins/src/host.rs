//! [`PluginHost`]: loads plugins and calls them, each call in a fresh,
//! limited instance (or a JavaScript plugin's warm one).
//!
//! - `code`: the wasmtime engine made on first use, compiled code shared
//!   between plugins, and the compiled-code cache;
//! - `warm`: instances kept between a JavaScript plugin's calls;
//! - `error`: what loading, granting and calling can fail with.

pub(crate) mod code;
mod error;
mod warm;

pub use self::error::{CallError, GrantError, HostInitError, LoadError};

use self::{
    code::{Code, Runtime, deserialize_cached},
    warm::Warm,
};

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;
use wasmtime::{Store, Trap};

use crate::{
    audit::{AuditEntry, AuditLog},
    grants::{Grants, NotRequested},
    kv::{KvLimits, KvOpenError, KvStore},
    manifest::{Manifest, PluginId},
    now_ms,
    runtime::{self, EPOCH_TICK, PluginState, Shared, bindings},
    script,
    services::{PluginRecord, Request, Response, Services},
    stats::{Counters, Outcome, PluginStats},
};

/// The largest component accepted, bytes (a JavaScript component is ~12 MB).
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// How the host runs plugins. [`HostConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The node's data directory; the host keeps its files in `plugins/`
    /// below it (`kv.sqlite`, `audit.jsonl`, `cache/`).
    pub data_dir: PathBuf,
    /// Linear memory one call may use (all of its memories together), bytes.
    /// Default 64 MiB.
    pub memory_limit: usize,
    /// How long one call may run, host calls included. Default 1 s.
    pub call_timeout: Duration,
    /// Fuel per call (a deterministic bound on executed instructions, on top
    /// of the timeout); `None` (the default) leaves fuel off, which is
    /// faster.
    pub fuel_per_call: Option<u64>,
    /// Calls running at once, over all plugins (the size of the instance
    /// pool). A call waits up to its timeout for a slot. Default 32. The
    /// pool reserves address space up front (4 GiB plus guard per linear
    /// memory, four memories per slot): virtual only, nothing is committed
    /// until used.
    pub max_concurrent_calls: u32,
    /// The largest blob `blobs.get` / `blobs.put` handle, bytes. Default
    /// 16 MiB.
    pub max_blob_bytes: u64,
    /// The largest response body `http.fetch` returns, bytes. Default 4 MiB.
    pub max_http_response: usize,
    /// The largest request body `http.fetch` sends, bytes. Default 1 MiB.
    pub max_http_request: usize,
    /// How long one `http.fetch` may take, at most (it also ends at the
    /// call's own deadline, whichever comes first). Default 10 s.
    pub http_timeout: Duration,
    /// `http.fetch` calls one plugin may have in flight at once (over all
    /// of its running calls); more wait, within their time limit. Default 4.
    pub max_fetches_per_plugin: u32,
    /// `log.log` messages kept per call. Default 200.
    pub max_log_lines: u32,
    /// Bytes of stdout (and of stderr) kept per call. Default 16 KiB.
    pub max_output_bytes: usize,
    /// Key-value store limits.
    pub kv: KvLimits,
    /// Audit entries kept in memory. Default 1000.
    pub audit_ring: usize,
    /// Size at which `audit.jsonl` is rotated, bytes. Default 1 MiB.
    pub audit_file_max: u64,
    /// Cache compiled components in `plugins/cache/`. Default on.
    pub precompile_cache: bool,
    /// A plugin not called for this long has its compiled code unmapped by
    /// [`PluginHost::unload_idle`]; its next call maps it again from the
    /// cache (milliseconds; ~10 ms for a JavaScript plugin). `None`: never.
    /// Needs `precompile_cache`. Default 5 minutes.
    pub idle_unload: Option<Duration>,
    /// Instances kept warm between calls, over all plugins (each holds an
    /// instance slot and its memory). Only JavaScript plugins on the shared
    /// engine keep one: evaluating their script costs more than the call
    /// itself. 0 turns reuse off. Default 16.
    pub warm_instances: u32,
    /// Compile components in a child process with this command (see
    /// [`crate::compiler`]), so Cranelift's memory goes with the child; on
    /// failure the host compiles in-process. Needs `precompile_cache`.
    /// Default `None`: in-process.
    pub compiler: Option<crate::compiler::CompilerCommand>,
}

impl HostConfig {
    /// The defaults, keeping files under `data_dir/plugins`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            memory_limit: 64 << 20,
            call_timeout: Duration::from_secs(1),
            fuel_per_call: None,
            max_concurrent_calls: 32,
            max_blob_bytes: 16 << 20,
            max_http_response: 4 << 20,
            max_http_request: 1 << 20,
            http_timeout: Duration::from_secs(10),
            max_fetches_per_plugin: 4,
            max_log_lines: 200,
            max_output_bytes: 16 << 10,
            kv: KvLimits::default(),
            audit_ring: 1000,
            audit_file_max: 1 << 20,
            precompile_cache: true,
            idle_unload: Some(Duration::from_secs(300)),
            warm_instances: 16,
            compiler: None,
        }
    }

    fn plugins_dir(&self) -> PathBuf {
        self.data_dir.join("plugins")
    }
}

/// A loaded plugin.
struct Loaded {
    manifest: Manifest,
    code: Arc<Code>,
    /// The plugin's script when it is built for the shared JavaScript engine
    /// (what the `cnode:plugin/script` import returns); empty otherwise.
    script: Arc<str>,
    grants: RwLock<Arc<Grants>>,
    counters: Arc<Counters>,
    /// Bounds the plugin's `http.fetch` calls in flight.
    fetches: Arc<Semaphore>,
    /// A JavaScript plugin's instance from its last successful call, which
    /// has its script evaluated already.
    warm: Mutex<Option<Warm>>,
}

impl Loaded {
    fn grants(&self) -> Arc<Grants> {
        self.grants.read().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Which export a call runs.
enum Export {
    Handle(bindings::Request),
    OnRecord(bindings::StoredRecord),
    Tick,
}

/// A loaded plugin, as [`PluginHost::info`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The manifest.
    pub manifest: Manifest,
    /// The current grants.
    pub grants: Grants,
    /// The BLAKE3 (hex) of the code the plugin runs: its component without
    /// a `cnode:script` section. Plugins built on the same JavaScript engine
    /// show the same hash and share one compiled copy of it.
    pub code: String,
    /// Whether the plugin carries a script for the shared JavaScript engine.
    pub script: bool,
}

/// Runs plugins: one wasmtime engine and linker, one `InstancePre` per
/// plugin, a fresh instance per call. A cheap, cloneable handle.
///
/// Dropping the last handle stops the epoch ticker; calls still running then
/// would no longer time out, so drop the host only after its calls end.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: std::sync::OnceLock<Runtime>,
    /// Held while the runtime is being made.
    runtime_init: Mutex<()>,
    shared: Arc<Shared>,
    plugins: RwLock<HashMap<PluginId, Arc<Loaded>>>,
    /// The compiled code of loaded plugins by [`Code::hash`], so that a
    /// plugin whose code is loaded already shares it.
    codes: Mutex<HashMap<String, Weak<Code>>>,
    slots: Semaphore,
    /// Instances kept warm now (at most `config.warm_instances`).
    warm: Arc<AtomicU64>,
    /// The clock `Loaded::last_used_ms` counts from.
    started: Instant,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.plugin_ids())
            .field(
                "engine",
                &self.inner.runtime.get().map(|r| r.engine_hash.as_str()),
            )
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// Starts a host: the audit log under `config.data_dir/plugins`. The kv
    /// store, the engine, the linker and the epoch ticker thread are made
    /// when the first plugin needs them.
    pub fn new(config: HostConfig, services: Services) -> Result<Self, HostInitError> {
        let dir = config.plugins_dir();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HostInitError::Io { path, source }
        };
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let kv = KvStore::lazy(&dir.join("kv.sqlite"), config.kv);
        let audit_path = dir.join("audit.jsonl");
        let audit = AuditLog::open(Some(&audit_path), config.audit_ring, config.audit_file_max)
            .map_err(io(&audit_path))?;
        let slots = Semaphore::new(config.max_concurrent_calls.max(1) as usize);
        Ok(Self {
            inner: Arc::new(Inner {
                runtime: std::sync::OnceLock::new(),
                runtime_init: Mutex::new(()),
                shared: Arc::new(Shared {
                    config,
                    services,
                    kv,
                    audit,
                }),
                plugins: RwLock::default(),
                codes: Mutex::default(),
                slots,
                warm: Arc::default(),
                started: Instant::now(),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &HostConfig {
        &self.inner.shared.config
    }

    /// The plugins' key-value store (to clear a plugin's data when it is
    /// uninstalled).
    pub fn kv(&self) -> &KvStore {
        &self.inner.shared.kv
    }

    /// Compiles (or loads from the cache) `component`, links it against the
    /// host, and makes it callable as `manifest.id` with `grants` (which
    /// must be among the manifest's requested capabilities).
    ///
    /// Compiling a large component takes seconds; it runs on the blocking
    /// pool. Cancel-safe: dropping the future loads nothing.
    pub async fn load(
        &self,
        manifest: Manifest,
        component: &[u8],
        grants: Grants,
    ) -> Result<PluginId, LoadError> {
        let id = manifest.id.clone();
        if self.get(&id).is_ok() {
            return Err(LoadError::AlreadyLoaded(id));
        }
        grants
            .check_against(&manifest)
            .map_err(|source| LoadError::Grants {
                plugin: id.clone(),
                source,
            })?;
        if component.len() > MAX_COMPONENT_BYTES {
            return Err(LoadError::TooLarge {
                plugin: id,
                size: component.len(),
            });
        }
        let malformed = |message: String| LoadError::Malformed {
            plugin: id.clone(),
            message,
        };
        let split = script::split(component).map_err(|e| malformed(e.to_string()))?;
        let hash = blake3::hash(&split.code).to_hex().to_string();
        let started = Instant::now();
        let shared = self.inner.code_in_use(&hash);
        let code = match shared.clone() {
            Some(code) => code,
            None => {
                let inner = self.inner.clone();
                let bytes = split.code.into_owned();
                let key = hash.clone();
                let compiled = tokio::task::spawn_blocking(move || inner.compile(&bytes, &key))
                    .await
                    .map_err(|e| malformed(format!("compilation task failed: {e}")))?;
                let (component, cached, cache_file) =
                    compiled.map_err(|e| malformed(format!("{e:#}")))?;
                let link = |e: wasmtime::Error| LoadError::Link {
                    plugin: id.clone(),
                    message: format!("{e:#}"),
                };
                let rt = self.inner.runtime().map_err(malformed)?;
                let pre = rt.linker.instantiate_pre(&component).map_err(link)?;
                let pre = bindings::ServicePre::new(pre).map_err(link)?;
                tracing::debug!(plugin = %id, cached, "plugin code compiled or mapped");
                self.inner.share_code(Code {
                    hash,
                    pre: tokio::sync::Mutex::new(Some(pre)),
                    cache_file,
                    last_used_ms: AtomicU64::new(self.inner.now_ms()),
                })
            }
        };

        let loaded = Arc::new(Loaded {
            manifest,
            code,
            script: split.script.unwrap_or_default().into(),
            grants: RwLock::new(Arc::new(grants)),
            counters: Arc::default(),
            fetches: Arc::new(Semaphore::new(
                self.inner.shared.config.max_fetches_per_plugin.max(1) as usize,
            )),
            warm: Mutex::new(None),
        });
        let mut plugins = self
            .inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if plugins.contains_key(&id) {
            return Err(LoadError::AlreadyLoaded(id));
        }
        plugins.insert(id.clone(), loaded);
        tracing::info!(plugin = %id, shared_code = shared.is_some(), took_ms = started.elapsed().as_millis() as u64, "plugin loaded");
        Ok(id)
    }

    /// Calls the plugin's `handle` export. The path must match one of the
    /// manifest's routes.
    pub async fn call(&self, id: &PluginId, request: Request) -> Result<Response, CallError> {
        let plugin = self.get(id)?;
        if !plugin.manifest.has_route(&request.path) {
            return Err(CallError::NoRoute {
                plugin: id.clone(),
                path: request.path,
            });
        }
        let request = bindings::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        let response = self.run(&plugin, Export::Handle(request)).await?;
        let r = response.unwrap_or(bindings::Response {
            status: 500,
            headers: Vec::new(),
            body: Vec::new(),
        });
        Ok(Response {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// Delivers a new record to the plugin's `on-record` export, if its
    /// `records:read` grant covers the record's collection and region.
    /// Returns whether it was delivered.
    pub async fn on_record(&self, id: &PluginId, record: &PluginRecord) -> Result<bool, CallError> {
        let plugin = self.get(id)?;
        if !plugin.grants().may_read(&record.collection, &record.region) {
            return Ok(false);
        }
        let record = runtime::wit_record(record);
        self.run(&plugin, Export::OnRecord(record))
            .await
            .map(|_| true)
    }

    /// Calls the plugin's `tick` export.
    pub async fn tick(&self, id: &PluginId) -> Result<(), CallError> {
        let plugin = self.get(id)?;
        self.run(&plugin, Export::Tick).await.map(|_| ())
    }

    /// Replaces the plugin's grants; calls that start afterwards see them
    /// (a call already running keeps the grants it started with).
    pub fn set_grants(&self, id: &PluginId, grants: Grants) -> Result<(), GrantError> {
        let plugin = self
            .get(id)
            .map_err(|_| GrantError::NotLoaded(id.clone()))?;
        grants
            .check_against(&plugin.manifest)
            .map_err(|source| GrantError::NotRequested {
                plugin: id.clone(),
                source,
            })?;
        *plugin.grants.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(grants);
        tracing::info!(plugin = %id, "plugin grants changed");
        Ok(())
    }

    /// Unloads the plugin (calls already running finish). Returns whether
    /// it was loaded. Its kv data stays (see [`KvStore::clear`]).
    pub fn unload(&self, id: &PluginId) -> bool {
        let removed = self
            .inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .inspect(|p| {
                // Its warm instance goes now, not when a running call ends.
                self.drop_warm(p);
            })
            .is_some();
        if removed {
            tracing::info!(plugin = %id, "plugin unloaded");
        }
        removed
    }

    /// The loaded plugins' ids, sorted.
    pub fn plugin_ids(&self) -> Vec<PluginId> {
        let mut ids: Vec<_> = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// A loaded plugin's manifest and grants.
    pub fn info(&self, id: &PluginId) -> Option<PluginInfo> {
        let p = self.get(id).ok()?;
        Some(PluginInfo {
            manifest: p.manifest.clone(),
            grants: (*p.grants()).clone(),
            code: p.code.hash.clone(),
            script: !p.script.is_empty(),
        })
    }

    /// Counters of every loaded plugin, sorted by id.
    pub fn stats(&self) -> Vec<PluginStats> {
        let plugins = self.inner.plugins.read().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = plugins
            .iter()
            .map(|(id, p)| p.counters.snapshot(id))
            .collect();
        out.sort_by(|a, b| a.plugin.cmp(&b.plugin));
        out
    }

    /// The newest `limit` denied host calls, oldest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        self.inner.shared.audit.recent(limit)
    }

    fn get(&self, id: &PluginId) -> Result<Arc<Loaded>, CallError> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| CallError::NotLoaded(id.clone()))
    }

    /// Unmaps the compiled code of every plugin not called for
    /// `config.idle_unload` (calls running keep theirs until they end). Its
    /// next call maps it again from the compiled-code cache. Returns the
    /// plugins unloaded now. The node runs this periodically.
    pub async fn unload_idle(&self) -> Vec<PluginId> {
        let Some(idle) = self.inner.shared.config.idle_unload else {
            return Vec::new();
        };
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.inner.now_ms();
        let plugins: Vec<Arc<Loaded>> = {
            let map = self.inner.plugins.read().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        // Each shared code once: idle when no plugin on it was called lately.
        let mut codes: Vec<&Arc<Code>> = plugins.iter().map(|p| &p.code).collect();
        codes.sort_by(|a, b| a.hash.cmp(&b.hash));
        codes.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let mut unmapped = Vec::new();
        for code in codes {
            if now.saturating_sub(code.last_used_ms.load(Relaxed)) < idle_ms {
                continue;
            }
            // Warm instances first: each keeps its code mapped.
            for p in plugins.iter().filter(|p| Arc::ptr_eq(&p.code, code)) {
                if self.drop_warm(p) {
                    tracing::debug!(plugin = %p.manifest.id, "warm instance dropped while idle");
                }
            }
            if code.cache_file.is_none() {
                continue;
            }
            // A call mapping the code right now holds the lock: skip it.
            let Ok(mut pre) = code.pre.try_lock() else {
                continue;
            };
            if pre.take().is_some() {
                tracing::debug!(code = %code.hash, idle_s = idle.as_secs(), "plugin code unmapped while idle");
                unmapped.push(code.clone());
            }
        }
        let mut unloaded: Vec<PluginId> = plugins
            .iter()
            .filter(|p| unmapped.iter().any(|c| Arc::ptr_eq(c, &p.code)))
            .map(|p| p.manifest.id.clone())
            .collect();
        unloaded.sort();
        unloaded
    }

    /// Whether the plugin's compiled code is mapped (not unloaded for being
    /// idle). `None`: no such plugin.
    pub async fn is_resident(&self, id: &PluginId) -> Option<bool> {
        let p = self.get(id).ok()?;
        let resident = p.code.pre.lock().await.is_some();
        Some(resident)
    }

    /// The plugin's linked code, mapped again from the cache when it was
    /// unloaded for being idle; marks the plugin used.
    async fn code(&self, plugin: &Loaded) -> Result<bindings::ServicePre<PluginState>, CallError> {
        plugin.code.last_used_ms.store(self.inner.now_ms(), Relaxed);
        let mut code = plugin.code.pre.lock().await;
        if let Some(pre) = &*code {
            return Ok(pre.clone());
        }
        let id = plugin.manifest.id.clone();
        let failed = |message: String| CallError::Instantiate {
            plugin: id.clone(),
            message: format!("mapping its compiled code again: {message}"),
        };
        let path = plugin
            .code
            .cache_file
            .clone()
            .ok_or_else(|| failed("no compiled-code cache file".into()))?;
        let started = Instant::now();
        let inner = self.inner.clone();
        let pre = tokio::task::spawn_blocking(move || -> wasmtime::Result<_> {
            let rt = inner.runtime().map_err(wasmtime::Error::msg)?;
            let component = deserialize_cached(&rt.engine, &path)?;
            let pre = rt.linker.instantiate_pre(&component)?;
            bindings::ServicePre::new(pre)
        })
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("{e:#}")))?;
        tracing::debug!(plugin = %id, took_us = started.elapsed().as_micros() as u64, "plugin code mapped again");
        *code = Some(pre.clone());
        Ok(pre)
    }

    /// One call: a slot, a fresh store and instance (or a JavaScript
    /// plugin's warm one), the export, then the outcome counted and
    /// reported.
    async fn run(
        &self,
        plugin: &Loaded,
        export: Export,
    ) -> Result<Option<bindings::Response>, CallError> {
        let inner = &self.inner;
        let config = &inner.shared.config;
        let id = &plugin.manifest.id;
        let started = Instant::now();

        // Bounded concurrency: the pool has exactly this many slots.
        let Ok(Ok(permit)) = tokio::time::timeout(config.call_timeout, inner.slots.acquire()).await
        else {
            plugin.counters.call(Outcome::Busy, started.elapsed());
            tracing::warn!(plugin = %id, "plugin call refused: no instance slot free");
            return Err(CallError::Busy {
                plugin: id.clone(),
                slots: config.max_concurrent_calls,
            });
        };

        // A JavaScript plugin's warm instance (its script evaluated by an
        // earlier call), else a fresh instance of its code.
        let warm = self.take_warm(plugin);
        let pre = match warm {
            Some(_) => None,
            None => match self.code(plugin).await {
                Ok(pre) => Some(pre),
                Err(e) => {
                    drop(permit);
                    plugin.counters.call(Outcome::Trap, started.elapsed());
                    return Err(e);
                }
            },
        };
        let (mut store, service, served) = match warm {
            Some(Warm {
                mut store,
                service,
                calls,
                ..
            }) => {
                plugin.code.last_used_ms.store(inner.now_ms(), Relaxed);
                runtime::reset_store(&mut store, plugin.grants());
                (store, Some(service), calls)
            }
            None => {
                // Loaded plugins imply a runtime; this cannot fail then.
                let engine = match inner.runtime() {
                    Ok(rt) => &rt.engine,
                    Err(message) => {
                        drop(permit);
                        plugin.counters.call(Outcome::Trap, started.elapsed());
                        return Err(CallError::Instantiate {
                            plugin: id.clone(),
                            message,
                        });
                    }
                };
                let store = runtime::new_store(
                    engine,
                    inner.shared.clone(),
                    id.clone(),
                    plugin.grants(),
                    plugin.counters.clone(),
                    plugin.fetches.clone(),
                    plugin.script.clone(),
                );
                (store, None, 0)
            }
        };
        let mut instantiated = service.is_some();
        let call = async {
            let service = match (service, pre) {
                (Some(service), _) => service,
                (None, Some(pre)) => {
                    let instantiating = Instant::now();
                    let service = pre.instantiate_async(&mut store).await?;
                    plugin.counters.instantiated(instantiating.elapsed());
                    instantiated = true;
                    service
                }
                (None, None) => unreachable!("a warm instance or code to instantiate"),
            };
            let result = match export {
                Export::Handle(request) => {
                    service.call_handle(&mut store, &request).await.map(Some)
                }
                Export::OnRecord(record) => service
                    .call_on_record(&mut store, &record)
                    .await
                    .map(|()| None),
                Export::Tick => service.call_tick(&mut store).await.map(|()| None),
            };
            result.map(|r| (r, service))
        };
        // The epoch callback stops the guest at the deadline; this outer
        // bound catches a host call (a fetch, a slow query) that would wait
        // past it. Dropping the call future abandons the instance.
        let result = tokio::time::timeout(config.call_timeout + EPOCH_TICK * 5, call).await;
        let took = started.elapsed();

        let stderr_tail = flush_output(&mut store, id, &inner.shared.audit);
        let outcome = match result {
            Ok(Ok((response, service))) => {
                // Only an instance whose calls all ended well is kept.
                self.keep_warm(plugin, store, service, served + 1);
                Ok(response)
            }
            Err(_elapsed) => Err(CallError::Timeout {
                plugin: id.clone(),
                limit: config.call_timeout,
            }),
            Ok(Err(e)) => Err(classify(&e, &store, config, id, instantiated, stderr_tail)),
        };
        drop(permit);

        match &outcome {
            Ok(_) => plugin.counters.call(Outcome::Ok, took),
            Err(e) => {
                let kind = match e {
                    CallError::Timeout { .. } | CallError::OutOfFuel { .. } => Outcome::Timeout,
                    CallError::MemoryLimit { .. } => Outcome::MemoryLimit,
                    _ => Outcome::Trap,
                };
                plugin.counters.call(kind, took);
                tracing::warn!(plugin = %id, took_ms = took.as_millis() as u64, error = %e, "plugin call failed");
            }
        }
        outcome
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Writes the guest's captured stdout/stderr to the log, and the summary of
/// denials beyond the per-call audit cap to the audit log. Returns the last
/// stderr lines (a panic message, usually).
fn flush_output(store: &mut Store<PluginState>, id: &PluginId, audit: &AuditLog) -> Option<String> {
    let state = store.data_mut();
    let (out, out_dropped) = state.stdout.take();
    let (err, err_dropped) = state.stderr.take();
    for line in &out {
        tracing::info!(target: "cnode_plugins::guest", plugin = %id, stream = "stdout", "{line}");
    }
    for line in &err {
        tracing::warn!(target: "cnode_plugins::guest", plugin = %id, stream = "stderr", "{line}");
    }
    if out_dropped + err_dropped > 0 {
        tracing::warn!(plugin = %id, dropped_bytes = out_dropped + err_dropped, "plugin output over the per-call bound dropped");
    }
    let skipped_logs = state
        .log_lines
        .saturating_sub(state.shared.config.max_log_lines);
    if skipped_logs > 0 {
        tracing::warn!(plugin = %id, skipped = skipped_logs, "plugin log messages over the per-call bound dropped");
    }
    if state.unaudited > 0 {
        audit.record(AuditEntry {
            at_ms: now_ms(),
            plugin: id.clone(),
            call: "(more)".into(),
            reason: format!(
                "{} more denied calls in the same call were not logged one by one",
                state.unaudited
            ),
        });
    }
    // A Rust panic prints `panicked at FILE:LINE:COL:`, the message, and a
    // note about RUST_BACKTRACE: keep the first two. An uncaught JavaScript
    // exception (componentize-js) prints the message, `Stack:`, the frames
    // and a note about abort(): keep the message.
    let lines: Vec<&str> = err
        .iter()
        .map(String::as_str)
        .filter(|l| {
            !l.starts_with("note: run with `RUST_BACKTRACE")
                && !l.starts_with("Redirecting call to abort()")
        })
        .collect();
    let tail = match lines.iter().position(|l| l.trim() == "Stack:") {
        Some(stack) => &lines[..stack],
        None => &lines[..],
    };
    (!tail.is_empty()).then(|| tail[tail.len().saturating_sub(2)..].join(" "))
}

fn classify(
    e: &wasmtime::Error,
    store: &Store<PluginState>,
    config: &HostConfig,
    id: &PluginId,
    instantiated: bool,
    stderr_tail: Option<String>,
) -> CallError {
    let plugin = id.clone();
    if store.data().limits.memory_hit {
        return CallError::MemoryLimit {
            plugin,
            limit: config.memory_limit,
        };
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => CallError::Timeout {
            plugin,
            limit: config.call_timeout,
        },
        Some(Trap::OutOfFuel) => CallError::OutOfFuel {
            plugin,
            fuel: config.fuel_per_call.unwrap_or(0),
        },
        Some(trap) => {
            tracing::debug!(plugin = %id, error = ?e, "plugin trap");
            let message = match stderr_tail {
                Some(line) => format!("{trap} ({line})"),
                None => trap.to_string(),
            };
            CallError::Trap { plugin, message }
        }
        None if !instantiated => CallError::Instantiate {
            plugin,
            message: format!("{e:#}"),
        },
        None => CallError::Trap {
            plugin,
            message: format!("{e:#}"),
        },
    }
}
