//! The messages: what clients may send, parsed once at the edge into types the hub trusts, and
//! how server replies and events are spelled on the wire. protocol.md is the prose of this file.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::codec::Frame;

/// Reply codes. 2xx travel as `"info":"system"`, 4xx/5xx as `"info":"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Success with nothing more specific to say (ping, rooms).
    Ok = 200,
    /// Login accepted.
    Accepted = 202,
    /// Malformed: not JSON, not an object, missing or ill-typed field, unknown command or type.
    BadRequest = 400,
    /// A room message before login.
    Unauthorized = 401,
    /// Wrong password; reserved until there are accounts.
    Forbidden = 403,
    /// Leave, list, msg, transform or game for a room the user is not in.
    NotFound = 404,
    /// Not logged in within the login timeout, or silent past the idle timeout; then closed.
    RequestTimeout = 408,
    /// Already logged in, name taken, room already joined.
    Conflict = 409,
    /// Frame or line over max_frame; the connection is closed.
    TooLarge = 413,
    /// Well-formed but invalid: user or room name, pose, game move, or a limit reached.
    Unprocessable = 422,
    /// Rate limited; the message was dropped.
    TooManyRequests = 429,
    /// Server full or shutting down.
    Unavailable = 503,
}

impl Code {
    /// The number on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// `"system"` for success codes, `"error"` for the rest.
    pub fn info(self) -> &'static str {
        if self.as_u16() < 400 {
            "system"
        } else {
            "error"
        }
    }
}

/// Longest user name, in characters (all ASCII).
pub const MAX_USER_NAME: usize = 32;
/// Longest room name, in Unicode characters.
pub const MAX_ROOM_NAME: usize = 64;
/// The room every user joins on login; it always exists.
pub const LOBBY: &str = "lobby";

/// A user name that passed the rules: 1..=32 of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// Checks the name rules; the error is the message for a 422.
    pub fn parse(name: &str) -> Result<UserName, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > MAX_USER_NAME || !name.chars().all(allowed) {
            return Err(format!(
                "Invalid user name: use 1 to {MAX_USER_NAME} of A-Z a-z 0-9 _ - ."
            ));
        }
        Ok(UserName(name.to_owned()))
    }

    /// The name as the user gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key that makes "Tibi" and "tibi" the same user.
    pub fn folded(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

/// A room name that passed the rules: 1..=64 Unicode characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    /// Checks the name rules; the error is the message for a 422.
    pub fn parse(name: &str) -> Result<RoomName, String> {
        let count = name.chars().count();
        if count == 0 || count > MAX_ROOM_NAME || name.chars().any(char::is_control) {
            return Err(format!(
                "Invalid room name: use 1 to {MAX_ROOM_NAME} characters, no control characters"
            ));
        }
        Ok(RoomName(name.to_owned()))
    }

    /// The lobby's name.
    pub fn lobby() -> RoomName {
        RoomName(LOBBY.to_owned())
    }

    /// The name, compared exactly.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a room message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// Become a member.
    Join,
    /// Stop being a member.
    Leave,
    /// Ask for the member names.
    List,
    /// Chat: data forwarded untouched to every member.
    Msg,
    /// Headset pose, coalesced and sent on the tick.
    Transform,
    /// Server-authoritative game command.
    Game,
}

impl RoomKind {
    /// The `type` string on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Join => "join",
            RoomKind::Leave => "leave",
            RoomKind::List => "list",
            RoomKind::Msg => "msg",
            RoomKind::Transform => "transform",
            RoomKind::Game => "game",
        }
    }

    fn parse(kind: &str) -> Option<RoomKind> {
        Some(match kind {
            "join" => RoomKind::Join,
            "leave" => RoomKind::Leave,
            "list" => RoomKind::List,
            "msg" => RoomKind::Msg,
            "transform" => RoomKind::Transform,
            "game" => RoomKind::Game,
            _ => return None,
        })
    }

    /// Whether a message of this kind must carry `data` (join, leave and list need none).
    fn needs_data(self) -> bool {
        matches!(self, RoomKind::Msg | RoomKind::Transform | RoomKind::Game)
    }
}

