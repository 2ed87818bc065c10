//! The API key format: generation, parsing, checksum, hashing, the `x-api-key` header, and
//! which text is shaped like a key (to be refused as a name and redacted from messages).
//!
//! A key is `klk_` + 30 base62 random characters + a 6-character base62 CRC32 of the rest:
//! 40 characters of `[A-Za-z0-9_-]`, ~178 bits from the OS CSPRNG. This module owns the
//! only type that holds a secret ([`ApiKey`]); it must never store, log or print it.

use std::fmt;

use rand::TryRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::model::error::Error;

pub(crate) mod format;

use self::format::{BASE62, BODY_LEN, checksum};
pub(crate) use self::format::{KEY_LEN, KEY_PREFIX, Malformed, check_format};

/// Domain separation: a key's hash is a blake3 keyed hash under this public constant, so
/// it can never collide with a blake3 hash used for anything else (the log's chain).
const HASH_DOMAIN: &[u8; 32] = b"keyledger.api-key.blake3.v1.2026";

/// A freshly generated API key: the one value that holds a secret.
///
/// Its `Debug` is redacted, it has no `Display`, and its bytes are zeroed on drop. Hand it
/// to the user once with [`ApiKey::expose_secret`]; the store keeps only its hash.
pub struct ApiKey(String);

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for ApiKey {}

impl ApiKey {
    /// Draws a new key from the operating system's CSPRNG.
    pub(crate) fn generate() -> Result<Self, Error> {
        let mut key = String::with_capacity(KEY_LEN);
        key.push_str(KEY_PREFIX);
        let mut pool = [0u8; 64];
        while key.len() < KEY_PREFIX.len() + BODY_LEN {
            rand::rngs::OsRng
                .try_fill_bytes(&mut pool)
                .map_err(|e| Error::Entropy(e.to_string()))?;
            // Rejection sampling: 248 = 4 * 62, so `b % 62` is uniform for `b < 248`.
            for &b in pool.iter().filter(|&&b| b < 248) {
                if key.len() == KEY_PREFIX.len() + BODY_LEN {
                    break;
                }
                key.push(char::from(BASE62[usize::from(b % 62)]));
            }
            pool.zeroize();
        }
        let check = checksum(key.as_bytes());
        key.extend(check.iter().map(|&b| char::from(b)));
        Ok(ApiKey(key))
    }

    /// The secret itself, for the one time it is shown to its owner.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The non-secret hint: prefix, an ellipsis and the last four characters.
    pub fn hint(&self) -> String {
        hint(self.tail())
    }

    pub(crate) fn tail(&self) -> [u8; 4] {
        let b = self.0.as_bytes();
        [b[36], b[37], b[38], b[39]]
    }

    pub(crate) fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

/// A key a platform already issued, to be adopted as it is: its name, roles, whitelist and
/// expiry, and its secret or the SHA-256 hash the platform kept of it. Only the hash is
/// ever kept; the secret is dropped (and zeroed) here.
///
/// # Example
/// ```
/// use keyledger::{ExistingKey, NewKey};
/// let key = ExistingKey::with_secret(NewKey::new("legacy bot").role("bot"), "old_platform_key_0123456789").unwrap();
/// assert!(ExistingKey::with_secret(NewKey::new("x").role("bot"), "too short").is_err());
/// # let _ = key;
/// ```
#[derive(Clone)]
pub struct ExistingKey {
    pub(crate) new: crate::model::key::NewKey,
    pub(crate) hash: KeyHash,
    pub(crate) tail: [u8; 4],
    pub(crate) source: crate::model::key::KeySource,
    /// For a secret: the hash it would be kept under if adopted by its SHA-256 (the same
    /// secret either way, so neither form may be adopted while the other is known).
    pub(crate) sha256_form: Option<KeyHash>,
}

impl ExistingKey {
    /// Adopts `secret`: [`MIN_ADOPTED_LEN`] to [`MAX_ADOPTED_LEN`] printable ASCII
    /// characters without whitespace (GitHub-, Stripe- and JWT-shaped tokens fit). It
    /// verifies like a key keyledger made; one outside keyledger's format skips the
    /// checksum.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the secret breaks that rule (the secret is not quoted).
    pub fn with_secret(new: crate::model::key::NewKey, secret: &str) -> Result<Self, Error> {
        let (hash, tail) = adopt_secret(secret)?;
        Ok(ExistingKey {
            new,
            hash,
            tail,
            source: crate::model::key::KeySource::Imported,
            sha256_form: Some(KeyHash::of_sha256_token(secret)),
        })
    }

