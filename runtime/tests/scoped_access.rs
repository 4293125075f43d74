//! Scoped state access and the update protocol: a thread inside a cell scope (`State::with`, a
//! `CellRef`) counts as running, so an update waits for it and never applies beside it; an update
//! point, idle section or wait for an update reached inside a scope does not apply one; a round
//! that times out while a thread holds a scope names the thread and says it holds a state cell.
//!
//! No patch library is needed: the rounds are opened with nothing queued (`__private` hooks).
//! The update protocol is process-wide, so the scenarios run in order in one test, and this
//! thread registers only when it first waits for a round.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

static COUNT: dsu::State<AtomicU64> = dsu::State::new("scoped-count", || AtomicU64::new(0));

/// Opens a round with this thread idle, so that it does not hold the round up itself, checks
/// that the round stayed open (a thread inside a scope holds it), then runs `then` (which lets
/// that thread go on); its number.
fn open_held_round(then: impl FnOnce()) -> u64 {
    dsu::idle(|| {
        let round = dsu::__private::open_round();
        assert!(dsu::is_pending(), "the round applied beside a thread inside a scope");
        then();
        round
    })
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new().name(name.into()).spawn(f).unwrap()
}

#[test]
fn scopes_hold_updates_off_and_never_apply_one() {
    dsu::set_update_timeout(Duration::from_secs(30));

    // (a) A registered plain thread blocked in an idle section inside a scope: idle, it would not
    // hold the round up; inside the scope it does, until the scope ends.
    let (ready, ready_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let holder = spawn("idle-in-scope", move || {
        dsu::update_point();
        COUNT.with(|c| {
            c.fetch_add(1, Ordering::SeqCst);
            dsu::idle(|| {
                ready.send(()).unwrap();
                release_rx.recv().unwrap();
            });
            // The round opened while this thread was in the scope: it is still open.
            assert!(dsu::is_pending(), "an update applied while this thread held a cell");
            c.fetch_add(1, Ordering::SeqCst);
        });
        // Outside the scope, the update point parks, and the round applies.
        dsu::update_point();
        assert!(!dsu::is_pending());
    });
    ready_rx.recv().unwrap();
    assert_eq!(dsu::__private::thread_state("idle-in-scope"), Some("running"));
    // Every other registered thread is idle or parked: only the holder's scope holds the round.
    let round = open_held_round(|| release.send(()).unwrap());
    assert_eq!(dsu::__private::wait_for_round(round).map_err(|e| e.to_string()), Ok(()));
    holder.join().unwrap();
    assert_eq!(COUNT.with(|c| c.load(Ordering::SeqCst)), 2);

    // A thread whose only contact with the runtime is a scope: registered by it, running inside
    // it, idle after it; the end of its scope completes quiescence and applies the round.
    let (ready, ready_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let (after, after_rx) = mpsc::channel::<()>();
    let (finish, finish_rx) = mpsc::channel::<()>();
    let holder = spawn("only-a-scope", move || {
        COUNT.with(|c| {
            ready.send(()).unwrap();
            release_rx.recv().unwrap();
            assert!(dsu::is_pending(), "an update applied while this thread held a cell");
            c.fetch_add(1, Ordering::SeqCst);
        });
        after.send(()).unwrap();
        finish_rx.recv().unwrap();
    });
    ready_rx.recv().unwrap();
    assert_eq!(dsu::__private::thread_state("only-a-scope"), Some("running"));
    let round = open_held_round(|| release.send(()).unwrap());
    assert_eq!(dsu::__private::wait_for_round(round).map_err(|e| e.to_string()), Ok(()));
    after_rx.recv().unwrap();
    assert_eq!(dsu::__private::thread_state("only-a-scope"), Some("idle"));
    // Idle outside scopes: a round does not wait for it.
    let round = dsu::__private::open_round();
    assert_eq!(dsu::__private::wait_for_round(round).map_err(|e| e.to_string()), Ok(()));
    finish.send(()).unwrap();
    holder.join().unwrap();

    // (b) Update points and idle sections reached inside a scope while a round is open return at
    // once: they do not park (the round waits for the scope), nor make the thread idle.
    let (ready, ready_rx) = mpsc::channel::<()>();
    let (go, go_rx) = mpsc::channel::<()>();
    let (inside, inside_rx) = mpsc::channel::<()>();
    let runner = spawn("point-in-scope", move || {
        dsu::update_point();
        let guard = COUNT.access();
        ready.send(()).unwrap();
        go_rx.recv().unwrap();
        dsu::update_point();
        assert!(dsu::is_pending(), "the update point inside a scope waited for the round");
        dsu::idle(|| {
            assert_eq!(dsu::__private::thread_state("point-in-scope"), Some("running"));
        });
        assert!(dsu::is_pending(), "the idle section inside a scope waited for the round");
        assert_eq!(dsu::__private::thread_state("point-in-scope"), Some("running"));
        guard.fetch_add(1, Ordering::SeqCst);
        inside.send(()).unwrap();
        drop(guard);
        dsu::update_point();
    });
    ready_rx.recv().unwrap();
    let round = dsu::__private::open_round();
    go.send(()).unwrap();
    inside_rx.recv().unwrap();
    assert!(dsu::is_pending());
    assert_eq!(dsu::__private::wait_for_round(round).map_err(|e| e.to_string()), Ok(()));
    runner.join().unwrap();

    // Waiting for a round inside a scope (as `dsu::load_and_apply` does) abandons it at once,
    // naming the thread: the round could not apply before the scope ends.
    let waiter = spawn("wait-in-scope", || {
        COUNT.with(|_| {
            let opened = Instant::now();
            let round = dsu::__private::open_round();
            match dsu::__private::wait_for_round(round) {
                Err(dsu::Error::UpdateTimeout { running, holding, .. }) => {
                    assert_eq!(holding, ["wait-in-scope"], "{running:?}");
                }
                other => panic!("expected the round to be abandoned, got {other:?}"),
            }
            assert!(opened.elapsed() < Duration::from_secs(10), "it waited for the deadline");
            assert!(!dsu::is_pending());
        });
    });
    waiter.join().unwrap();

    // (c) A round that times out while a thread holds a scope: the refusal names the thread and
    // says it holds a state cell; nothing changed.
    dsu::set_update_timeout(Duration::from_millis(100));
    let (ready, ready_rx) = mpsc::channel::<()>();
    let (release, release_rx) = mpsc::channel::<()>();
    let holder = spawn("scope-holder", move || {
        COUNT.with(|c| {
            c.store(42, Ordering::SeqCst);
            ready.send(()).unwrap();
            release_rx.recv().unwrap();
        });
    });
    ready_rx.recv().unwrap();
    let round = dsu::__private::open_round();
    match dsu::__private::wait_for_round(round) {
        Err(e @ dsu::Error::UpdateTimeout { .. }) => {
            let dsu::Error::UpdateTimeout { running, holding, .. } = &e else { unreachable!() };
            assert!(running.iter().any(|n| n == "scope-holder"), "{running:?}");
            assert_eq!(holding, &["scope-holder"], "{e}");
            let message = e.to_string();
            assert!(message.contains("thread `scope-holder` holds a state cell"), "{message}");
            assert!(message.contains("Nothing changed"), "{message}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(!dsu::is_pending());
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(COUNT.with(|c| c.load(Ordering::SeqCst)), 42);
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
}
