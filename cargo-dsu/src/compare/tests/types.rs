//! Type changes: transformers, routing, cells, and the code inserted for them, in any module
//! of any crate of the set.

use super::*;

// From the single-root layout of earlier versions: type changes of the crate root.

#[test]
fn type_change_is_refused_and_reported() {
    let r = cmp_main("type", "struct Entry { a: u32 }\n", "struct Entry { a: u64 }\nstruct New;\n");
    assert_eq!(paths(&r.types_changed), ["app::Entry"]);
    assert_eq!(r.refusals.len(), 1);
    assert!(r.refusals[0].reason.contains("type `app::Entry` changed and is not #[dsu::updateable]"));
}

const V1: &str = "use std::collections::HashMap;\nuse std::sync::Mutex;\n\
    #[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }\n\
    static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n";

#[test]
fn type_change_without_transformer_prints_a_stub() {
    let v2 = V1.replace("pub hits: u32 }", "pub hits: u64, pub seen: bool }");
    let r = cmp_main("stub", V1, &v2);
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    let reason = &r.refusals[0].reason;
    assert!(reason.contains("no transformer"), "{reason}");
    assert!(reason.contains("fn upgrade_entry(old: &dsu_old::Entry) -> Entry"), "{reason}");
    assert!(reason.contains("name: old.name.clone()"), "{reason}");
    assert!(reason.contains("seen: todo!(\"new field\")"), "{reason}");
}

#[test]
fn type_change_with_transformer_generates_old_definitions_and_cell_transform() {
    let v2 = V1.replace("pub hits: u32 }", "pub hits: u64 }")
        + "#[dsu::transform(from = dsu_old::Entry)]\n\
        fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n";
    let r = cmp_main("transformer", V1, &v2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(r.cells_transformed.len(), 1);
    // Everything goes at the end of the crate root, where today's patch build appends it.
    assert_eq!(r.generated.len(), 1);
    assert_eq!(
        (r.generated[0].file.as_path(), r.generated[0].offset),
        (std::path::Path::new("src/main.rs"), v2.len())
    );
    let g = squash(&generated(&r));
    assert!(g.contains("pubmoddsu_old{usesuper::*;"), "{g}");
    assert!(g.contains("pubstructEntry{pubname:String,pubhits:u32}"), "old definition: {g}");
    assert!(
        g.contains("CellTransform::new::<Mutex<HashMap<String,dsu_old::Entry>>,Mutex<HashMap<String,Entry>>>(\"store\")"),
        "{g}"
    );
    assert!(!r.is_empty_change());
}

#[test]
fn derived_transformer_only_for_trivial_changes() {
    let trivial = V1.replace("#[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry { pub hits: u32, pub name: String, pub seen: bool }");
    let r = cmp_main("trivial", V1, &trivial);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    let g = squash(&generated(&r));
    // The new field from `Default`; the kept ones carried (moved, not copied or transformed).
    assert!(g.contains("let__dsu_f2=::core::default::Default::default();"), "{}", generated(&r));
    assert!(
        g.contains(
            "Ok(Entry{hits:::dsu::__private::carry(&old.hits),name:::dsu::__private::carry(&old.name),\
             seen:__dsu_f2,})"
        ),
        "{}",
        generated(&r)
    );
    // On abort only the new field is released; nothing of the old entry is left on commit.
    assert!(g.contains("drop_in_place(::core::ptr::addr_of_mut!((*value).seen));"), "{}", generated(&r));
    assert!(g.contains("unsafefnrelease_old(old:*mutdsu_old::Entry){//SAFETY:thecaller'scontract:thevaluemadefrom`old`iskept.let_=old;}"), "{}", generated(&r));
    let widened = trivial.replace("pub hits: u32,", "pub hits: u64,");
    let r = cmp_main("nontrivial", V1, &widened);
    assert_eq!(r.refusals.len(), 1);
    assert!(r.refusals[0].reason.contains("field `hits` changed type"), "{:?}", r.refusals);
}

/// A `#[dsu::transform(.., default)]` on a type hides none of its later changes: the attribute
/// is removed on syn structures before comparing, not by searching token text.
#[test]
fn a_derive_request_in_both_revisions_hides_no_change() {
    let both = V1.replace("#[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry { pub name: String, pub hits: u32 }");
    let widened = both.replace("pub hits: u32 }", "pub hits: u64 }");
    let r = cmp_main("derive-both", &both, &widened);
    assert_eq!(paths(&r.types_changed), ["app::Entry"]);
    assert_eq!(reasons(&r).len(), 1, "{:?}", r.refusals);
    assert!(
        r.refusals[0].reason.starts_with("type `app::Entry`: field `hits` changed type (`u32` to `u64`)"),
        "{:?}",
        r.refusals
    );
    // Nothing else changed: no report at all.
    let r = cmp_main("derive-both-same", &both, &both);
    assert_eq!(r, Report::default());
}

#[test]
fn code_that_would_meet_the_new_layout_is_refused() {
    let v2 = V1.replace("pub hits: u32 }", "pub hits: u64 }")
        + "#[dsu::transform(from = dsu_old::Entry)]\n\
        fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n\
        #[dsu::updateable]\nfn first() -> Option<Entry> { None }\n\
        #[dsu::updateable]\nfn describe(e: &Entry) -> String { e.name.clone() }\n\
        fn plain() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n";
    let old = format!("{V1}#[dsu::updateable]\nfn first() -> Option<Entry> {{ STORE.with(|c| c.lock().unwrap().values().next().map(|e| Entry {{ name: e.name.clone(), hits: e.hits }})) }}\n\
        #[dsu::updateable]\nfn describe(e: &Entry) -> String {{ e.name.clone() }}\n");
    let r = cmp_main("routing", &old, &v2);
    let reasons = reasons(&r);
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.iter().any(|x| x.contains("cannot route `app::first`") && x.contains("reads `STORE`")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|x| x.contains("`app::plain` uses `STORE`")), "{reasons:?}");
    assert_eq!(paths(&r.functions_routed), ["app::describe"]);
}

