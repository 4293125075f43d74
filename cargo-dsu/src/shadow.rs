//! Shadow trees: the program's build compiles a crate whose statics it exports from a copy of
//! the source root in which only the files that need code inserted are rewritten, and every other
//! entry is a symbolic link to the original (see `compare/statics.rs` for what is inserted).
//!
//! The user's files are never written. rustc runs in the shadow's image of its working directory
//! with `--remap-path-prefix <shadow>=<source root>`, so the paths in panics, debug info and
//! diagnostics are the user's; the inserted code stays on the lines it belongs to, so line
//! numbers are too. rustc's dep-info names the files it read as it opened them: relative ones
//! (cargo passes workspace members' roots relative to the workspace) resolve against cargo's own
//! working directory, the original; absolute ones under the shadow are rewritten to the source
//! root after rustc ran ([`Shadow::fix_dep_info`]). So cargo tracks the user's files, and rebuilds
//! when they change.
//!
//! Only directories on the way to a rewritten file are real directories in the shadow; any other
//! directory is one link. Building the shadow again updates it in place: rewritten files are
//! written only when their contents change, links that are no longer wanted go.

use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A shadow of `source_root` at `root`.
#[derive(Debug)]
pub struct Shadow {
    pub root: PathBuf,
    pub source_root: PathBuf,
}

