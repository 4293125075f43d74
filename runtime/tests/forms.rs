//! Every supported form of `#[dsu::updateable]` compiles and behaves like the original function
//! when no patch is loaded.

// The forms below are written the way users write them, lints or not: they are what the macro
// must accept.
#![allow(clippy::boxed_local, clippy::needless_arbitrary_self_type, clippy::needless_lifetimes)]

use std::collections::HashMap;
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub name: String,
    pub hits: u64,
}

#[dsu::updateable]
fn add(a: u32, b: u32) -> u32 {
    a + b
}

#[dsu::updateable]
pub fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

#[dsu::updateable]
fn longest<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

#[dsu::updateable]
fn parse_entry((name, hits): (&str, &str)) -> Result<Entry, String> {
    let hits = hits.parse::<u64>().map_err(|e| format!("bad hits: {e}"))?;
    Ok(Entry { name: name.to_string(), hits })
}

#[dsu::updateable]
fn total(entries: Vec<Entry>, mut extra: u64) -> u64 {
    extra += entries.iter().map(|e| e.hits).sum::<u64>();
    extra
}

#[dsu::updateable]
fn fact(n: u64) -> u64 {
    if n == 0 { 1 } else { n * fact(n - 1) }
}

#[dsu::updateable]
unsafe fn read_raw(p: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

pub struct Store {
    entries: HashMap<String, Entry>,
}

#[dsu::updateable]
impl Store {
    pub fn new() -> Self {
        Store { entries: HashMap::new() }
    }

    pub fn insert(&mut self, e: Entry) -> Option<Entry> {
        self.entries.insert(e.name.clone(), e)
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.entries.keys().map(String::as_str).collect();
        v.sort();
        v
    }

    pub fn into_len(self) -> usize {
        self.entries.len()
    }

    fn boxed(self: Box<Self>) -> usize {
        self.entries.len() + 100
    }
}

#[dsu::updateable]
impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.hits)
    }
}

pub struct Countdown(u32);

#[dsu::updateable]
impl Iterator for Countdown {
    type Item = u32;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0 == 0 {
            None
        } else {
            self.0 -= 1;
            Some(self.0)
        }
    }
}

#[dsu::update_point]
fn handle(x: u32) -> u32 {
    add(x, 1)
}

#[test]
fn free_functions() {
    assert_eq!(add(2, 3), 5);
    assert_eq!(first_word("hello world"), "hello");
    assert_eq!(longest("ab", "abc"), "abc");
    assert_eq!(parse_entry(("a", "3")), Ok(Entry { name: "a".into(), hits: 3 }));
    assert!(parse_entry(("a", "x")).unwrap_err().starts_with("bad hits"));
    assert_eq!(total(vec![Entry { name: "a".into(), hits: 2 }], 1), 3);
    assert_eq!(fact(5), 120);
    let v = 9u32;
    // SAFETY: `v` is a live u32.
    assert_eq!(unsafe { read_raw(&v) }, 9);
    assert_eq!(handle(1), 2);
}

#[test]
fn methods() {
    let mut s = Store::new();
    assert_eq!(s.insert(Entry { name: "b".into(), hits: 1 }), None);
    s.insert(Entry { name: "a".into(), hits: 2 });
    assert_eq!(s.get("a").map(|e| e.hits), Some(2));
    assert_eq!(s.names(), vec!["a", "b"]);
    assert_eq!(Box::new(Store::new()).boxed(), 100);
    assert_eq!(s.into_len(), 2);
    assert_eq!(Entry { name: "x".into(), hits: 4 }.to_string(), "x=4");
    assert_eq!(Countdown(3).collect::<Vec<_>>(), vec![2, 1, 0]);
}

#[test]
fn idle_update_point_and_status_outside_cargo_dsu() {
    dsu::update_point();
    assert!(!dsu::is_pending());
    // A test binary is not built by `cargo dsu build`: loading is refused with a clear reason.
    match dsu::load("/nonexistent/patch.so") {
        Err(dsu::Error::Io { .. }) => {}
        other => panic!("expected an I/O error, got {other:?}"),
    }
    // Built by plain cargo, its function table is not exported: the runtime says so.
    match dsu::status() {
        Err(dsu::Error::NotUpdateable { reason }) => {
            assert!(reason.contains("cargo dsu build"), "{reason}")
        }
        other => panic!("expected NotUpdateable, got {other:?}"),
    }
}

