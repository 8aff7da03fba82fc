//! The user keystore: one encrypted key file per user in a directory
//! (`<data dir>/users/`, mode 0700).
//!
//! Each user is a JSON file named after its DID's multibase part
//! (`z6Mk….json`, mode 0600), written atomically (temporary file, fsync,
//! rename, fsync of the directory). A passphrase-protected file reads
//!
//! ```json
//! {"version":1,"did":"did:key:z6Mk…",
//!  "kdf":{"alg":"argon2id","m_kib":65536,"t":3,"p":1,"salt":"<hex>"},
//!  "cipher":"xchacha20poly1305","nonce":"<hex, 24 bytes>","ciphertext":"<hex, 48 bytes>"}
//! ```
//!
//! where Argon2id (version 0x13, 32-byte output) turns the UTF-8 passphrase
//! and salt into the key of XChaCha20-Poly1305, which seals the 32-byte
//! ed25519 seed with the DID string as associated data, so a file's DID
//! cannot be swapped for another. A user who chose no passphrase gets
//! `{"version":1,"did":…,"insecure_seed":"<hex>"}`.
//!
//! The Argon2 parameters are read from the file, bounded (at most 1 GiB of
//! memory, 16 passes, 16 lanes) so that a hostile file cannot exhaust memory.
//! A file named `default` holds the default user's DID; the first user
//! created or imported becomes the default.

use std::{
    fmt, fs,
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::{
    Key, KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::{RngCore, rngs::OsRng};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Did, UserKey};

/// The key file format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Key files are small; anything larger is refused before parsing.
pub const MAX_FILE_LEN: usize = 16 * 1024;
/// The name of the file holding the default user's DID.
const DEFAULT_FILE: &str = "default";
/// The largest Argon2 memory cost accepted from a file: 1 GiB.
const MAX_M_KIB: u32 = 1024 * 1024;
/// The largest Argon2 pass count accepted from a file.
const MAX_T: u32 = 16;
/// The largest Argon2 lane count accepted from a file.
const MAX_P: u32 = 16;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 24;
/// The sealed seed: 32 bytes plus the 16-byte Poly1305 tag.
const CIPHERTEXT_LEN: usize = 32 + 16;
const KDF_ALG: &str = "argon2id";
const CIPHER: &str = "xchacha20poly1305";

/// A keystore operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The keystore holds no key for this DID.
    #[error("no user {did} in the keystore {dir}")]
    NoSuchUser {
        /// The DID asked for (boxed: a `Did` is 192 bytes).
        did: Box<Did>,
        /// The keystore directory.
        dir: PathBuf,
    },
    /// The key is passphrase-protected and no passphrase was given.
    #[error("the key of {did} is protected by a passphrase, and none was given")]
    PassphraseRequired {
        /// The user (boxed: a `Did` is 192 bytes).
        did: Box<Did>,
    },
    /// Decryption failed: the passphrase is wrong (or the file was altered).
    #[error("wrong passphrase for {did} (or its key file was altered)")]
    WrongPassphrase {
        /// The user (boxed: a `Did` is 192 bytes).
        did: Box<Did>,
    },
    /// A file in the keystore is not a valid key file.
    #[error("key file {path} is corrupted: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes given to [`Keystore::import`] or [`inspect`] are not a key file.
    #[error("not a cnode key file: {reason}")]
    NotAKeyFile {
        /// What is wrong with it.
        reason: String,
    },
    /// Argon2 parameters out of bounds.
    #[error("invalid key derivation parameters: {reason}")]
    InvalidKdf {
        /// Which bound was crossed.
        reason: String,
    },
    /// Reading or writing the keystore failed.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Argon2id cost parameters for new key files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    m_kib: u32,
    t: u32,
    p: u32,
}

