//! Any bytes as a page cursor (`?cursor=`) of every listing: decoding never panics, a cursor
//! that decodes re-encodes to the same text, and a cursor made and then altered is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::cursor(bytes);
});
