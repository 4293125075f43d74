//! The control socket under attack: every client is hostile. Each test checks that a bad client
//! gets a refusal (or is cut off) and that the socket goes on answering everyone else.

use dsu::control::{self, ControlOptions, MAX_REPLY};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh directory only this user can write to (its mode is explicit, so the umask does not
/// matter).
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dsu-control-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::DirBuilder::new().mode(0o755).create(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// Options with a short request deadline, so that the tests that wait it out are quick.
fn quick() -> ControlOptions {
    ControlOptions { deadline: Duration::from_millis(300), ..ControlOptions::default() }
}

fn ask(path: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    // A client the socket refuses without reading may find it closed before it writes.
    let _ = s.write_all(format!("{line}\n").as_bytes());
    read_reply(s)
}

fn read_reply(s: UnixStream) -> String {
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    reply
}

/// The reply a program built without `cargo dsu build` gives to `status`: it got past every
/// check of the socket and reached the runtime.
fn reached_the_runtime(reply: &str) -> bool {
    reply.starts_with("refused the running program is not updateable")
}

#[test]
fn answers_one_line_per_connection_and_refuses_unknown_commands() {
    let d = dir("basic");
    let path = d.join("control.sock");
    // A stale socket (nobody listens on it) is replaced.
    drop(UnixListener::bind(&path).unwrap());
    let control = control::serve(&path).unwrap();
    assert_eq!(control.path(), path);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(ask(&path, "frobnicate").starts_with("refused unknown command \"frobnicate\""));
    assert!(ask(&path, "load").starts_with("refused unknown command"));
    let status = ask(&path, "status");
    assert!(reached_the_runtime(&status), "{status}");
    // A regular file is not replaced.
    let file = d.join("not-a-socket");
    std::fs::write(&file, "x").unwrap();
    assert_eq!(control::serve(&file).unwrap_err().kind(), std::io::ErrorKind::AlreadyExists);
}

#[test]
fn a_live_socket_is_not_taken_over() {
    let d = dir("live");
    let path = d.join("control.sock");
    control::serve(&path).unwrap();
    let err = control::serve(&path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().contains("another program serves"), "{err}");
    assert!(reached_the_runtime(&ask(&path, "status")), "the first program still answers");
}

#[test]
fn a_directory_other_users_can_write_is_refused_unless_sticky() {
    let d = dir("shared-dir");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = control::serve(d.join("control.sock")).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{err}");
    assert!(err.to_string().contains("mode 777"), "{err}");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    control::serve(d.join("control.sock")).unwrap();
}

/// Under umask 000 the socket never appears under its name with a mode wider than 0600: a thread
/// watches the path while the socket is created.
#[test]
fn the_socket_never_has_a_wider_mode_even_under_umask_000() {
    let d = dir("umask");
    let path = d.join("control.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (path, stop) = (path.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut modes = std::collections::BTreeSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    modes.insert(m.permissions().mode() & 0o777);
                }
            }
            modes
        })
    };
    // SAFETY: umask has no preconditions; the old mask is restored below. Other tests in this
    // binary create their directories with explicit modes, which a mask of 0 does not widen.
    let old = unsafe { libc::umask(0) };
    let served = control::serve(&path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    served.unwrap();
    // Let the watcher see the final file at least once.
    while std::fs::symlink_metadata(&path).is_err() {}
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let modes = watcher.join().unwrap();
    assert!(modes.iter().all(|&m| m == 0o600), "modes seen at the path: {modes:?}");
    assert!(reached_the_runtime(&ask(&path, "status")));
}

#[test]
fn a_silent_client_is_cut_off_at_the_deadline_and_holds_nobody_up() {
    let d = dir("silent");
    let path = d.join("control.sock");
    control::serve_with(&path, quick()).unwrap();
    let silent = UnixStream::connect(&path).unwrap();
    // Asked while the silent client is being served: answered once its deadline passes.
    assert!(reached_the_runtime(&ask(&path, "status")));
    let reply = read_reply(silent);
    assert!(reply.starts_with("refused no complete request within"), "{reply}");
}

