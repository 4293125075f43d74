//! The command line: `cargo dsu build`, `cargo dsu patch A..B`, and `cargo dsu load|rollback|status
//! --socket PATH`, which talk to a running program through its control socket
//! (`dsu::control::serve`).
//!
//! Output contract: status lines on stderr in cargo's right-aligned style; the one result (the
//! binary's or the patch's path, or the report with `--dry-run`/`--json`) on stdout.

use crate::diff::{self, Report};
use crate::git::{self, Repo};
use crate::recipe::{self, BuildOptions, BuildRecord, PatchOptions};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  an unexpected failure
  2  bad command-line usage
  3  git: not a repository, or an unknown revision
  4  the program or the patch does not compile (the compiler's errors are shown)
  5  the patch is refused: a change it cannot apply safely (file:line and reason are shown)
  6  no updateable program: no binary, no dependency on dsu, or no `cargo dsu build` yet
  7  the target directory cannot be written
  8  the running program refused the request (its reason is shown)
  9  the running program's control socket cannot be reached";

/// What went wrong, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Other = 1,
    Git = 3,
    Compile = 4,
    Refused = 5,
    NotUpdateable = 6,
    Io = 7,
    ProgramRefused = 8,
    Unreachable = 9,
}

/// Classifies an error by the marker types the library attaches.
pub fn classify(e: &anyhow::Error) -> Failure {
    // `downcast_ref` finds a marker whether it is the error, a cause, or attached as context.
    if e.downcast_ref::<git::NotARepository>().is_some() || e.downcast_ref::<git::UnknownRevision>().is_some() {
        Failure::Git
    } else if e.downcast_ref::<recipe::CompileFailed>().is_some() {
        Failure::Compile
    } else if e.downcast_ref::<Refused>().is_some() {
        Failure::Refused
    } else if e.downcast_ref::<recipe::NotUpdateable>().is_some() {
        Failure::NotUpdateable
    } else if e.downcast_ref::<recipe::OutputNotWritable>().is_some() {
        Failure::Io
    } else if e.downcast_ref::<ProgramRefused>().is_some() {
        Failure::ProgramRefused
    } else if e.downcast_ref::<Unreachable>().is_some() {
        Failure::Unreachable
    } else {
        Failure::Other
    }
}

/// The patch was refused; the reasons have been printed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// The running program refused a control request; its reason.
#[derive(Debug, thiserror::Error)]
#[error("the running program refused: {0}")]
pub struct ProgramRefused(pub String);

/// The control socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the running program's control socket {path}: {reason}")]
pub struct Unreachable {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo", version, about = "Dynamic software updating for Rust programs")]
pub enum Cargo {
    /// Build updateable programs, and patches that replace their code while they run.
    #[command(version, after_help = EXIT_CODES)]
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
    #[command(after_help = EXIT_CODES)]
    Build(BuildArgs),
    /// Build a patch that turns the program built from revision A into revision B.
    ///
    /// Both revisions are checked out into target/dsu/checkouts/; their updateable functions
    /// are compared; changes that cannot be applied safely are refused with file:line and the
    /// reason. The patch applies to the `cargo dsu build` of A (or to the version a patch
    /// reached at A) and is written to target/dsu/patches/, its path printed on stdout.
    #[command(after_help = EXIT_CODES)]
    Patch(PatchArgs),
    /// Ask a running program to load a patch and apply it; waits until it is applied.
    ///
    /// The program must serve a control socket (`dsu::control::serve`). The patch is verified
    /// by the program like any other. Prints the revision the program runs afterwards.
    #[command(after_help = EXIT_CODES)]
    Load(LoadArgs),
    /// Ask a running program to return to the version before its newest patch.
    ///
    /// Code always rolls back; state only where the patch carries inverse transformers
    /// (`#[dsu::transform(to = dsu_old::T)]`), otherwise the program refuses, naming the state
    /// cell. Waits until the rollback is applied; prints the revision the program runs then.
    #[command(after_help = EXIT_CODES)]
    Rollback(ControlArgs),
    /// Print a running program's version, updates, pending work, threads and last refusal.
    ///
    /// Prints one line: the revision it runs, how many updates it applied, how many wait,
    /// how many threads take part in updates, the last update's pause in microseconds, and
    /// the last refusal.
    #[command(after_help = EXIT_CODES)]
    Status(ControlArgs),
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
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH", default_value = "Cargo.toml")]
    pub manifest_path: PathBuf,
    /// Package to build (default: the package of the manifest).
    #[arg(short, long, value_name = "SPEC")]
    pub package: Option<String>,
    /// Binary target to build (default: the package's only binary).
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
            let failure = classify(&e);
            eprintln!("error: {e:#}");
            ExitCode::from(failure as u8)
        }
    }
}

