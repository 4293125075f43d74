//! The coordinator: the registered threads, the open round, and the moment it applies, through
//! the [`Applier`] that opened it.

use super::primitive::{deadline, fence, globals, AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering};
use super::thread::{holding_cell, park, register, set_applying_here, ThreadRec, IDLE, RUNNING};
use crate::Error;
use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What a round applies, and to whom the protocol reports: in a program the runtime (its queued
/// patches and rollbacks, `update.rs`), in the models of the protocol a checker of its guarantees
/// (`tests/loom_protocol.rs`). The protocol calls into the runtime only through this trait.
pub trait Applier: Sync {
    /// Applies what round `round` has queued. Called once per round that reaches quiescence, on
    /// the thread that completed it, with the coordinator's lock held: no registered thread is
    /// running or inside a cell scope, no untracked scope is open, and none starts before this
    /// returns. Its result is the round's outcome.
    fn apply(&self, round: u64) -> Result<(), Error>;

    /// The open round was abandoned (its deadline passed, or a wait inside a cell scope gave it
    /// up): what it queued is dropped. `why` is the outcome its waiters get. Under the
    /// coordinator's lock.
    fn abandon(&self, why: &Error);

    /// The pause of round `round`, once it closed: from the first thread parking (or the start
    /// of applying) until the last parked thread resumed, and the part of it spent waiting for
    /// quiescence. Called once per round, by the last thread out of it, or by `close` (under the
    /// coordinator's lock) when no thread had parked.
    fn record_pause(&self, round: u64, pause: Duration, waiting: Duration);
}

/// How long a round waits for quiescence before it is abandoned, unless set otherwise.
pub const DEFAULT_UPDATE_TIMEOUT: Duration = Duration::from_secs(2);

/// How many closed rounds keep their outcome.
const OUTCOMES_KEPT: usize = 64;

globals! {
    /// Scopes entered by threads that have no record (a thread past the destruction of its
    /// registration, in the destructors of its thread-locals) and not yet left: while there is
    /// one, no update applies, as if such a thread were running. Raised before the scope reads a
    /// cell (or, when a thread leaves inside a scope, before its record goes), lowered when it
    /// ends.
    pub(crate) static UNTRACKED: AtomicU32 = AtomicU32::new(0);
    /// Set while a round is open (a verified patch or rollback waits to be applied).
    pub(crate) static PENDING: AtomicBool = AtomicBool::new(false);
    pub(crate) static COORDINATOR: Mutex<Coordinator> = Mutex::new(Coordinator::new());
    /// Rounds closed so far, published for parked threads, which wait without the lock.
    pub(crate) static CLOSED: AtomicU64 = AtomicU64::new(0);
    /// Wakes waiters that are not registered threads (they cannot be unparked).
    pub(crate) static WAKE: Condvar = Condvar::new();
}

/// Whether a round is open, read by a thread right after it stored its state or depth (raising
/// it to running or into a scope, or lowering it): the thread's half of the protocol's
/// store-then-load pairs. The applier's half is the store of the pending flag, then the same
/// fence, then its reads of every thread's state and depth (`open_round`, and every later
/// applier, which takes the lock after it). With both fences in the single total order of
/// sequentially consistent fences, either the applier's reads come after the thread's store, or
/// this load comes after the flag's store: one of the two sees the other. The load is an
/// acquire: a thread that sees no round (one that closed, say) runs ordered after its apply.
///
/// A fence rather than sequentially consistent store and load: the memory model gives the same
/// guarantee either way, and a fence is what loom can check (see `primitive.rs`).
#[inline]
pub(super) fn pending_after_store() -> bool {
    fence(Ordering::SeqCst);
    PENDING.load(Ordering::Acquire)
}

/// The outcome of one closed round.
#[derive(Clone)]
struct Outcome {
    round: u64,
    result: Result<(), Error>,
}

/// What the pause of one round is measured from.
pub(super) struct RoundClock {
    number: u64,
    /// Who hears of the pause.
    applier: &'static dyn Applier,
    /// Threads parked in this round and not yet resumed.
    pub(super) parked: AtomicUsize,
    /// When the first thread parked.
    pub(super) first_parked: OnceLock<Instant>,
    /// When the round began to apply, and when it closed.
    applying: OnceLock<Instant>,
    closed: OnceLock<Instant>,
}

impl RoundClock {
    fn new(number: u64, applier: &'static dyn Applier) -> Arc<Self> {
        Arc::new(RoundClock {
            number,
            applier,
            parked: AtomicUsize::new(0),
            first_parked: OnceLock::new(),
            applying: OnceLock::new(),
            closed: OnceLock::new(),
        })
    }

    /// Records the round's pause: from the first park (or the start of applying, if no thread
    /// had to park) until `resumed`, and how much of it went to waiting for quiescence.
    pub(super) fn record(&self, resumed: Instant) {
        let applying = self.applying.get().copied().unwrap_or(resumed);
        let start = self.first_parked.get().copied().unwrap_or(applying).min(applying);
        self.applier.record_pause(self.number, resumed.duration_since(start), applying.duration_since(start));
    }
}

pub(crate) struct Coordinator {
    pub(super) threads: Vec<Arc<ThreadRec>>,
    /// Rounds closed so far; the open round, if any, has this number.
    pub(super) round: u64,
    /// What the open round applies through: the applier that opened it.
    applier: Option<&'static dyn Applier>,
    /// When the open round is abandoned (never under loom, which has no time).
    pub(super) deadline: Option<Instant>,
    timeout: Duration,
    /// The open round's clock.
    pub(super) clock: Option<Arc<RoundClock>>,
    /// When the open round opened.
    opened: Option<Instant>,
    outcomes: VecDeque<Outcome>,
}

impl Coordinator {
    const fn new() -> Coordinator {
        Coordinator {
            threads: Vec::new(),
            round: 0,
            applier: None,
            deadline: None,
            timeout: DEFAULT_UPDATE_TIMEOUT,
            clock: None,
            opened: None,
            outcomes: VecDeque::new(),
        }
    }
}

pub(super) fn coordinator() -> MutexGuard<'static, Coordinator> {
    // Nothing under this lock leaves the coordinator inconsistent on a panic: the runtime catches
    // transformer panics inside its `apply`.
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
pub fn round_open() -> bool {
    PENDING.load(Ordering::Acquire)
}

/// The number of threads registered with the update protocol.
pub fn registered_threads() -> usize {
    coordinator().threads.len()
}

/// The state of the registered thread called `name`, for tests.
pub fn thread_state(name: &str) -> Option<&'static str> {
    let c = coordinator();
    let t = c.threads.iter().find(|t| t.name == name)?;
    if t.counts_running() {
        return Some("running");
    }
    Some(match t.state.load(Ordering::Acquire) {
        IDLE => "idle",
        _ => "parked",
    })
}

