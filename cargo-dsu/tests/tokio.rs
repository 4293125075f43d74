//! Async end to end: a tokio server whose handler is an updateable `async fn` is patched under
//! load. A slow request already in flight finishes on the code it started with; new requests get
//! the new code, which spawns, sleeps and uses a channel on the host's runtime.

mod common;

use common::*;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn tokio_server_patched_under_load_with_a_slow_request_in_flight() {
    let target = shared_target_dir();
    let dir = target.join("scratch-tokio").join("repo");
    init_repo(&dir);
    commit_tree(&dir, "tokio-server", "base", "v1");
    commit_tree(&dir, "tokio-server", "v2", "v2");
    git(&dir, &["checkout", "-q", "v1"]);
    let out = dsu(&dir, &target, &["build"]);
    assert_success(&out, "cargo dsu build");
    let binary = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let out = dsu(&dir, &target, &["patch", "v1..v2"]);
    assert_success(&out, "cargo dsu patch v1..v2");
    let patch = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut host = Host::start(&binary);
    let port: u16 = host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut conn = connect(port);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let line = format!("c{c}-{i}");
                    match ask(&mut conn, &line) {
                        Ok(r) if r == format!("v1 {line}") || r == format!("v2 {line}") => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("{line}: {r:?}")),
                        Err(e) => {
                            failures.lock().unwrap().push(format!("{line}: {e}"));
                            conn = connect(port);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();

    // A slow request starts on v1 and waits inside the handler.
    let mut slow = connect(port);
    slow.get_mut().write_all(b"slow one\n").unwrap();
    while host.send("in-flight") != "1" {
        std::thread::yield_now();
    }

    let applied = host.send(&format!("load {patch}"));
    assert!(applied.starts_with("applied "), "{applied}");
    assert_eq!(ask(&mut connect(port), "after").unwrap(), "v2 after", "new requests get the new code");

    // The request that was in flight finishes on the code it started with.
    assert_eq!(host.send("release"), "ok");
    let mut reply = String::new();
    slow.read_line(&mut reply).unwrap();
    assert_eq!(reply.trim_end(), "v1 slow one");

    // A slow request started now runs the new code, released the same way.
    let mut slow = connect(port);
    slow.get_mut().write_all(b"slow two\n").unwrap();
    while host.send("in-flight") != "1" {
        std::thread::yield_now();
    }
    assert_eq!(host.send("release"), "ok");
    let mut reply = String::new();
    slow.read_line(&mut reply).unwrap();
    assert_eq!(reply.trim_end(), "v2 slow two");

    // Load before and after the update, not only a few requests that happened to fit in.
    while ok.load(Ordering::Relaxed) <= 50 && failures.lock().unwrap().is_empty() {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok.load(Ordering::Relaxed) > 50, "the clients kept the server busy");
}
