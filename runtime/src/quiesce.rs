//! The multi-threaded update protocol: an update is applied only at a moment when every thread
//! that takes part is at an update point or idle.
//!
//! **Registration.** A thread takes part from its first use of the runtime: its first update
//! point, idle section ([`idle`], [`IdleGuard`], [`idle_async`]) or poll of an updateable
//! `async fn`'s future. Each registered thread has a state: *running* (in updateable code),
//! *idle* (blocked outside it) or *parked* (waiting at an update point). A plain thread is running
//! outside idle sections. An *executor thread* is idle except while it polls an updateable future:
//! a thread first seen polling one (a tokio worker, for example), and, with the `tokio` feature, a
//! thread that registers inside a tokio runtime context (`Handle::try_current()`), such as the
//! thread of an `async` main loop with update points: between two update points it may be
//! awaiting in its executor, with no code of the user's. Its update points are still safe points:
//! it parks at one while a round is open. A thread's kind is decided once, on the slow path that
//! registers it; the idle update point does not look.
//!
//! **Frames and idle stretches.** A thread outside any frame is in its *resting* state: its kind's
//! (running or idle), or idle while an [`idle_async`] future it polled is pending (an *idle
//! stretch*, counted per thread, which ends when the future is ready or dropped). Frames change
//! the state for their duration and nest: an outermost poll of an updateable future (running), an
//! idle section (idle). An idle stretch begins and ends between a task's polls, not around a call,
//! so the outermost frame gives the thread its resting state when it ends, not the state it found.
//!
//! **Rounds.** [`crate::load`] queues a verified patch and opens a *round*. From then on, every
//! update point takes its slow path: the thread parks. The thread that makes the set of
//! registered threads quiescent (no one running) applies every pending patch, closes the round
//! and wakes the others, which resume on the new version. A round that does not reach quiescence
//! before its deadline ([`set_update_timeout`]) is abandoned: the pending patches are dropped,
//! every thread resumes on the old version, and the refusal says which threads were running.
//!
//! **The idle update point.** Each thread has its own flag, set while it must take the slow path
//! (it is not registered yet or only provisionally, or a round is open). An update point with
//! nothing pending is one relaxed load of that flag.
//!
//! **Cell scopes.** A thread inside a cell's scope (`with`, a `CellRef`, of a `State` or a
//! `Cell`) counts as running whatever its state, so no update applies while it holds a reference
//! into a cell's value, and an update may free the versions it replaces. Its depth of scopes is
//! in its *scope word*, a thread-local its record points at (with a copy of the thread's own
//! state in the low bits, so that a scope on a running thread touches one thread-local); the
//! coordinator reads the depth under its lock, after the thread's state. An update point reached
//! inside a scope does not park (its flag stays set, so the first one after the scope does), an
//! idle section entered inside one leaves the thread counted as running, and a wait for a round
//! inside one abandons the round at once. A thread not registered when it enters a scope
//! registers *provisionally*: idle outside scopes, with its flag kept set, until its first update
//! point, idle section or poll registers it for good, under the lock, as a new thread.
//!
//! **Scopes the list cannot show.** A thread that is exiting may enter a scope after its
//! registration (a thread-local) is gone, from another thread-local's destructor, or still be
//! inside one when it goes (a guard kept in a thread-local destroyed later). Such scopes are
//! counted in `UNTRACKED`, raised before the scope reads a cell (or, for a registration going
//! away inside a scope, before its record leaves the list, under the lock) and lowered when it
//! ends; no round applies while the count is not zero. The applier's own thread (a transformer
//! reading a cell) needs no tracking: it is the one applying, and its scopes see the values as
//! they were, since nothing is installed before every transformer has run.
//!
//! **Ordering.** A thread goes from idle to running in one of two ways. Leaving an idle section
//! or stretch, or starting an outermost poll, it stores *running* and then reads the global
//! pending flag; the applier sets the pending flag and then reads every thread's state. Both are
//! sequentially consistent, so either the applier sees the thread running (and waits), or the
//! thread sees the round and parks (taking the coordinator's lock, which the applier holds while
//! it applies). Leaving a park, it stores its state under the coordinator's lock with no round
//! open, or after its round closed and then checks the pending flag as above. Every other store
//! keeps or lowers the state (running to idle, then an attempt to apply) or registers a thread
//! under the lock, so no thread starts running updateable code unseen.
//!
//! A scope is entered the same way. On a thread whose state is running, only its depth changes:
//! the applier sees the thread running, and the thread leaves that state only by a sequentially
//! consistent store after the depth's, so an applier that reads the later state (then the depth)
//! reads the depth too. On any other thread the outermost scope stores its depth and then reads
//! the pending flag (both sequentially consistent), against the applier's store of the flag and
//! read of every depth; a thread that sees a round takes the coordinator's lock once, so an
//! update the applier had begun has finished before the thread reads the cell. Leaving the
//! outermost scope on a thread that is not running lowers it: the depth is stored, then the
//! pending flag read, and the thread may apply. A thread inside a scope that stores running
//! (leaving an idle section inside the scope) was counted as running all along. An executor thread runs
//! code between update points as idle: an update may apply meanwhile, and that code finishes on
//! the version it started with (patches stay mapped, state cells check their type on every
//! access), as on an unregistered thread.