impl Default for KdfParams {
    /// The production parameters: 64 MiB, 3 passes, 1 lane.
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

impl KdfParams {
    /// Parameters with `m_kib` KiB of memory, `t` passes and `p` lanes.
    ///
    /// Anything Argon2 accepts within the keystore's bounds (at most 1 GiB,
    /// 16 passes, 16 lanes) is allowed, so tests can use tiny values such as
    /// `KdfParams::new(8, 1, 1)`; real keys should use [`KdfParams::default`].
    pub fn new(m_kib: u32, t: u32, p: u32) -> Result<Self, KeystoreError> {
        let bad = |reason: String| Err(KeystoreError::InvalidKdf { reason });
        if !(1..=MAX_P).contains(&p) {
            return bad(format!("p = {p}, expected 1..={MAX_P}"));
        }
        if !(1..=MAX_T).contains(&t) {
            return bad(format!("t = {t}, expected 1..={MAX_T}"));
        }
        if m_kib < 8 * p || m_kib > MAX_M_KIB {
            return bad(format!("m_kib = {m_kib}, expected {}..={MAX_M_KIB}", 8 * p));
        }
        Ok(Self { m_kib, t, p })
    }

    /// Memory cost in KiB.
    pub fn m_kib(&self) -> u32 {
        self.m_kib
    }

    /// Number of passes.
    pub fn t(&self) -> u32 {
        self.t
    }

    /// Degree of parallelism (lanes).
    pub fn p(&self) -> u32 {
        self.p
    }

    fn derive(&self, passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
        let invalid = |e: argon2::Error| KeystoreError::InvalidKdf {
            reason: e.to_string(),
        };
        let params = Params::new(self.m_kib, self.t, self.p, Some(32)).map_err(invalid)?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut())
            .map_err(invalid)?;
        Ok(key)
    }
}

/// How a new key is stored.
pub enum Protection {
    /// Encrypted under a key derived from this passphrase.
    Passphrase(Zeroizing<String>),
    /// Stored unencrypted: anyone who can read the file can sign as the user.
    None,
}

impl fmt::Debug for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Passphrase(_) => f.write_str("Passphrase(<redacted>)"),
            Self::None => f.write_str("None"),
        }
    }
}

/// One user in the keystore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserEntry {
    /// The user's DID.
    pub did: Did,
    /// Whether the key is passphrase-protected.
    pub protected: bool,
    /// Whether this is the default user.
    pub default: bool,
}

/// What a key file holds, read without unlocking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFileInfo {
    /// The DID the file claims.
    pub did: Did,
    /// Whether a passphrase is needed to unlock it.
    pub protected: bool,
}

/// The result of [`Keystore::import`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The imported user.
    pub did: Did,
    /// The keystore already held this user; its file was left as it was.
    pub already_present: bool,
}

/// The encrypted user keystore in one directory.
#[derive(Debug, Clone)]
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
}

