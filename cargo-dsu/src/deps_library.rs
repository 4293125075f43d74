//! Step 2 of the pipeline: the shared dependency library, one generated `dylib` crate,
//! `dsu_deps_<H>`, that links every crate the program uses but does not own (registry
//! dependencies, the dsu runtime), once, for the program and all its patches.
//!
//! Its dependencies are every package the program's crates reach through normal dependencies,
//! outside the updateable set, listed one by one with the exact version and the exact features
//! cargo gives it when it builds the program. The features come from `cargo tree` (which resolves
//! them as a build of the package does, with the workspace's resolver: dev-dependency features
//! unified under resolver 1, not under resolver 2), not from `cargo metadata` (which unifies
//! every target's). Listing the whole graph pins every crate's features, whatever resolver the
//! generated crate itself uses. `H` hashes the lock file, the generated manifest, `rustc -vV`,
//! the target, the profile and the flags, and is part of the crate's name, so a library built
//! differently never takes another's file name.

use crate::identity;
use crate::locate::{self, BuildOptions, NotUpdateable, Target};
use anyhow::{bail, Context, Result};
use cargo_metadata::{Metadata, Package};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Flags every crate of an updateable build is compiled with; host and patches must agree.
pub const RUSTFLAGS: &[&str] = &["-Cprefer-dynamic"];

/// `cargo dsu build --initial-exec-tls` (a nightly compiler): the program and its dependency
/// library reach their thread-locals with one `%fs`-relative load instead of a call to
/// `__tls_get_addr`, which a shared library's code otherwise makes for each (tokio reads its
/// context and budget from thread-locals at every poll: 2.8% of a tokio server's instructions,
/// docs/PERFORMANCE.md). The model is valid for both because they are loaded when the program
/// starts, so their thread-locals are in the static TLS block. A patch is `dlopen`ed later:
/// its crates are compiled without the flag (`patch_build` drops it), so its own thread-locals,
/// if any, are allocated as a loaded library's must be.
pub const INITIAL_EXEC_TLS: &str = "-Ztls-model=initial-exec";

/// The flags of an updateable build with these options.
pub fn rustflags(opts: &BuildOptions) -> Vec<&'static str> {
    let mut flags = RUSTFLAGS.to_vec();
    if opts.initial_exec_tls {
        flags.push(INITIAL_EXEC_TLS);
    }
    flags
}

/// The generated dependency library crate.
pub struct DepsCrate {
    pub name: String,
    pub hash: String,
    manifest: String,
    lib_rs: String,
}

/// One package of the program's dependency graph, with the features cargo builds it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub name: String,
    pub version: String,
    /// Where it comes from as `cargo tree` writes it: empty for crates.io, the directory of a
    /// path package, a git URL with its commit, `registry `name`` for another registry.
    pub source: String,
    pub features: BTreeSet<String>,
}

