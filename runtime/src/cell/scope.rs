//! Scoped access: the only way to a cell's value.
//!
//! A [`Scope`] is entered before a cell's current version is read and left after the last use of
//! the reference: while a thread is inside one, the update protocol counts it as running, so no
//! update applies, and no version the thread reads can be replaced or freed under it
//! (`protocol/mod.rs`, *Cell scopes*). The reference is handed out only for the scope's duration: to a
//! closure (`with`), or borrowed from a guard that stays on its thread ([`CellRef`]).

use std::marker::PhantomData;

/// One scope on the calling thread: entered when made, left when dropped, also by a panic.
/// Neither `Send` nor `Sync`: the depth it counts is its thread's.
pub(crate) struct Scope {
    _thread: PhantomData<*const ()>,
}

impl Scope {
    #[inline]
    pub fn enter() -> Scope {
        crate::protocol::enter_scope();
        Scope { _thread: PhantomData }
    }
}

impl Drop for Scope {
    #[inline]
    fn drop(&mut self) {
        crate::protocol::exit_scope();
    }
}

/// A cell's value ([`State`](crate::State) or [`Cell`](crate::Cell)), for as long as this guard
/// lives on the thread that took it (`access`). It dereferences to `&T` borrowed from the guard,
/// so no reference outlives it; it cannot be sent to another thread or shared with one. While it
/// lives, the thread counts as running for the update protocol, and no update applies.
#[must_use = "the value is reachable only through the guard"]
pub struct CellRef<'a, T: 'static> {
    value: &'a T,
    _scope: Scope,
}

impl<'a, T: 'static> CellRef<'a, T> {
    /// The guard of `value`, read inside `scope`.
    #[inline]
    pub(crate) fn new(value: &'a T, scope: Scope) -> Self {
        CellRef { value, _scope: scope }
    }
}

impl<T: 'static> std::ops::Deref for CellRef<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T: std::fmt::Debug + 'static> std::fmt::Debug for CellRef<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}
