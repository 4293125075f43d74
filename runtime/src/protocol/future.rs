//! Futures in the update protocol: an updateable `async fn`'s future ([`Tracked`]), running while
//! it is polled, and [`idle_async`], the async form of an idle section.

use super::coordinator::{coordinator, expire, pending_after_store, try_apply};
use super::primitive::Ordering;
use super::thread::{
    enter_frame, exit_frame, is_mine, outside_frames, park, register, settle, IdleGuard, ThreadRec, IDLE,
    RUNNING,
};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A future of an updateable `async fn`: while it is polled, its thread runs updateable code;
/// between polls the thread counts as idle.
///
/// The start of an outermost poll is a safe point: when a round is open, the thread waits there
/// for it to close. The end of one may complete quiescence, and then the thread applies the
/// update itself.
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
        let Some(rec) = register(IDLE) else { return inner.poll(cx) };
        let before = rec.state.load(Ordering::Relaxed);
        if before == RUNNING {
            // Nested in updateable code already running on this thread.
            return inner.poll(cx);
        }
        let frame = PollFrame { outermost: enter_frame(), rec: &rec, before };
        // Idle to running: a store-then-load pair against the applier's (see the module docs).
        rec.set_state(RUNNING);
        if pending_after_store() {
            rec.set_state(before);
            park(&rec, None, RUNNING);
        }
        let result = inner.poll(cx);
        drop(frame);
        result
    }
}

/// The running stretch of an outermost poll of an updateable future; its end (also by a panic)
/// gives the thread back the state it had, or if the poll was its outermost frame its resting
/// state (an [`idle_async`] future polled inside may have changed it), and tries to apply.
struct PollFrame<'a> {
    rec: &'a ThreadRec,
    before: u8,
    outermost: bool,
}

impl Drop for PollFrame<'_> {
    fn drop(&mut self) {
        exit_frame();
        let to = if self.outermost { self.rec.resting() } else { self.before };
        // The thread was running since the poll began: staying so needs no check.
        self.rec.set_state(to);
        if to != RUNNING && pending_after_store() {
            let mut c = coordinator();
            if !expire(&mut c) {
                try_apply(&mut c);
            }
        }
    }
}

/// Awaits `fut` with the polling thread counted as idle while `fut` is pending, the async form
/// of [`idle`](super::idle): a thread registered as running (a plain thread that reached an
/// update point, the thread of a current-thread runtime) does not hold an update up while it
/// awaits.
///
/// The thread that polls `fut` is idle while it polls it and, when `fut` is pending, from then
/// until `fut` is ready or dropped; with several such futures pending on one thread (tasks of a
/// current-thread runtime), until none is. Then it is as it was: if it was running and a round is
/// open, it waits for the round to close first, as at the end of an idle section. Code that runs
/// on the thread meanwhile (other tasks) runs as idle code: keep updateable calls there inside
/// updateable `async fn`s, which count as running while they are polled. Polling `fut` must not
/// call updateable code (as in [`idle`](super::idle)).
///
/// With the `tokio` feature, a thread that registers inside a tokio runtime is an executor
/// thread, idle between update points, and needs no `idle_async`.
///
/// ```ignore
/// loop {
///     dsu::update_point();
///     let (stream, _) = dsu::idle_async(listener.accept()).await?;
///     tokio::spawn(handle(stream));
/// }
/// ```
pub fn idle_async<F: IntoFuture>(fut: F) -> IdleAsync<F::IntoFuture> {
    IdleAsync { inner: fut.into_future(), stretch: None }
}

/// The future [`idle_async`] returns.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct IdleAsync<F> {
    inner: F,
    /// The thread this future left idle when it was last pending.
    stretch: Option<Arc<ThreadRec>>,
}

impl<F: Future> Future for IdleAsync<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of a pinned IdleAsync
        // (`Drop` touches only `stretch`, which is not pinned); nothing here moves it.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above: `this` came from a pinned IdleAsync and `inner` stays in place.
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        let Some(rec) = register(RUNNING) else { return inner.poll(cx) };
        // The idle stretch is the polling thread's from now on. When the future was pending on
        // another thread (a task moved between workers), that thread's state changes at its own
        // next settling point.
        match this.stretch.take() {
            Some(owner) if Arc::ptr_eq(&owner, &rec) => {}
            Some(owner) => {
                owner.stretches.fetch_sub(1, Ordering::Relaxed);
                rec.stretches.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                rec.stretches.fetch_add(1, Ordering::Relaxed);
            }
        }
        this.stretch = Some(rec);
        // Polling `fut` is part of the idle stretch, as `f` is in `idle(f)`. The guard's end
        // leaves the thread idle while the stretch lasts, or as it was once `fut` is ready
        // (parking first if a round is open).
        let guard = IdleGuard::enter();
        let result = inner.poll(cx);
        if result.is_ready() {
            if let Some(rec) = this.stretch.take() {
                rec.stretches.fetch_sub(1, Ordering::Relaxed);
            }
        }
        drop(guard);
        result
    }
}

impl<F> Drop for IdleAsync<F> {
    fn drop(&mut self) {
        let Some(owner) = self.stretch.take() else { return };
        owner.stretches.fetch_sub(1, Ordering::Relaxed);
        // Dropped while pending (cancelled) on the thread it left idle: the thread is as it was
        // again, before it runs more of the program's code.
        if is_mine(&owner) && outside_frames() {
            settle(&owner, owner.resting());
        }
    }
}
