//! `kv-server [--bind ADDR] [--control PATH] [--snapshot PATH] [--reuseport]`: the key-value
//! server (see the `kv` library). Prints `listening on ADDR` once it serves; logs go to stderr.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(tracing::Level::INFO)
        .init();
    let config = match kv::server::Config::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kv-server: {e}\n{}", kv::server::USAGE);
            return ExitCode::from(2);
        }
    };
    match kv::server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-server: {e}");
            ExitCode::FAILURE
        }
    }
}
