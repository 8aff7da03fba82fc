//! Fetching a package over the swarm: the API list entry to install, the
//! collection and its files, each bounded before it is read and reported
//! as transfer progress.

use super::*;

/// The API list entry to install: `version`, or the newest approved.
pub(super) fn lookup(
    node: &Node,
    id: &str,
    version: Option<&str>,
) -> Result<Service, PackageError> {
    let registry = node
        .registry()
        .ok_or_else(|| PackageError::NoRegistry(id.to_owned()))?;
    let snapshot = registry.snapshot();
    let entries: Vec<&Service> = snapshot.services().filter(|s| s.id == id).collect();
    if entries.is_empty() {
        return Err(PackageError::UnknownService(format!(
            "no service {id} in the registry's API list (see `cnode registry services`)"
        )));
    }
    let status = |s: &Service| match s.status {
        ServiceStatus::Proposed => "proposed, not yet approved by a steward",
        ServiceStatus::Approved => "approved",
        ServiceStatus::Revoked => "revoked by a steward",
    };
    if let Some(v) = version {
        let s = entries.iter().find(|s| s.version == v).ok_or_else(|| {
            let known: Vec<&str> = entries.iter().map(|s| s.version.as_str()).collect();
            PackageError::UnknownService(format!(
                "no version {v} of {id} in the API list (it lists {})",
                known.join(", ")
            ))
        })?;
        if s.status != ServiceStatus::Approved {
            return Err(PackageError::NotApproved(format!(
                "{id} {v} is {}: refusing to install it",
                status(s)
            )));
        }
        return Ok((*s).clone());
    }
    let newest = entries
        .iter()
        .filter(|s| s.status == ServiceStatus::Approved)
        .max_by(|a, b| {
            let va = semver::Version::parse(&a.version).ok();
            let vb = semver::Version::parse(&b.version).ok();
            va.cmp(&vb).then_with(|| a.version.cmp(&b.version))
        });
    match newest {
        Some(s) => Ok((*s).clone()),
        None => {
            let listed: Vec<String> = entries
                .iter()
                .map(|s| format!("{} is {}", s.version, status(s)))
                .collect();
            Err(PackageError::NotApproved(format!(
                "{id} has no approved version: {}",
                listed.join("; ")
            )))
        }
    }
}

fn hex_b256(b: &B256) -> String {
    hex::encode(b.0)
}

pub(super) async fn fetch_root(
    node: &Node,
    root: BlobHash,
    service: Option<&Service>,
) -> Result<FetchedPackage, PackageError> {
    let listing = fetch_blob(node, root, MAX_PACKAGE_LISTING, "the package").await?;
    if BlobHash::of(&listing) != root {
        return Err(PackageError::Mismatch(format!(
            "the fetched package's root is not {}",
            root.to_cid()
        )));
    }
    let collection = Collection::decode(&listing).map_err(|e| {
        PackageError::Layout(format!(
            "{} is not a folder (collection): {e}",
            root.to_cid()
        ))
    })?;
    if let Err(e) = node
        .blobs()
        .store()
        .set_kind(root, BlobKind::Collection)
        .await
    {
        warn!(%root, "cannot mark the package as a collection: {e}");
    }
    let (m, c, s) = package_entries(&collection)?;
    if let Some(svc) = service
        && m.hash.as_bytes() != &svc.manifest_hash.0
    {
        return Err(PackageError::Mismatch(format!(
            "the package's {MANIFEST_FILE} has BLAKE3 {}, the API list says {} for {} {}",
            m.hash.to_hex(),
            hex_b256(&svc.manifest_hash),
            svc.id,
            svc.version
        )));
    }
    let manifest = fetch_blob(node, m.hash, MAX_MANIFEST_BYTES, MANIFEST_FILE).await?;
    let signature = match &s {
        Some(s) => Some(fetch_blob(node, s.hash, MAX_SIGNATURE_BYTES, SIGNATURE_FILE).await?),
        None => None,
    };
    let component = fetch_blob(node, c.hash, MAX_COMPONENT_BYTES as u64, COMPONENT_FILE).await?;
    let files = check_files(&manifest, component, signature.as_deref())?;
    let mut registry_status = None;
    if let Some(svc) = service {
        if files.manifest_hash.as_bytes() != &svc.manifest_hash.0 {
            return Err(PackageError::Mismatch(format!(
                "{MANIFEST_FILE} has BLAKE3 {}, the API list says {}",
                files.manifest_hash.to_hex(),
                hex_b256(&svc.manifest_hash)
            )));
        }
        let (mid, mver) = (
            files.manifest.id.as_str(),
            files.manifest.version.to_string(),
        );
        if mid != svc.id || mver != svc.version {
            return Err(PackageError::Mismatch(format!(
                "the package is {mid} {mver}, the API list entry is {} {}",
                svc.id, svc.version
            )));
        }
        match files.publisher {
            None => {
                return Err(PackageError::Signature(format!(
                    "the package has no {SIGNATURE_FILE}; a registry install needs the publisher's signature"
                )));
            }
            Some(signer) if signer != svc.publisher => {
                return Err(PackageError::Signature(format!(
                    "signed by {signer}, but {} {} was published on chain by {}",
                    svc.id, svc.version, svc.publisher
                )));
            }
            Some(_) => {}
        }
        registry_status = Some("approved".to_owned());
    }
    let man = &files.manifest;
    let preview = PackagePreview {
        id: man.id.to_string(),
        name: man.name.clone(),
        version: man.version.to_string(),
        description: man.description.clone(),
        requested: man.capabilities.iter().map(format_capability).collect(),
        package: root.to_cid(),
        manifest_hash: files.manifest_hash.to_hex(),
        component_hash: files.component_hash.to_hex(),
        publisher: files.publisher.map(|a| a.to_checksum(None)),
        registry_status,
    };
    let mut blobs = vec![root, m.hash, c.hash];
    if let Some(s) = s {
        blobs.push(s.hash);
    }
    Ok(FetchedPackage {
        preview,
        files: Arc::new(files),
        blobs,
    })
}

