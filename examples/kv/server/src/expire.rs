//! The expiration index of a shard: every entry that has a deadline, soonest first, so the purge
//! task finds expired entries without scanning the map.

use std::collections::BTreeSet;

/// `(deadline, key)` pairs, ordered by deadline.
#[dsu::updateable]
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    deadlines: BTreeSet<(u64, Vec<u8>)>,
}

#[dsu::updateable]
impl ExpiryIndex {
    /// Records that `key` expires at `at`.
    pub fn insert(&mut self, at: u64, key: &[u8]) {
        self.deadlines.insert((at, key.to_vec()));
    }

    /// Forgets that `key` expires at `at`.
    pub fn remove(&mut self, at: u64, key: &[u8]) {
        self.deadlines.remove(&(at, key.to_vec()));
    }

    /// Takes out at most `max` keys whose deadline is at or before `now`, soonest first.
    pub fn pop_due(&mut self, now: u64, max: usize) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        while due.len() < max {
            match self.deadlines.first() {
                Some((at, _)) if *at <= now => {}
                _ => break,
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                due.push(key);
            }
        }
        due
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_come_out_soonest_first_and_at_most_max() {
        let mut index = ExpiryIndex::default();
        for (at, key) in [(30, "c"), (10, "a"), (20, "b"), (10, "a2"), (99, "late")] {
            index.insert(at, key.as_bytes());
        }
        index.remove(20, b"b");
        index.remove(20, b"not there");
        assert_eq!(index.len(), 4);
        assert_eq!(index.pop_due(5, 10), Vec::<Vec<u8>>::new());
        assert_eq!(index.pop_due(30, 2), vec![b"a".to_vec(), b"a2".to_vec()]);
        assert_eq!(index.pop_due(30, 2), vec![b"c".to_vec()]);
        assert_eq!(index.len(), 1);
    }
}
