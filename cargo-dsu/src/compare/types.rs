//! Type changes in a patch: what `cargo dsu patch` checks and generates when a type changes.
//!
//! For each changed `#[dsu::updateable]` type, in any module of any crate of the set, it
//! * requires a transformer in the type's module: a `#[dsu::transform(from = dsu_old::T)]`
//!   function, or `#[dsu::transform(from = dsu_old::T, default)]` on the new type (then derives
//!   it, if the change is trivial: fields added with `Default`, removed, or reordered), and
//!   otherwise refuses and prints a stub to paste;
//! * chooses, in a release stream, the transformer written for this change: transformers stay in
//!   the source after their release, so a type changed twice has two. The patch compiles only a
//!   transformer function that is new or changed since the older revision (one the older revision
//!   has was written for an earlier change, whose result is the older revision's type), and
//!   refuses a patch across two changes of one type, each with its transformer, naming both:
//!   such a patch is applied in steps. A `default` on the type derives a transformer for any
//!   change for which no function is new;
//! * counts as changed, too, every updateable type whose definition is the same but holds a
//!   changed type (a `Shard` whose map holds a changed `Entry`; [`enclosing`]): its layout
//!   changes, and its transformer is derived (fields carried or transformed) unless written;
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
//! * transforms every state cell, in any module of any crate of the set, whose type mentions a
//!   changed type (a cell of the binary may hold a type of the library), and every field cell
//!   (`dsu::Cell<T>`) by its value type (`cells.rs`);
//! * generates the code all this needs (`generate.rs`).

use super::generate::{self, Generated, Site, ToOld};
use super::items::{ItemKey, Kind};
use super::resolve::Resolver;
use super::tree::{Module, ModuleId};
use super::{Insertion, ItemRef, Refusal, Report, Revision};
use dsu_syntax::{behaviour_tokens, Direction, FnOwner, StateCell, TransformArgs, Transformer};
use quote::ToTokens;
use std::collections::{BTreeMap, BTreeSet};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::Item;

/// A changed type the patch can carry: it is updateable and has a transformer.
struct Planned<'a> {
    key: ItemKey,
    at: ItemRef,
    /// Its module in the newer revision, and in the older one.
    module: ModuleId,
    old_module: ModuleId,
    old: &'a Item,
    new: &'a Item,
    /// Its `#[dsu::transform]` attributes in the newer revision, and in the older one.
    args: Vec<TransformArgs>,
    old_args: Vec<TransformArgs>,
    /// The transformer functions of its module.
    transformers: Vec<TransformerFn>,
    /// Its definition is the same in both revisions: it changes because it holds a changed type
    /// (see [`enclosing`]), and its transformers are derived unless written.
    enclosing: bool,
}

/// A transformer function of the newer revision.
#[derive(Clone)]
struct TransformerFn {
    transformer: Transformer,
    /// Where it is; the path is its stable path (`app::store::upgrade`).
    at: ItemRef,
    /// The cfg value it compiles under (`Transformer::cfg_value`).
    cfg: String,
    /// Whether it is new or changed since the older revision. Only such a transformer can have
    /// been written for this patch's change of its type: one the older revision has already was
    /// written for an earlier change, and the older revision's type is what it made.
    fresh: bool,
}

/// The transformer a patch uses for one changed type, one way.
enum Choice {
    /// A transformer function, compiled into the patch.
    Function(TransformerFn),
    /// The one `default` on the type asks `cargo dsu patch` to derive.
    Derived,
    None,
}

/// More than one transformer of a type, one way, is new since the older revision: the patch
/// spans several changes of the type. Each names one of them.
struct Spanning(Vec<String>);

/// A derived inverse transformer, kept only if the inverses it needs exist.
struct DerivedInverse<'p, 'a> {
    of: &'p Planned<'a>,
    inverse: generate::InverseCode,
}

struct Planner<'a> {
    old: &'a Revision,
    new: &'a Revision,
    old_resolver: Resolver<'a>,
    new_resolver: Resolver<'a>,
    crate_names: Vec<String>,
    gen: Generated,
    /// Changed types named outside their module.
    aliases: BTreeSet<ItemKey>,
    /// The transformer functions of each module read so far (its errors reported once).
    transformers: BTreeMap<ModuleId, Vec<TransformerFn>>,
    /// The transformer functions the patch compiles.
    selected: Vec<TransformerFn>,
    /// Every changed type (derived transformers carry the fields whose types mention none).
    changed: BTreeSet<ItemKey>,
    report: &'a mut Report,
}

