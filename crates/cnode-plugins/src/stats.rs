//! Per-plugin counters: calls by outcome, and host calls by interface,
//! allowed or denied. Plain atomics, read by [`crate::PluginHost::stats`].

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use serde::Serialize;

use crate::manifest::{PluginId, Resource};

/// How a call into a plugin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Trap,
    Timeout,
    MemoryLimit,
    Busy,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_limits: AtomicU64,
    busy: AtomicU64,
    call_nanos: AtomicU64,
    host: [[AtomicU64; 2]; Resource::ALL.len()],
}

impl Counters {
    pub(crate) fn call(&self, outcome: Outcome, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.call_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        let c = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Trap => &self.traps,
            Outcome::Timeout => &self.timeouts,
            Outcome::MemoryLimit => &self.memory_limits,
            Outcome::Busy => &self.busy,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn host_call(&self, interface: Resource, allowed: bool) {
        self.host[interface as usize][usize::from(!allowed)].fetch_add(1, Relaxed);
    }

    pub(crate) fn snapshot(&self, plugin: &PluginId) -> PluginStats {
        let host_calls = Resource::ALL
            .into_iter()
            .filter_map(|r| {
                let [a, d] = &self.host[r as usize];
                let counts = HostCallCounts {
                    allowed: a.load(Relaxed),
                    denied: d.load(Relaxed),
                };
                (counts.allowed + counts.denied > 0).then(|| (r.as_str().to_owned(), counts))
            })
            .collect();
        PluginStats {
            plugin: plugin.clone(),
            calls: self.calls.load(Relaxed),
            ok: self.ok.load(Relaxed),
            traps: self.traps.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            memory_limits: self.memory_limits.load(Relaxed),
            busy: self.busy.load(Relaxed),
            call_time: Duration::from_nanos(self.call_nanos.load(Relaxed)),
            host_calls,
        }
    }
}

/// Host calls of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostCallCounts {
    /// Calls the grants allowed.
    pub allowed: u64,
    /// Calls refused (each is in the audit log, up to the per-call cap).
    pub denied: u64,
}

/// A plugin's counters since it was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    /// The plugin.
    pub plugin: PluginId,
    /// Calls into the plugin (`handle`, `on-record`, `tick`).
    pub calls: u64,
    /// Calls that returned normally.
    pub ok: u64,
    /// Calls that trapped (panics, `unreachable`, bad host-call arguments).
    pub traps: u64,
    /// Calls stopped at the time limit.
    pub timeouts: u64,
    /// Calls stopped at the memory cap.
    pub memory_limits: u64,
    /// Calls refused because no instance slot came free in time.
    pub busy: u64,
    /// Time spent in calls, in all.
    pub call_time: Duration,
    /// Host calls by interface (`records`, `kv`, …); interfaces never called
    /// are left out.
    pub host_calls: BTreeMap<String, HostCallCounts>,
}
