//! Models of the update protocol (`runtime/src/protocol/`), checked with loom: every interleaving
//! of a few threads, up to a bound on preemptions (3, unless `LOOM_MAX_PREEMPTIONS` says
//! otherwise: 3 takes under a second, 6 about five minutes), and every value each load may read
//! under the memory model. Run with
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p dsu --release --test loom_protocol
//! ```
//!
//! Built without `--cfg loom`, as by `cargo test`, this file is empty. Under `--cfg loom` the
//! protocol is built on loom's atomics, locks, thread-locals and parking (`primitive.rs`), with no
//! time: a round has no deadline, and a parked thread wakes only when unparked.
//!
//! The program's state is one loom `UnsafeCell`, the program's version: the models' applier
//! writes it when a round applies, and the model threads read it where a program would run
//! updateable code or read a cell. Loom reports every read that is not ordered with that write
//! (an apply beside a running thread or inside a scope, a thread that resumes unordered after
//! the apply it waited for) as a causality violation, and a thread that sleeps for ever as a
//! deadlock. Each model then checks that its round applied, once, with success.

#![cfg(loom)]

use dsu::protocol::{self, Applier};
use dsu::Error;
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use std::future::Future;
use std::task::{Context, Waker};
use std::time::Duration;

/// The program as the models see it: its version, the number of rounds applied.
struct Program {
    version: UnsafeCell<u64>,
    applied: AtomicUsize,
}

// SAFETY: the version is shared between the model's threads on purpose: its reads and its write
// go through loom's checked accessors, which fail the model on any pair not ordered by the
// protocol (that ordering is what the models check); `applied` is an atomic.
unsafe impl Sync for Program {}

impl Program {
    /// Reads the program's state, as updateable code or a cell scope does.
    fn read(&self) -> u64 {
        // SAFETY: a plain read of a `u64`; loom checks that it is ordered with every write (the
        // apply), and fails the model otherwise.
        self.version.with(|v| unsafe { *v })
    }
}

impl Applier for Program {
    fn apply(&self, round: u64) -> Result<(), Error> {
        // SAFETY: a plain write of a `u64`; loom checks that every read is ordered with it.
        self.version.with_mut(|v| unsafe { *v = round + 1 });
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn abandon(&self, why: &Error) {
        panic!("a round was abandoned, though rounds have no deadline under loom: {why}");
    }

    fn record_pause(&self, _: u64, _: Duration, _: Duration) {}
}

loom::lazy_static! {
    /// Made again for each execution, as the protocol's globals are.
    static ref PROGRAM: Program = Program { version: UnsafeCell::new(0), applied: AtomicUsize::new(0) };
}

/// Runs `a` and `b` on two threads of their own in every interleaving loom explores (at most 3
/// preemptions unless `LOOM_MAX_PREEMPTIONS` says otherwise), then checks that rounds 0 to
/// `rounds - 1` applied, each once, with success, and that the program is on the last version.
///
/// Each thread ends with `protocol::exit_thread()`, what its exit does to its registration (which
/// may apply the round), before `join` returns: loom destroys a thread's locals later, after the
/// model may have dropped the protocol's globals. The checks run on the model's main thread,
/// which never takes part in the protocol, for the same reason.
fn check(a: fn(), b: fn(), rounds: u64) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // Counted outside the model (a std atomic: loom's belong to one execution).
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = executions.clone();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let threads = [a, b].map(|f| {
            thread::spawn(move || {
                f();
                protocol::exit_thread();
            })
        });
        for t in threads {
            t.join().unwrap();
        }
        for round in 0..rounds {
            let outcome = protocol::outcome(round).map(|r| r.is_ok());
            assert_eq!(outcome, Some(true), "round {round} did not close with success");
        }
        assert_eq!(PROGRAM.applied.load(Ordering::Relaxed), rounds as usize);
        assert_eq!(PROGRAM.read(), rounds);
    });
    let bound = builder.preemption_bound.map_or("no".to_string(), |b| b.to_string());
    println!("{} executions, {bound} bound on preemptions", executions.load(std::sync::atomic::Ordering::Relaxed));
}

/// Opens round 0, from a thread that takes no other part in the protocol.
fn open() {
    protocol::open_round(&*PROGRAM);
}

/// A plain thread that registers (parking at once if a round is open), reaches an update point,
/// then runs updateable code.
fn parker() {
    protocol::update_point();
    protocol::update_point();
    PROGRAM.read();
}

