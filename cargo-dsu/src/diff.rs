//! Comparing the source of two revisions: which updateable functions a patch replaces, adds or
//! drops, and which changes it must refuse.
//!
//! Stable paths are formed as the macros form them: `module_path!()` plus `name`, `Type::name`
//! or `<Type as Trait>::name`, so the report names functions as the runtime does.

use anyhow::{Context, Result};
use quote::ToTokens;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use syn::spanned::Spanned;
use syn::{ImplItem, Item};

/// An item, where it is in the newer (or, if removed, the older) revision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ItemRef {
    pub path: String,
    pub file: String,
    pub line: usize,
}

/// A change the patch cannot apply safely.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Refusal {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// What changed between two revisions.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Report {
    /// Updateable functions whose body changed (signature equal).
    pub functions_changed: Vec<ItemRef>,
    /// Updateable functions only in the newer revision.
    pub functions_added: Vec<ItemRef>,
    /// Updateable functions only in the older revision (old callers keep the old code).
    pub functions_removed: Vec<ItemRef>,
    /// Other functions whose code changed: only callers inside the patch see the new version.
    pub non_updateable_changed: Vec<ItemRef>,
    /// Structs, enums and unions whose definition changed.
    pub types_changed: Vec<ItemRef>,
    /// State cells whose values the patch transforms to a changed type.
    pub cells_transformed: Vec<ItemRef>,
    /// Updateable functions whose signature mentions a changed type: callers compiled for the
    /// old layout keep the old version.
    pub functions_routed: Vec<ItemRef>,
    /// Changed types (of `types_changed`) that also have an inverse transformer,
    /// `#[dsu::transform(to = dsu_old::T)]`: their values can be moved back to the old layout.
    pub types_reversible: Vec<ItemRef>,
    /// Transformed cells (of `cells_transformed`) whose inverse transform the patch carries too
    /// (every changed type in the cell's type is reversible): a rollback can restore their values.
    /// The patch can be rolled back with its state when this lists every transformed cell.
    pub cells_reversible: Vec<ItemRef>,
    pub refusals: Vec<Refusal>,
    /// Code `cargo dsu patch` appends to the patch's crate root (old definitions, derived
    /// transformers, cell transforms).
    #[serde(skip)]
    pub generated: String,
}

impl Report {
    /// Whether the patch would replace or add no updateable function.
    pub fn is_empty_change(&self) -> bool {
        self.functions_changed.is_empty()
            && self.functions_added.is_empty()
            && self.cells_transformed.is_empty()
    }
}

/// One item of interest, keyed by its stable path.
#[derive(Debug, Clone)]
struct Entry {
    file: String,
    line: usize,
    kind: Kind,
    /// Token text of what identifies the item's interface (a signature, a whole static).
    head: String,
    /// Token text of the whole item.
    whole: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UpdateableFn,
    PlainFn,
    Static,
    Type,
}

#[derive(Default)]
struct Items(BTreeMap<String, Entry>);

/// Compares the packages at `old_root` and `new_root` (each with `Cargo.toml` and `src/`).
pub fn compare(crate_name: &str, old_root: &Path, new_root: &Path) -> Result<Report> {
    let old = collect(crate_name, old_root)?;
    let new = collect(crate_name, new_root)?;
    let mut report = Report::default();
    compare_functions(&old, &new, &mut report);
    refuse_changed_statics(&old, &new, &mut report);
    collect_changed_types(&old, &new, &mut report);
    let functions = |items: &Items| -> Vec<(String, ItemRef, bool, String, String)> {
        items
            .0
            .iter()
            .filter(|(_, e)| matches!(e.kind, Kind::UpdateableFn | Kind::PlainFn))
            .map(|(p, e)| {
                (p.clone(), item_ref(p, e), e.kind == Kind::UpdateableFn, e.head.clone(), e.whole.clone())
            })
            .collect()
    };
    let changed_types = report.types_changed.clone();
    report.generated = crate::types::plan(
        crate_name,
        old_root,
        new_root,
        &changed_types,
        &functions(&new),
        &functions(&old),
        &mut report,
    )?
    .0;
    refuse_changed_dependencies(old_root, new_root, &mut report)?;
    for list in [
        &mut report.functions_changed,
        &mut report.functions_added,
        &mut report.functions_removed,
        &mut report.non_updateable_changed,
        &mut report.types_changed,
        &mut report.cells_transformed,
        &mut report.functions_routed,
        &mut report.types_reversible,
        &mut report.cells_reversible,
    ] {
        list.sort_by(|a, b| (&a.file, a.line, &a.path).cmp(&(&b.file, b.line, &b.path)));
    }
    report.refusals.sort_by(|a, b| (&a.file, a.line, &a.reason).cmp(&(&b.file, b.line, &b.reason)));
    Ok(report)
}

