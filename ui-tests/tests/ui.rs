//! Compile-fail tests: every form `#[dsu::updateable]` and `#[dsu::update_point]` refuse, one
//! per file, each file named after its error. Pass tests (`tests/pass/`): forms that compile
//! although they once did not, and run.
//!
//! The `.stderr` files were made with rustc 1.95.0 (stable), the toolchain `rust-toolchain.toml`
//! pins; regenerate them with it (`TRYBUILD=overwrite cargo test -p dsu-ui-tests`) and read every
//! one before committing.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
    t.pass("tests/pass/*.rs");
}
