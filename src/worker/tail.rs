//! Bounded capture of a command's output: only the last bytes are kept.

use std::collections::VecDeque;

/// The most of one stream a report carries, and the server's limit on `output` and `error`.
pub const TAIL_BYTES: usize = 256 * 1024;

/// The last `capacity` bytes written to it; older bytes are dropped as new ones arrive, so
/// a command that writes gigabytes costs `capacity` bytes of memory.
pub struct TailBuffer {
    bytes: VecDeque<u8>,
    capacity: usize,
}

impl TailBuffer {
    pub fn new(capacity: usize) -> TailBuffer {
        TailBuffer { bytes: VecDeque::with_capacity(capacity.min(64 * 1024)), capacity }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        let chunk = &chunk[chunk.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + chunk.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(chunk);
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }
}

/// The end of `bytes` as text of at most `max_bytes` bytes: a character cut by the start of
/// the tail is dropped, invalid UTF-8 becomes U+FFFD, and the text is cut again at a
/// character boundary if the replacements made it longer.
pub fn tail_text(bytes: &[u8], max_bytes: usize) -> String {
    let mut bytes = &bytes[bytes.len().saturating_sub(max_bytes)..];
    while let [first, rest @ ..] = bytes {
        if first & 0b1100_0000 != 0b1000_0000 {
            break;
        }
        bytes = rest; // a continuation byte: the start of its character was cut off
    }
    let text = String::from_utf8_lossy(bytes);
    let mut start = text.len().saturating_sub(max_bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_bytes_are_kept() {
        let mut tail = TailBuffer::new(8);
        tail.push(b"abc");
        tail.push(b"defgh");
        assert_eq!(tail.to_vec(), b"abcdefgh");
        tail.push(b"ij");
        assert_eq!(tail.to_vec(), b"cdefghij");
        tail.push(b"0123456789xyz");
        assert_eq!(tail.to_vec(), b"56789xyz");
    }

    #[test]
    fn tail_text_never_exceeds_its_limit_or_splits_a_character() {
        assert_eq!(tail_text("héllo".as_bytes(), 4), "llo"); // "é" cut in half is dropped
        assert_eq!(tail_text(b"plain", 100), "plain");
        let invalid = [0xff_u8; 10];
        let text = tail_text(&invalid, 10);
        assert!(text.len() <= 10 && text.chars().all(|c| c == '\u{fffd}'), "{text:?}");
    }
}
