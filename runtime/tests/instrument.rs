//! `#[tracing::instrument]` under `#[dsu::updateable]`: the attribute goes on the implementation
//! the slot holds, so its span covers the body (for an `async fn`, every poll of the whole
//! future), is named after the function, records the arguments it names and not the skipped
//! ones. Free functions, inherent and trait-impl methods, sync and async, both attribute orders.
//!
//! A small subscriber of this file records spans, enters, exits and events; no subscriber crate
//! is a dev-dependency.

mod common;

use common::{block_on, yield_now};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{instrument, Event, Metadata, Subscriber};

// ---- the recording subscriber ----

#[derive(Clone, Debug)]
struct SpanRec {
    name: &'static str,
    level: tracing::Level,
    fields: BTreeMap<String, String>,
    entered: usize,
}

#[derive(Clone, Debug)]
struct EventRec {
    message: String,
    fields: BTreeMap<String, String>,
    /// The names of the spans entered on the thread when the event was emitted, outermost first.
    inside: Vec<&'static str>,
}

#[derive(Default)]
struct Log {
    spans: BTreeMap<u64, SpanRec>,
    /// The spans entered on the (one) thread the test runs on, outermost first.
    stack: Vec<u64>,
    events: Vec<EventRec>,
}

#[derive(Clone, Default)]
struct Recorder {
    log: Arc<Mutex<Log>>,
    next: Arc<AtomicU64>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let id = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let meta = attrs.metadata();
        let rec = SpanRec { name: meta.name(), level: *meta.level(), fields, entered: 0 };
        self.log.lock().unwrap().spans.insert(id, rec);
        Id::from_u64(id)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut log = self.log.lock().unwrap();
        let rec = log.spans.get_mut(&span.into_u64()).expect("a recorded span");
        values.record(&mut Fields(&mut rec.fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let mut log = self.log.lock().unwrap();
        let inside = log.stack.iter().map(|id| log.spans[id].name).collect();
        log.events.push(EventRec { message, fields, inside });
    }

    fn enter(&self, span: &Id) {
        let mut log = self.log.lock().unwrap();
        log.spans.get_mut(&span.into_u64()).expect("a recorded span").entered += 1;
        log.stack.push(span.into_u64());
    }

    fn exit(&self, span: &Id) {
        let mut log = self.log.lock().unwrap();
        let top = log.stack.pop();
        assert_eq!(top, Some(span.into_u64()), "spans exit in the order they were entered");
    }
}

impl Recorder {
    /// Runs `f` with a new recorder as the thread's subscriber; returns what it recorded.
    fn run<R>(f: impl FnOnce(&Recorder) -> R) -> (R, Log) {
        let rec = Recorder::default();
        let out = tracing::subscriber::with_default(rec.clone(), || f(&rec));
        let log = std::mem::take(&mut *rec.log.lock().unwrap());
        assert!(log.stack.is_empty(), "every entered span was exited: {:?}", log.stack);
        (out, log)
    }
}

impl Log {
    /// The one span named `name`.
    fn span(&self, name: &str) -> &SpanRec {
        let found: Vec<_> = self.spans.values().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one span named {name}: {:#?}", self.spans);
        found[0]
    }

    /// The one event whose message is `message`.
    fn event(&self, message: &str) -> &EventRec {
        let found: Vec<_> = self.events.iter().filter(|e| e.message == message).collect();
        assert_eq!(found.len(), 1, "one event {message:?}: {:#?}", self.events);
        found[0]
    }

    fn names(&self) -> Vec<&'static str> {
        self.spans.values().map(|s| s.name).collect()
    }
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

// ---- free functions ----

#[dsu::updateable]
#[tracing::instrument(skip(secret), fields(user = %name), level = "debug")]
fn greet(name: &str, secret: &str) -> String {
    tracing::info!(len = name.len(), "greeting");
    format!("hello {name} ({})", secret.len())
}

#[derive(Debug)]
pub struct Db {
    rows: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no such user: {}", self.0)
    }
}

/// The handler form `#[dsu::updateable]` must take as users write it.
#[dsu::updateable]
#[tracing::instrument(skip(db), fields(user = %name), err)]
async fn get(db: Arc<Db>, name: String) -> Result<String, Error> {
    tracing::info!("looking up");
    yield_now().await;
    tracing::info!(rows = db.rows.len(), "after a suspension");
    db.rows.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).ok_or(Error(name))
}

