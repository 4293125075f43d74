//! End to end: a host and patches built by the recipe from versions of a small program; the host
//! runs as a child process and loads patches at its update points.

mod common;

use cargo_dsu::recipe::{self, BuildOptions, BuildRecord, PatchOptions};
use common::*;
use dsu_abi::BuildIdentity;
use std::path::PathBuf;
use std::sync::OnceLock;

struct Built {
    host: BuildRecord,
    /// v1 -> v2: every updateable function changed.
    v2: PathBuf,
    /// v1 -> v3: `greet` changes signature.
    v3_signature: PathBuf,
    /// v1 -> v2 with the `hits` cell narrowed to `AtomicU32` and no transform of it: built
    /// without the compare step, which would refuse it.
    v2_cell_type: PathBuf,
    scratch: PathBuf,
}

/// Builds the host (v1) and the patches once for all tests of this file.
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = shared_target_dir();
        let scratch = target.join("scratch-core");
        let app = scratch.join("app");
        write_tree(&app, "app", "base");
        let mut opts = BuildOptions::new(app.join("Cargo.toml"), cargo_dsu());
        opts.target_dir = Some(target.clone());
        let host = recipe::build(&opts).expect("building the host").records.remove(0);

        let patch = |version: &str, name: &str| {
            let src = scratch.join(name);
            write_tree(&src, "app", version);
            let out = scratch.join(format!("{name}.so"));
            recipe::build_patch(&host, &PatchOptions::new(&src, host.identity(), &out).unwrap())
                .unwrap_or_else(|e| panic!("building patch {name}: {e:#}"))
        };
        let v2 = patch("v2", "app-v2");
        let v3_signature = patch("v3-signature", "app-v3-signature");
        let v2_cell_type = patch("v2-cell-type", "app-v2-cell-type");
        Built { host, v2, v3_signature, v2_cell_type, scratch }
    })
}

/// A patch from v2's source claiming to apply to `applies_to`.
fn patch_claiming(name: &str, applies_to: BuildIdentity) -> PathBuf {
    let b = built();
    let src = b.scratch.join("app-v2");
    let out = b.scratch.join(format!("{name}.so"));
    recipe::build_patch(&b.host, &PatchOptions::new(&src, applies_to, &out).unwrap()).expect("patch")
}

fn assert_serves_v1(host: &mut Host) {
    assert!(host.send("greet still").starts_with("hello still (v1"), "host must keep serving v1");
    assert_eq!(host.send("status"), "applied=0 pending=0");
}

#[test]
fn output_directory_runs_without_cargo() {
    let b = built();
    let dir = &b.host.out_dir;
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n.starts_with("libdsu_deps_") && n.ends_with(".so")), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("libstd-") && n.ends_with(".so")), "{names:?}");
    let mut host = Host::start(&b.host.binary);
    assert_eq!(host.send("greet a"), "hello a (v1, hits=1)");
}

#[test]
fn patch_applies_at_update_point_on_one_runtime() {
    let b = built();
    let mut host = Host::start(&b.host.binary);
    assert_eq!(host.send("greet a"), "hello a (v1, hits=1)");
    assert_eq!(host.send("bump"), "1");
    assert_eq!(host.send("show"), "counter=1");
    assert_eq!(host.send("job"), "job v1");
    assert_eq!(host.send("log x"), "1 v1 says x");
    assert_eq!(host.send("risky 0"), "0");

    let queued = host.send(&format!("load {}", b.v2.display()));
    assert!(queued.starts_with("queued changed="), "{queued}");
    for f in [
        "app::greeting::greet",
        "app::effects::spawn_job",
        "app::counter::Counter::bump",
        "app::counter::<Counter as fmt::Display>::fmt",
    ] {
        assert!(queued.contains(f), "{f} missing from {queued}");
    }
    // The update point at the entry of the next command applies it.
    assert_eq!(host.send("greet b"), "HELLO b (v2, hits=2)", "state cell kept across the update");
    assert_eq!(host.send("status"), "applied=1 pending=0");
    // Methods, trait methods, and state held by the host.
    assert_eq!(host.send("bump"), "11");
    assert_eq!(host.send("show"), "Counter<11>");
    // tokio spawn and sleep from patched code run on the host's runtime.
    assert_eq!(host.send("job"), "job v2 slept");
    // log from patched code reaches the host's logger.
    assert_eq!(host.send("log yz"), "2 v2 says yz");
    // A panic in patched code is caught by the host's catch_unwind.
    assert_eq!(host.send("risky 0"), "caught: v2 refuses zero");
    assert_eq!(host.send("risky 4"), "8");

    // The same patch again is refused as what it is: applied already.
    let again = host.send(&format!("load {}", b.v2.display()));
    assert!(again.starts_with("refused:") && again.contains("is already applied"), "{again}");
    assert_eq!(host.send("greet c"), "HELLO c (v2, hits=3)");
}

