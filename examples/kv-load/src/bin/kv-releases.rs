//! `kv-releases DIR`: makes DIR a git repository holding the kv server's release history
//! (`examples/kv` as r1, each overlay of `examples/kv/releases/` one commit, tagged r2, r3, …),
//! the repository `cargo dsu build` and `cargo dsu patch rA..rB` read. DIR must not exist yet,
//! or be empty.

use anyhow::{ensure, Context, Result};
use std::path::PathBuf;

fn main() -> Result<()> {
    let dest: PathBuf = std::env::args_os().nth(1).context("usage: kv-releases DIR")?.into();
    ensure!(
        !dest.exists() || std::fs::read_dir(&dest)?.next().is_none(),
        "{} exists and is not empty",
        dest.display()
    );
    for r in kv_load::repo::make_repository(&kv_load::repo::kv_source(), &dest)? {
        let rollback = if r.rollback { "  (the release rolled back and applied again)" } else { "" };
        println!("{:>4}  {}{rollback}", r.tag, r.message);
    }
    println!("repository: {}", dest.display());
    Ok(())
}
