//! The expiration index of a shard: every entry that has a deadline, by the second it falls in,
//! so the purge task finds expired entries without scanning the map.
//!
//! Keys whose deadlines fall in the same second share one bucket (a hash set): removing one, on
//! every `SET` over a key with a deadline, is a hash lookup rather than a walk of a tree ordered
//! by `(deadline, key)`, and a million keys set with the same `EX` cost one tree node, not a
//! million. The price: the purge drops a key in the second after its deadline at the latest,
//! which readers never see (a read checks the deadline itself).

use std::collections::{BTreeMap, HashSet};

/// Keys by the second their deadline falls in, rounded up.
#[dsu::updateable]
#[derive(Debug, Default)]
pub struct ExpiryIndex {
    buckets: BTreeMap<u64, HashSet<Vec<u8>>>,
    /// How many keys the buckets hold.
    len: usize,
}

/// Moves the `(deadline, key)` pairs of the tree into buckets.
#[dsu::transform(from = dsu_old::ExpiryIndex)]
fn into_buckets(old: &dsu_old::ExpiryIndex) -> ExpiryIndex {
    let mut buckets: BTreeMap<u64, HashSet<Vec<u8>>> = BTreeMap::new();
    for (at, key) in &old.deadlines {
        buckets.entry(at.div_ceil(1000)).or_default().insert(key.clone());
    }
    ExpiryIndex { buckets, len: old.deadlines.len() }
}

#[dsu::updateable]
impl ExpiryIndex {
    /// Records that `key` expires at `at` (milliseconds).
    pub fn insert(&mut self, at: u64, key: &[u8]) {
        if self.buckets.entry(at.div_ceil(1000)).or_default().insert(key.to_vec()) {
            self.len += 1;
        }
    }

    /// Forgets that `key` expires at `at`.
    pub fn remove(&mut self, at: u64, key: &[u8]) {
        let second = at.div_ceil(1000);
        let Some(bucket) = self.buckets.get_mut(&second) else { return };
        if bucket.remove(key) {
            self.len -= 1;
        }
        if bucket.is_empty() {
            self.buckets.remove(&second);
        }
    }

    /// Takes out at most `max` keys whose deadline is at or before `now`: those of the seconds
    /// that have ended, soonest first.
    pub fn pop_due(&mut self, now: u64, max: usize) -> Vec<Vec<u8>> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(mut bucket) = self.buckets.first_entry() else { break };
            if bucket.key().saturating_mul(1000) > now {
                break;
            }
            let keys = bucket.get_mut();
            let take: Vec<Vec<u8>> = keys.iter().take(max - due.len()).cloned().collect();
            for key in &take {
                keys.remove(key);
            }
            if keys.is_empty() {
                bucket.remove();
            }
            self.len -= take.len();
            due.extend(take);
        }
        due
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_come_out_by_ended_second_and_at_most_max() {
        let mut index = ExpiryIndex::default();
        for (at, key) in [(3_000, "c"), (1_000, "a"), (2_000, "b"), (999, "a2"), (9_900, "late")] {
            index.insert(at, key.as_bytes());
        }
        index.remove(2_000, b"b");
        index.remove(2_000, b"not there");
        assert_eq!(index.len(), 4);
        assert_eq!(index.pop_due(999, 10), Vec::<Vec<u8>>::new(), "second 1 has not ended");
        let mut first = index.pop_due(3_000, 1);
        first.extend(index.pop_due(3_000, 1));
        first.sort();
        assert_eq!(first, vec![b"a".to_vec(), b"a2".to_vec()]);
        assert_eq!(index.pop_due(3_000, 5), vec![b"c".to_vec()]);
        assert_eq!(index.len(), 1);
        assert_eq!(index.pop_due(10_000, 5), vec![b"late".to_vec()]);
        assert!(index.is_empty());
    }
}
