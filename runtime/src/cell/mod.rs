//! Versioned cells: values that survive updates, owned by the runtime.
//!
//! A value that must survive an update of the code that uses it lives in a *cell*: the cell
//! points at its *current version*, the value together with the structural fingerprint of its
//! type and the function that drops it. A patch that changes the type transforms the value into
//! a new version and frees the old one once the update has committed; every access compares the
//! fingerprint the accessing code was compiled for with the current version's, so no code ever
//! sees a value of a layout it was not compiled for.
//!
//! Two kinds of cell share this machinery ([`Version`], [`CellRecord`]):
//!
//! * `named.rs`: [`State`](crate::State), a `static` handle to a cell found by a stable name, the
//!   same for the host and every patch (each of which has its own copy of every `static`);
//! * `field.rs`: [`Cell`](crate::Cell), a cell created at run time inside any value (a field of a
//!   struct in an `Arc`, of a task's state), registered with the runtime while it lives, so an
//!   update transforms every live cell whose value has a changed type.
//!
//! Access to either is scoped (`scope.rs`): a reference to a value never outlives the scope it
//! was taken in, and no update applies while any thread is inside one (the update protocol counts
//! it as running, `protocol/`). That is what makes freeing an old version sound: when the
//! applier replaces a version, no reference into it exists, and every later access starts from
//! the record's current version.

pub(crate) mod field;
pub(crate) mod named;
pub(crate) mod retire;
mod scope;

pub use field::Cell;
pub use named::State;
pub use scope::CellRef;

use crate::sync::{AtomicPtr, AtomicUsize, Ordering};
use scope::Scope;
use crate::transform::CellTransform;
use crate::Fingerprinted;
use dsu_abi::Fingerprint;

/// One version of a cell's value.
///
/// The value is a `Box` of the version's type behind a raw pointer; the version owns it. It is
/// dropped in one of two ways, both by code compiled for its type: through `drop_value` (made by
/// whoever made the version: the code that created the cell, or the transform that produced the
/// value) when its cell goes away holding it, or through the transform that replaced it
/// ([`CellTransform::retire`]) when an update commits.
pub(crate) struct Version {
    pub fingerprint: Fingerprint,
    pub type_name: &'static str,
    pub value: *const (),
    drop_value: unsafe fn(*const ()),
}

// SAFETY: the value behind a Version is a `T: Send + Sync` (`State` and `Cell` require it, and a
// transform's `New` too), so the version may be read from, dropped on or sent to any thread.
unsafe impl Send for Version {}
// SAFETY: as above.
unsafe impl Sync for Version {}

impl Version {
    /// The first version of a cell holding `value`.
    pub fn of<T: Fingerprinted + Send + Sync + 'static>(value: T) -> Box<Version> {
        Box::new(Version {
            fingerprint: T::FINGERPRINT,
            type_name: std::any::type_name::<T>(),
            value: Box::into_raw(Box::new(value)) as *const (),
            drop_value: drop_boxed::<T>,
        })
    }

    /// The version holding `value`, which `ct.run` made.
    pub fn transformed(ct: &'static CellTransform, value: *const ()) -> Box<Version> {
        Box::new(Version {
            fingerprint: ct.to,
            type_name: ct.to_type(),
            value,
            drop_value: ct.new_value_drop(),
        })
    }

    /// Drops the value through the function stored with it, then frees the version.
    ///
    /// # Safety
    /// No cell holds this version any more, and nothing else can reach its value.
    pub unsafe fn drop_with_value(self: Box<Self>) {
        let (value, drop_value) = (self.value, self.drop_value);
        drop(self);
        // SAFETY: `value` is this version's own value (`drop_value` was made for its type), and
        // the caller guarantees nothing else reaches it.
        unsafe { drop_value(value) }
    }
}

unsafe fn drop_boxed<T>(value: *const ()) {
    // SAFETY: `Version::drop_with_value`'s contract: `value` came from `Box::into_raw` of a `T`
    // in `Version::of::<T>` and is dropped once.
    drop(unsafe { Box::from_raw(value as *mut T) });
}

/// A cell: which version is current. Named cells' records are leaked (handles cache their
/// address); a field cell's record lives exactly as long as its [`Cell`].
pub(crate) struct CellRecord {
    current: AtomicPtr<Version>,
    /// A field cell's position in its registry bucket (`field.rs`); written only under the
    /// registry's lock.
    slot: AtomicUsize,
}