/// Forms that once broke the expansion.
mod receivers_and_traits {
    pub mod shapes {
        pub trait Named {
            fn name(&self) -> String;
            fn shout(&self) -> String;
        }
    }

    pub struct Tag(pub String);

    #[dsu::updateable]
    impl Tag {
        /// A typed receiver: the output borrows from `self`.
        pub fn pick(self: &Self, other: &str) -> &str {
            if self.0.len() >= other.len() { &self.0 } else { "" }
        }

        /// An anonymous receiver lifetime.
        pub fn first<'a>(&'_ self, _k: &'a str) -> &str {
            &self.0[..1]
        }

        pub fn pinned(self: std::pin::Pin<&Self>, _k: &str) -> &str {
            &self.get_ref().0
        }

        /// Configured out: its hidden copy must be too.
        #[cfg(any())]
        pub fn gone(&self) -> DoesNotExist {
            DoesNotExist
        }

        /// `Fn` sugar in the output keeps its own elided lifetimes.
        pub fn measurer(&self) -> Box<dyn Fn(&str) -> usize + '_> {
            Box::new(move |s| s.len() + self.0.len())
        }
    }

    /// The trait is used by path, not imported: its methods must still be callable inside.
    #[dsu::updateable]
    impl shapes::Named for Tag {
        fn name(&self) -> String {
            self.0.clone()
        }
        fn shout(&self) -> String {
            self.name().to_uppercase()
        }
    }

    #[dsu::updateable]
    fn apply(f: &dyn for<'x> Fn(&'x str) -> &'x str) -> usize {
        f("abc").len()
    }

    #[test]
    fn they_compile_and_behave() {
        use shapes::Named;
        let t = Tag("long".into());
        assert_eq!(t.pick("ab"), "long");
        assert_eq!(t.first("x"), "l");
        assert_eq!(std::pin::Pin::new(&t).pinned("x"), "long");
        assert_eq!(t.measurer()("ab"), 6);
        assert_eq!(t.shout(), "LONG");
        assert_eq!(apply(&|s| &s[1..]), 2);
    }
}

/// Methods the rule refuses (generic, `impl Trait`, `const fn`) stay plain methods of an
/// updateable impl block: they work as written, and only the others enter the function table.
mod plain_methods {
    use object::{Object, ObjectSymbol};

    pub struct Bag {
        items: Vec<String>,
    }

    #[dsu::updateable]
    #[allow(deprecated)] // each plain method's warning, expected here
    impl Bag {
        pub fn new() -> Self {
            Bag { items: Vec::new() }
        }

        pub fn put<T: ToString>(&mut self, v: T) -> usize {
            self.items.push(v.to_string());
            self.len()
        }

        pub fn render(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
            write!(out, "{}", self.items.join(","))
        }

        pub fn keys(&self) -> impl Iterator<Item = &String> {
            self.items.iter()
        }

        pub const fn capacity() -> usize {
            4
        }

        /// Updateable, calling a plain method.
        pub fn len(&self) -> usize {
            self.items.len().min(Self::capacity())
        }
    }

    const CAPACITY: usize = Bag::capacity();

    /// The updateable functions of this test binary under `prefix`: its `__dsu_fn_` symbols.
    /// Read from its static symbol table, since a plain `cargo test` build does not export them
    /// (the runtime reads the exported ones, and finds none here).
    fn table(prefix: &str) -> Vec<String> {
        let data = std::fs::read("/proc/self/exe").expect("the test binary");
        let file = object::File::parse(&*data).expect("an ELF file");
        let mut names: Vec<String> = file
            .symbols()
            .filter_map(|s| s.name().ok())
            .filter_map(|n| n.strip_prefix(dsu_abi::FN_INFO_PREFIX))
            .filter(|n| n.starts_with(prefix))
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn plain_methods_work_and_stay_out_of_the_table() {
        let mut bag = Bag::new();
        assert_eq!(bag.put(1), 1);
        assert_eq!(bag.put("two"), 2);
        let mut out = String::new();
        bag.render(&mut out).unwrap();
        assert_eq!(out, "1,two");
        assert_eq!(bag.keys().count(), 2);
        assert_eq!(CAPACITY, 4);
        assert_eq!(bag.len(), 2);

        let here = table("forms::plain_methods::");
        assert_eq!(here, ["forms::plain_methods::Bag::len", "forms::plain_methods::Bag::new"]);
        // The reader sees the rest of the table too.
        assert!(table("forms::Store::").iter().any(|n| n == "forms::Store::get"));
    }
}