    /// Adopts a key by the SHA-256 hash of its secret (64 lowercase hexadecimal digits),
    /// for a platform that kept only that. A token outside keyledger's format is then
    /// verified by its SHA-256 hash.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `hex` is not 64 lowercase hexadecimal digits.
    pub fn with_sha256(new: crate::model::key::NewKey, hex: &str) -> Result<Self, Error> {
        Ok(ExistingKey {
            new,
            hash: adopt_sha256(hex)?,
            tail: crate::model::key::NO_TAIL,
            source: crate::model::key::KeySource::ImportedSha256,
            sha256_form: None,
        })
    }
}

impl fmt::Debug for ExistingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExistingKey")
            .field("new", &self.new)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}, redacted)", self.hint())
    }
}

/// Formats a hint from a key's last four characters.
pub(crate) fn hint(tail: [u8; 4]) -> String {
    if tail == crate::model::key::NO_TAIL {
        // An adopted secret outside keyledger's format: every character of it is secret.
        return "…".to_owned();
    }
    let tail: String = tail.iter().map(|&b| char::from(b)).collect();
    format!("{KEY_PREFIX}…{tail}")
}

/// Fewest characters a secret adopted as it is may have (shorter ones are refused as too
/// weak to keep; a key adopted by its SHA-256 hash verifies whatever its length).
pub const MIN_ADOPTED_LEN: usize = 16;
/// Most characters an adopted secret may have: GitHub-, Stripe- and JWT-shaped tokens fit.
pub const MAX_ADOPTED_LEN: usize = 256;

/// Domain separation for keys adopted by their SHA-256 hash: the store keeps the keyed
/// blake3 hash of the SHA-256 digest, never the digest itself.
const SHA256_DOMAIN: &[u8; 32] = b"keyledger.sha256-adopted.v1.2026";

