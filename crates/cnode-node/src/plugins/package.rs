//! Plugin packages: a blob collection (a folder) holding `plugin.toml`,
//! `component.wasm` and, when signed, `publisher.sig`; fetched over the
//! swarm by CID or by service id from the registry's API list, checked, and
//! installed.
//!
//! `publisher.sig` is JSON, `{"v":1,"address":"0x…","signature":"0x…"}`: an
//! EIP-191 (`personal_sign`) signature by the publisher's Ethereum key over
//! [`signing_text`]. A registry install requires it and requires the signer
//! to be the service's on-chain publisher; an install by CID shows the
//! signer, or "unsigned".
//!
//! Every fetched blob is bounded before it is read: the collection
//! [`MAX_PACKAGE_LISTING`], the manifest [`MAX_MANIFEST_BYTES`], the
//! signature [`MAX_SIGNATURE_BYTES`], the component the host's
//! [`cnode_plugins::MAX_COMPONENT_BYTES`]; a download whose proven size is
//! over its bound is stopped and its partial blob removed.

use std::{path::Path, sync::Arc, time::Duration};

use alloy::{
    primitives::{Address, B256, Signature},
    signers::{SignerSync, local::PrivateKeySigner},
};
use cnode_blobs::{
    BlobKind, DownloadOptions,
    collection::{Collection, Entry},
};
use cnode_plugins::{MAX_COMPONENT_BYTES, Manifest};
use cnode_registry::{Service, ServiceStatus};
use cnode_types::BlobHash;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{GrantChoice, MAX_MANIFEST_BYTES, Origin, PluginError, PluginView, format_capability};

mod fetch;
use crate::{Node, TransferEvent, TransferState, blobs::NetRequester};
use fetch::{fetch_root, lookup};

/// The manifest's file name in a package.
pub const MANIFEST_FILE: &str = "plugin.toml";
/// The component's file name in a package.
pub const COMPONENT_FILE: &str = "component.wasm";
/// The publisher signature's file name in a package.
pub const SIGNATURE_FILE: &str = "publisher.sig";
/// The largest `publisher.sig`, bytes.
pub const MAX_SIGNATURE_BYTES: u64 = 4 << 10;
/// The largest package collection (its JSON listing), bytes.
pub const MAX_PACKAGE_LISTING: u64 = 64 << 10;
/// A package download gives up when no piece arrived for this long.
const STALL: Duration = Duration::from_secs(30);
/// A whole package download gives up after this long.
const FETCH_LIMIT: Duration = Duration::from_secs(300);

/// A package could not be fetched, checked or installed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The node follows no registry.
    #[error(
        "this node has no registry, so it cannot look up {0}: configure [chain] in config.toml (or install by CID)"
    )]
    NoRegistry(String),
    /// No entry in the API list.
    #[error("{0}")]
    UnknownService(String),
    /// The entry is proposed or revoked.
    #[error("{0}")]
    NotApproved(String),
    /// The package could not be fetched from the swarm.
    #[error("cannot fetch {what} {hash}: {why}")]
    Fetch {
        /// What was fetched (the package, its plugin.toml, …).
        what: String,
        /// The blob.
        hash: String,
        /// Why.
        why: String,
    },
    /// The package's files are not a package.
    #[error("not a plugin package: {0}")]
    Layout(String),
    /// The package does not match the API list (or what was approved).
    #[error("package mismatch: {0}")]
    Mismatch(String),
    /// The publisher signature is malformed, invalid or by someone else.
    #[error("publisher signature: {0}")]
    Signature(String),
    /// Installing the checked package failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The text a publisher signs (EIP-191) for a package.
pub fn signing_text(id: &str, version: &str, manifest: &BlobHash, component: &BlobHash) -> String {
    format!(
        "cnode plugin package v1\nid: {id}\nversion: {version}\nmanifest: {}\ncomponent: {}\n",
        manifest.to_hex(),
        component.to_hex()
    )
}

