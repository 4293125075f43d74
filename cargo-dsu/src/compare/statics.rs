//! The statics of the updateable set, and how the program and its patches share them.
//!
//! A patch is the set's crates compiled again, so each of their statics would get a second, fresh
//! copy inside it: a counter a patched function increments would count from zero in its own copy,
//! a `LazyLock` registry would initialise (and register itself) a second time. So every static
//! lives once, in the program:
//!
//! * the program's build ([`host_plan`], applied by the wrapper to a shadow copy of the source)
//!   exports each static of the set under a stable symbol, `__dsu_static_<path>`, with a layout
//!   record beside it (`__dsu_layout_<path>`: size, alignment and structural fingerprint of the
//!   type);
//! * a patch ([`patch_plan`]) replaces the definition of every static the program exports by a
//!   declaration of the program's, `unsafe extern "Rust" { #[link_name = "__dsu_static_<path>"]
//!   safe static NAME: T; }`, which the dynamic loader binds to the program's instance when the
//!   patch is mapped, and asserts at compile time that its type has the recorded layout.
//!
//! What counts, by kind: `static` and `static mut` items (in modules and in function bodies),
//! each entry of a `thread_local!` (the program exports a copy of its `LocalKey`, whose accessor
//! reaches the program's thread-local) and of a `lazy_static!` (the program exports a function
//! returning the value; the patch declares a `Deref` type named as the static, as `lazy_static!`
//! itself does). `OnceLock`, `LazyLock` and `once_cell` statics are plain statics. Not shared:
//! `dsu::State` cells (the runtime holds their values, found by name) and statics of a type that
//! cannot hold state (numbers, `bool`, `char`, `&str`, and slices, arrays, tuples and shared
//! references of those), which a patch may give a new value as it would a `const`.
//!
//! A static written inside another macro's input (a crate's own `macro_rules!`, `tracing`'s
//! callsites) is not seen: such statics stay per copy, and the patch build names each one it
//! finds in the built patch's symbol table ([`unseen_in`]). The symbols of a static in a function body
//! name the function (`app::handle::HITS`); two statics of one name in one function are told
//! apart by their order (`#2`).

use super::tree::{byte_offset, ModuleId, Tree};
use super::{CrateUnit, ItemRef, Refusal, Report};
use anyhow::{Context, Result};
use dsu_syntax::FnOwner;
use quote::ToTokens;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Attribute, Item, Token};

/// What kind of static an item declares, as far as sharing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `static NAME: T = …;`
    Plain,
    /// `static mut NAME: T = …;`
    Mut,
    /// An entry of `thread_local!`.
    ThreadLocal,
    /// An entry of `lazy_static!`.
    LazyStatic,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::Plain => "a `static`",
            Kind::Mut => "a `static mut`",
            Kind::ThreadLocal => "a `thread_local!`",
            Kind::LazyStatic => "a `lazy_static!`",
        }
    }
}

/// Why a static is not shared with the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotShared {
    /// A `dsu::State` cell: its value lives in the runtime, found by name.
    StateCell,
    /// Its type holds no state; a patch may give it a new value.
    Constant,
}

/// One static of the set, where one revision of its source has it.
#[derive(Debug, Clone)]
pub struct Found {
    pub unit: usize,
    pub module: ModuleId,
    pub kind: Kind,
    /// Its stable path: the module path, the function it is declared in if any, its name.
    pub path: String,
    /// The symbol the program exports it under: `__dsu_static_<path>`, or the name it is already
    /// given (`#[no_mangle]`, `#[export_name]`).
    pub symbol: String,
    /// Whether [`Found::symbol`] is a name the source gives it.
    pub own_symbol: bool,
    pub ident: syn::Ident,
    pub vis: syn::Visibility,
    /// The type as written (for a `thread_local!` or `lazy_static!` entry, the value's type).
    pub ty: syn::Type,
    /// [`Found::ty`] as token text: what two revisions compare.
    pub type_text: String,
    /// The initial value's token text.
    pub init_text: String,
    /// Its outer attributes (an entry's; a macro's own attributes are in `outer_cfgs`).
    pub attrs: Vec<Attribute>,
    /// The `#[cfg]`s of the macro invocation holding the entry.
    pub outer_cfgs: Vec<Attribute>,
    pub not_shared: Option<NotShared>,
    /// Relative to the checkout root.
    pub file: PathBuf,
    pub line: usize,
    /// Bytes of the item (of the whole macro invocation, for an entry).
    pub range: (usize, usize),
    /// Where an attribute of the item goes: before its visibility or `static` (items only).
    pub attr_at: usize,
    /// For an entry: the index of its macro invocation among [`Statics::groups`].
    pub group: Option<usize>,
}

impl Found {
    pub fn shared_kind(&self) -> bool {
        self.not_shared.is_none()
    }

    fn item_ref(&self) -> ItemRef {
        ItemRef { path: self.path.clone(), file: self.file.display().to_string(), line: self.line }
    }

    fn cfgs(&self) -> String {
        self.outer_cfgs
            .iter()
            .chain(self.attrs.iter().filter(|a| a.path().is_ident("cfg")))
            .map(|a| format!("{} ", a.to_token_stream()))
            .collect()
    }

    /// The type with every elided lifetime made `'static` (an `extern` static or a function's
    /// return type has no elision default).
    fn static_type(&self) -> String {
        let mut ty = self.ty.clone();
        StaticLifetimes.visit_type_mut(&mut ty);
        ty.to_token_stream().to_string()
    }