impl Keystore {
    /// The keystore in `dir`. The directory is created (mode 0700) on the
    /// first write; a missing directory is an empty keystore.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, KeystoreError> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(m) if !m.is_dir() => Err(KeystoreError::Io {
                path: dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "the keystore path is not a directory",
                ),
            }),
            Ok(_) => Ok(Self::with_dir(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::with_dir(dir)),
            Err(source) => Err(KeystoreError::Io { path: dir, source }),
        }
    }

    fn with_dir(dir: PathBuf) -> Self {
        Self {
            dir,
            kdf: KdfParams::default(),
        }
    }

    /// Uses `kdf` for keys created from now on (unlocking always uses the
    /// parameters stored in the file).
    pub fn with_kdf(mut self, kdf: KdfParams) -> Self {
        self.kdf = kdf;
        self
    }

    /// The keystore directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new random user key stored with `protection`. The first user
    /// of the keystore becomes the default.
    pub fn create(&self, protection: Protection) -> Result<Did, KeystoreError> {
        let key = UserKey::generate();
        let did = key.did();
        let secret = match protection {
            Protection::None => Secret::Insecure(key.seed()),
            Protection::Passphrase(pass) => seal(&key, &pass, self.kdf)?,
        };
        self.store(&KeyFile { did, secret })?;
        Ok(did)
    }

    /// Every user, sorted by DID.
    pub fn list(&self) -> Result<Vec<UserEntry>, KeystoreError> {
        let files = self.files()?;
        let default = self.resolve_default(&files)?;
        Ok(files
            .into_iter()
            .map(|f| UserEntry {
                did: f.did,
                protected: f.protected,
                default: Some(f.did) == default,
            })
            .collect())
    }

    /// The default user: the one named in the `default` file, else the only
    /// user if there is exactly one, else none.
    pub fn default_user(&self) -> Result<Option<Did>, KeystoreError> {
        let files = self.files()?;
        self.resolve_default(&files)
    }

    /// Makes `did` the default user.
    pub fn set_default(&self, did: &Did) -> Result<(), KeystoreError> {
        self.read_file(did)?;
        self.write_atomic(DEFAULT_FILE, format!("{did}\n").as_bytes())
    }

    /// The user's signing key. `passphrase` is needed for protected keys and
    /// ignored for unprotected ones.
    pub fn unlock(&self, did: &Did, passphrase: Option<&str>) -> Result<UserKey, KeystoreError> {
        let (path, file) = self.read_file(did)?;
        file.unlock(passphrase).map_err(|e| match e {
            Unlock::PassphraseRequired => KeystoreError::PassphraseRequired {
                did: Box::new(*did),
            },
            Unlock::WrongPassphrase => KeystoreError::WrongPassphrase {
                did: Box::new(*did),
            },
            Unlock::Kdf(e) => e,
            Unlock::Corrupt(reason) => KeystoreError::Corrupt { path, reason },
        })
    }

    /// The user's key file as stored (still encrypted if it is protected),
    /// for [`Keystore::import`] elsewhere.
    pub fn export(&self, did: &Did) -> Result<Vec<u8>, KeystoreError> {
        let path = self.path_of(did);
        let bytes = self.read_bytes(&path, did)?;
        // Refuse to hand out a file this code could not import again.
        parse(&bytes).map_err(|reason| KeystoreError::Corrupt { path, reason })?;
        Ok(bytes.to_vec())
    }

    /// Stores an exported key file after checking that it unlocks (with
    /// `passphrase` if it is protected) to the key of the DID it names. A DID
    /// already in the keystore is left as it is and reported in
    /// [`Imported::already_present`]. The first user becomes the default.
    pub fn import(
        &self,
        bytes: &[u8],
        passphrase: Option<&str>,
    ) -> Result<Imported, KeystoreError> {
        let file = parse_untrusted(bytes)?;
        let did = file.did;
        file.unlock(passphrase).map_err(|e| match e {
            Unlock::PassphraseRequired => KeystoreError::PassphraseRequired { did: Box::new(did) },
            Unlock::WrongPassphrase => KeystoreError::WrongPassphrase { did: Box::new(did) },
            Unlock::Kdf(e) => e,
            Unlock::Corrupt(reason) => KeystoreError::NotAKeyFile { reason },
        })?;
        if self.path_of(&did).exists() {
            return Ok(Imported {
                did,
                already_present: true,
            });
        }
        self.store(&file)?;
        Ok(Imported {
            did,
            already_present: false,
        })
    }

    /// Writes a new user's file, and makes it the default if there is none.
    fn store(&self, file: &KeyFile) -> Result<(), KeystoreError> {
        // A damaged file elsewhere in the keystore does not block new users;
        // it only keeps this one from being made the default.
        let had_default = !matches!(self.default_user(), Ok(None));
        let path = self.path_of(&file.did);
        let json = file.to_json().map_err(|e| KeystoreError::Io {
            path,
            source: std::io::Error::other(e),
        })?;
        self.write_atomic(&file_name(&file.did), &json)?;
        if !had_default {
            self.set_default(&file.did)?;
        }
        Ok(())
    }

    fn path_of(&self, did: &Did) -> PathBuf {
        self.dir.join(file_name(did))
    }

    fn read_bytes(&self, path: &Path, did: &Did) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        read_limited(path).map_err(|e| match e {
            ReadError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                KeystoreError::NoSuchUser {
                    did: Box::new(*did),
                    dir: self.dir.clone(),
                }
            }
            ReadError::Io(source) => KeystoreError::Io {
                path: path.to_owned(),
                source,
            },
            ReadError::TooLarge => KeystoreError::Corrupt {
                path: path.to_owned(),
                reason: format!("larger than {MAX_FILE_LEN} bytes"),
            },
        })
    }

    /// Reads and parses the user's file; its DID must be the one asked for.
    fn read_file(&self, did: &Did) -> Result<(PathBuf, KeyFile), KeystoreError> {
        let path = self.path_of(did);
        let bytes = self.read_bytes(&path, did)?;
        let corrupt = |reason| KeystoreError::Corrupt {
            path: path.clone(),
            reason,
        };
        let file = parse(&bytes).map_err(corrupt)?;
        if file.did != *did {
            return Err(corrupt(format!(
                "it holds the key of {}, not of {did}",
                file.did
            )));
        }
        Ok((path, file))
    }

    /// Every key file, parsed (not unlocked), sorted by DID.
    fn files(&self) -> Result<Vec<KeyFileInfo>, KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry.map_err(io)?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue; // temporary files and anything not ours
            }
            let path = self.dir.join(name);
            let corrupt = |reason| KeystoreError::Corrupt {
                path: path.clone(),
                reason,
            };
            let bytes = read_limited(&path).map_err(|e| match e {
                ReadError::Io(source) => KeystoreError::Io {
                    path: path.clone(),
                    source,
                },
                ReadError::TooLarge => corrupt(format!("larger than {MAX_FILE_LEN} bytes")),
            })?;
            let file = parse(&bytes).map_err(corrupt)?;
            if file_name(&file.did) != name {
                return Err(corrupt(format!(
                    "it holds the key of {}, which does not match its file name",
                    file.did
                )));
            }
            out.push(file.info());
        }
        out.sort_by_key(|f| f.did);
        Ok(out)
    }

    fn resolve_default(&self, files: &[KeyFileInfo]) -> Result<Option<Did>, KeystoreError> {
        let path = self.dir.join(DEFAULT_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let did: Did = text.trim().parse().map_err(|e| KeystoreError::Corrupt {
                    path: path.clone(),
                    reason: format!("not a DID: {e}"),
                })?;
                // A default whose file was removed by hand falls through.
                if files.iter().any(|f| f.did == did) {
                    return Ok(Some(did));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(KeystoreError::Io { path, source }),
        }
        Ok(match files {
            [only] => Some(only.did),
            _ => None,
        })
    }

    /// Writes `name` in the keystore: temporary file (0600), fsync, rename,
    /// fsync of the directory, so a crash leaves the old file or the new one.
    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), KeystoreError> {
        self.ensure_dir()?;
        let path = self.dir.join(name);
        let mut suffix = [0u8; 8];
        OsRng.fill_bytes(&mut suffix);
        let tmp = self
            .dir
            .join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        let written = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        })();
        written.map_err(|source| {
            let _ = fs::remove_file(&tmp);
            KeystoreError::Io { path, source }
        })
    }

    /// Creates the directory with mode 0700, or narrows an existing one to it.
    fn ensure_dir(&self) -> Result<(), KeystoreError> {
        let io = |source| KeystoreError::Io {
            path: self.dir.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io)?;
        let meta = fs::metadata(&self.dir).map_err(io)?;
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(())
    }
}

