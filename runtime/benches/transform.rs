//! Transforming a state cell of 1,000,000 entries when `Entry` gains a field: the work an update
//! does for a type change (what `CellTransform::run` and `retire` do, through `Transform`), and
//! the memory the process holds afterwards. Figures in docs/PERFORMANCE.md.
//!
//! `Entry`'s transformer is the one `cargo dsu patch` derives for
//! `#[dsu::transform(from = dsu_old::Entry, default)]` (`cargo-dsu/src/compare/generate.rs`,
//! written out here): `name` and `hits` carried, `seen` from `Default`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dsu::{Transform, TransformError};
use std::collections::HashMap;
use std::hint::black_box;
use std::mem::ManuallyDrop;
use std::sync::Mutex;
use std::time::{Duration, Instant};

mod dsu_old {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u64,
    }
}

#[dsu::updateable]
pub struct Entry {
    pub name: String,
    pub hits: u64,
    pub seen: bool,
}

// What `cargo dsu patch` generates for the change (see the module doc).
// SAFETY: fields that keep their type are carried (moved bitwise), the others are made;
// `release_old` frees what of the source the new value does not take (nothing here),
// `release_new` what was made; neither drops a value whole.
unsafe impl Transform<dsu_old::Entry> for Entry {
    unsafe fn transform(old: &dsu_old::Entry) -> Result<Self, TransformError> {
        // SAFETY: the caller settles the result; the carried fields are copied last.
        unsafe {
            let seen: bool = Default::default();
            Ok(Entry { name: dsu::__private::carry(&old.name), hits: dsu::__private::carry(&old.hits), seen })
        }
    }
    unsafe fn release_old(old: *mut dsu_old::Entry) {
        let _ = old;
    }
    unsafe fn release_new(value: *mut Self) {
        // SAFETY: the caller's contract: `value` is discarded.
        unsafe { std::ptr::drop_in_place(std::ptr::addr_of_mut!((*value).seen)) }
    }
}

/// A copying transformer, as a `#[dsu::transform(from = dsu_old::Entry)]` function writes one:
/// every name cloned (what every transform did before values moved).
#[allow(dead_code)] // Built to be measured, never read.
pub struct Copied(Entry);

// SAFETY: a fresh value, dropped whole either way.
unsafe impl Transform<dsu_old::Entry> for Copied {
    const FRESH: bool = true;
    unsafe fn transform(old: &dsu_old::Entry) -> Result<Self, TransformError> {
        Ok(Copied(Entry { name: old.name.clone(), hits: old.hits, seen: false }))
    }
}

const N: usize = 1_000_000;

type Old = Mutex<HashMap<String, dsu_old::Entry>>;

fn old_state() -> Old {
    Mutex::new(
        (0..N)
            .map(|i| {
                let name = format!("user-{i:07}");
                (name.clone(), dsu_old::Entry { name, hits: i as u64 })
            })
            .collect(),
    )
}

/// What a run measures: the wall-clock time the update takes (the pause), or the CPU time the
/// process spends on it (on this shared machine, other work stretches the first and not the
/// second).
#[derive(Clone, Copy)]
enum Clock {
    Wall,
    Cpu,
}

impl Clock {
    fn now(self) -> Duration {
        match self {
            Clock::Wall => EPOCH.get_or_init(Instant::now).elapsed(),
            Clock::Cpu => process_cpu_time(),
        }
    }
}

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// CPU time of the whole process (the transforming thread and any it starts).
fn process_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_PROCESS_CPUTIME_ID: i32 = 2;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid `struct timespec` (two 64-bit fields on x86-64 Linux) for the call
    // to fill.
    let r = unsafe { clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime");
    Duration::new(ts.sec as u64, ts.nsec as u32)
}