/// `publisher.sig`: who signed a package, and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublisherSig {
    /// Format version, 1.
    pub v: u32,
    /// The publisher's address, `0x…` (checksummed when written by cnode).
    pub address: String,
    /// The 65-byte signature `r ‖ s ‖ v`, `0x…` hex.
    pub signature: String,
}

impl PublisherSig {
    /// Signs the package made of `manifest_text` and `component`.
    pub fn sign(
        signer: &PrivateKeySigner,
        manifest_text: &str,
        component: &[u8],
    ) -> Result<Self, PackageError> {
        let manifest = Manifest::from_toml(manifest_text)
            .map_err(|e| PackageError::Layout(format!("{MANIFEST_FILE}: {e}")))?;
        let text = signing_text(
            manifest.id.as_str(),
            &manifest.version.to_string(),
            &BlobHash::of(manifest_text.as_bytes()),
            &BlobHash::of(component),
        );
        let sig = signer
            .sign_message_sync(text.as_bytes())
            .map_err(|e| PackageError::Signature(format!("cannot sign: {e}")))?;
        Ok(Self {
            v: 1,
            address: signer.address().to_checksum(None),
            signature: format!("0x{}", hex::encode(sig.as_bytes())),
        })
    }

    /// Parses `publisher.sig` (bounded, strict).
    pub fn parse(bytes: &[u8]) -> Result<Self, PackageError> {
        if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
            return Err(PackageError::Signature(format!(
                "{SIGNATURE_FILE} is {} bytes, the limit is {MAX_SIGNATURE_BYTES}",
                bytes.len()
            )));
        }
        let sig: Self = serde_json::from_slice(bytes)
            .map_err(|e| PackageError::Signature(format!("{SIGNATURE_FILE}: {e}")))?;
        if sig.v != 1 {
            return Err(PackageError::Signature(format!(
                "{SIGNATURE_FILE}: unknown version {} (this node reads 1)",
                sig.v
            )));
        }
        Ok(sig)
    }

    /// Checks the signature over `text`: it must recover to
    /// [`PublisherSig::address`]. Returns that address.
    pub fn verify(&self, text: &str) -> Result<Address, PackageError> {
        let claimed: Address = self.address.parse().map_err(|_| {
            PackageError::Signature(format!("address {:?} is not an address", self.address))
        })?;
        let raw = self
            .signature
            .strip_prefix("0x")
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| PackageError::Signature("signature is not 0x-prefixed hex".into()))?;
        let sig = Signature::from_raw(&raw)
            .map_err(|e| PackageError::Signature(format!("malformed signature: {e}")))?;
        let signer = sig
            .recover_address_from_msg(text.as_bytes())
            .map_err(|e| PackageError::Signature(format!("cannot recover the signer: {e}")))?;
        if signer != claimed {
            return Err(PackageError::Signature(format!(
                "does not verify: it names {claimed} but was made by {signer} or is not over this package"
            )));
        }
        Ok(signer)
    }
}

/// A package's files, checked against each other: the manifest parses, and
/// a signature, if any, verifies over this manifest and component.
#[derive(Debug, Clone)]
pub struct CheckedPackage {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// `plugin.toml` as written.
    pub manifest_text: String,
    /// The component bytes.
    pub component: Vec<u8>,
    /// BLAKE3 of `plugin.toml`.
    pub manifest_hash: BlobHash,
    /// BLAKE3 of `component.wasm`.
    pub component_hash: BlobHash,
    /// Who signed it, if it is signed (the signature verified).
    pub publisher: Option<Address>,
}

