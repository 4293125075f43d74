//! The code a type change needs, inserted into the newer revision's modules:
//!
//! * in the module of each changed type, `pub mod dsu_old { use super::*; … }` with the old
//!   revision's definitions (made `pub`, fields short of `pub` made `pub(crate)`, so transformers
//!   and cell transforms can name and build them, whatever the type's visibility), and the
//!   derived transformers;
//! * in the module of each transformed state cell, its exported `CellTransform` (and inverse);
//! * where code outside a type's module must name its old definition, a chain of hidden
//!   re-exports from the type's module up to its crate's root, `__dsu_old_<path>`, reachable as
//!   `crate::__dsu_old_<path>` in that crate and `::<crate>::__dsu_old_<path>` from the others,
//!   however private the modules on the way.

use super::items::ItemKey;
use super::resolve::Resolver;
use super::tree::{ModuleId, Tree};
use super::{Insertion, Revision};
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use syn::visit_mut::VisitMut;
use syn::{Fields, Item};

/// The code generated for one module.
#[derive(Default)]
pub struct ModuleCode {
    /// The old definitions, for `mod dsu_old`.
    pub old_defs: String,
    /// The names the old definitions are given there (no import may take them).
    pub old_idents: BTreeSet<String>,
    /// The old module's imports of names the old definitions use, by the name each brings in
    /// (see [`old_imports`]).
    pub old_uses: BTreeMap<String, String>,
    /// Derived transformers.
    pub impls: String,
    /// Cell transforms.
    pub cells: String,
    /// Re-exports of old definitions on the way to the crate root.
    reexports: String,
}

/// Everything generated for a patch, by module of the newer revision.
#[derive(Default)]
pub struct Generated {
    modules: BTreeMap<ModuleId, ModuleCode>,
    /// Changed types whose old definition is named outside its module.
    aliases: BTreeSet<ItemKey>,
}

impl Generated {
    /// Asks for the re-exports that let code outside their modules name these old definitions.
    pub fn need_aliases(&mut self, keys: BTreeSet<ItemKey>) {
        self.aliases.extend(keys);
    }

    pub fn code(&mut self, module: ModuleId) -> &mut ModuleCode {
        self.modules.entry(module).or_default()
    }

    /// The insertions into the newer revision's files, one per module that gets code.
    pub fn into_insertions(mut self, new: &Revision) -> Vec<Insertion> {
        for key in std::mem::take(&mut self.aliases) {
            self.write_alias_chain(&new.tree, new.items.get(&key).module, &key);
        }
        // A file two crates of the set both reach holds the same code for each: once is enough.
        let mut texts: BTreeMap<(PathBuf, usize), Vec<String>> = BTreeMap::new();
        for (id, code) in self.modules {
            let module = new.tree.module(id);
            let text = code.render();
            let at = texts.entry((module.file.clone(), module.end)).or_default();
            if !at.contains(&text) {
                at.push(text);
            }
        }
        texts
            .into_iter()
            .map(|((file, offset), texts)| Insertion { file, offset, text: texts.concat() })
            .collect()
    }

    /// `pub use` of the old definition of `key` (in module `at`) in each module from `at`'s
    /// parent up to the crate root, under its alias name; each carries the `cfg`s of the module
    /// it reaches into.
    fn write_alias_chain(&mut self, tree: &Tree, at: ModuleId, key: &ItemKey) {
        let alias = alias_name(key, &tree.units[key.unit].crate_name);
        let mut target = format!("dsu_old::{}", key.ident());
        let mut child = at;
        if tree.module(at).parent.is_none() {
            let line =
                format!("#[doc(hidden)]\n#[allow(unused_imports)]\npub use self::{target} as {alias};\n");
            self.code(at).reexports.push_str(&line);
        }
        while let Some(parent) = tree.module(child).parent {
            let module = tree.module(child);
            let cfgs: String = module.cfgs.iter().map(|a| format!("{}\n", a.to_token_stream())).collect();
            let line = format!(
                "{cfgs}#[doc(hidden)]\n#[allow(unused_imports)]\npub use self::{}::{target} as {alias};\n",
                module.name
            );
            let parent = ModuleId { unit: at.unit, module: parent };
            self.code(parent).reexports.push_str(&line);
            target = alias.clone();
            child = parent;
        }
    }
}

