//! State-cell records: one exported `dsu::__private::CellInfo` per `dsu::State` static of the
//! updateable set, in the static's module: the cell's name and the fingerprint of the value type
//! the patch's code was compiled for. The loader reads them from the patch file and refuses a
//! patch whose code would meet a cell of another type that the patch does not transform.
//!
//! Field cells (`dsu::Cell<T>`, created at run time inside other values) have no name: the
//! runtime finds them by the fingerprint of their value. Every `dsu::Cell<T>` type the set's code
//! writes (a field's type, a signature's, a turbofish in a body) gets a record too, one per type
//! and module (`dsu::__private::FieldCellInfo`: where, and `T`'s fingerprint), and the loader
//! refuses a patch that neither names nor transforms the type of a live field cell. When a patch
//! changes a type, [`plan_field_transforms`] adds one field-cell transform per old value type
//! whose text mentions it, and refuses one old type that would become two new ones (field cells
//! are transformed by type, so they cannot go two ways).
//!
//! The patch build generates them ([`records`]), from the newer source as it compiles it, for
//! every patch, whether `cargo dsu patch` compared revisions first or not: a patch with state
//! cells and no records could not be checked. `cargo dsu patch` also refuses, through the compare
//! step ([`refusals`]), what would make the records wrong or impossible: one cell name given two
//! value types in two places (the runtime finds cells by name, so they are one cell), or a name
//! that is not a string literal.