    fn layout_symbol(&self) -> String {
        format!("{}{}", dsu_abi::STATIC_LAYOUT_PREFIX, dsu_abi::symbol_safe(&self.path))
    }
}

/// A `thread_local!` or `lazy_static!` invocation holding entries.
#[derive(Debug, Clone)]
pub struct Group {
    /// The macro's path as written (`thread_local`, `std::thread_local`, `lazy_static`).
    pub path: syn::Path,
    /// Each entry's tokens, in order.
    pub entries: Vec<proc_macro2::TokenStream>,
    /// Its non-`cfg` outer attributes.
    pub attrs: Vec<Attribute>,
}

/// The statics of one revision of the set.
#[derive(Debug, Clone, Default)]
pub struct Statics {
    pub found: Vec<Found>,
    pub groups: Vec<Group>,
}

impl Statics {
    /// The statics of every crate of `tree` (read from `root` under each unit's configuration).
    pub fn find(tree: &Tree, units: &[CrateUnit], root: &Path) -> Result<Statics> {
        let mut statics = Statics::default();
        let mut texts: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (id, module) in tree.modules() {
            if module.items.is_empty() {
                continue;
            }
            if !texts.contains_key(&module.file) {
                let path = root.join(&module.file);
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                texts.insert(module.file.clone(), text);
            }
            let mut walk = Walk {
                id,
                file: &module.file,
                text: &texts[&module.file],
                cfg: units[id.unit].cfg.as_ref(),
                scope: module.path.clone(),
                statics: &mut statics,
            };
            for item in &module.items {
                walk.item(item);
            }
        }
        // Two statics of one name in one function: told apart by their order.
        let mut seen: BTreeMap<(usize, String), usize> = BTreeMap::new();
        for f in &mut statics.found {
            let n = seen.entry((f.unit, f.path.clone())).or_insert(0);
            *n += 1;
            if *n > 1 {
                f.path = format!("{}#{n}", f.path);
                if !f.own_symbol {
                    f.symbol = static_symbol(&f.path);
                }
            }
        }
        Ok(statics)
    }
}

fn static_symbol(path: &str) -> String {
    format!("{}{}", dsu_abi::STATIC_PREFIX, dsu_abi::symbol_safe(path))
}

/// Walks the items of one module, and the bodies of its functions, for statics.
struct Walk<'a> {
    id: ModuleId,
    file: &'a Path,
    text: &'a str,
    cfg: Option<&'a dsu_syntax::CfgSet>,
    /// The path of what is being walked: the module, or a function in it.
    scope: String,
    statics: &'a mut Statics,
}

impl Walk<'_> {
    fn active(&self, attrs: &[Attribute]) -> bool {
        self.cfg.is_none_or(|c| c.is_active(attrs))
    }

    fn offset(&self, at: proc_macro2::LineColumn) -> usize {
        byte_offset(self.text, at)
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Static(s) if self.active(&s.attrs) => self.plain(s),
            Item::Macro(m) if self.active(&m.attrs) => {
                self.invocation(&m.mac, &m.attrs, m.span());
            }
            Item::Fn(f) if self.active(&f.attrs) => {
                let scope = dsu_syntax::stable_path(&self.scope, FnOwner::Free, &f.sig.ident);
                self.body(scope, &f.block);
            }
            Item::Impl(i) if self.active(&i.attrs) => {
                let owner = FnOwner::of_impl(i);
                for ii in &i.items {
                    if let syn::ImplItem::Fn(m) = ii {
                        if self.active(&m.attrs) {
                            let scope = dsu_syntax::stable_path(&self.scope, owner, &m.sig.ident);
                            self.body(scope, &m.block);
                        }
                    }
                }
            }
            Item::Trait(t) if self.active(&t.attrs) => {
                for ti in &t.items {
                    if let syn::TraitItem::Fn(m) = ti {
                        if let Some(block) = &m.default {
                            let scope = format!("{}::{}::{}", self.scope, t.ident, m.sig.ident);
                            self.body(scope, block);
                        }
                    }
                }
            }
            Item::Const(c) if self.active(&c.attrs) => {
                let scope = format!("{}::{}", self.scope, c.ident);
                let outer = std::mem::replace(&mut self.scope, scope);
                BodyVisitor { walk: self }.visit_expr(&c.expr);
                self.scope = outer;
            }
            // Inline modules are modules of the tree, walked on their own.
            _ => {}
        }
    }

    fn body(&mut self, scope: String, block: &syn::Block) {
        let outer = std::mem::replace(&mut self.scope, scope);
        BodyVisitor { walk: self }.visit_block(block);
        self.scope = outer;
    }

    fn plain(&mut self, s: &syn::ItemStatic) {
        let (symbol, own_symbol) = match own_symbol(&s.attrs, &s.ident) {
            Some(name) => (name, true),
            None => (static_symbol(&format!("{}::{}", self.scope, s.ident)), false),
        };
        let not_shared = if dsu_syntax::state_cell(s).is_some() {
            Some(NotShared::StateCell)
        } else if matches!(s.mutability, syn::StaticMutability::None) && is_constant(&s.ty) {
            Some(NotShared::Constant)
        } else {
            None
        };
        let start = s.span().start();
        let attr_at = match &s.vis {
            syn::Visibility::Inherited => s.static_token.span.start(),
            vis => vis.span().start(),
        };
        self.statics.found.push(Found {
            unit: self.id.unit,
            module: self.id,
            kind: if matches!(s.mutability, syn::StaticMutability::Mut(_)) { Kind::Mut } else { Kind::Plain },
            path: format!("{}::{}", self.scope, s.ident),
            symbol,
            own_symbol,
            ident: s.ident.clone(),
            vis: s.vis.clone(),
            ty: (*s.ty).clone(),
            type_text: s.ty.to_token_stream().to_string(),
            init_text: s.expr.to_token_stream().to_string(),
            attrs: s.attrs.clone(),
            outer_cfgs: Vec::new(),
            not_shared,
            file: self.file.to_path_buf(),
            line: s.static_token.span.start().line,
            range: (self.offset(start), self.offset(s.semi_token.span.end())),
            attr_at: self.offset(attr_at),
            group: None,
        });
    }

    /// The entries of a `thread_local!` or `lazy_static!` invocation (`span` covers it, its
    /// attributes and its `;`); other macros are not read.
    fn invocation(&mut self, mac: &syn::Macro, attrs: &[Attribute], span: proc_macro2::Span) {
        let Some(last) = mac.path.segments.last() else { return };
        let kind = match last.ident.to_string().as_str() {
            "thread_local" => Kind::ThreadLocal,
            "lazy_static" => Kind::LazyStatic,
            _ => return,
        };
        let Ok(Entries(entries)) = syn::parse2::<Entries>(mac.tokens.clone()) else { return };
        let group = self.statics.groups.len();
        self.statics.groups.push(Group {
            path: mac.path.clone(),
            entries: entries.iter().map(|e| e.tokens.clone()).collect(),
            attrs: attrs.iter().filter(|a| !a.path().is_ident("cfg")).cloned().collect(),
        });
        let outer_cfgs: Vec<Attribute> = attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned().collect();
        let range = (self.offset(span.start()), self.offset(span.end()));
        for e in entries {
            if (kind == Kind::LazyStatic) != e.is_ref || !self.active(&e.attrs) {
                continue;
            }
            let path = format!("{}::{}", self.scope, e.ident);
            self.statics.found.push(Found {
                unit: self.id.unit,
                module: self.id,
                kind,
                symbol: static_symbol(&path),
                path,
                own_symbol: false,
                ident: e.ident.clone(),
                vis: e.vis.clone(),
                type_text: e.ty.to_token_stream().to_string(),
                ty: e.ty,
                init_text: e.init.to_string(),
                attrs: e.attrs,
                outer_cfgs: outer_cfgs.clone(),
                not_shared: None,
                file: self.file.to_path_buf(),
                line: e.line,
                range,
                attr_at: range.0,
                group: Some(group),
            });
        }
    }
}