/// Plans the changed types `changed` (of the newer revision's items), adding refusals and what
/// it reports to `report`, and returns the code to insert.
pub fn plan(old: &Revision, new: &Revision, changed: &[ItemKey], report: &mut Report) -> Vec<Insertion> {
    let mut p = Planner {
        old,
        new,
        old_resolver: Resolver::new(&old.tree),
        new_resolver: Resolver::new(&new.tree),
        crate_names: new.tree.units.iter().map(|u| u.crate_name.clone()).collect(),
        gen: Generated::default(),
        aliases: BTreeSet::new(),
        transformers: BTreeMap::new(),
        selected: Vec::new(),
        changed: changed.iter().cloned().collect(),
        report,
    };
    let planned: Vec<Planned<'_>> = changed.iter().filter_map(|k| p.check_type(k)).collect();
    if planned.is_empty() {
        return Vec::new();
    }
    let ok: BTreeSet<ItemKey> = planned.iter().map(|t| t.key.clone()).collect();
    for t in &planned {
        p.write_old_definition(t, &ok);
    }
    let reversible = p.plan_inverses(&planned, &ok);
    let cells = p.plan_cells(&ok, &reversible);
    super::cells::plan_field_transforms(&mut super::cells::FieldPlan {
        old,
        new,
        old_resolver: &p.old_resolver,
        new_resolver: &p.new_resolver,
        changed: &ok,
        reversible: &reversible,
        crate_names: &p.crate_names,
        gen: &mut p.gen,
        aliases: &mut p.aliases,
        report: p.report,
    });
    p.route_functions(&ok, &cells);
    p.compile_selected();
    p.gen.need_aliases(p.aliases);
    p.gen.into_insertions(new)
}

/// The updateable types of the newer revision whose definition did not change but whose layout
/// does, because a field holds one of `changed` (a `Shard` whose map holds a changed `Entry`),
/// or one of these, transitively. Their values move too, and code whose signature names them is
/// compiled for the old layout, so they are changed types as well; their transformer is derived
/// (each field carried or transformed) unless one is written. A type reached only inside a
/// `dsu::Cell` does not count: a cell is one pointer whatever it holds, and the runtime
/// transforms its value where it is.
pub fn enclosing(old: &Revision, new: &Revision, changed: &[ItemKey]) -> Vec<ItemKey> {
    struct NoCells;
    impl VisitMut for NoCells {
        fn visit_path_mut(&mut self, p: &mut syn::Path) {
            match p.segments.last_mut() {
                Some(last) if last.ident == "Cell" => last.arguments = syn::PathArguments::None,
                _ => syn::visit_mut::visit_path_mut(self, p),
            }
        }
    }
    let resolver = Resolver::new(&new.tree);
    let mut all: BTreeSet<ItemKey> = changed.iter().cloned().collect();
    let mut added = Vec::new();
    loop {
        let more: Vec<ItemKey> = new
            .items
            .iter()
            .filter(|(key, e)| {
                e.kind == Kind::Type
                    && !all.contains(*key)
                    && old.items.find(key).is_some_and(|o| o.kind == Kind::Type && o.head == e.head)
            })
            .filter(|(key, e)| {
                let Some(item) = type_item(new.tree.module(e.module), key.ident()) else { return false };
                dsu_syntax::is_updateable(item_attrs(item))
                    && field_types(item).into_iter().any(|ty| {
                        let mut ty = ty.clone();
                        NoCells.visit_type_mut(&mut ty);
                        !generate::mentioned(&resolver, e.module, &ty, &all).is_empty()
                    })
            })
            .map(|(key, _)| key.clone())
            .collect();
        if more.is_empty() {
            return added;
        }
        all.extend(more.iter().cloned());
        added.extend(more);
    }
}

