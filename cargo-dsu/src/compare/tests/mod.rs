//! Tests of the compare step: checkouts written to temporary directories, compared as the
//! pipeline compares them.

mod compiles;
mod field_cells;
mod items;
mod routes;
mod statics;
mod trees;
mod types;
mod units;

use super::{compare, CrateUnit, Insertion, ItemRef, Report};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str =
    "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[dependencies]\ndsu = \"0.1\"\n";

/// A checkout holding `files`, and a `Cargo.toml` at its root unless `files` has one.
pub fn checkout(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsu-compare-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    if !files.iter().any(|(r, _)| *r == "Cargo.toml") {
        std::fs::write(dir.join("Cargo.toml"), MANIFEST).unwrap();
    }
    dir
}

pub fn unit(crate_name: &str, root_file: &str) -> CrateUnit {
    CrateUnit { crate_name: crate_name.into(), root_file: root_file.into(), package_dir: "".into(), cfg: None }
}

/// Compares two checkouts of the crates `units`; returns the report and the newer checkout's
/// files with the report's insertions applied.
pub fn cmp_units(
    name: &str,
    units: &[CrateUnit],
    old: &[(&str, &str)],
    new: &[(&str, &str)],
) -> (Report, BTreeMap<PathBuf, String>) {
    let a = checkout(&format!("{name}-old"), old);
    let b = checkout(&format!("{name}-new"), new);
    let r = compare(units, &a, &b).unwrap();
    let patched = apply(&b, &r.generated);
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
    (r, patched)
}

/// The error of comparing two checkouts of the crates `units`.
pub fn error_of(name: &str, units: &[CrateUnit], old: &[(&str, &str)], new: &[(&str, &str)]) -> String {
    let a = checkout(&format!("{name}-old"), old);
    let b = checkout(&format!("{name}-new"), new);
    let e = compare(units, &a, &b).expect_err("the comparison fails").to_string();
    let _ = std::fs::remove_dir_all(a);
    let _ = std::fs::remove_dir_all(b);
    e
}

/// Compares two checkouts of the package `app` with one crate, `src/main.rs`.
pub fn cmp(name: &str, old: &[(&str, &str)], new: &[(&str, &str)]) -> Report {
    cmp_units(name, &[unit("app", "src/main.rs")], old, new).0
}

/// Compares two revisions of `src/main.rs` of the package `app`.
pub fn cmp_main(name: &str, old: &str, new: &str) -> Report {
    cmp(name, &[("src/main.rs", old)], &[("src/main.rs", new)])
}

/// The files the insertions go into, with the insertions made as the pipeline makes them.
pub fn apply(root: &Path, insertions: &[Insertion]) -> BTreeMap<PathBuf, String> {
    let mut files: BTreeMap<PathBuf, String> = BTreeMap::new();
    for i in insertions.iter().rev() {
        let text = files
            .entry(i.file.clone())
            .or_insert_with(|| std::fs::read_to_string(root.join(&i.file)).unwrap());
        text.insert_str(i.offset, &i.text);
    }
    files
}

/// All generated code, in order.
pub fn generated(r: &Report) -> String {
    r.generated.iter().map(|i| i.text.as_str()).collect()
}

pub fn paths(v: &[ItemRef]) -> Vec<&str> {
    v.iter().map(|i| i.path.as_str()).collect()
}

pub fn reasons(r: &Report) -> Vec<&str> {
    r.refusals.iter().map(|x| x.reason.as_str()).collect()
}

/// Token text without spaces, so assertions do not depend on how tokens are printed.
pub fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}
