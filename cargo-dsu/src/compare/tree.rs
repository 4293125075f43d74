//! Module trees: every module of every crate of the updateable set, as rustc would find them
//! from each crate's root file at one revision.
//!
//! A `mod x;` is the file `x.rs` or `x/mod.rs` in the directory of the declaring module (for a
//! crate root, `mod.rs` or a file named by `#[path]`, the file's own directory; for another file
//! `a.rs`, `a/`; inside an inline `mod m { }`, one level deeper, `m/`), or the file its
//! `#[path = "…"]` names. Modules behind `#[cfg(…)]` are read too when their file exists.

use super::CrateUnit;
use anyhow::{anyhow, bail, Context, Result};
use proc_macro2::LineColumn;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use syn::spanned::Spanned;
use syn::Item;

/// A module of one crate, at one revision.
pub struct Module {
    /// What `module_path!()` gives in it: `app`, `core_logic::store`.
    pub path: String,
    /// Its name in its parent (`""` for a crate root).
    pub name: String,
    /// Its parent, an index into [`UnitTree::modules`].
    pub parent: Option<usize>,
    /// Its children by name.
    pub children: BTreeMap<String, usize>,
    /// The file its items are written in, relative to the checkout root.
    pub file: PathBuf,
    /// Its items (inline child modules included, as `mod m { … }`).
    pub items: Vec<Item>,
    /// Where code generated for this module goes: a byte offset in `file` (the end of a file
    /// module, just before the closing brace of an inline one).
    pub end: usize,
    /// The `#[cfg]` attributes of its declaration: code that names it must carry them too.
    pub cfgs: Vec<syn::Attribute>,
}

/// One crate's modules, the root first.
#[derive(Default)]
pub struct UnitTree {
    pub crate_name: String,
    /// Whether its root file exists at this revision.
    pub found: bool,
    pub modules: Vec<Module>,
    /// The behaviour tokens (see `dsu_syntax::behaviour_tokens`) of each file it reads.
    pub files: BTreeMap<PathBuf, String>,
}

/// A module of a [`Tree`]: its unit (an index into the compared units) and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId {
    pub unit: usize,
    pub module: usize,
}

/// Every crate of the updateable set at one revision, in the order of the units.
pub struct Tree {
    pub units: Vec<UnitTree>,
}

impl Tree {
    /// Reads the crates `units` under `root`. A unit whose root file is missing is an empty
    /// crate, not `found` (one revision may not have it yet).
    pub fn read(units: &[CrateUnit], root: &Path) -> Result<Tree> {
        let mut trees = Vec::new();
        for unit in units {
            let found = root.join(&unit.root_file).is_file();
            let mut tree = UnitTree { crate_name: unit.crate_name.clone(), found, ..UnitTree::default() };
            if found {
                let mut reader = Reader { root, tree: &mut tree, stack: Vec::new(), cfg: unit.cfg.as_ref() };
                let at = FileModule {
                    path: unit.crate_name.clone(),
                    name: String::new(),
                    parent: None,
                    cfgs: Vec::new(),
                    owns_dir: true,
                };
                reader.read_file(&normalize(&unit.root_file), at)?;
            }
            trees.push(tree);
        }
        Ok(Tree { units: trees })
    }

    pub fn module(&self, id: ModuleId) -> &Module {
        &self.units[id.unit].modules[id.module]
    }

    /// Every module of every unit, with its id.
    pub fn modules(&self) -> impl Iterator<Item = (ModuleId, &Module)> {
        self.units.iter().enumerate().flat_map(|(unit, t)| {
            t.modules.iter().enumerate().map(move |(module, m)| (ModuleId { unit, module }, m))
        })
    }
}

/// Where a file module sits in its crate.
struct FileModule {
    path: String,
    name: String,
    parent: Option<usize>,
    cfgs: Vec<syn::Attribute>,
    /// Whether its `mod x;` declarations look in its file's own directory (a crate root, a
    /// `#[path]` file) rather than in a directory named after it (`a.rs` → `a/`).
    owns_dir: bool,
}

/// Where the modules declared among some items are: the module they belong to, its file, and
/// the directories `mod x;` and `#[path]` are resolved against.
struct Place<'a> {
    module: usize,
    file: &'a Path,
    text: &'a str,
    /// The directory of `x.rs` and `x/mod.rs` for a `mod x;` here.
    child_dir: PathBuf,
    /// Whether these items are inside an inline module of `file` (then `#[path]` is relative
    /// to `child_dir`, not to the file's directory).
    inline: bool,
}

struct Reader<'a> {
    root: &'a Path,
    tree: &'a mut UnitTree,
    /// The files being read, outermost first: a `#[path]` cycle is an error, not a hang.
    stack: Vec<PathBuf>,
    /// The crate's build configuration, when known.
    cfg: Option<&'a dsu_syntax::CfgSet>,
}

