//! State-cell records: one exported `dsu::__private::CellInfo` per `dsu::State` static of the
//! updateable set, in the static's module: the cell's name and the fingerprint of the value type
//! the patch's code was compiled for. The loader reads them from the patch file and refuses a
//! patch whose code would meet a cell of another type that the patch does not transform.
//!
//! The patch build generates them ([`records`]), from the newer source as it compiles it, for
//! every patch, whether `cargo dsu patch` compared revisions first or not: a patch with state
//! cells and no records could not be checked. `cargo dsu patch` also refuses, through the compare
//! step ([`refusals`]), what would make the records wrong or impossible: one cell name given two
//! value types in two places (the runtime finds cells by name, so they are one cell), or a name
//! that is not a string literal.

use super::tree::{ModuleId, Tree};
use super::{CrateUnit, Insertion, Refusal};
use anyhow::Result;
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::Item;

/// The records of a source tree, and what makes it impossible to write them.
pub struct CellRecords {
    /// One insertion per module holding cells, into the newer revision's files.
    pub insertions: Vec<Insertion>,
    pub refusals: Vec<Refusal>,
}

/// One state cell of the tree.
struct Cell {
    module: ModuleId,
    ident: String,
    /// The value type as written, and its normalised text.
    value_type: syn::Type,
    type_text: String,
    cfgs: Vec<syn::Attribute>,
    file: String,
    line: usize,
}

/// The state-cell records of the crates `units` under `root`, as the patch build inserts them.
pub fn records(units: &[CrateUnit], root: &Path) -> Result<CellRecords> {
    Ok(scan(&Tree::read(units, root)?))
}

/// What `cargo dsu patch` must refuse about the state cells of the newer revision.
pub(crate) fn refusals(tree: &Tree) -> Vec<Refusal> {
    scan(tree).refusals
}

fn scan(tree: &Tree) -> CellRecords {
    let mut refusals = Vec::new();
    // Records already in the source (a checkout the patch build inserted into before) are kept.
    let mut present = BTreeSet::new();
    let mut by_name: BTreeMap<String, Vec<Cell>> = BTreeMap::new();
    for (id, module) in tree.modules() {
        for item in &module.items {
            let Item::Static(s) = item else { continue };
            if let Some(symbol) = export_name(&s.attrs) {
                if symbol.starts_with(dsu_abi::STATE_CELL_PREFIX) {
                    present.insert(symbol);
                }
            }
            let Some(cell) = dsu_syntax::state_cell(s) else { continue };
            let file = module.file.display().to_string();
            let line = s.span().start().line;
            let Some(name) = cell.name.map(syn::LitStr::value) else {
                let reason = format!(
                    "state cell `{}`: its name is not a string literal in `dsu::State::new(\"name\", …)`, \
                     so the type its code expects cannot be checked when a patch loads; write the \
                     name as a literal",
                    s.ident
                );
                refusals.push(Refusal { file, line, reason });
                continue;
            };
            by_name.entry(name).or_default().push(Cell {
                module: id,
                ident: s.ident.to_string(),
                value_type: cell.value_type.clone(),
                type_text: type_text(cell.value_type),
                cfgs: s.attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned().collect(),
                file,
                line,
            });
        }
    }
    let mut code: BTreeMap<(PathBuf, usize), String> = BTreeMap::new();
    for (name, cells) in &by_name {
        let first = &cells[0];
        if let Some(other) = cells.iter().find(|c| c.type_text != first.type_text) {
            refusals.push(Refusal {
                file: other.file.clone(),
                line: other.line,
                reason: format!(
                    "state cell \"{name}\" is declared with two value types: `{}` here (`{}`) and \
                     `{}` at {}:{} (`{}`). Cells are found by name, so these are one cell; give \
                     them one type or different names",
                    other.type_text, other.ident, first.type_text, first.file, first.line, first.ident
                ),
            });
            continue;
        }
        // One record per name: two exports of one symbol would not link.
        let symbol = format!("{}{}", dsu_abi::STATE_CELL_PREFIX, dsu_abi::symbol_safe(name));
        if present.contains(&symbol) {
            continue;
        }
        let module = tree.module(first.module);
        let text = code.entry((module.file.clone(), module.end)).or_insert_with(|| {
            "\n// Inserted by cargo-dsu: the types of the state cells this code reaches.\n".to_string()
        });
        write_record(text, &symbol, first, name);
    }
    let insertions =
        code.into_iter().map(|((file, offset), text)| Insertion { file, offset, text }).collect();
    CellRecords { insertions, refusals }
}

