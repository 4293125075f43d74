//! Transforms move without taking: carried parts are not copied, and each way of settling frees
//! every part exactly once. Values are `Tracked`: a ledger counts them made and dropped, and
//! records a second drop of one, so a test sees a double drop or a leak as a number.

use super::build::TEST_PER_THREAD;
use super::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, LinkedList, VecDeque};
use std::hash::{Hash, Hasher};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Counts the values of one test, and says where its tag transforms fail.
#[derive(Default)]
struct Ledger {
    fault: Mutex<Fault>,
    made: AtomicUsize,
    dropped: Mutex<HashSet<u64>>,
    twice: AtomicUsize,
    next: AtomicUsize,
}

impl Ledger {
    fn new() -> Arc<Ledger> {
        Arc::new(Ledger::default())
    }

    fn make(self: &Arc<Self>) -> Tracked {
        self.made.fetch_add(1, Ordering::SeqCst);
        let id = self.next.fetch_add(1, Ordering::SeqCst) as u64;
        Tracked { id, ledger: Arc::clone(self) }
    }

    /// Values made and not dropped.
    fn live(&self) -> usize {
        self.made.load(Ordering::SeqCst) - self.dropped.lock().unwrap().len()
    }

    /// Values dropped more than once.
    fn twice(&self) -> usize {
        self.twice.load(Ordering::SeqCst)
    }
}

