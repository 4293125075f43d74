use super::coordinator::{coordinator, PENDING};
use super::thread::{my_state, IDLE, PARKED, RUNNING};
use super::*;
use crate::Error;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Set while a round applies, for the tests to check that no running thread sees it.
static APPLYING: AtomicBool = AtomicBool::new(false);

/// The runtime's applier, with `APPLYING` set while it applies. (Other tests of this binary
/// queue cell transforms and open rounds through the runtime, and these tests' rounds may join
/// theirs, or theirs these: either way the runtime applies what was queued.)
struct Checking;

impl Applier for Checking {
    fn apply(&self, round: u64) -> Result<(), Error> {
        APPLYING.store(true, Ordering::SeqCst);
        let result = crate::update::APPLIER.apply(round);
        APPLYING.store(false, Ordering::SeqCst);
        result
    }

    fn abandon(&self, why: &Error) {
        crate::update::APPLIER.abandon(why)
    }

    fn record_pause(&self, round: u64, pause: Duration, waiting: Duration) {
        crate::update::APPLIER.record_pause(round, pause, waiting)
    }
}

fn open_round() -> u64 {
    super::open_round(&Checking)
}

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
