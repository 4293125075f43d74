//! The `cargo dsu` subcommand, and cargo's rustc wrapper during an updateable build.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(bin_name = "cargo", version, about)]
enum Cargo {
    /// Build programs in updateable form and patches for them.
    Dsu(DsuArgs),
}

#[derive(Args)]
struct DsuArgs {
    #[command(subcommand)]
    command: DsuCommand,
}

#[derive(Subcommand)]
enum DsuCommand {
    /// Build the program in updateable form into target/dsu/<profile>/.
    Build(BuildArgs),
}

#[derive(Args)]
struct BuildArgs {
    /// Path to Cargo.toml.
    #[arg(long, value_name = "PATH", default_value = "Cargo.toml")]
    manifest_path: PathBuf,
    /// The binary to build.
    #[arg(long, value_name = "NAME")]
    bin: Option<String>,
    /// Build with the release profile.
    #[arg(long)]
    release: bool,
}

fn main() -> ExitCode {
    // Cargo runs us as `cargo-dsu <rustc> <args…>` while building; the configuration tells us so.
    if let Some(config) = std::env::var_os(cargo_dsu::wrapper::CONFIG_ENV) {
        let argv: Vec<_> = std::env::args_os().skip(1).collect();
        return match cargo_dsu::wrapper::run(std::path::Path::new(&config), argv) {
            Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => {
                eprintln!("error: dsu wrapper: {e:#}");
                ExitCode::from(101)
            }
        };
    }
    let Cargo::Dsu(args) = Cargo::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(args: DsuArgs) -> Result<()> {
    match args.command {
        DsuCommand::Build(b) => {
            let mut opts =
                cargo_dsu::recipe::BuildOptions::new(&b.manifest_path, std::env::current_exe()?);
            opts.bin = b.bin;
            opts.release = b.release;
            let record = cargo_dsu::recipe::build(&opts)?;
            eprintln!("{:>12} {}", "Finished", record.binary.display());
            println!("{}", record.binary.display());
            Ok(())
        }
    }
}
