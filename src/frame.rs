//! One outgoing message, encoded once, and the slices of it each transport puts on the wire.
//!
//! A broadcast is encoded once into a [`Frame`]; every recipient's queue gets a clone, which
//! is a reference-count bump. The buffer holds the 4-byte big-endian length in front of the
//! JSON body, so a length-prefixed peer gets the whole buffer as one chunk and every other
//! transport gets a slice of the same body with its own small header or terminator beside it:
//! no transport costs an allocation per recipient.

use bytes::Bytes;

/// Length of the big-endian prefix of the length-prefixed framing.
pub const LENGTH_PREFIX: usize = 4;

/// One outgoing message: the length prefix followed by the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Starts a buffer with room for the prefix; write the JSON body after it, then call
    /// [`Frame::finish`].
    pub fn start(body_capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(LENGTH_PREFIX + body_capacity);
        buf.extend_from_slice(&[0; LENGTH_PREFIX]);
        buf
    }

    /// Patches the prefix of a buffer made by [`Frame::start`].
    ///
    /// # Panics
    /// If `buf` is shorter than the prefix or the body exceeds 4 GiB; both are local
    /// programming errors (the server never builds such frames), not peer input.
    pub fn finish(mut buf: Vec<u8>) -> Frame {
        let body_len = u32::try_from(buf.len() - LENGTH_PREFIX).expect("frame body over 4 GiB");
        buf[..LENGTH_PREFIX].copy_from_slice(&body_len.to_be_bytes());
        Frame(Bytes::from(buf))
    }

    /// Frames an already encoded body (clients and tests; the server writes in place).
    pub fn from_body(body: &[u8]) -> Frame {
        let mut buf = Frame::start(body.len());
        buf.extend_from_slice(body);
        Frame::finish(buf)
    }

    /// The JSON body without framing; shares this frame's buffer.
    pub fn body(&self) -> Bytes {
        self.0.slice(LENGTH_PREFIX..)
    }

    /// The prefix and the body, as the length-prefixed framing sends them; shares the buffer.
    pub fn length_prefixed(&self) -> Bytes {
        self.0.clone()
    }

    /// Bytes on the wire in the length-prefixed framing.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for frames built by the server; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.len() <= LENGTH_PREFIX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_and_the_prefixed_frame_share_one_buffer() {
        let frame = Frame::from_body(b"{}");
        assert_eq!(&frame.length_prefixed()[..], &[0, 0, 0, 2, b'{', b'}']);
        assert_eq!(&frame.body()[..], b"{}");
        assert_eq!(frame.body().as_ptr(), frame.0[LENGTH_PREFIX..].as_ptr());
        assert_eq!(frame.len(), 6);
    }
}
