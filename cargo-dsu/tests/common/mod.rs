//! Helpers shared by the end-to-end tests: scratch packages made from fixtures, one shared target
//! directory, and a host program driven line by line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

/// `len` bytes of a xorshift sequence from `seed`: the same on every run.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One target directory for every end-to-end test, so the dependency library and every
/// third-party crate are built once.
pub fn shared_target_dir() -> PathBuf {
    std::env::var_os("DSU_E2E_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target").join("dsu-e2e"))
}

/// The directory of the tree fixture `name`: a directory of `tests/fixtures`, or, given as an
/// absolute path, one kept elsewhere (the demo's server, `examples/demo-server`).
pub fn fixture(name: impl AsRef<Path>) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn write_if_changed(path: &Path, content: &[u8]) {
    if std::fs::read(path).ok().as_deref() != Some(content) {
        std::fs::write(path, content).unwrap();
    }
}

/// Runs git in `dir`, failing the test if it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A fresh repository at `dir` (a fixed path, so builds of the program stay incremental between
/// runs), ignoring `/target`.
pub fn init_repo(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.join(".git"));
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["config", "user.email", "test@dsu.invalid"]);
    git(dir, &["config", "user.name", "dsu tests"]);
    std::fs::write(dir.join(".gitignore"), "/target\n").unwrap();
}

pub fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `cargo-dsu` executable of this build.
pub fn cargo_dsu() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-dsu"))
}

/// Runs `cargo dsu ARGS --target-dir TARGET` in `dir`.
pub fn dsu(dir: &Path, target: &Path, args: &[&str]) -> std::process::Output {
    Command::new(cargo_dsu())
        .arg("dsu")
        .args(args)
        .args(["--target-dir", target.to_str().unwrap()])
        .current_dir(dir)
        .output()
        .expect("running cargo-dsu")
}

/// A scratch git repository of a tree fixture, with the program built at its first tag.
pub struct Repo {
    pub dir: PathBuf,
    pub target: PathBuf,
    pub binary: PathBuf,
}

/// Makes `<shared target>/scratch-<name>/repo` (a fixed path, so the program's build stays
/// incremental between runs) from the tree fixture `fixture`: each `(version, tag)` of `chain`
/// committed on the one before, then each of `side` committed on the first tag; then checks out
/// the first tag and runs `cargo dsu build` there.
pub fn scratch_repo(name: &str, fixture: &str, chain: &[(&str, &str)], side: &[(&str, &str)]) -> Repo {
    let target = shared_target_dir();
    let dir = target.join(format!("scratch-{name}")).join("repo");
    init_repo(&dir);
    for (version, tag) in chain {
        commit_tree(&dir, fixture, version, tag);
    }
    let first = chain[0].1;
    for (version, tag) in side {
        git(&dir, &["checkout", "-q", first]);
        commit_tree(&dir, fixture, version, tag);
    }
    git(&dir, &["checkout", "-q", first]);
    build_repo(dir, target)
}

/// Runs `cargo dsu build` in `dir`, a scratch repository checked out at the revision to build.
pub fn build_repo(dir: PathBuf, target: PathBuf) -> Repo {
    let out = dsu(&dir, &target, &["build"]);
    assert_success(&out, "cargo dsu build");
    let binary = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(binary.starts_with(target.join("dsu/debug")), "{}", binary.display());
    Repo { dir, target, binary }
}