impl DepsCrate {
    pub fn generate(target: &Target, opts: &BuildOptions) -> Result<Self> {
        let metadata = &target.metadata;
        let set = target.set_packages();
        let resolved = cargo_tree_features(opts, target)?;
        let mut deps: BTreeMap<String, String> = BTreeMap::new();
        let mut uses_dsu = false;
        for p in &metadata.packages {
            if set.contains(&p.id) {
                continue;
            }
            let Some(r) = resolved.iter().find(|r| r.name == p.name.as_str() && r.version == p.version.to_string())
            else {
                continue;
            };
            if is_proc_macro(p) && p.name.as_str() != "dsu" {
                // Runs in the compiler; never linked into the program.
                continue;
            }
            let is_dsu = p.name.as_str() == "dsu";
            uses_dsu |= is_dsu;
            let mut features = r.features.clone();
            if is_dsu && async_runtime(&resolved) {
                // An `async` main loop with update points must not hold updates up: the runtime
                // recognises tokio's threads when the program links tokio's runtime.
                features.insert("tokio".into());
            }
            let key = if is_dsu { "dsu".to_string() } else { extern_name(p) };
            deps.insert(key, dependency_spec(p, &features)?);
        }
        if !uses_dsu {
            return Err(NotUpdateable(
                "no updateable crate: the package does not depend on `dsu`; add it to [dependencies]"
                    .into(),
            )
            .into());
        }
        let root_manifest = std::fs::read_to_string(metadata.workspace_root.join("Cargo.toml"))
            .context("reading the workspace manifest")?;
        let profiles = profile_tables(&root_manifest)?;

        let mut body = String::new();
        body.push_str("[lib]\ncrate-type = [\"dylib\"]\npath = \"lib.rs\"\n\n[dependencies]\n");
        for (name, spec) in &deps {
            writeln!(body, "{name} = {{ {spec} }}")?;
        }
        body.push_str("\n# Its own workspace: never a member of the user's.\n[workspace]\n\n");
        body.push_str(&profiles);

        let lock = std::fs::read(metadata.workspace_root.join("Cargo.lock")).unwrap_or_default();
        let hash = library_hash(&[
            &lock[..],
            body.as_bytes(),
            target.rustc.version_text.as_bytes(),
            target.triple.as_bytes(),
            opts.profile().as_bytes(),
            rustflags(opts).join(" ").as_bytes(),
        ]);
        let name = format!("dsu_deps_{hash}");
        let manifest = format!(
            "# Generated by cargo-dsu: the shared dependency library of an updateable build.\n\
             [package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n{body}"
        );
        let mut lib_rs = String::from(
            "//! Generated by cargo-dsu: every dependency of the program, linked once, shared by the\n\
             //! program and its patches.\n#![allow(unused_extern_crates)]\npub use dsu::*;\n",
        );
        for name in deps.keys() {
            writeln!(lib_rs, "extern crate {name} as _;")?;
        }
        Ok(DepsCrate { name, hash, manifest, lib_rs })
    }

    /// Writes the crate, touching no file whose content is unchanged: a new mtime would make cargo
    /// relink the library under the same name, and a running program would then refuse patches.
    pub fn write(&self, dir: &Path, metadata: &Metadata) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::build::write_if_changed(&dir.join("Cargo.toml"), self.manifest.as_bytes())?;
        crate::build::write_if_changed(&dir.join("lib.rs"), self.lib_rs.as_bytes())?;
        let lock = dir.join("Cargo.lock");
        if !lock.exists() {
            if let Ok(bytes) = std::fs::read(metadata.workspace_root.join("Cargo.lock")) {
                std::fs::write(&lock, bytes)?;
            }
        }
        Ok(())
    }
}

/// Whether the program links tokio with its runtime (the `rt` feature).
fn async_runtime(resolved: &[Resolved]) -> bool {
    resolved.iter().any(|r| r.name == "tokio" && r.features.contains("rt"))
}

fn library_hash(parts: &[&[u8]]) -> String {
    let mut key = Vec::new();
    for part in parts {
        key.extend_from_slice(identity::hex_hash(part).as_bytes());
    }
    identity::hex_hash(&key)
}

fn is_proc_macro(p: &Package) -> bool {
    p.targets.iter().any(|t| t.kind.contains(&cargo_metadata::TargetKind::ProcMacro))
}

/// A name for the package in the generated crate, unique even when the graph holds two
/// versions of one crate.
fn extern_name(p: &Package) -> String {
    let version: String =
        p.version.to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{}_{version}", p.name.replace('-', "_"))
}

/// The `[dependencies]` entry of one package: exact version (or path), exact features.
fn dependency_spec(p: &Package, features: &BTreeSet<String>) -> Result<String> {
    let mut spec = format!("package = {:?}, default-features = false", p.name.as_str());
    match &p.source {
        Some(s) if s.is_crates_io() => write!(spec, ", version = \"={}\"", p.version)?,
        Some(s) => bail!(
            "dependency {} comes from {s}: only crates.io and path dependencies are supported",
            p.name
        ),
        None => write!(spec, ", path = {:?}", locate::package_dir(p).display().to_string())?,
    }
    let features: Vec<String> = features.iter().map(|f| format!("{f:?}")).collect();
    write!(spec, ", features = [{}]", features.join(", "))?;
    Ok(spec)
}

