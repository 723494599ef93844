//! Transports: how a connection's bytes become messages and messages become bytes. Nothing
//! here looks inside JSON.
//!
//! A connection starts [sniffing](Transport::sniffing): its first byte picks the transport and
//! it is fixed after that:
//!
//! | first byte | transport |
//! |---|---|
//! | `0x00` | length-prefixed JSON ([`framed`]): frames are far below 16 MiB |
//! | `{` | newline-delimited JSON ([`line`](mod@line)), what a person types into `nc` |
//! | `A`..=`Z` | an HTTP/1.1 request ([`http`]): a page, `/metrics`, `/healthz`, or a WebSocket upgrade on `/ws` ([`ws`]) |
//! | `0x16` | a TLS ClientHello ([`tls`]): the event loop decrypts, and the plaintext is sniffed again |
//! | anything else | refused with one plain-text line naming the likely mistake, then closed |
//!
//! The hub hears of a connection only once it speaks the protocol: at once for framed and
//! line mode, after the `101` for a WebSocket, never for a plain HTTP request.
//!
//! A transport maps its own failures to a protocol [`Problem`] (code, message, detail) before
//! anything reaches the hub, so the hub never sees a framing type; failures before the hub
//! knows the connection are answered by the transport itself ([`TransportError::answer`]).
//!
//! | file | transport |
//! |---|---|
//! | [`framed`] | 4-byte big-endian length, then the JSON body (the default) |
//! | [`line`](mod@line) | one JSON object per `\n`-terminated line |
//! | [`http`] | request heads (capped at 8 KiB), responses, the WebSocket `101` |
//! | [`ws`] | RFC 6455 frames: client messages in, a shared header and body out |
//! | [`tls`] | rustls sessions fed and drained in memory |
//! | [`viewer`] | the built-in page served at `/` |

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
use http::{HttpError, HttpRequest};
use ws::{WsDecoder, WsError, WsEvent};

/// Which transport a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// 4-byte big-endian length, then that many bytes of JSON.
    Framed,
    /// One JSON object per `\n`-terminated line.
    Line,
    /// An HTTP request whose head is not complete yet, or was answered.
    Http,
    /// A WebSocket after the upgrade: one JSON message per text message.
    WebSocket,
}

impl TransportKind {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Framed => "framed",
            TransportKind::Line => "line",
            TransportKind::Http => "http",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// What the first bytes of a connection say it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    /// One of the transports above.
    Kind(TransportKind),
    /// A TLS ClientHello: decrypt, then sniff the plaintext.
    Tls,
    /// Nothing this server speaks; the hint names the likely mistake, when one fits.
    Unknown(Option<&'static str>),
}

/// Looks at the first bytes received (at least one).
pub fn sniff(received: &[u8]) -> Sniffed {
    match received.first() {
        None | Some(0x00) => Sniffed::Kind(TransportKind::Framed),
        Some(b'{') => Sniffed::Kind(TransportKind::Line),
        Some(&first) if http::looks_like_http(first) => Sniffed::Kind(TransportKind::Http),
        Some(&first) if tls::looks_like_tls(first) => Sniffed::Tls,
        Some(_) => Sniffed::Unknown(hint(received)),
    }
}

/// The likely cause of a first byte no transport starts with.
fn hint(received: &[u8]) -> Option<&'static str> {
    match received {
        [0xef, 0xbb, 0xbf, ..] => Some(
            "a UTF-8 byte-order mark (EF BB BF): send the JSON without a BOM",
        ),
        [b' ' | b'\t' | b'\r' | b'\n', ..] => Some(
            "leading whitespace: in line mode the very first byte must be the '{' of a JSON object",
        ),
        [b'[', ..] => Some(
            "a JSON array: every message is one JSON object, sent on its own",
        ),
        [first, _, _, 0, ..] if *first != 0 => Some(
            "a little-endian length prefix: the 4-byte length is big-endian (network order), so a frame starts with 0x00",
        ),
        _ => None,
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
    /// The first byte starts no transport this server speaks.
    #[error("unrecognized first byte {first:#04x}")]
    Unrecognized {
        /// The byte.
        first: u8,
        /// The likely cause, when one fits.
        hint: Option<&'static str>,
    },
    /// An HTTP request that cannot be served (before any upgrade).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A WebSocket peer broke RFC 6455 or a limit.
    #[error(transparent)]
    WebSocket(#[from] WsError),
}

impl TransportError {
    /// What the client is told, in the protocol's terms, before the connection closes
    /// (when the hub knows the connection).
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
            TransportError::Unrecognized { .. } | TransportError::Http(_) => Problem {
                code: Code::BadRequest,
                message: format!("{self}; closing."),
                detail: Map::new(),
            },
            TransportError::WebSocket(err) => err.problem(),
        }
    }

