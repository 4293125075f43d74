//! Wall time of `cargo dsu patch` for a one-function change of the demo server, against an
//! incremental `cargo build` of the same change. Figures in docs/PERFORMANCE.md.
//!
//! Each iteration alternates between two releases that differ from v1 in one function body, so
//! every patch build and every cargo build compiles a real change incrementally.

use criterion::{criterion_group, criterion_main, Criterion};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const MANIFEST: &str = include_str!("../../examples/demo-server/Cargo.toml.in");
const LOCK: &str = include_str!("../../examples/demo-server/Cargo.lock");
const V1: &str = include_str!("../../examples/demo-server/v1.rs");

fn variant(n: u32) -> String {
    V1.replace("format!(\"hello {name}, visit {n}\")", &format!("format!(\"hello {{name}}, visit {{n}} ({n})\")"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn git(dir: &Path, args: &[&str]) {
    run(Command::new("git").args(args).current_dir(dir));
}

fn write_package(dir: &Path, main: &str) {
    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runtime").canonicalize().unwrap();
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("Cargo.toml"), MANIFEST.replace("@DSU_RUNTIME@", runtime.to_str().unwrap())).unwrap();
    std::fs::write(dir.join("Cargo.lock"), LOCK).unwrap();
    std::fs::write(dir.join(".gitignore"), "/target\n").unwrap();
    std::fs::write(dir.join("src/main.rs"), main).unwrap();
}

fn patch_time(c: &mut Criterion) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dsu-bench");
    let repo = base.join("repo");
    let target = base.join("target");
    let _ = std::fs::remove_dir_all(&repo);
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "bench@dsu.invalid"]);
    git(&repo, &["config", "user.name", "bench"]);
    for (tag, src) in [("v1", V1.to_string()), ("a", variant(1)), ("b", variant(2))] {
        write_package(&repo, &src);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", tag]);
        git(&repo, &["tag", tag]);
    }
    git(&repo, &["checkout", "-q", "v1"]);
    let cargo_dsu = PathBuf::from(env!("CARGO_BIN_EXE_cargo-dsu"));
    let dsu = |args: &[&str]| {
        run(Command::new(&cargo_dsu).arg("dsu").args(args).arg("--target-dir").arg(&target).current_dir(&repo));
    };
    dsu(&["build"]);
    dsu(&["patch", "v1..a"]);
    dsu(&["patch", "v1..b"]);

    // The same change, built the plain way in a copy of the package.
    let plain = base.join("plain");
    write_package(&plain, &variant(1));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = |main: &str| {
        std::fs::write(plain.join("src/main.rs"), main).unwrap();
        run(Command::new(&cargo).args(["build", "-q"]).current_dir(&plain));
    };
    build(&variant(2));

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
            build(&variant(if flip { 1 } else { 2 }));
        })
    });
    g.finish();
}

criterion_group!(benches, patch_time);
criterion_main!(benches);
