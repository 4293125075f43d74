//! `cargo dsu history A..B`: what `cargo dsu patch` would have made of a release stream. Every
//! commit of the range that changes the program (on the first-parent line, touching a package of
//! an updateable set, the workspace manifest or the lock file) is compared with the one before
//! it, exactly as `cargo dsu patch` compares two revisions (`patch::compare_revisions`): patched
//! (which functions, types and cells, and whether the patch can be rolled back with its state),
//! nothing to patch, or refused (each reason, where it is). With `--build` each patch is built as
//! `cargo dsu patch` builds it, so a revision whose patch does not compile is refused too.
//!
//! Each step is judged on its own, as a patch from a program running the older revision: a
//! refused step means a restart there, after which the stream goes on.

use crate::build::{BuildRecord, CompileFailed};
use crate::compare::{ItemRef, Report};
use crate::git::Repo;
use crate::locate::{self, BuildOptions, Target};
use crate::patch::{self, short};
use crate::patch_build::FirstError;
use crate::{cli::status, identity};
use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// What `cargo dsu history` was asked.
pub struct HistoryRequest {
    /// `A..B`, or `A..` for A to the newest commit (`HEAD`).
    pub range: String,
    pub opts: BuildOptions,
    /// Build each patch (needs a `cargo dsu build` of the program: its recorded invocations).
    pub build: bool,
}

/// The whole stream: each step and the summary.
#[derive(Debug, Serialize)]
pub struct History {
    pub package: String,
    /// The range's ends, as commits.
    pub from: String,
    pub to: String,
    /// Commits of the range that do not change the program.
    pub skipped: usize,
    /// Whether the patches were built (`--build`).
    pub built: bool,
    pub steps: Vec<Step>,
    pub summary: Summary,
}

/// One commit, compared with the one before it.
#[derive(Debug, Serialize)]
pub struct Step {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub outcome: Outcome,
    /// Per binary of the package.
    pub binaries: Vec<BinaryStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Patched,
    NothingToPatch,
    Refused,
}

/// What the patch of one binary would be.
#[derive(Debug, Serialize)]
pub struct BinaryStep {
    pub bin: String,
    pub outcome: Outcome,
    pub functions_changed: Vec<ItemRef>,
    pub functions_added: Vec<ItemRef>,
    pub functions_removed: Vec<ItemRef>,
    pub functions_routed: Vec<ItemRef>,
    /// Functions whose signature changed: new functions to the runtime.
    pub signatures_changed: Vec<ItemRef>,
    /// Unchanged functions the patch switches so that they call the new ones.
    pub functions_carried: Vec<ItemRef>,
    pub traits_changed: Vec<ItemRef>,
    pub types_changed: Vec<ItemRef>,
    pub cells_transformed: Vec<ItemRef>,
    /// Whether a rollback could undo the patch with its state: every transformed cell has an
    /// inverse transform (code alone always rolls back).
    pub reversible: bool,
    /// The transformed cells without an inverse transform.
    pub not_reversible: Vec<String>,
    pub refusals: Vec<StepRefusal>,
}

/// One reason a patch is refused.
#[derive(Debug, Clone, Serialize)]
pub struct StepRefusal {
    /// The kind of change, what the summary groups by.
    pub kind: &'static str,
    pub file: String,
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub steps: usize,
    pub patched: usize,
    /// Patched steps whose patch a rollback could undo with its state.
    pub reversible: usize,
    pub nothing_to_patch: usize,
    pub refused: usize,
    /// The share of steps that go live without a restart (patched or nothing to patch), 0 to 1.
    pub live_share: f64,
    /// Refusals by kind: how many steps each stopped, and which.
    pub refusals: Vec<RefusalGroup>,
}

#[derive(Debug, Serialize)]
pub struct RefusalGroup {
    pub kind: &'static str,
    pub steps: Vec<String>,
}

/// Walks the range and judges every step.
pub fn history(req: &HistoryRequest) -> Result<History> {
    let (a, b) = patch::parse_range(&req.range)?;
    let target = locate::locate(&req.opts)?;
    let repo = Repo::discover(&target.source_root)?;
    let from = repo.resolve(a)?;
    let to = repo.resolve(b.unwrap_or("HEAD"))?;
    let records: Vec<Option<BuildRecord>> = if req.build {
        target.programs.iter().map(|p| patch::load_record(&target, p, &req.opts).map(Some)).collect::<Result<_>>()?
    } else {
        // Compare as the build compiles (its configuration) when there is one.
        target.programs.iter().map(|p| patch::load_record(&target, p, &req.opts).ok()).collect()
    };
    let commits = program_commits(&repo, &target, &from, &to)?;
    let all = identity::git(&repo.root, &["rev-list", "--first-parent", "--count", &format!("{from}..{to}")])?;
    let skipped = all.trim().parse::<usize>().unwrap_or(0).saturating_sub(commits.len());
    status("History", format!("{}: {} commit(s) change the program, {skipped} other(s)", target.package_name, commits.len()));
    let mut steps = Vec::new();
    let mut prev = from.clone();
    for (n, (commit, subject)) in commits.into_iter().enumerate() {
        status("Comparing", format!("[{}] {} {subject}", n + 1, short(&commit)));
        steps.push(step(req, &target, &repo, &records, (&prev, &commit), subject)?);
        prev = commit;
    }
    let summary = summarise(&steps);
    Ok(History { package: target.package_name.clone(), from, to, skipped, built: req.build, steps, summary })
}

