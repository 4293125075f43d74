//! A tiny updateable TCP server: one request per line, one response line per request.
//!
//! Requests: `GET <name>`, `STATS`, `PATCH <path>` (load a patch), `STATUS`, `QUIT`. The releases
//! change `greeting` and `stats`; the state cells stay here, at the crate root.

mod greeting;
mod stats;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Visits per name: owned by the dsu runtime, so they survive every update.
static VISITS: dsu::State<Mutex<HashMap<String, u64>>> =
    dsu::State::new("visits", || Mutex::new(HashMap::new()));
/// Requests answered, across all versions.
static REQUESTS: dsu::State<AtomicU64> = dsu::State::new("requests", || AtomicU64::new(0));

#[dsu::update_point]
fn handle(request: &str) -> Option<String> {
    REQUESTS.with(|c| c.fetch_add(1, Ordering::Relaxed));
    let (verb, arg) = request.split_once(' ').unwrap_or((request, ""));
    Some(match verb {
        "GET" => greeting::greet(arg),
        "STATS" => stats::stats().to_string(),
        "PATCH" => match dsu::load(arg) {
            Ok(r) => format!("patch queued: {} changed, {} added", r.changed.len(), r.added.len()),
            Err(e) => format!("patch refused: {e}"),
        },
        "STATUS" => match dsu::status() {
            Ok(s) => format!(
                "revision {} after {} updates, {} requests, {} greetings",
                &s.revision[..s.revision.len().min(10)],
                s.updates,
                REQUESTS.with(|c| c.load(Ordering::Relaxed)),
                greeting::GREETED.load(Ordering::Relaxed)
            ),
            Err(e) => format!("status unavailable: {e}"),
        },
        "QUIT" => return None,
        other => format!("unknown request {other}"),
    })
}

fn serve(stream: TcpStream) -> std::io::Result<bool> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        // Waiting for the next request is idle: an update may be applied meanwhile.
        let mut line = String::new();
        if dsu::idle(|| reader.read_line(&mut line))? == 0 {
            return Ok(false);
        }
        match handle(line.trim()) {
            Some(response) => writeln!(out, "{response}")?,
            None => return Ok(true),
        }
    }
}

fn main() -> std::io::Result<()> {
    // With a path argument, an operator can also update the server from outside:
    // `cargo dsu load|rollback|status --socket PATH`.
    let _control = std::env::args().nth(1).map(dsu::control::serve).transpose()?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("listening on {}", listener.local_addr()?);
    for stream in listener.incoming() {
        // One client at a time: the demo's. A patch is applied at the next request either way.
        if serve(stream?).unwrap_or(false) {
            break;
        }
    }
    Ok(())
}
