//! Transformers through a release stream, and types of every visibility.
//!
//! The `stream` fixture is a ledger whose state lives in cells of types private at the crate
//! root, `pub(super)` (with a `pub(self)` field), `pub(crate)` in a private module of a private
//! module (all in the binary), private at the library's root, `pub(crate)` in a private module of
//! the library with its cell in a sibling module, and public in a private module of the library,
//! held by the binary. Release r1 changes every one of them; r2 changes code only, with r1's
//! transformers still in the source; r3 changes the binary's `Entry` again with a transformer of
//! its own, and the library's `Counter`, derived by the attribute r1 wrote.

mod common;

use common::*;
use std::sync::OnceLock;

/// Tags r0 to r3, one after the other; the program built at r0.
fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| scratch_repo("stream", "stream", &[("base", "r0"), ("r1", "r1"), ("r2", "r2"), ("r3", "r3")], &[]))
}

fn patch(range: &str) -> String {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", range]);
    assert_success(&out, &format!("cargo dsu patch {range}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Applies a patch; the cells it transformed, sorted.
fn apply(host: &mut Host, patch: &str) -> Vec<String> {
    let r = host.send(&format!("apply {patch}"));
    let cells = r.strip_prefix("applied cells=").unwrap_or_else(|| panic!("{patch}: {r}"));
    let mut cells: Vec<String> = cells.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
    cells.sort();
    cells
}

/// Every cell, as r0 fills three of each.
const R0: &str = "r0 entries=e0:0,e1:1,e2:2 accounts=0:0,1:10,2:20 notes=n,nn,nnn shapes=3,4,5 \
                  counters=0,1,2 tallies=t0:0,t1:1,t2:2";
/// Every cell after r1's transformers, as r1 and r2 show them (`@` is the release): entries tagged
/// by an odd count (a function, private at the crate root), accounts not frozen (derived, a
/// `pub(super)` type with a `pub(self)` field), notes with their length (a function of a
/// `pub(crate)` type two private modules deep), shapes without a colour (derived, the library's
/// public type of a private module), counters with no step (derived, private at the library's
/// root), tallies upper-cased and a hundred times bigger (a function of the library's
/// `pub(crate)` type, held in a sibling module).
const R1: &str = "@ entries=e0:0[],e1:1[\"odd\"],e2:2[] accounts=0:0:false,1:10:false,2:20:false \
                  notes=n:1,nn:2,nnn:3 shapes=3\"\",4\"\",5\"\" counters=0+0,1+0,2+0 \
                  tallies=T0:0,T1:100,T2:200";
const ALL_CELLS: [&str; 6] = ["accounts", "counters", "entries", "notes", "shapes", "tallies"];

#[test]
fn one_process_follows_the_stream_with_every_transformer_left_in_the_source() {
    let mut host = Host::start(&repo().binary);
    assert_eq!(host.send("fill 3"), "filled");
    assert_eq!(host.send("show"), R0);

    // r0..r1: every type changes, whatever its visibility.
    assert_eq!(apply(&mut host, &patch("r0..r1")), ALL_CELLS);
    assert_eq!(host.send("show"), R1.replace('@', "r1"));

    // r1..r2: code only; r1's transformers are in the source and stay out of the patch.
    assert_eq!(apply(&mut host, &patch("r1..r2")), Vec::<String>::new());
    assert_eq!(host.send("show"), R1.replace('@', "r2"));

    // r2..r3: `Entry` changes again, moved by `v2_to_v3` alone (r1's `upgrade` and `downgrade`
    // would not compile against r2's `Entry`); `Counter` is derived again.
    assert_eq!(apply(&mut host, &patch("r2..r3")), ["counters", "entries"]);
    let r3 = R1
        .replace('@', "r3")
        .replace("e0:0[],e1:1[\"odd\"],e2:2[]", "e0:0[]:7,e1:1[\"odd\"]:8,e2:2[]:7")
        .replace("counters=0+0,1+0,2+0", "counters=0+0<0,1+0<0,2+0<0");
    assert_eq!(host.send("show"), r3);
    // r3's own code fills them.
    assert_eq!(host.send("fill 1"), "filled");
    let shown = host.send("show");
    assert!(shown.contains("e2:2[]:7,e0:0[]:1 ") && shown.contains("2+0<0,0+1<9 "), "{shown}");
}

#[test]
fn a_fresh_process_goes_from_r0_to_r2_in_one_patch() {
    let mut host = Host::start(&repo().binary);
    assert_eq!(host.send("fill 3"), "filled");
    assert_eq!(apply(&mut host, &patch("r0..r2")), ALL_CELLS);
    assert_eq!(host.send("show"), R1.replace('@', "r2"));
}

#[test]
fn a_patch_across_both_changes_of_entry_is_refused_naming_both_transformers() {
    let r = repo();
    let out = dsu(&r.dir, &r.target, &["patch", "r0..r3"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("type `stream::Entry` changed, and 2 transformers of it are new"), "{err}");
    assert!(err.contains("`stream::upgrade` (src/main.rs:") && err.contains("`stream::v2_to_v3` (src/main.rs:"), "{err}");
    assert!(err.contains("Apply the releases in steps"), "{err}");
    // `Counter`'s derived transformer spans both of its changes: the one refusal is `Entry`'s.
    assert_eq!(err.lines().filter(|l| l.starts_with("refused: ")).count(), 1, "{err}");
}
