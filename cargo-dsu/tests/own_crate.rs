//! The README's "Use it in your own crate", followed step by step on a scratch crate. The
//! section's code blocks are read from README.md and used as they are written: the dependency
//! line goes into the crate's manifest, the program becomes its `src/main.rs`, and each shell
//! block runs in `sh` in the crate, so the README and this test cannot drift apart.
//!
//! What differs from a newcomer's run, each for a reason given where it is done: `dsu` comes from
//! this checkout, `cargo dsu` is the cargo-dsu this test build made, builds go to the shared
//! target directory, and the lock file starts as this workspace's.

mod common;

use common::{assert_success, init_repo, shared_target_dir, workspace_root, Host};
use std::path::{Path, PathBuf};
use std::process::Command;

const SECTION: &str = "## Use it in your own crate";

/// A fenced code block: its info string (`sh`, `toml`, `rust`) and its text.
struct Block {
    lang: String,
    text: String,
}

/// The fenced code blocks of the README's section [`SECTION`], in order.
fn section_blocks() -> Vec<Block> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let mut lines = readme.lines().skip_while(|l| *l != SECTION);
    assert!(lines.next().is_some(), "README.md has no section {SECTION:?}");
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in lines.take_while(|l| !l.starts_with("## ")) {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => open = Some(Block { lang: lang.to_string(), text: String::new() }),
            (Some(_), Some("")) => blocks.push(open.take().unwrap()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "an unclosed code block in {SECTION:?}");
    blocks
}

/// The one block of `blocks` in language `lang` that contains `needle`.
fn block<'a>(blocks: &'a [Block], lang: &str, needle: &str) -> &'a str {
    let found: Vec<&Block> = blocks.iter().filter(|b| b.lang == lang && b.text.contains(needle)).collect();
    assert_eq!(found.len(), 1, "{SECTION:?} should have one {lang} block with {needle:?}");
    &found[0].text
}

/// Runs a shell block of the README in `dir`, as a newcomer would paste it (stopping at the
/// first command that fails); its standard output.
fn run_block(dir: &Path, shim: &Path, text: &str) -> String {
    let path = std::env::join_paths(
        std::iter::once(shim.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let out = Command::new("sh")
        .args(["-ec", text])
        .current_dir(dir)
        .env("PATH", path)
        // The README's `target/` is the shared target directory here, where the dependency library
        // and every third-party crate of the other end-to-end tests are built already.
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .output()
        .expect("running sh");
    assert_success(&out, &format!("the README's block\n{text}"));
    String::from_utf8(out.stdout).unwrap()
}

/// A directory holding a `cargo` that runs this build's cargo-dsu for `cargo dsu …` and the cargo
/// running the tests for everything else. It stands in for `cargo install cargo-dsu`, which would
/// build cargo-dsu again and wait on the target directory's lock this test build holds; and it
/// is found before any cargo-dsu installed on this machine.
fn cargo_shim(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let shim = dir.join("bin");
    std::fs::create_dir_all(&shim).unwrap();
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = dsu ]; then exec '{}' \"$@\"; fi\nexec '{cargo}' \"$@\"\n",
        common::cargo_dsu().display()
    );
    let path = shim.join("cargo");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    shim
}