// The inverse decision: which changed types and cells a patch can move back.

const REV_V1: &str = "use std::collections::HashMap;\nuse std::sync::Mutex;\n\
    #[dsu::updateable]\npub struct Entry { pub name: String, hits: u32, pub legacy: bool }\n\
    static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n";

const UP: &str = "#[dsu::transform(from = dsu_old::Entry)]\n\
    fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into(), tags: Vec::new() } }\n";

fn v2(extra: &str) -> String {
    REV_V1.replace("hits: u32, pub legacy: bool }", "hits: u64, pub tags: Vec<String> }") + UP + extra
}

#[test]
fn an_inverse_function_makes_the_type_and_its_cells_reversible() {
    let down = "#[dsu::transform(to = dsu_old::Entry)]\n\
        fn down(new: &Entry) -> Result<dsu_old::Entry, String> { Err(String::new()) }\n";
    let r = cmp_main("fn-inverse", REV_V1, &v2(down));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_reversible), ["app::Entry"]);
    assert_eq!(paths(&r.cells_reversible), ["app::STORE (cell \"store\")"]);
    assert_eq!(r.cells_reversible, r.cells_transformed);
    let g = squash(&generated(&r));
    assert!(g.contains("#[export_name=\"__dsu_uncell_store\"]"), "{}", generated(&r));
    assert!(
        g.contains(
            "static__DSU_UNCELL_STORE:::dsu::__private::CellTransform=::dsu::__private::CellTransform::\
             new::<Mutex<HashMap<String,Entry>>,Mutex<HashMap<String,dsu_old::Entry>>>(\"store\");"
        ),
        "{}",
        generated(&r)
    );
    // The forward one is still there, and the old definition's private field is reachable.
    assert!(g.contains("#[export_name=\"__dsu_cell_store\"]"), "{}", generated(&r));
    assert!(g.contains("pub(crate)hits:u32"), "{}", generated(&r));
}

#[test]
fn without_an_inverse_the_patch_is_not_refused_only_not_reversible() {
    let r = cmp_main("no-inverse", REV_V1, &v2(""));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(r.cells_transformed.len(), 1);
    assert!(r.types_reversible.is_empty() && r.cells_reversible.is_empty());
    assert!(!generated(&r).contains("__dsu_uncell_"), "{}", generated(&r));
}

/// A trivial change: `legacy` removed, `score` added, fields reordered.
fn trivial(attrs: &str) -> String {
    REV_V1.replace(
        "#[dsu::updateable]\npub struct Entry { pub name: String, hits: u32, pub legacy: bool }",
        &format!(
            "#[dsu::updateable]\n{attrs}\npub struct Entry {{ hits: u32, pub score: u64, pub name: String }}"
        ),
    )
}