/// Visits a function body for the statics declared in it, and the functions nested in it.
struct BodyVisitor<'w, 'a> {
    walk: &'w mut Walk<'a>,
}

impl<'ast> Visit<'ast> for BodyVisitor<'_, '_> {
    fn visit_item(&mut self, item: &'ast Item) {
        self.walk.item(item);
    }

    fn visit_stmt_macro(&mut self, m: &'ast syn::StmtMacro) {
        if self.walk.active(&m.attrs) {
            self.walk.invocation(&m.mac, &m.attrs, m.span());
        }
    }
}

/// The name `#[no_mangle]` or `#[export_name = "…"]` (either in `unsafe(…)`) gives an item.
pub(crate) fn own_symbol(attrs: &[Attribute], ident: &syn::Ident) -> Option<String> {
    for attr in attrs {
        let meta = if attr.path().is_ident("unsafe") {
            match attr.parse_args::<syn::Meta>() {
                Ok(m) => m,
                Err(_) => continue,
            }
        } else {
            attr.meta.clone()
        };
        match &meta {
            syn::Meta::Path(p) if p.is_ident("no_mangle") => return Some(ident.to_string()),
            syn::Meta::NameValue(nv) if nv.path.is_ident("export_name") => {
                if let syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) = &nv.value {
                    return Some(s.value());
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether a value of type `ty` cannot hold state: numbers, `bool`, `char`, `str`, and shared
/// references, slices, arrays and tuples of those. Syntax decides, so a path naming any other
/// type (which might hold a `Cell` or an atomic) counts as state.
pub fn is_constant(ty: &syn::Type) -> bool {
    const LEAVES: &[&str] = &[
        "bool", "char", "str", "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128",
        "isize", "f32", "f64",
    ];
    match ty {
        syn::Type::Path(p) if p.qself.is_none() => {
            p.path.get_ident().is_some_and(|i| LEAVES.contains(&i.to_string().as_str()))
        }
        syn::Type::Reference(r) => r.mutability.is_none() && is_constant(&r.elem),
        syn::Type::Slice(s) => is_constant(&s.elem),
        syn::Type::Array(a) => is_constant(&a.elem),
        syn::Type::Tuple(t) => t.elems.iter().all(is_constant),
        syn::Type::Paren(p) => is_constant(&p.elem),
        syn::Type::Group(g) => is_constant(&g.elem),
        _ => false,
    }
}

/// Makes every elided or anonymous lifetime of a type `'static`.
struct StaticLifetimes;

impl VisitMut for StaticLifetimes {
    fn visit_type_reference_mut(&mut self, r: &mut syn::TypeReference) {
        if r.lifetime.is_none() {
            r.lifetime = Some(syn::Lifetime::new("'static", r.and_token.span));
        }
        syn::visit_mut::visit_type_reference_mut(self, r);
    }

    fn visit_lifetime_mut(&mut self, l: &mut syn::Lifetime) {
        if l.ident == "_" {
            *l = syn::Lifetime::new("'static", l.apostrophe);
        }
    }
}

/// One entry of `thread_local!` (`static NAME: T = init;`) or `lazy_static!` (`static ref NAME:
/// T = init;`).
struct Entry {
    attrs: Vec<Attribute>,
    vis: syn::Visibility,
    is_ref: bool,
    ident: syn::Ident,
    ty: syn::Type,
    init: proc_macro2::TokenStream,
    tokens: proc_macro2::TokenStream,
    line: usize,
}

struct Entries(Vec<Entry>);

impl Parse for Entries {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let mut entries = Vec::new();
        while !input.is_empty() {
            let fork = input.fork();
            let attrs = fork.call(Attribute::parse_outer)?;
            let vis: syn::Visibility = fork.parse()?;
            let static_token: Token![static] = fork.parse()?;
            let is_ref = fork.peek(Token![ref]);
            if is_ref {
                fork.parse::<Token![ref]>()?;
            }
            let ident: syn::Ident = fork.parse()?;
            fork.parse::<Token![:]>()?;
            let ty: syn::Type = fork.parse()?;
            fork.parse::<Token![=]>()?;
            // `const { … }` or an expression, up to the `;` that ends the entry.
            let mut init = proc_macro2::TokenStream::new();
            while !fork.is_empty() && !fork.peek(Token![;]) {
                let tt: proc_macro2::TokenTree = fork.parse()?;
                init.extend([tt]);
            }
            if fork.peek(Token![;]) {
                fork.parse::<Token![;]>()?;
            }
            // The entry's own tokens, as written, for a macro that keeps it.
            let mut tokens = proc_macro2::TokenStream::new();
            while input.cursor() != fork.cursor() {
                let tt: proc_macro2::TokenTree = input.parse()?;
                tokens.extend([tt]);
            }
            let line = static_token.span.start().line;
            entries.push(Entry { attrs, vis, is_ref, ident, ty, init, tokens, line });
        }
        Ok(Entries(entries))
    }
}

/// Text to put into a file of a revision: `text` replaces bytes `start..end` (an insertion when
/// they are equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// Relative to the checkout root.
    pub file: PathBuf,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

impl Edit {
    pub fn insert(file: &Path, at: usize, text: String) -> Edit {
        Edit { file: file.to_path_buf(), start: at, end: at, text }
    }
}

/// `text` with `edits` (all of one file) made, from the last to the first so earlier offsets
/// stay valid. Insertions at one place keep their order and go before a replacement starting
/// there; replacements must not overlap.
pub fn apply_edits(text: &str, edits: &[&Edit]) -> Result<String> {
    let mut edits: Vec<&Edit> = edits.to_vec();
    // Stable: among insertions at one offset, the list's order.
    edits.sort_by_key(|e| (e.start, e.end != e.start));
    let mut out = text.to_string();
    let mut limit = text.len();
    for e in edits.iter().rev() {
        anyhow::ensure!(
            e.start <= e.end && e.end <= limit && out.is_char_boundary(e.start) && out.is_char_boundary(e.end),
            "edit of bytes {}..{} of {} overlaps another or is not at a character boundary",
            e.start,
            e.end,
            e.file.display()
        );
        out.replace_range(e.start..e.end, &e.text);
        limit = e.start;
    }
    Ok(out)
}

/// A static as the program's build exports it. The build record keeps them, so a patch knows
/// which statics the program has and the types they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatic {
    pub path: String,
    pub symbol: String,
    pub kind: Kind,
    /// The type's token text.
    #[serde(rename = "type")]
    pub type_text: String,
    /// Why the build could not export it; `None` when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_exported: Option<String>,
}

/// What the program's build does to one crate: the statics it exports, and the code that
/// exports them, to be put into a copy of the crate's source.
#[derive(Debug, Clone, Default)]
pub struct HostPlan {
    pub statics: Vec<HostStatic>,
    pub edits: Vec<Edit>,
}

/// Facts about how a crate is compiled that decide what can be generated into it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CrateFlags {
    /// It depends on dsu (fingerprints in layout records).
    pub has_dsu: bool,
    /// Its build forbids `unsafe_code` (`#![forbid(unsafe_code)]`, `-F unsafe_code`): neither
    /// `#[unsafe(export_name)]` nor an `unsafe extern` block can be written into it.
    pub forbids_unsafe: bool,
}

impl CrateFlags {
    /// The flags of a crate compiled with `args` from the root file `root`.
    pub fn of(args: &[String], root: &Path) -> CrateFlags {
        let has_dsu = args.windows(2).any(|w| w[0] == "--extern" && w[1].starts_with("dsu="))
            || args.iter().any(|a| a.starts_with("--extern=dsu="));
        let forbids_flag = crate::wrapper::flag_values(args, "-F")
            .chain(crate::wrapper::flag_values(args, "--forbid"))
            .any(|v| v.split(',').any(|l| l.trim() == "unsafe_code"));
        CrateFlags { has_dsu, forbids_unsafe: forbids_flag || root_forbids_unsafe(root) }
    }
}

/// Whether the crate root at `root` says `#![forbid(unsafe_code)]`.
fn root_forbids_unsafe(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(root) else { return false };
    let Ok(file) = syn::parse_file(&text) else { return false };
    file.attrs.iter().filter(|a| a.path().is_ident("forbid")).any(|a| {
        a.parse_args_with(syn::punctuated::Punctuated::<syn::Path, Token![,]>::parse_terminated)
            .is_ok_and(|lints| lints.iter().any(|l| l.is_ident("unsafe_code")))
    })
}

const FORBIDS: &str = "its crate forbids `unsafe_code`, and exporting a static takes \
                       `#[unsafe(export_name)]`; `#![deny(unsafe_code)]` instead of `forbid` lets \
                       dsu allow it on the exports alone";

/// The statics the program's build of the crate `unit` (under `root`) exports, and the code that
/// exports them: an `export_name` on each `static`, an exported copy of each `thread_local!`'s
/// `LocalKey`, an exported accessor of each `lazy_static!`, and a layout record of each. Every
/// insertion stays on the line of the item it follows or precedes, so line numbers (in panics,
/// debug info and diagnostics) stay the user's.
pub fn host_plan(unit: &CrateUnit, root: &Path, flags: CrateFlags) -> Result<HostPlan> {
    let units = std::slice::from_ref(unit);
    let tree = Tree::read(units, root)?;
    let statics = Statics::find(&tree, units, root)?;
    let mut plan = HostPlan::default();
    for f in statics.found.iter().filter(|f| f.shared_kind()) {
        plan.statics.push(HostStatic {
            path: f.path.clone(),
            symbol: f.symbol.clone(),
            kind: f.kind,
            type_text: f.type_text.clone(),
            not_exported: flags.forbids_unsafe.then(|| FORBIDS.to_string()),
        });
        if flags.forbids_unsafe {
            continue;
        }
        let (cfgs, ident, ty) = (f.cfgs(), &f.ident, f.static_type());
        let after = match f.kind {
            Kind::Plain | Kind::Mut if f.own_symbol => String::new(),
            Kind::Plain | Kind::Mut => {
                let attr = format!("#[unsafe(export_name = {:?})] #[allow(unsafe_code)] ", f.symbol);
                plan.edits.push(Edit::insert(&f.file, f.attr_at, attr));
                String::new()
            }
            Kind::ThreadLocal => format!(
                " {cfgs}#[unsafe(export_name = {sym:?})] #[allow(unsafe_code, non_upper_case_globals)] \
                 static __DSU_SHARED_{ident}: ::std::thread::LocalKey<{ty}> = {ident};",
                sym = f.symbol
            ),
            Kind::LazyStatic => format!(
                " {cfgs}#[unsafe(export_name = {sym:?})] #[allow(unsafe_code, non_snake_case)] \
                 fn __dsu_shared_{ident}() -> &'static {ty} {{ &*{ident} }}",
                sym = f.symbol
            ),
        };
        let layout = format!(
            " {cfgs}#[unsafe(export_name = {sym:?})] #[allow(unsafe_code, non_upper_case_globals)] \
             static __DSU_LAYOUT_{ident}: [u64; 4] = {};",
            layout_expr(&ty, flags.has_dsu),
            sym = f.layout_symbol()
        );
        plan.edits.push(Edit::insert(&f.file, f.range.1, after + &layout));
    }
    Ok(plan)
}

/// A layout record's value: size, alignment, and the structural fingerprint of `ty` (zero when
/// it has none, or the crate has no dsu to compute it), as four `u64`.
fn layout_expr(ty: &str, has_dsu: bool) -> String {
    let size = format!("::core::mem::size_of::<{ty}>() as u64, ::core::mem::align_of::<{ty}>() as u64");
    if !has_dsu {
        return format!("[{size}, 0, 0]");
    }
    let half = |from: usize| {
        let bytes: Vec<String> = (from..from + 8).map(|i| format!("f[{i}]")).collect();
        format!("::core::primitive::u64::from_le_bytes([{}])", bytes.join(", "))
    };
    format!(
        "{{ #[allow(unused_imports)] use ::dsu::__private::ProbeFallback as _; \
         let f = ::dsu::__private::Probe::<{ty}>::FP.0; [{size}, {}, {}] }}",
        half(0),
        half(8)
    )
}

/// The layout record the program exports for a static (see [`host_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub size: u64,
    pub align: u64,
    /// Zero when the type has no structural fingerprint.
    pub fingerprint: [u64; 2],
}

