//! [`Transform`] for std types: unchanged leaves move whole, containers carry their own memory's
//! contents where the element type stays (keys always) and transform the rest.
//!
//! Every container first asks whether its elements are [`Transform::IDENTITY`]: then the whole
//! container is the same type on both sides and moves as one bitwise copy.

use super::build::{self, abort_on_unwind};
use super::{carry, Staged, Transform, TransformError};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

/// `Self` from `Old` when `B::IDENTITY` says `Old` is `Self`: a bitwise move of the whole value.
///
/// # Safety
/// `Old` is `Self` (the caller checked `IDENTITY` of the element types that make them differ),
/// and the move is settled as [`Transform`] says (both releases do nothing).
#[inline(always)]
unsafe fn moved<Old, New>(old: &Old) -> New {
    debug_assert!(size_of::<Old>() == size_of::<New>() && align_of::<Old>() == align_of::<New>());
    // SAFETY: the caller's contract: the types are one type.
    unsafe { ptr::read(old as *const Old as *const New) }
}

/// Unchanged types that move whole.
macro_rules! identity {
    ($($t:ty),* $(,)?) => {
        $(
        // SAFETY: `Old` is `Self`, and the value moves whole: bitwise, released by nobody.
        unsafe impl Transform<$t> for $t {
            const IDENTITY: bool = true;
            #[inline(always)]
            unsafe fn transform(old: &$t) -> Result<Self, TransformError> {
                // SAFETY: the caller settles the move (both releases below do nothing).
                Ok(unsafe { carry(old) })
            }
            #[inline(always)]
            unsafe fn release_old(_: *mut $t) {}
            #[inline(always)]
            unsafe fn release_new(_: *mut $t) {}
        }
        )*
    };
}

identity!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, (),
    String, std::time::Duration, std::time::Instant, std::time::SystemTime, std::path::PathBuf,
    std::ffi::OsString,
    std::sync::atomic::AtomicBool, std::sync::atomic::AtomicU8, std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32, std::sync::atomic::AtomicU64, std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8, std::sync::atomic::AtomicI16, std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64, std::sync::atomic::AtomicIsize,
);

#[cfg(feature = "bytes")]
identity!(bytes::Bytes, bytes::BytesMut);

/// `release_old` and `release_new` of a container of `B`s made from one of `A`s
/// (`Transform<$old> for …<B>`): `$release` takes the container apart, handing each element to
/// the element type's release, and frees its memory. An unchanged container moved whole: nothing
/// to release.
macro_rules! releases {
    ($old:ty, $release:path) => {
        unsafe fn release_old(old: *mut $old) {
            if !B::IDENTITY {
                // SAFETY: the caller's contract: `*old` is gone after this, and each element was
                // transformed into one of the kept value (a map's keys were carried).
                unsafe { $release(ptr::read(old), |a| B::release_old(a)) }
            }
        }

        unsafe fn release_new(new: *mut Self) {
            if !B::IDENTITY {
                // SAFETY: the caller's contract: `*new` is gone after this, and each element was
                // made by `B::transform` (a map's keys are the old map's).
                unsafe { $release(ptr::read(new), |b| B::release_new(b)) }
            }
        }
    };
}

/// A wrapper around one value, which it gives up whole.
trait Wrapper {
    type Content;
    /// The content, moved out; the wrapper's own memory freed.
    fn into_content(self) -> Self::Content;
}

impl<T> Wrapper for Box<T> {
    type Content = T;
    fn into_content(self) -> T {
        *self
    }
}