#[test]
fn derived_inverse_in_one_attribute_or_two() {
    for attrs in [
        "#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]",
        "#[dsu::transform(from = dsu_old::Entry, default)]\n#[dsu::transform(to = dsu_old::Entry, default)]",
        "#[dsu::transform(to = dsu_old::Entry, default)]\n#[dsu::transform(from = dsu_old::Entry, default)]",
    ] {
        let r = cmp_main("derived", REV_V1, &trivial(attrs));
        assert!(r.refusals.is_empty(), "{attrs}: {:?}", r.refusals);
        assert_eq!(paths(&r.types_changed), ["app::Entry"], "{attrs}");
        assert_eq!(paths(&r.types_reversible), ["app::Entry"], "{attrs}");
        assert_eq!(r.cells_reversible.len(), 1, "{attrs}");
        let g = squash(&generated(&r));
        // Forward: the new field from Default. Inverse: the removed one from Default, the
        // added one dropped on commit, kept ones carried back.
        assert!(g.contains("unsafeimpl::dsu::__private::Transform<dsu_old::Entry>forEntry"), "{}", generated(&r));
        assert!(g.contains("let__dsu_f1=::core::default::Default::default();"), "{}", generated(&r));
        assert!(g.contains("unsafeimpl::dsu::__private::Transform<Entry>fordsu_old::Entry"), "{}", generated(&r));
        assert!(
            g.contains(
                "::core::result::Result::Ok(dsu_old::Entry{\
                 name:::dsu::__private::carry(&new.name),\
                 hits:::dsu::__private::carry(&new.hits),\
                 legacy:__dsu_f2,})"
            ),
            "{}",
            generated(&r)
        );
        assert!(g.contains("drop_in_place(::core::ptr::addr_of_mut!((*new).score));"), "{}", generated(&r));
        // Neither side's `Drop` impl could be skipped: the new type is taken apart by value.
        assert!(g.contains("let_=|__dsu_v:Entry|{letEntry{hits:__dsu_f0,score:__dsu_f1,name:__dsu_f2}=__dsu_v;};"), "{}", generated(&r));
        assert!(g.contains("__dsu_uncell_store"), "{}", generated(&r));
    }
}

#[test]
fn adding_an_inverse_attribute_alone_is_no_type_change() {
    let both = trivial(
        "#[dsu::transform(from = dsu_old::Entry, default)]\n#[dsu::transform(to = dsu_old::Entry, default)]",
    );
    let only_from = trivial("#[dsu::transform(from = dsu_old::Entry, default)]");
    let r = cmp_main("attr-only", &only_from, &both);
    assert!(r.types_changed.is_empty(), "{:?}", r.types_changed);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
}

#[test]
fn a_derived_inverse_of_a_non_trivial_change_is_refused() {
    // `hits` widens: the forward transformer is a function, the inverse asked derived.
    let widened = v2("").replace(
        "#[dsu::updateable]\npub struct Entry",
        "#[dsu::updateable]\n#[dsu::transform(to = dsu_old::Entry, default)]\npub struct Entry",
    );
    let r = cmp_main("nontrivial-inverse", REV_V1, &widened);
    let reasons: Vec<&str> = r.refusals.iter().map(|x| x.reason.as_str()).collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("type `app::Entry`: field `hits` changed type (`u32` to `u64`)"),
        "{reasons:?}"
    );
    assert!(reasons[0].contains("write an inverse transformer function"), "{reasons:?}");
    assert!(r.types_reversible.is_empty() && r.cells_reversible.is_empty());
}

const NESTED_V1: &str = "use std::sync::Mutex;\n\
    #[dsu::updateable]\npub struct Tag { pub text: String }\n\
    #[dsu::updateable]\npub struct Entry { pub name: String, pub tag: Tag }\n\
    static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    static TAGS: dsu::State<Mutex<Vec<Tag>>> = dsu::State::new(\"tags\", Default::default);\n\
    #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) + TAGS.with(|c| c.lock().unwrap().len()) }\n";

/// `Tag` and `Entry` both change; `Entry` keeps its `tag: Tag` field, so its derived inverse
/// needs `Tag`'s.
fn nested(tag_attrs: &str) -> String {
    NESTED_V1
        .replace(
            "#[dsu::updateable]\npub struct Tag { pub text: String }",
            &format!("#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Tag, default)]\n{tag_attrs}\npub struct Tag {{ pub text: String, pub weight: u8 }}"),
        )
        .replace(
            "#[dsu::updateable]\npub struct Entry { pub name: String, pub tag: Tag }",
            "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]\npub struct Entry { pub tag: Tag, pub name: String, pub n: u8 }",
        )
}

#[test]
fn a_derived_inverse_needs_the_inverses_of_the_changed_types_it_keeps() {
    let r = cmp_main("nested-missing", NESTED_V1, &nested(""));
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    let reason = &r.refusals[0].reason;
    assert!(reason.contains("type `app::Entry`: its derived inverse"), "{reason}");
    assert!(reason.contains("fields of type `Tag`"), "{reason}");
    assert!(reason.contains("#[dsu::transform(to = dsu_old::Tag)]"), "{reason}");

    let r = cmp_main("nested-ok", NESTED_V1, &nested("#[dsu::transform(to = dsu_old::Tag, default)]"));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_reversible), ["app::Tag", "app::Entry"]);
    assert_eq!(r.cells_reversible.len(), 2);
    let g = squash(&generated(&r));
    // The kept field's type mentions a changed type: transformed (forward and back, to and from
    // the old revision's `Tag`), staged, and released on commit; `name` is carried.
    for needle in [
        "let__dsu_f0=::dsu::__private::Staged::<dsu_old::Tag,Tag>::transform(&old.tag)?;",
        "let__dsu_f1=::dsu::__private::Staged::<Tag,dsu_old::Tag>::transform(&new.tag)?;",
        "<Tagas::dsu::__private::Transform<dsu_old::Tag>>::release_old(::core::ptr::addr_of_mut!((*old).tag));",
        "<dsu_old::Tagas::dsu::__private::Transform<Tag>>::release_new(::core::ptr::addr_of_mut!((*value).tag));",
        "name:::dsu::__private::carry(&old.name)",
    ] {
        assert!(g.contains(needle), "{needle} in {}", generated(&r));
    }
}

