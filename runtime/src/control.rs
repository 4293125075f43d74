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
//! (see [`crate::idle`]) while it waits for a client and reads its request, so it never holds an
//! update up.
//!
//! Every byte a client sends is treated as hostile:
//! - **Who may connect.** The socket is created with its final mode (0600, or 0660 with
//!   [`ControlOptions::allow_group`]) and only then given its name, so there is no moment at which
//!   it exists under the path with a wider mode, whatever the umask. Its directory must not be
//!   writable by other users (unless sticky, as `/tmp` is), or another user could replace the
//!   socket. Each peer's credentials (`SO_PEERCRED`) are checked: the program's user, root, or a
//!   process whose group is the allowed group; anyone else is refused before a byte is read.
//! - **Bounded work per client.** One request line of at most [`ControlOptions::max_request`]
//!   bytes, complete within [`ControlOptions::deadline`] of connecting (a deadline for the whole
//!   request, not per read, so a client sending one byte at a time is cut off too), and a write
//!   timeout on the reply. Clients are answered one at a time, so none waits longer than that
//!   deadline for another.
//! - **Bounded replies.** Replies, refusal texts included, are cut at [`MAX_REPLY`] bytes.
//! - **One owner per path.** Serving on the path of a live socket (another program answers
//!   there) is refused; a stale socket file, left by a program that exited, is replaced.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest reply the socket writes, refusals included; a longer one is cut and ends in `…`.
pub const MAX_REPLY: usize = 4096;

/// How the control socket treats its clients (see the module documentation).
#[derive(Clone, Debug)]
pub struct ControlOptions {
    /// A group whose members may use the socket besides the program's user and root: the
    /// socket's group becomes this one and its mode 0660. The check is on the client's effective
    /// group when it connected.
    pub allow_group: Option<u32>,
    /// How long a client has, from the moment it is accepted, to send its whole request line;
    /// also the write timeout of the reply.
    pub deadline: Duration,
    /// The longest request line accepted, newline included.
    pub max_request: usize,
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions { allow_group: None, deadline: Duration::from_secs(5), max_request: 4096 }
    }
}

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

/// Listens for control commands on a Unix domain socket at `path`, on a thread of its own, with
/// the default [`ControlOptions`].
///
/// A stale socket file at `path` (left by an earlier run) is replaced. A live socket there
/// (another program answers on it) is an error of kind [`ErrorKind::AddrInUse`]; any other file
/// there is [`ErrorKind::AlreadyExists`]; a directory that other users may write to is
/// [`ErrorKind::PermissionDenied`].
pub fn serve(path: impl AsRef<Path>) -> std::io::Result<ControlSocket> {
    serve_with(path, ControlOptions::default())
}

/// [`serve`] with the given options.
pub fn serve_with(path: impl AsRef<Path>, options: ControlOptions) -> std::io::Result<ControlSocket> {
    let path = path.as_ref().to_path_buf();
    check_directory(&path)?;
    if let Ok(meta) = std::fs::symlink_metadata(&path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        match UnixStream::connect(&path) {
            Ok(_) => {
                return Err(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("another program serves a control socket at {}", path.display()),
                ))
            }
            // Nobody listens: a stale socket, replaced below.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot tell whether the socket at {} is live: {e}", path.display()),
                ))
            }
        }
    }
    let listener = bind_with_final_mode(&path, options.allow_group)?;
    std::thread::Builder::new().name("dsu-control".into()).spawn(move || loop {
        let Ok((stream, _)) = crate::idle(|| listener.accept()) else { continue };
        // A client that hangs up early only loses its own reply.
        let _ = answer(stream, &options);
    })?;
    Ok(ControlSocket { path })
}

/// Refuses a directory where another user could replace the socket: one owned by another user
/// (root aside), or writable by group or others without the sticky bit.
fn check_directory(path: &Path) -> std::io::Result<()> {
    let dir = directory_of(path);
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode();
    let refuse = |why: String| {
        Err(std::io::Error::new(
            ErrorKind::PermissionDenied,
            format!("control socket directory {}: {why}", dir.display()),
        ))
    };
    if let Some(owner) = crate::trust::foreign_owner(&meta) {
        return refuse(owner);
    }
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return refuse(format!("mode {:o} lets other users replace the socket (and is not sticky)", mode & 0o7777));
    }
    Ok(())
}

