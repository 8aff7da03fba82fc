//! The peer address book: peers we have talked to and where they listen, so a
//! restarted node reconnects without a bootstrap flag.

use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::params;

use crate::{Store, StoreError};

/// The most peers the address book keeps; the least recently seen go first.
pub const MAX_PEERS: usize = 1024;
/// The most addresses kept per peer.
pub const MAX_ADDRS_PER_PEER: usize = 16;

/// A peer from the address book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// The peer id, as text.
    pub peer_id: String,
    /// Its last known listen addresses.
    pub addrs: Vec<String>,
    /// When we last saw it, in ms since the Unix epoch.
    pub last_seen_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Records that `peer_id` is reachable at `addrs` (replacing older addresses).
    pub async fn upsert_peer(&self, peer_id: String, addrs: Vec<String>) -> Result<(), StoreError> {
        let addrs: Vec<String> = addrs.into_iter().take(MAX_ADDRS_PER_PEER).collect();
        let joined = addrs.join("\n");
        let now = now_ms();
        self.call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO peers (peer_id, addrs, last_seen_ms, failures) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT(peer_id) DO UPDATE SET addrs = excluded.addrs,
                     last_seen_ms = excluded.last_seen_ms, failures = 0",
                params![peer_id, joined, now],
            )?;
            tx.execute(
                "DELETE FROM peers WHERE peer_id NOT IN
                   (SELECT peer_id FROM peers ORDER BY last_seen_ms DESC LIMIT ?1)",
                params![MAX_PEERS as i64],
            )?;
            tx.commit()
        })
        .await
    }

    /// The most recently seen peers, newest first, at most `limit`.
    pub async fn known_peers(&self, limit: usize) -> Result<Vec<KnownPeer>, StoreError> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT peer_id, addrs, last_seen_ms FROM peers ORDER BY last_seen_ms DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |row| {
                let addrs: String = row.get(1)?;
                Ok(KnownPeer {
                    peer_id: row.get(0)?,
                    addrs: addrs
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    last_seen_ms: row.get(2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Forgets a peer (e.g. one whose key no longer matches its address).
    pub async fn forget_peer(&self, peer_id: String) -> Result<(), StoreError> {
        self.call(move |conn| {
            conn.execute("DELETE FROM peers WHERE peer_id = ?1", params![peer_id])
                .map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upsert_replaces_and_caps() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .upsert_peer("a".into(), vec!["/x".into()])
            .await
            .unwrap();
        store
            .upsert_peer("a".into(), (0..40).map(|i| format!("/y/{i}")).collect())
            .await
            .unwrap();
        let peers = store.known_peers(10).await.unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].addrs.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(peers[0].addrs[0], "/y/0");
        store.forget_peer("a".into()).await.unwrap();
        assert!(store.known_peers(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn address_book_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..(MAX_PEERS + 5) {
            store.upsert_peer(format!("p{i}"), vec![]).await.unwrap();
        }
        assert_eq!(
            store.known_peers(usize::MAX >> 1).await.unwrap().len(),
            MAX_PEERS
        );
    }
}
