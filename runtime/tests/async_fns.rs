//! Updateable `async fn`s: free functions, inherent methods and trait-impl methods compile,
//! are called through their slots like the original functions when no patch is loaded, and
//! their futures are `Send` (so `tokio::spawn` takes them) unless `?Send` says otherwise.
//!
//! A tiny executor (`common::block_on`) polls the futures on this thread, woken by a flag, so a
//! test sees every poll.

mod common;

use common::{block_on, yield_now};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Waker};

fn assert_send<T: Send>(_: &T) {}

// ---- free functions ----

#[dsu::updateable]
async fn add(a: u32, b: u32) -> u32 {
    yield_now().await;
    a + b
}

#[dsu::updateable]
pub async fn first_word(s: &str) -> &str {
    yield_now().await;
    s.split_whitespace().next().unwrap_or("")
}

#[dsu::updateable]
async fn push_all(out: &mut Vec<&str>, words: &str) -> usize {
    // `&mut Vec<&str>`: the inner lifetime gets its own name, so a `Vec<&'static str>` borrowed
    // briefly still fits.
    yield_now().await;
    out.extend(["a", "b"]);
    out.len() + words.len()
}

#[dsu::updateable]
async fn fib(n: u64) -> u64 {
    // Recursion needs no boxing by hand: the dispatcher returns a boxed future.
    if n < 2 { n } else { fib(n - 1).await + fib(n - 2).await }
}

#[dsu::updateable]
async fn no_output(hits: &AtomicUsize) {
    yield_now().await;
    hits.fetch_add(1, Ordering::SeqCst);
}

/// A raw pointer is not `Send`, so neither is this future: `?Send`.
#[dsu::updateable(?Send)]
async unsafe fn read_raw(p: *const u32) -> u32 {
    // SAFETY: the caller passes a pointer valid until the future completes.
    unsafe { *p }
}

#[dsu::updateable(?Send)]
async fn count_rc(rc: Rc<u32>) -> u32 {
    yield_now().await;
    *rc + 1
}

#[test]
fn free_functions() {
    assert_eq!(block_on(add(2, 3)), 5);
    let text = String::from("hello world");
    assert_eq!(block_on(first_word(&text)), "hello");
    let mut v: Vec<&'static str> = vec!["x"];
    assert_eq!(block_on(push_all(&mut v, "abc")), 6);
    v.push("y");
    assert_eq!(v, ["x", "a", "b", "y"]);
    assert_eq!(block_on(fib(10)), 55);
    let hits = AtomicUsize::new(0);
    block_on(no_output(&hits));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let n = 7u32;
    // SAFETY: `n` lives until the future completes.
    assert_eq!(block_on(unsafe { read_raw(&n) }), 7);
    assert_eq!(block_on(count_rc(Rc::new(1))), 2);
}

#[test]
fn free_function_futures_are_send_and_start_lazily() {
    let f = add(1, 1);
    assert_send(&f);
    let text = String::from("a b");
    let g = first_word(&text);
    assert_send(&g);
    // Nothing runs before the first poll, as for a plain `async fn`.
    let hits = AtomicUsize::new(0);
    let h = no_output(&hits);
    assert_send(&h);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // The dispatcher's future is a concrete, `Unpin` type: it can be polled without pinning.
    let mut h = h;
    assert!(std::pin::Pin::new(&mut h).poll(&mut Context::from_waker(Waker::noop())).is_pending());
    drop(h);
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert_eq!(block_on(f) + block_on(g).len() as u32, 3);
}

// ---- inherent methods ----

pub struct Store {
    map: HashMap<String, String>,
    n: u64,
}

#[dsu::updateable]
impl Store {
    pub async fn new() -> Self {
        Store { map: HashMap::new(), n: 0 }
    }

    pub async fn get(&self, key: &str) -> Option<String> {
        yield_now().await;
        self.map.get(key).cloned()
    }

