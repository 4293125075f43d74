//! A reference to a field cell's value cannot leave the `with` call it was given to, even when
//! the cell itself lives as long as the program: it must not outlive the next update point.

use std::sync::atomic::AtomicU64;

fn escape(cell: &'static dsu::Cell<AtomicU64>) -> &'static AtomicU64 {
    cell.with(|h| h)
}

fn main() {}
