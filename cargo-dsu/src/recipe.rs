//! The build recipe: how an unmodified crate is built in updateable form, on one shared runtime,
//! and how a patch is built against that exact build.
//!
//! 1. **Dependency library.** One generated `dylib` crate, `dsu_deps_<H>`, depends on every
//!    normal dependency of the package with the exact versions and features of its `Cargo.lock`,
//!    names each with `extern crate <dep> as _;` and re-exports `dsu::*`. `H` hashes the lock
//!    file, the generated manifest, `rustc -vV`, the target, the profile and the flags, and is
//!    part of the crate's name, so a library built differently never takes another's file name.
//! 2. **Program.** The package is built in place, unchanged, with the same flags
//!    (`-C prefer-dynamic`, an explicit `--target`, one target directory), through the wrapper
//!    (see [`crate::wrapper`]) that points its `dsu` extern at the dependency library. Every
//!    dependency then reaches the program through that one library, and so does std.
//! 3. **Output.** The binary, the dependency library and the toolchain's `libstd-*.so` are
//!    copied side by side into `<target>/dsu/<profile>/`, with the build record beside them.
//! 4. **Patch.** The recorded rustc invocation of the program's crate is run again on the newer
//!    source, as a `cdylib`, with the patch header appended to the crate root.

use crate::identity::{self, Rustc};
use crate::wrapper::{self, RustcInvocation, WrapperConfig};
use anyhow::{bail, Context, Result};
use cargo_metadata::{Message, Metadata, MetadataCommand, PackageId};
use dsu_abi::{BuildIdentity, Manifest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Flags every crate of an updateable build is compiled with; host and patches must agree.
pub const RUSTFLAGS: &[&str] = &["-Cprefer-dynamic"];

/// Environment variable naming the file that holds a patch's header and manifest while it builds.
const PATCH_BLOB_ENV: &str = "DSU_PATCH_HEADER_FILE";

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `Cargo.toml` of the package to build.
    pub manifest_path: PathBuf,
    /// The package, by name; the manifest's package when `None`.
    pub package: Option<String>,
    /// The binary target; the package's only binary when `None`.
    pub bin: Option<String>,
    pub release: bool,
    /// Target directory; the workspace's when `None`.
    pub target_dir: Option<PathBuf>,
    /// The `cargo-dsu` executable, run as rustc wrapper.
    pub wrapper: PathBuf,
    /// The cargo to run.
    pub cargo: PathBuf,
}

impl BuildOptions {
    pub fn new(manifest_path: impl Into<PathBuf>, wrapper: impl Into<PathBuf>) -> Self {
        BuildOptions {
            manifest_path: manifest_path.into(),
            package: None,
            bin: None,
            release: false,
            target_dir: None,
            wrapper: wrapper.into(),
            cargo: std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into()),
        }
    }

    fn profile(&self) -> &'static str {
        if self.release { "release" } else { "debug" }
    }
}

/// Everything about a finished updateable build; saved as `<bin>.dsu.json` beside the binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    pub identity: SerdeIdentity,
    /// Root directory of the package that was built.
    pub package_root: PathBuf,
    pub bin: String,
    /// The runnable binary in the output directory.
    pub binary: PathBuf,
    pub out_dir: PathBuf,
    pub deps_dylib: PathBuf,
    pub target_dir: PathBuf,
    pub invocation: RustcInvocation,
}

/// [`BuildIdentity`] in a serialisable form.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SerdeIdentity(pub String);

impl SerdeIdentity {
    pub fn get(&self) -> BuildIdentity {
        BuildIdentity::from_env_string(&self.0).expect("identity written by this tool")
    }
}

impl BuildRecord {
    pub fn identity(&self) -> BuildIdentity {
        self.identity.get()
    }

    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    pub fn record_path(out_dir: &Path, bin: &str) -> PathBuf {
        out_dir.join(format!("{bin}.dsu.json"))
    }
}

/// The program's crate cannot be built in updateable form (no binary, no `dsu` dependency, no
/// `cargo dsu build` yet).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotUpdateable(pub String);

/// The program or the patch did not compile; the compiler's errors were shown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileFailed(pub String);