impl ModuleCode {
    fn render(&self) -> String {
        let mut s = format!(
            "\n// Inserted by cargo-dsu: what this patch's type changes need.\n{}{}{}",
            self.impls, self.cells, self.reexports
        );
        if !self.old_defs.is_empty() {
            let uses: String = self
                .old_uses
                .iter()
                .filter(|(name, _)| !self.old_idents.contains(*name))
                .map(|(_, line)| format!("    {line}\n"))
                .collect();
            let _ = write!(
                s,
                "\n/// The old revision's definitions of the types this patch changes.\n\
                 #[doc(hidden)]\n#[allow(dead_code, unused_imports, private_interfaces)]\n\
                 pub mod dsu_old {{\n    use super::*;\n{uses}{}}}\n",
                self.old_defs
            );
        }
        s
    }
}

/// The name of the re-export of `key`'s old definition at its crate's root.
fn alias_name(key: &ItemKey, crate_name: &str) -> String {
    let inside = key.path.strip_prefix(crate_name).unwrap_or(&key.path).trim_start_matches("::");
    format!("__dsu_old_{}", inside.replace("::", "__"))
}

/// Where code names the old revision's definitions: a module (by unit and `module_path!()`),
/// inside its `dsu_old` or not.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub unit: usize,
    pub module_path: &'a str,
    pub inside_dsu_old: bool,
}

/// Rewrites type paths that name a changed type (of `changed`) to its old definition, as seen
/// from `site`. Paths are resolved by `resolver` in module `written_in` of the revision the
/// type was written in.
pub struct ToOld<'a> {
    pub resolver: &'a Resolver<'a>,
    pub written_in: ModuleId,
    pub changed: &'a BTreeSet<ItemKey>,
    pub site: Site<'a>,
    pub crate_names: &'a [String],
    /// Changed types named outside their module (they need an alias chain).
    pub aliases: &'a mut BTreeSet<ItemKey>,
}

impl VisitMut for ToOld<'_> {
    fn visit_type_path_mut(&mut self, p: &mut syn::TypePath) {
        syn::visit_mut::visit_type_path_mut(self, p);
        if p.qself.is_some() {
            return;
        }
        let Some(key) = changed_type(self.resolver, self.written_in, &p.path, self.changed) else {
            if self.site.inside_dsu_old {
                one_level_deeper(&mut p.path);
            }
            return;
        };
        let module_path = key.path.rsplit_once("::").map_or("", |(m, _)| m);
        let ident = key.ident();
        p.path = if key.unit == self.site.unit && module_path == self.site.module_path {
            let local =
                if self.site.inside_dsu_old { ident.to_string() } else { format!("dsu_old::{ident}") };
            syn::parse_str(&local).expect("a path")
        } else {
            self.aliases.insert(key.clone());
            let alias = alias_name(&key, &self.crate_names[key.unit]);
            let text = if key.unit == self.site.unit {
                format!("crate::{alias}")
            } else {
                format!("::{}::{alias}", self.crate_names[key.unit])
            };
            syn::parse_str(&text).expect("a path")
        };
    }
}

/// A path relative to its module (`self::…`, `super::…`) as written one module deeper, in
/// `dsu_old`.
fn one_level_deeper(path: &mut syn::Path) {
    let Some(first) = path.segments.first_mut() else { return };
    if first.ident == "self" {
        first.ident = syn::Ident::new("super", first.ident.span());
    } else if first.ident == "super" {
        path.segments.insert(0, syn::parse_quote!(super));
    }
}

