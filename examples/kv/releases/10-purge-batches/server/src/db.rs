//! The database: entries in 16 shards, each a map and an expiration index behind one lock.
//!
//! A shard lives in a field cell (`dsu::Cell<Mutex<Shard>>`) of the shared [`Db`]: a release
//! that changes [`Entry`] or the index transforms the shards in place, and code compiled for one
//! layout never reads another (each access checks it). Keys are spread over the shards by a hash
//! of their bytes, so 50 connections rarely wait on the same lock.

use crate::expire::ExpiryIndex;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// How many shards the keys are spread over.
pub const SHARDS: usize = 16;

/// How many expired entries one purge step drops from a shard at most, so the lock is held for
/// a few microseconds (Redis's active expiry looks at 20 keys per round).
pub const PURGE_BUDGET: usize = 20;

/// How long one purge step may run (Redis's active expiry takes at most 25% of a tick; ours
/// takes 1 ms of each 100 ms).
pub const PURGE_STEP_LIMIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Milliseconds since the Unix epoch: deadlines are wall-clock times, so a snapshot keeps them
/// across a restart.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// One stored value.
#[dsu::updateable]
#[derive(Debug, Clone, PartialEq, Eq)]
// Entries stored before `hits` existed start at 0: nobody counted their reads.
#[dsu::transform(from = dsu_old::Entry, default)]
pub struct Entry {
    pub value: Vec<u8>,
    /// When it expires, in milliseconds since the Unix epoch; `None`: never.
    pub expires_at: Option<u64>,
    /// How many times it was read since it was stored (`OBJECT FREQ`).
    pub hits: u64,
}

#[dsu::updateable]
impl Entry {
    /// A value just stored: not read yet.
    pub fn new(value: Vec<u8>, expires_at: Option<u64>) -> Entry {
        Entry { value, expires_at, hits: 0 }
    }
}

/// One shard: its entries and the deadlines of those that expire.
#[dsu::updateable]
#[derive(Debug, Default)]
pub struct Shard {
    pub entries: HashMap<Vec<u8>, Entry>,
    pub expiry: ExpiryIndex,
}

#[dsu::updateable]
impl Shard {
    /// The entry of `key` if it has not expired at `now`; an expired one is dropped on the way
    /// (lazy expiry, so a read never returns a dead value whatever the purge task is at).
    pub fn live(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        let expired = matches!(self.entries.get(key), Some(Entry { expires_at: Some(at), .. }) if *at <= now);
        if expired {
            self.remove(key);
            return None;
        }
        self.entries.get_mut(key)
    }

    /// Stores `entry` under `key`, replacing what was there, and indexes its deadline.
    pub fn insert(&mut self, key: &[u8], entry: Entry) {
        if let Some(at) = entry.expires_at {
            self.expiry.insert(at, key);
        }
        if let Some(old) = self.entries.insert(key.to_vec(), entry) {
            if let Some(at) = old.expires_at {
                self.expiry.remove(at, key);
            }
        }
    }

    /// Removes `key`'s entry and its deadline.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.entries.remove(key)?;
        if let Some(at) = old.expires_at {
            self.expiry.remove(at, key);
        }
        Some(old)
    }

    /// Gives `key`'s entry the deadline `at` (`None`: none), keeping the index in step. False if
    /// there is no such entry.
    pub fn set_deadline(&mut self, key: &[u8], at: Option<u64>) -> bool {
        let Some(entry) = self.entries.get_mut(key) else { return false };
        let old = std::mem::replace(&mut entry.expires_at, at);
        if let Some(old) = old {
            self.expiry.remove(old, key);
        }
        if let Some(at) = at {
            self.expiry.insert(at, key);
        }
        true
    }

    /// Drops at most `budget` entries whose deadline is at or before `now`, soonest first; how
    /// many it dropped.
    pub fn purge(&mut self, now: u64, budget: usize) -> usize {
        let due = self.expiry.pop_due(now, budget);
        for key in &due {
            self.entries.remove(key);
        }
        due.len()
    }
}

/// Locks a shard. A handler that panicked while holding the lock left the shard consistent
/// (every change to it is one map or index call), so the poison is ignored.
#[dsu::updateable]
pub fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shard `key` lives in: FNV-1a of its bytes.
pub fn shard_index(key: &[u8]) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % SHARDS as u64) as usize
}

/// The database every connection task shares.
pub struct Db {
    pub shards: Box<[dsu::Cell<Mutex<Shard>>]>,
}

#[dsu::updateable]
impl Db {
    /// An empty database.
    pub fn new() -> Db {
        Db { shards: (0..SHARDS).map(|_| dsu::Cell::new(Mutex::new(Shard::default()))).collect() }
    }

    /// The shard cell of `key`.
    pub fn shard_of(&self, key: &[u8]) -> &dsu::Cell<Mutex<Shard>> {
        &self.shards[shard_index(key)]
    }

    /// How many entries, and how many of them have a deadline (expired ones not purged yet
    /// included, as Redis counts them).
    pub fn counts(&self) -> (usize, usize) {
        self.shards.iter().fold((0, 0), |(keys, expires), cell| {
            cell.with(|shard| {
                let shard = lock(shard);
                (keys + shard.entries.len(), expires + shard.expiry.len())
            })
        })
    }

    /// One step of active expiry: from each shard, batches of at most [`PURGE_BUDGET`] expired
    /// entries, taking the lock for each batch, until a batch comes back short (the shard has
    /// no more due) or the step has run for [`PURGE_STEP_LIMIT`]: as Redis's active expiry
    /// repeats while many keys are due, so a burst of expirations is gone in a few steps, not
    /// in 100 ms per 20 keys. An `async fn` so that the purge task's worker counts as running
    /// while it holds shards (an update waits for the step to end), though it never waits.
    #[tracing::instrument(level = "trace", skip(self))]
    pub async fn purge_step(&self, now: u64) -> usize {
        let started = std::time::Instant::now();
        let mut purged = 0;
        for cell in self.shards.iter() {
            loop {
                let n = cell.with(|shard| lock(shard).purge(now, PURGE_BUDGET));
                purged += n;
                if n < PURGE_BUDGET || started.elapsed() >= PURGE_STEP_LIMIT {
                    break;
                }
            }
        }
        purged
    }
}

impl Default for Db {
    fn default() -> Db {
        Db::new()
    }
}
