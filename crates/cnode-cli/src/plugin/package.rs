//! `cnode plugin pack | publish`, and `install` of a package by CID or
//! service id (the node fetches and checks it; this shows what it found and
//! asks).

use std::path::{Path, PathBuf};

use alloy::{primitives::B256, signers::local::PrivateKeySigner};
use anyhow::{Context, Result, bail};
use cnode_node::{
    DataDir,
    plugins::{
        cnode_plugins::MAX_COMPONENT_BYTES,
        package::{PackagePreview, PublisherSig, check_files, write_package},
        resolve_package,
    },
};
use cnode_types::BlobHash;
use reqwest::Method;
use serde::Serialize;

use super::confirm;
use crate::{
    client::ApiClient,
    output,
    registry::{
        TxArgs, key,
        write::{chain_config, tx_error, writer_for},
    },
};

/// The largest plugin.toml packed.
const MAX_MANIFEST: u64 = 64 << 10;

/// A package folder written by [`pack`].
#[derive(Debug, Serialize)]
struct Packed {
    /// Where it was written.
    dir: PathBuf,
    id: String,
    version: String,
    /// BLAKE3 of plugin.toml, hex.
    manifest_hash: String,
    /// BLAKE3 of component.wasm, hex.
    component_hash: String,
    /// The signer, if signed.
    publisher: Option<String>,
}

/// Builds a package folder from a plugin directory (resolved as `install
/// PATH` does), signed by `signer` if given.
fn pack(
    dir: &DataDir,
    src: &Path,
    out: Option<PathBuf>,
    signer: Option<&PrivateKeySigner>,
) -> Result<Packed> {
    let (manifest_path, wasm_path) = resolve_package(src)?;
    let len = std::fs::metadata(&manifest_path)?.len();
    if len > MAX_MANIFEST {
        bail!(
            "{}: {len} bytes, the limit is {MAX_MANIFEST}",
            manifest_path.display()
        );
    }
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let len = std::fs::metadata(&wasm_path)?.len();
    if len > MAX_COMPONENT_BYTES as u64 {
        bail!(
            "{}: {len} bytes, the limit is {MAX_COMPONENT_BYTES}",
            wasm_path.display()
        );
    }
    let component = std::fs::read(&wasm_path)
        .with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let sig = signer
        .map(|s| PublisherSig::sign(s, &text, &component))
        .transpose()?;
    let sig_bytes = sig.as_ref().map(serde_json::to_vec).transpose()?;
    // The same checks a node makes: the manifest parses, the signature verifies.
    let checked = check_files(text.as_bytes(), component, sig_bytes.as_deref())?;
    let m = &checked.manifest;
    let out = match out {
        Some(o) => std::path::absolute(&o).with_context(|| format!("bad path {}", o.display()))?,
        None => dir
            .path("plugins")
            .join("packages")
            .join(format!("{}-{}", m.id, m.version)),
    };
    write_package(&out, &text, &checked.component, sig.as_ref())?;
    Ok(Packed {
        dir: out,
        id: m.id.to_string(),
        version: m.version.to_string(),
        manifest_hash: checked.manifest_hash.to_hex(),
        component_hash: checked.component_hash.to_hex(),
        publisher: checked.publisher.map(|a| a.to_checksum(None)),
    })
}

/// `cnode plugin pack`.
pub(super) fn pack_command(
    dir: &DataDir,
    src: &Path,
    out: Option<PathBuf>,
    unsigned: bool,
    json: bool,
) -> Result<()> {
    let signer = if unsigned {
        None
    } else {
        Some(key::unlock(dir).context(
            "a package is signed with the operator key (or pass --unsigned for one installable by CID only)",
        )?)
    };
    let p = pack(dir, src, out, signer.as_ref())?;
    if json {
        output::json(&p);
    } else {
        println!("packed {} {} in {}", p.id, p.version, p.dir.display());
        println!("  manifest  {}", p.manifest_hash);
        println!("  component {}", p.component_hash);
        match &p.publisher {
            Some(a) => println!("  signed by {a}"),
            None => println!("  unsigned"),
        }
        println!(
            "add it with `cnode add {}` (or use `cnode plugin publish`)",
            p.dir.display()
        );
    }
    Ok(())
}

