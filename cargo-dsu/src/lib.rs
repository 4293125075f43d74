//! `cargo dsu`: builds a program in updateable form and builds patches for it.
//!
//! The recipe ([`recipe`], one module per step of the pipeline) and the command line ([`cli`])
//! are a library so that tests, the demo and the `cargo-dsu` binary drive the same code.

pub mod build;
pub mod cli;
pub mod compare;
pub mod control_client;
pub mod deps_library;
pub mod exit;
pub mod git;
pub mod history;
pub mod identity;
pub mod locate;
pub mod patch;
pub mod patch_build;
pub mod report;
pub mod sign;
pub mod recipe;
pub mod shadow;
pub mod wrapper;
