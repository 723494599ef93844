//! Newline-delimited JSON, for people typing the protocol into `nc`: one object per line.

use bytes::{Bytes, BytesMut};

use super::TransportError;
use crate::frame::Frame;

/// Takes lines off the front of a read buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: usize,
    /// Bytes of the buffer already searched for `\n`, so a slow line is not rescanned from the
    /// start on every read (slowloris would make that quadratic).
    scanned: usize,
}

impl Decoder {
    /// A decoder refusing lines over `max_frame` bytes, terminator not counted.
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            max_frame,
            scanned: 0,
        }
    }

    /// The next non-blank line without its terminator (`\n` or `\r\n`), `Ok(None)` until one
    /// has arrived. An unterminated line is refused as soon as it is over the limit.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        loop {
            let Some(offset) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
                self.scanned = buf.len();
                // A trailing '\r' may be the first half of the terminator: not counted yet.
                let pending = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                if pending > self.max_frame {
                    return Err(self.too_large(pending));
                }
                return Ok(None);
            };
            let newline = self.scanned + offset;
            self.scanned = 0;
            let mut line = buf.split_to(newline + 1);
            line.truncate(newline);
            if line.last() == Some(&b'\r') {
                line.truncate(newline - 1);
            }
            if line.len() > self.max_frame {
                return Err(self.too_large(line.len()));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(line.freeze()));
        }
    }

    fn too_large(&self, len: usize) -> TransportError {
        TransportError::TooLarge {
            len: len as u64,
            max: self.max_frame,
        }
    }
}

/// The chunks queued for a line-mode peer: the shared body and a shared `"\n"`.
pub fn chunks(frame: &Frame) -> [Bytes; 2] {
    static NEWLINE: &[u8] = b"\n";
    [frame.body(), Bytes::from_static(NEWLINE)]
}

/// A body with its terminator, for a client's own sends.
pub fn encode(body: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend_from_slice(body);
    line.push(b'\n');
    Bytes::from(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_excludes_the_terminator() {
        let mut exact = Decoder::new(4);
        let mut buf = BytesMut::from(&b"{12}\r\n"[..]);
        assert_eq!(exact.decode(&mut buf), Ok(Some(Bytes::from("{12}"))));

        let mut over = Decoder::new(4);
        let mut buf = BytesMut::from(&b"{123"[..]);
        assert_eq!(over.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\r");
        assert_eq!(
            over.decode(&mut buf),
            Ok(None),
            "a lone \\r may be a terminator"
        );
        buf.extend_from_slice(b"4");
        assert!(matches!(
            over.decode(&mut buf),
            Err(TransportError::TooLarge { .. })
        ));
    }

    #[test]
    fn chunks_share_the_frame_body() {
        let frame = Frame::from_body(b"{}");
        let [body, newline] = chunks(&frame);
        assert_eq!(&body[..], b"{}");
        assert_eq!(&newline[..], b"\n");
        assert_eq!(body.as_ptr(), frame.body().as_ptr());
    }
}