#[test]
fn refuses_patch_for_another_revision() {
    // After v1 -> v2, a patch made for v1 no longer applies.
    let b = built();
    let mut host = Host::start(&b.host.binary);
    assert!(host.send(&format!("load {}", b.v2.display())).starts_with("queued"));
    assert!(host.send("greet a").starts_with("HELLO a"));
    let stale = patch_claiming("app-v2-for-v1", b.host.identity());
    let r = host.send(&format!("load {}", stale.display()));
    assert!(r.contains("was built for another tree"), "{r}");
    assert!(r.contains(&b.host.identity().tree), "names the patch's value: {r}");
    assert!(host.send("greet b").starts_with("HELLO b (v2"));
}

#[test]
fn refuses_patch_for_another_rustc() {
    let b = built();
    let mut host = Host::start(&b.host.binary);
    let other = BuildIdentity { rustc: "0123456789abcdef".into(), ..b.host.identity() };
    let p = patch_claiming("app-v2-other-rustc", other);
    let r = host.send(&format!("load {}", p.display()));
    assert!(r.contains("was built for another rustc"), "{r}");
    assert!(r.contains("0123456789abcdef") && r.contains(&b.host.identity().rustc), "{r}");
    assert_serves_v1(&mut host);
}

#[test]
fn refuses_patch_for_another_dependency_library() {
    let b = built();
    let mut host = Host::start(&b.host.binary);
    let other = BuildIdentity { deps: "feedfacefeedface".into(), ..b.host.identity() };
    let p = patch_claiming("app-v2-other-deps", other);
    let r = host.send(&format!("load {}", p.display()));
    assert!(r.contains("was built for another deps"), "{r}");
    assert!(r.contains("feedfacefeedface") && r.contains(&b.host.identity().deps), "{r}");
    assert_serves_v1(&mut host);
}

#[test]
fn refuses_changed_signature() {
    let b = built();
    let mut host = Host::start(&b.host.binary);
    let r = host.send(&format!("load {}", b.v3_signature.display()));
    assert!(r.contains("changes the signature of `app::greeting::greet`"), "{r}");
    assert!(r.contains("fingerprint"), "{r}");
    assert_serves_v1(&mut host);
}

#[test]
fn refuses_a_patch_whose_code_expects_another_type_of_a_live_cell() {
    let b = built();
    let mut host = Host::start(&b.host.binary);
    assert_eq!(host.send("greet a"), "hello a (v1, hits=1)");
    assert_eq!(host.send("greet b"), "hello b (v1, hits=2)");
    let r = host.send(&format!("load {}", b.v2_cell_type.display()));
    assert!(r.starts_with("refused:"), "{r}");
    assert!(r.contains("expects state cell `hits` to hold `AtomicU32` (fingerprint "), "{r}");
    assert!(r.contains("the running program's cell holds `core::sync::atomic::AtomicU64`"), "{r}");
    assert!(r.contains("carries no transform of the cell"), "{r}");
    // Nothing changed: version 1 serves, its cell intact, and the same patch made with the
    // cell's type unchanged still applies.
    assert_eq!(host.send("greet c"), "hello c (v1, hits=3)");
    assert_eq!(host.send("status"), "applied=0 pending=0");
    assert!(host.send(&format!("load {}", b.v2.display())).starts_with("queued"));
    assert_eq!(host.send("greet d"), "HELLO d (v2, hits=4)");

    // A cell no code has created yet is not checked: the patch's code creates it with its type.
    let mut fresh = Host::start(&b.host.binary);
    assert!(fresh.send(&format!("load {}", b.v2_cell_type.display())).starts_with("queued"));
    assert_eq!(fresh.send("greet a"), "HELLO a (v2, hits=1)");
}