impl Reader<'_> {
    /// Reads the module file `rel` and, through it, every module it declares.
    fn read_file(&mut self, rel: &Path, at: FileModule) -> Result<()> {
        if self.stack.iter().any(|f| f == rel) {
            bail!("{}: the module tree comes back to this file (`#[path]` cycle)", rel.display());
        }
        let shown = rel.display().to_string();
        let text =
            std::fs::read_to_string(self.root.join(rel)).with_context(|| format!("reading {shown}"))?;
        let mut file = syn::parse_file(&text).map_err(|e| {
            let at = e.span().start();
            anyhow!("{shown}:{}:{}: cannot parse: {e}", at.line, at.column + 1)
        })?;
        // What the build does not compile is not part of the program.
        if let Some(cfg) = self.cfg {
            cfg.retain_active(&mut file.items);
        }
        self.tree.files.insert(rel.to_path_buf(), dsu_syntax::behaviour_tokens(&file));
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let owns_dir = at.owns_dir || rel.file_name().is_some_and(|n| n == "mod.rs");
        let child_dir = if owns_dir { dir } else { dir.join(&at.name) };
        let module = self.push(at, rel, file.items.clone(), text.len());
        self.stack.push(rel.to_path_buf());
        let place = Place { module, file: rel, text: &text, child_dir, inline: false };
        let result = self.read_items(&file.items, &place);
        self.stack.pop();
        result
    }

    fn push(&mut self, at: FileModule, file: &Path, items: Vec<Item>, end: usize) -> usize {
        let index = self.tree.modules.len();
        if let Some(parent) = at.parent {
            self.tree.modules[parent].children.insert(at.name.clone(), index);
        }
        self.tree.modules.push(Module {
            path: at.path,
            name: at.name,
            parent: at.parent,
            children: BTreeMap::new(),
            file: file.to_path_buf(),
            items,
            end,
            cfgs: at.cfgs,
        });
        index
    }

    /// Follows the module declarations among `items`.
    fn read_items(&mut self, items: &[Item], place: &Place<'_>) -> Result<()> {
        for item in items {
            let Item::Mod(m) = item else { continue };
            let name = m.ident.to_string();
            let at = FileModule {
                path: format!("{}::{name}", self.tree.modules[place.module].path),
                name: name.clone(),
                parent: Some(place.module),
                cfgs: m.attrs.iter().filter(|a| a.path().is_ident("cfg")).cloned().collect(),
                owns_dir: false,
            };
            let path_attr = path_attribute(m);
            // `#[path]` is relative to the file's directory, or inside an inline module to the
            // directory its `mod x;` would use.
            let path_base = if place.inline {
                place.child_dir.clone()
            } else {
                place.file.parent().unwrap_or(Path::new("")).to_path_buf()
            };
            match &m.content {
                Some((brace, inner)) => {
                    let end = byte_offset(place.text, brace.span.close().start());
                    let module = self.push(at, place.file, inner.clone(), end);
                    let child_dir = match &path_attr {
                        Some(p) => normalize(&path_base.join(p)),
                        None => place.child_dir.join(&name),
                    };
                    let inner_place =
                        Place { module, file: place.file, text: place.text, child_dir, inline: true };
                    self.read_items(inner, &inner_place)?;
                }
                None => self.read_file_module(m, at, path_attr.as_deref(), &path_base, place)?,
            }
        }
        Ok(())
    }

    /// Reads the file of `mod name;` (`m`): the one its `#[path]` names, relative to
    /// `path_base`, or `name.rs` or `name/mod.rs` in the declaring place's `child_dir`.
    fn read_file_module(
        &mut self,
        m: &syn::ItemMod,
        at: FileModule,
        path_attr: Option<&Path>,
        path_base: &Path,
        place: &Place<'_>,
    ) -> Result<()> {
        let name = &at.name;
        let file = match path_attr {
            Some(p) => Some(normalize(&path_base.join(p))),
            None => [place.child_dir.join(format!("{name}.rs")), place.child_dir.join(name).join("mod.rs")]
                .into_iter()
                .find(|f| self.root.join(f).is_file()),
        };
        match file {
            // A `#[path]` file owns its directory, like a `mod.rs`.
            Some(f) if self.root.join(&f).is_file() => {
                self.read_file(&f, FileModule { owns_dir: path_attr.is_some(), ..at })
            }
            // A module compiled only under some `cfg` may have no file here.
            _ if !at.cfgs.is_empty() => Ok(()),
            _ => bail!(
                "{}:{}: no file for `mod {name};` (looked for {})",
                place.file.display(),
                m.span().start().line,
                file.map_or_else(
                    || format!("{name}.rs and {name}/mod.rs in {}", place.child_dir.display()),
                    |f| f.display().to_string()
                )
            ),
        }
    }
}

/// The value of a `#[path = "…"]` attribute.
fn path_attribute(m: &syn::ItemMod) -> Option<PathBuf> {
    m.attrs.iter().filter(|a| a.path().is_ident("path")).find_map(|attr| match &attr.meta {
        syn::Meta::NameValue(syn::MetaNameValue {
            value: syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }),
            ..
        }) => Some(PathBuf::from(s.value())),
        _ => None,
    })
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// The byte offset in `text` of a line (1-based) and column (0-based, in characters).
pub fn byte_offset(text: &str, at: LineColumn) -> usize {
    let line_start: usize = text.split_inclusive('\n').take(at.line.saturating_sub(1)).map(str::len).sum();
    let rest = &text[line_start..];
    line_start + rest.char_indices().nth(at.column).map_or(rest.len(), |(i, _)| i)
}
