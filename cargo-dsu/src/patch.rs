//! `cargo dsu patch A..B`: checks that a patch from A can apply to the program's build, checks
//! both revisions out, compares every crate of each binary's updateable set, and builds one
//! patch per binary that changed.
//!
//! What the running program would refuse at load time is refused here first, with what to do:
//! a build made from a dirty work tree, a build of another profile, a base revision the build
//! cannot have reached, a compiler other than the build's.

use crate::build::BuildRecord;
use crate::compare::{self, CrateUnit, Report};
use crate::git::{self, Repo};
use crate::identity::SourceState;
use crate::locate::{self, BuildOptions, NotUpdateable, Program, Target};
use crate::patch_build::{self, PatchOptions};
use crate::compare::deps;
use crate::{cli::status, report};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The patch was refused: the message, and the reasons with their places when the refusal has
/// them (those of the patch build: `history` reports them as the compare step's are).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub message: String,
    pub reasons: Vec<crate::compare::Refusal>,
}

impl Refused {
    /// A refusal whose reasons have been printed, or that the message says whole.
    pub fn new(message: String) -> Refused {
        Refused { message, reasons: Vec::new() }
    }

    /// A refusal for `reasons`, listed one a line as `file:line: reason`.
    pub fn listing(reasons: Vec<crate::compare::Refusal>) -> Refused {
        let lines: Vec<String> = reasons.iter().map(|r| format!("{}:{}: {}", r.file, r.line, r.reason)).collect();
        Refused { message: format!("the patch is refused:\n{}", lines.join("\n")), reasons }
    }
}

/// No binary's behaviour changed between the revisions.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NothingToPatch(pub String);

/// What `cargo dsu patch` was asked.
pub struct PatchRequest {
    /// `A..B` or `A..`.
    pub range: String,
    pub opts: BuildOptions,
    /// Where to write the patch (one binary only); `target/dsu/patches/` otherwise.
    pub output: Option<PathBuf>,
    pub dry_run: bool,
    pub json: bool,
    /// Signs the patch (`--sign NAME.key`).
    pub signing_key: Option<ed25519_dalek::SigningKey>,
}

/// The two revisions, checked out.
pub(crate) struct Revisions {
    /// The older revision's commit.
    pub a: String,
    /// The newer revision's commit; the work tree when `None`.
    pub b: Option<String>,
    pub old_dir: PathBuf,
    pub new_dir: PathBuf,
    pub old: SourceState,
    pub new: SourceState,
    _lock: std::fs::File,
}

pub fn run(req: &PatchRequest) -> Result<()> {
    let (a, b) = parse_range(&req.range)?;
    let target = locate::locate(&req.opts)?;
    let repo = Repo::discover(&target.source_root)?;
    if req.output.is_some() && target.programs.len() > 1 {
        anyhow::bail!(NotUpdateable(format!(
            "package {} has several binaries; choose one with --bin to use --output",
            target.package_name
        )));
    }
    let a_commit = repo.resolve(a)?;
    let records: Vec<Option<BuildRecord>> = if req.dry_run {
        // A dry run needs no build, but compares as the build compiles when there is one.
        target.programs.iter().map(|p| load_record(&target, p, &req.opts).ok()).collect()
    } else {
        checked_records(&target, &repo, a, &a_commit, &req.opts)?
    };
    let revs = checkout(&repo, &target, (a, a_commit), b)?;
    status("Comparing", format!("{} {}..{}", target.package_name, short(&revs.old.revision), short(&revs.new.revision)));
    // Every binary is compared before any patch is built: a build inserts generated code into
    // the newer checkout, which the next one starts by restoring.
    let reports = compare_revisions(&target, &req.opts.cargo, &records, &revs, true)?;
    for (program, report) in target.programs.iter().zip(&reports) {
        print_report(req, &target, program, report)?;
    }
    let mut outcomes = Vec::new();
    for (i, (program, report)) in target.programs.iter().zip(reports).enumerate() {
        let patch = match &records[i] {
            Some(record) if !req.dry_run && !report.is_empty_change() => {
                restore_new(&repo, &target, &revs)?;
                let output = match &req.output {
                    Some(o) => o.clone(),
                    None => target.dsu_dir.join("patches").join(format!(
                        "{}-{}-{}{}.so",
                        record.bin,
                        short(&revs.a),
                        revs.b.as_deref().map(short).unwrap_or_else(|| format!("worktree-{}", &revs.new.tree[..8])),
                        if req.opts.release { "-release" } else { "" }
                    )),
                };
                Some(build_one(record, &report, &revs, output, req.signing_key.clone())?)
            }
            _ => None,
        };
        outcomes.push(Outcome {
            json: report::json(&report, &program.bin, patch.as_deref())?,
            patch,
            nothing: report.is_empty_change(),
        });
    }
    if req.json {
        print_json(&outcomes.iter().map(|o| o.json.clone()).collect::<Vec<_>>())?;
    } else {
        for patch in outcomes.iter().filter_map(|o| o.patch.as_ref()) {
            println!("{}", patch.display());
        }
    }
    if outcomes.iter().all(|o| o.nothing) {
        return Err(NothingToPatch(format!(
            "nothing to patch: no updateable code of {} changed between {} and {}",
            target.package_name,
            short(&revs.a),
            revs.b.as_deref().map(short).unwrap_or_else(|| "the work tree".into())
        ))
        .into());
    }
    Ok(())
}

