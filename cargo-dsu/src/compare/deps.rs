//! Dependency changes. The program and every patch share one dependency library: a patch cannot
//! bring other dependencies, versions or features.

use super::{CrateUnit, Refusal, Report};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::path::Path;

const DEPENDENCY_TABLES: &[&str] = &["dependencies", "build-dependencies", "features"];
const DEPENDENCIES_CHANGED: &str = "dependencies changed: the shared dependency library would \
    differ; rebuild with `cargo dsu build` and restart";

/// Refuses a change of the dependency tables of the manifest of any package of `units` (a
/// package present at both revisions), or of the lock file at the checkout root.
pub fn refuse_changed_dependencies(
    units: &[CrateUnit],
    old_root: &Path,
    new_root: &Path,
    report: &mut Report,
) -> Result<()> {
    let packages: BTreeSet<&Path> = units.iter().map(|u| u.package_dir.as_path()).collect();
    for package in packages {
        let manifest = package.join("Cargo.toml");
        if old_root.join(&manifest).is_file() && new_root.join(&manifest).is_file() {
            refuse_changed_manifest(&manifest, old_root, new_root, report)?;
        }
    }
    let (old_lock, new_lock) =
        (std::fs::read(old_root.join("Cargo.lock")).ok(), std::fs::read(new_root.join("Cargo.lock")).ok());
    if let (Some(a), Some(b)) = (old_lock, new_lock) {
        if a != b {
            report.refusals.push(Refusal {
                file: "Cargo.lock".into(),
                line: 1,
                reason: DEPENDENCIES_CHANGED.into(),
            });
        }
    }
    Ok(())
}

/// Refuses a change of the dependency tables of `manifest` (relative to both roots), at the
/// line of the first changed table.
fn refuse_changed_manifest(
    manifest: &Path,
    old_root: &Path,
    new_root: &Path,
    report: &mut Report,
) -> Result<()> {
    let read = |root: &Path| -> Result<(String, toml::Table)> {
        let path = root.join(manifest);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let table = text.parse().with_context(|| format!("parsing {}", path.display()))?;
        Ok((text, table))
    };
    let (_, old) = read(old_root)?;
    let (new_text, new) = read(new_root)?;
    let target_deps = |t: &toml::Table| -> Vec<(String, Option<toml::Value>)> {
        let Some(targets) = t.get("target").and_then(|v| v.as_table()) else { return Vec::new() };
        targets.iter().map(|(k, v)| (k.clone(), v.get("dependencies").cloned())).collect()
    };
    let mut changed: Option<&str> =
        DEPENDENCY_TABLES.iter().copied().find(|table| old.get(*table) != new.get(*table));
    if changed.is_none() && target_deps(&old) != target_deps(&new) {
        changed = Some("target");
    }
    if let Some(table) = changed {
        let header = format!("[{table}");
        let line = new_text.lines().position(|l| l.trim_start().starts_with(&header)).map_or(1, |i| i + 1);
        let file = manifest.display().to_string();
        report.refusals.push(Refusal { file, line, reason: DEPENDENCIES_CHANGED.into() });
    }
    Ok(())
}
