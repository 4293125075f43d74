//! Memory over many updates: 1,000 type-changing updates of a small cell in a row (a named cell
//! and a field cell, each holding a 4 KiB value, alternating between two types), through the
//! update protocol. Once an update commits, the old values and their versions are freed, so
//! resident memory stays flat; a leak of the old values would add 8 KiB per update, 8 MB over the
//! run. Measured twice: resident memory (`/proc/self/statm`), and the bytes live on the heap
//! (a counting allocator) after each update, against an update that changes nothing, which tells
//! the cells' memory from the runtime's record of each update (its history entry and the undo
//! entry a rollback uses, kept by design). Also the time one such update takes, and what creating
//! and dropping a field cell costs. Figures and the command in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion};
use dsu::{CellTransform, Transform, TransformError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};
use std::time::Duration;

/// The system allocator, counting the bytes live.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Bytes of the value each cell holds.
const SIZE: usize = 4096;

mod a {
    #[dsu::updateable]
    pub struct Blob {
        pub bytes: Vec<u8>,
    }
}

mod b {
    #[dsu::updateable]
    pub struct Blob {
        pub bytes: Vec<u8>,
        pub generation: u64,
    }
}

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<a::Blob> for b::Blob {
    const FRESH: bool = true;
    unsafe fn transform(old: &a::Blob) -> Result<Self, TransformError> {
        Ok(b::Blob { bytes: old.bytes.clone(), generation: 1 })
    }
}

// SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
// both sides are dropped whole (`FRESH`).
unsafe impl Transform<b::Blob> for a::Blob {
    const FRESH: bool = true;
    unsafe fn transform(old: &b::Blob) -> Result<Self, TransformError> {
        Ok(a::Blob { bytes: old.bytes.clone() })
    }
}

static NAMED: dsu::State<a::Blob> = dsu::State::new("bench-blob", || a::Blob { bytes: vec![7; SIZE] });

static NAMED_AB: CellTransform = CellTransform::new::<a::Blob, b::Blob>("bench-blob");
static NAMED_BA: CellTransform = CellTransform::new::<b::Blob, a::Blob>("bench-blob");
static FIELD_AB: CellTransform = CellTransform::field::<a::Blob, b::Blob>("b::Blob");
static FIELD_BA: CellTransform = CellTransform::field::<b::Blob, a::Blob>("a::Blob");

/// Applies one update, changing both cells to the other type; `to_b` says which way.
fn update(to_b: bool) {
    let cells = if to_b { vec![&NAMED_AB, &FIELD_AB] } else { vec![&NAMED_BA, &FIELD_BA] };
    let round = dsu::__private::queue_cell_transforms(cells, Vec::new());
    dsu::__private::wait_for_round(round).expect("the update applies");
}

/// The value that occurs most often in `v`.
fn most_common(v: &[isize]) -> isize {
    let mut counts = std::collections::HashMap::new();
    for x in v {
        *counts.entry(*x).or_insert(0) += 1;
    }
    counts.into_iter().max_by_key(|&(_, n)| n).map(|(x, _)| x).unwrap_or(0)
}

/// Resident memory, in KiB, from `/proc/self/statm` (its second field, in pages).
fn resident_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("resident pages");
    pages * 4
}

fn memory_over_updates(c: &mut Criterion) {
    NAMED.with(|_| ());
    let field = dsu::Cell::new(a::Blob { bytes: vec![9; SIZE] });
    let mut to_b = true;
    // Warm up: the allocator's pools, the runtime's tables, the history's first growth.
    for _ in 0..100 {
        update(to_b);
        to_b = !to_b;
    }
    let (before, live_before) = (resident_kib(), LIVE.load(Relaxed));
    // Each type-changing update is followed by an update that changes nothing (no cell, no
    // code): the runtime records both alike, so the difference between their heap growth is what
    // the cells keep of an update. Growth is taken per update, and its most common value kept
    // (an update that grows a record's vector allocates more once).
    let (mut changing, mut empty) = (Vec::new(), Vec::new());
    let mut live_half = 0;
    for i in 0..1000 {
        if i == 500 {
            live_half = LIVE.load(Relaxed);
        }
        let at = LIVE.load(Relaxed);
        update(to_b);
        to_b = !to_b;
        let mid = LIVE.load(Relaxed);
        let round = dsu::__private::queue_cell_transforms(Vec::new(), Vec::new());
        dsu::__private::wait_for_round(round).expect("the update applies");
        changing.push(mid - at);
        empty.push(LIVE.load(Relaxed) - mid);
    }
    let (after, live_after) = (resident_kib(), LIVE.load(Relaxed));
    let history = dsu::status().expect("status").applied.len();
    let (changing, empty) = (most_common(&changing), most_common(&empty));
    println!(
        "memory/1000_type_changing_updates: resident {before} KiB before, {after} KiB after \
         ({:+} KiB, {history} updates in the history); heap {:+} B; per update, most often: \
         {changing:+} B for a type change of both cells, {empty:+} B for an update that changes \
         nothing; leaking the old values would add {} B per update",
        after as i64 - before as i64,
        live_after - live_before,
        2 * SIZE
    );
    // Flat: over the second half (the runtime's bounded records full by then), what stays on the
    // heap per pair of updates is bytes, not the 8 KiB a leak of the old values would keep.
    let per_update = (live_after as i64 - live_half as i64) / 1000;
    println!("memory/1000_type_changing_updates: heap per update over the last 500 pairs: {per_update:+} B");
    assert!(per_update.abs() < 64, "the heap grows by {per_update} B per update");
    // Each cell still holds its value, of the type the last update left.
    let len = if to_b { field.with(|v| v.bytes.len()) } else { field_as_b(&field).with(|v| v.bytes.len()) };
    assert_eq!(len, SIZE);

    let mut g = c.benchmark_group("update");
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("type_change_two_small_cells", |bench| {
        bench.iter(|| {
            update(to_b);
            to_b = !to_b;
        })
    });
    g.finish();
}

/// The field cell as code compiled for `b::Blob` sees it.
fn field_as_b(cell: &dsu::Cell<a::Blob>) -> &dsu::Cell<b::Blob> {
    // SAFETY: `dsu::Cell` is `repr(transparent)` over its record pointer whatever its value type,
    // which is checked at every access.
    unsafe { &*(cell as *const dsu::Cell<a::Blob> as *const dsu::Cell<b::Blob>) }
}

/// What registering a field cell costs: creating one (its value, version and record, and the
/// push into the registry under its lock) and dropping it (the swap-remove, then the value).
fn create_and_drop(c: &mut Criterion) {
    let mut g = c.benchmark_group("cell");
    g.bench_function("field_cell_new_and_drop", |bench| {
        bench.iter(|| drop(std::hint::black_box(dsu::Cell::new(std::sync::atomic::AtomicU64::new(1)))))
    });
    g.bench_function("box_new_and_drop", |bench| {
        bench.iter(|| drop(std::hint::black_box(Box::new(std::sync::atomic::AtomicU64::new(1)))))
    });
    g.finish();
}

criterion_group!(benches, memory_over_updates, create_and_drop);
criterion_main!(benches);