use crate::sync::{AtomicBool, Mutex, MutexGuard, Ordering};
use crate::Error;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize};
use std::sync::{Arc, Condvar, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const RUNNING: u8 = 0;
const IDLE: u8 = 1;
const PARKED: u8 = 2;
/// Not a state: what this thread's scope word (`SCOPES`) holds in its state bits while the
/// thread has no record.
const UNREGISTERED: u8 = 3;

/// The low bits of a scope word: the thread's state (`RUNNING` is 0).
const STATE_BITS: u32 = 3;
/// One scope, in a scope word (above the state bits).
const DEPTH_ONE: u32 = STATE_BITS + 1;

/// Scopes entered by threads that have no record (a thread past the destruction of its
/// registration, in the destructors of its thread-locals) and not yet left: while there is one,
/// no update applies, as if such a thread were running. Raised before the scope reads a cell
/// (or, when a thread leaves inside a scope, before its record goes), lowered when it ends.
static UNTRACKED: AtomicU32 = AtomicU32::new(0);

/// Set while a round is open (a verified patch or rollback waits to be applied).
static PENDING: AtomicBool = AtomicBool::new(false);

/// How long a round waits for quiescence before it is abandoned, unless set otherwise.
pub const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(2);

thread_local! {
    /// This thread's update-point flag: set while its next update point must take the slow path,
    /// because the thread is not registered yet or a round is open.
    static CHECK: AtomicBool = const { AtomicBool::new(true) };
    /// This thread's registration; dropping it (at thread exit) deregisters the thread.
    static ME: RefCell<Option<Registration>> = const { RefCell::new(None) };
    /// How many frames set this thread's state now: outermost polls of updateable futures and
    /// idle sections, nested.
    static FRAMES: Cell<u32> = const { Cell::new(0) };
    /// This thread's *scope word*: how many cell scopes (`State::with`, `Cell::access`, …) it is
    /// inside, nested, in units of `DEPTH_ONE`, plus in the low bits (`STATE_BITS`) its state as
    /// it last stored it, or `UNREGISTERED`. While the depth is not zero the thread counts as
    /// running, whatever its state; the coordinator reads the depth through the thread's record.
    /// One word, so that a scope on a running thread touches one thread-local: a load and a
    /// store, and one compare tells the slow path (the outermost scope of a thread that is not
    /// running). Only this thread writes it. `const` and without destructor, so it is there
    /// during thread exit too.
    static SCOPES: AtomicU32 = const { AtomicU32::new(UNREGISTERED as u32) };
    /// Set while this thread applies a round (it holds the coordinator's lock meanwhile).
    static APPLYING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside a cell scope.
pub(crate) fn holding_cell() -> bool {
    SCOPES.with(|w| w.load(Ordering::Relaxed) >= DEPTH_ONE)
}

/// The calling thread's state as it last stored it, or `UNREGISTERED`.
fn mine() -> u8 {
    SCOPES.with(|w| (w.load(Ordering::Relaxed) & STATE_BITS) as u8)
}

/// Keeps the calling thread's copy of its own state, in its scope word.
fn set_mine(state: u8) {
    SCOPES.with(|w| {
        let word = w.load(Ordering::Relaxed);
        w.store((word & !STATE_BITS) | u32::from(state), Ordering::Relaxed);
    });
}

/// Enters a cell scope on the calling thread: from now until the matching [`exit_scope`] it
/// counts as running, and no update applies.
///
/// On a thread whose state is running (a plain thread between update points, an executor thread
/// inside a poll), and for any inner scope, this is a load and a store of one thread-local: the
/// coordinator sees the thread running already (or inside its outer scope), and the thread
/// leaves that state only by a sequentially consistent store of its own, after this one, so an
/// applier that reads the later state reads this depth too. Otherwise the outermost scope takes
/// [`enter_scope_slow`].
#[inline]
pub(crate) fn enter_scope() {
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
/// [`register_provisional`]), publishes the depth, then reads the pending flag, against the
/// applier's store of the flag and read of every thread's depth (both sequentially consistent):
/// either the applier sees the scope, or the thread sees the round, and then it takes the
/// coordinator's lock once, which the applier holds while it applies, so an update that had begun
/// has finished before the thread reads the cell.
///
/// A thread that cannot register (it is exiting, and its registration is gone) raises the count
/// of untracked scopes instead, with the same ordering against the applier's read of it.
#[cold]
#[inline(never)]
fn enter_scope_slow() {
    // Not on the applier's thread: it holds the coordinator's lock, which registering takes;
    // its own scopes need no tracking (it is the one applying), and count as untracked.
    if mine() == UNREGISTERED && !APPLYING_HERE.with(Cell::get) {
        register_provisional();
    }
    let word = SCOPES.with(|w| {
        let word = w.load(Ordering::Relaxed);
        w.store(word, Ordering::SeqCst);
        word
    });
    if word & STATE_BITS == u32::from(UNREGISTERED) {
        UNTRACKED.fetch_add(1, Ordering::SeqCst);
    }
    // The applier itself (a transformer reading a cell) already holds the lock.
    if PENDING.load(Ordering::SeqCst) && !APPLYING_HERE.with(Cell::get) {
        drop(coordinator());
    }
}

/// Leaves a cell scope. Leaving the outermost one on a thread whose state is not running (idle,
/// an executor thread between polls, an exiting thread) lowers it as the end of a running section
/// does: the depth is stored, then the pending flag read, and the thread may complete quiescence
/// and apply. On a running thread nothing else happens: it is still running, and a round open
/// meanwhile applies at its next update point.
#[inline]
pub(crate) fn exit_scope() {
    let after = SCOPES.with(|w| {
        let word = w.load(Ordering::Relaxed) - DEPTH_ONE;
        w.store(word, Ordering::Relaxed);
        word
    });
    if after.wrapping_sub(1) < STATE_BITS {
        exit_scope_slow(after);
    }
}

#[cold]
#[inline(never)]
fn exit_scope_slow(word: u32) {
    SCOPES.with(|w| w.store(word, Ordering::SeqCst));
    if word & STATE_BITS == u32::from(UNREGISTERED) {
        UNTRACKED.fetch_sub(1, Ordering::SeqCst);
    }
    if PENDING.load(Ordering::SeqCst) && !APPLYING_HERE.with(Cell::get) {
        let mut c = coordinator();
        if !expire(&mut c) {
            try_apply(&mut c);
        }
    }
}

/// Enters a frame; true if it is the outermost one.
fn enter_frame() -> bool {
    FRAMES.with(|f| {
        let n = f.get();
        f.set(n + 1);
        n == 0
    })
}

fn exit_frame() {
    FRAMES.with(|f| f.set(f.get().saturating_sub(1)));
}

/// Whether no frame sets this thread's state now.
fn outside_frames() -> bool {
    FRAMES.with(|f| f.get() == 0)
}

/// One registered thread, as the coordinator sees it.
struct ThreadRec {
    state: AtomicU8,
    /// The state the thread registered with, which it has outside every frame and idle stretch:
    /// running for a plain thread, idle for an executor thread (and for a provisional one).
    /// Written by the owning thread only, under the coordinator's lock.
    base: AtomicU8,
    /// Registered by a cell scope and by nothing else yet: the thread counts as running only
    /// inside scopes, and its `CHECK` flag stays set so that its first update point, idle section
    /// or poll registers it for good (with the kind that entry point gives a new thread).
    provisional: AtomicBool,
    /// Futures wrapped by [`idle_async`] that this thread polled last and that were pending
    /// then: while there is one, the thread is idle outside frames.
    stretches: AtomicUsize,
    /// The thread's `CHECK` flag.
    check: *const AtomicBool,
    /// The thread's scope word (`SCOPES`), whose depth the coordinator reads.
    held: *const AtomicU32,
    name: String,
    /// To wake it when it is parked.
    thread: std::thread::Thread,
}

// SAFETY: `check` and `held` point at the owning thread's `CHECK` and `SCOPES`, thread-locals
// without destructor whose storage lives until the thread has exited; the record is removed from
// the coordinator (under its lock) by the thread's `Registration` destructor, before that storage
// goes away, and both are only dereferenced under the same lock. Everything else is atomics and immutable data.
unsafe impl Send for ThreadRec {}
// SAFETY: as above.
unsafe impl Sync for ThreadRec {}

impl ThreadRec {
    /// The state of the thread outside every frame.
    fn resting(&self) -> u8 {
        if self.stretches.load(Ordering::Relaxed) > 0 {
            IDLE
        } else {
            self.base.load(Ordering::Relaxed)
        }
    }

    /// The state the calling thread, the owner of this record, returns to after parking where it
    /// stands: its frame's state, or outside frames its resting state.
    fn here(&self) -> u8 {
        if outside_frames() {
            self.resting()
        } else {
            self.state.load(Ordering::Relaxed)
        }
    }

    fn set_check(&self, on: bool) {
        let on = on || self.provisional.load(Ordering::Relaxed);
        // SAFETY: called only under the coordinator's lock while the record is registered, so the
        // owning thread's CHECK is alive (see the Send impl).
        unsafe { &*self.check }.store(on, Ordering::Relaxed);
    }

    /// How many cell scopes the thread is inside. Read under the coordinator's lock.
    fn held(&self) -> u32 {
        // SAFETY: called only under the coordinator's lock while the record is registered, so the
        // owning thread's SCOPES is alive (see the Send impl).
        unsafe { &*self.held }.load(Ordering::SeqCst) / DEPTH_ONE
    }

    /// Whether the update protocol counts the thread as running: its state is, or it is inside
    /// a cell scope. The state is read first: a thread that leaves the running state stores the
    /// new state after its depth, so an applier that reads the new state reads that depth too.
    /// Under the coordinator's lock.
    fn counts_running(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RUNNING || self.held() > 0
    }

    /// Stores the state of the calling thread, the owner of this record, and its copy in its
    /// scope word.
    fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::SeqCst);
        set_mine(state);
    }
}

struct Registration {
    rec: Arc<ThreadRec>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut c = coordinator();
        // A thread that leaves inside a scope (a guard kept in a thread-local destroyed after
        // this one) still holds a reference into a cell: it counts as running until the scope
        // ends, through the count of untracked scopes, raised before its record goes (both
        // under the lock the applier reads them under).
        if holding_cell() {
            UNTRACKED.fetch_add(1, Ordering::SeqCst);
        }
        c.threads.retain(|t| !Arc::ptr_eq(t, &self.rec));
        set_mine(UNREGISTERED);
        // The exiting thread may have been the last one running.
        if PENDING.load(Ordering::SeqCst) {
            try_apply(&mut c);
        }
    }
}

