//! The command line: `cargo dsu build`, `cargo dsu patch A..B`, `cargo dsu history A..B`, and `cargo dsu load|rollback|status
//! --socket PATH`, which talk to a running program through its control socket
//! (`dsu::control::serve`).
//!
//! Output contract: status lines on stderr in cargo's right-aligned style; the one result (the
//! binary's or the patch's path, or the report with `--dry-run`/`--json`) on stdout.

use crate::build::{self, Built};
use crate::exit::{self, Exit};
use crate::locate::BuildOptions;
use crate::{control_client, patch};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo", version, about = "Dynamic software updating for Rust programs")]
pub enum Cargo {
    /// Build updateable programs, and patches that replace their code while they run.
    #[command(version, after_help = exit::help())]
    Dsu(DsuArgs),
}

#[derive(Args, Debug)]
pub struct DsuArgs {
    #[command(subcommand)]
    pub command: DsuCommand,
}

#[derive(Subcommand, Debug)]
pub enum DsuCommand {
    /// Build the program in updateable form into target/dsu/<profile>/.
    ///
    /// The directory holds the binary, the shared dependency library, the toolchain's libstd
    /// and the build record (<bin>.dsu.json); it runs as it is, without cargo or
    /// LD_LIBRARY_PATH, and can be copied elsewhere. Prints the binary's path on stdout.
    #[command(after_help = exit::help())]
    Build(BuildArgs),
    /// Build a patch that turns the program built from revision A into revision B.
    ///
    /// Both revisions are checked out into target/dsu/checkouts/; their updateable functions
    /// are compared; changes that cannot be applied safely are refused with file:line and the
    /// reason. The patch applies to the `cargo dsu build` of A (or to the version a patch
    /// reached at A) and is written to target/dsu/patches/, its path printed on stdout.
    #[command(after_help = exit::help())]
    Patch(PatchArgs),
    /// Say what `cargo dsu patch` makes of each commit of a range A..B, one after the other.
    ///
    /// Each commit of A..B on the first-parent line that changes the program (a package of an
    /// updateable set, the workspace manifest or lock file) is compared with the one before it:
    /// patched (functions, types, cells; whether a rollback can undo it), nothing to patch, or
    /// refused (each reason, with file:line). Builds nothing unless --build. Ends with the share
    /// of commits that go live and the refusals grouped by reason. Prints the table on stdout.
    #[command(after_help = exit::help())]
    History(HistoryArgs),
    /// Ask a running program to load a patch and apply it; waits until it is applied.
    ///
    /// The program must serve a control socket (`dsu::control::serve`). The patch is verified
    /// by the program like any other. Prints the revision the program runs afterwards.
    #[command(after_help = exit::help())]
    Load(LoadArgs),
    /// Ask a running program to return to the version before its newest patch.
    ///
    /// Code always rolls back; state only where the patch carries inverse transformers
    /// (`#[dsu::transform(to = dsu_old::T)]`), otherwise the program refuses, naming the state
    /// cell. Waits until the rollback is applied; prints the revision the program runs then.
    #[command(after_help = exit::help())]
    Rollback(ControlArgs),
    /// Print a running program's version, updates, pending work, threads and last refusal.
    ///
    /// Prints one line: the revision it runs, how many updates it applied, how many wait,
    /// how many threads take part in updates, the last update's pause in microseconds, and
    /// the last refusal.
    #[command(after_help = exit::help())]
    Status(ControlArgs),
    /// Write a new signing key pair: NAME.key (secret, mode 0600) and NAME.pub.
    ///
    /// Give NAME.pub to `cargo dsu build --trust` (or to `dsu::trust_key` in the program) and
    /// NAME.key to `cargo dsu patch --sign` or `cargo dsu sign`. Prints the key's id.
    #[command(after_help = exit::help())]
    Keygen(KeygenArgs),
    /// Sign an existing patch file with a key from `cargo dsu keygen`.
    ///
    /// Checks the patch's seal first (a damaged patch is not signed), then rewrites the seal
    /// with the signature. Prints the key's id.
    #[command(after_help = exit::help())]
    Sign(SignArgs),
}

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Path and base name of the key files (NAME.key, NAME.pub).
    #[arg(value_name = "NAME")]
    pub name: PathBuf,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The patch file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The secret key (NAME.key).
    #[arg(long, value_name = "NAME.key")]
    pub key: PathBuf,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    /// The program's control socket (the path it gave `dsu::control::serve`).
    #[arg(long, value_name = "PATH")]
    pub socket: PathBuf,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The patch file (from `cargo dsu patch`).
    #[arg(value_name = "PATCH")]
    pub patch: PathBuf,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PackageArgs {
    /// Path to Cargo.toml (default: the nearest one at or above the working directory).
    #[arg(long, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Package to build (default: the package of the manifest).
    #[arg(short, long, value_name = "SPEC")]
    pub package: Option<String>,
    /// Binary target to build or patch (default: every binary of the package).
    #[arg(long, value_name = "NAME")]
    pub bin: Option<String>,
    /// Use the release profile.
    #[arg(long)]
    pub release: bool,
    /// Directory for all generated artifacts (default: the workspace's target directory).
    #[arg(long, value_name = "DIR")]
    pub target_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    #[command(flatten)]
    pub package: PackageArgs,
    /// Trust this public key (NAME.pub from `cargo dsu keygen`) to sign patches; repeatable.
    /// The program then loads only patches signed by one of its trusted keys.
    #[arg(long, value_name = "NAME.pub")]
    pub trust: Vec<PathBuf>,
    /// Reach thread-locals of the program and its dependencies with one load instead of a call
    /// to `__tls_get_addr` (the initial-exec TLS model; needs a nightly compiler). Patches are
    /// built without it.
    #[arg(long)]
    pub initial_exec_tls: bool,
}