#[test]
fn refuses_files_that_are_not_patches() {
    let b = built();
    let dir = b.scratch.join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let random = dir.join("random.so");
    std::fs::write(&random, pseudo_random_bytes(4096, 0x9e3779b97f4a7c15)).unwrap();
    let text = dir.join("text.so");
    std::fs::write(&text, "this is not a library\n").unwrap();
    let truncated = dir.join("truncated.so");
    let whole = std::fs::read(&b.v2).unwrap();
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let deps_lib = b.host.deps_dylib.clone();
    // Sealing is open to anyone (only a signature needs a key): the same files sealed reach the
    // checks behind the seal.
    let sealed = |path: &PathBuf| {
        let out = dir.join(format!("sealed-{}", path.file_name().unwrap().to_str().unwrap()));
        std::fs::write(&out, cargo_dsu::sign::seal(&std::fs::read(path).unwrap(), None)).unwrap();
        out
    };
    // One byte of the patch changed in the middle (its code), seal kept.
    let tampered = dir.join("tampered.so");
    let mut bytes = whole.clone();
    let middle = bytes.len() / 3;
    bytes[middle] ^= 0x01;
    std::fs::write(&tampered, bytes).unwrap();

    let mut host = Host::start(&b.host.binary);
    let cases = [
        (random.clone(), "is damaged: the file does not end in a dsu seal"),
        (text.clone(), "is damaged"),
        (truncated.clone(), "is damaged"),
        (deps_lib.clone(), "is damaged"),
        (tampered, "is damaged: its bytes differ from those its seal was made for"),
        (sealed(&random), "is not a patch library: not an ELF file"),
        (sealed(&text), "is not a patch library: not an ELF file"),
        (sealed(&truncated), "is malformed"),
        (sealed(&deps_lib), "has no `__dsu_patch` symbol"),
        (dir.join("missing.so"), "cannot read patch"),
    ];
    for (path, expected) in cases {
        let r = host.send(&format!("load {}", path.display()));
        assert!(r.starts_with("refused:") && r.contains(expected), "{}: {r}", path.display());
        assert_serves_v1(&mut host);
    }
}

/// A program built with `--trust` keys loads only patches signed by one of them: unsigned,
/// signed by another key, and signed-then-changed patches (a retargeted manifest, resealed so
/// that only the signature can tell) are refused while it keeps serving; a signed patch applies.
#[test]
fn a_program_that_trusts_keys_loads_only_patches_they_signed() {
    let b = built();
    let dir = b.scratch.join("trust");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let release = cargo_dsu::sign::keygen(&dir.join("release")).unwrap();
    let other = cargo_dsu::sign::keygen(&dir.join("other")).unwrap();
    let release_key = cargo_dsu::sign::read_secret_key(&release.secret).unwrap();
    let other_key = cargo_dsu::sign::read_secret_key(&other.secret).unwrap();
    let release_pub = release.public;

    let target = shared_target_dir();
    // A package of its own name: its build must not replace the other tests' host, which
    // shares the target directory (and so `target/dsu/debug/`).
    let renamed = [("name = \"app\"", "name = \"app-trusted\"")];
    let app = b.scratch.join("app-trusted");
    write_tree_with(&app, "app", "base", &renamed);
    let mut opts = BuildOptions::new(app.join("Cargo.toml"), cargo_dsu());
    opts.target_dir = Some(target);
    opts.trust = vec![release_pub];
    let host = recipe::build(&opts).expect("building the trusting host").records.remove(0);
    assert!(!host.identity().trust.is_empty());

    let src = b.scratch.join("app-trusted-v2");
    write_tree_with(&src, "app", "v2", &renamed);
    let patch = |name: &str, key: Option<&ed25519_dalek::SigningKey>| {
        let mut o = PatchOptions::new(&src, host.identity(), dir.join(format!("{name}.so"))).unwrap();
        o.signing_key = key.cloned();
        recipe::build_patch(&host, &o).unwrap_or_else(|e| panic!("patch {name}: {e:#}"))
    };
    let unsigned = patch("unsigned", None);
    let by_other = patch("by-other", Some(&other_key));
    let signed = patch("signed", Some(&release_key));
    // The signed patch retargeted: its manifest's tree changed, resealed with its signature kept.
    let retargeted = dir.join("retargeted.so");
    {
        use sha2::Digest;
        let file = std::fs::read(&signed).unwrap();
        let mut seal = dsu_abi::seal::Seal::parse(&file).unwrap();
        let mut library = file[..seal.library_len as usize].to_vec();
        let tree = host.identity().tree;
        let at = library.windows(tree.len()).position(|w| w == tree.as_bytes()).expect("the manifest names the tree");
        library[at] = if library[at] == b'0' { b'1' } else { b'0' };
        let hash: [u8; 32] = sha2::Sha256::digest(&library).into();
        seal.digest = cargo_dsu::sign::seal_digest(&hash, &seal);
        library.extend_from_slice(&seal.to_bytes());
        std::fs::write(&retargeted, library).unwrap();
    }

    let mut host_proc = Host::start(&host.binary);
    assert_serves_v1(&mut host_proc);
    for (path, expected) in [
        (&unsigned, "is not signed, and this program accepts only patches signed by one of its 1 trusted keys"),
        (&by_other, "which this program does not trust"),
        (&retargeted, "does not verify: forged, or changed after signing"),
    ] {
        let r = host_proc.send(&format!("load {}", path.display()));
        assert!(r.starts_with("refused:") && r.contains(expected), "{}: {r}", path.display());
        assert_serves_v1(&mut host_proc);
    }
    let r = host_proc.send(&format!("load {}", signed.display()));
    assert!(r.starts_with("queued"), "{r}");
    assert!(host_proc.send("greet a").starts_with("HELLO a (v2"));
}

