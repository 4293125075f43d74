//! RESP2 on the client's side: commands encoded as arrays of bulk strings, replies decoded from
//! a buffer that may hold less than one reply (the rest is still on the wire) or several (a
//! pipeline's answers).

use std::fmt;

/// One reply of a RESP2 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`, or `$-1` (no value: `None`).
    Bulk(Option<Vec<u8>>),
    /// `*2\r\n…`, or `*-1` (`None`).
    Array(Option<Vec<Reply>>),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Simple(s) => write!(f, "+{s}"),
            Reply::Error(s) => write!(f, "-{s}"),
            Reply::Integer(n) => write!(f, ":{n}"),
            Reply::Bulk(None) => write!(f, "(nil)"),
            Reply::Bulk(Some(b)) => write!(f, "{:?}", String::from_utf8_lossy(b)),
            Reply::Array(None) => write!(f, "(nil array)"),
            Reply::Array(Some(items)) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Input that is not RESP2: the connection cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("unknown reply type byte {0:#04x} at offset {1}")]
    UnknownType(u8, usize),
    #[error("a line at offset {0} ends in a lone \\r or \\n, not \\r\\n")]
    BadLineEnd(usize),
    #[error("not an integer at offset {offset}: {text:?}")]
    BadInteger { offset: usize, text: String },
    #[error("negative length {len} at offset {offset} (only -1 means no value)")]
    BadLength { offset: usize, len: i64 },
    #[error("length {len} at offset {offset} is over the limit of {limit}")]
    TooLong { offset: usize, len: i64, limit: usize },
    #[error("bulk string at offset {0} is not followed by \\r\\n")]
    BulkNotTerminated(usize),
    #[error("simple string or error at offset {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("arrays nested deeper than {0}")]
    TooDeep(usize),
}

/// The longest bulk string and the longest array a reply may announce: a corrupt length is
/// refused instead of waiting for gigabytes that never come.
pub const MAX_BULK: usize = 512 * 1024 * 1024;
pub const MAX_ARRAY: usize = 1 << 24;
const MAX_DEPTH: usize = 64;

/// Appends `args` to `out` as one command: an array of bulk strings.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        let arg = arg.as_ref();
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Decodes the first reply in `buf`: `Ok(Some((reply, bytes used)))`, `Ok(None)` if `buf` holds
/// only part of it (read more and call again with the whole buffer), or the error that makes
/// the input unreadable.
pub fn decode(buf: &[u8]) -> Result<Option<(Reply, usize)>, ProtocolError> {
    decode_at(buf, 0, 0)
}

fn decode_at(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Reply, usize)>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::TooDeep(MAX_DEPTH));
    }
    let Some(&kind) = buf.get(pos) else { return Ok(None) };
    let Some((line, next)) = line_at(buf, pos + 1)? else { return Ok(None) };
    match kind {
        b'+' | b'-' => {
            let text = std::str::from_utf8(line).map_err(|_| ProtocolError::NotUtf8(pos))?.to_string();
            let reply = if kind == b'+' { Reply::Simple(text) } else { Reply::Error(text) };
            Ok(Some((reply, next)))
        }
        b':' => Ok(Some((Reply::Integer(integer(line, pos + 1)?), next))),
        b'$' => {
            let Some(len) = length(line, pos + 1, MAX_BULK)? else {
                return Ok(Some((Reply::Bulk(None), next)));
            };
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err(ProtocolError::BulkNotTerminated(pos));
            }
            Ok(Some((Reply::Bulk(Some(buf[next..next + len].to_vec())), next + len + 2)))
        }
        b'*' => {
            let Some(count) = length(line, pos + 1, MAX_ARRAY)? else {
                return Ok(Some((Reply::Array(None), next)));
            };
            // No allocation sized by what the peer announced before the items are there.
            let mut items = Vec::new();
            let mut at = next;
            for _ in 0..count {
                match decode_at(buf, at, depth + 1)? {
                    Some((item, end)) => {
                        items.push(item);
                        at = end;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        other => Err(ProtocolError::UnknownType(other, pos)),
    }
}

/// The line starting at `pos` (without its `\r\n`) and the offset after it.
fn line_at(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, ProtocolError> {
    let rest = buf.get(pos..).unwrap_or(&[]);
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        None => Ok(None),
        Some(i) if rest[i] == b'\n' => Err(ProtocolError::BadLineEnd(pos + i)),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some((&rest[..i], pos + i + 2))),
            Some(_) => Err(ProtocolError::BadLineEnd(pos + i)),
        },
    }
}

fn integer(line: &[u8], offset: usize) -> Result<i64, ProtocolError> {
    let bad = || ProtocolError::BadInteger { offset, text: String::from_utf8_lossy(line).into_owned() };
    std::str::from_utf8(line).ok().and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)
}