/// Reads what an exported key file holds (its DID and whether it needs a
/// passphrase) without unlocking it.
pub fn inspect(bytes: &[u8]) -> Result<KeyFileInfo, KeystoreError> {
    parse_untrusted(bytes).map(|f| f.info())
}

/// The file name of a user's key: the DID's multibase part plus `.json`.
fn file_name(did: &Did) -> String {
    let text = did.to_string();
    let stem = text.strip_prefix("did:key:").unwrap_or(&text);
    format!("{stem}.json")
}

enum ReadError {
    Io(std::io::Error),
    TooLarge,
}

/// Reads at most [`MAX_FILE_LEN`] bytes; a longer file is refused.
fn read_limited(path: &Path) -> Result<Zeroizing<Vec<u8>>, ReadError> {
    let f = fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Zeroizing::new(Vec::new());
    f.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() > MAX_FILE_LEN {
        return Err(ReadError::TooLarge);
    }
    Ok(bytes)
}

/// A parsed key file.
struct KeyFile {
    did: Did,
    secret: Secret,
}

enum Secret {
    Insecure(Zeroizing<[u8; 32]>),
    Sealed {
        kdf: KdfParams,
        salt: Vec<u8>,
        nonce: [u8; NONCE_LEN],
        ciphertext: [u8; CIPHERTEXT_LEN],
    },
}

