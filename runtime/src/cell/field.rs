//! Field cells: versioned values created at run time, inside any value.
//!
//! Real servers keep state in values they create and share (an `Arc<Shared>` cloned into every
//! connection task), not in statics. A [`Cell`] can be a field of such a value: it is a handle to
//! a record the runtime knows for as long as the cell lives, so an update that changes the type of
//! its value transforms it where it is, along with every other live cell whose value has that
//! type. A patch's transform for field cells is keyed by the old value type's fingerprint, not by
//! a name: field cells have none.
//!
//! **The registry.** Every live field cell's record is in one bucket per fingerprint of its
//! current value, under one lock. Creating a cell inserts its record (a push), dropping it
//! removes it (a swap-remove: the record knows its position), both under the lock and without
//! running any code of the program's under it. The applier of an update holds the lock from the
//! moment it lists the cells to transform until every new value is installed, so a cell created
//! or dropped meanwhile on a thread the update protocol counts as idle (an executor thread between
//! polls, code outside updateable functions) waits for the update, and is either listed and
//! transformed or not there at all.
//!
//! **On the applier's own thread** (a transformer that creates or drops a cell, an old value
//! dropped once the update commits) the lock is already held: the registry is reached through the
//! applier's hold, and a drop is deferred until the applier has released it.
//!
//! **Late values.** Code that started before an update may create a cell of the old type after
//! the update committed (an executor thread counts as idle while it runs a plain function). The
//! registry keeps each committed field transform, by the fingerprint it transforms from, and such
//! a cell is transformed on creation, as the update would have done.

use super::scope::CellRef;
use super::{CellRecord, Version, Which};
use crate::sync::{Mutex, MutexGuard, Ordering};
use crate::transform::{CellTransform, Transform, TransformError};
use crate::{Error, Fingerprinted};
use dsu_abi::Fingerprint;
use std::cell::Cell as StdCell;
use std::marker::PhantomData;
use std::ptr::NonNull;

/// A versioned value that can live anywhere: a field of a struct in an `Arc`, of a task's state,
/// created at run time. An update that changes the type of its value transforms it in place, as
/// it transforms a [`State`](crate::State) cell; dropping the cell drops its current value.
///
/// ```ignore
/// struct Shared {
///     store: dsu::Cell<Mutex<Store>>,
/// }
/// let shared = Arc::new(Shared { store: dsu::Cell::new(Mutex::new(Store::default())) });
/// // In any task holding a clone of `shared`:
/// let n = shared.store.with(|s| s.lock().unwrap().len());
/// ```
///
/// Access is scoped, exactly as [`State`](crate::State)'s is: [`Cell::with`] runs a closure
/// with `&T`, [`Cell::access`] returns a guard that stays on its thread, and a thread inside
/// either counts as running, so no update applies meanwhile. Each access checks that the cell's
/// current version has the fingerprint the accessing code was compiled for ([`Error::StateType`]
/// otherwise, never the value).
///
/// A cell is registered with the runtime while it lives: creating one and dropping one each take
/// a short lock (a push or a swap-remove), which waits while an update is being applied. Its own
/// layout does not depend on `T` (it is one pointer), so a struct holding it keeps its layout and
/// its fingerprint when `T` changes; the value's type is checked at every access instead. It is
/// `repr(transparent)` over that pointer: a patch's code views the same cell through its own `T`.
#[repr(transparent)]
pub struct Cell<T: 'static> {
    record: NonNull<CellRecord>,
    _value: PhantomData<T>,
}

// SAFETY: the cell owns its record and its value, a `T: Send + Sync` (`Cell::new` requires it,
// and so does every transform that installs a new value); any thread may access, transform or
// drop it.
unsafe impl<T: Send + Sync> Send for Cell<T> {}
// SAFETY: shared access hands out `&T` inside scopes only, and `T: Sync`.
unsafe impl<T: Send + Sync> Sync for Cell<T> {}