/// The first-parent commits after `from` up to `to` that touch the program: a package of an
/// updateable set, or the workspace's manifest or lock file. With their subjects, oldest first.
fn program_commits(repo: &Repo, target: &Target, from: &str, to: &str) -> Result<Vec<(String, String)>> {
    // Paths relative to the top of the work tree, as git names them (links resolved on both
    // sides; the lock file may not exist).
    let root = repo.root.canonicalize().unwrap_or_else(|_| repo.root.clone());
    let in_repo = |p: &Path| {
        let dir = p.parent().and_then(|d| d.canonicalize().ok()).map(|d| d.join(p.file_name().unwrap_or_default()));
        let p = dir.unwrap_or_else(|| p.to_path_buf());
        p.strip_prefix(&root).map(Path::to_path_buf).unwrap_or_default()
    };
    let ws = target.metadata.workspace_root.as_std_path();
    let mut paths: Vec<String> = target
        .programs
        .iter()
        .flat_map(|p| &p.crates)
        .map(|c| in_repo(&c.package_root))
        .chain([in_repo(&ws.join("Cargo.toml")), in_repo(&ws.join("Cargo.lock"))])
        .map(|p| format!(":(top){}", p.display()))
        .collect();
    paths.sort();
    paths.dedup();
    let mut args = vec![
        "log".to_string(),
        "--first-parent".into(),
        "--reverse".into(),
        "--format=%H%x09%s".into(),
        format!("{from}..{to}"),
        "--".into(),
    ];
    args.extend(paths);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let listing = identity::git(&repo.root, &args)?;
    Ok(listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(c, s)| (c.to_string(), s.to_string()))
        .collect())
}

/// One step, compared (and built with `--build`) as `cargo dsu patch` would.
fn step(
    req: &HistoryRequest,
    target: &Target,
    repo: &Repo,
    records: &[Option<BuildRecord>],
    (from, to): (&str, &str),
    subject: String,
) -> Result<Step> {
    let revs = patch::checkout(repo, target, (&short(from), from.to_string()), Some(to))?;
    let reports = patch::compare_revisions(target, &req.opts.cargo, records, &revs, false)?;
    let mut binaries = Vec::new();
    for ((program, record), report) in target.programs.iter().zip(records).zip(&reports) {
        let mut refusals: Vec<StepRefusal> = report
            .refusals
            .iter()
            .map(|r| StepRefusal { kind: kind_of(&r.reason), file: r.file.clone(), line: r.line, reason: r.reason.clone() })
            .collect();
        if let Some(record) = record.as_ref().filter(|_| req.build && refusals.is_empty() && !report.is_empty_change()) {
            if let Err(e) = build(target, repo, record, report, &revs) {
                refusals.push(build_refusal(e)?);
            }
        }
        binaries.push(binary_step(&program.bin, report, refusals));
    }
    let outcome = if binaries.iter().any(|b| b.outcome == Outcome::Refused) {
        Outcome::Refused
    } else if binaries.iter().all(|b| b.outcome == Outcome::NothingToPatch) {
        Outcome::NothingToPatch
    } else {
        Outcome::Patched
    };
    Ok(Step { from: from.to_string(), to: to.to_string(), subject, outcome, binaries })
}

/// Builds the patch as `cargo dsu patch` does, into `target/dsu/history/`.
fn build(target: &Target, repo: &Repo, record: &BuildRecord, report: &Report, revs: &patch::Revisions) -> Result<()> {
    patch::restore_new(repo, target, revs)?;
    let output = target.dsu_dir.join("history").join(format!("{}.so", record.bin));
    patch::build_one(record, report, revs, output, None).map(drop)
}