#[test]
fn a_cell_is_reversible_only_when_every_changed_type_in_it_is() {
    let old = "use std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct A { pub x: u32 }\n\
        #[dsu::updateable]\npub struct B { pub y: u32 }\n\
        static BOTH: dsu::State<Mutex<Vec<(A, B)>>> = dsu::State::new(\"both\", Default::default);\n\
        static JUST_A: dsu::State<Mutex<Vec<A>>> = dsu::State::new(\"just a\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { BOTH.with(|c| c.lock().unwrap().len()) + JUST_A.with(|c| c.lock().unwrap().len()) }\n";
    let new = old
        .replace(
            "pub struct A { pub x: u32 }",
            "#[dsu::transform(from = dsu_old::A, to = dsu_old::A, default)]\npub struct A { pub x: u32, pub z: u8 }",
        )
        .replace("pub struct B { pub y: u32 }", "#[dsu::transform(from = dsu_old::B, default)]\npub struct B { pub y: u32, pub z: u8 }");
    let r = cmp_main("mixed", old, &new);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_reversible), ["app::A"]);
    assert_eq!(paths(&r.cells_transformed), ["app::BOTH (cell \"both\")", "app::JUST_A (cell \"just a\")"]);
    assert_eq!(paths(&r.cells_reversible), ["app::JUST_A (cell \"just a\")"]);
    let g = squash(&generated(&r));
    let symbol =
        format!("#[export_name=\"{}{}\"]", dsu_abi::CELL_INVERSE_PREFIX, dsu_abi::symbol_safe("just a"));
    assert!(g.contains(&symbol), "{symbol}: {}", generated(&r));
    assert!(!g.contains("__dsu_uncell_both"), "{}", generated(&r));
}

// Types anywhere in the set.

const STORE_V1: &str = "use std::collections::HashMap;\nuse std::sync::Mutex;\n\
    #[dsu::updateable]\npub struct Entry { pub name: String, hits: u32 }\n\
    static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    #[dsu::updateable]\npub fn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n";

const STORE_UP: &str = "#[dsu::transform(from = dsu_old::Entry)]\n\
    fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n";

fn store_v2() -> String {
    STORE_V1.replace("hits: u32 }", "hits: u64 }") + STORE_UP
}

