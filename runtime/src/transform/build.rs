//! Building new collections from old ones: on several threads when they are large, and sound
//! when a transformer fails or panics halfway.
//!
//! A partly built collection holds carried parts of the old one, so it is never dropped: what it
//! holds is released (`Transform::release_new`), and a panic that would make std drop it (inside
//! `HashMap::insert`, a sort in `BTreeMap::from_iter`, a heap's rebuild) aborts the process
//! instead. Only user code can panic there (a key's `Hash`, `Eq` or `Ord`), and such a panic on a
//! key the old collection already holds would have broken that collection too.

use super::{Transform, TransformError};
use std::any::Any;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// Entries per thread below which a collection is transformed on the calling thread alone:
/// starting a thread costs tens of microseconds, which a few thousand cheap transforms do not
/// repay.
const PER_THREAD: usize = 1 << 15;

#[cfg(test)]
thread_local! {
    /// Tests: entries per thread on this thread's transforms (to run small collections on several
    /// threads), and the thread count (to run several on a one-core machine).
    pub(crate) static TEST_PER_THREAD: std::cell::Cell<Option<(usize, usize)>> =
        const { std::cell::Cell::new(None) };
}

/// How many threads transform a collection of `len` independent entries.
pub(crate) fn threads_for(len: usize) -> usize {
    #[cfg(test)]
    if let Some((per_thread, threads)) = TEST_PER_THREAD.with(|t| t.get()) {
        return threads.min(len / per_thread).max(1);
    }
    static AVAILABLE: OnceLock<usize> = OnceLock::new();
    let available =
        *AVAILABLE.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    available.min(len / PER_THREAD).max(1)
}

/// Tests: whether they set the thread count (then maps go parallel whatever their transforms
/// cost).
fn forced_parallel() -> bool {
    #[cfg(test)]
    return TEST_PER_THREAD.with(|t| t.get()).is_some();
    #[cfg(not(test))]
    false
}

/// Writes `B::transform(get(&src[i]))` into `out[i]` for every `i`, on up to `threads` threads
/// (the calling one among them). All or nothing: on an error or a panic, every value written is
/// released (`release_new`) before it returns the error, or resumes the panic on the calling
/// thread (the first one, by position).
///
/// # Safety
/// As [`Transform::transform`] for each element: on `Ok`, `out` holds values carrying parts of
/// the old ones, to be settled with them.
pub(crate) unsafe fn fill<S, A, B>(
    src: &[S],
    get: impl Fn(&S) -> &A + Sync,
    out: &mut [MaybeUninit<B>],
    threads: usize,
) -> Result<(), TransformError>
where
    S: Sync,
    B: Transform<A> + Send,
{
    assert_eq!(src.len(), out.len(), "one slot per entry");
    if threads <= 1 || src.len() < 2 {
        // SAFETY: the caller's contract.
        return unsafe { fill_serial(src, &get, out) };
    }
    let chunk = src.len().div_ceil(threads);
    // Set by the first chunk that fails: the others stop at their next entry.
    let stop = AtomicBool::new(false);
    let stop = &stop;
    let get = &get;
    let mut outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let mut parts = src.chunks(chunk).zip(out.chunks_mut(chunk));
        let (src0, out0) = parts.next().expect("a non-empty source has a first chunk");
        let workers: Vec<_> = parts
            .map(|(src, out)| {
                std::thread::Builder::new().name("dsu-transform".into()).spawn_scoped(scope, move || {
                    // SAFETY: the caller's contract, for this chunk.
                    catch_unwind(AssertUnwindSafe(|| unsafe { fill_until(src, get, out, stop) }))
                })
            })
            .collect();
        // SAFETY: the caller's contract, for the first chunk.
        let first = catch_unwind(AssertUnwindSafe(|| unsafe { fill_until(src0, get, out0, stop) }));
        std::iter::once(Outcome::from(first))
            .chain(workers.into_iter().map(|w| match w {
                Ok(handle) => Outcome::from(handle.join().and_then(|r| r)),
                // No thread: this chunk is filled below, on this thread.
                Err(_) => Outcome::NotRun,
            }))
            .collect()
    });
    for (i, outcome) in outcomes.iter_mut().enumerate() {
        if matches!(outcome, Outcome::NotRun) {
            let range = i * chunk..((i + 1) * chunk).min(src.len());
            let (src, out) = (&src[range.clone()], &mut out[range]);
            // SAFETY: the caller's contract, for this chunk.
            *outcome = Outcome::from(catch_unwind(AssertUnwindSafe(|| unsafe { fill_until(src, get, out, stop) })));
        }
    }
    if outcomes.iter().all(|o| matches!(o, Outcome::Done)) {
        return Ok(());
    }
    // A chunk that failed released itself; release the ones that did not.
    for (i, outcome) in outcomes.iter().enumerate() {
        if matches!(outcome, Outcome::Done) {
            for slot in &mut out[i * chunk..((i + 1) * chunk).min(src.len())] {
                // SAFETY: `fill_serial` returned `Ok` for this chunk: every slot holds a value
                // it made, now discarded.
                unsafe { B::release_new(slot.as_mut_ptr()) };
            }
        }
    }
    let mut error = None;
    for outcome in outcomes {
        match outcome {
            Outcome::Panicked(payload) => resume_unwind(payload),
            Outcome::Failed(Some(e)) if error.is_none() => error = Some(e),
            _ => {}
        }
    }
    Err(error.expect("a chunk failed, and the first to fail did not stop for another"))
}

