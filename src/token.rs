//! The API key format: generation, parsing, checksum, hashing, the `x-api-key` header, and
//! which text is shaped like a key (to be refused as a name and redacted from messages).
//!
//! A key is `klk_` + 30 base62 random characters + a 6-character base62 CRC32 of the rest:
//! 40 characters of `[A-Za-z0-9_-]`, ~178 bits from the OS CSPRNG. This module owns the
//! only type that holds a secret ([`ApiKey`]); it must never store, log or print it.

use std::borrow::Cow;
use std::fmt;

use rand::TryRngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// The fixed prefix every key starts with; secret scanners can search for it.
pub const KEY_PREFIX: &str = "klk_";
/// The length of every key.
pub const KEY_LEN: usize = 40;
const BODY_LEN: usize = 30;
const CHECK_LEN: usize = 6;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
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
    pub(crate) new: crate::NewKey,
    pub(crate) hash: KeyHash,
    pub(crate) tail: [u8; 4],
    pub(crate) source: crate::event::KeySource,
    /// For a secret: the hash it would be kept under if adopted by its SHA-256 (the same
    /// secret either way, so neither form may be adopted while the other is known).
    pub(crate) sha256_form: Option<KeyHash>,
}

impl ExistingKey {
    /// Adopts `secret`: 20 to 40 characters of `[A-Za-z0-9_-]`. It verifies like a key
    /// keyledger made; one outside keyledger's format skips the checksum.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if the secret breaks that rule (the secret is not quoted).
    pub fn with_secret(new: crate::NewKey, secret: &str) -> Result<Self, Error> {
        let (hash, tail) = adopt_secret(secret)?;
        Ok(ExistingKey {
            new,
            hash,
            tail,
            source: crate::event::KeySource::Imported,
            sha256_form: Some(KeyHash::of_sha256_token(secret)),
        })
    }

