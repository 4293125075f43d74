pub struct Store;

#[dsu::updateable]
impl Store {
    pub fn get(&self) -> u32 {
        1
    }

    // Marked itself, the method asks to be updateable: refused, not left plain.
    #[dsu::updateable]
    pub fn put<T: ToString>(&self, v: T) -> String {
        v.to_string()
    }
}

fn main() {}