#[test]
fn a_client_dripping_one_byte_at_a_time_is_cut_off() {
    let d = dir("drip");
    let path = d.join("control.sock");
    control::serve_with(&path, quick()).unwrap();
    let mut drip = UnixStream::connect(&path).unwrap();
    let mut reader = drip.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        // Each byte comes well within any per-read timeout; the request never ends.
        let mut sent = 0;
        while drip.write_all(b"s").is_ok() {
            sent += 1;
            std::thread::sleep(Duration::from_millis(20));
            if sent > 10_000 {
                break;
            }
        }
        sent
    });
    let mut reply = String::new();
    reader.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("refused no complete request within"), "{reply}");
    let sent = writer.join().unwrap();
    assert!(sent < 10_000, "the server closed the connection while the client was still sending");
    assert!(reached_the_runtime(&ask(&path, "status")));
}

#[test]
fn replies_nobody_reads_block_nothing() {
    let d = dir("unread");
    let path = d.join("control.sock");
    control::serve_with(&path, quick()).unwrap();
    let mut idle = Vec::new();
    for _ in 0..64 {
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&[b'x'; 2000]).unwrap();
        s.write_all(b"\n").unwrap();
        idle.push(s);
    }
    assert!(reached_the_runtime(&ask(&path, "status")));
    drop(idle);
}

#[test]
fn a_huge_request_is_refused_and_not_kept() {
    let d = dir("huge");
    let path = d.join("control.sock");
    control::serve_with(&path, quick()).unwrap();
    let mut s = UnixStream::connect(&path).unwrap();
    let reader = s.try_clone().unwrap();
    // The server stops reading at the limit; the rest of this write may fail.
    let _ = s.write_all(&vec![b'a'; 1 << 20]);
    let reply = read_reply(reader);
    assert!(reply.starts_with("refused request longer than 4096 bytes"), "{reply}");
    // A long unknown command near the limit is not echoed back in full, and status stays short.
    let long = ask(&path, &"b".repeat(4000));
    assert!(long.len() < 200, "{}", long.len());
    let status = ask(&path, "status");
    assert!(status.len() <= MAX_REPLY && reached_the_runtime(&status), "{status}");
}

/// Runs `f` on a thread that has given up root for `uid` and `gid` (credentials are per thread
/// on Linux when changed with the raw system calls), and returns its result.
fn as_user<R: Send + 'static>(uid: u32, gid: u32, f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: raw setresgid/setresuid change only the calling thread's credentials; the
        // thread ends after `f`, and no other thread shares them.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        f()
    })
    .join()
    .unwrap()
}

/// A client of another user is refused by its credentials even when the socket's mode would let
/// it connect; a member of the allowed group is served. Needs root, to act as other users.
#[test]
fn peers_of_other_users_are_refused_by_their_credentials() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: acting as other users needs root");
        return;
    }
    let d = dir("peer");
    let path = d.join("control.sock");
    control::serve(&path).unwrap();
    // As if the mode were widened by mistake: the credentials still decide.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = path.clone();
    let reply = as_user(65534, 65534, move || ask(&p, "status"));
    assert!(reply.starts_with("refused uid 65534 (gid 65534) may not use"), "{reply}");

    let path = d.join("group.sock");
    let options = ControlOptions { allow_group: Some(4242), ..ControlOptions::default() };
    control::serve_with(&path, options).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(std::os::unix::fs::MetadataExt::gid(&meta), 4242);
    let p = path.clone();
    let member = as_user(65534, 4242, move || ask(&p, "status"));
    assert!(reached_the_runtime(&member), "{member}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let p = path.clone();
    let stranger = as_user(65534, 65534, move || ask(&p, "status"));
    assert!(stranger.starts_with("refused uid 65534"), "{stranger}");
}