/// The changed type (of `changed`) `path`, written in module `from`, names: resolved, or, for
/// a one-segment path that cannot be resolved, the only changed type of that name.
pub fn changed_type(
    resolver: &Resolver<'_>,
    from: ModuleId,
    path: &syn::Path,
    changed: &BTreeSet<ItemKey>,
) -> Option<ItemKey> {
    match resolver.resolve_type(from, path) {
        Some(key) => changed.contains(&key).then_some(key),
        None if path.segments.len() == 1 => {
            let ident = path.segments[0].ident.to_string();
            let mut same_name = changed.iter().filter(|k| k.ident() == ident);
            match (same_name.next(), same_name.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
        None => None,
    }
}

/// The changed types (of `changed`) `ty`, written in module `from`, mentions.
pub fn mentioned(
    resolver: &Resolver<'_>,
    from: ModuleId,
    ty: &syn::Type,
    changed: &BTreeSet<ItemKey>,
) -> BTreeSet<ItemKey> {
    struct Collect<'a> {
        resolver: &'a Resolver<'a>,
        from: ModuleId,
        changed: &'a BTreeSet<ItemKey>,
        found: BTreeSet<ItemKey>,
    }
    impl<'ast> syn::visit::Visit<'ast> for Collect<'_> {
        fn visit_type_path(&mut self, p: &'ast syn::TypePath) {
            syn::visit::visit_type_path(self, p);
            if p.qself.is_none() {
                self.found.extend(changed_type(self.resolver, self.from, &p.path, self.changed));
            }
        }
    }
    let mut c = Collect { resolver, from, changed, found: BTreeSet::new() };
    syn::visit::Visit::visit_type(&mut c, ty);
    c.found
}

/// The old definition as `mod dsu_old` holds it: without `#[dsu::transform]` and docs, `pub`,
/// its fields that are not `pub` made `pub(crate)` (visibility is no part of a fingerprint), the
/// changed types it mentions named by their old definitions, and paths relative to its module
/// (`self::`, `super::`) written from one module deeper.
pub fn old_definition(old: &Item, to_old: &mut ToOld<'_>) -> String {
    let mut item = old.clone();
    dsu_syntax::strip_docs(&mut item);
    match &mut item {
        Item::Struct(s) => {
            dsu_syntax::remove_transform_attrs(&mut s.attrs);
            s.vis = syn::parse_quote!(pub);
            // Any visibility short of `pub` (private, `pub(self)`, `pub(super)`, `pub(in …)`)
            // would be read one module deeper, from inside `dsu_old`, and could hide the field
            // from the type's own module, where transformers read and build it.
            for f in s.fields.iter_mut() {
                if !matches!(f.vis, syn::Visibility::Public(_)) {
                    f.vis = syn::parse_quote!(pub(crate));
                }
            }
        }
        Item::Enum(e) => {
            dsu_syntax::remove_transform_attrs(&mut e.attrs);
            e.vis = syn::parse_quote!(pub);
        }
        _ => {}
    }
    to_old.visit_item_mut(&mut item);
    format!("    {}\n", item.to_token_stream())
}

