//! The two ways through the kv server's release history under load, measured alike:
//! - **live**: one process built with `cargo dsu build`, each release applied as a patch
//!   through its control socket (the release marked `rollback: yes` rolled back and applied
//!   again);
//! - **restart**: the plain `cargo build` of each release, each taking over from the one before
//!   by a graceful restart, its state saved and reloaded from a snapshot, or lost.

use crate::load::{Bucket, Generator, LoadConfig, Stats, Totals, Verified, BUCKET};
use crate::repo::Release;
use crate::server::Server;
use anyhow::{ensure, Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One step of the release sequence: run release `tag` next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The release the program runs after the step.
    pub tag: String,
    /// What the step is: `r3`, `rollback r5`, `r5 again`.
    pub label: String,
    /// A rollback (live: `rollback` on the control socket; restart: the previous binary).
    pub rollback: bool,
}

/// The sequence both ways follow: each release in turn; after the one marked `rollback: yes`,
/// its rollback and the release again.
pub fn steps(releases: &[Release]) -> Vec<Step> {
    let mut out = Vec::new();
    for pair in releases.windows(2) {
        let (prev, rel) = (&pair[0], &pair[1]);
        out.push(Step { tag: rel.tag.clone(), label: rel.tag.clone(), rollback: false });
        if rel.rollback {
            out.push(Step { tag: prev.tag.clone(), label: format!("rollback {}", rel.tag), rollback: true });
            out.push(Step { tag: rel.tag.clone(), label: format!("{} again", rel.tag), rollback: false });
        }
    }
    out
}

/// How a graceful restart keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The old process writes a snapshot on SIGTERM, the new one loads it before listening.
    Snapshot,
    /// The new process binds the same address first (SO_REUSEPORT), then the old one drains:
    /// nothing is saved.
    Lost,
}

/// One update or handoff, as it went.
#[derive(Debug, Clone)]
pub struct Event {
    pub label: String,
    /// Seconds since the load's start when it began.
    pub at: f64,
    /// Live: the pause the runtime measured. Restart: from the start of the handoff until the
    /// new process said it listens (0 when it listened before the old one was stopped).
    pub pause: Duration,
    /// Live: how long the control request took (verify, load, apply). Restart: the whole
    /// handoff, until the old process had exited and the new one listened.
    pub took: Duration,
    /// Keys the server held just after (DBSIZE).
    pub keys_after: i64,
    /// Peak resident memory of the process that ran until this step (restart) or of the one
    /// process so far (live), KiB.
    pub peak_kib: u64,
    /// INFO's kv_release after the step.
    pub release: String,
}

/// A whole run.
pub struct Run {
    pub name: String,
    pub events: Vec<Event>,
    /// The load's buckets.
    pub series: Vec<Bucket>,
    pub totals: Totals,
    pub verified: Verified,
    /// Load seconds measured.
    pub seconds: f64,
    pub peak_kib: u64,
    pub fill: Duration,
}

/// What a run is given.
pub struct Setup<'a> {
    pub generator: &'a Generator,
    pub load: LoadConfig,
    /// Where logs, sockets and snapshots go.
    pub work: PathBuf,
    /// Seconds of load before the first step, between steps, and after the last.
    pub spacing: Duration,
}

fn bounded_start(binary: &Path, args: &[&str], log: &Path) -> Result<Server> {
    // A bound on a server that never comes up; loading a million-key snapshot takes seconds.
    Server::start(binary, args, log, Duration::from_secs(300))
}

fn fill(s: &Setup, addr: &str) -> Result<Duration> {
    let t = Instant::now();
    s.generator.fill(addr, s.load.keys, 8, 1000)?;
    let n = s.generator.dbsize(addr)?;
    ensure!(n as u64 == s.load.keys, "after filling {} keys the server holds {n}", s.load.keys);
    Ok(t.elapsed())
}

/// What one step reports; the rest of its [`Event`] is measured alike for both ways.
struct Done {
    pause: Duration,
    took: Duration,
    /// Peak memory of the process that ran until the step.
    peak_kib: u64,
}

