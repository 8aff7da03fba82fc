//! Fuzzes the record decoder and validator, and the `/cnode/sync/1` message
//! decoders: any bytes must decode or be refused, never panic; whatever
//! decodes must re-encode to the same bytes (see
//! `cnode_records::validate::fuzz_check` and `cnode_records::sync::fuzz_check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cnode_records::validate::fuzz_check(data);
    cnode_records::sync::fuzz_check(data);
});