/// The types of every field of a struct, enum or union.
fn field_types(item: &Item) -> Vec<&syn::Type> {
    match item {
        Item::Struct(s) => s.fields.iter().map(|f| &f.ty).collect(),
        Item::Enum(e) => e.variants.iter().flat_map(|v| v.fields.iter().map(|f| &f.ty)).collect(),
        Item::Union(u) => u.fields.named.iter().map(|f| &f.ty).collect(),
        _ => Vec::new(),
    }
}

/// The behaviour tokens of the transformer function `ident` of `module`, if it has one.
fn transformer_tokens(module: &Module, ident: &syn::Ident) -> Option<String> {
    module.items.iter().find_map(|i| match i {
        Item::Fn(f) if f.sig.ident == *ident && dsu_syntax::is_transform(&f.attrs) => Some(behaviour_tokens(f)),
        _ => None,
    })
}

fn type_item<'m>(module: &'m Module, ident: &str) -> Option<&'m Item> {
    module.items.iter().find(|i| match i {
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

/// Whether the token text `text` names `ident` as a whole token.
pub(super) fn mentions(text: &str, ident: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|t| t == ident)
}

fn refusal(at: &ItemRef, reason: String) -> Refusal {
    Refusal { file: at.file.clone(), line: at.line, reason }
}

/// The transformer of the changed type `ident` going `way`, among the transformer functions of
/// its module `fns` and what its attributes `args` ask (`old_args`: in the older revision).
/// Rule: a function new or changed since the older revision, or else the derived one when the
/// type asks for it; never two new ones (a function, or a `default` the older revision did not
/// ask for).
fn choose(
    fns: &[TransformerFn],
    args: &[TransformArgs],
    old_args: &[TransformArgs],
    ident: &str,
    way: Direction,
    at: &ItemRef,
) -> Result<Choice, Spanning> {
    let fresh: Vec<&TransformerFn> =
        fns.iter().filter(|f| f.fresh && f.transformer.moves(ident, way)).collect();
    let derived = args.iter().any(|a| a.derives(way));
    let derived_fresh = derived && !old_args.iter().any(|a| a.derives(way));
    if fresh.len() + usize::from(derived_fresh) > 1 {
        let mut named: Vec<String> =
            fresh.iter().map(|f| format!("`{}` ({}:{})", f.at.path, f.at.file, f.at.line)).collect();
        if derived_fresh {
            let key = if way == Direction::Forward { "from" } else { "to" };
            named.push(format!(
                "the one `#[dsu::transform({key} = dsu_old::{ident}, default)]` derives ({}:{})",
                at.file, at.line
            ));
        }
        return Err(Spanning(named));
    }
    Ok(match (fresh.first(), derived) {
        (Some(f), _) => Choice::Function((*f).clone()),
        (None, true) => Choice::Derived,
        (None, false) => Choice::None,
    })
}

/// The refusal of a patch that spans several changes of the type `path`, each with its
/// transformer (`what`: "transformers" or "inverse transformers").
fn spanning_refusal(at: &ItemRef, path: &str, what: &str, Spanning(named): Spanning) -> Refusal {
    let reason = format!(
        "type `{path}` changed, and {} {what} of it are new or changed since the older revision: \
         {}. Each was written for one change of the type, and this patch spans several, so none \
         of them moves the older revision's values. Apply the releases in steps: one patch up to \
         the release that brought the first, one from there (a transformer of an earlier \
         release counts as new when edited: leave it as it was)",
        named.len(),
        named.join(" and "),
    );
    refusal(at, reason)
}

/// Why the changed type `path` cannot be carried: no transformer, or only transformers of
/// earlier releases (named); with a stub to paste, named apart from the functions there.
fn no_transformer(
    path: &str,
    ident: &str,
    transformers: &[TransformerFn],
    old: &Item,
    new: &Item,
) -> String {
    let earlier: Vec<String> = transformers
        .iter()
        .filter(|t| t.transformer.moves(ident, Direction::Forward))
        .map(|t| format!("`{}` ({}:{})", t.at.path, t.at.file, t.at.line))
        .collect();
    let taken: Vec<&str> =
        transformers.iter().map(|t| t.at.path.rsplit("::").next().unwrap_or_default()).collect();
    let mut name = format!("upgrade_{}", ident.to_lowercase());
    let base = name.clone();
    for n in 2.. {
        if !taken.contains(&name.as_str()) {
            break;
        }
        name = format!("{base}_{n}");
    }
    let stub = generate::stub(ident, &name, old, new);
    if earlier.is_empty() {
        format!(
            "type `{path}` changed and no transformer moves its values to the new layout; \
             add one (or `#[dsu::transform(from = dsu_old::{ident}, default)]` on the type \
             for a trivial change):\n{stub}"
        )
    } else {
        format!(
            "type `{path}` changed and no transformer is new since the older revision: {} \
             {} in it already, written for an earlier change of `{ident}` (the older \
             revision's `{ident}` is what it made), so this patch leaves it out. Add a \
             transformer for this change (or `#[dsu::transform(from = dsu_old::{ident}, \
             default)]` on the type for a trivial change):\n{stub}",
            earlier.join(", "),
            if earlier.len() == 1 { "is" } else { "are" },
        )
    }
}

impl<'a> Planner<'a> {
    /// Whether the patch can carry the change of type `key`: refuses it if not, derives its
    /// transformer if asked.
    fn check_type(&mut self, key: &ItemKey) -> Option<Planned<'a>> {
        let (old_rev, new_rev) = (self.old, self.new);
        let (o, n) = (old_rev.items.get(key), new_rev.items.get(key));
        let ident = key.ident();
        let old = type_item(old_rev.tree.module(o.module), ident)?;
        let new = type_item(new_rev.tree.module(n.module), ident)?;
        let path = &key.path;
        if !dsu_syntax::is_updateable(item_attrs(old)) || !dsu_syntax::is_updateable(item_attrs(new)) {
            let reason = format!(
                "type `{path}` changed and is not #[dsu::updateable] in both revisions: mark it so \
                 its values can be fingerprinted and transformed"
            );
            self.report.refusals.push(refusal(&n.at, reason));
            return None;
        }
        let args = match dsu_syntax::transform_attrs(item_attrs(new)) {
            Ok(args) => args,
            Err(e) => {
                let reason = format!("type `{path}`: cannot read its #[dsu::transform]: {e}");
                self.report.refusals.push(refusal(&n.at, reason));
                return None;
            }
        };
        // The older revision's attributes tell a `default` this release asks for from one an
        // earlier release asked for; unreadable ones ask for nothing.
        let old_args = dsu_syntax::transform_attrs(item_attrs(old)).unwrap_or_default();
        let transformers = self.transformers_of(n.module);
        let enclosing = o.head == n.head;
        let choice = match choose(&transformers, &args, &old_args, ident, Direction::Forward, &n.at) {
            Err(spanning) => {
                self.report.refusals.push(spanning_refusal(&n.at, path, "transformers", spanning));
                return None;
            }
            // The same fields, some of whose types change: each field is carried or transformed.
            Ok(Choice::None) if enclosing => Choice::Derived,
            Ok(choice) => choice,
        };
        match choice {
            Choice::Function(f) => self.selected.push(f),
            Choice::Derived => match generate::derive_default(
                key,
                old,
                new,
                &mut self.old_namer(o.module, n.module, false, &self.changed.clone()),
            ) {
                Ok(code) => self.gen.code(n.module).impls.push_str(&code),
                Err(reason) => {
                    self.report.refusals.push(refusal(&n.at, format!("type `{path}`: {reason}")));
                    return None;
                }
            },
            Choice::None => {
                let reason = no_transformer(path, ident, &transformers, old, new);
                self.report.refusals.push(refusal(&n.at, reason));
                return None;
            }
        }
        let (module, old_module, at) = (n.module, o.module, n.at.clone());
        Some(Planned { key: key.clone(), at, module, old_module, old, new, args, old_args, transformers, enclosing })
    }

    /// The transformer functions of a module of the newer revision; one that cannot be read is
    /// refused where it is.
    fn transformers_of(&mut self, id: ModuleId) -> Vec<TransformerFn> {
        if let Some(known) = self.transformers.get(&id) {
            return known.clone();
        }
        let (found, errors) = self.read_transformers(id);
        self.report.refusals.extend(errors);
        self.transformers.insert(id, found.clone());
        found
    }

    /// The transformer functions of a module of the newer revision, and the refusals of those
    /// that cannot be read.
    fn read_transformers(&self, id: ModuleId) -> (Vec<TransformerFn>, Vec<Refusal>) {
        let module = self.new.tree.module(id);
        let file = module.file.display().to_string();
        let old_module = self.old.tree.units[id.unit].modules.iter().find(|m| m.path == module.path);
        let (mut found, mut errors) = (Vec::new(), Vec::new());
        for item in &module.items {
            let Item::Fn(f) = item else { continue };
            match dsu_syntax::fn_transformer(&f.attrs) {
                Ok(Some(transformer)) => {
                    let tokens = behaviour_tokens(f);
                    let before = old_module.and_then(|m| transformer_tokens(m, &f.sig.ident));
                    found.push(TransformerFn {
                        cfg: transformer.cfg_value(&f.sig.ident),
                        at: ItemRef {
                            path: dsu_syntax::stable_path(&module.path, FnOwner::Free, &f.sig.ident),
                            file: file.clone(),
                            line: f.span().start().line,
                        },
                        transformer,
                        fresh: before.as_ref() != Some(&tokens),
                    })
                }
                Ok(None) => {}
                Err(e) => errors.push(Refusal {
                    file: file.clone(),
                    line: e.span().start().line,
                    reason: format!("cannot read the #[dsu::transform] of `{}`: {e}", f.sig.ident),
                }),
            }
        }
        (found, errors)
    }

    /// Reports the transformer functions the patch compiles, and refuses a transformer that
    /// would compile with one of them without being chosen: the cfg value names a transformer by
    /// its old type's name and its own (the macro sees nothing more), and the patch build sets it
    /// for every crate of the set, so one of the same value in another module or crate would be
    /// compiled too.
    fn compile_selected(&mut self) {
        let chosen: BTreeSet<(String, usize)> =
            self.selected.iter().map(|t| (t.at.file.clone(), t.at.line)).collect();
        let mut refusals = Vec::new();
        for (id, _) in self.new.tree.modules() {
            for other in self.read_transformers(id).0 {
                if chosen.contains(&(other.at.file.clone(), other.at.line)) {
                    continue;
                }
                if let Some(t) = self.selected.iter().find(|t| t.cfg == other.cfg) {
                    refusals.push(refusal(
                        &other.at,
                        format!(
                            "transformer `{}` would be compiled into this patch with `{}` ({}:{}), \
                             which the patch needs: both move `{}` and are named `{}`, and a patch \
                             compiles a transformer by those two names \
                             (`--cfg {}=\"{}\"`). Rename one of them",
                            other.at.path,
                            t.at.path,
                            t.at.file,
                            t.at.line,
                            other.transformer.old_name().map(ToString::to_string).unwrap_or_default(),
                            other.at.path.rsplit("::").next().unwrap_or_default(),
                            dsu_abi::TRANSFORMER_CFG,
                            t.cfg,
                        ),
                    ));
                }
            }
        }
        refusals.dedup();
        self.report.refusals.extend(refusals);
        for t in std::mem::take(&mut self.selected) {
            if !self.report.transformers.contains(&t.at) {
                self.report.transformers.push(t.at.clone());
            }
            self.report.transformer_cfgs.push(t.cfg);
        }
    }

    /// How code of module `at` (of the newer revision) names old definitions, for types
    /// written in module `written_in` of the older revision.
    fn old_namer<'s>(
        &'s mut self,
        written_in: ModuleId,
        at: ModuleId,
        inside_dsu_old: bool,
        ok: &'s BTreeSet<ItemKey>,
    ) -> ToOld<'s> {
        let module_path = &self.new.tree.module(at).path;
        ToOld {
            resolver: &self.old_resolver,
            written_in,
            changed: ok,
            site: Site { unit: at.unit, module_path, inside_dsu_old },
            crate_names: &self.crate_names,
            aliases: &mut self.aliases,
        }
    }

    fn write_old_definition(&mut self, t: &Planned<'a>, ok: &BTreeSet<ItemKey>) {
        let text = generate::old_definition(t.old, &mut self.old_namer(t.old_module, t.module, true, ok));
        let uses = generate::old_imports(&self.old.tree.module(t.old_module).items, &text);
        let code = self.gen.code(t.module);
        code.old_defs.push_str(&text);
        code.old_idents.insert(t.key.ident().to_string());
        code.old_uses.extend(uses);
    }

    /// Decides which types of `planned` have an inverse transformer, derives the asked-for ones
    /// (adding their code), and returns the reversible types. A type is reversible with a `to`
    /// function; or with a derived inverse, when its change is trivial and every other changed
    /// type its kept fields mention is reversible too (the derived code transforms those fields
    /// back). A derived inverse that was asked for and cannot be made is refused: the author meant
    /// the patch to be reversible. No inverse at all is fine: the patch is then not reversible.
    fn plan_inverses(&mut self, planned: &[Planned<'a>], ok: &BTreeSet<ItemKey>) -> BTreeSet<ItemKey> {
        let mut reversible = BTreeSet::new();
        let mut derived: Vec<DerivedInverse<'_, 'a>> = Vec::new();
        for t in planned {
            let choice =
                choose(&t.transformers, &t.args, &t.old_args, t.key.ident(), Direction::Inverse, &t.at);
            let choice = match choice {
                Ok(c) => c,
                Err(spanning) => {
                    let r = spanning_refusal(&t.at, &t.key.path, "inverse transformers", spanning);
                    self.report.refusals.push(r);
                    continue;
                }
            };
            // An enclosing type is reversible, with no attribute, when what it holds is.
            let implicit = t.enclosing && matches!(choice, Choice::None);
            if let Choice::Function(f) = choice {
                reversible.insert(t.key.clone());
                self.selected.push(f);
            } else if implicit || matches!(choice, Choice::Derived) {
                match generate::derive_inverse(
                    &t.key,
                    t.old,
                    t.new,
                    &mut self.old_namer(t.old_module, t.module, false, ok),
                ) {
                    Ok(inverse) => {
                        reversible.insert(t.key.clone());
                        derived.push(DerivedInverse { of: t, inverse });
                    }
                    Err(_) if implicit => {}
                    Err(reason) => {
                        self.report.refusals.push(refusal(&t.at, format!("type `{}`: {reason}", t.key.path)))
                    }
                }
            }
        }
        // Drop derived inverses that need one that is missing, until none does.
        while let Some(i) =
            derived.iter().position(|d| d.inverse.needs.iter().any(|n| !reversible.contains(n)))
        {
            let d = derived.remove(i);
            reversible.remove(&d.of.key);
            if d.of.enclosing && !d.of.args.iter().any(|a| a.derives(Direction::Inverse)) {
                // Nobody asked for it: the patch is only not reversible.
                continue;
            }
            let lacking: Vec<&str> =
                d.inverse.needs.iter().filter(|n| !reversible.contains(*n)).map(ItemKey::ident).collect();
            let reason = format!(
                "type `{}`: its derived inverse (`to = dsu_old::{}, default`) transforms fields of \
                 type `{}` back, which changes too and has no inverse transformer; add \
                 `#[dsu::transform(to = dsu_old::{})]` for it",
                d.of.key.path,
                d.of.key.ident(),
                lacking.join("`, `"),
                lacking[0],
            );
            self.report.refusals.push(refusal(&d.of.at, reason));
        }
        for d in &derived {
            self.gen.code(d.of.module).impls.push_str(&d.inverse.code);
        }
        for t in planned.iter().filter(|t| reversible.contains(&t.key)) {
            self.report.types_reversible.push(t.at.clone());
        }
        reversible
    }

    /// Transforms every state cell of the newer revision whose type mentions a changed type of
    /// `ok`; returns the names of their statics.
    fn plan_cells(&mut self, ok: &BTreeSet<ItemKey>, reversible: &BTreeSet<ItemKey>) -> Vec<String> {
        let new_rev = self.new;
        let mut cells = Vec::new();
        for (id, module) in new_rev.tree.modules() {
            for item in &module.items {
                let Item::Static(s) = item else { continue };
                let Some(cell) = dsu_syntax::state_cell(s) else { continue };
                let mentioned = generate::mentioned(&self.new_resolver, id, cell.value_type, ok);
                if !mentioned.is_empty() && self.plan_cell(id, s, cell, &mentioned, reversible, ok) {
                    cells.push(s.ident.to_string());
                }
            }
        }
        cells
    }

    /// Writes the transforms of the cell `s` of module `id`, whose type mentions the changed
    /// types `mentioned`: old cell type to new, and back when each of them is reversible.
    /// Returns whether its values change type (it existed in the older revision).
    fn plan_cell(
        &mut self,
        id: ModuleId,
        s: &syn::ItemStatic,
        cell: StateCell<'_>,
        mentioned: &BTreeSet<ItemKey>,
        reversible: &BTreeSet<ItemKey>,
        ok: &BTreeSet<ItemKey>,
    ) -> bool {
        let (old_rev, new_rev) = (self.old, self.new);
        let module = new_rev.tree.module(id);
        let key = ItemKey { unit: id.unit, path: format!("{}::{}", module.path, s.ident) };
        let Some(old_entry) = old_rev.items.find(&key).filter(|e| e.kind == Kind::Static) else {
            return false;
        };
        let old_cell = old_rev.tree.module(old_entry.module).items.iter().find_map(|i| match i {
            Item::Static(o) if o.ident == s.ident => dsu_syntax::state_cell(o),
            _ => None,
        });
        let Some(old_cell) = old_cell else { return false };
        let file = module.file.display().to_string();
        let Some(name) = cell.name.map(syn::LitStr::value) else {
            let reason = format!(
                "state cell `{}` changes type, but its name is not a string literal in \
                 `dsu::State::new(\"name\", …)`",
                s.ident
            );
            self.report.refusals.push(Refusal { file, line: s.span().start().line, reason });
            return false;
        };
        let mut old_ty = old_cell.value_type.clone();
        self.old_namer(old_entry.module, id, false, ok).visit_type_mut(&mut old_ty);
        let (old_text, new_text) = (old_ty.to_token_stream(), cell.value_type.to_token_stream());
        let code = &mut self.gen.code(id).cells;
        generate::write_cell_transform(
            code,
            dsu_abi::CELL_TRANSFORM_PREFIX,
            "CELL",
            &s.ident,
            &name,
            &old_text,
            &new_text,
        );
        let at =
            ItemRef { path: format!("{} (cell \"{name}\")", key.path), file, line: s.span().start().line };
        // The inverse, new cell type to old, when `OldCellType: Transform<NewCellType>` holds:
        // every changed type the cell's type mentions has an inverse transformer (unchanged
        // types are the same types on both sides and transform to themselves).
        if mentioned.iter().all(|t| reversible.contains(t)) {
            generate::write_cell_transform(
                code,
                dsu_abi::CELL_INVERSE_PREFIX,
                "UNCELL",
                &s.ident,
                &name,
                &new_text,
                &old_text,
            );
            self.report.cells_reversible.push(at.clone());
        }
        self.report.cells_transformed.push(at);
        true
    }

    /// Code that would meet the new layout without being replaced: routes updateable functions
    /// whose signature mentions a changed type, refuses the rest.
    fn route_functions(&mut self, ok: &BTreeSet<ItemKey>, cells: &[String]) {
        let types: Vec<&str> = ok.iter().map(ItemKey::ident).collect();
        for (key, n) in self.new.items.iter().filter(|(_, e)| e.kind.is_fn()) {
            let path = &key.path;
            if n.kind == Kind::UpdateableFn {
                let Some(t) = types.iter().find(|t| mentions(&n.head, t)) else { continue };
                let Some(o) = self.old.items.find(key).filter(|o| o.kind.is_fn()) else { continue };
                match cells.iter().find(|c| mentions(&o.whole, c)) {
                    Some(cell) => self.report.refusals.push(refusal(
                        &o.at,
                        format!(
                            "cannot route `{path}`: its signature mentions `{t}`, whose layout \
                             changes, so callers in the running program keep its old version, and \
                             that version reads `{cell}`, whose values change type. Stop reading \
                             `{cell}` in functions whose signature mentions `{t}`"
                        ),
                    )),
                    None => self.report.functions_routed.push(n.at.clone()),
                }
            } else if let Some(t) =
                types.iter().copied().chain(cells.iter().map(String::as_str)).find(|t| mentions(&n.whole, t))
            {
                self.report.refusals.push(refusal(
                    &n.at,
                    format!(
                        "`{path}` uses `{t}`, whose layout changes, but is not #[dsu::updateable]: \
                         the running program's copy would meet the new layout. Make it updateable"
                    ),
                ));
            }
        }
    }
}
