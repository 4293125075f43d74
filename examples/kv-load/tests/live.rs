//! End to end: the kv server built with `cargo dsu build`, filled and driven by the Rust load
//! generator, three of its releases applied live under load through the control socket (one of
//! them changes the type of every entry). Expected: 0 failed requests, no GET of a missing key,
//! every key intact, and INFO naming the new release after each update.
//!
//! Its own `main` (harness = false): the test executable is also `cargo dsu` (see
//! `tests/common`), and it shares its repository and target directory with `tests/releases.rs`.

mod common;

use kv_load::dsu;
use kv_load::load::{Generator, LoadConfig, Stats};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The release built and started.
const BASE: &str = "r4";
/// The patches applied, in order: each turns the release before it into the next one.
const UPDATES: &[(&str, &str)] = &[("r4", "r5"), ("r5", "r6"), ("r6", "r7")];
/// The release among them that changes the entry's type (with a transformer).
const ENTRY_TYPE_CHANGE: &str = "r6";
const KEYS: u64 = 20_000;

fn main() -> ExitCode {
    common::main(&[("live_updates_under_load", live_updates_under_load)])
}

/// Waits until `done()` holds, at most `within`; panics naming `what` otherwise.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn live_updates_under_load() {
    let (dir, releases) = common::release_repository();
    let change = releases.iter().find(|r| r.tag == ENTRY_TYPE_CHANGE).expect("the entry type change release");
    assert!(
        change.message.to_lowercase().contains("entr"),
        "{ENTRY_TYPE_CHANGE} is expected to change the entry type; its message: {:?}",
        change.message
    );
    let out = std::process::Command::new("git").args(["checkout", "-q", BASE]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "git checkout {BASE}: {}", String::from_utf8_lossy(&out.stderr));
    let cargo_dsu = common::cargo_dsu(&dir);
    let binary = cargo_dsu.build().expect("cargo dsu build");
    let patches = common::patches(&cargo_dsu, UPDATES.iter().copied());

    let common::Started { mut server, socket, log } = common::start_server(&binary, "live");
    let addr = server.addr.clone();
    let generator = Generator::new(2).unwrap();
    let info_release = || generator.info_field(&addr, "kv_release").unwrap().unwrap_or_default();
    assert_eq!(info_release(), BASE);
    generator.fill(&addr, KEYS, 4, 500).expect("fill");
    assert_eq!(generator.dbsize(&addr).unwrap(), KEYS as i64);

    let stats = Arc::new(Stats::new(Instant::now()));
    let config = LoadConfig { connections: 8, keys: KEYS, pipeline: 4, set_percent: 10 };
    let load = generator.start(&addr, &config, stats.clone());
    // Under load: requests keep completing before, and after, every update.
    let progress = |what: &str| {
        let from = stats.totals().completed();
        wait_until(what, Duration::from_secs(120), || stats.totals().completed() >= from + 2_000);
    };
    progress("the load runs");
    for ((_, to), patch) in UPDATES.iter().zip(&patches) {
        let reply = dsu::control(&socket, &format!("load {}", patch.display()))
            .unwrap_or_else(|e| panic!("loading the patch to {to}: {e:#}; server log: {}", log.display()));
        assert!(reply.starts_with("applied"), "{reply}");
        assert_eq!(info_release(), *to, "INFO after the patch to {to}");
        let status = dsu::control(&socket, "status").unwrap();
        assert!(dsu::last_pause_us(&status).is_some(), "{status}");
        println!("  {to}: {reply}; {status}");
        progress(&format!("the load runs on {to}"));
    }
    let totals = generator.stop(load);
    println!("  {totals:?}");
    assert_eq!(totals.failed(), 0, "failed requests: {totals:?}");
    assert_eq!(totals.missing, 0, "GETs of keys the server lost: {totals:?}");
    assert_eq!(totals.reconnects, 0, "{totals:?}");
    let verified = generator.verify(&addr, KEYS, 4, 500).expect("verify");
    assert_eq!(verified.intact, KEYS, "{verified:?}");
    assert_eq!(generator.dbsize(&addr).unwrap(), KEYS as i64);
    let exit = server.stop(Duration::from_secs(60)).expect("the server stops on SIGTERM");
    assert!(exit.status.success(), "{:?}", exit.status);
}
