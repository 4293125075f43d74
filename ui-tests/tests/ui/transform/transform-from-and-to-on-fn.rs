#[dsu::updateable]
pub struct Entry {
    pub hits: u64,
}

#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry)]
fn downgrade(new: &Entry) -> dsu_old::Entry {
    dsu_old::Entry { hits: new.hits }
}

fn main() {}