/// A patch build's failure as a refusal of the step: a compile error (where the compiler's
/// first error points), or a refusal of the patch build; any other failure stops the history.
fn build_refusal(e: anyhow::Error) -> Result<StepRefusal> {
    if e.downcast_ref::<CompileFailed>().is_some() {
        let (file, line) = e.downcast_ref::<FirstError>().map_or((String::new(), 0), |f| (f.file.clone(), f.line));
        let reason = match e.downcast_ref::<FirstError>() {
            Some(f) => format!("the patch does not compile: {}", f.message),
            None => "the patch does not compile".to_string(),
        };
        return Ok(StepRefusal { kind: COMPILE, file, line, reason });
    }
    if let Some(r) = e.downcast_ref::<patch::Refused>() {
        // The first of the patch build's reasons, with its place; or the message, without one.
        let (file, line, reason) = match r.reasons.first() {
            Some(first) => (first.file.clone(), first.line, first.reason.clone()),
            None => (String::new(), 0, r.message.clone()),
        };
        return Ok(StepRefusal { kind: kind_of(&reason), file, line, reason });
    }
    Err(e)
}

fn binary_step(bin: &str, r: &Report, refusals: Vec<StepRefusal>) -> BinaryStep {
    let not_reversible: Vec<String> = r.irreversible_cells().map(|c| c.path.clone()).collect();
    let outcome = if !refusals.is_empty() {
        Outcome::Refused
    } else if r.is_empty_change() {
        Outcome::NothingToPatch
    } else {
        Outcome::Patched
    };
    BinaryStep {
        bin: bin.to_string(),
        outcome,
        functions_changed: r.functions_changed.clone(),
        functions_added: r.functions_added.clone(),
        functions_removed: r.functions_removed.clone(),
        functions_routed: r.functions_routed.clone(),
        signatures_changed: r.signatures_changed.clone(),
        functions_carried: r.functions_carried.clone(),
        traits_changed: r.traits_changed.clone(),
        types_changed: r.types_changed.clone(),
        cells_transformed: r.cells_transformed.clone(),
        reversible: not_reversible.is_empty(),
        not_reversible,
        refusals,
    }
}

const COMPILE: &str = "the patch does not compile";

/// The kind of change a refusal is about, from the compare step's reasons (each begins by
/// naming what it is about).
pub fn kind_of(reason: &str) -> &'static str {
    let starts = |p: &str| reason.starts_with(p);
    if reason.contains("(dependencies changed)") || starts("dependencies changed") {
        "dependency changed"
    } else if starts("signature of") {
        "changed signature"
    } else if reason.contains("whose signature changed (was") {
        "a caller of a changed signature that cannot be switched"
    } else if reason.contains(" holds `") {
        "old code reachable from live state"
    } else if reason.contains("takes or returns") && reason.contains("a trait object of") {
        "trait object of a changed trait in a signature"
    } else if starts("type `") && reason.contains("no transformer") {
        "type change without a transformer"
    } else if starts("type `") {
        "type change"
    } else if starts("static `") || starts("state cell") {
        "static or state cell changed"
    } else if starts("field cells") {
        "field cell type"
    } else if reason.contains("cannot be updateable") {
        "changed method that cannot be updateable"
    } else if starts(COMPILE) {
        COMPILE
    } else {
        "other"
    }
}

fn summarise(steps: &[Step]) -> Summary {
    let count = |o: Outcome| steps.iter().filter(|s| s.outcome == o).count();
    let (patched, nothing, refused) = (count(Outcome::Patched), count(Outcome::NothingToPatch), count(Outcome::Refused));
    let reversible = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Patched && s.binaries.iter().all(|b| b.reversible))
        .count();
    let mut groups: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for s in steps {
        let mut kinds: Vec<&'static str> = s.binaries.iter().flat_map(|b| &b.refusals).map(|r| r.kind).collect();
        kinds.sort();
        kinds.dedup();
        for k in kinds {
            groups.entry(k).or_default().push(short(&s.to));
        }
    }
    let mut refusals: Vec<RefusalGroup> = groups.into_iter().map(|(kind, steps)| RefusalGroup { kind, steps }).collect();
    refusals.sort_by(|a, b| b.steps.len().cmp(&a.steps.len()).then(a.kind.cmp(b.kind)));
    Summary {
        steps: steps.len(),
        patched,
        reversible,
        nothing_to_patch: nothing,
        refused,
        live_share: if steps.is_empty() { 1.0 } else { (patched + nothing) as f64 / steps.len() as f64 },
        refusals,
    }
}

