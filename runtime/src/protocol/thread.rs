//! A thread's side of the update protocol: its registration and record, its update points, its
//! idle sections and frames, its cell scopes, and its wait for a round (parking).

use super::coordinator::{coordinator, expire, pending_after_store, try_apply, CLOSED, PENDING, UNTRACKED};
use super::primitive::{
    current, locals, park_timeout, AtomicBool, AtomicU32, AtomicU8, AtomicUsize, Ordering, Own,
    Shared, Thread,
};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const RUNNING: u8 = 0;
pub(super) const IDLE: u8 = 1;
pub(super) const PARKED: u8 = 2;
/// Not a state: what this thread's scope word (`SCOPES`) holds in its state bits while the
/// thread has no record.
pub(super) const UNREGISTERED: u8 = 3;

/// The low bits of a scope word: the thread's state (`RUNNING` is 0).
const STATE_BITS: u32 = 3;
/// One scope, in a scope word (above the state bits).
const DEPTH_ONE: u32 = STATE_BITS + 1;

locals! {
    /// This thread's update-point flag: set while its next update point must take the slow path,
    /// because the thread is not registered yet or a round is open.
    static CHECK: Own<AtomicBool> = Own::new(AtomicBool::new(true));
    /// This thread's registration; dropping it (at thread exit) deregisters the thread.
    static ME: RefCell<Option<Registration>> = RefCell::new(None);
    /// How many frames set this thread's state now: outermost polls of updateable futures and
    /// idle sections, nested.
    static FRAMES: Cell<u32> = Cell::new(0);
    /// This thread's *scope word*: how many cell scopes (`State::with`, `Cell::access`, …) it is
    /// inside, nested, in units of `DEPTH_ONE`, plus in the low bits (`STATE_BITS`) its state as
    /// it last stored it, or `UNREGISTERED`. While the depth is not zero the thread counts as
    /// running, whatever its state; the coordinator reads the depth through the thread's record.
    /// One word, so that a scope on a running thread touches one thread-local: a load and a
    /// store, and one compare tells the slow path (the outermost scope of a thread that is not
    /// running). Only this thread writes it. `const` and without destructor, so it is there
    /// during thread exit too.
    static SCOPES: Own<AtomicU32> = Own::new(AtomicU32::new(UNREGISTERED as u32));
    /// Set while this thread applies a round (it holds the coordinator's lock meanwhile).
    static APPLYING_HERE: Cell<bool> = Cell::new(false);
}

/// Whether the calling thread is applying a round. (`try_with`: under loom, whose thread-locals
/// go before the registration's destructor, which may apply, this is read during thread exit
/// with the flag gone; in a program the flag has no destructor and is always there.)
fn applying_here() -> bool {
    APPLYING_HERE.try_with(Cell::get).unwrap_or(false)
}

/// Marks the calling thread as the one applying a round, or no longer.
pub(super) fn set_applying_here(on: bool) {
    let _ = APPLYING_HERE.try_with(|a| a.set(on));
}

/// Whether the calling thread is inside a cell scope.
pub fn holding_cell() -> bool {
    SCOPES.with(|w| w.load(Ordering::Relaxed) >= DEPTH_ONE)
}

/// The calling thread's state as it last stored it, or `UNREGISTERED`.
fn mine() -> u8 {
    SCOPES.with(|w| (w.load(Ordering::Relaxed) & STATE_BITS) as u8)
}

/// Keeps a thread's copy of its own state in its scope word `word` (only the thread writes it).
fn set_state_bits(word: &AtomicU32, state: u8) {
    let w = word.load(Ordering::Relaxed);
    word.store((w & !STATE_BITS) | u32::from(state), Ordering::Relaxed);
}

/// Enters a cell scope on the calling thread: from now until the matching [`exit_scope`] it
/// counts as running, and no update applies.
///
/// On a thread whose state is running (a plain thread between update points, an executor thread
/// inside a poll), and for any inner scope, this is a load and a store of one thread-local: the
/// coordinator sees the thread running already (or inside its outer scope), and the thread
/// leaves that state only by a release store of its own, after this one, so an applier that
/// reads the later state reads this depth too. Otherwise the outermost scope takes
/// [`enter_scope_slow`].
#[inline]
pub fn enter_scope() {
    let before = SCOPES.with(|w| {
        let word = w.load(Ordering::Relaxed);
        w.store(word + DEPTH_ONE, Ordering::Relaxed);
        word
    });
    // Depth 0 and a state other than running: a word of 1 to 3.
    if before.wrapping_sub(1) < STATE_BITS {
        enter_scope_slow();
    }
}

