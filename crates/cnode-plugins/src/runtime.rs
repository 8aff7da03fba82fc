//! The wasmtime side: one [`Engine`] and one [`Linker`] for all plugins, the
//! epoch ticker, and the per-call [`Store`] with its limits.
//!
//! Every call into a plugin gets a fresh instance from the plugin's
//! `InstancePre` (cheap with the pooling allocator and copy-on-write memory
//! images), so a trap, a timeout or a memory blow-up leaves nothing behind
//! for the next call.

mod host_impl;
mod stdio;

use std::{
    hash::Hasher,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    UpdateDeadline,
    component::{HasSelf, Linker, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

pub(crate) use self::{host_impl::wit_record, stdio::LogSink};
use crate::{
    HostConfig, audit::AuditLog, grants::Grants, kv::KvStore, manifest::PluginId,
    services::Services, stats::Counters,
};

/// Bindings generated from `wit/cnode-plugin.wit`.
pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "service",
        imports: { default: async },
        exports: { default: async },
    });
}

/// Bytes of each linear memory kept resident between instances.
const KEEP_RESIDENT: usize = 8 << 20;

/// How often the epoch advances; the granularity of call timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine configuration: component model, epoch interruption, optional
/// fuel, and the pooling allocator sized for `config.max_concurrent_calls`
/// instances with memories of at most `config.memory_limit`.
pub(crate) fn engine(config: &HostConfig) -> wasmtime::Result<Engine> {
    let mut c = Config::new();
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    c.consume_fuel(config.fuel_per_call.is_some());

    let calls = config.max_concurrent_calls.max(1);
    // Instances kept warm between calls (JavaScript plugins on the shared
    // engine) hold pool slots too.
    let slots = calls + config.warm_instances;
    let mut pool = PoolingAllocationConfig::default();
    // Components may hold several core instances (a JS engine, adapters),
    // each with a memory and tables; size the pool for a few per slot.
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 4)
        .total_tables(slots * 8)
        .total_stacks(calls)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(config.memory_limit)
        .table_elements(100_000)
        .max_component_instance_size(4 << 20)
        .max_core_instance_size(4 << 20)
        // A fresh instance per call means every call starts on a reset
        // slot: keeping the first pages resident (reset by memset, only the
        // dirty ones where the kernel has PAGEMAP_SCAN) saves the page
        // faults a JS engine otherwise takes on each call (~0.98 -> ~0.51 ms
        // per call for a componentize-js guest in a debug host build; Rust
        // guests ~85 -> ~60 us). Costs up to that much resident memory per
        // warm slot.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(1 << 20)
        .pagemap_scan(wasmtime::Enabled::Auto);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&c)
}

