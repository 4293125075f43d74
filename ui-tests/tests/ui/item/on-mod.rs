#[dsu::updateable]
mod handlers {
    pub fn index() {}
}

fn main() {}
