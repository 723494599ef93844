//! WebSocket (RFC 6455), server side, after the `101` of [`super::http::websocket_accept`]:
//! client frames in, whole JSON text messages out; server frames as a small header chunk
//! beside the shared body.
//!
//! Built on tungstenite's frame types, not its `WebSocket`/`WebSocketContext`: the context
//! copies every outgoing payload into its own write buffer and wants a `Read + Write`
//! stream, where this server queues the one encoded `Bytes` body of a broadcast for every
//! recipient and reads into its own buffer. Here tungstenite parses headers
//! ([`FrameHeader::parse`], which consumes nothing on partial input) and names close codes;
//! the decoder owns reassembly and the limits.
//!
//! What the decoder enforces (each failure is a [`WsError`] carrying its close code):
//! - client frames are masked (1002 otherwise); no RSV bit is set (no extension is ever
//!   negotiated, so no permessage-deflate); opcodes are known; control frames are final and
//!   at most 125 bytes; continuations follow a started message (all 1002);
//! - a message over `max_message` bytes is refused as soon as a frame header announces it,
//!   before its payload is buffered (1009);
//! - text is UTF-8, checked once the message is whole (1007);
//! - binary messages are refused at their first header (1003: the protocol is JSON text).
//!
//! Server frames are never masked, never fragmented: one text frame per message.

use std::io::Cursor;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{json, Map};
use tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

use crate::frame::Frame;
use crate::protocol::{Code, Problem};

/// The largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The largest close reason: a control payload less the 2-byte code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// What a decoded client frame asks of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// One whole text message: a JSON body for the hub, UTF-8 checked, not yet parsed.
    Text(Bytes),
    /// Bytes to write back at once: the pong to a ping.
    Reply(Bytes),
    /// The peer closed: write this close reply, then end the connection. The decoder reads
    /// nothing more.
    Closed(Bytes),
}

/// The peer broke RFC 6455 or this server's limits; the connection must be closed.
///
/// Send [`WsError::close_frame`] (after, if you like, the [`WsError::problem`] as a text
/// message), then close.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// A client frame without a mask (RFC 6455 §5.1).
    #[error("client frames must be masked")]
    Unmasked,
    /// An RSV bit set, though no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("control frames must be final and at most 125 bytes")]
    BadControl,
    /// A continuation frame with no message started.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is unfinished.
    #[error("new message before the fragmented one was finished")]
    ExpectedContinuation,
    /// A close frame with a 1-byte payload or a code not allowed on the wire.
    #[error("malformed close frame")]
    BadClose,
    /// A message announced or grew over the limit.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Bytes of the message, counting the frame that crossed the limit.
        len: u64,
        /// The configured limit (`max_frame`).
        max: usize,
    },
    /// A text message or close reason that is not UTF-8.
    #[error("text is not valid UTF-8")]
    InvalidUtf8,
    /// A binary message: the protocol is JSON sent as text.
    #[error("binary messages are not accepted")]
    Binary,
}

impl WsError {
    /// The close code RFC 6455 §7.4.1 gives this failure.
    pub fn close_code(&self) -> u16 {
        let code = match self {
            WsError::TooLarge { .. } => CloseCode::Size,
            WsError::InvalidUtf8 => CloseCode::Invalid,
            WsError::Binary => CloseCode::Unsupported,
            _ => CloseCode::Protocol,
        };
        code.into()
    }