/// The item `name` among `items`, and the module items inside it.
fn module_items<'a>(items: &'a [syn::Item], name: &str) -> &'a [syn::Item] {
    items
        .iter()
        .find_map(|i| match i {
            syn::Item::Mod(m) if m.ident == name => m.content.as_ref().map(|(_, items)| items.as_slice()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no inline module `{name}`"))
}

fn names(items: &[syn::Item]) -> Vec<String> {
    items
        .iter()
        .filter_map(|i| match i {
            syn::Item::Struct(s) => Some(s.ident.to_string()),
            syn::Item::Static(s) => Some(s.ident.to_string()),
            syn::Item::Mod(m) => Some(format!("mod {}", m.ident)),
            syn::Item::Use(u) => Some(format!("use {}", dsu_syntax::tokens_text(&u.tree))),
            _ => None,
        })
        .collect()
}

fn parse(patched: &BTreeMap<PathBuf, String>, file: &str) -> syn::File {
    syn::parse_file(&patched[Path::new(file)]).unwrap_or_else(|e| panic!("{file} after insertion: {e}"))
}

#[test]
fn a_type_changed_in_a_submodule_file_with_its_transformer_there() {
    let units = [unit("core_logic", "src/lib.rs")];
    let lib = "mod store;\npub use store::count;\n";
    let new_store = store_v2();
    let (r, patched) = cmp_units(
        "submodule",
        &units,
        &[("src/lib.rs", lib), ("src/store.rs", STORE_V1)],
        &[("src/lib.rs", lib), ("src/store.rs", &new_store)],
    );
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(
        r.types_changed,
        vec![ItemRef { path: "core_logic::store::Entry".into(), file: "src/store.rs".into(), line: 3 }]
    );
    assert_eq!(paths(&r.cells_transformed), ["core_logic::store::STORE (cell \"store\")"]);
    // One insertion, at the end of the module's file; nothing at the crate root.
    assert_eq!(r.generated.len(), 1);
    assert_eq!(
        (r.generated[0].file.as_path(), r.generated[0].offset),
        (Path::new("src/store.rs"), new_store.len())
    );
    let file = parse(&patched, "src/store.rs");
    assert_eq!(
        names(&file.items),
        [
            "use std::collections::HashMap",
            "use std::sync::Mutex",
            "Entry",
            "STORE",
            "__DSU_CELL_STORE",
            "mod dsu_old"
        ]
    );
    assert_eq!(names(module_items(&file.items, "dsu_old")), ["use super::*", "Entry"]);
    let g = squash(&generated(&r));
    assert!(
        g.contains(
            "CellTransform::new::<Mutex<HashMap<String,dsu_old::Entry>>,Mutex<HashMap<String,Entry>>>"
        ),
        "{g}"
    );
}

#[test]
fn a_type_in_an_inline_module() {
    let wrap = |store: &str| {
        format!("mod store {{\n{store}}}\n\n#[dsu::updateable]\nfn main() {{ store::count(); }}\n")
    };
    let (old, new) = (wrap(STORE_V1), wrap(&store_v2()));
    let (r, patched) = cmp_units(
        "inline",
        &[unit("app", "src/main.rs")],
        &[("src/main.rs", &old)],
        &[("src/main.rs", &new)],
    );
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_changed), ["app::store::Entry"]);
    assert_eq!(paths(&r.cells_transformed), ["app::store::STORE (cell \"store\")"]);
    // Just before the module's closing brace.
    assert_eq!(r.generated.len(), 1);
    assert_eq!(&new[r.generated[0].offset..], "}\n\n#[dsu::updateable]\nfn main() { store::count(); }\n");
    let file = parse(&patched, "src/main.rs");
    let store = module_items(&file.items, "store");
    assert_eq!(names(store)[2..], ["Entry", "STORE", "__DSU_CELL_STORE", "mod dsu_old"]);
    assert_eq!(names(module_items(store, "dsu_old")), ["use super::*", "Entry"]);
    assert_eq!(names(&file.items), ["mod store"], "nothing at the crate root");
}

const CORE_LIB: &str = "mod store;\npub use store::Entry;\n";

const CORE_STORE_V1: &str = "#[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }\n";

const APP_MAIN: &str = "use std::sync::Mutex;\nuse core_logic::Entry;\n\
    static CELLS: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"cells\", Default::default);\n\
    #[dsu::updateable]\nfn count() -> usize { CELLS.with(|c| c.lock().unwrap().len()) }\nfn main() {}\n";

/// A cell of the binary holds a type of the library, defined in a private module and
/// re-exported: the cell transform names the old type through re-exports up to the
/// library's root.
#[test]
fn a_cell_of_the_binary_holding_a_changed_type_of_the_library() {
    let units = [unit("core_logic", "src/lib.rs"), unit("app", "src/main.rs")];
    let new_store = CORE_STORE_V1.replace("pub hits: u32 }", "pub hits: u32, pub seen: bool }").replace(
        "#[dsu::updateable]",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]",
    );
    let old = [("src/lib.rs", CORE_LIB), ("src/store.rs", CORE_STORE_V1), ("src/main.rs", APP_MAIN)];
    let new = [("src/lib.rs", CORE_LIB), ("src/store.rs", new_store.as_str()), ("src/main.rs", APP_MAIN)];
    let (r, patched) = cmp_units("two-units", &units, &old, &new);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_changed), ["core_logic::store::Entry"]);
    assert_eq!(
        r.cells_transformed,
        vec![ItemRef { path: "app::CELLS (cell \"cells\")".into(), file: "src/main.rs".into(), line: 3 }]
    );
    assert_eq!(r.cells_reversible, r.cells_transformed);
    assert_eq!(r.crates_changed, ["core_logic"]);
    let files: Vec<&Path> = r.generated.iter().map(|i| i.file.as_path()).collect();
    assert_eq!(files, [Path::new("src/lib.rs"), Path::new("src/main.rs"), Path::new("src/store.rs")]);
    let alias = "__dsu_old_store__Entry";
    let g = squash(&generated(&r));
    assert!(g.contains(&format!("pubuseself::store::dsu_old::Entryas{alias};")), "{g}");
    assert!(
        g.contains(&format!(
            "CellTransform::new::<Mutex<Vec<::core_logic::{alias}>>,Mutex<Vec<Entry>>>(\"cells\")"
        )),
        "{g}"
    );
    assert!(
        g.contains(&format!(
            "CellTransform::new::<Mutex<Vec<Entry>>,Mutex<Vec<::core_logic::{alias}>>>(\"cells\")"
        )),
        "{g}"
    );
    for file in ["src/lib.rs", "src/main.rs", "src/store.rs"] {
        parse(&patched, file);
    }
    assert_eq!(
        names(&parse(&patched, "src/lib.rs").items),
        ["mod store", "use store::Entry", &format!("use self::store::dsu_old::Entry as {alias}")]
    );
}

