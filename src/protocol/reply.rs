//! What the server sends: replies (`"info":"system"` / `"error"`) and frames of room events
//! (`"info":"user"`). Encoded once by the server; parsed by [`crate::client`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Code;
use crate::frame::Frame;

/// An error to tell a client: its code, the text it reads, and the detail object.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 4xx or 5xx.
    pub code: Code,
    /// Human-readable text.
    pub message: String,
    /// Code-specific detail, e.g. `{"max_frame": 65536}`.
    pub detail: Map<String, Value>,
}

#[derive(Serialize)]
struct ReplyOut<'a, D> {
    info: &'static str,
    response: ResponseOut<'a, D>,
}

#[derive(Serialize)]
struct ResponseOut<'a, D> {
    time: f64,
    code: u16,
    msg: &'a str,
    detail: D,
}

/// Encodes a system (2xx) or error (4xx/5xx) reply; `detail` is a JSON object (a map, or an
/// already encoded `RawValue`).
pub fn encode_reply<D: Serialize>(time: f64, code: Code, msg: &str, detail: D) -> Frame {
    let reply = ReplyOut {
        info: code.info(),
        response: ResponseOut {
            time,
            code: code.as_u16(),
            msg,
            detail,
        },
    };
    encode_frame(&reply)
}

#[derive(Serialize)]
struct EventOut<'a, D> {
    time: f64,
    user: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    data: D,
}

/// A room event that is state, not history (a pose, a member list, a game state for a
/// joiner): no sequence number. Encoded once and batched into frames as is.
pub fn encode_event<D: Serialize>(time: f64, user: &str, kind: &str, data: D) -> Bytes {
    encode(time, user, kind, None, data)
}

/// A room history event (msg, join, leave, game, away, back) with its sequence number in the
/// room: encoded once, kept in history and batched into frames as is.
pub fn encode_history_event<D: Serialize>(
    time: f64,
    user: &str,
    kind: &str,
    seq: u64,
    data: D,
) -> Bytes {
    encode(time, user, kind, Some(seq), data)
}

thread_local! {
    /// The buffer [`encode`] writes events into.
    static ENCODE_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest scratch buffer kept between events.
const MAX_KEPT_SCRATCH: usize = 64 * 1024;

fn encode<D: Serialize>(time: f64, user: &str, kind: &str, seq: Option<u64>, data: D) -> Bytes {
    let event = EventOut {
        time,
        user,
        kind,
        seq,
        data,
    };
    // Written into a buffer kept from one event to the next, then copied out at its exact
    // size: growing a fresh Vec by doubling cost a realloc or two per event, and the events a
    // history keeps would hold that slack for as long as they are kept.
    ENCODE_SCRATCH.with_borrow_mut(|scratch| {
        scratch.clear();
        write_json(scratch, &event);
        let event = Bytes::copy_from_slice(scratch);
        if scratch.capacity() > MAX_KEPT_SCRATCH {
            *scratch = Vec::new(); // one huge event does not pin its buffer
        }
        event
    })
}

/// A user frame carrying already encoded events of one room, in order.
///
/// `history` marks the frame a joiner gets with the room's past events.
pub fn encode_user_frame<'e, I>(room: &str, history: bool, events: I) -> Frame
where
    I: IntoIterator<Item = &'e Bytes>,
    I::IntoIter: Clone,
{
    let events = events.into_iter();
    // Sized once: a frame of many events would otherwise grow (and copy) itself many times.
    let size = events.clone().map(|e| e.len() + 1).sum::<usize>() + room.len() + 64;
    let mut buf = Frame::start(size);
    buf.extend_from_slice(b"{\"info\":\"user\",\"room\":");
    write_json(&mut buf, room);
    if history {
        buf.extend_from_slice(b",\"history\":true");
    }
    buf.extend_from_slice(b",\"payload\":[");
    for (i, event) in events.enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(event);
    }
    buf.extend_from_slice(b"]}");
    Frame::finish(buf)
}

