//! Step 1 of the pipeline: find the package, its binaries, its workspace and the *updateable
//! set*: every crate of the program that a patch may replace.
//!
//! The updateable set of a binary is the binary's crate plus the library crate of every package
//! it reaches through path dependencies (its own package's library, workspace members, path
//! dependencies outside the workspace), transitively. Registry dependencies, the dsu runtime and
//! procedural-macro crates are not in it: they go into the shared dependency library, which a
//! patch never changes.

use crate::identity::Rustc;
use anyhow::{Context, Result};
use cargo_metadata::{DependencyKind, Metadata, MetadataCommand, Package, PackageId, TargetKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `Cargo.toml` of the package; found upward from the working directory, as cargo does, when
    /// `None`.
    pub manifest_path: Option<PathBuf>,
    /// The package, by name; the manifest's package when `None`.
    pub package: Option<String>,
    /// The binary target; every binary of the package when `None`.
    pub bin: Option<String>,
    pub release: bool,
    /// Target directory; the workspace's when `None`.
    pub target_dir: Option<PathBuf>,
    /// The `cargo-dsu` executable, run as rustc wrapper.
    pub wrapper: PathBuf,
    /// The cargo to run.
    pub cargo: PathBuf,
    /// Public key files (`NAME.pub`) the program trusts to sign its patches
    /// (`cargo dsu build --trust`): kept in its build identity, so it then loads only patches
    /// signed by one of them.
    pub trust: Vec<PathBuf>,
    /// Compile the program and its dependency library with the initial-exec TLS model
    /// (`cargo dsu build --initial-exec-tls`; a nightly compiler; see
    /// `deps_library::INITIAL_EXEC_TLS`).
    pub initial_exec_tls: bool,
}

impl BuildOptions {
    pub fn new(manifest_path: impl Into<PathBuf>, wrapper: impl Into<PathBuf>) -> Self {
        BuildOptions {
            manifest_path: Some(manifest_path.into()),
            package: None,
            bin: None,
            release: false,
            target_dir: None,
            wrapper: wrapper.into(),
            cargo: std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into()),
            trust: Vec::new(),
            initial_exec_tls: false,
        }
    }

    pub fn profile(&self) -> &'static str {
        if self.release { "release" } else { "debug" }
    }
}

/// The program's crate cannot be built in updateable form (no binary, no `dsu` dependency, no
/// `cargo dsu build` yet).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotUpdateable(pub String);

/// Whether a crate of the set is a library or a binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrateKind {
    Lib,
    Bin,
}

impl CrateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CrateKind::Lib => "lib",
            CrateKind::Bin => "bin",
        }
    }
}

/// One crate of the updateable set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetCrate {
    /// The package it belongs to, by name and by cargo's package id.
    pub package: String,
    pub package_id: String,
    /// Its crate name as rustc knows it (`-` replaced by `_`).
    pub crate_name: String,
    pub kind: CrateKind,
    /// Its root source file, absolute.
    pub root_file: PathBuf,
    /// Its package's directory, absolute.
    pub package_root: PathBuf,
}

impl SetCrate {
    /// This crate as the compare step reads it: its files relative to `source_root` (the root a
    /// checkout of the source stands for), compiled under `cfg` when that is known.
    pub fn unit(&self, source_root: &Path, cfg: Option<dsu_syntax::CfgSet>) -> crate::compare::CrateUnit {
        let rel = |p: &Path| p.strip_prefix(source_root).map(Path::to_path_buf).unwrap_or_else(|_| p.to_path_buf());
        crate::compare::CrateUnit {
            crate_name: self.crate_name.clone(),
            root_file: rel(&self.root_file),
            package_dir: rel(&self.package_root),
            cfg,
        }
    }
}

/// A binary of the package and the crates of its updateable set, dependencies first, the
/// binary's own crate last.
#[derive(Debug, Clone)]
pub struct Program {
    pub bin: String,
    pub crates: Vec<SetCrate>,
}

impl Program {
    pub fn bin_crate(&self) -> &SetCrate {
        self.crates.last().expect("a program has its binary's crate")
    }
}

