//! keyledger: an embedded API-key store whose every change is an event in an append-only,
//! hash-chained log, and whose every read is served from memory.
//!
//! Admins and super admins create keys with a name, roles and an IP whitelist; the secret
//! is returned once and only its blake3 hash is kept. A super admin may delete any key, an
//! admin only the keys they created; an admin key acts over HTTP as the person it was made
//! for, and revoking that person stops all of them at once. [`KeyStore::verify`] checks a
//! presented key in O(1) without I/O; a delete returns only once the key has stopped
//! verifying. With the feature
//! `tower`, `ApiKeyLayer` makes that check in front of any tower HTTP service (axum, hyper,
//! tonic); with `serve`, `Server` (the `keyledger serve` command) answers the forward-auth
//! requests of nginx, Traefik and Envoy, and serves an admin API.
//!
//! # Quick tour
//! ```
//! use keyledger::{Actor, EventKind, KeyStore, NewKey, Rejection};
//!
//! let dir = tempfile::tempdir()?;
//! let store = KeyStore::open(dir.path().join("keys"))?;
//! let root = Actor::super_admin("root");
//! let alice = Actor::admin("alice");
//!
//! // Create a key; its secret is shown this once.
//! let created = store.create_key(
//!     &alice,
//!     NewKey::new("notifications bot").role("notifier").allow("10.0.0.0/8".parse()?),
//! )?;
//! let secret = created.key.expose_secret();
//!
//! // Verify it, as every API call would.
//! let ok = store.verify(secret, "10.1.2.3".parse()?).expect("whitelisted");
//! assert!(ok.has_role("notifier"));
//! assert_eq!(store.verify(secret, "192.0.2.1".parse()?).unwrap_err(), Rejection::IpNotWhitelisted);
//!
//! // Another admin may not delete it; a super admin may.
//! assert!(store.delete_key(&Actor::admin("bob"), created.id).is_err());
//! store.delete_key(&root, created.id)?;
//! assert_eq!(store.verify(secret, "10.1.2.3".parse()?).unwrap_err(), Rejection::UnknownKey);
//!
//! // The audit trail says who did what.
//! let trail = store.audit();
//! assert_eq!(trail[0].kind, EventKind::Created);
//! assert_eq!(trail[1].actor, root);
//! assert_eq!(trail[1].kind, EventKind::Deleted);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The on-disk format is described in `docs/design.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod access;
mod chain;
mod clock;
mod codec;
mod file;
mod fleet;
#[cfg(feature = "tower")]
mod http;
#[cfg(feature = "json")]
mod json;
mod ledger;
mod log;
mod model;
mod persist;
mod projection;
#[cfg(feature = "serve")]
mod server;
mod store;
#[cfg(feature = "serve")]
mod ui;

