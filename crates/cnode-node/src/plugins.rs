//! The node's plugin service: installed service plugins, run by a
//! [`cnode_plugins::PluginHost`] over the node's records and blobs.
//!
//! - Installed plugins live under `<data>/plugins/installed/<id>/`:
//!   `plugin.toml`, `component.wasm`, `grants.json` (the approved
//!   capabilities), `state.json` (`{"enabled": true}`) and, for a plugin
//!   installed from a package, `origin.json` (the package's CID and its
//!   verified publisher, see [`Origin`]). They are loaded
//!   at node start; a plugin that fails to load is reported (in
//!   [`PluginService::list`] and the log) and the node keeps running.
//! - Records and blobs (`node_io`): plugins query the node's record store; a record a plugin
//!   publishes is signed by the node's *publishing user* — the data
//!   directory's default user (`<data>/users`), unlocked without a
//!   passphrase (an insecure key) or with `CNODE_PASSPHRASE`. Without one,
//!   `records.publish` answers `unavailable` with a message saying so.
//! - Blobs: `get` reads a complete local blob (bounded by the host's
//!   limit), `put` imports the bytes (unpinned).
//! - HTTP: [`cnode_plugins::HttpClient`] (no redirects, no proxy, bounded
//!   bodies); the host checks each request against the plugin's `http`
//!   grant (host and port) first.
//! - Tasks: one fan-out task takes new records from
//!   [`crate::RecordService::subscribe`] and hands each to every enabled
//!   plugin's `on-record` through a bounded queue (a full queue drops the
//!   record and counts it); the same task runs the `tick` of plugins whose
//!   manifest asks for one (`tick-every-secs`), and unmaps the compiled code
//!   of plugins idle for the host's `idle_unload` (5 min), checking both
//!   every [`TICK_EVERY`]. Both stop when the node shuts down.
//!
//! Capabilities on the command line and in the API are written
//! `resource:access[:key=v1,v2…]`, e.g. `records:read`,
//! `records:write:collections=org.cnode.notices`,
//! `records:read:collections=org.cnode.events:regions=w5q6`,
//! `http:read:hosts=api.example.com:8443` (see [`parse_capability`]).

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

pub use cnode_plugins;
use cnode_plugins::{
    AuditEntry, CallError, Capability, Grants, HostConfig, HostInitError, Manifest, PluginHost,
    PluginId, PluginStats, Request, Response, Services,
};
use cnode_records::store::StoredRecord;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::{BlobService, RecordService};
use node_io::{NodeBlobs, NodeRecords, plugin_record};

mod capability;
mod node_io;
pub mod package;
pub mod rpc;

pub use capability::{capability_matches, format_capability, parse_capability, select};

/// How often the plugin task checks for due `tick`s (a plugin's manifest
/// sets its own interval, `tick-every-secs` ≥ 10 s) and unmaps idle plugins'
/// code.
pub const TICK_EVERY: Duration = Duration::from_secs(10);
/// New records waiting for plugins' `on-record`; more are dropped (counted).
pub const RECORD_QUEUE: usize = 256;
/// The environment variable with the publishing user's passphrase.
pub const PASSPHRASE_ENV: &str = "CNODE_PASSPHRASE";
/// The largest `plugin.toml` read, bytes.
const MAX_MANIFEST_BYTES: u64 = 64 << 10;