/// The outcome of one closed round.
#[derive(Clone)]
struct Outcome {
    round: u64,
    result: Result<(), Error>,
}

/// What the pause of one round is measured from.
struct RoundClock {
    number: u64,
    /// Threads parked in this round and not yet resumed.
    parked: AtomicUsize,
    /// When the first thread parked.
    first_parked: OnceLock<Instant>,
    /// When the round began to apply, and when it closed.
    applying: OnceLock<Instant>,
    closed: OnceLock<Instant>,
}

impl RoundClock {
    fn new(number: u64) -> Arc<Self> {
        Arc::new(RoundClock {
            number,
            parked: AtomicUsize::new(0),
            first_parked: OnceLock::new(),
            applying: OnceLock::new(),
            closed: OnceLock::new(),
        })
    }

    /// Records the round's pause: from the first park (or the start of applying, if no thread
    /// had to park) until `resumed`, and how much of it went to waiting for quiescence.
    fn record(&self, resumed: Instant) {
        let applying = self.applying.get().copied().unwrap_or(resumed);
        let start = self.first_parked.get().copied().unwrap_or(applying).min(applying);
        crate::update::record_pause(
            self.number,
            resumed.duration_since(start),
            applying.duration_since(start),
        );
    }
}

struct Coordinator {
    threads: Vec<Arc<ThreadRec>>,
    /// Rounds closed so far; the open round, if any, has this number.
    round: u64,
    /// When the open round is abandoned.
    deadline: Option<Instant>,
    timeout: Duration,
    /// The open round's clock.
    clock: Option<Arc<RoundClock>>,
    /// When the open round opened.
    opened: Option<Instant>,
    outcomes: VecDeque<Outcome>,
}