/// A thread leaves an idle section, back to updateable code, while a round opens and applies: it
/// stores *running* and reads the pending flag, against the applier's store of the flag and read
/// of every state. Either the applier sees it running (and the round waits for it: it applies
/// when the thread exits), or the thread sees the round and parks until it has applied; never
/// both missed, which would let the thread read the state beside the apply.
#[test]
fn leaving_idle_while_a_round_applies() {
    let worker = || {
        // Registers as a plain thread, running, then idle (blocked outside updateable code).
        let idle = protocol::IdleGuard::enter();
        drop(idle);
        // Updateable code.
        PROGRAM.read();
    };
    check(worker, open, 1);
}

/// The other direction, for liveness: a running thread enters an idle section (blocked, say, on a
/// channel that only the update will feed) while a round opens. It stores *idle* and reads the
/// pending flag, against the opener's store of the flag and read of every state: either the
/// opener sees it idle and applies, or the thread sees the round and applies itself. If both
/// missed, the round would wait for a thread that waits for the round (until the timeout, in a
/// program; here loom finds the thread spinning for ever).
#[test]
fn going_idle_while_a_round_opens() {
    let worker = || {
        protocol::update_point();
        protocol::idle(|| {
            while PROGRAM.applied.load(Ordering::Acquire) == 0 {
                thread::yield_now();
            }
        });
        PROGRAM.read();
    };
    check(worker, open, 1);
}

/// The same pair on an executor thread: the start of an outermost poll of an updateable future
/// (`Tracked`, idle to running) while a round opens and applies; the poll's end (running to idle)
/// may complete quiescence and apply.
#[test]
fn starting_a_poll_while_a_round_applies() {
    let executor = || {
        let mut cx = Context::from_waker(Waker::noop());
        // An updateable `async fn`'s future: its poll is updateable code.
        let poll = std::pin::pin!(protocol::Tracked::new(async { PROGRAM.read() }));
        assert!(poll.poll(&mut cx).is_ready());
    };
    check(executor, open, 1);
}

/// A thread parks at an update point while the round closes: the round opens while two threads
/// run, one of them goes idle and back (the last to stop running applies, the other parks), and
/// whichever parked must be woken by the close, whether the close comes before it sleeps or after,
/// and resume ordered after the apply. A lost wake-up is a deadlock (no time under loom: a parked
/// thread wakes only when unparked).
#[test]
fn park_against_close() {
    let opener = || {
        protocol::update_point();
        protocol::open_round(&*PROGRAM);
        // Idle and back: may apply on the way in, parks on the way out while the round is still
        // open.
        protocol::idle(|| ());
        PROGRAM.read();
    };
    check(parker, opener, 1);
}

/// A thread parked in one round resumes while the next one opens: it stores *running*, then reads
/// the pending flag (against the opener's store of it and read of every state), and parks again
/// for the new round rather than run beside it.
#[test]
fn resuming_into_a_newer_round() {
    let opener = || {
        protocol::update_point();
        for _ in 0..2 {
            protocol::open_round(&*PROGRAM);
            protocol::idle(|| ());
        }
        PROGRAM.read();
    };
    check(parker, opener, 2);
}

/// A thread that is not running (idle: a blocked thread, an executor thread between polls)
/// enters a cell scope while a round opens. It stores its depth and reads the pending flag,
/// against the applier's store of the flag and read of every depth: either the applier sees the
/// scope and does not apply (the scope's end, or a later point, applies), or the thread sees the
/// round and takes the coordinator's lock, which the applier holds while it applies, so it reads
/// the cell after the apply. Never the cell read beside the apply.
#[test]
fn scope_entered_while_a_round_opens() {
    let worker = || {
        let idle = protocol::IdleGuard::enter();
        protocol::enter_scope();
        PROGRAM.read();
        protocol::exit_scope();
        drop(idle);
    };
    check(worker, open, 1);
}

/// The same on a thread that was not registered: its first scope registers it (provisionally,
/// under the coordinator's lock, which orders it against any applier) while a round opens.
#[test]
fn first_scope_of_a_thread_while_a_round_opens() {
    let worker = || {
        protocol::enter_scope();
        PROGRAM.read();
        protocol::exit_scope();
    };
    check(worker, open, 1);
}
