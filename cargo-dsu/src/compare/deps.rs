//! Part of the compare step: the program and every patch share one dependency library, so a
//! patch cannot bring other dependencies, versions or features. What a patch is refused for is
//! a change of what the program's build would be made of: the packages a build of the program's
//! package links (normal dependencies, for the target), with the procedural macros and build
//! scripts' dependencies that write its code, each with its version, source and features, and
//! the features of the program's own packages (the patch is compiled with the running build's).
//!
//! The graph is resolved by cargo itself (`cargo tree -e normal,build`, in each checkout), so
//! a dev-dependency bump, a change to another package of the workspace (a separate CLI crate),
//! or a lock entry outside the program's graph is no change. A set package's own version bump
//! is none either. Cargo runs only when a manifest, the lock file or cargo's configuration
//! differs between the revisions; a refusal names each crate that changed, with both versions
//! or the features added and removed.

use super::Refusal;
use crate::deps_library::{parse_tree, Resolved};
use crate::identity;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const RESTART: &str = "the program's shared dependency library would differ, and a patch \
    cannot change it (dependencies changed): rebuild with `cargo dsu build` and restart";

/// What the dependency check needs to know about the program, the same at both revisions.
pub struct Program<'a> {
    /// The cargo to run.
    pub cargo: &'a Path,
    /// The package whose binaries are patched.
    pub package: &'a str,
    /// The target triple the program is built for.
    pub triple: &'a str,
    /// The workspace's directory, relative to the checkout roots.
    pub workspace_dir: &'a Path,
    /// The directories of the updateable set's packages, relative to the checkout roots: where a
    /// refusal looks for the line that names a changed crate.
    pub package_dirs: &'a [&'a Path],
}

/// The dependency changes between the checkouts `old_root` and `new_root` that a patch cannot
/// follow, one refusal per crate.
pub fn refuse_changed_dependencies(program: &Program, old_root: &Path, new_root: &Path) -> Result<Vec<Refusal>> {
    let (old_inputs, new_inputs) = (resolution_inputs(old_root)?, resolution_inputs(new_root)?);
    if old_inputs == new_inputs {
        return Ok(Vec::new());
    }
    let lock = program.workspace_dir.join("Cargo.lock");
    // Cargo runs in the checkout: a relative root (a relative --target-dir) would be taken twice.
    let (old_root, new_root) = (&std::path::absolute(old_root)?, &std::path::absolute(new_root)?);
    let graphs = graph(program, old_root, &old_inputs).and_then(|old| Ok((old, graph(program, new_root, &new_inputs)?)));
    let (old, new) = match graphs {
        Ok(graphs) => graphs,
        Err(e) => {
            return Ok(vec![Refusal {
                file: lock.display().to_string(),
                line: 1,
                reason: format!(
                    "dependencies changed, and cargo cannot resolve them ({e:#}), so whether the \
                     shared dependency library would differ is unknown: rebuild with `cargo dsu \
                     build` and restart"
                ),
            }]);
        }
    };
    let manifests = program_manifests(program, new_root);
    let lock_text = std::fs::read_to_string(new_root.join(&lock)).unwrap_or_default();
    Ok(differences(&old, &new)
        .into_iter()
        .map(|d| {
            let (file, line) = declaration(&manifests, &d.name)
                .or_else(|| lock_line(&lock_text, &d.name, d.new_version()).map(|l| (lock.clone(), l)))
                .unwrap_or_else(|| (lock.clone(), 1));
            Refusal { file: file.display().to_string(), line, reason: format!("{}: {RESTART}", d.describe()) }
        })
        .collect())
}

