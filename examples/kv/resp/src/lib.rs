//! RESP2, the Redis protocol, as a server reads and writes it.
//!
//! Requests are arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`), or inline commands, one
//! line of words, as a person types them into `telnet` and `redis-cli` sends some of them.
//! [`parse`] reads one request from the front of a buffer holding whatever the socket gave so
//! far: a whole request, the start of one (`Ok(None)`: read more) or several (pipelining: call it
//! again on the rest). Replies are written by the encoders into one output buffer per read, so a
//! pipeline of requests is answered with one write.
//!
//! The parser is updateable: a release that fixes it reaches connections that are open.

mod encode;
mod parse;

pub use encode::{array_len, bulk, error, integer, null, simple};
pub use parse::{parse, ProtocolError, Request, MAX_ARGS, MAX_BULK_LEN, MAX_INLINE_LEN};
