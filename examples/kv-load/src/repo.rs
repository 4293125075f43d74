//! The kv server's release history as a git repository: `examples/kv/` is release r1, each
//! `examples/kv/releases/<NN>-<slug>/` an overlay on the one before, holding the files it
//! changes, a `RELEASE` file (`message: …`, optionally `rollback: yes`) and optionally a
//! `DELETE` file (one path a line). Release NN is tagged `rNN` without the leading zero. The
//! repository is what `cargo dsu patch rA..rB` reads.

use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The line of the server's workspace manifest naming the runtime, replaced by its absolute
/// path in the repository (the only place it is written).
const RUNTIME_LINE: &str = "path = \"../../runtime\"";

/// One release of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `r1`, `r2`, …
    pub tag: String,
    /// The commit message.
    pub message: String,
    /// Marked `rollback: yes`: rolled back and applied again.
    pub rollback: bool,
    /// The overlay directory (none for r1).
    pub overlay: Option<PathBuf>,
    /// Paths (relative to the server's root) the release removes.
    pub deletes: Vec<PathBuf>,
}

/// The main repository's `examples/kv`.
pub fn kv_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kv")
}

/// The main repository's runtime crate, absolute.
pub fn runtime_path() -> Result<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../runtime");
    p.canonicalize().with_context(|| format!("the runtime is not at {}", p.display()))
}

/// The releases in `kv`: r1 (the tree itself), then each overlay of `kv/releases` in order.
pub fn releases(kv: &Path) -> Result<Vec<Release>> {
    let mut out = vec![Release {
        tag: "r1".into(),
        message: "r1: the kv server".into(),
        rollback: false,
        overlay: None,
        deletes: Vec::new(),
    }];
    let dir = kv.join("releases");
    let mut overlays: Vec<(u32, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.collect::<std::io::Result<Vec<_>>>()?,
        // No later release: the history is r1 alone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context(format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let number = name
            .split_once('-')
            .and_then(|(n, _)| n.parse::<u32>().ok())
            .with_context(|| format!("release directory {name:?} is not named <NN>-<slug>"))?;
        overlays.push((number, path));
    }
    overlays.sort();
    for (k, (number, path)) in overlays.into_iter().enumerate() {
        ensure!(
            number as usize == k + 2,
            "release directories must be numbered 02, 03, … without gaps; found {number:02} at place {}",
            k + 2
        );
        let text = std::fs::read_to_string(path.join("RELEASE"))
            .with_context(|| format!("release {} has no RELEASE file", path.display()))?;
        let mut message = None;
        let mut rollback = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match line.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("message", v)) => message = Some(v.to_string()),
                Some(("rollback", "yes")) => rollback = true,
                Some(("rollback", "no")) => {}
                _ => bail!(
                    "{}: unknown line {line:?} (expected `message: …` or `rollback: yes`)",
                    path.join("RELEASE").display()
                ),
            }
        }
        let deletes = match std::fs::read_to_string(path.join("DELETE")) {
            Ok(t) => t.lines().map(str::trim).filter(|l| !l.is_empty()).map(PathBuf::from).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).context(format!("reading {}", path.join("DELETE").display())),
        };
        out.push(Release {
            tag: format!("r{number}"),
            message: message.with_context(|| format!("{} has no `message:` line", path.join("RELEASE").display()))?,
            rollback,
            overlay: Some(path),
            deletes,
        });
    }
    ensure!(out.iter().filter(|r| r.rollback).count() <= 1, "more than one release is marked `rollback: yes`");
    Ok(out)
}

fn git(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("git").args(args).current_dir(dir).output().context("running git")?;
    ensure!(out.status.success(), "git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    Ok(())
}

/// Copies the files under `from` into `to`, skipping the top-level names in `skip`; a file
/// whose content is unchanged is not written (its time stays, so builds stay incremental).
fn copy_tree(from: &Path, to: &Path, skip: &[&str], runtime: &str) -> Result<()> {
    let mut dirs = vec![from.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let rel = path.strip_prefix(from)?;
            if rel.components().count() == 1 && skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut content = std::fs::read(&path)?;
            if rel == Path::new("Cargo.toml") {
                let text = String::from_utf8(content).context("Cargo.toml is not UTF-8")?;
                content = text.replace(RUNTIME_LINE, &format!("path = {runtime:?}")).into_bytes();
            }
            let dest = to.join(rel);
            if std::fs::read(&dest).ok().as_deref() != Some(&content[..]) {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&dest, content)?;
            }
        }
    }
    Ok(())
}

