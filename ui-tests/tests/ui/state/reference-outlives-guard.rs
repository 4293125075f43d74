//! The reference a `CellRef` gives out lives no longer than the guard.

use std::sync::atomic::AtomicU64;

static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));

fn escape() -> &'static AtomicU64 {
    let guard = HITS.access();
    &*guard
}

fn main() {}
