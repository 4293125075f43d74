//! One client connection: read what the socket has, answer every whole request in it, write the
//! replies at once (so a pipeline of 16 requests costs one read and one write).

use crate::commands;
use crate::db::{now_ms, Db};
use bytes::BytesMut;
use kv_resp as resp;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Serves `stream` until the client closes it, sends a request that is not RESP2, or the server
/// shuts down (`shutdown` turns true): then the requests already read are answered, and the
/// connection closes. This loop is not updateable (it runs as long as its client stays); what it
/// calls for each read is.
pub async fn serve(mut stream: TcpStream, db: Arc<Db>, mut shutdown: watch::Receiver<bool>) {
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut out = Vec::with_capacity(16 * 1024);
    loop {
        tokio::select! {
            // Shutdown first: a client that keeps sending gets no more than the requests it had
            // sent when the server began to stop. The only change is to true.
            biased;
            _ = shutdown.changed() => return,
            // Cancel safe: nothing read is lost when the other branch wins.
            read = stream.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
        let close = answer(&db, &mut input, &mut out).await;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }
    }
}

/// Answers every whole request at the front of `input` into `out`, leaving an incomplete one in
/// `input`. True when the connection must close: the input is not RESP2 (the reply says why, as
/// Redis does, since nothing after it can be read).
///
/// An updateable `async fn` that never waits: the worker that polls it counts as running for
/// dsu, so no update applies while it holds the database, and each read gets the code that is
/// current when it is answered.
#[dsu::updateable]
#[tracing::instrument(level = "trace", skip_all, fields(bytes = input.len()))]
pub async fn answer(db: &Db, input: &mut BytesMut, out: &mut Vec<u8>) -> bool {
    let now = now_ms();
    loop {
        match resp::parse(input) {
            Ok(Some(request)) if request.args.is_empty() => {}
            Ok(Some(request)) => commands::execute(db, &request.args, now, out),
            Ok(None) => return false,
            Err(e) => {
                tracing::debug!(error = %e, "closing a connection");
                resp::error(out, &format!("ERR {e}"));
                return true;
            }
        }
    }
}
