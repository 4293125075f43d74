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
        let average = self.visits as f64 / self.names.max(1) as f64;
        write!(f, "{} names, {} visits, {average:.1} per name", self.names, self.visits)
    }
}

#[dsu::updateable]
pub fn stats() -> Stats {
    VISITS.with(|visits| {
        let visits = visits.lock().unwrap();
        Stats { names: visits.len(), visits: visits.values().sum() }
    })
}
