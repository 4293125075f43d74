//! `cargo-dsu` as cargo's `RUSTC_WRAPPER`: it adjusts the rustc invocations of the generated
//! dependency library and of the crates of the updateable set, and leaves every other one alone.
//! (`RUSTC_WRAPPER`, not `RUSTC_WORKSPACE_WRAPPER`: a path dependency outside the workspace
//! belongs to the set too.)
//!
//! For every crate of the updateable set it
//! * points `--extern dsu=…` at the shared dependency library, so the program reaches every
//!   dependency (and the dsu runtime) through that one library;
//! * refuses an rlib extern that differs from the one inside the dependency library;
//! * records the invocation, from which patches are built later, and the crate's configuration;
//! * exports the crate's statics, so that patches share them instead of having copies of their
//!   own: a crate with statics is compiled from a shadow of the source root in which the files
//!   holding them carry the exports (`compare::statics::host_plan`, [`crate::shadow`]); which
//!   statics it exports, with their types, is recorded beside the invocation ([`CrateFacts`]).
//!
//! For the binary's crate it also adds an rpath of `$ORIGIN`, so the program finds its shared
//! libraries beside itself, and exports the `__dsu_*` symbols (those of the library crates linked
//! into it included), through which the runtime finds the program's function table and patches
//! find the program's statics.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::compare::statics::{self, CrateFlags, HostStatic};
use crate::compare::CrateUnit;
use crate::locate::CrateKind;
use crate::shadow::{self, Shadow};

/// Environment variable naming the wrapper's configuration file.
pub const CONFIG_ENV: &str = "DSU_WRAPPER_CONFIG";

/// What the recipe tells the wrapper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrapperConfig {
    /// Crate name of the generated dependency library.
    pub deps_crate: String,
    /// The dependency library (`libdsu_deps_<H>.so`), once built.
    pub deps_dylib: Option<PathBuf>,
    /// The rlibs the dependency library was built from.
    #[serde(default)]
    pub deps_rlibs: Vec<PathBuf>,
    /// The crates of the updateable set: crate name and kind.
    pub set: Vec<(String, CrateKind)>,
    /// Where to record the set crates' rustc invocations (see [`record_path`]).
    pub record_dir: PathBuf,
    /// The directory holding every crate of the set: what a shadow tree mirrors.
    #[serde(default)]
    pub source_root: Option<PathBuf>,
    /// Where the shadow trees of crates whose statics are exported go, one per crate.
    #[serde(default)]
    pub shadow_dir: Option<PathBuf>,
}

/// What the wrapper learnt about a set crate besides its invocation, recorded beside it (see
/// [`facts_path`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrateFacts {
    /// `rustc --print cfg` under the invocation's flags.
    pub print_cfg: String,
    /// The statics its build exports; `None` when they could not be read (`statics_error`).
    pub statics: Option<Vec<HostStatic>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statics_error: Option<String>,
}

/// Where the facts of the set crate `crate_name` of `kind` are recorded.
pub fn facts_path(record_dir: &std::path::Path, crate_name: &str, kind: CrateKind) -> PathBuf {
    record_dir.join(format!("{crate_name}.{}.facts.json", kind.as_str()))
}

/// Where the invocation of the set crate `crate_name` of `kind` is recorded.
pub fn record_path(record_dir: &std::path::Path, crate_name: &str, kind: CrateKind) -> PathBuf {
    record_dir.join(format!("{crate_name}.{}.json", kind.as_str()))
}

/// A recorded rustc invocation of a crate of the updateable set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RustcInvocation {
    pub rustc: PathBuf,
    /// Arguments as cargo passed them, before the wrapper's changes.
    pub args: Vec<String>,
    /// Environment as cargo set it (the `CARGO_*` variables and `OUT_DIR`).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// Runs the wrapper: `argv` is `[rustc, args…]`. Returns rustc's exit code.