/// The target directory cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to the target directory {}", .0.display())]
pub struct OutputNotWritable(pub PathBuf);

/// Where a package's updateable build lives.
pub struct Target {
    pub metadata: Metadata,
    pub package_id: PackageId,
    pub package_root: PathBuf,
    pub bin: String,
    /// The binary's crate name (`-` replaced by `_`).
    pub crate_name: String,
    pub rustc: Rustc,
    /// Target triple (the host's).
    pub triple: String,
    pub target_dir: PathBuf,
    /// `<target dir>/dsu`.
    pub dsu_dir: PathBuf,
    /// `<target dir>/dsu/<profile>`.
    pub out_dir: PathBuf,
}

/// Finds the package, its binary and its directories.
pub fn locate(opts: &BuildOptions) -> Result<Target> {
    let rustc = Rustc::detect()?;
    let triple = rustc.host.clone();
    let metadata = MetadataCommand::new()
        .cargo_path(&opts.cargo)
        .manifest_path(&opts.manifest_path)
        .other_options(vec!["--filter-platform".into(), triple.clone()])
        .exec()
        .map_err(|e| NotUpdateable(format!("cannot read the package at {}: {e}", opts.manifest_path.display())))?;
    let package = root_package(&metadata, &opts.manifest_path, opts.package.as_deref())?;
    let bin = pick_bin(package, opts.bin.as_deref())?;
    let package_root =
        package.manifest_path.parent().expect("manifest has a parent").as_std_path().to_path_buf();
    let target_dir = opts
        .target_dir
        .clone()
        .unwrap_or_else(|| metadata.target_directory.clone().into_std_path_buf());
    let dsu_dir = target_dir.join("dsu");
    let out_dir = dsu_dir.join(opts.profile());
    Ok(Target {
        package_id: package.id.clone(),
        crate_name: bin.replace('-', "_"),
        bin,
        package_root,
        rustc,
        triple,
        target_dir,
        dsu_dir,
        out_dir,
        metadata,
    })
}

