//! cnode example plugin **events**: a region's upcoming events from
//! `org.cnode.events` records, as JSON and as an iCalendar feed.
//!
//! The logic is plain Rust over the [`host::Host`] trait, tested on the
//! build machine with `cargo test`; only the WebAssembly build
//! (`cargo build --target wasm32-wasip2`) links the `cnode:plugin` bindings
//! from `wit-bindgen` (module `guest`). See `plugins/README.md` for the
//! plugin author's guide and [`service`] for the routes.

#![deny(missing_docs, unreachable_pub)]

pub mod event;
pub mod geo;
pub mod host;
pub mod ics;
pub mod service;
pub mod time;

#[cfg(target_arch = "wasm32")]
mod guest;