/// Transforms a fresh old state into `New` and commits (the old value retired), `iters` times;
/// the time of the transform alone, or with the retire, on `clock`.
fn transform_and_commit<New: Transform<Old>>(iters: u64, with_retire: bool, clock: Clock) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut old = ManuallyDrop::new(old_state());
        let start = clock.now();
        // SAFETY: committed right below: the old value is released and not used again.
        let new = unsafe { New::transform(&old) }.expect("the transform succeeds");
        let transformed = clock.now() - start;
        // SAFETY: `new` is kept; `old` is released once.
        unsafe { New::release_old(&mut *old) };
        total += if with_retire { clock.now() - start } else { transformed };
        drop(black_box(new));
    }
    total
}

/// Resident memory, in MiB (`/proc/self/statm`).
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux");
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("statm");
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// Resident memory before the state, with the old state, and after the update committed (the
/// old value retired); printed once, for docs/PERFORMANCE.md.
fn report_memory() {
    let base = resident_mib();
    let mut old = ManuallyDrop::new(old_state());
    let with_old = resident_mib();
    // SAFETY: committed right below.
    let new = unsafe { <Mutex<HashMap<String, Entry>>>::transform(&old) }.expect("the transform succeeds");
    let both = resident_mib();
    // SAFETY: `new` is kept; `old` is released once.
    unsafe { <Mutex<HashMap<String, Entry>> as Transform<Old>>::release_old(&mut *old) };
    let after = resident_mib();
    eprintln!(
        "resident memory (MiB): before the state {base:.0}; old state {:.0}; old and new before the \
         commit {:.0}; after the commit, old value retired {:.0}",
        with_old - base,
        both - base,
        after - base
    );
    drop(new);
}

type New = Mutex<HashMap<String, Entry>>;

/// Three state cells of the old state, one per measured update (an update consumes its cell's
/// old type), and the transform a patch would carry for each.
static STORES: [dsu::State<Old>; 3] = [
    dsu::State::new("bench-store-0", old_state),
    dsu::State::new("bench-store-1", old_state),
    dsu::State::new("bench-store-2", old_state),
];
static UPS: [dsu::CellTransform; 3] = [
    dsu::CellTransform::new::<Old, New>("bench-store-0"),
    dsu::CellTransform::new::<Old, New>("bench-store-1"),
    dsu::CellTransform::new::<Old, New>("bench-store-2"),
];

/// The pause of a whole update through the update protocol (`dsu::status()`'s record of it: from
/// the start of applying until the program resumed; the only thread here applies it), three
/// times, each on a fresh cell; printed once, for docs/PERFORMANCE.md.
fn report_update_pause() {
    let mut pauses = Vec::new();
    for (store, up) in STORES.iter().zip(&UPS) {
        store.with(|s| assert_eq!(s.lock().unwrap().len(), N));
        let round = dsu::__private::queue_cell_transforms(vec![up], Vec::new());
        dsu::__private::wait_for_round(round).expect("the update applies");
        let status = dsu::status().expect("status");
        pauses.push(status.applied.last().expect("the update is recorded").pause);
    }
    eprintln!("update pause, 1,000,000 entries through the update protocol: {pauses:?}");
}

fn transform_million(c: &mut Criterion) {
    report_update_pause();
    report_memory();
    let mut g = c.benchmark_group("transform");
    g.sample_size(10).measurement_time(Duration::from_secs(20)).throughput(Throughput::Elements(N as u64));
    type Moved = New;
    for (clock, suffix) in [(Clock::Wall, ""), (Clock::Cpu, "/cpu")] {
        g.bench_function(format!("hashmap_1m_entry_gains_a_field{suffix}"), |b| {
            b.iter_custom(|iters| transform_and_commit::<Moved>(iters, false, clock))
        });
        g.bench_function(format!("hashmap_1m_entry_gains_a_field_and_retire{suffix}"), |b| {
            b.iter_custom(|iters| transform_and_commit::<Moved>(iters, true, clock))
        });
        g.bench_function(format!("hashmap_1m_copying_transformer{suffix}"), |b| {
            b.iter_custom(|iters| transform_and_commit::<Mutex<HashMap<String, Copied>>>(iters, false, clock))
        });
    }
    g.finish();
}

criterion_group!(benches, transform_million);
criterion_main!(benches);
