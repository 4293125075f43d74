//! Named cells: `static` handles to values found by a stable name.
//!
//! A plain `static` of the updateable crate does not survive: every patch is a second copy of
//! the crate with its own statics. A [`State`] static is only a handle; the value lives in the
//! runtime (one copy per process, in the shared library) and is found by its stable name, so the
//! host and every patch reach the same value. Its record is leaked (handles cache its address);
//! its versions are freed by the update that replaces them (see `mod.rs`).

use super::scope::CellRef;
use super::{CellRecord, Version, Which};
use crate::sync::{AtomicPtr, Mutex, Ordering};
use crate::{Error, Fingerprinted};
use std::collections::HashMap;
use std::marker::PhantomData;

/// A cell found by a stable name; the same value for the host and every patch.
///
/// ```ignore
/// static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));
/// HITS.with(|h| h.fetch_add(1, Ordering::Relaxed));
/// let n = STORE.with(|s| s.lock().unwrap().len());
/// ```
///
/// Access is scoped, as `thread_local!`'s is: a closure ([`State::with`]) or a guard that
/// belongs to its thread ([`State::access`], a [`CellRef`]). A reference to the value never
/// outlives its scope, and a thread inside a scope counts as running: no update applies while it
/// is in one, so no code holds a reference into a value an update has replaced.
///
/// The first access anywhere in the process runs `init`; later accesses (from any copy of the
/// crate) get the same value. An access is a scope (a thread-local increment and decrement on a
/// thread that runs updateable code; see `docs/PERFORMANCE.md`), two loads and a 16-byte compare:
/// the handle caches the cell, and checks that the cell's current version has the fingerprint
/// ([`Fingerprinted`]) the accessing code was compiled for. A mismatch is [`Error::StateType`],
/// never the value.
pub struct State<T: 'static> {
    name: &'static str,
    init: fn() -> T,
    cell: AtomicPtr<CellRecord>,
    _marker: PhantomData<&'static T>,
}

static CELLS: Mutex<Option<HashMap<String, &'static CellRecord>>> = Mutex::new(None);

/// The cell named `name`, if any code has created it.
pub(crate) fn cell(name: &str) -> Option<&'static CellRecord> {
    CELLS.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(name).copied())
}

impl<T: Fingerprinted + Send + Sync + 'static> State<T> {
    /// A handle to the cell named `name`, initialised by `init` on first access in the process.
    pub const fn new(name: &'static str, init: fn() -> T) -> Self {
        State { name, init, cell: AtomicPtr::new(std::ptr::null_mut()), _marker: PhantomData }
    }

    /// The cell's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Runs `f` with the value, inside a *scope*: the reference cannot outlive the call, and
    /// while it runs no update applies (see [`State::access`]). Panics when the cell holds
    /// another type (see [`State::try_with`]).
    ///
    /// ```ignore
    /// let n = STORE.with(|s| s.lock().unwrap().len());
    /// ```
    #[inline]
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        let value = self.access();
        f(&value)
    }

    /// Runs `f` with the value, as [`State::with`] does, or returns [`Error::StateType`] without
    /// calling it when the cell's current version has another fingerprint than the one this code
    /// was compiled for.
    #[inline]
    pub fn try_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, Error> {
        let value = self.try_access()?;
        Ok(f(&value))
    }

    /// The value, behind a guard: a scope that lasts as long as the guard. Panics when the cell
    /// holds another type (see [`State::try_access`]).
    ///
    /// While a thread holds a scope (a guard, or a [`State::with`] call) it counts as running for
    /// the update protocol: an update waits for it and never applies beside it, and an update
    /// point, idle section or wait for an update reached inside it does not apply one. The guard
    /// belongs to its thread (it is neither `Send` nor `Sync`), and the reference it gives out
    /// lives no longer than a borrow of it. Hold it briefly: a thread that blocks while holding it
    /// holds every update up until the update timeout, and the refusal names it.
    #[inline]
    pub fn access(&self) -> CellRef<'_, T> {
        super::access(|| self.version(), || Which::Named(self.name))
    }

    /// The value behind a guard, as [`State::access`] gives it, or [`Error::StateType`] when the
    /// cell's current version has another fingerprint than the one this code was compiled for.
    #[inline]
    pub fn try_access(&self) -> Result<CellRef<'_, T>, Error> {
        super::try_access(|| self.version(), || Which::Named(self.name))
    }

    /// The cell's current version. Call it inside a scope, which keeps the version current and
    /// allocated for as long as the scope lives.
    #[inline]
    fn version(&self) -> &Version {
        let mut record = self.cell.load(Ordering::Acquire);
        if record.is_null() {
            record = self.resolve();
        }
        // SAFETY: named records are leaked and never freed. The caller is inside a scope: no
        // update applies, so the version is not replaced or freed, while it uses it.
        unsafe { (*record).current() }
    }

    #[cold]
    fn resolve(&self) -> *mut CellRecord {
        let record = match cell(self.name) {
            Some(r) => r,
            None => {
                // Initialise outside the lock: `init` may itself use other cells.
                let fresh = Version::of((self.init)());
                let mut guard = CELLS.lock().unwrap_or_else(|e| e.into_inner());
                let cells = guard.get_or_insert_with(HashMap::new);
                match cells.get(self.name).copied() {
                    Some(r) => {
                        // Another thread initialised it first; drop ours, outside the lock (a
                        // drop may use other cells).
                        drop(guard);
                        // SAFETY: `fresh` was never installed anywhere.
                        unsafe { fresh.drop_with_value() };
                        r
                    }
                    None => {
                        // Leaked: handles in every copy of the crate cache its address.
                        let r: &'static CellRecord = Box::leak(Box::new(CellRecord::new(fresh)));
                        cells.insert(self.name.to_string(), r);
                        r
                    }
                }
            }
        };
        let ptr = record as *const CellRecord as *mut CellRecord;
        self.cell.store(ptr, Ordering::Release);
        ptr
    }
}

