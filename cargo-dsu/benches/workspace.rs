//! The three-crate workspace fixture (`tests/fixtures/kv`: a server binary, a library with the
//! handlers and state types, a protocol crate): wall time of `cargo dsu patch` for a
//! one-function change in the library crate against an incremental `cargo build` of the same
//! change, and of a cold `cargo dsu build` against a cold `cargo build`. Figures in
//! docs/PERFORMANCE.md.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const HANDLER: &str = "kv_proto::err(\"not found\")";

/// The fixture at v1 with the library's handler changed to say `n` (unchanged for 0).
fn variant(dir: &Path, n: u32) {
    common::write_tree(dir, "kv", "base");
    if n == 0 {
        return;
    }
    let lib = dir.join("store/src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    assert!(text.contains(HANDLER));
    common::write_if_changed(&lib, text.replace(HANDLER, &format!("kv_proto::err(\"not found ({n})\")")).as_bytes());
}

fn workspace(c: &mut Criterion) {
    let base = common::workspace_root().join("target/dsu-bench-workspace");
    let repo = base.join("repo");
    let target = base.join("target");
    support::repository(&repo, &variant);
    let server = repo.join("server");
    let plain = base.join("plain");
    support::patch_against_incremental_build(c, "library_function_change", &server, &target, &plain, &variant);

    // Cold builds: a fresh target directory each time (the registry's sources stay downloaded).
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut g = c.benchmark_group("cold_build");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    let cold = base.join("cold");
    g.bench_function("cargo_dsu_build", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_dir_all(&cold);
                let start = Instant::now();
                support::dsu(&server, &cold, &["build"]);
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
                support::run(Command::new(&cargo).args(["build", "-q", "--target-dir"]).arg(&cold).current_dir(&plain));
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, workspace);
criterion_main!(benches);
