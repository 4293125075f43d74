//! Type changes in a patch: what `cargo dsu patch` checks and generates when a type changes.
//!
//! For each changed `#[dsu::updateable]` type of the crate root it
//! * requires a transformer: a `#[dsu::transform(from = dsu_old::T)]` function, or
//!   `#[dsu::transform(from = dsu_old::T, default)]` on the new type (then derives it, if the change
//!   is trivial: fields added with `Default`, removed, or reordered), and otherwise refuses and
//!   prints a stub to paste;
//! * routes an updateable function whose signature mentions the type: callers compiled for the
//!   old layout keep its old version, new code gets the new one (the runtime switches only slot
//!   copies of the same signature). It refuses when the old version reads a transformed state
//!   cell (it would meet the new layout), and refuses code that is not updateable but uses the
//!   type or a transformed cell;
//! * finds the inverse transformers, for rolling the patch back with its state: a
//!   `#[dsu::transform(to = dsu_old::T)]` function, or `#[dsu::transform(to = dsu_old::T, default)]`
//!   on the new type (then derives it, if the change is trivial: fields the new type added are
//!   dropped, fields it removed come from `Default`). A patch without them is not refused; it is
//!   only not reversible (`Report::types_reversible`, `Report::cells_reversible`);
//! * generates, appended to the patch's crate root: `mod dsu_old` with the old revision's
//!   definitions (private fields made `pub(crate)`, so transformers in the crate root can read
//!   and build them), the derived transformers, one exported `CellTransform` per state cell whose
//!   type mentions a changed type (`__dsu_cell_<name>`, old cell type to new), and, when every
//!   changed type that cell's type mentions is reversible, its inverse (`__dsu_uncell_<name>`,
//!   new cell type to old).

use crate::diff::{ItemRef, Refusal, Report};
use anyhow::{Context, Result};
use quote::ToTokens;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use syn::visit_mut::VisitMut;
use syn::{Fields, Item};

/// Code to append to the patch's crate root.
#[derive(Debug, Default, Clone)]
pub struct Generated(pub String);

fn has_attr(attrs: &[syn::Attribute], name: &str) -> bool {
    attrs.iter().any(|a| a.path().segments.last().is_some_and(|s| s.ident == name))
}

/// What one `#[transform(…)]` attribute says: `from = …`, `to = …`, `default`.
#[derive(Debug, Default)]
struct TransformAttr {
    from: Option<syn::Path>,
    to: Option<syn::Path>,
    default: bool,
}

/// Every `#[transform(…)]` attribute of an item (a struct may carry one per direction).
fn transform_attrs(attrs: &[syn::Attribute]) -> Vec<TransformAttr> {
    attrs
        .iter()
        .filter(|a| a.path().segments.last().is_some_and(|s| s.ident == "transform"))
        .map(|a| {
            let mut t = TransformAttr::default();
            let _ = a.parse_nested_meta(|m| {
                if m.path.is_ident("from") {
                    t.from = Some(m.value()?.parse::<syn::Path>()?);
                } else if m.path.is_ident("to") {
                    t.to = Some(m.value()?.parse::<syn::Path>()?);
                } else if m.path.is_ident("default") {
                    t.default = true;
                }
                Ok(())
            });
            t
        })
        .collect()
}

/// Whether `path` (of `from = …` or `to = …`) names the old revision's `ident`.
fn names(path: &Option<syn::Path>, ident: &str) -> bool {
    path.as_ref().is_some_and(|p| p.segments.last().is_some_and(|s| s.ident == ident))
}

/// Which way a transformer goes.
#[derive(Clone, Copy)]
enum Way {
    /// `from`: old value to new.
    Forward,
    /// `to`: new value to old, for a rollback.
    Inverse,
}

/// Whether a function of `file` is a transformer of `ident` going `way`.
fn has_fn_transformer(file: &syn::File, ident: &str, way: Way) -> bool {
    file.items.iter().any(|i| match i {
        Item::Fn(f) => transform_attrs(&f.attrs).iter().any(|t| match way {
            Way::Forward => names(&t.from, ident),
            Way::Inverse => names(&t.to, ident),
        }),
        _ => false,
    })
}

