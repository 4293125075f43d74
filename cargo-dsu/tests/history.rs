//! Release streams end to end: dependency changes judged on the program's own graph (a
//! dev-dependency bump patches and applies, a bump of a crate the binary links is refused naming
//! it), and `cargo dsu history` over a scratch repository whose commits mix every case.
//!
//! The package is the `store` fixture renamed `ledger` (its `deps-*` versions), so its builds do
//! not replace the `state` tests' build of `store` in the shared target directory.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Tags: d1 (itoa 1.0.18, dev-dependency bitflags 2.11.1), d2 from d1 (bitflags 2.13.2 and a
/// changed function), d3 from d1 (itoa 1.0.19 and a changed function), d4 from d1 (a changed
/// function that does not compile). Built at d1.
fn deps_repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let side = [("deps-linked-bump", "d3"), ("deps-broken", "d4")];
        scratch_repo("deps", "store", &[("deps-1", "d1"), ("deps-dev-bump", "d2")], &side)
    })
}

#[test]
fn a_dev_dependency_bump_is_not_refused() {
    let r = deps_repo();
    let out = dsu(&r.dir, &r.target, &["patch", "d1..d2"]);
    assert_success(&out, "cargo dsu patch d1..d2");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(!report.contains("bitflags") && !report.contains("refused"), "{report}");
    let patch = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut host = Host::start(&r.binary);
    assert_eq!(host.send("get k1"), "v1 k1 missing");
    assert_eq!(host.send(&format!("apply {patch}")), "applied cells= routed=");
    assert_eq!(host.send("get k1"), "v1 k1 absent", "the patched function runs");
}

