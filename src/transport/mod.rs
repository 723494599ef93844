//! Transports: how a connection's bytes become messages and messages become bytes. Nothing
//! here looks inside JSON.
//!
//! A connection starts [sniffing](Transport::sniffing): its first byte picks the transport and
//! it is fixed after that. A legal length prefix starts with `0x00` (frames are far below
//! 16 MiB), so `{` unambiguously means newline-delimited JSON, which is what lets a person
//! type the protocol into `nc`. The hub hears of a connection only once its transport is
//! known.
//!
//! A transport maps its own failures to a protocol [`Problem`] (code, message, detail) before
//! anything reaches the hub, so the hub never sees a framing type.
//!
//! | file | transport |
//! |---|---|
//! | [`framed`] | 4-byte big-endian length, then the JSON body (the default) |
//! | [`line`] | one JSON object per `\n`-terminated line |

pub mod framed;
pub mod http;
pub mod line;
pub mod tls;
pub mod viewer;
pub mod ws;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Map};

use crate::frame::Frame;
use crate::protocol::{Code, Problem};

/// Which transport a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// 4-byte big-endian length, then that many bytes of JSON.
    Framed,
    /// One JSON object per `\n`-terminated line.
    Line,
}

impl TransportKind {
    /// What the first byte of a connection says it speaks.
    pub fn sniff(first: u8) -> TransportKind {
        match first {
            b'{' => TransportKind::Line,
            _ => TransportKind::Framed,
        }
    }

    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Framed => "framed",
            TransportKind::Line => "line",
        }
    }
}

/// The peer broke the transport's rules; the stream is out of sync and must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
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

impl TransportError {
    /// What the client is told before the connection closes.
    pub fn problem(&self) -> Problem {
        match self {
            TransportError::ZeroLength => Problem {
                code: Code::BadRequest,
                message: "Zero-length frame: every frame needs a body of 1 or more bytes; closing."
                    .to_owned(),
                detail: Map::new(),
            },
            TransportError::TooLarge { len, max } => Problem {
                code: Code::TooLarge,
                message: format!("Frame of {len} bytes is over the limit of {max} bytes; closing."),
                detail: crate::protocol::object(json!({ "max_frame": max })),
            },
        }
    }
}

/// One connection's transport: sniffing until the first byte, then fixed.
#[derive(Debug, Clone)]
pub struct Transport {
    state: State,
    max_frame: usize,
}

#[derive(Debug, Clone)]
enum State {
    Sniffing,
    Framed(framed::Decoder),
    Line(line::Decoder),
}

impl Transport {
    /// A server-side transport that waits for the first byte to pick the framing.
    pub fn sniffing(max_frame: usize) -> Self {
        Transport {
            state: State::Sniffing,
            max_frame,
        }
    }

    /// A transport whose kind is already known (clients know what they speak).
    pub fn new(kind: TransportKind, max_frame: usize) -> Self {
        let mut transport = Transport::sniffing(max_frame);
        transport.fix(kind);
        transport
    }

    /// The kind, once known.
    pub fn kind(&self) -> Option<TransportKind> {
        match self.state {
            State::Sniffing => None,
            State::Framed(_) => Some(TransportKind::Framed),
            State::Line(_) => Some(TransportKind::Line),
        }
    }

    /// Fixes the transport from the first bytes received, if it is not fixed yet; returns the
    /// kind once known.
    pub fn sniff(&mut self, received: &[u8]) -> Option<TransportKind> {
        if let (State::Sniffing, Some(&first)) = (&self.state, received.first()) {
            self.fix(TransportKind::sniff(first));
        }
        self.kind()
    }

    /// Fixes the transport without a byte from the peer: it stayed silent, and replies must
    /// go out in some framing. A no-op once the kind is known.
    pub fn assume(&mut self, kind: TransportKind) {
        if self.kind().is_none() {
            self.fix(kind);
        }
    }

    fn fix(&mut self, kind: TransportKind) {
        self.state = match kind {
            TransportKind::Framed => State::Framed(framed::Decoder::new(self.max_frame)),
            TransportKind::Line => State::Line(line::Decoder::new(self.max_frame)),
        };
    }