/// The files whose contents decide how cargo resolves the package's dependencies: every
/// manifest and lock file of the checkout, and cargo's configuration in it (`[patch]`, source
/// replacement), by path relative to the root.
fn resolution_inputs(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = Vec::new();
    identity::collect_files(root, root, &mut files)?;
    for config in [".cargo/config.toml", ".cargo/config"] {
        if root.join(config).is_file() {
            files.push(config.to_string());
        }
    }
    let mut inputs = BTreeMap::new();
    for rel in files {
        let name = Path::new(&rel).file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if matches!(name, "Cargo.toml" | "Cargo.lock") || rel.starts_with(".cargo/") {
            let bytes = std::fs::read(root.join(&rel)).with_context(|| format!("reading {}", root.join(&rel).display()))?;
            inputs.insert(rel, bytes);
        }
    }
    Ok(inputs)
}

/// One package of the graph, as compared: its name, version and features, and where it comes
/// from with the checkout's own directory left out (the two checkouts differ there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Node {
    name: String,
    version: String,
    source: String,
    features: BTreeSet<String>,
    /// A package of the program's own source (a path inside the checkout): its version may
    /// change freely.
    own: bool,
}

/// Graphs already resolved in this process, by the resolution inputs' hash: a history walks
/// every revision twice, once as the newer and once as the older.
static GRAPHS: Mutex<Option<HashMap<String, Vec<Node>>>> = Mutex::new(None);

/// The package's graph at the checkout `root`, as a build of it resolves it.
fn graph(program: &Program, root: &Path, inputs: &BTreeMap<String, Vec<u8>>) -> Result<Vec<Node>> {
    let mut key = Vec::new();
    for (path, bytes) in inputs {
        key.extend_from_slice(path.as_bytes());
        key.extend_from_slice(identity::hex_hash(bytes).as_bytes());
    }
    key.extend_from_slice(format!("{}\0{}", program.package, program.triple).as_bytes());
    let key = identity::hex_hash(&key);
    if let Some(g) = GRAPHS.lock().unwrap().get_or_insert_with(HashMap::new).get(&key) {
        return Ok(g.clone());
    }
    let resolved = cargo_tree(program, root)?;
    // Cargo may write the checkout's directory as given or with its links resolved.
    let roots: Vec<String> = [Some(root.to_path_buf()), root.canonicalize().ok()]
        .into_iter()
        .flatten()
        .map(|r| r.display().to_string())
        .collect();
    let inside = |source: &str| {
        roots.iter().find_map(|r| {
            let rest = source.strip_prefix(r.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| rest.trim_start_matches('/').to_string())
        })
    };
    let mut nodes: Vec<Node> = resolved
        .into_iter()
        .map(|r: Resolved| match inside(&r.source) {
            Some(rel) => Node { name: r.name, version: r.version, source: rel, features: r.features, own: true },
            None => Node { name: r.name, version: r.version, source: r.source, features: r.features, own: false },
        })
        .collect();
    nodes.sort();
    GRAPHS.lock().unwrap().get_or_insert_with(HashMap::new).insert(key, nodes.clone());
    Ok(nodes)
}