/// Builds the package in updateable form. See the module documentation.
pub fn build(opts: &BuildOptions) -> Result<BuildRecord> {
    let Target {
        metadata, package_id, package_root, bin, crate_name, rustc, triple: target, target_dir, dsu_dir, out_dir,
    } = locate(opts)?;
    let probe = out_dir.join(".dsu-write-probe");
    std::fs::create_dir_all(&out_dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| anyhow::Error::new(OutputNotWritable(out_dir.clone())).context(e))?;

    // 1. The dependency library.
    let deps = DepsCrate::generate(&metadata, &package_id, &rustc, &target, opts)?;
    let deps_dir = dsu_dir.join("deps").join(&deps.name);
    deps.write(&deps_dir, &metadata)?;

    let source = identity::work_tree_state(&package_root)?;
    let identity = BuildIdentity {
        crate_name: crate_name.clone(),
        revision: source.revision,
        tree: source.tree,
        rustc: rustc.hash(),
        target: target.clone(),
        profile: opts.profile().into(),
        deps: deps.hash.clone(),
    };
    // Kept between builds: when cargo finds the program fresh, the wrapper does not run and the
    // previous invocation is still the right one.
    let record_tmp = out_dir.join(format!(".{bin}.rustc.json"));
    let mut config = WrapperConfig {
        deps_crate: deps.name.clone(),
        deps_dylib: None,
        deps_rlibs: Vec::new(),
        crate_name: crate_name.clone(),
        record: record_tmp.clone(),
    };
    let config_path = out_dir.join(".wrapper.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;

    let artifacts = cargo_build(
        opts,
        &deps_dir.join("Cargo.toml"),
        &target,
        &target_dir,
        &config_path,
        &[],
        None,
    )
    .context("building the shared dependency library")?;
    let deps_dylib = artifacts
        .iter()
        .flat_map(|a| a.filenames.iter())
        .find(|f| {
            f.file_name().is_some_and(|n| n.starts_with(&format!("lib{}", deps.name)) && n.ends_with(".so"))
        })
        .map(|f| f.clone().into_std_path_buf())
        .context("cargo built no dependency library")?;

    // 2. The program.
    config.deps_dylib = Some(deps_dylib.clone());
    config.deps_rlibs = artifacts
        .iter()
        .flat_map(|a| a.filenames.iter())
        .filter(|f| f.extension() == Some("rlib"))
        .map(|f| f.clone().into_std_path_buf())
        .collect();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let artifacts = cargo_build(
        opts,
        &opts.manifest_path,
        &target,
        &target_dir,
        &config_path,
        &["--bin".into(), bin.clone()],
        Some(&identity),
    )
    .context("building the program")?;
    let exe = artifacts
        .iter()
        .find_map(|a| a.executable.clone())
        .context("cargo built no executable")?
        .into_std_path_buf();
    let invocation: RustcInvocation = serde_json::from_slice(
        &std::fs::read(&record_tmp).context(
            "the program's crate was not compiled through the dsu wrapper; is it a workspace member?",
        )?,
    )?;

    // 3. Output directory.
    let binary = out_dir.join(&bin);
    copy_if_changed(&exe, &binary)?;
    copy_if_changed(&deps_dylib, &out_dir.join(deps_dylib.file_name().expect("file name")))?;
    let libdir = rustc.target_libdir(&target)?;
    for entry in std::fs::read_dir(&libdir).with_context(|| format!("listing {}", libdir.display()))? {
        let p = entry?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("libstd-") && name.ends_with(".so") {
            copy_if_changed(&p, &out_dir.join(&name))?;
        }
    }
    let record = BuildRecord {
        identity: SerdeIdentity(identity.to_env_string()),
        package_root,
        bin: bin.clone(),
        binary,
        out_dir: out_dir.clone(),
        deps_dylib,
        target_dir,
        invocation,
    };
    std::fs::write(BuildRecord::record_path(&out_dir, &bin), serde_json::to_vec_pretty(&record)?)?;
    Ok(record)
}

/// What a patch is built from.
#[derive(Debug, Clone)]
pub struct PatchOptions {
    /// Root of the package at the newer revision (same layout as the built one). The recipe
    /// writes a generated crate root beside the original one there.
    pub source_root: PathBuf,
    /// The version the patch applies to: the build's identity, or the version an earlier patch
    /// reached.
    pub applies_to: BuildIdentity,
    /// Revision and tree hash of the newer source.
    pub source: identity::SourceState,
    /// Where to write the patch.
    pub output: PathBuf,
    /// Rust items appended to the crate root (what a type change needs: see `types.rs`).
    pub extra_source: String,
    /// Functions routed by the patch (see `dsu_abi::Manifest::routed`).
    pub routed: Vec<String>,
}

impl PatchOptions {
    /// A patch from the package directory `source_root`, as it is on disk, for the version
    /// `applies_to`.
    pub fn new(
        source_root: impl Into<PathBuf>,
        applies_to: BuildIdentity,
        output: impl Into<PathBuf>,
    ) -> Result<Self> {
        let source_root = source_root.into();
        Ok(PatchOptions {
            source: identity::work_tree_state(&source_root)?,
            source_root,
            applies_to,
            output: output.into(),
            extra_source: String::new(),
            routed: Vec::new(),
        })
    }
}

/// Builds a patch: the program's crate compiled from newer source as a `cdylib`, in the exact
/// build context of `record`.
pub fn build_patch(record: &BuildRecord, opts: &PatchOptions) -> Result<PathBuf> {
    let inv = &record.invocation;
    let manifest = Manifest {
        applies_to: opts.applies_to.clone(),
        source_revision: opts.source.revision.clone(),
        source_tree: opts.source.tree.clone(),
        created_by: format!("cargo-dsu {}", env!("CARGO_PKG_VERSION")),
        routed: opts.routed.clone(),
    };
    let blob = dsu_abi::encode_patch_blob(&manifest);

    // The crate root, relative to the invocation's working directory (cargo passes it so).
    let root_arg = inv
        .args
        .iter()
        .find(|a| a.ends_with(".rs") && !a.starts_with('-'))
        .context("recorded invocation names no crate root")?;
    let old_root = &record.package_root;
    let rel_root = rebase(Path::new(root_arg), &inv.cwd, old_root)?;
    let new_cwd = opts.source_root.join(inv.cwd.strip_prefix(old_root).unwrap_or(Path::new("")));
    let original_root = opts.source_root.join(&rel_root);
    let generated_root = original_root.with_file_name(format!(
        ".dsu-patch-{}",
        original_root.file_name().expect("file name").to_string_lossy()
    ));
    // One work directory per source tree, held under a lock: patches from the same source share
    // the generated root and the incremental cache.
    let work = record
        .target_dir
        .join("dsu")
        .join("patch-build")
        .join(format!("{}-{}", record.bin, identity::hex_hash(opts.source_root.to_string_lossy().as_bytes())));
    let out = work.join("out");
    std::fs::create_dir_all(&out)?;
    let lock = std::fs::File::create(work.join(".lock"))?;
    lock.lock().context("locking the patch work directory")?;
    let blob_file = work.join("header.bin");
    std::fs::write(&blob_file, &blob)?;

    // The header's bytes come from the work directory, named by an environment variable, so the
    // generated root changes only when the source or the type-change code does.
    let mut source = std::fs::read_to_string(&original_root)
        .with_context(|| format!("reading {}", original_root.display()))?;
    write!(
        source,
        "\n// Appended by cargo-dsu: the patch header and manifest.\n\
         #[doc(hidden)]\n#[used]\n#[no_mangle]\n#[allow(non_upper_case_globals)]\n\
         pub static {sym}: [u8; include_bytes!(env!(\"{env}\")).len()] = \
         *include_bytes!(env!(\"{env}\"));\n",
        sym = dsu_abi::HEADER_SYMBOL,
        env = PATCH_BLOB_ENV,
    )?;
    source.push_str(&opts.extra_source);
    write_if_changed(&generated_root, source.as_bytes())?;

    let mut args = Vec::new();
    let mut it = inv.args.iter().peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--crate-type" => {
                it.next();
                args.extend(["--crate-type".into(), "cdylib".into()]);
            }
            "--out-dir" => {
                it.next();
                args.extend(["--out-dir".into(), out.display().to_string()]);
            }
            "--error-format" | "--json" | "--color" | "--diagnostic-width" => {
                it.next();
            }
            "-C" if it.peek().is_some_and(|v| v.starts_with("incremental=") || v.starts_with("extra-filename=")) => {
                it.next();
            }
            s if s.starts_with("--error-format=")
                || s.starts_with("--json=")
                || s.starts_with("--color=")
                || s.starts_with("--diagnostic-width=")
                || s.starts_with("--emit=")
                || s.starts_with("-Cincremental=")
                || s.starts_with("-Cextra-filename=") => {}
            s if s == root_arg => args.push(generated_root.display().to_string()),
            _ => args.push(a.clone()),
        }
    }
    let args = wrapper::rewrite_extern_dsu(&args, &record.deps_dylib);
    let patch_identity = opts.applies_to.at_source(&opts.source.revision, &opts.source.tree);

    let mut cmd = Command::new(&inv.rustc);
    cmd.current_dir(&new_cwd)
        .args(&args)
        .arg("--emit=link")
        .arg(format!("--cfg={}", dsu_abi::PATCH_CFG))
        // Built as a library, the program's `main` and what only it uses look unused.
        .arg("-Adead_code")
        .arg(format!("-Cincremental={}", work.join("incremental").display()))
        .arg(format!(
            "--remap-path-prefix={}={}",
            generated_root.display(),
            original_root.display()
        ))
        .args(wrapper::rpath_args())
        .env(dsu_abi::BUILD_ENV, patch_identity.to_env_string())
        .env(PATCH_BLOB_ENV, &blob_file);
    for (k, v) in inv.env.iter().filter(|(k, _)| k != "CARGO_MAKEFLAGS") {
        let v = v.replace(&old_root.display().to_string(), &opts.source_root.display().to_string());
        cmd.env(k, v);
    }
    let status = cmd.status().with_context(|| format!("running {}", inv.rustc.display()))?;
    if !status.success() {
        return Err(CompileFailed(format!(
            "the patch did not compile (rustc exited with {status}); the compiler's errors are above"
        ))
        .into());
    }
    let built = out.join(format!("lib{}.so", record.bin.replace('-', "_")));
    if let Some(parent) = opts.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Never overwrite a file a running program may have mapped: write a new one and rename.
    let tmp = opts.output.with_extension("so.tmp");
    std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
    std::fs::rename(&tmp, &opts.output)?;
    Ok(opts.output.clone())
}

