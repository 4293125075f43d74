//! The build recipe: how an unmodified program is built in updateable form, on one shared
//! runtime, and how a patch is built against that exact build. One module per step:
//!
//! 1. [`crate::locate`]: the package, its binaries and their *updateable sets* (the binary's
//!    crate and the library crates of every package it reaches through path dependencies);
//! 2. [`crate::deps_library`]: one generated `dylib`, `dsu_deps_<H>`, linking every other
//!    dependency once, for the program and all its patches;
//! 3. [`crate::build`]: the package built in place through the wrapper ([`crate::wrapper`]),
//!    which records each set crate's rustc invocation; the output directory runs as it is;
//! 4. the compare step ([`crate::compare`]): what changed between two revisions,
//!    and what must be refused;
//! 5. [`crate::patch_build`]: the set compiled again from newer source with the recorded
//!    invocations, the binary's crate as a `cdylib` carrying the patch header.

pub use crate::build::{build, BuildRecord, Built, CompileFailed, OutputNotWritable};
pub use crate::locate::{locate, BuildOptions, NotUpdateable, Target};
pub use crate::patch_build::{build_patch, Insertion, PatchOptions};