/// The imports of the old module (`items`) that bring in a name the old definitions (`text`, as
/// written into `dsu_old`) use, each as one `use` line written from inside `dsu_old`, by the
/// name it brings in. `dsu_old` sees the newer module's names through `use super::*`; a name
/// only the older revision imported (`BTreeSet`, where the newer module moved to `BTreeMap`)
/// must be imported again. Globs are left out (the newer module's names come first).
pub fn old_imports(items: &[Item], text: &str) -> BTreeMap<String, String> {
    fn walk(tree: &syn::UseTree, prefix: &mut Vec<String>, cfgs: &str, text: &str, out: &mut BTreeMap<String, String>) {
        let mut leaf = |path: Vec<String>, name: String, rename: Option<String>| {
            let brought = rename.clone().unwrap_or_else(|| name.clone());
            if !super::types::mentions(text, &brought) {
                return;
            }
            // One module deeper: `self` is `super`, `super` one more.
            let mut path = path;
            match path.first().map(String::as_str) {
                Some("self") => path[0] = "super".into(),
                Some("super") => path.insert(0, "super".into()),
                _ => {}
            }
            let mut full = path.join("::");
            if name != "self" {
                full = if full.is_empty() { name } else { format!("{full}::{name}") };
            }
            let tail = rename.map(|r| format!(" as {r}")).unwrap_or_default();
            out.insert(brought, format!("{cfgs}use {full}{tail};"));
        };
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                walk(&p.tree, prefix, cfgs, text, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let rename = (name == "self").then(|| prefix.last().cloned()).flatten();
                leaf(prefix.clone(), name, rename);
            }
            syn::UseTree::Rename(r) => leaf(prefix.clone(), r.ident.to_string(), Some(r.rename.to_string())),
            syn::UseTree::Glob(_) => {}
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, prefix, cfgs, text, out)),
        }
    }
    let mut out = BTreeMap::new();
    for item in items {
        let Item::Use(u) = item else { continue };
        let cfgs: String =
            u.attrs.iter().filter(|a| a.path().is_ident("cfg")).map(|a| format!("{} ", a.to_token_stream())).collect();
        let mut prefix = Vec::new();
        if u.leading_colon.is_some() {
            prefix.push(String::new());
        }
        walk(&u.tree, &mut prefix, &cfgs, text, &mut out);
    }
    out
}

/// Writes the exported `CellTransform` static of state cell `name` (the static `ident`): from
/// `from` to `to`, under `prefix` (the forward or the inverse symbol prefix).
pub fn write_cell_transform(
    out: &mut String,
    prefix: &str,
    kind: &str,
    ident: &syn::Ident,
    name: &str,
    from: &proc_macro2::TokenStream,
    to: &proc_macro2::TokenStream,
) {
    let symbol = format!("{prefix}{}", dsu_abi::symbol_safe(name));
    let _ = writeln!(
        out,
        "#[doc(hidden)]\n#[used]\n#[export_name = {symbol:?}]\n\
         static __DSU_{kind}_{ident}: ::dsu::__private::CellTransform = \
         ::dsu::__private::CellTransform::new::<{from}, {to}>({name:?});"
    );
}

/// Named fields as `(name, type text)`; `None` for tuple or unit structs and enums.
pub fn named_fields(item: &Item) -> Option<Vec<(String, String)>> {
    let Item::Struct(s) = item else { return None };
    let Fields::Named(f) = &s.fields else { return None };
    Some(
        f.named
            .iter()
            .map(|f| (f.ident.as_ref().expect("named").to_string(), f.ty.to_token_stream().to_string()))
            .collect(),
    )
}

/// A struct's named fields, each with its type, or `None` for tuple or unit structs and enums.
fn struct_fields(item: &Item) -> Option<Vec<(String, &syn::Type)>> {
    let Item::Struct(s) = item else { return None };
    let Fields::Named(f) = &s.fields else { return None };
    Some(f.named.iter().map(|f| (f.ident.as_ref().expect("named").to_string(), &f.ty)).collect())
}

/// How a derived transformer makes one field of the value it builds.
enum Make {
    /// Moved bitwise from the source field of the same name and type, which mentions no changed
    /// type: the same type on both sides, whatever it is (a `tokio` channel, a handle), so no
    /// `Transform` or fingerprint of it is needed.
    Carried,
    /// Transformed from the source field of the same name, whose type mentions a changed type:
    /// `Transform<source type>`.
    Transformed { source_ty: String },
    /// New: `Default::default()`.
    Default,
}

/// The struct a derived transformer builds: its path as the impl names it, and its fields with
/// their types as the impl names them.
struct Target {
    path: String,
    fields: Vec<(String, String)>,
}