/// Whether the type asks `cargo dsu patch` to derive its transformer going `way`.
fn asks_derived(item: &Item, way: Way) -> bool {
    transform_attrs(item_attrs(item)).iter().any(|t| {
        t.default
            && match way {
                Way::Forward => t.from.is_some(),
                Way::Inverse => t.to.is_some(),
            }
    })
}

pub fn root_file(root: &Path) -> Option<&'static str> {
    ["src/main.rs", "src/lib.rs"].into_iter().find(|f| root.join(f).is_file())
}

fn parse_root(root: &Path) -> Result<(String, syn::File)> {
    let rel = root_file(root).context("no src/main.rs or src/lib.rs")?;
    let text = std::fs::read_to_string(root.join(rel))?;
    Ok((rel.to_string(), syn::parse_file(&text).with_context(|| format!("parsing {rel}"))?))
}

fn type_item<'a>(file: &'a syn::File, ident: &str) -> Option<&'a Item> {
    file.items.iter().find(|i| match i {
        Item::Struct(s) => s.ident == ident,
        Item::Enum(e) => e.ident == ident,
        _ => false,
    })
}

fn item_attrs(item: &Item) -> &[syn::Attribute] {
    match item {
        Item::Struct(s) => &s.attrs,
        Item::Enum(e) => &e.attrs,
        _ => &[],
    }
}

fn line_of(t: &impl syn::spanned::Spanned) -> usize {
    t.span().start().line
}

/// Whether the token text `text` names `ident` as a whole token.
fn mentions(text: &str, ident: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|t| t == ident)
}