    /// Adopts a key by the SHA-256 hash of its secret (64 lowercase hexadecimal digits),
    /// for a platform that kept only that. A token outside keyledger's format is then
    /// verified by its SHA-256 hash.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] if `hex` is not 64 lowercase hexadecimal digits.
    pub fn with_sha256(new: crate::NewKey, hex: &str) -> Result<Self, Error> {
        Ok(ExistingKey {
            new,
            hash: adopt_sha256(hex)?,
            tail: crate::event::NO_TAIL,
            source: crate::event::KeySource::ImportedSha256,
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
    if tail == crate::event::NO_TAIL {
        // An adopted secret outside keyledger's format: every character of it is secret.
        return "…".to_owned();
    }
    let tail: String = tail.iter().map(|&b| char::from(b)).collect();
    format!("{KEY_PREFIX}…{tail}")
}

/// Whether `text` holds something shaped like an API key: the prefix [`KEY_PREFIX`]
/// anywhere in it. Every string [`check_format`] accepts starts with the prefix, so this
/// also covers a well-formed key on its own or as one word among others.
pub(crate) fn looks_like_key(text: &str) -> bool {
    text.contains(KEY_PREFIX)
}

/// `text` with every run shaped like an API key (the prefix `klk_` and the key characters
/// that follow it) replaced by `klk_…`, followed, for a run as long as a key, by its last
/// four characters: the key's public hint. For messages and logs that may quote what
/// someone typed, so that a secret pasted into the wrong place is not written out.
/// Redacting twice changes nothing more.
///
/// # Example
/// ```
/// let key = format!("klk_{}", "A".repeat(36));
/// assert_eq!(keyledger::redact_keys(&format!("no key {key} here")), "no key klk_…AAAA here");
/// assert_eq!(keyledger::redact_keys("klk_abc, klk_"), "klk_…, klk_");
/// assert_eq!(keyledger::redact_keys("nothing to hide"), "nothing to hide");
/// ```
pub fn redact_keys(text: &str) -> Cow<'_, str> {
    if !looks_like_key(text) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(KEY_PREFIX) {
        out.push_str(&rest[..start]);
        let run = &rest[start..];
        // The prefix is itself made of key characters, so the run covers it; all ASCII.
        let len = run
            .bytes()
            .take_while(|&b| CLASSES[usize::from(b)] & IN_ALPHABET != 0)
            .count();
        out.push_str(KEY_PREFIX);
        // A bare prefix hides nothing (and is how a hint starts): leaving it keeps redaction
        // idempotent.
        if len > KEY_PREFIX.len() {
            out.push('…');
        }
        if len == KEY_LEN {
            out.push_str(&run[len - 4..len]);
        }
        rest = &run[len..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Fewest characters an adopted secret may have.
pub const MIN_ADOPTED_LEN: usize = 20;
/// Most characters an adopted secret may have.
pub const MAX_ADOPTED_LEN: usize = KEY_LEN;

/// Domain separation for keys adopted by their SHA-256 hash: the store keeps the keyed
/// blake3 hash of the SHA-256 digest, never the digest itself.
const SHA256_DOMAIN: &[u8; 32] = b"keyledger.sha256-adopted.v1.2026";

/// Whether `token` meets the rule for adopted secrets: 20 to 40 characters of
/// `[A-Za-z0-9_-]`. Branch-free over the bytes, like [`check_format`].
#[inline]
pub(crate) fn fits_adopted_rule(token: &str) -> bool {
    (MIN_ADOPTED_LEN..=MAX_ADOPTED_LEN).contains(&token.len())
        && token
            .bytes()
            .fold(IN_ALPHABET, |acc, c| acc & CLASSES[usize::from(c)])
            != 0
}

/// What the store keeps of an adopted secret: its hash and, for a secret in keyledger's
/// own format, its (non-secret) last four characters. Never the secret.
pub(crate) fn adopt_secret(secret: &str) -> Result<(KeyHash, [u8; 4]), Error> {
    if !fits_adopted_rule(secret) {
        return Err(Error::invalid(
            "key",
            format!(
                "an existing secret must be {MIN_ADOPTED_LEN} to {MAX_ADOPTED_LEN} characters of [A-Za-z0-9_-]"
            ),
        ));
    }
    let tail = match check_format(secret) {
        // The last characters of a keyledger key are its checksum: safe to show.
        Ok(()) => {
            let b = secret.as_bytes();
            [b[36], b[37], b[38], b[39]]
        }
        Err(_) => crate::event::NO_TAIL,
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

/// Why a presented key was rejected before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformed {
    /// Not exactly 40 characters.
    Length,
    /// A character outside `[A-Za-z0-9_-]`, or outside base62 where the format needs it.
    Character,
    /// Does not start with `klk_`.
    Prefix,
    /// The checksum does not match: a typo or a made-up key.
    Checksum,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::Length => "key must be exactly 40 characters",
            Malformed::Character => "key contains a character outside [A-Za-z0-9_-]",
            Malformed::Prefix => "key does not start with klk_",
            Malformed::Checksum => "key checksum does not match",
        })
    }
}

/// Checks a presented key's shape and checksum, without touching any state.
///
/// Returns the key's hash when it is well formed.
pub(crate) fn parse(token: &str) -> Result<KeyHash, Malformed> {
    check_format(token)?;
    Ok(KeyHash::of(token))
}

/// Validates a presented key's format and checksum.
///
/// # Errors
/// The first [`Malformed`] reason found: length, then characters, prefix, checksum.
///
/// # Example
/// ```
/// use keyledger::{check_format, Malformed};
/// assert_eq!(check_format("klk_short"), Err(Malformed::Length));
/// ```
pub fn check_format(token: &str) -> Result<(), Malformed> {
    let b: &[u8; KEY_LEN] = token.as_bytes().try_into().map_err(|_| Malformed::Length)?;
    // One table lookup per byte, branch-free over a fixed length: this runs on every
    // request, garbage included.
    let all = b
        .iter()
        .fold(IN_ALPHABET | IS_BASE62, |acc, &c| acc & CLASSES[usize::from(c)]);
    if all & IN_ALPHABET == 0 {
        return Err(Malformed::Character);
    }
    if !token.starts_with(KEY_PREFIX) {
        return Err(Malformed::Prefix);
    }
    let body = b[KEY_PREFIX.len()..]
        .iter()
        .fold(IS_BASE62, |acc, &c| acc & CLASSES[usize::from(c)]);
    if body == 0 {
        return Err(Malformed::Character);
    }
    let (body, check) = b.split_at(KEY_LEN - CHECK_LEN);
    // Decoding the six digits is cheaper than encoding the CRC; base62 of six digits is
    // one-to-one, so equal numbers mean equal strings.
    let stated = check
        .iter()
        .fold(0u64, |n, &c| n * 62 + u64::from(CLASSES[usize::from(c)] >> 2));
    if stated != u64::from(crc32fast::hash(body)) {
        return Err(Malformed::Checksum);
    }
    Ok(())
}

const IN_ALPHABET: u8 = 1;
const IS_BASE62: u8 = 2;

/// For each byte: whether it is in the key alphabet `[A-Za-z0-9_-]` (bit 0), in base62
/// (bit 1), and its base62 value (bits 2 to 7).
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut v = 0;
    while v < 62 {
        t[BASE62[v] as usize] = IN_ALPHABET | IS_BASE62 | ((v as u8) << 2);
        v += 1;
    }
    t[b'_' as usize] = IN_ALPHABET;
    t[b'-' as usize] = IN_ALPHABET;
    t
};

/// Rebuilds a well-formed key from its body and a fresh checksum (for the fuzzers: a key
/// that parses must re-encode to itself).
#[cfg(feature = "fuzzing")]
pub(crate) fn reencode(token: &str) -> Option<String> {
    check_format(token).ok()?;
    let body = &token.as_bytes()[..KEY_LEN - CHECK_LEN];
    let mut out = String::from_utf8(body.to_vec()).ok()?;
    out.extend(checksum(body).iter().map(|&b| char::from(b)));
    Some(out)
}

fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
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
/// unvalidated; [`KeyStore::verify`](crate::KeyStore::verify) checks it.
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
