//! What the `cargo dsu patch` benchmarks share: a scratch repository holding a fixture at v1 and
//! two variants of one change, and the comparison of `cargo dsu patch` with an incremental
//! `cargo build` of the same change.
//!
//! Each iteration alternates between the two variants, so every patch build and every cargo
//! build compiles a real change incrementally.

use criterion::Criterion;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh repository at `repo` with `v1` (variant 0) and the variants `a` (1) and `b` (2),
/// checked out at `v1`. `variant(dir, n)` writes variant `n` of the fixture into `dir`.
pub fn repository(repo: &Path, variant: &dyn Fn(&Path, u32)) {
    super::common::init_repo(repo);
    for (tag, n) in [("v1", 0), ("a", 1), ("b", 2)] {
        variant(repo, n);
        super::common::commit_all(repo, tag);
    }
    super::common::git(repo, &["checkout", "-q", "v1"]);
}

/// `cargo dsu` with `args`, run in `dir` with the target directory `target`.
pub fn dsu(dir: &Path, target: &Path, args: &[&str]) {
    run(Command::new(super::common::cargo_dsu()).arg("dsu").args(args).arg("--target-dir").arg(target).current_dir(dir));
}

/// The benchmark group `name`: `cargo dsu patch v1..a` and `v1..b` alternately, run in `dsu_dir`
/// (inside the repository) against the build `cargo dsu build` made there into `target`, and
/// `cargo build` of variants 1 and 2 alternately in a plain copy at `plain`.
pub fn patch_against_incremental_build(
    c: &mut Criterion,
    name: &str,
    dsu_dir: &Path,
    target: &Path,
    plain: &Path,
    variant: &dyn Fn(&Path, u32),
) {
    dsu(dsu_dir, target, &["build"]);
    dsu(dsu_dir, target, &["patch", "v1..a"]);
    dsu(dsu_dir, target, &["patch", "v1..b"]);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |n: u32| {
        variant(plain, n);
        run(Command::new(&cargo).args(["build", "-q"]).current_dir(plain));
    };
    build(1);
    build(2);

    let mut g = c.benchmark_group(name);
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let mut flip = false;
    g.bench_function("cargo_dsu_patch", |b| {
        b.iter(|| {
            flip = !flip;
            dsu(dsu_dir, target, &["patch", if flip { "v1..a" } else { "v1..b" }]);
        })
    });
    let mut flip = false;
    g.bench_function("cargo_build_incremental", |b| {
        b.iter(|| {
            flip = !flip;
            build(if flip { 1 } else { 2 });
        })
    });
    g.finish();
}
