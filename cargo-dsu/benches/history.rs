//! Wall time of `cargo dsu history`: over 50 commits without `--build` (goal: under 10 s), and
//! per commit with `--build`, against an incremental `cargo build` of the same change (goal: at
//! most 1.5×). Figures in docs/PERFORMANCE.md.
//!
//! The repository holds the `store` fixture as the `history` tests have it (package `ledger`,
//! linking itoa, with a dev-dependency): commit `n` changes one function (`summary` says `n`),
//! and every tenth also bumps the dev-dependency or takes it back, so the dependency check
//! resolves the graph with cargo too.

#[path = "../tests/common/mod.rs"]
mod common;
// Shared with the `cargo dsu patch` benches; this one uses part of it.
#[allow(dead_code)]
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const COMMITS: u32 = 50;
/// Commits whose patches one `--build` iteration builds.
const BUILT: u32 = 4;

/// Writes commit `n` of the stream into `dir`.
fn variant(dir: &Path, n: u32) {
    let version = if (n / 10) % 2 == 1 { "deps-dev-bump" } else { "deps-1" };
    let changed = format!("format!(\"v1.{n} entries=");
    common::write_tree_with(dir, "store", version, &[("format!(\"v1 entries=", &changed)]);
    let entries = std::fs::read_to_string(dir.join("src/entries.rs")).unwrap();
    assert!(entries.contains(&changed), "{entries}");
}

fn history(c: &mut Criterion) {
    let base = common::workspace_root().join("target/dsu-bench-history");
    let (repo, target, plain) = (base.join("repo"), base.join("target"), base.join("plain"));
    let _ = std::fs::remove_dir_all(&repo);
    common::init_repo(&repo);
    for n in 0..=COMMITS {
        variant(&repo, n);
        common::commit_all(&repo, &format!("c{n}"));
    }
    common::git(&repo, &["checkout", "-q", "c0"]);
    support::dsu(&repo, &target, &["build"]);
    let all = format!("c0..c{COMMITS}");
    let built = format!("c0..c{BUILT}");
    support::dsu(&repo, &target, &["history", &all]);
    support::dsu(&repo, &target, &["history", "--build", &built]);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |n: u32| {
        variant(&plain, n);
        support::run(Command::new(&cargo).args(["build", "-q"]).current_dir(&plain));
    };
    for n in 1..=BUILT {
        build(n);
    }

    let mut g = c.benchmark_group("history");
    g.sample_size(10).measurement_time(Duration::from_secs(40));
    g.bench_function("fifty_commits_no_build", |b| b.iter(|| support::dsu(&repo, &target, &["history", &all])));
    // Per commit: one history of BUILT commits builds BUILT patches, each from the source the
    // one before left in the checkout, as a stream does.
    g.bench_function("build_per_commit", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                support::dsu(&repo, &target, &["history", "--build", &built]);
            }
            start.elapsed() / BUILT
        })
    });
    let mut n = 0;
    g.bench_function("cargo_build_incremental", |b| {
        b.iter(|| {
            n = n % BUILT + 1;
            build(n);
        })
    });
    g.finish();
}

criterion_group!(benches, history);
criterion_main!(benches);
