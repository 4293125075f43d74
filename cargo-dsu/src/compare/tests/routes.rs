//! Changed signatures, removed functions and changed traits: routing, the callers the patch
//! carries, and the callers and live state it refuses (`routes.rs`).

use super::*;

const CALLERS_V1: &str = "use std::collections::HashMap;\n\
    pub struct Store { n: u32 }\n\
    #[dsu::updateable]\n\
    impl Store {\n\
        pub fn new(n: u32) -> Store { Store { n } }\n\
        pub fn get(&self) -> u32 { self.n }\n\
        pub fn twice(&self) -> Store { Self::new(self.get() * 2) }\n\
    }\n\
    pub struct Other;\n\
    #[dsu::updateable]\n\
    impl Other {\n\
        pub fn new() -> Other { Other }\n\
        pub fn make() -> Other { Self::new() }\n\
    }\n\
    #[dsu::updateable]\nfn tag() -> &'static str { \"v1\" }\n\
    #[dsu::updateable]\nfn label(line: &str) -> String { format!(\"[{}] {line}\", tag()) }\n\
    #[dsu::updateable]\nfn total(s: &Store) -> u64 { s.get().into() }\n\
    #[dsu::updateable]\nfn build() -> Store { Store::new(1) }\n\
    #[dsu::updateable]\nfn by_value() -> Vec<Store> { [1, 2].into_iter().map(Store::new).collect() }\n\
    #[dsu::updateable]\nfn unrelated() -> usize { let m: HashMap<u32, u32> = HashMap::new(); m.len() }\n";

/// `Store::new` gains a parameter, `Store::get` and `tag` change their return type; the callers
/// whose text changes are changed, those whose text does not are carried, others are left alone.
fn callers_v2() -> String {
    CALLERS_V1
        .replace("pub fn new(n: u32) -> Store { Store { n } }", "pub fn new(n: u32, m: u32) -> Store { Store { n: n * m } }")
        .replace("pub fn get(&self) -> u32 { self.n }", "pub fn get(&self) -> u64 { self.n.into() }")
        .replace("Self::new(self.get() * 2)", "Self::new(self.get() as u32, 2)")
        .replace("fn tag() -> &'static str { \"v1\" }", "fn tag() -> String { \"v2\".into() }")
        .replace("Store::new(1) }", "Store::new(1, 1) }")
        .replace(".map(Store::new)", ".map(|n| Store::new(n, 1))")
}

#[test]
fn changed_signatures_are_routed_and_unchanged_callers_carried() {
    let r = cmp_main("routes-callers", CALLERS_V1, &callers_v2());
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.signatures_changed), ["app::Store::new", "app::Store::get", "app::tag"]);
    assert_eq!(paths(&r.functions_changed), ["app::Store::twice", "app::build", "app::by_value"]);
    // `label` calls `tag` inside `format!`, `total` calls `get` as a method: their text is the
    // same, their calls are not. `Other::make`'s `Self::new` and `HashMap::new` are other
    // functions of the same name.
    assert_eq!(paths(&r.functions_carried), ["app::label", "app::total"]);
    assert_eq!(r.manifest_routed(), ["app::Store::get", "app::Store::new", "app::tag"]);
    assert_eq!(r.manifest_carried(), ["app::label", "app::total"]);
    assert!(!r.is_empty_change());
}

#[test]
fn argument_names_are_not_a_signature() {
    let old = "#[dsu::updateable]\nfn f(n: u32, mut v: Vec<u8>) -> usize { v.push(1); v.len() + n as usize }\n";
    let new = "#[dsu::updateable]\nfn f(count: u32, mut bytes: Vec<u8>) -> usize { bytes.push(1); bytes.len() + count as usize }\n";
    let r = cmp_main("routes-names", old, new);
    assert!(r.signatures_changed.is_empty());
    assert_eq!(paths(&r.functions_changed), ["app::f"]);
}

