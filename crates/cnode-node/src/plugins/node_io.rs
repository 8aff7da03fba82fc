//! What the node gives the plugin host: its records (queries, and
//! publishing signed by the node's publishing user) and its blobs.

use std::{path::PathBuf, sync::Mutex};

use async_trait::async_trait;
use cnode_identity::{UserKey, keystore::Keystore};
use cnode_plugins::{
    HostBlobs, HostError, HostRecords, PluginId, PluginRecord,
    services::{Publish, RecordPage, RecordQuery},
};
use cnode_records::{
    RecordId, UnsignedRecord,
    store::{Near, Query, StoredRecord},
};

use super::PASSPHRASE_ENV;
use crate::{BlobService, RecordError, RecordService};

pub(super) fn plugin_record(s: &StoredRecord) -> PluginRecord {
    let r = &s.record;
    PluginRecord {
        id: s.id.to_hex(),
        author: r.author.to_string(),
        collection: r.collection.clone(),
        key: r.key.clone(),
        region: r.region.clone(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        deleted: r.deleted,
        body: r.body.clone(),
    }
}

pub(super) struct NodeRecords {
    records: RecordService,
    users: PathBuf,
    /// The unlocked publishing key, once unlocked.
    signer: Mutex<Option<UserKey>>,
}

impl NodeRecords {
    /// Records from `records`; publishing signs with the default user of
    /// the `users` key store.
    pub(super) fn new(records: RecordService, users: PathBuf) -> Self {
        Self {
            records,
            users,
            signer: Mutex::new(None),
        }
    }

    fn signer(&self) -> Result<UserKey, HostError> {
        let mut cached = self
            .signer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = cached.as_ref() {
            return Ok(k.clone());
        }
        let unavailable = |why: String| {
            HostError::unavailable(format!("this node cannot sign records for plugins: {why}"))
        };
        let ks = Keystore::open(&self.users).map_err(|e| unavailable(e.to_string()))?;
        let did = ks
            .default_user()
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| {
                unavailable(
                    "the data directory has no user; create one with `cnode id init`".into(),
                )
            })?;
        let pass = std::env::var(PASSPHRASE_ENV).ok().filter(|p| !p.is_empty());
        let key = ks.unlock(&did, pass.as_deref()).map_err(|e| {
            unavailable(format!(
                "{e} (start the node with {PASSPHRASE_ENV} set to unlock the default user)"
            ))
        })?;
        *cached = Some(key.clone());
        Ok(key)
    }
}

fn record_error(e: RecordError) -> HostError {
    match e {
        RecordError::Rejected(r) => HostError::invalid(format!("record rejected: {r}")),
        RecordError::RegionNotServed(_) => HostError::unavailable(e.to_string()),
        RecordError::Store(cnode_records::store::RecordStoreError::Query(q)) => {
            HostError::invalid(q.to_string())
        }
        RecordError::Closed => HostError::unavailable(e.to_string()),
        RecordError::Store(e) => HostError::internal(e.to_string()),
    }
}

#[async_trait]
impl HostRecords for NodeRecords {
    async fn query(&self, _plugin: &PluginId, q: RecordQuery) -> Result<RecordPage, HostError> {
        let region = match q.region {
            Some(r) => Some(
                r.parse()
                    .map_err(|_| HostError::invalid(format!("bad region {r:?}")))?,
            ),
            None => None,
        };
        let author = match q.author {
            Some(a) => Some(
                a.parse()
                    .map_err(|_| HostError::invalid(format!("bad author DID {a:?}")))?,
            ),
            None => None,
        };
        let query = Query {
            region,
            near: q.near.map(|n| Near {
                lat: n.lat,
                lon: n.lon,
                radius_m: n.radius_m,
            }),
            text: q.text,
            collection: q.collection,
            author,
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            limit: q.limit,
            cursor: q.cursor,
            ..Query::default()
        };
        let page = self.records.query(query).await.map_err(record_error)?;
        Ok(RecordPage {
            records: page.records.iter().map(plugin_record).collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn publish(&self, _plugin: &PluginId, p: Publish) -> Result<String, HostError> {
        let key = self.signer()?;
        let record = UnsignedRecord {
            key: p.key,
            body: p.body,
            author: key.did(),
            region: p.region,
            deleted: false,
            collection: p.collection,
            created_at: cnode_records::now_ms(),
            expires_at: p.expires_at,
        }
        .sign(&key);
        let id: RecordId = match self.records.post(record).await.map_err(record_error)? {
            crate::Posted::Stored { id }
            | crate::Posted::Unchanged { id }
            | crate::Posted::Forwarded { id } => id,
        };
        Ok(id.to_hex())
    }
}

pub(super) struct NodeBlobs {
    blobs: BlobService,
}

impl NodeBlobs {
    pub(super) fn new(blobs: BlobService) -> Self {
        Self { blobs }
    }
}

#[async_trait]
impl HostBlobs for NodeBlobs {
    async fn get(&self, _plugin: &PluginId, cid: &str, max_len: u64) -> Result<Vec<u8>, HostError> {
        let hash: cnode_types::BlobHash = cid
            .parse()
            .map_err(|_| HostError::invalid(format!("not a blob CID: {cid:?}")))?;
        let store = self.blobs.store();
        let info = store
            .info(hash)
            .await
            .map_err(|e| HostError::internal(e.to_string()))?
            .filter(|i| i.complete)
            .ok_or_else(|| HostError::not_found(format!("blob {cid} is not on this node")))?;
        if info.size > max_len {
            return Err(HostError::too_large(format!(
                "blob {cid} is {} bytes, the limit is {max_len}",
                info.size
            )));
        }
        match store.read_at(hash, 0, info.size as usize).await {
            Ok(Some(b)) => Ok(b),
            Ok(None) => Err(HostError::not_found(format!("blob {cid} is incomplete"))),
            Err(e) => Err(HostError::internal(e.to_string())),
        }
    }

    async fn put(&self, _plugin: &PluginId, bytes: Vec<u8>) -> Result<String, HostError> {
        let hash = self
            .blobs
            .store()
            .import_bytes(bytes, false, cnode_blobs::BlobKind::Raw)
            .await
            .map_err(|e| match e {
                cnode_blobs::BlobError::Quota { .. } => HostError::too_large(e.to_string()),
                e => HostError::internal(e.to_string()),
            })?;
        self.blobs.announce(hash).await;
        Ok(hash.to_string())
    }
}
