pub struct Wrapper<T>(T);

#[dsu::updateable]
impl<T: Clone> Wrapper<T> {
    pub fn get(&self) -> T {
        self.0.clone()
    }
}

fn main() {}
