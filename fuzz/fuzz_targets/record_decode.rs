//! Any bytes: decoding a record or splitting a log entry (a block) never panics and never
//! allocates past the decode limit (libFuzzer's -malloc_limit_mb catches that); decode,
//! encode, decode gives the same value and the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::record_roundtrip(bytes);
    keyledger::fuzzing::block_roundtrip(bytes);
});