/// Plans the type changes among `changed` (items of `report.types_changed`), adding refusals to
/// `report` and returning the code to generate.
pub fn plan(
    crate_name: &str,
    old_root: &Path,
    new_root: &Path,
    changed: &[ItemRef],
    new_functions: &[(String, ItemRef, bool, String, String)],
    old_functions: &[(String, ItemRef, bool, String, String)],
    report: &mut Report,
) -> Result<Generated> {
    if changed.is_empty() {
        return Ok(Generated::default());
    }
    let (_, old_file) = parse_root(old_root)?;
    let (root_rel, new_file) = parse_root(new_root)?;
    let mut gen = Generated::default();
    let mut old_defs = String::new();
    let mut ok: BTreeSet<String> = BTreeSet::new();
    // The types of `ok`, for the inverse transformers: `(ident, where, old, new)`.
    let mut planned: Vec<(String, &ItemRef, &Item, &Item)> = Vec::new();

    for c in changed {
        let refuse = |reason: String, report: &mut Report| {
            report.refusals.push(Refusal { file: c.file.clone(), line: c.line, reason });
        };
        let ident = c.path.rsplit("::").next().unwrap_or(&c.path).to_string();
        if c.path != format!("{crate_name}::{ident}") || c.file != root_rel {
            refuse(
                format!(
                    "type `{}` changed: type changes are supported for types of the crate root \
                     ({root_rel}) for now",
                    c.path
                ),
                report,
            );
            continue;
        }
        let (Some(old), Some(new)) = (type_item(&old_file, &ident), type_item(&new_file, &ident)) else {
            continue;
        };
        if !has_attr(item_attrs(old), "updateable") || !has_attr(item_attrs(new), "updateable") {
            refuse(
                format!(
                    "type `{}` changed and is not #[dsu::updateable] in both revisions: mark it so \
                     its values can be fingerprinted and transformed",
                    c.path
                ),
                report,
            );
            continue;
        }
        let fn_transformer = has_fn_transformer(&new_file, &ident, Way::Forward);
        let derived = asks_derived(new, Way::Forward);
        if !fn_transformer && !derived {
            refuse(
                format!(
                    "type `{}` changed and no transformer moves its values to the new layout; \
                     add one (or `#[dsu::transform(from = dsu_old::{ident}, default)]` on the type \
                     for a trivial change):\n{}",
                    c.path,
                    stub(&ident, old, new)
                ),
                report,
            );
            continue;
        }
        if derived && !fn_transformer {
            match derive_default(&ident, old, new) {
                Ok(code) => gen.0.push_str(&code),
                Err(reason) => {
                    refuse(format!("type `{}`: {reason}", c.path), report);
                    continue;
                }
            }
        }
        let mut old_item = old.clone();
        strip_transform_attrs(&mut old_item);
        widen_private_fields(&mut old_item);
        writeln!(old_defs, "    {}", old_item.to_token_stream())?;
        ok.insert(ident.clone());
        planned.push((ident, c, old, new));
    }
    if ok.is_empty() {
        return Ok(gen);
    }
    let reversible = plan_inverses(crate_name, &new_file, &planned, &ok, &mut gen, report);

    // Cells whose type mentions a changed type.
    let mut cell_statics = Vec::new();
    for item in &new_file.items {
        let Item::Static(s) = item else { continue };
        let ty_text = s.ty.to_token_stream().to_string();
        if !is_state(&s.ty) || !ok.iter().any(|t| mentions(&ty_text, t)) {
            continue;
        }
        let Some(old_static) = old_file.items.iter().find_map(|i| match i {
            Item::Static(o) if o.ident == s.ident => Some(o),
            _ => None,
        }) else {
            continue;
        };
        let Some(name) = cell_name(&s.expr) else {
            report.refusals.push(Refusal {
                file: root_rel.clone(),
                line: line_of(s),
                reason: format!(
                    "state cell `{}` changes type, but its name is not a string literal in \
                     `dsu::State::new(\"name\", …)`",
                    s.ident
                ),
            });
            continue;
        };
        let (Some(old_inner), Some(new_inner)) = (state_inner(&old_static.ty), state_inner(&s.ty)) else {
            continue;
        };
        let mut old_inner = old_inner.clone();
        QualifyOld(&ok).visit_type_mut(&mut old_inner);
        let (old_text, new_text) = (old_inner.to_token_stream(), new_inner.to_token_stream());
        write_cell_transform(&mut gen.0, dsu_abi::CELL_TRANSFORM_PREFIX, "CELL", &s.ident, &name, &old_text, &new_text)?;
        let cell = ItemRef {
            path: format!("{crate_name}::{} (cell \"{name}\")", s.ident),
            file: root_rel.clone(),
            line: line_of(s),
        };
        // The inverse, new cell type to old, when `OldCellType: Transform<NewCellType>` holds:
        // every changed type the cell's type mentions has an inverse transformer (unchanged
        // types are the same types on both sides, `dsu_old` brings `use super::*`, and
        // transform to themselves).
        if ok.iter().filter(|t| mentions(&ty_text, t)).all(|t| reversible.contains(t)) {
            write_cell_transform(&mut gen.0, dsu_abi::CELL_INVERSE_PREFIX, "UNCELL", &s.ident, &name, &new_text, &old_text)?;
            report.cells_reversible.push(cell.clone());
        }
        report.cells_transformed.push(cell);
        cell_statics.push(s.ident.to_string());
    }

    // Code that would meet the new layout without being replaced.
    for (path, at, updateable, head, whole) in new_functions {
        if *updateable {
            let Some(t) = ok.iter().find(|t| mentions(head, t)) else { continue };
            let old = old_functions.iter().find(|(p, ..)| p == path);
            let Some((_, old_at, _, _, old_whole)) = old else { continue };
            match cell_statics.iter().find(|c| mentions(old_whole, c)) {
                Some(cell) => report.refusals.push(Refusal {
                    file: old_at.file.clone(),
                    line: old_at.line,
                    reason: format!(
                        "cannot route `{path}`: its signature mentions `{t}`, whose layout changes, \
                         so callers in the running program keep its old version, and that version \
                         reads `{cell}`, whose values change type. Stop reading `{cell}` in \
                         functions whose signature mentions `{t}`"
                    ),
                }),
                None => report.functions_routed.push(at.clone()),
            }
        } else if let Some(t) = ok.iter().chain(&cell_statics).find(|t| mentions(whole, t)) {
            report.refusals.push(Refusal {
                file: at.file.clone(),
                line: at.line,
                reason: format!(
                    "`{path}` uses `{t}`, whose layout changes, but is not #[dsu::updateable]: the \
                     running program's copy would meet the new layout. Make it updateable"
                ),
            });
        }
    }

    let _ = write!(
        gen.0,
        "\n/// The old revision's definitions of the types this patch changes.\n\
         #[doc(hidden)]\n#[allow(dead_code, unused_imports)]\npub mod dsu_old {{\n    use super::*;\n{old_defs}}}\n"
    );
    Ok(gen)
}

