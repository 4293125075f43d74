//! State transformers: how a value of an old type becomes a value of the new one.
//!
//! [`Transform<Old>`] is implemented by the new type. It reads the old value by reference, so the
//! old value stays untouched and a failed update changes nothing. Containers compose: when
//! `Entry: Transform<dsu_old::Entry>`, a `HashMap<String, Entry>`, a `Vec<Entry>` or an
//! `Option<Box<Entry>>` transforms from its old counterpart with no extra code. Types that do not
//! change transform to themselves: std leaves by copying, `#[dsu::updateable]` types field by
//! field.
//!
//! A patch carries one [`CellTransform`] per state cell whose type changes; the runtime runs them
//! all before anything switches (see `update.rs`).

use crate::Fingerprinted;
use dsu_abi::Fingerprint;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, RwLock};

/// Why a transformer could not produce the new value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformError(pub String);

impl std::fmt::Display for TransformError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TransformError {}

impl From<String> for TransformError {
    fn from(s: String) -> Self {
        TransformError(s)
    }
}

impl From<&str> for TransformError {
    fn from(s: &str) -> Self {
        TransformError(s.to_string())
    }
}

/// Makes a value of `Self` from a value of the old type `Old`, leaving the old value untouched.
///
/// Transformers run while the update is being applied, with the runtime locked: they must not
/// call into the dsu runtime themselves (`dsu::load`, `dsu::status`, update points).
#[diagnostic::on_unimplemented(
    message = "no dsu transformer makes a `{Self}` from a `{Old}`",
    label = "no transformer for this type",
    note = "unchanged types: mark them `#[dsu::updateable]`; changed ones: write `#[dsu::transform(from = dsu_old::T)] fn(&dsu_old::T) -> T`"
)]
pub trait Transform<Old: ?Sized>: Sized {
    fn transform(old: &Old) -> Result<Self, TransformError>;
}

macro_rules! same_by_clone {
    ($($t:ty),* $(,)?) => {
        $(impl Transform<$t> for $t {
            #[inline]
            fn transform(old: &$t) -> Result<Self, TransformError> {
                Ok(old.clone())
            }
        })*
    };
}

same_by_clone!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char, (),
    String, std::time::Duration, std::time::Instant, std::time::SystemTime, std::path::PathBuf,
);

macro_rules! same_atomic {
    ($($t:ident),* $(,)?) => {
        $(impl Transform<std::sync::atomic::$t> for std::sync::atomic::$t {
            fn transform(old: &std::sync::atomic::$t) -> Result<Self, TransformError> {
                Ok(Self::new(old.load(std::sync::atomic::Ordering::Acquire)))
            }
        })*
    };
}

same_atomic!(
    AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, AtomicI8, AtomicI16,
    AtomicI32, AtomicI64, AtomicIsize,
);