/// A changed type whose fields hold another changed type of another module: the old definition
/// names the other's old definition, through the re-exports, and re-exports pass through an
/// inline module with its `cfg`.
#[test]
fn old_definitions_name_old_types_of_other_modules() {
    let units = [unit("app", "src/main.rs")];
    let main = |tag: &str, entry: &str| {
        format!(
            "#[cfg(unix)]\nmod outer {{\n    pub mod tags {{\n{tag}    }}\n}}\nmod entries {{\n    use crate::outer::tags::Tag;\n{entry}}}\n\
             #[dsu::updateable]\npub struct Stamp(u64);\nfn main() {{}}\n"
        )
    };
    let tag_v1 = "#[dsu::updateable]\npub struct Tag { pub text: String }\n";
    let entry_v1 = "#[dsu::updateable]\npub struct Entry { pub tag: Tag, pub n: u8, at: self::super::Stamp }\n";
    let tag_v2 = "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Tag, default)]\npub struct Tag { pub text: String, pub weight: u8 }\n";
    let entry_v2 = "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry { pub tag: Tag, pub n: u8, at: self::super::Stamp, pub m: u8 }\n";
    let (old, new) = (main(tag_v1, entry_v1), main(tag_v2, entry_v2));
    let (r, patched) =
        cmp_units("nested-modules", &units, &[("src/main.rs", &old)], &[("src/main.rs", &new)]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_changed), ["app::outer::tags::Tag", "app::entries::Entry"]);
    let file = parse(&patched, "src/main.rs");
    let entries = module_items(&file.items, "entries");
    let old_entry = module_items(entries, "dsu_old")
        .iter()
        .find_map(|i| match i {
            syn::Item::Struct(s) => Some(squash(&quote::ToTokens::to_token_stream(s).to_string())),
            _ => None,
        })
        .unwrap();
    // Still updateable (the old type has its fingerprint and identity transform too), and an
    // unchanged type named relative to the module is named one module deeper.
    assert_eq!(
        old_entry,
        "#[dsu::updateable]pubstructEntry{pubtag:crate::__dsu_old_outer__tags__Tag,pubn:u8,pub(crate)at:super::super::Stamp}"
    );
    let g = squash(&generated(&r));
    assert!(g.contains("#[cfg(unix)]#[doc(hidden)]#[allow(unused_imports)]pubuseself::outer::__dsu_old_outer__tags__Tagas__dsu_old_outer__tags__Tag;"), "{g}");
    assert!(g.contains("pubuseself::tags::dsu_old::Tagas__dsu_old_outer__tags__Tag;"), "{g}");
}

// Transformers through a release stream: each stays in the source after its release; a patch
// compiles those written for the changes it spans.

const V2_TO_V3: &str = "#[dsu::transform(from = dsu_old::Entry)]\n\
    fn v2_to_v3(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits, score: 0 } }\n";

/// `Entry` at releases r0 (`hits: u32`), r1 (`hits: u64`, with `up` and its inverse `down`) and
/// r3 (gains `score`, with `v2_to_v3`; `up` and `down` still in the source).
fn release(n: u32) -> String {
    let cell = "static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n";
    let up = "#[dsu::transform(from = dsu_old::Entry)]\n\
        fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n\
        #[dsu::transform(to = dsu_old::Entry)]\n\
        fn down(new: &Entry) -> dsu_old::Entry { dsu_old::Entry { name: new.name.clone(), hits: new.hits as u32 } }\n";
    let (entry, transformers) = match n {
        0 => ("pub name: String, pub hits: u32", String::new()),
        1 | 2 => ("pub name: String, pub hits: u64", up.to_string()),
        _ => ("pub name: String, pub hits: u64, pub score: u32", format!("{up}{V2_TO_V3}")),
    };
    // r2 changes code only.
    let code = if n >= 2 { "#[dsu::updateable]\nfn two() -> u32 { 2 }\n" } else { "" };
    format!(
        "use std::sync::Mutex;\n#[dsu::updateable]\npub struct Entry {{ {entry} }}\n{transformers}{cell}{code}"
    )
}