/// A running host program, driven one line at a time.
pub struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Host {
    /// The process id of the running program.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts `binary` directly: no cargo, no LD_LIBRARY_PATH.
    pub fn start(binary: &Path) -> Host {
        Host::start_with_args(binary, &[])
    }

    /// Starts `binary` with `args`.
    pub fn start_with_args(binary: &Path, args: &[&str]) -> Host {
        let mut child = Command::new(binary)
            .args(args)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Host { child, stdin, lines }
    }

    /// The next line the host prints unasked (a banner).
    pub fn read_line(&mut self) -> String {
        // A bound on a hung host: the banner comes at start-up.
        self.lines.recv_timeout(Duration::from_secs(120)).expect("a line from the host")
    }

    /// Sends one command and returns its one-line response.
    pub fn send(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("host stdin");
        self.stdin.flush().unwrap();
        // A bound on a hung host, not a wait for anything: every command answers at once.
        match self.lines.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => line,
            Err(e) => {
                let status = self.child.try_wait();
                panic!("host gave no answer to {command:?} ({e}); exit status: {status:?}")
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files of version `version` of the tree fixture `name` (see [`fixture`]): its `base/`,
/// which holds the whole package (its `Cargo.lock` included), overlaid with `<version>/`, which
/// holds only the files that version changes, whole. A version's `.parent` file names the version
/// it builds on (itself overlaid on the base). `@DSU_RUNTIME@` in any `Cargo.toml` becomes the
/// runtime's path.
///
/// A fixture's `Cargo.lock` pins its dependencies, the dsu runtime's included: when the runtime's
/// dependencies change, regenerate it (`cargo generate-lockfile` in a copy with the runtime path
/// filled in), or cargo rewrites it in the scratch repositories and their work trees turn dirty.
pub fn tree_files(name: impl AsRef<Path>, version: &str) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let root = fixture(name);
    let mut chain = vec![version.to_string()];
    while let Ok(parent) = std::fs::read_to_string(root.join(chain.last().unwrap()).join(".parent")) {
        chain.push(parent.trim().to_string());
    }
    let mut files = std::collections::BTreeMap::new();
    for layer in std::iter::once("base".to_string()).chain(chain.into_iter().rev().filter(|v| v != "base")) {
        let dir = root.join(&layer);
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().unwrap() != ".parent" {
                    let rel = path.strip_prefix(&dir).unwrap().to_path_buf();
                    let mut content = std::fs::read(&path).unwrap();
                    if rel.file_name().unwrap() == "Cargo.toml" {
                        content = String::from_utf8(content)
                            .unwrap()
                            .replace("@DSU_RUNTIME@", workspace_root().join("runtime").to_str().unwrap())
                            .into_bytes();
                    }
                    files.insert(rel, content);
                }
            }
        }
    }
    files
}

/// Makes `dir` hold version `version` of the tree fixture `name` (see [`tree_files`]): files
/// are rewritten only when they differ, so builds stay incremental, and files of other versions
/// are removed (`.git`, `.gitignore` and `target` are left alone).
pub fn write_tree(dir: &Path, name: impl AsRef<Path>, version: &str) {
    write_tree_with(dir, name, version, &[]);
}

/// As [`write_tree`], with each `(from, to)` of `replace` replaced in every text file: a fixture
/// file may be a template (the `server` fixture's `src/release.rs`), or a test vary one line.
pub fn write_tree_with(dir: &Path, name: impl AsRef<Path>, version: &str, replace: &[(&str, &str)]) {
    let mut files = tree_files(name, version);
    for content in files.values_mut() {
        if let Ok(text) = std::str::from_utf8(content) {
            let text = replace.iter().fold(text.to_string(), |t, (from, to)| t.replace(from, to));
            *content = text.into_bytes();
        }
    }
    sync_tree(dir, &files);
}

/// Makes `dir` hold `files` (by path relative to it): files are rewritten only when they differ,
/// so builds stay incremental, and other files are removed (`.git`, `.gitignore` and `target`
/// are left alone).
pub fn sync_tree(dir: &Path, files: &std::collections::BTreeMap<PathBuf, Vec<u8>>) {
    let mut present = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(dir).unwrap().to_path_buf();
            if [".git", ".gitignore", "target"].iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                present.push(rel);
            }
        }
    }
    for rel in present {
        if !files.contains_key(&rel) {
            std::fs::remove_file(dir.join(rel)).unwrap();
        }
    }
    for (rel, content) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write_if_changed(&path, content);
    }
}

/// Commits version `version` of the tree fixture `name` and tags it `tag`.
pub fn commit_tree(dir: &Path, name: impl AsRef<Path>, version: &str, tag: &str) {
    write_tree(dir, name, version);
    commit_all(dir, tag);
}

