// Methods the rule refuses stay plain methods of an updateable impl (each with a warning); the
// block and its other methods stay updateable.

use std::fmt::Write;

pub struct Store {
    items: Vec<String>,
}

#[dsu::updateable]
impl Store {
    pub fn new() -> Self {
        Store { items: Vec::new() }
    }

    /// Generic: plain.
    pub fn put<T: ToString>(&mut self, v: T) -> usize {
        self.items.push(v.to_string());
        self.len()
    }

    /// `impl Trait` argument: plain.
    pub fn write_to(&self, mut out: impl Write) -> std::fmt::Result {
        write!(out, "{}", self.items.join(","))
    }

    /// `const fn`: plain, and still usable in constants.
    pub const fn capacity() -> usize {
        16
    }

    /// Updateable, and calls the plain methods.
    pub fn len(&self) -> usize {
        self.items.len().min(Self::capacity())
    }
}

pub struct Request(String);

pub trait Router {
    #[allow(async_fn_in_trait)]
    async fn route(&self, req: &Request) -> &str;
    fn name(&self) -> String;
}

pub struct Table(String);

#[dsu::updateable]
impl Router for Table {
    /// An `async fn` of a trait impl returning a borrow while taking two references: plain.
    async fn route(&self, req: &Request) -> &str {
        if req.0.is_empty() { "" } else { &self.0 }
    }

    /// Updateable.
    fn name(&self) -> String {
        self.0.clone()
    }
}

const CAPACITY: usize = Store::capacity();

fn main() {
    let mut s = Store::new();
    assert_eq!(s.put(1), 1);
    assert_eq!(s.put("two"), 2);
    let mut out = String::new();
    s.write_to(&mut out).unwrap();
    assert_eq!(out, "1,two");
    assert_eq!(CAPACITY, 16);
    let (table, req) = (Table("t".into()), Request("/".into()));
    assert_eq!(table.name(), "t");
    drop(table.route(&req));
}
