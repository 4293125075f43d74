//! Statistics of the visits.

use crate::VISITS;
use std::fmt;

pub struct Stats {
    names: usize,
    visits: u64,
}

#[dsu::updateable]
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} names, {} visits", self.names, self.visits)
    }
}

#[dsu::updateable]
pub fn stats() -> Stats {
    VISITS.with(|visits| {
        let visits = visits.lock().unwrap();
        Stats { names: visits.len(), visits: visits.values().sum() }
    })
}
