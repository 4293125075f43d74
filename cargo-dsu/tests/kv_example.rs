//! The kv example (`examples/kv`, its own workspace outside this one): its own tests pass, and
//! its release history, made into a git repository as `KV.md`'s recipe says, patches live: every
//! consecutive pair gives a patch, and each applies to one running server in turn (the release
//! marked `rollback: yes` is rolled back and applied again), with the keys written before kept.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn example() -> PathBuf {
    workspace_root().join("examples/kv")
}

/// Where these tests build: apart from the other end-to-end tests, whose fixture `kv` has a
/// binary of the same name.
fn target() -> PathBuf {
    shared_target_dir().join("kv-example")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_example_s_own_tests_pass() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = example().join("Cargo.toml");
    // `--locked`: the committed lock file must be current (relock.sh regenerates it when the
    // runtime's dependencies change).
    let out = Command::new(cargo)
        .args(["test", "--locked", "--manifest-path", manifest.to_str().unwrap(), "--target-dir"])
        .arg(target().join("tests"))
        .output()
        .expect("running cargo test");
    assert_success(&out, "cargo test --manifest-path examples/kv/Cargo.toml");
    let passed: usize = stderr(&out)
        .lines()
        .chain(String::from_utf8_lossy(&out.stdout).lines())
        .filter_map(|l| l.strip_prefix("test result: ok. "))
        .filter_map(|l| l.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(passed >= 20, "{passed} tests passed:\n{}", String::from_utf8_lossy(&out.stdout));
}

/// One release of the example: its tag and what its `RELEASE` file says.
struct Release {
    tag: String,
    rollback: bool,
}

/// Every file of `dir`, by path relative to it, but `releases/` and `target/`.
fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if rel == Path::new("releases") || rel == Path::new("target") {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The example's release history as a git repository at `dir`, by `KV.md`'s recipe: the example
/// minus `releases/` and `target/`, its runtime path made absolute, committed and tagged `r1`;
/// then each overlay of `releases/NN-slug/` in order (its files written over, its `DELETE` paths
/// removed), committed with its `message:` and tagged `rNN` without the leading zero. Checked
/// out at `r1`.
fn release_repo(dir: &Path) -> Vec<Release> {
    init_repo(dir);
    let mut files = files_of(&example());
    let manifest = String::from_utf8(files[Path::new("Cargo.toml")].clone()).unwrap();
    let runtime = format!("path = \"{}\"", workspace_root().join("runtime").display());
    assert!(manifest.contains("path = \"../../runtime\""), "the runtime's path, once, in {manifest}");
    files.insert("Cargo.toml".into(), manifest.replace("path = \"../../runtime\"", &runtime).into_bytes());
    files.insert(".gitignore".into(), b"/target\n".to_vec());
    sync_tree(dir, &files);
    commit_as(dir, "r1", "r1");
    let mut releases = vec![Release { tag: "r1".into(), rollback: false }];
    let mut overlays: Vec<PathBuf> =
        std::fs::read_dir(example().join("releases")).unwrap().map(|e| e.unwrap().path()).collect();
    overlays.sort();
    for overlay in overlays {
        let name = overlay.file_name().unwrap().to_str().unwrap().to_string();
        let n: u32 = name.split('-').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{name}"));
        let mut message = None;
        let mut rollback = false;
        for (rel, content) in files_of(&overlay) {
            match rel.to_str().unwrap() {
                "RELEASE" => {
                    for line in String::from_utf8(content).unwrap().lines() {
                        match line.split_once(": ") {
                            Some(("message", m)) => message = Some(m.to_string()),
                            Some(("rollback", v)) => rollback = v == "yes",
                            _ => panic!("{name}/RELEASE: {line:?}"),
                        }
                    }
                }
                "DELETE" => {
                    for path in String::from_utf8(content).unwrap().lines().filter(|l| !l.is_empty()) {
                        assert!(files.remove(Path::new(path)).is_some(), "{name} deletes {path}, not there");
                    }
                }
                _ => {
                    files.insert(rel, content);
                }
            }
        }
        let tag = format!("r{n}");
        assert_eq!(tag, format!("r{}", releases.len() + 1), "releases numbered in order");
        sync_tree(dir, &files);
        commit_as(dir, &message.unwrap_or_else(|| panic!("{name}: no message")), &tag);
        releases.push(Release { tag, rollback });
    }
    git(dir, &["checkout", "-q", "r1"]);
    releases
}

fn commit_as(dir: &Path, message: &str, tag: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["tag", tag]);
}

/// One RESP2 request and its reply, as text: `+OK`, `-ERR …`, `:1`, the bytes of a bulk string,
/// `(nil)`; arrays are not read.
fn request(conn: &mut BufReader<TcpStream>, args: &[&str]) -> String {
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    conn.get_mut().write_all(out.as_bytes()).unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).unwrap();
    let line = line.trim_end().to_string();
    match line.strip_prefix('$') {
        Some("-1") => "(nil)".into(),
        Some(len) => {
            let mut body = vec![0; len.parse::<usize>().unwrap() + 2];
            conn.read_exact(&mut body).unwrap();
            body.truncate(body.len() - 2);
            String::from_utf8(body).unwrap()
        }
        None => line,
    }
}

