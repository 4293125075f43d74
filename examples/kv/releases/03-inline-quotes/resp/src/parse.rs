//! Reading requests: arrays of bulk strings, and inline commands.

use bytes::{Bytes, BytesMut};
use std::fmt;

/// The longest bulk string a request may carry (Redis's `proto-max-bulk-len`).
pub const MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// The most arguments a request may carry.
pub const MAX_ARGS: usize = 1024 * 1024;
/// The longest inline command, and the longest header line (`*N`, `$N`) before its `\r\n`.
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// One request: the command name and its arguments, as sent. Empty for an empty line or `*0`,
/// which a server skips.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    pub args: Vec<Bytes>,
}

/// Input that is not RESP2. The connection cannot be resynchronised after one: the server
/// answers with it and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// `*` not followed by a count in `0..=MAX_ARGS`, or no `\r\n` within `MAX_INLINE_LEN`.
    InvalidMultibulkLength,
    /// `$` not followed by a length in `0..=MAX_BULK_LEN`.
    InvalidBulkLength,
    /// An element of a request array that is not a bulk string: the byte found instead of `$`.
    ExpectedBulk(u8),
    /// A bulk string whose payload is not followed by `\r\n`.
    BulkNotTerminated,
    /// An inline command longer than `MAX_INLINE_LEN` without a newline.
    InlineTooLong,
    /// An inline command with a quote that is not closed, or closed and followed by a non-space.
    UnbalancedQuotes,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Protocol error: ")?;
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedBulk(b) => write!(f, "expected '$', got '{}'", b.escape_ascii()),
            ProtocolError::BulkNotTerminated => f.write_str("bulk string not followed by CRLF"),
            ProtocolError::InlineTooLong => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Takes one request from the front of `buf`, which holds what the socket gave so far.
/// `Ok(None)`: `buf` holds no whole request yet (nothing is taken; read more and call again).
/// An error leaves `buf` as it was.
#[dsu::updateable]
pub fn parse(buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_array(buf),
        Some(_) => parse_inline(buf),
    }
}

/// The integer on the line starting at `start`, and where the next line starts; `None` if the
/// line is not complete. `bad` is the error for a line that is not an integer or never ends.
#[dsu::updateable]
fn int_line(buf: &[u8], start: usize, bad: &ProtocolError) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = &buf[start..];
    let Some(cr) = rest.windows(2).position(|w| w == b"\r\n") else {
        return if rest.len() > MAX_INLINE_LEN { Err(bad.clone()) } else { Ok(None) };
    };
    let digits = &rest[..cr];
    let n = std::str::from_utf8(digits).ok().and_then(|s| s.parse::<i64>().ok()).ok_or_else(|| bad.clone())?;
    Ok(Some((n, start + cr + 2)))
}

/// `*N\r\n` then N bulk strings `$len\r\n<len bytes>\r\n`. The whole request is split off the
/// buffer at once, and the arguments are slices of it (no copies).
#[dsu::updateable]
fn parse_array(buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
    let Some((count, mut pos)) = int_line(buf, 1, &ProtocolError::InvalidMultibulkLength)? else {
        return Ok(None);
    };
    if count > MAX_ARGS as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    if count <= 0 {
        // `*0` and `*-1` are no request; Redis skips them.
        let _ = buf.split_to(pos);
        return Ok(Some(Request::default()));
    }
    // The count is the client's word: reserve for a few arguments, not for what it claims.
    let mut spans = Vec::with_capacity((count as usize).min(16));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other)),
        }
        let Some((len, start)) = int_line(buf, pos + 1, &ProtocolError::InvalidBulkLength)? else {
            return Ok(None);
        };
        if !(0..=MAX_BULK_LEN as i64).contains(&len) {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::BulkNotTerminated);
        }
        spans.push(start..end);
        pos = end + 2;
    }
    let frame = buf.split_to(pos).freeze();
    Ok(Some(Request { args: spans.into_iter().map(|span| frame.slice(span)).collect() }))
}