impl Layout {
    /// From the record's 32 bytes (little-endian `u64`s).
    pub fn from_bytes(b: &[u8]) -> Option<Layout> {
        let word = |i: usize| Some(u64::from_le_bytes(b.get(i * 8..i * 8 + 8)?.try_into().ok()?));
        Some(Layout { size: word(0)?, align: word(1)?, fingerprint: [word(2)?, word(3)?] })
    }
}

/// The program a patch is built for, as far as its statics go.
pub struct Program<'a> {
    /// Per unit: the statics the program's build of that crate exports; `None` for a build made
    /// before statics were exported.
    pub statics: Vec<Option<&'a [HostStatic]>>,
    /// Per unit: why the build could not read its statics, when it could not.
    pub not_read: Vec<Option<String>>,
    /// The layout records the program's binary exports, by symbol.
    pub layouts: &'a BTreeMap<String, Layout>,
    /// The `__dsu_static_*` symbols (and the names statics already had) the binary exports.
    pub exported: &'a BTreeSet<String>,
    /// Per unit, how the patch compiles it.
    pub flags: Vec<CrateFlags>,
}

/// What a patch does with the statics of its newer source.
#[derive(Debug, Default)]
pub struct PatchPlan {
    /// The replacement of each static the program has by a declaration of the program's.
    pub edits: Vec<Edit>,
    /// Statics it cannot share: it must not be built.
    pub refusals: Vec<Refusal>,
    /// The paths of the statics it shares.
    pub shared: Vec<String>,
    /// The paths of every static of the newer source, shared or not.
    pub known: Vec<String>,
}

