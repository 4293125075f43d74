//! The update protocol's synchronisation primitives: std's in a program, the loom model checker's
//! in a build with `--cfg loom` (the models in `runtime/tests/loom_protocol.rs`). Nothing else in
//! `protocol/` names std's atomics, locks, thread handles or thread-locals, so the models check the
//! code that runs, orderings included. In a program every item here is std's own, or a wrapper
//! that compiles away: the idle update point stays one relaxed load of a thread-local.
//!
//! Where loom differs, and what the protocol does about it:
//! - **Globals.** A loom object belongs to one execution of a model and has no `const`
//!   constructor: the protocol's globals are declared through [`globals!`], plain statics in a
//!   program, `loom::lazy_static!` under loom (made again for each execution).
//! - **Thread-locals.** Loom's have no `const` initialiser ([`locals!`] drops it), and loom frees
//!   a thread's locals when it exits in no set order, before its other destructors have run. A
//!   thread's words that the coordinator reads through the thread's record ([`Own`], [`Shared`])
//!   are therefore shared with the record under loom, where in a program the record points at the
//!   thread-local, which has no destructor and outlives the record.
//! - **Time.** Loom does not model it. Under loom a round has no deadline ([`deadline`]) and a
//!   thread that waits for a round parks until it is unparked ([`park_timeout`]): a wake-up the
//!   protocol loses is a deadlock, which loom reports, where in a program the park's timeout would
//!   hide it.
//! - **Parking.** Under loom a thread parks on a token of its own in a loom lock and condition
//!   variable ([`parking`]), with the semantics std documents for `park` and `unpark`: an unpark
//!   that comes first is kept for the next park, and an unpark of a thread that is not parked
//!   (blocked on a lock, say) only leaves the token. Loom 0.7's own `unpark` also wakes a thread
//!   blocked on a lock or a join, and the model then aborts; the protocol's `close` may unpark a
//!   thread that has just resumed and is waiting for the coordinator's lock, which std allows.
//! - **Sequential consistency.** Loom models `fence(SeqCst)` but treats sequentially consistent
//!   loads and stores as acquire and release. Every store-then-load pair the protocol relies on
//!   (see the module docs, *Ordering*) is therefore a store, a `fence(SeqCst)`, then a load, which
//!   is what the memory model needs and what loom can judge. Loom's fence is if anything stronger
//!   than the memory model's (each one is ordered after every earlier one, as a release and an
//!   acquire would be); the pairs' argument in the module docs holds for the model's fences, which
//!   only take part in one total order.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::{current, Thread};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use parking::{current, Thread};

use std::time::{Duration, Instant};

