//! Pages of the listings and their cursors: `KeyStore::keys_page`, `audit_page`,
//! `keys_at_page` and `refused_page`, and the cursor format (version 1, in
//! `docs/design.md`): which listing, the position of the last item returned, and a MAC over
//! both and the query, under a secret of this process.
//!
//! Decoding a cursor is total: any string is a position or [`Error::InvalidInput`]
//! (`cursor`). It never reads the state; a refused cursor changes nothing.

use std::sync::OnceLock;

use super::KeyStore;
use crate::model::error::Error;
use crate::model::id::KeyId;
use crate::model::refusal::RefusedAttempt;
use crate::projection::AuditEntry;
use crate::projection::KeyView;
use crate::projection::page::{KeyFilter, Positioned};

/// The page size when none is asked for.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// The largest page that may be asked for.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in the listing's order.
    pub items: Vec<T>,
    /// The cursor of the next page, if more items match; hand it back with the same
    /// query. Valid for the life of this process.
    pub next: Option<String>,
}

/// The cursor format's version.
const CURSOR_VERSION: u8 = 1;
/// Bytes of a cursor: version, listing, position (8), MAC (16).
const CURSOR_BYTES: usize = 26;
const MAC_BYTES: usize = 16;

/// Which listing a cursor pages through: a cursor of one is refused by the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Listing {
    Keys = 1,
    Audit = 2,
    KeysAt = 3,
    Refused = 4,
}

/// A decoded cursor: where the page before it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) listing: Listing,
    pub(crate) position: u64,
}

/// This process's cursor secret: cursors outlive no restart.
fn secret() -> &'static [u8; 32] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(rand::random)
}

/// The MAC of a cursor's first ten bytes under `secret`, bound to the query `binding`.
fn mac(secret: &[u8; 32], head: &[u8], binding: &[u8]) -> [u8; MAC_BYTES] {
    let mut hasher = blake3::Hasher::new_keyed(secret);
    hasher.update(b"keyledger cursor");
    hasher.update(head);
    hasher.update(&(binding.len() as u64).to_le_bytes());
    hasher.update(binding);
    let mut out = [0u8; MAC_BYTES];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..MAC_BYTES]);
    out
}