/// `p` (relative to `cwd`, or absolute) as a path relative to `root`.
fn rebase(p: &Path, cwd: &Path, root: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    Ok(abs
        .strip_prefix(root)
        .with_context(|| format!("crate root {} is outside the package {}", abs.display(), root.display()))?
        .to_path_buf())
}

fn root_package<'m>(
    metadata: &'m Metadata,
    manifest: &Path,
    name: Option<&str>,
) -> Result<&'m cargo_metadata::Package> {
    let members = metadata.workspace_packages();
    if let Some(name) = name {
        return members.into_iter().find(|p| p.name.as_str() == name).ok_or_else(|| {
            NotUpdateable(format!("no package named `{name}` in the workspace")).into()
        });
    }
    let manifest = manifest.canonicalize().unwrap_or_else(|_| manifest.to_path_buf());
    members
        .iter()
        .find(|p| p.manifest_path.as_std_path() == manifest)
        .copied()
        .or_else(|| metadata.root_package())
        .ok_or_else(|| {
            NotUpdateable("the manifest is a virtual workspace; choose a package with -p".into()).into()
        })
}

fn pick_bin(package: &cargo_metadata::Package, bin: Option<&str>) -> Result<String> {
    let bins: Vec<&str> = package
        .targets
        .iter()
        .filter(|t| t.kind.iter().any(|k| k.to_string() == "bin"))
        .map(|t| t.name.as_str())
        .collect();
    match (bin, bins.as_slice()) {
        (Some(b), _) if bins.contains(&b) => Ok(b.to_string()),
        (Some(b), _) => Err(NotUpdateable(format!(
            "package {} has no binary named {b} (it has: {})",
            package.name,
            bins.join(", ")
        ))
        .into()),
        (None, [one]) => Ok(one.to_string()),
        (None, []) => Err(NotUpdateable(format!("package {} has no binary to build", package.name)).into()),
        (None, many) => Err(NotUpdateable(format!(
            "package {} has several binaries ({}); choose one with --bin",
            package.name,
            many.join(", ")
        ))
        .into()),
    }
}

