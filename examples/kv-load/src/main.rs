//! `kv-load ADDR [--keys K] [--connections C] [--pipeline P] [--set-percent S] [--seconds T]
//! [--threads N] [--no-fill]`: fills K keys, drives the server for T seconds, prints the
//! throughput every second, then reads every key back. Unlike redis-benchmark it checks every
//! value, so it tells whether the server kept its state.

use anyhow::{bail, Context, Result};
use kv_load::load::{Generator, LoadConfig, Stats, BUCKET};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = None;
    let mut cfg = LoadConfig::default();
    let mut seconds = 10u64;
    let mut threads = 1usize;
    let mut fill = true;
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<String> { args.next().with_context(|| format!("{name} needs a value")) };
        match a.as_str() {
            "--keys" => cfg.keys = value("--keys")?.parse()?,
            "--connections" => cfg.connections = value("--connections")?.parse()?,
            "--pipeline" => cfg.pipeline = value("--pipeline")?.parse()?,
            "--set-percent" => cfg.set_percent = value("--set-percent")?.parse()?,
            "--seconds" => seconds = value("--seconds")?.parse()?,
            "--threads" => threads = value("--threads")?.parse()?,
            "--no-fill" => fill = false,
            a if a.starts_with("--") => bail!("unknown option {a}"),
            a => addr = Some(a.to_string()),
        }
    }
    let addr = addr.context("usage: kv-load ADDR [--keys K] [--connections C] [--pipeline P] [--set-percent S] [--seconds T] [--threads N] [--no-fill]")?;
    let generator = Generator::new(threads)?;
    if fill {
        let t = Instant::now();
        generator.fill(&addr, cfg.keys, 8, 1000)?;
        println!("filled {} keys in {:.2} s", cfg.keys, t.elapsed().as_secs_f64());
    }
    let stats = Arc::new(Stats::new(Instant::now()));
    let load = generator.start(&addr, &cfg, stats.clone());
    let per_s = (1.0 / BUCKET.as_secs_f64()) as usize;
    for s in 1..=seconds {
        std::thread::sleep(Duration::from_secs_f64((s as f64 - stats.now()).max(0.0)));
        let series = stats.series(s as f64);
        let last: u64 = series[series.len().saturating_sub(per_s)..].iter().map(|x| x.completed).sum();
        let wait = series[series.len().saturating_sub(per_s)..].iter().map(|x| x.max_wait_us).max().unwrap_or(0);
        println!("{s:>4} s  {last:>9} requests/s  longest wait {:.2} ms", wait as f64 / 1000.0);
    }
    let t = generator.stop(load);
    let secs = stats.now();
    println!(
        "{} requests in {secs:.1} s ({:.0}/s); {} failed ({} error replies, {} wrong values, {} lost with their connection); {} GETs of missing keys; {} reconnects",
        t.completed(),
        t.completed() as f64 / secs,
        t.failed(),
        t.error_replies,
        t.wrong_values,
        t.connection_lost,
        t.missing,
        t.reconnects
    );
    let v = generator.verify(&addr, cfg.keys, 8, 1000)?;
    println!("{} of {} keys intact ({} missing, {} wrong)", v.intact, v.keys, v.missing, v.wrong);
    Ok(())
}