/// Whether `token` could be an adopted secret, and so is looked up: 1 to
/// [`MAX_ADOPTED_LEN`] printable ASCII characters, no whitespace (what an `x-api-key`
/// header can carry). Any secret adopted as it is, and any secret of that shape adopted by
/// its SHA-256 hash, passes.
#[inline]
pub(crate) fn fits_adopted_rule(token: &str) -> bool {
    (1..=MAX_ADOPTED_LEN).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

/// What the store keeps of an adopted secret: its hash and, for a secret in keyledger's
/// own format, its (non-secret) last four characters. Never the secret.
pub(crate) fn adopt_secret(secret: &str) -> Result<(KeyHash, [u8; 4]), Error> {
    if !fits_adopted_rule(secret) || secret.len() < MIN_ADOPTED_LEN {
        return Err(Error::invalid(
            "key",
            format!(
                "an existing secret must be {MIN_ADOPTED_LEN} to {MAX_ADOPTED_LEN} printable ASCII characters \
                 without spaces (what an x-api-key header can carry)"
            ),
        ));
    }
    let tail = match check_format(secret) {
        // The last characters of a keyledger key are its checksum: safe to show.
        Ok(()) => {
            let b = secret.as_bytes();
            [b[36], b[37], b[38], b[39]]
        }
        Err(_) => crate::model::key::NO_TAIL,
    };
    Ok((KeyHash::of(secret), tail))
}

/// What the store keeps of a key adopted by its SHA-256 hash, given as 64 lowercase
/// hexadecimal digits.
pub(crate) fn adopt_sha256(hex: &str) -> Result<KeyHash, Error> {
    let bytes = hex.as_bytes();
    let bad = || Error::invalid("sha256", "must be 64 lowercase hexadecimal digits");
    if bytes.len() != 64 {
        return Err(bad());
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *out = (nibble(pair[0]).ok_or_else(bad)? << 4) | nibble(pair[1]).ok_or_else(bad)?;
    }
    Ok(KeyHash::of_sha256(&digest))
}

/// The blake3 hash of a key: all the store ever keeps of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct KeyHash(pub(crate) [u8; 32]);

impl KeyHash {
    pub(crate) fn of(token: &str) -> Self {
        KeyHash(*blake3::keyed_hash(HASH_DOMAIN, token.as_bytes()).as_bytes())
    }

    /// The hash a key adopted by SHA-256 digest `digest` is kept under.
    fn of_sha256(digest: &[u8; 32]) -> Self {
        KeyHash(*blake3::keyed_hash(SHA256_DOMAIN, digest).as_bytes())
    }

    /// The hash a key adopted by its SHA-256 hash would be kept under, if `token` were it:
    /// the second hash only tokens outside keyledger's format ever pay for.
    pub(crate) fn of_sha256_token(token: &str) -> Self {
        use sha2::Digest;
        KeyHash::of_sha256(&sha2::Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyHash({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// Checks a presented key's shape and checksum, without touching any state.
///
/// Returns the key's hash when it is well formed.
pub(crate) fn parse(token: &str) -> Result<KeyHash, Malformed> {
    check_format(token)?;
    Ok(KeyHash::of(token))
}

/// The header that carries the key.
pub const API_KEY_HEADER: &str = "x-api-key";

/// Why the `x-api-key` header could not yield a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderProblem {
    /// No `x-api-key` header.
    Missing,
    /// More than one `x-api-key` header.
    Repeated,
    /// The value has bytes outside visible ASCII.
    NotAscii,
    /// The value starts or ends with white space.
    Padded,
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderProblem::Missing => "no x-api-key header",
            HeaderProblem::Repeated => "more than one x-api-key header",
            HeaderProblem::NotAscii => "x-api-key value is not printable ASCII",
            HeaderProblem::Padded => "x-api-key value has leading or trailing white space",
        })
    }
}

/// Picks the key out of a request's headers: exactly one `x-api-key` (any case) whose
/// value is printable ASCII without surrounding white space.
///
/// Takes `(name, value)` pairs, so any HTTP library's header map can be passed, e.g.
/// `headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))`. The value is returned
/// unvalidated; `KeyStore::verify` checks it.
///
/// # Errors
/// The [`HeaderProblem`] found.
///
/// # Example
/// ```
/// use keyledger::{api_key_from_headers, HeaderProblem};
/// let headers = [("Content-Type", &b"text/plain"[..]), ("X-API-Key", &b"klk_abc"[..])];
/// assert_eq!(api_key_from_headers(headers), Ok("klk_abc"));
/// assert_eq!(api_key_from_headers([("x-api-key", &b" klk_abc"[..])]), Err(HeaderProblem::Padded));
/// ```
pub fn api_key_from_headers<'a, I>(headers: I) -> Result<&'a str, HeaderProblem>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut found = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(API_KEY_HEADER) {
            if found.is_some() {
                return Err(HeaderProblem::Repeated);
            }
            found = Some(value);
        }
    }
    let value = found.ok_or(HeaderProblem::Missing)?;
    if value.first().is_some_and(u8::is_ascii_whitespace) || value.last().is_some_and(u8::is_ascii_whitespace)
    {
        return Err(HeaderProblem::Padded);
    }
    if !value.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(HeaderProblem::NotAscii);
    }
    std::str::from_utf8(value).map_err(|_| HeaderProblem::NotAscii)
}

#[cfg(test)]
mod tests {
    use super::format::{looks_like_key, redact_keys};
    use std::borrow::Cow;

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_key_has_documented_shape() {
        let key = ApiKey::generate().unwrap();
        let s = key.expose_secret();
        assert_eq!(s.len(), KEY_LEN);
        assert!(s.starts_with(KEY_PREFIX));
        assert_eq!(check_format(s), Ok(()));
        assert_eq!(key.hint(), format!("klk_…{}", &s[36..]));
    }

    #[test]
    fn debug_output_redacts_the_secret() {
        let key = ApiKey::generate().unwrap();
        let shown = format!("{key:?} {:?}", key.hash());
        assert!(!shown.contains(&key.expose_secret()[4..36]));
    }

