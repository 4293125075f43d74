//! `cargo dsu build --initial-exec-tls`: the program and its dependency library reach their
//! thread-locals without `__tls_get_addr` (their ELF files are marked `STATIC_TLS`), patches are
//! built without the flag (a `dlopen`ed library cannot use the static TLS block), and a patch
//! still reaches the program's statics and thread-local. The flag needs a nightly compiler: a
//! stable one refuses it, naming itself; the rest runs only where a nightly toolchain is
//! installed (`rustup toolchain install nightly`), and says so when it is not.

mod common;

use common::*;
use object::read::elf::{Dyn, ElfFile64, FileHeader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Whether the ELF file at `path` says its code uses the static TLS model (`DF_STATIC_TLS`).
fn static_tls(path: &Path) -> bool {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file = ElfFile64::<object::Endianness>::parse(&*data).expect("an ELF file");
    let endian = file.endian();
    let sections = file.elf_header().sections(endian, &*data).expect("its sections");
    let (dynamic, _) = sections.dynamic(endian, &*data).expect("its dynamic section").expect("a dynamic section");
    dynamic.iter().any(|d| {
        d.d_tag(endian) == u64::from(object::elf::DT_FLAGS)
            && d.d_val(endian) & u64::from(object::elf::DF_STATIC_TLS) != 0
    })
}

fn nightly_installed() -> bool {
    Command::new("rustc")
        .env("RUSTUP_TOOLCHAIN", "nightly")
        .arg("-vV")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("-nightly"))
}

/// `cargo dsu ARGS` in `dir` with the nightly toolchain (cargo and rustc through rustup).
fn nightly_dsu(dir: &Path, target: &Path, args: &[&str]) -> Output {
    Command::new(cargo_dsu())
        .arg("dsu")
        .args(args)
        .args(["--target-dir", target.to_str().unwrap()])
        .current_dir(dir)
        .env("RUSTUP_TOOLCHAIN", "nightly")
        // The cargo that runs this test is the pinned stable one: use rustup's, which follows
        // RUSTUP_TOOLCHAIN.
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .output()
        .expect("running cargo-dsu")
}

#[test]
fn initial_exec_tls_for_the_program_and_not_for_its_patches() {
    let target = shared_target_dir();
    let dir = target.join("scratch-tls").join("repo");
    init_repo(&dir);
    commit_tree(&dir, "statics", "base", "v1");
    // v2-tls: `hit` gains a thread-local of its own, which only the patch has.
    commit_tree(&dir, "statics", "v2-tls", "v2");
    git(&dir, &["checkout", "-q", "v1"]);

    // The pinned stable compiler takes no `-Z` flag: refused before anything is built.
    let out = dsu(&dir, &target, &["build", "--initial-exec-tls"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--initial-exec-tls needs a nightly compiler") && err.contains("this one is 1."), "{err}");

    if !nightly_installed() {
        eprintln!("no nightly toolchain: the nightly part of this test did not run");
        return;
    }
    // Its own target directory: another compiler builds everything again.
    let target = target.join("nightly");
    let out = nightly_dsu(&dir, &target, &["build", "--initial-exec-tls"]);
    assert_success(&out, "cargo +nightly dsu build --initial-exec-tls");
    let binary = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let deps: Vec<PathBuf> = std::fs::read_dir(binary.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("libdsu_deps_"))
        .collect();
    assert_eq!(deps.len(), 1, "{deps:?}");
    assert!(static_tls(&deps[0]), "the dependency library uses the initial-exec model");

    let out = nightly_dsu(&dir, &target, &["patch", "v1..v2"]);
    assert_success(&out, "cargo +nightly dsu patch v1..v2");
    let patch = String::from_utf8(out.stdout).unwrap().trim().to_string();
    // The patch has a thread-local of its own: compiled with the flag, it would be marked too.
    assert!(!static_tls(Path::new(&patch)), "a patch is dlopened: general-dynamic TLS");

    // The patch reaches the program's counter, metric, thread-local and lazy statics.
    let mut host = Host::start(&binary);
    assert_eq!(host.read_line(), "ready");
    let counts = "hits=1 total=1 requests=1 counters=1 calls=1 greeting=hello";
    assert_eq!(host.send("hit"), format!("v1 #1/1 here=1 {counts}"));
    assert_eq!(host.send(&format!("load {patch}")), "applied statics::hit::hit");
    assert_eq!(host.send("hit"), "v2 #2/2 mine=1 here=1 hits=2 total=2 requests=2 counters=1 calls=2 greeting=hello!");
    assert_eq!(host.send("hit"), "v2 #3/3 mine=2 here=2 hits=3 total=3 requests=3 counters=1 calls=3 greeting=hello!!");
    assert_eq!(host.send("read"), "hits=3 total=3 requests=3 counters=1 calls=3 greeting=hello!!");
}
