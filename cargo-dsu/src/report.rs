//! Step 6 of the pipeline: the report of `cargo dsu patch`, for people and as JSON.

use crate::compare::{self, Report};
use anyhow::Result;
use std::path::Path;

/// The human-readable report.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut section = |title: &str, items: &[compare::ItemRef], note: &str| {
        if items.is_empty() {
            return;
        }
        let _ = writeln!(s, "{title} ({}):{note}", items.len());
        for i in items {
            let _ = writeln!(s, "    {}  ({}:{})", i.path, i.file, i.line);
        }
    };
    section("functions changed", &r.functions_changed, "");
    section("functions added", &r.functions_added, "");
    section("functions removed", &r.functions_removed, " (old callers keep the old code)");
    section(
        "changed functions that are not updateable",
        &r.non_updateable_changed,
        "\n    callers inside the patch see the new version; callers in the running program keep the old one",
    );
    section("types changed", &r.types_changed, "");
    let irreversible: Vec<&str> = r.irreversible_cells().map(|c| c.path.as_str()).collect();
    let cells_note = if irreversible.is_empty() {
        " (at the update point, all or none; reversible: inverse transformers for every cell)".to_string()
    } else {
        format!(
            " (at the update point, all or none; not reversible: no inverse transformer \
             `#[dsu::transform(to = …)]` for {}, so a rollback will be refused)",
            irreversible.join(", ")
        )
    };
    section(
        "transformers compiled",
        &r.transformers,
        " (new or changed since the older revision; those of earlier releases stay out)",
    );
    section("state cells transformed", &r.cells_transformed, &cells_note);
    section(
        "functions routed",
        &r.functions_routed,
        " (their signature mentions a changed type: callers in the running program keep the old version)",
    );
    section(
        "signature changed: routed",
        &r.signatures_changed,
        " (a new function to the running program: code running the old version keeps calling it)",
    );
    section(
        "carried: calls a function whose signature changed",
        &r.functions_carried,
        " (its code did not change; the patch switches it so its calls reach the new version)",
    );
    section(
        "traits whose method set changed",
        &r.traits_changed,
        " (no trait object of them is held where the new code could meet it)",
    );
    section(
        "statics whose initial value changed",
        &r.statics_kept,
        " (the patch shares the running program's instance, which keeps its value)",
    );
    for refusal in &r.refusals {
        let _ = writeln!(s, "refused: {}:{}: {}", refusal.file, refusal.line, refusal.reason);
    }
    if s.is_empty() {
        s.push_str("no changes\n");
    }
    s
}

/// The report as a JSON value, with the binary it is for and the patch's path when one is built.
pub fn json(r: &Report, bin: &str, patch: Option<&Path>) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    v["bin"] = serde_json::json!(bin);
    v["patch"] = serde_json::json!(patch.map(|p| p.display().to_string()));
    Ok(v)
}
