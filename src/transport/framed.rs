//! The default framing: a 4-byte big-endian length, then that many bytes of JSON. It is what
//! fixes the "one `send()` is one `recv()`" bug of socket tutorials.

use bytes::{Buf, Bytes, BytesMut};

use super::TransportError;
use crate::frame::{Frame, LENGTH_PREFIX};

/// Takes length-prefixed frames off the front of a read buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: usize,
}

impl Decoder {
    /// A decoder refusing frames over `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Decoder { max_frame }
    }

    /// The next whole body, `Ok(None)` until one has arrived. The length is checked before
    /// anything is allocated, so a 4 GiB header is refused after 4 bytes.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        let Some(header) = buf.get(..LENGTH_PREFIX) else {
            return Ok(None);
        };
        let mut prefix = [0u8; LENGTH_PREFIX];
        prefix.copy_from_slice(header);
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Err(TransportError::ZeroLength);
        }
        if len > self.max_frame {
            return Err(TransportError::TooLarge {
                len: len as u64,
                max: self.max_frame,
            });
        }
        if buf.len() < LENGTH_PREFIX + len {
            buf.reserve(LENGTH_PREFIX + len - buf.len());
            return Ok(None);
        }
        buf.advance(LENGTH_PREFIX);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

/// The chunks queued for a length-prefixed peer: the frame's own buffer, prefix included.
pub fn chunks(frame: &Frame) -> [Bytes; 2] {
    [frame.length_prefixed(), Bytes::new()]
}

/// A body with its length prefix, for a client's own sends.
pub fn encode(body: &[u8]) -> Bytes {
    Frame::from_body(body).length_prefixed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_whole_body() {
        let mut decoder = Decoder::new(100);
        let wire = encode(b"{\"x\":2}");
        let mut buf = BytesMut::from(&wire[..5]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&wire[5..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Bytes::from("{\"x\":2}"))));
    }

    #[test]
    fn zero_length_is_refused() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Err(TransportError::ZeroLength));
    }

    #[test]
    fn oversize_header_is_refused_before_the_body_arrives() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(TransportError::TooLarge {
                len: u32::MAX as u64,
                max: 100
            })
        );
    }

    #[test]
    fn chunks_are_the_frame_itself() {
        let frame = Frame::from_body(b"{}");
        let [head, tail] = chunks(&frame);
        assert_eq!(&head[..], &[0, 0, 0, 2, b'{', b'}']);
        assert!(tail.is_empty());
    }
}
