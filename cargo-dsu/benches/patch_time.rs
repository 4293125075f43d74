//! Wall time of `cargo dsu patch` for a one-function change of the demo server, against an
//! incremental `cargo build` of the same change. Figures in docs/PERFORMANCE.md.
//! See `support/mod.rs` for how the two are run.

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::Path;

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

fn patch_time(c: &mut Criterion) {
    let base = common::workspace_root().join("target/dsu-bench");
    let repo = base.join("repo");
    let _ = std::fs::remove_dir_all(&repo);
    support::repository(&repo, &variant);
    let plain = base.join("plain");
    support::patch_against_incremental_build(c, "one_function_change", &repo, &base.join("target"), &plain, &variant);
}

criterion_group!(benches, patch_time);
criterion_main!(benches);