/// Enters the outermost scope on a thread that is not running (idle, an executor thread between
/// polls) or not registered: registers it if needed (provisionally, see
/// [`register_provisional`]); then, after its depth, reads the pending flag, against the
/// applier's store of the flag and read of every thread's depth (a store-then-load pair, see the
/// module docs): either the applier sees the scope, or the thread sees the round, and then it
/// takes the coordinator's lock once, which the applier holds while it applies, so an update
/// that had begun has finished before the thread reads the cell.
///
/// A thread that cannot register (it is exiting, and its registration is gone) raises the count
/// of untracked scopes instead, with the same ordering against the applier's read of it.
#[cold]
#[inline(never)]
fn enter_scope_slow() {
    let applying = applying_here();
    // Not on the applier's thread: it holds the coordinator's lock, which registering takes;
    // its own scopes need no tracking (it is the one applying), and count as untracked.
    if mine() == UNREGISTERED && !applying {
        register_provisional();
    }
    if mine() == UNREGISTERED {
        UNTRACKED.fetch_add(1, Ordering::AcqRel);
    }
    // The depth was stored by `enter_scope`; the fence in `pending_after_store` orders it before
    // the load. The applier itself (a transformer reading a cell) already holds the lock.
    if pending_after_store() && !applying {
        drop(coordinator());
    }
}

/// Leaves a cell scope. Leaving the outermost one on a thread whose state is not running (idle,
/// an executor thread between polls, an exiting thread) lowers it as the end of a running section
/// does: the depth is stored, then the pending flag read, and the thread may complete quiescence
/// and apply. On a running thread nothing else happens: it is still running, and a round open
/// meanwhile applies at its next update point.
///
/// The store is a release store (on x86 a plain store, as a relaxed one): an applier that reads
/// the depth back to zero is then ordered after every read the scope made, which it would not
/// be if it read a relaxed store of that zero.
#[inline]
pub fn exit_scope() {
    let after = SCOPES.with(|w| {
        let word = w.load(Ordering::Relaxed) - DEPTH_ONE;
        w.store(word, Ordering::Release);
        word
    });
    if after.wrapping_sub(1) < STATE_BITS {
        exit_scope_slow(after);
    }
}

#[cold]
#[inline(never)]
fn exit_scope_slow(word: u32) {
    if word & STATE_BITS == u32::from(UNREGISTERED) {
        UNTRACKED.fetch_sub(1, Ordering::AcqRel);
    }
    if pending_after_store() && !applying_here() {
        let mut c = coordinator();
        if !expire(&mut c) {
            try_apply(&mut c);
        }
    }
}

/// Enters a frame; true if it is the outermost one.
pub(super) fn enter_frame() -> bool {
    FRAMES.with(|f| {
        let n = f.get();
        f.set(n + 1);
        n == 0
    })
}

pub(super) fn exit_frame() {
    FRAMES.with(|f| f.set(f.get().saturating_sub(1)));
}

/// Whether no frame sets this thread's state now.
pub(super) fn outside_frames() -> bool {
    FRAMES.with(|f| f.get() == 0)
}

/// One registered thread, as the coordinator sees it.
pub(super) struct ThreadRec {
    pub(super) state: AtomicU8,
    /// The state the thread registered with, which it has outside every frame and idle stretch:
    /// running for a plain thread, idle for an executor thread (and for a provisional one).
    /// Written by the owning thread only, under the coordinator's lock.
    base: AtomicU8,
    /// Registered by a cell scope and by nothing else yet: the thread counts as running only
    /// inside scopes, and its `CHECK` flag stays set so that its first update point, idle section
    /// or poll registers it for good (with the kind that entry point gives a new thread).
    provisional: AtomicBool,
    /// Futures wrapped by [`idle_async`](super::idle_async) that this thread polled last and that
    /// were pending then: while there is one, the thread is idle outside frames.
    pub(super) stretches: AtomicUsize,
    /// The thread's `CHECK` flag.
    check: Shared<AtomicBool>,
    /// The thread's scope word (`SCOPES`), whose depth the coordinator reads.
    held: Shared<AtomicU32>,
    pub(super) name: String,
    /// To wake it when it is parked.
    thread: Thread,
}