impl<A, B: Transform<A>> Transform<Vec<A>> for Vec<B> {
    fn transform(old: &Vec<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A>> Transform<VecDeque<A>> for VecDeque<B> {
    fn transform(old: &VecDeque<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A>> Transform<Option<A>> for Option<B> {
    fn transform(old: &Option<A>) -> Result<Self, TransformError> {
        old.as_ref().map(B::transform).transpose()
    }
}

impl<A, B: Transform<A>> Transform<Box<A>> for Box<B> {
    fn transform(old: &Box<A>) -> Result<Self, TransformError> {
        B::transform(old).map(Box::new)
    }
}

impl<A, B: Transform<A>> Transform<Arc<A>> for Arc<B> {
    fn transform(old: &Arc<A>) -> Result<Self, TransformError> {
        B::transform(old).map(Arc::new)
    }
}

impl<A, B: Transform<A>, E, F: Transform<E>> Transform<Result<A, E>> for Result<B, F> {
    fn transform(old: &Result<A, E>) -> Result<Self, TransformError> {
        Ok(match old {
            Ok(a) => Ok(B::transform(a)?),
            Err(e) => Err(F::transform(e)?),
        })
    }
}

/// Why a lock inside a state cell could not be transformed.
const LOCKED: &str = "a lock inside the cell is held by a thread that is at an update point or \
                      idle, reached outside the cell's scope (an `Arc` cloned out of the cell, or \
                      a leaked guard); release such locks before update points and idle sections";

impl<A, B: Transform<A>> Transform<Mutex<A>> for Mutex<B> {
    fn transform(old: &Mutex<A>) -> Result<Self, TransformError> {
        // Updates run while every thread is at an update point or idle; a thread may hold this
        // lock there. Waiting for it would never end: fail the update instead (nothing changes).
        // A poisoned lock still holds the last value written; carry it over.
        let guard = match old.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(LOCKED.into()),
        };
        // A panicking transformer must not poison the old value's lock on its way out: the old
        // value stays in use when the update is abandoned. Release the guard, then unwind.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| B::transform(&guard)));
        drop(guard);
        match result {
            Ok(r) => r.map(Mutex::new),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<A, B: Transform<A>> Transform<RwLock<A>> for RwLock<B> {
    fn transform(old: &RwLock<A>) -> Result<Self, TransformError> {
        let guard = match old.try_read() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Err(LOCKED.into()),
        };
        B::transform(&guard).map(RwLock::new)
    }
}

impl<K, A, B, S> Transform<HashMap<K, A, S>> for HashMap<K, B, S>
where
    K: Clone + Eq + Hash,
    B: Transform<A>,
    S: std::hash::BuildHasher + Clone,
{
    fn transform(old: &HashMap<K, A, S>) -> Result<Self, TransformError> {
        // The old map's hasher at the old map's capacity: every key lands in the bucket it had,
        // and the old map is walked in bucket order, so the new table fills front to back
        // instead of at random (a large map's inserts would otherwise each miss the cache).
        let mut new = HashMap::with_capacity_and_hasher(old.capacity(), old.hasher().clone());
        for (k, v) in old {
            new.insert(k.clone(), B::transform(v)?);
        }
        Ok(new)
    }
}

impl<K: Clone + Ord, A, B: Transform<A>> Transform<BTreeMap<K, A>> for BTreeMap<K, B> {
    fn transform(old: &BTreeMap<K, A>) -> Result<Self, TransformError> {
        old.iter().map(|(k, v)| Ok((k.clone(), B::transform(v)?))).collect()
    }
}

impl<A, B: Transform<A> + Eq + Hash> Transform<HashSet<A>> for HashSet<B> {
    fn transform(old: &HashSet<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A> + Ord> Transform<BTreeSet<A>> for BTreeSet<B> {
    fn transform(old: &BTreeSet<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A>> Transform<std::rc::Rc<A>> for std::rc::Rc<B> {
    fn transform(old: &std::rc::Rc<A>) -> Result<Self, TransformError> {
        B::transform(old).map(std::rc::Rc::new)
    }
}

impl<A: Copy, B: Transform<A> + Copy> Transform<std::cell::Cell<A>> for std::cell::Cell<B> {
    fn transform(old: &std::cell::Cell<A>) -> Result<Self, TransformError> {
        B::transform(&old.get()).map(std::cell::Cell::new)
    }
}

impl<A, B: Transform<A>> Transform<std::cell::RefCell<A>> for std::cell::RefCell<B> {
    fn transform(old: &std::cell::RefCell<A>) -> Result<Self, TransformError> {
        B::transform(&old.borrow()).map(std::cell::RefCell::new)
    }
}

impl<A, B: Transform<A>> Transform<std::collections::LinkedList<A>> for std::collections::LinkedList<B> {
    fn transform(old: &std::collections::LinkedList<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A> + Ord> Transform<std::collections::BinaryHeap<A>> for std::collections::BinaryHeap<B> {
    fn transform(old: &std::collections::BinaryHeap<A>) -> Result<Self, TransformError> {
        old.iter().map(B::transform).collect()
    }
}

impl<A, B: Transform<A>, const N: usize> Transform<[A; N]> for [B; N] {
    fn transform(old: &[A; N]) -> Result<Self, TransformError> {
        let v: Vec<B> = old.iter().map(B::transform).collect::<Result<_, _>>()?;
        Ok(v.try_into().unwrap_or_else(|_| unreachable!("N elements in, N out")))
    }
}

#[cfg(feature = "bytes")]
impl Transform<bytes::Bytes> for bytes::Bytes {
    fn transform(old: &bytes::Bytes) -> Result<Self, TransformError> {
        Ok(old.clone())
    }
}

#[cfg(feature = "bytes")]
impl Transform<bytes::BytesMut> for bytes::BytesMut {
    fn transform(old: &bytes::BytesMut) -> Result<Self, TransformError> {
        Ok(old.clone())
    }
}

macro_rules! tuples {
    ($(($($a:ident $b:ident $i:tt),+)),* $(,)?) => {
        $(impl<$($a, $b: Transform<$a>),+> Transform<($($a,)+)> for ($($b,)+) {
            fn transform(old: &($($a,)+)) -> Result<Self, TransformError> {
                Ok(($($b::transform(&old.$i)?,)+))
            }
        })*
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

/// A state cell's change of type, carried by a patch: the cell's name, the fingerprints of the
/// old and new types, and the monomorphised code that transforms one into the other.
///
/// `repr(C)` with the two fingerprints first: they hold no address, so the loader reads them
/// from the patch file before mapping it (`dsu_abi::cell_transform_fingerprints`).
#[repr(C)]
pub struct CellTransform {
    pub from: Fingerprint,
    pub to: Fingerprint,
    /// The cell's stable name.
    pub name: &'static str,
    from_type: fn() -> &'static str,
    to_type: fn() -> &'static str,
    run: unsafe fn(*const ()) -> Result<*const (), TransformError>,
    drop_new: unsafe fn(*const ()),
    /// Frees an old value once the update that transformed it has committed (`retire`).
    drop_old: unsafe fn(*const ()),
    /// Drops and frees a new value that was installed, when its cell goes away: stored with the
    /// cell's version, so a value is always dropped by code compiled for its type.
    free_new: unsafe fn(*const ()),
    /// A named cell's transform (`name` is the cell's) or a field cells' (applied to every live
    /// `dsu::Cell` whose value has the fingerprint `from`; `name` is the value type as written).
    kind: CellKind,
}

/// What a [`CellTransform`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum CellKind {
    /// The `dsu::State` cell of that name.
    Named,
    /// Every live `dsu::Cell` whose value has the transform's `from` fingerprint.
    Field,
}

// The layout the loader reads from the file: `from` at bytes 0..16, `to` at 16..32.
const _: () = {
    assert!(std::mem::offset_of!(CellTransform, from) == 0);
    assert!(std::mem::offset_of!(CellTransform, to) == 16);
    assert!(dsu_abi::CELL_TRANSFORM_FINGERPRINTS == 32);
};

impl CellTransform {
    /// The transform of cell `name` from `Old` to `New`. The patch's generated root holds one
    /// per changed cell.
    pub const fn new<Old, New>(name: &'static str) -> Self
    where
        Old: Fingerprinted + 'static,
        New: Transform<Old> + Fingerprinted + Send + Sync + 'static,
    {
        CellTransform {
            from: Old::FINGERPRINT,
            to: New::FINGERPRINT,
            name,
            from_type: std::any::type_name::<Old>,
            to_type: std::any::type_name::<New>,
            run: run::<Old, New>,
            drop_new: drop_new::<New>,
            drop_old: drop_old::<Old>,
            free_new: drop_new::<New>,
            kind: CellKind::Named,
        }
    }

    /// The transform of every live field cell (`dsu::Cell<Old>`) whose value is an `Old` into
    /// a `New`; `type_text` is the new value type as written, for messages. The patch's generated
    /// code holds one per old type of field cell it changes.
    pub const fn field<Old, New>(type_text: &'static str) -> Self
    where
        Old: Fingerprinted + 'static,
        New: Transform<Old> + Fingerprinted + Send + Sync + 'static,
    {
        CellTransform { kind: CellKind::Field, ..Self::new::<Old, New>(type_text) }
    }

    /// Whether this is the transform of field cells (by fingerprint) rather than of a named cell.
    pub(crate) fn is_field(&self) -> bool {
        self.kind == CellKind::Field
    }

    /// How to drop and free a value this transform made, once it is installed: what its cell's
    /// version keeps for when the cell goes away.
    pub(crate) fn new_value_drop(&self) -> unsafe fn(*const ()) {
        self.free_new
    }

    pub fn from_type(&self) -> &'static str {
        (self.from_type)()
    }

    pub fn to_type(&self) -> &'static str {
        (self.to_type)()
    }

    /// Transforms the cell value at `old`, which must be an `Old`; returns the new value, boxed
    /// and leaked, to be installed or handed to [`CellTransform::discard`]. A panic in the
    /// transformer is caught and returned as an error.
    ///
    /// # Safety
    /// `old` must point at a live value of this transform's `Old` type (the runtime checks the
    /// cell's current fingerprint equals `from` first).
    pub(crate) unsafe fn run(&self, old: *const ()) -> Result<*const (), TransformError> {
        let run = self.run;
        // SAFETY: the caller's contract.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { run(old) })) {
            Ok(r) => r,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                Err(TransformError(format!("panicked: {msg}")))
            }
        }
    }

    /// Drops a value made by [`CellTransform::run`] that will not be installed.
    ///
    /// # Safety
    /// `new` must come from this transform's `run` and not be installed or discarded yet.
    pub(crate) unsafe fn discard(&self, new: *const ()) {
        // SAFETY: the caller's contract.
        unsafe { (self.drop_new)(new) }
    }
}

impl CellTransform {
    /// Frees the old value `old` once the update that transformed it has committed: nothing
    /// reaches it any more (see `update.rs`).
    ///
    /// # Safety
    /// `old` must be the value this transform's `run` read, a `Box` of the `Old` type, no longer
    /// installed in any cell, and not used after this call.
    pub(crate) unsafe fn retire(&self, old: *const ()) {
        // SAFETY: the caller's contract.
        unsafe { (self.drop_old)(old) }
    }
}

unsafe fn drop_old<Old>(old: *const ()) {
    // SAFETY: `CellTransform::retire`'s contract: `old` came from `Box::into_raw` of an `Old`.
    drop(unsafe { Box::from_raw(old as *mut Old) });
}

unsafe fn run<Old, New: Transform<Old>>(old: *const ()) -> Result<*const (), TransformError> {
    // SAFETY: `CellTransform::run`'s contract: `old` is a live `Old`.
    let old = unsafe { &*(old as *const Old) };
    New::transform(old).map(|new| Box::into_raw(Box::new(new)) as *const ())
}

unsafe fn drop_new<New>(new: *const ()) {
    // SAFETY: `CellTransform::discard`'s contract: `new` came from `Box::into_raw` of a `New`.
    drop(unsafe { Box::from_raw(new as *mut New) });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Old {
        name: String,
        hits: u32,
    }
    #[derive(Debug, PartialEq)]
    struct New {
        name: String,
        hits: u64,
        seen: bool,
    }
    impl Transform<Old> for New {
        fn transform(old: &Old) -> Result<Self, TransformError> {
            if old.name.is_empty() {
                return Err("empty name".into());
            }
            Ok(New { name: old.name.clone(), hits: old.hits.into(), seen: false })
        }
    }

    struct Bomb;
    impl Transform<Old> for Bomb {
        fn transform(_: &Old) -> Result<Self, TransformError> {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_transformer_does_not_poison_the_old_value() {
        let old = Mutex::new(Old { name: "a".into(), hits: 1 });
        let r = std::panic::catch_unwind(|| <Mutex<Bomb>>::transform(&old));
        assert!(r.is_err());
        assert!(!old.is_poisoned());
        assert_eq!(old.lock().unwrap().hits, 1);
    }

    #[test]
    fn containers_compose() {
        let mut old = HashMap::new();
        old.insert("a".to_string(), Old { name: "a".into(), hits: 3 });
        let new = <Mutex<HashMap<String, New>>>::transform(&Mutex::new(old)).unwrap();
        let new = new.into_inner().unwrap();
        assert_eq!(new["a"], New { name: "a".into(), hits: 3, seen: false });
        let v = <Vec<Option<Box<New>>>>::transform(&vec![None, Some(Box::new(Old { name: "b".into(), hits: 1 }))]).unwrap();
        assert_eq!(v[1].as_ref().unwrap().hits, 1);
        let err = <Vec<New>>::transform(&vec![Old { name: "".into(), hits: 1 }]).unwrap_err();
        assert_eq!(err.0, "empty name");
    }

    /// A thread at an update point may hold a lock inside a state cell that it reached outside
    /// the cell's scope (through an `Arc` cloned out of it, or a leaked guard): the transform
    /// fails the update instead of waiting for a lock that is released only after the update.
    #[test]
    fn a_held_lock_fails_the_transform_instead_of_deadlocking() {
        let old = Mutex::new(Old { name: "a".into(), hits: 1 });
        let held = old.lock().unwrap();
        let err = <Mutex<New>>::transform(&old).unwrap_err();
        assert!(err.0.contains("held by a thread"), "{err}");
        drop(held);
        assert_eq!(<Mutex<New>>::transform(&old).unwrap().into_inner().unwrap().hits, 1);

        let old = RwLock::new(Old { name: "b".into(), hits: 2 });
        let held = old.write().unwrap();
        assert!(<RwLock<New>>::transform(&old).is_err());
        drop(held);
        let reading = old.read().unwrap();
        assert_eq!(<RwLock<New>>::transform(&old).unwrap().into_inner().unwrap().hits, 2, "readers do not block it");
        drop(reading);
    }
}