/// The struct it reads: its path, and its fields' names.
struct Source {
    path: String,
    fields: Vec<String>,
}

/// The code of `unsafe impl Transform<source> for target`, building each field of `target` as
/// `make` says, reading the source value as `param`; fields only the source has are dropped on
/// commit. `checked` is the newer revision's type (a `Drop` impl of it is refused: a derived
/// transformer moves parts out of it or into it, never drops it whole).
fn derived_code(target: &Target, source: &Source, make: &[Make], param: &str, checked: (&str, &[String])) -> String {
    let mut staged = String::new();
    let mut fields = String::new();
    let (mut release_source, mut release_target) = (String::new(), String::new());
    for (i, ((name, ty), make)) in target.fields.iter().zip(make).enumerate() {
        match make {
            Make::Carried => {
                let _ = write!(fields, "{name}: ::dsu::__private::carry(&{param}.{name}), ");
            }
            Make::Transformed { source_ty } => {
                let _ = writeln!(
                    staged,
                    "            let __dsu_f{i} = ::dsu::__private::Staged::<{source_ty}, {ty}>::transform(&{param}.{name})?;"
                );
                let _ = write!(fields, "{name}: __dsu_f{i}.into_inner(), ");
                let _ = writeln!(
                    release_source,
                    "            <{ty} as ::dsu::__private::Transform<{source_ty}>>::release_old(::core::ptr::addr_of_mut!((*{param}).{name}));"
                );
                let _ = writeln!(
                    release_target,
                    "            <{ty} as ::dsu::__private::Transform<{source_ty}>>::release_new(::core::ptr::addr_of_mut!((*value).{name}));"
                );
            }
            Make::Default => {
                let _ = writeln!(staged, "            let __dsu_f{i} = ::core::default::Default::default();");
                let _ = write!(fields, "{name}: __dsu_f{i}, ");
                let _ = writeln!(
                    release_target,
                    "            ::core::ptr::drop_in_place(::core::ptr::addr_of_mut!((*value).{name}));"
                );
            }
        }
    }
    for name in source.fields.iter().filter(|n| !target.fields.iter().any(|(t, _)| t == *n)) {
        let _ = writeln!(
            release_source,
            "            ::core::ptr::drop_in_place(::core::ptr::addr_of_mut!((*{param}).{name}));"
        );
    }
    let (checked_path, checked_fields) = checked;
    let drop_check = if checked_fields.is_empty() {
        String::new()
    } else {
        let bindings: Vec<String> =
            checked_fields.iter().enumerate().map(|(i, f)| format!("{f}: __dsu_f{i}")).collect();
        format!(
            "        // Refuses a `Drop` impl of `{checked_path}` (E0509): its values are taken apart here.\n        \
             let _ = |__dsu_v: {checked_path}| {{ let {checked_path} {{ {} }} = __dsu_v; }};\n",
            bindings.join(", ")
        )
    };
    let release = |body: &str, what: &str| {
        if body.is_empty() {
            format!("        let _ = {what};\n")
        } else {
            format!("        unsafe {{\n{body}        }}\n")
        }
    };
    let (tgt, src) = (&target.path, &source.path);
    format!(
        "#[doc(hidden)]\n\
         // SAFETY: fields that keep their type are carried (moved bitwise), the others are made;\n\
         // `release_old` frees what of the source the new value does not take (what transformed\n\
         // fields left, fields it drops), `release_new` what was made; neither drops a value whole.\n\
         unsafe impl ::dsu::__private::Transform<{src}> for {tgt} {{\n    \
             #[allow(unused_unsafe)] // when every field is new\n    \
             unsafe fn transform({param}: &{src}) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {{\n\
         {drop_check}        \
                 // SAFETY: the caller settles the result; until then each made field is staged (released,\n        \
                 // not dropped, if a later one fails), and carried fields are copied last, when nothing\n        \
                 // can fail.\n        \
                 unsafe {{\n\
         {staged}            ::core::result::Result::Ok({tgt} {{ {fields}}})\n        \
                 }}\n    \
             }}\n    \
             unsafe fn release_old({param}: *mut {src}) {{\n        \
                 // SAFETY: the caller's contract: the value made from `{param}` is kept.\n\
         {}    \
             }}\n    \
             unsafe fn release_new(value: *mut Self) {{\n        \
                 // SAFETY: the caller's contract: `value` is discarded; the source keeps what it carried.\n\
         {}    \
             }}\n\
         }}\n",
        release(&release_source, param),
        release(&release_target, "value"),
    )
}