impl<T: Fingerprinted + Send + Sync + 'static> Cell<T> {
    /// A new cell holding `value`, registered with the runtime until it is dropped.
    pub fn new(value: T) -> Self {
        let record = RecordPtr(NonNull::from(Box::leak(Box::new(CellRecord::new(Version::of(value))))));
        register(record);
        Cell { record: record.0, _value: PhantomData }
    }

    /// Runs `f` with the value, inside a scope: the reference cannot outlive the call, and while
    /// it runs no update applies. Panics when the cell holds another type (see
    /// [`Cell::try_with`]).
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let value = self.access();
        f(&value)
    }

    /// Runs `f` with the value, as [`Cell::with`] does, or returns [`Error::StateType`] without
    /// calling it when the cell's current version has another fingerprint than the one this code
    /// was compiled for.
    #[inline]
    pub fn try_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, Error> {
        let value = self.try_access()?;
        Ok(f(&value))
    }

    /// The value behind a guard, a scope that lasts as long as the guard (see
    /// [`State::access`](crate::State::access)). Panics when the cell holds another type.
    #[inline]
    pub fn access(&self) -> CellRef<'_, T> {
        super::access(|| self.version(), || Which::Field)
    }

    /// The value behind a guard, as [`Cell::access`] gives it, or [`Error::StateType`] when the
    /// cell's current version has another fingerprint than the one this code was compiled for.
    #[inline]
    pub fn try_access(&self) -> Result<CellRef<'_, T>, Error> {
        super::try_access(|| self.version(), || Which::Field)
    }

    /// The cell's current version. Call it inside a scope, which keeps the version current and
    /// allocated for as long as the scope lives.
    #[inline]
    fn version(&self) -> &Version {
        // SAFETY: the record lives as long as this cell, which `&self` borrows. The caller is
        // inside a scope: no update applies, so the version is not replaced or freed, while it
        // uses it.
        unsafe { self.record.as_ref().current() }
    }
}

impl<T: 'static> Drop for Cell<T> {
    fn drop(&mut self) {
        // Never `T`'s drop: the current value may be of another type by now, made by a patch.
        release(RecordPtr(self.record));
    }
}

impl<T: Default + Fingerprinted + Send + Sync + 'static> Default for Cell<T> {
    fn default() -> Self {
        Cell::new(T::default())
    }
}

impl<T: Fingerprinted + Send + Sync + 'static> From<T> for Cell<T> {
    fn from(value: T) -> Self {
        Cell::new(value)
    }
}

impl<T: std::fmt::Debug + Fingerprinted + Send + Sync + 'static> std::fmt::Debug for Cell<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.try_access() {
            Ok(v) => f.debug_tuple("Cell").field(&*v).finish(),
            Err(_) => f.write_str("Cell(<a value of another type>)"),
        }
    }
}

/// A cell's layout is one pointer whatever `T` is: a struct that holds one keeps its fingerprint
/// when `T` changes (the value is checked at every access, and transformed by fingerprint).
impl<T: 'static> Fingerprinted for Cell<T> {
    const FINGERPRINT: Fingerprint = Fingerprint::of_text("dsu::Cell")
        .with_layout(std::mem::size_of::<Cell<T>>(), std::mem::align_of::<Cell<T>>());
}

/// A value holding a cell moves it whole: a cell is a pointer to its record, and its value is
/// transformed in place, by the patch's field transforms, whatever holds the cell (its
/// fingerprint does not depend on `T`, so a value holding one keeps its own).
// SAFETY: `Old` is `Self`, and the value moves whole: one bitwise copy of the pointer, released
// by nobody (the record stays the one cell's, owned by whichever value is kept).
unsafe impl<T: 'static> Transform<Cell<T>> for Cell<T> {
    const IDENTITY: bool = true;

    #[inline(always)]
    unsafe fn transform(old: &Cell<T>) -> Result<Self, TransformError> {
        // SAFETY: the caller settles the move (both releases below do nothing).
        Ok(unsafe { crate::transform::carry(old) })
    }

    #[inline(always)]
    unsafe fn release_old(_: *mut Cell<T>) {}

    #[inline(always)]
    unsafe fn release_new(_: *mut Cell<T>) {}
}