impl CellRecord {
    pub fn new(first: Box<Version>) -> CellRecord {
        CellRecord { current: AtomicPtr::new(Box::into_raw(first)), slot: AtomicUsize::new(0) }
    }

    /// The current version.
    ///
    /// # Safety
    /// The version may be replaced and freed by the applier of an update. The caller must keep
    /// it from being freed for as long as it uses the reference: be inside a cell scope (no
    /// update applies meanwhile), or be the applier, or hold the runtime's lock (the applier
    /// holds it while it replaces and frees versions), or own a field cell's record that is not
    /// registered.
    #[inline]
    pub unsafe fn current(&self) -> &Version {
        // SAFETY: `current` always points at a live version (set at creation, replaced only by
        // `replace`); the caller keeps it alive, see above.
        unsafe { &*self.current.load(Ordering::Acquire) }
    }

    /// Makes `version` current and hands back the version it replaces, which the caller (the
    /// applier) frees once no scope can reach it.
    pub fn replace(&self, version: Box<Version>) -> Box<Version> {
        let old = self.current.swap(Box::into_raw(version), Ordering::AcqRel);
        // SAFETY: `current` held a version made by `Box::into_raw`, which this swap took out of
        // the record: the caller now owns it.
        unsafe { Box::from_raw(old) }
    }

    /// Takes the current version out of a record that is going away.
    pub fn into_version(self) -> Box<Version> {
        // SAFETY: as in `replace`: the record owned its current version, and is consumed.
        unsafe { Box::from_raw(self.current.load(Ordering::Acquire)) }
    }
}

/// The access both kinds of cell give, as a guard: enters a scope, then reads the cell's current
/// version through `version` (inside the scope, which keeps it current and allocated for as long
/// as the guard lives), and hands out its value if it is a `T`; [`type_error`] otherwise, naming
/// the cell `cell` says (asked only then).
#[inline]
pub(crate) fn try_access<'a, T: Fingerprinted>(
    version: impl FnOnce() -> &'a Version,
    cell: impl FnOnce() -> Which,
) -> Result<CellRef<'a, T>, crate::Error> {
    // The scope begins before the version is read: no update replaces it from now on.
    let scope = Scope::enter();
    let version = version();
    if version.fingerprint != T::FINGERPRINT {
        return Err(type_error::<T>(cell(), version));
    }
    // SAFETY: the version's value is a `Box<T>` (its fingerprint is T's), alive for the scope,
    // which the guard holds for as long as the reference lives.
    Ok(CellRef::new(unsafe { &*(version.value as *const T) }, scope))
}

/// As [`try_access`], panicking on another type (what `with` and `access` do).
#[inline]
pub(crate) fn access<'a, T: Fingerprinted>(
    version: impl FnOnce() -> &'a Version,
    cell: impl FnOnce() -> Which,
) -> CellRef<'a, T> {
    let scope = Scope::enter();
    let version = version();
    if version.fingerprint != T::FINGERPRINT {
        type_panic::<T>(cell(), version);
    }
    // SAFETY: as in `try_access`.
    CellRef::new(unsafe { &*(version.value as *const T) }, scope)
}

/// Which cell an access is to, for its error.
#[derive(Clone, Copy)]
pub(crate) enum Which {
    /// The named cell of this name.
    Named(&'static str),
    /// A field cell (`dsu::Cell<T>`).
    Field,
}

/// The error of an access to a cell whose current version holds another type than `T`. Out of
/// line and cold: the access that inlines a call to it keeps a small frame.
#[cold]
#[inline(never)]
pub(crate) fn type_error<T: Fingerprinted>(cell: Which, version: &Version) -> crate::Error {
    crate::Error::StateType {
        name: match cell {
            Which::Named(name) => name.to_string(),
            Which::Field => format!("dsu::Cell<{}>", std::any::type_name::<T>()),
        },
        expected: format!("{} (fingerprint {})", std::any::type_name::<T>(), T::FINGERPRINT),
        found: format!("{} (fingerprint {})", version.type_name, version.fingerprint),
    }
}

/// Panics with [`type_error`]'s error (what `with` and `access` do on a mismatch).
#[cold]
#[inline(never)]
pub(crate) fn type_panic<T: Fingerprinted>(cell: Which, version: &Version) -> ! {
    panic!("{}", type_error::<T>(cell, version))
}
