//! With the `tokio` feature on (as for every test of `dsu`), a plain thread is unchanged: one
//! that registered at an update point outside any runtime and then blocks, not in an idle
//! section, holds an update up until its timeout, and the abandoned round names it.
//!
//! No patch library is needed: the round is opened with nothing queued (`__private` hooks).

use std::sync::mpsc;
use std::time::Duration;

#[test]
fn a_plain_thread_blocked_outside_an_idle_section_holds_the_update_up() {
    let (release, blocked_rx) = mpsc::channel::<()>();
    let (ready, ready_rx) = mpsc::channel::<()>();
    let blocked = std::thread::Builder::new()
        .name("blocked".into())
        .spawn(move || {
            dsu::update_point();
            ready.send(()).unwrap();
            // Blocked, and running as far as the update protocol knows.
            blocked_rx.recv().unwrap();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    assert_eq!(dsu::__private::thread_state("blocked"), Some("running"));

    dsu::set_update_timeout(Duration::from_millis(200));
    let round = dsu::__private::open_round();
    match dsu::__private::wait_for_round(round) {
        Err(dsu::Error::UpdateTimeout { running, .. }) => {
            assert!(running.iter().any(|n| n == "blocked"), "{running:?}");
        }
        other => panic!("expected the round to be abandoned, got {other:?}"),
    }
    assert!(!dsu::is_pending());

    release.send(()).unwrap();
    blocked.join().unwrap();
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
}