static COORDINATOR: Mutex<Coordinator> = Mutex::new(Coordinator {
    threads: Vec::new(),
    round: 0,
    deadline: None,
    timeout: DEFAULT_UPDATE_TIMEOUT,
    clock: None,
    opened: None,
    outcomes: VecDeque::new(),
});
/// Rounds closed so far, published for parked threads, which wait without the lock.
static CLOSED: AtomicU64 = AtomicU64::new(0);
/// Wakes waiters that are not registered threads (they cannot be unparked).
static WAKE: Condvar = Condvar::new();

fn coordinator() -> MutexGuard<'static, Coordinator> {
    // Nothing under this lock leaves the coordinator inconsistent on a panic: transformer panics
    // are caught inside `apply_now`.
    COORDINATOR.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets how long an update waits for every registered thread to reach an update point or be
/// idle; after that it is abandoned and the program keeps its version. Applies to rounds opened
/// from now on.
pub fn set_update_timeout(timeout: Duration) {
    coordinator().timeout = timeout;
}

/// The current update timeout (see [`set_update_timeout`]).
pub fn update_timeout() -> Duration {
    coordinator().timeout
}

/// Whether a round is open: a queued patch or rollback waits to be applied. One atomic load.
pub(crate) fn round_open() -> bool {
    PENDING.load(Ordering::SeqCst)
}

/// The number of threads registered with the update protocol.
pub fn registered_threads() -> usize {
    coordinator().threads.len()
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

/// The state of the registered thread called `name`, for tests.
pub(crate) fn thread_state(name: &str) -> Option<&'static str> {
    let c = coordinator();
    let t = c.threads.iter().find(|t| t.name == name)?;
    if t.counts_running() {
        return Some("running");
    }
    Some(match t.state.load(Ordering::SeqCst) {
        IDLE => "idle",
        _ => "parked",
    })
}

/// This thread's record, registering it first (with `initial` as its state, or as an executor
/// thread, see [`initial_state`]). A provisional registration becomes the one a new thread gets
/// here.
fn register(initial: u8) -> Option<Arc<ThreadRec>> {
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
                rec.set_check(PENDING.load(Ordering::SeqCst));
            }
            return rec.clone();
        }
        let initial = if provisional { IDLE } else { initial_state(initial) };
        let check = CHECK.with(|c| c as *const AtomicBool);
        let held = SCOPES.with(|w| w as *const AtomicU32);
        let name = std::thread::current()
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("{:?}", std::thread::current().id()));
        let thread = std::thread::current();
        let rec = Arc::new(ThreadRec {
            state: AtomicU8::new(initial),
            base: AtomicU8::new(initial),
            provisional: AtomicBool::new(provisional),
            stretches: AtomicUsize::new(0),
            check,
            held,
            name,
            thread,
        });
        {
            let mut c = coordinator();
            rec.set_check(PENDING.load(Ordering::SeqCst));
            set_mine(initial);
            c.threads.push(rec.clone());
        }
        *me.borrow_mut() = Some(Registration { rec: rec.clone() });
        rec
    })
    .ok()
}

