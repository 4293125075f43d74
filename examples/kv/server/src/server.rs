//! The server: command line, listener, the accept loop, shutdown.

use crate::conn;
use crate::db::Db;
use crate::purge;
use crate::snapshot;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

pub const USAGE: &str = "usage: kv-server [--bind ADDR] [--control PATH] [--snapshot PATH] [--reuseport]";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where to listen (`127.0.0.1:6380` by default; port 0 picks a free one).
    pub bind: SocketAddr,
    /// The dsu control socket (`cargo dsu load|status|rollback --socket PATH`).
    pub control: Option<PathBuf>,
    /// Loaded at start if it exists, written at shutdown.
    pub snapshot: Option<PathBuf>,
    /// `SO_REUSEPORT` on the listener, so the next process can bind the same address while
    /// this one still serves (a graceful restart).
    pub reuseport: bool,
}

impl Config {
    /// Reads the arguments after the program's name.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Config, String> {
        let mut config = Config {
            bind: "127.0.0.1:6380".parse().expect("a socket address"),
            control: None,
            snapshot: None,
            reuseport: false,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--bind" => {
                    let addr = value("--bind")?;
                    config.bind = addr.parse().map_err(|e| format!("--bind {addr}: {e}"))?;
                }
                "--control" => config.control = Some(value("--control")?.into()),
                "--snapshot" => config.snapshot = Some(value("--snapshot")?.into()),
                "--reuseport" => config.reuseport = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(config)
    }
}

/// A listener on `addr`, with `SO_REUSEPORT` if asked.
fn listen(addr: SocketAddr, reuseport: bool) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    if reuseport {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Runs the server until SIGTERM or SIGINT: then it stops accepting, lets every connection
/// answer what it has read and close, writes the snapshot if there is one, and returns.
pub async fn run(config: Config) -> io::Result<()> {
    let db = Arc::new(Db::new());
    if let Some(path) = config.snapshot.as_deref().filter(|p| p.exists()) {
        let started = std::time::Instant::now();
        let loaded = snapshot::load(&db, path)?;
        tracing::info!(loaded, ms = started.elapsed().as_millis() as u64, "snapshot loaded");
    }
    let _control = config.control.as_deref().map(dsu::control::serve).transpose()?;
    let listener = listen(config.bind, config.reuseport)?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let (stop, stopped) = watch::channel(false);
    // Every connection task holds a sender; once they are all gone, every connection closed.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let purge = tokio::spawn(purge::run(db.clone(), stopped.clone()));
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        // Between connections: where a patch loaded through the control socket applies to this
        // thread (idle while it waits in `accept`).
        dsu::update_point();
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let (db, stopped, open) = (db.clone(), stopped.clone(), open.clone());
                    tokio::spawn(async move {
                        conn::serve(stream, db, stopped).await;
                        drop(open);
                    });
                }
                Err(e) => {
                    // Out of descriptors, most likely: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            },
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("shutting down");
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = all_closed.recv().await;
    let _ = purge.await;
    if let Some(path) = &config.snapshot {
        let started = std::time::Instant::now();
        let saved = snapshot::save(&db, path).await?;
        tracing::info!(saved, ms = started.elapsed().as_millis() as u64, "snapshot saved");
    }
    Ok(())
}
