//! The index from a key's hash to its record: a probe reads one 64-byte line of slots
//! (rarely the next), then the key record itself: two cache misses for a hit at a million
//! keys, as many as a `HashMap` that holds its values inline.
//!
//! A general hash table (hashbrown's) keeps its control bytes and its slots apart, so a
//! hit there reads a control group, then the slot, then the record the slot names: three
//! lines that depend on each other. Here a line holds eight slots, each a 32-bit tag (from
//! the hash's high half) and the key's 32-bit index: the tag picks the candidates, the
//! caller's comparison of the record's full 128-bit prefix decides.
//!
//! Open addressing with linear probing over lines; a removed slot becomes a tombstone
//! (or empty again when nothing was ever placed past it) and tombstones are swept out
//! when the table is rebuilt. A value's home line is the top bits of its tag, so growing
//! needs nothing but the slots (no key is read again) and writes the new lines in order:
//! old line `L` goes to lines `2L` and `2L + 1`. The tag bits below the line's still tell
//! candidates apart: 13 of them at a million keys, 10 at ten million. Layout only: it
//! knows nothing of keys.

/// One cache line of slots.
#[derive(Clone, Copy, Default)]
#[repr(align(64))]
struct Line([u64; SLOTS]);

const SLOTS: usize = 8;
/// A slot never used: a probe that meets one stops.
const EMPTY: u64 = 0;
/// A slot whose entry was removed: probes go on past it. Its tag (0) is never an
/// entry's, whose tags are odd.
const TOMB: u64 = 1;

/// Slots filled (live or tombstone) out of every 8 before the table grows or is swept.
const MAX_FILLED_OF_8: usize = 7;
/// The most lines: 2^28 (2^31 slots, past any key index a projection holds), so that a
/// tag always keeps bits of its own below its line's.
const MAX_LINE_BITS: u32 = 28;

/// An index of `u32` values by their 64-bit hash.
pub(super) struct HashIndex {
    /// A power of two of them, or none yet.
    lines: Vec<Line>,
    /// `log2(lines.len())`, at most [`MAX_LINE_BITS`].
    bits: u32,
    len: usize,
    tombs: usize,
}

/// The tag of hash `h`: its high half, made odd so that no tag is [`EMPTY`]'s or [`TOMB`]'s.
#[inline]
fn tag(h: u64) -> u64 {
    (h >> 32) | 1
}

#[inline]
fn slot(h: u64, value: u32) -> u64 {
    (tag(h) << 32) | u64::from(value)
}

/// The home line of tag `tag` (a slot's high half) in a table of `2^bits` lines.
#[inline]
fn home(tag: u64, bits: u32) -> usize {
    (tag as u32).checked_shr(32 - bits).unwrap_or(0) as usize
}

