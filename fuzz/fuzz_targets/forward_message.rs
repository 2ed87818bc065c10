//! Any bytes as a forwarded write between a fleet's hosts (a request or an answer):
//! opening never panics, and one that opens (as given, or with a valid seal appended)
//! seals back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::forward_message(bytes);
});