    #[test]
    fn key_shaped_text_is_recognised_alone_or_among_words() {
        let key = ApiKey::generate().unwrap();
        let s = key.expose_secret();
        assert!(check_format(s).is_ok() && looks_like_key(s));
        assert!(looks_like_key(&format!("my key is {s} ok")));
        assert!(looks_like_key("prefix klk_ alone"));
        assert!(looks_like_key("xklk_abc"));
        for fine in ["alice", "KLK_upper", "klk-dash", "k l k _", "日本 🔑"] {
            assert!(!looks_like_key(fine), "{fine}");
        }
    }

    #[test]
    fn redaction_hides_every_key_shaped_run_and_keeps_the_rest() {
        let key = ApiKey::generate().unwrap();
        let s = key.expose_secret();
        let text = format!("a {s}, then {} and {s}. {s}_x-y", &s[..20]);
        let shown = redact_keys(&text);
        assert_eq!(shown, format!("a {h}, then klk_… and {h}. klk_…", h = key.hint()));
        assert!(!shown.contains(&s[4..20]), "{shown}");
        assert_eq!(redact_keys(&shown), shown, "redacting twice changes nothing");
        assert!(matches!(redact_keys("plain"), Cow::Borrowed("plain")));
        assert_eq!(redact_keys("é klk_!"), "é klk_!");
    }

    #[test]
    fn malformed_keys_are_named_by_reason() {
        let key = ApiKey::generate().unwrap();
        let s = key.expose_secret();
        assert_eq!(check_format(""), Err(Malformed::Length));
        assert_eq!(check_format(&format!("{s}x")), Err(Malformed::Length));
        assert_eq!(check_format(&s.replacen('k', "!", 1)), Err(Malformed::Character));
        assert_eq!(
            check_format(&s.replacen("klk_", "abc_", 1)),
            Err(Malformed::Prefix)
        );
        let dash_in_body = format!("{}-{}", &s[..10], &s[11..]);
        assert_eq!(check_format(&dash_in_body), Err(Malformed::Character));
    }

    #[test]
    fn header_rules() {
        let v = &b"klk_x"[..];
        assert_eq!(api_key_from_headers([]), Err(HeaderProblem::Missing));
        assert_eq!(
            api_key_from_headers([("X-Api-Key", v), ("x-api-key", v)]),
            Err(HeaderProblem::Repeated)
        );
        assert_eq!(
            api_key_from_headers([("x-api-key", &b"klk\xff"[..])]),
            Err(HeaderProblem::NotAscii)
        );
        assert_eq!(
            api_key_from_headers([("x-api-key", &b"a b"[..])]),
            Err(HeaderProblem::NotAscii)
        );
        assert_eq!(
            api_key_from_headers([("x-api-key", &b"klk_x\t"[..])]),
            Err(HeaderProblem::Padded)
        );
        assert_eq!(
            api_key_from_headers([("x-api-keys", v), ("X-API-KEY", v)]),
            Ok("klk_x")
        );
    }

    proptest! {
        #[test]
        fn any_one_character_change_is_rejected(pos in 0usize..KEY_LEN, c in proptest::char::any()) {
            let key = ApiKey::generate().unwrap();
            let s = key.expose_secret();
            prop_assume!(s.chars().nth(pos) != Some(c));
            let mut changed: Vec<char> = s.chars().collect();
            changed[pos] = c;
            let changed: String = changed.into_iter().collect();
            prop_assert!(check_format(&changed).is_err());
        }

        #[test]
        fn every_generated_key_parses(_seed in 0u32..1000) {
            let key = ApiKey::generate().unwrap();
            prop_assert_eq!(parse(key.expose_secret()), Ok(key.hash()));
        }

        #[test]
        fn only_well_formed_strings_pass(s in "klk_[A-Za-z0-9_-]{0,40}|.{0,60}") {
            if check_format(&s).is_ok() {
                prop_assert_eq!(s.len(), KEY_LEN);
                prop_assert_eq!(s.as_bytes()[34..].to_vec(), checksum(&s.as_bytes()[..34]).to_vec());
            }
        }
    }
}
