//! End to end: the kv server built with `cargo dsu build`, filled and driven by the Rust load
//! generator, three of its releases applied live under load through the control socket (one of
//! them changes the type of every entry). Expected: 0 failed requests, no GET of a missing key,
//! every key intact, and INFO naming the new release after each update.
//!
//! Its own `main` (harness = false): the test executable is also `cargo dsu`, as the demo is,
//! so it builds the server and the patches without an installed cargo-dsu.

use kv_load::dsu::{self, CargoDsu};
use kv_load::load::{Generator, LoadConfig, Stats};
use kv_load::repo;
use kv_load::server::Server;
use std::path::{Path, PathBuf};
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
    if let Some(code) = dsu::as_cargo_dsu() {
        return code;
    }
    // Accept and ignore libtest's arguments (`cargo test -- --nocapture`), but honour a filter
    // that excludes this test.
    if std::env::args().any(|a| a == "--list") {
        println!("live_updates_under_load: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "live_updates_under_load".contains(f.as_str())) {
        println!("test live_updates_under_load ... filtered out");
        return ExitCode::SUCCESS;
    }
    println!("test live_updates_under_load ...");
    live_updates_under_load();
    println!("test live_updates_under_load ... ok");
    ExitCode::SUCCESS
}

/// The target directory the cargo-dsu end-to-end tests share (see cargo-dsu/tests/common), so
/// the runtime's dependency library and third-party crates are built once for all of them.
fn shared_target_dir() -> PathBuf {
    std::env::var_os("DSU_E2E_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap().join("target/dsu-e2e")
    })
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
    let target = shared_target_dir();
    let dir = target.join("scratch-kv-load").join("repo");
    let releases = repo::make_repository(&repo::kv_source(), &dir).expect("the release repository");
    let change = releases.iter().find(|r| r.tag == ENTRY_TYPE_CHANGE).expect("the entry type change release");
    assert!(
        change.message.to_lowercase().contains("entr"),
        "{ENTRY_TYPE_CHANGE} is expected to change the entry type; its message: {:?}",
        change.message
    );
    let out = std::process::Command::new("git").args(["checkout", "-q", BASE]).current_dir(&dir).output().unwrap();
    assert!(out.status.success(), "git checkout {BASE}: {}", String::from_utf8_lossy(&out.stderr));
    let cargo_dsu = CargoDsu { repo: dir.clone(), target: target.clone(), release: false, keys: None };
    let binary = cargo_dsu.build().expect("cargo dsu build");
    let patches: Vec<PathBuf> = UPDATES
        .iter()
        .map(|(a, b)| cargo_dsu.patch(a, b).unwrap_or_else(|e| panic!("cargo dsu patch {a}..{b}: {e:#}")))
        .collect();

    let work = target.join("scratch-kv-load");
    let socket = work.join("control.sock");
    let log = work.join("server.log");
    let _ = std::fs::remove_file(&log);
    let mut server = Server::start(
        &binary,
        &["--bind", "127.0.0.1:0", "--control", socket.to_str().unwrap()],
        &log,
        Duration::from_secs(120),
    )
    .expect("the server starts");
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
