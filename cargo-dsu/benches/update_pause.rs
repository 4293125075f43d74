//! Updates of a multi-threaded server under load (the `server` test fixture: eight worker
//! threads, eight client connections sending requests back to back). Figures in
//! docs/PERFORMANCE.md.
//!
//! * `update_pause/code_only_8_threads`: the pause of a code-only update, from the moment the
//!   first thread parks until every parked thread has resumed, as the runtime measures it. Each
//!   iteration is one update (a patch, then its rollback, alternately, 2 ms apart so the load
//!   settles in between); p50 and p99 over every update criterion ran are printed at the end,
//!   with the part spent waiting for threads to reach an update point or go idle.
//! * 100 successive patches v1 → v2 → … → v101 under the same load: failed requests (must be 0)
//!   and the growth of the host's resident memory per patch (each patch library stays mapped).
//! * 20,000 cycles of loading one patch and rolling it back: the host's resident memory after
//!   warm-up, per cycle (must be flat).
//!
//! Built in the release profile: `cargo bench -p cargo-dsu --bench update_pause`.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

const VERSIONS: u32 = 101;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Bench {
    repo: PathBuf,
    target: PathBuf,
}

impl Bench {
    fn setup() -> Bench {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dsu-bench-threads");
        let repo = base.join("repo");
        let target = base.join("target");
        let _ = std::fs::remove_dir_all(&repo);
        common::init_repo(&repo);
        for n in 1..=VERSIONS {
            common::write_server_release(&repo, n);
            common::commit_all(&repo, &format!("v{n}"));
        }
        common::git(&repo, &["checkout", "-q", "v1"]);
        Bench { repo, target }
    }

    fn dsu(&self, args: &[&str]) -> String {
        run(Command::new(env!("CARGO_BIN_EXE_cargo-dsu"))
            .arg("dsu")
            .args(args)
            .arg("--release")
            .arg("--target-dir")
            .arg(&self.target)
            .current_dir(&self.repo))
    }
}

struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Host {
    fn start(binary: &str) -> Host {
        let mut child =
            Command::new(binary).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("host");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let banner = lines.recv().expect("banner");
        let port = banner.strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port");
        Host { child, stdin, lines, port }
    }

    fn send(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.lines.recv().expect("answer")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Eight clients on persistent connections, each sending requests back to back.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let clients = (0..8)
            .map(|c| {
                let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
                std::thread::spawn(move || {
                    let mut conn = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let line = format!("c{c}-{i}");
                        let mut reply = String::new();
                        let good = conn.get_mut().write_all(format!("{line}\n").as_bytes()).is_ok()
                            && conn.read_line(&mut reply).is_ok()
                            && reply.trim_end().split_once(' ').is_some_and(|(_, r)| r == line);
                        if good {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            conn = BufReader::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load { stop, ok, failed, clients }
    }

    fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        (self.ok.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn memory_kib(host: &mut Host, field: &str) -> u64 {
    let m = host.send("memory");
    m.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{field}:=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {m:?}"))
}

fn updates(c: &mut Criterion) {
    let bench = Bench::setup();
    let binary = bench.dsu(&["build"]);
    let patch = bench.dsu(&["patch", "v1..v2"]);

    // The pause of a code-only update with eight threads under load.
    let mut host = Host::start(&binary);
    let load = Load::start(host.port);
    let pauses = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
    let mut g = c.benchmark_group("update_pause");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("code_only_8_threads", |b| {
        b.iter_custom(|iters| {
            // One cycle is two updates: the patch and its rollback.
            let cycles = iters.div_ceil(2);
            let reply = host.send(&format!("cycle {cycles} {patch}"));
            // Each update answers `pause/waiting`, in microseconds.
            let micros: Vec<(u64, u64)> = reply
                .split(' ')
                .map(|p| {
                    p.split_once('/')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                        .unwrap_or_else(|| panic!("update failed: {reply}"))
                })
                .collect();
            pauses.lock().unwrap().extend(&micros);
            Duration::from_micros(micros.iter().take(iters as usize).map(|m| m.0).sum())
        })
    });
    g.finish();
    let (ok, failed) = load.finish();
    let measured = pauses.lock().unwrap().clone();
    let mut all: Vec<u64> = measured.iter().map(|m| m.0).collect();
    let mut waiting: Vec<u64> = measured.iter().map(|m| m.1).collect();
    all.sort_unstable();
    waiting.sort_unstable();
    println!(
        "update_pause/code_only_8_threads: {} updates, pause p50 {} us, p99 {} us, max {} us; \
         of which waiting for threads p50 {} us, p99 {} us ({} of the updates waited for one); \
         requests ok {ok}, failed {failed}",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        all.last().unwrap(),
        percentile(&waiting, 0.50),
        percentile(&waiting, 0.99),
        waiting.iter().filter(|w| **w > 0).count(),
    );
    assert_eq!(failed, 0);
    drop(host);

    // 100 successive patches under load, each built from consecutive revisions.
    let patches: Vec<String> =
        (1..VERSIONS).map(|n| bench.dsu(&["patch", &format!("v{n}..v{}", n + 1)])).collect();
    let mut host = Host::start(&binary);
    let load = Load::start(host.port);
    let rss_before = memory_kib(&mut host, "VmRSS");
    let size_before = memory_kib(&mut host, "VmSize");
    let started = std::time::Instant::now();
    for p in &patches {
        let reply = host.send(&format!("load {p}"));
        assert!(reply.starts_with("applied "), "{reply}");
    }
    let elapsed = started.elapsed();
    let rss_after = memory_kib(&mut host, "VmRSS");
    let size_after = memory_kib(&mut host, "VmSize");
    let (ok, failed) = load.finish();
    let patch_bytes: u64 = patches.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
    println!(
        "successive_patches: {} patches in {:.2?}; requests ok {ok}, failed {failed}; \
         RSS {rss_before} -> {rss_after} KiB ({:.3} MB per patch); address space {:.3} MB per \
         patch; patch file {:.3} MB each",
        patches.len(),
        elapsed,
        (rss_after as f64 - rss_before as f64) / 1024.0 / patches.len() as f64,
        (size_after as f64 - size_before as f64) / 1024.0 / patches.len() as f64,
        patch_bytes as f64 / 1e6 / patches.len() as f64,
    );
    assert_eq!(failed, 0);
    drop(host);

    // 20,000 cycles of loading one patch and rolling it back, in a row: resident memory stays
    // flat once warm (the runtime keeps the last `dsu::HISTORY_KEPT` updates, maps one library
    // per distinct patch, and frees what each cycle makes).
    let mut host = Host::start(&binary);
    let mut cycles = 0;
    let mut rss_warm = 0;
    while cycles < 20_000 {
        let reply = host.send(&format!("cycle 1000 {patch}"));
        assert!(!reply.starts_with("refused"), "{reply}");
        cycles += 1000;
        if cycles == 2000 {
            rss_warm = memory_kib(&mut host, "VmRSS");
        }
    }
    let rss_end = memory_kib(&mut host, "VmRSS");
    println!(
        "reload_soak: {cycles} load+rollback cycles of one patch; RSS after 2,000 cycles \
         {rss_warm} KiB, after {cycles} {rss_end} KiB ({:.1} bytes per cycle after warm-up)",
        (rss_end as f64 - rss_warm as f64) * 1024.0 / (cycles - 2000) as f64,
    );
}

criterion_group!(benches, updates);
criterion_main!(benches);