/// `#[instrument]` imported, with `skip_all`, a span name of its own and `ret`.
#[dsu::updateable]
#[instrument(skip_all, name = "sum.all", ret, level = "trace")]
async fn sum(values: &[u64]) -> u64 {
    yield_now().await;
    tracing::info!(n = values.len(), "summing");
    values.iter().sum()
}

#[test]
fn free_sync_fn_span_covers_the_body() {
    let (out, log) = Recorder::run(|_| greet("ann", "hunter2"));
    assert_eq!(out, "hello ann (7)");
    let span = log.span("greet");
    assert_eq!(span.level, tracing::Level::DEBUG);
    // `name` recorded as an argument (Debug) and as the field `user` (Display); `secret` skipped.
    assert_eq!(span.fields, fields(&[("name", "ann"), ("user", "ann")]));
    assert_eq!(span.entered, 1);
    let event = log.event("greeting");
    assert_eq!(event.inside, ["greet"]);
    assert_eq!(event.fields, fields(&[("len", "3")]));
    // The dispatcher adds no span of its own, and the hidden implementation's name is nowhere.
    assert_eq!(log.names(), ["greet"]);
}

#[test]
fn free_async_fn_span_covers_the_whole_future() {
    let db = Arc::new(Db { rows: vec![("ann".into(), "admin".into())] });
    let (out, log) = Recorder::run(|rec| {
        let fut = get(Arc::clone(&db), "ann".into());
        // The call only made the future: the span is the future's, made when it first runs.
        assert!(rec.log.lock().unwrap().spans.is_empty());
        block_on(fut)
    });
    assert_eq!(out.unwrap(), "admin");
    let span = log.span("get");
    assert_eq!(span.fields, fields(&[("name", "ann"), ("user", "ann")]));
    assert!(span.entered >= 2, "entered on each poll: {span:?}");
    assert_eq!(log.event("looking up").inside, ["get"]);
    let later = log.event("after a suspension");
    assert_eq!(later.inside, ["get"], "an event after an .await is still inside the span");
    assert_eq!(later.fields, fields(&[("rows", "1")]));

    // `err`: the error is an event inside the span.
    let (out, log) = Recorder::run(|_| block_on(get(db, "bob".into())));
    assert_eq!(out.unwrap_err().to_string(), "no such user: bob");
    let errors: Vec<_> = log.events.iter().filter(|e| e.fields.contains_key("error")).collect();
    assert_eq!(errors.len(), 1, "{:#?}", log.events);
    assert_eq!(errors[0].fields["error"], "no such user: bob");
    assert_eq!(errors[0].inside, ["get"]);
}

#[test]
fn imported_instrument_with_skip_all_name_and_ret() {
    let values = [1u64, 2, 3];
    let (out, log) = Recorder::run(|_| block_on(sum(&values)));
    assert_eq!(out, 6);
    let span = log.span("sum.all");
    assert_eq!(span.level, tracing::Level::TRACE);
    assert!(span.fields.is_empty(), "skip_all records no argument: {span:?}");
    assert_eq!(log.event("summing").inside, ["sum.all"]);
    let ret: Vec<_> = log.events.iter().filter(|e| e.fields.contains_key("return")).collect();
    assert_eq!(ret.len(), 1, "{:#?}", log.events);
    assert_eq!(ret[0].fields["return"], "6");
    assert_eq!(ret[0].inside, ["sum.all"]);
}

// ---- methods ----

pub struct Store {
    rows: Vec<(String, u32)>,
}

