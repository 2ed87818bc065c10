//! Any bytes as an entry of a fleet's heads bucket: decoding never panics, and a head that
//! decodes (as given, or with a valid seal in place of its last 32 bytes) encodes back to
//! the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::host_head(bytes);
});