/// The update point: one relaxed load of this thread's flag when nothing is pending.
#[inline(always)]
pub(crate) fn update_point() {
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
pub(crate) fn register_running() {
    register(RUNNING);
}

/// Parks the calling thread until the open round (or, with `until`, round `until`) has closed,
/// then gives it the state `after`; returns after the program has switched versions or the round
/// was abandoned. Without an open round it returns at once.
///
/// The thread takes the coordinator's lock to park (and perhaps apply, if it completes
/// quiescence); it waits and resumes without it, so resuming threads do not queue on the lock.
/// A thread that resumes into updateable code (`after` is running) while a newer round has
/// opened stays parked for that round too: it stores its state, then reads the pending flag,
/// against the applier's store of the flag and read of every state, so either the applier sees
/// it running or it sees the round.
///
/// Inside a cell scope the thread counts as running, so no update applies before it leaves the
/// scope: waiting for the open round here would wait for the thread itself. It returns at once,
/// with the state `after`, and its flag stays set while the round is open, so its first update
/// point after the scope parks. (A wait for a given round inside a scope abandons the round
/// first, see [`wait_for`].)
fn park(rec: &ThreadRec, until: Option<u64>, after: u8) {
    if until.is_none() && holding_cell() {
        rec.set_state(after);
        return;
    }
    let mut until = until;
    loop {
        let (round, clock, deadline) = {
            let mut c = coordinator();
            let round = until.unwrap_or(c.round);
            if c.round > round || !PENDING.load(Ordering::SeqCst) {
                // Under the lock: no update is being applied now, and the next applier sees
                // this state.
                rec.set_state(after);
                if !PENDING.load(Ordering::SeqCst) {
                    // Nothing to wait for: later update points take the fast path.
                    rec.set_check(false);
                }
                return;
            }
            rec.set_state(PARKED);
            let clock = c.clock.clone().expect("an open round has a clock");
            clock.parked.fetch_add(1, Ordering::SeqCst);
            let _ = clock.first_parked.set(Instant::now());
            if !expire(&mut c) {
                try_apply(&mut c);
            }
            (round, clock, c.deadline)
        };
        while CLOSED.load(Ordering::SeqCst) <= round {
            let now = Instant::now();
            match deadline {
                Some(d) if now >= d => {
                    let mut c = coordinator();
                    if c.round == round {
                        expire(&mut c);
                    }
                }
                // Unparked by `close`; the timeout only bounds a missed wake-up.
                Some(d) => std::thread::park_timeout(d - now),
                None => std::thread::park_timeout(Duration::from_millis(10)),
            }
        }
        rec.set_state(after);
        // `close` cleared this thread's flag (and a round opened since has set it again).
        if clock.parked.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last thread out of this round.
            clock.record(Instant::now());
        }
        if after != RUNNING || !PENDING.load(Ordering::SeqCst) {
            return;
        }
        // A newer round: this thread is still at its safe point; wait for that one too.
        until = None;
    }
}

/// Opens a round (or joins the open one) after a patch or rollback was queued; returns the
/// round's number. Applies at once if every registered thread is already idle or parked.
pub(crate) fn open_round() -> u64 {
    let mut c = coordinator();
    if !PENDING.load(Ordering::SeqCst) {
        let now = Instant::now();
        c.deadline = Some(now + c.timeout);
        c.opened = Some(now);
        c.clock = Some(RoundClock::new(c.round));
        PENDING.store(true, Ordering::SeqCst);
        for t in &c.threads {
            t.set_check(true);
        }
    }
    let round = c.round;
    try_apply(&mut c);
    round
}