/// Binds a socket at `path` that never exists there with a wider mode than its final one: it is
/// bound inside a fresh directory only this user can enter, given its mode (and group), then
/// renamed into place, which also replaces a stale socket in one step.
fn bind_with_final_mode(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    let dir = directory_of(path);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let private = dir.join(format!(".dsu-control-{}-{nonce}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let staged = private.join("s");
        let listener = UnixListener::bind(&staged)?;
        if let Some(gid) = group {
            std::os::unix::fs::chown(&staged, None, Some(gid))?;
        }
        let mode = if group.is_some() { 0o660 } else { 0o600 };
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// The directory the socket `path` is in.
fn directory_of(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// The client's user and group, as the kernel recorded them when it connected.
fn peer(stream: &UnixStream) -> std::io::Result<(u32, u32)> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the descriptor is an open socket owned by `stream`; `cred` and `len` are valid for
    // writes of `len` bytes, the size of the `ucred` that SO_PEERCRED fills.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((cred.uid, cred.gid))
}

fn answer(mut stream: UnixStream, options: &ControlOptions) -> std::io::Result<()> {
    stream.set_write_timeout(Some(options.deadline))?;
    let reply = match peer(&stream) {
        Ok((uid, gid)) if uid == crate::trust::effective_uid() || uid == 0 || options.allow_group == Some(gid) => {
            match crate::idle(|| read_request(&mut stream, options)) {
                Ok(line) => command(line.trim()),
                Err(why) => format!("refused {why}"),
            }
        }
        Ok((uid, gid)) => format!("refused uid {uid} (gid {gid}) may not use this control socket"),
        Err(e) => format!("refused cannot read the client's credentials: {e}"),
    };
    stream.write_all(bounded(reply).as_bytes())
}

/// Reads one request line: at most `max_request` bytes, all within the deadline.
fn read_request(stream: &mut UnixStream, options: &ControlOptions) -> Result<String, String> {
    let deadline = Instant::now() + options.deadline;
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no complete request within {:?}", options.deadline));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err("the client closed the connection before a whole request".into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        let chunk = &buf[..n];
        let end = chunk.iter().position(|&b| b == b'\n');
        line.extend_from_slice(&chunk[..end.map_or(n, |i| i + 1)]);
        if line.len() > options.max_request {
            return Err(format!("request longer than {} bytes", options.max_request));
        }
        if end.is_some() {
            return String::from_utf8(line).map_err(|_| "request is not UTF-8".into());
        }
    }
}

/// `reply` as one line of at most [`MAX_REPLY`] bytes, newline included.
fn bounded(reply: String) -> String {
    let mut reply = reply.replace('\n', " ");
    if reply.len() > MAX_REPLY - 1 {
        let mut cut = MAX_REPLY - 1 - '…'.len_utf8();
        while !reply.is_char_boundary(cut) {
            cut -= 1;
        }
        reply.truncate(cut);
        reply.push('…');
    }
    reply.push('\n');
    reply
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
                "revision={} applied={} pending={} threads={} last_pause_us={} signatures={} trusted_keys={} last_refusal={}",
                s.revision,
                s.updates,
                s.pending,
                s.threads,
                s.applied.last().map_or(0, |a| a.pause.as_micros()),
                if s.requires_signatures() { "required" } else { "optional" },
                if s.trusted_keys.is_empty() { "none".to_string() } else { s.trusted_keys.join(",") },
                s.last_refusal.as_deref().unwrap_or("none"),
            )
        }),
        _ => {
            let shown: String = line.chars().take(64).collect();
            return format!(
                "refused unknown command {shown:?}: expected `load PATH`, `rollback` or `status`"
            );
        }
    };
    match outcome {
        Ok(text) => format!("ok {text}"),
        Err(e) => format!("refused {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_one_bounded_line() {
        let long = "x".repeat(10 * MAX_REPLY);
        let r = bounded(format!("refused {long}\nsecond line"));
        assert_eq!(r.len(), MAX_REPLY);
        assert!(r.ends_with("…\n"));
        assert_eq!(r.matches('\n').count(), 1);
        let short = bounded("ok fine".into());
        assert_eq!(short, "ok fine\n");
        // A cut never splits a character.
        let wide = bounded("é".repeat(MAX_REPLY));
        assert!(wide.len() <= MAX_REPLY && wide.ends_with("…\n"));
    }

    #[test]
    fn unknown_commands_are_echoed_short() {
        let r = command(&"frobnicate".repeat(1000));
        assert!(r.starts_with("refused unknown command"), "{r}");
        assert!(r.len() < 200, "{}", r.len());
    }
}