/// The generated dependency library crate.
struct DepsCrate {
    name: String,
    hash: String,
    manifest: String,
    lib_rs: String,
}

impl DepsCrate {
    fn generate(
        metadata: &Metadata,
        root: &PackageId,
        rustc: &Rustc,
        target: &str,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let resolve = metadata.resolve.as_ref().context("cargo metadata gave no resolve graph")?;
        let node = |id: &PackageId| resolve.nodes.iter().find(|n| &n.id == id);
        let root_node = node(root).context("package missing from the resolve graph")?;
        let mut deps = BTreeMap::new();
        for dep in &root_node.deps {
            let normal = dep.dep_kinds.iter().any(|k| k.kind == cargo_metadata::DependencyKind::Normal);
            if !normal {
                continue;
            }
            let pkg = &metadata[&dep.pkg];
            let dep_node = node(&dep.pkg);
            let active = |crate_name: &str| {
                dep_node.is_some_and(|n| n.deps.iter().any(|d| d.name == crate_name.replace('-', "_")))
            };
            // An optional dependency's implicit feature is listed even when the dependency is
            // for another platform (tokio's `windows-sys` on Linux); cargo does not enable it
            // there, and naming it would build the crate with another feature set than the
            // program's.
            let features: Vec<_> = dep_node
                .map(|n| n.features.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|f| {
                    let inactive_optional = pkg.dependencies.iter().any(|d| {
                        d.optional
                            && d.rename.as_deref().unwrap_or(d.name.as_str()) == f.as_str()
                            && !active(f.as_str())
                    });
                    !inactive_optional
                })
                .collect();
            let mut spec = format!("package = {:?}, default-features = false", pkg.name.as_str());
            match &pkg.source {
                Some(s) if s.is_crates_io() => write!(spec, ", version = \"={}\"", pkg.version)?,
                Some(s) => bail!("dependency {} comes from {s}: only crates.io and path dependencies are supported", pkg.name),
                None => {
                    let dir = pkg.manifest_path.parent().expect("manifest has a parent");
                    write!(spec, ", path = {:?}", dir.as_str())?;
                }
            }
            let features: Vec<String> = features.iter().map(|f| format!("{:?}", f.to_string())).collect();
            write!(spec, ", features = [{}]", features.join(", "))?;
            deps.insert(dep.name.clone(), spec);
        }
        if !deps.contains_key("dsu") {
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
        let mut key = Vec::new();
        for part in [
            &lock[..],
            body.as_bytes(),
            rustc.version_text.as_bytes(),
            target.as_bytes(),
            opts.profile().as_bytes(),
            RUSTFLAGS.join(" ").as_bytes(),
        ] {
            key.extend_from_slice(identity::hex_hash(part).as_bytes());
        }
        let hash = identity::hex_hash(&key);
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
    fn write(&self, dir: &Path, metadata: &Metadata) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_if_changed(&dir.join("Cargo.toml"), self.manifest.as_bytes())?;
        write_if_changed(&dir.join("lib.rs"), self.lib_rs.as_bytes())?;
        let lock = dir.join("Cargo.lock");
        if !lock.exists() {
            if let Ok(bytes) = std::fs::read(metadata.workspace_root.join("Cargo.lock")) {
                std::fs::write(&lock, bytes)?;
            }
        }
        Ok(())
    }
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

/// Runs `cargo build` with the updateable-build settings; returns the artifacts it reported.
fn cargo_build(
    opts: &BuildOptions,
    manifest: &Path,
    target: &str,
    target_dir: &Path,
    wrapper_config: &Path,
    extra: &[String],
    identity: Option<&BuildIdentity>,
) -> Result<Vec<cargo_metadata::Artifact>> {
    let mut cmd = Command::new(&opts.cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target")
        .arg(target)
        .arg("--target-dir")
        .arg(target_dir)
        .arg("--message-format=json-render-diagnostics")
        .args(extra)
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"))
        .env_remove("RUSTFLAGS")
        .env("RUSTC_WORKSPACE_WRAPPER", &opts.wrapper)
        .env(wrapper::CONFIG_ENV, wrapper_config)
        .stdout(Stdio::piped());
    if opts.release {
        cmd.arg("--release");
    }
    // Set for cargo, not only for rustc: cargo tracks the variables the macros read
    // (`option_env!`) in its own environment, and would otherwise rebuild every time.
    match identity {
        Some(id) => cmd.env(dsu_abi::BUILD_ENV, id.to_env_string()),
        None => cmd.env_remove(dsu_abi::BUILD_ENV),
    };
    let mut child = cmd.spawn().with_context(|| format!("running {}", opts.cargo.display()))?;
    let mut artifacts = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    for msg in Message::parse_stream(BufReader::new(stdout)) {
        if let Message::CompilerArtifact(a) = msg? {
            artifacts.push(a);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(CompileFailed(format!("cargo build failed ({status}); the compiler's errors are above")).into());
    }
    Ok(artifacts)
}

fn write_if_changed(path: &Path, content: &[u8]) -> Result<()> {
    if std::fs::read(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Copies unless the destination already has the same bytes; replaces by rename so a running
/// program's mapped file is never rewritten in place.
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let src = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    if std::fs::read(to).ok().as_deref() == Some(&src[..]) {
        return Ok(());
    }
    let tmp = to.with_extension("dsu-tmp");
    std::fs::write(&tmp, &src).with_context(|| format!("writing {}", tmp.display()))?;
    let perms = std::fs::metadata(from)?.permissions();
    std::fs::set_permissions(&tmp, perms)?;
    std::fs::rename(&tmp, to).with_context(|| format!("replacing {}", to.display()))?;
    Ok(())
}
