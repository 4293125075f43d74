//! State cells: values that must survive updates, owned by the runtime.
//!
//! A plain `static` of the updateable crate does not survive: every patch is a second copy of
//! the crate with its own statics. A [`State`] static is only a handle; the value lives in the
//! runtime (one copy per process, in the shared library) and is found by its stable name, so the
//! host and every patch reach the same value.

use crate::sync::{AtomicPtr, Mutex, Ordering};
use crate::{Error, Fingerprinted};
use dsu_abi::Fingerprint;
use std::collections::HashMap;
use std::marker::PhantomData;

/// A cell found by a stable name; the same value for the host and every patch.
///
/// ```ignore
/// static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));
/// HITS.get().fetch_add(1, Ordering::Relaxed);
/// ```
///
/// The first access anywhere in the process runs `init`; later accesses (from any copy of the
/// crate) get the same value. Each handle caches the value's address after its first access, so
/// an access is one atomic load.
///
/// The type is checked on first access of each handle by its structural fingerprint
/// ([`Fingerprinted`]): a handle compiled against another layout of the value's type is refused
/// with [`Error::StateType`], never handed the value.
pub struct State<T: 'static> {
    name: &'static str,
    init: fn() -> T,
    cache: AtomicPtr<T>,
    _marker: PhantomData<&'static T>,
}

/// What a cell's value is, compared when a handle first reaches a cell. Only the fingerprint is
/// compared; the name is for messages.
#[derive(Clone, Copy)]
struct TypeKey {
    name: &'static str,
    fingerprint: Fingerprint,
}

impl PartialEq for TypeKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl TypeKey {
    fn of<T: Fingerprinted>() -> Self {
        TypeKey { name: std::any::type_name::<T>(), fingerprint: T::FINGERPRINT }
    }

    fn describe(&self) -> String {
        format!("{} (fingerprint {})", self.name, self.fingerprint)
    }
}

struct Cell {
    key: TypeKey,
    value: *const (),
}

// SAFETY: `value` points at a leaked `T: Send + Sync`; the registry only hands it to handles of
// the same type.
unsafe impl Send for Cell {}

static CELLS: Mutex<Option<HashMap<&'static str, Cell>>> = Mutex::new(None);

impl<T: Fingerprinted + Send + Sync + 'static> State<T> {
    /// A handle to the cell named `name`, initialised by `init` on first access in the process.
    pub const fn new(name: &'static str, init: fn() -> T) -> Self {
        State { name, init, cache: AtomicPtr::new(std::ptr::null_mut()), _marker: PhantomData }
    }

    /// The cell's stable name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The value. Panics when the cell holds another type (see [`State::try_get`]).
    #[inline]
    pub fn get(&self) -> &'static T {
        match self.try_get() {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The value, or [`Error::StateType`] when the cell holds another type.
    #[inline]
    pub fn try_get(&self) -> Result<&'static T, Error> {
        let p = self.cache.load(Ordering::Acquire);
        if !p.is_null() {
            // SAFETY: the cache only ever holds the address of this cell's leaked value, checked
            // to be a T when it was stored.
            return Ok(unsafe { &*p });
        }
        self.resolve()
    }

    #[cold]
    fn resolve(&self) -> Result<&'static T, Error> {
        let key = TypeKey::of::<T>();
        let lookup = |cells: &HashMap<&'static str, Cell>| -> Option<Result<*const T, Error>> {
            cells.get(self.name).map(|cell| {
                if cell.key == key {
                    Ok(cell.value as *const T)
                } else {
                    Err(Error::StateType {
                        name: self.name.to_string(),
                        expected: key.describe(),
                        found: cell.key.describe(),
                    })
                }
            })
        };
        let existing = {
            let cells = CELLS.lock().unwrap_or_else(|e| e.into_inner());
            cells.as_ref().and_then(lookup)
        };
        let ptr = match existing {
            Some(r) => r?,
            None => {
                // Initialise outside the lock: `init` may itself use other cells.
                let fresh = Box::into_raw(Box::new((self.init)()));
                let mut cells = CELLS.lock().unwrap_or_else(|e| e.into_inner());
                let cells = cells.get_or_insert_with(HashMap::new);
                match lookup(cells) {
                    Some(r) => {
                        // Another thread initialised it first; drop ours.
                        // SAFETY: `fresh` came from Box::into_raw above and was never shared.
                        drop(unsafe { Box::from_raw(fresh) });
                        r?
                    }
                    None => {
                        cells.insert(self.name, Cell { key, value: fresh as *const () });
                        fresh as *const T
                    }
                }
            }
        };
        self.cache.store(ptr as *mut T, Ordering::Release);
        // SAFETY: `ptr` is a leaked, never-freed T (checked above).
        Ok(unsafe { &*ptr })
    }
}

impl<T: Fingerprinted + Send + Sync + 'static> std::ops::Deref for State<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    static A: State<AtomicU64> = State::new("state-test-a", || AtomicU64::new(7));
    static A_AGAIN: State<AtomicU64> = State::new("state-test-a", || AtomicU64::new(99));
    static A_WRONG: State<String> = State::new("state-test-a", String::new);

    /// Same name, size and alignment as `Entry` in `other`, another layout.
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
        E1.get();
        assert!(matches!(E2.try_get(), Err(Error::StateType { .. })));
    }

    #[test]
    fn same_name_same_value_and_type_checked() {
        A.fetch_add(1, Ordering::Relaxed);
        assert_eq!(A_AGAIN.load(Ordering::Relaxed), 8, "second handle reaches the first value");
        assert!(std::ptr::eq(A.get(), A_AGAIN.get()));
        match A_WRONG.try_get() {
            Err(Error::StateType { name, .. }) => assert_eq!(name, "state-test-a"),
            other => panic!("expected a type error, got {:?}", other.map(|_| ())),
        }
    }
}
