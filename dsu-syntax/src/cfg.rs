//! Which items a build compiles: `#[cfg(…)]` predicates evaluated against the configuration of
//! one crate's build (what `rustc --print cfg` says for its recorded flags: target, profile,
//! features, a build script's `cargo:rustc-cfg`). Two revisions are compared as the build sees
//! them: a pair of functions with one path under opposite `cfg`s is one function.

use std::collections::BTreeSet;
use syn::punctuated::Punctuated;
use syn::{Attribute, ImplItem, Item, Meta, Token};

/// A build's configuration: names (`unix`, `debug_assertions`) and name-value pairs
/// (`feature = "x"`, `target_os = "linux"`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CfgSet(BTreeSet<(String, Option<String>)>);

impl CfgSet {
    /// Reads `rustc --print cfg` output: one `name` or `name="value"` a line.
    pub fn from_print_cfg(text: &str) -> CfgSet {
        let mut set = BTreeSet::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match line.split_once('=') {
                Some((k, v)) => set.insert((k.to_string(), Some(v.trim_matches('"').to_string()))),
                None => set.insert((line.to_string(), None)),
            };
        }
        CfgSet(set)
    }

    fn holds(&self, key: &str, value: Option<&str>) -> bool {
        self.0.contains(&(key.to_string(), value.map(String::from)))
    }

    /// Whether a predicate (`unix`, `feature = "x"`, `all(…)`, `any(…)`, `not(…)`) holds. A
    /// predicate this cannot read counts as holding: the item is compared rather than missed.
    pub fn eval(&self, meta: &Meta) -> bool {
        match meta {
            Meta::Path(p) => p.get_ident().is_none_or(|i| self.holds(&i.to_string(), None)),
            Meta::NameValue(nv) => {
                let value = match &nv.value {
                    syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => s.value(),
                    _ => return true,
                };
                nv.path.get_ident().is_none_or(|i| self.holds(&i.to_string(), Some(&value)))
            }
            Meta::List(list) => {
                let Ok(inner) = list.parse_args_with(Punctuated::<Meta, Token![,]>::parse_terminated) else {
                    return true;
                };
                match list.path.get_ident().map(|i| i.to_string()).as_deref() {
                    Some("all") => inner.iter().all(|m| self.eval(m)),
                    Some("any") => inner.iter().any(|m| self.eval(m)),
                    Some("not") if inner.len() == 1 => !self.eval(&inner[0]),
                    _ => true,
                }
            }
        }
    }

    /// Whether every `#[cfg(…)]` among `attrs` holds.
    pub fn is_active(&self, attrs: &[Attribute]) -> bool {
        attrs
            .iter()
            .filter(|a| a.path().is_ident("cfg"))
            .all(|a| a.parse_args::<Meta>().map_or(true, |m| self.eval(&m)))
    }

    /// Drops the items this configuration does not compile: items, methods and other impl
    /// members, and everything inside inline modules.
    pub fn retain_active(&self, items: &mut Vec<Item>) {
        items.retain(|i| self.is_active(item_attrs(i)));
        for item in items.iter_mut() {
            match item {
                Item::Impl(i) => i.items.retain(|ii| self.is_active(impl_item_attrs(ii))),
                Item::Mod(m) => {
                    if let Some((_, inner)) = &mut m.content {
                        self.retain_active(inner);
                    }
                }
                _ => {}
            }
        }
    }
}

fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

fn impl_item_attrs(item: &ImplItem) -> &[Attribute] {
    match item {
        ImplItem::Const(i) => &i.attrs,
        ImplItem::Fn(i) => &i.attrs,
        ImplItem::Type(i) => &i.attrs,
        ImplItem::Macro(i) => &i.attrs,
        _ => &[],
    }
}
