//! Step 5 of the pipeline: build a patch against the exact build of a program.
//!
//! A patch is the program's updateable set compiled again from newer source, with the recorded
//! rustc invocations of the build: every library crate of the set as an rlib (dependencies
//! first), then the binary's crate as a `cdylib` linking them, with `--cfg dsu_patch` and the
//! patch header appended to its crate root. So a patch carries new code for every crate of the
//! set that changed, and links against the same dependency library and libstd as the program.
//!
//! A static of the set that the program has is not compiled again: the patch declares the
//! program's instance instead (`compare::statics::patch_plan`), bound to it when the patch is
//! mapped, with a compile-time check that its type has the layout the program's build recorded.
//!
//! The new rlibs must be the only copies of the set's crates that rustc can find: a crate
//! reached only transitively is looked up by name in the `-L dependency=` directories, where
//! the program's own build of it also lies. The patch's crates are therefore compiled into a
//! directory of their own that links to every other file of the program's dependency directory.

use crate::build::{write_if_changed, BuildRecord, CompileFailed, RecordedCrate};
use crate::identity::{self, SourceState};
use crate::locate::CrateKind;
use crate::wrapper::{self, RustcInvocation};
use anyhow::{Context, Result};
use dsu_abi::{BuildIdentity, Manifest};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming the file that holds a patch's header and manifest while it builds.
const PATCH_BLOB_ENV: &str = "DSU_PATCH_HEADER_FILE";

pub use crate::compare::Insertion;
use crate::compare::statics::{self, Edit};

/// What a patch is built from.
#[derive(Debug, Clone)]
pub struct PatchOptions {
    /// The source root at the newer revision (same layout as the build's `source_root`). The
    /// pipeline writes generated files and insertions there.
    pub source_root: PathBuf,
    /// The version the patch applies to: the build's identity, or the version an earlier patch
    /// reached.
    pub applies_to: BuildIdentity,
    /// Revision and tree hash of the newer source.
    pub source: SourceState,
    /// Where to write the patch.
    pub output: PathBuf,
    /// Code inserted into the newer source's files before compiling.
    pub insertions: Vec<Insertion>,
    /// Functions routed by the patch (see `dsu_abi::Manifest::routed`).
    pub routed: Vec<String>,
    /// Functions the patch switches although their code did not change (see
    /// `dsu_abi::Manifest::carried`).
    pub carried: Vec<String>,
    /// The transformer functions the patch compiles, by cfg value (`Report::transformer_cfgs`:
    /// `--cfg dsu_transform="Entry::upgrade"`); every other transformer in the source, those of
    /// earlier releases included, is left out.
    pub transformers: Vec<String>,
    /// The key that signs the patch's seal (`cargo dsu patch --sign`); sealed unsigned when
    /// `None`.
    pub signing_key: Option<ed25519_dalek::SigningKey>,
}

impl PatchOptions {
    /// A patch from the source root `source_root`, as it is on disk, for the version
    /// `applies_to`.
    pub fn new(source_root: impl Into<PathBuf>, applies_to: BuildIdentity, output: impl Into<PathBuf>) -> Result<Self> {
        let source_root = source_root.into();
        Ok(PatchOptions {
            source: identity::work_tree_state(&source_root)?,
            source_root,
            applies_to,
            output: output.into(),
            insertions: Vec::new(),
            routed: Vec::new(),
            carried: Vec::new(),
            transformers: Vec::new(),
            signing_key: None,
        })
    }
}

/// Where one patch build works: one directory per source tree, held under a lock, so patches
/// from the same source share the incremental caches.
struct WorkDir {
    root: PathBuf,
    /// The patch's rlibs, and links to every other file of the program's dependency directory.
    deps: PathBuf,
    /// The patch library.
    out: PathBuf,
    _lock: std::fs::File,
}

impl WorkDir {
    fn open(record: &BuildRecord, source_root: &Path) -> Result<Self> {
        let root = record
            .target_dir
            .join("dsu")
            .join("patch-build")
            .join(format!("{}-{}", record.bin, identity::hex_hash(source_root.to_string_lossy().as_bytes())));
        let (deps, out) = (root.join("deps"), root.join("out"));
        std::fs::create_dir_all(&deps)?;
        std::fs::create_dir_all(&out)?;
        let lock = std::fs::File::create(root.join(".lock"))?;
        lock.lock().context("locking the patch work directory")?;
        Ok(WorkDir { root, deps, out, _lock: lock })
    }
}

