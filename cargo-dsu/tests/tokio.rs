//! Async end to end: a tokio server whose handler is an updateable `async fn` is patched under
//! load. A slow request already in flight finishes on the code it started with; new requests get
//! the new code, which spawns, sleeps and uses a channel on the host's runtime.

mod common;

use common::*;
use std::io::{BufRead, Write};

#[test]
fn tokio_server_patched_under_load_with_a_slow_request_in_flight() {
    let Built { binary, patch, .. } = built_with_patch("tokio", "tokio-server");

    let mut host = Host::start(&binary);
    let port: u16 = host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port");

    let load = Load::start(port, 4, |conn, c, i| {
        let line = format!("c{c}-{i}");
        match ask(conn, &line)? {
            r if r == format!("v1 {line}") || r == format!("v2 {line}") => Ok(()),
            r => Err(format!("{line}: {r:?}")),
        }
    });

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

    // Load after the update too, not only a few requests that happened to fit in.
    load.wait_for_more(50);
    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 50, "the clients kept the server busy");
}