pub fn run(config_path: &std::path::Path, argv: Vec<OsString>) -> Result<i32> {
    let config: WrapperConfig = serde_json::from_slice(
        &std::fs::read(config_path)
            .with_context(|| format!("reading wrapper config {}", config_path.display()))?,
    )?;
    let mut argv = argv.into_iter();
    let rustc = PathBuf::from(argv.next().context("wrapper called without rustc")?);
    let args: Vec<String> = argv
        .map(|a| a.into_string().map_err(|a| anyhow::anyhow!("non-UTF-8 argument {a:?}")))
        .collect::<Result<_>>()?;
    let crate_name = arg_value(&args, "--crate-name").unwrap_or_default();
    let kind = if is_bin(&args) { CrateKind::Bin } else { CrateKind::Lib };
    let in_set = config.set.iter().any(|(n, k)| n == crate_name && *k == kind)
        && !args.iter().any(|a| a == "--test");

    let mut cmd = Command::new(&rustc);
    let mut shadow = None;
    if crate_name == config.deps_crate {
        cmd.args(&args).args(rpath_args());
    } else if in_set {
        let deps = deps_dylib(&config)?;
        check_single_copies(crate_name, &args, &config.deps_rlibs)?;
        let cwd = std::env::current_dir()?;
        let invocation = RustcInvocation {
            rustc: rustc.clone(),
            args: args.clone(),
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("CARGO") || k == "OUT_DIR")
                .collect(),
            cwd: cwd.clone(),
        };
        let record = record_path(&config.record_dir, crate_name, kind);
        std::fs::create_dir_all(&config.record_dir)?;
        std::fs::write(&record, serde_json::to_vec_pretty(&invocation)?)
            .with_context(|| format!("recording to {}", record.display()))?;
        let (mut facts, rewritten) = crate_facts(&config, &invocation)?;
        let mut rustc_args = rewrite_extern_dsu(&args, deps);
        if !rewritten.is_empty() && config.shadow_dir.is_none() {
            // Nowhere to put the exports: compiled as it is, exporting nothing.
            facts.statics = None;
            facts.statics_error = Some("the wrapper was not told where to put shadow trees".into());
        } else if let (false, Some(dir), Some(source_root)) = (rewritten.is_empty(), &config.shadow_dir, &config.source_root) {
            let sh = Shadow::prepare(&dir.join(format!("{crate_name}.{}", kind.as_str())), source_root, &rewritten)?;
            cmd.current_dir(sh.map(&cwd));
            let root = root_arg(&args).map(str::to_string);
            for a in rustc_args.iter_mut() {
                if Some(a.as_str()) == root.as_deref() {
                    *a = sh.map(std::path::Path::new(a.as_str())).display().to_string();
                }
            }
            rustc_args.push(sh.remap_arg());
            shadow = Some(sh);
        }
        let facts_file = facts_path(&config.record_dir, crate_name, kind);
        std::fs::write(&facts_file, serde_json::to_vec_pretty(&facts)?)
            .with_context(|| format!("recording to {}", facts_file.display()))?;
        cmd.args(rustc_args);
        if kind == CrateKind::Bin {
            cmd.args(rpath_args())
                .arg(format!("-Clink-arg=-Wl,--export-dynamic-symbol={}", dsu_abi::HOST_EXPORT_GLOB))
                .args(own_symbol_exports(&config));
        }
    } else if args.iter().any(|a| a.starts_with("dsu=")) {
        // Another crate of the workspace (say, the package's library) that uses dsu: it must
        // reach the same runtime as the program, through the shared library.
        let deps = deps_dylib(&config)?;
        check_single_copies(crate_name, &args, &config.deps_rlibs)?;
        cmd.args(rewrite_extern_dsu(&args, deps));
    } else {
        cmd.args(&args);
    }
    let status = cmd.status().with_context(|| format!("running {}", rustc.display()))?;
    if let (true, Some(sh), Some(dep_info)) = (status.success(), &shadow, shadow::dep_info_path(&args)) {
        sh.fix_dep_info(&dep_info)?;
    }
    Ok(status.code().unwrap_or(101))
}

