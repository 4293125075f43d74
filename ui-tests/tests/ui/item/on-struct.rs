#[dsu::updateable]
pub struct Entry {
    pub hits: u64,
}

fn main() {}