/// Writes the exported `CellTransform` static of state cell `name` (the static `ident`): from
/// `from` to `to`, under `prefix` (the forward or the inverse symbol prefix).
fn write_cell_transform(
    out: &mut String,
    prefix: &str,
    kind: &str,
    ident: &syn::Ident,
    name: &str,
    from: &proc_macro2::TokenStream,
    to: &proc_macro2::TokenStream,
) -> std::fmt::Result {
    let symbol = format!("{prefix}{}", dsu_abi::symbol_safe(name));
    writeln!(
        out,
        "#[doc(hidden)]\n#[used]\n#[export_name = {symbol:?}]\n\
         static __DSU_{kind}_{ident}: ::dsu::__private::CellTransform = \
         ::dsu::__private::CellTransform::new::<{from}, {to}>({name:?});"
    )
}

/// Decides which types of `planned` have an inverse transformer, derives the asked-for ones
/// (adding their code to `gen`), and returns the reversible types. A type is reversible with a
/// `to` function; or with a derived inverse, when its change is trivial and every other changed
/// type its kept fields mention is reversible too (the derived code transforms those fields
/// back). A derived inverse that was asked for and cannot be made is refused: the author meant
/// the patch to be reversible. No inverse at all is fine: the patch is then not reversible.
fn plan_inverses(
    crate_name: &str,
    new_file: &syn::File,
    planned: &[(String, &ItemRef, &Item, &Item)],
    ok: &BTreeSet<String>,
    gen: &mut Generated,
    report: &mut Report,
) -> BTreeSet<String> {
    let mut reversible = BTreeSet::new();
    // Derived candidates: (ident, where, code, changed types their kept fields mention).
    let mut derived: Vec<(&str, &ItemRef, String, BTreeSet<String>)> = Vec::new();
    for (ident, at, old, new) in planned {
        if has_fn_transformer(new_file, ident, Way::Inverse) {
            reversible.insert(ident.clone());
        } else if asks_derived(new, Way::Inverse) {
            match derive_inverse(ident, old, new, ok) {
                Ok((code, needs)) => {
                    reversible.insert(ident.clone());
                    derived.push((ident, at, code, needs));
                }
                Err(reason) => report.refusals.push(Refusal {
                    file: at.file.clone(),
                    line: at.line,
                    reason: format!("type `{}`: {reason}", at.path),
                }),
            }
        }
    }
    // Drop derived inverses that need one that is missing, until none does.
    loop {
        let missing = derived.iter().position(|(_, _, _, needs)| needs.iter().any(|n| !reversible.contains(n)));
        let Some(i) = missing else { break };
        let (ident, at, _, needs) = derived.remove(i);
        reversible.remove(ident);
        let lacking: Vec<&str> = needs.iter().filter(|n| !reversible.contains(*n)).map(String::as_str).collect();
        report.refusals.push(Refusal {
            file: at.file.clone(),
            line: at.line,
            reason: format!(
                "type `{}`: its derived inverse (`to = dsu_old::{ident}, default`) transforms \
                 fields of type `{}` back, which changes too and has no inverse transformer; add \
                 `#[dsu::transform(to = dsu_old::{})]` for it",
                at.path,
                lacking.join("`, `"),
                lacking[0],
            ),
        });
    }
    for (_, _, code, _) in &derived {
        gen.0.push_str(code);
    }
    for (ident, at, ..) in planned {
        if reversible.contains(ident) {
            report.types_reversible.push(ItemRef {
                path: format!("{crate_name}::{ident}"),
                file: at.file.clone(),
                line: at.line,
            });
        }
    }
    reversible
}

fn is_state(ty: &syn::Type) -> bool {
    state_inner(ty).is_some()
}