#[derive(Args, Debug)]
pub struct PatchArgs {
    /// Revisions: `A..B` (tags, commit ids, `HEAD~1..HEAD`), or `A..` for A to the work tree.
    #[arg(value_name = "A..B")]
    pub range: String,
    #[command(flatten)]
    pub package: PackageArgs,
    /// Write the patch to FILE instead of target/dsu/patches/.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Only compare the revisions and print the report; build nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout (with the patch's path when one is built).
    #[arg(long)]
    pub json: bool,
    /// Sign the patch with this secret key (NAME.key from `cargo dsu keygen`).
    #[arg(long, value_name = "NAME.key")]
    pub sign: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Revisions: `A..B`, or `A..` for A to HEAD.
    #[arg(value_name = "A..B")]
    pub range: String,
    #[command(flatten)]
    pub package: PackageArgs,
    /// Build each patch as `cargo dsu patch` would (needs a `cargo dsu build`), so a patch
    /// that does not compile is refused too.
    #[arg(long)]
    pub build: bool,
    /// Print the history as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// For an executable that carries cargo-dsu and runs itself as `cargo dsu` (the demo, the kv
/// benches and tests): when it was started as `EXE dsu …`, or by cargo as the rustc wrapper of
/// an updateable build, runs exactly the `cargo dsu` command and returns its exit code; `None`
/// when the executable should go on as itself.
pub fn run_if_invoked_as_cargo_dsu() -> Option<ExitCode> {
    let invoked = std::env::var_os(crate::wrapper::CONFIG_ENV).is_some()
        || std::env::args_os().nth(1).is_some_and(|a| a == "dsu");
    invoked.then(|| main_with(std::env::args_os().collect()))
}

/// `cargo-dsu`'s `main`: the rustc wrapper during an updateable build, the CLI otherwise.
pub fn main_with(argv: Vec<OsString>) -> ExitCode {
    if let Some(config) = std::env::var_os(crate::wrapper::CONFIG_ENV) {
        return match crate::wrapper::run(Path::new(&config), argv.into_iter().skip(1).collect()) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("error: dsu wrapper: {e:#}");
                ExitCode::from(101)
            }
        };
    }
    let Cargo::Dsu(args) = match Cargo::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let exit = Exit::of(&e);
            let label = if exit == Exit::NothingToPatch { "note" } else { "error" };
            eprintln!("{label}: {e:#}");
            ExitCode::from(exit.code())
        }
    }
}

