//! A field cell's value is reached from any thread that holds the cell, and transformed by the
//! thread that applies an update: it must be `Send` and `Sync`.

fn main() {
    let _cell = dsu::Cell::new(std::cell::RefCell::new(0u64));
}
