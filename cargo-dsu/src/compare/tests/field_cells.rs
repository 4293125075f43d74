//! Field cells (`dsu::Cell<T>`): the records every patch carries, one per type and module, and
//! the transforms a type change generates, by old value type.

use super::*;

/// A server's shared state: a field cell holding the store, in a struct every task shares.
const V1: &str = "use std::collections::{BTreeSet, HashMap};\nuse std::sync::Mutex;\nuse dsu::Cell as DsuCell;\n\
    #[dsu::updateable]\npub struct Entry { pub value: String, pub expires: u64 }\n\
    #[dsu::updateable]\npub struct Store { pub entries: HashMap<String, Entry>, pub index: BTreeSet<(u64, String)> }\n\
    pub struct Shared { pub store: dsu::Cell<Mutex<Store>>, pub hits: DsuCell<u64>, local: std::cell::Cell<u8> }\n\
    pub struct Wrapper<T> { inner: dsu::Cell<T> }\n\
    #[dsu::updateable]\npub fn count(s: &Shared) -> usize { s.store.with(|m| m.lock().unwrap().entries.len()) }\n\
    #[dsu::updateable]\npub fn fresh() -> Shared { Shared { store: ::dsu::Cell::<Mutex<Store>>::new(Mutex::default()), hits: DsuCell::new(0), local: Default::default() } }\n";

/// Version 2: `Entry` gains a field (derived transformer), `Store`'s index becomes a set of
/// `Expiry` (a transformer function).
fn v2() -> String {
    V1.replace(
        "#[dsu::updateable]\npub struct Entry { pub value: String, pub expires: u64 }",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]\n\
         pub struct Entry { pub value: String, pub expires: u64, pub hits: u64 }\n\
         #[dsu::updateable]\n#[derive(PartialEq, Eq, PartialOrd, Ord)]\npub struct Expiry { pub at: u64, pub key: String }",
    )
    .replace("pub index: BTreeSet<(u64, String)> }", "pub index: BTreeSet<Expiry> }")
        + "#[dsu::transform(from = dsu_old::Store)]\nfn up(old: &dsu_old::Store) -> Store { todo!() }\n"
}

