//! Revisions of the program's source root (every package of its updateable set), checked out
//! into a cache under the target directory.
//!
//! A checkout directory is reused across patches: syncing it to another tree rewrites only the
//! files whose contents differ and removes the ones that are gone, so paths stay stable and the
//! patch build's incremental cache stays warm. Its `.dsu-tree` file names the tree id it holds;
//! a checkout already at the wanted tree id is used as it is.

use crate::identity::{self, SourceState};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Not inside a git work tree.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not inside a git repository")]
pub struct NotARepository(pub PathBuf);

/// A revision git cannot resolve.
#[derive(Debug, thiserror::Error)]
#[error("unknown revision `{rev}`: {detail}")]
pub struct UnknownRevision {
    pub rev: String,
    pub detail: String,
}

/// The git repository holding a program's source root.
pub struct Repo {
    /// Top of the work tree.
    pub root: PathBuf,
    /// The source root relative to `root` (empty when it is the top).
    pub dir: PathBuf,
}

impl Repo {
    pub fn discover(source_root: &Path) -> Result<Self> {
        let top = identity::git(source_root, &["rev-parse", "--show-toplevel"])
            .map_err(|_| NotARepository(source_root.to_path_buf()))?;
        let root = PathBuf::from(top.trim());
        let canonical = source_root.canonicalize()?;
        let dir = canonical
            .strip_prefix(root.canonicalize()?)
            .with_context(|| {
                format!(
                    "{} (the directory holding every crate of the program) is outside the \
                     repository's work tree {}",
                    source_root.display(),
                    root.display()
                )
            })?
            .to_path_buf();
        Ok(Repo { root, dir })
    }

    /// The commit id `rev` names.
    pub fn resolve(&self, rev: &str) -> Result<String> {
        if rev.starts_with('-') {
            return Err(UnknownRevision { rev: rev.into(), detail: "not a revision".into() }.into());
        }
        identity::git(&self.root, &["rev-parse", "--verify", "--quiet", &format!("{rev}^{{commit}}")])
            .map(|s| s.trim().to_string())
            .map_err(|e| {
                UnknownRevision { rev: rev.into(), detail: format!("git cannot resolve it ({e})") }
                    .into()
            })
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        let status = Command::new("git")
            .args(["merge-base", "--is-ancestor", ancestor, descendant])
            .current_dir(&self.root)
            .stderr(Stdio::null())
            .status()
            .context("running git merge-base")?;
        Ok(status.success())
    }

    /// Tree id of the source root at `commit`.
    pub fn source_tree(&self, commit: &str) -> Result<String> {
        let spec = format!("{commit}:{}", self.dir.display());
        Ok(identity::git(&self.root, &["rev-parse", &spec])?.trim().to_string())
    }

    /// Makes `dir` hold exactly the source root's files at `commit`; returns its source state.
    pub fn checkout(&self, commit: &str, dir: &Path) -> Result<SourceState> {
        let tree = self.source_tree(commit)?;
        let marker = dir.join(".dsu-tree");
        let files = self.files_at(&tree)?;
        let names: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(tree.as_str()) {
            let contents = self.blobs(files.iter().map(|(_, id)| id.as_str()))?;
            sync(dir, names.iter().cloned().zip(contents))?;
            std::fs::write(&marker, &tree)?;
        }
        Ok(SourceState {
            revision: commit.to_string(),
            tree: identity::tree_hash_of(dir, names)?,
            dirty_files: Vec::new(),
        })
    }

    /// Makes `dir` hold the source root's files as they are in the work tree (tracked, and untracked
    /// but not ignored); returns the work tree's source state.
    pub fn copy_work_tree(&self, source_root: &Path, dir: &Path) -> Result<SourceState> {
        let state = identity::work_tree_state(source_root)?;
        let listed = identity::git(
            source_root,
            &["ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        )?;
        let mut entries = Vec::new();
        for rel in listed.split('\0').filter(|f| !f.is_empty() && !f.starts_with("target/")) {
            let path = source_root.join(rel);
            if path.is_file() {
                entries.push((rel.to_string(), std::fs::read(&path)?));
            }
        }
        sync(dir, entries.into_iter())?;
        let _ = std::fs::remove_file(dir.join(".dsu-tree"));
        Ok(state)
    }

    /// `(path relative to the source root, blob id)` of every regular file of the tree.
    fn files_at(&self, tree: &str) -> Result<Vec<(String, String)>> {
        let listing = identity::git(&self.root, &["ls-tree", "-r", "-z", tree])?;
        let mut out = Vec::new();
        for entry in listing.split('\0').filter(|e| !e.is_empty()) {
            let (meta, path) = entry.split_once('\t').context("unexpected git ls-tree output")?;
            let mut parts = meta.split(' ');
            let (mode, kind, id) = (parts.next(), parts.next(), parts.next());
            // Regular files only: symbolic links and submodules are not part of a crate's source.
            if kind == Some("blob") && matches!(mode, Some("100644") | Some("100755")) {
                out.push((path.to_string(), id.unwrap_or_default().to_string()));
            }
        }
        Ok(out)
    }

    /// Contents of the blobs, through one `git cat-file --batch`.
    fn blobs<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Result<Vec<Vec<u8>>> {
        let mut child = Command::new("git")
            .args(["cat-file", "--batch"])
            .current_dir(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("running git cat-file")?;
        let ids: Vec<&str> = ids.collect();
        let mut stdin = child.stdin.take().expect("piped");
        let input: String = ids.iter().map(|id| format!("{id}\n")).collect();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let mut reader = BufReader::new(child.stdout.take().expect("piped"));
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let size: usize = header
                .split(' ')
                .nth(2)
                .and_then(|s| s.trim().parse().ok())
                .with_context(|| format!("git cat-file: no blob {id} ({})", header.trim()))?;
            let mut buf = vec![0; size + 1];
            reader.read_exact(&mut buf)?;
            buf.pop();
            out.push(buf);
        }
        writer.join().expect("writer thread")?;
        if !child.wait()?.success() {
            bail!("git cat-file failed");
        }
        Ok(out)
    }
}

/// Writes `entries` under `dir`, touching only files whose contents differ, and removes files no
/// longer present (except the checkout's own `.dsu-*` files).
fn sync(dir: &Path, entries: impl Iterator<Item = (String, Vec<u8>)>) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut keep = BTreeSet::new();
    for (rel, content) in entries {
        let path = dir.join(&rel);
        if std::fs::read(&path).ok().as_deref() != Some(&content[..]) {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, &content).with_context(|| format!("writing {}", path.display()))?;
        }
        keep.insert(rel);
    }
    let mut present = Vec::new();
    identity::collect_files(dir, dir, &mut present)?;
    for rel in present {
        if !keep.contains(&rel) {
            std::fs::remove_file(dir.join(&rel))?;
        }
    }
    Ok(())
}