// A transform carries a poisoned lock's last value over.
impl<T> Wrapper for Mutex<T> {
    type Content = T;
    fn into_content(self) -> T {
        self.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T> Wrapper for RwLock<T> {
    type Content = T;
    fn into_content(self) -> T {
        self.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<T> Wrapper for RefCell<T> {
    type Content = T;
    fn into_content(self) -> T {
        self.into_inner()
    }
}

/// Takes a wrapper's content out and hands it to `release`.
///
/// # Safety
/// `release` may be called on the content.
unsafe fn release_content<W: Wrapper>(wrapper: W, release: impl FnOnce(*mut W::Content)) {
    let mut content = ManuallyDrop::new(wrapper.into_content());
    release(&mut *content);
}

// SAFETY: elements are transformed one by one (`build::fill`: released if any fails) into a new
// buffer, which the new value owns; on commit the old elements are released and the old buffer
// freed, on abort the new ones. `IDENTITY` when the elements are: then the vector moves whole.
unsafe impl<A: Sync, B: Transform<A> + Send> Transform<Vec<A>> for Vec<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &Vec<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`, so this is a move of the vector, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        unsafe { build::transform_slice(old) }
    }

    releases!(Vec<A>, build::release_each);
}

// SAFETY: as `Vec`'s; the new deque is built as a vector (contiguous) and converted, which moves
// nothing.
unsafe impl<A: Sync, B: Transform<A> + Send> Transform<VecDeque<A>> for VecDeque<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &VecDeque<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the deque, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        unsafe { build::transform_each(old) }.map(VecDeque::from)
    }

    releases!(VecDeque<A>, build::release_each);
}

// SAFETY: a list is built node by node; a failure releases the nodes made. Releases take every
// element out (freeing its node) and release it.
unsafe impl<A, B: Transform<A>> Transform<LinkedList<A>> for LinkedList<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &LinkedList<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the list, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        struct Partial<A, B: Transform<A>>(LinkedList<B>, std::marker::PhantomData<fn(&A)>);
        impl<A, B: Transform<A>> Drop for Partial<A, B> {
            fn drop(&mut self) {
                // SAFETY: every element was made by `B::transform`; the list is discarded.
                unsafe { build::release_each(std::mem::take(&mut self.0), |b| B::release_new(b)) }
            }
        }
        let mut new = Partial::<A, B>(LinkedList::new(), std::marker::PhantomData);
        for a in old {
            // SAFETY: the caller's contract; `new` releases it if a later one fails.
            new.0.push_back(unsafe { Staged::<A, B>::transform(a)? }.into_inner());
        }
        Ok(std::mem::take(&mut new.0))
    }

    releases!(LinkedList<A>, build::release_each);
}


// SAFETY: a heap is a vector in heap order: transformed as one (new order by the new `Ord`,
// restored by `BinaryHeap::from`, aborting if that panics with carried parts inside).
unsafe impl<A: Sync, B: Transform<A> + Send + Ord> Transform<BinaryHeap<A>> for BinaryHeap<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &BinaryHeap<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the heap, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        let new = unsafe { build::transform_slice(old.as_slice())? };
        Ok(abort_on_unwind("an `Ord` panicked while a transformed heap was built", || BinaryHeap::from(new)))
    }

    releases!(BinaryHeap<A>, build::release_each);
}

// SAFETY: `None` stays `None`; a `Some` holds its element's transform, settled with it.
unsafe impl<A, B: Transform<A>> Transform<Option<A>> for Option<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    #[inline]
    unsafe fn transform(old: &Option<A>) -> Result<Self, TransformError> {
        match old {
            // SAFETY: the caller's contract.
            Some(a) => Ok(Some(unsafe { B::transform(a)? })),
            None => Ok(None),
        }
    }

    #[inline]
    unsafe fn release_old(old: *mut Option<A>) {
        // SAFETY: the caller's contract; the `Some` was transformed into the kept value's.
        if let Some(a) = unsafe { &mut *old } {
            unsafe { B::release_old(a) }
        }
    }

    #[inline]
    unsafe fn release_new(new: *mut Self) {
        // SAFETY: the caller's contract; the `Some` was made by `B::transform`.
        if let Some(b) = unsafe { &mut *new } {
            unsafe { B::release_new(b) }
        }
    }
}

// SAFETY: each side's value is its variant's transform, settled with it.
unsafe impl<A, B: Transform<A>, E, F: Transform<E>> Transform<Result<A, E>> for Result<B, F> {
    const IDENTITY: bool = B::IDENTITY && F::IDENTITY;
    const FRESH: bool = B::FRESH && F::FRESH;

    unsafe fn transform(old: &Result<A, E>) -> Result<Self, TransformError> {
        // SAFETY: the caller's contract.
        Ok(match old {
            Ok(a) => Ok(unsafe { B::transform(a)? }),
            Err(e) => Err(unsafe { F::transform(e)? }),
        })
    }

    unsafe fn release_old(old: *mut Result<A, E>) {
        // SAFETY: the caller's contract; the variant was transformed into the kept value's.
        match unsafe { &mut *old } {
            Ok(a) => unsafe { B::release_old(a) },
            Err(e) => unsafe { F::release_old(e) },
        }
    }

    unsafe fn release_new(new: *mut Self) {
        // SAFETY: the caller's contract; the variant was made by its transform.
        match unsafe { &mut *new } {
            Ok(b) => unsafe { B::release_new(b) },
            Err(f) => unsafe { F::release_new(f) },
        }
    }
}

// SAFETY: an unchanged box moves whole (its pointer). Otherwise the new box is a new allocation
// holding the transform of the old content.
unsafe impl<A, B: Transform<A>> Transform<Box<A>> for Box<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    #[inline]
    unsafe fn transform(old: &Box<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the box, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract; `Box::new` cannot unwind (allocation failure aborts).
        Ok(Box::new(unsafe { B::transform(old)? }))
    }

    releases!(Box<A>, release_content);
}


/// Why an `Arc` or `Rc` cannot give its parts to the new value.
fn shared(kind: &str, of: &str, strong: usize, weak: usize) -> TransformError {
    TransformError(format!(
        "an `{kind}<{of}>` in the cell is shared ({strong} strong and {weak} weak references): its \
         other holders keep the old value, so the new value cannot take its parts. Transform \
         `{of}` with a transformer function (`#[dsu::transform(from = …)] fn`), which builds a \
         fresh value, or drop the other references before the update"
    ))
}

/// `Arc` and `Rc`: an unchanged one moves whole (its pointer: the counts stay as they are). A
/// changed one held only by the old value gives its content's parts to a new allocation, and is
/// freed without its content on commit. A shared one (other strong or weak references, which
/// would keep the old content alive and reachable) can only be transformed into a fresh value,
/// and is then released as a whole.
macro_rules! shared_pointer {
    ($ptr:ident) => {
        // SAFETY: as the macro says: carried parts are taken only from a content no one else
        // can reach, and released only once the old pointer is known to be its only holder.
        unsafe impl<A, B: Transform<A>> Transform<$ptr<A>> for $ptr<B> {
            const IDENTITY: bool = B::IDENTITY;
            const FRESH: bool = B::FRESH;

            unsafe fn transform(old: &$ptr<A>) -> Result<Self, TransformError> {
                if B::IDENTITY {
                    // SAFETY: `B` is `A`: a move of the pointer, settled by no-op releases.
                    return Ok(unsafe { moved(old) });
                }
                let (strong, weak) = ($ptr::strong_count(old), $ptr::weak_count(old));
                if !B::FRESH && (strong, weak) != (1, 0) {
                    return Err(shared(stringify!($ptr), std::any::type_name::<A>(), strong, weak));
                }
                // SAFETY: the caller's contract; `new` cannot unwind (allocation failure aborts).
                Ok($ptr::new(unsafe { B::transform(old)? }))
            }

            unsafe fn release_old(old: *mut $ptr<A>) {
                if B::IDENTITY {
                    return;
                }
                // SAFETY: the caller's contract: `*old` is gone after this.
                let old = unsafe { ptr::read(old) };
                if B::FRESH {
                    // The new content shares nothing: the old pointer is one holder among any.
                    drop(old);
                    return;
                }
                match $ptr::try_unwrap(old) {
                    Ok(a) => {
                        let mut a = ManuallyDrop::new(a);
                        // SAFETY: the content was transformed into the kept value's.
                        unsafe { B::release_old(&mut *a) }
                    }
                    // Checked unique when transformed, and nothing ran since that could clone
                    // it; should it be shared after all, leaking is sound, dropping is not.
                    Err(old) => std::mem::forget(old),
                }
            }

            unsafe fn release_new(new: *mut Self) {
                if B::IDENTITY {
                    return;
                }
                // SAFETY: the caller's contract: `*new` is gone after this.
                let new = unsafe { ptr::read(new) };
                match $ptr::try_unwrap(new) {
                    Ok(b) => {
                        let mut b = ManuallyDrop::new(b);
                        // SAFETY: the content was made by `B::transform` and is discarded.
                        unsafe { B::release_new(&mut *b) }
                    }
                    // Made by `transform` and never shared: unreachable, and leaking is sound.
                    Err(new) => std::mem::forget(new),
                }
            }
        }
    };
}

shared_pointer!(Arc);
shared_pointer!(Rc);

/// Why a lock inside a state cell could not be transformed.
const LOCKED: &str = "a lock inside the cell is held by a thread that is at an update point or \
                      idle, reached outside the cell's scope (an `Arc` cloned out of the cell, or \
                      a leaked guard); release such locks before update points and idle sections";

/// The guard of a lock tried at an update. Updates run while every thread is at an update point
/// or idle; a thread may hold the lock there. Waiting for it would never end: the update fails
/// instead (nothing changes). A poisoned lock still holds the last value written: it is carried
/// over.
fn unheld<G>(tried: std::sync::TryLockResult<G>) -> Result<G, TransformError> {
    match tried {
        Ok(g) => Ok(g),
        Err(std::sync::TryLockError::Poisoned(e)) => Ok(e.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => Err(LOCKED.into()),
    }
}

// SAFETY: the lock is tried, never waited for, and released before the result is returned: an
// unchanged lock then moves whole; a changed one's content is transformed under the guard into a
// new lock.
unsafe impl<A, B: Transform<A>> Transform<Mutex<A>> for Mutex<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &Mutex<A>) -> Result<Self, TransformError> {
        let guard = unheld(old.try_lock())?;
        if B::IDENTITY {
            drop(guard);
            // SAFETY: `B` is `A`: a move of the unlocked mutex, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // A panicking transformer must not poison the old value's lock on its way out: the old
        // value stays in use when the update is abandoned. Release the guard, then unwind.
        // SAFETY: the caller's contract.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { B::transform(&guard) }));
        drop(guard);
        match result {
            Ok(r) => r.map(Mutex::new),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    releases!(Mutex<A>, release_content);
}

// SAFETY: as `Mutex`'s, with a read lock (readers do not block it).
unsafe impl<A, B: Transform<A>> Transform<RwLock<A>> for RwLock<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &RwLock<A>) -> Result<Self, TransformError> {
        let guard = unheld(old.try_read())?;
        if B::IDENTITY {
            drop(guard);
            // SAFETY: `B` is `A`: a move of the unlocked lock, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract. A read guard does not poison the lock on a panic.
        unsafe { B::transform(&guard) }.map(RwLock::new)
    }