/// The address of a field cell's record, as the registry keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RecordPtr(NonNull<CellRecord>);

// SAFETY: a record is shared between its cell and the registry; every write to it happens under
// the registry's lock or by its owner after the record left the registry.
unsafe impl Send for RecordPtr {}

impl RecordPtr {
    /// The record.
    ///
    /// # Safety
    /// The record must still be alive: registered (and used under the registry's lock, or by the
    /// applier), or owned by the caller.
    unsafe fn get<'a>(self) -> &'a CellRecord {
        // SAFETY: the caller's contract.
        unsafe { self.0.as_ref() }
    }

    /// The record's current version.
    ///
    /// # Safety
    /// As for [`CellRecord::current`], and the record must be alive (see [`RecordPtr::get`]).
    pub unsafe fn current<'a>(self) -> &'a Version {
        // SAFETY: the caller's contract.
        unsafe { self.get().current() }
    }
}

/// The live field cells whose current value has one fingerprint.
struct Bucket {
    fingerprint: Fingerprint,
    records: Vec<RecordPtr>,
}

struct Registry {
    buckets: Vec<Bucket>,
    /// The field transforms committed so far, at most one per `from` fingerprint: a cell created
    /// later with a value of that type is transformed on creation. A transform back to a type
    /// (a rollback) takes that type out, so the transforms form no cycle.
    superseded: Vec<&'static CellTransform>,
    /// Cells dropped on the applier's thread while it held the lock, released once it no longer
    /// does.
    deferred: Vec<RecordPtr>,
}

impl Registry {
    fn bucket(&mut self, fingerprint: Fingerprint) -> &mut Bucket {
        let i = match self.buckets.iter().position(|b| b.fingerprint == fingerprint) {
            Some(i) => i,
            None => {
                self.buckets.push(Bucket { fingerprint, records: Vec::new() });
                self.buckets.len() - 1
            }
        };
        &mut self.buckets[i]
    }

    fn insert(&mut self, record: RecordPtr, fingerprint: Fingerprint) {
        let bucket = self.bucket(fingerprint);
        // SAFETY: `record` is alive (the caller is registering it) and the lock is held.
        unsafe { record.get() }.slot.store(bucket.records.len(), Ordering::Relaxed);
        bucket.records.push(record);
    }

    fn remove(&mut self, record: RecordPtr, fingerprint: Fingerprint) {
        let Some(b) = self.buckets.iter().position(|b| b.fingerprint == fingerprint) else {
            unreachable!("a registered field cell is in the bucket of its value's fingerprint")
        };
        let bucket = &mut self.buckets[b];
        // SAFETY: `record` is registered (alive) and the lock is held.
        let i = unsafe { record.get() }.slot.load(Ordering::Relaxed);
        assert!(bucket.records.get(i) == Some(&record), "field cell registry out of order");
        bucket.records.swap_remove(i);
        if let Some(moved) = bucket.records.get(i) {
            // SAFETY: every record in a bucket is alive, and the lock is held.
            unsafe { moved.get() }.slot.store(i, Ordering::Relaxed);
        }
        if bucket.records.is_empty() {
            self.buckets.swap_remove(b);
        }
    }

    fn records_of(&self, fingerprint: Fingerprint) -> &[RecordPtr] {
        self.buckets.iter().find(|b| b.fingerprint == fingerprint).map_or(&[], |b| &b.records)
    }
}

static REGISTRY: Mutex<Registry> =
    Mutex::new(Registry { buckets: Vec::new(), superseded: Vec::new(), deferred: Vec::new() });

