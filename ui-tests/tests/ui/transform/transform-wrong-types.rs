#[dsu::updateable]
pub struct Entry {
    pub hits: u64,
}

#[dsu::transform(from = dsu_old::Entry)]
fn upgrade(old: u32) -> Entry {
    Entry { hits: old.into() }
}

fn main() {}
