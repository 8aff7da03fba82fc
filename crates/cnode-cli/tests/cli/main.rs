//! Process-level tests of the real `cnode` binary.

mod bad_input;
mod harness;
mod lifecycle;
mod netns;
