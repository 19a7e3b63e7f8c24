//! Line framing and tab-escaping: `next_line` under both socket limits frames a buffer without
//! panicking and never returns a line past the limit; `unescape(escape(x)) == x` and an escaped
//! value never contains a byte that would split a field or a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saslgate::protocol::escape::{escape, unescape};
use saslgate::protocol::line::{next_line, Frame};
use saslgate::protocol::{CLIENT_MAX_LINE, MASTER_MAX_LINE};

fn frame_all(mut buf: &[u8], max: usize) {
    loop {
        match next_line(buf, max) {
            Ok(Frame::Incomplete) => {
                assert!(buf.len() < max && !buf.contains(&b'\n'));
                return;
            }
            Ok(Frame::Line { len, consumed }) => {
                assert!(consumed <= max && consumed <= buf.len(), "line past the limit");
                assert_eq!(buf[consumed - 1], b'\n');
                assert!(len < consumed && consumed - len <= 2);
                assert!(!buf[..consumed - 1].contains(&b'\n'));
                buf = &buf[consumed..];
            }
            Err(_) => {
                assert!(buf.len() >= max, "LineTooLong on a short buffer");
                return;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    frame_all(data, CLIENT_MAX_LINE);
    frame_all(data, MASTER_MAX_LINE);
    // Small limits reach the too-long path with libFuzzer's default input sizes.
    frame_all(data, 1 + usize::from(data.first().copied().unwrap_or(0) % 64));

    let escaped = escape(data);
    assert!(!escaped.iter().any(|b| matches!(b, 0 | b'\t' | b'\n' | b'\r')));
    assert_eq!(unescape(&escaped), data);
    let _ = unescape(data);
});