impl Shadow {
    /// Makes `root` a shadow of `source_root` in which the files `rewritten` (relative to the
    /// source root) hold the given text.
    pub fn prepare(root: &Path, source_root: &Path, rewritten: &BTreeMap<PathBuf, String>) -> Result<Shadow> {
        let mut real_dirs: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
        for file in rewritten.keys() {
            real_dirs.extend(file.ancestors().skip(1).map(Path::to_path_buf));
        }
        for dir in &real_dirs {
            let (shadow_dir, original_dir) = (root.join(dir), source_root.join(dir));
            make_real_dir(&shadow_dir)?;
            let mut originals = BTreeSet::new();
            for entry in std::fs::read_dir(&original_dir).with_context(|| format!("listing {}", original_dir.display()))? {
                let name = entry?.file_name();
                let rel = dir.join(&name);
                originals.insert(name.clone());
                if !real_dirs.contains(&rel) && !rewritten.contains_key(&rel) {
                    make_link(&shadow_dir.join(&name), &original_dir.join(&name))?;
                }
            }
            // Whatever the source root no longer has goes (a deleted file must not be found).
            for entry in std::fs::read_dir(&shadow_dir)? {
                let entry = entry?;
                let name = entry.file_name();
                if !originals.contains(&name) && !rewritten.contains_key(&dir.join(&name)) {
                    remove(&entry.path())?;
                }
            }
        }
        for (rel, text) in rewritten {
            let path = root.join(rel);
            // Never write through a link: it points at the user's file.
            if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
                remove(&path)?;
            }
            crate::build::write_if_changed(&path, text.as_bytes())?;
        }
        Ok(Shadow { root: root.to_path_buf(), source_root: source_root.to_path_buf() })
    }

    /// `path` under the source root moved to the shadow; other paths as they are.
    pub fn map(&self, path: &Path) -> PathBuf {
        match path.strip_prefix(&self.source_root) {
            Ok(rel) => self.root.join(rel),
            Err(_) => path.to_path_buf(),
        }
    }

    /// `--remap-path-prefix`: what the compiler records of the shadow's paths names the source
    /// root's.
    pub fn remap_arg(&self) -> String {
        format!("--remap-path-prefix={}={}", self.root.display(), self.source_root.display())
    }

    /// Rewrites the paths under the shadow in the dep-info file `path` to the source root's.
    pub fn fix_dep_info(&self, path: &Path) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
        let (from, to) = (self.root.display().to_string(), self.source_root.display().to_string());
        if text.contains(&from) {
            std::fs::write(path, text.replace(&from, &to)).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

fn make_real_dir(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok_and(|m| !m.is_dir()) {
        remove(dir)?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn make_link(link: &Path, target: &Path) -> Result<()> {
    match std::fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() && std::fs::read_link(link).is_ok_and(|t| t == target) => return Ok(()),
        Ok(_) => remove(link)?,
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link).with_context(|| format!("linking {}", link.display()))
}

/// Removes a file, a link (never what it points at) or a directory of the shadow.
fn remove(path: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
    .with_context(|| format!("removing {}", path.display()))
}

/// Where rustc writes the dep-info of an invocation: `--emit=dep-info=<path>`, or
/// `<out-dir>/<crate name><extra-filename>.d`.
pub fn dep_info_path(args: &[String]) -> Option<PathBuf> {
    let emit: Vec<&str> = crate::wrapper::flag_values(args, "--emit").flat_map(|v| v.split(',')).collect();
    for kind in &emit {
        if let Some(p) = kind.strip_prefix("dep-info=") {
            return Some(PathBuf::from(p));
        }
    }
    if !emit.contains(&"dep-info") {
        return None;
    }
    let out_dir = crate::wrapper::arg_value(args, "--out-dir")?;
    let name = crate::wrapper::arg_value(args, "--crate-name")?;
    let extra = crate::wrapper::flag_values(args, "-C")
        .find_map(|v| v.strip_prefix("extra-filename="))
        .unwrap_or("");
    Some(Path::new(out_dir).join(format!("{name}{extra}.d")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("dsu-shadow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn rewritten_files_are_copies_and_everything_else_links_to_the_source() {
        let dir = scratch("tree");
        let src = dir.join("src-root");
        for (rel, text) in [("Cargo.toml", "[package]"), ("src/main.rs", "mod a;"), ("src/a.rs", "static X: u8 = 0;"), ("src/b/c.rs", ""), ("README.md", "hi")] {
            std::fs::create_dir_all(src.join(rel).parent().unwrap()).unwrap();
            std::fs::write(src.join(rel), text).unwrap();
        }
        let shadow_root = dir.join("shadow");
        let rewritten = BTreeMap::from([(PathBuf::from("src/a.rs"), "#[x] static X: u8 = 0;".to_string())]);
        let shadow = Shadow::prepare(&shadow_root, &src, &rewritten).unwrap();
        let link = |rel: &str| std::fs::symlink_metadata(shadow_root.join(rel)).unwrap().file_type().is_symlink();
        assert!(link("Cargo.toml") && link("README.md") && link("src/main.rs") && link("src/b"), "links");
        assert!(!link("src") && !link("src/a.rs"), "the way to the rewritten file is real");
        assert_eq!(std::fs::read_to_string(shadow_root.join("src/a.rs")).unwrap(), "#[x] static X: u8 = 0;");
        assert_eq!(std::fs::read_to_string(src.join("src/a.rs")).unwrap(), "static X: u8 = 0;", "source untouched");
        assert_eq!(std::fs::read_to_string(shadow_root.join("src/b/c.rs")).unwrap(), "");

        // Again, with another file rewritten and one deleted: `a.rs` becomes a link again (its
        // original is never written through it), `b` a real directory, and the deleted file goes.
        std::fs::remove_file(src.join("README.md")).unwrap();
        let rewritten = BTreeMap::from([(PathBuf::from("src/b/c.rs"), "// c".to_string())]);
        Shadow::prepare(&shadow_root, &src, &rewritten).unwrap();
        assert!(link("src/a.rs") && !link("src/b") && !link("src/b/c.rs"));
        assert_eq!(std::fs::read_to_string(src.join("src/a.rs")).unwrap(), "static X: u8 = 0;");
        assert_eq!(std::fs::read_to_string(src.join("src/b/c.rs")).unwrap(), "", "source untouched");
        assert!(std::fs::symlink_metadata(shadow_root.join("README.md")).is_err(), "deleted file gone");

        // The dep-info names the source root's files.
        let d = dir.join("app.d");
        let shadowed = shadow.map(&src.join("src/a.rs"));
        std::fs::write(&d, format!("app: {}\n{}:\n", shadowed.display(), shadowed.display())).unwrap();
        shadow.fix_dep_info(&d).unwrap();
        let fixed = std::fs::read_to_string(&d).unwrap();
        assert_eq!(fixed.matches(&src.join("src/a.rs").display().to_string()).count(), 2, "{fixed}");
        assert!(!fixed.contains(&shadow_root.display().to_string()), "{fixed}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn dep_info_is_where_cargo_reads_it() {
        let args: Vec<String> = ["--crate-name", "app", "--emit=dep-info,link", "-C", "extra-filename=-abc", "--out-dir", "/t/deps"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(dep_info_path(&args), Some(PathBuf::from("/t/deps/app-abc.d")));
        let args: Vec<String> = ["--emit", "link,dep-info=/x/y.d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(dep_info_path(&args), Some(PathBuf::from("/x/y.d")));
        assert_eq!(dep_info_path(&["--emit=link".to_string()]), None);
    }
}