/// Fills `server`, starts the load, runs `step` for each step of the sequence under it (with
/// `s.spacing` of load before, between and after), checks INFO names each step's release, then
/// stops the load, reads every key back and stops the server.
fn drive(
    s: &Setup,
    name: &str,
    mut server: Server,
    steps: &[Step],
    mut step: impl FnMut(&Step, &mut Server) -> Result<Done>,
) -> Result<Run> {
    let addr = server.addr.clone();
    let fill = fill(s, &addr)?;
    let stats = Arc::new(Stats::new(Instant::now()));
    let load = s.generator.start(&addr, &s.load, stats.clone());
    std::thread::sleep(s.spacing);
    let mut events = Vec::new();
    let mut peak_kib = 0;
    for st in steps {
        let at = stats.now();
        let done = step(st, &mut server).with_context(|| format!("step {}", st.label))?;
        let release = s.generator.info_field(&addr, "kv_release")?.unwrap_or_default();
        ensure!(release == st.tag, "after {} INFO says kv_release:{release}", st.label);
        let keys_after = s.generator.dbsize(&addr)?;
        peak_kib = peak_kib.max(done.peak_kib);
        events.push(Event {
            label: st.label.clone(),
            at,
            pause: done.pause,
            took: done.took,
            keys_after,
            peak_kib: done.peak_kib,
            release,
        });
        std::thread::sleep(s.spacing);
    }
    let seconds = stats.now();
    let totals = s.generator.stop(load);
    let verified = s.generator.verify(&addr, s.load.keys, 8, 1000)?;
    peak_kib = peak_kib.max(server.peak_rss_kib());
    server.stop(Duration::from_secs(300))?;
    Ok(Run { name: name.into(), events, series: stats.series(seconds), totals, verified, seconds, peak_kib, fill })
}

/// Live updates: `binary` is the `cargo dsu build` of r1; `patches` maps each release's tag to
/// the patch from the release before it; each step goes through the control socket.
pub fn live(s: &Setup, binary: &Path, patches: &[(String, PathBuf)], steps: &[Step]) -> Result<Run> {
    let socket = s.work.join("live.sock");
    let log = s.work.join("live.log");
    let _ = std::fs::remove_file(&log);
    let server = bounded_start(binary, &["--bind", "127.0.0.1:0", "--control", socket.to_str().unwrap()], &log)?;
    drive(s, "live", server, steps, |step, server| {
        let t = Instant::now();
        if step.rollback {
            crate::dsu::control(&socket, "rollback")?;
        } else {
            let patch = &patches
                .iter()
                .find(|(tag, _)| *tag == step.tag)
                .with_context(|| format!("no patch to {}", step.tag))?
                .1;
            crate::dsu::control(&socket, &format!("load {}", patch.display()))?;
        }
        let took = t.elapsed();
        let status = crate::dsu::control(&socket, "status")?;
        let pause = Duration::from_micros(crate::dsu::last_pause_us(&status).context("status has no last_pause_us")?);
        Ok(Done { pause, took, peak_kib: server.peak_rss_kib() })
    })
}