/// Checks a package's files (see [`CheckedPackage`]).
pub fn check_files(
    manifest_bytes: &[u8],
    component: Vec<u8>,
    signature: Option<&[u8]>,
) -> Result<CheckedPackage, PackageError> {
    if manifest_bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(PackageError::Layout(format!(
            "{MANIFEST_FILE} is {} bytes, the limit is {MAX_MANIFEST_BYTES}",
            manifest_bytes.len()
        )));
    }
    let manifest_text = String::from_utf8(manifest_bytes.to_vec())
        .map_err(|_| PackageError::Layout(format!("{MANIFEST_FILE} is not UTF-8")))?;
    let manifest = Manifest::from_toml(&manifest_text)
        .map_err(|e| PackageError::Layout(format!("{MANIFEST_FILE}: {e}")))?;
    let manifest_hash = BlobHash::of(manifest_bytes);
    let component_hash = BlobHash::of(&component);
    let publisher = match signature {
        None => None,
        Some(bytes) => {
            let sig = PublisherSig::parse(bytes)?;
            let text = signing_text(
                manifest.id.as_str(),
                &manifest.version.to_string(),
                &manifest_hash,
                &component_hash,
            );
            Some(sig.verify(&text)?)
        }
    };
    Ok(CheckedPackage {
        manifest,
        manifest_text,
        component,
        manifest_hash,
        component_hash,
        publisher,
    })
}

/// The entries of a package collection: exactly `plugin.toml`,
/// `component.wasm` and optionally `publisher.sig`, each within its bound.
/// Returns (manifest, component, signature).
pub fn package_entries(c: &Collection) -> Result<(Entry, Entry, Option<Entry>), PackageError> {
    let mut manifest = None;
    let mut component = None;
    let mut signature = None;
    for e in &c.entries {
        let (slot, max) = match e.path.as_str() {
            MANIFEST_FILE => (&mut manifest, MAX_MANIFEST_BYTES),
            COMPONENT_FILE => (&mut component, MAX_COMPONENT_BYTES as u64),
            SIGNATURE_FILE => (&mut signature, MAX_SIGNATURE_BYTES),
            other => {
                return Err(PackageError::Layout(format!(
                    "unexpected file {other:?} (a package holds only {MANIFEST_FILE}, {COMPONENT_FILE} and {SIGNATURE_FILE})"
                )));
            }
        };
        if e.size > max {
            return Err(PackageError::Layout(format!(
                "{} is {} bytes, the limit is {max}",
                e.path, e.size
            )));
        }
        if slot.replace(e.clone()).is_some() {
            return Err(PackageError::Layout(format!("{} is listed twice", e.path)));
        }
    }
    let manifest =
        manifest.ok_or_else(|| PackageError::Layout(format!("it has no {MANIFEST_FILE}")))?;
    let component =
        component.ok_or_else(|| PackageError::Layout(format!("it has no {COMPONENT_FILE}")))?;
    Ok((manifest, component, signature))
}

/// Writes a package folder to `out` (created; it must be empty or hold
/// only package files): `plugin.toml`, `component.wasm` and, if given,
/// `publisher.sig`. `cnode add out` then makes the package blob.
pub fn write_package(
    out: &Path,
    manifest_text: &str,
    component: &[u8],
    signature: Option<&PublisherSig>,
) -> Result<(), PackageError> {
    let io = |what: &Path, e: std::io::Error| {
        PackageError::Plugin(PluginError::Io {
            path: what.to_path_buf(),
            source: e,
        })
    };
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    for entry in std::fs::read_dir(out).map_err(|e| io(out, e))? {
        let entry = entry.map_err(|e| io(out, e))?;
        let name = entry.file_name();
        if ![MANIFEST_FILE, COMPONENT_FILE, SIGNATURE_FILE]
            .iter()
            .any(|n| name == *n)
        {
            return Err(PackageError::Layout(format!(
                "{} holds {:?}; write the package to an empty folder",
                out.display(),
                name
            )));
        }
    }
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|e| io(&p, e))
    };
    write(MANIFEST_FILE, manifest_text.as_bytes())?;
    write(COMPONENT_FILE, component)?;
    let sig_path = out.join(SIGNATURE_FILE);
    match signature {
        Some(sig) => write(
            SIGNATURE_FILE,
            &serde_json::to_vec(sig).map_err(|e| PackageError::Signature(e.to_string()))?,
        )?,
        None if sig_path.exists() => {
            std::fs::remove_file(&sig_path).map_err(|e| io(&sig_path, e))?
        }
        None => {}
    }
    Ok(())
}

