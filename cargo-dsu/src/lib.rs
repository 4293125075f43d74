//! `cargo dsu`: builds a program in updateable form and builds patches for it.
//!
//! The recipe ([`recipe`]) is a library so that tests and the command line drive the same code.

pub mod identity;
pub mod recipe;
pub mod wrapper;
