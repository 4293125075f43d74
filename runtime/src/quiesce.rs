//! The multi-threaded update protocol (work in progress: the interface used by generated code).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future of an updateable `async fn`: while it is polled, its thread runs updateable code;
/// between polls the thread counts as idle.
pub struct Tracked<F> {
    inner: F,
}

impl<F> Tracked<F> {
    pub fn new(inner: F) -> Self {
        Tracked { inner }
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of a pinned Tracked.
        let inner = unsafe { self.map_unchecked_mut(|t| &mut t.inner) };
        inner.poll(cx)
    }
}
