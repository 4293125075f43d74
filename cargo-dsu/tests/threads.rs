//! Threads end to end: a server with eight worker threads, some blocked in `accept`, some in
//! reads, is patched through a chain of five revisions, rolled back through its control socket
//! (`cargo dsu rollback`), and refused an update it cannot reach quiescence for, all under
//! continuous load from clients that count every failed request. Then a build that trusts a
//! signing key (`cargo dsu keygen`, `build --trust`) refuses an unsigned patch through its control
//! socket and applies it once signed (`cargo dsu sign`), and one made with `patch --sign`.

mod common;

use common::*;
use std::path::PathBuf;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

fn repo() -> Repo {
    let target = shared_target_dir();
    let dir = target.join("scratch-threads").join("repo");
    init_repo(&dir);
    // Release `n` answers `v{n} <line>`.
    for n in 1..=6 {
        write_server_release(&dir, n);
        commit_all(&dir, &format!("v{n}"));
    }
    git(&dir, &["checkout", "-q", "v1"]);
    build_repo(dir, target)
}

fn patch(r: &Repo, range: &str) -> String {
    let out = dsu(&r.dir, &r.target, &["patch", range]);
    assert_success(&out, &format!("cargo dsu patch {range}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn rev(r: &Repo, tag: &str) -> String {
    let out = Command::new("git").args(["rev-parse", tag]).current_dir(&r.dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    /// Versions seen, in the order one persistent connection saw them.
    versions: Mutex<Vec<Vec<u32>>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap();
        if e.len() < 10 {
            e.push(why);
        }
    }
}

/// Sends `line` on `conn` and returns the version that answered.
fn ask(conn: &mut BufReader<TcpStream>, line: &str) -> Result<u32, String> {
    conn.get_mut().write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    conn.read_line(&mut reply).map_err(|e| e.to_string())?;
    let reply = reply.trim_end();
    let (v, rest) = reply.split_once(' ').ok_or_else(|| format!("bad reply {reply:?}"))?;
    if rest != line {
        return Err(format!("reply {reply:?} to {line:?}"));
    }
    v.strip_prefix('v').and_then(|n| n.parse().ok()).ok_or_else(|| format!("bad version in {reply:?}"))
}

fn connect(port: u16) -> BufReader<TcpStream> {
    BufReader::new(TcpStream::connect(("127.0.0.1", port)).expect("connect"))
}

/// One request on a fresh connection: what a new client gets now.
fn fresh(port: u16) -> u32 {
    ask(&mut connect(port), "probe").expect("probe request")
}

/// The "update applied" events the host has seen, once there are `n`: the last thread to resume
/// after an update emits its event, possibly just after the command that applied it answered.
fn wait_for_events(host: &mut Host, n: u64) -> String {
    loop {
        let events = host.send("events");
        let count: u64 = events.split(' ').next().unwrap().parse().unwrap();
        assert!(count <= n, "more events than updates: {events}");
        if count == n {
            return events;
        }
        std::thread::yield_now();
    }
}

#[test]
fn eight_workers_patched_under_load_through_a_chain_rollback_and_timeout() {
    let r = repo();
    let socket = r.dir.parent().unwrap().join("control.sock");
    let mut host = Host::start_with_args(&r.binary, &[socket.to_str().unwrap()]);
    let banner = host.read_line();
    let port: u16 = banner.strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port banner");

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    // Four persistent connections hold four workers in reads; two clients connect per request,
    // so the other workers cycle through `accept`.
    for c in 0..6 {
        let (stop, tally) = (stop.clone(), tally.clone());
        clients.push(std::thread::spawn(move || {
            let persistent = c < 4;
            let mut conn = connect(port);
            let mut seen = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if !persistent {
                    conn = connect(port);
                }
                match ask(&mut conn, &format!("c{c}-{i}")) {
                    Ok(v) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                        if persistent && seen.last() != Some(&v) {
                            seen.push(v);
                        }
                    }
                    Err(e) => {
                        tally.fail(format!("client {c} request {i}: {e}"));
                        conn = connect(port);
                    }
                }
                i += 1;
            }
            if persistent {
                tally.versions.lock().unwrap().push(seen);
            }
        }));
    }

    assert_eq!(fresh(port), 1);
    // A chain of five patches, each built from consecutive revisions.
    let mut patches = Vec::new();
    for n in 1..=5 {
        let p = patch(&r, &format!("v{n}..v{}", n + 1));
        assert_eq!(host.send(&format!("load {p}")), format!("applied {}", rev(&r, &format!("v{}", n + 1))));
        assert_eq!(fresh(port), n + 1, "new requests get the new code after patch {n}");
        patches.push(p);
    }
    let status = host.send("status");
    assert!(status.starts_with(&format!("revision={} applied=5 ", rev(&r, "v6"))), "{status}");
    // Eight workers, the main thread and the control socket's thread take part in the protocol.
    assert!(status.contains(" threads=10 "), "{status}");
    // Every update was reported as a tracing event with its pause, once all threads resumed.
    let events = wait_for_events(&mut host, 5);
    let pause: u64 = events.split_once("pause_us=").unwrap().1.parse().unwrap();
    assert!(pause > 0, "{events}");

    // The operator asks through the control socket: status, a patch for another version
    // (refused by the program, which keeps serving), and a rollback of code.
    let control = |args: &[&str]| {
        Command::new(cargo_dsu())
            .arg("dsu")
            .args(args)
            .arg("--socket")
            .arg(&socket)
            .output()
            .expect("running cargo-dsu")
    };
    let out = control(&["status"]);
    assert_success(&out, "cargo dsu status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("revision={} applied=5 pending=0 threads=10 ", rev(&r, "v6"))), "{stdout}");
    let out = control(&["load", &patches[0]]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("the running program refused") && stderr.contains("is already applied"), "{stderr}");
    assert_eq!(fresh(port), 6);
    let out = control(&["rollback"]);
    assert_success(&out, "cargo dsu rollback");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("rolled back to {}", rev(&r, "v5")));
    assert_eq!(fresh(port), 5);
    let out = Command::new(cargo_dsu())
        .args(["dsu", "status", "--socket", "/nonexistent/dsu.sock"])
        .output()
        .expect("running cargo-dsu");
    assert_eq!(out.status.code(), Some(9), "{out:?}");

    // A registered thread that never reaches an update point: the update is abandoned at the
    // timeout, the refusal names the thread, and the old version keeps serving.
    assert_eq!(host.send("timeout 300"), "ok");
    assert_eq!(host.send("busy"), "ok");
    let refused = host.send(&format!("load {}", patches[4]));
    assert!(refused.starts_with("refused update abandoned"), "{refused}");
    assert!(refused.contains("busy"), "the refusal names the thread: {refused}");
    assert_eq!(fresh(port), 5);
    assert_eq!(host.send("release"), "ok");
    let out = control(&["load", &patches[4]]);
    assert_success(&out, "cargo dsu load");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("applied {}", rev(&r, "v6")));
    assert_eq!(fresh(port), 6);

    // Two rollbacks in a row go back two versions; the same patches then apply again.
    assert_eq!(host.send("rollback"), format!("rolled back to {}", rev(&r, "v5")));
    assert_eq!(host.send("rollback"), format!("rolled back to {}", rev(&r, "v4")));
    assert_eq!(fresh(port), 4);
    // Each is copied over the same file first, as an operator reusing one path would: every
    // load maps the bytes it verified, never the dynamic loader's cached earlier library.
    let reused = r.dir.parent().unwrap().join("reused-path.so");
    for (n, p) in [(5, &patches[3]), (6, &patches[4])] {
        std::fs::copy(p, &reused).unwrap();
        assert_eq!(host.send(&format!("load {}", reused.display())), format!("applied {}", rev(&r, &format!("v{n}"))));
        assert_eq!(fresh(port), n);
    }

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let errors = tally.errors.lock().unwrap().clone();
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "failed requests: {errors:?}");
    assert!(tally.ok.load(Ordering::Relaxed) > 100, "the clients kept the server busy");
    for seen in tally.versions.lock().unwrap().iter() {
        assert_eq!(seen.first(), Some(&1), "{seen:?}");
        assert_eq!(seen.last(), Some(&6), "a persistent connection moved to each new version: {seen:?}");
    }
    let served: u64 = host.send("served").parse().unwrap();
    assert!(served >= tally.ok.load(Ordering::Relaxed), "the state cell counted across every version");

    // A direct patch v1..v4 takes a fresh v1 process to v4 in one update; the running v6
    // process refuses it (it was made for v1).
    let direct = patch(&r, "v1..v4");
    assert!(host.send(&format!("load {direct}")).starts_with("refused patch"));
    let mut fresh_host = Host::start(&r.binary);
    let fresh_port: u16 =
        fresh_host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port banner");
    assert_eq!(fresh(fresh_port), 1);
    assert_eq!(fresh_host.send(&format!("load {direct}")), format!("applied {}", rev(&r, "v4")));
    assert_eq!(fresh(fresh_port), 4);
    drop(fresh_host);

    // Signed patches, through the command line as an operator runs it: a key pair, a build that
    // trusts it, an unsigned patch refused by the program, the same patch signed and applied.
    let keys = r.dir.parent().unwrap().join("keys");
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let cli = |args: &[&std::ffi::OsStr]| Command::new(cargo_dsu()).arg("dsu").args(args).current_dir(&r.dir).output().unwrap();
    let release = keys.join("release");
    let out = cli(&["keygen".as_ref(), release.as_os_str()]);
    assert_success(&out, "cargo dsu keygen");
    let key_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let public = keys.join("release.pub");
    let out = dsu(&r.dir, &r.target, &["build", "--trust", public.to_str().unwrap()]);
    assert_success(&out, "cargo dsu build --trust");
    let trusting = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let socket = r.dir.parent().unwrap().join("trusting.sock");
    let mut trusting_host = Host::start_with_args(&trusting, &[socket.to_str().unwrap()]);
    let port: u16 = trusting_host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port banner");
    let status = cli(&["status".as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert_success(&status, "cargo dsu status");
    let status = String::from_utf8(status.stdout).unwrap();
    assert!(status.contains(&format!(" signatures=required trusted_keys={key_id} ")), "{status}");
    let unsigned = patch(&r, "v1..v2");
    let out = cli(&["load".as_ref(), unsigned.as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not signed"), "{out:?}");
    assert_eq!(fresh(port), 1);
    let out = cli(&["sign".as_ref(), unsigned.as_ref(), "--key".as_ref(), keys.join("release.key").as_os_str()]);
    assert_success(&out, "cargo dsu sign");
    let out = cli(&["load".as_ref(), unsigned.as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert_success(&out, "cargo dsu load (signed)");
    assert_eq!(fresh(port), 2);
    let key = keys.join("release.key");
    let out = dsu(&r.dir, &r.target, &["patch", "v2..v3", "--sign", key.to_str().unwrap()]);
    assert_success(&out, "cargo dsu patch --sign");
    let signed = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = cli(&["load".as_ref(), signed.as_ref(), "--socket".as_ref(), socket.as_os_str()]);
    assert_success(&out, "cargo dsu load (signed by patch --sign)");
    assert_eq!(fresh(port), 3);
    drop(trusting_host);
}