/// Which statics of the newer source (`units` under `root`) a patch shares with `program`, and
/// the code that does it. A static the program does not have is the patch's own (it was added).
pub fn patch_plan(units: &[CrateUnit], root: &Path, program: &Program<'_>) -> Result<PatchPlan> {
    let tree = Tree::read(units, root)?;
    let statics = Statics::find(&tree, units, root)?;
    let mut plan = PatchPlan { known: statics.found.iter().map(|f| f.path.clone()).collect(), ..PatchPlan::default() };
    let mut group_entries: BTreeMap<usize, Vec<(&Found, Option<String>)>> = BTreeMap::new();
    for f in &statics.found {
        let decl = if f.shared_kind() { shared_decl(f, program, &mut plan.refusals) } else { None };
        if decl.is_some() {
            plan.shared.push(f.path.clone());
        }
        match (f.group, decl) {
            (Some(g), decl) => group_entries.entry(g).or_default().push((f, decl)),
            (None, Some(text)) => {
                let text = text + &"\n".repeat(newlines_in(f, root)?);
                plan.edits.push(Edit { file: f.file.clone(), start: f.range.0, end: f.range.1, text });
            }
            (None, None) => {}
        }
    }
    for (g, entries) in group_entries {
        if entries.iter().all(|(_, d)| d.is_none()) {
            continue;
        }
        let group = &statics.groups[g];
        let first = entries[0].0;
        let kept: Vec<&proc_macro2::TokenStream> = group
            .entries
            .iter()
            .filter(|tokens| {
                // An entry the program does not share keeps its own definition.
                !entries.iter().any(|(f, d)| d.is_some() && entry_declares(tokens, &f.ident))
            })
            .collect();
        let mut text = String::new();
        if !kept.is_empty() {
            let cfgs: String = first.outer_cfgs.iter().map(|a| format!("{} ", a.to_token_stream())).collect();
            let attrs: String = group.attrs.iter().map(|a| format!("{} ", a.to_token_stream())).collect();
            let body: Vec<String> = kept.iter().map(|t| with_semicolon(t)).collect();
            let _ = write!(text, "{cfgs}{attrs}{}! {{ {} }} ", group.path.to_token_stream(), body.join(" "));
        }
        for (_, decl) in &entries {
            if let Some(d) = decl {
                text.push_str(d);
                text.push(' ');
            }
        }
        text.push_str(&"\n".repeat(newlines_in(first, root)?));
        plan.edits.push(Edit { file: first.file.clone(), start: first.range.0, end: first.range.1, text });
    }
    Ok(plan)
}