/// Builds a patch: the updateable set compiled from newer source, in the exact build context
/// of `record`.
///
/// The statics it shares are those the program's build exported (the record lists them). A
/// static that an earlier patch added is not among them and cannot be told from one the newer
/// source adds: `cargo dsu patch`, which reads the running revision too, refuses such a patch
/// (`compare::statics::refuse_unreachable`); built here directly, it would have its own copy.
pub fn build_patch(record: &BuildRecord, opts: &PatchOptions) -> Result<PathBuf> {
    let work = WorkDir::open(record, &opts.source_root)?;
    let cells = cell_records(record, &opts.source_root)?;
    let statics = share_statics(record, &opts.source_root)?;
    let mut edits: Vec<Edit> = merge_insertions(&opts.insertions, cells)
        .into_iter()
        .map(|i| Edit::insert(&i.file, i.offset, i.text))
        .collect();
    edits.extend(statics.edits);
    apply_edits(&opts.source_root, &edits)?;
    let set_files = set_file_names(record);
    let program_deps = dependency_dir(&record.bin_crate().invocation).context("recorded invocation has no -L dependency=")?;
    link_dependencies(&program_deps, &work.deps, &set_files)?;

    let patch_identity = opts.applies_to.at_source(&opts.source.revision, &opts.source.tree);
    for krate in &record.crates[..record.crates.len() - 1] {
        let cmd = lib_command(record, krate, opts, &work, &set_files, &patch_identity)?;
        run_rustc(cmd, &krate.invocation, &opts.source_root)?;
    }
    let blob = dsu_abi::encode_patch_blob(&Manifest {
        applies_to: opts.applies_to.clone(),
        source_revision: opts.source.revision.clone(),
        source_tree: opts.source.tree.clone(),
        created_by: format!("cargo-dsu {}", env!("CARGO_PKG_VERSION")),
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        routed: opts.routed.clone(),
        carried: opts.carried.clone(),
    });
    let blob_file = work.root.join("header.bin");
    std::fs::write(&blob_file, &blob)?;
    let mut cmd = bin_command(record, opts, &work, &set_files, &patch_identity)?;
    cmd.env(PATCH_BLOB_ENV, &blob_file);
    run_rustc(cmd, &record.bin_crate().invocation, &opts.source_root)?;

    let built = work.out.join(format!("lib{}.so", record.bin_crate().krate.crate_name));
    let set: Vec<&str> = record.crates.iter().map(|c| c.krate.crate_name.as_str()).collect();
    for name in statics::unseen_in(&built, &set, &statics.known)? {
        crate::cli::status("Per copy", format!("{name}: a static a macro writes, which the patch has its own copy of"));
    }
    if let Some(parent) = opts.output.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Sealed (and signed), then written as a new file renamed into place: never overwrite a file
    // a running program may be reading.
    let library = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    crate::sign::write_new(&opts.output, &crate::sign::seal(&library, opts.signing_key.as_ref()))?;
    Ok(opts.output.clone())
}

/// The state-cell records of the set's crates in the newer source (`compare::cells`), read as
/// the build compiles each crate, before anything is inserted. Every patch carries them: the
/// loader refuses one without (format 1.2).
fn cell_records(record: &BuildRecord, source_root: &Path) -> Result<Vec<Insertion>> {
    let units = record
        .crates
        .iter()
        .map(|c| Ok(c.krate.unit(&record.source_root, Some(c.cfg()?))))
        .collect::<Result<Vec<_>>>()?;
    let found = crate::compare::cells::records(&units, source_root)?;
    if let Some(r) = found.refusals.first() {
        anyhow::bail!("{}:{}: {}", r.file, r.line, r.reason);
    }
    Ok(found.insertions)
}

/// `given` and `more`, one insertion per file and offset (texts at one place concatenated).
fn merge_insertions(given: &[Insertion], more: Vec<Insertion>) -> Vec<Insertion> {
    let mut all = given.to_vec();
    for i in more {
        match all.iter_mut().find(|a| a.file == i.file && a.offset == i.offset) {
            Some(a) => a.text.push_str(&i.text),
            None => all.push(i),
        }
    }
    all
}