/// How each field of `target` is made from `source`'s (both given as written), or why the change
/// is not trivial. For a field both have, with the same type, `changed_ty(target's, source's)`
/// says whether that type mentions a changed type, and `source_ty` names the source's as the impl
/// does.
fn plan_fields(
    target: &[(String, &syn::Type)],
    source: &[(String, &syn::Type)],
    changed_ty: &mut dyn FnMut(&syn::Type, &syn::Type) -> bool,
    source_ty: &mut dyn FnMut(&syn::Type) -> String,
    not_trivial: &dyn Fn(&str, &str, &str) -> String,
) -> Result<Vec<Make>, String> {
    let mut make = Vec::new();
    for (name, ty) in target {
        let text = ty.to_token_stream().to_string();
        make.push(match source.iter().find(|(n, _)| n == name) {
            Some((_, source)) => {
                let source_text = source.to_token_stream().to_string();
                if source_text != text {
                    return Err(not_trivial(name, &source_text, &text));
                }
                if changed_ty(ty, source) {
                    Make::Transformed { source_ty: source_ty(source) }
                } else {
                    Make::Carried
                }
            }
            None => Make::Default,
        });
    }
    Ok(make)
}

/// The derived transformer of a trivial change (fields added with `Default`, removed, or
/// reordered), or why the change is not trivial. Fields that keep their type are carried, or
/// transformed when their type mentions another changed type. `to_old` names old types from the
/// type's module, outside `dsu_old`.
pub fn derive_default(key: &ItemKey, old: &Item, new: &Item, to_old: &mut ToOld<'_>) -> Result<String, String> {
    let ident = key.ident();
    let (Some(old_fields), Some(new_fields)) = (struct_fields(old), struct_fields(new)) else {
        return Err("a derived (`default`) transformer needs a struct with named fields in both \
                    revisions; write a transformer function"
            .into());
    };
    let (resolver, written_in, changed) = (to_old.resolver, to_old.written_in, to_old.changed);
    let make = plan_fields(
        &new_fields,
        &old_fields,
        // The old field's type, resolved where the old revision wrote it.
        &mut |_, old_ty| !mentioned(resolver, written_in, old_ty, changed).is_empty(),
        &mut |ty| qualified(ty, to_old),
        &|name, old_ty, ty| {
            format!(
                "field `{name}` changed type (`{old_ty}` to `{ty}`), which is not a trivial change; \
                 write a transformer function"
            )
        },
    )?;
    let target = Target { path: ident.to_string(), fields: texts(&new_fields) };
    let source = Source { path: format!("dsu_old::{ident}"), fields: names(&old_fields) };
    Ok(derived_code(&target, &source, &make, "old", (ident, &names(&new_fields))))
}

/// The names of fields.
fn names(fields: &[(String, &syn::Type)]) -> Vec<String> {
    fields.iter().map(|(n, _)| n.clone()).collect()
}

/// `(name, type text)` of fields.
fn texts(fields: &[(String, &syn::Type)]) -> Vec<(String, String)> {
    fields.iter().map(|(n, t)| (n.clone(), t.to_token_stream().to_string())).collect()
}

/// A type of the older revision as code in the type's module names it: changed types are their
/// old definitions.
fn qualified(ty: &syn::Type, to_old: &mut ToOld<'_>) -> String {
    let mut ty = ty.clone();
    to_old.visit_type_mut(&mut ty);
    ty.to_token_stream().to_string()
}

