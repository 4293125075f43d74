//! Functions, methods and statics: what changed, in behaviour only.

use super::*;

#[test]
fn body_change_added_and_removed() {
    let old = "#[dsu::updateable]\nfn a() -> u32 { 1 }\n#[dsu::updateable]\nfn gone() {}\nfn plain() -> u32 { 1 }\n";
    let new = "#[dsu::updateable]\nfn a() -> u32 { 2 }\n#[dsu::updateable]\nfn fresh() {}\nfn plain() -> u32 { 2 }\n";
    let r = cmp_main("body", old, new);
    assert_eq!(
        r.functions_changed,
        vec![ItemRef { path: "app::a".into(), file: "src/main.rs".into(), line: 1 }]
    );
    assert_eq!(paths(&r.functions_added), ["app::fresh"]);
    assert_eq!(paths(&r.functions_removed), ["app::gone"]);
    assert_eq!(paths(&r.non_updateable_changed), ["app::plain"]);
    assert_eq!(r.crates_changed, ["app"]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert!(!r.is_empty_change());
}

#[test]
fn signature_change_is_routed_at_its_line() {
    let old = "\n#[dsu::updateable]\nfn greet(n: &str) -> String { n.into() }\n";
    let new = "\n\n#[dsu::updateable]\nfn greet(n: &str, loud: bool) -> String { n.into() }\n";
    let r = cmp_main("sig", old, new);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(
        r.signatures_changed,
        vec![ItemRef { path: "app::greet".into(), file: "src/main.rs".into(), line: 3 }]
    );
    assert!(r.functions_changed.is_empty());
    assert!(!r.is_empty_change());
}

#[test]
fn method_paths_match_the_macros() {
    let old = "#[dsu::updateable]\nimpl Counter { fn bump(&mut self) {} }\n\
               #[dsu::updateable]\nimpl fmt::Display for Counter { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) } }\n";
    let new = old.replace("{} }", "{ let _ = 1; } }").replace("{ Ok(()) }", "{ write!(f, \"x\") }");
    let r = cmp_main("methods", old, &new);
    assert_eq!(paths(&r.functions_changed), ["app::Counter::bump", "app::<Counter as fmt::Display>::fmt"]);
}

#[test]
fn unparsable_file_names_file_and_line() {
    let (old, new) = ([("src/main.rs", "fn a() {}\n")], [("src/main.rs", "fn a() {}\nfn b( {\n")]);
    let e = error_of("bad", &[unit("app", "src/main.rs")], &old, &new);
    assert!(e.starts_with("src/main.rs:"), "{e}");
    assert!(e.contains("cannot parse"), "{e}");
}

const DOCS_V1: &str = "//! The app.\n\
    use std::sync::Mutex;\n\
    /// An entry.\n#[dsu::updateable]\npub struct Entry { pub name: String }\n\
    static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    static LIMIT: usize = 10;\n\
    #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n\
    fn plain(x: u32) -> u32 { x + 1 }\n\
    #[dsu::updateable]\nimpl Entry { fn len(&self) -> usize { self.name.len() } fn pick<T: Clone>(&self, t: &T) -> T { t.clone() } }\n";

const DOCS_V2: &str = "//! The app, documented.\n//! More.\n\
    use std::sync::Mutex;\n\
    /// An entry of the store.\n/** Block docs. */\n#[doc = \"Attribute docs.\"]\n#[doc(alias = \"record\")]\n\
    #[dsu::updateable]\npub struct Entry {\n    /// Its name.\n    pub name: String,\n}\n\
    /// The store.\n#[doc(hidden)]\n\
    static STORE: dsu::State<Mutex<Vec<Entry>>> =\n    dsu::State::new(\"store\", Default::default);\n\
    /// A limit.\nstatic LIMIT: usize = 10; // ten\n\
    /// Counts.\n#[dsu::updateable]\nfn count() -> usize {\n    // one lock\n    STORE.with(|c| c.lock().unwrap().len())\n}\n\
    /// Adds one.\nfn plain(x: u32) -> u32 {\n    x + 1 /* always */\n}\n\
    #[dsu::updateable]\nimpl Entry {\n    /// Its length.\n    fn len(&self) -> usize { self.name.len() }\n\
    /// Picks.\n    fn pick<T: Clone>(&self, t: &T) -> T {\n        t.clone()\n    }\n}\n";

/// A commit that only edits documentation, comments and formatting has nothing to patch and
/// nothing to refuse.
#[test]
fn documentation_comments_and_formatting_are_no_change() {
    let r = cmp_main("docs", DOCS_V1, DOCS_V2);
    assert_eq!(r, Report::default());
    // The same items with one behaviour change are seen.
    let r = cmp_main("docs-and-code", DOCS_V1, &DOCS_V2.replace("x + 1", "x + 2"));
    assert_eq!(paths(&r.non_updateable_changed), ["app::plain"]);
    assert_eq!(r.crates_changed, ["app"]);
}

/// A method the macros leave without a slot (`dsu_syntax::can_be_updateable`, the rule they
/// apply) is refused when it changes, with the rule's reason and the part it is about.
#[test]
fn a_method_that_cannot_be_updateable_is_refused_when_changed() {
    let old = "#[dsu::updateable]\nimpl Store {\n\
        fn get(&self) -> u32 { 1 }\n\
        fn longest<'a>(&'a self, o: &'a str) -> &'a str { o }\n\
        fn insert<K: Into<String>>(&mut self, k: K) { let _ = k.into(); }\n\
        fn extend(&mut self, items: impl IntoIterator<Item = u32>) { for _ in items {} }\n\
        const fn capacity() -> usize { 16 }\n\
        fn keys(&self) -> impl Iterator<Item = u32> { 0..1 }\n\
        fn unchanged<T>(&self, t: T) -> T { t }\n}\n\
        #[dsu::updateable]\nimpl Router for Store {\n\
        async fn route(&self, req: &Request) -> &str { \"a\" }\n}\n\
        #[dsu::updateable]\nimpl Store {\n\
        async fn route(&self, req: &Request) -> &str { \"a\" }\n}\n";
    let new = old
        .replace("{ 1 }", "{ 2 }")
        .replace("{ o }", "{ let _ = 1; o }")
        .replace("let _ = k.into();", "let _: String = k.into();")
        .replace("for _ in items {}", "for i in items { let _ = i; }")
        .replace("{ 16 }", "{ 32 }")
        .replace("{ 0..1 }", "{ 0..2 }")
        .replace("{ \"a\" }", "{ \"b\" }");
    let r = cmp_main("fixed", old, &new);
    // The same `async fn` has a slot in an inherent impl, not in a trait impl.
    assert_eq!(paths(&r.functions_changed), ["app::Store::get", "app::Store::longest", "app::Store::route"]);
    let refused: Vec<(usize, &str)> = r.refusals.iter().map(|x| (x.line, x.reason.as_str())).collect();
    assert_eq!(refused.len(), 5, "{refused:?}");
    let expect = [
        (5, "app::Store::insert", "cannot make a generic function updateable", "(`K : Into<String>`)"),
        (6, "app::Store::extend", "cannot use `impl Trait` in argument position", "(`impl IntoIterator<Item = u32>`)"),
        (7, "app::Store::capacity", "cannot make a `const fn` updateable", "(`const`)"),
        (8, "app::Store::keys", "cannot use `impl Trait` in return position", "(`impl Iterator<Item = u32>`)"),
        (13, "app::<Store as Router>::route", "returns a borrow and takes more than one reference", "(`-> &str`)"),
    ];
    for ((line, reason), (want_line, path, why, part)) in refused.iter().zip(expect) {
        assert_eq!(*line, want_line, "{reason}");
        assert!(reason.starts_with(&format!("`{path}` changed, but it cannot be updateable: ")), "{reason}");
        assert!(reason.contains(why) && reason.contains(part), "{reason}");
    }
    assert!(r.non_updateable_changed.is_empty() && r.functions_added.is_empty(), "{r:?}");
}

#[test]
fn a_plain_method_outside_an_updateable_impl_is_reported_as_today() {
    let old = "impl Store { fn insert<K>(&mut self, k: K) {} }\n";
    let r = cmp_main("plain-method", old, &old.replace("{}", "{ let _ = 1; }"));
    assert_eq!(paths(&r.non_updateable_changed), ["app::Store::insert"]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
}
