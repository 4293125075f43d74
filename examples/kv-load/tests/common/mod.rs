//! What the end-to-end tests of the kv server share: their `main` (each test executable is also
//! `cargo dsu`, as the demo is, so it builds the server and its patches without an installed
//! cargo-dsu), one target directory and one release repository, so the server's dependency
//! library (tokio and the rest) is built once for all of them. Cargo runs test executables one
//! after another, so they never use the repository at the same time; each makes it anew with
//! [`repo::make_repository`] (which keeps the build directory) and checks out what it builds.

use kv_load::dsu;
use kv_load::repo::{self, Release};
use kv_load::server::Server;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The `main` of a test executable: `cargo dsu` when run as that; otherwise runs each test of
/// `tests` in order, accepting libtest's arguments (`--list`, a filter, `--nocapture` ignored).
/// A test fails by panicking, which fails the executable.
pub fn main(tests: &[(&str, fn())]) -> ExitCode {
    if let Some(code) = cargo_dsu::cli::run_if_invoked_as_cargo_dsu() {
        return code;
    }
    if std::env::args().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    for (name, test) in tests {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            println!("test {name} ... filtered out");
            continue;
        }
        println!("test {name} ...");
        test();
        println!("test {name} ... ok");
    }
    ExitCode::SUCCESS
}

/// The target directory the cargo-dsu end-to-end tests share (see cargo-dsu/tests/common), so
/// the runtime and third-party crates are built once for all of them. cargo-dsu's `kv` fixture
/// (tests/layouts.rs) also has a binary `kv-server`: each build copies its own binary and record
/// again, and test executables run one at a time, so each finds its own.
pub fn shared_target_dir() -> PathBuf {
    std::env::var_os("DSU_E2E_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap().join("target/dsu-e2e")
    })
}

/// The tests' own directory under the shared target: the repository, control sockets, logs.
pub fn work_dir() -> PathBuf {
    shared_target_dir().join("scratch-kv-load")
}

/// The server's release history made anew as a git repository at a fixed path (so its build
/// stays incremental between tests and runs), checked out at r1: its directory and releases.
pub fn release_repository() -> (PathBuf, Vec<Release>) {
    let dir = work_dir().join("repo");
    let releases = repo::make_repository(&repo::kv_source(), &dir).expect("the release repository");
    (dir, releases)
}

/// `cargo dsu` (a debug build) in the release repository, with the shared target directory,
/// signed as production runs it: the build trusts a key of the tests' own (made once, kept beside
/// the repository) and every patch is signed with it.
pub fn cargo_dsu(repo: &Path) -> dsu::CargoDsu {
    let keys = work_dir().join("keys").join("release");
    dsu::keygen(&keys).expect("cargo dsu keygen");
    dsu::CargoDsu { repo: repo.to_path_buf(), target: shared_target_dir(), release: false, keys: Some(keys) }
}

/// The patch of each `(from, to)` of `pairs`, in order.
pub fn patches<'a>(cargo_dsu: &dsu::CargoDsu, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<PathBuf> {
    pairs
        .into_iter()
        .map(|(a, b)| cargo_dsu.patch(a, b).unwrap_or_else(|e| panic!("cargo dsu patch {a}..{b}: {e:#}")))
        .collect()
}

/// A server started by a test: its control socket and its log (stderr) are in the work
/// directory, named after the test.
pub struct Started {
    pub server: Server,
    pub socket: PathBuf,
    pub log: PathBuf,
}

/// Starts `binary` on a free port with a control socket, its log written anew.
pub fn start_server(binary: &Path, name: &str) -> Started {
    let work = work_dir();
    let socket = work.join(format!("{name}.sock"));
    let log = work.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let server = Server::start(
        binary,
        &["--bind", "127.0.0.1:0", "--control", socket.to_str().unwrap()],
        &log,
        Duration::from_secs(120),
    )
    .expect("the server starts");
    Started { server, socket, log }
}
