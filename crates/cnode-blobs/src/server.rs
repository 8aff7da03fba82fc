//! Answering `/cnode/blobs/1` requests from peers.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

use crate::{
    protocol::{self, Request, Response},
    store::{BlobError, BlobStore},
};

/// How long a request may wait for an upload slot before "busy".
const SLOT_WAIT: Duration = Duration::from_millis(500);

/// Whether `ranges` asks for exactly the last chunk of a blob of `size`
/// bytes: the size proof, which test-only corruption (see
/// [`crate::BlobStore::set_corrupt_responses`]) spares.
fn is_size_proof(size: u64, ranges: &[(u64, u64)]) -> bool {
    let last = size.div_ceil(protocol::CHUNK).max(1);
    ranges == [(last - 1, last)]
}

/// An answer to a request.
#[derive(Debug, Default)]
pub struct Answer {
    /// The wire bytes.
    pub bytes: Vec<u8>,
    /// Where the blob's leaves lie in them ((offset, length), in order; empty
    /// for answers without data): a transport that can send them apart (a
    /// lane) does, so that the asking peer reads them straight into place.
    pub leaves: Vec<(usize, usize)>,
}

impl From<Vec<u8>> for Answer {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            leaves: Vec::new(),
        }
    }
}

/// Serves pieces to peers, with a bound on concurrent uploads (like
/// BitTorrent's upload slots): over it, peers are told "busy" and ask others.
#[derive(Debug, Clone)]
pub struct BlobServer {
    store: BlobStore,
    slots: Arc<Semaphore>,
    limit: Option<Arc<RateLimit>>,
}

/// An upload rate cap: each response is scheduled after the ones before it
/// at `rate` bytes per second.
#[derive(Debug)]
struct RateLimit {
    rate: u64,
    next: Mutex<Instant>,
}

impl RateLimit {
    async fn wait(&self, bytes: usize) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate as f64);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

impl BlobServer {
    /// A server for `store` with `upload_slots` concurrent uploads.
    pub fn new(store: BlobStore, upload_slots: usize) -> Self {
        Self {
            store,
            slots: Arc::new(Semaphore::new(upload_slots.max(1))),
            limit: None,
        }
    }

    /// Caps uploads at `bytes_per_sec` (0 = no cap).
    pub fn with_upload_limit(mut self, bytes_per_sec: u64) -> Self {
        self.limit = (bytes_per_sec > 0).then(|| {
            Arc::new(RateLimit {
                rate: bytes_per_sec,
                next: Mutex::new(Instant::now()),
            })
        });
        self
    }

    /// Answers one request (wire bytes in, wire bytes out). Never panics on
    /// bad input: malformed requests get an `Error` response.
    pub async fn handle(&self, request: &[u8]) -> Vec<u8> {
        self.answer(request).await.bytes
    }

    /// [`Self::handle`], also saying where the answer's leaves lie.
    pub async fn answer(&self, request: &[u8]) -> Answer {
        let req = match Request::decode(request) {
            Ok(r) => r,
            Err(e) => {
                return Response::Error {
                    message: format!("bad request: {e}"),
                }
                .encode()
                .into();
            }
        };
        match req {
            Request::Have { hash } => match self.store.have(hash).await {
                Ok(Some((size, complete, bitfield))) => Response::Have {
                    size,
                    complete,
                    bitfield,
                },
                Ok(None) => Response::NotFound,
                Err(e) => Response::Error {
                    message: e.to_string(),
                },
            }
            .encode()
            .into(),
            Request::Get { hash, ranges } => {
                // Wait a little for a slot: answering "busy" at once makes
                // peers churn; waiting long would stall them behind us.
                let permit =
                    tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned()).await;
                let Ok(Ok(_permit)) = permit else {
                    return Response::Error {
                        message: "busy: all upload slots in use".into(),
                    }
                    .encode()
                    .into();
                };
                let corrupt = self.store.corrupt_responses().then(|| ranges.clone());
                match self.store.encode(hash, ranges).await {
                    Ok((size, mut wire, leaves)) => {
                        if let Some(ranges) = corrupt
                            && !is_size_proof(size, &ranges)
                            && wire.len() > protocol::DATA_HEADER
                        {
                            // Test-only: damage the data, keep the length.
                            let n = wire.len();
                            for i in (protocol::DATA_HEADER.max(n / 2)..n).step_by(997) {
                                wire[i] ^= 0x5a;
                            }
                        }
                        if let Some(limit) = &self.limit {
                            limit.wait(wire.len()).await;
                        }
                        Answer {
                            bytes: wire,
                            leaves,
                        }
                    }
                    Err(BlobError::NotFound(_)) => Response::NotFound.encode().into(),
                    Err(e) => Response::Error {
                        message: e.to_string(),
                    }
                    .encode()
                    .into(),
                }
            }
        }
    }
}
