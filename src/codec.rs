//! Framing only: where one message ends and the next begins. Nothing here looks inside JSON.
//!
//! Two framings share one connection type. The default is a 4-byte big-endian length and then
//! the body, which is what fixes the "one `send()` is one `recv()`" bug of socket tutorials. A
//! connection whose first byte is `{` speaks newline-delimited JSON instead, so a person can
//! type the protocol into `nc`. The sniff is unambiguous because a legal length prefix starts
//! with `0x00` (frames are far below 16 MiB).
//!
//! Outgoing frames are built once with the 4-byte prefix in front ([`Frame`]); a line-mode
//! recipient gets a slice of the same buffer plus a shared `"\n"`, so neither framing costs an
//! allocation per recipient.

use bytes::{Buf, Bytes, BytesMut};

/// Which framing a connection speaks; decided by its first byte and fixed after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 4-byte big-endian length, then that many bytes of JSON.
    Framed,
    /// One JSON object per `\n`-terminated line.
    Line,
}

/// The peer broke the framing; both variants map to a protocol error code and a close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A length prefix of zero: there is no empty message, so the stream is out of sync.
    #[error("zero-length frame")]
    ZeroLength,
    /// The frame or line announced or buffered more than `max` bytes.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length (framed) or bytes buffered so far (line).
        len: u64,
        /// The configured `max_frame`.
        max: usize,
    },
}

/// Length of the big-endian prefix in framed mode.
pub const HEADER_LEN: usize = 4;

/// Incremental decoder for one connection's byte stream.
///
/// Feed it the connection's read buffer; it takes whole frames off the front and leaves any
/// partial frame in place, so frames split across any number of reads and many frames in one
/// read both work.
#[derive(Debug)]
pub struct Decoder {
    mode: Option<Mode>,
    max_frame: usize,
    /// Line mode: bytes of the buffer already searched for `\n`, so a slow line is not
    /// rescanned from the start on every read (slowloris would make that quadratic).
    scanned: usize,
}

impl Decoder {
    /// A decoder that sniffs the framing from the first byte.
    pub fn new(max_frame: usize) -> Self {
        Decoder {
            mode: None,
            max_frame,
            scanned: 0,
        }
    }

    /// A decoder with the framing already known (clients know what they speak).
    pub fn with_mode(mode: Mode, max_frame: usize) -> Self {
        Decoder {
            mode: Some(mode),
            max_frame,
            scanned: 0,
        }
    }

    /// The framing, once the first byte has arrived.
    pub fn mode(&self) -> Option<Mode> {
        self.mode
    }

