//! Step 3 of the pipeline: build the program in updateable form.
//!
//! The package is built in place, unchanged, with the same flags as the dependency library
//! (`-C prefer-dynamic`, an explicit `--target`, one target directory), through the wrapper
//! ([`crate::wrapper`]) that points every set crate's `dsu` extern at the dependency library and
//! records each set crate's rustc invocation. Every dependency then reaches the program through
//! that one library, and so does std. The binary, the dependency library and the toolchain's
//! `libstd-*.so` are copied side by side into `<target>/dsu/<profile>/`, with one build record
//! per binary beside them.

use crate::deps_library::{rustflags, DepsCrate};
use crate::identity::{self, SourceState};
use crate::locate::{self, BuildOptions, Program, SetCrate, Target};
use crate::compare::statics::HostStatic;
use crate::wrapper::{self, CrateFacts, RustcInvocation, WrapperConfig};
use anyhow::{Context, Result};
use cargo_metadata::{Artifact, Message};
use dsu_abi::BuildIdentity;
use serde::{Deserialize, Serialize};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Everything about a finished updateable build of one binary; saved as `<bin>.dsu.json` beside
/// the binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRecord {
    pub identity: SerdeIdentity,
    /// The package that was built.
    pub package: String,
    pub package_root: PathBuf,
    /// The directory holding every crate of the updateable set and the workspace root (what
    /// `cargo dsu patch` checks out; the identity's tree hash covers it).
    pub source_root: PathBuf,
    pub bin: String,
    /// The runnable binary in the output directory.
    pub binary: PathBuf,
    pub out_dir: PathBuf,
    pub deps_dylib: PathBuf,
    pub target_dir: PathBuf,
    /// Files of the source root that differed from the revision when the build was made.
    #[serde(default)]
    pub dirty_files: Vec<String>,
    /// The crates of the updateable set, dependencies first, the binary's last, each with its
    /// rustc invocation.
    pub crates: Vec<RecordedCrate>,
}

/// A crate of the updateable set and how it was compiled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedCrate {
    #[serde(flatten)]
    pub krate: SetCrate,
    pub invocation: RustcInvocation,
    /// `rustc --print cfg` under the invocation's flags, read once at build time (see
    /// [`RecordedCrate::cfg`]).
    #[serde(default)]
    pub print_cfg: Option<String>,
    /// The statics the build exports (`compare::statics`): a patch shares each of them with the
    /// program instead of having a copy of its own. `None` for a build that did not export them
    /// (made by an older cargo dsu, or whose statics could not be read: `statics_error`), which
    /// no patch with statics can be built for.
    #[serde(default)]
    pub statics: Option<Vec<HostStatic>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statics_error: Option<String>,
}

impl RecordedCrate {
    /// A crate of the set with its invocation and what the wrapper learnt of it.
    fn new(krate: SetCrate, invocation: RustcInvocation, facts: Option<CrateFacts>) -> Result<Self> {
        let mut recorded = RecordedCrate { krate, invocation, print_cfg: None, statics: None, statics_error: None };
        match facts {
            Some(f) => {
                recorded.print_cfg = Some(f.print_cfg);
                recorded.statics = f.statics;
                recorded.statics_error = f.statics_error;
            }
            None => recorded.print_cfg = Some(recorded.print_cfg_text()?),
        }
        Ok(recorded)
    }

    /// The configuration the crate was compiled with: `rustc --print cfg` under the recorded
    /// target, codegen flags and `--cfg`s (features, a build script's cfgs).
    pub fn cfg(&self) -> Result<dsu_syntax::CfgSet> {
        let text = match &self.print_cfg {
            Some(text) => text.clone(),
            None => self.print_cfg_text()?,
        };
        Ok(dsu_syntax::CfgSet::from_print_cfg(&text))
    }

    fn print_cfg_text(&self) -> Result<String> {
        print_cfg(&self.invocation.rustc, &self.invocation.args)
    }
}