    releases!(RwLock<A>, release_content);
}

// SAFETY: a `Copy` content owns nothing: the new cell holds the transform of a copy of it, and
// the releases settle the contents in place.
unsafe impl<A: Copy, B: Transform<A>> Transform<Cell<A>> for Cell<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &Cell<A>) -> Result<Self, TransformError> {
        // SAFETY: the caller's contract.
        unsafe { B::transform(&old.get()) }.map(Cell::new)
    }

    unsafe fn release_old(old: *mut Cell<A>) {
        // SAFETY: the caller's contract; `Cell<A>` has `A`'s layout.
        unsafe { B::release_old(old as *mut A) }
    }

    unsafe fn release_new(new: *mut Self) {
        // SAFETY: the caller's contract; `Cell<B>` has `B`'s layout.
        unsafe { B::release_new(new as *mut B) }
    }
}

// SAFETY: the content is read under a shared borrow (a mutable one elsewhere fails the update).
unsafe impl<A, B: Transform<A>> Transform<RefCell<A>> for RefCell<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &RefCell<A>) -> Result<Self, TransformError> {
        let guard = old.try_borrow().map_err(|_| TransformError::from(LOCKED))?;
        // SAFETY: the caller's contract.
        unsafe { B::transform(&guard) }.map(RefCell::new)
    }

    releases!(RefCell<A>, release_content);
}