/// A client message that is well-formed (code 400 rules passed). Names are not yet checked:
/// the 401 rule answers before the 422 rules, and that order is the hub's.
#[derive(Debug)]
pub enum Request<'a> {
    /// `{"system":"login","options":{"user":U,"pass":P}}`
    Login {
        /// Requested name, unchecked.
        user: String,
    },
    /// `{"system":"ping"}`
    Ping,
    /// `{"system":"rooms"}`
    Rooms,
    /// `{"room":R,"type":K,"data":D}`
    Room {
        /// Room name, unchecked.
        room: String,
        /// What to do.
        kind: RoomKind,
        /// The raw `data` value, exactly as the client spelled it; present for msg,
        /// transform and game.
        data: Option<&'a RawValue>,
    },
}

/// A message that is not well-formed: always code 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// What is wrong, for the client's eyes.
    pub message: String,
    /// The `room` field, when it could be read: errors of room messages echo it.
    pub room: Option<String>,
    /// The `type` field, when it could be read.
    pub kind: Option<String>,
}

impl BadRequest {
    fn new(message: impl Into<String>) -> Self {
        BadRequest {
            message: message.into(),
            room: None,
            kind: None,
        }
    }
}

/// Every field any client message may carry; unknown keys are ignored. Values stay raw so each
/// is type-checked with a message naming it, and msg data is never re-encoded.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    system: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    options: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    room: Option<&'a RawValue>,
    #[serde(borrow, rename = "type", default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
}

/// Keeps `null` apart from "absent": `"data": null` is a msg, a missing `data` is a 400.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct LoginOptions {
    user: String,
    #[serde(default)]
    #[allow(dead_code)] // Checked for type now; compared once there are accounts.
    pass: Option<String>,
}

/// Parses one frame body. Everything the 400 rule covers is decided here.
pub fn decode_request(body: &[u8]) -> Result<Request<'_>, BadRequest> {
    let text =
        std::str::from_utf8(body).map_err(|_| BadRequest::new("Message is not valid UTF-8."))?;
    if !text.trim_start().starts_with('{') {
        return Err(BadRequest::new("Message must be a JSON object."));
    }
    let envelope: Envelope<'_> = serde_json::from_str(text)
        .map_err(|err| BadRequest::new(format!("Malformed JSON: {err}.")))?;
    if let Some(system) = envelope.system {
        return decode_system(system, envelope.options);
    }
    decode_room(&envelope)
}

fn decode_system<'a>(
    system: &RawValue,
    options: Option<&RawValue>,
) -> Result<Request<'a>, BadRequest> {
    let command: String = string_field(system, "system")?;
    match command.as_str() {
        "ping" => Ok(Request::Ping),
        "rooms" => Ok(Request::Rooms),
        "login" => {
            let options = options.ok_or_else(|| {
                BadRequest::new("login needs \"options\": {\"user\": NAME, \"pass\": PASSWORD}.")
            })?;
            let options: LoginOptions = serde_json::from_str(options.get()).map_err(|err| {
                BadRequest::new(format!(
                    "login \"options\" must be an object with a string \"user\" and an optional string \"pass\": {err}."
                ))
            })?;
            Ok(Request::Login { user: options.user })
        }
        other => Err(BadRequest::new(format!(
            "Unknown system command {other:?}: use login, ping or rooms."
        ))),
    }
}