#[test]
fn a_bump_of_a_linked_crate_is_refused_naming_it_with_both_versions() {
    let r = deps_repo();
    let out = dsu(&r.dir, &r.target, &["patch", "d1..d3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("refused: Cargo.toml:9: dependency `itoa` 1.0.18 → 1.0.19: "), "{err}");
    assert!(err.contains("cargo dsu build"), "{err}");
    assert!(!err.contains("bitflags"), "only what changed is named: {err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn history_with_build_builds_each_patch_and_refuses_one_that_does_not_compile() {
    let r = deps_repo();
    let out = dsu(&r.dir, &r.target, &["history", "--build", "--json", "d1..d2"]);
    assert_success(&out, "cargo dsu history --build d1..d2");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((v["built"].as_bool(), v["steps"][0]["outcome"].as_str()), (Some(true), Some("patched")), "{v:#}");
    assert!(r.target.join("dsu/history/ledger.so").is_file(), "the patch was built");

    // d4 compares as a changed function: only a build finds that it does not compile.
    let out = dsu(&r.dir, &r.target, &["history", "d1..d4"]);
    assert_success(&out, "cargo dsu history d1..d4");
    assert!(String::from_utf8_lossy(&out.stdout).contains("patched, reversible"));
    let out = dsu(&r.dir, &r.target, &["history", "--build", "d1..d4"]);
    assert_success(&out, "cargo dsu history --build d1..d4");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("refused\n      src/entries.rs:35: the patch does not compile: error[E0308]: `match` arms have incompatible types"),
        "{table}"
    );
    assert!(table.contains("the patch does not compile (1): "), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error[E0308]"), "the compiler's errors are shown");
}

/// One commit of the history repository: its subject (also its tag) and what it does to the
/// work tree at `repo` (the package is in `repo/ledger`, another one in `repo/tools`).
type Change = (&'static str, fn(&Path));

/// Replaces `from` (which must be there) by `to` in the file `rel` of the package.
fn edit(repo: &Path, rel: &str, from: &str, to: &str) {
    let path = repo.join("ledger").join(rel);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{rel} has no {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Takes the file `rel` of the package from version `version` of the `store` fixture.
fn take(repo: &Path, version: &str, rel: &str) {
    let files = tree_files("store", version);
    std::fs::write(repo.join("ledger").join(rel), &files[Path::new(rel)]).unwrap();
}

const STATS: &str = "\n/// Added by a later release.\n#[dsu::updateable]\nfn stats() -> String {\n    \
    crate::STORE.with(|s| format!(\"{} entries\", s.lock().unwrap().len()))\n}\n";

/// The commits, oldest first: every case `cargo dsu history` tells apart.
const CHANGES: &[Change] = &[
    ("start", |repo| {
        write_tree(&repo.join("ledger"), "store", "deps-1");
        std::fs::create_dir_all(repo.join("tools/src")).unwrap();
        std::fs::write(
            repo.join("tools/Cargo.toml"),
            "[package]\nname = \"tools\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(repo.join("tools/src/main.rs"), "fn main() {\n    println!(\"tools 1\");\n}\n").unwrap();
    }),
    ("fix the reply of apply-locked", |repo| {
        edit(repo, "src/commands.rs", "\"applied while locked\"", "\"applied while the store was locked\"")
    }),
    ("add a stats command", |repo| {
        edit(repo, "src/commands.rs", "\n#[dsu::update_point]", &format!("{STATS}\n#[dsu::update_point]"));
        edit(repo, "src/commands.rs", "        \"summary\" =>", "        \"stats\" => stats(),\n        \"summary\" =>");
    }),
    ("comments only", |repo| {
        edit(repo, "src/commands.rs", "//! The commands, and the loop reading them.", "//! The commands, and the loop that reads them.")
    }),
    ("tools: a new message (another package)", |repo| {
        let main = repo.join("tools/src/main.rs");
        std::fs::write(main, "fn main() {\n    println!(\"tools 2\");\n}\n").unwrap();
    }),
    ("Entry: tags instead of legacy, with a transformer", |repo| {
        take(repo, "v2", "src/main.rs");
        take(repo, "v2", "src/entries.rs");
    }),
    ("Entry gains a score (derived transformer)", |repo| {
        take(repo, "v3", "src/main.rs");
        take(repo, "v3", "src/entries.rs");
    }),
    ("Entry gains pinned, without a transformer", |repo| {
        edit(repo, "src/main.rs", "#[dsu::transform(from = dsu_old::Entry, default)]\n", "");
        edit(repo, "src/main.rs", "    pub score: u32,\n", "    pub score: u32,\n    pub pinned: bool,\n");
        edit(repo, "src/entries.rs", "score: 1 }", "score: 1, pinned: false }");
    }),
    ("apply-locked takes a label (a changed signature)", |repo| {
        edit(repo, "src/commands.rs", "fn apply_locked(path: &str) -> String {", "fn apply_locked(path: &str, label: &str) -> String {");
        edit(repo, "src/commands.rs", "Ok(_) => \"applied while the store was locked\".to_string()", "Ok(_) => format!(\"{label}: applied while locked\")");
        edit(repo, "src/commands.rs", "apply_locked(arg)", "apply_locked(arg, \"locked\")");
    }),
    ("drop the stats command (a removed function)", |repo| {
        edit(repo, "src/commands.rs", STATS, "");
        edit(repo, "src/commands.rs", "        \"stats\" => stats(),\n", "");
    }),
    ("bump the dev-dependency bitflags", |repo| {
        take(repo, "deps-dev-bump", "Cargo.toml");
        take(repo, "deps-dev-bump", "Cargo.lock");
    }),
    ("bump itoa, which the program links", |repo| {
        take(repo, "deps-linked-bump", "Cargo.toml");
        take(repo, "deps-linked-bump", "Cargo.lock");
    }),
    ("summary says v3.1", |repo| edit(repo, "src/entries.rs", "format!(\"v3 entries=", "format!(\"v3.1 entries=")),
    ("describe says less unless asked (a changed signature, its caller switched)", |repo| {
        edit(repo, "src/entries.rs", "fn describe(e: &Entry) -> String {\n", "fn describe(e: &Entry, full: bool) -> String {\n    if !full {\n        return e.name.clone();\n    }\n");
        edit(repo, "src/entries.rs", "Some(e) => describe(e),", "Some(e) => describe(e, true),");
    }),
];

/// The history repository (tags `c0`, `c1`, … one per change), built nowhere: `cargo dsu
/// history` without `--build` needs no build.
fn history_repo() -> &'static PathBuf {
    static REPO: OnceLock<PathBuf> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = shared_target_dir().join("scratch-history").join("repo");
        init_repo(&dir);
        let _ = std::fs::remove_dir_all(dir.join("ledger"));
        let _ = std::fs::remove_dir_all(dir.join("tools"));
        for (i, (subject, change)) in CHANGES.iter().enumerate() {
            change(&dir);
            git(&dir, &["add", "-A"]);
            git(&dir, &["commit", "-q", "-m", subject]);
            git(&dir, &["tag", &format!("c{i}")]);
        }
        dir
    })
}

fn history(args: &[&str]) -> std::process::Output {
    let dir = history_repo().join("ledger");
    let mut all = vec!["history"];
    all.extend_from_slice(args);
    dsu(&dir, &shared_target_dir(), &all)
}

/// Masks commit ids.
fn mask(s: &str) -> String {
    mask_hex(s, "[COMMIT]")
}

#[test]
fn history_tells_every_kind_of_commit_apart() {
    let last = format!("c0..c{}", CHANGES.len() - 1);
    let out = history(&[&last]);
    assert_success(&out, "cargo dsu history");
    let table = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("history_table", mask(&table));

    let out = history(&[&last, "--json"]);
    assert_success(&out, "cargo dsu history --json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), CHANGES.len() - 2, "every commit but the first and the other package's");
    assert_eq!(v["skipped"], 1);
    let outcome = |subject: &str| {
        let s = steps.iter().find(|s| s["subject"] == subject).unwrap_or_else(|| panic!("no step {subject}"));
        s["outcome"].as_str().unwrap().to_string()
    };
    assert_eq!(outcome("fix the reply of apply-locked"), "patched");
    assert_eq!(outcome("comments only"), "nothing_to_patch");
    assert_eq!(outcome("Entry gains pinned, without a transformer"), "refused");
    assert_eq!(outcome("apply-locked takes a label (a changed signature)"), "refused", "its caller is not updateable");
    assert_eq!(outcome("describe says less unless asked (a changed signature, its caller switched)"), "patched");
    assert_eq!(outcome("bump the dev-dependency bitflags"), "nothing_to_patch");
    assert_eq!(outcome("bump itoa, which the program links"), "refused");
    let kinds: Vec<&str> = v["summary"]["refusals"].as_array().unwrap().iter().map(|g| g["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["a caller of a changed signature that cannot be switched", "dependency changed", "type change without a transformer"]
    );
    insta::assert_snapshot!("history_json", mask(&serde_json::to_string_pretty(&v).unwrap()));
}