/// The `kv_release:` line of `INFO`.
fn release_of(conn: &mut BufReader<TcpStream>) -> String {
    let info = request(conn, &["INFO"]);
    let line = info.lines().find_map(|l| l.strip_prefix("kv_release:")).unwrap_or_else(|| panic!("{info}"));
    line.to_string()
}

fn control(socket: &Path, args: &[&str]) -> Output {
    Command::new(cargo_dsu())
        .arg("dsu")
        .args(args)
        .args(["--socket", socket.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn every_release_patches_live() {
    let target = target();
    let dir = target.join("scratch").join("repo");
    let releases = release_repo(&dir);
    assert!(releases.len() >= 9, "{} releases", releases.len());
    assert_eq!(releases.iter().filter(|r| r.rollback).count(), 1, "one release to roll back");
    let repo = build_repo(dir, target);

    let mut patches = Vec::new();
    for pair in releases.windows(2) {
        let range = format!("{}..{}", pair[0].tag, pair[1].tag);
        let out = dsu(&repo.dir, &repo.target, &["patch", &range]);
        assert_success(&out, &format!("cargo dsu patch {range}"));
        patches.push(String::from_utf8(out.stdout).unwrap().trim().to_string());
    }

    let socket = repo.target.join("scratch").join("control.sock");
    let _ = std::fs::remove_file(&socket);
    let mut server =
        Host::start_with_args(&repo.binary, &["--bind", "127.0.0.1:0", "--control", socket.to_str().unwrap()]);
    let banner = server.read_line();
    let addr = banner.strip_prefix("listening on ").unwrap_or_else(|| panic!("{banner:?}"));
    let mut conn = BufReader::new(TcpStream::connect(addr).unwrap());
    for i in 0..200 {
        assert_eq!(request(&mut conn, &["SET", &format!("key:{i}"), &format!("value:{i}")]), "+OK");
    }
    assert_eq!(request(&mut conn, &["SET", "later", "v", "EX", "1000"]), "+OK");
    assert_eq!(request(&mut conn, &["INCR", "counter"]), ":1");
    assert_eq!(release_of(&mut conn), "r1");

    let kept = |conn: &mut BufReader<TcpStream>, at: &str| {
        assert_eq!(request(conn, &["DBSIZE"]), ":202", "at {at}");
        for i in [0, 57, 199] {
            assert_eq!(request(conn, &["GET", &format!("key:{i}")]), format!("value:{i}"), "at {at}");
        }
        let ttl: i64 = request(conn, &["TTL", "later"]).trim_start_matches(':').parse().unwrap();
        assert!((990..=1000).contains(&ttl), "TTL {ttl} at {at}");
    };
    for (release, patch) in releases[1..].iter().zip(&patches) {
        let out = control(&socket, &["load", patch]);
        assert_success(&out, &format!("cargo dsu load (to {})", release.tag));
        assert_eq!(release_of(&mut conn), release.tag, "the connection open since r1 is answered by the new code");
        kept(&mut conn, &release.tag);
        if release.rollback {
            let out = control(&socket, &["rollback"]);
            assert_success(&out, &format!("cargo dsu rollback (of {})", release.tag));
            let before = &releases[releases.iter().position(|r| r.tag == release.tag).unwrap() - 1].tag;
            assert_eq!(release_of(&mut conn), *before);
            let out = control(&socket, &["load", patch]);
            assert_success(&out, &format!("cargo dsu load (of {} again)", release.tag));
            assert_eq!(release_of(&mut conn), release.tag);
        }
    }
    // A counter written at r1 counts on at the last release.
    assert_eq!(request(&mut conn, &["INCR", "counter"]), ":2");
    let status = control(&socket, &["status"]);
    assert_success(&status, "cargo dsu status");
    let line = String::from_utf8(status.stdout).unwrap();
    // Every patch, the rollback and the rolled-back patch again.
    assert!(line.contains(&format!("applied={}", patches.len() + 2)), "{line}");
    let last =
        Command::new("git").args(["rev-parse", &releases.last().unwrap().tag]).current_dir(&repo.dir).output().unwrap();
    let last = String::from_utf8(last.stdout).unwrap();
    assert!(line.starts_with(&format!("revision={} ", last.trim())), "{line}");
    drop(server);
}
