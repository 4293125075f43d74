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
//! * generates, appended to the patch's crate root: `mod dsu_old` with the old revision's
//!   definitions, the derived transformers, and one exported `CellTransform` per state cell whose
//!   type mentions a changed type.

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

/// The `from = …` path of a `#[transform]` attribute, and whether it says `default`.
fn transform_attr(attrs: &[syn::Attribute]) -> Option<(syn::Path, bool)> {
    let a = attrs.iter().find(|a| a.path().segments.last().is_some_and(|s| s.ident == "transform"))?;
    let mut from = None;
    let mut default = false;
    let _ = a.parse_nested_meta(|m| {
        if m.path.is_ident("from") {
            from = Some(m.value()?.parse::<syn::Path>()?);
        } else if m.path.is_ident("default") {
            default = true;
        }
        Ok(())
    });
    from.map(|f| (f, default))
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
        let fn_transformer = new_file.items.iter().any(|i| match i {
            Item::Fn(f) => transform_attr(&f.attrs)
                .is_some_and(|(from, _)| from.segments.last().is_some_and(|s| s.ident == ident)),
            _ => false,
        });
        let derived = transform_attr(item_attrs(new)).filter(|(_, d)| *d);
        if !fn_transformer && derived.is_none() {
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
        if derived.is_some() && !fn_transformer {
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
        writeln!(old_defs, "    {}", old_item.to_token_stream())?;
        ok.insert(ident);
    }
    if ok.is_empty() {
        return Ok(gen);
    }

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
        let symbol = format!("{}{}", dsu_abi::CELL_TRANSFORM_PREFIX, dsu_abi::symbol_safe(&name));
        writeln!(
            gen.0,
            "#[doc(hidden)]\n#[used]\n#[export_name = {symbol:?}]\n\
             static __DSU_CELL_{}: ::dsu::__private::CellTransform = \
             ::dsu::__private::CellTransform::new::<{}, {}>({name:?});",
            s.ident,
            old_inner.to_token_stream(),
            new_inner.to_token_stream()
        )?;
        report.cells_transformed.push(ItemRef {
            path: format!("{crate_name}::{} (cell \"{name}\")", s.ident),
            file: root_rel.clone(),
            line: line_of(s),
        });
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

fn strip_transform_attrs(item: &mut Item) {
    let keep = |a: &syn::Attribute| !a.path().segments.last().is_some_and(|s| s.ident == "transform");
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
