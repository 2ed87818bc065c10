//! Any bytes as a message on a fleet's usage subject: decoding never panics, and a report
//! that decodes (as given, or with a valid seal appended) encodes back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::usage_report(bytes);
});
