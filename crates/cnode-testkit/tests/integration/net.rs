//! Connections, DHT, gossip and reconnection between real nodes.

use std::time::Duration;

use anyhow::Result;
use cnode_testkit::{
    DEFAULT_TIMEOUT, NetEvent, NodeOptions, TestNode, Transports, shutdown_all, timeout, wait_until,
};

async fn connect_over(transport: Transports, expect: &str) -> Result<()> {
    let a = TestNode::spawn(NodeOptions {
        transports: transport,
        ..Default::default()
    })
    .await?;
    let b = TestNode::spawn(NodeOptions {
        transports: transport,
        bootstrap: vec![a.addr(transport)],
        ..Default::default()
    })
    .await?;
    b.wait_connected(a.peer_id(), DEFAULT_TIMEOUT).await?;
    a.wait_connected(b.peer_id(), DEFAULT_TIMEOUT).await?;
    let peers = b.node.net().peers().await?;
    let pa = peers
        .iter()
        .find(|p| p.peer_id == a.peer_id().to_string())
        .expect("a listed");
    assert_eq!(pa.transport, expect, "{pa:?}");
    assert_eq!(pa.direction, "outbound");
    // identify has run: we know what a speaks.
    wait_until("identify", DEFAULT_TIMEOUT, || async {
        b.node
            .net()
            .peers()
            .await
            .map(|ps| {
                ps.iter()
                    .any(|p| p.agent.as_deref().is_some_and(|a| a.starts_with("cnode/")))
            })
            .unwrap_or(false)
    })
    .await?;
    let status = a.node.net().status().await?;
    assert_eq!(status.connected_peers, 1);
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_over_quic() -> Result<()> {
    connect_over(Transports::Quic, "quic").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_connect_over_tcp() -> Result<()> {
    connect_over(Transports::Tcp, "tcp").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_node_chain_dht_and_gossip() -> Result<()> {
    let nodes = TestNode::spawn_chain(5, Transports::Quic).await?;
    for pair in nodes.windows(2) {
        pair[1]
            .wait_connected(pair[0].peer_id(), DEFAULT_TIMEOUT)
            .await?;
    }

    // DHT: put on node 1, get on node 5 (which was only told about node 4).
    // A connection is up before Kademlia has the peer in its routing table
    // (that waits for identify): a put that found nobody is tried again.
    let started = std::time::Instant::now();
    loop {
        let put = timeout(
            "dht put",
            DEFAULT_TIMEOUT,
            nodes[0]
                .node
                .net()
                .dht_put(b"chiang-mai".to_vec(), b"w5q6".to_vec()),
        )
        .await?;
        match put {
            Ok(_) => break,
            Err(e) if started.elapsed() < DEFAULT_TIMEOUT => {
                eprintln!("dht put: {e}; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let found = timeout(
        "dht get",
        DEFAULT_TIMEOUT,
        nodes[4].node.net().dht_get(b"chiang-mai".to_vec()),
    )
    .await??;
    let found = found.expect("node 5 finds the value put on node 1");
    assert_eq!(found.value, b"w5q6");
    assert_eq!(found.publisher, Some(nodes[0].peer_id()));
    // A key nobody put is not found (and the query ends).
    let missing = timeout(
        "dht get missing",
        DEFAULT_TIMEOUT,
        nodes[4].node.net().dht_get(b"nobody".to_vec()),
    )
    .await??;
    assert!(missing.is_none());

    // Gossip: everyone joins the topic, node 3 publishes, all others receive.
    let topic = "cnode/1/region/w5q6";
    let mut receivers = Vec::new();
    for n in &nodes {
        receivers.push(n.node.subscribe_events());
        n.node.net().subscribe(topic).await?;
    }
    for n in &nodes {
        let net = n.node.net().clone();
        wait_until("topic peers", DEFAULT_TIMEOUT, || {
            let net = net.clone();
            async move {
                net.topic_peers(topic)
                    .await
                    .map(|p| !p.is_empty())
                    .unwrap_or(false)
            }
        })
        .await?;
    }
    // Give the mesh a heartbeat to form.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nodes[2]
        .node
        .net()
        .publish(topic, b"songkran on saturday".to_vec())
        .await?;
    for (i, rx) in receivers.iter_mut().enumerate() {
        if i == 2 {
            continue;
        }
        let got = timeout(
            &format!("gossip at node {}", i + 1),
            DEFAULT_TIMEOUT,
            async {
                loop {
                    match rx.recv().await {
                        Ok(NetEvent::Gossip {
                            topic: t,
                            data,
                            source,
                            ..
                        }) if t == topic => return Ok((data, source)),
                        Ok(_) => continue,
                        Err(e) => return Err(e),
                    }
                }
            },
        )
        .await??;
        assert_eq!(got.0, b"songkran on saturday");
        assert_eq!(got.1, Some(nodes[2].peer_id()));
    }
    shutdown_all(nodes).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_reconnects_without_bootstrap() -> Result<()> {
    let a = TestNode::spawn(NodeOptions::default()).await?;
    let b = TestNode::spawn(NodeOptions {
        bootstrap: vec![a.addr(Transports::Quic)],
        ..Default::default()
    })
    .await?;
    b.wait_connected(a.peer_id(), DEFAULT_TIMEOUT).await?;
    // Wait until b's address book holds a (written after identify).
    let store = b.node.store().clone();
    let a_id = a.peer_id().to_string();
    wait_until("address book entry", DEFAULT_TIMEOUT, || {
        let store = store.clone();
        let a_id = a_id.clone();
        async move {
            store
                .known_peers(10)
                .await
                .map(|ps| ps.iter().any(|p| p.peer_id == a_id))
                .unwrap_or(false)
        }
    })
    .await?;
    let b_dir = b.data_dir().clone();
    let keep = b.shutdown().await;

    let b2 = TestNode::spawn(NodeOptions {
        data_dir: Some(b_dir),
        ..Default::default()
    })
    .await?;
    assert!(b2.node.config().bootstrap.is_empty());
    b2.wait_connected(a.peer_id(), DEFAULT_TIMEOUT).await?;
    b2.shutdown().await;
    a.shutdown().await;
    drop(keep);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_peer_is_redialled() -> Result<()> {
    // b knows a; a goes away and comes back on the same port: b re-dials.
    let a = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        ..Default::default()
    })
    .await?;
    let a_addr = a.addr(Transports::Tcp);
    let b = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        bootstrap: vec![a_addr.clone()],
        ..Default::default()
    })
    .await?;
    b.wait_connected(a.peer_id(), DEFAULT_TIMEOUT).await?;
    let a_dir = a.data_dir().clone();
    let keep = a.shutdown().await;
    let b_net = b.node.net().clone();
    wait_until("b notices a is gone", DEFAULT_TIMEOUT, || {
        let net = b_net.clone();
        async move {
            net.status()
                .await
                .map(|s| s.connected_peers == 0)
                .unwrap_or(false)
        }
    })
    .await?;
    // Same identity, same port, but an empty address book: only b can re-dial.
    for f in ["cnode.db", "cnode.db-wal", "cnode.db-shm"] {
        let _ = std::fs::remove_file(a_dir.join(f));
    }
    let mut cfg_addr = a_addr.clone();
    cfg_addr.pop();
    let a2 = {
        let dd = cnode_node::DataDir::new(&a_dir);
        let mut config = cnode_node::NodeConfig::with_defaults(a_dir.clone());
        config.listen = vec![cfg_addr];
        config.mdns = false;
        let node = cnode_node::NodeBuilder::new(config).spawn().await?;
        assert_eq!(node.peer_id(), dd.load_key()?.public().to_peer_id());
        node
    };
    b.wait_connected(a2.peer_id(), Duration::from_secs(30))
        .await?;
    a2.shutdown().await;
    b.shutdown().await;
    drop(keep);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_through_a_relay() -> Result<()> {
    let relay = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        relay_server: cnode_net::RelayServerMode::On,
        ..Default::default()
    })
    .await?;
    let r_addr = relay.addr(Transports::Tcp);
    let a = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        relays: vec![r_addr.clone()],
        ..Default::default()
    })
    .await?;
    // a listens through the relay once its reservation is accepted.
    let a_net = a.node.net().clone();
    wait_until("a's relay reservation", DEFAULT_TIMEOUT, || {
        let net = a_net.clone();
        async move {
            net.status()
                .await
                .map(|s| {
                    s.listen_addrs
                        .iter()
                        .any(|l| l.to_string().contains("p2p-circuit"))
                })
                .unwrap_or(false)
        }
    })
    .await?;
    let circuit: cnode_net::Multiaddr =
        format!("{r_addr}/p2p-circuit/p2p/{}", a.peer_id()).parse()?;
    let b = TestNode::spawn(NodeOptions {
        transports: Transports::Tcp,
        ..Default::default()
    })
    .await?;
    let peer = timeout(
        "dial through relay",
        DEFAULT_TIMEOUT,
        b.node.net().dial(circuit),
    )
    .await??;
    assert_eq!(peer, a.peer_id());
    let peers = b.node.net().peers().await?;
    let pa = peers
        .iter()
        .find(|p| p.peer_id == a.peer_id().to_string())
        .expect("a listed");
    assert!(pa.addrs.iter().any(|x| x.contains("p2p-circuit")), "{pa:?}");
    shutdown_all(vec![a, b, relay]).await;
    Ok(())
}
