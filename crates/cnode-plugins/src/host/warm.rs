//! Warm instances: a JavaScript plugin on the shared engine keeps the
//! instance of its last successful call for its next one, because
//! evaluating its script costs more than the call itself.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use wasmtime::Store;

use super::{Loaded, PluginHost};
use crate::runtime::{self, PluginState, bindings};

/// An instance kept between calls of one plugin, with its store.
pub(super) struct Warm {
    pub(super) store: Store<PluginState>,
    pub(super) service: bindings::Service,
    /// Calls it has served.
    pub(super) calls: u32,
    _counted: WarmCount,
}

/// Counts a warm instance in [`Inner::warm`] for as long as it lives.
struct WarmCount(Arc<AtomicU64>);

impl Drop for WarmCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Calls one warm instance serves before it is replaced by a fresh one
/// (bounds what a guest can accumulate).
const WARM_MAX_CALLS: u32 = 1000;

/// Linear memory over which a warm instance is not kept, bytes.
const WARM_MAX_MEMORY: usize = 32 << 20;

impl PluginHost {
    /// The plugin's warm instance, if it has one.
    pub(super) fn take_warm(&self, plugin: &Loaded) -> Option<Warm> {
        plugin.warm.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Keeps the instance of a successful call for the plugin's next call:
    /// only for a JavaScript plugin on the shared engine (whose script costs
    /// more to evaluate than a call), within `config.warm_instances`, and
    /// until it has served [`WARM_MAX_CALLS`] or holds over
    /// [`WARM_MAX_MEMORY`]. Otherwise the store is dropped.
    pub(super) fn keep_warm(
        &self,
        plugin: &Loaded,
        store: Store<PluginState>,
        service: bindings::Service,
        calls: u32,
    ) {
        let limit = u64::from(self.inner.shared.config.warm_instances);
        if plugin.script.is_empty()
            || calls >= WARM_MAX_CALLS
            || runtime::memory_used(&store) > WARM_MAX_MEMORY
        {
            return;
        }
        let mut slot = plugin.warm.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return;
        }
        let reserved = self
            .inner
            .warm
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1));
        if reserved.is_ok() {
            *slot = Some(Warm {
                store,
                service,
                calls,
                _counted: WarmCount(self.inner.warm.clone()),
            });
        }
    }

    /// Drops the plugin's warm instance; whether it had one.
    pub(super) fn drop_warm(&self, plugin: &Loaded) -> bool {
        self.take_warm(plugin).is_some()
    }
}