    /// The bytes to send as they are before closing, for a connection the hub does not know
    /// (so no protocol reply can be framed): an HTTP error response, or one plain-text line
    /// for bytes no transport starts with.
    pub fn answer(&self) -> Option<Bytes> {
        match self {
            TransportError::Http(err) => Some(err.response()),
            TransportError::Unrecognized { first, hint } => {
                let cause = hint
                    .map(|hint| format!(" Likely cause: {hint}."))
                    .unwrap_or_default();
                Some(Bytes::from(format!(
                    "roomcast: cannot tell the protocol from the first byte {first:#04x}. Send \
                     JSON with a 4-byte big-endian length (first byte 0x00), JSON lines \
                     (first byte '{{'), HTTP (a WebSocket on GET /ws) or TLS.{cause}\n"
                )))
            }
            _ => None,
        }
    }

    /// The WebSocket close frame to send after the problem, for a WebSocket error.
    pub fn close_frame(&self) -> Option<Bytes> {
        match self {
            TransportError::WebSocket(err) => Some(err.close_frame()),
            _ => None,
        }
    }
}

/// What the transport made of the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// One whole message body for the hub.
    Message(Bytes),
    /// Bytes the transport answers by itself (a pong); queue them now.
    Reply(Bytes),
    /// A complete HTTP request that is not a WebSocket upgrade of `/ws`: route it, answer,
    /// close. The connection is never a hub session.
    Request(HttpRequest),
    /// The upgrade to a WebSocket succeeded: queue this `101`; from now on the connection
    /// speaks the protocol, and the hub may hear of it.
    Upgraded(Bytes),
    /// The peer closed its WebSocket: queue this close reply, then close.
    Closed(Bytes),
}

/// The path a WebSocket upgrade must ask for.
pub const WEBSOCKET_PATH: &str = "/ws";

/// One connection's transport: sniffing until the first byte, then fixed.
#[derive(Debug, Clone)]
pub struct Transport {
    state: State,
    max_frame: usize,
    /// A WebSocket close frame went out (ours or the echo of the peer's).
    close_sent: bool,
}

#[derive(Debug, Clone)]
enum State {
    Sniffing,
    Framed(framed::Decoder),
    Line(line::Decoder),
    /// Waiting for the request head; `answered` once it was handed on or refused.
    Http {
        answered: bool,
    },
    WebSocket(WsDecoder),
    /// The first bytes started nothing known: refused once, then nothing more is read.
    Refused,
}

impl Transport {
    /// A server-side transport that waits for the first byte to pick the framing.
    pub fn sniffing(max_frame: usize) -> Self {
        Transport {
            state: State::Sniffing,
            max_frame,
            close_sent: false,
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
            State::Sniffing | State::Refused => None,
            State::Framed(_) => Some(TransportKind::Framed),
            State::Line(_) => Some(TransportKind::Line),
            State::Http { .. } => Some(TransportKind::Http),
            State::WebSocket(_) => Some(TransportKind::WebSocket),
        }
    }

    /// Whether the peer speaks the protocol now (framed, line, or a WebSocket after the
    /// upgrade): the moment the hub may hear of the connection.
    pub fn speaks_protocol(&self) -> bool {
        matches!(
            self.state,
            State::Framed(_) | State::Line(_) | State::WebSocket(_)
        )
    }