    /// Takes the next whole message body off the front of `buf`.
    ///
    /// `Ok(None)` means "need more bytes" and is not an error. After an error the stream is
    /// out of sync and the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        self.sniff(buf);
        match &mut self.state {
            State::Sniffing => Ok(None),
            State::Framed(decoder) => decoder.decode(buf),
            State::Line(decoder) => decoder.decode(buf),
        }
    }

    /// The chunks to queue for one outgoing frame; all share the frame's buffer. A transport
    /// not yet known answers in the default framing.
    pub fn chunks(&self, frame: &Frame) -> [Bytes; 2] {
        match self.state {
            State::Sniffing | State::Framed(_) => framed::chunks(frame),
            State::Line(_) => line::chunks(frame),
        }
    }

    /// A client's own message, ready to write.
    pub fn encode(&self, body: &[u8]) -> Bytes {
        match self.state {
            State::Sniffing | State::Framed(_) => framed::encode(body),
            State::Line(_) => line::encode(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(
        transport: &mut Transport,
        buf: &mut BytesMut,
    ) -> Result<Vec<Bytes>, TransportError> {
        let mut out = Vec::new();
        while let Some(frame) = transport.decode(buf)? {
            out.push(frame);
        }
        Ok(out)
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        framed::encode(body).to_vec()
    }

    #[test]
    fn sniffs_line_mode_from_a_brace() {
        let mut transport = Transport::sniffing(100);
        let mut buf = BytesMut::from(&b"{\"a\":1}\r\n\n  \n{}\n"[..]);
        let frames = decode_all(&mut transport, &mut buf).unwrap();
        assert_eq!(transport.kind(), Some(TransportKind::Line));
        assert_eq!(frames, vec![Bytes::from("{\"a\":1}"), Bytes::from("{}")]);
        assert!(buf.is_empty());
    }

    #[test]
    fn anything_else_is_length_prefixed() {
        let mut transport = Transport::sniffing(100);
        assert_eq!(transport.sniff(b""), None);
        let mut buf = BytesMut::from(&framed(b"{\"x\":2}")[..]);
        assert_eq!(
            decode_all(&mut transport, &mut buf).unwrap(),
            [Bytes::from("{\"x\":2}")]
        );
        assert_eq!(transport.kind(), Some(TransportKind::Framed));
    }

    #[test]
    fn a_silent_peer_is_answered_in_the_assumed_framing_until_it_speaks() {
        let mut transport = Transport::sniffing(100);
        let frame = Frame::from_body(b"{}");
        assert_eq!(transport.chunks(&frame)[0].len(), 6, "length-prefixed");
        transport.assume(TransportKind::Framed);
        transport.assume(TransportKind::Line);
        assert_eq!(transport.kind(), Some(TransportKind::Framed), "fixed once");
    }

    #[test]
    fn errors_map_to_protocol_codes() {
        assert_eq!(TransportError::ZeroLength.problem().code, Code::BadRequest);
        let problem = TransportError::TooLarge {
            len: 70000,
            max: 65536,
        }
        .problem();
        assert_eq!(problem.code, Code::TooLarge);
        assert_eq!(
            problem.message,
            "Frame of 70000 bytes is over the limit of 65536 bytes; closing."
        );
        assert_eq!(problem.detail["max_frame"], 65536);
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
            let mut transport = Transport::sniffing(64);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                buf.extend_from_slice(&wire[pair[0]..pair[1]]);
                got.extend(decode_all(&mut transport, &mut buf).unwrap());
            }
            let want: Vec<Bytes> = bodies.into_iter().map(Bytes::from).collect();
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn oversize_is_rejected_in_both_framings(extra in 1usize..100, line in any::<bool>()) {
            let body = vec![b'{'; 64 + extra];
            let wire = if line { [&body[..], b"\n"].concat() } else { framed(&body) };
            let mut transport = Transport::sniffing(64);
            let mut buf = BytesMut::from(&wire[..]);
            let is_too_large = matches!(transport.decode(&mut buf), Err(TransportError::TooLarge { .. }));
            prop_assert!(is_too_large);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut transport = Transport::sniffing(32);
            let mut buf = BytesMut::new();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                while let Ok(Some(frame)) = transport.decode(&mut buf) {
                    prop_assert!(!frame.is_empty() && frame.len() <= 32);
                }
            }
        }
    }
}