/// A length line: `None` for -1 (no value).
fn length(line: &[u8], offset: usize, limit: usize) -> Result<Option<usize>, ProtocolError> {
    match integer(line, offset)? {
        -1 => Ok(None),
        len if len < 0 => Err(ProtocolError::BadLength { offset, len }),
        len if len as u64 > limit as u64 => Err(ProtocolError::TooLong { offset, len, limit }),
        len => Ok(Some(len as usize)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> Reply {
        let (reply, used) = decode(input).unwrap().expect("a whole reply");
        assert_eq!(used, input.len(), "{reply:?} used {used} of {} bytes", input.len());
        reply
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &["SET", "key:1", ""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$5\r\nkey:1\r\n$0\r\n\r\n");
        // Binary-safe: CR, LF and NUL travel inside a bulk string as they are.
        out.clear();
        encode_command(&mut out, &[&b"GET"[..], &b"a\r\nb\0"[..]]);
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$5\r\na\r\nb\0\r\n");
        assert_eq!(
            whole(&out),
            Reply::Array(Some(vec![Reply::Bulk(Some(b"GET".to_vec())), Reply::Bulk(Some(b"a\r\nb\0".to_vec())),]))
        );
    }

    #[test]
    fn every_reply_type_decodes() {
        assert_eq!(whole(b"+OK\r\n"), Reply::Simple("OK".into()));
        assert_eq!(whole(b"+\r\n"), Reply::Simple(String::new()));
        assert_eq!(whole(b"-ERR unknown command 'FOO'\r\n"), Reply::Error("ERR unknown command 'FOO'".into()));
        assert_eq!(whole(b":0\r\n"), Reply::Integer(0));
        assert_eq!(whole(b":-2\r\n"), Reply::Integer(-2));
        assert_eq!(whole(b":9223372036854775807\r\n"), Reply::Integer(i64::MAX));
        assert_eq!(whole(b"$5\r\nhello\r\n"), Reply::Bulk(Some(b"hello".to_vec())));
        assert_eq!(whole(b"$0\r\n\r\n"), Reply::Bulk(Some(Vec::new())));
        assert_eq!(whole(b"$-1\r\n"), Reply::Bulk(None));
        assert_eq!(whole(b"*0\r\n"), Reply::Array(Some(Vec::new())));
        assert_eq!(whole(b"*-1\r\n"), Reply::Array(None));
        assert_eq!(
            whole(b"*3\r\n:1\r\n*2\r\n+a\r\n$-1\r\n-ERR x\r\n"),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Array(Some(vec![Reply::Simple("a".into()), Reply::Bulk(None)])),
                Reply::Error("ERR x".into()),
            ]))
        );
    }

    #[test]
    fn pipelined_replies_decode_one_at_a_time() {
        let buf = b"+OK\r\n$2\r\nv1\r\n:3\r\n";
        let mut at = 0;
        let mut replies = Vec::new();
        while let Some((reply, used)) = decode(&buf[at..]).unwrap() {
            replies.push(reply);
            at += used;
        }
        assert_eq!(at, buf.len());
        assert_eq!(replies, vec![Reply::Simple("OK".into()), Reply::Bulk(Some(b"v1".to_vec())), Reply::Integer(3)]);
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let input: &[u8] = b"*4\r\n+OK\r\n$12\r\nhello\r\nworld\r\n:-7\r\n*1\r\n$-1\r\n";
        for cut in 0..input.len() {
            assert_eq!(decode(&input[..cut]), Ok(None), "prefix of {cut} bytes");
        }
        let reply = whole(input);
        assert_eq!(
            reply,
            Reply::Array(Some(vec![
                Reply::Simple("OK".into()),
                Reply::Bulk(Some(b"hello\r\nworld".to_vec())),
                Reply::Integer(-7),
                Reply::Array(Some(vec![Reply::Bulk(None)])),
            ]))
        );
    }

    #[test]
    fn malformed_input_is_an_error_naming_where() {
        assert_eq!(decode(b"?x\r\n"), Err(ProtocolError::UnknownType(b'?', 0)));
        assert_eq!(decode(b":12a\r\n"), Err(ProtocolError::BadInteger { offset: 1, text: "12a".into() }));
        assert_eq!(decode(b":\r\n"), Err(ProtocolError::BadInteger { offset: 1, text: String::new() }));
        assert_eq!(decode(b"+OK\n"), Err(ProtocolError::BadLineEnd(3)));
        assert_eq!(decode(b"+OK\rX"), Err(ProtocolError::BadLineEnd(3)));
        assert_eq!(decode(b"$-2\r\n"), Err(ProtocolError::BadLength { offset: 1, len: -2 }));
        assert_eq!(decode(b"*-5\r\n"), Err(ProtocolError::BadLength { offset: 1, len: -5 }));
        assert_eq!(decode(b"$3\r\nabcde"), Err(ProtocolError::BulkNotTerminated(0)));
        assert!(matches!(decode(b"$99999999999\r\n"), Err(ProtocolError::TooLong { .. })));
        assert!(matches!(decode(b"*99999999999\r\n"), Err(ProtocolError::TooLong { .. })));
        assert_eq!(decode(b"-\xff\r\n"), Err(ProtocolError::NotUtf8(0)));
        // An error inside an array is found at its own offset.
        assert_eq!(decode(b"*2\r\n:1\r\n!\r\n"), Err(ProtocolError::UnknownType(b'!', 8)));
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert_eq!(decode(deep.as_bytes()), Err(ProtocolError::TooDeep(MAX_DEPTH)));
    }
}