/// Graceful restarts: `binaries` maps each release's tag to its plain build.
pub fn restart(s: &Setup, binaries: &[(String, PathBuf)], steps: &[Step], how: Restart) -> Result<Run> {
    let name = match how {
        Restart::Snapshot => "restart-snapshot",
        Restart::Lost => "restart-lost",
    };
    let log = s.work.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let snapshot = s.work.join(format!("{name}.snapshot"));
    let _ = std::fs::remove_file(&snapshot);
    let start = |tag: &str, bind: &str| -> Result<Server> {
        let binary = &binaries.iter().find(|(t, _)| t == tag).with_context(|| format!("no build of {tag}"))?.1;
        let mut args = vec!["--bind", bind, "--reuseport"];
        if how == Restart::Snapshot {
            args.extend(["--snapshot", snapshot.to_str().unwrap()]);
        }
        bounded_start(binary, &args, &log)
    };
    let first = start("r1", "127.0.0.1:0")?;
    let addr = first.addr.clone();
    drive(s, name, first, steps, |step, server| {
        let t = Instant::now();
        let (next, exit, pause) = match how {
            Restart::Snapshot => {
                // The old process must have written every key before the new one reads them:
                // it stops, drains and saves; only then the new one starts and loads.
                let exit = server.stop(Duration::from_secs(300))?;
                let next = start(&step.tag, &addr)?;
                let pause = next.ready_at.saturating_duration_since(t);
                (next, exit, pause)
            }
            Restart::Lost => {
                // The new process binds the address beside the old one, then the old drains:
                // the address never stops accepting.
                let next = start(&step.tag, &addr)?;
                (next, server.stop(Duration::from_secs(300))?, Duration::ZERO)
            }
        };
        ensure!(exit.status.success(), "the process before {} exited with {}", step.label, exit.status);
        *server = next;
        Ok(Done { pause, took: t.elapsed(), peak_kib: exit.peak_kib })
    })
}

/// How an event shows in the throughput: the mean of the second before it is the baseline;
/// over the window until the next event, the lowest bucket (as a fraction of the baseline), the
/// requests short of the baseline (as milliseconds of baseline throughput) and the longest
/// wait of a client.
#[derive(Debug, Clone, Copy)]
pub struct Dip {
    pub baseline_per_s: f64,
    pub lowest: f64,
    pub lost_ms: f64,
    pub max_wait: Duration,
}

pub fn dip(run: &Run, i: usize) -> Dip {
    let per_bucket = BUCKET.as_secs_f64();
    let b = |t: f64| ((t / per_bucket).floor() as usize).min(run.series.len());
    let start = b(run.events[i].at);
    let end = run.events.get(i + 1).map_or(run.series.len(), |e| b(e.at));
    let before = &run.series[start.saturating_sub(10)..start];
    let baseline = before.iter().map(|x| x.completed as f64).sum::<f64>() / before.len().max(1) as f64;
    let window = &run.series[start..end.max(start)];
    let lowest = window.iter().map(|x| x.completed as f64).fold(f64::INFINITY, f64::min);
    let lost: f64 = window.iter().map(|x| (baseline - x.completed as f64).max(0.0)).sum();
    let max_wait = Duration::from_micros(window.iter().map(|x| x.max_wait_us).max().unwrap_or(0));
    Dip {
        baseline_per_s: baseline / per_bucket,
        lowest: if baseline > 0.0 && lowest.is_finite() { lowest / baseline } else { 0.0 },
        lost_ms: if baseline > 0.0 { lost / baseline * per_bucket * 1000.0 } else { 0.0 },
        max_wait,
    }
}

/// The throughput series as CSV: seconds, requests and GETs of missing keys per second, longest
/// wait (ms).
pub fn series_csv(run: &Run) -> String {
    let mut out = String::from("t_s,requests_per_s,missing_key_gets_per_s,max_wait_ms\n");
    let per_s = |n: u64| n as f64 / BUCKET.as_secs_f64();
    for (i, b) in run.series.iter().enumerate() {
        let t = i as f64 * BUCKET.as_secs_f64();
        let _ =
            writeln!(out, "{t:.1},{},{},{:.3}", per_s(b.completed), per_s(b.missing), b.max_wait_us as f64 / 1000.0);
    }
    out
}

/// The events as CSV.
pub fn events_csv(run: &Run) -> String {
    let mut out = String::from(
        "label,at_s,pause_ms,took_ms,keys_after,peak_rss_mib,release,baseline_per_s,lowest_fraction,lost_ms,max_wait_ms\n",
    );
    for (i, e) in run.events.iter().enumerate() {
        let d = dip(run, i);
        let _ = writeln!(
            out,
            "{},{:.3},{:.3},{:.1},{},{:.1},{},{:.0},{:.3},{:.1},{:.1}",
            e.label,
            e.at,
            e.pause.as_secs_f64() * 1e3,
            e.took.as_secs_f64() * 1e3,
            e.keys_after,
            e.peak_kib as f64 / 1024.0,
            e.release,
            d.baseline_per_s,
            d.lowest,
            d.lost_ms,
            d.max_wait.as_secs_f64() * 1e3
        );
    }
    out
}

