//! A transformer that fails halfway through a million entries: the old state is intact, field by
//! field, and nothing is leaked. Allocations are counted by this test binary's global allocator
//! (one test per binary, so nothing else allocates meanwhile).

use dsu::{Transform, TransformError};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counts live allocations and bytes.
struct Counting;

static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to `System`, counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BLOCKS.fetch_add(1, Ordering::SeqCst);
            LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BLOCKS.fetch_sub(1, Ordering::SeqCst);
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, forwarded.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::SeqCst);
        }
        p
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn live() -> (isize, isize) {
    (LIVE_BLOCKS.load(Ordering::SeqCst), LIVE_BYTES.load(Ordering::SeqCst))
}

mod dsu_old {
    #[dsu::updateable]
    pub struct Entry {
        pub name: String,
        pub hits: u64,
        pub score: Score,
        pub note: String,
    }

    #[dsu::updateable]
    pub struct Score {
        pub n: u64,
    }
}

/// `name` and `hits` carried, `score` transformed, `note` removed, `seen` new.
#[dsu::updateable]
pub struct Entry {
    pub name: String,
    pub hits: u64,
    pub score: Score,
    pub seen: Vec<u64>,
}

#[dsu::updateable]
pub struct Score {
    pub n: u64,
    pub label: String,
}

/// Score transforms so far; the one numbered `FAIL_AT` fails as `HOW` says (0: no failure, 1: an
/// error, 2: a panic).
static SCORES: AtomicUsize = AtomicUsize::new(0);
static FAIL_AT: AtomicUsize = AtomicUsize::new(usize::MAX);
static HOW: AtomicU64 = AtomicU64::new(0);

// SAFETY: a fresh value (a transformer function's).
unsafe impl Transform<dsu_old::Score> for Score {
    const FRESH: bool = true;
    unsafe fn transform(old: &dsu_old::Score) -> Result<Self, TransformError> {
        if SCORES.fetch_add(1, Ordering::SeqCst) == FAIL_AT.load(Ordering::SeqCst) {
            match HOW.load(Ordering::SeqCst) {
                1 => return Err(format!("score {} is out of range", old.n).into()),
                2 => panic!("score {} panicked", old.n),
                _ => {}
            }
        }
        Ok(Score { n: old.n, label: format!("#{}", old.n) })
    }
}

// What `cargo dsu patch` derives for `#[dsu::transform(from = dsu_old::Entry, default)]`.
// SAFETY: fields that keep their type are carried, the others are made; `release_old` frees what
// of the source the new value does not take, `release_new` what was made.
unsafe impl Transform<dsu_old::Entry> for Entry {
    unsafe fn transform(old: &dsu_old::Entry) -> Result<Self, TransformError> {
        // SAFETY: the caller settles the result; made fields are staged, carried ones copied last.
        unsafe {
            let score = dsu::__private::Staged::<dsu_old::Score, Score>::transform(&old.score)?;
            let seen: Vec<u64> = vec![0; 2];
            Ok(Entry {
                name: dsu::__private::carry(&old.name),
                hits: dsu::__private::carry(&old.hits),
                score: score.into_inner(),
                seen,
            })
        }
    }
    unsafe fn release_old(old: *mut dsu_old::Entry) {
        // SAFETY: the caller's contract: the value made from `old` is kept.
        unsafe {
            <Score as Transform<dsu_old::Score>>::release_old(std::ptr::addr_of_mut!((*old).score));
            std::ptr::drop_in_place(std::ptr::addr_of_mut!((*old).note));
        }
    }
    unsafe fn release_new(value: *mut Self) {
        // SAFETY: the caller's contract: `value` is discarded.
        unsafe {
            <Score as Transform<dsu_old::Score>>::release_new(std::ptr::addr_of_mut!((*value).score));
            std::ptr::drop_in_place(std::ptr::addr_of_mut!((*value).seen));
        }
    }
}

const N: u64 = 1_000_000;

type OldState = Mutex<HashMap<String, dsu_old::Entry>>;
type NewState = Mutex<HashMap<String, Entry>>;

fn old_state() -> OldState {
    Mutex::new(
        (0..N)
            .map(|i| {
                let name = format!("user-{i:07}");
                let entry = dsu_old::Entry {
                    name: name.clone(),
                    hits: i * 3,
                    score: dsu_old::Score { n: i },
                    note: format!("note {i}"),
                };
                (name, entry)
            })
            .collect(),
    )
}

/// Every old entry, field by field, as `old_state` made it.
fn check_intact(old: &OldState) {
    let old = old.lock().expect("the transform did not poison the lock");
    assert_eq!(old.len(), N as usize);
    for i in 0..N {
        let name = format!("user-{i:07}");
        let e = &old[&name];
        assert_eq!(e.name, name);
        assert_eq!(e.hits, i * 3);
        assert_eq!(e.score.n, i);
        assert_eq!(e.note, format!("note {i}"));
    }
}

/// Transforms `old`, failing at the score transform numbered `at` as `how` says; the error.
fn fail_at(old: &OldState, at: usize, how: u64) -> String {
    SCORES.store(0, Ordering::SeqCst);
    FAIL_AT.store(at, Ordering::SeqCst);
    HOW.store(how, Ordering::SeqCst);
    // SAFETY: an `Ok` would be settled (discarded), but none is expected.
    let r = std::panic::catch_unwind(|| unsafe { NewState::transform(old) });
    FAIL_AT.store(usize::MAX, Ordering::SeqCst);
    match r {
        Ok(Ok(new)) => {
            let mut new = std::mem::ManuallyDrop::new(new);
            // SAFETY: discarded, once.
            unsafe { <NewState as Transform<OldState>>::release_new(&mut *new) };
            panic!("the transform did not fail")
        }
        Ok(Err(e)) => e.0,
        Err(payload) => payload.downcast_ref::<String>().cloned().unwrap_or_default(),
    }
}

#[test]
fn a_transformer_failing_halfway_through_a_million_entries_changes_nothing_and_leaks_nothing() {
    // The default hook would print the panic into the test harness's captured output, which
    // keeps the allocation.
    std::panic::set_hook(Box::new(|_| {}));
    let old = old_state();

    // Once through, committed on a copy of the state, so everything the transform keeps in the
    // process for good (the thread count it reads once) is there before counting.
    let mut warm = std::mem::ManuallyDrop::new(old_state());
    // SAFETY: committed right below.
    let new = unsafe { NewState::transform(&warm) }.expect("no fault set");
    // SAFETY: `new` is kept; `warm` is released once.
    unsafe { <NewState as Transform<OldState>>::release_old(&mut *warm) };
    {
        let new = new.lock().unwrap();
        let e = &new["user-0000042"];
        assert_eq!((e.hits, e.score.n, e.score.label.as_str(), e.seen.len()), (126, 42, "#42", 2));
    }
    drop(new);

    for (how, expected) in [(1, "score"), (2, "panicked")] {
        let before = live();
        let why = fail_at(&old, N as usize / 2, how);
        assert!(why.contains(expected), "{why}");
        drop(why);
        // On several threads, the others stop at their next entry, and no further block of
        // entries (65,536) starts.
        let done = SCORES.load(Ordering::SeqCst);
        assert!((N as usize / 2 + 1..=N as usize / 2 + (1 << 16)).contains(&done), "it stopped halfway: {done}");
        assert_eq!(live(), before, "blocks and bytes allocated: everything made halfway is freed");
        check_intact(&old);
    }
}
