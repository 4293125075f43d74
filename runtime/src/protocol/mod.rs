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
//! registered threads quiescent (no one running) applies the round (in a program, every pending
//! patch or rollback), closes it and wakes the others, which resume on the new version. A round
//! that does not reach quiescence before its deadline ([`set_update_timeout`]) is abandoned: the
//! pending patches are dropped, every thread resumes on the old version, and the refusal says
//! which threads were running.
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
//! pending flag; the applier sets the pending flag and then reads every thread's state. Each side
//! puts a sequentially consistent fence between its store and its load, so either the applier
//! sees the thread running (and waits), or the thread sees the round and parks (taking the
//! coordinator's lock, which the applier holds while it applies). Leaving a park, it stores its
//! state under the coordinator's lock with no round open, or after its round closed (read with
//! acquire ordering: it resumes ordered after the apply) and then checks the pending flag as
//! above. Every other store keeps or lowers the state (running to idle, then the same fence, a
//! read of the flag and an attempt to apply, so the last thread to lower its state or the applier
//! sees the other) or registers a thread under the lock, so no thread starts running updateable
//! code unseen. State stores are release stores and the applier's reads acquire loads, so an
//! applier that sees a thread idle is ordered after everything the thread did while running.
//!
//! A scope is entered the same way. On a thread whose state is running, only its depth changes:
//! the applier sees the thread running, and the thread leaves that state only by a release store
//! after the depth's, so an applier that reads the later state (then the depth) reads the depth
//! too. On any other thread the outermost scope stores its depth, then the fence, then reads the
//! pending flag, against the applier's store of the flag, fence and read of every depth; a thread
//! that sees a round takes the coordinator's lock once, so an update the applier had begun has
//! finished before the thread reads the cell. Leaving the outermost scope on a thread that is not
//! running lowers it: the depth is stored (a release store, so an applier that reads it is
//! ordered after the scope's reads), then the fence and the pending flag, and the thread may
//! apply. A thread inside a scope that stores running (leaving an idle section inside the scope)
//! was counted as running all along. An executor thread runs code between update points as idle:
//! an update may apply meanwhile, and that code finishes on the version it started with (patches
//! stay mapped, state cells check their type on every access), as on an unregistered thread.
//!
//! **The unit.** The protocol knows nothing of patches. The runtime queues what a round will
//! apply, then opens it with [`open_round`], handing over its [`Applier`]; the coordinator calls
//! it once the round reaches quiescence (or to abandon the round), and nothing in this module
//! imports the runtime. `coordinator.rs` holds the registered threads and the rounds,
//! `thread.rs` a thread's side (registration, update points, idle sections, scopes, parking),
//! `future.rs` the futures, and `primitive.rs` the atomics, locks, thread-locals and parking it
//! is built from: std's, or under `--cfg loom` the model checker's.
//!
//! **Models.** `runtime/tests/loom_protocol.rs` checks the protocol with loom, which runs every
//! interleaving of a few threads (up to a bound on preemptions, 3 by default) and every value a
//! load may read under the memory model: a thread leaving idle or starting a poll while a round
//! applies, a thread going idle while one opens, a thread parking while the round closes or resuming while the next one opens, a scope
//! entered while a round opens. Its applier writes the program's state and the threads read it
//! while they run, through loom's checked cells, so an apply beside a running thread or a cell
//! read is a reported race, and a lost wake-up a reported deadlock. Not part of `cargo test`; run
//! it with `RUSTFLAGS="--cfg loom" cargo test -p dsu --release --test loom_protocol`.

mod coordinator;
mod future;
mod primitive;
#[cfg(all(test, not(loom)))]
mod tests;
mod thread;

pub use coordinator::{
    open_round, outcome, registered_threads, round_open, set_update_timeout, thread_state, update_timeout,
    wait_for, Applier, DEFAULT_UPDATE_TIMEOUT,
};
pub use future::{idle_async, IdleAsync, Tracked};
pub use thread::{enter_scope, exit_scope, idle, register_running, update_point, IdleGuard};
#[cfg(test)]
pub use thread::holding_cell;
#[cfg(loom)]
pub use thread::exit_thread;