/// The summary table of a run.
pub fn summary(run: &Run) -> String {
    let mut out = String::new();
    let t = &run.totals;
    let _ = writeln!(
        out,
        "{}: fill {:.1} s; {:.1} s of load, {} requests ({:.0}/s), {} failed ({} error replies, {} wrong values, \
         {} lost with their connection), {} GETs of missing keys, {} reconnects, {} failed connection attempts; \
         at the end {} of {} keys intact ({} missing, {} wrong); peak RSS {:.0} MiB",
        run.name,
        run.fill.as_secs_f64(),
        run.seconds,
        t.completed(),
        t.completed() as f64 / run.seconds,
        t.failed(),
        t.error_replies,
        t.wrong_values,
        t.connection_lost,
        t.missing,
        t.reconnects,
        t.connect_failures,
        run.verified.intact,
        run.verified.keys,
        run.verified.missing,
        run.verified.wrong,
        run.peak_kib as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "  {:<12} {:>10} {:>10} {:>11} {:>10} {:>12} {:>10} {:>9}",
        "step", "pause ms", "took ms", "keys after", "lowest %", "lost tput ms", "max wait", "peak MiB"
    );
    for (i, e) in run.events.iter().enumerate() {
        let d = dip(run, i);
        let _ = writeln!(
            out,
            "  {:<12} {:>10.3} {:>10.1} {:>11} {:>10.0} {:>12.1} {:>7.1} ms {:>9.0}",
            e.label,
            e.pause.as_secs_f64() * 1e3,
            e.took.as_secs_f64() * 1e3,
            e.keys_after,
            d.lowest * 100.0,
            d.lost_ms,
            d.max_wait.as_secs_f64() * 1e3,
            e.peak_kib as f64 / 1024.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(tag: &str, rollback: bool) -> Release {
        Release { tag: tag.into(), message: String::new(), rollback, overlay: None, deletes: Vec::new() }
    }

    #[test]
    fn the_rollback_release_is_rolled_back_and_applied_again() {
        let s = steps(&[rel("r1", false), rel("r2", false), rel("r3", true), rel("r4", false)]);
        let labels: Vec<_> = s.iter().map(|s| (s.label.as_str(), s.tag.as_str(), s.rollback)).collect();
        assert_eq!(
            labels,
            vec![
                ("r2", "r2", false),
                ("r3", "r3", false),
                ("rollback r3", "r2", true),
                ("r3 again", "r3", false),
                ("r4", "r4", false)
            ]
        );
    }

    #[test]
    fn a_dip_is_measured_against_the_second_before() {
        let b = |completed, max_wait_us| Bucket { completed, missing: 0, max_wait_us };
        let mut series = vec![b(100, 50); 20];
        series[12] = b(0, 0);
        series[13] = b(50, 40_000);
        let run = Run {
            name: "t".into(),
            events: vec![Event {
                label: "x".into(),
                at: 1.0,
                pause: Duration::ZERO,
                took: Duration::ZERO,
                keys_after: 0,
                peak_kib: 0,
                release: String::new(),
            }],
            series,
            totals: Totals::default(),
            verified: Verified { keys: 0, intact: 0, missing: 0, wrong: 0 },
            seconds: 2.0,
            peak_kib: 0,
            fill: Duration::ZERO,
        };
        let d = dip(&run, 0);
        assert_eq!(d.baseline_per_s, 1000.0);
        assert_eq!(d.lowest, 0.0);
        // 100 + 50 requests short of 100 per bucket: 1.5 buckets, 150 ms.
        assert!((d.lost_ms - 150.0).abs() < 1e-9, "{}", d.lost_ms);
        assert_eq!(d.max_wait, Duration::from_millis(40));
    }
}