#[test]
fn the_binarys_main_may_call_a_changed_constructor() {
    // A server's `main` builds its state once; a constructor gaining a parameter changes that
    // call, which takes effect at the next start, as any plain function's change does.
    let old = "pub struct Server { port: u16 }\n\
               #[dsu::updateable]\nimpl Server {\n    pub fn new(port: u16) -> Server { Server { port } }\n}\n\
               fn main() { let s = Server::new(1); let _ = s.port; }\n\
               mod inner { pub fn main() -> u16 { super::Server::new(2).port } }\n";
    let new = old
        .replace("pub fn new(port: u16) -> Server { Server { port } }", "pub fn new(port: u16, v6: bool) -> Server { let _ = v6; Server { port } }")
        .replace("Server::new(1)", "Server::new(1, false)")
        .replace("Server::new(2)", "Server::new(2, true)");
    let r = cmp_main("routes-main", old, &new);
    assert_eq!(paths(&r.signatures_changed), ["app::Server::new"]);
    assert_eq!(paths(&r.non_updateable_changed), ["app::main", "app::inner::main"]);
    // Only the crate root's `main` is the entry point: another function named `main` is refused.
    let refused: Vec<&str> = r.refusals.iter().map(|x| x.reason.as_str()).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].starts_with("`app::inner::main` calls `app::Server::new`"), "{}", refused[0]);
}

#[test]
fn a_caller_that_cannot_be_switched_is_refused_naming_it() {
    let old = "#[dsu::updateable]\nfn greet(n: &str) -> String { n.into() }\n\
               pub fn command(arg: &str) -> String { greet(arg) }\n\
               pub trait Greeter { fn hello(&self) -> String { greet(\"x\") } }\n\
               #[dsu::updateable]\nfn caller(arg: &str) -> String { greet(arg) }\n";
    let new = old.replace("fn greet(n: &str) -> String { n.into() }", "fn greet(n: &str, loud: bool) -> String { let _ = loud; n.into() }")
        .replace("greet(arg)", "greet(arg, true)")
        .replace("greet(\"x\")", "greet(\"x\", false)");
    let r = cmp_main("routes-plain", old, &new);
    assert_eq!(paths(&r.signatures_changed), ["app::greet"]);
    assert_eq!(paths(&r.functions_changed), ["app::caller"]);
    let refused: Vec<(usize, &str)> = r.refusals.iter().map(|x| (x.line, x.reason.as_str())).collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(refused[0].0, 3);
    assert!(refused[0].1.starts_with("`app::command` calls `app::greet`, whose signature changed (was `fn greet(&str) -> String`), but it is not #[dsu::updateable]"), "{}", refused[0].1);
    assert_eq!(refused[1].0, 4);
    assert!(refused[1].1.contains("`app::Greeter::hello` calls `app::greet`"), "{}", refused[1].1);
    assert!(refused[1].1.contains("a trait's provided method"), "{}", refused[1].1);
}

const POINTERS_V1: &str = "use std::sync::Mutex;\n\
    #[dsu::updateable]\nfn shout(s: &str) -> String { s.to_uppercase() }\n\
    #[dsu::updateable]\nfn double(n: u32) -> u32 { n * 2 }\n\
    static HOOKS: dsu::State<Mutex<Vec<fn(&str) -> String>>> = dsu::State::new(\"hooks\", Default::default);\n\
    static COUNTERS: dsu::State<Mutex<Vec<fn(u64) -> u64>>> = dsu::State::new(\"counters\", Default::default);\n\
    type Hook = fn(&'static str) -> String;\n\
    pub struct Registry { pub named: Vec<(String, Hook)> }\n\
    static REGISTRY: dsu::State<Mutex<Registry>> = dsu::State::new(\"registry\", || Mutex::new(Registry { named: Vec::new() }));\n\
    static FALLBACK: Mutex<Option<Box<dyn Fn(&str) -> String + Send>>> = Mutex::new(None);\n\
    pub struct Conn { pub on_line: dsu::Cell<Option<fn(&str) -> String>> }\n";

