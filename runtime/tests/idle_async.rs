//! `dsu::idle_async` on a current-thread runtime whose thread registered as a plain, running
//! thread (at an update point outside any runtime, so what the `tokio` feature does for threads
//! that register inside one plays no part: the thread is as it would be without the feature).
//! Awaiting `accept()` unwrapped holds an update up until it is abandoned; wrapped in
//! `idle_async`, the update applies, and a connection accepted during an open round makes the
//! thread park before it goes on.
//!
//! No patch library is needed: the rounds are opened with nothing queued (`__private` hooks).
//! The update protocol is process-wide, so the scenarios run in order in one test.

mod common;

use common::{start_server, wait_until, Runtime};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[test]
fn idle_async_lets_an_update_apply_while_a_running_thread_awaits() {
    // This thread is a plain one, registered as running: a round waits for it until it waits
    // for the round itself.
    dsu::update_point();

    // The control: the loop's thread registered as running, and awaiting `accept()` it still
    // counts as running, so the round is abandoned and names it.
    let server = start_server("unwrapped-main", Runtime::CurrentThread { wrap: false });
    assert_eq!(server.clients(2), 2);
    assert_eq!(server.state(), Some("running"));
    dsu::set_update_timeout(Duration::from_millis(200));
    let round = dsu::__private::open_round();
    match dsu::__private::wait_for_round(round) {
        Err(dsu::Error::UpdateTimeout { running, .. }) => {
            assert!(running.iter().any(|n| n == "unwrapped-main"), "{running:?}");
        }
        other => panic!("expected the round to be abandoned, got {other:?}"),
    }
    assert!(!dsu::is_pending());
    server.shut_down();

    // `idle_async(listener.accept())`: idle while the accept is pending, so the round applies.
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
    let server = start_server("wrapped-main", Runtime::CurrentThread { wrap: true });
    assert_eq!(server.clients(3), 3);
    wait_until("the loop's thread awaits the next connection", || server.state() == Some("idle"));
    let round = dsu::__private::open_round();
    match dsu::__private::wait_for_round(round) {
        Ok(()) => {}
        Err(e) => panic!("the update was not applied: {e}"),
    }
    assert!(!dsu::is_pending());
    assert_eq!(server.clients(2), 2);
    wait_until("the loop's thread awaits again", || server.state() == Some("idle"));

    // A connection accepted while a round is open: the thread is about to run the loop's code
    // again, so it parks first (this thread runs, so the round stays open meanwhile), and the
    // connection is served after the update.
    dsu::set_update_timeout(Duration::from_secs(60));
    let round = dsu::__private::open_round();
    let mut client = std::net::TcpStream::connect(server.addr).unwrap();
    wait_until("the loop's thread parks", || server.state() == Some("parked"));
    assert!(dsu::is_pending());
    assert_eq!(server.served.load(Ordering::SeqCst), 5, "the loop went on during the round");
    match dsu::__private::wait_for_round(round) {
        Ok(()) => {}
        Err(e) => panic!("the update was not applied: {e}"),
    }
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = [0u8; 1];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"k");
    assert_eq!(server.served.load(Ordering::SeqCst), 6);

    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
    server.shut_down();
}