// SAFETY: keys are carried (`build::transform_map`), values transformed; a partly built map is
// released by `build::NewMap`. Releases empty the map, forgetting keys and releasing values.
unsafe impl<K, A, B, S> Transform<HashMap<K, A, S>> for HashMap<K, B, S>
where
    K: Eq + Hash,
    A: Sync,
    B: Transform<A> + Send,
    S: BuildHasher + Clone,
{
    const IDENTITY: bool = B::IDENTITY;

    unsafe fn transform(old: &HashMap<K, A, S>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the map, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        unsafe { build::transform_map(old) }
    }

    releases!(HashMap<K, A, S>, build::release_entries);
}

// SAFETY: keys are carried and values transformed into a vector (released if any fails); the
// map is built from the sorted pairs, aborting if that unwinds with carried parts inside.
// Releases empty the map, forgetting keys and releasing values.
unsafe impl<K: Ord, A: Sync, B: Transform<A> + Send> Transform<BTreeMap<K, A>> for BTreeMap<K, B> {
    const IDENTITY: bool = B::IDENTITY;

    unsafe fn transform(old: &BTreeMap<K, A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the map, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        let made: Vec<B> = unsafe { build::transform_each(old.values())? };
        let keys: Vec<&K> = old.keys().collect();
        let len = keys.len();
        abort_on_unwind("a key's Ord panicked while a transformed map was built", || {
            // SAFETY: the keys are carried: the new map takes them, settled with the old one.
            let new: BTreeMap<K, B> = keys.into_iter().map(|k| unsafe { carry(k) }).zip(made).collect();
            if new.len() != len {
                // Keys the old map held apart compared equal: one of each pair was dropped.
                build::abort("two keys of a map compared equal while its transformed copy was built");
            }
            Ok(new)
        })
    }

