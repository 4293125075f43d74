//! The three-crate workspace fixture (`tests/fixtures/kv`: a server binary, a library with the
//! handlers and state types, a protocol crate): wall time of `cargo dsu patch` for a
//! one-function change in the library crate against an incremental `cargo build` of the same
//! change, and of a cold `cargo dsu build` against a cold `cargo build`. Figures in
//! docs/PERFORMANCE.md.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const HANDLER: &str = "kv_proto::err(\"not found\")";

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The fixture at v1 with the library's handler changed to say `n`.
fn variant(dir: &Path, n: u32) {
    common::write_tree(dir, "kv", "base");
    let lib = dir.join("store/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    assert!(text.contains(HANDLER));
    common::write_if_changed(&lib, text.replace(HANDLER, &format!("kv_proto::err(\"not found ({n})\")")).as_bytes());
}

fn workspace(c: &mut Criterion) {
    let base = common::workspace_root().join("target/dsu-bench-workspace");
    let repo = base.join("repo");
    let target = base.join("target");
    common::init_repo(&repo);
    common::commit_tree(&repo, "kv", "base", "v1");
    for (n, tag) in [(1, "a"), (2, "b")] {
        variant(&repo, n);
        common::git(&repo, &["commit", "-qam", tag]);
        common::git(&repo, &["tag", tag]);
    }
    common::git(&repo, &["checkout", "-q", "v1"]);
    let server = repo.join("server");
    let dsu = |args: &[&str], target: &Path| {
        run(Command::new(common::cargo_dsu()).arg("dsu").args(args).arg("--target-dir").arg(target).current_dir(&server));
    };
    dsu(&["build"], &target);
    dsu(&["patch", "v1..a"], &target);
    dsu(&["patch", "v1..b"], &target);

    // The same change, built the plain way in a copy of the workspace.
    let plain = base.join("plain");
    variant(&plain, 1);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |n: u32| {
        variant(&plain, n);
        run(Command::new(&cargo).args(["build", "-q"]).current_dir(&plain));
    };
    build(2);

    let mut g = c.benchmark_group("library_function_change");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let mut flip = false;
    g.bench_function("cargo_dsu_patch", |b| {
        b.iter(|| {
            flip = !flip;
            dsu(&["patch", if flip { "v1..a" } else { "v1..b" }], &target);
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

    // Cold builds: a fresh target directory each time (the registry's sources stay downloaded).
    let mut g = c.benchmark_group("cold_build");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    let cold = base.join("cold");
    g.bench_function("cargo_dsu_build", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_dir_all(&cold);
                let start = Instant::now();
                dsu(&["build"], &cold);
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("cargo_build", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_dir_all(&cold);
                let start = Instant::now();
                run(Command::new(&cargo).args(["build", "-q", "--target-dir"]).arg(&cold).current_dir(&plain));
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
    let _: PathBuf = cold;
}

criterion_group!(benches, workspace);
criterion_main!(benches);
