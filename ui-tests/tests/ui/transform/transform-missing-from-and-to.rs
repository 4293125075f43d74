#[dsu::updateable]
#[dsu::transform(default)]
pub struct Entry {
    pub hits: u64,
}

fn main() {}
