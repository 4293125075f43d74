#[dsu::updateable]
#[dsu::transform(to = dsu_old::Entry)]
pub struct Entry {
    pub hits: u64,
}

fn main() {}
