//! `cargo dsu`: builds a program in updateable form and builds patches for it.
//!
//! The recipe ([`recipe`]) and the command line ([`cli`]) are a library so that tests, the demo
//! and the `cargo-dsu` binary drive the same code.

pub mod cli;
pub mod compare;
pub mod diff;
pub mod git;
pub mod identity;
pub mod recipe;
pub mod wrapper;