fn item_ref(path: &str, e: &Entry) -> ItemRef {
    ItemRef { path: path.to_string(), file: e.file.clone(), line: e.line }
}

/// An updateable function present in both revisions keeps its signature (old callers would
/// otherwise reach new code with the old calling convention); its body may change. Others are
/// reported as added, removed, or changed without a slot.
fn compare_functions(old: &Items, new: &Items, report: &mut Report) {
    for (path, n) in &new.0 {
        let o = old.0.get(path);
        match (n.kind, o) {
            (Kind::UpdateableFn, Some(o)) if o.kind == Kind::UpdateableFn => {
                if o.head != n.head {
                    report.refusals.push(Refusal {
                        file: n.file.clone(),
                        line: n.line,
                        reason: format!(
                            "signature of `{path}` changed: old callers would still reach the new \
                             code with the old signature; keep the old signature and add a new function"
                        ),
                    });
                } else if o.whole != n.whole {
                    report.functions_changed.push(item_ref(path, n));
                }
            }
            (Kind::UpdateableFn, _) => report.functions_added.push(item_ref(path, n)),
            (Kind::PlainFn, Some(o)) if o.whole != n.whole => {
                report.non_updateable_changed.push(item_ref(path, n))
            }
            _ => {}
        }
    }
    for (path, o) in &old.0 {
        if o.kind == Kind::UpdateableFn
            && !new.0.get(path).is_some_and(|n| n.kind == Kind::UpdateableFn)
        {
            report.functions_removed.push(item_ref(path, o));
        }
    }
}

/// A patch has its own copy of every static, so a changed, added or removed static would not be
/// seen by the running program.
fn refuse_changed_statics(old: &Items, new: &Items, report: &mut Report) {
    let statics = |items: &Items| -> BTreeMap<String, Entry> {
        items.0.iter().filter(|(_, e)| e.kind == Kind::Static).map(|(k, e)| (k.clone(), e.clone())).collect()
    };
    let (o, n) = (statics(old), statics(new));
    let mut paths: Vec<&String> = o.keys().chain(n.keys()).collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let (a, b) = (o.get(path), n.get(path));
        if a.map(|e| &e.whole) != b.map(|e| &e.whole) {
            let at = b.or(a).expect("in one of them");
            let what = match (a, b) {
                (None, _) => "was added",
                (_, None) => "was removed",
                _ => "changed",
            };
            report.refusals.push(Refusal {
                file: at.file.clone(),
                line: at.line,
                reason: format!(
                    "static `{path}` {what}: a patch gets its own copy of every static, so the \
                     running program would not see the change; keep state in a dsu::State cell"
                ),
            });
        }
    }
}

/// Values of a changed type may be live in the running program; `types::plan` decides whether
/// the patch can move them (a transformer) or must refuse. Added types are fine and not reported.
fn collect_changed_types(old: &Items, new: &Items, report: &mut Report) {
    for (path, n) in new.0.iter().filter(|(_, e)| e.kind == Kind::Type) {
        let Some(o) = old.0.get(path) else { continue };
        if type_text(&o.whole) != type_text(&n.whole) {
            report.types_changed.push(item_ref(path, n));
        }
    }
}