/// A plugin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No such plugin is installed.
    #[error("no plugin {0} is installed")]
    NotInstalled(String),
    /// A plugin with this id is installed already.
    #[error("plugin {0} is already installed; remove it first (`cnode plugin rm {0}`)")]
    AlreadyInstalled(PluginId),
    /// The package (manifest, component, path) is not usable.
    #[error("{0}")]
    Invalid(String),
    /// The host refused to load the component.
    #[error(transparent)]
    Load(#[from] cnode_plugins::LoadError),
    /// Reading or writing the plugin's files failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError + '_ {
    move |source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which capabilities to approve at install time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantChoice {
    /// Everything the manifest requests.
    All,
    /// These (each must be requested by the manifest; see [`select`]).
    Some(Vec<Capability>),
}

/// An installed plugin as listed by the API and the CLI.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginView {
    /// The plugin id (reverse-domain).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The plugin API version it was built for.
    pub api_version: String,
    /// What it does.
    pub description: String,
    /// The paths it answers below `/v1/services/{id}`.
    pub routes: Vec<String>,
    /// The capabilities the manifest requests (`resource:access[:scope]`).
    pub requested: Vec<String>,
    /// The capabilities the user granted.
    pub granted: Vec<String>,
    /// Whether it is enabled (loaded at start, served).
    pub enabled: bool,
    /// Whether the host has it loaded right now.
    pub loaded: bool,
    /// Why it could not be loaded, if it could not.
    pub error: Option<String>,
    /// While loaded: the BLAKE3 (hex) of the code it runs, its component
    /// without a `cnode:script` section. JavaScript plugins built on the
    /// same shared engine show the same hash and share one compiled copy.
    #[serde(default)]
    pub code: Option<String>,
    /// Whether it is a script for the shared JavaScript engine.
    #[serde(default)]
    pub script: bool,
    /// The host's counters (calls, traps, timeouts, host calls).
    #[schema(value_type = Object)]
    pub stats: Option<serde_json::Value>,
    /// The package (CID) it was installed from; none for a local install.
    #[serde(default)]
    pub package_cid: Option<String>,
    /// The address whose signature on that package verified at install;
    /// none for an unsigned package or a local install.
    #[serde(default)]
    pub publisher: Option<String>,
}

/// Where an installed plugin came from, kept as `origin.json` beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The package's CID.
    pub package: String,
    /// The verified signer of the package, if it was signed.
    pub publisher: Option<String>,
}

#[derive(Debug, Clone)]
struct Installed {
    manifest: Manifest,
    grants: Grants,
    enabled: bool,
    error: Option<String>,
    origin: Option<Origin>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    enabled: bool,
}

/// The node's plugins. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PluginService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    host: PluginHost,
    dir: PathBuf,
    installed: Mutex<BTreeMap<PluginId, Installed>>,
    /// Serialises install/enable/disable/remove (they touch files and the host).
    changes: tokio::sync::Mutex<()>,
    queue: mpsc::Sender<Arc<StoredRecord>>,
    queue_rx: Mutex<Option<mpsc::Receiver<Arc<StoredRecord>>>>,
    dropped_records: AtomicU64,
    delivered_records: AtomicU64,
    /// Bumped whenever the set of loaded plugins may have changed.
    changed: watch::Sender<u64>,
}

impl PluginService {
    /// Starts the plugin host under `data_dir/plugins` with the node's
    /// records and blobs. Plugins are loaded by [`PluginService::load_installed`].
    pub fn new(
        data_dir: &Path,
        records: RecordService,
        blobs: BlobService,
    ) -> Result<Self, HostInitError> {
        Self::with_config(HostConfig::new(data_dir), records, blobs)
    }