    /// A short reason for the close frame (browsers show it in `CloseEvent.reason`).
    pub fn close_reason(&self) -> &'static str {
        match self {
            WsError::TooLarge { .. } => "message too large",
            WsError::InvalidUtf8 => "text must be UTF-8",
            WsError::Binary => "send JSON as text",
            _ => "protocol error",
        }
    }

    /// The close frame to send before closing.
    pub fn close_frame(&self) -> Bytes {
        close_frame(self.close_code(), self.close_reason())
    }

    /// What the client is told, in the protocol's terms, before the connection closes: 413
    /// with `{"max_frame": MAX}` for a message over the limit (as the other transports), 400
    /// for the rest.
    pub fn problem(&self) -> Problem {
        match self {
            WsError::TooLarge { len, max } => Problem {
                code: Code::TooLarge,
                message: format!(
                    "Message of {len} bytes is over the limit of {max} bytes; closing."
                ),
                detail: crate::protocol::object(json!({ "max_frame": max })),
            },
            WsError::Binary => Problem {
                code: Code::BadRequest,
                message: "Binary WebSocket messages are not accepted: send each JSON message \
                          as one text message; closing."
                    .to_owned(),
                detail: Map::new(),
            },
            WsError::InvalidUtf8 => Problem {
                code: Code::BadRequest,
                message: "Message is not valid UTF-8; closing.".to_owned(),
                detail: Map::new(),
            },
            other => Problem {
                code: Code::BadRequest,
                message: format!("WebSocket protocol error: {other}; closing."),
                detail: Map::new(),
            },
        }
    }
}

/// Takes client frames off the front of a read buffer and yields whole messages.
#[derive(Debug, Clone)]
pub struct WsDecoder {
    max_message: usize,
    /// The fragments of an unfinished text message, at most `max_message` bytes.
    partial: Option<BytesMut>,
    /// The peer's close was received: nothing more is read.
    closed: bool,
}

impl WsDecoder {
    /// A decoder refusing messages over `max_message` bytes (the server's `max_frame`).
    pub fn new(max_message: usize) -> Self {
        WsDecoder {
            max_message,
            partial: None,
            closed: false,
        }
    }

    /// Whether the peer's close has been received.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The next event, `Ok(None)` until a whole frame that produces one has arrived.
    ///
    /// Consumes frames as they complete: fragments are moved into the reassembly buffer,
    /// unsolicited pongs are dropped. An unfragmented text frame becomes the message without
    /// a copy (unmasked in place). After [`WsEvent::Closed`] every later byte is discarded.
    /// After an error the stream is out of sync and the connection must be closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsEvent>, WsError> {
        loop {
            if self.closed {
                buf.clear();
                return Ok(None);
            }
            let mut cursor = Cursor::new(&buf[..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => return Ok(None),
                // Parsing a slice fails only on an opcode RFC 6455 does not define.
                Err(_) => return Err(WsError::UnknownOpcode(buf.first().map_or(0, |b| b & 0x0f))),
            };
            let header_len = cursor.position() as usize;
            let Some(mask) = header.mask else {
                return Err(WsError::Unmasked);
            };
            if header.rsv1 || header.rsv2 || header.rsv3 {
                return Err(WsError::ReservedBits);
            }
            self.check(&header, len)?;
            // `check` bounded `len` by `max_message` or 125, so it fits in usize.
            let len = len as usize;
            if buf.len() < header_len + len {
                buf.reserve(header_len + len - buf.len());
                return Ok(None);
            }
            buf.advance(header_len);
            let mut payload = buf.split_to(len);
            unmask(&mut payload, mask);
            if let Some(event) = self.take(&header, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// The header checks that come before any payload is buffered.
    fn check(&self, header: &FrameHeader, len: u64) -> Result<(), WsError> {
        let started = self.partial.as_ref().map_or(0, BytesMut::len);
        match header.opcode {
            OpCode::Control(_) => {
                if !header.is_final || len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(WsError::BadControl);
                }
                Ok(())
            }
            OpCode::Data(Data::Binary) => Err(WsError::Binary),
            OpCode::Data(Data::Text) if self.partial.is_some() => {
                Err(WsError::ExpectedContinuation)
            }
            OpCode::Data(Data::Continue) if self.partial.is_none() => {
                Err(WsError::UnexpectedContinuation)
            }
            OpCode::Data(_) => {
                let total = (started as u64).saturating_add(len);
                if total > self.max_message as u64 {
                    return Err(WsError::TooLarge {
                        len: total,
                        max: self.max_message,
                    });
                }
                Ok(())
            }
        }
    }

    /// What a whole, unmasked frame produces, if anything yet.
    fn take(
        &mut self,
        header: &FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<WsEvent>, WsError> {
        match header.opcode {
            OpCode::Control(Control::Ping) => Ok(Some(WsEvent::Reply(pong(&payload)))),
            OpCode::Control(Control::Close) => {
                let reply = close_reply(&payload)?;
                self.closed = true;
                self.partial = None;
                Ok(Some(WsEvent::Closed(reply)))
            }
            OpCode::Data(Data::Text) if header.is_final => text(payload).map(Some),
            OpCode::Data(Data::Text) => {
                self.partial = Some(payload);
                Ok(None)
            }
            OpCode::Data(Data::Continue) => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::UnexpectedContinuation);
                };
                partial.extend_from_slice(&payload);
                if !header.is_final {
                    return Ok(None);
                }
                match self.partial.take() {
                    Some(message) => text(message).map(Some),
                    None => Err(WsError::UnexpectedContinuation),
                }
            }
            // Unsolicited pongs are allowed and mean nothing; `check` refused the rest.
            OpCode::Control(Control::Pong) => Ok(None),
            OpCode::Data(Data::Binary) => Err(WsError::Binary),
            OpCode::Control(Control::Reserved(code)) | OpCode::Data(Data::Reserved(code)) => {
                Err(WsError::UnknownOpcode(code))
            }
        }
    }
}