/// `T` of `State<T>` / `dsu::State<T>`.
fn state_inner(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "State" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(a) = &last.arguments else { return None };
    match a.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The first string literal of `State::new("name", …)`.
fn cell_name(expr: &syn::Expr) -> Option<String> {
    let syn::Expr::Call(call) = expr else { return None };
    match call.args.first()? {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
        _ => None,
    }
}

/// `Entry` → `dsu_old::Entry` (and `crate::Entry` → `crate::dsu_old::Entry`) for changed types.
struct QualifyOld<'a>(&'a BTreeSet<String>);

impl VisitMut for QualifyOld<'_> {
    fn visit_type_path_mut(&mut self, p: &mut syn::TypePath) {
        syn::visit_mut::visit_type_path_mut(self, p);
        let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
        let hit = match segs.as_slice() {
            [one] => self.0.contains(one),
            [c, one] if c == "crate" => self.0.contains(one),
            _ => false,
        };
        if hit && p.qself.is_none() {
            let last = p.path.segments.pop().expect("one segment").into_value();
            p.path.segments.push(syn::parse_quote!(dsu_old));
            p.path.segments.push(last);
        }
    }
}

/// Makes the private fields of an old definition `pub(crate)`, so transformers in the crate root
/// (outside `dsu_old`) can read and build old values. Visibility is no part of a fingerprint.
fn widen_private_fields(item: &mut Item) {
    if let Item::Struct(s) = item {
        for f in s.fields.iter_mut() {
            if matches!(f.vis, syn::Visibility::Inherited) {
                f.vis = syn::parse_quote!(pub(crate));
            }
        }
    }
}

fn strip_transform_attrs(item: &mut Item) {
    let keep = |a: &syn::Attribute| a.path().segments.last().is_none_or(|s| s.ident != "transform");
    match item {
        Item::Struct(s) => s.attrs.retain(keep),
        Item::Enum(e) => e.attrs.retain(keep),
        _ => {}
    }
}

/// Named fields as `(name, type text)`; `None` for tuple or unit structs and enums.
fn named_fields(item: &Item) -> Option<Vec<(String, String)>> {
    let Item::Struct(s) = item else { return None };
    let Fields::Named(f) = &s.fields else { return None };
    Some(
        f.named
            .iter()
            .map(|f| (f.ident.as_ref().expect("named").to_string(), f.ty.to_token_stream().to_string()))
            .collect(),
    )
}

/// The derived transformer of a trivial change, or why the change is not trivial.
fn derive_default(ident: &str, old: &Item, new: &Item) -> std::result::Result<String, String> {
    let (Some(old_fields), Some(new_fields)) = (named_fields(old), named_fields(new)) else {
        return Err("a derived (`default`) transformer needs a struct with named fields in both \
                    revisions; write a transformer function"
            .into());
    };
    let mut body = String::new();
    for (name, ty) in &new_fields {
        match old_fields.iter().find(|(n, _)| n == name) {
            Some((_, old_ty)) if old_ty != ty => {
                return Err(format!(
                    "field `{name}` changed type (`{old_ty}` to `{ty}`), which is not a trivial \
                     change; write a transformer function"
                ));
            }
            Some(_) => {
                let _ = write!(body, "{name}: <{ty} as ::dsu::__private::Transform<_>>::transform(&old.{name})?, ");
            }
            None => {
                let _ = write!(body, "{name}: ::core::default::Default::default(), ");
            }
        }
    }
    Ok(format!(
        "#[doc(hidden)]\nimpl ::dsu::__private::Transform<dsu_old::{ident}> for {ident} {{\n    \
         fn transform(old: &dsu_old::{ident}) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {{\n        \
         ::core::result::Result::Ok({ident} {{ {body}}})\n    }}\n}}\n"
    ))
}