pub use crate::access::RateStatus;
pub use crate::access::Rejection;
pub use crate::access::VerifiedKey;
pub use crate::chain::ChainKey;
pub use crate::chain::Witness;
pub use crate::clock::ManualClock;
pub use crate::file::read_secret_file;
#[cfg(feature = "nats")]
pub use crate::fleet::DEFAULT_STREAM;
#[cfg(feature = "nats")]
pub use crate::fleet::FleetOptions;
pub use crate::fleet::FleetStatus;
pub use crate::fleet::FleetSurvey;
pub use crate::fleet::HostStatus;
pub use crate::fleet::IgnoredHead;
pub use crate::fleet::Revoked;
pub use crate::fleet::UNSEEN_HOSTS;
pub use crate::fleet::UsageSharing;
pub use crate::fleet::UsageStatus;
pub use crate::fleet::WriteRoutes;
#[cfg(feature = "nats")]
pub use crate::fleet::survey;
#[cfg(feature = "tower")]
pub use crate::http::client_ip::ForwardedForProblem;
#[cfg(feature = "tower")]
pub use crate::http::client_ip::MAX_FORWARDED_HOPS;
#[cfg(feature = "tower")]
pub use crate::http::client_ip::TrustedProxies;
#[cfg(feature = "tower")]
pub use crate::http::layer::ApiKeyLayer;
#[cfg(feature = "tower")]
pub use crate::http::layer::ApiKeyService;
#[cfg(feature = "tower")]
pub use crate::http::layer::PeerAddr;
#[cfg(feature = "tower")]
pub use crate::http::layer::Refusal;
#[cfg(feature = "tower")]
pub use crate::http::layer::ResponseFuture;
#[cfg(feature = "json")]
pub use crate::json::AuditFilter;
#[cfg(feature = "json")]
pub use crate::json::AuditJson;
#[cfg(feature = "json")]
pub use crate::json::ErrorJson;
#[cfg(feature = "json")]
pub use crate::json::HostJson;
#[cfg(feature = "json")]
pub use crate::json::IgnoredJson;
#[cfg(feature = "json")]
pub use crate::json::ImportedJson;
#[cfg(feature = "json")]
pub use crate::json::MAX_IMPORT_BYTES;
#[cfg(feature = "json")]
pub use crate::json::MAX_IMPORT_LINE_BYTES;
#[cfg(feature = "json")]
pub use crate::json::MAX_IMPORT_LINES;
#[cfg(feature = "json")]
pub use crate::json::RefusedJson;
#[cfg(feature = "json")]
pub use crate::json::RollJson;
#[cfg(feature = "json")]
pub use crate::json::WhoamiJson;
#[cfg(feature = "json")]
pub use crate::json::credits::CreditsJson;
#[cfg(feature = "json")]
pub use crate::json::credits::RefillJson;
#[cfg(feature = "json")]
pub use crate::json::keys::DeletedJson;
#[cfg(feature = "json")]
pub use crate::json::keys::KeyJson;
#[cfg(feature = "json")]
pub use crate::json::limits::RateLimitJson;
#[cfg(feature = "json")]
pub use crate::json::owner::ChangesJson;
#[cfg(feature = "json")]
pub use crate::json::page::EntryPageJson;
#[cfg(feature = "json")]
pub use crate::json::page::KeyPageJson;
#[cfg(feature = "json")]
pub use crate::json::parse_grace;
#[cfg(feature = "json")]
pub use crate::json::parse_lifetime;
#[cfg(feature = "json")]
pub use crate::json::people::RevokedActorJson;
#[cfg(feature = "json")]
pub use crate::json::read_import_lines;
#[cfg(feature = "json")]
pub use crate::json::rfc3339;
#[cfg(feature = "json")]
pub use crate::json::usage::UsageBucketJson;
#[cfg(feature = "json")]
pub use crate::json::usage::UsageJson;
#[cfg(feature = "json")]
pub use crate::json::usage::usage_since_default;
pub use crate::model::actor::Actor;
pub use crate::model::actor::ActorRole;
pub use crate::model::credits::Credits;
pub use crate::model::credits::MAX_CREDITS;
pub use crate::model::credits::MAX_REFILL_EVERY;
pub use crate::model::credits::MIN_REFILL_EVERY;
pub use crate::model::credits::Refill;
pub use crate::model::error::ChainKeyProblem;
pub use crate::model::error::Denial;
pub use crate::model::error::Error;
pub use crate::model::error::FileProblem;
pub use crate::model::id::ADMIN_ROLE;
pub use crate::model::id::KeyId;
pub use crate::model::id::SUPER_ADMIN_ROLE;
pub use crate::model::key::NewKey;
pub use crate::model::limit::MAX_RATE_LIMITS;
pub use crate::model::limit::MAX_RATE_WINDOW;
pub use crate::model::limit::MIN_RATE_WINDOW;
pub use crate::model::limit::RateLimit;
pub use crate::model::owner::KeyOwner;
pub use crate::model::owner::KeyUpdate;
pub use crate::model::owner::MAX_META_BYTES;
pub use crate::model::owner::MAX_META_DEPTH;
pub use crate::model::owner::Meta;
pub use crate::model::problem::Problem;
pub use crate::model::problem::ProblemKind;
pub use crate::model::record::EventKind;
pub use crate::model::refusal::Action;
pub use crate::model::refusal::RefusedAttempt;
pub use crate::model::rules::MAX_ACTOR_ID_CHARS;
pub use crate::model::rules::MAX_EXTERNAL_ID_CHARS;
pub use crate::model::rules::MAX_NAME_CHARS;
pub use crate::model::rules::MAX_ROLE_LEN;
pub use crate::model::rules::MAX_ROLES;
pub use crate::model::rules::MAX_WHITELIST;
pub use crate::model::rules::parse_net;
pub use crate::model::token::API_KEY_HEADER;
pub use crate::model::token::ApiKey;
pub use crate::model::token::ExistingKey;
pub use crate::model::token::HeaderProblem;
pub use crate::model::token::MAX_ADOPTED_LEN;
pub use crate::model::token::MIN_ADOPTED_LEN;
pub use crate::model::token::api_key_from_headers;
pub use crate::model::token::format::KEY_LEN;
pub use crate::model::token::format::KEY_PREFIX;
pub use crate::model::token::format::Malformed;
pub use crate::model::token::format::check_format;
pub use crate::model::token::format::redact_keys;
pub use crate::model::usage::Granularity;
pub use crate::model::usage::RejectedCounts;
pub use crate::model::usage::UsageBucket;
pub use crate::persist::check::CheckReport;
pub use crate::persist::check::MAX_LISTED_PROBLEMS;
pub use crate::persist::check::RepairReport;
pub use crate::projection::AuditEntry;
pub use crate::projection::KeyChanges;
pub use crate::projection::KeyStatus;
pub use crate::projection::KeyView;
pub use crate::projection::credits::CreditsView;
pub use crate::projection::page::KeyFilter;
#[cfg(feature = "serve")]
pub use crate::server::MAX_BODY_BYTES;
#[cfg(feature = "serve")]
pub use crate::server::MAX_IMPORT_BODY_BYTES;
#[cfg(feature = "serve")]
pub use crate::server::ProxyAdmins;
#[cfg(feature = "serve")]
pub use crate::server::Server;
#[cfg(feature = "serve")]
pub use crate::server::log::AuthLog;
#[cfg(feature = "serve")]
pub use crate::server::metrics::Metrics;
pub use crate::store::CreatedKey;
pub use crate::store::Integrity;
pub use crate::store::KeyStore;
pub use crate::store::MAX_GRACE;
pub use crate::store::RolledKey;
pub use crate::store::builder::Builder;
pub use crate::store::page::DEFAULT_PAGE_LIMIT;
pub use crate::store::page::MAX_PAGE_LIMIT;
pub use crate::store::page::Page;
pub use crate::store::people::RevokedActor;
pub use crate::store::stats::Histogram;
pub use crate::store::stats::Statistics;
pub use ipnet::IpNet;

