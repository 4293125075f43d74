pub trait Describe {
    fn describe(&self) -> String;
}

#[dsu::updateable]
impl Describe for u32 {
    fn describe(&self) -> String {
        self.to_string()
    }
}

fn main() {}