/// A derived inverse transformer's code, and the other changed types its kept fields mention
/// (it uses their inverses).
pub struct InverseCode {
    pub code: String,
    pub needs: BTreeSet<ItemKey>,
}

/// The derived inverse of a trivial change, new value to old: kept fields carried back (or
/// transformed back when their type mentions a changed type), fields only the old type has from
/// `Default`, fields only the new one has dropped; or why the change is not trivial. `to_old`
/// names old types from the type's module, outside `dsu_old`.
pub fn derive_inverse(
    key: &ItemKey,
    old: &Item,
    new: &Item,
    to_old: &mut ToOld<'_>,
) -> Result<InverseCode, String> {
    let ident = key.ident();
    let (Some(old_fields), Some(new_fields)) = (struct_fields(old), struct_fields(new)) else {
        return Err(inverse_needs_named_fields());
    };
    let (resolver, written_in, changed) = (to_old.resolver, to_old.written_in, to_old.changed);
    let mut needs = BTreeSet::new();
    // The target is the old type: its kept fields' types as the old revision means them.
    let make = plan_fields(
        &old_fields,
        &new_fields,
        &mut |old_ty, _| {
            let mentions = mentioned(resolver, written_in, old_ty, changed);
            let any = !mentions.is_empty();
            needs.extend(mentions);
            any
        },
        &mut |ty| ty.to_token_stream().to_string(),
        &|name, new_ty, old_ty| {
            format!(
                "field `{name}` changed type (`{old_ty}` to `{new_ty}`), which is not a trivial \
                 change; write an inverse transformer function \
                 `#[dsu::transform(to = dsu_old::{ident})] fn(&{ident}) -> dsu_old::{ident}`"
            )
        },
    )?;
    needs.remove(key);
    // Only transformed fields name their (old) type.
    let fields = old_fields
        .iter()
        .zip(&make)
        .map(|((n, t), make)| match make {
            Make::Transformed { .. } => (n.clone(), qualified(t, to_old)),
            _ => (n.clone(), String::new()),
        })
        .collect();
    let target = Target { path: format!("dsu_old::{ident}"), fields };
    let source = Source { path: ident.to_string(), fields: names(&new_fields) };
    let code = derived_code(&target, &source, &make, "new", (ident, &names(&new_fields)));
    Ok(InverseCode { code, needs })
}

fn inverse_needs_named_fields() -> String {
    "a derived (`to = …, default`) inverse transformer needs a struct with named fields in both \
     revisions; write an inverse transformer function"
        .into()
}

/// A transformer to paste, the function `name`, with the fields filled in where that is obvious.
pub fn stub(ident: &str, name: &str, old: &Item, new: &Item) -> String {
    let mut s = format!(
        "\n    #[dsu::transform(from = dsu_old::{ident})]\n    fn {name}(old: &dsu_old::{ident}) -> {ident} {{\n"
    );
    match (named_fields(old), named_fields(new)) {
        (Some(old_fields), Some(new_fields)) => {
            let _ = writeln!(s, "        {ident} {{");
            for (name, ty) in &new_fields {
                match old_fields.iter().find(|(n, _)| n == name) {
                    Some((_, old_ty)) if old_ty == ty => {
                        let _ = writeln!(s, "            {name}: old.{name}.clone(),");
                    }
                    Some((_, old_ty)) => {
                        let _ =
                            writeln!(s, "            {name}: todo!(\"was `{old_ty}`: convert old.{name}\"),");
                    }
                    None => {
                        let _ = writeln!(s, "            {name}: todo!(\"new field\"),");
                    }
                }
            }
            let _ = writeln!(s, "        }}");
        }
        _ => {
            let _ = writeln!(s, "        todo!(\"build the new value from `old`\")");
        }
    }
    s.push_str("    }\n");
    s
}
