//! The client of a running program's control socket (`dsu::control::serve`): `cargo dsu load`,
//! `rollback` and `status` send one command line and read one reply line.

use anyhow::Result;
use std::path::{Path, PathBuf};

/// The running program refused a control request; its reason.
#[derive(Debug, thiserror::Error)]
#[error("the running program refused: {0}")]
pub struct ProgramRefused(pub String);

/// The control socket could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the running program's control socket {path}: {reason}")]
pub struct Unreachable {
    pub path: PathBuf,
    pub reason: String,
}

/// Sends one command line to a program's control socket; its reply without the `ok `.
pub fn send(socket: &Path, command: &str) -> Result<String> {
    use std::io::{BufRead, Write};
    let unreachable = |e: std::io::Error| Unreachable { path: socket.to_path_buf(), reason: e.to_string() };
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(unreachable)?;
    stream.write_all(format!("{command}\n").as_bytes()).map_err(unreachable)?;
    let mut reply = String::new();
    std::io::BufReader::new(stream).read_line(&mut reply).map_err(unreachable)?;
    let reply = reply.trim_end();
    if let Some(text) = reply.strip_prefix("ok ") {
        Ok(text.to_string())
    } else if let Some(reason) = reply.strip_prefix("refused ") {
        Err(ProgramRefused(reason.to_string()).into())
    } else {
        Err(Unreachable { path: socket.to_path_buf(), reason: format!("unexpected reply {reply:?}") }.into())
    }
}
