//! The composed libp2p behaviour and the swarm it runs in.

use std::{num::NonZeroUsize, time::Duration};

use cnode_types::{IDENTIFY_PROTOCOL, KAD_PROTOCOL, VERSION};
use libp2p::{
    StreamProtocol, Swarm, autonat, connection_limits, dcutr, gossipsub, identify,
    identity::Keypair,
    kad::{self, store::MemoryStore},
    mdns, memory_connection_limits, noise, ping, relay, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
    tcp, yamux,
};
use prometheus_client::registry::Registry;

use crate::{
    SpawnError,
    codec::BytesCodec,
    config::{DhtMode, NetConfig, RelayServerMode},
    switch::Switch,
};

/// The piece protocol of `cnode-blobs`.
pub const BLOBS_PROTOCOL: &str = "/cnode/blobs/1";
/// How long a `/cnode/blobs/1` request may wait for its answer.
pub(crate) const BLOBS_TIMEOUT: Duration = Duration::from_secs(30);

/// Record set reconciliation of `cnode-records`.
pub const SYNC_PROTOCOL: &str = "/cnode/sync/1";

/// Forwarded service calls (`cnode-node`'s plugin RPC).
pub const RPC_PROTOCOL: &str = "/cnode/rpc/1";

/// How long a `/cnode/rpc/1` request may take, the plugin's work included.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Gossip topics under this prefix carry records: the node validates every
/// message before gossipsub forwards it (see `NetClient::report_gossip`).
/// Messages on other topics are accepted as they arrive.
pub const VALIDATED_TOPIC_PREFIX: &str = "cnode/1/region/";

/// The topic every node joins for network-wide announcements.
pub const ANNOUNCE_TOPIC: &str = "cnode/1/announce";

/// Every protocol a cnode node speaks, composed.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    // Limits come first so they can refuse a connection before others see it.
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) memory: memory_connection_limits::Behaviour,
    pub(crate) relay_client: relay::client::Behaviour,
    pub(crate) relay_server: Switch<relay::Behaviour>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) autonat: autonat::Behaviour,
    pub(crate) dcutr: dcutr::Behaviour,
    pub(crate) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    pub(crate) blobs: request_response::Behaviour<BytesCodec>,
    pub(crate) sync: request_response::Behaviour<BytesCodec>,
    pub(crate) rpc: request_response::Behaviour<BytesCodec>,
    /// `/cnode/lane/2`: which port our lanes listen on (see `lane`).
    pub(crate) lane: request_response::Behaviour<BytesCodec>,
}

