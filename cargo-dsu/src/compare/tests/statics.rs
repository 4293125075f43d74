//! Statics: which changes are refused, what the program's build inserts to export them, what a
//! patch puts in their place, and (compiled by rustc, run) that a patch's code reaches the
//! program's instances.

use super::*;
use crate::compare::statics::{self, CrateFlags, HostStatic, Kind, Layout, Program, Statics};
use std::collections::{BTreeMap, BTreeSet};

const OLD: &str = "use std::cell::Cell;\nuse std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};\n\
    static LIMIT: usize = 10;\n\
    static HITS: AtomicU64 = AtomicU64::new(0);\n\
    static SEEN: AtomicU32 = AtomicU32::new(0);\n\
    static mut FLAG: bool = false;\n\
    static START: AtomicU64 = AtomicU64::new(0);\n\
    static GONE: AtomicU64 = AtomicU64::new(0);\n\
    thread_local! { static CALLS: Cell<u32> = Cell::new(0); static DEPTH: Cell<u32> = Cell::new(0); }\n\
    fn handle() { static LOCAL: AtomicU64 = AtomicU64::new(0); }\n\
    static MODE: u32 = 1;\n";

#[test]
fn a_changed_type_or_kind_is_refused_and_everything_else_is_not() {
    let new = "use std::cell::Cell;\nuse std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};\n\
        static LIMIT: usize = 20;\n\
        static HITS: AtomicU64 = AtomicU64::new(0);\n\
        static SEEN: AtomicU64 = AtomicU64::new(0);\n\
        static FLAG: AtomicBool = AtomicBool::new(false);\n\
        static START: AtomicU64 = AtomicU64::new(5);\n\
        static ADDED: AtomicU64 = AtomicU64::new(0);\n\
        thread_local! { static CALLS: Cell<u64> = Cell::new(0); static DEPTH: Cell<u32> = Cell::new(0); }\n\
        fn handle() { static LOCAL: AtomicU32 = AtomicU32::new(0); }\n\
        static MODE: AtomicU32 = AtomicU32::new(1);\n";
    let r = cmp_main("statics-changes", OLD, new);
    let found: Vec<(usize, &str)> = r.refusals.iter().map(|x| (x.line, x.reason.as_str())).collect();
    assert_eq!(r.refusals.len(), 5, "{found:#?}");
    assert!(found[0].0 == 5 && found[0].1.contains("static `app::SEEN` changed type (`AtomicU32` to `AtomicU64`)"), "{found:#?}");
    assert!(found[0].1.contains("dsu::State cell"), "{found:#?}");
    assert!(found[1].0 == 6 && found[1].1.contains("static `app::FLAG` changed from a `static mut` to a `static`"), "{found:#?}");
    assert!(found[2].0 == 9 && found[2].1.contains("static `app::CALLS` changed type (`Cell<u32>` to `Cell<u64>`)"), "{found:#?}");
    assert!(found[3].0 == 10 && found[3].1.contains("static `app::handle::LOCAL` changed type"), "{found:#?}");
    // A constant that becomes a static holding state: the program never exported it.
    assert!(found[4].0 == 11 && found[4].1.contains("static `app::MODE` changed type (`u32` to `AtomicU32`)"), "{found:#?}");
    // A constant may change (the patch's code sees the new value); the initial value of a
    // shared static may change too, and the report says the program keeps its own.
    assert_eq!(paths(&r.statics_kept), ["app::START"]);
}

#[test]
fn a_static_holding_a_changed_type_is_refused_and_a_state_cell_is_transformed() {
    let v1 = "use std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct Entry { pub hits: u32 }\n\
        static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());\n\
        static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        static RENAMED: dsu::State<u32> = dsu::State::new(\"a\", || 0);\n";
    let v2 = v1.replace("pub hits: u32 }", "pub hits: u64 }").replace("State::new(\"a\"", "State::new(\"b\"")
        + "#[dsu::transform(from = dsu_old::Entry)]\n\
           fn up(old: &dsu_old::Entry) -> Entry { Entry { hits: old.hits.into() } }\n";
    let r = cmp_main("statics-changed-type", v1, &v2);
    let reasons = reasons(&r);
    assert_eq!(reasons.len(), 2, "{reasons:#?}");
    assert!(reasons[0].contains("static `app::CACHE` holds `app::Entry`, whose layout changes"), "{reasons:#?}");
    assert!(reasons[1].contains("state cell `app::RENAMED` changed its declaration"), "{reasons:#?}");
    assert_eq!(paths(&r.cells_transformed), ["app::STORE (cell \"store\")"]);
}

