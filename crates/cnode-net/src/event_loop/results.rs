//! The swarm actor's handling of query and request-response results: DHT
//! answers for pending `NetClient` calls, and requests from peers.

use libp2p::{kad, request_response};
use tracing::debug;

use super::{EventLoop, MAX_PROVIDERS, PendingQuery};
use crate::{
    client::{DhtError, DhtRecord, InboundRequest, Reply, ReplyChannel, ReqProtocol, RequestError},
    lane,
};
use std::net::SocketAddr;

impl EventLoop {
    pub(super) fn on_request_event(
        &mut self,
        protocol: ReqProtocol,
        ev: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let req = InboundRequest {
                        peer,
                        protocol,
                        data: request,
                        channel: ReplyChannel(Reply::Swarm(channel)),
                    };
                    // Too many waiting: dropping the channel tells the peer
                    // we refused, and it asks someone else.
                    if self.inbound.try_send(req).is_err() {
                        self.net_metrics.inbound_refused.inc();
                    }
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, reply)) = self.pending_requests.remove(&request_id) {
                    let _ = reply.send(Err(RequestError::Failed {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, "inbound request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// `/cnode/lane/2`: peers ask which port our lanes listen on; answers to
    /// our own questions complete [`crate::NetClient::lane_addr`].
    pub(super) fn on_lane_event(&mut self, ev: request_response::Event<Vec<u8>, Vec<u8>>) {
        match ev {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request { channel, .. } => {
                    let port = self.lanes.as_ref().and_then(|l| l.port());
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .lane
                        .send_response(channel, lane::encode_port(port));
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some((ip, reply)) = self.pending_lanes.remove(&request_id) {
                        let addr = lane::decode_port(&response).map(|p| SocketAddr::new(ip, p));
                        let _ = reply.send(addr);
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, .. } => {
                // A peer without lanes (or an older version): none.
                if let Some((_, reply)) = self.pending_lanes.remove(&request_id) {
                    let _ = reply.send(None);
                }
            }
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
    }

    pub(super) fn on_kad_event(&mut self, ev: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = ev
        else {
            return;
        };
        match result {
            kad::QueryResult::PutRecord(res) => {
                if let Some(PendingQuery::Put(reply)) = self.pending_queries.remove(&id) {
                    let res = res.map(|_| ()).map_err(|e| DhtError::Query(e.to_string()));
                    let _ = reply.send(res);
                }
            }
            kad::QueryResult::GetRecord(res) => match res {
                Ok(kad::GetRecordOk::FoundRecord(found)) => {
                    if let Some(PendingQuery::Get(reply)) = self.pending_queries.remove(&id) {
                        let _ = reply.send(Ok(Some(DhtRecord {
                            value: found.record.value,
                            publisher: found.record.publisher,
                        })));
                    }
                    // One answer is enough.
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
                Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => {
                    if let Some(PendingQuery::Get(reply)) = self.pending_queries.remove(&id) {
                        let _ = reply.send(Ok(None));
                    }
                }
                Err(kad::GetRecordError::NotFound { .. }) => {
                    if let Some(PendingQuery::Get(reply)) = self.pending_queries.remove(&id) {
                        let _ = reply.send(Ok(None));
                    }
                }
                Err(e) => {
                    if let Some(PendingQuery::Get(reply)) = self.pending_queries.remove(&id) {
                        let _ = reply.send(Err(DhtError::Query(e.to_string())));
                    }
                }
            },
            kad::QueryResult::GetProviders(res) => {
                let done = step.last
                    || match &res {
                        Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) | Err(_) => {
                            true
                        }
                        Ok(kad::GetProvidersOk::FoundProviders { .. }) => false,
                    };
                if let Some(PendingQuery::Providers(_, found)) = self.pending_queries.get_mut(&id)
                    && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                {
                    for p in providers {
                        if !found.contains(&p) && found.len() < MAX_PROVIDERS {
                            found.push(p);
                        }
                    }
                }
                let enough = matches!(
                    self.pending_queries.get(&id),
                    Some(PendingQuery::Providers(_, found)) if found.len() >= MAX_PROVIDERS
                );
                if (done || enough)
                    && let Some(PendingQuery::Providers(reply, found)) =
                        self.pending_queries.remove(&id)
                {
                    let _ = reply.send(found);
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                }
            }
            kad::QueryResult::Bootstrap(_) if step.last => {
                debug!("DHT bootstrap finished");
            }
            _ => {}
        }
    }
}