#[test]
fn old_signature_pointers_in_live_state_are_refused_naming_the_holder() {
    let new = POINTERS_V1.replace(
        "fn shout(s: &str) -> String { s.to_uppercase() }",
        "fn shout(s: &str, times: usize) -> String { s.to_uppercase().repeat(times) }",
    );
    let r = cmp_main("routes-pointers", POINTERS_V1, &new);
    assert_eq!(paths(&r.signatures_changed), ["app::shout"]);
    let reasons = super::reasons(&r);
    let holder = |what: &str| reasons.iter().find(|x| x.starts_with(what)).unwrap_or_else(|| panic!("{what} in {reasons:#?}"));
    assert!(holder("state cell `app::HOOKS` holds `dsu::State<Mutex<Vec<fn(&str) -> String>>>`: `fn(&str) -> String` can point at `app::shout`").contains("whose signature changed"));
    assert!(holder("state cell `app::REGISTRY`").contains("(through Registry.named, type Hook)"));
    assert!(holder("static `app::FALLBACK`").contains("`dyn Fn(&str) -> String + Send`"));
    assert!(holder("field cell `dsu::Cell<Option<fn(&str) -> String>>` (struct Conn, field on_line)").contains("app::shout"));
    // Another function's shape: no refusal for `COUNTERS`, and `double` is untouched.
    assert_eq!(reasons.len(), 4, "{reasons:#?}");
    assert_eq!(r.refusals[0].line, 6, "{:?}", r.refusals[0]);

    // A removed function: no caller can name it, but a pointer to it in live state would keep
    // calling it.
    let removed = POINTERS_V1.replace("#[dsu::updateable]\nfn double(n: u32) -> u32 { n * 2 }\n", "")
        .replace("fn(u64) -> u64", "fn(u32) -> u32");
    let old = POINTERS_V1.replace("fn(u64) -> u64", "fn(u32) -> u32");
    let r = cmp_main("routes-removed", &old, &removed);
    assert_eq!(paths(&r.functions_removed), ["app::double"]);
    let reasons = super::reasons(&r);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(reasons[0].starts_with("state cell `app::COUNTERS`"), "{}", reasons[0]);
    assert!(reasons[0].contains("can point at `app::double` (`fn double(u32) -> u32`), which the patch removes"), "{}", reasons[0]);

    // Removed with no pointer anywhere: nothing to refuse.
    let r = cmp_main("routes-removed-free", POINTERS_V1, &POINTERS_V1.replace("#[dsu::updateable]\nfn double(n: u32) -> u32 { n * 2 }\n", ""));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
}

const TRAITS_V1: &str = "use std::sync::Mutex;\n\
    pub trait Handler { fn handle(&self, x: u32) -> u32; }\n\
    pub struct Doubler;\n\
    #[dsu::updateable]\n\
    impl Handler for Doubler { fn handle(&self, x: u32) -> u32 { x * 2 } }\n\
    #[dsu::updateable]\nfn run(h: &dyn Handler, x: u32) -> u32 { h.handle(x) }\n\
    #[dsu::updateable]\nfn quiet(x: u32) -> u32 { x }\n";

fn traits_v2(v1: &str) -> String {
    v1.replace("fn handle(&self, x: u32) -> u32; }", "fn handle(&self, x: u32) -> u32; fn name(&self) -> String { \"h\".into() } }")
}

#[test]
fn changed_trait_method_sets_are_refused_only_where_an_object_can_be_old() {
    // No object of the trait is held, and `run` is not replaced: reported, nothing refused.
    let r = cmp_main("routes-trait-free", TRAITS_V1, &traits_v2(TRAITS_V1));
    assert_eq!(paths(&r.traits_changed), ["app::Handler"]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);

    // A cell holds trait objects of it: refused, naming the cell.
    let held = format!(
        "{TRAITS_V1}pub struct Pipeline {{ pub stages: Vec<Box<dyn Handler + Send>> }}\n\
         static PIPELINE: dsu::State<Mutex<Pipeline>> = dsu::State::new(\"pipeline\", || Mutex::new(Pipeline {{ stages: Vec::new() }}));\n"
    );
    let r = cmp_main("routes-trait-held", &held, &traits_v2(&held));
    let reasons = super::reasons(&r);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(reasons[0].starts_with("state cell `app::PIPELINE` holds `dsu::State<Mutex<Pipeline>>`: `dyn Handler + Send` (through Pipeline.stages) is a trait object of `Handler`, whose method set changed"), "{}", reasons[0]);

    // A trait whose supertrait changed: its objects' vtables change too.
    let sub = format!(
        "{TRAITS_V1}pub trait Named: Handler {{ fn label(&self) -> String; }}\n\
         static NAMED: Mutex<Option<Box<dyn Named + Send>>> = Mutex::new(None);\n"
    );
    let r = cmp_main("routes-trait-super", &sub, &traits_v2(&sub));
    assert_eq!(paths(&r.traits_changed), ["app::Handler", "app::Named"]);
    let reasons = super::reasons(&r);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(reasons[0].starts_with("static `app::NAMED` holds `Mutex<Option<Box<dyn Named + Send>>>`: `dyn Named + Send` is a trait object of `Named`"), "{}", reasons[0]);

    // `run` replaced in place with a trait object in its signature: the running program's
    // callers would hand it old objects.
    let v2 = traits_v2(TRAITS_V1).replace("{ h.handle(x) }", "{ h.handle(x) + 1 }");
    let r = cmp_main("routes-trait-sig", TRAITS_V1, &v2);
    let reasons = super::reasons(&r);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(reasons[0].starts_with("`app::run` takes or returns `dyn Handler`, a trait object of `Handler`, whose method set changed"), "{}", reasons[0]);
}

