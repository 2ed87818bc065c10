//! HTTP glue (feature `tower`): a tower layer that admits a request only with a key the
//! store verifies, the rule that decides which address a request comes from, and the
//! rate-limit headers of an answer about a key with limits.
//!
//! Reads headers and the connection's address and hands them to the store; it decides
//! nothing about keys itself ([`KeyStore::verify`](crate::store::KeyStore::verify) does), and it
//! depends on no web framework or runtime, only on `http` and tower's two traits.

pub(crate) mod client_ip;
pub(crate) mod layer;
pub(crate) mod rate_headers;
