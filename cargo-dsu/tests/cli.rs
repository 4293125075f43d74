//! The command line end to end: a scratch git repository with several commits, `cargo dsu build`
//! and `cargo dsu patch` run as a user would, and a running host patched through all of them.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The scratch repository, with tags:
/// v1, v2, v3 (a chain), bad-signature, bad-static, bad-type, bad-deps, broken (each from v1).
fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let chain = [("base", "v1"), ("v2", "v2"), ("v3", "v3")];
        let side = [
            ("v3-signature", "bad-signature"),
            ("bad-static", "bad-static"),
            ("bad-type", "bad-type"),
            ("bad-deps", "bad-deps"),
            ("broken", "broken"),
        ];
        scratch_repo("cli", "app", &chain, &side)
    })
}

/// Runs `cargo dsu <args>` in `dir`.
fn dsu(dir: &Path, args: &[&str]) -> Output {
    Command::new(cargo_dsu())
        .arg("dsu")
        .args(args)
        .current_dir(dir)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("running cargo-dsu")
}

fn patch(range: &str, extra: &[&str]) -> Output {
    let r = repo();
    let mut args = vec!["patch", range, "--target-dir", r.target.to_str().unwrap()];
    args.extend_from_slice(extra);
    dsu(&r.dir, &args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Masks what differs between machines and runs: paths, commit ids, hashes.
fn mask(s: &str) -> String {
    let r = repo();
    let mut s = s.replace(r.target.to_str().unwrap(), "[TARGET]");
    s = s.replace(r.dir.to_str().unwrap(), "[REPO]");
    mask_hex(&s, "[HASH]")
}

#[test]
fn patches_a_running_host_through_a_chain_of_commits() {
    let r = repo();
    let mut host = Host::start(&r.binary);
    assert_eq!(host.send("greet a"), "hello a (v1, hits=1)");
    assert_eq!(host.send("bump"), "1");

    let out = patch("v1..v2", &[]);
    assert_success(&out, "cargo dsu patch v1..v2");
    let p12 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(p12.starts_with(r.target.join("dsu/patches").to_str().unwrap()), "{p12}");
    let q = host.send(&format!("load {p12}"));
    assert!(q.starts_with("queued changed=") && q.contains("app::greeting::greet"), "{q}");
    assert_eq!(host.send("greet b"), "HELLO b (v2, hits=2)");
    assert_eq!(host.send("bump"), "11");

    // v2..v3 changes only `decorate`; the `greet` running now is patch v2's, which calls
    // `decorate` through patch v2's own slot: that copy must be switched too.
    let out = patch("v2..v3", &[]);
    assert_success(&out, "cargo dsu patch v2..v3");
    let p23 = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let q = host.send(&format!("load {p23}"));
    assert_eq!(q, "queued changed=app::greeting::decorate added=");
    assert_eq!(host.send("greet c"), "HELLO c (v2, hits=3) [v3]");
    assert_eq!(host.send("status"), "applied=2 pending=0");

    // The patch v1..v2 again: refused as applied already.
    let q = host.send(&format!("load {p12}"));
    assert!(q.starts_with("refused:") && q.contains("is already applied"), "{q}");
    assert_eq!(host.send("greet d"), "HELLO d (v2, hits=4) [v3]");
}

#[test]
fn direct_patch_to_work_tree_and_output_file() {
    let r = repo();
    let out_file = r.target.join("scratch-cli/direct.so");
    let _ = std::fs::remove_file(&out_file);
    // `A..` builds from the work tree, which is at v1 with no change: nothing to patch.
    let out = patch("v1..", &[]);
    assert_eq!(out.status.code(), Some(10), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to patch"), "{}", stderr(&out));
    // v1..v3 in one step, to a chosen file.
    let out = patch("v1..v3", &["-o", out_file.to_str().unwrap()]);
    assert_success(&out, "cargo dsu patch v1..v3 -o");
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), out_file.to_str().unwrap());
    let mut host = Host::start(&r.binary);
    assert!(host.send(&format!("load {}", out_file.display())).starts_with("queued"));
    assert_eq!(host.send("greet a"), "HELLO a (v2, hits=1) [v3]");
}

#[test]
fn report_dry_run_and_json() {
    let out = patch("v1..v2", &["--dry-run"]);
    assert_success(&out, "dry run");
    insta::assert_snapshot!("report_v1_v2", mask(&String::from_utf8_lossy(&out.stdout)));
    let out = patch("v1..v2", &["--dry-run", "--json"]);
    assert_success(&out, "dry run json");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["patch"], serde_json::Value::Null);
    let changed: Vec<&str> =
        v["functions_changed"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert!(changed.contains(&"app::greeting::greet") && !changed.contains(&"app::greeting::decorate"), "{changed:?}");
    insta::assert_snapshot!("report_v1_v2_json", mask(&String::from_utf8_lossy(&out.stdout)));
}

fn assert_refused(range: &str, expected: &[&str]) {
    let out = patch(range, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{range}: {err}");
    for e in expected {
        assert!(err.contains(e), "{range}: expected {e:?} in:\n{err}");
    }
    assert!(out.stdout.is_empty(), "no patch path printed");
}

/// `greet`'s signature changes: routed, but its caller `command` is a plain function, whose copy
/// in the running program would keep calling the old version.
#[test]
fn refuses_changed_signature_with_a_caller_that_cannot_be_switched() {
    assert_refused(
        "v1..bad-signature",
        &[
            "signature changed: routed (1)",
            "src/greeting.rs:6: `app::greeting::command` calls `app::greeting::greet`, whose signature \
             changed (was `fn greet(&str) -> String`), but it is not #[dsu::updateable]",
        ],
    );
}

#[test]
fn refuses_changed_static() {
    assert_refused("v1..bad-static", &["src/main.rs:13", "state cell `app::HITS` changed its declaration"]);
}

#[test]
fn refuses_changed_type() {
    assert_refused("v1..bad-type", &["src/main.rs:13", "type `app::Counter` changed"]);
}

#[test]
fn refuses_changed_dependencies() {
    assert_refused("v1..bad-deps", &["Cargo.toml:", "dependencies changed", "cargo dsu build"]);
}

#[test]
fn revision_that_does_not_compile_shows_compiler_errors() {
    let out = patch("v1..broken", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("error[E0308]"), "compiler error shown: {err}");
    assert!(err.contains("did not compile"), "{err}");
}

#[test]
fn unknown_revision() {
    let out = patch("v1..no-such-tag", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("unknown revision `no-such-tag`"), "{}", stderr(&out));
    let out = patch("v1", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

/// A package outside any repository, in a fresh temporary directory.
fn loose_package(name: &str, with_dsu: bool) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dsu-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if with_dsu {
        write_tree(&dir, "app", "base");
    } else {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"plain\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    }
    dir
}

#[test]
fn not_a_git_repository() {
    let dir = loose_package("norepo", true);
    let out = dsu(&dir, &["patch", "v1..v2", "--target-dir", repo().target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not inside a git repository"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_updateable_crate() {
    let dir = loose_package("plain", false);
    let out = dsu(&dir, &["build", "--target-dir", dir.join("target").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not depend on `dsu`"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn target_directory_not_writable() {
    let r = repo();
    let file = r.target.join("scratch-cli/a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let bad = file.join("target");
    let out = dsu(&r.dir, &["build", "--target-dir", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot write to the target directory"), "{}", stderr(&out));
}

#[test]
fn help_texts() {
    for (name, args) in [
        ("help_dsu", &["--help"][..]),
        ("help_build", &["build", "--help"][..]),
        ("help_patch", &["patch", "--help"][..]),
        ("help_history", &["history", "--help"][..]),
        ("help_load", &["load", "--help"][..]),
        ("help_rollback", &["rollback", "--help"][..]),
        ("help_status", &["status", "--help"][..]),
    ] {
        let out = Command::new(cargo_dsu()).arg("dsu").args(args).output().unwrap();
        assert!(out.status.success());
        insta::assert_snapshot!(name, String::from_utf8_lossy(&out.stdout));
    }
}
