//! Several crates in one set: a package's library and binaries, workspace members.

use super::*;

fn lib_and_bins() -> Vec<CrateUnit> {
    vec![unit("core_logic", "src/lib.rs"), unit("app", "src/main.rs"), unit("two", "src/bin/two.rs")]
}

const LIB: &str = "pub mod handlers;\n";
const HANDLERS: &str = "#[dsu::updateable]\npub fn get() -> u32 { 1 }\n";
const MAIN: &str = "mod cli;\nfn main() { cli::run(); }\n";
const CLI: &str = "#[dsu::updateable]\npub fn run() { core_logic::handlers::get(); }\n";
const TWO: &str = "#[dsu::updateable]\nfn main() { core_logic::handlers::get(); }\n";

fn files<'a>(handlers: &'a str, cli: &'a str, two: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("src/lib.rs", LIB),
        ("src/handlers.rs", handlers),
        ("src/main.rs", MAIN),
        ("src/cli.rs", cli),
        ("src/bin/two.rs", two),
    ]
}

/// A package with src/lib.rs and src/main.rs is two crates sharing src/: each file belongs to
/// the crate whose module tree reaches it, and is named with that crate's name.
#[test]
fn each_file_belongs_to_the_crate_that_reaches_it() {
    let handlers = HANDLERS.replace("{ 1 }", "{ 2 }");
    let (r, _) =
        cmp_units("lib-bin", &lib_and_bins(), &files(HANDLERS, CLI, TWO), &files(&handlers, CLI, TWO));
    assert_eq!(paths(&r.functions_changed), ["core_logic::handlers::get"]);
    assert_eq!(r.functions_changed[0].file, "src/handlers.rs");
    assert_eq!(r.crates_changed, ["core_logic"]);

    let cli = CLI.replace("get();", "get(); get();");
    let two = TWO.replace("core_logic::handlers::get();", "let _ = core_logic::handlers::get();");
    let (r, _) = cmp_units("bins", &lib_and_bins(), &files(HANDLERS, CLI, TWO), &files(HANDLERS, &cli, &two));
    assert_eq!(paths(&r.functions_changed), ["two::main", "app::cli::run"]);
    assert_eq!(r.crates_changed, ["app", "two"]);
}

/// A library and a binary may share a crate name; their items are not mixed up.
#[test]
fn crates_of_one_name_stay_apart() {
    let units = [unit("app", "src/lib.rs"), unit("app", "src/main.rs")];
    let lib = "#[dsu::updateable]\npub fn helper() -> u32 { 1 }\n";
    let main = "#[dsu::updateable]\nfn helper() -> u32 { 1 }\nfn main() {}\n";
    let old = [("src/lib.rs", lib), ("src/main.rs", main)];
    let new_main = main.replace("{ 1 }", "{ 2 }");
    let (r, _) = cmp_units("same-name", &units, &old, &[("src/lib.rs", lib), ("src/main.rs", &new_main)]);
    assert_eq!(
        r.functions_changed,
        vec![ItemRef { path: "app::helper".into(), file: "src/main.rs".into(), line: 1 }]
    );
}

/// Workspace members: roots and manifests below the checkout root.
#[test]
fn members_below_the_checkout_root() {
    let units = [
        CrateUnit {
            crate_name: "core".into(),
            root_file: "crates/core/src/lib.rs".into(),
            package_dir: "crates/core".into(), cfg: None
        },
        CrateUnit {
            crate_name: "app".into(),
            root_file: "app/src/main.rs".into(),
            package_dir: "app".into(), cfg: None
        },
    ];
    let manifest = MANIFEST.replace("app", "core");
    let old = [
        ("Cargo.toml", "[workspace]\nmembers = [\"crates/core\", \"app\"]\n"),
        ("crates/core/Cargo.toml", manifest.as_str()),
        ("crates/core/src/lib.rs", "mod store;\n"),
        ("crates/core/src/store.rs", "#[dsu::updateable]\npub fn put() {}\n"),
        ("app/Cargo.toml", MANIFEST),
        ("app/src/main.rs", "fn main() {}\n"),
    ];
    let mut new = old.to_vec();
    new[3].1 = "#[dsu::updateable]\npub fn put() { () }\n";
    let (r, _) = cmp_units("members", &units, &old, &new);
    assert_eq!(
        r.functions_changed,
        vec![ItemRef { path: "core::store::put".into(), file: "crates/core/src/store.rs".into(), line: 1 }]
    );
    assert!(r.refusals.is_empty(), "{:?}", r.refusals);
}

/// A crate the newer revision adds: its functions are added.
#[test]
fn a_crate_only_in_the_newer_revision() {
    let old = files(HANDLERS, CLI, TWO);
    let mut new = old.clone();
    new.push(("src/bin/three.rs", "#[dsu::updateable]\nfn main() {}\n"));
    let mut units = lib_and_bins();
    units.push(unit("three", "src/bin/three.rs"));
    let (r, _) = cmp_units("added-crate", &units, &old, &new);
    assert_eq!(paths(&r.functions_added), ["three::main"]);
    assert_eq!(r.crates_changed, ["three"]);
}

#[test]
fn a_crate_at_neither_revision_is_an_error() {
    let files = [("src/main.rs", "fn main() {}\n")];
    let e = error_of("no-root", &[unit("app", "src/main.rs"), unit("gone", "src/bin/gone.rs")], &files, &files);
    assert_eq!(e, "src/bin/gone.rs: no such file at either revision (root of crate `gone`)");
}
