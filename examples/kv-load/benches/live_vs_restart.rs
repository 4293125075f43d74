//! The kv server through its whole release history under load, two ways, side by side:
//!
//! 1. **Live (dsu).** r1 built with `cargo dsu build --release`, started with a control socket,
//!    filled with KV_KEYS keys (default 1,000,000), driven by the Rust load generator; each
//!    patch rK..rK+1 (built with `cargo dsu patch --release` before the load starts, so the
//!    compiler does not share the CPUs with the measurement) applied through the control
//!    socket, the release marked `rollback: yes` rolled back and applied again. Each update's
//!    pause is the runtime's own (`status`: `last_pause_us`).
//! 2. **Graceful restart.** The plain `cargo build --release` of every release (all built
//!    first), the same sequence as process handoffs on the same address:
//!    - *snapshot*: the old process gets SIGTERM, stops accepting, drains, writes its
//!      snapshot and exits; the new one (`--reuseport --snapshot`) loads the snapshot and only
//!      then listens. The snapshot must hold every write, so the new process cannot read it
//!      before the old one has stopped: while it loads, nothing answers.
//!    - *lost*: the new process (`--reuseport`) binds the address beside the old one, then the
//!      old one gets SIGTERM and drains: no moment without a listener, and no state.
//!
//! The load generator is ours, not redis-benchmark: it checks every reply against the value
//! the key must hold and reads every key back at the end, which redis-benchmark cannot.
//!
//! Prints a table per run, writes the series to target/kv-bench/*.csv and draws
//! docs/kv-live-vs-restart.svg and .png.
//!
//! `cargo bench -p kv-load --bench live_vs_restart`. Environment: KV_KEYS (default 1000000),
//! KV_CONNECTIONS (50), KV_PIPELINE (1), KV_SPACING_MS (2000: load before, between and after
//! the updates), KV_LOAD_THREADS (1: the generator's tokio worker threads), KV_RUNS
//! (`live,snapshot,lost`), KV_NO_FIGURE (set: keep docs/ as it is), KV_SIGN (set: the build trusts
//! a key made for the bench and every patch is signed with it).

use anyhow::Result;
use kv_load::load::{Generator, LoadConfig};
use kv_load::scenario::{self, Restart, Setup};
use kv_load::{dsu, plot, repo};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    kv_load::main_or_cargo_dsu("live_vs_restart", bench)
}

fn bench() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?;
    let base = root.join("target/kv-bench");
    std::fs::create_dir_all(&base)?;
    let keys: u64 = kv_load::env_or("KV_KEYS", 1_000_000)?;
    let runs: String = kv_load::env_or("KV_RUNS", "live,snapshot,lost".to_string())?;
    let load = LoadConfig {
        connections: kv_load::env_or("KV_CONNECTIONS", 50)?,
        keys,
        pipeline: kv_load::env_or("KV_PIPELINE", 1)?,
        set_percent: 10,
    };
    let spacing = Duration::from_millis(kv_load::env_or("KV_SPACING_MS", 2000)?);

    let t = Instant::now();
    let repo_dir = base.join("repo");
    let releases = repo::make_repository(&repo::kv_source(), &repo_dir)?;
    let steps = scenario::steps(&releases);
    println!(
        "repository {}: {} releases; sequence: {}",
        repo_dir.display(),
        releases.len(),
        steps.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", ")
    );

    // KV_SIGN=1: the build trusts a key and every patch is signed with it, as in production.
    let signing = match std::env::var_os("KV_SIGN") {
        Some(_) => {
            let keys = base.join("keys").join("release");
            dsu::keygen(&keys)?;
            println!("patches signed with {}.key; the build trusts {}.pub", keys.display(), keys.display());
            Some(keys)
        }
        None => None,
    };
    let cargo_dsu = dsu::CargoDsu { repo: repo_dir.clone(), target: base.join("dsu-target"), release: true, keys: signing };
    let binary = cargo_dsu.build()?;
    println!("cargo dsu build --release: {}", binary.display());
    let mut patches = Vec::new();
    for pair in releases.windows(2) {
        let patch = cargo_dsu.patch(&pair[0].tag, &pair[1].tag)?;
        println!("cargo dsu patch --release {}..{}: {}", pair[0].tag, pair[1].tag, patch.display());
        patches.push((pair[1].tag.clone(), patch));
    }
    let mut binaries: Vec<(String, PathBuf)> = Vec::new();
    for r in &releases {
        binaries.push((r.tag.clone(), dsu::plain_build(&repo_dir, &r.tag, &base)?));
    }
    println!(
        "plain cargo build --release of {} releases; everything built in {:.0} s",
        binaries.len(),
        t.elapsed().as_secs_f64()
    );

    let generator = Generator::new(kv_load::env_or("KV_LOAD_THREADS", 1)?)?;
    let setup = Setup { generator: &generator, load, work: base.clone(), spacing };
    let mut done = Vec::new();
    for run in runs.split(',').map(str::trim) {
        let r = match run {
            "live" => scenario::live(&setup, &binary, &patches, &steps)?,
            "snapshot" => scenario::restart(&setup, &binaries, &steps, Restart::Snapshot)?,
            "lost" => scenario::restart(&setup, &binaries, &steps, Restart::Lost)?,
            other => anyhow::bail!("KV_RUNS: unknown run {other:?} (live, snapshot, lost)"),
        };
        print!("\n{}", scenario::summary(&r));
        std::fs::write(base.join(format!("{}-throughput.csv", r.name)), scenario::series_csv(&r))?;
        std::fs::write(base.join(format!("{}-events.csv", r.name)), scenario::events_csv(&r))?;
        done.push(r);
    }
    println!("\nseries in {}/*-throughput.csv, events in *-events.csv", base.display());

    let live = done.iter().find(|r| r.name == "live");
    let restarts: Vec<_> = done.iter().filter(|r| r.name.starts_with("restart")).collect();
    match live {
        Some(live) if !restarts.is_empty() && std::env::var_os("KV_NO_FIGURE").is_none() => {
            let stem = root.join("docs/kv-live-vs-restart");
            match plot::figure(&stem, live, &restarts, keys) {
                Ok(font) => println!("figure: {}.svg and .png (text in {font})", stem.display()),
                Err(e) => println!("figure not drawn: {e:#}"),
            }
        }
        _ => println!("figure not drawn (it needs the live run and a restart run; KV_NO_FIGURE unset)"),
    }
    Ok(())
}
