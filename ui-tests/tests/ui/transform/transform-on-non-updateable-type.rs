pub struct Entry {
    pub hits: u64,
}

#[dsu::transform(from = dsu_old::Entry)]
fn upgrade(old: &dsu_old::Entry) -> Entry {
    Entry { hits: old.hits }
}

fn main() {}
