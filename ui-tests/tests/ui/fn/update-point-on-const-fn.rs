#[dsu::update_point]
const fn answer() -> u32 {
    42
}

fn main() {}