fn decode_room<'a>(envelope: &Envelope<'a>) -> Result<Request<'a>, BadRequest> {
    // Read what can be read first, so every 400 echoes room and type where it can.
    let room = envelope.room.map(|raw| string_field::<String>(raw, "room"));
    let kind = envelope.kind.map(|raw| string_field::<String>(raw, "type"));
    let with_context = |mut err: BadRequest| {
        err.room = room.as_ref().and_then(|r| r.as_ref().ok().cloned());
        err.kind = kind.as_ref().and_then(|k| k.as_ref().ok().cloned());
        err
    };
    let (room, kind) = match (room.clone(), kind.clone()) {
        (None, None) => {
            return Err(BadRequest::new(
                "Message needs a \"system\" field, or \"room\" and \"type\" fields.",
            ))
        }
        (None, Some(_)) => return Err(with_context(BadRequest::new("Missing field \"room\"."))),
        (Some(_), None) => return Err(with_context(BadRequest::new("Missing field \"type\"."))),
        (Some(room), Some(kind)) => (room.map_err(with_context)?, kind.map_err(with_context)?),
    };
    let Some(parsed) = RoomKind::parse(&kind) else {
        return Err(with_context(BadRequest::new(format!(
            "Unknown type {kind:?}: use join, leave, list, msg, transform or game."
        ))));
    };
    if parsed.needs_data() && envelope.data.is_none() {
        return Err(with_context(BadRequest::new(format!(
            "A {kind} message needs a \"data\" field."
        ))));
    }
    if let (RoomKind::Msg, Some(data)) = (parsed, envelope.data) {
        check_portable(data).map_err(|err| {
            with_context(BadRequest::new(format!(
                "msg data is not portable JSON: {err}."
            )))
        })?;
    }
    Ok(Request::Room {
        room,
        kind: parsed,
        data: envelope.data,
    })
}

/// Checks that every JSON parser will read `data` as sent. RawValue accepts what strict
/// parsers refuse (1e999, lone surrogate escapes); only data every client can read is worth
/// forwarding. Public so its cost can be benchmarked on its own.
pub fn check_portable(data: &RawValue) -> Result<(), serde_json::Error> {
    serde_json::from_str::<StrictJson>(data.get()).map(|_| ())
}

/// Walks a JSON value the way a strict parser reads it (numbers as doubles, strings with their
/// escapes decoded) without building it, so that validating costs no allocation.
struct StrictJson;

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = StrictJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_i64<E>(self, _: i64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_u64<E>(self, _: u64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_f64<E>(self, _: f64) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_str<E>(self, _: &str) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_unit<E>(self) -> Result<StrictJson, E> {
        Ok(StrictJson)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictJson, A::Error> {
        while seq.next_element::<StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictJson, A::Error> {
        while map.next_entry::<StrictJson, StrictJson>()?.is_some() {}
        Ok(StrictJson)
    }
}

/// msg data as it goes out: byte for byte, except that raw line breaks between tokens (the
/// only place JSON allows them) become spaces, so the event fits on one line in line mode.
pub fn one_line(data: &RawValue) -> std::borrow::Cow<'_, RawValue> {
    let text = data.get();
    if !text.contains(['\n', '\r']) {
        return std::borrow::Cow::Borrowed(data);
    }
    let flat = text.replace(['\n', '\r'], " ");
    match RawValue::from_string(flat) {
        Ok(raw) => std::borrow::Cow::Owned(raw),
        // Unreachable for valid JSON: whitespace was swapped for whitespace.
        Err(_) => std::borrow::Cow::Borrowed(data),
    }
}

fn string_field<T: for<'de> Deserialize<'de>>(raw: &RawValue, name: &str) -> Result<T, BadRequest> {
    serde_json::from_str(raw.get())
        .map_err(|_| BadRequest::new(format!("Field \"{name}\" must be a string.")))
}

/// A validated headset pose: what is stored and forwarded, nothing else the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pose {
    /// Position.
    pub pos: Vec3,
    /// Rotation: Euler angles, or a quaternion when `w` is present.
    pub rot: Rotation,
}

/// A position or Euler rotation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Vec3 {
    /// X axis.
    pub x: f64,
    /// Y axis.
    pub y: f64,
    /// Z axis.
    pub z: f64,
}

/// Rotation as engines hand it over: x, y, z and, for a quaternion, w.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rotation {
    /// X component.
    pub x: f64,
    /// Y component.
    pub y: f64,
    /// Z component.
    pub z: f64,
    /// Quaternion scalar part, when the client sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub w: Option<f64>,
}

