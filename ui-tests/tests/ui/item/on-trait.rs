#[dsu::updateable]
pub trait Greeter {
    fn greet(&self) -> String;
}

fn main() {}