/// One blob's bytes: from the store if complete, else downloaded from the
/// swarm (unpinned), stopped as soon as its proven size is over `max`.
async fn fetch_blob(
    node: &Node,
    hash: BlobHash,
    max: u64,
    what: &str,
) -> Result<Vec<u8>, PackageError> {
    let err = |why: String| PackageError::Fetch {
        what: what.to_owned(),
        hash: hash.to_cid(),
        why,
    };
    let store = node.blobs().store();
    let complete = store
        .info(hash)
        .await
        .map_err(|e| err(e.to_string()))?
        .is_some_and(|i| i.complete);
    if !complete {
        let requester = NetRequester::new(node.net().clone());
        let opts = DownloadOptions {
            pin: false,
            stall_timeout: STALL,
            ..DownloadOptions::default()
        };
        let (over_tx, mut over_rx) = tokio::sync::watch::channel(None::<u64>);
        // Progress goes out like any download's (progress bars, /v1/events).
        let blobs = node.blobs().clone();
        let last = std::sync::Arc::new(std::sync::Mutex::new(None::<TransferEvent>));
        let last2 = last.clone();
        let download = cnode_blobs::download(store, &requester, hash, &opts, move |p| {
            if let Some(size) = p.size
                && size > max
            {
                let _ = over_tx.send(Some(size));
            }
            let ev = TransferEvent::from_progress(&p);
            *last2.lock().unwrap_or_else(|e| e.into_inner()) = Some(ev.clone());
            blobs.report(ev);
        });
        let outcome = tokio::select! {
            r = tokio::time::timeout(FETCH_LIMIT, download) => Some(r),
            _ = over_rx.wait_for(Option::is_some) => None,
        };
        let failed = match outcome {
            Some(Ok(Ok(_))) => None,
            Some(Ok(Err(e))) => Some(err(e.to_string())),
            Some(Err(_)) => {
                let _ = store.remove(hash).await;
                Some(err(format!(
                    "no complete copy within {} s",
                    FETCH_LIMIT.as_secs()
                )))
            }
            None => {
                let _ = store.remove(hash).await;
                let size = over_rx.borrow().unwrap_or_default();
                Some(err(format!("it is {size} bytes, the limit is {max}")))
            }
        };
        if let Some(e) = failed {
            let last = last.lock().unwrap_or_else(|e| e.into_inner()).clone();
            node.blobs().report(TransferEvent {
                state: TransferState::Failed,
                error: Some(e.to_string()),
                ..last.unwrap_or_else(|| TransferEvent::started(hash))
            });
            return Err(e);
        }
    }
    let info = store
        .info(hash)
        .await
        .map_err(|e| err(e.to_string()))?
        .filter(|i| i.complete)
        .ok_or_else(|| err("not complete after the download".into()))?;
    if info.size > max {
        return Err(err(format!(
            "it is {} bytes, the limit is {max}",
            info.size
        )));
    }
    let bytes = store
        .read_at(hash, 0, info.size as usize)
        .await
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("not complete".into()))?;
    if BlobHash::of(&bytes) != hash {
        return Err(err("its bytes do not hash to its CID".into()));
    }
    Ok(bytes)
}