impl Pose {
    /// Checks a transform's `data`; the error names the bad field (for a 422).
    pub fn parse(data: &RawValue) -> Result<Pose, String> {
        let shape = "Invalid transform: data must be an object with \"pos\" and \"rot\".";
        let fields: PoseFields<'_> = fields_of(data).ok_or(shape)?;
        let pos: AxisFields<'_> = fields
            .pos
            .and_then(fields_of)
            .ok_or("Invalid transform: data.pos must be an object with x, y, z.")?;
        let rot: AxisFields<'_> = fields
            .rot
            .and_then(fields_of)
            .ok_or("Invalid transform: data.rot must be an object with x, y, z.")?;
        Ok(Pose {
            pos: Vec3 {
                x: axis(pos.x, "data.pos.x")?,
                y: axis(pos.y, "data.pos.y")?,
                z: axis(pos.z, "data.pos.z")?,
            },
            rot: Rotation {
                x: axis(rot.x, "data.rot.x")?,
                y: axis(rot.y, "data.rot.y")?,
                z: axis(rot.z, "data.rot.z")?,
                w: rot.w.map(|w| axis(Some(w), "data.rot.w")).transpose()?,
            },
        })
    }
}

#[derive(Deserialize)]
struct PoseFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    pos: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    rot: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AxisFields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    x: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    y: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    z: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    w: Option<&'a RawValue>,
}

/// An object's known fields, each still raw; `None` unless `raw` is a JSON object.
fn fields_of<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Option<T> {
    if !raw.get().starts_with('{') {
        return None; // serde would also read an array as a struct, by position
    }
    serde_json::from_str(raw.get()).ok()
}

fn axis(raw: Option<&RawValue>, name: &str) -> Result<f64, String> {
    raw.and_then(|raw| serde_json::from_str::<f64>(raw.get()).ok())
        .filter(|value| value.is_finite())
        .ok_or_else(|| format!("Invalid transform: {name} must be a finite number."))
}

/// What a `game` message's data asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum GameCommand {
    /// `{"start": NAME}`: start a game in the room and take the first seat.
    Start(String),
    /// `{"join": true}`: take a seat.
    Join,
    /// `{"move": M}`: play a move.
    Move(Value),
    /// `{"restart": true}`: start a finished game again.
    Restart,
}

impl GameCommand {
    /// Reads a `game` message's data; the error is the message for a 422.
    pub fn parse(data: &RawValue) -> Result<GameCommand, String> {
        const USAGE: &str = "Invalid game command: data must be {\"start\": GAME}, {\"join\": true}, {\"move\": MOVE} or {\"restart\": true}.";
        let value: Value = serde_json::from_str(data.get()).map_err(|_| USAGE.to_owned())?;
        let Some(object) = value.as_object() else {
            return Err(USAGE.to_owned());
        };
        if let Some(name) = object.get("start") {
            return name
                .as_str()
                .map(|name| GameCommand::Start(name.to_owned()))
                .ok_or_else(|| USAGE.to_owned());
        }
        if let Some(mv) = object.get("move") {
            return Ok(GameCommand::Move(mv.clone()));
        }
        if object.get("join") == Some(&Value::Bool(true)) {
            return Ok(GameCommand::Join);
        }
        if object.get("restart") == Some(&Value::Bool(true)) {
            return Ok(GameCommand::Restart);
        }
        Err(USAGE.to_owned())
    }
}

#[derive(Serialize)]
struct Reply<'a> {
    info: &'static str,
    response: Response<'a>,
}

#[derive(Serialize)]
struct Response<'a> {
    time: f64,
    code: u16,
    msg: &'a str,
    detail: &'a Map<String, Value>,
}

/// Encodes a system (2xx) or error (4xx/5xx) reply.
pub fn encode_reply(time: f64, code: Code, msg: &str, detail: &Map<String, Value>) -> Frame {
    let reply = Reply {
        info: code.info(),
        response: Response {
            time,
            code: code.as_u16(),
            msg,
            detail,
        },
    };
    encode_frame(&reply)
}

#[derive(Serialize)]
struct Event<'a, D> {
    time: f64,
    user: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    data: D,
}

/// One room event, encoded once: it is stored in history and batched into frames as is.
pub fn encode_event<D: Serialize>(time: f64, user: &str, kind: &str, data: D) -> Bytes {
    let event = Event {
        time,
        user,
        kind,
        data,
    };
    // Serializing plain structs, strings, numbers and raw JSON into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&event).expect("event serializes"))
}

