//! The control socket: how an operator, or `cargo dsu load|rollback|status --socket PATH`, asks
//! a running program to apply a patch, roll back, or say where it stands.
//!
//! [`serve`] starts one thread, `dsu-control`, listening on a Unix domain socket. A client sends
//! one command line and reads one reply line:
//!
//! | command | reply |
//! |---|---|
//! | `load PATH` | `ok applied REVISION`, once applied ([`crate::load_and_apply`]) |
//! | `rollback` | `ok rolled back to REVISION`, once applied ([`crate::rollback_and_wait`]) |
//! | `status` | `ok revision=… applied=… pending=… threads=… last_pause_us=… last_refusal=…` |
//!
//! Anything refused replies `refused REASON`, the runtime's error message. The thread is idle
//! (see [`crate::idle`]) while it waits for a client, so it never holds an update up.
//!
//! The socket is created with mode 0600: only the program's user can reach it. A patch loaded
//! through it is verified like any other.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A running control socket (see the module documentation). Dropping it leaves the socket
/// serving; the thread lives as long as the program.
#[derive(Debug)]
pub struct ControlSocket {
    path: PathBuf,
}

impl ControlSocket {
    /// Where the socket listens.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Listens for control commands on a Unix domain socket at `path`, on a thread of its own.
///
/// A stale socket file at `path` (left by an earlier run) is replaced; any other file there is an
/// error.
pub fn serve(path: impl AsRef<Path>) -> std::io::Result<ControlSocket> {
    let path = path.as_ref().to_path_buf();
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("dsu-control".into()).spawn(move || {
        loop {
            let Ok((stream, _)) = crate::idle(|| listener.accept()) else { continue };
            // A client that hangs up early only loses its own reply.
            let _ = answer(stream);
        }
    })?;
    Ok(ControlSocket { path })
}

fn answer(stream: UnixStream) -> std::io::Result<()> {
    // One client at a time: one that connects and says nothing must not hold the others up.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = String::new();
    let mut reader = BufReader::new(stream.try_clone()?);
    crate::idle(|| reader.read_line(&mut line))?;
    let reply = command(line.trim());
    let mut stream = stream;
    stream.write_all(format!("{reply}\n").as_bytes())
}

/// The reply to one command line.
fn command(line: &str) -> String {
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let outcome = match verb {
        "load" if !arg.is_empty() => {
            crate::load_and_apply(arg).map(|r| format!("applied {}", r.revision))
        }
        "rollback" => crate::rollback_and_wait().map(|r| format!("rolled back to {}", r.to_revision)),
        "status" => crate::status().map(|s| {
            format!(
                "revision={} applied={} pending={} threads={} last_pause_us={} last_refusal={}",
                s.revision,
                s.applied.len(),
                s.pending,
                s.threads,
                s.applied.last().map_or(0, |a| a.pause.as_micros()),
                s.last_refusal.as_deref().unwrap_or("none").replace('\n', " "),
            )
        }),
        _ => return format!("refused unknown command {line:?}: expected `load PATH`, `rollback` or `status`"),
    };
    match outcome {
        Ok(text) => format!("ok {text}"),
        Err(e) => format!("refused {}", e.to_string().replace('\n', " ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_one_line_per_connection_and_refuses_unknown_commands() {
        let dir = std::env::temp_dir().join(format!("dsu-control-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        // A stale socket is replaced.
        drop(UnixListener::bind(&path).unwrap());
        let control = serve(&path).unwrap();
        assert_eq!(control.path(), path);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let ask = |line: &str| {
            let mut s = UnixStream::connect(&path).unwrap();
            s.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            BufReader::new(s).read_line(&mut reply).unwrap();
            reply
        };
        assert!(ask("frobnicate").starts_with("refused unknown command \"frobnicate\""));
        assert!(ask("load").starts_with("refused unknown command"));
        // Outside `cargo dsu build` the program is not updateable: refused, and it says why.
        let status = ask("status");
        assert!(status.starts_with("refused the running program is not updateable"), "{status}");
        // A regular file is not replaced.
        let file = dir.join("not-a-socket");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(serve(&file).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