/// The first error the compiler gave for a patch, and where it points (relative to the source
/// root), so that a caller can name the place (`cargo dsu history`).
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct FirstError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

/// Runs rustc with its diagnostics passed on to this process's standard error (in colour on a
/// terminal) and read, so a failure carries its first error ([`FirstError`]).
fn run_rustc(mut cmd: Command, inv: &RustcInvocation, source_root: &Path) -> Result<()> {
    use std::io::{IsTerminal, Write};
    let colour = if std::io::stderr().is_terminal() { "--color=always" } else { "--color=never" };
    let cwd = cmd.get_current_dir().map(Path::to_path_buf).unwrap_or_default();
    let out = cmd
        .arg(colour)
        .stdout(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", inv.rustc.display()))?;
    let _ = std::io::stderr().write_all(&out.stderr);
    if !out.status.success() {
        let failed = CompileFailed(format!(
            "the patch did not compile (rustc exited with {}); the compiler's errors are above",
            out.status
        ));
        return Err(match first_error(&String::from_utf8_lossy(&out.stderr), &cwd, source_root) {
            Some(first) => anyhow::Error::new(first).context(failed),
            None => failed.into(),
        });
    }
    Ok(())
}

/// The first `error` of rustc's human-readable diagnostics and the `--> file:line:col` under it.
fn first_error(stderr: &str, cwd: &Path, source_root: &Path) -> Option<FirstError> {
    let plain = strip_ansi(stderr);
    let is_error = |l: &str| l.starts_with("error") && !l.starts_with("error: aborting");
    let mut lines = plain.lines().skip_while(|l| !is_error(l));
    let message = lines.next()?.trim().to_string();
    let place = lines.take_while(|l| !l.is_empty()).find_map(|l| l.trim_start().strip_prefix("--> "))?;
    let mut parts = place.rsplitn(3, ':');
    let (_col, line, file) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?);
    let file = cwd.join(file);
    let file = file.strip_prefix(source_root).unwrap_or(&file).display().to_string();
    Some(FirstError { file, line, message })
}

/// `text` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Makes the edits (generated code inserted, shared statics' definitions replaced) in the newer
/// source's files.
fn apply_edits(source_root: &Path, edits: &[Edit]) -> Result<()> {
    let files: BTreeSet<&PathBuf> = edits.iter().map(|e| &e.file).collect();
    for file in files {
        let path = source_root.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let here: Vec<&Edit> = edits.iter().filter(|e| &e.file == file).collect();
        write_if_changed(&path, statics::apply_edits(&text, &here)?.as_bytes())?;
    }
    // The checkout no longer holds exactly its tree: the next sync must compare every file.
    let _ = std::fs::remove_file(source_root.join(".dsu-tree"));
    Ok(())
}

/// The statics the patch shares with the program, read from the newer source before anything is
/// inserted: the replacements of their definitions by declarations of the program's instances.
/// A static the program has under another type, or cannot share, refuses the patch.
fn share_statics(record: &BuildRecord, source_root: &Path) -> Result<statics::PatchPlan> {
    let units = record
        .crates
        .iter()
        .map(|c| Ok(c.krate.unit(&record.source_root, Some(c.cfg()?))))
        .collect::<Result<Vec<_>>>()?;
    let (layouts, exported) = program_statics(&record.binary)?;
    let flags = record
        .crates
        .iter()
        .zip(&units)
        .map(|(c, u)| statics::CrateFlags::of(&c.invocation.args, &source_root.join(&u.root_file)))
        .collect();
    let program = statics::Program {
        statics: record.crates.iter().map(|c| c.statics.as_deref()).collect(),
        not_read: record.crates.iter().map(|c| c.statics_error.clone()).collect(),
        layouts: &layouts,
        exported: &exported,
        flags,
    };
    let plan = statics::patch_plan(&units, source_root, &program)?;
    if !plan.refusals.is_empty() {
        return Err(crate::patch::Refused::listing(plan.refusals).into());
    }
    Ok(plan)
}