/// Opens a round (or joins the open one) after `applier` queued what it will apply; returns the
/// round's number. Applies at once if every registered thread is already idle or parked.
///
/// The round applies through the applier that opened it: a program has one, the runtime, which
/// applies everything queued by then.
pub fn open_round(applier: &'static dyn Applier) -> u64 {
    let mut c = coordinator();
    if !PENDING.load(Ordering::Relaxed) {
        let now = Instant::now();
        c.deadline = deadline(c.timeout);
        c.opened = Some(now);
        c.applier = Some(applier);
        c.clock = Some(RoundClock::new(c.round, applier));
        PENDING.store(true, Ordering::Release);
        // The applier's half of the store-then-load pairs (see `pending_after_store`): every read
        // of a thread's state or depth from here on, by this thread or any that takes the lock
        // after it, is ordered after the flag.
        fence(Ordering::SeqCst);
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
pub fn wait_for(round: u64) -> Result<(), Error> {
    let rec = register(RUNNING);
    if rec.is_some() && holding_cell() {
        let mut c = coordinator();
        if c.round == round && PENDING.load(Ordering::Acquire) {
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
pub fn outcome(round: u64) -> Option<Result<(), Error>> {
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

/// Applies the open round through its applier if no registered thread is running; true if the
/// round closed.
pub(super) fn try_apply(c: &mut MutexGuard<'static, Coordinator>) -> bool {
    if !PENDING.load(Ordering::Acquire) {
        return false;
    }
    if c.threads.iter().any(|t| t.counts_running()) || UNTRACKED.load(Ordering::Acquire) > 0 {
        return false;
    }
    let applier = c.applier.expect("an open round has an applier");
    if let Some(clock) = &c.clock {
        let _ = clock.applying.set(Instant::now());
    }
    set_applying_here(true);
    let result = applier.apply(c.round);
    set_applying_here(false);
    close(c, result);
    true
}

/// Abandons the open round if its deadline has passed; true if it did.
pub(super) fn expire(c: &mut MutexGuard<'static, Coordinator>) -> bool {
    let Some(deadline) = c.deadline else { return false };
    if !PENDING.load(Ordering::Acquire) || Instant::now() < deadline {
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
    let untracked = UNTRACKED.load(Ordering::Acquire);
    if untracked > 0 {
        let exiting = format!("{untracked} exiting thread(s), inside a cell scope");
        running.push(exiting.clone());
        holding.push(exiting);
    }
    let waited = c.opened.map(|o| o.elapsed()).unwrap_or(c.timeout);
    let error = Error::UpdateTimeout { waited, running, holding };
    if let Some(applier) = c.applier {
        applier.abandon(&error);
    }
    close(c, Err(error));
}

/// Closes the open round with `result`: publishes it (the pending flag, then the count of closed
/// rounds, both release stores after the apply), clears every thread's flag and wakes the
/// parked ones.
fn close(c: &mut MutexGuard<'static, Coordinator>, result: Result<(), Error>) {
    let round = c.round;
    c.round += 1;
    c.deadline = None;
    c.opened = None;
    c.applier = None;
    c.outcomes.push_back(Outcome { round, result });
    while c.outcomes.len() > OUTCOMES_KEPT {
        c.outcomes.pop_front();
    }
    PENDING.store(false, Ordering::Release);
    CLOSED.store(c.round, Ordering::Release);
    let now = Instant::now();
    if let Some(clock) = c.clock.take() {
        let _ = clock.closed.set(now);
        if clock.parked.load(Ordering::Acquire) == 0 {
            clock.record(now);
        }
    }
    for t in &c.threads {
        t.set_check(false);
        t.unpark_if_parked();
    }
    WAKE.notify_all();
}