/// `cnode plugin publish`: pack (signed), add to the running node's blobs
/// (pinned, announced), propose for the API list.
pub(super) async fn publish(
    dir: &DataDir,
    src: &Path,
    out: Option<PathBuf>,
    tx: TxArgs,
) -> Result<()> {
    let config = chain_config(dir, &tx)?;
    let signer = key::unlock(dir)?;
    let p = pack(dir, src, out, Some(&signer))?;
    let api = ApiClient::from_data_dir(dir)?;
    let added: serde_json::Value = api
        .post_json(
            &["v1", "blobs", "import"],
            &serde_json::json!({ "path": p.dir, "pin": true }),
        )
        .await
        .context("adding the package to the node's blobs (is the node running?)")?;
    let cid = added["cid"]
        .as_str()
        .context("the node did not answer a CID")?
        .to_owned();
    let package: BlobHash = cid.parse().context("the node answered a bad CID")?;
    let manifest: BlobHash = p.manifest_hash.parse().context("manifest hash")?;
    let writer = writer_for(&config, signer).await?;
    let (outcome, key) = writer
        .propose_service(
            &p.id,
            &p.version,
            B256::from(*package.as_bytes()),
            B256::from(*manifest.as_bytes()),
        )
        .await
        .map_err(tx_error)?;
    if tx.json {
        output::json(&serde_json::json!({
            "id": p.id,
            "version": p.version,
            "cid": cid,
            "package_hash": package.to_hex(),
            "manifest_hash": p.manifest_hash,
            "component_hash": p.component_hash,
            "publisher": p.publisher,
            "dir": p.dir,
            "service_key": key.to_string(),
            "tx_hash": outcome.tx_hash.to_string(),
            "block_number": outcome.block_number,
            "gas_used": outcome.gas_used,
        }));
    } else {
        println!(
            "published {} {} signed by {}",
            p.id,
            p.version,
            p.publisher.as_deref().unwrap_or("?")
        );
        println!("  package  {cid} (BLAKE3 {})", package.to_hex());
        println!("  manifest {}", p.manifest_hash);
        println!(
            "  tx {} in block {}, gas used {}",
            outcome.tx_hash,
            outcome
                .block_number
                .map_or_else(|| "?".to_owned(), |b| b.to_string()),
            outcome.gas_used
        );
        println!(
            "proposed (key {key}); a steward approves it with `cnode registry steward approve-service {}@{}`",
            p.id, p.version
        );
    }
    Ok(())
}

/// `cnode plugin install CID|SERVICE_ID`: the node fetches and checks the
/// package (preview), this shows it and asks, then the node installs that
/// package.
pub(super) async fn install_package(
    dir: &DataDir,
    mut source: serde_json::Value,
    yes: bool,
    json: bool,
) -> Result<()> {
    let api = ApiClient::from_data_dir(dir)?;
    source["preview"] = true.into();
    let preview: PackagePreview = api
        .send_json(Method::POST, &["v1", "plugins"], Some(&source))
        .await?;
    if !json || !yes {
        show(&preview);
    }
    if !yes && !confirm("Install and grant all of these?")? {
        bail!("not installed");
    }
    source["preview"] = false.into();
    source["approve"] = true.into();
    source["grants"] = "all".into();
    source["package"] = preview.package.clone().into();
    let v: serde_json::Value = api
        .send_json(Method::POST, &["v1", "plugins"], Some(&source))
        .await?;
    if json {
        output::json(&v);
    } else {
        println!(
            "installed {} {}: /v1/services/{}/",
            preview.id, preview.version, preview.id
        );
    }
    Ok(())
}

fn show(p: &PackagePreview) {
    eprintln!("{} {} ({})", p.id, p.version, p.name);
    if !p.description.is_empty() {
        eprintln!("  {}", p.description);
    }
    eprintln!("  package:   {}", p.package);
    match &p.publisher {
        Some(a) => eprintln!("  signed by {a}"),
        None => eprintln!("  unsigned"),
    }
    if let Some(s) = &p.registry_status {
        eprintln!(
            "  registry:  {s} in the API list, published by {}",
            p.publisher.as_deref().unwrap_or("?")
        );
    }
    eprintln!("  asks for:");
    if p.requested.is_empty() {
        eprintln!("    nothing");
    }
    for c in &p.requested {
        eprintln!("    {c}");
    }
}
