//! Fuzzes the record decoder and validator: any bytes must decode or be
//! refused, never panic, whatever decodes must re-encode to the same bytes,
//! and validation must agree with decoding (see
//! `cnode_records::validate::fuzz_check`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cnode_records::validate::fuzz_check(data);
});