/// `rustc --print cfg` under the target, codegen flags and `--cfg`s of a crate's rustc
/// arguments `args`.
pub fn print_cfg(rustc: &Path, args: &[String]) -> Result<String> {
    let mut flags = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--target" | "--cfg" | "-C" => {
                let value = it.next().cloned().unwrap_or_default();
                if !value.starts_with("incremental=") {
                    flags.extend([a.clone(), value]);
                }
            }
            s if s.starts_with("--target=") || s.starts_with("--cfg=") => flags.push(a.clone()),
            s if s.starts_with("-C") && !s.starts_with("-Cincremental") => flags.push(a.clone()),
            _ => {}
        }
    }
    let out = Command::new(rustc)
        .args(["--print", "cfg"])
        .args(&flags)
        .output()
        .with_context(|| format!("running {} --print cfg", rustc.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "{} --print cfg failed: {}",
        rustc.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
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

    /// The binary's own crate.
    pub fn bin_crate(&self) -> &RecordedCrate {
        self.crates.last().expect("a build record holds the binary's crate")
    }
}

/// The program or the patch did not compile; the compiler's errors were shown.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileFailed(pub String);

/// The target directory cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write to the target directory {}", .0.display())]
pub struct OutputNotWritable(pub PathBuf);

/// A finished build: one record per binary, and the source state it was made from.
pub struct Built {
    pub records: Vec<BuildRecord>,
    pub source: SourceState,
}

/// Builds the package in updateable form: every binary of `opts` (or the one it names).
pub fn build(opts: &BuildOptions) -> Result<Built> {
    build_target(&locate::locate(opts)?, opts)
}

/// Builds the located package in updateable form.
pub fn build_target(target: &Target, opts: &BuildOptions) -> Result<Built> {
    let out_dir = &target.out_dir;
    let probe = out_dir.join(".dsu-write-probe");
    std::fs::create_dir_all(out_dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| anyhow::Error::new(OutputNotWritable(out_dir.clone())).context(e))?;
    let source = identity::work_tree_state(&target.source_root)?;
    // Per package: builds of several packages may share the target directory, and run at once.
    let record_dir = out_dir.join(".rustc").join(&target.package_name);
    let library = build_library(target, opts, &record_dir)?;
    let trust = crate::sign::trust_field(&opts.trust)?;
    let mut records = Vec::new();
    for program in &target.programs {
        let identity = BuildIdentity {
            crate_name: program.bin_crate().crate_name.clone(),
            revision: source.revision.clone(),
            tree: source.tree.clone(),
            rustc: target.rustc.hash(),
            target: target.triple.clone(),
            profile: opts.profile().into(),
            deps: library.hash.clone(),
            trust: trust.clone(),
        };
        let args = ["-p".to_string(), target.package_name.clone(), "--bin".into(), program.bin.clone()];
        let manifest = target.metadata.workspace_root.join("Cargo.toml").into_std_path_buf();
        let built = cargo_build(opts, &manifest, target, &library.config_path, &args, Some(&identity))
            .context("building the program")?;
        let artifacts =
            built.succeeded().map_err(|e| explain_second_copy(e, &built.artifacts, &library.artifacts))?;
        let exe = artifacts
            .iter()
            .find_map(|a| a.executable.clone())
            .context("cargo built no executable")?
            .into_std_path_buf();
        let record = output(target, program, &exe, &library.dylib, &record_dir, identity, &source)?;
        std::fs::write(BuildRecord::record_path(out_dir, &program.bin), serde_json::to_vec_pretty(&record)?)?;
        records.push(record);
    }
    Ok(Built { records, source })
}

/// The built dependency library, and the wrapper's configuration that names it.
struct Library {
    hash: String,
    dylib: PathBuf,
    /// What cargo reported building it: the rlibs inside it, with their features.
    artifacts: Vec<Artifact>,
    config_path: PathBuf,
}

/// Generates and builds the dependency library; writes the wrapper's configuration for the
/// program's build.
fn build_library(target: &Target, opts: &BuildOptions, record_dir: &Path) -> Result<Library> {
    let deps = DepsCrate::generate(target, opts)?;
    let deps_dir = target.dsu_dir.join("deps").join(&deps.name);
    deps.write(&deps_dir, &target.metadata)?;
    let mut config = WrapperConfig {
        deps_crate: deps.name.clone(),
        deps_dylib: None,
        deps_rlibs: Vec::new(),
        set: target
            .programs
            .iter()
            .flat_map(|p| p.crates.iter().map(|c| (c.crate_name.clone(), c.kind)))
            .collect(),
        record_dir: record_dir.to_path_buf(),
        source_root: Some(target.source_root.clone()),
        shadow_dir: Some(target.dsu_dir.join("shadow").join(opts.profile()).join(&target.package_name)),
    };
    let config_path = target.out_dir.join(format!(".wrapper-{}.json", target.package_name));
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let built = cargo_build(opts, &deps_dir.join("Cargo.toml"), target, &config_path, &[], None)
        .context("building the shared dependency library")?;
    let artifacts = built.succeeded()?.to_vec();
    let dylib = artifacts
        .iter()
        .flat_map(|a| a.filenames.iter())
        .find(|f| {
            f.file_name().is_some_and(|n| n.starts_with(&format!("lib{}", deps.name)) && n.ends_with(".so"))
        })
        .map(|f| f.clone().into_std_path_buf())
        .context("cargo built no dependency library")?;
    config.deps_dylib = Some(dylib.clone());
    config.deps_rlibs = artifacts
        .iter()
        .flat_map(|a| a.filenames.iter())
        .filter(|f| f.extension() == Some("rlib"))
        .map(|f| f.clone().into_std_path_buf())
        .collect();
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    Ok(Library { hash: deps.hash, dylib, artifacts, config_path })
}

/// Copies the binary and its shared libraries into the output directory and assembles its
/// build record.
fn output(
    target: &Target,
    program: &Program,
    exe: &Path,
    deps_dylib: &Path,
    record_dir: &Path,
    identity: BuildIdentity,
    source: &SourceState,
) -> Result<BuildRecord> {
    let out_dir = &target.out_dir;
    let binary = out_dir.join(&program.bin);
    copy_if_changed(exe, &binary)?;
    copy_if_changed(deps_dylib, &out_dir.join(deps_dylib.file_name().expect("file name")))?;
    let libdir = target.rustc.target_libdir(&target.triple)?;
    for entry in std::fs::read_dir(&libdir).with_context(|| format!("listing {}", libdir.display()))? {
        let p = entry?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("libstd-") && name.ends_with(".so") {
            copy_if_changed(&p, &out_dir.join(&name))?;
        }
    }
    // Kept between builds: when cargo finds a crate fresh, the wrapper does not run and the
    // previous invocation is still the right one.
    let crates = program
        .crates
        .iter()
        .map(|c| {
            let path = wrapper::record_path(record_dir, &c.crate_name, c.kind);
            let bytes = std::fs::read(&path).with_context(|| {
                format!("the crate `{}` was not compiled through the dsu wrapper ({})", c.crate_name, path.display())
            })?;
            let facts = std::fs::read(wrapper::facts_path(record_dir, &c.crate_name, c.kind))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            RecordedCrate::new(c.clone(), serde_json::from_slice(&bytes)?, facts)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(BuildRecord {
        identity: SerdeIdentity(identity.to_env_string()),
        package: target.package_name.clone(),
        package_root: target.package_root.clone(),
        source_root: target.source_root.clone(),
        bin: program.bin.clone(),
        binary,
        out_dir: out_dir.clone(),
        deps_dylib: deps_dylib.to_path_buf(),
        target_dir: target.target_dir.clone(),
        dirty_files: source.dirty_files.clone(),
        crates,
    })
}

/// What one `cargo build` reported.
struct CargoBuild {
    artifacts: Vec<Artifact>,
    status: std::process::ExitStatus,
}

impl CargoBuild {
    fn succeeded(&self) -> Result<&[Artifact]> {
        if !self.status.success() {
            return Err(CompileFailed(format!(
                "cargo build failed ({}); the compiler's errors are above",
                self.status
            ))
            .into());
        }
        Ok(&self.artifacts)
    }
}

/// When the program would link a second copy of a dependency, says which features differ
/// between the program's build of it and the dependency library's.
fn explain_second_copy(e: anyhow::Error, program: &[Artifact], library: &[Artifact]) -> anyhow::Error {
    let mut notes = Vec::new();
    for a in program {
        let Some(b) = library.iter().find(|b| b.target.name == a.target.name) else { continue };
        if a.features != b.features {
            let only = |x: &[String], y: &[String]| -> Vec<String> {
                x.iter().filter(|f| !y.contains(f)).cloned().collect()
            };
            notes.push(format!(
                "`{}`: the program builds it with feature(s) [{}] that the dependency library does \
                 not have, and without [{}] that it has (a feature turned on by another target's \
                 dependencies, such as a dev-dependency, or by a crate outside the program)",
                a.target.name,
                only(&a.features, &b.features).join(", "),
                only(&b.features, &a.features).join(", ")
            ));
        }
    }
    if notes.is_empty() {
        e
    } else {
        e.context(notes.join("; "))
    }
}

/// Runs `cargo build` with the updateable-build settings; returns what it reported.
fn cargo_build(
    opts: &BuildOptions,
    manifest: &Path,
    target: &Target,
    wrapper_config: &Path,
    extra: &[String],
    identity: Option<&BuildIdentity>,
) -> Result<CargoBuild> {
    let mut cmd = Command::new(&opts.cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target")
        .arg(&target.triple)
        .arg("--target-dir")
        .arg(&target.target_dir)
        .arg("--message-format=json-render-diagnostics")
        .args(extra)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags(opts).join("\x1f"))
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env("RUSTC_WRAPPER", &opts.wrapper)
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
    Ok(CargoBuild { artifacts, status })
}

pub fn write_if_changed(path: &Path, content: &[u8]) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(name: &str, features: &[&str]) -> Artifact {
        serde_json::from_value(serde_json::json!({
            "package_id": format!("registry+https://example.invalid#{name}@1.0.0"),
            "manifest_path": "/r/Cargo.toml",
            "target": {
                "name": name, "kind": ["lib"], "crate_types": ["lib"], "required-features": [],
                "src_path": "/r/src/lib.rs", "edition": "2021", "doctest": true, "test": true, "doc": true
            },
            "profile": { "opt_level": "0", "debuginfo": 2, "debug_assertions": true, "overflow_checks": true, "test": false },
            "features": features,
            "filenames": [format!("/t/deps/lib{name}-1.rlib")],
            "executable": null,
            "fresh": false
        }))
        .expect("an artifact message")
    }

    #[test]
    fn a_second_copy_names_the_crate_and_the_features_that_differ() {
        let program = [artifact("tokio", &["rt", "macros", "time"]), artifact("log", &["std"])];
        let library = [artifact("tokio", &["rt"]), artifact("log", &["std"])];
        let e = explain_second_copy(anyhow::anyhow!("the program would link a second copy of `tokio`"), &program, &library);
        let text = format!("{e:#}");
        assert!(text.contains("`tokio`: the program builds it with feature(s) [macros, time]"), "{text}");
        assert!(!text.contains("`log`"), "{text}");
    }
}