/// The cursor of `cursor`, for the query `binding`: 52 lowercase hex digits.
pub(crate) fn encode_cursor(secret: &[u8; 32], cursor: Cursor, binding: &[u8]) -> String {
    let mut bytes = [0u8; CURSOR_BYTES];
    bytes[0] = CURSOR_VERSION;
    bytes[1] = cursor.listing as u8;
    bytes[2..10].copy_from_slice(&cursor.position.to_le_bytes());
    let tag = mac(secret, &bytes[..10], binding);
    bytes[10..].copy_from_slice(&tag);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The position a cursor names, if it was made by this process for `listing` and the
/// query `binding`.
///
/// # Errors
/// [`Error::InvalidInput`] (`cursor`) for anything else: not a cursor, another version,
/// altered, or made for another listing or query.
pub(crate) fn decode_cursor(
    secret: &[u8; 32],
    text: &str,
    listing: Listing,
    binding: &[u8],
) -> Result<u64, Error> {
    let bad = |reason: &str| Error::invalid("cursor", reason.to_owned());
    let text = text.as_bytes();
    if text.len() != CURSOR_BYTES * 2 {
        return Err(bad("not a cursor of this server: start the listing again"));
    }
    let mut bytes = [0u8; CURSOR_BYTES];
    for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (hex_digit(pair[0]), hex_digit(pair[1])) else {
            return Err(bad("not a cursor of this server: start the listing again"));
        };
        *byte = hi << 4 | lo;
    }
    if bytes[0] != CURSOR_VERSION {
        return Err(bad("a cursor of another version: start the listing again"));
    }
    let expected = mac(secret, &bytes[..10], binding);
    // Every byte compared, whatever the first difference.
    let differ = expected
        .iter()
        .zip(&bytes[10..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if differ != 0 || bytes[1] != listing as u8 {
        return Err(bad(
            "altered, made by another server process, or for another query: start the listing again",
        ));
    }
    let mut position = [0u8; 8];
    position.copy_from_slice(&bytes[2..10]);
    Ok(u64::from_le_bytes(position))
}

/// A lowercase hex digit's value.
fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// `limit` if it is a page size that may be asked for.
fn checked_limit(limit: usize) -> Result<usize, Error> {
    if limit == 0 || limit > MAX_PAGE_LIMIT {
        return Err(Error::invalid(
            "limit",
            format!("give a page size from 1 to {MAX_PAGE_LIMIT}"),
        ));
    }
    Ok(limit)
}

/// The bytes a key listing's cursor is bound to: every field of the filter, each with
/// its length, so that no two filters give the same bytes.
fn key_binding(filter: &KeyFilter) -> Vec<u8> {
    let KeyFilter {
        query,
        role,
        status,
        all,
        newest_first,
        external_id,
    } = filter;
    let mut out = Vec::new();
    for text in [
        query.as_deref(),
        role.as_deref(),
        status.map(|s| s.as_str()),
        external_id.as_deref(),
    ] {
        match text {
            None => out.push(0),
            Some(t) => {
                out.push(1);
                out.extend_from_slice(&(t.len() as u64).to_le_bytes());
                out.extend_from_slice(t.as_bytes());
            }
        }
    }
    out.extend([u8::from(*all), u8::from(*newest_first)]);
    out
}

impl KeyStore {
    /// Runs one page: checks the limit, decodes the cursor (the position after which the
    /// page starts), fetches, and encodes the next cursor.
    fn page<T>(
        listing: Listing,
        binding: &[u8],
        cursor: Option<&str>,
        limit: usize,
        fetch: impl FnOnce(Option<u64>, usize) -> Result<Positioned<T>, Error>,
    ) -> Result<Page<T>, Error> {
        let limit = checked_limit(limit)?;
        let after = cursor
            .map(|c| decode_cursor(secret(), c, listing, binding))
            .transpose()?;
        let page = fetch(after, limit)?;
        Ok(Page {
            items: page.items,
            next: page
                .more_after
                .map(|position| encode_cursor(secret(), Cursor { listing, position }, binding)),
        })
    }

    /// A page of the keys through `filter`, in the order they were created (or the
    /// reverse), after `cursor` (from the page before, with the same filter; none for the
    /// first page). Keys created or deleted between pages neither shift nor repeat the
    /// others: a cursor names a key's place in the order of creation.
    ///
    /// # Errors
    /// [`Error::InvalidInput`]: `limit` outside 1 to [`MAX_PAGE_LIMIT`]; `cursor` altered,
    /// from another filter or listing, or from before this process started.
    ///
    /// # Example
    /// ```
    /// # fn main() -> Result<(), keyledger::Error> {
    /// use keyledger::{Actor, KeyFilter, KeyStore, NewKey};
    /// let store = KeyStore::builder().open_temporary()?;
    /// let root = Actor::super_admin("root");
    /// for name in ["billing", "search", "billing-eu"] {
    ///     store.create_key(&root, NewKey::new(name).role("reader"))?;
    /// }
    /// let filter = KeyFilter { query: Some("BILL".into()), ..KeyFilter::default() };
    /// let first = store.keys_page(&filter, None, 1)?;
    /// assert_eq!(first.items[0].name, "billing");
    /// let second = store.keys_page(&filter, first.next.as_deref(), 1)?;
    /// assert_eq!(second.items[0].name, "billing-eu");
    /// assert!(second.next.is_none());
    /// # Ok(()) }
    /// ```
    pub fn keys_page(
        &self,
        filter: &KeyFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KeyView>, Error> {
        let now = self.ledger.clock().now_micros();
        Self::page(
            Listing::Keys,
            &key_binding(filter),
            cursor,
            limit,
            |after, limit| Ok(self.ledger.read().keys_page(filter, after, limit, now)),
        )
    }

    /// A page of the audit trail, oldest first (or newest first): the entries `matches`
    /// passes, after `cursor`. `binding` names the filter `matches` applies (its
    /// parameters, written one way): a cursor is refused with another binding or order.
    ///
    /// # Errors
    /// As [`KeyStore::keys_page`].
    pub fn audit_page(
        &self,
        binding: &str,
        matches: impl Fn(&AuditEntry) -> bool,
        newest_first: bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditEntry>, Error> {
        let binding = format!("{}{binding}", u8::from(newest_first));
        Self::page(
            Listing::Audit,
            binding.as_bytes(),
            cursor,
            limit,
            |after, limit| {
                Ok(self
                    .ledger
                    .read()
                    .audit_page(&matches, newest_first, after, limit))
            },
        )
    }

    /// A page of the keys as they stood right after record `seq` ([`KeyStore::keys_at`]),
    /// only key `only` if given, after `cursor`. History does not change, so positions are
    /// places in that list.
    ///
    /// # Errors
    /// As [`KeyStore::keys_page`] and [`KeyStore::keys_at`].
    pub fn keys_at_page(
        &self,
        seq: u64,
        only: Option<KeyId>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<KeyView>, Error> {
        let binding = format!(
            "at={seq};key={}",
            only.map(|id| id.to_string()).unwrap_or_default()
        );
        Self::page(
            Listing::KeysAt,
            binding.as_bytes(),
            cursor,
            limit,
            |after, limit| {
                let views = self.keys_at(seq)?;
                Ok(positioned(
                    views.into_iter().filter(|v| only.is_none_or(|id| v.id == id)),
                    after,
                    limit,
                ))
            },
        )
    }

    /// A page of the security trail ([`KeyStore::refused`]), oldest first: the attempts
    /// `matches` passes, after `cursor`; `binding` as in [`KeyStore::audit_page`]. The
    /// trail drops its oldest attempts past its bound, so a listing paged across such a
    /// drop skips as many as were dropped.
    ///
    /// # Errors
    /// As [`KeyStore::keys_page`] and [`KeyStore::refused`].
    pub fn refused_page(
        &self,
        binding: &str,
        matches: impl Fn(&RefusedAttempt) -> bool,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<RefusedAttempt>, Error> {
        Self::page(
            Listing::Refused,
            binding.as_bytes(),
            cursor,
            limit,
            |after, limit| {
                Ok(positioned(
                    self.refused()?.into_iter().filter(|a| matches(a)),
                    after,
                    limit,
                ))
            },
        )
    }
}

/// Up to `limit` items of `items` after place `after` (places count from 1).
fn positioned<T>(items: impl Iterator<Item = T>, after: Option<u64>, limit: usize) -> Positioned<T> {
    let skip = usize::try_from(after.unwrap_or(0)).unwrap_or(usize::MAX);
    let mut rest = items.skip(skip);
    let items: Vec<T> = rest.by_ref().take(limit).collect();
    let more_after = rest
        .next()
        .map(|_| after.unwrap_or(0).saturating_add(items.len() as u64));
    Positioned { items, more_after }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [9; 32];

    #[test]
    fn a_cursor_decodes_to_the_position_it_was_made_with() {
        for position in [0, 1, 99, u64::from(u32::MAX), u64::MAX] {
            let c = Cursor {
                listing: Listing::Keys,
                position,
            };
            let text = encode_cursor(&SECRET, c, b"q");
            assert_eq!(text.len(), 52);
            assert_eq!(
                decode_cursor(&SECRET, &text, Listing::Keys, b"q").ok(),
                Some(position)
            );
        }
    }

    fn refused_field(result: Result<u64, Error>) -> Option<&'static str> {
        match result {
            Err(Error::InvalidInput { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn a_cursor_for_another_query_listing_or_secret_is_refused() {
        let c = Cursor {
            listing: Listing::Audit,
            position: 7,
        };
        let text = encode_cursor(&SECRET, c, b"kind=created");
        let other = |s: &[u8; 32], l, b: &[u8]| refused_field(decode_cursor(s, &text, l, b));
        assert_eq!(other(&SECRET, Listing::Audit, b"kind=deleted"), Some("cursor"));
        assert_eq!(other(&SECRET, Listing::Keys, b"kind=created"), Some("cursor"));
        assert_eq!(other(&[8; 32], Listing::Audit, b"kind=created"), Some("cursor"));
    }

    #[test]
    fn every_altered_character_of_a_cursor_is_refused() {
        let c = Cursor {
            listing: Listing::Keys,
            position: 41,
        };
        let text = encode_cursor(&SECRET, c, b"");
        for i in 0..text.len() {
            let mut altered = text.clone().into_bytes();
            altered[i] = if altered[i] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(altered).expect("hex");
            assert_eq!(
                refused_field(decode_cursor(&SECRET, &altered, Listing::Keys, b"")),
                Some("cursor"),
                "character {i}"
            );
        }
        for junk in ["", "zz", &text.to_uppercase(), &format!("{text}0"), &text[..50]] {
            assert_eq!(
                refused_field(decode_cursor(&SECRET, junk, Listing::Keys, b"")),
                Some("cursor")
            );
        }
    }

    #[test]
    fn filters_that_differ_bind_cursors_differently() {
        let a = KeyFilter {
            query: Some("ab".into()),
            role: None,
            ..KeyFilter::default()
        };
        let b = KeyFilter {
            query: None,
            role: Some("ab".into()),
            ..KeyFilter::default()
        };
        let c = KeyFilter {
            newest_first: true,
            ..a.clone()
        };
        assert_ne!(key_binding(&a), key_binding(&b));
        assert_ne!(key_binding(&a), key_binding(&c));
        assert_ne!(key_binding(&KeyFilter::default()), key_binding(&a));
    }

    #[test]
    fn a_page_size_outside_one_to_the_max_is_refused_naming_limit() {
        for limit in [0, MAX_PAGE_LIMIT + 1] {
            assert!(matches!(
                checked_limit(limit),
                Err(Error::InvalidInput { field: "limit", .. })
            ));
        }
        assert_eq!(checked_limit(MAX_PAGE_LIMIT).ok(), Some(MAX_PAGE_LIMIT));
    }

    proptest::proptest! {
        #[test]
        fn cursors_round_trip_and_any_text_decodes_without_panic(
            position: u64,
            binding: Vec<u8>,
            text in "\\PC{0,80}",
        ) {
            let c = Cursor { listing: Listing::Refused, position };
            let made = encode_cursor(&SECRET, c, &binding);
            proptest::prop_assert_eq!(decode_cursor(&SECRET, &made, Listing::Refused, &binding).ok(), Some(position));
            let _ = decode_cursor(&SECRET, &text, Listing::Refused, &binding);
        }
    }
}