thread_local! {
    /// The registry, while this thread applies an update holding its lock (see [`Applying`]).
    /// A `const` thread-local without destructor: readable during thread exit too, where an
    /// exiting thread may apply an update.
    static HELD_HERE: StdCell<*mut Registry> = const { StdCell::new(std::ptr::null_mut()) };
}

/// Runs `f` on the registry, under its lock, or through the hold of the applier when this thread
/// is applying an update; `f` learns which. `f` runs no code of the program's, so it never
/// re-enters.
fn with_registry<R>(f: impl FnOnce(&mut Registry, bool) -> R) -> R {
    let held = HELD_HERE.with(StdCell::get);
    if held.is_null() {
        // Nothing under this lock panics halfway through a change.
        let mut guard = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard, false)
    } else {
        // SAFETY: `held` is set only by `Applying::begin` on this thread, from the guard it keeps
        // until `Applying::end` clears it; every access to the registry meanwhile, the applier's
        // own included, goes through this pointer, one `f` at a time (no `f` re-enters).
        f(unsafe { &mut *held }, true)
    }
}

/// Registers a new cell's record; a value of a type an update has transformed away is
/// transformed first.
fn register(record: RecordPtr) {
    loop {
        // SAFETY: the record is ours and not registered yet.
        let fingerprint = unsafe { record.current() }.fingerprint;
        let superseded = with_registry(|reg, _| {
            let ct = reg.superseded.iter().copied().find(|ct| ct.from == fingerprint);
            if ct.is_none() {
                reg.insert(record, fingerprint);
            }
            ct
        });
        let Some(ct) = superseded else { return };
        // Outside the lock: the transformer is the program's code.
        if !upgrade_late(record, ct) {
            with_registry(|reg, _| reg.insert(record, fingerprint));
            return;
        }
    }
}

/// Transforms the value of a cell created (not registered yet) with a value of the type `ct`
/// transforms from, after the update that carried `ct` committed; false if the transformer
/// failed, and then the cell keeps its value, of the old type: code compiled for the new one gets
/// [`Error::StateType`] from it.
fn upgrade_late(record: RecordPtr, ct: &'static CellTransform) -> bool {
    // SAFETY: the record is ours and not registered: nothing else reaches its version.
    let old = unsafe { record.current() };
    // SAFETY: the value has fingerprint `ct.from`: it is the transform's old type.
    match unsafe { ct.run(old.value) } {
        Ok(new) => {
            // SAFETY: the record is ours (see above).
            let old = unsafe { record.get() }.replace(Version::transformed(ct, new));
            retire(ct, old);
            true
        }
        Err(e) => {
            tracing::warn!(
                target: "dsu",
                from = old.type_name,
                to = ct.to_type(),
                error = %e,
                "a dsu::Cell was created with a value of a type an applied update changed, and its \
                 transformer failed; the cell keeps the old value"
            );
            false
        }
    }
}

/// Drops a cell: unregisters its record, then drops the current value through the function
/// stored with that version, outside the lock. On the applier's thread, while it holds the lock,
/// the release waits until the applier has finished (the record stays registered meanwhile, and
/// is transformed like any other).
fn release(record: RecordPtr) {
    let deferred = with_registry(|reg, applying| {
        if applying {
            reg.deferred.push(record);
        } else {
            // SAFETY: registered and under the lock: the version is current and stays so.
            let fingerprint = unsafe { record.current() }.fingerprint;
            reg.remove(record, fingerprint);
        }
        applying
    });
    if deferred {
        return;
    }
    // SAFETY: the record left the registry above, under its lock: no update reaches it any more
    // (an applier lists cells under the lock), and its cell, the only other owner, is going away.
    let record = unsafe { Box::from_raw(record.0.as_ptr()) };
    let version = record.into_version();
    // SAFETY: the version was the record's own and nothing else reaches it now.
    unsafe { version.drop_with_value() };
}