/// Why a parsed file did not unlock.
enum Unlock {
    PassphraseRequired,
    WrongPassphrase,
    Kdf(KeystoreError),
    Corrupt(String),
}

/// The JSON form of a key file (version 1).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileJson {
    version: u32,
    did: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kdf: Option<KdfJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cipher: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ciphertext: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insecure_seed: Option<Zeroizing<String>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfJson {
    alg: String,
    m_kib: u32,
    t: u32,
    p: u32,
    salt: String,
}

/// Just the version, read first so a newer format is named as such.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

fn parse_untrusted(bytes: &[u8]) -> Result<KeyFile, KeystoreError> {
    if bytes.len() > MAX_FILE_LEN {
        return Err(KeystoreError::NotAKeyFile {
            reason: format!("larger than {MAX_FILE_LEN} bytes"),
        });
    }
    parse(bytes).map_err(|reason| KeystoreError::NotAKeyFile { reason })
}

/// Parses and checks a key file's structure (not its secret).
fn parse(bytes: &[u8]) -> Result<KeyFile, String> {
    let VersionOnly { version } =
        serde_json::from_slice(bytes).map_err(|e| format!("not a key file ({e})"))?;
    if version != FORMAT_VERSION {
        return Err(format!(
            "format version {version}; this cnode reads version {FORMAT_VERSION}"
        ));
    }
    let json: FileJson = serde_json::from_slice(bytes).map_err(|e| format!("{e}"))?;
    let did: Did = json
        .did
        .parse()
        .map_err(|e| format!("bad did {:?}: {e}", json.did))?;
    let secret = match (
        json.insecure_seed,
        json.kdf,
        json.cipher,
        json.nonce,
        json.ciphertext,
    ) {
        (Some(seed), None, None, None, None) => {
            let mut bytes = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(seed.as_bytes(), bytes.as_mut())
                .map_err(|e| format!("insecure_seed is not 32 hex-encoded bytes ({e})"))?;
            Secret::Insecure(bytes)
        }
        (None, Some(kdf), Some(cipher), Some(nonce), Some(ciphertext)) => {
            if kdf.alg != KDF_ALG {
                return Err(format!(
                    "kdf {:?} is not supported (only {KDF_ALG})",
                    kdf.alg
                ));
            }
            if cipher != CIPHER {
                return Err(format!(
                    "cipher {cipher:?} is not supported (only {CIPHER})"
                ));
            }
            let params = KdfParams::new(kdf.m_kib, kdf.t, kdf.p).map_err(|e| e.to_string())?;
            let salt = hex::decode(&kdf.salt).map_err(|e| format!("salt is not hex ({e})"))?;
            if !(8..=64).contains(&salt.len()) {
                return Err(format!("salt of {} bytes, expected 8 to 64", salt.len()));
            }
            let mut n = [0u8; NONCE_LEN];
            hex::decode_to_slice(&nonce, &mut n)
                .map_err(|e| format!("nonce is not {NONCE_LEN} hex-encoded bytes ({e})"))?;
            let mut c = [0u8; CIPHERTEXT_LEN];
            hex::decode_to_slice(&ciphertext, &mut c).map_err(|e| {
                format!("ciphertext is not {CIPHERTEXT_LEN} hex-encoded bytes ({e})")
            })?;
            Secret::Sealed {
                kdf: params,
                salt,
                nonce: n,
                ciphertext: c,
            }
        }
        _ => {
            return Err(
                "expected either insecure_seed, or kdf, cipher, nonce and ciphertext".into(),
            );
        }
    };
    Ok(KeyFile { did, secret })
}