impl ThreadRec {
    /// The state of the thread outside every frame.
    pub(super) fn resting(&self) -> u8 {
        if self.stretches.load(Ordering::Relaxed) > 0 {
            IDLE
        } else {
            self.base.load(Ordering::Relaxed)
        }
    }

    /// The state the calling thread, the owner of this record, returns to after parking where it
    /// stands: its frame's state, or outside frames its resting state.
    pub(super) fn here(&self) -> u8 {
        if outside_frames() {
            self.resting()
        } else {
            self.state.load(Ordering::Relaxed)
        }
    }

    pub(super) fn set_check(&self, on: bool) {
        let on = on || self.provisional.load(Ordering::Relaxed);
        // SAFETY: called only under the coordinator's lock while the record is registered, so the
        // owning thread's CHECK is alive (see `Shared::get`).
        unsafe { self.check.get() }.store(on, Ordering::Relaxed);
    }

    /// The thread's scope word.
    fn word(&self) -> &AtomicU32 {
        // SAFETY: called under the coordinator's lock while the record is registered, or by the
        // owning thread, so the owner's SCOPES is alive (see `Shared::get`).
        unsafe { self.held.get() }
    }

    /// How many cell scopes the thread is inside. Read under the coordinator's lock.
    pub(super) fn held(&self) -> u32 {
        self.word().load(Ordering::Acquire) / DEPTH_ONE
    }

    /// Whether the update protocol counts the thread as running: its state is, or it is inside
    /// a cell scope. The state is read first: a thread that leaves the running state stores the
    /// new state (release) after its depth, so an applier that reads the new state (acquire)
    /// reads that depth too. Under the coordinator's lock.
    pub(super) fn counts_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING || self.held() > 0
    }

    /// Stores the state of the calling thread, the owner of this record, and its copy in its
    /// scope word. A release store: an applier that reads it is ordered after the running section
    /// (and the scopes) it ends. Where an applier must also see it before the thread reads the
    /// pending flag, [`pending_after_store`] follows.
    pub(super) fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        set_state_bits(self.word(), state);
    }

    /// Wakes the thread if it is parked. Under the coordinator's lock.
    pub(super) fn unpark_if_parked(&self) {
        if self.state.load(Ordering::Acquire) == PARKED {
            self.thread.unpark();
        }
    }
}

pub(super) struct Registration {
    rec: Arc<ThreadRec>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // A failing model unwinds, and loom then drops each thread's locals outside the model,
        // where the coordinator cannot be reached: the failure is reported, not a second panic.
        if cfg!(loom) && std::thread::panicking() {
            return;
        }
        let mut c = coordinator();
        // The thread's scope word through its record: this runs during thread exit.
        let word = self.rec.word();
        // A thread that leaves inside a scope (a guard kept in a thread-local destroyed after
        // this one) still holds a reference into a cell: it counts as running until the scope
        // ends, through the count of untracked scopes, raised before its record goes (both
        // under the lock the applier reads them under).
        if word.load(Ordering::Relaxed) >= DEPTH_ONE {
            UNTRACKED.fetch_add(1, Ordering::AcqRel);
        }
        c.threads.retain(|t| !Arc::ptr_eq(t, &self.rec));
        set_state_bits(word, UNREGISTERED);
        // The exiting thread may have been the last one running.
        if PENDING.load(Ordering::Acquire) {
            try_apply(&mut c);
        }
    }
}

/// The state a thread registers with when it is first seen asking for `requested`: inside a
/// tokio runtime context (with the `tokio` feature) a thread is an executor thread, idle unless
/// it polls an updateable future, because between two update points it may be awaiting.
fn initial_state(requested: u8) -> u8 {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        return IDLE;
    }
    requested
}

/// This thread's record, registering it first (with `initial` as its state, or as an executor
/// thread, see [`initial_state`]). A provisional registration becomes the one a new thread gets
/// here.
pub(super) fn register(initial: u8) -> Option<Arc<ThreadRec>> {
    register_as(initial, false)
}

/// Registers the calling thread, if it is not registered, from its first cell scope: idle outside
/// scopes (it counts as running inside one), provisionally, until it reaches an update point, an
/// idle section or a poll of an updateable future.
fn register_provisional() {
    register_as(IDLE, true);
}

