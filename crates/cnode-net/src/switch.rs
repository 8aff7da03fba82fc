//! A behaviour that can be switched on while the swarm runs.
//!
//! libp2p's `Toggle` is fixed when the swarm is built. The relay server must be
//! able to start once AutoNAT tells us the node is publicly reachable, so this
//! wrapper gives the inner behaviour a handler on every connection established
//! after it was switched on, and a dummy handler before.
//!
//! The inner behaviour still hears about every connection (through
//! `on_swarm_event`), including those that got a dummy handler, and may try
//! to message them (the relay server broadcasts status changes). Such
//! messages are dropped here: only connections with the real handler get them.

use std::{
    collections::HashMap,
    task::{Context, Poll},
};

use either::Either;
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
        NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
    },
};

/// Wraps `B` so it can be enabled at run time (never disabled: switching off
/// would strand handlers on open connections).
pub(crate) struct Switch<B> {
    inner: B,
    enabled: bool,
    /// Connections that got the inner behaviour's handler, and their peer.
    active: HashMap<ConnectionId, PeerId>,
}

impl<B> Switch<B> {
    pub(crate) fn new(inner: B, enabled: bool) -> Self {
        Self {
            inner,
            enabled,
            active: HashMap::new(),
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut B {
        &mut self.inner
    }

    pub(crate) fn enable(&mut self) {
        self.enabled = true;
    }

    pub(crate) fn is_enabled(&self) -> bool {
        self.enabled
    }
}

impl<B: NetworkBehaviour> NetworkBehaviour for Switch<B> {
    type ConnectionHandler = Either<THandler<B>, dummy::ConnectionHandler>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if !self.enabled {
            return Ok(());
        }
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.enabled {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        self.active.insert(connection_id, peer);
        Ok(Either::Left(handler))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if !self.enabled {
            return Ok(vec![]);
        }
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if !self.enabled {
            return Ok(Either::Right(dummy::ConnectionHandler));
        }
        let handler = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        self.active.insert(connection_id, peer);
        Ok(Either::Left(handler))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = &event {
            self.active.remove(connection_id);
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            Either::Left(ev) => self
                .inner
                .on_connection_handler_event(peer_id, connection_id, ev),
            Either::Right(never) => match never {},
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        loop {
            let ev = match self.inner.poll(cx) {
                Poll::Ready(ev) => ev,
                Poll::Pending => return Poll::Pending,
            };
            let ev = match ev {
                ToSwarm::NotifyHandler {
                    peer_id,
                    handler,
                    event,
                } => {
                    // Route only to connections that run the inner handler.
                    let target = match handler {
                        NotifyHandler::One(id) => self.active.contains_key(&id).then_some(id),
                        NotifyHandler::Any => self
                            .active
                            .iter()
                            .find(|(_, p)| **p == peer_id)
                            .map(|(id, _)| *id),
                    };
                    let Some(id) = target else { continue };
                    ToSwarm::NotifyHandler {
                        peer_id,
                        handler: NotifyHandler::One(id),
                        event: Either::Left(event),
                    }
                }
                other => other.map_in(Either::Left),
            };
            return Poll::Ready(ev);
        }
    }
}
