pub struct Store;

#[dsu::updateable]
impl Store {
    pub fn put<T: ToString>(&self, v: T) -> String {
        v.to_string()
    }
}

fn main() {}