/// Where a package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackageSource {
    /// A package collection by its CID.
    Cid(BlobHash),
    /// A service of the registry's API list: the newest approved version,
    /// or this one.
    Service {
        /// The service id.
        id: String,
        /// The version; `None` for the newest approved.
        version: Option<String>,
    },
}

/// What a package would install: shown to the user before approval.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackagePreview {
    /// The plugin id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it does.
    pub description: String,
    /// The capabilities it requests (`resource:access[:scope]`).
    pub requested: Vec<String>,
    /// The package collection's CID (its BLAKE3 root).
    pub package: String,
    /// BLAKE3 of `plugin.toml`, hex.
    pub manifest_hash: String,
    /// BLAKE3 of `component.wasm`, hex.
    pub component_hash: String,
    /// The address that signed it (verified), or none when unsigned.
    pub publisher: Option<String>,
    /// The API list entry's status (`approved`), for a service install.
    pub registry_status: Option<String>,
}

/// A fetched and checked package, ready to install.
#[derive(Debug, Clone)]
pub struct FetchedPackage {
    /// What it is.
    pub preview: PackagePreview,
    files: Arc<CheckedPackage>,
    blobs: Vec<BlobHash>,
}

/// Fetches a package over the swarm (or from the local store) and checks
/// it; for a service, against its API list entry. Nothing is installed.
pub async fn fetch(node: &Node, source: &PackageSource) -> Result<FetchedPackage, PackageError> {
    match source {
        PackageSource::Cid(root) => fetch_root(node, *root, None).await,
        PackageSource::Service { id, version } => {
            let service = lookup(node, id, version.as_deref())?;
            let root = BlobHash::from_bytes(service.package_hash.0);
            fetch_root(node, root, Some(&service)).await
        }
    }
}