use super::generate::{self, Generated, Site, ToOld};
use super::items::ItemKey;
use super::resolve::Resolver;
use super::tree::{ModuleId, Tree};
use super::{CrateUnit, Insertion, ItemRef, Refusal, Report, Revision};
use anyhow::Result;
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
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
            if let Some(symbol) = super::statics::own_symbol(&s.attrs, &s.ident) {
                if symbol.starts_with(dsu_abi::STATE_CELL_PREFIX) || symbol.starts_with(dsu_abi::FIELD_CELL_PREFIX) {
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
    // One record per `dsu::Cell<T>` type and module.
    for cell in field_cells(tree) {
        let module = tree.module(cell.module);
        let symbol = dsu_abi::field_cell_symbol(&module.path, &cell.type_text);
        if !present.insert(symbol.clone()) {
            continue;
        }
        let text = code.entry((module.file.clone(), module.end)).or_insert_with(|| {
            "\n// Inserted by cargo-dsu: the types of the state cells this code reaches.\n".to_string()
        });
        write_field_record(text, &symbol, &cell, &module.path);
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
        "{cfgs}#[doc(hidden)]\n#[used]\n#[unsafe(export_name = {symbol:?})]\n\
         static __DSU_STATE_{ident}: ::dsu::__private::CellInfo<{n}> = \
         ::dsu::__private::CellInfo::new::<{ty}>({name:?}, {text:?});",
        ident = cell.ident,
        ty = cell.value_type.to_token_stream(),
        text = cell.type_text,
    );
}

/// The exported record of the field-cell type `cell`, written in the module `place`.
fn write_field_record(out: &mut String, symbol: &str, cell: &FieldCell, place: &str) {
    let cfgs: String = cell.cfgs.iter().map(|a| format!("{}\n", a.to_token_stream())).collect();
    let n = place.len() + cell.type_text.len();
    let _ = writeln!(
        out,
        "{cfgs}#[doc(hidden)]\n#[used]\n#[unsafe(export_name = {symbol:?})]\n\
         static {ident}: ::dsu::__private::FieldCellInfo<{n}> = \
         ::dsu::__private::FieldCellInfo::new::<{ty}>({place:?}, {text:?});",
        ident = static_ident("__DSU_FIELD_CELL_", symbol),
        ty = cell.value_type.to_token_stream(),
        text = cell.type_text,
    );
}

/// A static's name made of `prefix` and the hash that ends `symbol`.
fn static_ident(prefix: &str, symbol: &str) -> String {
    let hash = symbol.rsplit('_').next().unwrap_or(symbol);
    format!("{prefix}{}", hash.to_uppercase())
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

/// One `dsu::Cell<T>` type written in the source.
pub(crate) struct FieldCell {
    pub module: ModuleId,
    /// `T`, and its text as a person writes it.
    pub value_type: syn::Type,
    pub type_text: String,
    /// Where in its module: the item, and the field or the rank among the item's other cell
    /// types; the same place in two revisions has the same location.
    pub location: String,
    pub file: String,
    pub line: usize,
    /// The `#[cfg]` attributes of the item it is written in.
    pub cfgs: Vec<syn::Attribute>,
}

/// Every `dsu::Cell<T>` type the crates of `tree` write: `dsu::Cell<T>`, `::dsu::Cell<T>`, or
/// `Cell<T>` (or its alias) where the module imports `dsu::Cell`. Skipped: types the module
/// cannot name at its end, where the records and transforms go (a generic parameter, `Self`,
/// `impl Trait`, `_`, a lifetime other than `'static`, an item or import local to a function
/// body), and code cargo-dsu inserted.
pub(crate) fn field_cells(tree: &Tree) -> Vec<FieldCell> {
    let mut found = Vec::new();
    for (id, module) in tree.modules() {
        let names = cell_imports(&module.items);
        for item in &module.items {
            match item {
                // An inline module's items are its own module's.
                Item::Mod(m) if m.content.is_some() => continue,
                Item::Static(s) if super::statics::own_symbol(&s.attrs, &s.ident).is_some_and(|e| e.starts_with("__dsu_")) => continue,
                _ => {}
            }
            let mut finder = Finder {
                module: id,
                file: module.file.display().to_string(),
                names: &names,
                scopes: Vec::new(),
                item: item_label(item),
                field: None,
                rank: 0,
                cfgs: item_attrs(item).iter().filter(|a| a.path().is_ident("cfg")).cloned().collect(),
                found: &mut found,
            };
            finder.visit_item(item);
        }
    }
    found
}

/// The names `dsu::Cell` is known by in a module, through its `use` declarations.
fn cell_imports(items: &[Item]) -> BTreeSet<String> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut BTreeSet<String>) {
        let is_dsu = |p: &[String]| p.len() == 1 && p[0] == "dsu";
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) if is_dsu(prefix) && n.ident == "Cell" => {
                out.insert("Cell".into());
            }
            syn::UseTree::Rename(r) if is_dsu(prefix) && r.ident == "Cell" => {
                out.insert(r.rename.to_string());
            }
            syn::UseTree::Glob(_) if is_dsu(prefix) => {
                out.insert("Cell".into());
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, prefix, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for item in items {
        if let Item::Use(u) = item {
            walk(&u.tree, &mut Vec::new(), &mut out);
        }
    }
    out
}

fn item_attrs(item: &Item) -> &[syn::Attribute] {
    match item {
        Item::Struct(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Const(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        _ => &[],
    }
}

/// An item as a location names it: `struct Shared`, `fn serve`, `impl Shared`.
fn item_label(item: &Item) -> String {
    match item {
        Item::Struct(i) => format!("struct {}", i.ident),
        Item::Enum(i) => format!("enum {}", i.ident),
        Item::Union(i) => format!("union {}", i.ident),
        Item::Fn(i) => format!("fn {}", i.sig.ident),
        Item::Impl(i) => format!("impl {}", i.self_ty.to_token_stream()),
        Item::Trait(i) => format!("trait {}", i.ident),
        Item::Static(i) => format!("static {}", i.ident),
        Item::Const(i) => format!("const {}", i.ident),
        Item::Type(i) => format!("type {}", i.ident),
        other => format!("item at line {}", other.span().start().line),
    }
}

struct Finder<'a> {
    module: ModuleId,
    file: String,
    /// The names `dsu::Cell` has here without a path.
    names: &'a BTreeSet<String>,
    /// Names that cannot be written at the module's end: generic parameters of the enclosing
    /// items, and items and imports local to the function bodies around, innermost last.
    scopes: Vec<BTreeSet<String>>,
    item: String,
    /// The field being visited, if any.
    field: Option<String>,
    /// How many cell types outside fields the item has shown so far.
    rank: usize,
    cfgs: Vec<syn::Attribute>,
    found: &'a mut Vec<FieldCell>,
}

impl Finder<'_> {
    fn scoped(&mut self, names: BTreeSet<String>, f: impl FnOnce(&mut Self)) {
        self.scopes.push(names);
        f(self);
        self.scopes.pop();
    }

    /// `T` of a `dsu::Cell<T>` written as `path`, if it is one.
    fn cell_value<'p>(&self, path: &'p syn::Path) -> Option<&'p syn::Type> {
        let segments: Vec<&syn::PathSegment> = path.segments.iter().collect();
        let cell = match segments.as_slice() {
            [dsu, cell, ..] if dsu.ident == "dsu" && cell.ident == "Cell" => cell,
            [cell, ..] if path.leading_colon.is_none() && self.names.contains(&cell.ident.to_string()) => cell,
            _ => return None,
        };
        let syn::PathArguments::AngleBracketed(args) = &cell.arguments else { return None };
        match args.args.first()? {
            syn::GenericArgument::Type(t) => Some(t),
            _ => None,
        }
    }

    /// Whether `ty` can be written at the module's end.
    fn nameable(&self, ty: &syn::Type) -> bool {
        struct Check<'s> {
            hidden: &'s [BTreeSet<String>],
            ok: bool,
        }
        impl<'ast> Visit<'ast> for Check<'_> {
            fn visit_type(&mut self, t: &'ast syn::Type) {
                if matches!(t, syn::Type::ImplTrait(_) | syn::Type::Infer(_) | syn::Type::Macro(_)) {
                    self.ok = false;
                }
                syn::visit::visit_type(self, t);
            }
            fn visit_path(&mut self, p: &'ast syn::Path) {
                if p.leading_colon.is_none() {
                    if let Some(first) = p.segments.first() {
                        let name = first.ident.to_string();
                        if name == "Self" || self.hidden.iter().any(|s| s.contains(&name)) {
                            self.ok = false;
                        }
                    }
                }
                syn::visit::visit_path(self, p);
            }
            fn visit_lifetime(&mut self, l: &'ast syn::Lifetime) {
                if l.ident != "static" {
                    self.ok = false;
                }
            }
        }
        let mut c = Check { hidden: &self.scopes, ok: true };
        c.visit_type(ty);
        c.ok
    }

    fn with_generics(&mut self, g: &syn::Generics, f: impl FnOnce(&mut Self)) {
        let names = g
            .params
            .iter()
            .filter_map(|p| match p {
                syn::GenericParam::Type(t) => Some(t.ident.to_string()),
                syn::GenericParam::Const(c) => Some(c.ident.to_string()),
                syn::GenericParam::Lifetime(_) => None,
            })
            .collect();
        self.scoped(names, f);
    }
}