/// Every package the program links, with its features as a build of the package resolves them:
/// `cargo tree -e normal` on the target platform, without descending into procedural macros
/// (whose dependencies are built for the compiler, not the program).
fn cargo_tree_features(opts: &BuildOptions, target: &Target) -> Result<Vec<Resolved>> {
    let manifest = target.metadata.workspace_root.join("Cargo.toml");
    let out = Command::new(&opts.cargo)
        .args(["tree", "--manifest-path"])
        .arg(manifest.as_std_path())
        .args(["-p", &target.package_name, "-e", "normal", "--target", &target.triple])
        .args(["--no-dedupe", "--prefix", "depth", "-f", "{p}|{f}"])
        .output()
        .with_context(|| format!("running {} tree", opts.cargo.display()))?;
    if !out.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    parse_tree(&String::from_utf8(out.stdout).context("cargo tree output is not UTF-8")?)
}

/// Parses `cargo tree --prefix depth -f '{p}|{f}'` output (edge-kind headers such as
/// `[build-dependencies]`, which carry no package, are skipped).
pub fn parse_tree(text: &str) -> Result<Vec<Resolved>> {
    let mut out: Vec<Resolved> = Vec::new();
    // Depth of the procedural macro whose subtree is being skipped.
    let mut skip_below: Option<usize> = None;
    for line in text.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())) {
        let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
        let depth: usize = line[..digits].parse().with_context(|| format!("cargo tree line {line:?}"))?;
        if skip_below.is_some_and(|d| depth > d) {
            continue;
        }
        skip_below = None;
        let (package, features) = line[digits..].split_once('|').with_context(|| format!("cargo tree line {line:?}"))?;
        if package.contains("(proc-macro)") {
            skip_below = Some(depth);
        }
        let mut words = package.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            bail!("cargo tree line {line:?}")
        };
        let version = version.trim_start_matches('v').to_string();
        let source = words.filter(|w| *w != "(proc-macro)" && *w != "(*)").collect::<Vec<_>>().join(" ");
        let source = source.trim_start_matches('(').trim_end_matches(')').to_string();
        let features: BTreeSet<String> = features
            .trim_end_matches(" (*)")
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect();
        match out.iter_mut().find(|r| r.name == name && r.version == version && r.source == source) {
            Some(r) => r.features.extend(features),
            None => out.push(Resolved { name: name.to_string(), version, source, features }),
        }
    }
    Ok(out)
}

/// The `[profile.*]` tables of the workspace manifest, re-serialised. They decide codegen flags,
/// so the dependency library must be built with the program's.
fn profile_tables(root_manifest: &str) -> Result<String> {
    let doc: toml::Table = root_manifest.parse().context("parsing the workspace manifest")?;
    let Some(profile) = doc.get("profile") else { return Ok(String::new()) };
    if let Some(t) = profile.as_table() {
        for (name, p) in t {
            if let Some(lto) = p.get("lto") {
                if lto.as_bool() != Some(false) && lto.as_str() != Some("off") {
                    bail!("profile.{name} sets lto = {lto}: an updateable build links dependencies as a shared library, so LTO must be off");
                }
            }
        }
    }
    let mut wrapper = toml::Table::new();
    wrapper.insert("profile".into(), profile.clone());
    Ok(toml::to_string(&wrapper)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_features_skip_the_compilers_side() {
        let text = "0kv v0.1.0 (/w)|\n\
                    1dsu v0.1.0 (/r)|\n\
                    2dsu-macros v0.1.0 (proc-macro) (/m)|\n\
                    3syn v2.0.1|full,parsing\n\
                    2tokio v1.2.3|rt,default\n\
                    1tokio v1.2.3|rt,default,net (*)\n\
                    1syn v2.0.1|parsing\n";
        let r = parse_tree(text).unwrap();
        let find = |n: &str| r.iter().find(|x| x.name == n).unwrap().features.iter().cloned().collect::<Vec<_>>();
        assert_eq!(find("tokio"), ["default", "net", "rt"]);
        assert_eq!(find("syn"), ["parsing"], "the macro's syn is not the program's");
        assert!(r.iter().any(|x| x.name == "dsu-macros"));
        let source = |n: &str| r.iter().find(|x| x.name == n).unwrap().source.clone();
        assert_eq!((source("dsu-macros"), source("tokio")), ("/m".to_string(), String::new()));
    }
}
