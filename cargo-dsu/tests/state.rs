//! State and types end to end: a running program holds 100,000 entries of `Entry` in a state
//! cell; patches change `Entry`'s layout and carry transformers; updates are all or nothing.

mod common;

use common::*;
use std::sync::OnceLock;

/// Tags: v1; v2 (a transformer), v3 (a derived one) from v2; v2-panic, v2-no-transformer and
/// v2-reversible (with an inverse transformer) from v1.
fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let chain = [("base", "v1"), ("v2", "v2"), ("v3", "v3")];
        let side = [("v2-panic", "v2-panic"), ("v2-no-transformer", "v2-no-transformer"), ("v2-reversible", "v2-reversible")];
        scratch_repo("state", "store", &chain, &side)
    })
}

fn patch(range: &str) -> String {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", range]);
    assert_success(&out, &format!("cargo dsu patch {range}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const ENTRIES: u32 = 100_000;
/// Sum of `i % 1000` for i in 0..100,000.
const HITS: u64 = 100 * 499_500;

#[test]
fn entries_survive_layout_changes_and_a_failed_transformer_changes_nothing() {
    let mut host = Host::start(&repo().binary);
    assert_eq!(host.send(&format!("fill {ENTRIES}")), ENTRIES.to_string());
    let v1_summary = format!("v1 entries={ENTRIES} hits={HITS} legacy=50000");
    assert_eq!(host.send("summary"), v1_summary);

    // A transformer that panics halfway: nothing changes, version 1 keeps serving.
    let bad = patch("v1..v2-panic");
    let r = host.send(&format!("apply {bad}"));
    assert!(r.starts_with("refused:"), "{r}");
    assert!(r.contains("transformer of state cell `store`") && r.contains("cannot upgrade k50000"), "{r}");
    assert_eq!(host.send("summary"), v1_summary, "every entry intact");
    assert_eq!(host.send("get k12345"), "v1 k12345 hits=345 legacy=false");
    assert_eq!(host.send("status"), "applied=0 last_refusal=true");
    // Queued with `dsu::load`, which returns before the update applies: its caller learns that
    // it was abandoned from the report (the update point at the next command applies it).
    assert_eq!(host.send(&format!("queue {bad}")), "queued");
    let r = host.send("outcome");
    assert!(r.starts_with("abandoned:") && r.contains("cannot upgrade k50000"), "{r}");
    assert_eq!(host.send("summary"), v1_summary, "every entry intact");

    // An update reached while the caller holds the cell's lock, inside the cell's scope: refused
    // at once, naming the thread that holds the cell, not a deadlock, and nothing changes.
    let v2 = patch("v1..v2");
    let r = host.send(&format!("apply-locked {v2}"));
    assert!(r.starts_with("refused:") && r.contains("` holds a state cell"), "{r}");
    assert_eq!(host.send("summary"), v1_summary, "every entry intact");

    // Entry gains `tags`, loses `legacy`, `hits` widens: every entry is carried over.
    assert_eq!(host.send(&format!("apply {v2}")), "applied cells=store routed=store::entries::describe");
    assert_eq!(host.send("summary"), format!("v2 entries={ENTRIES} hits={HITS} legacy=50000"));
    assert_eq!(host.send("get k12344"), "v2 k12344 hits=344 tags=[\"legacy\"]");
    assert_eq!(host.send("get k12345"), "v2 k12345 hits=345 tags=[]");
    assert_eq!(host.send(&format!("fill {}", ENTRIES + 1)), (ENTRIES + 1).to_string());

    // Chained: v2 -> v3 with a derived transformer (a new field from Default).
    let v3 = patch("v2..v3");
    assert_eq!(host.send(&format!("apply {v3}")), "applied cells=store routed=store::entries::describe");
    assert_eq!(host.send("get k12344"), "v3 k12344 hits=344 tags=[] score=0", "new field from Default");
    assert_eq!(host.send("get k100000"), "v3 k100000 hits=0 tags=[] score=0");
    assert_eq!(host.send(&format!("fill {}", ENTRIES + 2)), (ENTRIES + 2).to_string());
    assert_eq!(host.send("get k12344"), "v3 k12344 hits=344 tags=[] score=1", "v3's own code runs");
    assert_eq!(host.send("summary"), format!("v3 entries={} hits={} legacy=0", ENTRIES + 2, HITS + 1));
    assert_eq!(host.send("status"), "applied=2 last_refusal=true");
}

#[test]
fn type_change_without_transformer_is_refused_with_a_stub() {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", "v1..v2-no-transformer"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("src/main.rs:") && err.contains("type `store::Entry` changed and no transformer"), "{err}");
    assert!(err.contains("#[dsu::transform(from = dsu_old::Entry)]"), "stub printed: {err}");
    assert!(err.contains("tags: todo!(\"new field\")"), "{err}");
}

#[test]
fn rollback_restores_code_and_state_through_inverse_transformers_and_is_refused_without() {
    let mut host = Host::start(&repo().binary);
    assert_eq!(host.send("fill 1000"), "1000");
    let v1_summary = "v1 entries=1000 hits=499500 legacy=500";
    assert_eq!(host.send("summary"), v1_summary);
    assert!(host.send("rollback").starts_with("refused: rollback refused: no patch is applied"));

    // The report says beforehand which patches can roll back with their state.
    let r = repo();
    let report = |range: &str| {
        let out = dsu(&r.dir, &r.target, &["patch", range, "--dry-run"]);
        assert_success(&out, range);
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(report("v1..v2-reversible").contains("reversible: inverse transformers for every cell"));
    let not = report("v1..v2");
    assert!(not.contains("not reversible: no inverse transformer") && not.contains("store::STORE"), "{not}");

    // A patch with inverse transformers rolls back with its state: `legacy` comes back from the
    // tags the forward transformer made of it, code returns to version 1.
    let reversible = patch("v1..v2-reversible");
    assert_eq!(host.send(&format!("apply {reversible}")), "applied cells=store routed=store::entries::describe");
    assert_eq!(host.send("get k12"), "v2 k12 hits=12 tags=[\"legacy\"]");
    assert_eq!(host.send("rollback"), "rolled back cells=store");
    assert_eq!(host.send("summary"), v1_summary);
    assert_eq!(host.send("get k12"), "v1 k12 hits=12 legacy=true");
    assert_eq!(host.send("get k13"), "v1 k13 hits=13 legacy=false");
    assert_eq!(host.send("fill 1001"), "1001", "version 1's code runs on the restored state");

    // A rollback is verified like a patch: the program runs version 1 again, so a patch made
    // for version 2 is refused, and the one made for version 1 applies again.
    let v3 = patch("v2..v3");
    let refused = host.send(&format!("apply {v3}"));
    assert!(refused.contains("was built for another revision"), "{refused}");

    // Without inverse transformers, code could roll back but state could not: refused, naming
    // the cell, and version 2 keeps serving.
    let v2 = patch("v1..v2");
    assert_eq!(host.send(&format!("apply {v2}")), "applied cells=store routed=store::entries::describe");
    let refused = host.send("rollback");
    assert!(refused.starts_with("refused: rollback refused"), "{refused}");
    assert!(refused.contains("state cell `store`") && refused.contains("no inverse"), "{refused}");
    assert_eq!(host.send("summary"), "v2 entries=1001 hits=499500 legacy=501");
    assert_eq!(host.send("status"), "applied=3 last_refusal=true");
}
