//! The dsu demo: a server patched live through three releases, in one process, state kept.
//!
//! It makes a scratch git repository holding five releases of `examples/demo-server`, builds the
//! first with `cargo dsu build`, starts it, and for each later release runs `cargo dsu patch` and
//! has the running server load the patch (the last release is refused). Then an operator rolls
//! the newest release back from outside, through the server's control socket, and applies it
//! again. This executable is also `cargo-dsu`: run as
//! `dsu-demo dsu …` (or as cargo's rustc wrapper) it is exactly the `cargo dsu` command.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The releases, each a directory of `examples/demo-server` (see [`release_files`]).
const RELEASES: &[(&str, &str, &str)] = &[
    ("v1", "base", "first release"),
    ("v2", "v2", "friendlier greeting"),
    ("v3", "v3", "a new function: badges for regulars"),
    ("v4", "v4", "statistics show an average (a trait method)"),
    ("v5", "v5-refused", "changes the type of a plain static the server shares with its patches (refused)"),
];
const NAMES: &[&str] = &["alice", "bob", "alice"];

fn main() -> ExitCode {
    if let Some(code) = cargo_dsu::cli::run_if_invoked_as_cargo_dsu() {
        return code;
    }
    match demo() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

struct Paths {
    repo: PathBuf,
    target: PathBuf,
    /// The server's control socket.
    socket: PathBuf,
}

fn paths() -> Result<Paths> {
    let exe = std::env::current_exe()?;
    // <target>/<profile>/dsu-demo
    let target = exe.parent().and_then(Path::parent).context("cannot place the scratch directory")?;
    let base = target.join("dsu-demo");
    Ok(Paths { repo: base.join("repo"), target: base.join("target"), socket: base.join("control.sock") })
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn git(repo: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git").args(args).current_dir(repo).output().context("running git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The files of the release in directory `release` of `examples/demo-server`: `base/` holds the
/// whole package; a release's directory holds only the files it changes, and its `.parent` file,
/// if any, names the release it builds on. `@DSU_RUNTIME@` in `Cargo.toml` becomes `runtime`.
fn release_files(release: &str, runtime: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo-server"));
    let mut chain = vec![release.to_string()];
    while let Ok(parent) = std::fs::read_to_string(root.join(chain.last().unwrap()).join(".parent")) {
        chain.push(parent.trim().to_string());
    }
    if chain.last().map(String::as_str) != Some("base") {
        chain.push("base".to_string());
    }
    let mut files = BTreeMap::new();
    for layer in chain.iter().rev() {
        let mut dirs = vec![root.join(layer)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name() != Some(".parent".as_ref()) {
                    files.insert(path.strip_prefix(root.join(layer))?.to_path_buf(), std::fs::read(&path)?);
                }
            }
        }
    }
    let manifest = files.get_mut(Path::new("Cargo.toml")).context("the server has no Cargo.toml")?;
    let runtime = runtime.to_str().context("non-UTF-8 path")?;
    *manifest = String::from_utf8(std::mem::take(manifest))?.replace("@DSU_RUNTIME@", runtime).into_bytes();
    Ok(files)
}

fn make_repository(p: &Paths) -> Result<()> {
    let runtime = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../runtime")).canonicalize()?;
    let _ = std::fs::remove_dir_all(&p.repo);
    std::fs::create_dir_all(&p.repo)?;
    git(&p.repo, &["init", "-q", "-b", "main"])?;
    git(&p.repo, &["config", "user.email", "demo@dsu.invalid"])?;
    git(&p.repo, &["config", "user.name", "dsu demo"])?;
    std::fs::write(p.repo.join(".gitignore"), "/target\n")?;
    for (tag, release, what) in RELEASES {
        // Each release's whole tree: files of other releases go.
        let _ = std::fs::remove_dir_all(p.repo.join("src"));
        for (path, content) in release_files(release, &runtime)? {
            let path = p.repo.join(path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, content)?;
        }
        git(&p.repo, &["add", "-A"])?;
        git(&p.repo, &["commit", "-q", "-m", &format!("{tag}: {what}")])?;
        git(&p.repo, &["tag", tag])?;
        println!("   committed {tag}: {what}");
    }
    git(&p.repo, &["checkout", "-q", "v1"])?;
    Ok(())
}

/// Runs this executable as `cargo dsu <args>`; returns its stdout, or its exit code on failure.
fn cargo_dsu(p: &Paths, args: &[&str]) -> Result<std::result::Result<String, i32>> {
    let target = ["--target-dir", p.target.to_str().context("non-UTF-8 path")?];
    run_cargo_dsu(p, args, &target)
}

/// Runs `cargo dsu <args> --socket <the server's control socket>`.
fn cargo_dsu_control(p: &Paths, args: &[&str]) -> Result<std::result::Result<String, i32>> {
    run_cargo_dsu(p, args, &["--socket", p.socket.to_str().context("non-UTF-8 path")?])
}

fn run_cargo_dsu(p: &Paths, args: &[&str], extra: &[&str]) -> Result<std::result::Result<String, i32>> {
    // The target directory is the demo's plumbing; a control socket is part of the command.
    let shown = if extra.first() == Some(&"--socket") { [args, extra].concat() } else { args.to_vec() };
    println!("$ cargo dsu {}", shown.join(" "));
    let start = Instant::now();
    let out = Command::new(std::env::current_exe()?)
        .arg("dsu")
        .args(args)
        .args(extra)
        .current_dir(&p.repo)
        .stderr(Stdio::inherit())
        .output()?;
    println!("   ({:.1} s)", start.elapsed().as_secs_f64());
    Ok(if out.status.success() {
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    } else {
        Err(out.status.code().unwrap_or(-1))
    })
}

struct Server {
    child: Child,
    conn: TcpStream,
    reader: BufReader<TcpStream>,
    requests: usize,
}

impl Server {
    fn start(binary: &Path, socket: &Path) -> Result<Server> {
        let mut child = Command::new(binary)
            .arg(socket)
            .env_remove("LD_LIBRARY_PATH")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first)?;
        let addr = first.trim().strip_prefix("listening on ").context("server did not start")?.to_string();
        let conn = TcpStream::connect(&addr)?;
        conn.set_read_timeout(Some(Duration::from_secs(60)))?;
        println!("   server pid {} listening on {addr}", child.id());
        let reader = BufReader::new(conn.try_clone()?);
        Ok(Server { child, conn, reader, requests: 0 })
    }

    fn request(&mut self, req: &str) -> Result<String> {
        writeln!(self.conn, "{req}")?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            bail!("the server closed the connection");
        }
        self.requests += 1;
        Ok(line.trim_end().to_string())
    }

    fn show(&mut self, req: &str) -> Result<String> {
        let r = self.request(req)?;
        println!("   > {req:<14} < {r}");
        Ok(r)
    }
}

