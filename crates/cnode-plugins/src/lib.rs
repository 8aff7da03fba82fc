//! Service plugins for cnode: WebAssembly components that answer HTTP-like
//! requests, react to new records and run periodic jobs, sandboxed and
//! limited to the capabilities the user granted.
//!
//! - [`manifest`]: `plugin.toml` — id, version, API version, requested
//!   capabilities, routes — parsed strictly with errors naming the field.
//! - [`grants`]: what the user approved, and the checks host calls make.
//! - [`PluginHost`]: the wasmtime host. One [`wasmtime::Engine`] (epoch
//!   interruption, pooling allocator) and one linker (WASI p2 without files,
//!   sockets or environment, plus the `cnode:plugin` interfaces from
//!   `wit/cnode-plugin.wit`); per plugin an `InstancePre`; per call a fresh
//!   store with a memory cap, a deadline and optional fuel. A guest that
//!   traps, loops or exhausts memory fails that call with a typed
//!   [`CallError`]; the next call gets a fresh instance.
//! - [`services`]: the traits the node implements to give plugins records,
//!   blobs and outgoing HTTP ([`HostRecords`], [`HostBlobs`],
//!   [`HttpFetcher`]); this crate does not depend on the node.
//! - [`http`]: [`HttpClient`], the outgoing HTTP client the node gives
//!   plugins (no redirects, bounded bodies).
//! - [`kv`]: the plugins' private key-value store (`<data>/plugins/kv.sqlite`).
//! - [`audit`]: denied host calls, in memory and in
//!   `<data>/plugins/audit.jsonl`.
//!
//! Host calls are async (`wasmtime_wasi::p2::add_to_linker_async` and
//! async bindings): the node's records and blobs services are async, and a
//! guest running on a fiber yields to the executor at every epoch tick, so
//! a long computation never holds a runtime thread for the whole call.
//!
//! Threads and tasks: one `cnode-plugins-epoch` thread advances the engine's
//! epoch every 10 ms (a thread, not a task, so a guest spinning on every
//! runtime thread is still interrupted); it starts with the engine, which is
//! made when the first plugin loads (a node without plugins has neither),
//! and stops when the last [`PluginHost`] handle is dropped. Compilation and kv operations run on
//! tokio's blocking pool. There are no actors: calls run on the caller's
//! task, at most `max_concurrent_calls` at once.
//!
//! Compiled components are cached in `<data>/plugins/cache/` as
//! `<code BLAKE3>-<engine compatibility hash>.cwasm`, the code being the
//! component without a `cnode:script` section ([`script`]): a JavaScript
//! engine (seconds to compile) is compiled once per wasmtime version and
//! shared by every plugin built on it.

#![deny(missing_docs, unreachable_pub)]

pub mod audit;
pub mod compiler;
pub mod grants;
mod host;
pub mod http;
pub mod kv;
pub mod manifest;
mod runtime;
pub mod script;
pub mod services;
pub mod stats;
#[doc(hidden)]
pub mod test_guests;

pub use audit::AuditEntry;
pub use compiler::CompilerCommand;
pub use grants::Grants;
pub use host::{
    CallError, GrantError, HostConfig, HostInitError, LoadError, MAX_COMPONENT_BYTES, PluginHost,
    PluginInfo,
};
pub use http::{HttpClient, HttpClientError};
pub use manifest::{
    API_VERSION, Access, Capability, Manifest, ManifestError, PluginId, Resource, Scope,
};
pub use services::{
    ErrorCode, HostBlobs, HostError, HostRecords, HttpFetcher, PluginRecord, Request, Response,
    Services,
};
pub use stats::{FetchCounts, LatencySummary, PluginStats};

/// Now, ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
