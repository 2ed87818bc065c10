//! Pages of the listings: the keys through a [`KeyFilter`] (a name or id substring, a role,
//! a status), and the audit rows through a caller's predicate, each walked from a position
//! in the order the log made them, so that a position stays meaningful while keys come and
//! go.
//!
//! Read-only, and it knows nothing of cursors (the store encodes positions). A key that
//! does not match costs a few loads and compares, never an allocation.

use super::{AuditEntry, KeyStatus, KeyView, LIVE, Projection};
use crate::model::id::KeyId;

/// Which keys a page of the listing holds. Every field narrows; the default is the live
/// keys (active or disabled: neither deleted nor expired), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    /// Only keys whose name or id holds this, ignoring case (an empty one matches all).
    pub query: Option<String>,
    /// Only keys holding this role.
    pub role: Option<String>,
    /// Only keys of this status; when unset, the live ones (or every key with `all`).
    pub status: Option<KeyStatus>,
    /// Every key, deleted and expired ones too, when no `status` is given.
    pub all: bool,
    /// Newest first instead of oldest first.
    pub newest_first: bool,
    /// Only keys with this external id.
    pub external_id: Option<String>,
}

impl KeyFilter {
    /// Whether a key of `status` passes the status part of the filter.
    fn admits(&self, status: KeyStatus) -> bool {
        match self.status {
            Some(wanted) => status == wanted,
            None => self.all || matches!(status, KeyStatus::Active | KeyStatus::Disabled),
        }
    }
}

/// A page: up to the limit of items, and the position of the last one when more match
/// after it (the next page starts after that position).
pub(crate) struct Positioned<T> {
    pub(crate) items: Vec<T>,
    pub(crate) more_after: Option<u64>,
}

impl Projection {
    /// Key `index`'s status at `now`, from its record alone.
    fn status_at(&self, index: usize, now: i64) -> KeyStatus {
        let cold = &self.cold[index];
        super::views::status_of(cold.deleted != LIVE, cold.expires, self.keys[index].disabled, now)
    }

    /// Up to `limit` keys through `filter`, after position `after` in the filter's order
    /// (a position is a key's index: its place in the order of creation, which never
    /// changes); `None` starts at the beginning.
    pub(crate) fn keys_page(
        &self,
        filter: &KeyFilter,
        after: Option<u64>,
        limit: usize,
        now: i64,
    ) -> Positioned<KeyView> {
        let len = self.keys.len();
        // Which interned role sets hold the role: one look per set, not per key.
        let role_sets: Option<Vec<bool>> = filter
            .role
            .as_deref()
            .map(|role| self.role_sets.iter().map(|set| set.0.contains(&role)).collect());
        let query = filter
            .query
            .as_deref()
            .filter(|q| !q.is_empty())
            .map(str::to_lowercase);
        // Only a query of hex digits can be in an id: the others skip writing it out.
        let in_ids = query
            .as_deref()
            .is_some_and(|q| q.len() <= 16 && q.bytes().all(|b| b.is_ascii_hexdigit()));
        let matches = |i: usize| {
            filter.admits(self.status_at(i, now))
                && role_sets
                    .as_ref()
                    .is_none_or(|sets| sets.get(self.keys[i].roles as usize).copied().unwrap_or(false))
                && filter.external_id.as_deref().is_none_or(|want| {
                    self.owner_entry(self.cold[i].owner).external_id.as_deref() == Some(want)
                })
                && query.as_deref().is_none_or(|q| {
                    let key = &self.keys[i];
                    contains_ignoring_case(self.name_of(key), q) || (in_ids && id_contains(key.id, q))
                })
        };
        let after = after.map(|p| usize::try_from(p).unwrap_or(usize::MAX));
        let order: Box<dyn Iterator<Item = usize>> = if filter.newest_first {
            let end = after.map_or(len, |p| p.min(len));
            Box::new((0..end).rev())
        } else {
            let start = after.map_or(0, |p| p.saturating_add(1));
            Box::new(start..len)
        };
        let mut found = order.filter(|&i| matches(i));
        let picked: Vec<usize> = found.by_ref().take(limit).collect();
        let more_after = match (picked.last(), found.next()) {
            (Some(&last), Some(_)) => Some(last as u64),
            _ => None,
        };
        Positioned {
            items: picked
                .into_iter()
                .map(|i| self.current_view(i as u32, now))
                .collect(),
            more_after,
        }
    }

    /// Up to `limit` audit entries that `matches`, after record `after` in the order asked
    /// (a position is a record's sequence number; `None` starts at the first, or the last
    /// with `newest_first`).
    pub(crate) fn audit_page(
        &self,
        matches: &dyn Fn(&AuditEntry) -> bool,
        newest_first: bool,
        after: Option<u64>,
        limit: usize,
    ) -> Positioned<AuditEntry> {
        let rows = self.rows.len() as u64;
        let order: Box<dyn Iterator<Item = AuditEntry>> = if newest_first {
            let end = after.map_or(rows, |p| p.saturating_sub(1).min(rows));
            Box::new((1..=end).rev().filter_map(|seq| self.audit(seq).next()))
        } else {
            Box::new(self.audit(after.unwrap_or(0).saturating_add(1)))
        };
        let mut found = order.filter(|e| matches(e));
        let items: Vec<AuditEntry> = found.by_ref().take(limit).collect();
        let more_after = match (items.last(), found.next()) {
            (Some(last), Some(_)) => Some(last.seq),
            _ => None,
        };
        Positioned { items, more_after }
    }
}

/// Whether `hay` holds `needle` (already lowercase), ignoring case, without allocating.
pub(crate) fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return true;
    }
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.char_indices().any(|(start, _)| {
        let mut lowered = hay[start..].chars().flat_map(char::to_lowercase);
        needle.chars().all(|c| lowered.next() == Some(c))
    })
}

/// Whether the id, as it is written (16 lowercase hex digits), holds `needle`.
fn id_contains(id: KeyId, needle: &str) -> bool {
    if needle.len() > 16 {
        return false;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((id.0 >> (60 - 4 * i)) & 0xf) as usize];
    }
    digits.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_matches_a_substring_in_any_case() {
        assert!(contains_ignoring_case("Billing Prod", "ing p"));
        assert!(contains_ignoring_case("ÉCOLE Lyon", "école"));
        assert!(contains_ignoring_case("anything", ""));
        assert!(!contains_ignoring_case("billing", "billings"));
        assert!(!contains_ignoring_case("", "a"));
    }

    #[test]
    fn an_id_matches_a_substring_of_its_hex_digits() {
        let id = KeyId(0x0123_4567_89ab_cdef);
        assert!(id_contains(id, "0123"));
        assert!(id_contains(id, "9abcdef"));
        assert!(id_contains(id, "0123456789abcdef"));
        assert!(!id_contains(id, "fedc"));
        assert!(!id_contains(id, "0123456789abcdef0"));
    }
}