#[test]
fn a_patch_compiles_the_transformers_written_for_the_changes_it_spans() {
    let r = cmp_main("stream-r0-r1", &release(0), &release(1));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.transformers), ["app::up", "app::down"]);
    assert_eq!(r.transformer_cfgs, ["Entry::down", "Entry::up"]);
    assert_eq!(paths(&r.cells_reversible), ["app::STORE (cell \"store\")"]);

    // Code only: no type changes, no transformer, though `up` is in the source.
    let r = cmp_main("stream-r1-r2", &release(1), &release(2));
    assert!(r.refusals.is_empty() && r.types_changed.is_empty(), "{r:?}");
    assert!(r.transformers.is_empty() && r.transformer_cfgs.is_empty(), "{r:?}");
    assert_eq!(paths(&r.functions_added), ["app::two"]);

    // `Entry` changes again: `v2_to_v3` is new, `up` and `down` were written for r1 and stay
    // out, so the patch has no inverse and is not reversible.
    let r = cmp_main("stream-r2-r3", &release(2), &release(3));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.transformers), ["app::v2_to_v3"]);
    assert_eq!(r.transformer_cfgs, ["Entry::v2_to_v3"]);
    assert!(r.types_reversible.is_empty() && r.cells_reversible.is_empty(), "{r:?}");
    assert_eq!(paths(&r.cells_transformed), ["app::STORE (cell \"store\")"]);

    // Straight from r0 to r2: `up` and `down` are new since r0.
    let r = cmp_main("stream-r0-r2", &release(0), &release(2));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(r.transformer_cfgs, ["Entry::down", "Entry::up"]);
}

#[test]
fn a_patch_across_two_changes_of_a_type_is_refused_naming_both_transformers() {
    let r = cmp_main("stream-r0-r3", &release(0), &release(3));
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    let reason = &r.refusals[0].reason;
    assert!(reason.starts_with("type `app::Entry` changed, and 2 transformers of it are new"), "{reason}");
    assert!(reason.contains("`app::up` (src/main.rs:4) and `app::v2_to_v3` (src/main.rs:8)"), "{reason}");
    assert!(reason.contains("Apply the releases in steps"), "{reason}");
    assert!(r.transformers.is_empty() && r.transformer_cfgs.is_empty(), "{r:?}");

    // An edited transformer of an earlier release counts as new.
    let edited = release(3).replace("old.hits.into() }", "u64::from(old.hits) }");
    let r = cmp_main("stream-edited", &release(2), &edited);
    assert_eq!(reasons(&r).len(), 1, "{:?}", r.refusals);
    assert!(reasons(&r)[0].contains("`app::up` (src/main.rs:4) and `app::v2_to_v3`"), "{:?}", r.refusals);
}

#[test]
fn a_type_changed_again_with_only_earlier_transformers_is_refused_naming_them() {
    let without = release(3).replace(V2_TO_V3, "");
    let r = cmp_main("stream-stale", &release(2), &without);
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    let reason = &r.refusals[0].reason;
    assert!(reason.contains("no transformer is new since the older revision: `app::up` (src/main.rs:4) is in it already"), "{reason}");
    assert!(reason.contains("fn upgrade_entry(old: &dsu_old::Entry) -> Entry"), "{reason}");
}

