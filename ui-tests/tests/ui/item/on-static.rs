#[dsu::updateable]
static HITS: u64 = 0;

fn main() {}