/// The header of one unmasked, final text frame carrying `body_len` bytes: 2, 4 or 10
/// bytes. Queue it before the shared body.
pub fn text_header(body_len: usize) -> Bytes {
    const FIN_TEXT: u8 = 0x80 | 0x1;
    let mut header = BytesMut::with_capacity(10);
    header.put_u8(FIN_TEXT);
    if body_len < 126 {
        header.put_u8(body_len as u8);
    } else if let Ok(len) = u16::try_from(body_len) {
        header.put_u8(126);
        header.put_u16(len);
    } else {
        header.put_u8(127);
        header.put_u64(body_len as u64);
    }
    header.freeze()
}

/// The chunks queued for a WebSocket peer: the header written once when the frame was
/// finished, and the shared body; both slices of the frame's one buffer.
pub fn chunks(frame: &Frame) -> [Bytes; 2] {
    [frame.websocket_header(), frame.body()]
}

/// A close frame with `code` and `reason`; the reason is cut at a character boundary to fit
/// the 123 bytes a control frame leaves it.
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut frame = BytesMut::with_capacity(4 + reason.len());
    frame.put_u8(0x80 | 0x8);
    frame.put_u8(2 + reason.len() as u8);
    frame.put_u16(code);
    frame.put_slice(reason);
    frame.freeze()
}

/// A pong echoing `payload` (cut to 125 bytes; a ping's payload is never longer).
pub fn pong(payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let mut frame = BytesMut::with_capacity(2 + payload.len());
    frame.put_u8(0x80 | 0xA);
    frame.put_u8(payload.len() as u8);
    frame.put_slice(payload);
    frame.freeze()
}

/// A finished text message, once its UTF-8 is checked.
fn text(message: BytesMut) -> Result<WsEvent, WsError> {
    if std::str::from_utf8(&message).is_err() {
        return Err(WsError::InvalidUtf8);
    }
    Ok(WsEvent::Text(message.freeze()))
}

/// The reply to a peer's close: its code echoed (RFC 6455 §5.5.1), or an empty close to an
/// empty one.
fn close_reply(payload: &[u8]) -> Result<Bytes, WsError> {
    match payload {
        [] => Ok(Bytes::from_static(&[0x80 | 0x8, 0])),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !CloseCode::from(code).is_allowed() {
                return Err(WsError::BadClose);
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            Ok(close_frame(code, ""))
        }
        [_] => Err(WsError::BadClose),
    }
}

