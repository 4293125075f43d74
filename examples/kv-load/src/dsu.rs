//! `cargo dsu` from a bench or test executable: the executable is cargo-dsu itself (as the demo
//! is), so it needs no installed `cargo-dsu`. Its `main` first calls
//! `cargo_dsu::cli::run_if_invoked_as_cargo_dsu`: run as `EXE dsu …`, or by cargo as the rustc
//! wrapper of an updateable build, it is exactly the `cargo dsu` command.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `cargo dsu` in one repository with one target directory.
pub struct CargoDsu {
    pub repo: PathBuf,
    pub target: PathBuf,
    pub release: bool,
    /// A key pair from `cargo dsu keygen` (the path without `.key`/`.pub`): the build trusts its
    /// public half and every patch is signed with its secret half.
    pub keys: Option<PathBuf>,
}

impl CargoDsu {
    /// Runs `cargo dsu ARGS [--release] --target-dir TARGET` in the repository; its stdout.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("dsu").args(args);
        if self.release {
            cmd.arg("--release");
        }
        cmd.arg("--target-dir").arg(&self.target).current_dir(&self.repo).stderr(Stdio::piped());
        let out = cmd.output().context("running cargo dsu")?;
        if !out.status.success() {
            bail!("cargo dsu {} failed ({}):\n{}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    /// `cargo dsu build` of the checked-out revision: the server binary's path.
    pub fn build(&self) -> Result<PathBuf> {
        let public = self.keys.as_ref().map(|k| k.with_extension("pub"));
        let mut args = vec!["build", "-p", "kv", "--bin", "kv-server"];
        if let Some(public) = &public {
            args.extend(["--trust", public.to_str().context("non-UTF-8 key path")?]);
        }
        let out = self.run(&args)?;
        let path = out.lines().last().context("cargo dsu build printed no path")?;
        Ok(PathBuf::from(path))
    }

    /// `cargo dsu patch FROM..TO`: the patch's path.
    pub fn patch(&self, from: &str, to: &str) -> Result<PathBuf> {
        let range = format!("{from}..{to}");
        let secret = self.keys.as_ref().map(|k| k.with_extension("key"));
        let mut args = vec!["patch", range.as_str(), "-p", "kv", "--bin", "kv-server"];
        if let Some(secret) = &secret {
            args.extend(["--sign", secret.to_str().context("non-UTF-8 key path")?]);
        }
        let out = self.run(&args)?;
        Ok(PathBuf::from(out.lines().last().context("cargo dsu patch printed no path")?))
    }
}

/// `cargo dsu keygen NAME` unless NAME.key exists: the key pair [`CargoDsu::keys`] names.
pub fn keygen(name: &Path) -> Result<()> {
    if name.with_extension("key").exists() {
        return Ok(());
    }
    if let Some(dir) = name.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let out = Command::new(std::env::current_exe()?).arg("dsu").arg("keygen").arg(name).output()?;
    if !out.status.success() {
        bail!("cargo dsu keygen failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// One request to a running program's control socket (what `cargo dsu load|rollback|status
/// --socket` send); its reply after `ok `.
pub fn control(socket: &Path, command: &str) -> Result<String> {
    cargo_dsu::control_client::send(socket, command)
}

/// The `last_pause_us` of a `status` reply.
pub fn last_pause_us(status: &str) -> Option<u64> {
    status.split_whitespace().find_map(|w| w.strip_prefix("last_pause_us="))?.parse().ok()
}

/// The `revision` of a `status` reply.
pub fn revision(status: &str) -> Option<&str> {
    status.split_whitespace().find_map(|w| w.strip_prefix("revision="))
}

/// A plain `cargo build --release` of the server at `tag`, checked out of `repo` into its own
/// work tree under `target`, copied to `bins/kv-server-<tag>`.
pub fn plain_build(repo: &Path, tag: &str, target: &Path) -> Result<PathBuf> {
    let tree = target.join("plain-tree");
    if !tree.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&tree);
        let out = Command::new("git").args(["clone", "-q"]).arg(repo).arg(&tree).output()?;
        if !out.status.success() {
            bail!("git clone: {}", String::from_utf8_lossy(&out.stderr));
        }
    } else {
        let out =
            Command::new("git").args(["fetch", "-q", "--tags", "--force"]).arg(repo).current_dir(&tree).output()?;
        if !out.status.success() {
            bail!("git fetch: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let out = Command::new("git").args(["checkout", "-q", "--force", tag]).current_dir(&tree).output()?;
    if !out.status.success() {
        bail!("git checkout {tag}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = Command::new("cargo")
        .args(["build", "--release", "--bin", "kv-server", "--target-dir"])
        .arg(target.join("plain-target"))
        .current_dir(&tree)
        .stderr(Stdio::piped())
        .output()
        .context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build --release of {tag} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let bins = target.join("bins");
    std::fs::create_dir_all(&bins)?;
    let dest = bins.join(format!("kv-server-{tag}"));
    std::fs::copy(target.join("plain-target/release/kv-server"), &dest)?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read() {
        let s = "revision=abc123 applied=2 pending=0 threads=3 last_pause_us=412 signatures=optional trusted_keys=none last_refusal=none";
        assert_eq!(last_pause_us(s), Some(412));
        assert_eq!(revision(s), Some("abc123"));
        assert_eq!(last_pause_us("revision=x"), None);
    }
}
