//! `cargo-dsu` as cargo's `RUSTC_WRAPPER`: it adjusts the rustc invocations of the generated
//! dependency library and of the crates of the updateable set, and leaves every other one alone.
//! (`RUSTC_WRAPPER`, not `RUSTC_WORKSPACE_WRAPPER`: a path dependency outside the workspace
//! belongs to the set too.)
//!
//! For every crate of the updateable set it
//! * points `--extern dsu=…` at the shared dependency library, so the program reaches every
//!   dependency (and the dsu runtime) through that one library;
//! * refuses an rlib extern that differs from the one inside the dependency library;
//! * records the invocation, from which patches are built later.
//!
//! For the binary's crate it also adds an rpath of `$ORIGIN`, so the program finds its shared
//! libraries beside itself, and exports the `__dsu_*` symbols (those of the library crates linked
//! into it included), through which the runtime finds the program's function table.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::locate::CrateKind;

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
    if crate_name == config.deps_crate {
        cmd.args(&args).args(rpath_args());
    } else if in_set {
        let deps = deps_dylib(&config)?;
        check_single_copies(crate_name, &args, &config.deps_rlibs)?;
        let invocation = RustcInvocation {
            rustc: rustc.clone(),
            args: args.clone(),
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("CARGO") || k == "OUT_DIR")
                .collect(),
            cwd: std::env::current_dir()?,
        };
        let record = record_path(&config.record_dir, crate_name, kind);
        std::fs::create_dir_all(&config.record_dir)?;
        std::fs::write(&record, serde_json::to_vec_pretty(&invocation)?)
            .with_context(|| format!("recording to {}", record.display()))?;
        cmd.args(rewrite_extern_dsu(&args, deps));
        if kind == CrateKind::Bin {
            cmd.args(rpath_args())
                .arg(format!("-Clink-arg=-Wl,--export-dynamic-symbol={}", dsu_abi::HOST_EXPORT_GLOB));
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
    Ok(status.code().unwrap_or(101))
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
