//! Changed signatures end to end: a constructor gains a parameter and every caller changes with
//! it, and a function changes its return type under a caller whose text stays. The patch applies
//! under load while a request is inside the old version; that call finishes on the old code, new
//! requests get the new one, and a rollback and a second apply go through. A patch that changes
//! the signature of a function a state cell holds pointers to is refused, naming the cell.

mod common;

use common::*;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::OnceLock;

/// Tags: v1; v2 (the routed signatures); v2-pointer (from v1: `shout`, held in a cell, changes).
fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| scratch_repo("routes", "routes", &[("base", "v1"), ("v2", "v2")], &[("v2-pointer", "v2-pointer")]))
}

/// Either version's answer to a plain request or a `label` one, as long as it is whole.
fn request(conn: &mut BufReader<TcpStream>, c: usize, i: u64) -> Result<(), String> {
    let line = format!("c{c}-{i}");
    let reply = ask(conn, &line)?;
    if reply != format!("v1 {line}") && reply != format!("v2 {line}") {
        return Err(format!("reply {reply:?} to {line:?}"));
    }
    let reply = ask(conn, &format!("label {line}"))?;
    if reply != format!("[v1] {line}") && reply != format!("[v2] {line}") {
        return Err(format!("reply {reply:?} to label {line:?}"));
    }
    Ok(())
}

#[test]
fn changed_constructor_is_routed_under_load_and_an_old_call_in_flight_completes() {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", "v1..v2"]);
    assert_success(&out, "cargo dsu patch v1..v2");
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(report.contains("signature changed: routed (2)"), "{report}");
    assert!(report.contains("routes::replies::Reply::new  (src/replies.rs:"), "{report}");
    assert!(report.contains("carried: calls a function whose signature changed (1)"), "{report}");
    assert!(report.contains("routes::replies::label  (src/replies.rs:"), "{report}");
    let patch = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let mut host = Host::start(&r.binary);
    let port: u16 = host.read_line().strip_prefix("port ").and_then(|p| p.parse().ok()).expect("port banner");
    assert_eq!(ask(&mut connect(port), "one"), Ok("v1 one".to_string()));
    assert_eq!(ask(&mut connect(port), "label one"), Ok("[v1] one".to_string()));

    let load = Load::start(port, 3, request);
    load.wait_for_more(50);

    // A request inside the old `respond`, waiting at the gate (idle) when the update applies.
    assert_eq!(host.send("hold"), "ok");
    let held = std::thread::spawn(move || ask(&mut connect(port), "hold in-flight"));
    assert_eq!(host.send("arrived"), "arrived");
    assert_eq!(
        host.send(&format!("load {patch}")),
        "applied routed=routes::replies::Reply::new,routes::replies::tag carried=routes::replies::label"
    );
    load.wait_for_more(50);
    // New requests get the new code: the new constructor, and `label` carried to the new `tag`.
    assert_eq!(ask(&mut connect(port), "two"), Ok("v2 two".to_string()));
    assert_eq!(ask(&mut connect(port), "label two"), Ok("[v2] two".to_string()));
    // The call in flight finishes on the version it started with: the old `respond` calls the
    // old constructor, which the patch left in its slot.
    assert_eq!(host.send("release"), "ok");
    assert_eq!(held.join().unwrap(), Ok("v1 in-flight".to_string()));

    // Rolled back, and applied again: the routed functions and the carried caller go both ways.
    let v1 = rev(r, "v1");
    assert_eq!(host.send("rollback"), format!("rolled back to {v1}"));
    assert_eq!(ask(&mut connect(port), "three"), Ok("v1 three".to_string()));
    assert_eq!(ask(&mut connect(port), "label three"), Ok("[v1] three".to_string()));
    assert!(host.send(&format!("load {patch}")).starts_with("applied "));
    assert_eq!(ask(&mut connect(port), "four"), Ok("v2 four".to_string()));
    assert_eq!(ask(&mut connect(port), "label four"), Ok("[v2] four".to_string()));

    let (ok, failures) = load.stop();
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(ok >= 100, "{ok} requests");
}

#[test]
fn pointer_to_a_changed_signature_in_a_cell_is_refused_naming_the_cell() {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", "v1..v2-pointer"]);
    assert!(!out.status.success(), "the patch is refused");
    let report = String::from_utf8_lossy(&out.stderr);
    let refusals: Vec<&str> = report.lines().filter(|l| l.starts_with("refused: ")).collect();
    assert_eq!(refusals.len(), 1, "{report}");
    assert!(
        refusals[0].starts_with(
            "refused: src/replies.rs:44: state cell `routes::replies::HANDLERS` holds \
             `dsu::State<Handlers>`: `fn(&str) -> String` (through Handlers.list) can point at \
             `routes::replies::shout` (`fn shout(&str) -> String`), whose signature changed"
        ),
        "{report}"
    );
    assert!(report.contains("signature changed: routed (1)"), "{report}");
}

fn rev(r: &Repo, tag: &str) -> String {
    let out = std::process::Command::new("git").args(["rev-parse", tag]).current_dir(&r.dir).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