    /// [`PluginService::new`] with explicit host limits.
    pub fn with_config(
        config: HostConfig,
        records: RecordService,
        blobs: BlobService,
    ) -> Result<Self, HostInitError> {
        let dir = config.data_dir.join("plugins").join("installed");
        fs::create_dir_all(&dir).map_err(|source| HostInitError::Io {
            path: dir.clone(),
            source,
        })?;
        let users = config.data_dir.join("users");
        let services = Services {
            records: Arc::new(NodeRecords::new(records, users)),
            blobs: Arc::new(NodeBlobs::new(blobs)),
            ..Services::default()
        };
        // Outgoing HTTP for plugins (hosts checked against each plugin's
        // grant by the host; no redirects followed). Without a TLS setup the
        // node still runs and `http.fetch` answers `unavailable`.
        let services = match cnode_plugins::HttpClient::new(config.http_timeout) {
            Ok(client) => Services {
                http: Arc::new(client),
                ..services
            },
            Err(e) => {
                warn!(error = %e, "plugins get no outgoing HTTP");
                services
            }
        };
        let host = PluginHost::new(config, services)?;
        let (queue, queue_rx) = mpsc::channel(RECORD_QUEUE);
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                dir,
                installed: Mutex::new(BTreeMap::new()),
                changes: tokio::sync::Mutex::new(()),
                queue,
                queue_rx: Mutex::new(Some(queue_rx)),
                dropped_records: AtomicU64::new(0),
                delivered_records: AtomicU64::new(0),
                changed: watch::Sender::new(0),
            }),
        })
    }

    /// Sees a change whenever plugins are loaded or unloaded (install,
    /// enable, disable, remove, load at start).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    fn notify_changed(&self) {
        self.inner.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The wasmtime host.
    pub fn host(&self) -> &PluginHost {
        &self.inner.host
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PluginId, Installed>> {
        self.inner
            .installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Loads every plugin installed under `<data>/plugins/installed`
    /// (enabled ones into the host). Failures are logged and kept in the
    /// plugin's [`PluginView::error`]; they never stop the node.
    pub async fn load_installed(&self) {
        let _g = self.inner.changes.lock().await;
        let entries = match fs::read_dir(&self.inner.dir) {
            Ok(e) => e,
            Err(e) => {
                warn!("cannot list installed plugins: {e}");
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let manifest = match read_manifest(&dir.join("plugin.toml")) {
                Ok(m) => m,
                Err(e) => {
                    warn!(plugin = %name, "installed plugin skipped: {e}");
                    continue;
                }
            };
            let id = manifest.id.clone();
            let grants: Grants = fs::read(dir.join("grants.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let enabled = fs::read(dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<StateFile>(&b).ok())
                .is_none_or(|s| s.enabled);
            let origin = fs::read(dir.join("origin.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Origin>(&b).ok());
            let mut error = None;
            if enabled {
                let loaded = match fs::read(dir.join("component.wasm")) {
                    Ok(bytes) => self
                        .inner
                        .host
                        .load(manifest.clone(), &bytes, grants.clone())
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("cannot read component.wasm: {e}")),
                };
                if let Err(e) = loaded {
                    warn!(plugin = %id, "plugin not loaded: {e}");
                    error = Some(e);
                }
            }
            self.lock().insert(
                id,
                Installed {
                    manifest,
                    grants,
                    enabled,
                    error,
                    origin,
                },
            );
        }
        let n = self.lock().len();
        if n > 0 {
            info!(plugins = n, "installed plugins loaded");
        }
        self.notify_changed();
    }

    /// Installs a package found at `path` (see [`resolve_package`]).
    pub async fn install_path(
        &self,
        path: &Path,
        grants: GrantChoice,
    ) -> Result<PluginView, PluginError> {
        let (manifest_path, wasm_path) = resolve_package(path)?;
        let text = fs::read_to_string(&manifest_path).map_err(io_err(&manifest_path))?;
        let component = tokio::fs::read(&wasm_path)
            .await
            .map_err(io_err(&wasm_path))?;
        self.install(&text, &component, grants).await
    }

    /// Installs a plugin: validates the manifest and the grants, loads the
    /// component into the host (refusing a malformed one), then writes it
    /// under `<data>/plugins/installed/<id>/`.
    pub async fn install(
        &self,
        manifest_text: &str,
        component: &[u8],
        grants: GrantChoice,
    ) -> Result<PluginView, PluginError> {
        self.install_from(manifest_text, component, grants, None)
            .await
    }

    /// [`install`](Self::install), recording the package it came from (and
    /// its verified publisher), which `info` then shows.
    pub async fn install_from(
        &self,
        manifest_text: &str,
        component: &[u8],
        grants: GrantChoice,
        origin: Option<Origin>,
    ) -> Result<PluginView, PluginError> {
        let manifest =
            Manifest::from_toml(manifest_text).map_err(|e| PluginError::Invalid(e.to_string()))?;
        let grants = match grants {
            GrantChoice::All => Grants::all_requested(&manifest),
            GrantChoice::Some(list) => select(&manifest, &list)?,
        };
        let id = manifest.id.clone();
        let _g = self.inner.changes.lock().await;
        if self.lock().contains_key(&id) {
            return Err(PluginError::AlreadyInstalled(id));
        }
        self.inner
            .host
            .load(manifest.clone(), component, grants.clone())
            .await?;
        let dir = self.inner.dir.join(id.as_str());
        let written = (|| {
            let tmp = self.inner.dir.join(format!(".{id}.tmp"));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
            write(&tmp.join("plugin.toml"), manifest_text.as_bytes())?;
            write(&tmp.join("component.wasm"), component)?;
            write(&tmp.join("grants.json"), &json_bytes(&grants))?;
            write(
                &tmp.join("state.json"),
                &json_bytes(&StateFile { enabled: true }),
            )?;
            if let Some(origin) = &origin {
                write(&tmp.join("origin.json"), &json_bytes(origin))?;
            }
            let _ = fs::remove_dir_all(&dir);
            fs::rename(&tmp, &dir).map_err(io_err(&dir))
        })();
        if let Err(e) = written {
            self.inner.host.unload(&id);
            return Err(e);
        }
        info!(plugin = %id, version = %manifest.version, "plugin installed");
        self.lock().insert(
            id.clone(),
            Installed {
                manifest,
                grants,
                enabled: true,
                error: None,
                origin,
            },
        );
        self.notify_changed();
        self.view(&id)
            .ok_or_else(|| PluginError::NotInstalled(id.to_string()))
    }

    fn id(&self, id: &str) -> Result<PluginId, PluginError> {
        let id: PluginId = id
            .parse()
            .map_err(|_| PluginError::NotInstalled(id.to_owned()))?;
        if self.lock().contains_key(&id) {
            Ok(id)
        } else {
            Err(PluginError::NotInstalled(id.to_string()))
        }
    }

    /// Replaces the plugin's grants (each must be requested by its
    /// manifest); the next call sees them.
    pub async fn set_grants(
        &self,
        id: &str,
        grants: GrantChoice,
    ) -> Result<PluginView, PluginError> {
        let id = self.id(id)?;
        let _g = self.inner.changes.lock().await;
        let manifest = self
            .lock()
            .get(&id)
            .map(|p| p.manifest.clone())
            .ok_or_else(|| PluginError::NotInstalled(id.to_string()))?;
        let grants = match grants {
            GrantChoice::All => Grants::all_requested(&manifest),
            GrantChoice::Some(list) => select(&manifest, &list)?,
        };
        write(
            &self.inner.dir.join(id.as_str()).join("grants.json"),
            &json_bytes(&grants),
        )?;
        if self.inner.host.info(&id).is_some()
            && let Err(e) = self.inner.host.set_grants(&id, grants.clone())
        {
            return Err(PluginError::Invalid(e.to_string()));
        }
        if let Some(p) = self.lock().get_mut(&id) {
            p.grants = grants;
        }
        self.view(&id)
            .ok_or_else(|| PluginError::NotInstalled(id.to_string()))
    }

    /// Enables or disables a plugin (a disabled one is unloaded and not
    /// loaded at start).
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<PluginView, PluginError> {
        let id = self.id(id)?;
        let _g = self.inner.changes.lock().await;
        let dir = self.inner.dir.join(id.as_str());
        write(&dir.join("state.json"), &json_bytes(&StateFile { enabled }))?;
        let mut error = None;
        if enabled {
            if self.inner.host.info(&id).is_none() {
                let (manifest, grants) = {
                    let l = self.lock();
                    let p = l
                        .get(&id)
                        .ok_or_else(|| PluginError::NotInstalled(id.to_string()))?;
                    (p.manifest.clone(), p.grants.clone())
                };
                let path = dir.join("component.wasm");
                let bytes = fs::read(&path).map_err(io_err(&path))?;
                if let Err(e) = self.inner.host.load(manifest, &bytes, grants).await {
                    error = Some(e.to_string());
                }
            }
        } else {
            self.inner.host.unload(&id);
        }
        if let Some(p) = self.lock().get_mut(&id) {
            p.enabled = enabled;
            p.error = error.clone();
        }
        info!(plugin = %id, enabled, "plugin state changed");
        self.notify_changed();
        match error {
            Some(e) => Err(PluginError::Invalid(e)),
            None => self
                .view(&id)
                .ok_or_else(|| PluginError::NotInstalled(id.to_string())),
        }
    }

    /// Unloads the plugin and deletes its files (its kv data is cleared too).
    pub async fn remove(&self, id: &str) -> Result<(), PluginError> {
        let id = self.id(id)?;
        let _g = self.inner.changes.lock().await;
        self.inner.host.unload(&id);
        self.lock().remove(&id);
        self.notify_changed();
        let dir = self.inner.dir.join(id.as_str());
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        if let Err(e) = self.inner.host.kv().clear(&id).await {
            warn!(plugin = %id, "cannot clear the plugin's kv data: {e}");
        }
        info!(plugin = %id, "plugin removed");
        Ok(())
    }

    /// Calls the plugin's `handle`. An installed but disabled plugin
    /// answers [`CallError::NotLoaded`].
    pub async fn call(&self, id: &PluginId, request: Request) -> Result<Response, CallError> {
        self.inner.host.call(id, request).await
    }

    /// Whether `id` is installed.
    pub fn is_installed(&self, id: &PluginId) -> bool {
        self.lock().contains_key(id)
    }

    /// Every installed plugin, sorted by id.
    pub fn list(&self) -> Vec<PluginView> {
        let ids: Vec<PluginId> = self.lock().keys().cloned().collect();
        ids.iter().filter_map(|id| self.view(id)).collect()
    }

    /// One installed plugin.
    pub fn info(&self, id: &str) -> Option<PluginView> {
        let id: PluginId = id.parse().ok()?;
        self.view(&id)
    }

    fn view(&self, id: &PluginId) -> Option<PluginView> {
        let p = self.lock().get(id).cloned()?;
        let info = self.inner.host.info(id);
        let stats: Option<PluginStats> = self
            .inner
            .host
            .stats()
            .into_iter()
            .find(|s| &s.plugin == id);
        let m = &p.manifest;
        Some(PluginView {
            id: id.to_string(),
            name: m.name.clone(),
            version: m.version.to_string(),
            api_version: m.api_version.clone(),
            description: m.description.clone(),
            routes: m.routes.iter().map(|r| r.as_str().to_owned()).collect(),
            requested: m.capabilities.iter().map(format_capability).collect(),
            granted: p
                .grants
                .capabilities()
                .iter()
                .map(format_capability)
                .collect(),
            enabled: p.enabled,
            loaded: info.is_some(),
            error: p.error,
            script: info.as_ref().is_some_and(|i| i.script),
            code: info.map(|i| i.code),
            stats: stats.and_then(|s| serde_json::to_value(s).ok()),
            package_cid: p.origin.as_ref().map(|o| o.package.clone()),
            publisher: p.origin.and_then(|o| o.publisher),
        })
    }

    /// The newest `limit` denied host calls, oldest first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        self.inner.host.audit(limit)
    }

    /// New records dropped because the plugins were behind.
    pub fn dropped_records(&self) -> u64 {
        self.inner.dropped_records.load(Relaxed)
    }

    /// New records handed to plugins' `on-record` (per plugin delivery).
    pub fn delivered_records(&self) -> u64 {
        self.inner.delivered_records.load(Relaxed)
    }

    /// Starts the record fan-out and tick task (once).
    pub(crate) fn start(
        &self,
        mut new_records: broadcast::Receiver<Arc<StoredRecord>>,
        cancel: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Some(mut rx) = self
            .inner
            .queue_rx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        else {
            return Vec::new();
        };
        // Receiver side of the node's broadcast: never blocks the records
        // service; a full queue drops (counted).
        let this = self.clone();
        let c = cancel.clone();
        let intake = tokio::spawn(
            async move {
                loop {
                    let rec = tokio::select! {
                        biased;
                        _ = c.cancelled() => break,
                        r = new_records.recv() => r,
                    };
                    match rec {
                        Ok(rec) => {
                            if this.inner.installed_enabled()
                                && this.inner.queue.try_send(rec).is_err()
                            {
                                this.inner.dropped_records.fetch_add(1, Relaxed);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            this.inner.dropped_records.fetch_add(n, Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
            .in_current_span(),
        );
        let this = self.clone();
        let worker = tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(TICK_EVERY);
                let mut last_ticks = HashMap::new();
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        r = rx.recv() => match r {
                            Some(rec) => this.deliver(&rec).await,
                            None => break,
                        },
                        _ = tick.tick() => {
                            this.tick_due(&mut last_ticks).await;
                            let idle = this.inner.host.unload_idle().await;
                            if !idle.is_empty() {
                                debug!(plugins = ?idle, "idle plugins' code unmapped");
                            }
                        }
                    }
                }
            }
            .in_current_span(),
        );
        vec![intake, worker]
    }

    async fn deliver(&self, rec: &StoredRecord) {
        let record = plugin_record(rec);
        for id in self.inner.host.plugin_ids() {
            match self.inner.host.on_record(&id, &record).await {
                Ok(true) => {
                    self.inner.delivered_records.fetch_add(1, Relaxed);
                }
                Ok(false) => {}
                Err(e) => debug!(plugin = %id, "on-record failed: {e}"),
            }
        }
    }

    /// Runs `tick` of every plugin whose manifest asks for it
    /// (`tick-every-secs`) and whose interval has passed since its last tick
    /// (or since it was first seen). Plugins that ask for none are not
    /// woken, so their code can be unmapped while idle.
    async fn tick_due(&self, last: &mut HashMap<PluginId, std::time::Instant>) {
        let now = std::time::Instant::now();
        let ids = self.inner.host.plugin_ids();
        last.retain(|id, _| ids.contains(id));
        for id in ids {
            let Some(every) = self
                .inner
                .host
                .info(&id)
                .and_then(|i| i.manifest.tick_every)
            else {
                continue;
            };
            let since = *last.entry(id.clone()).or_insert(now);
            if now.duration_since(since) < every {
                continue;
            }
            last.insert(id.clone(), now);
            if let Err(e) = self.inner.host.tick(&id).await {
                debug!(plugin = %id, "tick failed: {e}");
            }
        }
    }
}

impl Inner {
    fn installed_enabled(&self) -> bool {
        self.installed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .any(|p| p.enabled)
    }
}

fn json_bytes(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec_pretty(v).unwrap_or_default()
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io_err(path))
}

fn read_manifest(path: &Path) -> Result<Manifest, PluginError> {
    let len = fs::metadata(path).map_err(io_err(path))?.len();
    if len > MAX_MANIFEST_BYTES {
        return Err(PluginError::Invalid(format!(
            "{}: {len} bytes, the limit is {MAX_MANIFEST_BYTES}",
            path.display()
        )));
    }
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    Manifest::from_toml(&text).map_err(|e| PluginError::Invalid(format!("{}: {e}", path.display())))
}

/// Finds a package's `plugin.toml` and component: `path` is a directory
/// holding `plugin.toml` and exactly one `*.wasm` (a `component.wasm` is
/// preferred if there are several), or a `.wasm` file with `plugin.toml`
/// beside it.
pub fn resolve_package(path: &Path) -> Result<(PathBuf, PathBuf), PluginError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    let (dir, wasm) = if meta.is_dir() {
        let mut wasms: Vec<PathBuf> = fs::read_dir(path)
            .map_err(io_err(path))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "wasm"))
            .collect();
        wasms.sort();
        let wasm = match wasms.len() {
            0 => {
                return Err(PluginError::Invalid(format!(
                    "{} has no .wasm component (build the plugin first, e.g. scripts/build-plugins)",
                    path.display()
                )));
            }
            1 => wasms.remove(0),
            _ => match wasms
                .iter()
                .find(|p| p.file_name().is_some_and(|n| n == "component.wasm"))
            {
                Some(p) => p.clone(),
                None => {
                    return Err(PluginError::Invalid(format!(
                        "{} has several .wasm files; give the path of the one to install",
                        path.display()
                    )));
                }
            },
        };
        (path.to_path_buf(), wasm)
    } else if path.extension().is_some_and(|e| e == "wasm") {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        (dir, path.to_path_buf())
    } else {
        return Err(PluginError::Invalid(format!(
            "{}: expected a plugin directory (plugin.toml + a .wasm component) or a .wasm file with plugin.toml beside it",
            path.display()
        )));
    };
    let manifest = dir.join("plugin.toml");
    if !manifest.is_file() {
        return Err(PluginError::Invalid(format!(
            "no plugin.toml in {}",
            dir.display()
        )));
    }
    Ok((manifest, wasm))
}

/// Reads and validates a package's manifest (for showing what it asks for
/// before installing).
pub fn read_package_manifest(path: &Path) -> Result<Manifest, PluginError> {
    let (manifest, _) = resolve_package(path)?;
    read_manifest(&manifest)
}
