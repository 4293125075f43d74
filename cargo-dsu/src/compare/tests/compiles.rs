//! The inserted code compiles where it is inserted: a library and a binary, changed types in a
//! file module and in an inline module behind a `cfg`, cells in three modules of two crates,
//! built by rustc against a stand-in for the `dsu` crate (the same paths and trait bounds, no
//! behaviour).

use super::*;
use std::process::Command;

/// `#[dsu::updateable]` and `#[dsu::transform]` leave items as they are: the code under test is
/// the inserted code, and with derived transformers it is all of what a transform needs. No type
/// has an identity transform: fields that keep their type are carried without one.
const MACROS: &str = r#"
extern crate proc_macro;
use proc_macro::TokenStream;
#[proc_macro_attribute]
pub fn updateable(_: TokenStream, item: TokenStream) -> TokenStream { item }
#[proc_macro_attribute]
pub fn transform(_: TokenStream, item: TokenStream) -> TokenStream { item }
"#;

/// The paths and bounds of the `dsu` crate that inserted code uses.
const DSU: &str = r#"
pub use dsu_stand_in_macros::{transform, updateable};
pub struct State<T>(fn() -> T);
unsafe impl<T> Sync for State<T> {}
impl<T> State<T> {
    pub const fn new(_name: &'static str, init: fn() -> T) -> Self { State(init) }
}
impl<T> State<T> {
    pub fn with<R>(&self, _f: impl FnOnce(&T) -> R) -> R { unimplemented!() }
}
pub struct Cell<T>(T);
impl<T> Cell<T> {
    pub fn new(value: T) -> Self { Cell(value) }
    pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R { f(&self.0) }
}
pub mod __private {
    pub struct TransformError(pub String);
    pub unsafe trait Transform<Old>: Sized {
        const IDENTITY: bool = false;
        const FRESH: bool = false;
        unsafe fn transform(old: &Old) -> Result<Self, TransformError>;
        unsafe fn release_old(old: *mut Old) { unsafe { std::ptr::drop_in_place(old) } }
        unsafe fn release_new(new: *mut Self) { unsafe { std::ptr::drop_in_place(new) } }
    }
    pub unsafe fn carry<T>(value: &T) -> T { unsafe { std::ptr::read(value) } }
    pub struct Staged<Old, New: Transform<Old>>(New, std::marker::PhantomData<Old>);
    impl<Old, New: Transform<Old>> Staged<Old, New> {
        pub unsafe fn transform(_: &Old) -> Result<Self, TransformError> { unimplemented!() }
        pub fn into_inner(self) -> New { self.0 }
    }
    unsafe impl<T: Transform<U>, U> Transform<Vec<U>> for Vec<T> {
        unsafe fn transform(_: &Vec<U>) -> Result<Self, TransformError> { unimplemented!() }
    }
    unsafe impl<T: Transform<U>, U> Transform<std::sync::Mutex<U>> for std::sync::Mutex<T> {
        unsafe fn transform(_: &std::sync::Mutex<U>) -> Result<Self, TransformError> { unimplemented!() }
    }
    pub struct CellInfo<const N: usize>([u8; N]);
    impl<const N: usize> CellInfo<N> {
        pub const fn new<T>(name: &str, ty: &str) -> Self {
            assert!(name.len() + ty.len() == N, "CellInfo length");
            CellInfo([0; N])
        }
    }
    pub struct CellTransform(&'static str);
    impl CellTransform {
        pub const fn new<Old: 'static, New: Transform<Old> + 'static>(name: &'static str) -> Self { CellTransform(name) }
        pub const fn field<Old: 'static, New: Transform<Old> + 'static>(ty: &'static str) -> Self { CellTransform(ty) }
    }
    pub struct FieldCellInfo<const N: usize>([u8; N]);
    impl<const N: usize> FieldCellInfo<N> {
        pub const fn new<T>(place: &str, ty: &str) -> Self {
            assert!(place.len() + ty.len() == N, "FieldCellInfo length");
            FieldCellInfo([0; N])
        }
    }
}
"#;

const LIB: &str = "mod store;\npub use store::Entry;\n\
    #[cfg(not(any()))]\nmod outer {\n    pub mod tags {\n{TAG}    }\n}\n\
    mod inline_cells {\n    use std::sync::Mutex;\n    use crate::outer::tags::Tag;\n    \
    static TAGS: dsu::State<Mutex<Vec<Tag>>> = dsu::State::new(\"tags\", Default::default);\n\
    {NOTE}    static NOTES: dsu::State<Mutex<Vec<Note>>> = dsu::State::new(\"notes\", Default::default);\n\
    #[dsu::updateable]\n    pub fn count() -> usize { TAGS.with(|c| c.lock().unwrap().len()) + NOTES.with(|c| c.lock().unwrap().len()) }\n}\n\
    pub fn count() -> usize { inline_cells::count() + store::count() }\n\
    pub struct Stamp(u32);\n";

/// Private, with a private field: its old definition must still be reachable from its module.
const NOTE_V1: &str = "#[dsu::updateable]\nstruct Note { text: String }\n";
const NOTE_V2: &str =
    "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Note, to = dsu_old::Note, default)]\n\
    struct Note { text: String, n: u8 }\n";

const TAG_V1: &str = "#[dsu::updateable]\npub struct Tag { pub text: String }\n";
const TAG_V2: &str =
    "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Tag, to = dsu_old::Tag, default)]\n\
    pub struct Tag { pub text: String, pub weight: u8 }\n";

const STORE: &str = "use std::sync::Mutex;\nuse crate::outer::tags::Tag;\n{ENTRY}\
    static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
    #[dsu::updateable]\npub fn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n\
    pub struct Holder { pub cells: dsu::Cell<Mutex<Vec<Entry>>> }\n\
    #[dsu::updateable]\npub fn held(h: &Holder) -> usize { h.cells.with(|c| c.lock().unwrap().len()) }\n";

const ENTRY_V1: &str = "#[dsu::updateable]\npub struct Entry { pub name: String, pub tag: Tag, hits: u32, at: super::Stamp }\n";
const ENTRY_V2: &str =
    "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]\n\
    pub struct Entry { pub tag: Tag, pub name: String, hits: u32, pub seen: bool, at: super::Stamp }\n";

const MAIN: &str = "use std::sync::Mutex;\nuse core_logic::Entry;\nuse dsu::Cell;\n\
    pub struct Local { pub c: Cell<Vec<Entry>> }\n\
    static CELLS: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"cells\", Default::default);\n\
    #[dsu::updateable]\nfn total() -> usize { CELLS.with(|c| c.lock().unwrap().len()) + core_logic::count() }\n\
    fn main() { let _ = total(); }\n";

fn rustc(dir: &Path, edition: &str, args: &[&str]) {
    let out = rustc_output(dir, edition, args);
    assert!(out.status.success(), "rustc {args:?}:\n{}", String::from_utf8_lossy(&out.stderr));
}

fn rustc_output(dir: &Path, edition: &str, args: &[&str]) -> std::process::Output {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    Command::new(rustc)
        .current_dir(dir)
        .args(["--edition", edition, "--out-dir", "out", "-L", "out"])
        .args(args)
        .output()
        .unwrap()
}

/// The stand-in `dsu` crate, built in `dir/out`.
fn stand_in(dir: &Path) {
    std::fs::write(dir.join("macros.rs"), MACROS).unwrap();
    std::fs::write(dir.join("dsu.rs"), DSU).unwrap();
    rustc(dir, "2021", &["--crate-type", "proc-macro", "--crate-name", "dsu_stand_in_macros", "macros.rs"]);
    let macros = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("dsu_stand_in_macros"))
        .unwrap();
    let macros = format!("dsu_stand_in_macros={}", macros.display());
    rustc(dir, "2021", &["--crate-type", "rlib", "--crate-name", "dsu", "dsu.rs", "--extern", &macros]);
}

/// A derived transformer takes values of the new type apart (moves fields out of it, builds it
/// from parts): a `Drop` impl, which would then never run or run on parts the old value still
/// owns, is refused by the compiler where the inserted code takes a value apart.
#[test]
fn a_type_with_a_drop_impl_has_no_derived_transformer() {
    let v1 = "use std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct Entry { pub name: String }\n\
        static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { STORE.with(|c| c.lock().unwrap().len()) }\n\
        fn main() { let _ = count(); }\n";
    let v2 = v1.replace(
        "pub struct Entry { pub name: String }",
        "#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry { pub name: String, pub n: u8 }\n\
         #[dsu::updateable]\n\
         impl Drop for Entry { fn drop(&mut self) {} }",
    );
    let r = cmp_main("drop-impl", v1, &v2);
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    let dir = checkout("drop-impl-build", &[("src/main.rs", &v2)]);
    for (file, text) in apply(&dir, &r.generated) {
        std::fs::write(dir.join(file), text).unwrap();
    }
    stand_in(&dir);
    let out = rustc_output(
        &dir,
        "2021",
        &["--crate-type", "bin", "--emit", "metadata", "src/main.rs", "--cfg", "dsu_patch", "--extern", "dsu=out/libdsu.rlib"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("error[E0509]: cannot move out of type `Entry`, which implements the `Drop` trait"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect()
}

#[test]
fn inserted_code_compiles_across_modules_and_crates() {
    let units = [unit("core_logic", "src/lib.rs"), unit("app", "src/main.rs")];
    let revision = |tag: &str, note: &str, entry: &str| {
        [
            ("src/lib.rs".to_string(), LIB.replace("{TAG}", tag).replace("{NOTE}", note)),
            ("src/store.rs".to_string(), STORE.replace("{ENTRY}", entry)),
            ("src/main.rs".to_string(), MAIN.to_string()),
        ]
    };
    let (old, new) = (revision(TAG_V1, NOTE_V1, ENTRY_V1), revision(TAG_V2, NOTE_V2, ENTRY_V2));
    let (r, patched) = cmp_units("compiles", &units, &refs(&old), &refs(&new));
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
    assert_eq!(
        paths(&r.types_changed),
        ["core_logic::outer::tags::Tag", "core_logic::inline_cells::Note", "core_logic::store::Entry"]
    );
    assert_eq!(
        paths(&r.cells_reversible),
        [
            "core_logic::inline_cells::TAGS (cell \"tags\")",
            "core_logic::inline_cells::NOTES (cell \"notes\")",
            "app (field cells `dsu::Cell<Vec<Entry>>`, struct Local, field c)",
            "app::CELLS (cell \"cells\")",
            "core_logic::store::STORE (cell \"store\")",
            "core_logic::store (field cells `dsu::Cell<Mutex<Vec<Entry>>>`, struct Holder, field cells)"
        ]
    );

    let dir = checkout("compiles-build", &refs(&new));
    // The patch build adds a record per state cell, in the cells' modules, before compiling.
    let cells = crate::compare::cells::records(&units, &dir).unwrap();
    assert!(cells.refusals.is_empty(), "{:?}", cells.refusals);
    let records: String = cells.insertions.iter().map(|i| i.text.as_str()).collect();
    for (name, ty) in [
        ("tags", "Mutex<Vec<Tag>>"),
        ("notes", "Mutex<Vec<Note>>"),
        ("store", "Mutex<Vec<Entry>>"),
        ("cells", "Mutex<Vec<Entry>>"),
    ] {
        let symbol = format!("#[unsafe(export_name = \"__dsu_state_{name}\")]");
        assert!(records.contains(&symbol), "{symbol} in {records}");
        assert!(records.contains(&format!("({name:?}, {ty:?})")), "{name}: {records}");
    }
    // And one per field-cell type and module, in the module.
    for (place, ty) in [("core_logic::store", "Mutex<Vec<Entry>>"), ("app", "Vec<Entry>")] {
        let record = squash(&format!("FieldCellInfo::new::<{ty}>({place:?}, {ty:?})"));
        assert!(squash(&records).contains(&record), "{place}: {records}");
    }
    let mut all = r.generated.clone();
    for i in cells.insertions {
        match all.iter_mut().find(|a| a.file == i.file && a.offset == i.offset) {
            Some(a) => a.text.push_str(&i.text),
            None => all.push(i),
        }
    }
    all.sort_by(|a, b| (&a.file, a.offset).cmp(&(&b.file, b.offset)));
    let _ = patched;
    for (file, text) in apply(&dir, &all) {
        std::fs::write(dir.join(file), text).unwrap();
    }
    stand_in(&dir);
    let patch = ["--cfg", "dsu_patch", "--extern", "dsu=out/libdsu.rlib"];
    // In both editions a program may be written in: in 2024 the exports' attributes must say
    // `unsafe(…)`, as the code inserted into the user's files does.
    for edition in ["2021", "2024"] {
        rustc(
            &dir,
            edition,
            &[&["--crate-type", "rlib", "--crate-name", "core_logic", "src/lib.rs"][..], &patch].concat(),
        );
        rustc(
            &dir,
            edition,
            &[
                &[
                    "--crate-type",
                    "bin",
                    "--crate-name",
                    "app",
                    "--emit",
                    "metadata",
                    "src/main.rs",
                    "--extern",
                    "core_logic=out/libcore_logic.rlib",
                ][..],
                &patch,
            ]
            .concat(),
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
