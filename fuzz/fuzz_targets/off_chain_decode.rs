//! Any bytes as a file the store keeps beside its log (the last-used file: last-used
//! minutes and usage counts; the credits file: what credited keys spent), and as a fleet
//! host's record of its last contact (`meta/contact`): decoding never panics nor allocates
//! without bound, and a file that decodes (as given, or with a valid checksum in place of
//! its last 32 bytes) encodes to one that decodes the same; a record, to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::off_chain_files(bytes);
});