/// Makes the repository at `dest` (its `target/` kept, everything else made anew): r1 committed
/// and tagged, then each release overlaid, committed with its message and tagged. Checks out
/// r1 at the end and returns the releases.
pub fn make_repository(kv: &Path, dest: &Path) -> Result<Vec<Release>> {
    let releases = releases(kv)?;
    let runtime = runtime_path()?;
    let runtime = runtime.to_str().context("the runtime's path is not UTF-8")?;
    let manifest = std::fs::read_to_string(kv.join("Cargo.toml")).context("reading the kv workspace manifest")?;
    ensure!(
        manifest.contains(RUNTIME_LINE),
        "{} does not name the runtime as `{RUNTIME_LINE}`",
        kv.join("Cargo.toml").display()
    );
    std::fs::create_dir_all(dest)?;
    // Everything but the build directory goes: a file of an older copy would be committed.
    for entry in std::fs::read_dir(dest)? {
        let path = entry?.path();
        if path.file_name() == Some("target".as_ref()) {
            continue;
        }
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    git(dest, &["init", "-q", "-b", "main"])?;
    git(dest, &["config", "user.email", "kv-load@dsu.invalid"])?;
    git(dest, &["config", "user.name", "kv-load"])?;
    std::fs::write(dest.join(".gitignore"), "/target\n")?;
    copy_tree(kv, dest, &["releases", "target"], runtime)?;
    for release in &releases {
        if let Some(overlay) = &release.overlay {
            copy_tree(overlay, dest, &["RELEASE", "DELETE"], runtime)?;
            for path in &release.deletes {
                let full = dest.join(path);
                std::fs::remove_file(&full).with_context(|| {
                    format!("release {} deletes {}, which does not exist", release.tag, path.display())
                })?;
            }
        }
        git(dest, &["add", "-A"])?;
        git(dest, &["commit", "-q", "-m", &release.message])?;
        git(dest, &["tag", &release.tag])?;
    }
    git(dest, &["checkout", "-q", "r1"])?;
    Ok(releases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("kv-load-repo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn show(repo: &Path, spec: &str) -> Option<String> {
        let out = Command::new("git").args(["show", spec]).current_dir(repo).output().unwrap();
        out.status.success().then(|| String::from_utf8(out.stdout).unwrap())
    }

    #[test]
    fn overlays_are_applied_cumulatively_and_tagged() {
        let kv = scratch("src");
        write(&kv.join("Cargo.toml"), "[workspace.dependencies]\ndsu = { path = \"../../runtime\" }\n");
        write(&kv.join("server/src/lib.rs"), "// r1\n");
        write(&kv.join("server/src/old.rs"), "// goes in r3\n");
        write(&kv.join("target/junk"), "not copied");
        write(&kv.join("releases/02-fix/RELEASE"), "message: r2: a fix\n");
        write(&kv.join("releases/02-fix/server/src/lib.rs"), "// r2\n");
        write(&kv.join("releases/03-drop/RELEASE"), "message: r3: drop old\nrollback: yes\n");
        write(&kv.join("releases/03-drop/DELETE"), "server/src/old.rs\n");
        write(&kv.join("releases/03-drop/server/src/new.rs"), "// r3\n");
        let dest = scratch("dest");
        let releases = make_repository(&kv, &dest).unwrap();
        let tags: Vec<_> = releases.iter().map(|r| (r.tag.as_str(), r.rollback)).collect();
        assert_eq!(tags, vec![("r1", false), ("r2", false), ("r3", true)]);
        let manifest = show(&dest, "r1:Cargo.toml").unwrap();
        assert!(manifest.contains(&format!("path = {:?}", runtime_path().unwrap().to_str().unwrap())), "{manifest}");
        assert!(!manifest.contains("../../runtime"));
        assert_eq!(show(&dest, "r1:server/src/lib.rs").unwrap(), "// r1\n");
        assert_eq!(show(&dest, "r2:server/src/lib.rs").unwrap(), "// r2\n");
        assert_eq!(show(&dest, "r3:server/src/lib.rs").unwrap(), "// r2\n");
        assert!(show(&dest, "r2:server/src/old.rs").is_some());
        assert!(show(&dest, "r3:server/src/old.rs").is_none());
        assert!(show(&dest, "r3:server/src/new.rs").is_some());
        assert!(
            show(&dest, "r3:RELEASE").is_none()
                && show(&dest, "r1:releases").is_none()
                && show(&dest, "r1:target").is_none()
        );
        assert_eq!(show(&dest, "r2:.gitignore").unwrap(), "/target\n");
        // The work tree is r1, clean.
        assert_eq!(std::fs::read_to_string(dest.join("server/src/lib.rs")).unwrap(), "// r1\n");
        let status = Command::new("git").args(["status", "--porcelain"]).current_dir(&dest).output().unwrap();
        assert!(status.stdout.is_empty(), "{}", String::from_utf8_lossy(&status.stdout));
        // Made again over the first copy: the same history.
        make_repository(&kv, &dest).unwrap();
        assert_eq!(show(&dest, "r3:server/src/lib.rs").unwrap(), "// r2\n");
        let _ = std::fs::remove_dir_all(&kv);
        let _ = std::fs::remove_dir_all(&dest);
    }

    #[test]
    fn a_release_without_a_message_or_with_a_gap_is_refused() {
        let kv = scratch("bad");
        write(&kv.join("Cargo.toml"), "path = \"../../runtime\"\n");
        write(&kv.join("releases/02-a/RELEASE"), "rollback: yes\n");
        let e = releases(&kv).unwrap_err().to_string();
        assert!(e.contains("no `message:` line"), "{e}");
        std::fs::remove_dir_all(kv.join("releases/02-a")).unwrap();
        write(&kv.join("releases/04-b/RELEASE"), "message: x\n");
        let e = releases(&kv).unwrap_err().to_string();
        assert!(e.contains("without gaps"), "{e}");
        let _ = std::fs::remove_dir_all(&kv);
    }
}