fn encode_frame<T: Serialize>(value: &T) -> Frame {
    let mut buf = Frame::start(128);
    write_json(&mut buf, value);
    Frame::finish(buf)
}

/// Everything the server sends is written here, with [`SeparatorsEscaped`].
fn write_json<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    let mut serializer = serde_json::Serializer::with_formatter(buf, SeparatorsEscaped);
    // Writing to a Vec cannot fail, and every value the server encodes is plain data.
    value
        .serialize(&mut serializer)
        .expect("server values serialize");
}

/// serde_json's compact output, but with U+2028 and U+2029 written as `\u2028` and `\u2029`,
/// in strings it writes and in raw JSON it forwards (a msg's `data`). JSON allows them raw,
/// but line-mode clients that split on every line break (Python's `str.splitlines()`, many
/// JavaScript readers) would cut a frame in two. Escaped, they parse to the same text. Raw
/// JSON can hold them only inside strings (they are not JSON whitespace), where the escape
/// means the same character.
struct SeparatorsEscaped;

impl serde_json::ser::Formatter for SeparatorsEscaped {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        write_separators_escaped(writer, fragment.as_bytes())
    }

    fn write_raw_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        write_separators_escaped(writer, fragment.as_bytes())
    }
}

/// U+2028 is E2 80 A8 in UTF-8, U+2029 E2 80 A9; E2 starts no other byte sequence that needs
/// a look, so the scan is a `memchr` for E2.
fn write_separators_escaped<W: ?Sized + std::io::Write>(
    writer: &mut W,
    mut bytes: &[u8],
) -> std::io::Result<()> {
    while let Some(at) = memchr::memchr(0xE2, bytes) {
        let escape: &[u8] = match bytes.get(at + 1..at + 3) {
            Some([0x80, 0xA8]) => b"\\u2028",
            Some([0x80, 0xA9]) => b"\\u2029",
            _ => {
                writer.write_all(&bytes[..=at])?;
                bytes = &bytes[at + 1..];
                continue;
            }
        };
        writer.write_all(&bytes[..at])?;
        writer.write_all(escape)?;
        bytes = &bytes[at + 3..];
    }
    writer.write_all(bytes)
}

/// A `system` or `error` reply, as a client reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Server time, UNIX seconds.
    pub time: f64,
    /// 2xx for system replies, 4xx/5xx for errors.
    pub code: u16,
    /// Human-readable text.
    pub msg: String,
    /// Code-specific detail, e.g. `{"room": R, "type": K}`.
    pub detail: Value,
}

impl Reply {
    /// Whether this reply reports a failure.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

/// One room event, as a client reads it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Server time, UNIX seconds.
    pub time: f64,
    /// Who caused it.
    #[serde(default)]
    pub user: String,
    /// join, leave, list, msg, transform, game, away or back.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's place in its room's history; absent for state (transform, list).
    #[serde(default)]
    pub seq: Option<u64>,
    /// The event's data.
    #[serde(default)]
    pub data: Value,
}

/// The events of one frame: all from one room, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// The room.
    pub room: String,
    /// True for the history a joiner gets.
    pub history: bool,
    /// At least one event.
    pub events: Vec<Event>,
}

/// Anything the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `"info": "system"` or `"info": "error"`.
    Reply(Reply),
    /// `"info": "user"`.
    Events(EventBatch),
}

#[derive(Deserialize)]
#[serde(tag = "info", rename_all = "lowercase")]
enum WireMessage {
    System { response: WireResponse },
    Error { response: WireResponse },
    User(WireBatch),
}

#[derive(Deserialize)]
struct WireResponse {
    time: f64,
    code: u16,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    detail: Value,
}

#[derive(Deserialize)]
struct WireBatch {
    room: String,
    #[serde(default)]
    history: bool,
    payload: Vec<Event>,
}