/// Entry points for the fuzz targets in `fuzz/` and hooks for the tests (the test command
/// enables the feature); not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::chain::Chain;
    use crate::chain::Head;
    use crate::codec;

    /// A key that passes [`check_format`](crate::model::token::format::check_format), rebuilt from its parts.
    pub fn reencode_token(token: &str) -> Option<String> {
        crate::model::token::format::reencode(token)
    }

    /// Decodes a record; if it decodes, checks that encoding gives the same bytes back and
    /// that those decode to the same value. Panics if not.
    pub fn record_roundtrip(bytes: &[u8]) -> bool {
        let Ok(record) = codec::decode_record(bytes, 1) else {
            return false;
        };
        let again = codec::encode_record(&record).expect("a decoded record encodes");
        assert_eq!(again, bytes, "decode then encode changed the bytes");
        let twice = codec::decode_record(&again, 1).expect("re-encoded record decodes");
        assert_eq!(twice, record);
        true
    }

    /// Decodes a file kept beside the log (the last-used file, then the credits file), as
    /// it is and with a valid checksum in place of its last 32 bytes (so the fields'
    /// decoding is reached whatever the input); a file that decodes must encode to a file
    /// that decodes to the same. Also decodes the bytes as a fleet host's record of its
    /// last contact (`meta/contact`), which must encode back to the same bytes. Panics if
    /// not.
    pub fn off_chain_files(bytes: &[u8]) -> bool {
        use crate::fleet::contact::LastHeard;
        use crate::persist::credits::{decode_credits, encode_credits};
        use crate::persist::last_used::{decode_last_used, encode_last_used};
        let a = roundtrip(bytes, decode_last_used, encode_last_used);
        let b = roundtrip(bytes, decode_credits, |saved: &Vec<_>| encode_credits(saved));
        let c = LastHeard::decode(bytes).inspect(|heard| {
            assert_eq!(heard.encode(), bytes, "decode then encode changed the record");
        });
        a || b || c.is_some()
    }

    /// One off-chain format's round trip; see [`off_chain_files`].
    fn roundtrip<T: PartialEq + std::fmt::Debug>(
        bytes: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, crate::model::error::Error>,
        encode: impl Fn(&T) -> Result<Vec<u8>, crate::model::error::Error>,
    ) -> bool {
        let mut resummed = bytes.to_vec();
        if let Some(body) = resummed.len().checked_sub(32) {
            let sum = *blake3::hash(&resummed[..body]).as_bytes();
            resummed[body..].copy_from_slice(&sum);
        }
        let mut decoded = false;
        for input in [bytes, &resummed[..]] {
            if let Ok(saved) = decode(input) {
                let again = encode(&saved).expect("a decoded file encodes");
                assert_eq!(decode(&again).expect("re-encoded file decodes"), saved);
                decoded = true;
            }
        }
        decoded
    }

    /// Decodes a fleet host's head stored under `a`, as it is and with a valid seal in
    /// place of its last 32 bytes (so the fields' decoding is reached whatever the input);
    /// a head that decodes must encode to the same bytes.
    pub fn host_head(bytes: &[u8]) -> bool {
        use crate::fleet::head;
        let chain = Chain::new(Some(&crate::chain::ChainKey::from_bytes([7; 32])));
        let stream = [1; 16];
        let mut resealed = bytes.to_vec();
        if resealed.len() == head::HEAD_LEN {
            let body = resealed.len() - 32;
            let mut input = Vec::new();
            input.extend_from_slice(&1u64.to_le_bytes());
            input.push(b'a');
            input.extend_from_slice(&stream);
            input.extend_from_slice(&resealed[..body]);
            let seal = chain.seal(crate::chain::SealDomain::HostHead, &input);
            resealed[body..].copy_from_slice(&seal);
        }
        let mut decoded = false;
        for candidate in [bytes, &resealed[..]] {
            if let Ok(h) = head::decode(candidate, "a", &stream, &chain) {
                assert_eq!(
                    head::encode(&h, "a", &stream, &chain),
                    candidate,
                    "decode then encode changed the head"
                );
                decoded = true;
            }
        }
        decoded
    }

    /// Decodes a shared log's stream message (the envelope around a batch's entries, sealed
    /// with the chain key for its stream and position; public chain here). The bytes are
    /// tried as a whole message, then as a body that gets a valid seal, so the body's
    /// decoder is reached whatever the input. A batch that decodes must encode to the same
    /// bytes, and a fresh ledger fed its entries (as a host applies another's message) may
    /// refuse them, never panic.
    pub fn stream_message(bytes: &[u8]) -> bool {
        use crate::fleet::message;
        use crate::fleet::message::Message;
        let chain = Chain::new(None);
        let mut sealed = bytes.to_vec();
        sealed.extend_from_slice(&chain.seal(crate::chain::SealDomain::Message, bytes));
        let mut decoded = false;
        for candidate in [bytes, &sealed[..]] {
            // Any stream and position: the ones the body names, if it names any.
            let stream = candidate.get(10..26).and_then(|b| <[u8; 16]>::try_from(b).ok());
            let position = candidate
                .get(26..34)
                .and_then(|b| b.try_into().ok())
                .map_or(1, u64::from_le_bytes);
            match message::decode(candidate, position, stream.as_ref(), &chain) {
                Ok(Message::Entries(batch)) => {
                    let again = message::encode_entries(
                        &batch.origin,
                        stream.unwrap_or_default(),
                        position,
                        batch.bootstrap,
                        &batch.entries,
                        &chain,
                    )
                    .expect("a decoded message encodes");
                    assert_eq!(again, candidate, "decode then encode changed the message");
                    assert!(batch.first <= batch.last);
                    let ledger = crate::ledger::Ledger::new(chain.clone());
                    let _ = ledger.accept(&batch.entries);
                    decoded = true;
                }
                Ok(Message::Genesis { .. }) => decoded = true,
                Err(_) => {}
            }
        }
        decoded
    }

    /// Decodes any bytes (as text, lossily) as a cursor of every listing, under a fixed
    /// secret and two bindings: never panics; a cursor that decodes names the position it
    /// was made with, and re-encoding it gives the same text. Also decodes a cursor made
    /// from the input's first bytes, tampered at the input's position. Panics if not.
    pub fn cursor(bytes: &[u8]) -> bool {
        use crate::store::page::{Cursor, Listing, decode_cursor, encode_cursor};
        let secret = [3u8; 32];
        let text = String::from_utf8_lossy(bytes);
        let mut decoded = false;
        for listing in [Listing::Keys, Listing::Audit, Listing::KeysAt, Listing::Refused] {
            for binding in [&b""[..], bytes] {
                if let Ok(position) = decode_cursor(&secret, &text, listing, binding) {
                    assert_eq!(
                        encode_cursor(&secret, Cursor { listing, position }, binding),
                        text
                    );
                    decoded = true;
                }
            }
        }
        let mut word = [0u8; 8];
        for (w, b) in word.iter_mut().zip(bytes) {
            *w = *b;
        }
        let position = u64::from_le_bytes(word);
        let made = encode_cursor(
            &secret,
            Cursor {
                listing: Listing::Audit,
                position,
            },
            bytes,
        );
        assert_eq!(
            decode_cursor(&secret, &made, Listing::Audit, bytes).ok(),
            Some(position)
        );
        if let Some(&flip) = bytes.first() {
            let mut altered = made.into_bytes();
            let at = usize::from(flip) % altered.len();
            altered[at] = if altered[at] == b'a' { b'b' } else { b'a' };
            let altered = String::from_utf8_lossy(&altered).into_owned();
            assert!(decode_cursor(&secret, &altered, Listing::Audit, bytes).is_err());
        }
        decoded
    }

    /// Decodes a fleet host's usage report (keyed chain), as it is and with a valid seal
    /// appended (so the fields' decoding is reached whatever the input), for the stream
    /// the body names; a report that decodes must encode to the same bytes.
    pub fn usage_report(bytes: &[u8]) -> bool {
        use crate::fleet::report;
        let chain = Chain::new(Some(&crate::chain::ChainKey::from_bytes([7; 32])));
        let mut sealed = bytes.to_vec();
        sealed.extend_from_slice(&chain.seal(crate::chain::SealDomain::UsageReport, bytes));
        let mut decoded = false;
        for candidate in [bytes, &sealed[..]] {
            let stream = candidate
                .get(10..26)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .unwrap_or_default();
            if let Ok(r) = report::decode(candidate, &stream, &chain) {
                assert_eq!(
                    report::encode(&r, &stream, &chain),
                    candidate,
                    "decode then encode changed the report"
                );
                decoded = true;
            }
        }
        decoded
    }

    /// Opens a forwarded write's request or answer (keyed chain), as it is and with a valid
    /// seal of either kind appended (so the fields' decoding is reached whatever the input);
    /// one that opens must seal to the same bytes, and its commands are checked like a
    /// writer checks them. Panics if not.
    pub fn forward_message(bytes: &[u8]) -> bool {
        use crate::chain::SealDomain;
        use crate::fleet::forward::wire;
        let chain = Chain::new(Some(&crate::chain::ChainKey::from_bytes([7; 32])));
        let mut decoded = false;
        for domain in [SealDomain::ForwardRequest, SealDomain::ForwardAnswer] {
            let mut sealed = bytes.to_vec();
            sealed.extend_from_slice(&chain.seal(domain, bytes));
            for candidate in [bytes, &sealed[..]] {
                if let Ok(request) = wire::open_request(candidate, &chain) {
                    assert_eq!(
                        wire::seal_request(&request, &chain).ok().as_deref(),
                        Some(candidate),
                        "open then seal changed the request"
                    );
                    for command in request.commands {
                        let _ = wire::command_of(command);
                    }
                    decoded = true;
                }
                if let Ok(answer) = wire::open_answer(candidate, &chain) {
                    assert_eq!(
                        wire::seal_answer(&answer, &chain).ok().as_deref(),
                        Some(candidate),
                        "open then seal changed the answer"
                    );
                    decoded = true;
                }
            }
        }
        decoded
    }

    /// Wraps entries in a stream message, as a writer batch of host `origin` is appended
    /// at position 1 of a stream (public chain).
    pub fn encode_stream_message(origin: &str, entries: &[(u64, Vec<u8>)]) -> Vec<u8> {
        crate::fleet::message::encode_entries(origin, [0; 16], 1, 0, entries, &Chain::new(None))
            .unwrap_or_default()
    }

    /// Splits a log entry into records; if it is a block that splits, checks that building
    /// a block from those records gives the same bytes back. Panics if not.
    pub fn block_roundtrip(bytes: &[u8]) -> bool {
        let key = bytes
            .get(2..10)
            .and_then(|b| b.try_into().ok())
            .map_or(1, u64::from_le_bytes);
        let Ok(records) = codec::entry_records(key, bytes) else {
            return false;
        };
        if bytes.starts_with(&[2, 0]) {
            let mut block = crate::codec::block::BlockWriter::new(key);
            for (_, r) in &records {
                block.push(r);
            }
            assert_eq!(
                block.finish(),
                (key, bytes.to_vec()),
                "split then build changed the block"
            );
        }
        true
    }

    /// The sealed head (public chain) that matches a log made of `records` (sequence
    /// numbers from 1); the genesis head for no records.
    pub fn head_for(records: &[Vec<u8>]) -> Option<Vec<u8>> {
        let chain = Chain::new(None);
        let head = match records.last() {
            None => Head::EMPTY,
            Some(last) => Head {
                seq: records.len() as u64,
                hash: chain.hash(last),
                at: codec::decode_record(last, 0).ok()?.at,
            },
        };
        codec::encode_head(head, &chain).ok()
    }

    /// Gives every decodable record the sequence number of its position and a correct
    /// link to the one before (public chain), so replay gets past the chain checks.
    pub fn rechain(records: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let chain = Chain::new(None);
        let mut prev = [0u8; 32];
        let mut out = Vec::with_capacity(records.len());
        for (i, bytes) in records.into_iter().enumerate() {
            let bytes = match codec::decode_record(&bytes, 1) {
                Ok(mut r) => {
                    r.seq = i as u64 + 1;
                    r.prev = prev;
                    codec::encode_record(&r).unwrap_or(bytes)
                }
                Err(_) => bytes,
            };
            prev = chain.hash(&bytes);
            out.push(bytes);
        }
        out
    }

    /// Lays records out as log entries: the first `legacy` one per entry (format 1), the
    /// rest in blocks of the sizes given (cycled; 0 counts as 1).
    pub fn entries(records: &[Vec<u8>], legacy: usize, sizes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut seq = 1u64;
        let mut rest = records;
        let legacy = legacy.min(rest.len());
        for r in &rest[..legacy] {
            out.push((seq, r.clone()));
            seq += 1;
        }
        rest = &rest[legacy..];
        let mut size = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = usize::from(*size.next().unwrap_or(&1)).clamp(1, rest.len());
            let mut block = crate::codec::block::BlockWriter::new(seq);
            for r in &rest[..n] {
                block.push(r);
            }
            out.push(block.finish());
            seq += n as u64;
            rest = &rest[n..];
        }
        out
    }

    /// A stream message sealed with `key` for the stream `stream_id` (its 32 hex digits,
    /// as `/v1/fleet` shows it) at `position`, holding one block far past any log's head:
    /// a message only a chain-key holder can make, which every host refuses, and halts
    /// on. For the tests of what a halted host does; `None` for a malformed stream id.
    #[cfg(feature = "nats")]
    pub fn sealed_out_of_place_message(
        key: &crate::chain::ChainKey,
        stream_id: &str,
        position: u64,
    ) -> Option<Vec<u8>> {
        let digits = stream_id.as_bytes();
        if digits.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (byte, pair) in id.iter_mut().zip(digits.chunks(2)) {
            *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
        }
        let mut block = crate::codec::block::BlockWriter::new(1 << 40);
        block.push(b"a record nobody chained");
        crate::fleet::message::encode_entries(
            "rogue",
            id,
            position,
            0,
            &[block.finish()],
            &Chain::new(Some(key)),
        )
        .ok()
    }
}