/// Frees `old`, a version an update (or a late transform) replaced using `ct`: the transform's
/// `retire` frees its value, as code compiled for its type. A panic there (a `Drop` of the
/// program's) is reported and goes no further: the update has committed.
pub(crate) fn retire(ct: &'static CellTransform, old: Box<Version>) {
    let value = old.value;
    drop(old);
    // SAFETY: the version is no longer installed anywhere and no scope can reach it (the
    // caller's argument: it replaced it as the applier, or owned the record); its value has
    // fingerprint `ct.from`, the value `ct.run` read.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { ct.retire(value) }));
    if r.is_err() {
        tracing::warn!(
            target: "dsu",
            from = ct.from_type(),
            "dropping a value an update replaced panicked; the update stays applied"
        );
    }
}

/// The registry held by the applier of an update: from the listing of the cells to transform
/// until every new value is installed (see the module docs).
pub(crate) struct Applying {
    _guard: MutexGuard<'static, Registry>,
}

impl Applying {
    /// Takes the registry's lock for the applier on this thread.
    pub fn begin() -> Applying {
        let mut guard = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        let registry: *mut Registry = &mut *guard;
        HELD_HERE.with(|h| h.set(registry));
        Applying { _guard: guard }
    }

    /// The live cells whose value has fingerprint `fingerprint`.
    pub fn cells_of(&self, fingerprint: Fingerprint) -> Vec<RecordPtr> {
        with_registry(|reg, _| reg.records_of(fingerprint).to_vec())
    }

    /// How many live cells hold a value of fingerprint `fingerprint`.
    pub fn count_of(&self, fingerprint: Fingerprint) -> usize {
        with_registry(|reg, _| reg.records_of(fingerprint).len())
    }

    /// Makes `version` current in the registered cell `record` (its bucket follows) and hands
    /// back the version it replaces, which the caller frees once it has released the registry.
    pub fn install(&self, record: RecordPtr, version: Box<Version>) -> Box<Version> {
        with_registry(|reg, _| {
            // SAFETY: listed by `cells_of` under this hold: registered and alive (a drop
            // meanwhile was deferred).
            let from = unsafe { record.current() }.fingerprint;
            reg.remove(record, from);
            reg.insert(record, version.fingerprint);
            // SAFETY: as above.
            unsafe { record.get() }.replace(version)
        })
    }

    /// Remembers the committed transform `ct`, so that a cell created later with a value of its
    /// old type is transformed on creation.
    pub fn supersede(&self, ct: &'static CellTransform) {
        with_registry(|reg, _| {
            reg.superseded.retain(|s| s.from != ct.from && s.from != ct.to);
            reg.superseded.push(ct);
        });
    }

    /// Releases the registry, then the cells dropped on this thread meanwhile.
    pub fn end(self) {
        let deferred = with_registry(|reg, _| std::mem::take(&mut reg.deferred));
        HELD_HERE.with(|h| h.set(std::ptr::null_mut()));
        drop(self);
        for record in deferred {
            release(record);
        }
    }
}

impl Drop for Applying {
    fn drop(&mut self) {
        // Also on an unwinding applier: the thread no longer holds the registry.
        HELD_HERE.with(|h| h.set(std::ptr::null_mut()));
    }
}

/// The fingerprints of the values of live field cells, each with its type's name and how many
/// cells hold one.
pub(crate) fn live_types() -> Vec<(Fingerprint, &'static str, usize)> {
    with_registry(|reg, _| {
        reg.buckets
            .iter()
            .filter_map(|b| {
                let first = *b.records.first()?;
                // SAFETY: registered, under the lock: alive, and its version current.
                let version = unsafe { first.current() };
                Some((b.fingerprint, version.type_name, b.records.len()))
            })
            .collect()
    })
}

/// How many live field cells hold a value of fingerprint `fingerprint`. For tests.
pub(crate) fn live_count(fingerprint: Fingerprint) -> usize {
    with_registry(|reg, _| reg.records_of(fingerprint).len())
}

