//! Freeing what an update replaced, after the program has resumed.
//!
//! Once an update has installed its new values, the old ones are unreachable: no thread was
//! inside a cell scope while the applier ran, and every later access reads the new version
//! (`update.rs`, `transform_cells`). Freeing them (a million-entry map's table and whatever of
//! its entries the new values did not take) can take a tenth of the update's work, so it is done
//! off the pause: the applier hands the old versions to one thread of the runtime, `dsu-retire`,
//! and the parked threads resume at once. A caller that waits for its update
//! (`dsu::load_and_apply`, `LoadReport::wait`, `dsu::rollback_and_wait`) also waits until the
//! round's old values are freed, so what it observes afterwards (memory, drops) is settled.

use crate::cell::{field, Version};
use crate::transform::CellTransform;
use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

/// Old versions of one update round, with the transform that read each.
type Batch = Vec<(&'static CellTransform, Box<Version>)>;

struct Queue {
    batches: VecDeque<(u64, Batch)>,
    /// The round whose batch is being freed now.
    busy: Option<u64>,
    /// Whether `dsu-retire` runs.
    started: bool,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { batches: VecDeque::new(), busy: None, started: false });
/// Signalled when a batch arrives and when one is freed.
static CHANGED: Condvar = Condvar::new();

fn queue() -> std::sync::MutexGuard<'static, Queue> {
    QUEUE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees `batch`, the old versions round `round` replaced, on `dsu-retire` (or here, if that
/// thread cannot be started).
pub(crate) fn later(round: u64, batch: Batch) {
    if batch.is_empty() {
        return;
    }
    let mut q = queue();
    if !q.started {
        let spawned = std::thread::Builder::new().name("dsu-retire".into()).spawn(run);
        if spawned.is_err() {
            drop(q);
            now(batch);
            return;
        }
        q.started = true;
    }
    q.batches.push_back((round, batch));
    CHANGED.notify_all();
}

fn run() {
    loop {
        let (round, batch) = {
            let mut q = queue();
            loop {
                if let Some(next) = q.batches.pop_front() {
                    q.busy = Some(next.0);
                    break next;
                }
                q = CHANGED.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        now(batch);
        let mut q = queue();
        if q.busy == Some(round) {
            q.busy = None;
        }
        CHANGED.notify_all();
    }
}

/// Frees `batch` here, on the calling thread.
pub(crate) fn now(batch: Batch) {
    for (ct, old) in batch {
        field::retire(ct, old);
    }
}

/// Waits until every old value that rounds up to `round` replaced is freed.
pub(crate) fn wait(round: u64) {
    let mut q = queue();
    while q.busy.is_some_and(|r| r <= round) || q.batches.iter().any(|(r, _)| *r <= round) {
        q = CHANGED.wait(q).unwrap_or_else(|e| e.into_inner());
    }
}