pub fn run(args: DsuArgs) -> Result<()> {
    match args.command {
        DsuCommand::Build(b) => {
            let record = build(&b.package)?;
            println!("{}", record.binary.display());
            Ok(())
        }
        DsuCommand::Patch(p) => patch(&p),
        DsuCommand::Load(l) => {
            // The program resolves the path from its own working directory: send it whole.
            let patch = std::path::absolute(&l.patch)
                .with_context(|| format!("cannot resolve {}", l.patch.display()))?;
            let patch = patch.to_str().context("the patch path is not UTF-8")?;
            println!("{}", control(&l.control.socket, &format!("load {patch}"))?);
            Ok(())
        }
        DsuCommand::Rollback(c) => {
            println!("{}", control(&c.socket, "rollback")?);
            Ok(())
        }
        DsuCommand::Status(c) => {
            println!("{}", control(&c.socket, "status")?);
            Ok(())
        }
    }
}

/// Sends one command line to a program's control socket; its reply without the `ok `.
fn control(socket: &Path, command: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    let unreachable = |e: std::io::Error| Unreachable { path: socket.to_path_buf(), reason: e.to_string() };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    stream.write_all(format!("{command}\n").as_bytes()).map_err(unreachable)?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply).map_err(unreachable)?;
    let reply = reply.trim_end();
    if let Some(text) = reply.strip_prefix("ok ") {
        Ok(text.to_string())
    } else if let Some(reason) = reply.strip_prefix("refused ") {
        Err(ProgramRefused(reason.to_string()).into())
    } else {
        Err(Unreachable { path: socket.to_path_buf(), reason: format!("unexpected reply {reply:?}") }.into())
    }
}

/// Prints a status line the way cargo does.
pub fn status(verb: &str, message: impl std::fmt::Display) {
    eprintln!("{verb:>12} {message}");
}

