//! Changed signatures, removed functions and changed trait method sets: which code and state of
//! the running program still reach the old version, and whether the patch can leave them so.
//!
//! A function whose signature changed is a new function to the patch (`signatures_changed`, listed
//! in the manifest as routed): the runtime keeps a function's slot copies by signature, so the
//! program's slot and code stay as they are, and code still running the old version keeps calling
//! it. What must not stay is a reference to the old version that new work would go through:
//!
//! * **callers.** Every updateable function of the newer revision that calls it is switched by the
//!   patch, even when its own text did not change (`functions_carried`, listed in the manifest as
//!   carried: its compiled calls now go to the new function). A caller in the running revision that
//!   no patch can switch (a plain function, a method left without a slot, a trait's provided
//!   method) is refused, naming it; the binary's `main` excepted, which set the program up once
//!   (its change, like any plain function's, takes effect at the next start);
//! * **live state.** A function pointer (or a `dyn Fn…`) of the old signature reachable from the
//!   value type of a state cell (`dsu::State<T>`), a field cell (`dsu::Cell<T>`) or a static of the
//!   running revision is refused, naming the holder and its type: a pointer stored there would keep
//!   calling the old version.
//!
//! A removed function needs nothing from its callers (the newer code compiles without it); a
//! pointer to it held in live state is refused as above. A trait whose method set changed is
//! allowed unless a trait object of it is reachable from live state, or from the signature of an
//! updateable function the patch switches in place (its signature fingerprint cannot tell the old
//! trait from the new, so the running program's callers would hand it objects whose vtables were
//! built for the old trait): refused, naming the holder.
//!
//! Callers are found from syntax, conservatively, by name: a path ending in the function's name
//! (`f(..)`, `m::f`, as a value too), for a method one whose segment before the name is its type,
//! `Self` inside an impl of that type, its trait, or another name of the type (`use … as`, `type`
//! aliases), unless that path resolves to another type of the set; a method call `.f(..)` whatever
//! the receiver; the same shapes in macro input, read as tokens. A name may stand for another function: the cost is a function carried for nothing, or a
//! refusal to read twice. A value's type is followed through the structs, enums and type aliases
//! of the set, and through generic arguments.

use super::items::{signature_tokens, ItemKey, Kind};
use super::resolve::Resolver;
use super::statics::{NotShared, Statics};
use super::tree::{ModuleId, Tree};
use super::{ItemRef, Refusal, Report, Revision};
use dsu_syntax::FnOwner;
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::Item;

/// A function of the running revision that the patch routes or drops.
#[derive(Debug, Clone)]
struct Target {
    key: ItemKey,
    ident: String,
    /// For a method: the name of its impl's self type, and of the trait it implements.
    owner: Option<String>,
    /// The self type, where the running revision's source says which it is.
    owner_key: Option<ItemKey>,
    trait_name: Option<String>,
    has_receiver: bool,
    /// The old signature's shape (see [`shape`]), as a pointer to the function would be typed.
    old_shape: FnShape,
    /// The old signature as written, for messages.
    old_text: String,
    removed: bool,
}

/// The argument types and return type of a function, as [`shape`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FnShape {
    inputs: Vec<String>,
    output: String,
}

/// What code is, as far as switching it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CodeKind {
    Updateable,
    Plain,
    /// A method of an updateable impl that cannot have a slot, and why.
    Fixed(String),
    /// A trait's provided method.
    Provided,
}

/// One function body of a revision.
struct Code<'a> {
    key: ItemKey,
    module: ModuleId,
    /// The impl's self type, for a method.
    self_ty: Option<&'a syn::Type>,
    at: ItemRef,
    kind: CodeKind,
    /// The name `Self` stands for in it: the impl's self type, or the trait of a provided method.
    self_name: Option<String>,
    sig: &'a syn::Signature,
    body: &'a syn::Block,
}

/// Plans what changed signatures, removed functions and changed traits need (see the module
/// documentation), from the two revisions and the statics of the older one.
pub(crate) fn plan(old: &Revision, new: &Revision, old_statics: &Statics, report: &mut Report) {
    let old_code = code_of(old);
    let new_code = code_of(new);
    let targets = targets(old, new, &old_code);
    let names = other_names(&old.tree).into_iter().chain(other_names(&new.tree)).fold(
        Names::new(),
        |mut m, (ty, alias)| {
            m.entry(ty).or_default().insert(alias);
            m
        },
    );
    carry_callers(&targets, &new_code, &names, &Resolver::new(&new.tree), report);
    refuse_fixed_callers(&targets, &old_code, new, &names, &Resolver::new(&old.tree), report);
    let traits = changed_traits(old, new, report);
    let walker = Walker::new(old);
    refuse_live_state(&walker, old, old_statics, &targets, &traits, report);
    refuse_trait_objects_in_signatures(&walker, &old_code, &new_code, &targets, &traits, report);
}