fn demo() -> Result<()> {
    let started = Instant::now();
    let p = paths()?;
    step("A scratch git repository with five releases of the server");
    make_repository(&p)?;

    step("Build v1 in updateable form");
    let binary = match cargo_dsu(&p, &["build"])? {
        Ok(path) => PathBuf::from(path),
        Err(code) => bail!("cargo dsu build failed with exit code {code}"),
    };

    step("Start it and send requests");
    let mut server = Server::start(&binary, &p.socket)?;
    let pid = server.child.id();
    for name in NAMES {
        server.show(&format!("GET {name}"))?;
    }
    server.show("STATS")?;

    let mut applied = 0;
    let mut newest_patch = None;
    for pair in RELEASES.windows(2) {
        let ((from, _, _), (to, _, what)) = (pair[0], pair[1]);
        step(&format!("Release {to}: {what}"));
        match cargo_dsu(&p, &["patch", &format!("{from}..{to}")])? {
            Ok(patch) => {
                let answer = server.show(&format!("PATCH {patch}"))?;
                if !answer.starts_with("patch queued") {
                    bail!("the server refused the patch: {answer}");
                }
                applied += 1;
                newest_patch = Some(patch);
                for name in NAMES {
                    server.show(&format!("GET {name}"))?;
                }
                server.show("STATS")?;
                server.show("STATUS")?;
            }
            Err(5) => {
                println!("   refused as expected (exit code 5); the server keeps running {from}:");
                server.show("GET alice")?;
            }
            Err(code) => bail!("cargo dsu patch failed with exit code {code}"),
        }
    }

    step("An operator rolls the newest release back, from outside the server");
    match cargo_dsu_control(&p, &["rollback"])? {
        Ok(answer) => println!("   {answer}"),
        Err(code) => bail!("cargo dsu rollback failed with exit code {code}"),
    }
    server.show("STATS")?;
    server.show("STATUS")?;

    step("...and applies it again, the same way");
    let patch = newest_patch.context("no patch was applied")?;
    match cargo_dsu_control(&p, &["load", &patch])? {
        Ok(answer) => println!("   {answer}"),
        Err(code) => bail!("cargo dsu load failed with exit code {code}"),
    }
    server.show("STATS")?;

    step("Summary");
    let status = server.show("STATUS")?;
    let alice = server.request("GET alice")?;
    server.requests -= 1;
    writeln!(server.conn, "QUIT")?;
    let exit = server.child.wait()?;
    println!(
        "   one server process (pid {pid}) throughout; {applied} patches applied, the last one rolled \
         back and applied again; {} requests answered",
        server.requests
    );
    println!("   state kept across every update: {status}; last greeting: {alice}");
    println!("   server exited with {exit}; demo took {:.1} s", started.elapsed().as_secs_f64());
    if applied != RELEASES.len() - 2 {
        bail!("expected {} patches to apply, {applied} did", RELEASES.len() - 2);
    }
    Ok(())
}
