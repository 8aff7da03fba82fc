//! Fuzzes the `/cnode/blobs/1` decoders: any bytes must decode or be refused,
//! never panic, and whatever decodes must re-encode to the same bytes.
#![no_main]

use cnode_blobs::protocol::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cnode_blobs::protocol::fuzz_check(data);
    let _ = (Request::decode(data), Response::decode(data));
});
