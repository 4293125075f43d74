//! Wall time of `cargo dsu patch` for a one-function change of the demo server, against an
//! incremental `cargo build` of the same change. Figures in docs/PERFORMANCE.md.
//!
//! Each iteration alternates between two releases that differ from v1 in one function body, so
//! every patch build and every cargo build compiles a real change incrementally.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The line of the demo server's `src/greeting.rs` the variants change.
const GREETING: &str = "format!(\"hello {name}, visit {n}\")";

/// Writes the demo server at v1 into `dir`, its greeting changed to say `n` unless `n` is 0.
fn variant(dir: &Path, n: u32) {
    let changed = format!("format!(\"hello {{name}}, visit {{n}} ({n})\")");
    let replace: &[(&str, &str)] = if n == 0 { &[] } else { &[(GREETING, &changed)] };
    let server = common::workspace_root().join("examples/demo-server");
    common::write_tree_with(dir, server, "base", replace);
    let greeting = std::fs::read_to_string(dir.join("src/greeting.rs")).unwrap();
    assert!(greeting.contains(if n == 0 { GREETING } else { &changed }), "{greeting}");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn patch_time(c: &mut Criterion) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dsu-bench");
    let repo = base.join("repo");
    let target = base.join("target");
    let _ = std::fs::remove_dir_all(&repo);
    common::init_repo(&repo);
    for (tag, n) in [("v1", 0), ("a", 1), ("b", 2)] {
        variant(&repo, n);
        common::commit_all(&repo, tag);
    }
    common::git(&repo, &["checkout", "-q", "v1"]);
    let cargo_dsu = PathBuf::from(env!("CARGO_BIN_EXE_cargo-dsu"));
    let dsu = |args: &[&str]| {
        run(Command::new(&cargo_dsu).arg("dsu").args(args).arg("--target-dir").arg(&target).current_dir(&repo));
    };
    dsu(&["build"]);
    dsu(&["patch", "v1..a"]);
    dsu(&["patch", "v1..b"]);

    // The same change, built the plain way in a copy of the package.
    let plain = base.join("plain");
    variant(&plain, 1);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |n: u32| {
        variant(&plain, n);
        run(Command::new(&cargo).args(["build", "-q"]).current_dir(&plain));
    };
    build(2);

    let mut g = c.benchmark_group("one_function_change");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    let mut flip = false;
    g.bench_function("cargo_dsu_patch", |b| {
        b.iter(|| {
            flip = !flip;
            dsu(&["patch", if flip { "v1..a" } else { "v1..b" }]);
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

criterion_group!(benches, patch_time);
criterion_main!(benches);