/// The layout records of the statics the program's binary exports, and the symbols of its
/// statics, read from the file.
fn program_statics(binary: &Path) -> Result<(BTreeMap<String, statics::Layout>, BTreeSet<String>)> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("reading {} as ELF", binary.display()))?;
    let (mut layouts, mut exported) = (BTreeMap::new(), BTreeSet::new());
    for sym in file.dynamic_symbols().filter(|s| !s.is_undefined()) {
        let Ok(name) = sym.name() else { continue };
        exported.insert(name.to_string());
        if !name.starts_with(dsu_abi::STATIC_LAYOUT_PREFIX) {
            continue;
        }
        let bytes = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .and_then(|s| s.data_range(sym.address(), sym.size()).ok().flatten());
        let layout = bytes
            .and_then(statics::Layout::from_bytes)
            .with_context(|| format!("{}: the layout record {name} cannot be read", binary.display()))?;
        layouts.insert(name.to_string(), layout);
    }
    Ok((layouts, exported))
}

/// File names of the program's builds of the set's library crates (`lib<name><extra>.rlib` and
/// `.rmeta`): the files the patch's own builds replace.
fn set_file_names(record: &BuildRecord) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for c in record.crates.iter().filter(|c| c.krate.kind == CrateKind::Lib) {
        let extra = codegen_value(&c.invocation.args, "extra-filename").unwrap_or_default();
        for ext in ["rlib", "rmeta"] {
            names.insert(format!("lib{}{extra}.{ext}", c.krate.crate_name));
        }
    }
    names
}

/// `-C name=value` (or `-Cname=value`) of an invocation.
fn codegen_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    wrapper::flag_values(args, "-C").find_map(|v| v.strip_prefix(prefix.as_str()))
}

fn dependency_dir(inv: &RustcInvocation) -> Option<PathBuf> {
    wrapper::flag_values(&inv.args, "-L").find_map(|v| v.strip_prefix("dependency=")).map(PathBuf::from)
}

/// Makes `dir` link to every library of `program_deps` except the set's own.
fn link_dependencies(program_deps: &Path, dir: &Path, set_files: &BTreeSet<String>) -> Result<()> {
    let mut wanted = BTreeSet::new();
    for entry in std::fs::read_dir(program_deps).with_context(|| format!("listing {}", program_deps.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let lib = [".rlib", ".rmeta", ".so"].iter().any(|e| name.ends_with(e));
        if lib && !set_files.contains(&name) {
            wanted.insert(name);
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_symlink() && !wanted.contains(&name) {
            std::fs::remove_file(entry.path())?;
        }
    }
    for name in wanted {
        let link = dir.join(&name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(program_deps.join(&name), &link)
                .with_context(|| format!("linking {}", link.display()))?;
        }
    }
    Ok(())
}

/// `p` (relative to `cwd`, or absolute) moved from under `old_root` to under `new_root`; paths
/// outside `old_root` stay as they are.
fn rebase(p: &Path, cwd: &Path, old_root: &Path, new_root: &Path) -> PathBuf {
    let abs = if p.is_absolute() { p.to_path_buf() } else { cwd.join(p) };
    match abs.strip_prefix(old_root) {
        Ok(rel) => new_root.join(rel),
        Err(_) => abs,
    }
}

/// The crate root argument of an invocation (cargo passes it relative to the working directory).
fn root_arg(inv: &RustcInvocation) -> Result<&str> {
    wrapper::root_arg(&inv.args).context("recorded invocation names no crate root")
}

/// The recorded invocation's arguments, rewritten for the patch build: outputs into the work
/// directory, the set's crates from the patch's own builds, diagnostics for a terminal.
fn patch_args(
    record: &BuildRecord,
    inv: &RustcInvocation,
    root: &Path,
    work: &WorkDir,
    out_dir: &Path,
    set_files: &BTreeSet<String>,
    cdylib: bool,
) -> Result<Vec<String>> {
    let root_arg = root_arg(inv)?;
    // Only the target's dependency directory: the host's (procedural macros) stays.
    let program_deps = format!("dependency={}", dependency_dir(inv).context("no -L dependency=")?.display());
    let mut args = Vec::new();
    let mut it = inv.args.iter().peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--crate-type" if cdylib => {
                it.next();
                args.extend(["--crate-type".into(), "cdylib".into()]);
            }
            "--out-dir" => {
                it.next();
                args.extend(["--out-dir".into(), out_dir.display().to_string()]);
            }
            "--error-format" | "--json" | "--color" | "--diagnostic-width" => {
                it.next();
            }
            "-C" if it.peek().is_some_and(|v| {
                v.starts_with("incremental=") || (cdylib && v.starts_with("extra-filename="))
            }) =>
            {
                it.next();
            }
            "-L" if it.peek().is_some_and(|v| **v == program_deps) => {
                it.next();
                args.extend(["-L".into(), format!("dependency={}", work.deps.display())]);
            }
            "--extern" => {
                let v = it.next().context("--extern without a value")?;
                args.extend(["--extern".into(), extern_for_patch(v, &work.deps, set_files)]);
            }
            s if s.starts_with("--error-format=")
                || s.starts_with("--json=")
                || s.starts_with("--color=")
                || s.starts_with("--diagnostic-width=")
                || s.starts_with("--emit=")
                || s.starts_with("-Cincremental=")
                || (cdylib && s.starts_with("-Cextra-filename="))
                // A patch is `dlopen`ed: its thread-locals cannot be in the static TLS block
                // (see `deps_library::INITIAL_EXEC_TLS`).
                || s == crate::deps_library::INITIAL_EXEC_TLS => {}
            s if s.strip_prefix("-L") == Some(program_deps.as_str()) => {
                args.push(format!("-Ldependency={}", work.deps.display()))
            }
            s if s == root_arg => args.push(root.display().to_string()),
            _ => args.push(a.clone()),
        }
    }
    Ok(wrapper::rewrite_extern_dsu(&args, &record.deps_dylib))
}