/// One line of words separated by spaces, ended by `\n` (or `\r\n`).
#[dsu::updateable]
fn parse_inline(buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return if buf.len() > MAX_INLINE_LEN { Err(ProtocolError::InlineTooLong) } else { Ok(None) };
    };
    let line = buf[..newline].strip_suffix(b"\r").unwrap_or(&buf[..newline]);
    let args = split_args(line)?;
    let _ = buf.split_to(newline + 1);
    Ok(Some(Request { args: args.into_iter().map(Bytes::from).collect() }))
}

/// The words of an inline command, read as Redis's `sdssplitargs` reads them: a word may be
/// quoted with `"` (inside which `\n`, `\r`, `\t`, `\b`, `\a`, `\\`, `\"` and `\xHH`
/// are escapes) or with `'` (inside which `\'` is); a closing quote must end the word.
#[dsu::updateable]
fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut word = Vec::new();
        match line[i] {
            quote @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err(ProtocolError::UnbalancedQuotes),
                        Some(&b) if b == quote => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') if quote == b'"' => {
                            let hex = line.get(i + 1..i + 4).filter(|h| h[0] == b'x').and_then(|h| {
                                std::str::from_utf8(&h[1..]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
                            });
                            if let Some(byte) = hex {
                                word.push(byte);
                                i += 4;
                                continue;
                            }
                            let escaped = match line.get(i + 1) {
                                None => return Err(ProtocolError::UnbalancedQuotes),
                                Some(b'n') => b'\n',
                                Some(b'r') => b'\r',
                                Some(b't') => b'\t',
                                Some(b'b') => 0x08,
                                Some(b'a') => 0x07,
                                Some(&other) => other,
                            };
                            word.push(escaped);
                            i += 2;
                        }
                        Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                            word.push(b'\'');
                            i += 2;
                        }
                        Some(&b) => {
                            word.push(b);
                            i += 1;
                        }
                    }
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    word.push(line[i]);
                    i += 1;
                }
            }
        }
        args.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(bytes: &[u8]) -> BytesMut {
        BytesMut::from(bytes)
    }

    fn args(request: Request) -> Vec<Vec<u8>> {
        request.args.into_iter().map(|a| a.to_vec()).collect()
    }

    #[test]
    fn an_array_of_bulk_strings() {
        let mut b = buf(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let request = parse(&mut b).unwrap().unwrap();
        assert_eq!(args(request), vec![b"SET".to_vec(), b"k".to_vec(), Vec::new()]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_bulk_string_holds_any_byte() {
        let mut b = buf(b"*1\r\n$4\r\n\r\n\0\xff\r\n");
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"\r\n\0\xff".to_vec()]);
    }

    #[test]
    fn pipelined_requests_come_one_at_a_time() {
        let mut b = buf(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n*1\r\n$4\r\nPI");
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"PING".to_vec()]);
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"GET".to_vec(), b"a".to_vec()]);
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"PING".to_vec()]);
        // The last one is cut short: nothing is taken until the rest arrives.
        assert_eq!(parse(&mut b).unwrap(), None);
        assert_eq!(&b[..], b"*1\r\n$4\r\nPI");
        b.extend_from_slice(b"NG\r\n");
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"PING".to_vec()]);
        assert_eq!(parse(&mut b).unwrap(), None);
    }

    #[test]
    fn a_request_cut_anywhere_waits_for_the_rest() {
        let whole: &[u8] = b"*2\r\n$3\r\nGET\r\n$10\r\n0123456789\r\n";
        for cut in 0..whole.len() {
            let mut b = buf(&whole[..cut]);
            assert_eq!(parse(&mut b).unwrap(), None, "cut at {cut}");
            assert_eq!(b.len(), cut, "nothing taken at {cut}");
            b.extend_from_slice(&whole[cut..]);
            assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"GET".to_vec(), b"0123456789".to_vec()]);
        }
    }

    #[test]
    fn empty_arrays_and_lines_are_no_request() {
        let mut b = buf(b"*0\r\n*-1\r\n\r\n  \r\n");
        for _ in 0..4 {
            assert_eq!(parse(&mut b).unwrap(), Some(Request::default()));
        }
        assert!(b.is_empty());
    }

    #[test]
    fn inline_commands() {
        let mut b = buf(b"SET  k v\r\nget k\nPING");
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"get".to_vec(), b"k".to_vec()]);
        // No newline yet.
        assert_eq!(parse(&mut b).unwrap(), None);
    }

    #[test]
    fn inline_words_in_double_quotes_hold_spaces() {
        let mut b = buf(b"SET k \"a b\"\r\n");
        assert_eq!(args(parse(&mut b).unwrap().unwrap()), vec![b"SET".to_vec(), b"k".to_vec(), b"a b".to_vec()]);
        for bad in [&b"SET k \"a b\r\n"[..], b"SET k \"a\"b\r\n"] {
            assert_eq!(parse(&mut buf(bad)), Err(ProtocolError::UnbalancedQuotes), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn inline_quotes_take_escapes_and_single_quotes() {
        let mut b = buf(b"SET k \"a\\\"b\\n\\x41\\\\\" 'it\\'s \"x\"'\r\n");
        assert_eq!(
            args(parse(&mut b).unwrap().unwrap()),
            vec![b"SET".to_vec(), b"k".to_vec(), b"a\"b\nA\\".to_vec(), b"it's \"x\"".to_vec()]
        );
        for bad in [&b"SET k 'a\r\n"[..], b"SET k 'a'b\r\n", b"SET k \"a\\\r\n"] {
            assert_eq!(parse(&mut buf(bad)), Err(ProtocolError::UnbalancedQuotes), "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn malformed_input_is_a_clear_error_and_takes_nothing() {
        let cases: [(&[u8], ProtocolError); 7] = [
            (b"*x\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(b':')),
            (b"*1\r\n$-1\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$abc\r\n", ProtocolError::InvalidBulkLength),
            (b"*1\r\n$3\r\nGETX\r\n", ProtocolError::BulkNotTerminated),
            (b"*1\r\n$ 3\r\nGET\r\n", ProtocolError::InvalidBulkLength),
            (b"*2\r\n$3\r\nGET\r\n+k\r\n", ProtocolError::ExpectedBulk(b'+')),
        ];
        for (input, error) in cases {
            let mut b = buf(input);
            assert_eq!(parse(&mut b), Err(error), "{}", input.escape_ascii());
            assert_eq!(&b[..], input, "input kept");
        }
        assert_eq!(ProtocolError::ExpectedBulk(b':').to_string(), "Protocol error: expected '$', got ':'");
    }

    #[test]
    fn oversized_lengths_are_refused_before_anything_is_allocated() {
        let too_many = format!("*{}\r\n", MAX_ARGS + 1);
        assert_eq!(parse(&mut buf(too_many.as_bytes())), Err(ProtocolError::InvalidMultibulkLength));
        let too_long = format!("*1\r\n${}\r\n", MAX_BULK_LEN + 1);
        assert_eq!(parse(&mut buf(too_long.as_bytes())), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(parse(&mut buf(b"*99999999999999999999999\r\n")), Err(ProtocolError::InvalidMultibulkLength));
        // The largest count is accepted, and waits for its arguments.
        assert_eq!(parse(&mut buf(format!("*{MAX_ARGS}\r\n").as_bytes())), Ok(None));
    }

    #[test]
    fn lines_that_never_end_are_refused() {
        let mut header = b"*1".to_vec();
        header.resize(MAX_INLINE_LEN + 10, b'1');
        assert_eq!(parse(&mut buf(&header)), Err(ProtocolError::InvalidMultibulkLength));
        let inline = vec![b'a'; MAX_INLINE_LEN + 1];
        assert_eq!(parse(&mut buf(&inline)), Err(ProtocolError::InlineTooLong));
        // Up to the limit, it is a line still arriving.
        assert_eq!(parse(&mut buf(&inline[..MAX_INLINE_LEN])), Ok(None));
    }
}