/// The derived inverse of a trivial change, new value to old: kept fields transformed back,
/// fields only the old type has from `Default`, fields only the new one has dropped. Returns the
/// code and the other changed types (of `changed`) the kept fields mention, whose inverses it
/// uses; or why the change is not trivial.
fn derive_inverse(
    ident: &str,
    old: &Item,
    new: &Item,
    changed: &BTreeSet<String>,
) -> std::result::Result<(String, BTreeSet<String>), String> {
    let (Item::Struct(old_s), Some(new_fields)) = (old, named_fields(new)) else {
        return Err(inverse_needs_named_fields());
    };
    let Fields::Named(old_named) = &old_s.fields else {
        return Err(inverse_needs_named_fields());
    };
    let mut body = String::new();
    let mut needs = BTreeSet::new();
    for f in &old_named.named {
        let name = f.ident.as_ref().expect("named").to_string();
        let old_ty = f.ty.to_token_stream().to_string();
        match new_fields.iter().find(|(n, _)| *n == name) {
            Some((_, ty)) if *ty != old_ty => {
                return Err(format!(
                    "field `{name}` changed type (`{old_ty}` to `{ty}`), which is not a trivial \
                     change; write an inverse transformer function \
                     `#[dsu::transform(to = dsu_old::{ident})] fn(&{ident}) -> dsu_old::{ident}`"
                ));
            }
            Some(_) => {
                // The old field's type as the old revision means it: changed types are the
                // `dsu_old` ones.
                let mut qualified = f.ty.clone();
                QualifyOld(changed).visit_type_mut(&mut qualified);
                needs.extend(changed.iter().filter(|t| *t != ident && mentions(&old_ty, t)).cloned());
                let _ = write!(
                    body,
                    "{name}: <{} as ::dsu::__private::Transform<_>>::transform(&new.{name})?, ",
                    qualified.to_token_stream()
                );
            }
            None => {
                let _ = write!(body, "{name}: ::core::default::Default::default(), ");
            }
        }
    }
    let code = format!(
        "#[doc(hidden)]\nimpl ::dsu::__private::Transform<{ident}> for dsu_old::{ident} {{\n    \
         fn transform(new: &{ident}) -> ::core::result::Result<Self, ::dsu::__private::TransformError> {{\n        \
         ::core::result::Result::Ok(dsu_old::{ident} {{ {body}}})\n    }}\n}}\n"
    );
    Ok((code, needs))
}

fn inverse_needs_named_fields() -> String {
    "a derived (`to = …, default`) inverse transformer needs a struct with named fields in both \
     revisions; write an inverse transformer function"
        .into()
}

