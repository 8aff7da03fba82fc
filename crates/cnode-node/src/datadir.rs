//! The data directory: node key, API token, config, database, and the
//! `api.json` a running node leaves for client commands.
//!
//! Secrets (`node.key`, `api.token`) are created with mode 0600 and written to
//! a temporary file first, then renamed, so a crash never leaves half a key.

use std::{
    fs,
    io::Write,
    net::SocketAddr,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use cnode_net::Keypair;
use serde::{Deserialize, Serialize};

use crate::config::ConfigFile;

/// The node key file (libp2p protobuf encoding of an ed25519 keypair).
pub const KEY_FILE: &str = "node.key";
/// The API bearer token file.
pub const TOKEN_FILE: &str = "api.token";
/// The configuration file.
pub const CONFIG_FILE: &str = "config.toml";
/// Written by a running node: where its API listens.
pub const API_INFO_FILE: &str = "api.json";

/// The default data directory: `$XDG_DATA_HOME/cnode`, else `~/.local/share/cnode`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("cnode");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    PathBuf::from(home).join(".local/share/cnode")
}

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitReport {
    /// The data directory.
    pub dir: PathBuf,
    /// The node's peer id.
    pub peer_id: String,
    /// Whether a new key was written (false: the existing one was kept).
    pub created_key: bool,
    /// Whether a default config.toml was written.
    pub created_config: bool,
}

/// Setting up the data directory failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A key exists and `--force` was not given.
    #[error(
        "{path} already exists; refusing to replace the node's identity (use --force to create a new one)"
    )]
    KeyExists {
        /// The key file.
        path: PathBuf,
    },
    /// A file or directory could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node's database could not be created.
    #[error(transparent)]
    Store(#[from] cnode_store::OpenError),
}

/// Reading the node key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// There is no key yet.
    #[error("no node key at {path}; run `cnode init` first")]
    Missing {
        /// The key file.
        path: PathBuf,
    },
    /// The file exists but is not a key.
    #[error(
        "node key {path} is corrupted ({len} bytes: {reason}); restore it from a backup, or run `cnode init --force` to start over with a new identity"
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: usize,
        /// The decoder's complaint.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a running node writes to `api.json` for client commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiInfo {
    /// The bound API address.
    pub addr: SocketAddr,
    /// The node's process id.
    pub pid: u32,
}

fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

impl DataDir {
    /// The data directory at `root` (nothing is touched yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A file inside the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Whether `init` has run (a key exists).
    pub fn is_initialized(&self) -> bool {
        self.path(KEY_FILE).exists()
    }

    /// Creates the directory, node key, API token and default config. An
    /// existing key is an error unless `force`; an existing config and token are kept.
    pub fn init(&self, force: bool) -> Result<InitReport, InitError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| InitError::Io { path, source }
        };
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // The directory holds secrets: keep it private.
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(io(&self.root))?;
        let key_path = self.path(KEY_FILE);
        if key_path.exists() && !force {
            return Err(InitError::KeyExists { path: key_path });
        }
        // Check writability before generating anything.
        let probe = self.path(".write-test");
        fs::write(&probe, b"").map_err(io(&self.root))?;
        let _ = fs::remove_file(&probe);

        let key = Keypair::generate_ed25519();
        let encoded = key.to_protobuf_encoding().map_err(|e| InitError::Io {
            path: key_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        write_secret(&key_path, &encoded).map_err(io(&key_path))?;

        let token_path = self.path(TOKEN_FILE);
        if force || !token_path.exists() {
            write_secret(&token_path, new_token().as_bytes()).map_err(io(&token_path))?;
        }
        let config_path = self.path(CONFIG_FILE);
        let created_config = !config_path.exists();
        if created_config {
            fs::write(&config_path, ConfigFile::default_text()).map_err(io(&config_path))?;
        }
        // The database too, at its latest schema: the first start does not
        // migrate, and a directory where it cannot be created fails here.
        cnode_store::Store::open(&self.root)?;
        Ok(InitReport {
            dir: self.root.clone(),
            peer_id: key.public().to_peer_id().to_string(),
            created_key: true,
            created_config,
        })
    }

    /// Reads the node key.
    pub fn load_key(&self) -> Result<Keypair, KeyError> {
        let path = self.path(KEY_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing { path });
            }
            Err(source) => return Err(KeyError::Io { path, source }),
        };
        Keypair::from_protobuf_encoding(&bytes).map_err(|e| KeyError::Corrupt {
            len: bytes.len(),
            path,
            reason: e.to_string(),
        })
    }

    /// Reads the API token.
    pub fn load_token(&self) -> std::io::Result<String> {
        Ok(fs::read_to_string(self.path(TOKEN_FILE))?.trim().to_owned())
    }

    /// Loads `config.toml` (defaults when absent).
    pub fn load_config(&self) -> Result<ConfigFile, crate::ConfigError> {
        ConfigFile::load(&self.path(CONFIG_FILE))
    }

    /// Records where the running node's API listens.
    pub fn write_api_info(&self, info: &ApiInfo) -> std::io::Result<()> {
        let json = serde_json::to_string(info).map_err(std::io::Error::other)?;
        let path = self.path(API_INFO_FILE);
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, json)?;
        fs::rename(tmp, path)
    }

    /// Where a running node's API listens, if one left `api.json`.
    pub fn read_api_info(&self) -> Option<ApiInfo> {
        let text = fs::read_to_string(self.path(API_INFO_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Removes `api.json` (at clean shutdown).
    pub fn remove_api_info(&self) {
        let _ = fs::remove_file(self.path(API_INFO_FILE));
    }
}

/// A new random API token: 32 bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_creates_private_files_and_refuses_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path().join("d"));
        let report = dd.init(false).unwrap();
        assert!(report.created_key && report.created_config);
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dd.path(KEY_FILE)), 0o600);
        assert_eq!(mode(dd.path(TOKEN_FILE)), 0o600);
        assert_eq!(mode(dd.root().to_owned()), 0o700);
        let key = dd.load_key().unwrap();
        assert_eq!(key.public().to_peer_id().to_string(), report.peer_id);
        assert_eq!(dd.load_token().unwrap().len(), 64);

        let before = fs::read(dd.path(KEY_FILE)).unwrap();
        assert!(matches!(dd.init(false), Err(InitError::KeyExists { .. })));
        assert_eq!(fs::read(dd.path(KEY_FILE)).unwrap(), before);
        let again = dd.init(true).unwrap();
        assert_ne!(again.peer_id, report.peer_id);
    }

    #[test]
    fn truncated_key_is_reported_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path());
        dd.init(false).unwrap();
        let bytes = fs::read(dd.path(KEY_FILE)).unwrap();
        fs::write(dd.path(KEY_FILE), &bytes[..bytes.len() / 2]).unwrap();
        let err = dd.load_key().unwrap_err();
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("init --force"));
        assert_eq!(fs::read(dd.path(KEY_FILE)).unwrap().len(), bytes.len() / 2);
    }

    #[test]
    fn api_info_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dd = DataDir::new(tmp.path());
        assert_eq!(dd.read_api_info(), None);
        let info = ApiInfo {
            addr: "127.0.0.1:7701".parse().unwrap(),
            pid: 42,
        };
        dd.write_api_info(&info).unwrap();
        assert_eq!(dd.read_api_info(), Some(info));
        dd.remove_api_info();
        assert_eq!(dd.read_api_info(), None);
    }

    #[test]
    fn xdg_default() {
        // Only checks the shape; the environment is the test runner's.
        assert!(default_data_dir().ends_with("cnode"));
    }
}