/// Waits, parked, until round `round` has closed; its outcome.
///
/// Called inside a cell scope, it abandons the round at once if it is still open: no update
/// applies while this thread holds a cell, and the thread would hold it until the deadline.
pub(crate) fn wait_for(round: u64) -> Result<(), Error> {
    let rec = register(RUNNING);
    if rec.is_some() && holding_cell() {
        let mut c = coordinator();
        if c.round == round && PENDING.load(Ordering::SeqCst) {
            abandon(&mut c);
        }
    }
    match &rec {
        Some(rec) => park(rec, Some(round), rec.here()),
        None => {
            let mut c = coordinator();
            while c.round <= round {
                if expire(&mut c) || try_apply(&mut c) {
                    continue;
                }
                c = WAKE
                    .wait_timeout(c, Duration::from_millis(10))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }
    outcome(round).unwrap_or(Err(Error::OutcomeUnknown { round }))
}

/// The outcome of round `round`: `None` while it is open or not yet opened, and
/// [`Error::OutcomeUnknown`] once it closed so long ago that its outcome is no longer kept (the
/// last 64 rounds are).
pub(crate) fn outcome(round: u64) -> Option<Result<(), Error>> {
    let c = coordinator();
    if c.round <= round {
        return None;
    }
    Some(
        c.outcomes
            .iter()
            .find(|o| o.round == round)
            .map(|o| o.result.clone())
            .unwrap_or(Err(Error::OutcomeUnknown { round })),
    )
}

/// Applies every pending patch if no registered thread is running; true if the round closed.
fn try_apply(c: &mut MutexGuard<'static, Coordinator>) -> bool {
    if !PENDING.load(Ordering::SeqCst) {
        return false;
    }
    if c.threads.iter().any(|t| t.counts_running()) || UNTRACKED.load(Ordering::SeqCst) > 0 {
        return false;
    }
    if let Some(clock) = &c.clock {
        let _ = clock.applying.set(Instant::now());
    }
    #[cfg(test)]
    tests::APPLYING.store(true, Ordering::SeqCst);
    APPLYING_HERE.with(|a| a.set(true));
    let result = crate::update::apply_now(c.round);
    APPLYING_HERE.with(|a| a.set(false));
    #[cfg(test)]
    tests::APPLYING.store(false, Ordering::SeqCst);
    close(c, result);
    true
}

/// Abandons the open round if its deadline has passed; true if it did.
fn expire(c: &mut MutexGuard<'static, Coordinator>) -> bool {
    let Some(deadline) = c.deadline else { return false };
    if !PENDING.load(Ordering::SeqCst) || Instant::now() < deadline {
        return false;
    }
    abandon(c);
    true
}

/// Abandons the open round: the refusal names the threads the protocol counts as running, and
/// among them those inside a cell scope.
fn abandon(c: &mut MutexGuard<'static, Coordinator>) {
    let mut running = Vec::new();
    let mut holding = Vec::new();
    for t in &c.threads {
        if t.counts_running() {
            running.push(t.name.clone());
            if t.held() > 0 {
                holding.push(t.name.clone());
            }
        }
    }
    let untracked = UNTRACKED.load(Ordering::SeqCst);
    if untracked > 0 {
        let exiting = format!("{untracked} exiting thread(s), inside a cell scope");
        running.push(exiting.clone());
        holding.push(exiting);
    }
    let waited = c.opened.map(|o| o.elapsed()).unwrap_or(c.timeout);
    let error = Error::UpdateTimeout { waited, running, holding };
    crate::update::abandon_pending(&error);
    close(c, Err(error));
}

fn close(c: &mut MutexGuard<'static, Coordinator>, result: Result<(), Error>) {
    let round = c.round;
    c.round += 1;
    c.deadline = None;
    c.opened = None;
    c.outcomes.push_back(Outcome { round, result });
    while c.outcomes.len() > 64 {
        c.outcomes.pop_front();
    }
    PENDING.store(false, Ordering::SeqCst);
    CLOSED.store(c.round, Ordering::SeqCst);
    let now = Instant::now();
    if let Some(clock) = c.clock.take() {
        let _ = clock.closed.set(now);
        if clock.parked.load(Ordering::SeqCst) == 0 {
            clock.record(now);
        }
    }
    for t in &c.threads {
        t.set_check(false);
        if t.state.load(Ordering::SeqCst) == PARKED {
            t.thread.unpark();
        }
    }
    WAKE.notify_all();
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
    /// resting state, which an [`idle_async`] future may have changed meanwhile.
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
/// have been the last one running, so it tries to apply.
fn become_idle(rec: &ThreadRec, was: u8) {
    rec.set_state(IDLE);
    if was == RUNNING && PENDING.load(Ordering::SeqCst) {
        let mut c = coordinator();
        if !expire(&mut c) {
            try_apply(&mut c);
        }
    }
}

/// Gives the calling thread, outside every frame, the state `to`, with the protocol's checks:
/// going from idle to running it parks first if a round is open.
fn settle(rec: &ThreadRec, to: u8) {
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
/// round first (the thread is about to run updateable code again).
fn leave_idle(rec: &ThreadRec, before: u8) {
    rec.set_state(before);
    if before == RUNNING && PENDING.load(Ordering::SeqCst) {
        rec.set_state(IDLE);
        park(rec, None, RUNNING);
    }
}


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
        rec.set_state(RUNNING);
        if PENDING.load(Ordering::SeqCst) {
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
        if to != RUNNING && PENDING.load(Ordering::SeqCst) {
            let mut c = coordinator();
            if !expire(&mut c) {
                try_apply(&mut c);
            }
        }
    }
}

/// Awaits `fut` with the polling thread counted as idle while `fut` is pending, the async form
/// of [`idle`]: a thread registered as running (a plain thread that reached an update point, the
/// thread of a current-thread runtime) does not hold an update up while it awaits.
///
/// The thread that polls `fut` is idle while it polls it and, when `fut` is pending, from then
/// until `fut` is ready or dropped; with several such futures pending on one thread (tasks of a
/// current-thread runtime), until none is. Then it is as it was: if it was running and a round is
/// open, it waits for the round to close first, as at the end of an idle section. Code that runs
/// on the thread meanwhile (other tasks) runs as idle code: keep updateable calls there inside
/// updateable `async fn`s, which count as running while they are polled. Polling `fut` must not
/// call updateable code (as in [`idle`]).
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
        let mine = ME
            .try_with(|me| me.borrow().as_ref().is_some_and(|r| Arc::ptr_eq(&r.rec, &owner)))
            .unwrap_or(false);
        if mine && outside_frames() {
            settle(&owner, owner.resting());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Set while a round applies, for the tests to check that no running thread sees it.
    pub(super) static APPLYING: AtomicBool = AtomicBool::new(false);

    /// Pending until its flag is set.
    struct Gate(Arc<AtomicBool>);

    impl Future for Gate {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
        }
    }

    /// Pending for `n` polls, then ready.
    struct PendingFor(u32);

    impl Future for PendingFor {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            if self.0 == 0 {
                return Poll::Ready(());
            }
            self.0 -= 1;
            Poll::Pending
        }
    }

    /// The state of the registered thread called `name`.
    fn state_of(name: &str) -> Option<u8> {
        coordinator().threads.iter().find(|t| t.name == name).map(|t| t.state.load(Ordering::SeqCst))
    }

    /// The calling thread's state.
    fn my_state() -> u8 {
        ME.with(|me| me.borrow().as_ref().expect("registered").rec.state.load(Ordering::SeqCst))
    }

    fn poll_once<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
        f.poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    /// What `idle_async` does to the state of the thread that polls it (no round is opened: the
    /// other test's rounds only make these threads wait).
    #[test]
    fn idle_async_keeps_the_polling_thread_idle_while_pending() {
        std::thread::spawn(|| {
            // A plain thread: running outside idle sections.
            update_point();
            assert_eq!(my_state(), RUNNING);
            let mut f = std::pin::pin!(idle_async(PendingFor(2)));
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(f.as_mut()).is_ready());
            assert_eq!(my_state(), RUNNING);

            // Awaited inside an updateable future: the poll that resumes it (a running frame,
            // since the thread was idle) ends with the thread running again, as it was.
            let mut f = std::pin::pin!(Tracked::new(async { idle_async(PendingFor(1)).await }));
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(f.as_mut()).is_ready());
            assert_eq!(my_state(), RUNNING);

            // Two pending on one thread: idle until neither is.
            let mut a = std::pin::pin!(idle_async(PendingFor(1)));
            let mut b = std::pin::pin!(idle_async(PendingFor(1)));
            assert!(poll_once(a.as_mut()).is_pending());
            assert!(poll_once(b.as_mut()).is_pending());
            assert!(poll_once(a.as_mut()).is_ready());
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(b.as_mut()).is_ready());
            assert_eq!(my_state(), RUNNING);

            // Dropped while pending: as it was.
            let mut f = Box::pin(idle_async(PendingFor(1)));
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(my_state(), IDLE);
            drop(f);
            assert_eq!(my_state(), RUNNING);

            // Pending past the end of an idle section: still idle, until it is ready.
            let mut f = std::pin::pin!(idle_async(PendingFor(1)));
            let guard = IdleGuard::enter();
            assert!(poll_once(f.as_mut()).is_pending());
            drop(guard);
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(f.as_mut()).is_ready());
            assert_eq!(my_state(), RUNNING);
        })
        .join()
        .unwrap();

        std::thread::spawn(|| {
            // An executor thread: idle outside polls of updateable futures, also after one
            // awaited an `idle_async` future, and after one panicked.
            let mut f = std::pin::pin!(Tracked::new(async {
                idle_async(PendingFor(1)).await;
                assert_eq!(my_state(), RUNNING);
            }));
            assert!(poll_once(f.as_mut()).is_pending());
            assert_eq!(my_state(), IDLE);
            assert!(poll_once(f.as_mut()).is_ready());
            assert_eq!(my_state(), IDLE);
            let panicked = std::panic::catch_unwind(|| {
                let mut f = std::pin::pin!(Tracked::new(async { panic!("in a poll") }));
                let _ = poll_once(f.as_mut());
            });
            assert!(panicked.is_err());
            assert_eq!(my_state(), IDLE);
            update_point();
            assert_eq!(my_state(), IDLE);
        })
        .join()
        .unwrap();
    }

    /// The scenarios share the process-wide coordinator, so they run in order in one test.
    #[test]
    fn rounds_wait_for_every_registered_thread() {
        // A worker loop with an update point, and a thread blocked in an idle section: the
        // round closes once the worker parks; the idle thread does not hold it up.
        let stop = Arc::new(AtomicBool::new(false));
        let laps = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (stop, laps) = (stop.clone(), laps.clone());
            std::thread::Builder::new()
                .name("worker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        update_point();
                        laps.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .unwrap()
        };
        let (wake_idle, idle_rx) = mpsc::channel::<()>();
        let (idle_ready, ready_rx) = mpsc::channel::<()>();
        let sleeper = std::thread::Builder::new()
            .name("sleeper".into())
            .spawn(move || {
                let guard = IdleGuard::enter();
                idle_ready.send(()).unwrap();
                idle_rx.recv().unwrap();
                drop(guard);
            })
            .unwrap();
        ready_rx.recv().unwrap();
        while laps.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        set_update_timeout(Duration::from_secs(30));
        let round = open_round();
        assert!(wait_for(round).is_ok());
        assert!(!PENDING.load(Ordering::SeqCst));
        let after = laps.load(Ordering::Relaxed);
        while laps.load(Ordering::Relaxed) == after {
            std::thread::yield_now();
        }

        // A registered thread blocked outside an idle section holds the round up until the
        // timeout; the round is abandoned and names it, and every other thread resumes.
        let (release, blocked_rx) = mpsc::channel::<()>();
        let (blocked_ready, ready_rx) = mpsc::channel::<()>();
        let blocked = std::thread::Builder::new()
            .name("blocked".into())
            .spawn(move || {
                update_point();
                blocked_ready.send(()).unwrap();
                blocked_rx.recv().unwrap();
            })
            .unwrap();
        ready_rx.recv().unwrap();
        set_update_timeout(Duration::from_millis(100));
        let round = open_round();
        match wait_for(round) {
            // Other tests of this binary may have a thread of their own running at that moment.
            Err(Error::UpdateTimeout { running, .. }) => {
                assert!(running.iter().any(|n| n == "blocked"), "{running:?}");
                assert!(!running.iter().any(|n| n == "worker" || n == "sleeper"), "{running:?}");
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(!PENDING.load(Ordering::SeqCst));
        let after = laps.load(Ordering::Relaxed);
        while laps.load(Ordering::Relaxed) == after {
            std::thread::yield_now();
        }

        release.send(()).unwrap();
        blocked.join().unwrap();
        wake_idle.send(()).unwrap();
        sleeper.join().unwrap();
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
        set_update_timeout(Duration::from_secs(30));

        // A plain thread awaiting an `idle_async` future does not hold a round up; when the
        // future is ready while a round is open, the thread parks before it goes on.
        let gate = Arc::new(AtomicBool::new(false));
        let resumed = Arc::new(AtomicBool::new(false));
        let (awaiting, awaiting_rx) = mpsc::channel::<()>();
        let (poll_again, poll_rx) = mpsc::channel::<()>();
        let awaiter = {
            let (gate, resumed) = (gate.clone(), resumed.clone());
            std::thread::Builder::new()
                .name("awaiter".into())
                .spawn(move || {
                    update_point();
                    let mut cx = Context::from_waker(std::task::Waker::noop());
                    let mut f = std::pin::pin!(idle_async(Gate(gate)));
                    assert!(f.as_mut().poll(&mut cx).is_pending());
                    awaiting.send(()).unwrap();
                    // Blocked, not in an idle section: the pending future keeps it idle.
                    poll_rx.recv().unwrap();
                    assert!(f.as_mut().poll(&mut cx).is_ready());
                    resumed.store(true, Ordering::SeqCst);
                })
                .unwrap()
        };
        awaiting_rx.recv().unwrap();
        let round = open_round();
        assert!(wait_for(round).is_ok());
        // This thread is registered and running: the next round waits for it.
        let round = open_round();
        gate.store(true, Ordering::SeqCst);
        poll_again.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while state_of("awaiter") != Some(PARKED) {
            assert!(Instant::now() < deadline, "the awaiter did not park: {:?}", state_of("awaiter"));
            std::thread::yield_now();
        }
        assert!(!resumed.load(Ordering::SeqCst), "the awaiter went on during the round");
        assert!(wait_for(round).is_ok());
        awaiter.join().unwrap();
        assert!(resumed.load(Ordering::SeqCst));
        set_update_timeout(DEFAULT_UPDATE_TIMEOUT);

        // Many rounds while threads move between running sections, update points and idle
        // sections as fast as they can: no round applies while any of them is in a running
        // section, and none deadlocks.
        let stop = Arc::new(AtomicBool::new(false));
        let violations = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let (stop, violations) = (stop.clone(), violations.clone());
                std::thread::Builder::new()
                    .name(format!("stress-{i}"))
                    .spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            update_point();
                            // A running section: updateable code would run here.
                            for _ in 0..50 {
                                if APPLYING.load(Ordering::SeqCst) {
                                    violations.fetch_add(1, Ordering::Relaxed);
                                }
                                std::hint::spin_loop();
                            }
                            n += 1;
                            if n % 3 == i {
                                idle(std::thread::yield_now);
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        // Executor threads: they poll updateable futures, idle between polls.
        struct Checked {
            polls: u32,
            violations: Arc<AtomicUsize>,
        }
        impl Future for Checked {
            type Output = ();
            fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                for _ in 0..50 {
                    if APPLYING.load(Ordering::SeqCst) {
                        self.violations.fetch_add(1, Ordering::Relaxed);
                    }
                    std::hint::spin_loop();
                }
                self.polls -= 1;
                if self.polls == 0 { Poll::Ready(()) } else { Poll::Pending }
            }
        }
        let executors: Vec<_> = (0..2)
            .map(|i| {
                let (stop, violations) = (stop.clone(), violations.clone());
                std::thread::Builder::new()
                    .name(format!("executor-{i}"))
                    .spawn(move || {
                        let mut cx = Context::from_waker(std::task::Waker::noop());
                        while !stop.load(Ordering::Relaxed) {
                            let f = Tracked::new(Checked { polls: 3, violations: violations.clone() });
                            let mut f = std::pin::pin!(f);
                            while f.as_mut().poll(&mut cx).is_pending() {
                                std::thread::yield_now();
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        // A plain thread awaiting `idle_async` futures between running sections.
        let awaiters: Vec<_> = (0..1)
            .map(|i| {
                let (stop, violations) = (stop.clone(), violations.clone());
                std::thread::Builder::new()
                    .name(format!("stress-async-{i}"))
                    .spawn(move || {
                        let mut cx = Context::from_waker(std::task::Waker::noop());
                        while !stop.load(Ordering::Relaxed) {
                            update_point();
                            let mut f = std::pin::pin!(idle_async(Checked {
                                polls: 2,
                                violations: Arc::new(AtomicUsize::new(0)),
                            }));
                            while f.as_mut().poll(&mut cx).is_pending() {
                                std::thread::yield_now();
                            }
                            // Running again: updateable code would run here.
                            for _ in 0..50 {
                                if APPLYING.load(Ordering::SeqCst) {
                                    violations.fetch_add(1, Ordering::Relaxed);
                                }
                                std::hint::spin_loop();
                            }
                        }
                    })
                    .unwrap()
            })
            .collect();
        for _ in 0..300 {
            let round = open_round();
            assert!(wait_for(round).is_ok());
        }
        stop.store(true, Ordering::Relaxed);
        for t in threads.into_iter().chain(executors).chain(awaiters) {
            t.join().unwrap();
        }
        assert_eq!(violations.load(Ordering::Relaxed), 0, "an update ran beside a running section");
        // Exited threads are deregistered.
        let names: Vec<String> = coordinator().threads.iter().map(|t| t.name.clone()).collect();
        for gone in ["worker", "sleeper", "blocked", "awaiter"] {
            assert!(!names.iter().any(|n| n == gone), "{gone} is still registered: {names:?}");
        }
    }
}