/// A transformer to paste, with the fields filled in where that is obvious.
fn stub(ident: &str, old: &Item, new: &Item) -> String {
    let lower = ident.to_lowercase();
    let mut s = format!(
        "\n    #[dsu::transform(from = dsu_old::{ident})]\n    fn upgrade_{lower}(old: &dsu_old::{ident}) -> {ident} {{\n"
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
                        let _ = writeln!(s, "            {name}: todo!(\"was `{old_ty}`: convert old.{name}\"),");
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

#[cfg(test)]
mod tests {
    //! The inverse decision: which changed types and cells a patch can move back.

    use crate::diff::{compare, Report};
    use std::path::PathBuf;

    const MANIFEST: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[dependencies]\ndsu = \"0.1\"\n";

    fn pkg(name: &str, main: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dsu-types-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), MANIFEST).unwrap();
        std::fs::write(dir.join("src/main.rs"), main).unwrap();
        dir
    }

    fn cmp(name: &str, old: &str, new: &str) -> Report {
        let a = pkg(&format!("{name}-old"), old);
        let b = pkg(&format!("{name}-new"), new);
        let r = compare("app", &a, &b).unwrap();
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
        r
    }

    fn paths(v: &[crate::diff::ItemRef]) -> Vec<&str> {
        v.iter().map(|i| i.path.as_str()).collect()
    }

    /// Token text without spaces, so assertions do not depend on how tokens are printed.
    fn squash(s: &str) -> String {
        s.chars().filter(|c| !c.is_whitespace()).collect()
    }

    const V1: &str = "use std::collections::HashMap;\nuse std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct Entry { pub name: String, hits: u32, pub legacy: bool }\n\
        static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { STORE.lock().unwrap().len() }\n";

    const UP: &str = "#[dsu::transform(from = dsu_old::Entry)]\n\
        fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into(), tags: Vec::new() } }\n";

    fn v2(extra: &str) -> String {
        V1.replace("hits: u32, pub legacy: bool }", "hits: u64, pub tags: Vec<String> }") + UP + extra
    }

    #[test]
    fn an_inverse_function_makes_the_type_and_its_cells_reversible() {
        let down = "#[dsu::transform(to = dsu_old::Entry)]\n\
            fn down(new: &Entry) -> Result<dsu_old::Entry, String> { Err(String::new()) }\n";
        let r = cmp("fn-inverse", V1, &v2(down));
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(paths(&r.types_reversible), ["app::Entry"]);
        assert_eq!(paths(&r.cells_reversible), ["app::STORE (cell \"store\")"]);
        assert_eq!(r.cells_reversible, r.cells_transformed);
        let g = squash(&r.generated);
        assert!(g.contains("#[export_name=\"__dsu_uncell_store\"]"), "{}", r.generated);
        assert!(
            g.contains(
                "static__DSU_UNCELL_STORE:::dsu::__private::CellTransform=::dsu::__private::CellTransform::\
                 new::<Mutex<HashMap<String,Entry>>,Mutex<HashMap<String,dsu_old::Entry>>>(\"store\");"
            ),
            "{}",
            r.generated
        );
        // The forward one is still there, and the old definition's private field is reachable.
        assert!(g.contains("#[export_name=\"__dsu_cell_store\"]"), "{}", r.generated);
        assert!(g.contains("pub(crate)hits:u32"), "{}", r.generated);
    }

    #[test]
    fn without_an_inverse_the_patch_is_not_refused_only_not_reversible() {
        let r = cmp("no-inverse", V1, &v2(""));
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(r.cells_transformed.len(), 1);
        assert!(r.types_reversible.is_empty() && r.cells_reversible.is_empty());
        assert!(!r.generated.contains("__dsu_uncell_"), "{}", r.generated);
    }

    /// A trivial change: `legacy` removed, `score` added, fields reordered.
    fn trivial(attrs: &str) -> String {
        V1.replace(
            "#[dsu::updateable]\npub struct Entry { pub name: String, hits: u32, pub legacy: bool }",
            &format!("#[dsu::updateable]\n{attrs}\npub struct Entry {{ hits: u32, pub score: u64, pub name: String }}"),
        )
    }

    #[test]
    fn derived_inverse_in_one_attribute_or_two() {
        for attrs in [
            "#[dsu::transform(from = dsu_old::Entry, to = dsu_old::Entry, default)]",
            "#[dsu::transform(from = dsu_old::Entry, default)]\n#[dsu::transform(to = dsu_old::Entry, default)]",
            "#[dsu::transform(to = dsu_old::Entry, default)]\n#[dsu::transform(from = dsu_old::Entry, default)]",
        ] {
            let r = cmp("derived", V1, &trivial(attrs));
            assert!(r.refusals.is_empty(), "{attrs}: {:?}", r.refusals);
            assert_eq!(paths(&r.types_changed), ["app::Entry"], "{attrs}");
            assert_eq!(paths(&r.types_reversible), ["app::Entry"], "{attrs}");
            assert_eq!(r.cells_reversible.len(), 1, "{attrs}");
            let g = squash(&r.generated);
            // Forward: the new field from Default. Inverse: the removed one from Default, the
            // added one dropped, kept ones transformed back.
            assert!(g.contains("impl::dsu::__private::Transform<dsu_old::Entry>forEntry"), "{}", r.generated);
            assert!(g.contains("score:::core::default::Default::default()"), "{}", r.generated);
            assert!(g.contains("impl::dsu::__private::Transform<Entry>fordsu_old::Entry"), "{}", r.generated);
            assert!(
                g.contains(
                    "::core::result::Result::Ok(dsu_old::Entry{\
                     name:<Stringas::dsu::__private::Transform<_>>::transform(&new.name)?,\
                     hits:<u32as::dsu::__private::Transform<_>>::transform(&new.hits)?,\
                     legacy:::core::default::Default::default(),})"
                ),
                "{}",
                r.generated
            );
            assert!(!g.contains("new.score"), "{}", r.generated);
            assert!(g.contains("__dsu_uncell_store"), "{}", r.generated);
        }
    }

    #[test]
    fn adding_an_inverse_attribute_alone_is_no_type_change() {
        let both = trivial("#[dsu::transform(from = dsu_old::Entry, default)]\n#[dsu::transform(to = dsu_old::Entry, default)]");
        let only_from = trivial("#[dsu::transform(from = dsu_old::Entry, default)]");
        let r = cmp("attr-only", &only_from, &both);
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
        let r = cmp("nontrivial-inverse", V1, &widened);
        let reasons: Vec<&str> = r.refusals.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(reasons.len(), 1, "{reasons:?}");
        assert!(reasons[0].starts_with("type `app::Entry`: field `hits` changed type (`u32` to `u64`)"), "{reasons:?}");
        assert!(reasons[0].contains("write an inverse transformer function"), "{reasons:?}");
        assert!(r.types_reversible.is_empty() && r.cells_reversible.is_empty());
    }

    const NESTED_V1: &str = "use std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct Tag { pub text: String }\n\
        #[dsu::updateable]\npub struct Entry { pub name: String, pub tag: Tag }\n\
        static STORE: dsu::State<Mutex<Vec<Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        static TAGS: dsu::State<Mutex<Vec<Tag>>> = dsu::State::new(\"tags\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { STORE.lock().unwrap().len() + TAGS.lock().unwrap().len() }\n";

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
        let r = cmp("nested-missing", NESTED_V1, &nested(""));
        assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
        let reason = &r.refusals[0].reason;
        assert!(reason.contains("type `app::Entry`: its derived inverse"), "{reason}");
        assert!(reason.contains("fields of type `Tag`"), "{reason}");
        assert!(reason.contains("#[dsu::transform(to = dsu_old::Tag)]"), "{reason}");

        let r = cmp("nested-ok", NESTED_V1, &nested("#[dsu::transform(to = dsu_old::Tag, default)]"));
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(paths(&r.types_reversible), ["app::Tag", "app::Entry"]);
        assert_eq!(r.cells_reversible.len(), 2);
        let g = squash(&r.generated);
        // The kept field's type is the old revision's `Tag`.
        assert!(g.contains("tag:<dsu_old::Tagas::dsu::__private::Transform<_>>::transform(&new.tag)?"), "{}", r.generated);
    }

    #[test]
    fn a_cell_is_reversible_only_when_every_changed_type_in_it_is() {
        let old = "use std::sync::Mutex;\n\
            #[dsu::updateable]\npub struct A { pub x: u32 }\n\
            #[dsu::updateable]\npub struct B { pub y: u32 }\n\
            static BOTH: dsu::State<Mutex<Vec<(A, B)>>> = dsu::State::new(\"both\", Default::default);\n\
            static JUST_A: dsu::State<Mutex<Vec<A>>> = dsu::State::new(\"just a\", Default::default);\n\
            #[dsu::updateable]\nfn count() -> usize { BOTH.lock().unwrap().len() + JUST_A.lock().unwrap().len() }\n";
        let new = old
            .replace(
                "pub struct A { pub x: u32 }",
                "#[dsu::transform(from = dsu_old::A, to = dsu_old::A, default)]\npub struct A { pub x: u32, pub z: u8 }",
            )
            .replace("pub struct B { pub y: u32 }", "#[dsu::transform(from = dsu_old::B, default)]\npub struct B { pub y: u32, pub z: u8 }");
        let r = cmp("mixed", old, &new);
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(paths(&r.types_reversible), ["app::A"]);
        assert_eq!(paths(&r.cells_transformed), ["app::BOTH (cell \"both\")", "app::JUST_A (cell \"just a\")"]);
        assert_eq!(paths(&r.cells_reversible), ["app::JUST_A (cell \"just a\")"]);
        let g = squash(&r.generated);
        let symbol = format!("#[export_name=\"{}{}\"]", dsu_abi::CELL_INVERSE_PREFIX, dsu_abi::symbol_safe("just a"));
        assert!(g.contains(&symbol), "{symbol}: {}", r.generated);
        assert!(!g.contains("__dsu_uncell_both"), "{}", r.generated);
    }
}