/// What `cargo dsu patch` did for one binary.
struct Outcome {
    /// Its report as JSON (with the patch's path), for `--json`.
    json: serde_json::Value,
    patch: Option<PathBuf>,
    /// Nothing of its updateable set changed.
    nothing: bool,
}

/// The build records of every binary, each checked against what its program would refuse.
///
/// Without `--bin`, a binary that was never built is skipped (one may build only the binary it
/// runs); it is an error only when no binary has a build, or when `--bin` names it.
fn checked_records(
    target: &Target,
    repo: &Repo,
    a: &str,
    a_commit: &str,
    opts: &BuildOptions,
) -> Result<Vec<Option<BuildRecord>>> {
    let mut records = Vec::new();
    let mut missing = None;
    for p in &target.programs {
        match load_record(target, p, opts) {
            Ok(record) => {
                check_base(repo, target, &record, a, a_commit)?;
                records.push(Some(record));
            }
            Err(e) if opts.bin.is_none() && e.downcast_ref::<NotUpdateable>().is_some() => {
                status("Skipping", format!("{}: no `cargo dsu build` of it", p.bin));
                missing.get_or_insert(e);
                records.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    match missing {
        Some(e) if records.iter().all(Option::is_none) => Err(e),
        _ => Ok(records),
    }
}

/// Compares the updateable set of every binary of `target` (each as its build compiles it, when
/// `records` holds one) and the package's dependencies between the two checkouts: the one
/// comparison `cargo dsu patch` and `cargo dsu history` make. With `running`, the build
/// records are those of the running program, whose statics a patch must reach.
pub(crate) fn compare_revisions(
    target: &Target,
    cargo: &Path,
    records: &[Option<BuildRecord>],
    revs: &Revisions,
    running: bool,
) -> Result<Vec<Report>> {
    let dirs: Vec<PathBuf> = target
        .programs
        .iter()
        .flat_map(|p| &p.crates)
        .map(|c| c.unit(&target.source_root, None).package_dir)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let dirs: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    let workspace = target
        .metadata
        .workspace_root
        .as_std_path()
        .strip_prefix(&target.source_root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dependencies = deps::refuse_changed_dependencies(
        &deps::Program {
            cargo,
            package: &target.package_name,
            triple: &target.triple,
            workspace_dir: &workspace,
            package_dirs: &dirs,
        },
        &revs.old_dir,
        &revs.new_dir,
    )?;
    target
        .programs
        .iter()
        .zip(records)
        .map(|(program, record)| {
            let mut report = compare(target, program, record.as_ref(), revs, running)?;
            report.refusals.extend(dependencies.iter().cloned());
            report.refusals.sort_by(|a, b| (&a.file, a.line, &a.reason).cmp(&(&b.file, b.line, &b.reason)));
            Ok(report)
        })
        .collect()
}

/// Prints one binary's report; refuses what it cannot apply.
fn print_report(req: &PatchRequest, target: &Target, program: &Program, report: &Report) -> Result<()> {
    let mut text = report::render(report);
    if target.programs.len() > 1 {
        text = format!("bin {}:\n{text}", program.bin);
    }
    if req.dry_run && !req.json {
        print!("{text}");
    } else {
        eprint!("{text}");
    }
    if !report.refusals.is_empty() {
        if req.json {
            print_json(&[report::json(report, &program.bin, None)?])?;
        }
        return Err(Refused::new(format!(
            "the patch is refused: {} change(s) cannot be applied safely (see above)",
            report.refusals.len()
        ))
        .into());
    }
    Ok(())
}

/// Makes the newer checkout hold exactly the newer revision again (a patch build inserts
/// generated code into it); only files that differ are rewritten.
pub(crate) fn restore_new(repo: &Repo, target: &Target, revs: &Revisions) -> Result<()> {
    match &revs.b {
        Some(commit) => repo.checkout(commit, &revs.new_dir).map(drop),
        None => repo.copy_work_tree(&target.source_root, &revs.new_dir).map(drop),
    }
}

fn print_json(values: &[serde_json::Value]) -> Result<()> {
    let v = match values {
        [one] => one.clone(),
        many => serde_json::Value::Array(many.to_vec()),
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

pub(crate) fn parse_range(range: &str) -> Result<(&str, Option<&str>)> {
    let (a, b) = range.split_once("..").with_context(|| git::UnknownRevision {
        rev: range.to_string(),
        detail: "expected a range A..B or A..".into(),
    })?;
    if a.is_empty() {
        return Err(git::UnknownRevision {
            rev: range.to_string(),
            detail: "the range needs a first revision (A..B)".into(),
        }
        .into());
    }
    Ok((a, (!b.is_empty()).then_some(b)))
}

/// The build record of `program`, or why there is none for this profile.
pub(crate) fn load_record(target: &Target, program: &Program, opts: &BuildOptions) -> Result<BuildRecord> {
    let path = BuildRecord::record_path(&target.out_dir, &program.bin);
    BuildRecord::load(&path).map_err(|e| {
        let other = if opts.release { "debug" } else { "release" };
        let other_record = BuildRecord::record_path(&target.dsu_dir.join(other), &program.bin);
        let flag = if opts.release { " --release" } else { "" };
        if other_record.is_file() {
            Refused::new(format!(
                "profile mismatch: {} was built {}, and this patch is asked {}, so the program would \
                 refuse it. {}, or run `cargo dsu build{flag}` and restart the program",
                program.bin,
                if opts.release { "without --release" } else { "with --release" },
                if opts.release { "with --release" } else { "without --release" },
                if opts.release { "Drop --release to patch that build" } else { "Add --release to patch that build" },
            ))
            .into()
        } else {
            anyhow::Error::new(NotUpdateable(format!(
                "no updateable build of {} yet: run `cargo dsu build{flag}` first ({e:#})",
                program.bin
            )))
        }
    })
}

/// Refuses what the running program would refuse: a build from a dirty work tree (its revision
/// says nothing about its code), a build by another compiler, and a base revision the build
/// cannot have reached (not the build's revision nor a later one).
fn check_base(repo: &Repo, target: &Target, record: &BuildRecord, a: &str, a_commit: &str) -> Result<()> {
    let id = record.identity();
    if !record.dirty_files.is_empty() || id.revision.ends_with("+dirty") {
        let files = if record.dirty_files.is_empty() { "unknown".to_string() } else { record.dirty_files.join(", ") };
        return Err(Refused::new(format!(
            "{} was built from a dirty work tree (changed or untracked: {files}): no revision names \
             its code, so no patch can say it applies to it. Commit them (or add them to .gitignore), \
             rebuild with `cargo dsu build` and restart the program",
            record.bin
        ))
        .into());
    }
    if id.rustc != target.rustc.hash() {
        return Err(Refused::new(format!(
            "{} was built by another compiler than the one cargo runs now (`rustc -vV` differs): the \
             program would refuse the patch. Use the toolchain it was built with",
            record.bin
        ))
        .into());
    }
    if !repo.is_ancestor(&id.revision, a_commit)? {
        return Err(Refused::new(format!(
            "wrong base: {} was built from {}, and `{a}` ({}) is neither that revision nor a later \
             one, so no running program of this build runs it. Patch from {}: `cargo dsu patch {}..`",
            record.bin,
            short(&id.revision),
            short(a_commit),
            short(&id.revision),
            short(&id.revision),
        ))
        .into());
    }
    Ok(())
}

/// Checks out `a` (as given, and the commit it names) and `b` (the work tree when `None`).
pub(crate) fn checkout(repo: &Repo, target: &Target, (a, a_commit): (&str, String), b: Option<&str>) -> Result<Revisions> {
    let b_commit = b.map(|b| repo.resolve(b)).transpose()?;
    let checkouts = target.dsu_dir.join("checkouts").join(&target.package_name);
    // One `cargo dsu patch` at a time per package: the checkouts are shared and rewritten in
    // place. The lock is held until the patches are built and released when this process exits.
    let not_writable = |e: std::io::Error| anyhow::Error::new(crate::build::OutputNotWritable(checkouts.clone())).context(e);
    std::fs::create_dir_all(&checkouts).map_err(not_writable)?;
    let lock = std::fs::File::create(checkouts.join(".lock")).map_err(not_writable)?;
    if lock.try_lock().is_err() {
        status("Blocking", "waiting for another cargo dsu patch of this package");
        lock.lock().context("locking the checkouts")?;
    }
    let (old_dir, new_dir) = (checkouts.join("old"), checkouts.join("new"));
    status("Checking out", format!("{a} ({})", short(&a_commit)));
    let old = repo.checkout(&a_commit, &old_dir)?;
    let new = match (&b_commit, b) {
        (Some(c), Some(b)) => {
            status("Checking out", format!("{b} ({})", short(c)));
            repo.checkout(c, &new_dir)?
        }
        _ => {
            status("Copying", "the work tree");
            repo.copy_work_tree(&target.source_root, &new_dir)?
        }
    };
    Ok(Revisions { a: a_commit, b: b_commit, old_dir, new_dir, old, new, _lock: lock })
}

/// Compares every crate of `program`'s updateable set, as its build compiles it (`record`, when
/// there is one); with `running`, `record` is the running program's build, and statics of the
/// older revision that it does not have are refused.
fn compare(target: &Target, program: &Program, record: Option<&BuildRecord>, revs: &Revisions, running: bool) -> Result<Report> {
    let units: Vec<CrateUnit> = program
        .crates
        .iter()
        .map(|c| {
            let recorded = record.and_then(|r| {
                r.crates.iter().find(|rc| rc.krate.crate_name == c.crate_name && rc.krate.kind == c.kind)
            });
            Ok(c.unit(&target.source_root, recorded.map(|rc| rc.cfg()).transpose()?))
        })
        .collect::<Result<_>>()?;
    let mut report = compare::compare(&units, &revs.old_dir, &revs.new_dir)?;
    if let Some(record) = record.filter(|_| running) {
        // The program's build says which statics it has; the others of the running revision
        // belong to earlier patches.
        let program: Vec<_> = program
            .crates
            .iter()
            .map(|c| {
                record
                    .crates
                    .iter()
                    .find(|rc| rc.krate.crate_name == c.crate_name && rc.krate.kind == c.kind)
                    .and_then(|rc| rc.statics.as_deref())
            })
            .collect();
        compare::statics::refuse_unreachable(&units, &revs.old_dir, &revs.new_dir, &program, &mut report)?;
    }
    Ok(report)
}

/// Builds the patch of `report` from the newer checkout into `output`, for the program of
/// `record` running the older revision.
pub(crate) fn build_one(
    record: &BuildRecord,
    report: &Report,
    revs: &Revisions,
    output: PathBuf,
    signing_key: Option<ed25519_dalek::SigningKey>,
) -> Result<PathBuf> {
    let applies_to = record.identity().at_source(&revs.a, &revs.old.tree);
    status("Building", format!("patch of {} {}..{}", record.bin, short(&revs.a), short(&revs.new.revision)));
    let patch = patch_build::build_patch(
        record,
        &PatchOptions {
            source_root: revs.new_dir.clone(),
            applies_to,
            source: revs.new.clone(),
            output,
            insertions: report.generated.clone(),
            routed: report.manifest_routed(),
            carried: report.manifest_carried(),
            transformers: report.transformer_cfgs.clone(),
            signing_key,
        },
    )?;
    status("Finished", patch.display());
    Ok(patch)
}

pub fn short(rev: &str) -> String {
    rev.chars().take(10).collect()
}
