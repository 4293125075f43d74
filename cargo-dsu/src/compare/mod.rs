//! The compare step of `cargo dsu patch`: the source of the updateable set at two revisions,
//! read with syn, tells which updateable functions a patch replaces, adds or drops, which type
//! changes it carries and what code they need, and which changes it must refuse.
//!
//! The updateable set is a list of crates ([`CrateUnit`]); each is read by walking its module
//! tree from its root file (`tree.rs`). Stable paths are formed as the macros form them
//! (`dsu_syntax::stable_path`), so the report names functions as the runtime does. Only
//! behaviour counts: items are compared by their tokens without documentation
//! (`dsu_syntax::behaviour_tokens`).
//!
//! * `items.rs`: the items of interest of each crate, and the changes of functions and statics;
//! * `types.rs`: what a changed type needs (transformers, routing, refusals);
//! * `resolve.rs`: which type a path in a module names, across modules and crates;
//! * `generate.rs`: the code a type change inserts (old definitions, derived transformers, cell
//!   transforms), as [`Insertion`]s into the newer revision's files;
//! * `deps.rs`: dependency changes, which a patch cannot bring (called by the pipeline, which
//!   knows where the workspace's lock file is).

pub mod deps;
mod generate;
mod items;
mod resolve;
mod tree;
mod types;

#[cfg(test)]
mod tests;

use anyhow::{bail, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One crate of the updateable set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateUnit {
    /// The crate's name as rustc knows it (`-` replaced by `_`): what `module_path!()` starts with.
    pub crate_name: String,
    /// Its root source file, relative to the checkout root (e.g. `src/lib.rs`, `src/main.rs`,
    /// `src/bin/two.rs`, `crates/core/src/lib.rs`, or whatever `[[bin]] path = ...` says).
    pub root_file: PathBuf,
    /// Its package's directory, relative to the checkout root ("" for a package at the root):
    /// where its Cargo.toml is.
    pub package_dir: PathBuf,
    /// The configuration its build compiles with: items under a `#[cfg]` that does not hold are
    /// not part of the program. `None`: every item counts.
    pub cfg: Option<dsu_syntax::CfgSet>,
}

/// An item, where it is in the newer (or, if removed, the older) revision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemRef {
    pub path: String,
    /// Relative to the checkout root.
    pub file: String,
    pub line: usize,
}

/// A change the patch cannot apply safely.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    /// Relative to the checkout root.
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// Code the patch build inserts into a file of the newer revision before compiling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Insertion {
    /// Relative to the checkout root.
    pub file: PathBuf,
    /// Byte offset in that file of the newer revision. No two insertions share a file and an
    /// offset; apply them from the last offset of a file to the first.
    pub offset: usize,
    pub text: String,
}

/// What changed between two revisions.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Updateable functions whose body changed (signature equal).
    pub functions_changed: Vec<ItemRef>,
    /// Updateable functions only in the newer revision.
    pub functions_added: Vec<ItemRef>,
    /// Updateable functions only in the older revision (old callers keep the old code).
    pub functions_removed: Vec<ItemRef>,
    /// Other functions whose code changed: only callers inside the patch see the new version.
    pub non_updateable_changed: Vec<ItemRef>,
    /// Structs, enums and unions whose definition changed.
    pub types_changed: Vec<ItemRef>,
    /// State cells whose values the patch transforms to a changed type.
    pub cells_transformed: Vec<ItemRef>,
    /// Updateable functions whose signature mentions a changed type: callers compiled for the
    /// old layout keep the old version.
    pub functions_routed: Vec<ItemRef>,
    /// Changed types (of `types_changed`) that also have an inverse transformer,
    /// `#[dsu::transform(to = dsu_old::T)]`: their values can be moved back to the old layout.
    pub types_reversible: Vec<ItemRef>,
    /// Transformed cells (of `cells_transformed`) whose inverse transform the patch carries too
    /// (every changed type in the cell's type is reversible): a rollback can restore their values.
    /// The patch can be rolled back with its state when this lists every transformed cell.
    pub cells_reversible: Vec<ItemRef>,
    /// Crates of the set (their names) whose own source changed in behaviour.
    pub crates_changed: Vec<String>,
    pub refusals: Vec<Refusal>,
    /// Code the patch build inserts into the newer revision's files before compiling (old
    /// definitions, derived transformers, cell transforms).
    #[serde(skip)]
    pub generated: Vec<Insertion>,
}

impl Report {
    /// Whether the patch would replace or add no updateable function.
    pub fn is_empty_change(&self) -> bool {
        self.functions_changed.is_empty()
            && self.functions_added.is_empty()
            && self.cells_transformed.is_empty()
    }
}

/// One revision of the set, read.
pub(crate) struct Revision {
    pub tree: tree::Tree,
    pub items: items::Items,
}

impl Revision {
    fn read(units: &[CrateUnit], root: &Path) -> Result<Revision> {
        let tree = tree::Tree::read(units, root)?;
        let items = items::Items::collect(&tree);
        Ok(Revision { tree, items })
    }
}

/// Compares the crates `units` at two checkouts of the same layout, `old_root` and `new_root`.
/// A unit's root file may be missing at one revision (a crate the newer one adds), not at both.
pub fn compare(units: &[CrateUnit], old_root: &Path, new_root: &Path) -> Result<Report> {
    let old = Revision::read(units, old_root)?;
    let new = Revision::read(units, new_root)?;
    if let Some(i) = (0..units.len()).find(|&i| !old.tree.units[i].found && !new.tree.units[i].found) {
        bail!(
            "{}: no such file at either revision (root of crate `{}`)",
            units[i].root_file.display(),
            units[i].crate_name
        );
    }
    let mut report = Report::default();
    items::compare_functions(&old.items, &new.items, &mut report);
    items::refuse_changed_statics(&old.items, &new.items, &mut report);
    let changed = items::changed_types(&old.items, &new.items);
    report.types_changed = changed.iter().map(|k| new.items.get(k).at.clone()).collect();
    report.generated = types::plan(&old, &new, &changed, &mut report);
    report.crates_changed = items::crates_changed(&old.tree, &new.tree);
    sort(&mut report);
    Ok(report)
}

fn sort(report: &mut Report) {
    for list in [
        &mut report.functions_changed,
        &mut report.functions_added,
        &mut report.functions_removed,
        &mut report.non_updateable_changed,
        &mut report.types_changed,
        &mut report.cells_transformed,
        &mut report.functions_routed,
        &mut report.types_reversible,
        &mut report.cells_reversible,
    ] {
        list.sort_by(|a, b| (&a.file, a.line, &a.path).cmp(&(&b.file, b.line, &b.path)));
    }
    report.refusals.sort_by(|a, b| (&a.file, a.line, &a.reason).cmp(&(&b.file, b.line, &b.reason)));
}