fn build_behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &NetConfig,
) -> Result<Behaviour, SpawnError> {
    let peer_id = key.public().to_peer_id();
    let limits = &config.limits;

    let conn_limits = connection_limits::ConnectionLimits::default()
        .with_max_pending_incoming(Some(limits.max_pending))
        .with_max_pending_outgoing(Some(limits.max_pending))
        .with_max_established(Some(limits.max_connections))
        .with_max_established_per_peer(Some(limits.max_connections_per_peer));

    // Relaying costs bandwidth; keep it modest per peer and per circuit.
    let relay_cfg = relay::Config {
        max_reservations: 128,
        max_reservations_per_peer: 4,
        max_circuits: 64,
        max_circuits_per_peer: 4,
        max_circuit_duration: Duration::from_secs(120),
        max_circuit_bytes: 1 << 20,
        ..Default::default()
    };
    let relay_on = config.relay_server == RelayServerMode::On;

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), key.public())
            .with_agent_version(format!("cnode/{VERSION}"))
            .with_push_listen_addr_updates(true),
    );

    let mut kad_cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_cfg.set_query_timeout(Duration::from_secs(30));
    kad_cfg.set_max_packet_size(limits.max_dht_value_bytes + 16 * 1024);
    let store = MemoryStore::with_config(
        peer_id,
        kad::store::MemoryStoreConfig {
            max_records: 4096,
            max_value_bytes: limits.max_dht_value_bytes,
            max_providers_per_key: 32,
            max_provided_keys: 4096,
        },
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, kad_cfg);
    match config.dht_mode {
        DhtMode::Server => kad.set_mode(Some(kad::Mode::Server)),
        DhtMode::Client => kad.set_mode(Some(kad::Mode::Client)),
        DhtMode::Auto => kad.set_mode(None),
    }

    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(700))
        .validation_mode(gossipsub::ValidationMode::Strict)
        // Nothing is forwarded before it is accepted (records are validated
        // by the node; other topics are accepted on arrival).
        .validate_messages()
        .max_transmit_size(limits.max_gossip_bytes)
        // Identify messages by content so a re-published record is not re-sent.
        .message_id_fn(|m: &gossipsub::Message| {
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&m.topic, &mut h);
            std::hash::Hash::hash(&m.data, &mut h);
            std::hash::Hash::hash(&m.source, &mut h);
            gossipsub::MessageId::from(std::hash::Hasher::finish(&h).to_be_bytes().to_vec())
        })
        .build()
        .map_err(|e| SpawnError::Behaviour(format!("gossipsub config: {e}")))?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_cfg,
    )
    .map_err(|e| SpawnError::Behaviour(format!("gossipsub: {e}")))?;
    gossipsub
        .with_peer_score(
            gossipsub::PeerScoreParams::default(),
            gossipsub::PeerScoreThresholds::default(),
        )
        .map_err(|e| SpawnError::Behaviour(format!("gossipsub scoring: {e}")))?;
    gossipsub
        .subscribe(&gossipsub::IdentTopic::new(ANNOUNCE_TOPIC))
        .map_err(|e| SpawnError::Behaviour(format!("gossipsub subscribe: {e}")))?;

    let mdns = if config.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| SpawnError::Behaviour(format!("mDNS: {e}")))?,
        )
    } else {
        None
    };

    let autonat = autonat::Behaviour::new(
        peer_id,
        autonat::Config {
            only_global_ips: config.autonat_only_global,
            boot_delay: Duration::from_secs(5),
            retry_interval: Duration::from_secs(30),
            ..Default::default()
        },
    );

    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(conn_limits),
        memory: memory_connection_limits::Behaviour::with_max_percentage(
            limits.max_memory_fraction,
        ),
        relay_client,
        relay_server: {
            // Advertise the relay protocol exactly when switched on, not when
            // libp2p guesses from external addresses.
            let mut server = relay::Behaviour::new(peer_id, relay_cfg);
            server.set_status(Some(if relay_on {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            }));
            Switch::new(server, relay_on)
        },
        identify,
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(15))),
        kad,
        gossipsub,
        mdns: mdns.into(),
        autonat,
        dcutr: dcutr::Behaviour::new(peer_id),
        blocked: Default::default(),
        blobs: request_response::Behaviour::with_codec(
            BytesCodec {
                max_request: limits.max_blob_request,
                max_response: limits.max_blob_response,
            },
            [(
                StreamProtocol::new(BLOBS_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(BLOBS_TIMEOUT)
                .with_max_concurrent_streams(64),
        ),
        sync: request_response::Behaviour::with_codec(
            BytesCodec {
                max_request: limits.max_sync_request,
                max_response: limits.max_sync_response,
            },
            [(
                StreamProtocol::new(SYNC_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(30))
                .with_max_concurrent_streams(16),
        ),
        // A forwarded call runs a plugin (its own call timeout is 1 s by
        // default); a few at a time per connection is plenty.
        rpc: request_response::Behaviour::with_codec(
            BytesCodec {
                max_request: limits.max_rpc_request,
                max_response: limits.max_rpc_response,
            },
            [(
                StreamProtocol::new(RPC_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(RPC_TIMEOUT)
                .with_max_concurrent_streams(16),
        ),
        lane: request_response::Behaviour::with_codec(
            BytesCodec {
                max_request: 0,
                max_response: 2,
            },
            [(
                StreamProtocol::new(crate::lane::LANE_PROTOCOL),
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(Duration::from_secs(10))
                .with_max_concurrent_streams(4),
        ),
    })
}

/// Builds the swarm: QUIC v1, TCP + TLS 1.3 or Noise + Yamux, DNS, relay client, bandwidth metrics.
/// `tls` is the node's TLS configuration, shared with its lanes.
pub(crate) fn build_swarm(
    config: &NetConfig,
    registry: &mut Registry,
    tls: crate::tls::Tls,
) -> Result<Swarm<Behaviour>, SpawnError> {
    let idle = config.limits.idle_timeout;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(config.keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            // TLS 1.3 with AES-GCM where the CPU has AES (see `tls`); Noise
            // for peers that offer only Noise.
            (
                move |_: &Keypair| Ok::<_, crate::tls::TlsError>(tls),
                noise::Config::new,
            ),
            yamux::Config::default,
        )
        .map_err(|e| SpawnError::Transport(e.to_string()))?
        .with_quic()
        .with_dns()
        .map_err(|e| SpawnError::Transport(format!("DNS: {e}")))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| SpawnError::Transport(format!("relay client: {e}")))?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key, relay_client| {
            build_behaviour(key, relay_client, config)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| SpawnError::Behaviour(e.to_string()))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(idle)
                .with_notify_handler_buffer_size(NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN))
                .with_per_connection_event_buffer_size(64)
        })
        .build();
    Ok(swarm)
}
