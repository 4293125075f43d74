// The warning that a method stays plain is the `deprecated` lint; denied, it shows as an error.
// `#[allow(deprecated)]` on a method or on the impl block silences it there: one error only.
#![deny(deprecated)]

pub struct Store;

#[dsu::updateable]
impl Store {
    pub fn put<T: ToString>(&self, v: T) -> String {
        v.to_string()
    }

    #[allow(deprecated)]
    pub fn show(&self, v: impl std::fmt::Display) -> String {
        v.to_string()
    }
}

pub struct Quiet;

#[allow(deprecated)]
#[dsu::updateable]
impl Quiet {
    pub const fn limit() -> usize {
        1
    }
}

fn main() {}
