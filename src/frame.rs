//! One outgoing message, encoded once, and the slices of it each transport puts on the wire.
//!
//! A broadcast is encoded once into a [`Frame`]; every recipient's queue gets a clone, which
//! is a reference-count bump. The buffer holds, in front of the JSON body, the WebSocket
//! text-frame header (right-aligned in a 10-byte area) and the 4-byte big-endian length, both
//! written once by [`Frame::finish`]. A length-prefixed peer gets the prefix and body as one
//! chunk; a WebSocket peer gets the header and the body as two slices of the same buffer; a
//! line-mode peer the body and a static `\n`: no transport costs an allocation or a header
//! computation per recipient.

use bytes::Bytes;

/// Length of the big-endian prefix of the length-prefixed framing.
pub const LENGTH_PREFIX: usize = 4;

/// The longest WebSocket frame header the server sends (unmasked, 64-bit length).
pub const WS_HEADER_MAX: usize = 10;

/// Bytes in front of the body: the WebSocket header area, then the length prefix.
const HEAD: usize = WS_HEADER_MAX + LENGTH_PREFIX;

/// One outgoing message: the WebSocket header area, the length prefix, the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    buf: Bytes,
    /// Where the WebSocket header starts (it ends at [`WS_HEADER_MAX`]).
    ws_start: usize,
}

impl Frame {
    /// Starts a buffer with room for the headers; write the JSON body after it, then call
    /// [`Frame::finish`].
    pub fn start(body_capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEAD + body_capacity);
        buf.extend_from_slice(&[0; HEAD]);
        buf
    }

    /// Writes the length prefix and the WebSocket header of a buffer made by
    /// [`Frame::start`]: once per frame, however many recipients share it.
    ///
    /// # Panics
    /// If `buf` is shorter than the headers or the body exceeds 4 GiB; both are local
    /// programming errors (the server never builds such frames), not peer input.
    pub fn finish(mut buf: Vec<u8>) -> Frame {
        let body_len = buf.len() - HEAD;
        // Every server frame is a reply, a batch or history segment (events of at most
        // --max-frame, 16 MiB, each, cut into 64 KiB pieces) or a tick of re-encoded poses:
        // all far below 4 GiB, so the length always fits.
        let prefix = u32::try_from(body_len).expect("frame body over 4 GiB");
        buf[WS_HEADER_MAX..HEAD].copy_from_slice(&prefix.to_be_bytes());
        let ws_start = write_websocket_header(&mut buf[..WS_HEADER_MAX], body_len);
        Frame {
            buf: Bytes::from(buf),
            ws_start,
        }
    }

    /// Frames an already encoded body (clients and tests; the server writes in place).
    pub fn from_body(body: &[u8]) -> Frame {
        let mut buf = Frame::start(body.len());
        buf.extend_from_slice(body);
        Frame::finish(buf)
    }

    /// The JSON body without framing; shares this frame's buffer.
    pub fn body(&self) -> Bytes {
        self.buf.slice(HEAD..)
    }

    /// The prefix and the body, as the length-prefixed framing sends them; shares the buffer.
    pub fn length_prefixed(&self) -> Bytes {
        self.buf.slice(WS_HEADER_MAX..)
    }

    /// The header of the one unmasked, final WebSocket text frame carrying the body (2, 4 or
    /// 10 bytes); shares the buffer.
    pub fn websocket_header(&self) -> Bytes {
        self.buf.slice(self.ws_start..WS_HEADER_MAX)
    }

    /// Bytes on the wire in the length-prefixed framing.
    pub fn len(&self) -> usize {
        self.buf.len() - WS_HEADER_MAX
    }

    /// Never true for frames built by the server; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.buf.len() <= HEAD
    }
}

/// Writes the RFC 6455 header of one unmasked, final text frame of `len` bytes at the end
/// of `area` ([`WS_HEADER_MAX`] bytes); returns where it starts.
fn write_websocket_header(area: &mut [u8], len: usize) -> usize {
    const FIN_TEXT: u8 = 0x80 | 0x1;
    let start = if len < 126 {
        area[WS_HEADER_MAX - 1] = len as u8;
        WS_HEADER_MAX - 2
    } else if let Ok(len) = u16::try_from(len) {
        area[WS_HEADER_MAX - 2..].copy_from_slice(&len.to_be_bytes());
        area[WS_HEADER_MAX - 3] = 126;
        WS_HEADER_MAX - 4
    } else {
        area[2..].copy_from_slice(&(len as u64).to_be_bytes());
        area[1] = 127;
        0
    };
    area[start] = FIN_TEXT;
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_and_the_prefixed_frame_share_one_buffer() {
        let frame = Frame::from_body(b"{}");
        assert_eq!(&frame.length_prefixed()[..], &[0, 0, 0, 2, b'{', b'}']);
        assert_eq!(&frame.body()[..], b"{}");
        assert_eq!(frame.body().as_ptr(), frame.buf[HEAD..].as_ptr());
        assert_eq!(frame.len(), 6);
        assert_eq!(&frame.websocket_header()[..], &[0x81, 2]);
    }

    #[test]
    fn the_websocket_header_takes_each_length_form() {
        for (len, header) in [
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let frame = Frame::from_body(&vec![b'x'; len]);
            assert_eq!(&frame.websocket_header()[..], &header[..], "{len}");
            assert_eq!(frame.body().len(), len);
            assert_eq!(frame.length_prefixed().len(), len + 4);
        }
    }
}
