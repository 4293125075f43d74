//! What the async-main-loop tests share: a tokio accept loop with an update point on a thread of
//! its own, as a server writes it, and a bounded wait for a condition of the update protocol.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// Waits, boundedly, until `cond` holds.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How the accept loop runs.
#[derive(Clone, Copy)]
pub enum Runtime {
    /// What `#[tokio::main]` does: a multi-thread runtime, the loop on the thread that called
    /// `block_on`, which meets the update protocol first inside the runtime.
    MultiThread,
    /// A current-thread runtime on a thread that registered at an update point before it entered
    /// the runtime (a plain, running thread); with `wrap`, each `accept()` is awaited through
    /// `dsu::idle_async`.
    CurrentThread { wrap: bool },
}

/// A server whose accept loop runs `dsu::update_point(); accept().await; spawn(handle)`.
pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Connections answered.
    pub served: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    main: JoinHandle<std::io::Result<()>>,
}

async fn handle(mut stream: TcpStream, served: Arc<AtomicUsize>) {
    // Counted before the answer, so a client that read it sees it counted.
    served.fetch_add(1, Ordering::SeqCst);
    let _ = stream.write_all(b"k").await;
}

/// Starts the accept loop on a thread called `name`.
pub fn start_server(name: &'static str, runtime: Runtime) -> Server {
    let served = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let main = {
        let (served, stop) = (served.clone(), stop.clone());
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let (rt, wrap) = match runtime {
                    Runtime::MultiThread => {
                        (tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_io().build()?, false)
                    }
                    Runtime::CurrentThread { wrap } => {
                        // Registers outside any runtime: a plain thread, running outside idle
                        // sections.
                        dsu::update_point();
                        (tokio::runtime::Builder::new_current_thread().enable_io().build()?, wrap)
                    }
                };
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
    pub fn clients(&self, n: usize) -> usize {
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

    /// The loop's thread's state in the update protocol.
    pub fn state(&self) -> Option<&'static str> {
        dsu::__private::thread_state(self.name)
    }

    pub fn shut_down(self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut poke = std::net::TcpStream::connect(self.addr).unwrap();
        let _ = poke.write_all(b"bye");
        self.main.join().unwrap().unwrap();
    }
}

// ---- a tiny executor: polls a future on this thread, woken by a flag ----

/// Wakes by setting a flag; [`block_on`] polls again only after a wake.
struct Flag(AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `fut` to completion on this thread; fails if it is polled without a wake (it lost its
/// waker) or does not finish within 1,000 polls.
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = std::task::Waker::from(flag.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    let mut polls = 0;
    loop {
        assert!(flag.0.swap(false, Ordering::SeqCst), "polled without a wake: the future lost its waker");
        polls += 1;
        assert!(polls < 1000, "the future never finished");
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// Returns `Pending` once (waking itself), then `Ready`: a future that awaits it really
/// suspends, so what follows runs in a later poll than what came before.
pub struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

pub fn yield_now() -> YieldOnce {
    YieldOnce(false)
}