/// Every kind of static, in modules and in a function body; and what is not shared.
const KINDS: &str = "use std::sync::atomic::{AtomicU64, Ordering};\n\
    /// Counted.\n\
    pub static HITS: AtomicU64 = AtomicU64::new(0);\n\
    static mut FLAG: bool = false;\n\
    #[no_mangle]\n\
    static NAMED: AtomicU64 = AtomicU64::new(0);\n\
    static NAMES: &[&str] = &[\"a\"];\n\
    static CELL: dsu::State<u32> = dsu::State::new(\"cell\", || 0);\n\
    static TABLE: std::sync::Mutex<Vec<&str>> =\n    std::sync::Mutex::new(Vec::new());\n\
    thread_local! {\n    static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };\n}\n\
    lazy_static! { pub static ref GREETING: String = String::from(\"hi\"); }\n\
    pub mod inner {\n    pub fn next() -> u64 {\n        static NEXT: super::AtomicU64 = super::AtomicU64::new(0);\n        NEXT.fetch_add(1, super::Ordering::Relaxed)\n    }\n}\n\
    fn main() {}\n";

fn found(name: &str, text: &str) -> (Statics, PathBuf) {
    let dir = checkout(name, &[("src/main.rs", text)]);
    let units = [unit("app", "src/main.rs")];
    let tree = crate::compare::tree::Tree::read(&units, &dir).unwrap();
    (Statics::find(&tree, &units, &dir).unwrap(), dir)
}

#[test]
fn every_kind_is_found_under_its_path_and_symbol() {
    let (s, dir) = found("statics-kinds", KINDS);
    let listed: Vec<(&str, &str, Option<statics::NotShared>)> =
        s.found.iter().map(|f| (f.path.as_str(), f.symbol.as_str(), f.not_shared)).collect();
    use statics::NotShared::*;
    assert_eq!(
        listed,
        [
            ("app::HITS", "__dsu_static_app::HITS", None),
            ("app::FLAG", "__dsu_static_app::FLAG", None),
            ("app::NAMED", "NAMED", None),
            ("app::NAMES", "__dsu_static_app::NAMES", Some(Constant)),
            ("app::CELL", "__dsu_static_app::CELL", Some(StateCell)),
            ("app::TABLE", "__dsu_static_app::TABLE", None),
            ("app::CALLS", "__dsu_static_app::CALLS", None),
            ("app::GREETING", "__dsu_static_app::GREETING", None),
            ("app::inner::next::NEXT", "__dsu_static_app::inner::next::NEXT", None),
        ]
    );
    let kinds: Vec<Kind> = s.found.iter().map(|f| f.kind).collect();
    assert_eq!(kinds[..3], [Kind::Plain, Kind::Mut, Kind::Plain]);
    assert_eq!(kinds[6..8], [Kind::ThreadLocal, Kind::LazyStatic]);
    let _ = std::fs::remove_dir_all(dir);
}

/// The program's build of `text` (as `src/main.rs`): what it exports, and the file it compiles.
fn host(text: &str) -> (Vec<HostStatic>, String) {
    let dir = checkout("statics-host", &[("src/main.rs", text)]);
    let plan = statics::host_plan(&unit("app", "src/main.rs"), &dir, CrateFlags { has_dsu: true, forbids_unsafe: false }).unwrap();
    let edits: Vec<&statics::Edit> = plan.edits.iter().collect();
    let out = statics::apply_edits(text, &edits).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (plan.statics, out)
}