    pub async fn get_ref(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    pub async fn insert(&mut self, key: &str, value: String) -> u64 {
        yield_now().await;
        self.map.insert(key.to_string(), value);
        self.n += 1;
        self.n
    }

    pub async fn into_len(mut self) -> usize {
        self.n = 0;
        yield_now().await;
        self.map.len()
    }

    /// A synchronous method in the same block stays synchronous.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[test]
fn inherent_methods() {
    let mut s = block_on(Store::new());
    assert_eq!(block_on(s.insert("a", "1".into())), 1);
    assert_eq!(block_on(s.insert("b", "2".into())), 2);
    let key = String::from("a");
    let fut = s.get(&key);
    assert_send(&fut);
    assert_eq!(block_on(fut).as_deref(), Some("1"));
    assert_eq!(block_on(s.get_ref("b")), Some("2"));
    assert_eq!(block_on(s.get("zz")), None);
    assert_eq!(s.len(), 2);
    let fut = s.into_len();
    assert_send(&fut);
    assert_eq!(block_on(fut), 2);
}

// ---- trait-impl methods ----

pub struct Request {
    pub path: String,
}

pub trait Handler {
    /// A trait `async fn`: its future has no `Send` bound in the trait.
    #[allow(async_fn_in_trait)]
    async fn handle(&self, req: &Request) -> String;
    /// The desugared form, with `Send` required by the trait.
    fn name(&self) -> impl Future<Output = String> + Send;
    #[allow(async_fn_in_trait)]
    async fn label(&self) -> &str;
}

pub struct Echo {
    prefix: String,
}

#[dsu::updateable]
impl Handler for Echo {
    async fn handle(&self, req: &Request) -> String {
        yield_now().await;
        format!("{}{}", self.prefix, req.path)
    }

    async fn name(&self) -> String {
        self.label().await.to_uppercase()
    }

    async fn label(&self) -> &str {
        &self.prefix
    }
}

pub trait Source {
    type Item;
    #[allow(async_fn_in_trait)]
    async fn next_item(&mut self) -> Option<Self::Item>;
}

pub struct Countdown(u32);

/// `Self::Item` in the signature and a `&mut self` receiver.
#[dsu::updateable]
impl Source for Countdown {
    type Item = u32;

    async fn next_item(&mut self) -> Option<Self::Item> {
        yield_now().await;
        if self.0 == 0 {
            None
        } else {
            self.0 -= 1;
            Some(self.0)
        }
    }
}

pub struct Shown(u32);

/// A synchronous trait's methods in a block that is not async are unaffected.
#[dsu::updateable]
impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

async fn through_trait<H: Handler>(h: &H, req: &Request) -> String {
    h.handle(req).await
}

#[test]
fn trait_methods() {
    let e = Echo { prefix: "echo:".into() };
    let req = Request { path: "/x".into() };
    let fut = e.handle(&req);
    assert_send(&fut);
    assert_eq!(block_on(fut), "echo:/x");
    assert_eq!(block_on(through_trait(&e, &req)), "echo:/x");
    let fut = e.name();
    assert_send(&fut);
    assert_eq!(block_on(fut), "ECHO:");
    assert_eq!(block_on(e.label()), "echo:");
    assert_eq!(Shown(3).to_string(), "#3");
    let mut c = Countdown(2);
    let fut = c.next_item();
    assert_send(&fut);
    assert_eq!(block_on(fut), Some(1));
    assert_eq!(block_on(c.next_item()), Some(0));
    assert_eq!(block_on(c.next_item()), None);
}

#[test]
fn futures_move_to_another_thread() {
    // What `tokio::spawn` needs: the future is `Send + 'static` when its arguments are.
    let fut = add(20, 22);
    let e = Arc::new(Echo { prefix: "t:".into() });
    let e2 = Arc::clone(&e);
    let handle = std::thread::spawn(move || {
        let req = Request { path: "/y".into() };
        (block_on(fut), block_on(e2.handle(&req)))
    });
    assert_eq!(handle.join().unwrap(), (42, "t:/y".to_string()));
}
