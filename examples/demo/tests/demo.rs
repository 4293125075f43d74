//! The README's first command, run as a test: the demo must finish on its own, with every
//! release but the refused one applied, the rollback and re-apply through the control socket,
//! and the server's state (its state cells and its plain statics) kept throughout.

use std::process::Command;

#[test]
fn the_demo_runs_to_its_summary() {
    let out = Command::new(env!("CARGO_BIN_EXE_dsu-demo")).output().expect("running the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "refused as expected (exit code 5)",
        "$ cargo dsu rollback --socket",
        "rolled back to ",
        "STATS          < 2 names, 13 visits\n",
        "STATS          < 2 names, 13 visits, 6.5 per name",
        "3 patches applied, the last one rolled back and applied again",
        // The plain static `GREETED` counts every greeting, whichever version sent it: patched
        // code counts in the server's instance.
        "after 5 updates, 27 requests, 13 greetings; last greeting: Hello, alice! This is visit number 10.",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
}