#[test]
fn the_build_exports_every_shared_static_without_moving_a_line() {
    let (exported, out) = host(KINDS);
    assert_eq!(out.lines().count(), KINDS.lines().count(), "{out}");
    let symbols: Vec<&str> = exported.iter().map(|h| h.symbol.as_str()).collect();
    assert_eq!(
        symbols,
        [
            "__dsu_static_app::HITS",
            "__dsu_static_app::FLAG",
            "NAMED",
            "__dsu_static_app::TABLE",
            "__dsu_static_app::CALLS",
            "__dsu_static_app::GREETING",
            "__dsu_static_app::inner::next::NEXT",
        ]
    );
    let line = |n: usize| out.lines().nth(n - 1).unwrap().to_string();
    assert!(line(3).starts_with("#[unsafe(export_name = \"__dsu_static_app::HITS\")] #[allow(unsafe_code)] pub static HITS"), "{}", line(3));
    assert!(line(4).contains("#[allow(unsafe_code)] static mut FLAG: bool = false; #[unsafe(export_name = \"__dsu_layout_app::FLAG\")]"), "{}", line(4));
    assert!(line(6).starts_with("static NAMED") && line(6).contains("__dsu_layout_app::NAMED"), "named: only its layout: {}", line(6));
    assert!(!line(7).contains("export_name") && !line(8).contains("export_name"), "neither a constant nor a cell");
    assert!(line(10).contains("Mutex::new(Vec::new()); #[unsafe(export_name = \"__dsu_layout_app::TABLE\")]"), "after the item's end: {}", line(10));
    assert!(squash(&line(10)).contains("Probe::<std::sync::Mutex<Vec<&'staticstr>>>::FP"), "{}", line(10));
    assert!(line(12).contains("static CALLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };"));
    let tls = squash(&line(13));
    assert!(tls.starts_with("}#[unsafe(export_name=\"__dsu_static_app::CALLS\")]"), "{tls}");
    assert!(tls.contains("static__DSU_SHARED_CALLS:::std::thread::LocalKey<std::cell::Cell<u64>>=CALLS;"), "{tls}");
    let lazy = squash(&line(14));
    assert!(lazy.contains("fn__dsu_shared_GREETING()->&'staticString{&*GREETING}"), "{lazy}");
    assert!(squash(&line(17)).contains("staticNEXT:super::AtomicU64=super::AtomicU64::new(0);#[unsafe(export_name=\"__dsu_layout_app::inner::next::NEXT\")]"));
}

#[test]
fn a_crate_that_forbids_unsafe_code_exports_nothing_and_says_why() {
    let dir = checkout("statics-forbid", &[("src/main.rs", &format!("#![forbid(unsafe_code)]\n{KINDS}"))]);
    let flags = CrateFlags::of(&[], &dir.join("src/main.rs"));
    assert!(flags.forbids_unsafe);
    let plan = statics::host_plan(&unit("app", "src/main.rs"), &dir, flags).unwrap();
    assert!(plan.edits.is_empty());
    assert!(plan.statics.iter().all(|h| h.not_exported.as_deref().is_some_and(|w| w.contains("forbids `unsafe_code`"))));
    let _ = std::fs::remove_dir_all(dir);
}

fn layout(size: u64) -> Layout {
    Layout { size, align: 8, fingerprint: [1, 2] }
}

