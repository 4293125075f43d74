//! Which struct, enum or union a type path written in a module names, across the modules and
//! crates of the set: `Entry`, `store::Entry`, `crate::store::Entry`, `super::Entry`,
//! `core_logic::Entry`, following `use` declarations (renames, groups, globs) and re-exports.
//!
//! This is name resolution as far as a type change needs it, from syntax alone: no macros, no
//! type aliases, no preludes. A path it cannot follow resolves to nothing, and callers fall back
//! on the type's name.

use super::items::ItemKey;
use super::tree::{Module, ModuleId, Tree};
use syn::{Item, UseTree};

/// How many `use` declarations one resolution may follow (re-exports may form a cycle).
const FUEL: u32 = 64;

/// What a name leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Module(ModuleId),
    Type(ItemKey),
}

/// One name a `use` declaration brings: `name` stands for `path` (relative as written).
struct Import {
    path: Vec<String>,
    leading_colon: bool,
    /// The name it is known by here; `None` for a glob (`path::*`).
    name: Option<String>,
}

pub struct Resolver<'a> {
    tree: &'a Tree,
}

impl<'a> Resolver<'a> {
    pub fn new(tree: &'a Tree) -> Self {
        Resolver { tree }
    }

    /// The type `path`, written in module `from`, names (with its generic arguments ignored).
    pub fn resolve_type(&self, from: ModuleId, path: &syn::Path) -> Option<ItemKey> {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        match self.resolve(from, &segments, path.leading_colon.is_some(), &mut FUEL.clone())? {
            Found::Type(key) => Some(key),
            Found::Module(_) => None,
        }
    }

    fn resolve(
        &self,
        from: ModuleId,
        segments: &[String],
        leading_colon: bool,
        fuel: &mut u32,
    ) -> Option<Found> {
        let (first, rest) = segments.split_first()?;
        let mut at =
            if leading_colon { self.extern_crate(from.unit, first)? } else { self.start(from, first, fuel)? };
        for segment in rest {
            let Found::Module(m) = at else { return None };
            at = self.lookup(m, segment, fuel)?;
        }
        Some(at)
    }

    /// What the first segment of a path written in `from` names.
    fn start(&self, from: ModuleId, first: &str, fuel: &mut u32) -> Option<Found> {
        match first {
            "crate" => Some(Found::Module(ModuleId { unit: from.unit, module: 0 })),
            "self" => Some(Found::Module(from)),
            "super" => self
                .tree
                .module(from)
                .parent
                .map(|module| Found::Module(ModuleId { unit: from.unit, module })),
            _ => self.lookup(from, first, fuel).or_else(|| self.extern_crate(from.unit, first)),
        }
    }

    /// The root of the crate `name` as another crate of the set sees it. Only a library can be
    /// depended on; among crates of that name, one with a `lib.rs` root is preferred.
    fn extern_crate(&self, from_unit: usize, name: &str) -> Option<Found> {
        let candidates: Vec<usize> = (0..self.tree.units.len())
            .filter(|&u| {
                u != from_unit
                    && self.tree.units[u].crate_name == name
                    && !self.tree.units[u].modules.is_empty()
            })
            .collect();
        let lib =
            candidates.iter().copied().find(|&u| self.tree.units[u].modules[0].file.ends_with("lib.rs"));
        lib.or(candidates.first().copied()).map(|unit| Found::Module(ModuleId { unit, module: 0 }))
    }

    /// What `name` names inside module `m`: a type or module defined there, or one it imports.
    fn lookup(&self, m: ModuleId, name: &str, fuel: &mut u32) -> Option<Found> {
        let module = self.tree.module(m);
        if let Some(&child) = module.children.get(name) {
            return Some(Found::Module(ModuleId { unit: m.unit, module: child }));
        }
        if defines_type(module, name) {
            return Some(Found::Type(ItemKey { unit: m.unit, path: format!("{}::{name}", module.path) }));
        }
        let imports = imports(module);
        for import in imports.iter().filter(|i| i.name.as_deref() == Some(name)) {
            if *fuel == 0 {
                return None;
            }
            *fuel -= 1;
            if let Some(found) = self.resolve(m, &import.path, import.leading_colon, fuel) {
                return Some(found);
            }
        }
        for glob in imports.iter().filter(|i| i.name.is_none()) {
            if *fuel == 0 {
                return None;
            }
            *fuel -= 1;
            if let Some(Found::Module(target)) = self.resolve(m, &glob.path, glob.leading_colon, fuel) {
                if target != m {
                    if let Some(found) = self.lookup(target, name, fuel) {
                        return Some(found);
                    }
                }
            }
        }
        None
    }
}

fn defines_type(module: &Module, name: &str) -> bool {
    module.items.iter().any(|item| match item {
        Item::Struct(s) => s.ident == name,
        Item::Enum(e) => e.ident == name,
        Item::Union(u) => u.ident == name,
        _ => false,
    })
}

/// Every name the `use` declarations of `module` bring.
fn imports(module: &Module) -> Vec<Import> {
    let mut out = Vec::new();
    for item in &module.items {
        if let Item::Use(u) = item {
            flatten(&u.tree, &mut Vec::new(), u.leading_colon.is_some(), &mut out);
        }
    }
    out
}

fn flatten(tree: &UseTree, prefix: &mut Vec<String>, leading_colon: bool, out: &mut Vec<Import>) {
    let mut import = |path: Vec<String>, name: Option<String>| out.push(Import { path, leading_colon, name });
    match tree {
        UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, leading_colon, out);
            prefix.pop();
        }
        // `use a::b::{self}` brings `b`.
        UseTree::Name(n) if n.ident == "self" => import(prefix.clone(), prefix.last().cloned()),
        UseTree::Name(n) => {
            import([prefix.as_slice(), &[n.ident.to_string()]].concat(), Some(n.ident.to_string()))
        }
        UseTree::Rename(r) if r.ident == "self" => import(prefix.clone(), Some(r.rename.to_string())),
        UseTree::Rename(r) => {
            import([prefix.as_slice(), &[r.ident.to_string()]].concat(), Some(r.rename.to_string()))
        }
        UseTree::Glob(_) => import(prefix.clone(), None),
        UseTree::Group(g) => {
            for tree in &g.items {
                flatten(tree, prefix, leading_colon, out);
            }
        }
    }
}