fn register_as(initial: u8, provisional: bool) -> Option<Arc<ThreadRec>> {
    ME.try_with(|me| {
        if let Some(r) = me.borrow().as_ref() {
            let rec = &r.rec;
            if !provisional && rec.provisional.load(Ordering::Relaxed) {
                // Registered for good now, as a new thread would be, under the lock, so the next
                // applier sees the state (a registration, see the module docs).
                let kind = initial_state(initial);
                let _c = coordinator();
                rec.provisional.store(false, Ordering::Relaxed);
                rec.base.store(kind, Ordering::Relaxed);
                if outside_frames() && rec.stretches.load(Ordering::Relaxed) == 0 {
                    rec.set_state(kind);
                }
                rec.set_check(PENDING.load(Ordering::Acquire));
            }
            return rec.clone();
        }
        let initial = if provisional { IDLE } else { initial_state(initial) };
        let thread = current();
        let name = thread.name().map(str::to_string).unwrap_or_else(|| format!("{:?}", thread.id()));
        let rec = Arc::new(ThreadRec {
            state: AtomicU8::new(initial),
            base: AtomicU8::new(initial),
            provisional: AtomicBool::new(provisional),
            stretches: AtomicUsize::new(0),
            check: CHECK.with(Own::share),
            held: SCOPES.with(Own::share),
            name,
            thread,
        });
        {
            let mut c = coordinator();
            rec.set_check(PENDING.load(Ordering::Acquire));
            SCOPES.with(|w| set_state_bits(w, initial));
            c.threads.push(rec.clone());
        }
        *me.borrow_mut() = Some(Registration { rec: rec.clone() });
        rec
    })
    .ok()
}

/// The calling thread's state (it is registered), for tests.
#[cfg(test)]
pub(super) fn my_state() -> u8 {
    ME.with(|me| me.borrow().as_ref().expect("registered").rec.state.load(Ordering::Acquire))
}

/// Whether `rec` is the calling thread's record.
pub(super) fn is_mine(rec: &Arc<ThreadRec>) -> bool {
    ME.try_with(|me| me.borrow().as_ref().is_some_and(|r| Arc::ptr_eq(&r.rec, rec))).unwrap_or(false)
}

/// Deregisters the calling thread, as its exit does (the destructor of its registration), for
/// the models: loom destroys a thread's locals only after `join` has returned, when a model has
/// checked its outcome and dropped the protocol's globals.
#[cfg(loom)]
pub fn exit_thread() {
    let registration = ME.with(|me| me.borrow_mut().take());
    drop(registration);
}

/// The update point: one relaxed load of this thread's flag when nothing is pending.
#[inline(always)]
pub fn update_point() {
    if CHECK.with(|c| c.load(Ordering::Relaxed)) {
        update_point_slow();
    }
}

#[cold]
#[inline(never)]
fn update_point_slow() {
    // Registers the thread; parks it if a round is open, else clears its flag, so later update
    // points take the fast path.
    if let Some(rec) = register(RUNNING) {
        // Inside an idle section, the thread stays idle afterwards. Inside a cell scope `park`
        // returns at once.
        park(&rec, None, rec.here());
    }
}

/// Registers the calling thread as running updateable code (used by `load`: the loading thread
/// does not become a place where patches apply behind its back).
pub fn register_running() {
    register(RUNNING);
}

