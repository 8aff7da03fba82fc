//! Multi-node integration tests: real nodes, real sockets on 127.0.0.1.

mod api;
mod net;