/// The number of line breaks in the bytes a static's item (or macro) covers: its replacement
/// ends with as many, so the lines after it keep their numbers.
fn newlines_in(f: &Found, root: &Path) -> Result<usize> {
    let path = root.join(&f.file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.get(f.range.0..f.range.1).map_or(0, |s| s.matches('\n').count()))
}

/// Whether an entry's tokens declare `ident`.
fn entry_declares(tokens: &proc_macro2::TokenStream, ident: &syn::Ident) -> bool {
    syn::parse2::<Entries>(tokens.clone()).is_ok_and(|Entries(e)| e.iter().any(|e| e.ident == *ident))
}

fn with_semicolon(tokens: &proc_macro2::TokenStream) -> String {
    let ends = matches!(tokens.clone().into_iter().last(), Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ';');
    format!("{tokens}{}", if ends { "" } else { ";" })
}

/// The declaration that makes the patch's code reach the program's instance of `f`, or `None`
/// when the program does not have it (the patch defines it) or cannot share it (refused).
fn shared_decl(f: &Found, program: &Program<'_>, refusals: &mut Vec<Refusal>) -> Option<String> {
    let mut refuse = |reason: String| {
        refusals.push(Refusal { file: f.file.display().to_string(), line: f.line, reason });
        None
    };
    let host = program.statics.get(f.unit).copied()?;
    let Some(host) = host else {
        let why = match program.not_read.get(f.unit).cloned().flatten() {
            Some(e) => format!("the program's build could not read the statics of its crate ({e})"),
            None => "the program was built by a cargo dsu that did not export statics".to_string(),
        };
        return refuse(format!(
            "static `{}`: {why}, so this patch would have a copy of its own; rebuild the program \
             with `cargo dsu build` and restart it",
            f.path
        ));
    };
    let h = host.iter().find(|h| h.symbol == f.symbol)?;
    if let Some(why) = &h.not_exported {
        return refuse(format!("static `{}` cannot be shared with the running program: {why}", f.path));
    }
    if h.kind != f.kind || h.type_text != f.type_text {
        return refuse(changed_type_reason(&f.path, h.kind, &h.type_text, f.kind, &f.type_text));
    }
    let flags = program.flags.get(f.unit).copied().unwrap_or_default();
    if flags.forbids_unsafe {
        return refuse(format!(
            "static `{}` cannot be shared with the running program: {FORBIDS} (the newer revision \
             forbids it)",
            f.path
        ));
    }
    if !program.exported.contains(&f.symbol) {
        return refuse(format!(
            "static `{}`: the program's binary does not export `{}`, so this patch cannot reach its \
             instance (is the crate linked into this binary?)",
            f.path, f.symbol
        ));
    }
    let Some(layout) = program.layouts.get(&f.layout_symbol()) else {
        return refuse(format!(
            "static `{}`: the program's binary has no layout record of it (`{}`), so this patch \
             cannot check the type it shares",
            f.path,
            f.layout_symbol()
        ));
    };
    Some(declaration(f, layout, flags.has_dsu))
}

