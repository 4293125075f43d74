#[dsu::updateable]
pub struct Entry {
    pub hits: u64,
}

#[dsu::transform]
fn upgrade(old: &Entry) -> Entry {
    Entry { hits: old.hits }
}

fn main() {}
