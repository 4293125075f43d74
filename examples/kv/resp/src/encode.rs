//! Reply encoders: each appends one RESP2 value to `out`.

use std::io::Write as _;

/// `+text\r\n`, a simple string (`+OK`, `+PONG`).
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `-message\r\n`, an error; `message` starts with its kind (`ERR`, `WRONGTYPE`).
pub fn error(out: &mut Vec<u8>, message: &str) {
    out.push(b'-');
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// `:n\r\n`, an integer.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    // Writing into a Vec cannot fail.
    let _ = write!(out, ":{n}\r\n");
}

/// `$len\r\nbytes\r\n`, a bulk string.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    let _ = write!(out, "${}\r\n", bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, the null bulk string (a missing key).
pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// `*n\r\n`, the header of an array of `n` values, which the caller writes next.
pub fn array_len(out: &mut Vec<u8>, n: usize) {
    let _ = write!(out, "*{n}\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_reply() {
        let mut out = Vec::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR no");
        integer(&mut out, -3);
        bulk(&mut out, b"a\r\nb");
        null(&mut out);
        array_len(&mut out, 0);
        assert_eq!(out, b"+OK\r\n-ERR no\r\n:-3\r\n$4\r\na\r\nb\r\n$-1\r\n*0\r\n");
    }
}
