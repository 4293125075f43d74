//! The `cargo dsu` subcommand, and cargo's rustc wrapper during an updateable build.

fn main() -> std::process::ExitCode {
    cargo_dsu::cli::main_with(std::env::args_os().collect())
}