/// A type's tokens without its `#[…transform(…)]` attributes (a type may carry one `from` and
/// one `to`), which are not part of its layout.
fn type_text(whole: &str) -> String {
    let mut text = whole.to_string();
    while let Some(start) = text.find("# [dsu :: transform").or_else(|| text.find("# [transform")) {
        let end = text[start..].find(") ]").map_or(text.len(), |e| start + e + 3);
        text.replace_range(start..end, "");
    }
    text
}

const DEPENDENCY_TABLES: &[&str] = &["dependencies", "build-dependencies", "features"];
const DEPENDENCIES_CHANGED: &str = "dependencies changed: the shared dependency library would \
    differ; rebuild with `cargo dsu build` and restart";

/// The program and every patch share one dependency library: a patch cannot bring other
/// dependencies, versions or features.
fn refuse_changed_dependencies(old_root: &Path, new_root: &Path, report: &mut Report) -> Result<()> {
    let read = |root: &Path| -> Result<(String, toml::Table)> {
        let text = std::fs::read_to_string(root.join("Cargo.toml"))
            .with_context(|| format!("reading {}", root.join("Cargo.toml").display()))?;
        let table = text.parse().with_context(|| format!("parsing {}", root.join("Cargo.toml").display()))?;
        Ok((text, table))
    };
    let (_, old) = read(old_root)?;
    let (new_text, new) = read(new_root)?;
    let target_deps = |t: &toml::Table| -> Vec<(String, Option<toml::Value>)> {
        let Some(targets) = t.get("target").and_then(|v| v.as_table()) else { return Vec::new() };
        targets.iter().map(|(k, v)| (k.clone(), v.get("dependencies").cloned())).collect()
    };
    let mut changed: Option<&str> = None;
    for table in DEPENDENCY_TABLES {
        if old.get(*table) != new.get(*table) {
            changed.get_or_insert(table);
        }
    }
    if changed.is_none() && target_deps(&old) != target_deps(&new) {
        changed = Some("target");
    }
    if let Some(table) = changed {
        let header = format!("[{table}");
        let line = new_text.lines().position(|l| l.trim_start().starts_with(&header)).map_or(1, |i| i + 1);
        report.refusals.push(Refusal { file: "Cargo.toml".into(), line, reason: DEPENDENCIES_CHANGED.into() });
    }
    let (old_lock, new_lock) =
        (std::fs::read(old_root.join("Cargo.lock")).ok(), std::fs::read(new_root.join("Cargo.lock")).ok());
    if let (Some(a), Some(b)) = (old_lock, new_lock) {
        if a != b {
            report.refusals.push(Refusal { file: "Cargo.lock".into(), line: 1, reason: DEPENDENCIES_CHANGED.into() });
        }
    }
    Ok(())
}

/// Every item of interest in `root/src`, by stable path.
fn collect(crate_name: &str, root: &Path) -> Result<Items> {
    let mut files = Vec::new();
    let src = root.join("src");
    if src.is_dir() {
        crate::identity::collect_files(root, &src, &mut files)?;
    }
    files.sort();
    let mut items = Items::default();
    for rel in files.iter().filter(|f| f.ends_with(".rs") && !f.starts_with("src/bin/")) {
        let text = std::fs::read_to_string(root.join(rel)).with_context(|| format!("reading {rel}"))?;
        let file = syn::parse_file(&text).map_err(|e| {
            let at = e.span().start();
            anyhow::anyhow!("{rel}:{}:{}: cannot parse: {e}", at.line, at.column + 1)
        })?;
        let module = module_path(crate_name, rel);
        walk(&file.items, &module, rel, &mut items);
    }
    Ok(items)
}

/// `src/main.rs`, `src/lib.rs` → the crate; `src/a.rs`, `src/a/mod.rs` → `crate::a`;
/// `src/a/b.rs` → `crate::a::b`.
fn module_path(crate_name: &str, rel: &str) -> String {
    let inner = rel.strip_prefix("src/").unwrap_or(rel).trim_end_matches(".rs");
    let mut segments: Vec<&str> = inner.split('/').collect();
    if matches!(segments.last(), Some(&"mod")) || (segments.len() == 1 && matches!(segments[0], "main" | "lib")) {
        segments.pop();
    }
    std::iter::once(crate_name).chain(segments).collect::<Vec<_>>().join("::")
}

