//! Process-level tests of the real `cnode` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod blobs;
mod harness;
mod identity;
mod lifecycle;
mod netns;
mod plugin_new;
mod records;
mod registry;
