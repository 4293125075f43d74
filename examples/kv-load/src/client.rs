//! A RESP2 client on tokio: one connection, commands sent one at a time or pipelined (all
//! written, then all their replies read, in order).

use crate::resp::{self, ProtocolError, Reply};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};

/// Why a connection can no longer be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server sent something that is not RESP2: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the server closed the connection with {0} repl(ies) outstanding")]
    Closed(usize),
}

/// One connection to a RESP2 server.
pub struct Client {
    stream: TcpStream,
    read: BytesMut,
    write: Vec<u8>,
    /// Commands written (or queued) whose replies have not been read.
    outstanding: usize,
}

impl Client {
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        // Requests are small and answered one by one: do not hold them back to fill a segment.
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            read: BytesMut::with_capacity(16 * 1024),
            write: Vec::with_capacity(16 * 1024),
            outstanding: 0,
        })
    }

    /// Queues one command; nothing is sent until [`Client::flush`] or [`Client::read_replies`].
    pub fn queue<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        resp::encode_command(&mut self.write, args);
        self.outstanding += 1;
    }

    /// Sends every queued command.
    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Sends what is queued and reads the replies of every outstanding command, in order.
    pub async fn read_replies(&mut self) -> Result<Vec<Reply>, ClientError> {
        self.flush().await?;
        let mut replies = Vec::with_capacity(self.outstanding);
        while self.outstanding > 0 {
            replies.push(self.read_reply().await?);
        }
        Ok(replies)
    }

    /// Sends one command and reads its reply (after those of earlier queued commands, which are
    /// dropped: use [`Client::read_replies`] to keep them).
    pub async fn command<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Result<Reply, ClientError> {
        self.queue(args);
        let replies = self.read_replies().await?;
        Ok(replies.into_iter().last().expect("one command was queued"))
    }

    /// Commands sent or queued whose replies have not been read yet.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Reads the reply of the oldest outstanding command (send queued ones first with
    /// [`Client::flush`]).
    pub async fn read_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            if let Some((reply, used)) = resp::decode(&self.read)? {
                self.read.advance(used);
                self.outstanding -= 1;
                return Ok(reply);
            }
            if self.stream.read_buf(&mut self.read).await? == 0 {
                return Err(ClientError::Closed(self.outstanding));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted server: reads exactly `expect` bytes, then writes `answer` in pieces of
    /// `chunk` bytes (so replies arrive split anywhere), then closes.
    async fn scripted(expect: Vec<u8>, answer: Vec<u8>, chunk: usize) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = vec![0; expect.len()];
            conn.read_exact(&mut got).await.unwrap();
            assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expect));
            for piece in answer.chunks(chunk) {
                conn.write_all(piece).await.unwrap();
                conn.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn pipelined_commands_get_their_replies_in_order_across_split_reads() {
        let mut expect = Vec::new();
        resp::encode_command(&mut expect, &["SET", "k", "v"]);
        resp::encode_command(&mut expect, &["GET", "k"]);
        resp::encode_command(&mut expect, &["GET", "missing"]);
        resp::encode_command(&mut expect, &["INCR", "k"]);
        let answer = b"+OK\r\n$1\r\nv\r\n$-1\r\n-ERR value is not an integer\r\n".to_vec();
        for chunk in [1, 3, 64] {
            let mut client = Client::connect(scripted(expect.clone(), answer.clone(), chunk).await).await.unwrap();
            client.queue(&["SET", "k", "v"]);
            client.queue(&["GET", "k"]);
            client.queue(&["GET", "missing"]);
            client.queue(&["INCR", "k"]);
            assert_eq!(client.outstanding(), 4);
            let replies = client.read_replies().await.unwrap();
            assert_eq!(
                replies,
                vec![
                    Reply::Simple("OK".into()),
                    Reply::Bulk(Some(b"v".to_vec())),
                    Reply::Bulk(None),
                    Reply::Error("ERR value is not an integer".into()),
                ],
                "chunks of {chunk} bytes"
            );
            assert_eq!(client.outstanding(), 0);
        }
    }

    #[tokio::test]
    async fn a_close_before_every_reply_is_an_error_counting_what_is_missing() {
        let mut expect = Vec::new();
        resp::encode_command(&mut expect, &["GET", "a"]);
        resp::encode_command(&mut expect, &["GET", "b"]);
        // One whole reply, then half of the next, then the server goes away.
        let addr = scripted(expect, b"$1\r\na\r\n$1\r\n".to_vec(), 4).await;
        let mut client = Client::connect(addr).await.unwrap();
        client.queue(&["GET", "a"]);
        client.queue(&["GET", "b"]);
        match client.read_replies().await {
            Err(ClientError::Closed(1)) => {}
            other => panic!("expected a close with one reply missing, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn garbage_from_the_server_is_a_protocol_error() {
        let mut expect = Vec::new();
        resp::encode_command(&mut expect, &["PING"]);
        let addr = scripted(expect, b"hello\r\n".to_vec(), 64).await;
        let mut client = Client::connect(addr).await.unwrap();
        match client.command(&["PING"]).await {
            Err(ClientError::Protocol(ProtocolError::UnknownType(b'h', 0))) => {}
            other => panic!("expected a protocol error, got {other:?}"),
        }
    }
}