fn is_updateable(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().segments.last().is_some_and(|s| s.ident == "updateable"))
}

fn text(t: &impl ToTokens) -> String {
    t.to_token_stream().to_string()
}

/// Token text as a user writes it (see [`dsu_abi::normalize_token_text`]).
fn tokens_text(t: &impl quote::ToTokens) -> String {
    dsu_abi::normalize_token_text(&t.to_token_stream().to_string())
}

fn walk(items: &[Item], module: &str, file: &str, out: &mut Items) {
    for item in items {
        let mut add = |path: String, span: proc_macro2::Span, kind, head: String, whole: String| {
            out.0.insert(path, Entry { file: file.to_string(), line: span.start().line, kind, head, whole });
        };
        match item {
            // Transformers exist only in patches and are not part of the program's code.
            Item::Fn(f) if f.attrs.iter().any(|a| a.path().segments.last().is_some_and(|s| s.ident == "transform")) => {}
            Item::Fn(f) => {
                let kind = if is_updateable(&f.attrs) { Kind::UpdateableFn } else { Kind::PlainFn };
                add(format!("{module}::{}", f.sig.ident), f.span(), kind, text(&f.sig), text(f));
            }
            Item::Impl(i) => {
                let updateable = is_updateable(&i.attrs);
                let owner = match &i.trait_ {
                    None => tokens_text(&i.self_ty),
                    Some((_, t, _)) => format!("<{} as {}>", tokens_text(&i.self_ty), tokens_text(t)),
                };
                let context = format!("{} {}", text(&i.self_ty), i.trait_.as_ref().map(|t| text(&t.1)).unwrap_or_default());
                for ii in &i.items {
                    if let ImplItem::Fn(m) = ii {
                        let kind = if updateable || is_updateable(&m.attrs) { Kind::UpdateableFn } else { Kind::PlainFn };
                        add(
                            format!("{module}::{owner}::{}", m.sig.ident),
                            m.span(),
                            kind,
                            format!("{context} {}", text(&m.sig)),
                            format!("{context} {}", text(m)),
                        );
                    }
                }
            }
            Item::Static(s) => {
                add(format!("{module}::{}", s.ident), s.span(), Kind::Static, text(s), text(s));
            }
            Item::Macro(m) if m.mac.path.is_ident("thread_local") => {
                let path = format!("{module}::thread_local!@{}", text(&m.mac.tokens).len());
                add(path, m.span(), Kind::Static, text(m), text(m));
            }
            Item::Struct(s) => add(format!("{module}::{}", s.ident), s.span(), Kind::Type, text(s), text(s)),
            Item::Enum(e) => add(format!("{module}::{}", e.ident), e.span(), Kind::Type, text(e), text(e)),
            Item::Union(u) => add(format!("{module}::{}", u.ident), u.span(), Kind::Type, text(u), text(u)),
            Item::Mod(m) => {
                if let Some((_, inner)) = &m.content {
                    walk(inner, &format!("{module}::{}", m.ident), file, out);
                }
            }
            _ => {}
        }
    }
}

/// One crate of the updateable set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateUnit {
    /// The crate's name as rustc knows it: what `module_path!()` starts with.
    pub crate_name: String,
    /// Its root source file, relative to the checkout root.
    pub root_file: std::path::PathBuf,
    /// Its package's directory, relative to the checkout root.
    pub package_dir: std::path::PathBuf,
}