/// A value with an owner: its drop is recorded in its ledger.
struct Tracked {
    id: u64,
    ledger: Arc<Ledger>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if !self.ledger.dropped.lock().unwrap().insert(self.id) {
            self.ledger.twice.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for Tracked {}
impl Hash for Tracked {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}
impl PartialOrd for Tracked {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Tracked {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

// SAFETY: an unchanged type: it moves whole, as `#[dsu::updateable]`'s identity does.
unsafe impl Transform<Tracked> for Tracked {
    const IDENTITY: bool = true;
    unsafe fn transform(old: &Tracked) -> Result<Self, TransformError> {
        // SAFETY: the caller settles the move; the releases do nothing.
        Ok(unsafe { carry(old) })
    }
    unsafe fn release_old(_: *mut Tracked) {}
    unsafe fn release_new(_: *mut Tracked) {}
}

/// The old entry: `gone` is removed by the change, `tag` changes type.
struct OldEntry {
    name: Tracked,
    hits: u64,
    tag: OldTag,
    gone: Tracked,
}

struct OldTag {
    n: u64,
    ledger: Arc<Ledger>,
}

/// The new entry: `name` and `hits` are carried, `tag` transformed, `seen` new.
struct NewEntry {
    name: Tracked,
    hits: u64,
    tag: NewTag,
    seen: Tracked,
}

struct NewTag {
    n: u64,
    made: Tracked,
}

/// What the tag transform of entry `n` does: fail (an error) or panic at one `n`.
#[derive(Clone, Copy, Default)]
enum Fault {
    #[default]
    None,
    ErrAt(u64),
    PanicAt(u64),
}

// SAFETY: a fresh value: nothing of the old tag is taken (dropped whole either way).
unsafe impl Transform<OldTag> for NewTag {
    const FRESH: bool = true;
    unsafe fn transform(old: &OldTag) -> Result<Self, TransformError> {
        let fault = *old.ledger.fault.lock().unwrap();
        match fault {
            Fault::ErrAt(at) if at == old.n => return Err(format!("no tag for {at}").into()),
            Fault::PanicAt(at) if at == old.n => panic!("tag {at} panicked"),
            _ => {}
        }
        Ok(NewTag { n: old.n, made: old.ledger.make() })
    }
}

/// A derived transformer as `cargo dsu patch` writes one (`compare/generate.rs`): transformed and
/// new fields first, staged, then the carried ones.
// SAFETY: `name` and `hits` are carried, `tag` transformed, `seen` new: `release_old` releases
// `tag` and drops `gone` (what the new value does not take); `release_new` releases what was
// made.
unsafe impl Transform<OldEntry> for NewEntry {
    unsafe fn transform(old: &OldEntry) -> Result<Self, TransformError> {
        // SAFETY: settled with the entry; released if a later field fails.
        let tag = unsafe { Staged::<OldTag, NewTag>::transform(&old.tag)? };
        let seen = old.name.ledger.make();
        Ok(NewEntry {
            tag: tag.into_inner(),
            seen,
            // SAFETY: carried; settled with the entry.
            name: unsafe { carry(&old.name) },
            hits: unsafe { carry(&old.hits) },
        })
    }

    unsafe fn release_old(old: *mut OldEntry) {
        // SAFETY: committed: the new entry took `name` and `hits`.
        unsafe {
            <NewTag as Transform<OldTag>>::release_old(std::ptr::addr_of_mut!((*old).tag));
            std::ptr::drop_in_place(std::ptr::addr_of_mut!((*old).gone));
        }
    }

    unsafe fn release_new(new: *mut Self) {
        // SAFETY: discarded: `tag` and `seen` were made; the old entry keeps `name`.
        unsafe {
            <NewTag as Transform<OldTag>>::release_new(std::ptr::addr_of_mut!((*new).tag));
            std::ptr::drop_in_place(std::ptr::addr_of_mut!((*new).seen));
        }
    }
}

fn old_entry(ledger: &Arc<Ledger>, n: u64) -> OldEntry {
    OldEntry { name: ledger.make(), hits: n * 10, tag: OldTag { n, ledger: Arc::clone(ledger) }, gone: ledger.make() }
}

/// Checks an old entry made by `old_entry(_, n)` is as it was.
fn check_old(e: &OldEntry, n: u64) {
    assert_eq!(e.hits, n * 10);
    assert_eq!(e.tag.n, n);
    assert_ne!(e.name.id, e.gone.id);
    assert!(Arc::ptr_eq(&e.name.ledger, &e.gone.ledger));
}

/// Transforms `old` into `New` and commits: the old value released, the new one dropped.
fn commit<Old, New: Transform<Old>>(old: Old) -> New {
    let mut old = ManuallyDrop::new(old);
    // SAFETY: settled right below, as a commit.
    let new = unsafe { New::transform(&old) }.unwrap_or_else(|e| panic!("transform failed: {e}"));
    // SAFETY: `new` is kept; `old` is not used again.
    unsafe { New::release_old(&mut *old) };
    new
}

/// Transforms `old` into `New` and aborts: the new value released, the old one returned.
fn abort<Old, New: Transform<Old>>(old: Old) -> Old {
    // SAFETY: settled right below, as an abort.
    let new = unsafe { New::transform(&old) }.unwrap_or_else(|e| panic!("transform failed: {e}"));
    let mut new = ManuallyDrop::new(new);
    // SAFETY: `new` is discarded and not used again.
    unsafe { New::release_new(&mut *new) };
    old
}

/// Transforms `old` with a fault in `ledger`'s tags, which must stop it: returns the error (a
/// panic's message).
fn failing<Old, New: Transform<Old>>(ledger: &Ledger, old: &Old, with: Fault) -> String {
    *ledger.fault.lock().unwrap() = with;
    // SAFETY: an `Ok` would be settled, but none is expected.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { New::transform(old) }));
    *ledger.fault.lock().unwrap() = Fault::None;
    match r {
        Ok(Ok(new)) => {
            let mut new = ManuallyDrop::new(new);
            // SAFETY: discarded.
            unsafe { New::release_new(&mut *new) };
            panic!("the transform did not stop at the fault")
        }
        Ok(Err(e)) => e.0,
        Err(payload) => panic_message(&*payload),
    }
}

fn entries(ledger: &Arc<Ledger>, n: u64) -> Vec<OldEntry> {
    (0..n).map(|i| old_entry(ledger, i)).collect()
}

#[test]
fn commit_frees_only_what_the_new_value_did_not_take() {
    let ledger = Ledger::new();
    let old = entries(&ledger, 100);
    let names: Vec<u64> = old.iter().map(|e| e.name.id).collect();
    assert_eq!(ledger.live(), 200);
    let new: Vec<NewEntry> = commit(old);
    // `gone` dropped (100), `tag.made` and `seen` made (200): names carried, not copied.
    assert_eq!(ledger.live(), 300);
    assert_eq!(new.iter().map(|e| e.name.id).collect::<Vec<_>>(), names);
    assert_eq!(new[7].hits, 70);
    assert_eq!(new[7].tag.n, 7);
    drop(new);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

#[test]
fn abort_frees_only_what_the_transform_made() {
    let ledger = Ledger::new();
    let old = entries(&ledger, 100);
    let old = abort::<_, Vec<NewEntry>>(old);
    assert_eq!(ledger.live(), 200);
    for (i, e) in old.iter().enumerate() {
        check_old(e, i as u64);
    }
    drop(old);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

/// Every container, with a fault in the middle (an error, then a panic), on one thread and on
/// four: the old value is as it was, and everything made is freed once.
#[test]
fn a_fault_halfway_leaves_the_old_value_and_frees_what_was_made() {
    fn case<Old, New: Transform<Old>>(what: &str, make: impl Fn(&Arc<Ledger>) -> Old, check: impl Fn(&Old)) {
        for threads in [1, 4] {
            TEST_PER_THREAD.with(|t| t.set(Some((8, threads))));
            for fault in [Fault::ErrAt(50), Fault::PanicAt(50)] {
                let ledger = Ledger::new();
                let old = make(&ledger);
                let live = ledger.live();
                let why = failing::<Old, New>(&ledger, &old, fault);
                assert!(why.contains("50"), "{what}: {why}");
                assert_eq!(ledger.live(), live, "{what} on {threads} threads: what was made is freed");
                check(&old);
                drop(old);
                assert_eq!((ledger.live(), ledger.twice()), (0, 0), "{what} on {threads} threads");
            }
            TEST_PER_THREAD.with(|t| t.set(None));
        }
    }
    /// Each of the 100 entries, found by `n`, is as it was.
    fn check_all<'a>(find: &dyn Fn(u64) -> Option<&'a OldEntry>) {
        for n in 0..100 {
            check_old(find(n).expect("every entry is still there"), n);
        }
    }
    case::<Vec<OldEntry>, Vec<NewEntry>>("Vec", |l| entries(l, 100), |v| check_all(&|n| v.get(n as usize)));
    case::<VecDeque<OldEntry>, VecDeque<NewEntry>>(
        "VecDeque",
        |l| {
            // Wrapped around: the two halves of the ring.
            let mut d: VecDeque<OldEntry> = entries(l, 60).into();
            for e in (60..100).map(|n| old_entry(l, n)) {
                d.push_front(e);
            }
            d
        },
        |d| check_all(&|n| d.iter().find(|e| e.tag.n == n)),
    );
    case::<HashMap<String, OldEntry>, HashMap<String, NewEntry>>(
        "HashMap",
        |l| (0..100).map(|n| (format!("k{n}"), old_entry(l, n))).collect(),
        |m| check_all(&|n| m.get(&format!("k{n}"))),
    );
    case::<BTreeMap<u64, OldEntry>, BTreeMap<u64, NewEntry>>(
        "BTreeMap",
        |l| (0..100).map(|n| (n, old_entry(l, n))).collect(),
        |m| check_all(&|n| m.get(&n)),
    );
    case::<Mutex<Vec<Option<Box<OldEntry>>>>, Mutex<Vec<Option<Box<NewEntry>>>>>(
        "Mutex<Vec<Option<Box>>>",
        |l| Mutex::new(entries(l, 100).into_iter().map(|e| Some(Box::new(e))).collect()),
        |m| {
            assert!(!m.is_poisoned());
            let v = m.lock().unwrap();
            check_all(&|n| v[n as usize].as_deref())
        },
    );
    case::<LinkedList<(Tracked, OldEntry)>, LinkedList<(Tracked, NewEntry)>>(
        "LinkedList of tuples",
        |l| entries(l, 100).into_iter().map(|e| (l.make(), e)).collect(),
        |list| check_all(&|n| list.iter().map(|(_, e)| e).find(|e| e.tag.n == n)),
    );
    case::<Arc<RwLock<[OldEntry; 100]>>, Arc<RwLock<[NewEntry; 100]>>>(
        "Arc<RwLock<array>>",
        |l| Arc::new(RwLock::new(std::array::from_fn(|n| old_entry(l, n as u64)))),
        |a| {
            let a = a.read().unwrap();
            check_all(&|n| a.get(n as usize))
        },
    );
}

/// The keys of a map are carried: the new map's keys are the old map's, not copies; so are
/// unchanged fields.
#[test]
fn keys_and_unchanged_fields_are_not_copied() {
    let ledger = Ledger::new();
    let n = if cfg!(miri) { 100 } else { 1000 };
    let old: HashMap<String, OldEntry> = (0..n).map(|n| (format!("key-{n}"), old_entry(&ledger, n))).collect();
    let key_bytes: HashMap<String, usize> = old.keys().map(|k| (k.clone(), k.as_ptr() as usize)).collect();
    let new: HashMap<String, NewEntry> = commit(old);
    for (k, e) in &new {
        assert_eq!(k.as_ptr() as usize, key_bytes[k], "key {k} was copied");
        assert_eq!(e.hits, e.tag.n * 10);
    }
    assert_eq!(new.len(), n as usize);
    drop(new);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

/// On several threads: a map large enough to sample the transform's cost and a forced parallel
/// vector both produce every entry, in order for the vector.
#[test]
fn large_collections_on_several_threads() {
    TEST_PER_THREAD.with(|t| t.set(Some((64, 4))));
    let ledger = Ledger::new();
    let old = entries(&ledger, 1000);
    let new: Vec<NewEntry> = commit(old);
    assert!(new.iter().enumerate().all(|(i, e)| e.tag.n == i as u64 && e.tag.made.id != e.seen.id));
    drop(new);
    let n = if cfg!(miri) { 500 } else { 20_000 };
    let old: HashMap<u64, OldEntry> = (0..n).map(|n| (n, old_entry(&ledger, n))).collect();
    let new: HashMap<u64, NewEntry> = commit(old);
    assert!(new.iter().all(|(k, e)| e.tag.n == *k && e.hits == k * 10));
    TEST_PER_THREAD.with(|t| t.set(None));
    drop(new);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

/// An unchanged container moves whole: one copy of its handle, whatever it holds; an `Arc`
/// keeps its counts (its other holders share the new value's content).
#[test]
fn unchanged_values_move_whole() {
    let ledger = Ledger::new();
    let v: Vec<Tracked> = (0..10).map(|_| ledger.make()).collect();
    let at = v.as_ptr();
    let v: Vec<Tracked> = commit(v);
    assert_eq!(v.as_ptr(), at);
    let m: Mutex<HashMap<Tracked, Vec<Tracked>>> = Mutex::new(v.into_iter().map(|k| (k, vec![ledger.make()])).collect());
    let m: Mutex<HashMap<Tracked, Vec<Tracked>>> = commit(m);
    assert_eq!(m.lock().unwrap().len(), 10);
    let shared = Arc::new(ledger.make());
    let elsewhere = Arc::clone(&shared);
    let moved: Arc<Tracked> = commit(shared);
    assert!(Arc::ptr_eq(&moved, &elsewhere));
    assert_eq!(Arc::strong_count(&elsewhere), 2);
    drop((m, moved, elsewhere));
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
    const { assert!(<Vec<Option<(String, u64)>> as Transform<Vec<Option<(String, u64)>>>>::IDENTITY) };
    const { assert!(!<Vec<NewEntry> as Transform<Vec<OldEntry>>>::IDENTITY) };
}

/// An `Arc` whose content changes can give its parts to the new value only if no one else can
/// reach the old content: shared, it is refused (nothing changes) unless the transformer makes
/// fresh values.
#[test]
fn a_shared_arc_gives_its_parts_only_to_fresh_values() {
    let ledger = Ledger::new();
    let old = Arc::new(old_entry(&ledger, 1));
    let other = Arc::clone(&old);
    let why = failing::<Arc<OldEntry>, Arc<NewEntry>>(&ledger, &old, Fault::None);
    assert!(why.contains("shared (2 strong and 0 weak references)"), "{why}");
    let weak = Arc::downgrade(&old);
    drop(other);
    let why = failing::<Arc<OldEntry>, Arc<NewEntry>>(&ledger, &old, Fault::None);
    assert!(why.contains("shared (1 strong and 1 weak references)"), "{why}");
    drop(weak);
    let new: Arc<NewEntry> = commit(old);
    assert_eq!(new.tag.n, 1);
    drop(new);

    // A fresh transformer: the other holder keeps the old content alive, whole.
    let old = Arc::new(ledger.make());
    let other = Arc::clone(&old);
    let new: Arc<Copied> = commit(old);
    assert_eq!(new.0, other.id);
    assert_eq!(Arc::strong_count(&other), 1);
    drop((new, other));
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

struct Copied(u64);
// SAFETY: a fresh value.
unsafe impl Transform<Tracked> for Copied {
    const FRESH: bool = true;
    unsafe fn transform(old: &Tracked) -> Result<Self, TransformError> {
        Ok(Copied(old.id))
    }
}

/// A transformed set must not lose elements: two that become equal fail the transform.
#[test]
#[allow(clippy::mutable_key_type)] // `Tracked` hashes and orders by its id alone.
fn a_set_whose_elements_would_merge_is_refused() {
    let ledger = Ledger::new();
    let old: HashSet<Tracked> = (0..10).map(|_| ledger.make()).collect();
    let why = failing::<HashSet<Tracked>, HashSet<Parity>>(&ledger, &old, Fault::None);
    assert!(why.contains("become equal"), "{why}");
    let old: BTreeSet<Tracked> = old.into_iter().collect();
    let why = failing::<BTreeSet<Tracked>, BTreeSet<Parity>>(&ledger, &old, Fault::None);
    assert!(why.contains("become equal"), "{why}");
    let new: BTreeSet<Tracked> = commit(old);
    drop(new);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Parity(u64);
// SAFETY: a fresh value.
unsafe impl Transform<Tracked> for Parity {
    const FRESH: bool = true;
    unsafe fn transform(old: &Tracked) -> Result<Self, TransformError> {
        Ok(Parity(old.id % 2))
    }
}

/// Zero-sized and over-aligned elements, on several threads.
#[test]
fn zero_sized_and_over_aligned_elements() {
    #[derive(Clone, Copy)]
    struct Nothing;
    struct Unit;
    // SAFETY: a fresh value.
    unsafe impl Transform<Nothing> for Unit {
        const FRESH: bool = true;
        unsafe fn transform(_: &Nothing) -> Result<Self, TransformError> {
            Ok(Unit)
        }
    }
    #[repr(align(64))]
    struct Wide(u64);
    #[repr(align(128))]
    struct Wider(u64, bool);
    // SAFETY: a fresh value.
    unsafe impl Transform<Wide> for Wider {
        const FRESH: bool = true;
        unsafe fn transform(old: &Wide) -> Result<Self, TransformError> {
            Ok(Wider(old.0, true))
        }
    }
    TEST_PER_THREAD.with(|t| t.set(Some((16, 3))));
    let units: Vec<Unit> = commit(vec![Nothing; 1000]);
    assert_eq!(units.len(), 1000);
    let wide: Vec<Wider> = commit((0..1000).map(Wide).collect::<Vec<_>>());
    assert!(wide.iter().enumerate().all(|(i, w)| w.0 == i as u64 && w.1 && (w as *const Wider as usize).is_multiple_of(128)));
    let arr: [Wider; 3] = commit([Wide(1), Wide(2), Wide(3)]);
    assert_eq!(arr[2].0, 3);
    TEST_PER_THREAD.with(|t| t.set(None));
}

#[test]
fn a_panicking_transformer_does_not_poison_the_old_value() {
    let ledger = Ledger::new();
    let old = Mutex::new(old_entry(&ledger, 3));
    let why = failing::<Mutex<OldEntry>, Mutex<NewEntry>>(&ledger, &old, Fault::PanicAt(3));
    assert!(why.contains("tag 3 panicked"), "{why}");
    assert!(!old.is_poisoned());
    check_old(&old.lock().unwrap(), 3);
}

/// A thread at an update point may hold a lock inside a state cell that it reached outside the
/// cell's scope (through an `Arc` cloned out of it, or a leaked guard): the transform fails the
/// update instead of waiting for a lock that is released only after the update.
#[test]
fn a_held_lock_fails_the_transform_instead_of_deadlocking() {
    let ledger = Ledger::new();
    let old = Mutex::new(old_entry(&ledger, 1));
    let held = old.lock().unwrap();
    let why = failing::<Mutex<OldEntry>, Mutex<NewEntry>>(&ledger, &old, Fault::None);
    assert!(why.contains("held by a thread"), "{why}");
    let unchanged: Mutex<Tracked> = commit(Mutex::new(ledger.make()));
    drop(unchanged);
    drop(held);
    assert_eq!(commit::<_, Mutex<NewEntry>>(old).into_inner().unwrap().hits, 10);

    let old = RwLock::new(old_entry(&ledger, 2));
    let held = old.write().unwrap();
    assert!(failing::<RwLock<OldEntry>, RwLock<NewEntry>>(&ledger, &old, Fault::None).contains("held by a thread"));
    drop(held);
    let reading = old.read().unwrap();
    let new = abort::<_, RwLock<NewEntry>>(RwLock::new(old_entry(&ledger, 4)));
    drop((reading, new));
    assert_eq!(commit::<_, RwLock<NewEntry>>(old).into_inner().unwrap().hits, 20, "readers do not block it");
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}

impl Fingerprinted for OldEntry {
    const FINGERPRINT: Fingerprint = Fingerprint::of_text("old entry");
}

impl Fingerprinted for NewEntry {
    const FINGERPRINT: Fingerprint = Fingerprint::of_text("new entry");
}

/// The cell transform a patch exports: run, then retire (commit) or discard (abort), through the
/// boxes cells keep their values in.
#[test]
fn cell_transforms_settle_boxed_values() {
    static CT: CellTransform = CellTransform::new::<Mutex<Vec<OldEntry>>, Mutex<Vec<NewEntry>>>("test-cell");
    let ledger = Ledger::new();
    let boxed = || Box::into_raw(Box::new(Mutex::new(entries(&ledger, 50)))) as *const ();

    let old = boxed();
    // SAFETY: `old` is a boxed `Mutex<Vec<OldEntry>>`; the result is discarded below.
    let new = unsafe { CT.run(old) }.unwrap();
    // SAFETY: from `run`, not installed.
    unsafe { CT.discard(new) };
    // SAFETY: the old value is whole again: drop it as its box.
    let old = unsafe { Box::from_raw(old as *mut Mutex<Vec<OldEntry>>) };
    check_old(&old.lock().unwrap()[49], 49);
    drop(old);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));

    let old = boxed();
    // SAFETY: as above; committed below.
    let new = unsafe { CT.run(old) }.unwrap();
    // SAFETY: `new` is "installed": the old value is retired.
    unsafe { CT.retire(old) };
    assert_eq!(ledger.live(), 150);
    // SAFETY: the installed value, a boxed `Mutex<Vec<NewEntry>>`.
    let new = unsafe { Box::from_raw(new as *mut Mutex<Vec<NewEntry>>) };
    assert_eq!(new.lock().unwrap()[20].hits, 200);
    drop(new);
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));

    *ledger.fault.lock().unwrap() = Fault::PanicAt(30);
    let old = boxed();
    // SAFETY: as above; fails.
    let err = unsafe { CT.run(old) }.unwrap_err();
    assert_eq!(err.0, "panicked: tag 30 panicked");
    // SAFETY: untouched by the failed transform.
    drop(unsafe { Box::from_raw(old as *mut Mutex<Vec<OldEntry>>) });
    assert_eq!((ledger.live(), ledger.twice()), (0, 0));
}
