//! Field cells end to end: a tokio key-value server keeps its state in an `Arc<Shared>` cloned
//! into every connection task, its store in a field cell (`dsu::Cell<Mutex<State>>`) of entries
//! with expirations and a `BTreeSet` expiration index. A release changes both the entry type and
//! the index type, with a transformer; the patch is applied live while clients keep the server
//! busy. Expected: no failed request, and every key with its expiry afterwards.

mod common;

use common::*;

/// Keys set before the update, each with a one-hour TTL.
const KEYS: usize = 1000;

#[test]
fn a_field_cell_shared_by_every_task_changes_type_under_load() {
    let Built { binary, patch, report } = built_with_patch("cells", "cells-server");
    assert!(report.contains("field cells `dsu::Cell<Mutex<State>>`"), "{report}");

    let mut host = Host::start(&binary);
    let port: u16 = host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port");

    // Keys set under version 1, and the expiry the server gave each.
    let mut conn = connect(port);
    let expiries: Vec<u64> = (0..KEYS)
        .map(|i| {
            let reply = ask(&mut conn, &format!("set k{i} value-{i} 3600000")).unwrap();
            reply.strip_prefix("ok ").and_then(|at| at.parse().ok()).unwrap_or_else(|| panic!("set k{i}: {reply}"))
        })
        .collect();
    assert_eq!(ask(&mut conn, "count").unwrap(), format!("entries={KEYS} index={KEYS}"));

    // Clients keep the server busy across the update: each sets and reads keys of its own,
    // answered by whichever version runs.
    let load = Load::start(port, 4, |conn, c, i| {
        let key = format!("c{c}-{}", i % 64);
        let value = format!("x{i}");
        let set = ask(conn, &format!("set {key} {value} 3600000"))?;
        let at = set.strip_prefix("ok ").ok_or_else(|| format!("set {key}: {set:?}"))?;
        match ask(conn, &format!("get {key}"))? {
            r if r == format!("v1 {value} expires={at}") => Ok(()),
            r if r.starts_with(&format!("v2 {value} expires={at} reads=")) => Ok(()),
            r => Err(format!("get {key}: {r:?}")),
        }
    });
    load.wait_for_more(500);
    let applied = host.send(&format!("load {patch}"));
    assert!(applied.starts_with("applied ") && applied.contains("field_cells=Mutex<State>"), "{applied}");
    load.wait_for_more(500);
    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(ok > 1000, "the clients kept the server busy: {ok}");

    // Every key set before the update is there, with its value and expiry, now in version 2's
    // types: the first read counts itself, and the index holds one record per entry.
    let mut conn = connect(port);
    for (i, at) in expiries.iter().enumerate() {
        assert_eq!(ask(&mut conn, &format!("get k{i}")).unwrap(), format!("v2 value-{i} expires={at} reads=1"));
        assert_eq!(ask(&mut conn, &format!("ttl k{i}")).unwrap(), at.to_string());
    }
    // The clients' keys too (each client cycles through 64 of its own).
    let count = ask(&mut conn, "count").unwrap();
    let entries: usize = count
        .strip_prefix("entries=")
        .and_then(|c| c.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("count: {count}"));
    assert!((KEYS..=KEYS + 4 * 64).contains(&entries), "{count}");
    assert_eq!(count, format!("entries={entries} index={entries}"), "one index record per entry");
    // New code keeps the index: a key set again replaces its one index record.
    ask(&mut conn, "set k0 again 3600000").unwrap();
    assert_eq!(ask(&mut conn, "count").unwrap(), format!("entries={entries} index={entries}"));
}