/// Compares the crates `units` between the checkout roots `old_root` and `new_root`.
/// Dependencies are checked by the pipeline (`deps_check`).
pub fn compare_units(units: &[CrateUnit], old_root: &Path, new_root: &Path) -> Result<Report> {
    let mut report = Report::default();
    let mut seen = std::collections::BTreeSet::new();
    for u in units {
        if !seen.insert((u.crate_name.clone(), u.package_dir.clone())) {
            continue;
        }
        let mut r = compare(&u.crate_name, &old_root.join(&u.package_dir), &new_root.join(&u.package_dir))?;
        r.refusals.retain(|x| x.reason != DEPENDENCIES_CHANGED);
        let prefix = |list: &mut Vec<ItemRef>| {
            for i in list.iter_mut() {
                i.file = u.package_dir.join(&i.file).display().to_string();
            }
        };
        for list in [&mut r.functions_changed, &mut r.functions_added, &mut r.functions_removed, &mut r.non_updateable_changed, &mut r.types_changed, &mut r.cells_transformed, &mut r.functions_routed, &mut r.types_reversible, &mut r.cells_reversible] {
            prefix(list);
        }
        report.functions_changed.extend(r.functions_changed);
        report.functions_added.extend(r.functions_added);
        report.functions_removed.extend(r.functions_removed);
        report.non_updateable_changed.extend(r.non_updateable_changed);
        report.types_changed.extend(r.types_changed);
        report.cells_transformed.extend(r.cells_transformed);
        report.functions_routed.extend(r.functions_routed);
        report.types_reversible.extend(r.types_reversible);
        report.cells_reversible.extend(r.cells_reversible);
        report.refusals.extend(r.refusals);
        report.generated.push_str(&r.generated);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MANIFEST: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[dependencies]\ndsu = \"0.1\"\n";

    fn pkg(name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dsu-diff-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (rel, content) in files {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        if !files.iter().any(|(r, _)| *r == "Cargo.toml") {
            std::fs::write(dir.join("Cargo.toml"), MANIFEST).unwrap();
        }
        dir
    }

    fn cmp(name: &str, old: &[(&str, &str)], new: &[(&str, &str)]) -> Report {
        let a = pkg(&format!("{name}-old"), old);
        let b = pkg(&format!("{name}-new"), new);
        let r = compare("app", &a, &b).unwrap();
        let _ = std::fs::remove_dir_all(a);
        let _ = std::fs::remove_dir_all(b);
        r
    }

    fn paths(v: &[ItemRef]) -> Vec<&str> {
        v.iter().map(|i| i.path.as_str()).collect()
    }

    #[test]
    fn body_change_added_and_removed() {
        let old = "#[dsu::updateable]\nfn a() -> u32 { 1 }\n#[dsu::updateable]\nfn gone() {}\nfn plain() -> u32 { 1 }\n";
        let new = "#[dsu::updateable]\nfn a() -> u32 { 2 }\n#[dsu::updateable]\nfn fresh() {}\nfn plain() -> u32 { 2 }\n";
        let r = cmp("body", &[("src/main.rs", old)], &[("src/main.rs", new)]);
        assert_eq!(r.functions_changed, vec![ItemRef { path: "app::a".into(), file: "src/main.rs".into(), line: 1 }]);
        assert_eq!(paths(&r.functions_added), ["app::fresh"]);
        assert_eq!(paths(&r.functions_removed), ["app::gone"]);
        assert_eq!(paths(&r.non_updateable_changed), ["app::plain"]);
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert!(!r.is_empty_change());
    }

    #[test]
    fn signature_change_is_refused_at_its_line() {
        let old = "\n#[dsu::updateable]\nfn greet(n: &str) -> String { n.into() }\n";
        let new = "\n\n#[dsu::updateable]\nfn greet(n: &str, loud: bool) -> String { n.into() }\n";
        let r = cmp("sig", &[("src/main.rs", old)], &[("src/main.rs", new)]);
        assert_eq!(r.refusals.len(), 1);
        assert_eq!((r.refusals[0].file.as_str(), r.refusals[0].line), ("src/main.rs", 3));
        assert!(r.refusals[0].reason.contains("signature of `app::greet` changed"));
        assert!(r.functions_changed.is_empty());
    }

    #[test]
    fn static_change_is_refused() {
        let r = cmp(
            "static",
            &[("src/main.rs", "static N: u32 = 1;\n")],
            &[("src/main.rs", "static N: u32 = 2;\nstatic M: u8 = 0;\n")],
        );
        let reasons: Vec<&str> = r.refusals.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(r.refusals.len(), 2, "{reasons:?}");
        assert!(reasons[0].contains("static `app::N` changed") && reasons[1].contains("static `app::M` was added"), "{reasons:?}");
    }

    #[test]
    fn type_change_is_refused_and_reported() {
        let r = cmp(
            "type",
            &[("src/main.rs", "struct Entry { a: u32 }\n")],
            &[("src/main.rs", "struct Entry { a: u64 }\nstruct New;\n")],
        );
        assert_eq!(paths(&r.types_changed), ["app::Entry"]);
        assert_eq!(r.refusals.len(), 1);
        assert!(r.refusals[0].reason.contains("type `app::Entry` changed and is not #[dsu::updateable]"));
    }

    const V1: &str = "use std::collections::HashMap;\nuse std::sync::Mutex;\n\
        #[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }\n\
        static STORE: dsu::State<Mutex<HashMap<String, Entry>>> = dsu::State::new(\"store\", Default::default);\n\
        #[dsu::updateable]\nfn count() -> usize { STORE.lock().unwrap().len() }\n";

    #[test]
    fn type_change_without_transformer_prints_a_stub() {
        let v2 = V1.replace("pub hits: u32 }", "pub hits: u64, pub seen: bool }");
        let r = cmp("stub", &[("src/main.rs", V1)], &[("src/main.rs", &v2)]);
        assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
        let reason = &r.refusals[0].reason;
        assert!(reason.contains("no transformer"), "{reason}");
        assert!(reason.contains("fn upgrade_entry(old: &dsu_old::Entry) -> Entry"), "{reason}");
        assert!(reason.contains("name: old.name.clone()"), "{reason}");
        assert!(reason.contains("seen: todo!(\"new field\")"), "{reason}");
    }

    #[test]
    fn type_change_with_transformer_generates_old_definitions_and_cell_transform() {
        let v2 = V1.replace("pub hits: u32 }", "pub hits: u64 }") + "#[dsu::transform(from = dsu_old::Entry)]\n\
            fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n";
        let r = cmp("transformer", &[("src/main.rs", V1)], &[("src/main.rs", &v2)]);
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert_eq!(r.cells_transformed.len(), 1);
        assert!(r.generated.contains("pub mod dsu_old"), "{}", r.generated);
        assert!(r.generated.contains("pub hits : u32"), "old definition: {}", r.generated);
        assert!(
            r.generated.contains("CellTransform::new::<Mutex<HashMap<String, dsu_old::Entry>>, Mutex<HashMap<String, Entry>>>(\"store\")")
                || r.generated.contains("Mutex < HashMap < String , dsu_old :: Entry > >"),
            "{}",
            r.generated
        );
        assert!(!r.is_empty_change());
    }

    #[test]
    fn derived_transformer_only_for_trivial_changes() {
        let trivial = V1.replace("#[dsu::updateable]\npub struct Entry { pub name: String, pub hits: u32 }",
            "#[dsu::updateable]\n#[dsu::transform(from = dsu_old::Entry, default)]\npub struct Entry { pub hits: u32, pub name: String, pub seen: bool }");
        let r = cmp("trivial", &[("src/main.rs", V1)], &[("src/main.rs", &trivial)]);
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);
        assert!(r.generated.contains("seen: ::core::default::Default::default()"), "{}", r.generated);
        let widened = trivial.replace("pub hits: u32,", "pub hits: u64,");
        let r = cmp("nontrivial", &[("src/main.rs", V1)], &[("src/main.rs", &widened)]);
        assert_eq!(r.refusals.len(), 1);
        assert!(r.refusals[0].reason.contains("field `hits` changed type"), "{:?}", r.refusals);
    }

    #[test]
    fn code_that_would_meet_the_new_layout_is_refused() {
        let v2 = V1.replace("pub hits: u32 }", "pub hits: u64 }") + "#[dsu::transform(from = dsu_old::Entry)]\n\
            fn up(old: &dsu_old::Entry) -> Entry { Entry { name: old.name.clone(), hits: old.hits.into() } }\n\
            #[dsu::updateable]\nfn first() -> Option<Entry> { None }\n\
            #[dsu::updateable]\nfn describe(e: &Entry) -> String { e.name.clone() }\n\
            fn plain() -> usize { STORE.lock().unwrap().len() }\n";
        let old = format!("{V1}#[dsu::updateable]\nfn first() -> Option<Entry> {{ STORE.lock().unwrap().values().next().map(|e| Entry {{ name: e.name.clone(), hits: e.hits }}) }}\n\
            #[dsu::updateable]\nfn describe(e: &Entry) -> String {{ e.name.clone() }}\n");
        let r = cmp("routing", &[("src/main.rs", &old)], &[("src/main.rs", &v2)]);
        let reasons: Vec<&str> = r.refusals.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons.iter().any(|x| x.contains("cannot route `app::first`") && x.contains("reads `STORE`")), "{reasons:?}");
        assert!(reasons.iter().any(|x| x.contains("`app::plain` uses `STORE`")), "{reasons:?}");
        assert_eq!(paths(&r.functions_routed), ["app::describe"]);
    }

    #[test]
    fn dependency_changes_are_refused() {
        let more = format!("{MANIFEST}log = \"0.4\"\n");
        let r = cmp(
            "deps",
            &[("src/main.rs", ""), ("Cargo.toml", MANIFEST)],
            &[("src/main.rs", ""), ("Cargo.toml", &more)],
        );
        assert_eq!(r.refusals.len(), 1);
        assert_eq!((r.refusals[0].file.as_str(), r.refusals[0].line), ("Cargo.toml", 5));
        let r = cmp(
            "lock",
            &[("src/main.rs", ""), ("Cargo.lock", "a")],
            &[("src/main.rs", ""), ("Cargo.lock", "b")],
        );
        assert_eq!(r.refusals.len(), 1);
        assert_eq!(r.refusals[0].file, "Cargo.lock");
        // A version bump alone is no dependency change.
        let bumped = MANIFEST.replace("0.1.0", "0.2.0");
        let r = cmp("bump", &[("src/main.rs", ""), ("Cargo.toml", MANIFEST)], &[("src/main.rs", ""), ("Cargo.toml", &bumped)]);
        assert!(r.refusals.is_empty());
    }

    #[test]
    fn method_paths_match_the_macros() {
        let old = "#[dsu::updateable]\nimpl Counter { fn bump(&mut self) {} }\n\
                   #[dsu::updateable]\nimpl fmt::Display for Counter { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { Ok(()) } }\n";
        let new = old.replace("{} }", "{ let _ = 1; } }").replace("{ Ok(()) }", "{ write!(f, \"x\") }");
        let r = cmp("methods", &[("src/main.rs", old)], &[("src/main.rs", &new)]);
        assert_eq!(paths(&r.functions_changed), ["app::Counter::bump", "app::<Counter as fmt::Display>::fmt"]);
    }

    #[test]
    fn modules_from_files_and_inline() {
        let f = "#[dsu::updateable]\nfn serve() {}\nmod inner {\n#[dsu::updateable]\nfn deep() {}\n}\n";
        let g = f.replace("fn serve() {}", "fn serve() { () }").replace("fn deep() {}", "fn deep() { () }");
        let r = cmp("mods", &[("src/main.rs", ""), ("src/net/mod.rs", f)], &[("src/main.rs", ""), ("src/net/mod.rs", &g)]);
        assert_eq!(paths(&r.functions_changed), ["app::net::serve", "app::net::inner::deep"]);
        assert_eq!(module_path("app", "src/a/b.rs"), "app::a::b");
    }

    #[test]
    fn unparsable_file_names_file_and_line() {
        let a = pkg("bad-old", &[("src/main.rs", "fn a() {}\n")]);
        let b = pkg("bad-new", &[("src/main.rs", "fn a() {}\nfn b( {\n")]);
        let e = compare("app", &a, &b).unwrap_err().to_string();
        assert!(e.starts_with("src/main.rs:"), "{e}");
        assert!(e.contains("cannot parse"), "{e}");
    }
}
