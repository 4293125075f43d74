//! An `async` main loop with an update point, as `#[tokio::main]` runs it (a multi-thread
//! runtime, the main future on the thread that called `block_on`): with the `tokio` feature (on
//! for these tests), the thread registers as an executor thread, idle while it awaits `accept()`,
//! so an update applies at once instead of being abandoned at the timeout; an update point reached
//! while a round is open still parks the thread.
//!
//! No patch library is needed: the rounds are opened with nothing queued (`__private` hooks).
//! The update protocol is process-wide, so the scenarios run in order in one test.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAIN: &str = "server-main";

/// Waits, boundedly, until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

struct Server {
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    main: JoinHandle<std::io::Result<()>>,
}

async fn handle(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    // Counted before the answer, so a client that read it sees it counted.
    served.fetch_add(1, Ordering::SeqCst);
    let _ = stream.write_all(b"k").await;
}

/// What `#[tokio::main]` does with the loop of the crate docs, on a thread called `MAIN`.
fn start_server() -> Server {
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let main = {
        let (served, stop) = (served.clone(), stop.clone());
        std::thread::Builder::new()
            .name(MAIN.into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_io()
                    .build()?;
                rt.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await?;
                    tx.send((listener.local_addr()?, tokio::runtime::Handle::current())).unwrap();
                    loop {
                        dsu::update_point();
                        let (s, _) = listener.accept().await?;
                        if stop.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        tokio::spawn(handle(s, served.clone()));
                    }
                })
            })
            .unwrap()
    };
    let (addr, runtime) = rx.recv_timeout(Duration::from_secs(10)).expect("the server started");
    Server { addr, runtime, served, stop, main }
}

impl Server {
    /// A client task that connects `n` times, one after the other, and reads each answer; the
    /// number of answers it read.
    fn clients(&self, n: usize) -> usize {
        let (tx, rx) = mpsc::channel();
        let addr = self.addr;
        self.runtime.spawn(async move {
            let mut answered = 0;
            for _ in 0..n {
                let Ok(mut s) = TcpStream::connect(addr).await else { break };
                let mut answer = [0u8; 1];
                if s.read_exact(&mut answer).await.is_err() || &answer != b"k" {
                    break;
                }
                answered += 1;
            }
            let _ = tx.send(answered);
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("the client task finished")
    }

    fn shut_down(self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut poke = std::net::TcpStream::connect(self.addr).unwrap();
        let _ = poke.write_all(b"bye");
        self.main.join().unwrap().unwrap();
    }
}

#[test]
fn an_async_main_loop_does_not_hold_an_update_up() {
    // This thread is a plain one, registered as running: a round waits for it until it waits
    // for the round itself.
    dsu::update_point();
    dsu::set_update_timeout(dsu::DEFAULT_UPDATE_TIMEOUT);
    let server = start_server();
    assert_eq!(server.clients(3), 3);
    // The main loop's thread registered at its first update point, inside the runtime: an
    // executor thread, idle while it awaits the next connection.
    wait_until("the main loop's thread is registered", || dsu::__private::thread_state(MAIN).is_some());
    assert_eq!(dsu::__private::thread_state(MAIN), Some("idle"));

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