/// The names of the items and imports a block declares, anywhere inside it.
fn declared_in(block: &syn::Block) -> BTreeSet<String> {
    struct Names(BTreeSet<String>);
    impl<'ast> Visit<'ast> for Names {
        fn visit_item(&mut self, item: &'ast Item) {
            match item {
                Item::Struct(i) => drop(self.0.insert(i.ident.to_string())),
                Item::Enum(i) => drop(self.0.insert(i.ident.to_string())),
                Item::Union(i) => drop(self.0.insert(i.ident.to_string())),
                Item::Type(i) => drop(self.0.insert(i.ident.to_string())),
                Item::Trait(i) => drop(self.0.insert(i.ident.to_string())),
                Item::Mod(i) => drop(self.0.insert(i.ident.to_string())),
                _ => {}
            }
            syn::visit::visit_item(self, item);
        }
        fn visit_use_name(&mut self, n: &'ast syn::UseName) {
            self.0.insert(n.ident.to_string());
        }
        fn visit_use_rename(&mut self, r: &'ast syn::UseRename) {
            self.0.insert(r.rename.to_string());
        }
    }
    let mut n = Names(BTreeSet::new());
    n.visit_block(block);
    n.0
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        if let Some(ty) = self.cell_value(p) {
            if self.nameable(ty) {
                let location = match &self.field {
                    Some(f) => format!("{}, field {f}", self.item),
                    None => {
                        self.rank += 1;
                        format!("{}, cell type {}", self.item, self.rank)
                    }
                };
                self.found.push(FieldCell {
                    module: self.module,
                    value_type: ty.clone(),
                    type_text: type_text(ty),
                    location,
                    file: self.file.clone(),
                    line: p.span().start().line,
                    cfgs: self.cfgs.clone(),
                });
            }
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_field(&mut self, f: &'ast syn::Field) {
        let name = f.ident.as_ref().map_or_else(|| "(unnamed)".to_string(), |i| i.to_string());
        let outer = self.field.replace(name);
        syn::visit::visit_field(self, f);
        self.field = outer;
    }

    fn visit_block(&mut self, b: &'ast syn::Block) {
        self.scoped(declared_in(b), |s| syn::visit::visit_block(s, b));
    }

    fn visit_item_struct(&mut self, i: &'ast syn::ItemStruct) {
        self.with_generics(&i.generics, |s| syn::visit::visit_item_struct(s, i));
    }

    fn visit_item_enum(&mut self, i: &'ast syn::ItemEnum) {
        self.with_generics(&i.generics, |s| syn::visit::visit_item_enum(s, i));
    }

    fn visit_item_union(&mut self, i: &'ast syn::ItemUnion) {
        self.with_generics(&i.generics, |s| syn::visit::visit_item_union(s, i));
    }

    fn visit_item_fn(&mut self, i: &'ast syn::ItemFn) {
        self.with_generics(&i.sig.generics, |s| syn::visit::visit_item_fn(s, i));
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        self.with_generics(&i.generics, |s| syn::visit::visit_item_impl(s, i));
    }

    fn visit_item_trait(&mut self, i: &'ast syn::ItemTrait) {
        // A trait's items may name `Self` through associated types: every name of it is hidden.
        let mut names: BTreeSet<String> = i.items.iter().filter_map(|t| match t {
            syn::TraitItem::Type(t) => Some(t.ident.to_string()),
            _ => None,
        }).collect();
        names.extend(i.generics.params.iter().filter_map(|p| match p {
            syn::GenericParam::Type(t) => Some(t.ident.to_string()),
            _ => None,
        }));
        self.scoped(names, |s| syn::visit::visit_item_trait(s, i));
    }

    fn visit_item_type(&mut self, i: &'ast syn::ItemType) {
        self.with_generics(&i.generics, |s| syn::visit::visit_item_type(s, i));
    }

    fn visit_impl_item_fn(&mut self, i: &'ast syn::ImplItemFn) {
        self.with_generics(&i.sig.generics, |s| syn::visit::visit_impl_item_fn(s, i));
    }

    fn visit_trait_item_fn(&mut self, i: &'ast syn::TraitItemFn) {
        self.with_generics(&i.sig.generics, |s| syn::visit::visit_trait_item_fn(s, i));
    }

    // Macro bodies are tokens, not syntax: what a macro expands to is not read.
    fn visit_macro(&mut self, _: &'ast syn::Macro) {}
}

/// What [`plan_field_transforms`] works with: the two revisions and what the type changes of
/// the patch have decided (see `types.rs`).
pub(super) struct FieldPlan<'p, 'a> {
    pub old: &'a Revision,
    pub new: &'a Revision,
    pub old_resolver: &'p Resolver<'a>,
    pub new_resolver: &'p Resolver<'a>,
    /// The changed types the patch carries, and those of them with an inverse transformer.
    pub changed: &'p BTreeSet<ItemKey>,
    pub reversible: &'p BTreeSet<ItemKey>,
    pub crate_names: &'p [String],
    pub gen: &'p mut Generated,
    /// Changed types named outside their module (they need re-exports to their crate's root).
    pub aliases: &'p mut BTreeSet<ItemKey>,
    pub report: &'p mut Report,
}

/// How the `dsu::Cell<T>` types of the set change between two revisions.
struct FieldChanges {
    new_cells: Vec<FieldCell>,
    /// Each old value type (a [`canonical`] key) with the new types it becomes, each with the
    /// first new cell (an index into `new_cells`) where it becomes it.
    becomes: BTreeMap<String, BTreeMap<String, usize>>,
    /// The old types a type change turns into others: each with its first new cell and the
    /// changed types its new form mentions.
    transformed: Vec<(String, usize, BTreeSet<ItemKey>)>,
}

impl FieldChanges {
    /// What the `dsu::Cell<T>` types of `new` become from, given the changed types `changed`:
    /// a type mentioning changed types comes from its form with their old definitions; a type
    /// at a place (a field, or the rank of a cell type in an item) that also holds one in `old`
    /// comes from that one.
    fn read(old: &Revision, new: &Revision, old_res: &Resolver<'_>, new_res: &Resolver<'_>, changed: &BTreeSet<ItemKey>) -> Self {
        let old_cells = field_cells(&old.tree);
        let new_cells = field_cells(&new.tree);
        let place = |tree: &Tree, c: &FieldCell| (tree.module(c.module).path.clone(), c.location.clone());
        let old_at: BTreeMap<(String, String), &FieldCell> =
            old_cells.iter().map(|c| (place(&old.tree, c), c)).collect();
        let mut becomes: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        let mut transformed: Vec<(String, usize, BTreeSet<ItemKey>)> = Vec::new();
        for (i, cell) in new_cells.iter().enumerate() {
            let new_key = canonical(new_res, cell.module, &cell.value_type, changed, false);
            let mentioned = generate::mentioned(new_res, cell.module, &cell.value_type, changed);
            if !mentioned.is_empty() {
                let old_key = canonical(new_res, cell.module, &cell.value_type, changed, true);
                becomes.entry(old_key.clone()).or_default().entry(new_key.clone()).or_insert(i);
                if !transformed.iter().any(|(k, _, _)| *k == old_key) {
                    transformed.push((old_key, i, mentioned));
                }
            }
            if let Some(o) = old_at.get(&place(&new.tree, cell)) {
                let old_key = canonical(old_res, o.module, &o.value_type, changed, true);
                becomes.entry(old_key).or_default().entry(new_key).or_insert(i);
            }
        }
        FieldChanges { new_cells, becomes, transformed }
    }

    /// The old types that would become two new ones, each with two places where they do.
    fn two_ways(&self) -> impl Iterator<Item = (&str, &FieldCell, &FieldCell)> {
        self.becomes.iter().filter_map(|(old, news)| {
            let mut at = news.values();
            let (a, b) = (*at.next()?, *at.next()?);
            Some((old.as_str(), &self.new_cells[a], &self.new_cells[b]))
        })
    }
}

/// Refuses a patch where the values of field cells of one type would become two types: field
/// cells are transformed by the type of their value, so they cannot go two ways. `changed` are
/// the types whose definitions the patch changes.
pub(crate) fn refuse_two_ways(old: &Revision, new: &Revision, changed: &[ItemKey], report: &mut Report) {
    let (old_res, new_res) = (Resolver::new(&old.tree), Resolver::new(&new.tree));
    let changed: BTreeSet<ItemKey> = changed.iter().cloned().collect();
    let changes = FieldChanges::read(old, new, &old_res, &new_res, &changed);
    for (_, a, b) in changes.two_ways() {
        report.refusals.push(Refusal {
            file: b.file.clone(),
            line: b.line,
            reason: format!(
                "field cells (`dsu::Cell`) whose values have one type in the running program \
                 would hold `{}` here ({}) and `{}` at {}:{} ({}): field cells are transformed by \
                 the type of their value, so one type cannot become two. Give them distinct types \
                 in both revisions",
                b.type_text, b.location, a.type_text, a.file, a.line, a.location
            ),
        });
    }
}

/// Generates the field-cell transforms of a patch: for each `dsu::Cell<T>` type of the newer
/// revision whose `T` mentions a changed type, one `CellTransform::field` from `T` with the
/// changed types' old definitions to `T` (and back, when each of them has an inverse), once per
/// old type, in the module of its first occurrence. An old type that would become two new ones
/// gets none ([`refuse_two_ways`] refuses the patch).
pub(super) fn plan_field_transforms(plan: &mut FieldPlan<'_, '_>) {
    let changes = FieldChanges::read(plan.old, plan.new, plan.old_resolver, plan.new_resolver, plan.changed);
    let two_ways: BTreeSet<&str> = changes.two_ways().map(|(old, _, _)| old).collect();
    for (old_key, i, mentioned) in &changes.transformed {
        if !two_ways.contains(old_key.as_str()) {
            write_field_transform(plan, old_key, &changes.new_cells[*i], mentioned);
        }
    }
}

/// The exported field-cell transform from the old form of `cell`'s type (and its inverse when
/// every changed type it mentions has one), in `cell`'s module.
fn write_field_transform(plan: &mut FieldPlan<'_, '_>, old_key: &str, cell: &FieldCell, mentioned: &BTreeSet<ItemKey>) {
    let module = plan.new.tree.module(cell.module);
    let mut old_ty = cell.value_type.clone();
    ToOld {
        resolver: plan.new_resolver,
        written_in: cell.module,
        changed: plan.changed,
        site: Site { unit: cell.module.unit, module_path: &module.path, inside_dsu_old: false },
        crate_names: plan.crate_names,
        aliases: plan.aliases,
    }
    .visit_type_mut(&mut old_ty);
    let (old_text, new_text) = (old_ty.to_token_stream(), cell.value_type.to_token_stream());
    let cfgs: String = cell.cfgs.iter().map(|a| format!("{}\n", a.to_token_stream())).collect();
    let code = &mut plan.gen.code(cell.module).cells;
    let mut write = |prefix: &str, kind: &str, from: &proc_macro2::TokenStream, to: &proc_macro2::TokenStream, shown: &str| {
        let symbol = dsu_abi::field_transform_symbol(prefix, old_key);
        let _ = writeln!(
            code,
            "{cfgs}#[doc(hidden)]\n#[used]\n#[unsafe(export_name = {symbol:?})]\n\
             static {ident}: ::dsu::__private::CellTransform = \
             ::dsu::__private::CellTransform::field::<{from}, {to}>({shown:?});",
            ident = static_ident(kind, &symbol),
        );
    };
    write(dsu_abi::FIELD_TRANSFORM_PREFIX, "__DSU_FIELDXF_", &old_text, &new_text, &cell.type_text);
    let at = ItemRef {
        path: format!("{} (field cells `dsu::Cell<{}>`, {})", module.path, cell.type_text, cell.location),
        file: cell.file.clone(),
        line: cell.line,
    };
    if mentioned.iter().all(|t| plan.reversible.contains(t)) {
        let shown = type_text(&old_ty);
        write(dsu_abi::FIELD_INVERSE_PREFIX, "__DSU_UNFIELDXF_", &new_text, &old_text, &shown);
        plan.report.cells_reversible.push(at.clone());
    }
    plan.report.cells_transformed.push(at);
}

/// A key for the type `ty` written in module `at`, the same for the same type wherever it is
/// written: each path that resolves to an item of the set is its stable path (with `old:` before
/// the changed types of `changed` when `old`, which names the type before the patch); other paths
/// stay as written.
fn canonical(resolver: &Resolver<'_>, at: ModuleId, ty: &syn::Type, changed: &BTreeSet<ItemKey>, old: bool) -> String {
    struct Canon<'r, 'a> {
        resolver: &'r Resolver<'a>,
        at: ModuleId,
        changed: &'r BTreeSet<ItemKey>,
        old: bool,
        keys: Vec<String>,
    }
    impl VisitMut for Canon<'_, '_> {
        fn visit_type_path_mut(&mut self, p: &mut syn::TypePath) {
            syn::visit_mut::visit_type_path_mut(self, p);
            if p.qself.is_some() {
                return;
            }
            let key = self
                .resolver
                .resolve_type(self.at, &p.path)
                .or_else(|| generate::changed_type(self.resolver, self.at, &p.path, self.changed));
            let Some(key) = key else { return };
            let mark = if self.old && self.changed.contains(&key) { "old:" } else { "" };
            self.keys.push(format!("{mark}{}/{}", key.unit, key.path));
            let Some(last) = p.path.segments.pop() else { return };
            let mut last = last.into_value();
            last.ident = syn::Ident::new(&format!("__k{}", self.keys.len() - 1), last.ident.span());
            p.path = syn::Path { leading_colon: None, segments: std::iter::once(last).collect() };
        }
    }
    let mut ty = ty.clone();
    let mut c = Canon { resolver, at, changed, old, keys: Vec::new() };
    c.visit_type_mut(&mut ty);
    format!("{}|{}", type_text(&ty), c.keys.join("|"))
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
        assert_eq!(text.matches("#[unsafe(export_name = \"__dsu_state_n\")]").count(), 1, "{text}");
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