#[test]
fn callers_are_found_across_crates_and_in_macros() {
    let lib_v1 = "pub mod make {\n#[dsu::updateable]\npub fn widget(n: u32) -> u32 { n }\n}\n";
    let lib_v2 = "pub mod make {\n#[dsu::updateable]\npub fn widget(n: u32) -> u64 { n.into() }\n}\n";
    let main = "use core_lib::make;\n\
                #[dsu::updateable]\nfn show() -> String { format!(\"{}\", make::widget(1)) }\n\
                #[dsu::updateable]\nfn debug() { println!(\"{:?}\", core_lib::make::widget(2)); }\n\
                #[dsu::updateable]\nfn other() -> u32 { 3 }\n";
    let units = [unit("core_lib", "lib/src/lib.rs"), unit("app", "src/main.rs")];
    let (r, _) = cmp_units(
        "routes-crates",
        &units,
        &[("lib/src/lib.rs", lib_v1), ("src/main.rs", main)],
        &[("lib/src/lib.rs", lib_v2), ("src/main.rs", main)],
    );
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.signatures_changed), ["core_lib::make::widget"]);
    assert_eq!(paths(&r.functions_carried), ["app::show", "app::debug"]);
}

/// The refusals as `cargo dsu patch` prints them.
#[test]
fn refusal_messages() {
    let old = format!(
        "{POINTERS_V1}pub fn command(arg: &str) -> String {{ shout(arg) }}\n"
    );
    let new = old
        .replace("fn shout(s: &str) -> String { s.to_uppercase() }", "fn shout(s: &str, times: usize) -> String { s.to_uppercase().repeat(times) }")
        .replace("{ shout(arg) }", "{ shout(arg, 1) }");
    let r = cmp_main("routes-messages", &old, &new);
    insta::assert_snapshot!(crate::report::render(&r));
}

/// A method is named through its type's other names, `Self`, its trait, and as a value.
#[test]
fn method_callers_are_found_through_other_names() {
    let old = "pub struct Store;\n\
        pub trait Make { fn make(n: u32) -> Self; }\n\
        #[dsu::updateable]\nimpl Make for Store { fn make(n: u32) -> Store { let _ = n; Store } }\n\
        mod other { pub struct Store; impl Store { pub fn make(n: u32) -> Store { let _ = n; Store } } }\n\
        type Alias = Store;\n\
        use self::Store as Renamed;\n\
        #[dsu::updateable]\nfn by_alias() -> Store { Alias::make(1) }\n\
        #[dsu::updateable]\nfn by_rename() -> Store { Renamed::make(1) }\n\
        #[dsu::updateable]\nfn by_trait() -> Store { <Store as Make>::make(1) }\n\
        #[dsu::updateable]\nfn by_qself() -> Store { <Store>::make(1) }\n\
        #[dsu::updateable]\nfn as_value() -> Vec<Store> { vec![1].into_iter().map(Store::make).collect() }\n\
        #[dsu::updateable]\nfn elsewhere() -> other::Store { other::Store::make(1) }\n";
    let new = old.replace("fn make(n: u32) -> Self; }", "fn make(n: u64) -> Self; }")
        .replace("impl Make for Store { fn make(n: u32)", "impl Make for Store { fn make(n: u64)");
    let r = cmp_main("routes-names-of", old, &new);
    assert_eq!(paths(&r.signatures_changed), ["app::<Store as Make>::make"]);
    assert_eq!(paths(&r.traits_changed), ["app::Make"]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    // `other::Store::make` is another type's function of that name: its path says so.
    assert_eq!(
        paths(&r.functions_carried),
        ["app::by_alias", "app::by_rename", "app::by_trait", "app::by_qself", "app::as_value"]
    );
}