/// The exported record of cell `name`.
fn write_record(out: &mut String, symbol: &str, cell: &Cell, name: &str) {
    let cfgs: String = cell.cfgs.iter().map(|a| format!("{}\n", a.to_token_stream())).collect();
    let n = name.len() + cell.type_text.len();
    let _ = writeln!(
        out,
        "{cfgs}#[doc(hidden)]\n#[used]\n#[export_name = {symbol:?}]\n\
         static __DSU_STATE_{ident}: ::dsu::__private::CellInfo<{n}> = \
         ::dsu::__private::CellInfo::new::<{ty}>({name:?}, {text:?});",
        ident = cell.ident,
        ty = cell.value_type.to_token_stream(),
        text = cell.type_text,
    );
}

/// The `export_name` an item's attributes give it.
fn export_name(attrs: &[syn::Attribute]) -> Option<String> {
    attrs.iter().find_map(|a| match &a.meta {
        syn::Meta::NameValue(nv) if nv.path.is_ident("export_name") => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    })
}

/// A type's tokens as a person writes them: `Mutex<HashMap<String, Entry>>`.
fn type_text(ty: &syn::Type) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let tokens: Vec<&str> = raw.split(' ').collect();
    for (i, t) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).copied().unwrap_or("");
        out.push_str(t);
        let glue = matches!(*t, "<" | "::" | "&" | "(" | "[" | "'")
            || matches!(next, "<" | ">" | "::" | "," | ")" | "]" | ";" | "");
        if !glue {
            out.push(' ');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::compare::tests::{checkout, cmp_units, unit};

    #[test]
    fn one_name_with_two_types_is_refused_naming_both_places() {
        let units = [unit("core_logic", "src/lib.rs"), unit("app", "src/main.rs")];
        let lib = "pub mod a {\n    static N: dsu::State<u64> = dsu::State::new(\"n\", || 0);\n}\n";
        // In both revisions: a static cannot be added by a patch, and is refused as such.
        let main = "static COUNT: dsu::State<u32> = dsu::State::new(\"n\", || 0);\nfn main() {}\n";
        let old = [("src/lib.rs", lib), ("src/main.rs", main)];
        let new = old;
        let (r, _) = cmp_units("cells-two-types", &units, &old, &new);
        assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
        let refusal = &r.refusals[0];
        assert_eq!((refusal.file.as_str(), refusal.line), ("src/main.rs", 1));
        assert!(
            refusal.reason.contains("state cell \"n\" is declared with two value types: `u32` here (`COUNT`)")
                && refusal.reason.contains("`u64` at src/lib.rs:2 (`N`)"),
            "{}",
            refusal.reason
        );

        // The patch build refuses it too (it may run without the compare step), and writes one
        // record per name otherwise: one name in two places is one cell, and one symbol.
        let dir = checkout("cells-two-types-build", &new);
        assert_eq!(records(&units, &dir).unwrap().refusals.len(), 1);
        let same = "static COUNT: dsu::State<u64> = dsu::State::new(\"n\", || 0);\nfn main() {}\n";
        std::fs::write(dir.join("src/main.rs"), same).unwrap();
        let found = records(&units, &dir).unwrap();
        assert!(found.refusals.is_empty(), "{:?}", found.refusals);
        let text: String = found.insertions.iter().map(|i| i.text.as_str()).collect();
        assert_eq!(text.matches("#[export_name = \"__dsu_state_n\"]").count(), 1, "{text}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn type_text_reads_as_written() {
        let ty: syn::Type = syn::parse_str("std::sync::Mutex<HashMap<String, Vec<(u32, &'static str)>>>").unwrap();
        assert_eq!(type_text(&ty), "std::sync::Mutex<HashMap<String, Vec<(u32, &'static str)>>>");
        let ty: syn::Type = syn::parse_str("[u8; 4]").unwrap();
        assert_eq!(type_text(&ty), "[u8; 4]");
    }
}
