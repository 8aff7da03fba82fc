//! The host's errors: starting, loading, granting, calling.

use super::*;

/// The host could not start.
#[derive(Debug, thiserror::Error)]
pub enum HostInitError {
    /// A file or directory under `<data>/plugins` could not be created.
    #[error("cannot prepare {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The key-value store could not be opened.
    #[error(transparent)]
    Kv(#[from] KvOpenError),
}

/// A plugin was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A plugin with this id is loaded already (unload it first).
    #[error("plugin {0} is already loaded")]
    AlreadyLoaded(PluginId),
    /// The component is larger than [`MAX_COMPONENT_BYTES`].
    #[error("plugin {plugin}: the component is {size} bytes, the limit is {MAX_COMPONENT_BYTES}")]
    TooLarge {
        /// The plugin.
        plugin: PluginId,
        /// Its size.
        size: usize,
    },
    /// The bytes are not a valid WebAssembly component.
    #[error("plugin {plugin}: not a valid WebAssembly component: {message}")]
    Malformed {
        /// The plugin.
        plugin: PluginId,
        /// What wasmtime said.
        message: String,
    },
    /// The component does not fit the `cnode:plugin` service world (imports
    /// the host does not provide, or missing exports).
    #[error(
        "plugin {plugin}: the component does not fit the cnode:plugin@0.1.0 service world: {message}"
    )]
    Link {
        /// The plugin.
        plugin: PluginId,
        /// What wasmtime said.
        message: String,
    },
    /// A grant is not among the manifest's requested capabilities.
    #[error("plugin {plugin}: {source}")]
    Grants {
        /// The plugin.
        plugin: PluginId,
        /// Which grant.
        #[source]
        source: NotRequested,
    },
}

/// Grants could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No such plugin is loaded.
    #[error("no plugin {0} is loaded")]
    NotLoaded(PluginId),
    /// A grant the manifest does not request.
    #[error("plugin {plugin}: {source}")]
    NotRequested {
        /// The plugin.
        plugin: PluginId,
        /// Which grant.
        #[source]
        source: NotRequested,
    },
}

/// A call into a plugin failed. The plugin stays loaded: its next call gets
/// a fresh instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// No such plugin is loaded.
    #[error("no plugin {0} is loaded")]
    NotLoaded(PluginId),
    /// The path is not one of the plugin's routes.
    #[error("plugin {plugin} has no route for {path}")]
    NoRoute {
        /// The plugin.
        plugin: PluginId,
        /// The path asked for.
        path: String,
    },
    /// The guest trapped (a panic, `unreachable`, a bad memory access).
    #[error("plugin {plugin} trapped: {message}")]
    Trap {
        /// The plugin.
        plugin: PluginId,
        /// The trap, and the guest's last stderr lines when there are some
        /// (a Rust panic message).
        message: String,
    },
    /// The call ran past the time limit and was stopped.
    #[error("plugin {plugin} stopped: exceeded {}", human_duration(*limit))]
    Timeout {
        /// The plugin.
        plugin: PluginId,
        /// The limit.
        limit: Duration,
    },
    /// The guest wanted more memory than the cap and was stopped.
    #[error("plugin {plugin} stopped: memory limit of {} MiB reached", limit >> 20)]
    MemoryLimit {
        /// The plugin.
        plugin: PluginId,
        /// The cap, bytes.
        limit: usize,
    },
    /// The call used up its fuel.
    #[error("plugin {plugin} stopped: out of fuel ({fuel})")]
    OutOfFuel {
        /// The plugin.
        plugin: PluginId,
        /// The fuel it had.
        fuel: u64,
    },
    /// No instance slot came free within the call timeout.
    #[error("plugin {plugin}: the host is busy (all {slots} instance slots in use)")]
    Busy {
        /// The plugin.
        plugin: PluginId,
        /// The pool size.
        slots: u32,
    },
    /// The component could not be instantiated (other than by a trap or a
    /// limit).
    #[error("plugin {plugin} could not be instantiated: {message}")]
    Instantiate {
        /// The plugin.
        plugin: PluginId,
        /// What wasmtime said.
        message: String,
    },
}

fn human_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