/// Why a static whose type or kind changed is refused.
pub fn changed_type_reason(path: &str, old_kind: Kind, old: &str, new_kind: Kind, new: &str) -> String {
    let what = if old_kind != new_kind {
        format!("changed from {} to {}", old_kind.describe(), new_kind.describe())
    } else {
        format!("changed type (`{}` to `{}`)", tidy(old), tidy(new))
    };
    format!(
        "static `{path}` {what}: patched code shares the running program's instance, which keeps \
         the old type. Keep its type, add a static of another name, or keep the value in a \
         dsu::State cell (a cell's type may change with a transformer)"
    )
}

/// Token text as a person writes it.
fn tidy(text: &str) -> String {
    dsu_syntax::normalize_token_text(text)
}

/// The attributes of a static, other than its `#[cfg]`s, that its declaration keeps.
fn kept_attrs(attrs: &[Attribute]) -> String {
    const KEPT: &[&str] = &["doc", "allow", "warn", "deny", "expect", "deprecated"];
    attrs
        .iter()
        .filter(|a| KEPT.iter().any(|k| a.path().is_ident(k)))
        .map(|a| format!("{} ", a.to_token_stream()))
        .collect()
}

/// The declaration of the program's instance of `f`, and the compile-time checks that the type
/// the patch gives it has the program's layout.
fn declaration(f: &Found, layout: &Layout, has_dsu: bool) -> String {
    let (cfgs, attrs, ident, vis, ty) =
        (f.cfgs(), kept_attrs(&f.attrs), &f.ident, f.vis.to_token_stream(), f.static_type());
    // `#[cfg]`s on the block, the rest (docs, lint levels) on the item, where they apply.
    let item_attrs = format!("#[link_name = {:?}] {attrs}", f.symbol);
    let mut s = match f.kind {
        Kind::Plain => format!(
            "{cfgs}#[allow(unsafe_code)] unsafe extern \"Rust\" {{ {item_attrs}{vis} safe static {ident}: {ty}; }}"
        ),
        Kind::Mut => format!(
            "{cfgs}#[allow(unsafe_code)] unsafe extern \"Rust\" {{ {item_attrs}{vis} static mut {ident}: {ty}; }}"
        ),
        Kind::ThreadLocal => format!(
            "{cfgs}#[allow(unsafe_code)] unsafe extern \"Rust\" {{ {item_attrs}{vis} safe static {ident}: \
             ::std::thread::LocalKey<{ty}>; }}"
        ),
        Kind::LazyStatic => format!(
            "{cfgs}#[allow(unsafe_code)] unsafe extern \"Rust\" {{ #[link_name = {sym:?}] safe fn __dsu_shared_{ident}() -> &'static {ty}; }} \
             {cfgs}{attrs}#[allow(missing_copy_implementations, non_camel_case_types, dead_code)] \
             {vis} struct {ident} {{ __private_field: () }} \
             {cfgs}#[doc(hidden)] #[allow(non_upper_case_globals)] {vis} static {ident}: {ident} = \
             {ident} {{ __private_field: () }}; \
             {cfgs}impl ::core::ops::Deref for {ident} {{ type Target = {ty}; \
             fn deref(&self) -> &{ty} {{ __dsu_shared_{ident}() }} }}",
            sym = f.symbol
        ),
    };
    let message = format!(
        "dsu: static `{}` has another type in this patch than in the running program (size {}, \
         alignment {} there): a patch cannot change the type of a static the program has",
        f.path, layout.size, layout.align
    );
    let _ = write!(
        s,
        " {cfgs}const _: () = ::core::assert!(::core::mem::size_of::<{ty}>() == {} && \
         ::core::mem::align_of::<{ty}>() == {}, {message:?});",
        layout.size, layout.align
    );
    if has_dsu && layout.fingerprint != [0, 0] {
        let _ = write!(
            s,
            " {cfgs}const _: () = {{ #[allow(unused_imports)] use ::dsu::__private::ProbeFallback as _; \
             let f = ::dsu::__private::Probe::<{ty}>::FP.0; \
             ::core::assert!(::core::primitive::u64::from_le_bytes([f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]]) == {} \
             && ::core::primitive::u64::from_le_bytes([f[8], f[9], f[10], f[11], f[12], f[13], f[14], f[15]]) == {}, {message:?}); }};",
            layout.fingerprint[0], layout.fingerprint[1]
        );
    }
    s
}

