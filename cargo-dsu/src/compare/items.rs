//! The items of interest of each crate (functions, methods, statics, types), keyed by stable
//! path, and the changes of functions between two revisions (those of statics are
//! `statics.rs`'s).

use super::tree::{ModuleId, Tree};
use super::{ItemRef, Refusal, Report};
use dsu_syntax::{behaviour_tokens, FnOwner};
use quote::ToTokens;
use std::collections::BTreeMap;
use syn::spanned::Spanned;
use syn::{ImplItem, Item};

/// An item of one crate of the set: the crate (an index into the units) and its stable path.
/// Two crates may share a name (a package's library and binary), so the path alone is not enough.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    pub unit: usize,
    pub path: String,
}

impl ItemKey {
    /// The last segment of the path: the item's own name.
    pub fn ident(&self) -> &str {
        self.path.rsplit("::").next().unwrap_or(&self.path)
    }
}

/// One item of interest.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: ItemRef,
    pub module: ModuleId,
    pub kind: Kind,
    /// Behaviour tokens of what identifies the item's interface: a function's signature (with
    /// its impl's self type and trait), a static, a type's definition without its
    /// `#[dsu::transform]` attributes (which say how values move, not what they are).
    pub head: String,
    /// Behaviour tokens of the whole item.
    pub whole: String,
    /// For a function, what its callers depend on: [`Entry::head`] with the argument patterns
    /// left out (`fn f(n: u32)` and `fn f(count: u32)` are one signature); otherwise the head.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    UpdateableFn,
    PlainFn,
    /// A method of an `#[dsu::updateable] impl` that stays a plain method, and why (every part
    /// of its signature that `dsu_syntax::can_be_updateable` refuses).
    FixedMethod(String),
    Static,
    Type,
}

impl Kind {
    pub fn is_fn(&self) -> bool {
        matches!(self, Kind::UpdateableFn | Kind::PlainFn | Kind::FixedMethod(_))
    }
}

/// Every item of interest of a revision.
#[derive(Default)]
pub struct Items(BTreeMap<ItemKey, Entry>);

impl Items {
    pub fn collect(tree: &Tree) -> Items {
        let mut items = Items::default();
        for (id, module) in tree.modules() {
            let file = module.file.display().to_string();
            let mut add = |path: String, span: proc_macro2::Span, kind, head: String, whole: String, signature| {
                let at = ItemRef { path: path.clone(), file: file.clone(), line: span.start().line };
                let entry = Entry { at, module: id, kind, head, whole, signature };
                items.0.insert(ItemKey { unit: id.unit, path }, entry);
            };
            for item in &module.items {
                collect_item(item, &module.path, &mut add);
            }
        }
        items
    }

    pub fn get(&self, key: &ItemKey) -> &Entry {
        &self.0[key]
    }

    pub fn find(&self, key: &ItemKey) -> Option<&Entry> {
        self.0.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&ItemKey, &Entry)> {
        self.0.iter()
    }

    /// The entries of one kind.
    fn of_kind<'a>(&'a self, kind: &'a Kind) -> impl Iterator<Item = (&'a ItemKey, &'a Entry)> {
        self.0.iter().filter(move |(_, e)| e.kind == *kind)
    }
}

/// A type's tokens as far as its layout goes: without docs and `#[dsu::transform]`.
fn layout_tokens(item: &Item) -> String {
    let mut item = item.clone();
    match &mut item {
        Item::Struct(s) => dsu_syntax::remove_transform_attrs(&mut s.attrs),
        Item::Enum(e) => dsu_syntax::remove_transform_attrs(&mut e.attrs),
        Item::Union(u) => dsu_syntax::remove_transform_attrs(&mut u.attrs),
        _ => {}
    }
    behaviour_tokens(&item)
}

/// The behaviour tokens of a function's signature as its callers see it: its argument patterns
/// (names, `mut` bindings) are the body's business, and left out.
pub fn signature_tokens(sig: &syn::Signature) -> String {
    let mut sig = sig.clone();
    for input in &mut sig.inputs {
        match input {
            syn::FnArg::Typed(t) => *t.pat = syn::parse_quote!(_),
            syn::FnArg::Receiver(r) if r.reference.is_none() => r.mutability = None,
            syn::FnArg::Receiver(_) => {}
        }
    }
    behaviour_tokens(&sig)
}