/// The crate's configuration and the statics its build exports, with the files of the source
/// root rewritten to export them (relative paths, new text). When its statics cannot be read
/// (a module file the reader does not find), it is compiled as it is and the error recorded: a
/// patch of it is refused then, rather than given copies of its statics.
fn crate_facts(config: &WrapperConfig, inv: &RustcInvocation) -> Result<(CrateFacts, BTreeMap<PathBuf, String>)> {
    let print_cfg = crate::build::print_cfg(&inv.rustc, &inv.args)?;
    let mut facts = CrateFacts { print_cfg, statics: None, statics_error: None };
    let mut rewritten = BTreeMap::new();
    let (Some(source_root), Some(root)) = (&config.source_root, root_arg(&inv.args)) else {
        facts.statics_error = Some("the wrapper was not told the source root".into());
        return Ok((facts, rewritten));
    };
    let root = inv.cwd.join(root);
    let Ok(root_file) = root.strip_prefix(source_root) else {
        facts.statics_error = Some(format!("{} is not under the source root {}", root.display(), source_root.display()));
        return Ok((facts, rewritten));
    };
    let unit = CrateUnit {
        crate_name: arg_value(&inv.args, "--crate-name").unwrap_or_default().to_string(),
        root_file: root_file.to_path_buf(),
        package_dir: PathBuf::new(),
        cfg: Some(dsu_syntax::CfgSet::from_print_cfg(&facts.print_cfg)),
    };
    let plan = match statics::host_plan(&unit, source_root, CrateFlags::of(&inv.args, &root)) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("warning: dsu: the statics of `{}` are not exported, so no patch of it can be built: {e:#}", unit.crate_name);
            facts.statics_error = Some(format!("{e:#}"));
            return Ok((facts, rewritten));
        }
    };
    let files: std::collections::BTreeSet<&PathBuf> = plan.edits.iter().map(|e| &e.file).collect();
    for file in files {
        let path = source_root.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let edits: Vec<&statics::Edit> = plan.edits.iter().filter(|e| &e.file == file).collect();
        rewritten.insert(file.clone(), statics::apply_edits(&text, &edits)?);
    }
    facts.statics = Some(plan.statics);
    Ok((facts, rewritten))
}

/// `--export-dynamic-symbol` for every static of the set that already has a name of its own
/// (`#[no_mangle]`, `#[export_name]`), outside the `__dsu_*` glob: a patch binds to it by that
/// name. Read from the facts of the set's crates (the libraries were compiled first).
fn own_symbol_exports(config: &WrapperConfig) -> Vec<String> {
    let mut out = Vec::new();
    for (name, kind) in &config.set {
        let Ok(bytes) = std::fs::read(facts_path(&config.record_dir, name, *kind)) else { continue };
        let Ok(facts) = serde_json::from_slice::<CrateFacts>(&bytes) else { continue };
        for s in facts.statics.into_iter().flatten() {
            if s.not_exported.is_none() && !s.symbol.starts_with("__dsu_") {
                out.push(format!("-Clink-arg=-Wl,--export-dynamic-symbol={}", s.symbol));
            }
        }
    }
    out
}

/// The crate root argument of an invocation.
pub fn root_arg(args: &[String]) -> Option<&str> {
    args.iter().map(String::as_str).find(|a| a.ends_with(".rs") && !a.starts_with('-'))
}

fn deps_dylib(config: &WrapperConfig) -> Result<&std::path::Path> {
    config
        .deps_dylib
        .as_deref()
        .context("the dependency library must be built before the crates that use dsu")
}

/// Every crate the program names as an rlib extern must be the very rlib inside the dependency
/// library. Otherwise a flag or feature differs between the two builds, and the program would
/// silently link a second, static copy of that crate (a second tokio, a second logger).
fn check_single_copies(compiling: &str, args: &[String], deps_rlibs: &[PathBuf]) -> Result<()> {
    let crate_of = |file: &str| -> Option<String> {
        let stem = file.strip_prefix("lib")?;
        let stem = stem.strip_suffix(".rlib").or_else(|| stem.strip_suffix(".rmeta"))?;
        Some(stem.rsplit_once('-').map_or(stem, |(name, _)| name).to_string())
    };
    let file_name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    for w in args.windows(2).filter(|w| w[0] == "--extern") {
        let Some((name, path)) = w[1].split_once('=') else { continue };
        if name == "dsu" {
            continue;
        }
        let Some(file) = file_name(std::path::Path::new(path)) else { continue };
        let Some(krate) = crate_of(&file) else { continue };
        let same_crate: Vec<String> = deps_rlibs
            .iter()
            .filter_map(|p| file_name(p))
            .filter(|f| crate_of(f).as_deref() == Some(&krate))
            .collect();
        if !same_crate.is_empty() && !same_crate.iter().any(|f| strip_ext(f) == strip_ext(&file)) {
            bail!(
                "the program would link a second copy of `{krate}`: `{compiling}` gets {file}, the \
                 shared dependency library holds {}. A build flag, feature or profile setting \
                 differs between the two builds",
                same_crate.join(", ")
            );
        }
    }
    Ok(())
}

