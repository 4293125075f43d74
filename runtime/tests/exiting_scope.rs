//! A scope that outlives its thread's registration: a cell guard kept in a thread-local that is
//! destroyed after the one holding the thread's registration. The thread is no longer on the
//! update protocol's list, yet it still holds a reference into the cell; no update may apply
//! until the guard is gone. (Thread-locals are destroyed in the reverse order of their first
//! use; this thread uses the holder first, then registers through its first scope.)

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Duration;

static HITS: dsu::State<AtomicU64> = dsu::State::new("exiting-hits", || AtomicU64::new(0));

/// Holds a guard of `HITS` until the thread's exit, and there reports what the update protocol
/// sees of the thread, then waits to be released before it uses the guard and lets it go.
struct Holder {
    guard: Option<dsu::CellRef<'static, AtomicU64>>,
    seen: mpsc::Sender<Option<&'static str>>,
    release: mpsc::Receiver<()>,
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.seen.send(dsu::__private::thread_state("exiting")).unwrap();
        self.release.recv().unwrap();
        let guard = self.guard.take().unwrap();
        guard.fetch_add(1, SeqCst);
    }
}

thread_local! {
    static HOLDER: RefCell<Option<Holder>> = const { RefCell::new(None) };
}

#[test]
fn a_guard_held_past_the_threads_registration_holds_updates_off() {
    let (seen_tx, seen) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let exiting = std::thread::Builder::new()
        .name("exiting".into())
        .spawn(move || {
            // First use of the holder, then the scope that registers the thread.
            HOLDER.with(|_| ());
            let guard = HITS.access();
            assert_eq!(dsu::__private::thread_state("exiting"), Some("running"), "inside a scope");
            HOLDER.with(|h| *h.borrow_mut() = Some(Holder { guard: Some(guard), seen: seen_tx, release: release_rx }));
        })
        .unwrap();
    // The thread has returned; its thread-locals are being destroyed: the registration first.
    let state = seen.recv_timeout(Duration::from_secs(10)).expect("the holder's destructor runs");
    assert_eq!(state, None, "the thread is deregistered while its guard still lives");

    // A round cannot apply while the guard lives: abandoned at the timeout, naming it.
    dsu::set_update_timeout(Duration::from_millis(100));
    let round = dsu::idle(dsu::__private::open_round);
    match dsu::__private::wait_for_round(round) {
        Err(dsu::Error::UpdateTimeout { running, holding, .. }) => {
            assert!(holding.iter().any(|h| h.contains("exiting thread")), "{running:?} {holding:?}");
        }
        other => panic!("expected the round to wait for the exiting thread's scope, got {other:?}"),
    }
    assert_eq!(HITS.with(|h| h.load(SeqCst)), 0);

    // Released, the guard is used and dropped, and the end of its scope applies the round.
    dsu::set_update_timeout(Duration::from_secs(30));
    let round = dsu::idle(|| {
        let round = dsu::__private::open_round();
        assert!(dsu::is_pending(), "applied beside the exiting thread's scope");
        release.send(()).unwrap();
        round
    });
    assert_eq!(dsu::__private::wait_for_round(round).map_err(|e| e.to_string()), Ok(()));
    exiting.join().unwrap();
    assert_eq!(HITS.with(|h| h.load(SeqCst)), 1);
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
}