/// Adds the items of interest `item` holds (a function, each method of an impl, a static, a
/// type). Inline modules are modules of their own.
fn collect_item(
    item: &Item,
    module: &str,
    add: &mut impl FnMut(String, proc_macro2::Span, Kind, String, String, String),
) {
    match item {
        // Transformers exist only in patches and are not part of the program's code.
        Item::Fn(f) if dsu_syntax::is_transform(&f.attrs) => {}
        Item::Fn(f) => {
            let kind = if dsu_syntax::is_updateable(&f.attrs) { Kind::UpdateableFn } else { Kind::PlainFn };
            let path = dsu_syntax::stable_path(module, FnOwner::Free, &f.sig.ident);
            add(path, f.span(), kind, behaviour_tokens(&f.sig), behaviour_tokens(f), signature_tokens(&f.sig));
        }
        Item::Impl(i) => {
            let owner = FnOwner::of_impl(i);
            let updateable = dsu_syntax::is_updateable(&i.attrs);
            let trait_text = i.trait_.as_ref().map(|(_, t, _)| t.to_token_stream().to_string());
            let context = format!("{} {}", behaviour_tokens(&*i.self_ty), trait_text.unwrap_or_default());
            for ii in &i.items {
                let ImplItem::Fn(m) = ii else { continue };
                // The macros' own rule: a method it refuses is left without a slot.
                let kind = match dsu_syntax::can_be_updateable(&m.sig, owner.place()) {
                    _ if dsu_syntax::is_updateable(&m.attrs) => Kind::UpdateableFn,
                    Ok(()) if updateable => Kind::UpdateableFn,
                    Err(why) if updateable => Kind::FixedMethod(why.to_string()),
                    _ => Kind::PlainFn,
                };
                let head = format!("{context} {}", behaviour_tokens(&m.sig));
                let whole = format!("{context} {}", behaviour_tokens(m));
                let signature = format!("{context} {}", signature_tokens(&m.sig));
                add(dsu_syntax::stable_path(module, owner, &m.sig.ident), m.span(), kind, head, whole, signature);
            }
        }
        Item::Static(s) => {
            let text = behaviour_tokens(s);
            add(format!("{module}::{}", s.ident), s.span(), Kind::Static, text.clone(), text.clone(), text);
        }
        Item::Struct(s) => add(
            format!("{module}::{}", s.ident),
            s.span(),
            Kind::Type,
            layout_tokens(item),
            behaviour_tokens(item),
            layout_tokens(item),
        ),
        Item::Enum(e) => add(
            format!("{module}::{}", e.ident),
            e.span(),
            Kind::Type,
            layout_tokens(item),
            behaviour_tokens(item),
            layout_tokens(item),
        ),
        Item::Union(u) => add(
            format!("{module}::{}", u.ident),
            u.span(),
            Kind::Type,
            layout_tokens(item),
            behaviour_tokens(item),
            layout_tokens(item),
        ),
        _ => {}
    }
}

/// An updateable function present in both revisions whose signature changed is a new function
/// to the patch (`Report::signatures_changed`: routed, its callers carried or refused by
/// `routes.rs`); one whose body changed is replaced. A method that cannot be updateable may not
/// change at all. Others are reported as added, removed, or changed without a slot.
pub fn compare_functions(old: &Items, new: &Items, report: &mut Report) {
    for (key, n) in new.0.iter().filter(|(_, e)| e.kind.is_fn()) {
        let path = &key.path;
        let Some(o) = old.0.get(key).filter(|o| o.kind.is_fn()) else {
            if n.kind == Kind::UpdateableFn {
                report.functions_added.push(n.at.clone());
            }
            continue;
        };
        match (&n.kind, &o.kind) {
            // Old callers would reach the new code with the old calling convention: the new
            // version gets slots of its own (the runtime keeps copies by signature).
            (Kind::UpdateableFn, Kind::UpdateableFn) if o.signature != n.signature => {
                report.signatures_changed.push(n.at.clone())
            }
            (Kind::UpdateableFn, Kind::UpdateableFn) if o.whole != n.whole => {
                report.functions_changed.push(n.at.clone())
            }
            (Kind::UpdateableFn, Kind::UpdateableFn) => {}
            (Kind::UpdateableFn, _) => report.functions_added.push(n.at.clone()),
            (Kind::FixedMethod(why), _) if o.whole != n.whole => report.refusals.push(refusal(
                &n.at,
                format!(
                    "`{path}` changed, but it cannot be updateable: {why}. Callers in the running \
                     program would keep its old code; keep it as it is and move the change into \
                     an updateable function it calls"
                ),
            )),
            (Kind::PlainFn, _) if o.whole != n.whole => report.non_updateable_changed.push(n.at.clone()),
            _ => {}
        }
    }
    for (key, o) in old.of_kind(&Kind::UpdateableFn) {
        if !new.0.get(key).is_some_and(|n| n.kind == Kind::UpdateableFn) {
            report.functions_removed.push(o.at.clone());
        }
    }
}

fn refusal(at: &ItemRef, reason: String) -> Refusal {
    Refusal { file: at.file.clone(), line: at.line, reason }
}

/// Types present in both revisions whose layout tokens differ. Values of a changed type may be
/// live in the running program; `types::plan` decides whether the patch can move them (a
/// transformer) or must refuse. Added types are fine and not reported.
pub fn changed_types(old: &Items, new: &Items) -> Vec<ItemKey> {
    new.of_kind(&Kind::Type)
        .filter(|(key, n)| old.0.get(*key).is_some_and(|o| o.kind == Kind::Type && o.head != n.head))
        .map(|(key, _)| key.clone())
        .collect()
}

/// The crates whose files, read as their module tree reaches them, differ in behaviour.
pub fn crates_changed(old: &Tree, new: &Tree) -> Vec<String> {
    old.units
        .iter()
        .zip(&new.units)
        .filter(|(o, n)| o.files != n.files)
        .map(|(_, n)| n.crate_name.clone())
        .collect()
}