/// Fetches, checks and installs a package with `grants`. When `expect` is
/// given (the package CID the user approved in a preview) the package must
/// be that one.
pub async fn install(
    node: &Node,
    source: &PackageSource,
    expect: Option<BlobHash>,
    grants: GrantChoice,
) -> Result<(PluginView, PackagePreview), PackageError> {
    let fetched = fetch(node, source).await?;
    if let Some(expect) = expect
        && expect.to_cid() != fetched.preview.package
    {
        return Err(PackageError::Mismatch(format!(
            "the package is now {}, not {} that was approved; look again",
            fetched.preview.package,
            expect.to_cid()
        )));
    }
    let files = &fetched.files;
    let origin = Origin {
        package: fetched.preview.package.clone(),
        publisher: fetched.preview.publisher.clone(),
    };
    let view = node
        .plugins()
        .install_from(&files.manifest_text, &files.component, grants, Some(origin))
        .await?;
    // Keep the package and serve it to other nodes.
    let blobs = node.blobs();
    for hash in &fetched.blobs {
        if let Err(e) = blobs.store().set_pinned(*hash, true).await {
            warn!(%hash, "cannot pin the installed package: {e}");
        }
        blobs.announce(*hash).await;
    }
    info!(
        plugin = %view.id,
        package = %fetched.preview.package,
        publisher = fetched.preview.publisher.as_deref().unwrap_or("unsigned"),
        "plugin installed from a package"
    );
    Ok((view, fetched.preview))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const MANIFEST: &str = "id = \"org.test.pkg\"\nname = \"Pkg\"\nversion = \"1.2.3\"\napi-version = \"0.1\"\nroutes = [\"/*\"]\n\n[[capabilities]]\nresource = \"kv\"\naccess = \"read\"\n";

    fn key(n: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::from([n; 32])).unwrap()
    }

    /// The documented package: its hashes, signing text and signature.
    #[test]
    fn protocol_md_test_vectors() {
        let v = crate::protocol_md_vectors("package-");
        let key = PrivateKeySigner::from_bytes(&v["key"].parse::<B256>().unwrap()).unwrap();
        let manifest = String::from_utf8(hex::decode(&v["manifest"]).unwrap()).unwrap();
        let component = hex::decode(&v["component"]).unwrap();
        let sig = PublisherSig::sign(&key, &manifest, &component).unwrap();
        let computed = [
            ("address", sig.address.clone()),
            (
                "manifest-blake3",
                BlobHash::of(manifest.as_bytes()).to_hex(),
            ),
            ("component-blake3", BlobHash::of(&component).to_hex()),
            ("signature", sig.signature.clone()),
        ];
        let text = signing_text(
            "org.example.hello",
            "1.0.0",
            &BlobHash::of(manifest.as_bytes()),
            &BlobHash::of(&component),
        );
        let computed = [
            computed.to_vec(),
            vec![("signing-text", hex::encode(text.as_bytes()))],
        ]
        .concat();
        let wrong: Vec<String> = computed
            .iter()
            .filter(|(name, value)| v.get(*name) != Some(value))
            .map(|(name, value)| format!("vector package-{name} {value}"))
            .collect();
        assert!(
            wrong.is_empty(),
            "differ from docs/protocol.md:\n{}",
            wrong.join("\n")
        );
        let p = check_files(
            manifest.as_bytes(),
            component,
            Some(&serde_json::to_vec(&sig).unwrap()),
        )
        .unwrap();
        assert_eq!(p.publisher, Some(key.address()));
    }

    #[test]
    fn signing_text_is_the_documented_one() {
        let m = BlobHash::of(b"m");
        let c = BlobHash::of(b"c");
        assert_eq!(
            signing_text("org.test.pkg", "1.2.3", &m, &c),
            format!(
                "cnode plugin package v1\nid: org.test.pkg\nversion: 1.2.3\nmanifest: {}\ncomponent: {}\n",
                m.to_hex(),
                c.to_hex()
            )
        );
    }

    #[test]
    fn a_signature_verifies_and_names_its_signer() {
        let k = key(7);
        let sig = PublisherSig::sign(&k, MANIFEST, b"wasm").unwrap();
        assert_eq!(sig.v, 1);
        let bytes = serde_json::to_vec(&sig).unwrap();
        let p = check_files(MANIFEST.as_bytes(), b"wasm".to_vec(), Some(&bytes)).unwrap();
        assert_eq!(p.publisher, Some(k.address()));
        assert_eq!(p.manifest.id.as_str(), "org.test.pkg");
        assert_eq!(p.manifest_hash, BlobHash::of(MANIFEST.as_bytes()));
        // Unsigned: fine, no publisher.
        let p = check_files(MANIFEST.as_bytes(), b"wasm".to_vec(), None).unwrap();
        assert_eq!(p.publisher, None);
    }

    #[test]
    fn a_signature_over_other_bytes_or_naming_another_key_is_refused() {
        let sig = PublisherSig::sign(&key(7), MANIFEST, b"wasm").unwrap();
        let bytes = serde_json::to_vec(&sig).unwrap();
        // Another component.
        let e = check_files(MANIFEST.as_bytes(), b"wasm2".to_vec(), Some(&bytes)).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // Another version in the manifest.
        let other = MANIFEST.replace("1.2.3", "1.2.4");
        let e = check_files(other.as_bytes(), b"wasm".to_vec(), Some(&bytes)).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // The address field names someone else.
        let mut forged = sig.clone();
        forged.address = key(8).address().to_string();
        let e = check_files(
            MANIFEST.as_bytes(),
            b"wasm".to_vec(),
            Some(&serde_json::to_vec(&forged).unwrap()),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn malformed_signature_files_are_refused_clearly() {
        let cases: [(&[u8], &str); 5] = [
            (b"not json", "publisher.sig"),
            (br#"{"v":2,"address":"0x00","signature":"0x00"}"#, "unknown version 2"),
            (
                br#"{"v":1,"address":"0x0000000000000000000000000000000000000000","signature":"0x00","x":1}"#,
                "unknown field",
            ),
            (
                br#"{"v":1,"address":"nope","signature":"0x00"}"#,
                "is not an address",
            ),
            (
                br#"{"v":1,"address":"0x0000000000000000000000000000000000000000","signature":"0x0011"}"#,
                "malformed signature",
            ),
        ];
        for (bytes, want) in cases {
            let e = check_files(MANIFEST.as_bytes(), b"w".to_vec(), Some(bytes)).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
        let big = vec![b' '; MAX_SIGNATURE_BYTES as usize + 1];
        let e = check_files(MANIFEST.as_bytes(), b"w".to_vec(), Some(&big)).unwrap_err();
        assert!(e.to_string().contains("the limit is"), "{e}");
    }

    fn entry(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            hash: BlobHash::of(path.as_bytes()),
            size,
        }
    }

    fn coll(entries: Vec<Entry>) -> Collection {
        Collection {
            format: cnode_blobs::collection::FORMAT.into(),
            entries,
        }
    }

    #[test]
    fn package_layout_is_checked() {
        let ok = coll(vec![
            entry(COMPONENT_FILE, 100),
            entry(MANIFEST_FILE, 10),
            entry(SIGNATURE_FILE, 10),
        ]);
        let (m, c, s) = package_entries(&ok).unwrap();
        assert_eq!(
            (m.path.as_str(), c.path.as_str()),
            (MANIFEST_FILE, COMPONENT_FILE)
        );
        assert!(s.is_some());
        let unsigned = coll(vec![entry(COMPONENT_FILE, 100), entry(MANIFEST_FILE, 10)]);
        assert!(package_entries(&unsigned).unwrap().2.is_none());

        let bad = [
            (coll(vec![entry(MANIFEST_FILE, 10)]), "no component.wasm"),
            (coll(vec![entry(COMPONENT_FILE, 10)]), "no plugin.toml"),
            (
                coll(vec![
                    entry(MANIFEST_FILE, 10),
                    entry(COMPONENT_FILE, 10),
                    entry("README.md", 1),
                ]),
                "unexpected file \"README.md\"",
            ),
            (
                coll(vec![
                    entry(MANIFEST_FILE, MAX_MANIFEST_BYTES + 1),
                    entry(COMPONENT_FILE, 10),
                ]),
                "plugin.toml is 65537 bytes",
            ),
            (
                coll(vec![
                    entry(MANIFEST_FILE, 10),
                    entry(COMPONENT_FILE, MAX_COMPONENT_BYTES as u64 + 1),
                ]),
                "component.wasm is",
            ),
            (
                coll(vec![
                    entry(MANIFEST_FILE, 10),
                    entry(MANIFEST_FILE, 10),
                    entry(COMPONENT_FILE, 10),
                ]),
                "listed twice",
            ),
        ];
        for (c, want) in bad {
            let e = package_entries(&c).unwrap_err();
            assert!(e.to_string().contains(want), "{want}: {e}");
        }
    }

    #[test]
    fn write_package_writes_the_three_files_and_refuses_a_busy_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pkg");
        let sig = PublisherSig::sign(&key(3), MANIFEST, b"wasm").unwrap();
        write_package(&out, MANIFEST, b"wasm", Some(&sig)).unwrap();
        let read = |n: &str| std::fs::read(out.join(n)).unwrap();
        let p = check_files(
            &read(MANIFEST_FILE),
            read(COMPONENT_FILE),
            Some(&read(SIGNATURE_FILE)),
        )
        .unwrap();
        assert_eq!(p.publisher, Some(key(3).address()));
        // Again, unsigned: the old signature goes.
        write_package(&out, MANIFEST, b"wasm", None).unwrap();
        assert!(!out.join(SIGNATURE_FILE).exists());
        std::fs::write(out.join("other.txt"), b"x").unwrap();
        let e = write_package(&out, MANIFEST, b"wasm", None).unwrap_err();
        assert!(e.to_string().contains("empty folder"), "{e}");
    }
}