/// Parks the calling thread until the open round (or, with `until`, round `until`) has closed,
/// then gives it the state `after`; returns after the program has switched versions or the round
/// was abandoned. Without an open round it returns at once.
///
/// The thread takes the coordinator's lock to park (and perhaps apply, if it completes
/// quiescence); it waits and resumes without it, so resuming threads do not queue on the lock.
/// It waits for the published count of closed rounds (an acquire load, so it resumes ordered
/// after the apply), parked: `close` unparks every thread whose state is parked after it
/// published the count, and an unpark that comes before the park is kept for it. A thread that
/// resumes into updateable code (`after` is running) while a newer round has opened stays parked
/// for that round too: it stores its state, then reads the pending flag, against the applier's
/// store of the flag and read of every state, so either the applier sees it running or it sees
/// the round.
///
/// Inside a cell scope the thread counts as running, so no update applies before it leaves the
/// scope: waiting for the open round here would wait for the thread itself. It returns at once,
/// with the state `after`, and its flag stays set while the round is open, so its first update
/// point after the scope parks. (A wait for a given round inside a scope abandons the round
/// first, see [`wait_for`](super::wait_for).)
pub(super) fn park(rec: &ThreadRec, until: Option<u64>, after: u8) {
    if until.is_none() && holding_cell() {
        rec.set_state(after);
        return;
    }
    let mut until = until;
    loop {
        let (round, clock, deadline) = {
            let mut c = coordinator();
            let round = until.unwrap_or(c.round);
            if c.round > round || !PENDING.load(Ordering::Acquire) {
                // Under the lock: no update is being applied now, and the next applier sees
                // this state.
                rec.set_state(after);
                if !PENDING.load(Ordering::Relaxed) {
                    // Nothing to wait for: later update points take the fast path.
                    rec.set_check(false);
                }
                return;
            }
            rec.set_state(PARKED);
            let clock = c.clock.clone().expect("an open round has a clock");
            clock.parked.fetch_add(1, Ordering::AcqRel);
            let _ = clock.first_parked.set(Instant::now());
            if !expire(&mut c) {
                try_apply(&mut c);
            }
            (round, clock, c.deadline)
        };
        while CLOSED.load(Ordering::Acquire) <= round {
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => {
                    let mut c = coordinator();
                    if c.round == round {
                        expire(&mut c);
                    }
                }
                // Unparked by `close`; the timeout only bounds a missed wake-up.
                Some(d) => park_timeout(d - now),
                None => park_timeout(Duration::from_millis(10)),
            }
        }
        rec.set_state(after);
        // `close` cleared this thread's flag (and a round opened since has set it again).
        if clock.parked.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last thread out of this round.
            clock.record(Instant::now());
        }
        if after != RUNNING || !pending_after_store() {
            return;
        }
        // A newer round: this thread is still at its safe point; wait for that one too.
        until = None;
    }
}

/// Runs `f` with the calling thread declared idle: blocked outside updateable code (waiting on
/// I/O, a channel, a lock, a timer), so an update may be applied meanwhile.
///
/// `f` must not call updateable code: it would run during an update. If a round is open when `f`
/// returns, the thread waits for it to close before it goes on.
///
/// ```ignore
/// let (stream, _) = dsu::idle(|| listener.accept())?;
/// ```
pub fn idle<R>(f: impl FnOnce() -> R) -> R {
    let _guard = IdleGuard::enter();
    f()
}

/// Declares the calling thread idle until dropped (see [`idle`]).
#[must_use = "the thread is idle only while the guard lives"]
pub struct IdleGuard {
    rec: Option<Arc<ThreadRec>>,
    before: u8,
    /// Whether the guard is the thread's outermost frame: then it leaves the thread in its
    /// resting state, which an [`idle_async`](super::idle_async) future may have changed
    /// meanwhile.
    outermost: bool,
    /// The guard belongs to its thread.
    _thread: PhantomData<*const ()>,
}

impl IdleGuard {
    /// Declares the calling thread idle.
    pub fn enter() -> IdleGuard {
        let rec = register(RUNNING);
        let mut before = IDLE;
        let mut outermost = false;
        if let Some(r) = &rec {
            outermost = enter_frame();
            before = r.state.load(Ordering::Relaxed);
            become_idle(r, before);
        }
        IdleGuard { rec, before, outermost, _thread: PhantomData }
    }
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        let Some(rec) = &self.rec else { return };
        exit_frame();
        let to = if self.outermost { rec.resting() } else { self.before };
        leave_idle(rec, to);
    }
}

/// Makes the calling thread idle (it was `was`); if it was running and a round is open, it may
/// have been the last one running, so it tries to apply (a store-then-load pair: if the thread
/// does not see the round, the applier sees it idle).
pub(super) fn become_idle(rec: &ThreadRec, was: u8) {
    rec.set_state(IDLE);
    if was == RUNNING && pending_after_store() {
        let mut c = coordinator();
        if !expire(&mut c) {
            try_apply(&mut c);
        }
    }
}

/// Gives the calling thread, outside every frame, the state `to`, with the protocol's checks:
/// going from idle to running it parks first if a round is open.
pub(super) fn settle(rec: &ThreadRec, to: u8) {
    let now = rec.state.load(Ordering::Relaxed);
    if now == to {
        return;
    }
    if to == RUNNING {
        leave_idle(rec, RUNNING);
    } else {
        become_idle(rec, now);
    }
}

/// Restores `before` after an idle stretch; if it was running and a round is open, waits for the
/// round first (the thread is about to run updateable code again). A store-then-load pair: either
/// the applier sees the thread running, or the thread sees the round.
fn leave_idle(rec: &ThreadRec, before: u8) {
    rec.set_state(before);
    if before == RUNNING && pending_after_store() {
        rec.set_state(IDLE);
        park(rec, None, RUNNING);
    }
}