/// The record a patch exports for each state cell its code reaches (`dsu_abi::CellInfo`): the
/// cell's name and the fingerprint of the value type that code was compiled for. `cargo dsu`
/// generates one per `State` static of the updateable set, in the static's module; the loader
/// reads it from the patch file and refuses a patch whose code would meet a cell of another type
/// that it does not transform.
#[doc(hidden)]
#[repr(transparent)]
pub struct CellInfo<const N: usize>(pub dsu_abi::CellInfo<N>);

impl<const N: usize> CellInfo<N> {
    /// The record of cell `name` holding a `T`; `type_text` is `T` as written (for messages).
    /// `N` must be `name.len() + type_text.len()` (a compile error otherwise).
    pub const fn new<T: Fingerprinted>(name: &str, type_text: &str) -> Self {
        CellInfo(dsu_abi::CellInfo::new(name, type_text, T::FINGERPRINT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static A: State<AtomicU64> = State::new("state-test-a", || AtomicU64::new(7));
    static A_AGAIN: State<AtomicU64> = State::new("state-test-a", || AtomicU64::new(99));
    static A_WRONG: State<String> = State::new("state-test-a", String::new);

    #[test]
    fn same_name_same_value_and_type_checked() {
        A.with(|a| a.fetch_add(1, Ordering::Relaxed));
        assert_eq!(A_AGAIN.with(|a| a.load(Ordering::Relaxed)), 8, "second handle reaches the first value");
        let (a, again) = (A.access(), A_AGAIN.access());
        assert!(std::ptr::eq(&*a, &*again));
        match A_WRONG.try_with(|_| ()) {
            Err(Error::StateType { name, .. }) => assert_eq!(name, "state-test-a"),
            other => panic!("expected a type error, got {other:?}"),
        }
        assert!(A_WRONG.try_access().is_err());
    }

    /// Same name, size and alignment as `Entry` in `other`, another layout.
    #[allow(dead_code)]
    mod one {
        #[derive(Default)]
        pub struct Entry {
            pub a: u32,
            pub b: u32,
        }
        impl crate::Fingerprinted for Entry {
            const FINGERPRINT: crate::Fingerprint = crate::Fingerprint::of_text("a u32 b u32");
        }
    }
    #[allow(dead_code)]
    mod other {
        #[derive(Default)]
        pub struct Entry {
            pub b: u32,
            pub a: u32,
        }
        impl crate::Fingerprinted for Entry {
            const FINGERPRINT: crate::Fingerprint = crate::Fingerprint::of_text("b u32 a u32");
        }
    }
    static E1: State<one::Entry> = State::new("state-test-e", Default::default);
    static E2: State<other::Entry> = State::new("state-test-e", Default::default);

    #[test]
    fn fingerprint_not_name_decides() {
        E1.with(|_| ());
        assert!(matches!(E2.try_with(|_| ()), Err(Error::StateType { .. })));
    }

    static V: State<AtomicU64> = State::new("state-test-v", || AtomicU64::new(1));
    static V_NEW: State<String> = State::new("state-test-v", String::new);

    static P: State<AtomicU64> = State::new("state-test-p", || AtomicU64::new(0));
    static P_WRONG: State<String> = State::new("state-test-p", String::new);

    #[test]
    fn a_panic_inside_with_leaves_the_scope() {
        P.with(|_| ());
        let r = std::panic::catch_unwind(|| P.with(|_| -> () { panic!("inside") }));
        assert!(r.is_err());
        assert!(!crate::protocol::holding_cell(), "the scope ended with the unwinding");
        let outer = P.access();
        P.with(|p| p.fetch_add(1, Ordering::Relaxed));
        assert!(crate::protocol::holding_cell());
        drop(outer);
        assert!(!crate::protocol::holding_cell());
        assert!(std::panic::catch_unwind(|| P_WRONG.with(|_| ())).is_err(), "a type mismatch panics");
        assert!(!crate::protocol::holding_cell(), "and leaves no scope behind");
    }

    #[test]
    fn every_access_sees_the_current_version() {
        assert_eq!(V.with(|v| v.load(Ordering::Relaxed)), 1);
        let record = cell("state-test-v").unwrap();
        // As an update would: replace, then free the old version (no scope is open here).
        let old = record.replace(Version::of(String::from("two")));
        // SAFETY: `old` is no longer installed, and no scope reaches it.
        unsafe { old.drop_with_value() };
        assert_eq!(V_NEW.with(|v| v.clone()), "two");
        assert!(V.try_with(|_| ()).is_err(), "old code no longer reaches the cell once it changed type");
    }
}
