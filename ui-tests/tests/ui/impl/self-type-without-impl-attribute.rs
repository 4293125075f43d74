pub struct Counter(u32);

impl Counter {
    #[dsu::updateable]
    pub fn new() -> Self {
        Counter(0)
    }
}

fn main() {}