#[test]
fn a_patch_declares_what_the_program_has_and_keeps_what_it_adds() {
    let (exported, _) = host(KINDS);
    let added = "static ADDED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);\n";
    let new = KINDS.replace("thread_local! {\n", "thread_local! {\n    static MORE: u8 = 0;\n") + added;
    let dir = checkout("statics-patch", &[("src/main.rs", &new)]);
    let units = [unit("app", "src/main.rs")];
    let layouts: BTreeMap<String, Layout> =
        exported.iter().map(|h| (h.symbol.replace("__dsu_static_", "__dsu_layout_").replace("NAMED", "__dsu_layout_app::NAMED"), layout(8))).collect();
    let symbols: BTreeSet<String> = exported.iter().map(|h| h.symbol.clone()).collect();
    let program = Program {
        statics: vec![Some(&exported)],
        not_read: vec![None],
        layouts: &layouts,
        exported: &symbols,
        flags: vec![CrateFlags { has_dsu: true, forbids_unsafe: false }],
    };
    let plan = statics::patch_plan(&units, &dir, &program).unwrap();
    assert!(plan.refusals.is_empty(), "{:?}", plan.refusals);
    assert_eq!(
        plan.shared,
        ["app::HITS", "app::FLAG", "app::NAMED", "app::TABLE", "app::CALLS", "app::GREETING", "app::inner::next::NEXT"]
    );
    let edits: Vec<&statics::Edit> = plan.edits.iter().collect();
    let out = statics::apply_edits(&new, &edits).unwrap();
    for (n, (a, b)) in out.lines().zip(new.lines()).enumerate() {
        let first = |l: &str| l.split_whitespace().next().unwrap_or("").to_string();
        assert!(a.is_empty() || b.is_empty() || first(a) == first(b) || a.contains("extern"), "line {}: {a:?} for {b:?}", n + 1);
    }
    assert_eq!(out.lines().count(), new.lines().count(), "lines keep their numbers:\n{out}");
    let s = squash(&out);
    assert!(s.contains("#[allow(unsafe_code)]unsafeextern\"Rust\"{#[link_name=\"__dsu_static_app::HITS\"]#[doc=\"Counted.\"]pubsafestaticHITS:AtomicU64;}"), "{out}");
    assert!(s.contains("unsafeextern\"Rust\"{#[link_name=\"__dsu_static_app::FLAG\"]staticmutFLAG:bool;}"), "{out}");
    assert!(s.contains("#[link_name=\"NAMED\"]safestaticNAMED:AtomicU64;"), "{out}");
    assert!(s.contains("safestaticTABLE:std::sync::Mutex<Vec<&'staticstr>>;"), "elided lifetimes made 'static: {out}");
    assert!(s.contains("::core::mem::size_of::<AtomicU64>()==8&&::core::mem::align_of::<AtomicU64>()==8"), "{out}");
    assert!(s.contains("dsu:static`app::HITS`hasanothertypeinthispatchthanintherunningprogram"), "{out}");
    assert!(s.contains("Probe::<AtomicU64>::FP.0;::core::assert!(::core::primitive::u64::from_le_bytes([f[0]"), "{out}");
    // The thread-local the program has is declared; the one the patch adds stays its own.
    assert!(s.contains("thread_local!{staticMORE:u8=0;}"), "{out}");
    assert!(s.contains("safestaticCALLS:::std::thread::LocalKey<std::cell::Cell<u64>>;"), "{out}");
    assert!(s.contains("safefn__dsu_shared_GREETING()->&'staticString;"), "{out}");
    assert!(s.contains("pubstructGREETING{__private_field:()}"), "{out}");
    assert!(s.contains("impl::core::ops::DerefforGREETING{typeTarget=String;fnderef(&self)->&String{__dsu_shared_GREETING()}}"), "{out}");
    assert!(s.contains("fnnext()->u64{#[allow(unsafe_code)]unsafeextern\"Rust\"{#[link_name=\"__dsu_static_app::inner::next::NEXT\"]safestaticNEXT:super::AtomicU64;}"), "{out}");
    assert!(s.contains("staticNAMES:&[&str]=&[\"a\"];") && s.contains("staticCELL:dsu::State<u32>"), "not shared: {out}");
    assert!(s.contains(&squash(added)), "added: the patch's own: {out}");

    // The program has it with another type: refused, naming it (a patch built without the
    // compare step meets this here).
    let mut other = exported.clone();
    other[0].type_text = "AtomicU32".into();
    let program = Program { statics: vec![Some(&other)], ..program };
    let plan = statics::patch_plan(&units, &dir, &program).unwrap();
    assert_eq!(plan.refusals.len(), 1, "{:?}", plan.refusals);
    assert!(plan.refusals[0].reason.contains("static `app::HITS` changed type (`AtomicU32` to `AtomicU64`)"));
    let _ = std::fs::remove_dir_all(dir);
}
