#[dsu::updateable]
const LIMIT: u32 = 10;

fn main() {}
