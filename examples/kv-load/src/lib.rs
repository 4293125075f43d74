//! Load for the kv example (`examples/kv`), and its measurements.
//!
//! - [`resp`] and [`client`]: a RESP2 client on tokio, pipelined.
//! - [`load`]: the load generator (closed-loop connections, values a function of the key, so
//!   every reply and, at the end, every key is checked), the fill and the verify phases.
//! - [`repo`]: the server's release history as a git repository (r1 and its overlays).
//! - [`server`]: the server as a child process (ready line, SIGTERM, peak memory).
//! - [`dsu`]: `cargo dsu` run by the bench or test executable itself, and the control socket.
//! - [`scenario`]: live updates and graceful restarts under the same load, and their figures.
//! - [`plot`]: the figure of both.

pub mod client;
pub mod dsu;
pub mod load;
pub mod plot;
pub mod repo;
pub mod resp;
pub mod scenario;
pub mod server;

/// The `main` of the benches and of the end-to-end test: `cargo dsu` when run as that (see
/// `cargo_dsu::cli::run_if_invoked_as_cargo_dsu`), otherwise `run`, its error printed under `name`.
pub fn main_or_cargo_dsu(name: &str, run: fn() -> anyhow::Result<()>) -> std::process::ExitCode {
    if let Some(code) = cargo_dsu::cli::run_if_invoked_as_cargo_dsu() {
        return code;
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The environment variable `name` parsed, or `default` when it is not set.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    use anyhow::Context as _;
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}
