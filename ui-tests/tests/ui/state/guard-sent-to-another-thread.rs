//! A `CellRef` belongs to the thread that took it: the scope it holds is that thread's.

use std::sync::atomic::AtomicU64;

static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));

fn send() {
    let guard = HITS.access();
    std::thread::spawn(move || drop(guard));
}

fn main() {}