/// A user frame carrying already encoded events of one room, in order.
///
/// `history` marks the frame a joiner gets with the room's past events.
pub fn encode_user_frame<'e>(
    room: &str,
    history: bool,
    events: impl IntoIterator<Item = &'e Bytes>,
) -> Frame {
    let mut buf = Frame::start(64);
    buf.extend_from_slice(b"{\"info\":\"user\",\"room\":");
    write_json(&mut buf, room);
    if history {
        buf.extend_from_slice(b",\"history\":true");
    }
    buf.extend_from_slice(b",\"payload\":[");
    for (i, event) in events.into_iter().enumerate() {
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

fn write_json<T: Serialize + ?Sized>(buf: &mut Vec<u8>, value: &T) {
    // Writing to a Vec cannot fail, and every value the server encodes is plain data.
    serde_json::to_writer(buf, value).expect("server values serialize");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Request<'_>, BadRequest> {
        decode_request(json.as_bytes())
    }

    #[test]
    fn system_messages() {
        assert!(matches!(parse(r#"{"system":"ping"}"#), Ok(Request::Ping)));
        assert!(matches!(
            parse(r#"{"system":"rooms","x":1}"#),
            Ok(Request::Rooms)
        ));
        match parse(r#"{"system":"login","options":{"user":"Tibi","pass":"1234"}}"#) {
            Ok(Request::Login { user }) => assert_eq!(user, "Tibi"),
            other => panic!("{other:?}"),
        }
        let err = parse(r#"{"system":"login","options":{"user":5}}"#).unwrap_err();
        assert!(err.message.contains("options"), "{}", err.message);
        let err = parse(r#"{"system":"dance"}"#).unwrap_err();
        assert!(err.message.contains("dance"));
    }

    #[test]
    fn malformed_input_is_a_bad_request() {
        for body in [
            &b"[1,2]"[..],
            b"\"x\"",
            b"{",
            b"\xff{}",
            b"{\"room\":1,\"room\":2}",
        ] {
            assert!(
                decode_request(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn room_message_errors_carry_room_and_type() {
        let err = parse(r#"{"room":"a","type":"dance"}"#).unwrap_err();
        assert_eq!(err.room.as_deref(), Some("a"));
        assert_eq!(err.kind.as_deref(), Some("dance"));
        let err = parse(r#"{"room":"a","type":"msg"}"#).unwrap_err();
        assert!(err.message.contains("data"));
        assert_eq!(err.kind.as_deref(), Some("msg"));
        let err = parse(r#"{"room":7,"type":"join"}"#).unwrap_err();
        assert_eq!(err.room, None);
        assert_eq!(err.kind.as_deref(), Some("join"));
    }

    #[test]
    fn msg_data_stays_raw_and_null_is_present() {
        match parse(
            r#"{"room":"a","type":"msg","data":{"n":123456789012345678901234567890,"f":1.50}}"#,
        ) {
            Ok(Request::Room {
                data: Some(data), ..
            }) => {
                assert_eq!(
                    data.get(),
                    r#"{"n":123456789012345678901234567890,"f":1.50}"#
                )
            }
            other => panic!("{other:?}"),
        }
        match parse(r#"{"room":"a","type":"msg","data":null}"#) {
            Ok(Request::Room {
                data: Some(data), ..
            }) => assert_eq!(data.get(), "null"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"room":"a","type":"join"}"#),
            Ok(Request::Room {
                kind: RoomKind::Join,
                data: None,
                ..
            })
        ));
    }

    #[test]
    fn names() {
        assert!(UserName::parse("Tibi_1.-").is_ok());
        for bad in ["", "a b", "é", &"x".repeat(33)] {
            assert!(UserName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(UserName::parse("TiBi").unwrap().folded(), "tibi");
        assert!(RoomName::parse("café ☕").is_ok());
        assert!(RoomName::parse(&"é".repeat(64)).is_ok());
        for bad in ["", "a\nb", "\u{7f}", &"é".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn poses_are_validated_field_by_field() {
        let pose = Pose::parse(&raw(
            r#"{"pos":{"x":1,"y":2.5,"z":-3},"rot":{"x":0,"y":0,"z":0,"w":1},"extra":true}"#,
        ))
        .unwrap();
        assert_eq!(pose.rot.w, Some(1.0));
        assert_eq!(
            serde_json::to_string(&pose).unwrap(),
            r#"{"pos":{"x":1.0,"y":2.5,"z":-3.0},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0}}"#
        );
        let cases = [
            (
                r#"{"pos":{"x":1,"y":2},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.z",
            ),
            (
                r#"{"pos":{"x":1,"y":2,"z":"3"},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.z",
            ),
            (r#"{"pos":{"x":1,"y":2,"z":3}}"#, "data.rot"),
            (
                r#"{"pos":{"x":1,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0,"w":null}}"#,
                "data.rot.w",
            ),
            (
                r#"{"pos":{"x":1e999,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0}}"#,
                "data.pos.x",
            ),
            (
                r#"{"pos":{"x":1,"y":2,"z":3},"rot":{"x":0,"y":0,"z":0},"junk":1e999}"#,
                "!ok",
            ),
            (r#"[1,2,3]"#, "data must be an object"),
        ];
        for (json, needle) in cases {
            if needle == "!ok" {
                assert!(
                    Pose::parse(&raw(json)).is_ok(),
                    "ignored keys are not read: {json}"
                );
                continue;
            }
            let err = Pose::parse(&raw(json)).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn replies_and_events_are_spelled_as_documented() {
        let frame = encode_reply(1_700_000_000.0, Code::Ok, "pong", &Map::new());
        assert_eq!(
            &frame.body()[..],
            br#"{"info":"system","response":{"time":1700000000.0,"code":200,"msg":"pong","detail":{}}}"#
        );
        let event = encode_event(1.5, "Tibi", "msg", raw("[1, 2]"));
        assert_eq!(
            &event[..],
            br#"{"time":1.5,"user":"Tibi","type":"msg","data":[1, 2]}"#
        );
        let frame = encode_user_frame("r\"1", true, [&event, &event]);
        let value: Value = serde_json::from_slice(&frame.body()).unwrap();
        assert_eq!(value["room"], "r\"1");
        assert_eq!(value["history"], true);
        assert_eq!(value["payload"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn msg_data_must_be_strict_json() {
        for data in ["1e999", r#""\ud800""#, r#"{"a":[1,{"b":-1e400}]}"#] {
            let body = format!(r#"{{"room":"r","type":"msg","data":{data}}}"#);
            let err = decode_request(body.as_bytes()).unwrap_err();
            assert!(err.message.contains("portable"), "{data}: {}", err.message);
            assert_eq!(err.kind.as_deref(), Some("msg"));
        }
        let body = r#"{"room":"r","type":"msg","data":{"big":123456789012345678901234567890,"s":"\u00e9\ud83d\ude00"}}"#;
        assert!(decode_request(body.as_bytes()).is_ok());
    }

    #[test]
    fn raw_line_breaks_in_data_become_spaces() {
        let data = raw("[1,\r\n 2, \"a\\nb\"]");
        assert_eq!(one_line(&data).get(), "[1,   2, \"a\\nb\"]");
        let data = raw("{\"k\": 1.50}");
        assert!(matches!(one_line(&data), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn game_commands() {
        assert_eq!(
            GameCommand::parse(&raw(r#"{"start":"tictactoe"}"#)),
            Ok(GameCommand::Start("tictactoe".into()))
        );
        assert_eq!(
            GameCommand::parse(&raw(r#"{"move":4}"#)),
            Ok(GameCommand::Move(4.into()))
        );
        assert_eq!(
            GameCommand::parse(&raw(r#"{"join":true}"#)),
            Ok(GameCommand::Join)
        );
        assert_eq!(
            GameCommand::parse(&raw(r#"{"restart":true}"#)),
            Ok(GameCommand::Restart)
        );
        assert!(GameCommand::parse(&raw(r#""start""#)).is_err());
    }
}
