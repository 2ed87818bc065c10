//! Any bytes as the store's last-used file (last-used minutes and usage counts): decoding
//! never panics nor allocates without bound, and a file that decodes (as given, or with a
//! valid checksum in place of its last 32 bytes) encodes to one that decodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::last_used(bytes);
});
