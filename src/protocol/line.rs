//! Line framing: finds the next complete line in a buffer without copying it.
//!
//! "Need more bytes" is a normal answer ([`Frame::Incomplete`]), not an error. The limit is
//! enforced on the *unprocessed* input, as Dovecot does: a buffer that holds `max` bytes without
//! a line feed is already too long, so a peer can never make us buffer more than `max` bytes.

use super::ProtocolError;

/// What [`next_line`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// No line feed yet; read more.
    Incomplete,
    /// A line of `len` bytes (without CR/LF) that occupies `consumed` bytes of the buffer.
    Line {
        /// Length of the line content, CR and LF stripped.
        len: usize,
        /// Bytes to drop from the buffer to get past the line.
        consumed: usize,
    },
}

/// Looks for a complete line at the start of `buf`. A CR right before the LF is dropped, so CRLF
/// and LF both work. `max` bounds a line including its terminator.
pub fn next_line(buf: &[u8], max: usize) -> Result<Frame, ProtocolError> {
    let window = &buf[..buf.len().min(max)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let len = if lf > 0 && buf[lf - 1] == b'\r' { lf - 1 } else { lf };
            Ok(Frame::Line { len, consumed: lf + 1 })
        }
        None if buf.len() >= max => Err(ProtocolError::LineTooLong(max)),
        None => Ok(Frame::Incomplete),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(next_line(b"", 10), Ok(Frame::Incomplete));
        assert_eq!(next_line(b"abc", 10), Ok(Frame::Incomplete));
        assert_eq!(next_line(b"abc\nde", 10), Ok(Frame::Line { len: 3, consumed: 4 }));
        assert_eq!(next_line(b"abc\r\n", 10), Ok(Frame::Line { len: 3, consumed: 5 }));
        assert_eq!(next_line(b"\n", 10), Ok(Frame::Line { len: 0, consumed: 1 }));
        assert_eq!(next_line(b"\r\n", 10), Ok(Frame::Line { len: 0, consumed: 2 }));
    }

    #[test]
    fn limit_counts_the_terminator() {
        assert_eq!(next_line(b"123456789\n", 10), Ok(Frame::Line { len: 9, consumed: 10 }));
        assert_eq!(next_line(b"1234567890\n", 10), Err(ProtocolError::LineTooLong(10)));
        assert_eq!(next_line(b"1234567890", 10), Err(ProtocolError::LineTooLong(10)));
        assert_eq!(next_line(b"123456789", 10), Ok(Frame::Incomplete));
    }
}
