//! An `async` main loop with an update point, as `#[tokio::main]` runs it (a multi-thread
//! runtime, the main future on the thread that called `block_on`): with the `tokio` feature (on
//! for these tests), the thread registers as an executor thread, idle while it awaits `accept()`,
//! so an update applies at once instead of being abandoned at the timeout; an update point reached
//! while a round is open still parks the thread.
//!
//! No patch library is needed: the rounds are opened with nothing queued (`__private` hooks).
//! The update protocol is process-wide, so the scenarios run in order in one test.

mod common;

use common::{start_server, wait_until, Runtime};
use std::sync::atomic::Ordering;
use std::time::Duration;

const MAIN: &str = "server-main";

#[test]
fn an_async_main_loop_does_not_hold_an_update_up() {
    // This thread is a plain one, registered as running: a round waits for it until it waits
    // for the round itself.
    dsu::update_point();
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
    let server = start_server(MAIN, Runtime::MultiThread);
    assert_eq!(server.clients(3), 3);
    // The main loop's thread registered at its first update point, inside the runtime: an
    // executor thread, idle while it awaits the next connection.
    // It may still be on its way from the last accept back to awaiting the next one (running)
    // when the clients have their answers.
    wait_until("the main loop's thread awaits the next connection", || {
        dsu::__private::thread_state(MAIN) == Some("idle")
    });

    // A round opened while the loop awaits `accept()`, with no connection coming: it applies
    // (before, the loop's thread counted as running and the round was abandoned at the timeout).
    let round = dsu::__private::open_round();
    match dsu::__private::wait_for_round(round) {
        Ok(()) => {}
        Err(e) => panic!("the update was not applied: {e}"),
    }
    assert!(!dsu::is_pending());
    assert_eq!(server.clients(2), 2);

    // An update point reached while a round is open is a safe point: the loop's thread parks
    // there until the round closes. This thread runs, so the round stays open meanwhile.
    dsu::set_update_timeout(Duration::from_secs(60));
    let round = dsu::__private::open_round();
    assert_eq!(server.clients(1), 1, "a connection accepted during the round is served");
    wait_until("the main loop's thread parks at its update point", || {
        dsu::__private::thread_state(MAIN) == Some("parked")
    });
    assert!(dsu::is_pending());
    match dsu::__private::wait_for_round(round) {
        Ok(()) => {}
        Err(e) => panic!("the update was not applied: {e}"),
    }
    // The loop goes on after the update.
    assert_eq!(server.clients(2), 2);
    wait_until("the main loop's thread awaits again", || {
        dsu::__private::thread_state(MAIN) == Some("idle")
    });
    assert_eq!(server.served.load(Ordering::SeqCst), 8);

    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
    server.shut_down();
}
