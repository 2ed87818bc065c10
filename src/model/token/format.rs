//! The key's format, and nothing else: its prefix, length, alphabet and checksum, the
//! check every presented key passes first, and the redaction of anything shaped like a
//! key. The error enum's messages use the redaction, so this imports nothing of the crate.

use std::borrow::Cow;
use std::fmt;

/// The fixed prefix every key starts with; secret scanners can search for it.
pub const KEY_PREFIX: &str = "klk_";
/// The length of every key.
pub const KEY_LEN: usize = 40;
pub(super) const BODY_LEN: usize = 30;
pub(super) const CHECK_LEN: usize = 6;
pub(super) const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
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

pub(super) const IN_ALPHABET: u8 = 1;
pub(super) const IS_BASE62: u8 = 2;

/// For each byte: whether it is in the key alphabet `[A-Za-z0-9_-]` (bit 0), in base62
/// (bit 1), and its base62 value (bits 2 to 7).
pub(super) static CLASSES: [u8; 256] = {
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

pub(super) fn checksum(body: &[u8]) -> [u8; CHECK_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECK_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}