/// Where a package's updateable build lives, and what it is made of.
pub struct Target {
    pub metadata: Metadata,
    pub package_id: PackageId,
    pub package_name: String,
    pub package_root: PathBuf,
    /// The binaries to build or patch, each with its updateable set.
    pub programs: Vec<Program>,
    /// The directory holding every package of the updateable sets and the workspace root: what
    /// `cargo dsu patch` checks out, and what a build's source tree hash covers.
    pub source_root: PathBuf,
    pub rustc: Rustc,
    /// Target triple (the host's).
    pub triple: String,
    pub target_dir: PathBuf,
    /// `<target dir>/dsu`.
    pub dsu_dir: PathBuf,
    /// `<target dir>/dsu/<profile>`.
    pub out_dir: PathBuf,
}

impl Target {
    /// The packages of every program's updateable set.
    pub fn set_packages(&self) -> BTreeSet<PackageId> {
        let mut ids = BTreeSet::new();
        ids.insert(self.package_id.clone());
        for c in self.programs.iter().flat_map(|p| &p.crates) {
            ids.insert(PackageId { repr: c.package_id.clone() });
        }
        ids
    }
}

/// Finds the package, its binaries, their updateable sets and the build's directories.
pub fn locate(opts: &BuildOptions) -> Result<Target> {
    let rustc = Rustc::detect()?;
    let triple = rustc.host.clone();
    let manifest = match &opts.manifest_path {
        Some(m) => m.clone(),
        None => find_manifest(&std::env::current_dir()?)?,
    };
    let metadata = MetadataCommand::new()
        .cargo_path(&opts.cargo)
        .manifest_path(&manifest)
        .other_options(vec!["--filter-platform".into(), triple.clone()])
        .exec()
        .map_err(|e| NotUpdateable(format!("cannot read the package at {}: {e}", manifest.display())))?;
    let package = root_package(&metadata, &manifest, opts.package.as_deref())?;
    let bins = pick_bins(package, opts.bin.as_deref())?;
    let programs = bins
        .iter()
        .map(|bin| program(&metadata, package, bin))
        .collect::<Result<Vec<_>>>()?;
    let package_root = package_dir(package);
    let mut roots: Vec<PathBuf> = vec![metadata.workspace_root.clone().into_std_path_buf()];
    roots.extend(programs.iter().flat_map(|p| p.crates.iter().map(|c| c.package_root.clone())));
    let source_root = common_ancestor(&roots);
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| metadata.target_directory.clone().into_std_path_buf());
    let dsu_dir = target_dir.join("dsu");
    let out_dir = dsu_dir.join(opts.profile());
    Ok(Target {
        package_id: package.id.clone(),
        package_name: package.name.to_string(),
        package_root,
        programs,
        source_root,
        rustc,
        triple,
        target_dir,
        dsu_dir,
        out_dir,
        metadata,
    })
}

/// The nearest `Cargo.toml` at or above `dir`, as cargo finds it.
pub fn find_manifest(dir: &Path) -> Result<PathBuf> {
    dir.ancestors().map(|d| d.join("Cargo.toml")).find(|m| m.is_file()).ok_or_else(|| {
        NotUpdateable(format!("no Cargo.toml in {} or any directory above it", dir.display())).into()
    })
}

pub fn package_dir(p: &Package) -> PathBuf {
    p.manifest_path.parent().expect("manifest has a parent").as_std_path().to_path_buf()
}

