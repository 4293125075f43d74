//! Cost of a call through a slot against a direct call, and of an idle update point.
//!
//! In a normal build a slot call is the same machine code as in a `cargo dsu build`: one load of
//! the slot and an indirect call. Figures and the command are in docs/PERFORMANCE.md.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

#[inline(never)]
fn add_direct(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

#[dsu::updateable]
fn add_slot(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// Rounds of `work`: each is a dependent multiply, add, shift and xor (about 1.2 ns here), so 80
/// rounds take about 100 ns on the machine of docs/PERFORMANCE.md.
const ROUNDS: u32 = 80;

/// About 100 ns of dependent integer work: every round needs the previous one's result, so the
/// loop cannot be vectorised or folded, and its input is black-boxed by the caller.
fn work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..ROUNDS {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x ^= x >> 29;
    }
    x
}

#[inline(never)]
fn work_direct(seed: u64) -> u64 {
    work(seed)
}

#[dsu::updateable]
fn work_slot(seed: u64) -> u64 {
    work(seed)
}

fn calls(c: &mut Criterion) {
    let mut g = c.benchmark_group("call/trivial");
    g.bench_function("direct", |b| b.iter(|| black_box(add_direct(black_box(1), black_box(2)))));
    g.bench_function("slot", |b| b.iter(|| black_box(add_slot(black_box(1), black_box(2)))));
    g.finish();

    let mut g = c.benchmark_group("call/100ns");
    g.bench_function("direct", |b| b.iter(|| black_box(work_direct(black_box(7)))));
    g.bench_function("slot", |b| b.iter(|| black_box(work_slot(black_box(7)))));
    g.finish();
}

fn update_point(c: &mut Criterion) {
    let mut g = c.benchmark_group("update_point");
    g.bench_function("empty_loop", |b| b.iter(|| black_box(())));
    g.bench_function("idle", |b| b.iter(dsu::update_point));
    g.finish();
}

static COUNTER: dsu::State<std::sync::atomic::AtomicU64> =
    dsu::State::new("bench-counter", || std::sync::atomic::AtomicU64::new(0));
static PLAIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn state_access(c: &mut Criterion) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut g = c.benchmark_group("state");
    g.bench_function("plain_static_load", |b| b.iter(|| black_box(PLAIN.load(Relaxed))));
    // A registered thread that runs updateable code (its state is running): a scope is a
    // thread-local increment and decrement around the access.
    dsu::update_point();
    g.bench_function("cell_with_load", |b| b.iter(|| black_box(COUNTER.with(|c| c.load(Relaxed)))));
    g.bench_function("cell_access_load", |b| b.iter(|| black_box(COUNTER.access().load(Relaxed))));
    // The same through a field cell (`dsu::Cell`), as code reaches one through an `Arc`.
    let field = std::sync::Arc::new(dsu::Cell::new(std::sync::atomic::AtomicU64::new(0)));
    g.bench_function("field_cell_with_load", |b| b.iter(|| black_box(field.with(|c| c.load(Relaxed)))));
    // A thread whose state is idle (an idle section, an executor thread between polls): the
    // outermost scope also orders its depth before a read of the pending flag (a fence).
    dsu::idle(|| {
        g.bench_function("cell_with_load_idle_thread", |b| {
            b.iter(|| black_box(COUNTER.with(|c| c.load(Relaxed))))
        });
    });
    g.finish();
}

criterion_group!(benches, calls, update_point, state_access);
criterion_main!(benches);
