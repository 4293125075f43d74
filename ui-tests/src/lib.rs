//! Compile-fail tests of the dsu macros live in `tests/`.