    releases!(BTreeMap<K, A>, build::release_entries);
}


/// Why a transformed set would lose an element.
fn duplicate(of: &str) -> TransformError {
    TransformError(format!(
        "two elements of a set of `{of}` become equal when transformed: the new set would lose \
         one of them"
    ))
}

// SAFETY: elements are transformed into a vector (released if any fails), then moved into the
// new set one by one, each checked absent first (a duplicate fails the transform, releasing the
// set and the rest); `insert` runs under an abort guard.
unsafe impl<A, B, S> Transform<HashSet<A, S>> for HashSet<B, S>
where
    A: Sync,
    B: Transform<A> + Send + Eq + Hash,
    S: BuildHasher + Clone,
{
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &HashSet<A, S>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the set, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        let made = unsafe { build::transform_each(old)? };
        let mut rest = Released::<A, B>::new(made);
        let mut new = ReleasedSet::<A, B, S>(
            ManuallyDrop::new(HashSet::with_capacity_and_hasher(old.capacity(), old.hasher().clone())),
            std::marker::PhantomData,
        );
        while let Some(b) = rest.next() {
            let b = Staged::<A, B>::from_made(b);
            if new.0.contains(b.get()) {
                return Err(duplicate(std::any::type_name::<A>()));
            }
            let b = b.into_inner();
            if !abort_on_unwind("an element's Hash or Eq panicked while a transformed set was built", || {
                new.0.insert(b)
            }) {
                build::abort("two elements of a set compared equal while its transformed copy was built");
            }
        }
        let mut new = ManuallyDrop::new(new);
        // SAFETY: `new` is never dropped: the set is taken once.
        Ok(unsafe { ManuallyDrop::take(&mut new.0) })
    }

    releases!(HashSet<A, S>, build::release_each);
}

// SAFETY: elements are transformed into a vector (released if any fails), sorted by the new
// `Ord` (a panicking sort leaves every element in the vector, which is released), checked for
// duplicates (one fails the transform), then built into the set under an abort guard.
unsafe impl<A: Sync, B: Transform<A> + Send + Ord> Transform<BTreeSet<A>> for BTreeSet<B> {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &BTreeSet<A>) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the set, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        // SAFETY: the caller's contract.
        let made = unsafe { build::transform_each(old)? };
        let mut sorted = Released::<A, B>::new(made);
        sorted.items.sort();
        if sorted.items.windows(2).any(|w| w[0].cmp(&w[1]).is_eq()) {
            return Err(duplicate(std::any::type_name::<A>()));
        }
        let items = sorted.take();
        let len = items.len();
        abort_on_unwind("an element's Ord panicked while a transformed set was built", || {
            let new: BTreeSet<B> = items.into_iter().collect();
            if new.len() != len {
                build::abort("two elements of a set compared equal while its transformed copy was built");
            }
            Ok(new)
        })
    }

    releases!(BTreeSet<A>, build::release_each);
}

/// Values made by `B::transform`, not yet part of a whole: released if dropped.
struct Released<A, B: Transform<A>> {
    items: Vec<B>,
    /// Taken from the back by [`Released::next`].
    _old: std::marker::PhantomData<fn(&A)>,
}

impl<A, B: Transform<A>> Released<A, B> {
    fn new(items: Vec<B>) -> Self {
        Released { items, _old: std::marker::PhantomData }
    }

    fn next(&mut self) -> Option<B> {
        self.items.pop()
    }

    fn take(self) -> Vec<B> {
        let mut this = ManuallyDrop::new(self);
        std::mem::take(&mut this.items)
    }
}

impl<A, B: Transform<A>> Drop for Released<A, B> {
    fn drop(&mut self) {
        // SAFETY: each value was made by `B::transform` and is discarded.
        unsafe { build::release_each(std::mem::take(&mut self.items), |b| B::release_new(b)) };
    }
}

/// A set under construction: its elements released if it is dropped.
struct ReleasedSet<A, B: Transform<A>, S>(ManuallyDrop<HashSet<B, S>>, std::marker::PhantomData<fn(&A)>);

