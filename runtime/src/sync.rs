//! The atomics the runtime uses, in one place, so a model checker's atomics can be swapped in for
//! concurrency tests.

pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
pub(crate) use std::sync::{Mutex, MutexGuard};