/// Hostile files, each refused before a byte of it runs, while the program keeps serving: a
/// shared library whose constructor would leave a marker file (sealed by the attacker, as anyone
/// can), a system library, a patch owned by another user or writable by others, and a symlink
/// to one; a symlink to a good patch is followed and checked as the file it names, and what is
/// mapped is the verified copy in a memfd, never the file on disk.
#[test]
fn hostile_files_never_run_and_patches_map_from_their_verified_copy() {
    let b = built();
    let dir = b.scratch.join("hostile");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let marker = dir.join("constructor-ran");
    let source = dir.join("ctor.rs");
    std::fs::write(
        &source,
        format!(
            "#[used]\n#[link_section = \".init_array\"]\nstatic INIT: extern \"C\" fn() = init;\n\
             extern \"C\" fn init() {{ let _ = std::fs::write({:?}, b\"ran\"); }}\n",
            marker.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("rustc")
        .args(["--crate-type", "cdylib", "--crate-name", "ctor", "-o"])
        .arg(dir.join("libctor.so"))
        .arg(&source)
        .output()
        .unwrap();
    assert_success(&out, "rustc ctor.rs");
    let ctor = dir.join("libctor.so");
    let sealed_ctor = dir.join("sealed-ctor.so");
    std::fs::write(&sealed_ctor, cargo_dsu::sign::seal(&std::fs::read(&ctor).unwrap(), None)).unwrap();
    let system = ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("a system libc");

    let mut host = Host::start(&b.host.binary);
    let mut cases = vec![
        (ctor.clone(), "is damaged"),
        (sealed_ctor.clone(), "has no `__dsu_patch` symbol"),
        (system, "is damaged"),
    ];
    let writable = dir.join("world-writable.so");
    std::fs::copy(&b.v2, &writable).unwrap();
    std::fs::set_permissions(&writable, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    cases.push((writable, "lets other users write it"));
    // Acting as another user needs root (`/proc/self` belongs to the process's user).
    if std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0 {
        let foreign = dir.join("foreign.so");
        std::fs::copy(&b.v2, &foreign).unwrap();
        std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
        let link = dir.join("link-to-foreign.so");
        std::os::unix::fs::symlink(&foreign, &link).unwrap();
        cases.push((foreign, "is owned by uid 65534"));
        cases.push((link, "is owned by uid 65534"));
    }
    for (path, expected) in cases {
        let r = host.send(&format!("load {}", path.display()));
        assert!(r.starts_with("refused:") && r.contains(expected), "{}: {r}", path.display());
        assert_serves_v1(&mut host);
    }
    assert!(!marker.exists(), "a constructor of a refused file ran");

    let link = dir.join("link-to-v2.so");
    std::os::unix::fs::symlink(&b.v2, &link).unwrap();
    let r = host.send(&format!("load {}", link.display()));
    assert!(r.starts_with("queued"), "{r}");
    assert!(host.send("greet a").starts_with("HELLO a (v2"));
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", host.pid())).unwrap();
    assert!(maps.contains("/memfd:dsu-patch"), "the patch is mapped from its verified copy");
    assert!(!maps.contains(b.v2.to_str().unwrap()), "never from the file on disk");
}