/// Process globals: plain statics (their initialisers `const`), or under loom lazily made once
/// per execution of a model.
#[cfg(not(loom))]
macro_rules! globals {
    ($($(#[$attr:meta])* pub(crate) static $name:ident: $t:ty = $init:expr;)*) => {
        $($(#[$attr])* pub(crate) static $name: $t = $init;)*
    };
}
#[cfg(loom)]
macro_rules! globals {
    ($($(#[$attr:meta])* pub(crate) static $name:ident: $t:ty = $init:expr;)*) => {
        loom::lazy_static! { $($(#[$attr])* pub(crate) static ref $name: $t = $init;)* }
    };
}
pub(crate) use globals;

/// Thread-locals: `const`-initialised std thread-locals (no lazy initialisation on access, and
/// without destructor when the type has none), or loom's.
#[cfg(not(loom))]
macro_rules! locals {
    ($($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;)*) => {
        std::thread_local! { $($(#[$attr])* static $name: $t = const { $init };)* }
    };
}
#[cfg(loom)]
macro_rules! locals {
    ($($(#[$attr:meta])* static $name:ident: $t:ty = $init:expr;)*) => {
        loom::thread_local! { $($(#[$attr])* static $name: $t = $init;)* }
    };
}
pub(crate) use locals;

/// A word the calling thread keeps in a thread-local and the coordinator reads through the
/// thread's record ([`Shared`]): its update-point flag, its scope word. The thread reaches it in
/// one thread-local access.
#[cfg(not(loom))]
pub(crate) struct Own<T>(T);

#[cfg(not(loom))]
impl<T> Own<T> {
    pub(crate) const fn new(value: T) -> Own<T> {
        Own(value)
    }

    /// The handle the thread's record keeps.
    pub(crate) fn share(&self) -> Shared<T> {
        Shared(&self.0)
    }
}

#[cfg(not(loom))]
impl<T> std::ops::Deref for Own<T> {
    type Target = T;

    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A thread's [`Own`] word, as its record holds it.
#[cfg(not(loom))]
pub(crate) struct Shared<T>(*const T);

// SAFETY: a `Shared` points at an atomic (`Own<AtomicBool>`, `Own<AtomicU32>`) in a thread-local
// of its owning thread, which any thread may read or write; it is only dereferenced through
// `get`, whose callers keep the owner's thread-local alive (see there).
#[cfg(not(loom))]
unsafe impl<T: Sync> Send for Shared<T> {}
// SAFETY: as above.
#[cfg(not(loom))]
unsafe impl<T: Sync> Sync for Shared<T> {}

#[cfg(not(loom))]
impl<T> Shared<T> {
    /// The owner's word.
    ///
    /// # Safety
    ///
    /// The owning thread's thread-local must still be alive. The protocol's words are `const`
    /// thread-locals without destructor, alive until their thread has exited; the record holding
    /// this handle leaves the coordinator (under its lock) in the thread's `Registration`
    /// destructor, before that, and is only read under the same lock, or by its own thread.
    #[inline(always)]
    pub(crate) unsafe fn get(&self) -> &T {
        // SAFETY: the caller keeps the owner's thread-local alive (see above).
        unsafe { &*self.0 }
    }
}

#[cfg(loom)]
pub(crate) struct Own<T>(std::sync::Arc<T>);

#[cfg(loom)]
impl<T> Own<T> {
    pub(crate) fn new(value: T) -> Own<T> {
        Own(std::sync::Arc::new(value))
    }

    pub(crate) fn share(&self) -> Shared<T> {
        Shared(self.0.clone())
    }
}

#[cfg(loom)]
impl<T> std::ops::Deref for Own<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// Under loom the record shares the word, which lives as long as either does.
#[cfg(loom)]
pub(crate) struct Shared<T>(std::sync::Arc<T>);

#[cfg(loom)]
impl<T> Shared<T> {
    /// # Safety
    ///
    /// None needed under loom; the contract is the one of a program's build.
    pub(crate) unsafe fn get(&self) -> &T {
        &self.0
    }
}

/// When a round opened now with `timeout` is abandoned; never under loom, which has no time.
pub(crate) fn deadline(timeout: Duration) -> Option<Instant> {
    if cfg!(loom) {
        None
    } else {
        Some(Instant::now() + timeout)
    }
}

/// Blocks the calling thread until it is unparked, or for at most `timeout`; under loom, until it
/// is unparked.
pub(crate) fn park_timeout(timeout: Duration) {
    #[cfg(not(loom))]
    std::thread::park_timeout(timeout);
    #[cfg(loom)]
    {
        let _ = timeout;
        parking::park();
    }
}

/// `park` and `unpark` under loom, as std documents them: one token per thread, set by `unpark`,
/// taken by `park`, which waits for it.
#[cfg(loom)]
mod parking {
    use loom::sync::{Condvar, Mutex};
    use std::sync::Arc;

    struct Token {
        set: Mutex<bool>,
        wake: Condvar,
    }

    loom::thread_local! {
        static TOKEN: Arc<Token> = Arc::new(Token { set: Mutex::new(false), wake: Condvar::new() });
    }

    /// A thread's handle: its name and id, and its token.
    pub(crate) struct Thread {
        thread: loom::thread::Thread,
        token: Arc<Token>,
    }

    impl Thread {
        pub(crate) fn name(&self) -> Option<&str> {
            self.thread.name()
        }

        pub(crate) fn id(&self) -> loom::thread::ThreadId {
            self.thread.id()
        }

        /// Sets the thread's token, waking it if it is parked.
        pub(crate) fn unpark(&self) {
            *self.token.set.lock().unwrap() = true;
            self.token.wake.notify_one();
        }
    }

    pub(crate) fn current() -> Thread {
        Thread { thread: loom::thread::current(), token: TOKEN.with(Arc::clone) }
    }

    /// Waits for the calling thread's token, and takes it.
    pub(crate) fn park() {
        TOKEN.with(|token| {
            let mut set = token.set.lock().unwrap();
            while !*set {
                set = token.wake.wait(set).unwrap();
            }
            *set = false;
        });
    }
}
