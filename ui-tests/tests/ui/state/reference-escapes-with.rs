//! A reference to a cell's value cannot leave the `with` call it was given to: it must not
//! outlive the next update point.

use std::sync::atomic::AtomicU64;

static HITS: dsu::State<AtomicU64> = dsu::State::new("hits", || AtomicU64::new(0));

fn escape() -> &'static AtomicU64 {
    HITS.with(|h| h)
}

fn main() {}