#[test]
fn every_cell_type_gets_one_record_per_module() {
    let dir = checkout("field-records", &[("src/main.rs", V1)]);
    let found = crate::compare::cells::records(&[unit("app", "src/main.rs")], &dir).unwrap();
    assert!(found.refusals.is_empty(), "{:?}", found.refusals);
    let text: String = found.insertions.iter().map(|i| i.text.as_str()).collect();
    // `dsu::Cell<…>`, `::dsu::Cell::<…>` (the same type: one record) and an imported alias;
    // not `std::cell::Cell`, nor a cell of a generic parameter, which the module cannot name.
    let records: Vec<&str> = text.lines().filter(|l| l.contains("FieldCellInfo::new")).collect();
    assert_eq!(records.len(), 2, "{text}");
    assert!(squash(&text).contains("FieldCellInfo::new::<Mutex<Store>>(\"app\",\"Mutex<Store>\")"), "{text}");
    assert!(squash(&text).contains("FieldCellInfo::new::<u64>(\"app\",\"u64\")"), "{text}");
    let symbol = dsu_abi::field_cell_symbol("app", "Mutex<Store>");
    assert!(text.contains(&format!("#[export_name = {symbol:?}]")), "{text}");

    // Records already inserted (a checkout the patch build wrote into before) are kept, not
    // written twice.
    let with_records = format!("{V1}{text}");
    std::fs::write(dir.join("src/main.rs"), &with_records).unwrap();
    let again = crate::compare::cells::records(&[unit("app", "src/main.rs")], &dir).unwrap();
    assert!(again.insertions.is_empty(), "{:?}", again.insertions);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_type_change_transforms_field_cells_by_their_old_value_type() {
    let v2 = v2();
    let (r, patched) = cmp_units("field-transform", &[unit("app", "src/main.rs")], &[("src/main.rs", V1)], &[("src/main.rs", &v2)]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(paths(&r.types_changed), ["app::Entry", "app::Store"]);
    // One transform for the one old type (`Mutex<Store>` is written twice), none for `u64`.
    let g = squash(&generated(&r));
    assert_eq!(g.matches("CellTransform::field::<").count(), 1, "{g}");
    assert!(g.contains("CellTransform::field::<Mutex<dsu_old::Store>,Mutex<Store>>(\"Mutex<Store>\")"), "{g}");
    let symbol = dsu_abi::field_transform_symbol(dsu_abi::FIELD_TRANSFORM_PREFIX, "");
    assert!(g.contains(&format!("#[export_name=\"{}", &symbol[..dsu_abi::FIELD_TRANSFORM_PREFIX.len()])), "{g}");
    // `Store` has no inverse transformer: not reversible.
    assert_eq!(paths(&r.cells_transformed), ["app (field cells `dsu::Cell<Mutex<Store>>`, struct Shared, field store)"]);
    assert!(r.cells_reversible.is_empty());
    assert!(!r.is_empty_change());
    assert!(patched[std::path::Path::new("src/main.rs")].contains("__DSU_FIELDXF_"));

    // With an inverse for every changed type it mentions, the inverse transform goes too.
    let reversible = v2.replace(
        "#[dsu::transform(from = dsu_old::Store)]",
        "#[dsu::transform(to = dsu_old::Store)]\nfn down(new: &Store) -> dsu_old::Store { todo!() }\n#[dsu::transform(from = dsu_old::Store)]",
    );
    let (r, _) = cmp_units("field-reversible", &[unit("app", "src/main.rs")], &[("src/main.rs", V1)], &[("src/main.rs", &reversible)]);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    let g = squash(&generated(&r));
    assert!(g.contains("CellTransform::field::<Mutex<Store>,Mutex<dsu_old::Store>>(\"Mutex<dsu_old::Store>\")"), "{g}");
    assert!(g.contains(dsu_abi::FIELD_INVERSE_PREFIX), "{g}");
    assert_eq!(r.cells_reversible.len(), 1);
}

#[test]
fn one_old_type_becoming_two_new_ones_is_refused_naming_both_places() {
    // Two fields of one type; the newer revision changes one of them only.
    let old = "pub struct A { pub x: dsu::Cell<Vec<u32>> }\npub struct B { pub y: dsu::Cell<Vec<u32>> }\nfn main() {}\n";
    let new = "pub struct A { pub x: dsu::Cell<Vec<u32>> }\npub struct B { pub y: dsu::Cell<Vec<u64>> }\nfn main() {}\n";
    let r = cmp_main("field-two-ways", old, new);
    let refusal = r.refusals.iter().find(|f| f.reason.contains("one type cannot become two")).unwrap_or_else(|| panic!("{:?}", r.refusals));
    assert_eq!((refusal.file.as_str(), refusal.line), ("src/main.rs", 2), "{refusal:?}");
    assert!(refusal.reason.contains("`Vec<u64>` here (struct B, field y)"), "{}", refusal.reason);
    assert!(refusal.reason.contains("`Vec<u32>` at src/main.rs:1 (struct A, field x)"), "{}", refusal.reason);

    // Both changed alike: no refusal from this rule.
    let both = new.replace("x: dsu::Cell<Vec<u32>>", "x: dsu::Cell<Vec<u64>>");
    let r = cmp_main("field-one-way", old, &both);
    assert!(!reasons(&r).iter().any(|x| x.contains("one type cannot become two")), "{:?}", r.refusals);
}

/// Only `Entry`'s definition changes; `Store`, which holds entries, keeps its text but not its
/// layout: it is a changed type too (derived transformer, no attribute needed), the field cells
/// holding it are transformed, and every function whose signature names it is routed.
#[test]
fn a_type_holding_a_changed_type_changes_with_it() {
    let v1 = format!(
        "{V1}#[dsu::updateable]\nimpl Store {{ pub fn len(&self) -> usize {{ self.entries.len() }} }}\n\
         #[dsu::updateable]\npub fn lock(m: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {{ m.lock().unwrap() }}\n\
         #[dsu::updateable]\npub struct Outer {{ pub stores: Vec<Store> }}\n\
         #[dsu::updateable]\npub struct ThroughCell {{ pub store: dsu::Cell<Mutex<Store>> }}\n"
    );
    let v2 = v1.replace(
        "#[dsu::updateable]\npub struct Entry { pub value: String, pub expires: u64 }",
        "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]\n\
         pub struct Entry { pub value: String, pub expires: u64, pub hits: u64 }",
    );
    let r = cmp_main("enclosing", &v1, &v2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    // Transitively (`Outer` holds stores), but not through a cell, which is one pointer whatever
    // it holds.
    assert_eq!(paths(&r.types_changed), ["app::Entry", "app::Store", "app::Outer"]);
    assert_eq!(r.cells_transformed.len(), 1, "{:?}", r.cells_transformed);
    assert_eq!(paths(&r.functions_routed), ["app::Store::len", "app::lock"]);
    // What `Entry`'s inverse makes reversible is reversible: the enclosing types' inverses are
    // derived too.
    assert_eq!(paths(&r.types_reversible), ["app::Entry", "app::Store", "app::Outer"]);
    assert_eq!(r.cells_reversible.len(), 1);
    let g = squash(&generated(&r));
    // The old `Store` is written beside the old `Entry`, which its text names.
    assert!(g.contains("pubstructStore{pubentries:HashMap<String,Entry>,pubindex"), "old definition: {g}");
    assert!(g.contains("Staged::<HashMap<String,dsu_old::Entry>,HashMap<String,Entry>>::transform(&old.entries)"), "{g}");
    assert!(g.contains("index:::dsu::__private::carry(&old.index)"), "{g}");
    assert!(g.contains("CellTransform::field::<Mutex<dsu_old::Store>,Mutex<Store>>"), "{g}");
}