/// The commit `rev` names in the repository at `dir`.
fn commit(dir: &Path, rev: &str) -> String {
    let out = Command::new("git").args(["rev-parse", rev]).current_dir(dir).output().unwrap();
    assert_success(&out, "git rev-parse");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn the_readme_section_followed_on_a_new_crate() {
    let blocks = section_blocks();

    // The dependency line: what a newcomer adds under `[dependencies]`, of a version this
    // checkout's runtime satisfies (every crate here has the workspace's version).
    let dependency = block(&blocks, "toml", "dsu =");
    let line = dependency.strip_prefix("[dependencies]\n").expect("the dependency block starts with [dependencies]");
    let wanted = line.trim().strip_prefix("dsu = \"").and_then(|v| v.strip_suffix('"')).expect("dsu = \"VERSION\"");
    let ours = env!("CARGO_PKG_VERSION");
    assert!(
        ours.starts_with(&format!("{wanted}.")) && wanted.starts_with("0."),
        "the README asks for dsu {wanted:?}, this checkout is {ours}"
    );

    // Installing cargo-dsu: from crates.io, or from a clone, where `cargo-dsu` is the package's
    // directory. The test uses the binary this build made instead (see `cargo_shim`).
    let install = block(&blocks, "sh", "cargo install");
    assert!(install.contains("cargo install cargo-dsu "), "{install}");
    assert!(install.contains("cargo install --path cargo-dsu\n"), "{install}");
    assert!(workspace_root().join("cargo-dsu/Cargo.toml").is_file());

    // The crate, as `cargo new NAME` makes it (its name is the one the README runs), in a fixed
    // place so that its builds stay incremental between runs.
    let run = block(&blocks, "sh", "target/dsu/debug/").trim().to_string();
    let name = run.strip_prefix("target/dsu/debug/").unwrap();
    let scratch = shared_target_dir().join("scratch-own-crate");
    let dir = scratch.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    init_repo(&dir);
    let program = block(&blocks, "rust", "fn main()");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/main.rs"), program).unwrap();
    let runtime = workspace_root().join("runtime");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n{dependency}\n\
             # dsu is not published yet: the README's dependency line resolves to this checkout.\n\
             [patch.crates-io]\ndsu = {{ path = {runtime:?} }}\n\n\
             # The crate lives inside this repository's target directory: without a workspace of\n\
             # its own, cargo would take it for a member of the repository's.\n\
             [workspace]\n"
        ),
    )
    .unwrap();
    // The lock file starts as this workspace's, which the README's `cargo fetch` trims to the
    // crate's dependencies: the versions stay those the other end-to-end tests built, and no
    // index is read (a newcomer's crate gets the newest versions instead).
    std::fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let shim = cargo_shim(&scratch);

    // The first commit, Cargo.lock in it, and the build.
    let built = run_block(&dir, &shim, block(&blocks, "sh", "cargo dsu build"));
    let binary = PathBuf::from(built.lines().last().expect("cargo dsu build prints the program's path"));
    assert_eq!(binary, shared_target_dir().join(run.strip_prefix("target/").unwrap()), "{built}");
    let tracked = Command::new("git").args(["ls-files", "Cargo.lock"]).current_dir(&dir).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&tracked.stdout).trim(), "Cargo.lock", "Cargo.lock is in the first commit");
    let v1 = commit(&dir, "v1");

    let mut host = Host::start_in(&dir, &binary, &[]);
    assert_eq!(host.send("ada"), "hello, ada");

    // `greet` changed as the README says, then committed, patched and loaded through the control
    // socket, while the program runs.
    let changed = program.replacen("format!(\"hello, {name}\")", "format!(\"hi, {name}\")", 1);
    assert_ne!(changed, program, "the README's greet says \"hello, {{name}}\"");
    std::fs::write(dir.join("src/main.rs"), &changed).unwrap();
    let loaded = run_block(&dir, &shim, block(&blocks, "sh", "cargo dsu load"));
    let v2 = commit(&dir, "v2");
    assert_eq!(loaded.lines().last(), Some(format!("applied {v2}").as_str()), "{loaded}");
    assert_eq!(host.send("ada"), "hi, ada", "new calls run the patch's greet");

    // Status, then rollback: the program runs v1's greet again, in the same process.
    let answers = run_block(&dir, &shim, block(&blocks, "sh", "cargo dsu rollback"));
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(answers[0].starts_with(&format!("revision={v2} applied=1 pending=0 ")), "{}", answers[0]);
    assert_eq!(answers[1], format!("rolled back to {v1}"));
    assert_eq!(host.send("ada"), "hello, ada", "rolled back to v1's greet");
}
