//! Part of the compare step: the program and every patch share one dependency library, so a
//! patch cannot bring other dependencies, versions or features. A change to the dependency
//! tables of a package of the updateable set, to the workspace's shared dependency table, or to
//! a registry package of the lock file is refused. A version bump of a set package, or the lock
//! entries of the set's own packages, are not dependency changes.

use super::{Refusal, Report};
use anyhow::{Context, Result};
use std::path::Path;

const DEPENDENCY_TABLES: &[&str] = &["dependencies", "build-dependencies", "features"];
const DEPENDENCIES_CHANGED: &str = "dependencies changed: the shared dependency library would \
    differ; rebuild with `cargo dsu build` and restart";

/// Compares the manifests of the set's packages (`package_dirs`, relative to the roots) and the
/// workspace's (`workspace_dir`) manifest and lock file between `old_root` and `new_root`.
pub fn refuse_changed_dependencies(
    package_dirs: &[&Path],
    workspace_dir: &Path,
    old_root: &Path,
    new_root: &Path,
    report: &mut Report,
) -> Result<()> {
    for dir in package_dirs {
        let manifest = dir.join("Cargo.toml");
        let (old, new) = (read_toml(&old_root.join(&manifest))?, read_toml(&new_root.join(&manifest))?);
        if let Some(table) = changed_dependency_table(&old.1, &new.1) {
            refuse_at_table(&manifest, &new.0, &table, report);
        }
    }
    let manifest = workspace_dir.join("Cargo.toml");
    if package_dirs.iter().all(|d| *d != workspace_dir) {
        let (old, new) = (read_toml(&old_root.join(&manifest))?, read_toml(&new_root.join(&manifest))?);
        let shared = |t: &toml::Table| t.get("workspace").and_then(|w| w.get("dependencies")).cloned();
        if shared(&old.1) != shared(&new.1) {
            refuse_at_table(&manifest, &new.0, "workspace.dependencies", report);
        }
    }
    let lock = workspace_dir.join("Cargo.lock");
    let (old_lock, new_lock) = (registry_packages(&old_root.join(&lock)), registry_packages(&new_root.join(&lock)));
    if old_lock != new_lock {
        report.refusals.push(Refusal {
            file: lock.display().to_string(),
            line: 1,
            reason: DEPENDENCIES_CHANGED.into(),
        });
    }
    Ok(())
}

fn read_toml(path: &Path) -> Result<(String, toml::Table)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table = text.parse().with_context(|| format!("parsing {}", path.display()))?;
    Ok((text, table))
}

/// The first dependency table (`dependencies`, `build-dependencies`, `features`, or a
/// `target.*` one) that differs.
fn changed_dependency_table(old: &toml::Table, new: &toml::Table) -> Option<String> {
    for table in DEPENDENCY_TABLES {
        if old.get(*table) != new.get(*table) {
            return Some(table.to_string());
        }
    }
    let target_deps = |t: &toml::Table| -> Vec<(String, Option<toml::Value>, Option<toml::Value>)> {
        let Some(targets) = t.get("target").and_then(|v| v.as_table()) else { return Vec::new() };
        targets
            .iter()
            .map(|(k, v)| (k.clone(), v.get("dependencies").cloned(), v.get("build-dependencies").cloned()))
            .collect()
    };
    (target_deps(old) != target_deps(new)).then(|| "target".to_string())
}

fn refuse_at_table(manifest: &Path, text: &str, table: &str, report: &mut Report) {
    let header = format!("[{table}");
    let line = text.lines().position(|l| l.trim_start().starts_with(&header)).map_or(1, |i| i + 1);
    report.refusals.push(Refusal {
        file: manifest.display().to_string(),
        line,
        reason: DEPENDENCIES_CHANGED.into(),
    });
}

/// The lock file's packages that come from a registry (path packages, the program's own, have
/// no `source`), as TOML values; its whole text when it does not parse; `None` without a lock
/// file.
fn registry_packages(lock: &Path) -> Option<Vec<toml::Value>> {
    let text = std::fs::read_to_string(lock).ok()?;
    let Ok(table) = text.parse::<toml::Table>() else { return Some(vec![toml::Value::String(text)]) };
    let packages = table.get("package").and_then(|p| p.as_array()).cloned().unwrap_or_default();
    Some(packages.into_iter().filter(|p| p.get("source").is_some()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (rel, text) in files {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    const LOCK: &str = "version = 3\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\n\
        [[package]]\nname = \"log\"\nversion = \"0.4.1\"\nsource = \"registry+https://example.invalid\"\n";

    #[test]
    fn lock_entries_of_the_programs_own_packages_are_no_dependency_change() {
        let dir = std::env::temp_dir().join(format!("dsu-deps-check-{}", std::process::id()));
        let (old, new) = (dir.join("old"), dir.join("new"));
        let manifest = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n[dependencies]\nlog = \"0.4\"\n";
        write(&old, &[("Cargo.toml", manifest), ("Cargo.lock", LOCK)]);
        let bumped = manifest.replace("0.1.0", "0.1.1");
        write(&new, &[("Cargo.toml", &bumped), ("Cargo.lock", &LOCK.replace("\"0.1.0\"", "\"0.1.1\""))]);
        let mut r = Report::default();
        refuse_changed_dependencies(&[Path::new("")], Path::new(""), &old, &new, &mut r).unwrap();
        assert!(r.refusals.is_empty(), "{:?}", r.refusals);

        write(&new, &[("Cargo.lock", &LOCK.replace("0.4.1", "0.4.2"))]);
        refuse_changed_dependencies(&[Path::new("")], Path::new(""), &old, &new, &mut r).unwrap();
        assert_eq!(r.refusals.len(), 1, "{:?}", r.refusals);
        assert_eq!(r.refusals[0].file, "Cargo.lock");

        let mut r = Report::default();
        write(&new, &[("Cargo.lock", LOCK), ("Cargo.toml", &format!("{manifest}tokio = \"1\"\n"))]);
        refuse_changed_dependencies(&[Path::new("")], Path::new(""), &old, &new, &mut r).unwrap();
        assert_eq!((r.refusals.len(), r.refusals[0].line), (1, 4), "{:?}", r.refusals);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
