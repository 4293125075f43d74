//! The cost of being updateable: kv (release r1) built with `cargo dsu build --release` against
//! the plain `cargo build --release`, under `redis-benchmark -t set,get -n N -c 50` when it is
//! installed (otherwise the Rust load generator, the same number of requests per run, GETs and
//! SETs as redis-benchmark sends them, one command per round trip). Runs alternate between the
//! two builds (plain, dsu, plain, dsu, …) so a change of the machine's load falls on both;
//! medians per build.
//!
//! `cargo bench -p kv-load --bench overhead`. Environment: KV_OVERHEAD_RUNS (5 per build),
//! KV_OVERHEAD_REQUESTS (1000000 per test), KV_OVERHEAD_TOOL (`redis-benchmark` or `rust`).

use anyhow::{bail, Context, Result};
use kv_load::load::{Generator, LoadConfig, Stats};
use kv_load::server::Server;
use kv_load::{dsu, repo};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    kv_load::main_or_cargo_dsu("overhead", bench)
}

fn redis_benchmark_installed() -> bool {
    Command::new("redis-benchmark").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// SET and GET requests per second of one redis-benchmark run (`--csv`).
fn redis_benchmark(addr: &str, requests: u64) -> Result<(f64, f64)> {
    let (host, port) = addr.rsplit_once(':').context("address without port")?;
    let out = Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-t", "set,get", "-n", &requests.to_string(), "-c", "50", "--csv"])
        .output()
        .context("running redis-benchmark")?;
    if !out.status.success() {
        bail!("redis-benchmark: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = |test: &str| -> Result<f64> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .with_context(|| format!("redis-benchmark printed no {test} line:\n{text}"))?;
        let field = line.split(',').nth(1).context("no rps field")?;
        Ok(field.trim_matches('"').parse()?)
    };
    Ok((rps("SET")?, rps("GET")?))
}

/// The same with the Rust generator: `requests` SETs (100% SET), then `requests` GETs.
fn rust_generator(generator: &Generator, addr: &str, requests: u64) -> Result<(f64, f64)> {
    let mut out = [0.0; 2];
    for (k, set_percent) in [100, 0].into_iter().enumerate() {
        let stats = Arc::new(Stats::new(Instant::now()));
        let cfg = LoadConfig { connections: 50, keys: 100_000, pipeline: 1, set_percent };
        let load = generator.start(addr, &cfg, stats.clone());
        let deadline = Instant::now() + Duration::from_secs(600);
        while stats.totals().completed() < requests {
            if Instant::now() > deadline {
                bail!("{requests} requests not done within 600 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let secs = stats.now();
        let totals = generator.stop(load);
        if totals.failed() > 0 {
            bail!("failed requests: {totals:?}");
        }
        out[k] = totals.completed() as f64 / secs;
    }
    Ok((out[0], out[1]))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn bench() -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?;
    let base = root.join("target/kv-bench");
    std::fs::create_dir_all(&base)?;
    let runs: usize = kv_load::env_or("KV_OVERHEAD_RUNS", 5)?;
    let requests: u64 = kv_load::env_or("KV_OVERHEAD_REQUESTS", 1_000_000)?;
    let tool: String = kv_load::env_or(
        "KV_OVERHEAD_TOOL",
        if redis_benchmark_installed() { "redis-benchmark" } else { "rust" }.to_string(),
    )?;

    let repo_dir = base.join("repo");
    repo::make_repository(&repo::kv_source(), &repo_dir)?;
    let dsu_binary =
        dsu::CargoDsu { repo: repo_dir.clone(), target: base.join("dsu-target"), release: true, keys: None }.build()?;
    let plain_binary: PathBuf = dsu::plain_build(&repo_dir, "r1", &base)?;
    let builds = [("plain", plain_binary), ("dsu", dsu_binary)];
    println!("tool: {tool}; {requests} requests per test, 50 connections; {runs} runs per build, alternating");

    let generator = Generator::new(1)?;
    let mut results: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 2];
    for run in 0..runs {
        for (k, (name, binary)) in builds.iter().enumerate() {
            let log = base.join(format!("overhead-{name}.log"));
            let mut server = Server::start(binary, &["--bind", "127.0.0.1:0"], &log, Duration::from_secs(60))?;
            let (set, get) = match tool.as_str() {
                "redis-benchmark" => redis_benchmark(&server.addr, requests)?,
                "rust" => rust_generator(&generator, &server.addr, requests)?,
                other => bail!("KV_OVERHEAD_TOOL: unknown tool {other:?}"),
            };
            server.stop(Duration::from_secs(60))?;
            println!("run {}: {name:<5}  SET {set:>10.0}/s  GET {get:>10.0}/s", run + 1);
            results[k].0.push(set);
            results[k].1.push(get);
        }
    }
    let (mut ps, mut pg) = results[0].clone();
    let (mut ds, mut dg) = results[1].clone();
    let (ps, pg, ds, dg) = (median(&mut ps), median(&mut pg), median(&mut ds), median(&mut dg));
    println!("\n| build | SET req/s (median) | GET req/s (median) |");
    println!("|---|---:|---:|");
    println!("| plain `cargo build --release` | {ps:.0} | {pg:.0} |");
    println!("| `cargo dsu build --release` | {ds:.0} | {dg:.0} |");
    println!("| dsu against plain (medians) | {:+.2}% | {:+.2}% |", (ds / ps - 1.0) * 100.0, (dg / pg - 1.0) * 100.0);
    // Each dsu run against the plain run just before it: a drift of the machine's load over the
    // whole bench falls on both sides of each pair.
    let ratio = |k: usize| -> f64 {
        let pick = |v: &(Vec<f64>, Vec<f64>)| if k == 0 { v.0.clone() } else { v.1.clone() };
        let mut r: Vec<f64> = pick(&results[1]).iter().zip(pick(&results[0])).map(|(d, p)| d / p).collect();
        (median(&mut r) - 1.0) * 100.0
    };
    println!("| dsu against plain (median of the runs' pairs) | {:+.2}% | {:+.2}% |", ratio(0), ratio(1));
    Ok(())
}
