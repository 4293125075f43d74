//! The atomics and locks the rest of the runtime uses (the function table, the cells), in one
//! place. The update protocol has its own seam, `protocol/primitive.rs`, which swaps in the loom
//! model checker's primitives for its models; the modules here keep `const` statics, which loom's
//! primitives cannot be, and are not what the models check.

pub(crate) use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
pub(crate) use std::sync::{Mutex, MutexGuard};
