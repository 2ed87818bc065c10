//! A table of values, each kept once and named by its index: the lists of rate limits and
//! the credits values that keys and audit rows name. Layout only.

use std::collections::HashMap;
use std::hash::Hash;

use super::too_long;
use crate::model::error::Error;

/// Every value added, each once, in the order first added; index 0 is the one it starts
/// with (the empty value).
pub(super) struct Interned<T> {
    values: Vec<T>,
    index: HashMap<T, u32>,
}

impl<T: Clone + Eq + Hash> Interned<T> {
    /// A table holding `empty` at index 0.
    pub(super) fn new(empty: T) -> Self {
        Interned {
            values: vec![empty.clone()],
            index: HashMap::from([(empty, 0)]),
        }
    }

    /// The index of `value`, added if new (`seq`: the record being applied, for the
    /// error when the table is full).
    pub(super) fn intern(&mut self, value: T, seq: u64) -> Result<u32, Error> {
        if let Some(&i) = self.index.get(&value) {
            return Ok(i);
        }
        let i = u32::try_from(self.values.len()).map_err(|_| too_long(seq))?;
        self.values.push(value.clone());
        self.index.insert(value, i);
        Ok(i)
    }

    pub(super) fn get(&self, i: u32) -> Option<&T> {
        self.values.get(i as usize)
    }

    pub(super) fn len(&self) -> usize {
        self.values.len()
    }

    /// The values in `part`, for a snapshot.
    pub(super) fn part(&self, part: std::ops::Range<usize>) -> &[T] {
        &self.values[part]
    }
}
