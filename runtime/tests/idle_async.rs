//! `dsu::idle_async` on a current-thread runtime whose thread registered as a plain, running
//! thread (at an update point outside any runtime, so what the `tokio` feature does for threads
//! that register inside one plays no part: the thread is as it would be without the feature).
//! Awaiting `accept()` unwrapped holds an update up until it is abandoned; wrapped in
//! `idle_async`, the update applies, and a connection accepted during an open round makes the
//! thread park before it goes on.
//!
//! No patch library is needed: the rounds are opened with nothing queued (`__private` hooks).
//! The update protocol is process-wide, so the scenarios run in order in one test.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Waits, boundedly, until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Server {
    name: &'static str,
    addr: SocketAddr,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    main: JoinHandle<std::io::Result<()>>,
}

async fn handle(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    // Counted before the answer, so a client that read it sees it counted.
    served.fetch_add(1, Ordering::SeqCst);
    let _ = stream.write_all(b"k").await;
}

/// The accept loop on a current-thread runtime, on a thread called `name` that registered
/// before it entered the runtime; with `wrap`, each `accept()` is awaited through `idle_async`.
fn start_server(name: &'static str, wrap: bool) -> Server {
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let main = {
        let (served, stop) = (served.clone(), stop.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Registers outside any runtime: a plain thread, running outside idle sections.
                dsu::update_point();
                let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    tx.send(listener.local_addr()?).unwrap();
                    loop {
                        dsu::update_point();
                        let (s, _) = if wrap {
                            dsu::idle_async(listener.accept()).await?
                        } else {
                            listener.accept().await?
                        };
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        tokio::spawn(handle(s, served.clone()));
                    }
                })
            })
            .unwrap()
    };
    let addr = rx.recv_timeout(Duration::from_secs(10)).expect("the server started");
    Server { name, addr, served, stop, main }
}

impl Server {
    /// Connects `n` times, one after the other, from this thread, and reads each answer; the
    /// number of answers read.
    fn clients(&self, n: usize) -> usize {
        let mut answered = 0;
        for _ in 0..n {
            let Ok(mut s) = std::net::TcpStream::connect(self.addr) else { break };
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut answer = [0u8; 1];
            if s.read_exact(&mut answer).is_err() || &answer != b"k" {
                break;
            }
            answered += 1;
        }
        answered
    }

    fn state(&self) -> Option<&'static str> {
        dsu::__private::thread_state(self.name)
    }

    fn shut_down(self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut poke = std::net::TcpStream::connect(self.addr).unwrap();
        let _ = poke.write_all(b"bye");
        self.main.join().unwrap().unwrap();
    }
}

#[test]
fn idle_async_lets_an_update_apply_while_a_running_thread_awaits() {
    // This thread is a plain one, registered as running: a round waits for it until it waits
    // for the round itself.
    dsu::update_point();

    // The control: the loop's thread registered as running, and awaiting `accept()` it still
    // counts as running, so the round is abandoned and names it.
    let server = start_server("unwrapped-main", false);
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
    let server = start_server("wrapped-main", true);
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