    /// Fixes the transport from the first bytes received, if it is not fixed yet; returns the
    /// kind once known. A TLS hello or unknown bytes fix nothing here (see [`sniff`]).
    pub fn sniff(&mut self, received: &[u8]) -> Option<TransportKind> {
        if let (State::Sniffing, Some(_)) = (&self.state, received.first()) {
            match sniff(received) {
                Sniffed::Kind(kind) => self.fix(kind),
                Sniffed::Tls | Sniffed::Unknown(_) => {}
            }
        }
        self.kind()
    }

    /// Fixes the transport without a byte from the peer: it stayed silent, and replies must
    /// go out in some framing. A no-op once the kind is known.
    pub fn assume(&mut self, kind: TransportKind) {
        if matches!(self.state, State::Sniffing) {
            self.fix(kind);
        }
    }

    fn fix(&mut self, kind: TransportKind) {
        self.state = match kind {
            TransportKind::Framed => State::Framed(framed::Decoder::new(self.max_frame)),
            TransportKind::Line => State::Line(line::Decoder::new(self.max_frame)),
            TransportKind::Http => State::Http { answered: false },
            TransportKind::WebSocket => State::WebSocket(WsDecoder::new(self.max_frame)),
        };
    }

    /// Takes the next whole message body off the front of `buf`; what else the transport
    /// makes of the bytes (only HTTP and WebSocket make anything else) is dropped. For
    /// clients and tests, which speak framed or line mode.
    ///
    /// `Ok(None)` means "need more bytes" and is not an error. After an error the stream is
    /// out of sync and the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        loop {
            match self.next_event(buf)? {
                Some(Event::Message(body)) => return Ok(Some(body)),
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next thing the bytes at the front of `buf` make (sniffing first if needed).
    ///
    /// `Ok(None)` means "need more bytes". After an error the stream is out of sync: send
    /// the problem (or [`TransportError::answer`]) and close.
    pub fn next_event(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, TransportError> {
        if let (State::Sniffing, Some(&first)) = (&self.state, buf.first()) {
            match sniff(buf) {
                Sniffed::Kind(kind) => self.fix(kind),
                Sniffed::Tls | Sniffed::Unknown(_) => {
                    let hint = hint(buf);
                    self.state = State::Refused;
                    buf.clear();
                    return Err(TransportError::Unrecognized { first, hint });
                }
            }
        }
        match &mut self.state {
            State::Sniffing => Ok(None),
            State::Refused => {
                buf.clear();
                Ok(None)
            }
            State::Framed(decoder) => Ok(decoder.decode(buf)?.map(Event::Message)),
            State::Line(decoder) => Ok(decoder.decode(buf)?.map(Event::Message)),
            State::Http { answered: true } => {
                buf.clear();
                Ok(None)
            }
            State::Http { answered } => {
                let parsed = http::parse_head(buf);
                if parsed.as_ref().map_or(true, Option::is_some) {
                    *answered = true;
                }
                let Some((request, consumed)) = parsed? else {
                    return Ok(None);
                };
                let _ = buf.split_to(consumed);
                if request.path != WEBSOCKET_PATH {
                    buf.clear();
                    return Ok(Some(Event::Request(request)));
                }
                let accept = http::websocket_accept(&request)?;
                self.fix(TransportKind::WebSocket);
                Ok(Some(Event::Upgraded(accept)))
            }
            State::WebSocket(decoder) => Ok(match decoder.decode(buf)? {
                None => None,
                Some(WsEvent::Text(body)) => Some(Event::Message(body)),
                Some(WsEvent::Reply(pong)) => Some(Event::Reply(pong)),
                Some(WsEvent::Closed(reply)) => {
                    self.close_sent = true;
                    Some(Event::Closed(reply))
                }
            }),
        }
    }

    /// The chunks to queue for one outgoing frame; all share the frame's buffer. A transport
    /// not yet known answers in the default framing.
    pub fn chunks(&self, frame: &Frame) -> [Bytes; 2] {
        match self.state {
            State::Line(_) => line::chunks(frame),
            State::WebSocket(_) => ws::chunks(frame),
            _ => framed::chunks(frame),
        }
    }

    /// The last bytes before the connection closes, once: a WebSocket's close frame (1000,
    /// or `error`'s code), unless one went out already. Nothing for other transports.
    pub fn goodbye(&mut self, error: Option<&TransportError>) -> Option<Bytes> {
        if !matches!(self.state, State::WebSocket(_)) || self.close_sent {
            return None;
        }
        self.close_sent = true;
        Some(
            error
                .and_then(TransportError::close_frame)
                .unwrap_or_else(|| ws::close_frame(1000, "")),
        )
    }

    /// A client's own message, ready to write.
    pub fn encode(&self, body: &[u8]) -> Bytes {
        match self.state {
            State::Line(_) => line::encode(body),
            _ => framed::encode(body),
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
    fn the_first_byte_picks_the_transport() {
        assert_eq!(sniff(b"\0\0\0\x02{}"), Sniffed::Kind(TransportKind::Framed));
        assert_eq!(sniff(b"{}"), Sniffed::Kind(TransportKind::Line));
        assert_eq!(sniff(b"GET / HTTP/1.1"), Sniffed::Kind(TransportKind::Http));
        assert_eq!(sniff(b"\x16\x03\x01"), Sniffed::Tls);
        assert_eq!(sniff(b"\x80"), Sniffed::Unknown(None));
    }

    #[test]
    fn unknown_first_bytes_name_the_likely_mistake() {
        let cases: [(&[u8], &str); 5] = [
            (b"\xef\xbb\xbf{}", "byte-order mark"),
            (b"  {}", "leading whitespace"),
            (b"\r\n{}", "leading whitespace"),
            (b"[{}]", "JSON array"),
            (b"\x02\x00\x00\x00{}", "little-endian"),
        ];
        for (wire, cause) in cases {
            let mut transport = Transport::sniffing(100);
            let mut buf = BytesMut::from(wire);
            let err = transport.next_event(&mut buf).unwrap_err();
            let answer = err.answer().expect("a plain answer");
            let text = std::str::from_utf8(&answer).unwrap();
            assert!(text.contains(cause), "{cause}: {text}");
            assert!(text.ends_with(".\n") && !text[..text.len() - 1].contains('\n'));
            assert!(buf.is_empty());
            assert_eq!(
                transport.next_event(&mut BytesMut::from(&b"{}"[..])),
                Ok(None)
            );
            assert_eq!(err.problem().code, Code::BadRequest);
        }
    }

    #[test]
    fn an_upgrade_of_ws_becomes_a_websocket_and_other_paths_are_requests() {
        let head = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let mut transport = Transport::sniffing(100);
        // The head and a first masked frame (a ping with no payload) in one read.
        let mut buf = BytesMut::from(
            [head.as_bytes(), &[0x89, 0x80, 1, 2, 3, 4]]
                .concat()
                .as_slice(),
        );
        assert!(matches!(
            transport.next_event(&mut buf),
            Ok(Some(Event::Upgraded(_)))
        ));
        assert!(transport.speaks_protocol());
        assert_eq!(
            transport.next_event(&mut buf),
            Ok(Some(Event::Reply(Bytes::from_static(&[0x8a, 0]))))
        );
        let frame = Frame::from_body(b"{}");
        let [header, body] = transport.chunks(&frame);
        assert_eq!((&header[..], &body[..]), (&[0x81, 2][..], &b"{}"[..]));
        assert_eq!(transport.goodbye(None), Some(ws::close_frame(1000, "")));
        assert_eq!(transport.goodbye(None), None, "once");

        let mut transport = Transport::sniffing(100);
        let mut buf = BytesMut::from("GET /metrics HTTP/1.1\r\n\r\n");
        let Ok(Some(Event::Request(request))) = transport.next_event(&mut buf) else {
            panic!("a request");
        };
        assert_eq!(request.path, "/metrics");
        assert!(!transport.speaks_protocol());
        assert_eq!(transport.goodbye(None), None);
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
