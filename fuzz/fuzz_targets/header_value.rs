//! Any list of headers: the `x-api-key` picker never panics, and what it returns is the
//! value of the one `x-api-key` header, byte for byte, printable ASCII without padding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|headers: Vec<(String, Vec<u8>)>| {
    let picked = keyledger::api_key_from_headers(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())));
    let named: Vec<&Vec<u8>> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(keyledger::API_KEY_HEADER))
        .map(|(_, v)| v)
        .collect();
    match picked {
        Ok(value) => {
            assert_eq!(named.len(), 1);
            assert_eq!(value.as_bytes(), named[0].as_slice());
            assert!(value.bytes().all(|b| b.is_ascii_graphic()));
        }
        Err(keyledger::HeaderProblem::Missing) => assert!(named.is_empty()),
        Err(keyledger::HeaderProblem::Repeated) => assert!(named.len() > 1),
        Err(_) => assert_eq!(named.len(), 1),
    }
});