fn build_options(p: &PackageArgs) -> Result<BuildOptions> {
    let mut opts = BuildOptions::new(&p.manifest_path, wrapper_exe()?);
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

fn build(p: &PackageArgs) -> Result<BuildRecord> {
    let opts = build_options(p)?;
    status("Building", format!("{} in updateable form", opts.manifest_path.display()));
    let record = recipe::build(&opts)?;
    let id = record.identity();
    status(
        "Finished",
        format!("{} (revision {}, dependency library {})", record.binary.display(), id.revision, id.deps),
    );
    Ok(record)
}

fn patch(p: &PatchArgs) -> Result<()> {
    let (a, b) = p.range.split_once("..").with_context(|| {
        git::UnknownRevision { rev: p.range.clone(), detail: "expected a range A..B or A..".into() }
    })?;
    if a.is_empty() {
        return Err(git::UnknownRevision {
            rev: p.range.clone(),
            detail: "the range needs a first revision (A..B)".into(),
        }
        .into());
    }
    let opts = build_options(&p.package)?;
    let target = recipe::locate(&opts)?;
    let repo = Repo::discover(&target.package_root)?;
    let a_commit = repo.resolve(a)?;
    let b_commit = if b.is_empty() { None } else { Some(repo.resolve(b)?) };

    let checkouts = target.dsu_dir.join("checkouts").join(&target.bin);
    // One `cargo dsu patch` at a time per program: the checkouts are shared and rewritten in
    // place. The lock is held until the patch is built and released when this process exits.
    std::fs::create_dir_all(&checkouts).map_err(|e| {
        anyhow::Error::new(recipe::OutputNotWritable(checkouts.clone())).context(e)
    })?;
    let lock = std::fs::File::create(checkouts.join(".lock"))
        .map_err(|e| anyhow::Error::new(recipe::OutputNotWritable(checkouts.clone())).context(e))?;
    if lock.try_lock().is_err() {
        status("Blocking", "waiting for another cargo dsu patch of this program");
        lock.lock().context("locking the checkouts")?;
    }
    let old_dir = checkouts.join("old");
    let new_dir = checkouts.join("new");
    status("Checking out", format!("{a} ({})", short(&a_commit)));
    let old = repo.checkout(&a_commit, &old_dir)?;
    let new = match &b_commit {
        Some(c) => {
            status("Checking out", format!("{b} ({})", short(c)));
            repo.checkout(c, &new_dir)?
        }
        None => {
            status("Copying", "the work tree");
            repo.copy_work_tree(&target.package_root, &new_dir)?
        }
    };

    status("Comparing", format!("{}..{}", short(&old.revision), short(&new.revision)));
    // One crate for now: the binary's, from its root.
    let unit = diff::CrateUnit {
        crate_name: target.crate_name.clone(),
        root_file: "src/main.rs".into(),
        package_dir: "".into(),
    };
    let report = diff::compare(std::slice::from_ref(&unit), &old_dir, &new_dir)?;
    if p.dry_run {
        if p.json {
            println!("{}", report_json(&report, None)?);
        } else {
            print!("{}", render_report(&report));
        }
        return refuse_if_needed(&report);
    }
    eprint!("{}", render_report(&report));
    refuse_if_needed(&report)?;

    let record_path = BuildRecord::record_path(&target.out_dir, &target.bin);
    let record = BuildRecord::load(&record_path).map_err(|e| {
        anyhow::Error::new(recipe::NotUpdateable(format!(
            "no updateable build of {} yet: run `cargo dsu build{}` first ({e:#})",
            target.bin,
            if p.package.release { " --release" } else { "" }
        )))
    })?;
    let applies_to = record.identity().at_source(&a_commit, &old.tree);
    let output = match &p.output {
        Some(o) => o.clone(),
        None => target.dsu_dir.join("patches").join(format!(
            "{}-{}-{}{}.so",
            target.bin,
            short(&a_commit),
            b_commit.as_deref().map(short).unwrap_or_else(|| format!("worktree-{}", &new.tree[..8])),
            if p.package.release { "-release" } else { "" }
        )),
    };
    let extra_source = diff::root_appendix(&report.generated, &unit.root_file, &new_dir)?;
    status("Building", format!("patch {}..{}", short(&a_commit), short(&new.revision)));
    let patch = recipe::build_patch(
        &record,
        &PatchOptions {
            source_root: new_dir,
            applies_to,
            source: new,
            output,
            extra_source,
            routed: report.functions_routed.iter().map(|f| f.path.clone()).collect(),
        },
    )?;
    status("Finished", patch.display());
    if p.json {
        println!("{}", report_json(&report, Some(&patch))?);
    } else {
        println!("{}", patch.display());
    }
    Ok(())
}

fn short(rev: &str) -> String {
    rev.chars().take(10).collect()
}

fn refuse_if_needed(report: &Report) -> Result<()> {
    if !report.refusals.is_empty() {
        return Err(Refused(format!(
            "the patch is refused: {} change(s) cannot be applied safely (see above)",
            report.refusals.len()
        ))
        .into());
    }
    if report.is_empty_change() {
        return Err(Refused("no updateable function changed: there is nothing to patch".into()).into());
    }
    Ok(())
}

/// The human-readable report.
pub fn render_report(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut section = |title: &str, items: &[diff::ItemRef], note: &str| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(s, "{title} ({}):{note}", items.len());
        for i in items {
            let _ = writeln!(s, "    {}  ({}:{})", i.path, i.file, i.line);
        }
    };
    section("functions changed", &r.functions_changed, "");
    section("functions added", &r.functions_added, "");
    section("functions removed", &r.functions_removed, " (old callers keep the old code)");
    section(
        "changed functions that are not updateable",
        &r.non_updateable_changed,
        "\n    callers inside the patch see the new version; callers in the running program keep the old one",
    );
    section("types changed", &r.types_changed, "");
    let irreversible: Vec<&str> = r
        .cells_transformed
        .iter()
        .filter(|c| !r.cells_reversible.contains(c))
        .map(|c| c.path.as_str())
        .collect();
    let cells_note = if irreversible.is_empty() {
        " (at the update point, all or none; reversible: inverse transformers for every cell)".to_string()
    } else {
        format!(
            " (at the update point, all or none; not reversible: no inverse transformer \
             `#[dsu::transform(to = …)]` for {}, so a rollback will be refused)",
            irreversible.join(", ")
        )
    };
    section("state cells transformed", &r.cells_transformed, &cells_note);
    section(
        "functions routed",
        &r.functions_routed,
        " (their signature mentions a changed type: callers in the running program keep the old version)",
    );
    for refusal in &r.refusals {
        let _ = writeln!(s, "refused: {}:{}: {}", refusal.file, refusal.line, refusal.reason);
    }
    if s.is_empty() {
        s.push_str("no changes\n");
    }
    s
}

fn report_json(r: &Report, patch: Option<&Path>) -> Result<String> {
    let mut v = serde_json::to_value(r)?;
    v["patch"] = serde_json::json!(patch.map(|p| p.display().to_string()));
    Ok(serde_json::to_string_pretty(&v)?)
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