/// Every function body of a revision (free functions, methods, provided trait methods), with
/// what the items say it is.
fn code_of(rev: &Revision) -> Vec<Code<'_>> {
    let mut out = Vec::new();
    for (id, module) in rev.tree.modules() {
        let file = module.file.display().to_string();
        let at = |path: &str, span: proc_macro2::Span| ItemRef {
            path: path.to_string(),
            file: file.clone(),
            line: span.start().line,
        };
        let kind_of = |key: &ItemKey| match rev.items.find(key).map(|e| &e.kind) {
            Some(Kind::UpdateableFn) => CodeKind::Updateable,
            Some(Kind::FixedMethod(why)) => CodeKind::Fixed(why.clone()),
            _ => CodeKind::Plain,
        };
        for item in &module.items {
            match item {
                Item::Fn(f) if !dsu_syntax::is_transform(&f.attrs) => {
                    let path = dsu_syntax::stable_path(&module.path, FnOwner::Free, &f.sig.ident);
                    let key = ItemKey { unit: id.unit, path };
                    out.push(Code {
                        module: id,
                        self_ty: None,
                        at: at(&key.path, f.span()),
                        kind: kind_of(&key),
                        key,
                        self_name: None,
                        sig: &f.sig,
                        body: &f.block,
                    });
                }
                Item::Impl(i) => {
                    let owner = FnOwner::of_impl(i);
                    for ii in &i.items {
                        let syn::ImplItem::Fn(m) = ii else { continue };
                        let key = ItemKey { unit: id.unit, path: dsu_syntax::stable_path(&module.path, owner, &m.sig.ident) };
                        out.push(Code {
                            module: id,
                            self_ty: Some(&i.self_ty),
                            at: at(&key.path, m.span()),
                            kind: kind_of(&key),
                            key,
                            self_name: type_name(&i.self_ty),
                            sig: &m.sig,
                            body: &m.block,
                        });
                    }
                }
                Item::Trait(t) => {
                    for ti in &t.items {
                        let syn::TraitItem::Fn(m) = ti else { continue };
                        let Some(body) = &m.default else { continue };
                        let key = ItemKey { unit: id.unit, path: format!("{}::{}::{}", module.path, t.ident, m.sig.ident) };
                        out.push(Code {
                            module: id,
                            self_ty: None,
                            at: at(&key.path, m.span()),
                            kind: CodeKind::Provided,
                            key,
                            self_name: Some(t.ident.to_string()),
                            sig: &m.sig,
                            body,
                        });
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The last name of a type path (`Store` for `crate::store::Store<T>`).
fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        syn::Type::Paren(p) => type_name(&p.elem),
        syn::Type::Group(g) => type_name(&g.elem),
        _ => None,
    }
}

/// The updateable functions of the older revision whose signature changed, or that the newer one
/// removes (or leaves without a slot).
fn targets(old: &Revision, new: &Revision, old_code: &[Code<'_>]) -> Vec<Target> {
    let resolver = Resolver::new(&old.tree);
    let mut out = Vec::new();
    for code in old_code.iter().filter(|c| c.kind == CodeKind::Updateable) {
        let o = old.items.get(&code.key);
        let removed = match new.items.find(&code.key) {
            Some(n) if n.kind == Kind::UpdateableFn => {
                if n.signature == o.signature {
                    continue;
                }
                false
            }
            _ => true,
        };
        let (owner, trait_name) = match &code.self_name {
            Some(ty) => (Some(ty.clone()), trait_of(&code.key.path)),
            None => (None, None),
        };
        let owner_key = match code.self_ty {
            Some(syn::Type::Path(p)) if p.qself.is_none() => resolver.resolve_type(code.module, &p.path),
            _ => None,
        };
        out.push(Target {
            owner_key,
            key: code.key.clone(),
            ident: code.sig.ident.to_string(),
            has_receiver: code.sig.receiver().is_some(),
            old_shape: fn_shape(code.sig, owner.as_deref()),
            old_text: signature_text(code.sig),
            owner,
            trait_name,
            removed,
        });
    }
    out
}

/// The trait of a method's stable path `m::<T as path::Trait>::f`: `Trait`.
fn trait_of(path: &str) -> Option<String> {
    let inner = path.split_once('<')?.1.rsplit_once('>')?.0;
    let (_, trait_path) = inner.split_once(" as ")?;
    Some(trait_path.rsplit("::").next().unwrap_or(trait_path).split('<').next()?.to_string())
}

/// Other names types are known by: `use … T as U` and `type U = …T…;`, as `(T, U)` pairs.
fn other_names(tree: &Tree) -> Vec<(String, String)> {
    fn uses(tree: &syn::UseTree, out: &mut Vec<(String, String)>) {
        match tree {
            syn::UseTree::Path(p) => uses(&p.tree, out),
            syn::UseTree::Rename(r) => out.push((r.ident.to_string(), r.rename.to_string())),
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| uses(t, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (_, module) in tree.modules() {
        for item in &module.items {
            match item {
                Item::Use(u) => uses(&u.tree, &mut out),
                Item::Type(t) => {
                    if let Some(ty) = type_name(&t.ty) {
                        out.push((ty, t.ident.to_string()));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Other names of types, by the type's name (see [`other_names`]).
type Names = BTreeMap<String, BTreeSet<String>>;

/// Whether `code` names `target` (see the module documentation for how).
fn calls(code: &Code<'_>, target: &Target, names: &Names, resolver: &Resolver<'_>) -> bool {
    let mut owners: BTreeSet<String> = BTreeSet::new();
    if let Some(owner) = &target.owner {
        owners.insert(owner.clone());
        owners.extend(names.get(owner).into_iter().flatten().cloned());
        owners.extend(target.trait_name.iter().cloned());
        if code.self_name.as_ref().is_some_and(|s| owners.contains(s)) {
            owners.insert("Self".into());
        }
    }
    let mut finder = CallFinder { target, owners: &owners, resolver, module: code.module, found: false };
    finder.visit_block(code.body);
    finder.found
}

struct CallFinder<'a> {
    target: &'a Target,
    /// The names the segment before a method's name may have (empty for a free function).
    owners: &'a BTreeSet<String>,
    /// Resolves the type before a method's name, in the code's module.
    resolver: &'a Resolver<'a>,
    module: ModuleId,
    found: bool,
}

impl CallFinder<'_> {
    /// Whether the path `p` names the target: for a method, its type is the segment before the
    /// name, by name, unless the source says that path is another type.
    fn path_names(&self, p: &syn::Path) -> bool {
        let n = p.segments.len();
        if p.segments.last().is_none_or(|s| s.ident != self.target.ident) {
            return false;
        }
        if self.target.owner.is_none() {
            return true;
        }
        if n < 2 || !self.owners.contains(&p.segments[n - 2].ident.to_string()) {
            return false;
        }
        let ty = syn::Path { leading_colon: p.leading_colon, segments: p.segments.iter().take(n - 1).cloned().collect() };
        match (&self.target.owner_key, self.resolver.resolve_type(self.module, &ty)) {
            (Some(owner), Some(named)) => *owner == named,
            _ => true,
        }
    }
}

impl<'ast> Visit<'ast> for CallFinder<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.found |= self.path_names(p);
        syn::visit::visit_path(self, p);
    }

    fn visit_expr_path(&mut self, e: &'ast syn::ExprPath) {
        // `<T>::f` and `<T as Trait>::f`: the type stands before the name.
        if let (Some(q), Some(last)) = (&e.qself, e.path.segments.last()) {
            let ty = type_name(&q.ty).unwrap_or_default();
            self.found |= last.ident == self.target.ident && self.owners.contains(&ty);
        }
        syn::visit::visit_expr_path(self, e);
    }

    fn visit_expr_method_call(&mut self, m: &'ast syn::ExprMethodCall) {
        self.found |= self.target.has_receiver && m.method == self.target.ident;
        syn::visit::visit_expr_method_call(self, m);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Macro input is not parsed: read as tokens, `.f`, `Owner::f`, or `f` for a free function.
        let mut tokens = Vec::new();
        flatten_tokens(m.tokens.clone(), &mut tokens);
        for (i, t) in tokens.iter().enumerate() {
            if *t != self.target.ident {
                continue;
            }
            let before = |n: usize| i.checked_sub(n).map(|j| tokens[j].as_str());
            self.found |= match &self.target.owner {
                None => true,
                Some(_) => {
                    (self.target.has_receiver && before(1) == Some("."))
                        || (before(1) == Some(":")
                            && before(2) == Some(":")
                            && before(3).is_some_and(|o| self.owners.contains(o)))
                }
            };
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The idents and punctuation of `tokens`, groups opened.
fn flatten_tokens(tokens: proc_macro2::TokenStream, out: &mut Vec<String>) {
    for t in tokens {
        match t {
            proc_macro2::TokenTree::Group(g) => flatten_tokens(g.stream(), out),
            proc_macro2::TokenTree::Ident(i) => out.push(i.to_string()),
            proc_macro2::TokenTree::Punct(p) => out.push(p.as_char().to_string()),
            proc_macro2::TokenTree::Literal(_) => out.push(String::new()),
        }
    }
}

/// Every updateable function of the newer revision that calls a function whose signature
/// changed is switched by the patch: one whose text changed already is, the others are carried.
fn carry_callers(
    targets: &[Target],
    new_code: &[Code<'_>],
    names: &Names,
    resolver: &Resolver<'_>,
    report: &mut Report,
) {
    let routed: BTreeSet<&str> = report.signatures_changed.iter().map(|r| r.path.as_str()).collect();
    let changed: BTreeSet<&str> = report.functions_changed.iter().map(|r| r.path.as_str()).collect();
    let mut carried = Vec::new();
    // A removed function is called by no code of the newer revision: a name that matches is
    // another function's.
    for t in targets.iter().filter(|t| !t.removed) {
        for code in new_code.iter().filter(|c| c.kind == CodeKind::Updateable && c.key != t.key) {
            let path = code.key.path.as_str();
            if routed.contains(path) || changed.contains(path) || carried.contains(&code.at) {
                continue;
            }
            if calls(code, t, names, resolver) {
                carried.push(code.at.clone());
            }
        }
    }
    report.functions_carried.extend(carried);
}

/// A caller in the running revision that no patch can switch would keep calling the old version
/// of a function whose signature changed: refused, naming it where the newer revision has it.
fn refuse_fixed_callers(
    targets: &[Target],
    old_code: &[Code<'_>],
    new: &Revision,
    names: &Names,
    resolver: &Resolver<'_>,
    report: &mut Report,
) {
    let last_unit = new.tree.units.len().checked_sub(1);
    // The binary's `main` is exempt: it ran once at start, and a program that changes how it
    // sets itself up gets that at its next start, as with any change to a plain function (the
    // report lists it among the changed functions that are not updateable).
    let is_main = |code: &Code<'_>| {
        code.kind == CodeKind::Plain
            && Some(code.module.unit) == last_unit
            && code.module.module == 0
            && code.sig.ident == "main"
    };
    for t in targets.iter().filter(|t| !t.removed) {
        for code in old_code.iter().filter(|c| c.kind != CodeKind::Updateable && !is_main(c)) {
            if !calls(code, t, names, resolver) {
                continue;
            }
            let why = match &code.kind {
                CodeKind::Plain => "it is not #[dsu::updateable]".to_string(),
                CodeKind::Fixed(why) => format!("it cannot be updateable ({why})"),
                CodeKind::Provided => "it is a trait's provided method, which has no slot".to_string(),
                CodeKind::Updateable => unreachable!("filtered above"),
            };
            let at = new.items.find(&code.key).map_or_else(|| code.at.clone(), |e| e.at.clone());
            report.refusals.push(Refusal {
                file: at.file.clone(),
                line: at.line,
                reason: format!(
                    "`{}` calls `{}`, whose signature changed (was `{}`), but {why}: the running \
                     program's copy cannot be switched and would keep calling the old version. Make \
                     it updateable (the patch then carries it), or move the call into an updateable \
                     function",
                    code.key.path, t.key.path, t.old_text
                ),
            });
        }
    }
}

/// The traits of both revisions whose method set changed (their methods' names and signatures,
/// associated types and constants, generics and supertraits), by name; reported.
fn changed_traits(old: &Revision, new: &Revision, report: &mut Report) -> BTreeSet<String> {
    /// Each trait's method set, the text of its supertraits, and where it is.
    fn method_sets(tree: &Tree) -> BTreeMap<(usize, String), (String, String, ItemRef)> {
        let mut out = BTreeMap::new();
        for (id, module) in tree.modules() {
            for item in &module.items {
                let Item::Trait(t) = item else { continue };
                let set: Vec<String> = t
                    .items
                    .iter()
                    .map(|ti| match ti {
                        syn::TraitItem::Fn(m) => signature_tokens(&m.sig),
                        syn::TraitItem::Type(ty) => {
                            let mut ty = ty.clone();
                            ty.default = None;
                            ty.attrs.clear();
                            ty.to_token_stream().to_string()
                        }
                        syn::TraitItem::Const(c) => format!("const {} : {}", c.ident, c.ty.to_token_stream()),
                        other => other.to_token_stream().to_string(),
                    })
                    .collect();
                let path = format!("{}::{}", module.path, t.ident);
                let at = ItemRef { path: path.clone(), file: module.file.display().to_string(), line: t.span().start().line };
                // Supertraits' methods are in the vtable too.
                let supertraits = t.supertraits.to_token_stream().to_string();
                let set = format!("{} : {supertraits} {}", t.generics.to_token_stream(), set.join(" ; "));
                out.insert((id.unit, path), (set, supertraits, at));
            }
        }
        out
    }
    let (old_sets, new_sets) = (method_sets(&old.tree), method_sets(&new.tree));
    let name = |key: &(usize, String)| key.1.rsplit("::").next().unwrap_or(&key.1).to_string();
    let mut changed: BTreeSet<String> = new_sets
        .iter()
        .filter(|(key, (set, _, _))| old_sets.get(*key).is_some_and(|(o, _, _)| o != set))
        .map(|(key, _)| name(key))
        .collect();
    // A trait whose supertrait changed has another vtable too.
    loop {
        let more: Vec<String> = new_sets
            .iter()
            .filter(|(key, (_, supertraits, _))| {
                !changed.contains(&name(key))
                    && old_sets.contains_key(*key)
                    && supertraits.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|t| changed.contains(t))
            })
            .map(|(key, _)| name(key))
            .collect();
        if more.is_empty() {
            break;
        }
        changed.extend(more);
    }
    for (key, (_, _, at)) in &new_sets {
        if changed.contains(&name(key)) && old_sets.contains_key(key) {
            report.traits_changed.push(at.clone());
        }
    }
    changed
}

/// What a type can hold that outlives an update and names code: a function pointer or a trait
/// object, found where it is (`trail`: the fields and aliases walked through).
#[derive(Debug, Clone)]
struct Leaf {
    kind: LeafKind,
    /// The leaf's type as written.
    text: String,
    trail: Vec<String>,
}

#[derive(Debug, Clone)]
enum LeafKind {
    FnPointer(FnShape),
    /// `dyn A + B`: the traits' names, and the shape of a `Fn`, `FnMut` or `FnOnce` among them.
    TraitObject(Vec<String>, Option<FnShape>),
}

/// Walks types through the structs, enums, unions and type aliases of one revision.
struct Walker<'a> {
    rev: &'a Revision,
    resolver: Resolver<'a>,
    aliases: BTreeMap<String, Vec<(ModuleId, &'a syn::Type)>>,
    types: BTreeMap<String, Vec<ItemKey>>,
}

impl<'a> Walker<'a> {
    fn new(rev: &'a Revision) -> Self {
        let mut aliases: BTreeMap<String, Vec<(ModuleId, &syn::Type)>> = BTreeMap::new();
        let mut types: BTreeMap<String, Vec<ItemKey>> = BTreeMap::new();
        for (id, module) in rev.tree.modules() {
            for item in &module.items {
                let ident = match item {
                    Item::Type(t) => {
                        aliases.entry(t.ident.to_string()).or_default().push((id, &t.ty));
                        continue;
                    }
                    Item::Struct(s) => &s.ident,
                    Item::Enum(e) => &e.ident,
                    Item::Union(u) => &u.ident,
                    _ => continue,
                };
                let key = ItemKey { unit: id.unit, path: format!("{}::{ident}", module.path) };
                types.entry(ident.to_string()).or_default().push(key);
            }
        }
        Walker { rev, resolver: Resolver::new(&rev.tree), aliases, types }
    }

    /// The leaves reachable from `ty`, written in module `from`.
    fn leaves(&self, ty: &syn::Type, from: ModuleId) -> Vec<Leaf> {
        let mut out = Vec::new();
        self.walk(ty, from, &mut Vec::new(), &mut BTreeSet::new(), &mut out);
        out
    }

    fn walk(&self, ty: &syn::Type, from: ModuleId, trail: &mut Vec<String>, seen: &mut BTreeSet<String>, out: &mut Vec<Leaf>) {
        use syn::Type;
        let text = || tidy(&ty.to_token_stream().to_string());
        match ty {
            Type::BareFn(f) => out.push(Leaf { kind: LeafKind::FnPointer(bare_fn_shape(f)), text: text(), trail: trail.clone() }),
            Type::TraitObject(t) => {
                let traits = trait_bounds(&t.bounds);
                out.push(Leaf {
                    kind: LeafKind::TraitObject(traits.iter().map(|(n, _)| n.clone()).collect(), traits.into_iter().find_map(|(_, s)| s)),
                    text: text(),
                    trail: trail.clone(),
                });
            }
            Type::Reference(r) => self.walk(&r.elem, from, trail, seen, out),
            Type::Ptr(p) => self.walk(&p.elem, from, trail, seen, out),
            Type::Slice(s) => self.walk(&s.elem, from, trail, seen, out),
            Type::Array(a) => self.walk(&a.elem, from, trail, seen, out),
            Type::Paren(p) => self.walk(&p.elem, from, trail, seen, out),
            Type::Group(g) => self.walk(&g.elem, from, trail, seen, out),
            Type::Tuple(t) => t.elems.iter().for_each(|e| self.walk(e, from, trail, seen, out)),
            Type::Path(p) => {
                for segment in &p.path.segments {
                    if let syn::PathArguments::AngleBracketed(args) = &segment.arguments {
                        for arg in &args.args {
                            if let syn::GenericArgument::Type(t) = arg {
                                self.walk(t, from, trail, seen, out);
                            }
                        }
                    }
                }
                if p.qself.is_none() {
                    self.walk_named(&p.path, from, trail, seen, out);
                }
            }
            _ => {}
        }
    }

    /// Follows a type path into the definitions of the set it may name: the one it resolves to,
    /// or, when it resolves to none, every type and alias of that name.
    fn walk_named(&self, path: &syn::Path, from: ModuleId, trail: &mut Vec<String>, seen: &mut BTreeSet<String>, out: &mut Vec<Leaf>) {
        let Some(name) = path.segments.last().map(|s| s.ident.to_string()) else { return };
        let keys: Vec<ItemKey> = match self.resolver.resolve_type(from, path) {
            Some(key) => vec![key],
            None => self.types.get(&name).cloned().unwrap_or_default(),
        };
        for key in keys {
            if !seen.insert(format!("{}#{}", key.unit, key.path)) {
                continue;
            }
            let Some(entry) = self.rev.items.find(&key) else { continue };
            let module = self.rev.tree.module(entry.module);
            for item in &module.items {
                let fields: Vec<(String, &syn::Type)> = match item {
                    Item::Struct(s) if s.ident == name => {
                        s.fields.iter().enumerate().map(|(i, f)| (field_name(&s.ident, None, f, i), &f.ty)).collect()
                    }
                    Item::Enum(e) if e.ident == name => e
                        .variants
                        .iter()
                        .flat_map(|v| v.fields.iter().enumerate().map(move |(i, f)| (field_name(&e.ident, Some(&v.ident), f, i), &f.ty)))
                        .collect(),
                    Item::Union(u) if u.ident == name => {
                        u.fields.named.iter().enumerate().map(|(i, f)| (field_name(&u.ident, None, f, i), &f.ty)).collect()
                    }
                    _ => continue,
                };
                for (field, ty) in fields {
                    trail.push(field);
                    self.walk(ty, entry.module, trail, seen, out);
                    trail.pop();
                }
            }
        }
        for (i, (module, ty)) in self.aliases.get(&name).into_iter().flatten().enumerate() {
            if !seen.insert(format!("alias {name} {i}")) {
                continue;
            }
            trail.push(format!("type {name}"));
            self.walk(ty, *module, trail, seen, out);
            trail.pop();
        }
    }
}

/// A field as a trail names it: `Registry.hooks`, `Event::Hook.0`.
fn field_name(ty: &syn::Ident, variant: Option<&syn::Ident>, f: &syn::Field, i: usize) -> String {
    let field = f.ident.as_ref().map_or_else(|| i.to_string(), ToString::to_string);
    match variant {
        Some(v) => format!("{ty}::{v}.{field}"),
        None => format!("{ty}.{field}"),
    }
}

/// The traits of a bound list, by name, each with its shape when it is `Fn(..) -> ..` (or
/// `FnMut`, `FnOnce`).
fn trait_bounds(bounds: &syn::punctuated::Punctuated<syn::TypeParamBound, syn::Token![+]>) -> Vec<(String, Option<FnShape>)> {
    bounds
        .iter()
        .filter_map(|b| match b {
            syn::TypeParamBound::Trait(t) => t.path.segments.last(),
            _ => None,
        })
        .map(|s| {
            let name = s.ident.to_string();
            let fn_shape = match &s.arguments {
                syn::PathArguments::Parenthesized(p) if matches!(name.as_str(), "Fn" | "FnMut" | "FnOnce") => Some(FnShape {
                    inputs: p.inputs.iter().map(|t| shape(t, None)).collect(),
                    output: output_shape(&p.output, None),
                }),
                _ => None,
            };
            (name, fn_shape)
        })
        .collect()
}

/// A type as far as matching a function's signature goes: paths by their last name, lifetimes
/// left out, `Self` as the type it stands for (`&Store` for `&'a self::Store` and `&Self`).
fn shape(ty: &syn::Type, self_name: Option<&str>) -> String {
    use syn::Type;
    let list = |types: &mut dyn Iterator<Item = &syn::Type>| types.map(|t| shape(t, self_name)).collect::<Vec<_>>().join(",");
    match ty {
        Type::Reference(r) => format!("&{}{}", if r.mutability.is_some() { "mut " } else { "" }, shape(&r.elem, self_name)),
        Type::Ptr(p) => format!("*{} {}", if p.mutability.is_some() { "mut" } else { "const" }, shape(&p.elem, self_name)),
        Type::Slice(s) => format!("[{}]", shape(&s.elem, self_name)),
        Type::Array(a) => format!("[{};{}]", shape(&a.elem, self_name), a.len.to_token_stream()),
        Type::Tuple(t) => format!("({})", list(&mut t.elems.iter())),
        Type::Paren(p) => shape(&p.elem, self_name),
        Type::Group(g) => shape(&g.elem, self_name),
        Type::BareFn(f) => {
            let s = bare_fn_shape(f);
            format!("fn({})->{}", s.inputs.join(","), s.output)
        }
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else { return String::new() };
            let name = match self_name {
                Some(s) if last.ident == "Self" && p.path.segments.len() == 1 => s.to_string(),
                _ => last.ident.to_string(),
            };
            match &last.arguments {
                syn::PathArguments::AngleBracketed(args) => {
                    let types: Vec<String> = args
                        .args
                        .iter()
                        .filter_map(|a| match a {
                            syn::GenericArgument::Type(t) => Some(shape(t, self_name)),
                            _ => None,
                        })
                        .collect();
                    if types.is_empty() { name } else { format!("{name}<{}>", types.join(",")) }
                }
                syn::PathArguments::Parenthesized(p) => {
                    format!("{name}({})->{}", list(&mut p.inputs.iter()), output_shape(&p.output, self_name))
                }
                syn::PathArguments::None => name,
            }
        }
        Type::TraitObject(t) => {
            let mut names: Vec<String> = t
                .bounds
                .iter()
                .filter_map(|b| match b {
                    syn::TypeParamBound::Trait(t) => Some(shape(&Type::Path(syn::TypePath { qself: None, path: t.path.clone() }), self_name)),
                    _ => None,
                })
                .collect();
            names.sort();
            format!("dyn {}", names.join("+"))
        }
        other => tidy(&other.to_token_stream().to_string()),
    }
}

fn output_shape(output: &syn::ReturnType, self_name: Option<&str>) -> String {
    match output {
        syn::ReturnType::Default => "()".into(),
        syn::ReturnType::Type(_, t) => shape(t, self_name),
    }
}

fn bare_fn_shape(f: &syn::TypeBareFn) -> FnShape {
    FnShape { inputs: f.inputs.iter().map(|a| shape(&a.ty, None)).collect(), output: output_shape(&f.output, None) }
}

/// The shape of a function's type as a pointer to it is written (`fn(&Store, u32) -> bool` for
/// `fn f(&self, n: u32) -> bool` of `Store`).
fn fn_shape(sig: &syn::Signature, self_name: Option<&str>) -> FnShape {
    let inputs = sig
        .inputs
        .iter()
        .map(|input| match input {
            syn::FnArg::Receiver(r) => shape(&r.ty, self_name),
            syn::FnArg::Typed(t) => shape(&t.ty, self_name),
        })
        .collect();
    FnShape { inputs, output: output_shape(&sig.output, self_name) }
}

/// A signature as a person reads it, without argument names: `fn get(&self, u32) -> u64`.
fn signature_text(sig: &syn::Signature) -> String {
    let inputs: Vec<String> = sig
        .inputs
        .iter()
        .map(|i| match i {
            syn::FnArg::Receiver(r) => {
                let mut r = r.clone();
                r.attrs.clear();
                if r.reference.is_none() {
                    r.mutability = None;
                }
                tidy(&r.to_token_stream().to_string())
            }
            syn::FnArg::Typed(t) => tidy(&t.ty.to_token_stream().to_string()),
        })
        .collect();
    let output = match &sig.output {
        syn::ReturnType::Default => String::new(),
        syn::ReturnType::Type(_, t) => format!(" -> {}", tidy(&t.to_token_stream().to_string())),
    };
    format!("fn {}({}){output}", sig.ident, inputs.join(", "))
}

/// Token text as a person writes it: `Vec<fn(&str) -> String>`.
fn tidy(text: &str) -> String {
    dsu_syntax::normalize_token_text(text).replace(" (", "(").replace("( ", "(").replace(" )", ")").replace(" ;", ";")
}

/// One holder of live state of the running revision: what it is, its type, where.
struct Holder<'t> {
    what: String,
    ty: &'t syn::Type,
    module: ModuleId,
    file: String,
    line: usize,
}

/// Refuses a function pointer of the old signature of a routed or removed function, or a trait
/// object of a changed trait, reachable from the value of a state cell, a field cell or a static
/// of the running revision.
fn refuse_live_state(
    walker: &Walker<'_>,
    old: &Revision,
    statics: &Statics,
    targets: &[Target],
    traits: &BTreeSet<String>,
    report: &mut Report,
) {
    if targets.is_empty() && traits.is_empty() {
        return;
    }
    let mut holders: Vec<Holder<'_>> = statics
        .found
        .iter()
        .map(|f| Holder {
            what: match f.not_shared {
                Some(NotShared::StateCell) => format!("state cell `{}`", f.path),
                _ => format!("static `{}`", f.path),
            },
            ty: &f.ty,
            module: f.module,
            file: f.file.display().to_string(),
            line: f.line,
        })
        .collect();
    let field_cells = super::cells::field_cells(&old.tree);
    holders.extend(field_cells.iter().map(|c| Holder {
        what: format!("field cell `dsu::Cell<{}>` ({})", tidy(&c.type_text), c.location),
        ty: &c.value_type,
        module: c.module,
        file: c.file.clone(),
        line: c.line,
    }));
    for h in holders {
        for leaf in walker.leaves(h.ty, h.module) {
            let Some(why) = stale(&leaf, targets, traits) else { continue };
            let through = if leaf.trail.is_empty() { String::new() } else { format!(" (through {})", leaf.trail.join(", ")) };
            report.refusals.push(Refusal {
                file: h.file.clone(),
                line: h.line,
                reason: format!(
                    "{} holds `{}`: `{}`{through} {why}",
                    h.what,
                    tidy(&h.ty.to_token_stream().to_string()),
                    leaf.text
                ),
            });
        }
    }
}

/// Why `leaf`, held by the running program, would reach old code after the patch: it can point
/// at the old version of a routed or removed function, or is a trait object of a changed trait.
fn stale(leaf: &Leaf, targets: &[Target], traits: &BTreeSet<String>) -> Option<String> {
    let pointer_to = |shape: &FnShape| {
        targets.iter().find(|t| t.old_shape == *shape).map(|t| {
            let change = if t.removed { "which the patch removes" } else { "whose signature changed" };
            format!(
                "can point at `{}` (`{}`), {change}: a pointer the running program stored keeps \
                 calling the old version. Hold a value that names the function instead (an enum \
                 an updateable function matches on), or keep this signature and add the new one \
                 as a new function",
                t.key.path, t.old_text
            )
        })
    };
    match &leaf.kind {
        LeafKind::FnPointer(shape) => pointer_to(shape),
        LeafKind::TraitObject(names, fn_shape) => names
            .iter()
            .find(|n| traits.contains(*n))
            .map(|n| {
                format!(
                    "is a trait object of `{n}`, whose method set changed: the running program's \
                     objects carry vtables of the old trait, and the new code would call them \
                     through the new one. Keep `{n}`'s methods as they are (put new ones in a new \
                     trait)"
                )
            })
            .or_else(|| fn_shape.as_ref().and_then(pointer_to)),
    }
}

/// Refuses an updateable function that the patch switches in place (its signature unchanged)
/// whose signature reaches a trait object of a changed trait: the fingerprint of `&dyn Trait`
/// does not change with the trait, so the running program's callers would hand the new code
/// objects built for the old trait.
fn refuse_trait_objects_in_signatures(
    walker: &Walker<'_>,
    old_code: &[Code<'_>],
    new_code: &[Code<'_>],
    targets: &[Target],
    traits: &BTreeSet<String>,
    report: &mut Report,
) {
    if traits.is_empty() {
        return;
    }
    let routed: BTreeSet<&ItemKey> = targets.iter().map(|t| &t.key).collect();
    let switch_all = !report.cells_transformed.is_empty();
    let switched: BTreeSet<&str> =
        report.functions_changed.iter().chain(&report.functions_carried).map(|r| r.path.as_str()).collect();
    let mut refusals = Vec::new();
    for code in old_code.iter().filter(|c| c.kind == CodeKind::Updateable && !routed.contains(&c.key)) {
        if !switch_all && !switched.contains(code.key.path.as_str()) {
            continue;
        }
        let Some(new) = new_code.iter().find(|n| n.key == code.key) else { continue };
        let Some(entry) = walker.rev.items.find(&code.key) else { continue };
        let types = code.sig.inputs.iter().map(|i| match i {
            syn::FnArg::Receiver(r) => &*r.ty,
            syn::FnArg::Typed(t) => &*t.ty,
        });
        let output = match &code.sig.output {
            syn::ReturnType::Type(_, t) => Some(&**t),
            syn::ReturnType::Default => None,
        };
        for ty in types.chain(output) {
            // `Self` is the impl's type: walked by its name.
            let mut ty = ty.clone();
            if let Some(name) = &code.self_name {
                SelfAs(syn::Ident::new(name, proc_macro2::Span::call_site())).visit_type_mut(&mut ty);
            }
            for leaf in walker.leaves(&ty, entry.module) {
                let LeafKind::TraitObject(names, _) = &leaf.kind else { continue };
                let Some(name) = names.iter().find(|n| traits.contains(*n)) else { continue };
                let through = if leaf.trail.is_empty() { String::new() } else { format!(" (through {})", leaf.trail.join(", ")) };
                refusals.push(Refusal {
                    file: new.at.file.clone(),
                    line: new.at.line,
                    reason: format!(
                        "`{}` takes or returns `{}`{through}, a trait object of `{name}`, whose method \
                         set changed, and the patch replaces it in place: its signature fingerprint \
                         is the same for both traits, so callers in the running program would hand \
                         the new code objects built for the old trait. Change its signature too (it \
                         is then routed), or keep `{name}`'s methods",
                        code.key.path, leaf.text
                    ),
                });
            }
        }
    }
    refusals.dedup();
    report.refusals.extend(refusals);
}

/// Replaces the path `Self` by a type's name.
struct SelfAs(syn::Ident);

impl VisitMut for SelfAs {
    fn visit_path_mut(&mut self, p: &mut syn::Path) {
        if p.leading_colon.is_none() && p.segments.len() == 1 && p.segments[0].ident == "Self" {
            p.segments[0].ident = self.0.clone();
        }
        syn::visit_mut::visit_path_mut(self, p);
    }
}
