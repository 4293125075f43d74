//! Greetings, and the visits they count.

use crate::VISITS;
use std::sync::atomic::{AtomicU64, Ordering};

/// Greetings sent, across all versions: a plain static, which the server and every patch share.
pub static GREETED: AtomicU64 = AtomicU64::new(0);

#[dsu::updateable]
fn visit(name: &str) -> u64 {
    GREETED.fetch_add(1, Ordering::Relaxed);
    VISITS.with(|visits| {
        let mut visits = visits.lock().unwrap();
        let n = visits.entry(name.to_string()).or_insert(0);
        *n += 1;
        *n
    })
}

#[dsu::updateable]
pub fn greet(name: &str) -> String {
    let n = visit(name);
    format!("hello {name}, visit {n}")
}