/// What the compare step refuses and reports about statics, between revisions `old` and `new`
/// of `units`: a static whose kind or type changed (unless neither revision's holds state),
/// or whose type mentions a type whose layout changes (`changed`), unless it is a state cell; a
/// state cell whose type or name changed. A shared static whose initial value changed keeps the
/// running program's value: reported. Added and removed statics need nothing. Returns the statics
/// of the older revision (what `routes.rs` checks live state in).
pub(crate) fn compare(
    units: &[CrateUnit],
    old: (&super::Revision, &Path),
    new: (&super::Revision, &Path),
    changed: &BTreeSet<super::items::ItemKey>,
    report: &mut Report,
) -> Result<Statics> {
    let old_statics = Statics::find(&old.0.tree, units, old.1)?;
    let new_statics = Statics::find(&new.0.tree, units, new.1)?;
    let resolver = super::resolve::Resolver::new(&new.0.tree);
    for f in &new_statics.found {
        let Some(o) = old_statics.found.iter().find(|o| o.unit == f.unit && o.path == f.path) else { continue };
        let refuse = |report: &mut Report, reason: String| {
            report.refusals.push(Refusal { file: f.file.display().to_string(), line: f.line, reason })
        };
        match (o.not_shared, f.not_shared) {
            // Neither holds state: the patch's code sees its own value.
            (Some(NotShared::Constant), Some(NotShared::Constant)) => {}
            (Some(NotShared::StateCell), Some(NotShared::StateCell)) => {
                if o.type_text != f.type_text || o.init_text != f.init_text {
                    refuse(
                        report,
                        format!(
                            "state cell `{}` changed its declaration: a cell's name and type stay \
                             (its value's type changes with the updateable types it holds, through \
                             a transformer); declare a new cell for another name or type",
                            f.path
                        ),
                    );
                }
            }
            // Another type, a cell made a plain static, a constant made one that holds state:
            // the program's instance would not be what the patch's code expects.
            _ if o.kind != f.kind || o.type_text != f.type_text => {
                refuse(report, changed_type_reason(&f.path, o.kind, &o.type_text, f.kind, &f.type_text));
            }
            _ => {
                let mentioned = super::generate::mentioned(&resolver, f.module, &f.ty, changed);
                if let Some(t) = mentioned.iter().next() {
                    refuse(
                        report,
                        format!(
                            "static `{}` holds `{}`, whose layout changes: patched code shares the \
                             running program's instance, which holds the old layout. Keep the value \
                             in a dsu::State cell, whose values the transformer moves",
                            f.path,
                            t.path
                        ),
                    );
                } else if o.init_text != f.init_text {
                    report.statics_kept.push(f.item_ref());
                }
            }
        }
    }
    Ok(old_statics)
}

/// Statics of the running revision (`old`) that the program's build does not have: an earlier
/// patch added them, and a later one cannot reach that patch's instance. A patch whose newer
/// source still has one is refused, naming it, rather than given a copy of its own. `program`
/// holds, per unit, what the build exports (`None`: a build made before statics were exported,
/// refused by the patch build).
pub fn refuse_unreachable(
    units: &[CrateUnit],
    old_root: &Path,
    new_root: &Path,
    program: &[Option<&[HostStatic]>],
    report: &mut Report,
) -> Result<()> {
    let read = |root: &Path| -> Result<Statics> { Statics::find(&Tree::read(units, root)?, units, root) };
    let (old, new) = (read(old_root)?, read(new_root)?);
    for f in new.found.iter().filter(|f| f.shared_kind()) {
        let Some(Some(host)) = program.get(f.unit) else { continue };
        let in_old = old.found.iter().any(|o| o.unit == f.unit && o.path == f.path && o.shared_kind());
        if in_old && !host.iter().any(|h| h.symbol == f.symbol) {
            report.refusals.push(Refusal {
                file: f.file.display().to_string(),
                line: f.line,
                reason: format!(
                    "static `{}` was added by a patch: the program's build does not have it, and a \
                     later patch cannot reach the instance that patch holds, so this one would \
                     start a copy of its own. Restart the program from a build that has it \
                     (`cargo dsu build` at the running revision or later)",
                    f.path
                ),
            });
        }
    }
    Ok(())
}

/// The statics of the set's crates (`crates`) that the built library `file` defines in writable
/// memory although the source does not show them (`known`: every static the source has):
/// statics written inside other macros' input, such as `tracing`'s callsites or a crate's own
/// `macro_rules!`, which the patch has copies of its own of. Read from the symbol table (none
/// when the library was stripped); the statics dsu's own macros generate, one set per copy by
/// design, are left out.
pub fn unseen_in(file: &Path, crates: &[&str], known: &[String]) -> Result<Vec<String>> {
    use object::{Object, ObjectSection, ObjectSymbol, SectionFlags, SymbolKind};
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let obj = object::File::parse(&*data).with_context(|| format!("reading {} as ELF", file.display()))?;
    let writable = |sym: &object::Symbol<'_, '_>| {
        sym.section_index().and_then(|i| obj.section_by_index(i).ok()).is_some_and(|s| {
            matches!(s.flags(), SectionFlags::Elf { sh_flags } if sh_flags & u64::from(object::elf::SHF_WRITE) != 0)
        })
    };
    let mut unseen = BTreeSet::new();
    for sym in obj.symbols() {
        if !matches!(sym.kind(), SymbolKind::Data | SymbolKind::Tls) || sym.is_undefined() || !writable(&sym) {
            continue;
        }
        let Ok(name) = sym.name() else { continue };
        let Ok(demangled) = rustc_demangle::try_demangle(name) else { continue };
        // Without the hash; `<T as Trait>::…` read from `T`; the macros' hidden `__dsu_impl`
        // functions are the function they belong to.
        let path = format!("{demangled:#}").trim_start_matches('<').replace("::__dsu_impl", "").replace("::__dsu_body", "");
        let in_set = path.split("::").next().is_some_and(|c| crates.contains(&c));
        let dsu_own = path.contains("__DSU_") || path.contains("__dsu_");
        let seen = known.iter().any(|k| {
            path.strip_prefix(k.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with(' '))
        });
        if in_set && !dsu_own && !seen {
            unseen.insert(path);
        }
    }
    Ok(unseen.into_iter().collect())
}