#[dsu::updateable]
impl Store {
    #[tracing::instrument(skip(self), ret)]
    pub fn find(&self, key: &str) -> Option<u32> {
        tracing::info!("finding");
        self.rows.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    #[instrument(skip(self, value), fields(rows = self.rows.len()))]
    pub async fn insert(&mut self, key: &str, value: u32) -> usize {
        yield_now().await;
        self.rows.push((key.to_string(), value));
        tracing::info!("inserted");
        self.rows.len()
    }

    /// Not instrumented: no span.
    pub fn count(&self) -> usize {
        self.rows.len()
    }
}

#[test]
fn inherent_methods() {
    let mut store = Store { rows: vec![("a".into(), 1)] };
    let (out, log) = Recorder::run(|_| (store.find("a"), store.find("zz")));
    assert_eq!(out, (Some(1), None));
    assert_eq!(log.names(), ["find", "find"]);
    for span in log.spans.values() {
        assert!(!span.fields.contains_key("self"), "self skipped: {span:?}");
        assert!(span.fields.contains_key("key"), "{span:?}");
    }
    let finding: Vec<_> = log.events.iter().filter(|e| e.message == "finding").collect();
    assert_eq!(finding.len(), 2);
    assert!(finding.iter().all(|e| e.inside == ["find"]));
    let returns: Vec<_> = log.events.iter().filter_map(|e| e.fields.get("return")).collect();
    assert_eq!(returns, ["Some(1)", "None"]);

    let (out, log) = Recorder::run(|_| block_on(store.insert("b", 2)));
    assert_eq!(out, 2);
    let span = log.span("insert");
    // `fields` may use `self`: the implementation keeps the receiver.
    assert_eq!(span.fields, fields(&[("key", "b"), ("rows", "1")]));
    assert_eq!(log.event("inserted").inside, ["insert"]);

    let (out, log) = Recorder::run(|_| store.count());
    assert_eq!(out, 2);
    assert!(log.spans.is_empty());
}

pub struct Request {
    pub path: String,
    pub token: String,
}

pub trait Handler {
    type Reply;
    #[allow(async_fn_in_trait)]
    async fn handle(&self, req: &Request) -> Self::Reply;
    fn describe(&self, verbose: bool) -> String;
}

pub struct Echo {
    prefix: String,
}

#[dsu::updateable]
impl Handler for Echo {
    type Reply = String;

    #[tracing::instrument(skip(self, req), fields(path = %req.path))]
    async fn handle(&self, req: &Request) -> Self::Reply {
        yield_now().await;
        tracing::info!("handling");
        format!("{}{}", self.prefix, req.path)
    }

    #[tracing::instrument(skip(self), fields(prefix = %self.prefix))]
    fn describe(&self, verbose: bool) -> String {
        tracing::info!("describing");
        if verbose { format!("echo with {}", self.prefix) } else { "echo".into() }
    }
}

#[test]
fn trait_impl_methods() {
    let echo = Echo { prefix: "echo:".into() };
    let req = Request { path: "/x".into(), token: "s3cret".into() };
    let (out, log) = Recorder::run(|_| block_on(echo.handle(&req)));
    assert_eq!(out, "echo:/x");
    assert!(!req.token.is_empty());
    let span = log.span("handle");
    assert_eq!(span.fields, fields(&[("path", "/x")]), "req and self skipped");
    assert_eq!(log.event("handling").inside, ["handle"]);

    let (out, log) = Recorder::run(|_| echo.describe(true));
    assert_eq!(out, "echo with echo:");
    assert_eq!(log.span("describe").fields, fields(&[("prefix", "echo:"), ("verbose", "true")]));
    assert_eq!(log.event("describing").inside, ["describe"]);
}

// ---- `#[instrument]` above `#[dsu::updateable]` ----

// `#[instrument]` expands first and instruments the body in place; `#[dsu::updateable]` then moves
// that body, span and all, into the implementation. (On an `impl` block `#[instrument]` is
// refused by tracing itself: it goes on functions.)
#[tracing::instrument(skip(offset))]
#[dsu::updateable]
fn twice(n: u32, offset: u32) -> u32 {
    tracing::info!("doubling");
    n * 2 + offset
}

#[tracing::instrument]
#[dsu::updateable]
async fn thrice(n: u32) -> u32 {
    yield_now().await;
    tracing::info!("tripling");
    n * 3
}

#[test]
fn instrument_written_above_updateable() {
    let (out, log) = Recorder::run(|_| twice(4, 9));
    assert_eq!(out, 17);
    assert_eq!(log.span("twice").fields, fields(&[("n", "4")]));
    assert_eq!(log.event("doubling").inside, ["twice"]);

    let (out, log) = Recorder::run(|_| block_on(thrice(2)));
    assert_eq!(out, 6);
    assert_eq!(log.span("thrice").fields, fields(&[("n", "2")]));
    assert_eq!(log.event("tripling").inside, ["thrice"]);
}
