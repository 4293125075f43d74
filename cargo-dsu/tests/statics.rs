//! Plain statics end to end: a program keeps state in a `static` counter, a `LazyLock` that
//! registers a metric once, a `thread_local!`, a `lazy_static!` and statics of functions (of the
//! updateable one, and of a plain one it calls), all in its library crate; patches of the updateable function that uses them share the program's
//! instances. A patch that would need another type of one is refused, naming it.

mod common;

use cargo_dsu::recipe::{self, PatchOptions};
use common::*;
use std::process::Output;
use std::sync::OnceLock;

/// Tags: v1, v2 (`hit`'s body), v3 (adds a static), v4 (`hit` again, using v3's static); from
/// v1: bad-type (a static's type changes), bad-alias (v2's `hit`, and the type behind a static's
/// alias changes).
fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let chain = [("base", "v1"), ("v2", "v2"), ("v3", "v3"), ("v4", "v4")];
        scratch_repo("statics", "statics", &chain, &[("bad-type", "bad-type"), ("bad-alias", "bad-alias")])
    })
}

fn patch(range: &str) -> Output {
    let r = repo();
    dsu(&r.dir, &r.target, &["patch", range])
}

fn built_patch(range: &str) -> String {
    let out = patch(range);
    assert_success(&out, &format!("cargo dsu patch {range}"));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn patched_code_counts_in_the_programs_statics() {
    let r = repo();
    let mut host = Host::start(&r.binary);
    assert_eq!(host.read_line(), "ready");
    for n in 1..=3 {
        let counts = format!("hits={n} total={n} requests={n} counters=1 calls={n} greeting=hello");
        assert_eq!(host.send("hit"), format!("v1 #{n}/{n} here={n} {counts}"));
    }
    assert_eq!(host.send("read"), "hits=3 total=3 requests=3 counters=1 calls=3 greeting=hello");

    // Only `hit`'s body changes. Its patched code increments the program's counter, finds the
    // metric the program registered (a second registration would panic), the main thread's
    // thread-local, the program's `lazy_static!` and the statics of its functions; the
    // program's own code (`read`, never patched) sees every increment. Only the static that a
    // macro writes (`here`) starts again in the patch's own copy.
    let out = patch("v1..v2");
    assert_success(&out, "cargo dsu patch v1..v2");
    // A static a macro writes is not seen: the patch has its own copy, and says so.
    let err = stderr(&out);
    assert!(err.contains("Per copy statics::hit::hit::HERE: a static a macro writes"), "{err}");
    assert_eq!(err.matches("Per copy").count(), 1, "{err}");
    let v2 = String::from_utf8(out.stdout).unwrap();
    assert_eq!(host.send(&format!("load {}", v2.trim())), "applied statics::hit::hit");
    assert_eq!(host.send("hit"), "v2 #4/4 here=1 hits=4 total=4 requests=4 counters=1 calls=4 greeting=hello!");
    assert_eq!(host.send("hit"), "v2 #5/5 here=2 hits=5 total=5 requests=5 counters=1 calls=5 greeting=hello!!");
    assert_eq!(host.send("read"), "hits=5 total=5 requests=5 counters=1 calls=5 greeting=hello!!");

    // A static the newer revision adds is the patch's own, starting from its initial value.
    assert_eq!(host.send(&format!("load {}", built_patch("v2..v3"))), "applied statics::hit::hit");
    assert_eq!(host.send("hit"), "v3 #6/6 here=1 since=1 hits=6 total=6 requests=6 counters=1 calls=6 greeting=hello!!!");
    assert_eq!(host.send("read"), "hits=6 total=6 requests=6 counters=1 calls=6 greeting=hello!!!");

    // A later patch cannot reach the instance that patch holds: refused, naming it, rather than
    // given a copy of its own.
    let out = patch("v3..v4");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("src/hit.rs:") && err.contains("static `statics::hit::SINCE_V3` was added by a patch"), "{err}");
    assert_eq!(host.send("hit"), "v3 #7/7 here=2 since=2 hits=7 total=7 requests=7 counters=1 calls=7 greeting=hello!!!!");
}

#[test]
fn a_static_whose_type_changes_is_refused_naming_it() {
    let out = patch("v1..bad-type");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("src/counters.rs:6"), "{err}");
    assert!(err.contains("static `statics::counters::HITS` changed type (`AtomicU64` to `std::sync::atomic::AtomicU32`)"), "{err}");

    // Built without the compare step, the patch build refuses it too: the program's build
    // recorded the static's type.
    let r = repo();
    let record = recipe::BuildRecord::load(&recipe::BuildRecord::record_path(r.binary.parent().unwrap(), "statics")).unwrap();
    let src = r.target.join("scratch-statics").join("bad-type");
    write_tree(&src, "statics", "bad-type");
    let out = r.target.join("scratch-statics").join("bad-type.so");
    let e = recipe::build_patch(&record, &PatchOptions::new(&src, record.identity(), &out).unwrap()).unwrap_err();
    let text = format!("{e:#}");
    assert!(text.contains("src/counters.rs:6: static `statics::counters::HITS` changed type"), "{text}");
}

#[test]
fn a_type_changed_behind_an_alias_does_not_compile_into_a_patch() {
    // The static's declaration reads the same; the type its alias names does not. The compare
    // step cannot tell from syntax, the layout the program's build recorded can.
    let out = patch("v1..bad-alias");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("dsu: static `statics::counters::TOTAL` has another type in this patch than in the running program (size 8, alignment 8 there)"), "{err}");
}
