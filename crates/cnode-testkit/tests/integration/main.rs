//! Multi-node integration tests: real nodes, real sockets on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod blobs;
mod net;
mod plugins;
mod plugins_js;
mod plugins_pkg;
mod plugins_rpc;
mod records;
mod registry;
mod support;