/// Encrypts the key's seed under `passphrase`.
fn seal(key: &UserKey, passphrase: &str, kdf: KdfParams) -> Result<Secret, KeystoreError> {
    let mut salt = vec![0u8; SALT_LEN];
    OsRng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    let k = kdf.derive(passphrase, &salt)?;
    let did = key.did().to_string();
    let seed = key.seed();
    let sealed = XChaCha20Poly1305::new(Key::from_slice(&k[..]))
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: seed.as_ref(),
                aad: did.as_bytes(),
            },
        )
        .map_err(|_| KeystoreError::InvalidKdf {
            reason: "encryption failed".into(),
        })?;
    let ciphertext: [u8; CIPHERTEXT_LEN] =
        sealed
            .as_slice()
            .try_into()
            .map_err(|_| KeystoreError::InvalidKdf {
                reason: "unexpected ciphertext length".into(),
            })?;
    Ok(Secret::Sealed {
        kdf,
        salt,
        nonce,
        ciphertext,
    })
}

impl KeyFile {
    fn info(&self) -> KeyFileInfo {
        KeyFileInfo {
            did: self.did,
            protected: matches!(self.secret, Secret::Sealed { .. }),
        }
    }

    /// The key, checked against the file's DID.
    fn unlock(&self, passphrase: Option<&str>) -> Result<UserKey, Unlock> {
        let key = match &self.secret {
            Secret::Insecure(seed) => UserKey::from_seed(seed),
            Secret::Sealed {
                kdf,
                salt,
                nonce,
                ciphertext,
            } => {
                let passphrase = passphrase.ok_or(Unlock::PassphraseRequired)?;
                let k = kdf.derive(passphrase, salt).map_err(Unlock::Kdf)?;
                let did = self.did.to_string();
                let seed = Zeroizing::new(
                    XChaCha20Poly1305::new(Key::from_slice(&k[..]))
                        .decrypt(
                            XNonce::from_slice(nonce),
                            Payload {
                                msg: ciphertext,
                                aad: did.as_bytes(),
                            },
                        )
                        .map_err(|_| Unlock::WrongPassphrase)?,
                );
                let seed: &[u8; 32] = seed
                    .as_slice()
                    .try_into()
                    .map_err(|_| Unlock::Corrupt("the sealed seed is not 32 bytes".into()))?;
                UserKey::from_seed(seed)
            }
        };
        if key.did() != self.did {
            return Err(Unlock::Corrupt(format!(
                "its seed is the key of {}, not of {}",
                key.did(),
                self.did
            )));
        }
        Ok(key)
    }

    fn to_json(&self) -> Result<Zeroizing<Vec<u8>>, serde_json::Error> {
        let mut json = FileJson {
            version: FORMAT_VERSION,
            did: self.did.to_string(),
            kdf: None,
            cipher: None,
            nonce: None,
            ciphertext: None,
            insecure_seed: None,
        };
        match &self.secret {
            Secret::Insecure(seed) => json.insecure_seed = Some(Zeroizing::new(hex::encode(seed))),
            Secret::Sealed {
                kdf,
                salt,
                nonce,
                ciphertext,
            } => {
                json.kdf = Some(KdfJson {
                    alg: KDF_ALG.into(),
                    m_kib: kdf.m_kib,
                    t: kdf.t,
                    p: kdf.p,
                    salt: hex::encode(salt),
                });
                json.cipher = Some(CIPHER.into());
                json.nonce = Some(hex::encode(nonce));
                json.ciphertext = Some(hex::encode(ciphertext));
            }
        }
        let mut out = Zeroizing::new(serde_json::to_vec_pretty(&json)?);
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