    /// Takes the next whole message body off the front of `buf`.
    ///
    /// `Ok(None)` means "need more bytes" and is not an error. The length is checked before
    /// anything is allocated, so a 4 GiB header is refused after 4 bytes. After an error the
    /// stream is out of sync and the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let mode = match self.mode {
            Some(mode) => mode,
            None => match buf.first() {
                None => return Ok(None),
                Some(b'{') => *self.mode.insert(Mode::Line),
                Some(_) => *self.mode.insert(Mode::Framed),
            },
        };
        match mode {
            Mode::Framed => self.decode_framed(buf),
            Mode::Line => self.decode_line(buf),
        }
    }

    fn decode_framed(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut prefix = [0u8; HEADER_LEN];
        prefix.copy_from_slice(header);
        let len = u32::from_be_bytes(prefix) as usize;
        if len == 0 {
            return Err(DecodeError::ZeroLength);
        }
        if len > self.max_frame {
            return Err(DecodeError::TooLarge {
                len: len as u64,
                max: self.max_frame,
            });
        }
        if buf.len() < HEADER_LEN + len {
            buf.reserve(HEADER_LEN + len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        Ok(Some(buf.split_to(len).freeze()))
    }

    fn decode_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, DecodeError> {
        loop {
            let Some(offset) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
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

    fn too_large(&self, len: usize) -> DecodeError {
        DecodeError::TooLarge {
            len: len as u64,
            max: self.max_frame,
        }
    }
}

/// One outgoing message, encoded once: the 4-byte length prefix followed by the JSON body.
///
/// Cloning is a reference-count bump, so one `Frame` can be queued to every member of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Starts a buffer with room for the prefix; write the JSON body after it, then call
    /// [`Frame::finish`].
    pub fn start(body_capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER_LEN + body_capacity);
        buf.extend_from_slice(&[0; HEADER_LEN]);
        buf
    }

    /// Patches the prefix of a buffer made by [`Frame::start`].
    ///
    /// # Panics
    /// If `buf` is shorter than the prefix or the body exceeds 4 GiB; both are local
    /// programming errors (the server never builds such frames), not peer input.
    pub fn finish(mut buf: Vec<u8>) -> Frame {
        let body_len = u32::try_from(buf.len() - HEADER_LEN).expect("frame body over 4 GiB");
        buf[..HEADER_LEN].copy_from_slice(&body_len.to_be_bytes());
        Frame(Bytes::from(buf))
    }

    /// Frames an already encoded body (clients and tests; the server writes in place).
    pub fn from_body(body: &[u8]) -> Frame {
        let mut buf = Frame::start(body.len());
        buf.extend_from_slice(body);
        Frame::finish(buf)
    }

    /// The JSON body without framing.
    pub fn body(&self) -> Bytes {
        self.0.slice(HEADER_LEN..)
    }

    /// The chunks to queue for a peer speaking `mode`; all share this frame's buffer.
    pub fn chunks(&self, mode: Mode) -> [Bytes; 2] {
        static NEWLINE: &[u8] = b"\n";
        match mode {
            Mode::Framed => [self.0.clone(), Bytes::new()],
            Mode::Line => [self.body(), Bytes::from_static(NEWLINE)],
        }
    }

    /// Bytes on the wire in framed mode.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for frames built by the server; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.len() <= HEADER_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(decoder: &mut Decoder, buf: &mut BytesMut) -> Result<Vec<Bytes>, DecodeError> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(body);
        wire
    }

    #[test]
    fn sniffs_line_mode_from_a_brace() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&b"{\"a\":1}\r\n\n  \n{}\n"[..]);
        let frames = decode_all(&mut decoder, &mut buf).unwrap();
        assert_eq!(decoder.mode(), Some(Mode::Line));
        assert_eq!(frames, vec![Bytes::from("{\"a\":1}"), Bytes::from("{}")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn framed_mode_waits_for_the_whole_body() {
        let mut decoder = Decoder::new(100);
        let wire = framed(b"{\"x\":2}");
        let mut buf = BytesMut::from(&wire[..5]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&wire[5..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Bytes::from("{\"x\":2}"))));
        assert_eq!(decoder.mode(), Some(Mode::Framed));
    }

    #[test]
    fn zero_length_is_refused() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut buf), Err(DecodeError::ZeroLength));
    }

    #[test]
    fn oversize_header_is_refused_before_the_body_arrives() {
        let mut decoder = Decoder::new(100);
        let mut buf = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::TooLarge {
                len: u32::MAX as u64,
                max: 100
            })
        );
    }

    #[test]
    fn line_limit_excludes_the_terminator() {
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
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn frame_chunks_share_one_buffer() {
        let frame = Frame::from_body(b"{}");
        let [head, tail] = frame.chunks(Mode::Framed);
        assert_eq!(&head[..], &[0, 0, 0, 2, b'{', b'}']);
        assert!(tail.is_empty());
        let [body, newline] = frame.chunks(Mode::Line);
        assert_eq!(&body[..], b"{}");
        assert_eq!(&newline[..], b"\n");
        assert_eq!(body.as_ptr(), frame.0[HEADER_LEN..].as_ptr());
    }

    /// Bodies that are legal in both framings: non-empty, starting with `{`, no newline.
    fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(
            "[ -~]{0,40}".prop_map(|s| format!("{{{s}").into_bytes()),
            1..12,
        )
    }

    proptest! {
        #[test]
        fn split_reads_decode_the_same_frames(bodies in bodies(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10), line in any::<bool>()) {
            let mut wire = Vec::new();
            for body in &bodies {
                if line {
                    wire.extend_from_slice(body);
                    wire.push(b'\n');
                } else {
                    wire.extend_from_slice(&framed(body));
                }
            }
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let mut decoder = Decoder::new(64);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                buf.extend_from_slice(&wire[pair[0]..pair[1]]);
                got.extend(decode_all(&mut decoder, &mut buf).unwrap());
            }
            let want: Vec<Bytes> = bodies.into_iter().map(Bytes::from).collect();
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn oversize_is_rejected_in_both_framings(extra in 1usize..100, line in any::<bool>()) {
            let body = vec![b'{'; 64 + extra];
            let wire = if line { [&body[..], b"\n"].concat() } else { framed(&body) };
            let mut decoder = Decoder::new(64);
            let mut buf = BytesMut::from(&wire[..]);
            let is_too_large = matches!(decoder.decode(&mut buf), Err(DecodeError::TooLarge { .. }));
            prop_assert!(is_too_large);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut decoder = Decoder::new(32);
            let mut buf = BytesMut::new();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                    prop_assert!(!frame.is_empty() && frame.len() <= 32);
                }
            }
        }
    }
}
