//! The facts that make up a build's identity: source revision and tree, rustc, target, profile.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Short hex of a 128-bit FNV hash: stable across runs and machines.
pub fn hex_hash(bytes: &[u8]) -> String {
    format!("{:032x}", dsu_abi::fnv128(bytes))[..16].to_string()
}

/// The compiler's full version text (`rustc -vV`) and its host triple.
pub struct Rustc {
    pub path: PathBuf,
    pub version_text: String,
    pub host: String,
}

impl Rustc {
    /// The rustc cargo would use: `$RUSTC`, or `rustc` on the path.
    pub fn detect() -> Result<Self> {
        let path = std::env::var_os("RUSTC").map(PathBuf::from).unwrap_or_else(|| "rustc".into());
        let out = Command::new(&path)
            .arg("-vV")
            .output()
            .with_context(|| format!("running {} -vV", path.display()))?;
        if !out.status.success() {
            bail!("{} -vV failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        }
        let version_text = String::from_utf8(out.stdout).context("rustc -vV output")?;
        let host = version_text
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .context("rustc -vV printed no host line")?
            .to_string();
        Ok(Rustc { path, version_text, host })
    }

    pub fn hash(&self) -> String {
        hex_hash(self.version_text.as_bytes())
    }

    /// Its `release:` line (`1.95.0`, `1.97.0-nightly`).
    pub fn release(&self) -> &str {
        self.version_text.lines().find_map(|l| l.strip_prefix("release: ")).unwrap_or("unknown")
    }

    /// Whether it takes `-Z` flags: a nightly or a locally built (`-dev`) compiler.
    pub fn is_nightly(&self) -> bool {
        let release = self.release();
        release.ends_with("-nightly") || release.ends_with("-dev")
    }

    /// `<sysroot>/lib/rustlib/<target>/lib`, where the shared `libstd-*.so` lives.
    pub fn target_libdir(&self, target: &str) -> Result<PathBuf> {
        let out = Command::new(&self.path).args(["--print", "sysroot"]).output()?;
        let sysroot = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Path::new(&sysroot).join("lib/rustlib").join(target).join("lib"))
    }
}

/// The source state of a package directory: its revision and the hash of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceState {
    /// A git commit, with `+dirty` when the package's files differ from it; `none` outside git.
    pub revision: String,
    /// Hash of the package's source files (paths and contents).
    pub tree: String,
    /// Files that differ from the revision (changed, added, removed, untracked), as
    /// `git status --porcelain` names them; empty for a clean tree or a checkout.
    pub dirty_files: Vec<String>,
}

/// The source state of the package in `dir` as it is on disk.
///
/// In a git work tree where the package is tracked, its files are those git knows of (tracked,
/// plus untracked ones not ignored), so a clean work tree at commit C hashes like a checkout of
/// C. Elsewhere every file counts but build output and hidden files.
pub fn work_tree_state(dir: &Path) -> Result<SourceState> {
    let tracked = git(dir, &["ls-files", "-z", "--", "."]).is_ok_and(|files| !files.is_empty());
    if !tracked {
        let mut files = Vec::new();
        collect_files(dir, dir, &mut files)?;
        return Ok(SourceState { revision: "none".into(), tree: tree_hash_of(dir, files)?, dirty_files: Vec::new() });
    }
    let listed = git(dir, &["ls-files", "-z", "--cached", "--others", "--exclude-standard"])?;
    let files: Vec<String> = listed
        .split('\0')
        // Build output never counts, even where `.gitignore` forgets it.
        .filter(|f| !f.is_empty() && !f.starts_with("target/") && dir.join(f).is_file())
        .map(String::from)
        .collect();
    let head = git(dir, &["rev-parse", "HEAD"])?.trim().to_string();
    let status = git(dir, &["-c", "core.quotePath=false", "status", "--porcelain", "--", "."])?;
    let dirty_files: Vec<String> = status
        .lines()
        .filter_map(|l| l.get(3..))
        .filter(|f| !f.starts_with("target/") && !f.contains("/target/"))
        .map(String::from)
        .collect();
    Ok(SourceState {
        revision: if dirty_files.is_empty() { head } else { format!("{head}+dirty") },
        tree: tree_hash_of(dir, files)?,
        dirty_files,
    })
}

/// Hash of the files `rel_paths` under `root`.
pub fn tree_hash_of(root: &Path, mut rel_paths: Vec<String>) -> Result<String> {
    rel_paths.sort();
    let mut buf = Vec::new();
    for rel in rel_paths {
        let content = std::fs::read(root.join(&rel)).with_context(|| format!("reading {rel}"))?;
        buf.extend_from_slice(rel.as_bytes());
        buf.push(0);
        buf.extend_from_slice(hex_hash(&content).as_bytes());
        buf.push(b'\n');
    }
    Ok(hex_hash(&buf))
}

/// Runs git in `dir`; its stdout, or an error with its stderr.
pub fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git (is it installed?)")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    String::from_utf8(out.stdout).context("git output is not UTF-8")
}

/// Every file under `dir` except build output (`target/`) and hidden files, relative to `root`.
pub fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            collect_files(root, &path, out)?;
        } else if ty.is_file() {
            let rel = path.strip_prefix(root).expect("under root").to_string_lossy().into_owned();
            out.push(rel);
        }
    }
    Ok(())
}
