//! The snapshot a graceful restart goes through: every live entry, its value and deadline,
//! written to a file at shutdown and read back at start.
//!
//! Format: `KVSNAP1\n`, then per entry `key length (u32 LE) | key | value length (u32 LE) |
//! value | deadline (u64 LE, 0 for none)`, then the entry count (u64 LE) as a check that the
//! file is whole.

use crate::db::{lock, now_ms, shard_index, Db, Entry, SHARDS};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"KVSNAP1\n";

/// Writes every live entry of `db` to `path`, atomically: into `path.tmp`, synced, then renamed
/// over `path`. How many entries it wrote.
#[dsu::updateable]
#[tracing::instrument(skip(db))]
pub async fn save(db: &Db, path: &Path) -> io::Result<u64> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(MAGIC)?;
    let now = now_ms();
    let mut count = 0u64;
    for cell in db.shards.iter() {
        cell.with(|shard| -> io::Result<()> {
            let shard = lock(shard);
            for (key, entry) in &shard.entries {
                if entry.expires_at.is_some_and(|at| at <= now) {
                    continue;
                }
                w.write_all(&(key.len() as u32).to_le_bytes())?;
                w.write_all(key)?;
                w.write_all(&(entry.value.len() as u32).to_le_bytes())?;
                w.write_all(&entry.value)?;
                w.write_all(&entry.expires_at.unwrap_or(0).to_le_bytes())?;
                count += 1;
            }
            Ok(())
        })?;
    }
    w.write_all(&count.to_le_bytes())?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(count)
}

/// Loads the snapshot at `path` into `db`, skipping entries that expired meanwhile. How many
/// entries it loaded. A file that is not a whole snapshot is an `InvalidData` error naming what
/// is wrong, and `db` may then hold part of it.
#[dsu::updateable]
#[tracing::instrument(skip(db))]
pub fn load(db: &Db, path: &Path) -> io::Result<u64> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()));
    let mut data = Vec::new();
    BufReader::new(std::fs::File::open(path)?).read_to_end(&mut data)?;
    let body = data.strip_prefix(MAGIC.as_slice()).ok_or_else(|| bad("not a kv snapshot"))?;
    if body.len() < 8 {
        return Err(bad("truncated"));
    }
    let (mut rest, count) = body.split_at(body.len() - 8);
    let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
    let now = now_ms();
    // Sorted by shard first, so each shard is locked once and its map grown once.
    let mut by_shard: Vec<Vec<(Vec<u8>, Entry)>> = (0..SHARDS).map(|_| Vec::new()).collect();
    let mut read = 0u64;
    while !rest.is_empty() {
        let key = field(&mut rest).ok_or_else(|| bad("truncated key"))?.to_vec();
        let value = field(&mut rest).ok_or_else(|| bad("truncated value"))?.to_vec();
        let at = take(&mut rest, 8).ok_or_else(|| bad("truncated deadline"))?;
        let at = u64::from_le_bytes(at.try_into().expect("8 bytes"));
        read += 1;
        if at != 0 && at <= now {
            continue;
        }
        let expires_at = (at != 0).then_some(at);
        by_shard[shard_index(&key)].push((key, Entry::new(value, expires_at)));
    }
    let mut loaded = 0u64;
    for (cell, entries) in db.shards.iter().zip(by_shard) {
        loaded += entries.len() as u64;
        cell.with(|shard| {
            let mut shard = lock(shard);
            shard.entries.reserve(entries.len());
            for (key, entry) in entries {
                shard.insert(&key, entry);
            }
        });
    }
    if read != count {
        return Err(bad(&format!("{read} entries where the trailer says {count}")));
    }
    Ok(loaded)
}

/// The first `n` bytes of `rest`, which moves past them.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

/// A length-prefixed field (u32 LE length, then the bytes).
fn field<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(rest, 4)?.try_into().ok()?);
    take(rest, len as usize)
}