/// The record a patch exports for each `dsu::Cell<T>` type its code names
/// (`dsu_abi::FieldCellInfo`): where the type is written and the fingerprint of `T` as that code
/// was compiled. `cargo dsu` generates one per type and module of the updateable set; the loader
/// reads them from the patch file and refuses a patch that neither knows nor transforms the type
/// of a live field cell.
#[doc(hidden)]
#[repr(transparent)]
pub struct FieldCellInfo<const N: usize>(pub dsu_abi::FieldCellInfo<N>);

impl<const N: usize> FieldCellInfo<N> {
    /// The record of `dsu::Cell<T>` written in module `place`; `type_text` is `T` as written.
    /// `N` must be `place.len() + type_text.len()` (a compile error otherwise).
    pub const fn new<T: Fingerprinted>(place: &str, type_text: &str) -> Self {
        FieldCellInfo(dsu_abi::FieldCellInfo::new(place, type_text, T::FINGERPRINT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Types with fingerprints of their own (each test uses its own, since the registry is the
    /// process's), counting their drops.
    macro_rules! counted {
        ($($name:ident $drops:ident),* $(,)?) => {$(
            static $drops: AtomicUsize = AtomicUsize::new(0);
            #[derive(Debug, PartialEq)]
            struct $name(u64);
            impl Drop for $name {
                fn drop(&mut self) {
                    $drops.fetch_add(1, SeqCst);
                }
            }
            impl Fingerprinted for $name {
                const FINGERPRINT: Fingerprint = Fingerprint::of_text(stringify!($name));
            }
        )*};
    }

    counted!(Listed LISTED_DROPS, Before BEFORE_DROPS, After AFTER_DROPS, Held HELD_DROPS, Late LATE_DROPS, Later LATER_DROPS);

    // SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
    // both sides are dropped whole (`FRESH`).
    unsafe impl Transform<Before> for After {
        const FRESH: bool = true;
        unsafe fn transform(old: &Before) -> Result<Self, TransformError> {
            Ok(After(old.0 * 10))
        }
    }
    static BEFORE_TO_AFTER: CellTransform = CellTransform::field::<Before, After>("After");

    // SAFETY: builds a fresh value from a shared reference and takes nothing of the old one:
    // both sides are dropped whole (`FRESH`).
    unsafe impl Transform<Late> for Later {
        const FRESH: bool = true;
        unsafe fn transform(old: &Late) -> Result<Self, TransformError> {
            Ok(Later(old.0 + 1))
        }
    }
    static LATE_TO_LATER: CellTransform = CellTransform::field::<Late, Later>("Later");

    #[test]
    fn registration_follows_each_cells_life() {
        let mut cells: Vec<Cell<Listed>> = (0..100).map(|i| Cell::new(Listed(i))).collect();
        assert_eq!(live_count(Listed::FINGERPRINT), 100);
        // Out of order, so that swap-removes move records around in the bucket.
        for i in (0..100).rev().step_by(3) {
            drop(cells.remove(i));
        }
        assert_eq!(live_count(Listed::FINGERPRINT), cells.len());
        assert_eq!(LISTED_DROPS.load(SeqCst), 100 - cells.len());
        let values: Vec<u64> = cells.iter().map(|c| c.with(|v| v.0)).collect();
        assert!(values.windows(2).all(|w| w[0] < w[1]), "each cell kept its own value");
        while let Some(c) = cells.pop() {
            drop(c);
            assert_eq!(live_count(Listed::FINGERPRINT), cells.len());
        }
        assert_eq!(LISTED_DROPS.load(SeqCst), 100);
    }

    /// As the applier does it: the new value is installed and the old one retired; dropping the
    /// cell later drops the new value through its version's function, never `T`'s.
    #[test]
    fn a_transformed_cell_drops_its_value_with_its_versions_function() {
        let cells: Vec<std::sync::Arc<Cell<Before>>> =
            (1..=3).map(|i| std::sync::Arc::new(Cell::new(Before(i)))).collect();
        let registry = Applying::begin();
        let listed = registry.cells_of(Before::FINGERPRINT);
        assert_eq!(listed.len(), 3);
        let mut old = Vec::new();
        for r in listed {
            // SAFETY: listed under this hold; the value is a `Before`.
            let new = unsafe { BEFORE_TO_AFTER.run(r.current().value) }.unwrap();
            old.push(registry.install(r, Version::transformed(&BEFORE_TO_AFTER, new)));
        }
        registry.supersede(&BEFORE_TO_AFTER);
        registry.end();
        assert_eq!(BEFORE_DROPS.load(SeqCst), 0, "old values live until retired");
        for v in old {
            retire(&BEFORE_TO_AFTER, v);
        }
        assert_eq!(BEFORE_DROPS.load(SeqCst), 3, "retired: freed");
        assert_eq!((live_count(Before::FINGERPRINT), live_count(After::FINGERPRINT)), (0, 3));
        // The code compiled for the old type no longer reaches the value; the new code does.
        assert!(matches!(cells[0].try_with(|_| ()), Err(Error::StateType { .. })));
        // SAFETY: `Cell` is `repr(transparent)` over its record pointer, whatever its `T`: this is
        // the view a patch's code compiled for `After` has of the same cell.
        let view = unsafe { &*(&*cells[1] as *const Cell<Before> as *const Cell<After>) };
        assert_eq!(view.with(|v| v.0), 20);
        drop(cells);
        assert_eq!(AFTER_DROPS.load(SeqCst), 3, "dropped through the new version's function");
        assert_eq!(BEFORE_DROPS.load(SeqCst), 3, "and never as the old type");
        assert_eq!(live_count(After::FINGERPRINT), 0);

        // A value of the old type made after the update (by code that started before it) is
        // transformed on creation, as the update would have done.
        let late = Cell::new(Before(7));
        assert_eq!(BEFORE_DROPS.load(SeqCst), 4, "its old value was retired");
        assert_eq!((live_count(Before::FINGERPRINT), live_count(After::FINGERPRINT)), (0, 1));
        // SAFETY: as above.
        let view = unsafe { &*(&late as *const Cell<Before> as *const Cell<After>) };
        assert_eq!(view.with(|v| v.0), 70);
    }

    /// On the applier's thread, while it holds the registry, a dropped cell stays registered (and
    /// would be transformed) until the applier lets go.
    #[test]
    fn a_drop_on_the_applier_thread_waits_for_the_end_of_the_update() {
        let cell = Cell::new(Held(1));
        let registry = Applying::begin();
        drop(cell);
        assert_eq!(registry.count_of(Held::FINGERPRINT), 1, "deferred");
        assert_eq!(HELD_DROPS.load(SeqCst), 0);
        // Creating one works through the hold, without the lock.
        let other = Cell::new(Held(2));
        assert_eq!(registry.count_of(Held::FINGERPRINT), 2);
        registry.end();
        assert_eq!(HELD_DROPS.load(SeqCst), 1);
        assert_eq!(live_count(Held::FINGERPRINT), 1);
        drop(other);
        assert_eq!(live_count(Held::FINGERPRINT), 0);
    }

    /// Another thread's creation and drop wait while the applier holds the registry.
    #[test]
    fn other_threads_wait_for_the_applier() {
        let registry = Applying::begin();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let c = Cell::new(Late(1));
            tx.send(()).unwrap();
            drop(c);
        });
        // Bounded: the thread is blocked on the registry's lock, which this thread holds.
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "created beside the applier");
        registry.supersede(&LATE_TO_LATER);
        registry.end();
        rx.recv().unwrap();
        t.join().unwrap();
        // Created after the update's end: transformed on creation, then dropped as the new type.
        assert_eq!((LATE_DROPS.load(SeqCst), LATER_DROPS.load(SeqCst)), (1, 1));
    }
}