/// `name=path` of an `--extern`, pointing a set crate at the patch's build of it.
fn extern_for_patch(v: &str, deps: &Path, set_files: &BTreeSet<String>) -> String {
    let Some((name, path)) = v.split_once('=') else { return v.to_string() };
    let file = Path::new(path).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    if set_files.contains(&file) {
        let rlib = file.strip_suffix(".rmeta").map_or(file.clone(), |stem| format!("{stem}.rlib"));
        format!("{name}={}", deps.join(rlib).display())
    } else {
        v.to_string()
    }
}

/// A rustc command for `krate`, with the environment cargo gave it, moved to the new source.
fn base_command(
    record: &BuildRecord,
    krate: &RecordedCrate,
    opts: &PatchOptions,
    args: Vec<String>,
    incremental: PathBuf,
    identity: &BuildIdentity,
) -> Command {
    let inv = &krate.invocation;
    let cwd = rebase(&inv.cwd, &inv.cwd, &record.source_root, &opts.source_root);
    let mut cmd = Command::new(&inv.rustc);
    cmd.current_dir(cwd)
        .args(args)
        .arg("--emit=link")
        .arg(format!("--cfg={}", dsu_abi::PATCH_CFG))
        .args(opts.transformers.iter().map(|t| format!("--cfg={}={t:?}", dsu_abi::TRANSFORMER_CFG)))
        .arg(format!("-Cincremental={}", incremental.display()))
        .env(dsu_abi::BUILD_ENV, identity.to_env_string());
    let (old, new) = (record.source_root.display().to_string(), opts.source_root.display().to_string());
    for (k, v) in inv.env.iter().filter(|(k, _)| k != "CARGO_MAKEFLAGS") {
        // Paths into the source move with it; paths into the target directory (OUT_DIR, where a
        // build script's output lies) stay.
        if v.starts_with(&record.target_dir.display().to_string()) {
            cmd.env(k, v);
        } else {
            cmd.env(k, v.replace(&old, &new));
        }
    }
    cmd
}

fn lib_command(
    record: &BuildRecord,
    krate: &RecordedCrate,
    opts: &PatchOptions,
    work: &WorkDir,
    set_files: &BTreeSet<String>,
    identity: &BuildIdentity,
) -> Result<Command> {
    let inv = &krate.invocation;
    let root = rebase(Path::new(root_arg(inv)?), &inv.cwd, &record.source_root, &opts.source_root);
    let args = patch_args(record, inv, &root, work, &work.deps, set_files, false)?;
    let incremental = work.root.join("incremental").join(format!("{}.lib", krate.krate.crate_name));
    Ok(base_command(record, krate, opts, args, incremental, identity))
}