/// How one chunk of a [`fill`] ended. A chunk that did not end `Done` released what it made.
enum Outcome {
    Done,
    /// An error, or `None`: stopped because another chunk failed.
    Failed(Option<TransformError>),
    Panicked(Box<dyn Any + Send>),
    NotRun,
}

impl From<std::thread::Result<Result<(), Option<TransformError>>>> for Outcome {
    fn from(r: std::thread::Result<Result<(), Option<TransformError>>>) -> Self {
        match r {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(e)) => Outcome::Failed(e),
            Err(payload) => Outcome::Panicked(payload),
        }
    }
}

/// [`fill_serial`], stopping (`Err(None)`, everything made released) once `stop` is set; sets
/// `stop` when it fails, first thing, so the other chunks do not go on while it releases.
///
/// # Safety
/// As [`fill`].
unsafe fn fill_until<S, A, B: Transform<A>>(
    src: &[S],
    get: &impl Fn(&S) -> &A,
    out: &mut [MaybeUninit<B>],
    stop: &AtomicBool,
) -> Result<(), Option<TransformError>> {
    let mut written = Written::<A, B> { out, len: 0, stop, _old: PhantomData };
    for s in src {
        if stop.load(Ordering::Relaxed) {
            return Err(None);
        }
        // SAFETY: the caller's contract; `written` releases it if a later one fails.
        let b = unsafe { B::transform(get(s)).map_err(Some)? };
        written.out[written.len].write(b);
        written.len += 1;
    }
    std::mem::forget(written);
    Ok(())
}

/// [`fill`] on the calling thread; for element types that cannot go to other threads.
///
/// # Safety
/// As [`fill`].
pub(crate) unsafe fn fill_serial<S, A, B: Transform<A>>(
    src: &[S],
    get: &impl Fn(&S) -> &A,
    out: &mut [MaybeUninit<B>],
) -> Result<(), TransformError> {
    debug_assert_eq!(src.len(), out.len());
    // SAFETY: the caller's contract.
    unsafe { fill_until(src, get, out, &AtomicBool::new(false)) }
        .map_err(|e| e.expect("only `get` returning `None` stops without an error"))
}

/// The first `len` slots of `out`, made by `B::transform`: released if the fill stops early
/// (after telling the other chunks to stop).
struct Written<'a, A, B: Transform<A>> {
    out: &'a mut [MaybeUninit<B>],
    len: usize,
    stop: &'a AtomicBool,
    _old: PhantomData<fn(&A)>,
}