impl<A, B: Transform<A>, S> Drop for ReleasedSet<A, B, S> {
    fn drop(&mut self) {
        // SAFETY: taken once, here.
        let set = unsafe { ManuallyDrop::take(&mut self.0) };
        // SAFETY: each element was made by `B::transform` and is discarded.
        unsafe { build::release_each(set, |b| B::release_new(b)) }
    }
}

impl<Old, New: Transform<Old>> Staged<Old, New> {
    /// A value `New::transform` made earlier, staged.
    pub(super) fn from_made(new: New) -> Self {
        Staged { new: ManuallyDrop::new(new), _old: std::marker::PhantomData }
    }

    pub(super) fn get(&self) -> &New {
        &self.new
    }
}

// SAFETY: elements are transformed in order into uninitialised slots (released if any fails),
// then read out as the new array; releases settle each element in place.
unsafe impl<A, B: Transform<A>, const N: usize> Transform<[A; N]> for [B; N] {
    const IDENTITY: bool = B::IDENTITY;
    const FRESH: bool = B::FRESH;

    unsafe fn transform(old: &[A; N]) -> Result<Self, TransformError> {
        if B::IDENTITY {
            // SAFETY: `B` is `A`: a move of the array, settled by no-op releases.
            return Ok(unsafe { moved(old) });
        }
        let mut new: [MaybeUninit<B>; N] = [const { MaybeUninit::uninit() }; N];
        // SAFETY: the caller's contract; on success every slot is initialised, and
        // `[MaybeUninit<B>; N]` has `[B; N]`'s layout.
        unsafe {
            build::fill_serial(old, &|a| a, &mut new)?;
            Ok(ptr::read(&new as *const [MaybeUninit<B>; N] as *const [B; N]))
        }
    }

    unsafe fn release_old(old: *mut [A; N]) {
        for i in 0..N {
            // SAFETY: the caller's contract; each element was transformed into the kept one.
            unsafe { B::release_old((old as *mut A).add(i)) }
        }
    }

    unsafe fn release_new(new: *mut Self) {
        for i in 0..N {
            // SAFETY: the caller's contract; each element was made by `B::transform`.
            unsafe { B::release_new((new as *mut B).add(i)) }
        }
    }
}

/// Tuples: each element transformed in order (staged, so a later failure releases the earlier
/// ones) and settled in place.
macro_rules! tuples {
    ($(($($a:ident $b:ident $i:tt),+)),* $(,)?) => {
        $(
        // SAFETY: as the macro says.
        unsafe impl<$($a, $b: Transform<$a>),+> Transform<($($a,)+)> for ($($b,)+) {
            const IDENTITY: bool = true $(&& $b::IDENTITY)+;
            const FRESH: bool = true $(&& $b::FRESH)+;

            #[allow(non_snake_case)]
            unsafe fn transform(old: &($($a,)+)) -> Result<Self, TransformError> {
                // SAFETY: the caller's contract, for each element.
                $(let $b = unsafe { Staged::<$a, $b>::transform(&old.$i)? };)+
                Ok(($($b.into_inner(),)+))
            }

            unsafe fn release_old(old: *mut ($($a,)+)) {
                // SAFETY: the caller's contract, for each element in place.
                $(unsafe { $b::release_old(ptr::addr_of_mut!((*old).$i)) };)+
            }

            unsafe fn release_new(new: *mut Self) {
                // SAFETY: the caller's contract, for each element in place.
                $(unsafe { $b::release_new(ptr::addr_of_mut!((*new).$i)) };)+
            }
        }
        )*
    };
}

tuples!(
    (A0 B0 0),
    (A0 B0 0, A1 B1 1),
    (A0 B0 0, A1 B1 1, A2 B2 2),
    (A0 B0 0, A1 B1 1, A2 B2 2, A3 B3 3),
    (A0 B0 0, A1 B1 1, A2 B2 2, A3 B3 3, A4 B4 4),
    (A0 B0 0, A1 B1 1, A2 B2 2, A3 B3 3, A4 B4 4, A5 B5 5),
    (A0 B0 0, A1 B1 1, A2 B2 2, A3 B3 3, A4 B4 4, A5 B5 5, A6 B6 6),
    (A0 B0 0, A1 B1 1, A2 B2 2, A3 B3 3, A4 B4 4, A5 B5 5, A6 B6 6, A7 B7 7),
);
