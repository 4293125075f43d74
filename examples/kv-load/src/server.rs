//! The kv server as a child process: started with its arguments, ready once it prints
//! `listening on ADDR`, stopped with SIGTERM (it drains, writes its snapshot if it has one, and
//! exits), its peak resident memory read from /proc.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `kv-server`.
pub struct Server {
    child: Child,
    /// The address it printed.
    pub addr: String,
    /// When it printed it.
    pub ready_at: Instant,
    /// The highest VmHWM read so far (KiB).
    peak_kib: u64,
}

/// How a server ended.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    pub status: ExitStatus,
    /// From SIGTERM until it had exited.
    pub took: Duration,
    /// Its peak resident memory (VmHWM, KiB), as last read before it exited.
    pub peak_kib: u64,
}

impl Server {
    /// Starts `binary` with `args`, its stderr (the server's log) appended to `log`, and waits
    /// up to `ready_within` for its `listening on` line.
    pub fn start(binary: &Path, args: &[&str], log: &Path, ready_within: Duration) -> Result<Server> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut child = Command::new(binary)
            .args(args)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            // Anything else on stdout is drained, so the server never blocks writing it.
            for _ in lines {}
        });
        let first = match rx.recv_timeout(ready_within) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => {
                let status = child.wait()?;
                bail!(
                    "{} exited ({status}) without saying where it listens; its log: {}",
                    binary.display(),
                    log.display()
                )
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{} did not say `listening on` within {ready_within:?}; its log: {}",
                    binary.display(),
                    log.display()
                )
            }
        };
        let ready_at = Instant::now();
        let Some(addr) = first.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{} printed {first:?}, expected `listening on ADDR`", binary.display());
        };
        let mut server = Server { addr: addr.to_string(), ready_at, child, peak_kib: 0 };
        server.peak_rss_kib();
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&mut self) -> u64 {
        if let Some(kib) = peak_rss_kib(self.pid()) {
            self.peak_kib = self.peak_kib.max(kib);
        }
        self.peak_kib
    }

    /// Whether it has exited.
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends SIGTERM (the server stops accepting, drains, writes its snapshot, exits).
    pub fn terminate(&mut self) -> Result<()> {
        self.peak_rss_kib();
        // SAFETY: kill(2) with the id of our own child, not yet reaped (we own the Child and
        // reap it only in `wait_exit`/`Drop`, after this), so the id names that process.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        if rc != 0 {
            bail!("SIGTERM to {}: {}", self.pid(), std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `within` for the exit, reading VmHWM while it drains.
    pub fn stop(&mut self, within: Duration) -> Result<Exit> {
        let sent = Instant::now();
        self.terminate()?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Exit { status, took: sent.elapsed(), peak_kib: self.peak_kib });
            }
            self.peak_rss_kib();
            if sent.elapsed() > within {
                bail!("kv-server {} did not exit within {within:?} of SIGTERM", self.pid());
            }
            // A bounded poll of the exit (and of VmHWM, which only /proc tells while it runs).
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Peak resident memory (VmHWM) of process `pid` in KiB, while it runs.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