/// `cargo tree` of the package in the checkout `root`: normal and build dependencies on the
/// target, procedural macros' own subtrees left out (as the dependency library does). With the
/// lock file as it is when it covers the manifests; otherwise cargo resolves as a build of that
/// revision would, and the lock file it rewrites is put back (the checkout must hold exactly its
/// revision).
fn cargo_tree(program: &Program, root: &Path) -> Result<Vec<Resolved>> {
    let manifest = root.join(program.workspace_dir).join("Cargo.toml");
    let lock = manifest.with_file_name("Cargo.lock");
    let run = |locked: bool| {
        let mut cmd = Command::new(program.cargo);
        cmd.args(["tree", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", program.package, "-e", "normal,build", "--target", program.triple])
            .args(["--no-dedupe", "--prefix", "depth", "-f", "{p}|{f}"])
            .current_dir(root);
        if locked {
            cmd.arg("--locked");
        }
        cmd.output().with_context(|| format!("running {} tree", program.cargo.display()))
    };
    let mut out = run(true)?;
    if !out.status.success() {
        let saved = std::fs::read(&lock).ok();
        out = run(false)?;
        match saved {
            Some(bytes) => crate::build::write_if_changed(&lock, &bytes)?,
            None => {
                let _ = std::fs::remove_file(&lock);
            }
        }
    }
    if !out.status.success() {
        bail!("cargo tree: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_tree(&String::from_utf8(out.stdout).context("cargo tree output is not UTF-8")?)
}

/// How one crate differs between the graphs.
#[derive(Debug, PartialEq, Eq)]
struct Difference {
    name: String,
    old: Option<Node>,
    new: Option<Node>,
}

impl Difference {
    fn new_version(&self) -> Option<&str> {
        self.new.as_ref().map(|n| n.version.as_str())
    }

    fn describe(&self) -> String {
        let name = &self.name;
        let at = |n: &Node| if n.source.is_empty() || n.own { n.version.clone() } else { format!("{} ({})", n.version, n.source) };
        match (&self.old, &self.new) {
            (Some(o), Some(n)) if o.own => format!("package `{name}` {}", features_change(o, n)),
            (Some(o), Some(n)) if at(o) == at(n) => format!("dependency `{name}` {} {}", n.version, features_change(o, n)),
            (Some(o), Some(n)) if o.features == n.features => format!("dependency `{name}` {} → {}", at(o), at(n)),
            (Some(o), Some(n)) => format!("dependency `{name}` {} → {}, {}", at(o), at(n), features_change(o, n)),
            (None, Some(n)) if n.own => format!("package `{name}` joins the program"),
            (Some(o), None) if o.own => format!("package `{name}` leaves the program"),
            (None, Some(n)) => format!("dependency `{name}` {} added", at(n)),
            (Some(o), None) => format!("dependency `{name}` {} removed", at(o)),
            (None, None) => unreachable!("a difference has a side"),
        }
    }
}

/// `features +a +b -c`.
fn features_change(old: &Node, new: &Node) -> String {
    let mut words = vec!["features".to_string()];
    words.extend(new.features.difference(&old.features).map(|f| format!("+{f}")));
    words.extend(old.features.difference(&new.features).map(|f| format!("-{f}")));
    words.join(" ")
}

/// The crates whose version, source or features differ, or that only one graph has. Several
/// versions of one crate are paired by version first, then in order. The program's own
/// packages are compared by their features only.
fn differences(old: &[Node], new: &[Node]) -> Vec<Difference> {
    let by_name = |nodes: &[Node]| {
        let mut m: BTreeMap<String, Vec<Node>> = BTreeMap::new();
        for n in nodes {
            m.entry(n.name.clone()).or_default().push(n.clone());
        }
        m
    };
    let (mut old, mut new) = (by_name(old), by_name(new));
    let names: BTreeSet<String> = old.keys().chain(new.keys()).cloned().collect();
    let mut out = Vec::new();
    for name in names {
        let (mut o, mut n) = (old.remove(&name).unwrap_or_default(), new.remove(&name).unwrap_or_default());
        // Identical on both sides, or the same own package at another version: no change.
        let same = |a: &Node, b: &Node| a == b || (a.own && b.own && a.source == b.source && a.features == b.features);
        o.retain(|a| match n.iter().position(|b| same(a, b)) {
            Some(i) => {
                n.remove(i);
                false
            }
            None => true,
        });
        // Pairs of one version (or one own package), then whatever remains, in order.
        let mut pairs = Vec::new();
        o.retain(|a| match n.iter().position(|b| a.version == b.version || (a.own && b.own)) {
            Some(i) => {
                pairs.push((Some(a.clone()), Some(n.remove(i))));
                false
            }
            None => true,
        });
        let (mut o, mut n) = (o.into_iter(), n.into_iter());
        loop {
            match (o.next(), n.next()) {
                (None, None) => break,
                pair => pairs.push(pair),
            }
        }
        out.extend(pairs.into_iter().map(|(old, new)| Difference { name: name.clone(), old, new }));
    }
    out
}

/// The manifests of the program's packages and of its workspace, at the newer revision:
/// `(path relative to the root, text)`.
fn program_manifests(program: &Program, root: &Path) -> Vec<(PathBuf, String)> {
    let mut paths: Vec<PathBuf> = program.package_dirs.iter().map(|d| d.join("Cargo.toml")).collect();
    paths.push(program.workspace_dir.join("Cargo.toml"));
    paths.dedup();
    paths.into_iter().filter_map(|p| Some((p.clone(), std::fs::read_to_string(root.join(&p)).ok()?))).collect()
}

/// The first line of a manifest that declares the dependency `name` (`name = …`, `name.workspace
/// = true`, `[dependencies.name]`, or `package = "name"` under another key).
fn declaration(manifests: &[(PathBuf, String)], name: &str) -> Option<(PathBuf, usize)> {
    let quoted = format!("\"{name}\"");
    manifests.iter().find_map(|(path, text)| {
        let line = text.lines().position(|l| {
            let l = l.trim_start();
            let key = l.strip_prefix(name).or_else(|| l.strip_prefix(quoted.as_str()));
            key.is_some_and(|rest| rest.trim_start().starts_with(['=', '.']))
                || (l.starts_with('[') && l.trim_end().ends_with(&format!("dependencies.{name}]")))
                || l.contains(&format!("package = {quoted}"))
        })?;
        Some((path.clone(), line + 1))
    })
}

/// The line of the lock file's entry for `name` (at `version` when given).
fn lock_line(lock: &str, name: &str, version: Option<&str>) -> Option<usize> {
    let lines: Vec<&str> = lock.lines().collect();
    let entry = format!("name = \"{name}\"");
    (0..lines.len()).find(|&i| {
        lines[i].trim() == entry
            && version.is_none_or(|v| lines.get(i + 1).is_some_and(|l| l.trim() == format!("version = \"{v}\"")))
    }).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, version: &str, features: &[&str]) -> Node {
        Node {
            name: name.into(),
            version: version.into(),
            source: String::new(),
            features: features.iter().map(|f| f.to_string()).collect(),
            own: false,
        }
    }

    fn own(name: &str, version: &str, features: &[&str]) -> Node {
        Node { source: format!("crates/{name}"), own: true, ..node(name, version, features) }
    }

    fn described(old: &[Node], new: &[Node]) -> Vec<String> {
        differences(old, new).iter().map(Difference::describe).collect()
    }

    #[test]
    fn each_changed_crate_is_named_with_both_values() {
        let old = [own("app", "0.1.0", &["default"]), node("serde", "1.0.200", &["std"]), node("tokio", "1.40.0", &["rt"])];
        let new = [own("app", "0.2.0", &["default"]), node("serde", "1.0.210", &["std"]), node("tokio", "1.40.0", &["fs", "rt"])];
        assert_eq!(described(&old, &new), ["dependency `serde` 1.0.200 → 1.0.210", "dependency `tokio` 1.40.0 features +fs"]);
    }

    #[test]
    fn added_removed_and_own_features() {
        let old = [own("app", "0.1.0", &["fast"]), node("itoa", "1.0.18", &[]), node("log", "0.4.1", &[])];
        let new = [own("app", "0.1.0", &[]), node("itoa", "1.0.18", &[]), node("ryu", "1.0.0", &[])];
        assert_eq!(
            described(&old, &new),
            ["package `app` features -fast", "dependency `log` 0.4.1 removed", "dependency `ryu` 1.0.0 added"]
        );
    }

    #[test]
    fn two_versions_of_one_crate_pair_by_version() {
        let old = [node("syn", "1.0.109", &[]), node("syn", "2.0.1", &["full"])];
        let new = [node("syn", "1.0.109", &[]), node("syn", "2.0.2", &["full"])];
        assert_eq!(described(&old, &new), ["dependency `syn` 2.0.1 → 2.0.2"]);
        assert!(described(&old, &old).is_empty());
    }

    /// A workspace of two binaries' packages, `app` and `cli`, each with a path dependency of
    /// its own; `cli_deps` is the `[dependencies]` table of `cli`.
    fn workspace(root: &Path, cli_deps: &str, app_features: &str) {
        let files = [
            ("Cargo.toml", "[workspace]\nmembers = [\"app\", \"cli\"]\nresolver = \"2\"\n".to_string()),
            ("app/Cargo.toml", format!("[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\ncore_a = {{ path = \"../core_a\" }}\n[features]\n{app_features}\n")),
            ("app/src/main.rs", "fn main() {}\n".into()),
            ("cli/Cargo.toml", format!("[package]\nname = \"cli\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\n{cli_deps}\n")),
            ("cli/src/main.rs", "fn main() {}\n".into()),
        ];
        for (rel, text) in files.iter().cloned().chain(["core_a", "core_b"].map(|c| {
            (if c == "core_a" { "core_a/Cargo.toml" } else { "core_b/Cargo.toml" }, format!("[package]\nname = \"{c}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"))
        })) {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        for c in ["core_a", "core_b"] {
            std::fs::create_dir_all(root.join(c).join("src")).unwrap();
            std::fs::write(root.join(c).join("src/lib.rs"), "").unwrap();
        }
    }

    #[test]
    fn another_packages_dependencies_are_no_change_and_the_checkout_stays_as_it_was() {
        // Relative (cargo runs the test in the package's directory), as a relative --target-dir
        // makes the checkouts: cargo runs in them and must not take the path twice.
        let dir = PathBuf::from(format!("../target/tmp/dsu-deps-graph-{}", std::process::id()));
        let (old, new) = (dir.join("old"), dir.join("new"));
        workspace(&old, "", "fast = []");
        workspace(&new, "core_b = { path = \"../core_b\" }", "fast = []");
        let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
        let triple = crate::identity::Rustc::detect().unwrap().host;
        let (app, cli) = ([Path::new("app"), Path::new("core_a")], [Path::new("cli")]);
        let program = |package, package_dirs| Program { cargo: &cargo, package, triple: &triple, workspace_dir: Path::new(""), package_dirs };
        assert!(refuse_changed_dependencies(&program("app", &app), &old, &new).unwrap().is_empty());
        assert!(!new.join("Cargo.lock").exists(), "the lock file cargo wrote is taken back");
        let refusals = refuse_changed_dependencies(&program("cli", &cli), &old, &new).unwrap();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(refusals[0].reason.starts_with("package `core_b` joins the program"), "{refusals:?}");
        assert_eq!((refusals[0].file.as_str(), refusals[0].line), ("cli/Cargo.toml", 6));

        workspace(&new, "", "fast = []\ndefault = [\"fast\"]");
        let refusals = refuse_changed_dependencies(&program("app", &app), &old, &new).unwrap();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(refusals[0].reason.starts_with("package `app` features +default +fast"), "{refusals:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refusals_point_at_the_declaration_or_the_lock_entry() {
        let manifests = vec![(
            PathBuf::from("Cargo.toml"),
            "[package]\nname = \"app\"\n[dependencies]\nlog = \"0.4\"\n[dependencies.serde]\nversion = \"1\"\n".to_string(),
        )];
        assert_eq!(declaration(&manifests, "log"), Some(("Cargo.toml".into(), 4)));
        assert_eq!(declaration(&manifests, "serde"), Some(("Cargo.toml".into(), 5)));
        assert_eq!(declaration(&manifests, "app"), None, "`name = \"app\"` declares no dependency");
        let lock = "[[package]]\nname = \"mio\"\nversion = \"0.8.0\"\n\n[[package]]\nname = \"mio\"\nversion = \"1.0.0\"\n";
        assert_eq!(lock_line(lock, "mio", Some("1.0.0")), Some(6));
        assert_eq!(lock_line(lock, "mio", None), Some(2));
    }
}