impl HashIndex {
    pub(super) const fn new() -> Self {
        HashIndex {
            lines: Vec::new(),
            bits: 0,
            len: 0,
            tombs: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn clear(&mut self) {
        *self = HashIndex::new();
    }

    /// The line after `line`, the last one followed by the first.
    #[inline]
    fn next(&self, line: usize) -> usize {
        (line + 1) & (self.lines.len() - 1)
    }

    /// The first value under hash `h` that `eq` accepts.
    #[inline]
    pub(super) fn find(&self, h: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag(h);
        let mut line = home(tag, self.bits);
        // Bounded by the number of lines; a table is never full, so a probe meets an
        // empty slot long before.
        for _ in 0..self.lines.len() {
            for &s in &self.lines[line].0 {
                if s == EMPTY {
                    return None;
                }
                if s >> 32 == tag && eq(s as u32) {
                    return Some(s as u32);
                }
            }
            line = self.next(line);
        }
        None
    }

    /// Adds `value` under hash `h`; the caller makes sure it is not there already.
    pub(super) fn insert(&mut self, h: u64, value: u32) {
        let capacity = self.lines.len() * SLOTS;
        if (self.len + self.tombs + 1) * 8 > capacity * MAX_FILLED_OF_8 {
            // Mostly tombstones (or as large as it grows): sweep them at the same size;
            // else double.
            let live_fits = (self.len + 1) * 8 <= capacity * MAX_FILLED_OF_8 / 2;
            let bits = if live_fits || self.bits == MAX_LINE_BITS || self.lines.is_empty() {
                self.bits
            } else {
                self.bits + 1
            };
            self.rebuild(bits);
        }
        self.place(slot(h, value));
        self.len += 1;
    }

    /// Adds `value` under hash `h` unless a value under `h` that `eq` accepts is there
    /// already (then nothing changes): one probe for the check and the place. Whether it
    /// was added.
    pub(super) fn insert_unique(&mut self, h: u64, value: u32, mut eq: impl FnMut(u32) -> bool) -> bool {
        self.reserve(1);
        let tag = tag(h);
        let mut line = home(tag, self.bits);
        let mut free = None;
        // Bounded as `find`: the table is never full.
        for _ in 0..self.lines.len() {
            for (i, &s) in self.lines[line].0.iter().enumerate() {
                if s == EMPTY {
                    let (line, i) = free.unwrap_or((line, i));
                    if self.lines[line].0[i] == TOMB {
                        self.tombs -= 1;
                    }
                    self.lines[line].0[i] = slot(h, value);
                    self.len += 1;
                    return true;
                }
                if s == TOMB {
                    free = free.or(Some((line, i)));
                } else if s >> 32 == tag && eq(s as u32) {
                    return false;
                }
            }
            line = self.next(line);
        }
        false
    }

    /// Makes room for `additional` more values without growing on the way.
    pub(super) fn reserve(&mut self, additional: usize) {
        let capacity = self.lines.len() * SLOTS;
        if (self.len + self.tombs + additional) * 8 <= capacity * MAX_FILLED_OF_8 {
            return;
        }
        let wanted = (self.len + additional) * 2;
        let mut bits = self.bits.max(1);
        while bits < MAX_LINE_BITS && (1usize << bits) * SLOTS * MAX_FILLED_OF_8 < wanted * 8 {
            bits += 1;
        }
        self.rebuild(bits);
    }

    /// Removes `value` from under hash `h`; whether it was there.
    pub(super) fn remove(&mut self, h: u64, value: u32) -> bool {
        let wanted = slot(h, value);
        let mut line = home(wanted >> 32, self.bits);
        for _ in 0..self.lines.len() {
            for i in 0..SLOTS {
                let s = self.lines[line].0[i];
                if s == EMPTY {
                    return false;
                }
                if s == wanted {
                    // Nothing was ever placed past an empty slot, so when the next slot
                    // is empty no probe needs this one: it can be empty again.
                    let next = match i + 1 {
                        SLOTS => self.lines[self.next(line)].0[0],
                        j => self.lines[line].0[j],
                    };
                    if next == EMPTY {
                        self.lines[line].0[i] = EMPTY;
                    } else {
                        self.lines[line].0[i] = TOMB;
                        self.tombs += 1;
                    }
                    self.len -= 1;
                    return true;
                }
            }
            line = self.next(line);
        }
        false
    }

    /// Puts `s` in the first free or removed slot of its probe. There is one: the table
    /// is never more than 7/8 full.
    fn place(&mut self, s: u64) {
        let mut line = home(s >> 32, self.bits);
        loop {
            for slot in &mut self.lines[line].0 {
                if *slot == EMPTY || *slot == TOMB {
                    if *slot == TOMB {
                        self.tombs -= 1;
                    }
                    *slot = s;
                    return;
                }
            }
            line = self.next(line);
        }
    }

    /// Moves every entry into a table of `2^bits` lines, without tombstones.
    fn rebuild(&mut self, bits: u32) {
        let lines = 1usize << bits;
        let old = std::mem::replace(&mut self.lines, vec![Line::default(); lines]);
        (self.bits, self.tombs) = (bits, 0);
        for s in old.iter().flat_map(|l| l.0) {
            if s != EMPTY && s != TOMB {
                self.place(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Hashes that collide on purpose: few distinct lines and tags, so that probes run
    /// across lines, wrap around the table's end and meet tombstones.
    fn crowded(value: u32) -> u64 {
        let v = u64::from(value);
        ((v % 3) << 62) | ((v % 5) << 33)
    }

    fn spread(value: u32) -> u64 {
        u64::from(value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32),
        /// `insert_unique`: added only if absent, in one probe.
        InsertUnique(u32),
        Reserve(u16),
        Remove(u32),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                (0u32..300).prop_map(Op::Insert),
                (0u32..300).prop_map(Op::InsertUnique),
                (0u16..400).prop_map(Op::Reserve),
                (0u32..300).prop_map(Op::Remove)
            ],
            0..600,
        )
    }

    fn check_against_model(ops: &[Op], hash: fn(u32) -> u64) {
        let mut index = HashIndex::new();
        let mut model: HashMap<u32, ()> = HashMap::new();
        for op in ops {
            match *op {
                Op::Insert(v) if !model.contains_key(&v) => {
                    index.insert(hash(v), v);
                    model.insert(v, ());
                }
                Op::Insert(_) => {}
                Op::InsertUnique(v) => {
                    let added = index.insert_unique(hash(v), v, |x| x == v);
                    assert_eq!(added, model.insert(v, ()).is_none(), "value {v}");
                }
                Op::Reserve(n) => index.reserve(usize::from(n)),
                Op::Remove(v) => {
                    assert_eq!(index.remove(hash(v), v), model.remove(&v).is_some());
                }
            }
            assert_eq!(index.len(), model.len());
        }
        for v in 0..300 {
            let found = index.find(hash(v), |x| x == v);
            assert_eq!(found, model.contains_key(&v).then_some(v), "value {v}");
        }
        // Every line keeps an empty slot or the probe bound stops it: never full.
        assert!(index.len + index.tombs < index.lines.len() * SLOTS || index.lines.is_empty());
    }

    proptest! {
        #[test]
        fn finds_exactly_what_was_inserted_and_not_removed_with_colliding_hashes(ops in ops()) {
            check_against_model(&ops, crowded);
        }

        #[test]
        fn finds_exactly_what_was_inserted_and_not_removed_with_spread_hashes(ops in ops()) {
            check_against_model(&ops, spread);
        }
    }

    #[test]
    fn room_reserved_is_not_outgrown_by_that_many_inserts() {
        let mut index = HashIndex::new();
        index.reserve(10_000);
        let lines = index.lines.len();
        for v in 0..10_000 {
            assert!(index.insert_unique(spread(v), v, |x| x == v));
        }
        assert_eq!(index.lines.len(), lines);
        assert!(!index.insert_unique(spread(7), 7, |x| x == 7), "already there");
        assert_eq!(index.len(), 10_000);
    }

    #[test]
    fn an_empty_index_finds_nothing_and_removes_nothing() {
        let mut index = HashIndex::new();
        assert_eq!(index.find(42, |_| true), None);
        assert!(!index.remove(42, 7));
        index.insert(42, 7);
        index.clear();
        assert_eq!((index.len(), index.find(42, |_| true)), (0, None));
    }

    #[test]
    fn the_tag_filters_candidates_before_the_comparison_runs() {
        let mut index = HashIndex::new();
        for v in 0..1000 {
            index.insert(spread(v), v);
        }
        let mut compared = 0;
        assert_eq!(
            index.find(spread(500), |v| {
                compared += 1;
                v == 500
            }),
            Some(500)
        );
        assert_eq!(compared, 1);
    }

    #[test]
    fn values_at_the_edges_of_u32_are_kept_apart_from_empty_and_removed_slots() {
        let mut index = HashIndex::new();
        for v in [0, 1, u32::MAX - 1, u32::MAX] {
            index.insert(0, v);
        }
        for v in [0, 1, u32::MAX - 1, u32::MAX] {
            assert_eq!(index.find(0, |x| x == v), Some(v));
        }
        assert!(index.remove(0, 1));
        assert_eq!(index.find(0, |x| x == 1), None);
        assert_eq!(index.find(0, |x| x == u32::MAX), Some(u32::MAX));
    }

    #[test]
    fn churn_sweeps_tombstones_instead_of_growing_without_end() {
        let mut index = HashIndex::new();
        for round in 0..200u32 {
            for v in 0..100 {
                index.insert(spread(round * 100 + v), round * 100 + v);
            }
            for v in 0..100 {
                assert!(index.remove(spread(round * 100 + v), round * 100 + v));
            }
        }
        assert_eq!(index.len(), 0);
        assert!(
            index.lines.len() <= 32,
            "{} lines for at most 100 values",
            index.lines.len()
        );
    }
}