fn strip_ext(f: &str) -> &str {
    f.rsplit_once('.').map_or(f, |(s, _)| s)
}

/// `-C link-arg=-Wl,-rpath,$ORIGIN`: find shared libraries beside the binary.
pub fn rpath_args() -> [String; 1] {
    ["-Clink-arg=-Wl,-rpath,$ORIGIN".to_string()]
}

/// The values of `flag` in an argument list: `flag value`, `flag=value`, and for a short flag
/// (`-C`, `-L`) also `flagvalue`, as rustc accepts them.
pub fn flag_values<'a>(args: &'a [String], flag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let short = flag.len() == 2;
    let mut it = args.iter();
    std::iter::from_fn(move || {
        while let Some(a) = it.next() {
            if a == flag {
                return it.next().map(String::as_str);
            }
            if let Some(rest) = a.strip_prefix(flag) {
                if let Some(v) = rest.strip_prefix('=').or(short.then_some(rest)) {
                    return Some(v);
                }
            }
        }
        None
    })
}

/// The first value of `flag` (see [`flag_values`]).
pub fn arg_value<'a>(args: &'a [String], flag: &'a str) -> Option<&'a str> {
    flag_values(args, flag).next()
}

fn is_bin(args: &[String]) -> bool {
    args.windows(2).any(|w| w[0] == "--crate-type" && w[1] == "bin")
}

/// Replaces `--extern dsu=<rlib>` by `--extern dsu=<dependency library>`. rustc accepts an extern
/// whose name differs from the crate's, as cargo's renamed dependencies do.
pub fn rewrite_extern_dsu(args: &[String], deps_dylib: &std::path::Path) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--extern" {
            if let Some(v) = it.next() {
                if v.starts_with("dsu=") {
                    out.push(a.clone());
                    out.push(format!("dsu={}", deps_dylib.display()));
                } else {
                    out.push(a.clone());
                    out.push(v.clone());
                }
            }
        } else {
            out.push(a.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_the_dsu_extern() {
        let args: Vec<String> = ["--crate-name", "app", "--extern", "dsu=/t/libdsu-1.rlib", "--extern", "log=/t/liblog.rlib"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = rewrite_extern_dsu(&args, std::path::Path::new("/t/libdsu_deps_x.so"));
        assert_eq!(out[3], "dsu=/t/libdsu_deps_x.so");
        assert_eq!(out[5], "log=/t/liblog.rlib");
        assert_eq!(arg_value(&args, "--crate-name"), Some("app"));
    }

    #[test]
    fn refuses_a_second_copy_of_a_dependency() {
        let args: Vec<String> = ["--extern", "log=/t/deps/liblog-aaaa.rmeta", "--extern", "dsu=/t/libdsu-1.rlib"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let same = vec![PathBuf::from("/t/deps/liblog-aaaa.rlib")];
        assert!(check_single_copies("app", &args, &same).is_ok());
        let other = vec![PathBuf::from("/t/deps/liblog-bbbb.rlib")];
        let err = check_single_copies("app", &args, &other).unwrap_err().to_string();
        assert!(err.contains("second copy of `log`") && err.contains("liblog-bbbb.rlib"), "{err}");
        assert!(err.contains("`app` gets"), "{err}");
        assert!(check_single_copies("app", &args, &[]).is_ok(), "crates outside the library are fine");
    }
}
