//! State cells: values that must survive updates, owned by the runtime.
//!
//! A plain `static` of the updateable crate does not survive: every patch is a second copy of
//! the crate with its own statics. A [`State`] static is only a handle; the value lives in the
//! runtime (one copy per process, in the shared library) and is found by its stable name, so the
//! host and every patch reach the same value.

use crate::sync::{AtomicPtr, Mutex, Ordering};
use crate::Error;
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
/// The type is checked on first access of each handle by name, size and alignment; versioned
/// types with structural fingerprints and transformers replace this check when types may
/// change.
pub struct State<T: 'static> {
    name: &'static str,
    init: fn() -> T,
    cache: AtomicPtr<T>,
    _marker: PhantomData<&'static T>,
}

/// What a cell's value is, compared when a handle first reaches a cell.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TypeKey {
    name: &'static str,
    size: usize,
    align: usize,
}

impl TypeKey {
    fn of<T>() -> Self {
        TypeKey {
            name: std::any::type_name::<T>(),
            size: std::mem::size_of::<T>(),
            align: std::mem::align_of::<T>(),
        }
    }

    fn describe(&self) -> String {
        format!("{} (size {}, align {})", self.name, self.size, self.align)
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

impl<T: Send + Sync + 'static> State<T> {
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

impl<T: Send + Sync + 'static> std::ops::Deref for State<T> {
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
