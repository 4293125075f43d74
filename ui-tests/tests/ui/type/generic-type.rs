#[dsu::updateable]
pub struct Wrapper<T> {
    pub inner: T,
}

fn main() {}