/// A stable digest of what makes precompiled code loadable by `engine`
/// (wasmtime version, target, configuration).
pub(crate) fn engine_compat_hash(engine: &Engine) -> String {
    struct Blake3Hasher(blake3::Hasher);
    impl Hasher for Blake3Hasher {
        fn finish(&self) -> u64 {
            let mut out = [0u8; 8];
            out.copy_from_slice(&self.0.finalize().as_bytes()[..8]);
            u64::from_le_bytes(out)
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut h = Blake3Hasher(blake3::Hasher::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex::encode(&h.0.finalize().as_bytes()[..16])
}

/// The linker: WASI p2 (for JavaScript guests: no files, no sockets, no
/// environment) and the `cnode:plugin` host interfaces.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<PluginState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    bindings::Service::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
    // `cnode:plugin/script` (world `js-engine`): the plugin's script for the
    // shared JavaScript engine. Written by hand because the bindings are
    // generated for the `service` world, which every plugin exports.
    linker.instance("cnode:plugin/script@0.1.0")?.func_wrap(
        "source",
        |store: wasmtime::StoreContextMut<'_, PluginState>, (): ()| {
            Ok((store.data().script.to_string(),))
        },
    )?;
    Ok(linker)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on its own thread, so
/// that deadlines fire even when a guest keeps every runtime thread busy
/// (a tokio task could be starved by the very loop it should stop). Stops
/// when the handle is dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    _stop: mpsc::SyncSender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        thread::Builder::new()
            .name("cnode-plugins-epoch".into())
            .spawn(move || {
                // Disconnected (the host was dropped) ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { _stop: stop })
    }
}

/// What the host shares with every call.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: HostConfig,
    pub(crate) services: Services,
    pub(crate) kv: KvStore,
    pub(crate) audit: AuditLog,
}

/// Per-call limits, also the store's [`ResourceLimiter`].
#[derive(Debug)]
pub(crate) struct Limits {
    memory_limit: usize,
    memory_used: usize,
    /// Set when the guest asked for more memory than the cap allows.
    pub(crate) memory_hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // The cap is for all of the instance's memories together.
        let after = self.memory_used - current.min(self.memory_used) + desired;
        if after > self.memory_limit {
            self.memory_hit = true;
            return Ok(false);
        }
        self.memory_used = after;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The state of one call: the store's data.
pub(crate) struct PluginState {
    pub(crate) plugin: PluginId,
    pub(crate) grants: Arc<Grants>,
    pub(crate) counters: Arc<Counters>,
    /// The plugin's `http.fetch` slots.
    pub(crate) fetches: Arc<tokio::sync::Semaphore>,
    /// The plugin's script for the shared JavaScript engine (empty if none).
    pub(crate) script: Arc<str>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) limits: Limits,
    pub(crate) deadline: Instant,
    pub(crate) stdout: LogSink,
    pub(crate) stderr: LogSink,
    /// `log.log` messages so far in this call.
    pub(crate) log_lines: u32,
    /// Denials written to the audit log in this call, and the ones beyond
    /// the cap.
    pub(crate) audited: u32,
    pub(crate) unaudited: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Readies a store for a call, a new one or one kept from an earlier call:
/// the grants in force now, a new deadline and fuel, per-call counts
/// cleared.
pub(crate) fn reset_store(store: &mut Store<PluginState>, grants: Arc<Grants>) {
    let config = &store.data().shared.config;
    let (timeout, fuel) = (config.call_timeout, config.fuel_per_call);
    let state = store.data_mut();
    state.grants = grants;
    state.deadline = Instant::now() + timeout;
    state.limits.memory_hit = false;
    state.log_lines = 0;
    state.audited = 0;
    state.unaudited = 0;
    if let Some(fuel) = fuel {
        // Fuel is only consumed when the engine enables it, which it does
        // exactly when `fuel_per_call` is set.
        let _ = store.set_fuel(fuel);
    }
    store.set_epoch_deadline(1);
}

/// The linear memory the store's instance holds, bytes.
pub(crate) fn memory_used(store: &Store<PluginState>) -> usize {
    store.data().limits.memory_used
}

/// Makes the store for one call: limits, deadline, fuel, and a WASI
/// context with nothing but stdout/stderr (captured for the log), clocks
/// and random.
pub(crate) fn new_store(
    engine: &Engine,
    shared: Arc<Shared>,
    plugin: PluginId,
    grants: Arc<Grants>,
    counters: Arc<Counters>,
    fetches: Arc<tokio::sync::Semaphore>,
    script: Arc<str>,
) -> Store<PluginState> {
    let config = &shared.config;
    let stdout = LogSink::new(config.max_output_bytes);
    let stderr = LogSink::new(config.max_output_bytes);
    let wasi = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    let state = PluginState {
        plugin,
        grants: grants.clone(),
        counters,
        fetches,
        script,
        limits: Limits {
            memory_limit: config.memory_limit,
            memory_used: 0,
            memory_hit: false,
        },
        deadline: Instant::now(),
        stdout,
        stderr,
        log_lines: 0,
        audited: 0,
        unaudited: 0,
        wasi,
        table: ResourceTable::new(),
        shared,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    reset_store(&mut store, grants);
    // Check the clock at every tick: past the deadline the guest is
    // interrupted (a trap); before it, the call yields to the executor so a
    // long computation does not hold a runtime thread for the whole call.
    store.epoch_deadline_callback(|ctx| {
        if Instant::now() >= ctx.data().deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}