#[test]
fn a_default_of_an_earlier_release_derives_the_next_change_unless_a_function_is_new() {
    let derived = |fields: &str, extra: &str| {
        format!(
            "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry {{ {fields} }}\n{extra}\
             static STORE: dsu::State<std::sync::Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
             #[dsu::updateable]\nfn count() -> usize {{ STORE.with(|c| c.lock().unwrap().len()) }}\n"
        )
    };
    let up = "#[dsu::transform(from = dsu_old::Entry)]\nfn up(old: &dsu_old::Entry) -> Entry { todo!() }\n";
    let r1 = derived("pub a: u32, pub b: u32", "");
    // r2: `b` added again, derived by the attribute r1 wrote.
    let r2 = derived("pub a: u32, pub b: u32, pub c: u32", "");
    let r = cmp_main("stream-default", &r1, &r2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert!(generated(&r).contains("let __dsu_f2 = ::core::default::Default::default();"), "{}", generated(&r));
    assert!(r.transformers.is_empty());
    // A new function takes over from an attribute of an earlier release.
    let r = cmp_main("stream-default-fn", &r1, &derived("pub a: u64", up));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(r.transformer_cfgs, ["Entry::up"]);
    assert!(!generated(&r).contains("Default::default()"), "{}", generated(&r));
    // A new attribute and a new function in one patch: two transformers of one change.
    let plain = r1.replace("#[dsu::transform(from = dsu_old::Entry, default)]\n", "");
    let r = cmp_main("stream-default-both", &plain, &derived("pub a: u64", up));
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    assert!(
        r.refusals[0].reason.contains(
            "`app::up` (src/main.rs:4) and the one `#[dsu::transform(from = dsu_old::Entry, default)]` derives"
        ),
        "{:?}",
        r.refusals
    );
}

#[test]
fn a_transformer_of_the_same_names_elsewhere_is_refused_when_only_one_is_compiled() {
    // `convert`: the body of the module's transformer `upgrade`, if it has one.
    let module = |name: &str, hits: &str, convert: Option<&str>| {
        let t = convert.map_or(String::new(), |c| {
            format!(
                "#[dsu::transform(from = dsu_old::Entry)]\n\
                 fn upgrade(old: &dsu_old::Entry) -> Entry {{ Entry {{ hits: {c} }} }}\n"
            )
        });
        format!(
            "#[dsu::updateable]\npub struct Entry {{ pub hits: {hits} }}\n{t}\
             static CELL: dsu::State<std::sync::Mutex<Vec<Entry>>> = dsu::State::new(\"{name}\", Default::default);\n\
             #[dsu::updateable]\npub fn count() -> usize {{ CELL.with(|c| c.lock().unwrap().len()) }}\n"
        )
    };
    let lib = "mod a;\nmod b;\n";
    let units = [unit("core_logic", "src/lib.rs")];
    // `b::upgrade` came with an earlier release of `b::Entry`; `a::Entry` changes now.
    let old = [("src/lib.rs", lib), ("src/a.rs", &module("a", "u8", None)), ("src/b.rs", &module("b", "u32", Some("old.hits.into()")))];
    let new = [("src/lib.rs", lib), ("src/a.rs", &module("a", "u16", Some("old.hits.into()"))), ("src/b.rs", &module("b", "u32", Some("old.hits.into()")))];
    let (r, _) = cmp_units("stream-same-names", &units, &old, &new);
    assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
    let x = &r.refusals[0];
    assert_eq!((x.file.as_str(), x.line), ("src/b.rs", 3));
    assert!(x.reason.starts_with("transformer `core_logic::b::upgrade` would be compiled into this patch with `core_logic::a::upgrade` (src/a.rs:3)"), "{}", x.reason);
    assert!(x.reason.contains("--cfg dsu_transform=\"Entry::upgrade\"") && x.reason.ends_with("Rename one of them"), "{}", x.reason);
    // Both changing, each with a new transformer, both compiled: nothing to refuse.
    let both = [("src/lib.rs", lib), ("src/a.rs", &module("a", "u16", Some("old.hits.into()"))), ("src/b.rs", &module("b", "u64", Some("u64::from(old.hits)")))];
    let (r, _) = cmp_units("stream-same-names-both", &units, &old, &both);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.transformers), ["core_logic::a::upgrade", "core_logic::b::upgrade"]);
    assert_eq!(r.transformer_cfgs, ["Entry::upgrade"]);
}

/// Inside `dsu_old`, one module deeper, a restricted visibility would hide a field from the
/// type's own module, where transformers read and build it: every field short of `pub` is
/// `pub(crate)` there, whatever the type's own visibility.
#[test]
fn old_definitions_open_every_field_to_the_crate() {
    let v1 = "mod m {\n#[dsu::updateable]\npub(super) struct A { a: u8, pub(self) b: u8, pub(super) c: u8, pub(in crate::m) d: u8, pub e: u8 }\n}\n";
    let v2 = v1.replace("pub e: u8 }", "pub e: u8, f: u8 }").replace(
        "#[dsu::updateable]\n",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::A, default)]\n",
    );
    let r = cmp_main("field-visibility", v1, &v2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert!(
        squash(&generated(&r)).contains(
            "pubstructA{pub(crate)a:u8,pub(crate)b:u8,pub(crate)c:u8,pub(crate)d:u8,pube:u8}"
        ),
        "{}",
        generated(&r)
    );
}

/// The old definition names `BTreeSet`, which only the older module imports: `dsu_old` imports
/// it again (and only what the old definitions use, and nothing they define).
#[test]
fn old_definitions_get_the_imports_the_old_module_had_for_them() {
    let v1 = "use std::collections::BTreeSet;\nuse std::fmt::{self, Debug};\nuse std::rc::Rc as Shared;\n\
        #[dsu::updateable]\npub struct Index { pub set: BTreeSet<u64>, pub other: Shared<u8> }\n";
    let v2 = "use std::collections::BTreeMap;\nuse std::rc::Rc as Shared;\n\
        #[dsu::updateable]\npub struct Index { pub map: BTreeMap<u64, ()>, pub other: Shared<u8> }\n\
        #[dsu::transform(from = dsu_old::Index)]\n\
        fn up(old: &dsu_old::Index) -> Index { Index { map: old.set.iter().map(|k| (*k, ())).collect(), other: old.other.clone() } }\n";
    let r = cmp_main("old-imports", v1, v2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    let g = squash(&generated(&r));
    let old = &g[g.find("pubmoddsu_old").expect("dsu_old")..];
    assert!(old.contains("usesuper::*;usestd::collections::BTreeSet;usestd::rc::RcasShared;"), "{old}");
    assert!(!old.contains("Debug") && !old.contains("fmt"), "only what the definitions use: {old}");
}
