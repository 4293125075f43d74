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

    /// `<sysroot>/lib/rustlib/<target>/lib`, where the shared `libstd-*.so` lives.
    pub fn target_libdir(&self, target: &str) -> Result<PathBuf> {
        let out = Command::new(&self.path).args(["--print", "sysroot"]).output()?;
        let sysroot = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(Path::new(&sysroot).join("lib/rustlib").join(target).join("lib"))
    }
}

/// The source revision of `dir`: the git commit, with `+dirty` when the work tree differs from
/// it, or `none` outside git.
pub fn git_revision(dir: &Path) -> String {
    let rev = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let Some(rev) = rev else { return "none".into() };
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--", "."])
        .current_dir(dir)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    if dirty { format!("{rev}+dirty") } else { rev }
}

/// Hash of every source file of the package in `dir` (paths and contents), skipping build
/// output, version-control data and hidden files.
pub fn tree_hash(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let mut buf = Vec::new();
    for rel in files {
        let content = std::fs::read(dir.join(&rel)).with_context(|| format!("reading {rel}"))?;
        buf.extend_from_slice(rel.as_bytes());
        buf.push(0);
        buf.extend_from_slice(hex_hash(&content).as_bytes());
        buf.push(b'\n');
    }
    Ok(hex_hash(&buf))
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
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