impl ServerMessage {
    /// Reads one frame body.
    pub fn parse(body: &[u8]) -> Result<ServerMessage, serde_json::Error> {
        Ok(match serde_json::from_slice(body)? {
            WireMessage::System { response } | WireMessage::Error { response } => {
                ServerMessage::Reply(Reply {
                    time: response.time,
                    code: response.code,
                    msg: response.msg,
                    detail: response.detail,
                })
            }
            WireMessage::User(batch) => ServerMessage::Events(EventBatch {
                room: batch.room,
                history: batch.history,
                events: batch.payload,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serde_json::value::RawValue;

    #[test]
    fn line_and_paragraph_separators_go_out_escaped_and_read_back_the_same() {
        let text = "a\u{2028}b\u{2029}c \u{20AC}\u{2027}";
        let raw =
            RawValue::from_string(format!("[{}]", serde_json::to_string(text).unwrap())).unwrap();
        assert!(raw.get().contains('\u{2028}'), "serde_json leaves them raw");
        for (body, data) in [
            (encode_event(1.0, "u", "msg", text), json!(text)),
            (encode_event(1.0, "u", "msg", &*raw), json!([text])),
        ] {
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(!body.contains(['\u{2028}', '\u{2029}']), "{body}");
            assert!(body.contains("a\\u2028b\\u2029c"), "{body}");
            assert!(
                body.contains('\u{20AC}'),
                "other E2 characters stay: {body}"
            );
            let read: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(read["data"], data);
        }
        let reply = encode_reply(1.0, Code::BadRequest, "x\u{2028}", Map::new());
        assert!(!std::str::from_utf8(&reply.body())
            .unwrap()
            .contains('\u{2028}'));
    }

    #[test]
    fn replies_and_events_are_spelled_as_documented() {
        let frame = encode_reply(1_700_000_000.0, Code::Ok, "pong", Map::new());
        assert_eq!(
            &frame.body()[..],
            br#"{"info":"system","response":{"time":1700000000.0,"code":200,"msg":"pong","detail":{}}}"#
        );
        let data = RawValue::from_string("[1, 2]".to_owned()).unwrap();
        let event = encode_history_event(1.5, "Tibi", "msg", 7, &data);
        assert_eq!(
            &event[..],
            br#"{"time":1.5,"user":"Tibi","type":"msg","seq":7,"data":[1, 2]}"#
        );
        let pose = encode_event(1.5, "Tibi", "transform", 1);
        assert_eq!(
            &pose[..],
            br#"{"time":1.5,"user":"Tibi","type":"transform","data":1}"#
        );
        let frame = encode_user_frame("r\"1", true, [&event, &event]);
        let value: Value = serde_json::from_slice(&frame.body()).unwrap();
        assert_eq!(value["room"], "r\"1");
        assert_eq!(value["history"], true);
        assert_eq!(value["payload"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn clients_read_back_what_the_server_encodes() {
        let frame = encode_reply(2.5, Code::Conflict, "taken", Map::new());
        assert_eq!(
            ServerMessage::parse(&frame.body()).unwrap(),
            ServerMessage::Reply(Reply {
                time: 2.5,
                code: 409,
                msg: "taken".into(),
                detail: Value::Object(Map::new()),
            })
        );
        let event = encode_event(1.5, "Tibi", "join", "");
        let frame = encode_user_frame("vr", false, [&event]);
        match ServerMessage::parse(&frame.body()).unwrap() {
            ServerMessage::Events(batch) => {
                assert_eq!((batch.room.as_str(), batch.history), ("vr", false));
                assert_eq!(batch.events[0].kind, "join");
                assert_eq!(batch.events[0].user, "Tibi");
            }
            other => panic!("{other:?}"),
        }
        assert!(ServerMessage::parse(br#"{"info":"other"}"#).is_err());
        assert!(ServerMessage::parse(br#"{"info":"user","room":"r"}"#).is_err());
    }
}