/// Commits everything in the work tree at `dir` and tags the commit `tag`.
pub fn commit_all(dir: &Path, tag: &str) {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", tag]);
    git(dir, &["tag", tag]);
}

/// A program built from version 1 of a tree fixture, and its patch to version 2.
pub struct Built {
    pub binary: PathBuf,
    /// The patch `v1..v2`'s path.
    pub patch: String,
    /// What `cargo dsu patch` reported (its standard error).
    pub report: String,
}

/// Commits the tree fixture `fixture`'s `base` and `v2` as the tags `v1` and `v2` in the scratch
/// repository `scratch-<name>` of the shared target directory, builds `v1` with `cargo dsu
/// build` and the patch `v1..v2` with `cargo dsu patch`.
pub fn built_with_patch(name: &str, fixture: &str) -> Built {
    let target = shared_target_dir();
    let dir = target.join(format!("scratch-{name}")).join("repo");
    init_repo(&dir);
    commit_tree(&dir, fixture, "base", "v1");
    commit_tree(&dir, fixture, "v2", "v2");
    git(&dir, &["checkout", "-q", "v1"]);
    let out = dsu(&dir, &target, &["build"]);
    assert_success(&out, "cargo dsu build");
    let binary = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let out = dsu(&dir, &target, &["patch", "v1..v2"]);
    assert_success(&out, "cargo dsu patch v1..v2");
    Built {
        binary,
        patch: String::from_utf8(out.stdout).unwrap().trim().to_string(),
        report: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes release `n` of the `server` fixture into `dir`: its `src/release.rs` is a template of
/// what changes from release to release.
pub fn write_server_release(dir: &Path, n: u32) {
    write_tree_with(dir, "server", "base", &[("@N@", &n.to_string())]);
}

/// Sends one request line on a line-protocol connection and reads its one-line reply.
pub fn ask(conn: &mut BufReader<std::net::TcpStream>, line: &str) -> Result<String, String> {
    conn.get_mut().write_all(format!("{line}\n").as_bytes()).map_err(|e| e.to_string())?;
    let mut reply = String::new();
    conn.read_line(&mut reply).map_err(|e| e.to_string())?;
    if reply.is_empty() {
        return Err("connection closed".into());
    }
    Ok(reply.trim_end().to_string())
}

/// A connection to a server on this machine's loopback.
pub fn connect(port: u16) -> BufReader<std::net::TcpStream> {
    BufReader::new(std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"))
}

/// Clients that keep a line-protocol server on this machine's loopback busy until stopped, each
/// on a connection of its own.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok: std::sync::Arc<std::sync::atomic::AtomicU64>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

/// One request of client `c`, its `i`th: `Ok` when the server answered as it should, `Err` with
/// what went wrong otherwise (the client then reconnects).
pub type Request = fn(&mut BufReader<std::net::TcpStream>, usize, u64) -> Result<(), String>;

impl Load {
    pub fn start(port: u16, clients: usize, request: Request) -> Load {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let clients = (0..clients)
            .map(|c| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let mut conn = connect(port);
                    let mut i = 0u64;
                    // Bounded: a test that forgets to stop its load still ends.
                    while !stop.load(Ordering::Relaxed) && i < 10_000_000 {
                        match request(&mut conn, c, i) {
                            Ok(()) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                failures.lock().unwrap().push(format!("client {c}, request {i}: {e}"));
                                conn = connect(port);
                            }
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        Load { stop, ok, failures, clients }
    }

    /// Requests answered as they should so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until `n` more requests were answered (or one failed).
    pub fn wait_for_more(&self, n: u64) {
        let target = self.ok() + n;
        while self.ok() < target && self.failures.lock().unwrap().is_empty() {
            std::thread::yield_now();
        }
    }

    /// Stops the clients; the requests answered and the failures.
    pub fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let ok = self.ok.clone();
        for c in self.clients {
            c.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (ok.load(std::sync::atomic::Ordering::Relaxed), failures)
    }
}
