//! The swarm actor's commands: what [`crate::NetClient`] asks of the swarm,
//! answered through each command's reply channel.

use libp2p::{gossipsub, kad, swarm::dial_opts::DialOpts};
use tracing::debug;

use super::{
    EventLoop, MAX_PENDING_DIALS, MAX_PENDING_QUERIES, MAX_PENDING_REQUESTS, PendingQuery,
};
use crate::{
    addr::{dial_error_text, peer_id_of},
    client::{
        Command, DhtError, DialError, GossipError, GossipVerdict, ListenError, ReqProtocol,
        RequestError, topic_hash,
    },
};

impl EventLoop {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::DialPeer { peer } => {
                let opts = DialOpts::peer_id(peer)
                    .condition(libp2p::swarm::dial_opts::PeerCondition::DisconnectedAndNotDialing)
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    debug!(%peer, "cannot dial: {}", dial_error_text(&e));
                }
            }
            Command::Block { peer, blocked } => {
                let list = &mut self.swarm.behaviour_mut().blocked;
                if blocked {
                    list.block_peer(peer);
                } else {
                    list.unblock_peer(peer);
                }
            }
            Command::Dial { addr, reply } => {
                if self.pending_dials.len() >= MAX_PENDING_DIALS {
                    let _ = reply.send(Err(DialError::Failed {
                        addr,
                        reason: "too many dials in progress".into(),
                    }));
                    return;
                }
                let opts = match peer_id_of(&addr) {
                    Some(peer) => DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .build(),
                    None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
                };
                let id = opts.connection_id();
                match self.swarm.dial(opts) {
                    Ok(()) => {
                        self.pending_dials.insert(id, (addr, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(DialError::Failed {
                            addr,
                            reason: dial_error_text(&e),
                        }));
                    }
                }
            }
            Command::ListenOn { addr, reply } => {
                let res = self.swarm.listen_on(addr.clone()).map(|_| ()).map_err(|e| {
                    ListenError::Failed {
                        addr,
                        reason: e.to_string(),
                    }
                });
                let _ = reply.send(res);
            }
            Command::DhtPut { key, value, reply } => {
                let max = self.config.limits.max_dht_value_bytes;
                if value.len() > max {
                    let _ = reply.send(Err(DhtError::TooLarge {
                        size: value.len(),
                        max,
                    }));
                    return;
                }
                if self.pending_queries.len() >= MAX_PENDING_QUERIES {
                    let _ = reply.send(Err(DhtError::Query("too many queries in flight".into())));
                    return;
                }
                let mut record = kad::Record::new(key, value);
                record.publisher = Some(*self.swarm.local_peer_id());
                match self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .put_record(record, kad::Quorum::One)
                {
                    Ok(qid) => {
                        self.pending_queries.insert(qid, PendingQuery::Put(reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(DhtError::Query(format!("{e:?}"))));
                    }
                }
            }
            Command::DhtGet { key, reply } => {
                if self.pending_queries.len() >= MAX_PENDING_QUERIES {
                    let _ = reply.send(Err(DhtError::Query("too many queries in flight".into())));
                    return;
                }
                let qid = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_record(kad::RecordKey::new(&key));
                self.pending_queries.insert(qid, PendingQuery::Get(reply));
            }
            Command::Subscribe { topic, reply } => {
                let res = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .subscribe(&gossipsub::IdentTopic::new(topic))
                    .map_err(|e| GossipError::Refused(e.to_string()));
                let _ = reply.send(res);
            }
            Command::Unsubscribe { topic, reply } => {
                let res = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .unsubscribe(&gossipsub::IdentTopic::new(topic));
                let _ = reply.send(res);
            }
            Command::Publish { topic, data, reply } => {
                let res = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(gossipsub::IdentTopic::new(topic), data)
                    .map(|_| ())
                    .map_err(|e| GossipError::Refused(e.to_string()));
                let _ = reply.send(res);
            }
            Command::Request {
                peer,
                protocol,
                data,
                reply,
            } => {
                if self.pending_requests.len() >= MAX_PENDING_REQUESTS {
                    let _ = reply.send(Err(RequestError::Failed {
                        peer,
                        reason: "too many requests in flight".into(),
                    }));
                    return;
                }
                let id = match protocol {
                    ReqProtocol::Blobs => {
                        self.swarm.behaviour_mut().blobs.send_request(&peer, data)
                    }
                    ReqProtocol::Sync => self.swarm.behaviour_mut().sync.send_request(&peer, data),
                    ReqProtocol::Rpc => self.swarm.behaviour_mut().rpc.send_request(&peer, data),
                };
                self.pending_requests.insert(id, (peer, reply));
            }
            Command::Respond {
                protocol,
                channel,
                data,
            } => {
                // Fails only when the peer went away meanwhile; nothing to do then.
                let behaviour = self.swarm.behaviour_mut();
                let _ = match protocol {
                    ReqProtocol::Blobs => behaviour.blobs.send_response(channel, data),
                    ReqProtocol::Sync => behaviour.sync.send_response(channel, data),
                    ReqProtocol::Rpc => behaviour.rpc.send_response(channel, data),
                };
            }
            Command::LaneAddr { peer, reply } => {
                let ip = self.peers.get(&peer).and_then(|state| {
                    state
                        .conns
                        .iter()
                        .find_map(|(_, addr, _)| crate::lane::direct_ip(addr))
                });
                let Some(ip) = ip else {
                    let _ = reply.send(None);
                    return;
                };
                if self.pending_lanes.len() >= MAX_PENDING_REQUESTS {
                    let _ = reply.send(None);
                    return;
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .lane
                    .send_request(&peer, Vec::new());
                self.pending_lanes.insert(id, (ip, reply));
            }
            Command::ReportGossip { id, verdict } => {
                let acceptance = match verdict {
                    GossipVerdict::Accept => gossipsub::MessageAcceptance::Accept,
                    GossipVerdict::Reject => gossipsub::MessageAcceptance::Reject,
                    GossipVerdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                };
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .report_message_validation_result(&id.id, &id.via, acceptance);
            }
            Command::StartProviding { key, reply } => {
                let res = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .start_providing(kad::RecordKey::new(&key))
                    .map(|_| ())
                    .map_err(|e| DhtError::Query(format!("{e:?}")));
                let _ = reply.send(res);
            }
            Command::StopProviding { key } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .stop_providing(&kad::RecordKey::new(&key));
            }
            Command::GetProviders { key, reply } => {
                if self.pending_queries.len() >= MAX_PENDING_QUERIES {
                    let _ = reply.send(Vec::new());
                    return;
                }
                let qid = self
                    .swarm
                    .behaviour_mut()
                    .kad
                    .get_providers(kad::RecordKey::new(&key));
                self.pending_queries
                    .insert(qid, PendingQuery::Providers(reply, Vec::new()));
            }
            Command::TopicPeers { topic, reply } => {
                let hash = topic_hash(&topic);
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
        }
    }
}