/// The history as a table, for people.
pub fn render(h: &History) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "history of {} {}..{}: {} commit(s) change the program{}{}",
        h.package,
        short(&h.from),
        short(&h.to),
        h.steps.len(),
        if h.skipped > 0 { format!(", {} other(s) skipped", h.skipped) } else { String::new() },
        if h.built { ", every patch built" } else { "" },
    );
    let width = h.steps.len().to_string().len();
    for (i, step) in h.steps.iter().enumerate() {
        let _ = writeln!(s, "\n{:>width$}. {} {}", i + 1, short(&step.to), step.subject);
        let many = step.binaries.len() > 1;
        for b in &step.binaries {
            let bin = if many { format!("bin {}: ", b.bin) } else { String::new() };
            match b.outcome {
                Outcome::NothingToPatch => {
                    let _ = writeln!(s, "   {bin}nothing to patch");
                }
                Outcome::Refused => {
                    let _ = writeln!(s, "   {bin}refused");
                    for r in &b.refusals {
                        let place = if r.file.is_empty() { String::new() } else { format!("{}:{}: ", r.file, r.line) };
                        // The first line: what follows it (a transformer to start from) is in --json.
                        let first = r.reason.lines().next().unwrap_or_default();
                        let _ = writeln!(s, "      {place}{}", first.strip_suffix(':').unwrap_or(first));
                    }
                }
                Outcome::Patched if b.reversible => {
                    let _ = writeln!(s, "   {bin}patched, reversible");
                }
                Outcome::Patched => {
                    let _ = writeln!(
                        s,
                        "   {bin}patched, not reversible (no inverse transformer for {})",
                        b.not_reversible.join(", ")
                    );
                }
            }
            if b.outcome != Outcome::Refused {
                for (what, items) in [
                    ("changed", &b.functions_changed),
                    ("added", &b.functions_added),
                    ("removed", &b.functions_removed),
                    ("routed", &b.functions_routed),
                    ("signature", &b.signatures_changed),
                    ("carried", &b.functions_carried),
                    ("trait", &b.traits_changed),
                    ("type", &b.types_changed),
                    ("cell", &b.cells_transformed),
                ] {
                    for i in items {
                        let _ = writeln!(s, "      {what:<9} {}  ({}:{})", i.path, i.file, i.line);
                    }
                }
            }
        }
    }
    let m = &h.summary;
    let _ = writeln!(
        s,
        "\nsummary: {} of {} commit(s) go live ({:.0}%): {} patched ({} reversible), {} with nothing to \
         patch; {} refused (a restart)",
        m.patched + m.nothing_to_patch,
        m.steps,
        m.live_share * 100.0,
        m.patched,
        m.reversible,
        m.nothing_to_patch,
        m.refused,
    );
    if !m.refusals.is_empty() {
        let _ = writeln!(s, "refusals by reason:");
        for g in &m.refusals {
            let _ = writeln!(s, "   {} ({}): {}", g.kind, g.steps.len(), g.steps.join(", "));
        }
    }
    s
}

/// Runs the command: the table, or the JSON, on stdout.
pub fn run(req: &HistoryRequest, json: bool) -> Result<()> {
    let h = history(req)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&h).context("writing the history as JSON")?);
    } else {
        print!("{}", render(&h));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_grouped_by_what_they_are_about() {
        for (reason, kind) in [
            ("dependency `itoa` 1.0.18 → 1.0.19: the program's … (dependencies changed): rebuild", "dependency changed"),
            ("signature of `app::greet` changed: old callers …", "changed signature"),
            (
                "`app::run` calls `app::greet`, whose signature changed (was `fn greet()`), but it cannot be updateable",
                "a caller of a changed signature that cannot be switched",
            ),
            ("static `app::F` holds `fn()`: `fn()` can point at `app::greet`", "old code reachable from live state"),
            ("type `app::Entry` changed and no transformer moves its values", "type change without a transformer"),
            ("type `app::Entry` changed, and 2 transformers of it are new", "type change"),
            ("static `app::N` changed type (`u32` to `u64`): …", "static or state cell changed"),
            ("the patch does not compile: error[E0308]: mismatched types", COMPILE),
            ("something new", "other"),
        ] {
            assert_eq!(kind_of(reason), kind, "{reason}");
        }
    }

    #[test]
    fn the_patch_builds_refusals_keep_their_place() {
        let at = |file: &str, line, reason: &str| crate::compare::Refusal {
            file: file.to_string(),
            line,
            reason: reason.to_string(),
        };
        let refused = patch::Refused::listing(vec![at("src/main.rs", 7, "static `app::N` is shared"), at("src/x.rs", 1, "more")]);
        assert_eq!(refused.message, "the patch is refused:\nsrc/main.rs:7: static `app::N` is shared\nsrc/x.rs:1: more");
        let r = build_refusal(refused.into()).unwrap();
        assert_eq!((r.file.as_str(), r.line, r.reason.as_str()), ("src/main.rs", 7, "static `app::N` is shared"));
        let r = build_refusal(patch::Refused::new("no place".to_string()).into()).unwrap();
        assert_eq!((r.file.as_str(), r.line, r.reason.as_str()), ("", 0, "no place"));
        assert!(build_refusal(anyhow::anyhow!("another failure")).is_err(), "not a refusal: the history stops");
    }
}