impl<A, B: Transform<A>> Drop for Written<'_, A, B> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for slot in &mut self.out[..self.len] {
            // SAFETY: slots below `len` hold values `B::transform` made; the fill failed, so
            // they are discarded.
            unsafe { B::release_new(slot.as_mut_ptr()) };
        }
    }
}

/// `n` uninitialised slots.
fn slots<B>(n: usize) -> Vec<MaybeUninit<B>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` needs no initialisation, and the capacity is `n`.
    unsafe { v.set_len(n) };
    v
}

/// The values of `slots`, all initialised by a successful [`fill`].
///
/// # Safety
/// Every slot is initialised.
unsafe fn assume_init<B>(slots: Vec<MaybeUninit<B>>) -> Vec<B> {
    let mut slots = ManuallyDrop::new(slots);
    // SAFETY: `MaybeUninit<B>` has `B`'s layout, so the allocation is a `Vec<B>`'s of the same
    // capacity; every element is initialised (the caller's contract).
    unsafe { Vec::from_raw_parts(slots.as_mut_ptr() as *mut B, slots.len(), slots.capacity()) }
}

/// The transforms of `old`'s elements, in order: on several threads when there are many, all or
/// nothing as [`fill`].
///
/// # Safety
/// As [`Transform::transform`] for each element.
pub(crate) unsafe fn transform_slice<A: Sync, B: Transform<A> + Send>(old: &[A]) -> Result<Vec<B>, TransformError> {
    let mut made = slots::<B>(old.len());
    // SAFETY: the caller's contract; on success every slot is initialised.
    unsafe {
        fill(old, |a| a, &mut made, threads_for(old.len()))?;
        Ok(assume_init(made))
    }
}

/// [`transform_slice`] of the elements a collection yields by reference.
///
/// # Safety
/// As [`Transform::transform`] for each element.
pub(crate) unsafe fn transform_each<'a, A: Sync + 'a, B: Transform<A> + Send>(
    old: impl IntoIterator<Item = &'a A>,
) -> Result<Vec<B>, TransformError> {
    let refs: Vec<&A> = old.into_iter().collect();
    let mut made = slots::<B>(refs.len());
    // SAFETY: the caller's contract; on success every slot is initialised.
    unsafe {
        fill(&refs, |a| *a, &mut made, threads_for(refs.len()))?;
        Ok(assume_init(made))
    }
}

/// Aborts the process if dropped while a panic unwinds through a std call that owns carried
/// parts (which it would drop, freeing them under the old value). Forgotten when the call
/// returns.
pub(crate) struct AbortOnUnwind(pub &'static str);

impl Drop for AbortOnUnwind {
    fn drop(&mut self) {
        abort(self.0)
    }
}

/// Stops the process: what it was doing cannot be undone and must not go on.
#[cold]
pub(crate) fn abort(what: &str) -> ! {
    eprintln!(
        "dsu: {what}; the old value and the new one share parts that would be freed twice, so the \
         process stops"
    );
    std::process::abort()
}

/// Runs `f`, aborting if it unwinds (see [`AbortOnUnwind`]).
#[inline(always)]
pub(crate) fn abort_on_unwind<R>(what: &'static str, f: impl FnOnce() -> R) -> R {
    let bomb = AbortOnUnwind(what);
    let r = f();
    std::mem::forget(bomb);
    r
}

const KEY_PANICKED: &str = "a key's Hash or Eq panicked while a transformed map was built";
const DUPLICATE_KEY: &str =
    "two keys of a map compared equal while its transformed copy was built (their Hash or Eq \
     disagrees with the old map's)";

/// Inserts `key` (carried from a map where it was unique) and `value` into `map`.
#[inline(always)]
pub(crate) fn insert_carried<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>, key: K, value: V) {
    // `insert` drops the key it is given when the map holds an equal one, and unwinding through
    // it drops both: either would free a part the old map still owns.
    if let Some(twice) = abort_on_unwind(KEY_PANICKED, || map.insert(key, value)) {
        std::mem::forget(twice);
        abort(DUPLICATE_KEY);
    }
}

/// Runs `collection` to its end by value, handing each element to `release`, then frees the
/// collection's memory (its exhausted iterator's drop). A panic in `release` leaks the rest
/// instead of dropping it.
///
/// # Safety
/// `release` may be called on each element.
pub(crate) unsafe fn release_each<C: IntoIterator>(collection: C, release: impl Fn(*mut C::Item)) {
    let mut items = ManuallyDrop::new(collection.into_iter());
    for item in &mut *items {
        let mut item = ManuallyDrop::new(item);
        release(&mut *item);
    }
    // SAFETY: taken once; exhausted, so dropping it drops no element.
    unsafe { ManuallyDrop::drop(&mut items) };
}

/// [`release_each`] for a map whose keys belong to someone else (carried): keys are forgotten,
/// values handed to `release`.
///
/// # Safety
/// `release` may be called on each value.
pub(crate) unsafe fn release_entries<K, V, M: IntoIterator<Item = (K, V)>>(map: M, release: impl Fn(*mut V)) {
    let mut entries = ManuallyDrop::new(map.into_iter());
    for (key, value) in &mut *entries {
        std::mem::forget(key);
        let mut value = ManuallyDrop::new(value);
        release(&mut *value);
    }
    // SAFETY: taken once; exhausted, so dropping it drops no entry.
    unsafe { ManuallyDrop::drop(&mut entries) };
}

/// How many entries ahead the key of the next insert is fetched (see [`prefetch_key`]).
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// Asks the CPU to fetch the memory `key`'s hash reads: a large map's keys lie in table order,
/// which is random against the order their bytes were allocated in, so rehashing them one by one
/// waits for memory on every key (a map of 1,000,000 `String` keys, on the machine of
/// docs/PERFORMANCE.md: about 250 ms of CPU time without, 90 with). The key's own `Hash` impl is run against a hasher that prefetches every slice it is
/// given and reads nothing.
#[inline]
pub(crate) fn prefetch_key<K: Hash>(key: &K) {
    key.hash(&mut Prefetcher);
}

struct Prefetcher;

impl Hasher for Prefetcher {
    fn finish(&self) -> u64 {
        0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint: it never faults, whatever the address, and changes
        // nothing the program can observe. SSE is part of x86-64.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(bytes.as_ptr().cast())
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = bytes;
    }

    #[inline]
    fn write_u8(&mut self, _: u8) {}
    #[inline]
    fn write_u16(&mut self, _: u16) {}
    #[inline]
    fn write_u32(&mut self, _: u32) {}
    #[inline]
    fn write_u64(&mut self, _: u64) {}
    #[inline]
    fn write_usize(&mut self, _: usize) {}
}

/// Entries of a large map transformed one by one first, timed, to decide how to do the rest.
const SAMPLE: usize = if cfg!(test) { 64 } else { 4096 };
/// Entries of a map handed to the threads at a time.
const BLOCK: usize = if cfg!(test) { 256 } else { 1 << 16 };
/// Transform time per entry (in the sample) above which a map's values are transformed on
/// several threads. Below it, a map is built in one pass: moving values through a buffer
/// between threads costs a few nanoseconds per entry, and the inserts (a hash of the key and a
/// probe, on one thread) cost tens.
const PARALLEL_WORTH_NS: u128 = 20;

/// A map under construction: on a failure or a panic, its keys (carried) are left to the old
/// map and its values released.
pub(crate) struct NewMap<K, A, B: Transform<A>, S> {
    map: ManuallyDrop<HashMap<K, B, S>>,
    _old: PhantomData<fn(&A)>,
}

impl<K, A, B: Transform<A>, S> NewMap<K, A, B, S> {
    /// A map whose keys are carried and whose values `B::transform` made, to be released when
    /// dropped.
    pub(crate) fn from_map(map: HashMap<K, B, S>) -> Self {
        NewMap { map: ManuallyDrop::new(map), _old: PhantomData }
    }

    pub(crate) fn into_inner(self) -> HashMap<K, B, S> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped, so the map is taken once.
        unsafe { ManuallyDrop::take(&mut this.map) }
    }
}

impl<K, A, B: Transform<A>, S> Drop for NewMap<K, A, B, S> {
    fn drop(&mut self) {
        // SAFETY: taken once, here; the map is being discarded.
        let map = unsafe { ManuallyDrop::take(&mut self.map) };
        // SAFETY: every value was made by `B::transform` and is discarded with the map; the
        // keys are the old map's.
        unsafe { release_entries(map, |b| B::release_new(b)) };
    }
}

/// The new map of `old`'s entries, keys carried and values transformed: a large map's values on
/// several threads when transforming them costs enough.
///
/// # Safety
/// As [`Transform::transform`].
pub(crate) unsafe fn transform_map<K, A, B, S>(
    old: &HashMap<K, A, S>,
) -> Result<HashMap<K, B, S>, TransformError>
where
    K: Eq + Hash,
    A: Sync,
    B: Transform<A> + Send,
    S: BuildHasher + Clone,
{
    // The old map's hasher at the old map's capacity: every key lands in the bucket it had, and
    // the old map is walked in bucket order, so the new table fills front to back.
    let mut new = NewMap::<K, A, B, S>::from_map(HashMap::with_capacity_and_hasher(
        old.capacity(),
        old.hasher().clone(),
    ));
    let threads = threads_for(old.len());
    let mut entries = old.iter();
    if threads > 1 {
        let (mut keys, mut values): (Vec<&K>, Vec<&A>) = entries.by_ref().take(SAMPLE).unzip();
        let mut made = slots::<B>(values.len());
        // Fault the buffer in first: the sample times the transforms alone.
        // SAFETY: `made` has `values.len()` slots of `B`; zero bytes are a valid `MaybeUninit`.
        unsafe { std::ptr::write_bytes(made.as_mut_ptr(), 0, made.len()) };
        let started = Instant::now();
        // SAFETY: the caller's contract.
        unsafe { fill(&values, |a| *a, &mut made, 1)? };
        let per_entry = started.elapsed().as_nanos() / values.len().max(1) as u128;
        // SAFETY: `fill` succeeded: every slot is initialised.
        insert_block(&mut new.map, &keys, unsafe { assume_init(made) });
        if per_entry >= PARALLEL_WORTH_NS || forced_parallel() {
            loop {
                keys.clear();
                values.clear();
                entries.by_ref().take(BLOCK).for_each(|(k, a)| {
                    keys.push(k);
                    values.push(a);
                });
                if keys.is_empty() {
                    break;
                }
                let mut made = slots::<B>(values.len());
                // SAFETY: the caller's contract.
                unsafe { fill(&values, |a| *a, &mut made, threads)? };
                // SAFETY: `fill` succeeded: every slot is initialised.
                insert_block(&mut new.map, &keys, unsafe { assume_init(made) });
            }
        }
    }
    let mut ahead = entries.clone();
    ahead.by_ref().take(PREFETCH_AHEAD).for_each(|(k, _)| prefetch_key(k));
    for (k, a) in entries {
        if let Some((next, _)) = ahead.next() {
            prefetch_key(next);
        }
        // SAFETY: the caller's contract; on a failure `new` releases what it holds.
        let b = unsafe { B::transform(a)? };
        // SAFETY: the key is carried: the new map takes it, and is settled with the old one.
        insert_carried(&mut new.map, unsafe { super::carry(k) }, b);
    }
    Ok(new.into_inner())
}

/// Inserts a block of entries, keys carried, values made by [`fill`]. Nothing here fails but by
/// aborting (user code runs only in the keys' `Hash` and `Eq`), so the values need no guard.
fn insert_block<K: Eq + Hash, B, S: BuildHasher>(map: &mut HashMap<K, B, S>, keys: &[&K], values: Vec<B>) {
    abort_on_unwind(KEY_PANICKED, || {
        for (i, (k, b)) in keys.iter().zip(values).enumerate() {
            if let Some(next) = keys.get(i + PREFETCH_AHEAD) {
                prefetch_key(*next);
            }
            // SAFETY: the key is carried: the new map takes it, and is settled with the old one.
            insert_carried(map, unsafe { super::carry(*k) }, b);
        }
    })
}