pub fn run(args: DsuArgs) -> Result<()> {
    match args.command {
        DsuCommand::Build(b) => {
            let built = build(&b)?;
            for record in &built.records {
                println!("{}", record.binary.display());
            }
            Ok(())
        }
        DsuCommand::Patch(p) => patch::run(&patch::PatchRequest {
            range: p.range.clone(),
            opts: build_options(&p.package)?,
            output: p.output.clone(),
            dry_run: p.dry_run,
            json: p.json,
            signing_key: p.sign.as_deref().map(crate::sign::read_secret_key).transpose()?,
        }),
        DsuCommand::History(h) => crate::history::run(
            &crate::history::HistoryRequest {
                range: h.range.clone(),
                opts: build_options(&h.package)?,
                build: h.build,
            },
            h.json,
        ),
        DsuCommand::Load(l) => {
            // The program resolves the path from its own working directory: send it whole.
            let patch = std::path::absolute(&l.patch)
                .with_context(|| format!("cannot resolve {}", l.patch.display()))?;
            let patch = patch.to_str().context("the patch path is not UTF-8")?;
            println!("{}", control_client::send(&l.control.socket, &format!("load {patch}"))?);
            Ok(())
        }
        DsuCommand::Rollback(c) => {
            println!("{}", control_client::send(&c.socket, "rollback")?);
            Ok(())
        }
        DsuCommand::Status(c) => {
            println!("{}", control_client::send(&c.socket, "status")?);
            Ok(())
        }
        DsuCommand::Keygen(k) => {
            let keys = crate::sign::keygen(&k.name)?;
            status("Created", format!("{} (secret, mode 0600) and {}", keys.secret.display(), keys.public.display()));
            println!("{}", keys.id);
            Ok(())
        }
        DsuCommand::Sign(s) => {
            let id = crate::sign::sign_file(&s.file, &s.key)?;
            status("Signed", format!("{} with key {id}", s.file.display()));
            println!("{id}");
            Ok(())
        }
    }
}

/// Prints a status line the way cargo does.
pub fn status(verb: &str, message: impl std::fmt::Display) {
    eprintln!("{verb:>12} {message}");
}

fn build_options(p: &PackageArgs) -> Result<BuildOptions> {
    let mut opts = BuildOptions::new(PathBuf::new(), wrapper_exe()?);
    opts.manifest_path = p.manifest_path.clone();
    opts.package = p.package.clone();
    opts.bin = p.bin.clone();
    opts.release = p.release;
    opts.target_dir = p.target_dir.clone();
    Ok(opts)
}

/// The executable cargo runs as rustc wrapper: this one.
fn wrapper_exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the running cargo-dsu executable")
}

fn build(b: &BuildArgs) -> Result<Built> {
    let mut opts = build_options(&b.package)?;
    opts.trust = b.trust.clone();
    opts.initial_exec_tls = b.initial_exec_tls;
    let target = crate::locate::locate(&opts)?;
    if opts.initial_exec_tls && !target.rustc.is_nightly() {
        anyhow::bail!(
            "--initial-exec-tls needs a nightly compiler (it passes `{}`); this one is {}",
            crate::deps_library::INITIAL_EXEC_TLS,
            target.rustc.release()
        );
    }
    let bins: Vec<&str> = target.programs.iter().map(|p| p.bin.as_str()).collect();
    status("Building", format!("{} ({}) in updateable form", target.package_name, bins.join(", ")));
    let built = build::build_target(&target, &opts)?;
    if !built.source.dirty_files.is_empty() {
        status(
            "Warning",
            format!(
                "the work tree is dirty ({}): `cargo dsu patch` can only patch a build of a \
                 committed revision; commit them and rebuild",
                built.source.dirty_files.join(", ")
            ),
        );
    }
    for record in &built.records {
        let id = record.identity();
        status(
            "Finished",
            format!(
                "{} of {} (revision {}, dependency library {}, {} crate(s) updateable)",
                record.bin,
                record.package,
                id.revision,
                id.deps,
                record.crates.len()
            ),
        );
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cargo::command().debug_assert();
    }
}
