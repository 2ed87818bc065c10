//! Any bytes as a message on a fleet's shared log: decoding the envelope never panics and
//! never allocates past the decode limit; a message that decodes encodes back to the same
//! bytes, and a ledger fed its entries (as a host applies another host's message) may
//! refuse them but never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    keyledger::fuzzing::stream_message(bytes);
    // The same bytes as the body of one entry, wrapped as a writer wraps a batch: the
    // envelope holds whatever it is given, and decoding checks the entry.
    let wrapped = keyledger::fuzzing::encode_stream_message("fuzz", &[(1, bytes.to_vec())]);
    keyledger::fuzzing::stream_message(&wrapped);
});