/// The deepest directory containing every one of `dirs`.
fn common_ancestor(dirs: &[PathBuf]) -> PathBuf {
    let mut common = dirs[0].clone();
    for d in &dirs[1..] {
        while !d.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    common
}

/// Whether a package belongs to the program (and so to the updateable set) rather than to the
/// shared dependency library: it comes from a path, it is not the dsu runtime, and it is not a
/// procedural-macro crate (which runs inside the compiler, not in the program).
pub fn is_program_package(p: &Package) -> bool {
    p.source.is_none()
        && p.name.as_str() != "dsu"
        && !p.targets.iter().any(|t| t.kind.contains(&TargetKind::ProcMacro))
}

/// The binary `bin` of `package` and its updateable set: the package's own library, if any, and
/// the library of every program package reached through normal dependencies, dependencies first.
fn program(metadata: &Metadata, package: &Package, bin: &cargo_metadata::Target) -> Result<Program> {
    let resolve = metadata.resolve.as_ref().context("cargo metadata gave no resolve graph")?;
    let nodes: BTreeMap<&PackageId, &cargo_metadata::Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    // Depth-first, dependencies before dependents.
    let mut order: Vec<&PackageId> = Vec::new();
    fn visit<'m>(
        id: &'m PackageId,
        metadata: &'m Metadata,
        nodes: &BTreeMap<&'m PackageId, &'m cargo_metadata::Node>,
        order: &mut Vec<&'m PackageId>,
    ) {
        if order.contains(&id) {
            return;
        }
        if let Some(node) = nodes.get(id) {
            for dep in &node.deps {
                let normal = dep.dep_kinds.iter().any(|k| k.kind == DependencyKind::Normal);
                if normal && is_program_package(&metadata[&dep.pkg]) {
                    visit(&dep.pkg, metadata, nodes, order);
                }
            }
        }
        order.push(id);
    }
    visit(&package.id, metadata, &nodes, &mut order);
    let mut crates = Vec::new();
    for id in order {
        let p = &metadata[id];
        if let Some(lib) = p.targets.iter().find(|t| t.is_lib() || t.kind.contains(&TargetKind::RLib)) {
            crates.push(set_crate(p, lib, CrateKind::Lib));
        }
    }
    crates.push(set_crate(package, bin, CrateKind::Bin));
    Ok(Program { bin: bin.name.clone(), crates })
}

fn set_crate(p: &Package, t: &cargo_metadata::Target, kind: CrateKind) -> SetCrate {
    SetCrate {
        package: p.name.to_string(),
        package_id: p.id.repr.clone(),
        crate_name: t.name.replace('-', "_"),
        kind,
        root_file: t.src_path.clone().into_std_path_buf(),
        package_root: package_dir(p),
    }
}

fn root_package<'m>(metadata: &'m Metadata, manifest: &Path, name: Option<&str>) -> Result<&'m Package> {
    let members = metadata.workspace_packages();
    if let Some(name) = name {
        return members.into_iter().find(|p| p.name.as_str() == name).ok_or_else(|| {
            NotUpdateable(format!("no package named `{name}` in the workspace")).into()
        });
    }
    let manifest = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
    if let Some(p) = members.iter().find(|p| p.manifest_path.as_std_path() == manifest).copied() {
        return Ok(p);
    }
    if let Some(p) = metadata.root_package() {
        return Ok(p);
    }
    // A virtual workspace: as `cargo run` does, its one package with binaries is meant.
    let with_bins: Vec<&Package> = members.into_iter().filter(|p| p.targets.iter().any(|t| t.is_bin())).collect();
    match with_bins.as_slice() {
        [one] => Ok(one),
        [] => Err(NotUpdateable("the workspace has no package with a binary".into()).into()),
        many => Err(NotUpdateable(format!(
            "the manifest is a virtual workspace with several packages that have binaries ({}); \
             choose one with -p",
            many.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
        ))
        .into()),
    }
}

/// The binary named `bin`, or every binary of the package.
fn pick_bins<'p>(package: &'p Package, bin: Option<&str>) -> Result<Vec<&'p cargo_metadata::Target>> {
    let bins: Vec<&cargo_metadata::Target> = package.targets.iter().filter(|t| t.is_bin()).collect();
    let names = || bins.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    match bin {
        Some(b) => match bins.iter().find(|t| t.name == b) {
            Some(t) => Ok(vec![*t]),
            None => Err(NotUpdateable(format!(
                "package {} has no binary named {b} (it has: {})",
                package.name,
                names()
            ))
            .into()),
        },
        None if bins.is_empty() => {
            Err(NotUpdateable(format!("package {} has no binary to build", package.name)).into())
        }
        None => Ok(bins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_ancestor_of_nested_and_sibling_directories() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(common_ancestor(&[p("/w"), p("/w/crates/a"), p("/w/b")]), p("/w"));
        assert_eq!(common_ancestor(&[p("/w/app"), p("/w/libs/x")]), p("/w"));
        assert_eq!(common_ancestor(&[p("/w/app")]), p("/w/app"));
    }

    #[test]
    fn manifest_is_found_upward() {
        let dir = std::env::temp_dir().join(format!("dsu-locate-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src/deep")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), "[package]\n").unwrap();
        assert_eq!(find_manifest(&dir.join("src/deep")).unwrap(), dir.join("Cargo.toml"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
