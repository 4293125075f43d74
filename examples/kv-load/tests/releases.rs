//! The kv example (`examples/kv`, its own workspace outside this one): its own tests pass, and
//! its whole release history patches live: every consecutive pair gives a patch, and each is
//! loaded in turn into one running server (the release marked `rollback: yes` is rolled back and
//! applied again), with the keys, expirations and counters written under r1 kept, and one
//! connection, open since r1, answered by each new release.
//!
//! Its own `main` (harness = false): the test executable is also `cargo dsu` (see
//! `tests/common`), and it shares its repository and target directory with `tests/live.rs`.

mod common;

use kv_load::client::Client;
use kv_load::dsu;
use kv_load::resp::Reply;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

fn main() -> ExitCode {
    common::main(&[
        ("the_example_s_own_tests_pass", the_example_s_own_tests_pass),
        ("every_release_patches_live", every_release_patches_live),
    ])
}

fn the_example_s_own_tests_pass() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = kv_load::repo::kv_source().join("Cargo.toml");
    // `--locked`: the committed lock file must be current (when the runtime's dependencies
    // change, any build of the example without `--locked` updates it, to be committed). A plain
    // build, so its own target directory: the updateable builds' flags differ.
    let out = Command::new(cargo)
        .args(["test", "--locked", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(common::work_dir().join("example-tests"))
        .output()
        .expect("running cargo test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cargo test --manifest-path {} failed ({}):\n{stderr}",
        manifest.display(),
        out.status
    );
    let passed: usize = stderr
        .lines()
        .chain(stdout.lines())
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 20, "{passed} tests passed:\n{stdout}");
}

/// One connection to the server, kept open across every update.
struct Connection {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let client = rt.block_on(Client::connect(addr)).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        Connection { rt, client }
    }

    fn request(&mut self, args: &[&str]) -> Reply {
        self.rt.block_on(self.client.command(args)).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    /// The `kv_release:` line of `INFO`: the release whose code answers.
    fn release(&mut self) -> String {
        let info = match self.request(&["INFO"]) {
            Reply::Bulk(Some(text)) => String::from_utf8(text).unwrap(),
            other => panic!("INFO answered {other}"),
        };
        let line = info.lines().find_map(|l| l.strip_prefix("kv_release:")).unwrap_or_else(|| panic!("{info}"));
        line.trim().to_string()
    }
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

fn bulk(s: &str) -> Reply {
    Reply::Bulk(Some(s.as_bytes().to_vec()))
}

/// The commit `tag` names in `repo`.
fn rev_parse(repo: &Path, tag: &str) -> String {
    let out = Command::new("git").args(["rev-parse", &format!("{tag}^{{commit}}")]).current_dir(repo).output().unwrap();
    assert!(out.status.success(), "git rev-parse {tag}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn every_release_patches_live() {
    let (dir, releases) = common::release_repository();
    assert!(releases.len() >= 9, "{} releases", releases.len());
    assert_eq!(releases.iter().filter(|r| r.rollback).count(), 1, "one release to roll back");
    let cargo_dsu = common::cargo_dsu(&dir);
    // The repository is checked out at r1.
    let binary = cargo_dsu.build().expect("cargo dsu build");
    let patches = common::patches(&cargo_dsu, releases.windows(2).map(|p| (p[0].tag.as_str(), p[1].tag.as_str())));

    let common::Started { mut server, socket, log } = common::start_server(&binary, "releases");
    let mut conn = Connection::open(&server.addr);
    for i in 0..200 {
        assert_eq!(conn.request(&["SET", &format!("key:{i}"), &format!("value:{i}")]), ok());
    }
    assert_eq!(conn.request(&["SET", "later", "v", "EX", "1000"]), ok());
    assert_eq!(conn.request(&["INCR", "counter"]), Reply::Integer(1));
    assert_eq!(conn.release(), "r1");

    let kept = |conn: &mut Connection, at: &str| {
        assert_eq!(conn.request(&["DBSIZE"]), Reply::Integer(202), "at {at}");
        for i in [0, 57, 199] {
            assert_eq!(conn.request(&["GET", &format!("key:{i}")]), bulk(&format!("value:{i}")), "at {at}");
        }
        match conn.request(&["TTL", "later"]) {
            Reply::Integer(ttl) => assert!((990..=1000).contains(&ttl), "TTL {ttl} at {at}"),
            other => panic!("TTL answered {other} at {at}"),
        }
    };
    let load = |patch: &Path, to: &str| {
        let reply = dsu::control(&socket, &format!("load {}", patch.display()))
            .unwrap_or_else(|e| panic!("loading the patch to {to}: {e:#}; server log: {}", log.display()));
        assert_eq!(reply, format!("applied {}", rev_parse(&dir, to)), "loading the patch to {to}");
    };
    for (k, (release, patch)) in releases[1..].iter().zip(&patches).enumerate() {
        load(patch, &release.tag);
        assert_eq!(conn.release(), release.tag, "the connection open since r1 is answered by the new code");
        kept(&mut conn, &release.tag);
        if release.rollback {
            // `releases[k]` is the release before this one.
            let before = &releases[k].tag;
            let reply = dsu::control(&socket, "rollback")
                .unwrap_or_else(|e| panic!("rolling back {}: {e:#}; server log: {}", release.tag, log.display()));
            assert_eq!(reply, format!("rolled back to {}", rev_parse(&dir, before)));
            assert_eq!(conn.release(), *before);
            kept(&mut conn, before);
            load(patch, &release.tag);
            assert_eq!(conn.release(), release.tag);
        }
    }
    // A counter written at r1 counts on at the last release.
    assert_eq!(conn.request(&["INCR", "counter"]), Reply::Integer(2));
    let status = dsu::control(&socket, "status").expect("status");
    // Every patch, the rollback and the rolled-back patch again.
    let applied = status.split_whitespace().find_map(|w| w.strip_prefix("applied="));
    assert_eq!(applied, Some((patches.len() + 2).to_string().as_str()), "{status}");
    // Every patch was signed, and the server only loads signed ones (`common::cargo_dsu`).
    assert!(status.contains(" signatures=required "), "{status}");
    let last = &releases.last().unwrap().tag;
    assert_eq!(dsu::revision(&status), Some(rev_parse(&dir, last).as_str()), "{status}");
    let exit = server.stop(Duration::from_secs(60)).expect("the server stops on SIGTERM");
    assert!(exit.status.success(), "{:?}", exit.status);
}