/// XORs the client's masking key over the payload, 8 bytes at a time where it can.
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask index restarts at 0.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A client's frame, byte for byte, for tests that cut and mangle frames where a WebSocket
/// library would not let them (the unit tests, and the integration tests with the `testing`
/// feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    /// A client frame: masked with `mask`, with the given first byte (FIN, RSV, opcode).
    pub fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = vec![first];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::testing::client_frame;
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn text_frame(payload: &str) -> Vec<u8> {
        client_frame(0x81, payload.as_bytes(), MASK)
    }

    fn decode_all(decoder: &mut WsDecoder, buf: &mut BytesMut) -> Result<Vec<WsEvent>, WsError> {
        let mut events = Vec::new();
        while let Some(event) = decoder.decode(buf)? {
            events.push(event);
        }
        Ok(events)
    }

    fn decode_wire(wire: &[u8], max: usize) -> Result<Vec<WsEvent>, WsError> {
        decode_all(&mut WsDecoder::new(max), &mut BytesMut::from(wire))
    }

    fn text(s: &str) -> WsEvent {
        WsEvent::Text(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn a_masked_text_frame_is_one_message() {
        let mut buf = BytesMut::from(&text_frame(r#"{"system":"ping"}"#)[..]);
        let mut decoder = WsDecoder::new(100);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(text(r#"{"system":"ping"}"#)))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }

    #[test]
    fn all_three_length_forms_decode() {
        for len in [0, 125, 126, 65535, 65536, 70000] {
            let body = "x".repeat(len);
            let events = decode_wire(&text_frame(&body), 100_000).unwrap();
            assert_eq!(events, [text(&body)], "{len}");
        }
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut wire = client_frame(0x01, b"{\"a\":", MASK);
        wire.extend(client_frame(0x89, b"hb", MASK));
        wire.extend(client_frame(0x00, b"[1,", [1, 2, 3, 4]));
        wire.extend(client_frame(0x8A, b"unsolicited", MASK));
        wire.extend(client_frame(0x80, b"2]}", [9, 9, 9, 9]));
        let events = decode_wire(&wire, 100).unwrap();
        assert_eq!(events, [WsEvent::Reply(pong(b"hb")), text("{\"a\":[1,2]}")]);
    }

    #[test]
    fn a_ping_is_answered_with_a_pong_of_its_payload() {
        let events = decode_wire(&client_frame(0x89, b"abc", MASK), 10).unwrap();
        assert_eq!(events, [WsEvent::Reply(Bytes::from_static(b"\x8a\x03abc"))]);
    }

    #[test]
    fn a_close_is_echoed_and_ends_reading() {
        let mut wire = client_frame(0x88, b"\x03\xe8bye", MASK);
        wire.extend(text_frame("{\"late\":1}"));
        let mut decoder = WsDecoder::new(100);
        let mut buf = BytesMut::from(&wire[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(WsEvent::Closed(close_frame(1000, ""))))
        );
        assert!(decoder.is_closed());
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(None),
            "nothing after the close"
        );
        assert!(buf.is_empty());

        let events = decode_wire(&client_frame(0x88, b"", MASK), 10).unwrap();
        assert_eq!(events, [WsEvent::Closed(Bytes::from_static(b"\x88\x00"))]);
    }

    #[test]
    fn protocol_violations_close_with_1002() {
        let cases: [(Vec<u8>, WsError); 8] = [
            (
                {
                    let mut unmasked = text_frame("{}");
                    unmasked[1] &= 0x7f;
                    unmasked.drain(2..6);
                    unmasked
                },
                WsError::Unmasked,
            ),
            (client_frame(0xC1, b"{}", MASK), WsError::ReservedBits),
            (client_frame(0x83, b"{}", MASK), WsError::UnknownOpcode(3)),
            (client_frame(0x09, b"", MASK), WsError::BadControl),
            (client_frame(0x89, &[0; 126], MASK), WsError::BadControl),
            (
                client_frame(0x80, b"{}", MASK),
                WsError::UnexpectedContinuation,
            ),
            (
                [client_frame(0x01, b"{", MASK), text_frame("}")].concat(),
                WsError::ExpectedContinuation,
            ),
            (client_frame(0x88, b"\x03", MASK), WsError::BadClose),
        ];
        for (wire, want) in cases {
            assert_eq!(decode_wire(&wire, 100), Err(want.clone()), "{want}");
            assert_eq!(want.close_code(), 1002);
            assert_eq!(want.problem().code, Code::BadRequest);
        }
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            let wire = client_frame(0x88, &code.to_be_bytes(), MASK);
            assert_eq!(decode_wire(&wire, 100), Err(WsError::BadClose), "{code}");
        }
    }

    #[test]
    fn an_oversized_message_is_refused_at_its_header() {
        let mut decoder = WsDecoder::new(64);
        let wire = text_frame(&"x".repeat(65));
        // Only the header has arrived: the 65 bytes are never buffered.
        let mut buf = BytesMut::from(&wire[..6]);
        let err = decoder.decode(&mut buf).unwrap_err();
        assert_eq!(err, WsError::TooLarge { len: 65, max: 64 });
        assert_eq!(err.close_code(), 1009);
        let problem = err.problem();
        assert_eq!(problem.code, Code::TooLarge);
        assert_eq!(problem.detail["max_frame"], 64);

        let huge = [0x81, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(
            decode_wire(&huge, 64),
            Err(WsError::TooLarge {
                len: 0xff00_0000_0000_0000,
                max: 64
            })
        );
    }

    #[test]
    fn fragments_count_together_against_the_limit() {
        let mut wire = client_frame(0x01, &[b'x'; 40], MASK);
        wire.extend(client_frame(0x00, &[b'x'; 24], MASK));
        wire.extend(client_frame(0x80, b"x", MASK));
        assert_eq!(
            decode_wire(&wire, 64),
            Err(WsError::TooLarge { len: 65, max: 64 })
        );
        assert_eq!(
            decode_wire(&wire[..wire.len() - 7], 64),
            Ok(vec![]),
            "64 is fine"
        );
    }

    #[test]
    fn binary_is_refused_with_1003() {
        let err = decode_wire(&client_frame(0x82, b"{}", MASK), 100).unwrap_err();
        assert_eq!(err, WsError::Binary);
        assert_eq!(err.close_code(), 1003);
        assert_eq!(&err.close_frame()[..], b"\x88\x13\x03\xebsend JSON as text");
    }

    #[test]
    fn text_must_be_utf8_when_whole() {
        // A character split across fragments is fine...
        let snowman = "☃".as_bytes();
        let mut wire = client_frame(0x01, &snowman[..1], MASK);
        wire.extend(client_frame(0x80, &snowman[1..], MASK));
        assert_eq!(decode_wire(&wire, 10), Ok(vec![text("☃")]));
        // ...a broken one is not, and neither is a broken close reason.
        let err = decode_wire(&client_frame(0x81, b"\xff", MASK), 10).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code()),
            (WsError::InvalidUtf8, 1007)
        );
        let close = client_frame(0x88, b"\x03\xe8\xc3", MASK);
        assert_eq!(decode_wire(&close, 10), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn server_headers_match_tungstenite() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 1 << 33] {
            let mut want = Vec::new();
            let header = FrameHeader {
                opcode: OpCode::Data(Data::Text),
                ..FrameHeader::default()
            };
            header.format(len as u64, &mut want).unwrap();
            assert_eq!(&text_header(len)[..], &want[..], "{len}");
            if len <= 65536 {
                let frame = Frame::from_body(&vec![b'x'; len]);
                assert_eq!(&frame.websocket_header()[..], &want[..], "{len}");
            }
        }
    }

    #[test]
    fn chunks_share_the_frame_body() {
        let frame = Frame::from_body(b"{\"x\":1}");
        let [header, body] = chunks(&frame);
        assert_eq!(&header[..], &[0x81, 7]);
        assert_eq!(body.as_ptr(), frame.body().as_ptr());
    }

    #[test]
    fn close_reasons_are_cut_at_a_character_boundary() {
        let frame = close_frame(1001, &"é".repeat(100));
        assert_eq!(frame[1] as usize, frame.len() - 2);
        assert!(frame.len() - 4 <= MAX_CLOSE_REASON);
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        assert_eq!(&frame[2..4], &1001u16.to_be_bytes());
    }

    #[test]
    fn unmask_matches_the_plain_definition() {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len as u8).collect();
            let mut masked: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            unmask(&mut masked, MASK);
            assert_eq!(masked, plain);
        }
    }

    /// One client message on the wire, with the events it must produce.
    #[derive(Debug, Clone)]
    enum Piece {
        Text(String, Vec<usize>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
    }

    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            4 => ("[ -~é☃]{0,60}", prop::collection::vec(0usize..80, 0..4))
                .prop_map(|(s, cuts)| Piece::Text(s, cuts)),
            1 => prop::collection::vec(any::<u8>(), 0..=125).prop_map(Piece::Ping),
            1 => prop::collection::vec(any::<u8>(), 0..=20).prop_map(Piece::Pong),
        ]
    }

    fn encode(pieces: &[Piece], mask: [u8; 4], close: bool) -> (Vec<u8>, Vec<WsEvent>) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(s, cuts) => {
                    let bytes = s.as_bytes();
                    let mut points: Vec<usize> =
                        cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                    points.sort_unstable();
                    points.dedup();
                    let mut bounds = vec![0];
                    bounds.extend(points.into_iter().filter(|&p| p > 0 && p < bytes.len()));
                    bounds.push(bytes.len());
                    let last = bounds.len() - 2;
                    for (i, pair) in bounds.windows(2).enumerate() {
                        let opcode = if i == 0 { 0x1 } else { 0x0 };
                        let fin = if i == last { 0x80 } else { 0 };
                        wire.extend(client_frame(fin | opcode, &bytes[pair[0]..pair[1]], mask));
                    }
                    want.push(text(s));
                }
                Piece::Ping(payload) => {
                    wire.extend(client_frame(0x89, payload, mask));
                    want.push(WsEvent::Reply(pong(payload)));
                }
                Piece::Pong(payload) => wire.extend(client_frame(0x8A, payload, mask)),
            }
        }
        if close {
            wire.extend(client_frame(0x88, b"\x03\xe9", mask));
            want.push(WsEvent::Closed(close_frame(1001, "")));
        }
        (wire, want)
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            pieces in prop::collection::vec(piece(), 1..8),
            mask in any::<[u8; 4]>(),
            close in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let (wire, want) = encode(&pieces, mask, close);
            prop_assert_eq!(&decode_wire(&wire, 1000).unwrap(), &want);

            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            points.extend([0, wire.len()]);
            points.sort_unstable();
            let mut decoder = WsDecoder::new(1000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for pair in points.windows(2) {
                buf.extend_from_slice(&wire[pair[0]..pair[1]]);
                got.extend(decode_all(&mut decoder, &mut buf).unwrap());
            }
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn every_byte_at_a_time_decodes_the_same(pieces in prop::collection::vec(piece(), 1..4)) {
            let (wire, want) = encode(&pieces, MASK, true);
            let mut decoder = WsDecoder::new(1000);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for byte in wire {
                buf.extend_from_slice(&[byte]);
                got.extend(decode_all(&mut decoder, &mut buf).unwrap());
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut decoder = WsDecoder::new(32);
            let mut buf = BytesMut::new();
            for chunk in chunks {
                buf.extend_from_slice(&chunk);
                while let Ok(Some(event)) = decoder.decode(&mut buf) {
                    if let WsEvent::Text(body) = event {
                        prop_assert!(body.len() <= 32);
                    }
                }
            }
        }
    }
}
