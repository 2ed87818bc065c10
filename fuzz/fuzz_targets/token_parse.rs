//! Any string: the key format check never panics, and a string that passes re-encodes to
//! itself (prefix, body and checksum are all it is made of).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|token: &str| {
    match keyledger::check_format(token) {
        Ok(()) => {
            assert_eq!(token.len(), keyledger::KEY_LEN);
            assert!(token.starts_with(keyledger::KEY_PREFIX));
            assert_eq!(keyledger::fuzzing::reencode_token(token).as_deref(), Some(token));
        }
        Err(_) => assert_eq!(keyledger::fuzzing::reencode_token(token), None),
    }
});