/// The binary's crate as a `cdylib`, from a generated copy of its root that appends the patch
/// header.
fn bin_command(
    record: &BuildRecord,
    opts: &PatchOptions,
    work: &WorkDir,
    set_files: &BTreeSet<String>,
    identity: &BuildIdentity,
) -> Result<Command> {
    let krate = record.bin_crate();
    let inv = &krate.invocation;
    let original_root = rebase(Path::new(root_arg(inv)?), &inv.cwd, &record.source_root, &opts.source_root);
    let generated_root = original_root.with_file_name(format!(
        ".dsu-patch-{}",
        original_root.file_name().expect("file name").to_string_lossy()
    ));
    // The header's bytes come from the work directory, named by an environment variable, so the
    // generated root changes only when the source does.
    let mut source = std::fs::read_to_string(&original_root)
        .with_context(|| format!("reading {}", original_root.display()))?;
    write!(
        source,
        "\n// Appended by cargo-dsu: the patch header and manifest.\n\
         #[doc(hidden)]\n#[used]\n#[unsafe(no_mangle)]\n#[allow(non_upper_case_globals)]\n\
         pub static {sym}: [u8; include_bytes!(env!(\"{env}\")).len()] = \
         *include_bytes!(env!(\"{env}\"));\n",
        sym = dsu_abi::HEADER_SYMBOL,
        env = PATCH_BLOB_ENV,
    )?;
    write_if_changed(&generated_root, source.as_bytes())?;
    let args = patch_args(record, inv, &generated_root, work, &work.out, set_files, true)?;
    let incremental = work.root.join("incremental").join(format!("{}.bin", krate.krate.crate_name));
    let mut cmd = base_command(record, krate, opts, args, incremental, identity);
    cmd
        // Built as a library, the program's `main` and what only it uses look unused.
        .arg("-Adead_code")
        .arg(format!("--remap-path-prefix={}={}", generated_root.display(), original_root.display()))
        .args(wrapper::rpath_args());
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn externs_of_set_crates_point_at_the_patch_build() {
        let set: BTreeSet<String> = ["libcore_logic-abc.rlib".into(), "libcore_logic-abc.rmeta".into()].into();
        let deps = Path::new("/w/deps");
        assert_eq!(
            extern_for_patch("core_logic=/t/deps/libcore_logic-abc.rmeta", deps, &set),
            "core_logic=/w/deps/libcore_logic-abc.rlib"
        );
        assert_eq!(extern_for_patch("log=/t/deps/liblog-1.rlib", deps, &set), "log=/t/deps/liblog-1.rlib");
    }

    #[test]
    fn the_first_error_and_its_place() {
        let stderr = "warning: unused\n --> src/a.rs:1:1\n\n\u{1b}[1merror[E0308]\u{1b}[0m: mismatched types\n  --> src/greeting.rs:14:5\n   |\nerror: aborting due to 1 previous error\n";
        let e = first_error(stderr, Path::new("/c/new/app"), Path::new("/c/new")).unwrap();
        assert_eq!((e.file.as_str(), e.line, e.message.as_str()), ("app/src/greeting.rs", 14, "error[E0308]: mismatched types"));
        assert!(first_error("error: aborting due to 1 previous error\n", Path::new("/"), Path::new("/")).is_none());
    }

    #[test]
    fn codegen_values_in_both_spellings() {
        let args: Vec<String> = ["-C", "extra-filename=-abc", "-Cmetadata=x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(codegen_value(&args, "extra-filename"), Some("-abc"));
        assert_eq!(codegen_value(&args, "metadata"), Some("x"));
        assert_eq!(codegen_value(&args, "opt-level"), None);
    }

    #[test]
    fn rebase_moves_only_paths_under_the_old_root() {
        let (old, new) = (Path::new("/w"), Path::new("/c/new"));
        assert_eq!(rebase(Path::new("src/lib.rs"), Path::new("/w/app"), old, new), PathBuf::from("/c/new/app/src/lib.rs"));
        assert_eq!(rebase(Path::new("/x/y.rs"), Path::new("/w"), old, new), PathBuf::from("/x/y.rs"));
    }
}
