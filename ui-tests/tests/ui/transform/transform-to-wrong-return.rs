#[dsu::updateable]
pub struct Entry {
    pub hits: u64,
}

#[dsu::transform(to = dsu_old::Entry)]
fn downgrade(new: &Entry) -> Entry {
    Entry { hits: new.hits }
}

fn main() {}
