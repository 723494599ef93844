//! What clients send: parsed once at the edge (everything the 400 rule covers is decided
//! here), and encoded the same way by [`crate::client`].

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::{Quote, QUOTE_LIMIT};

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
    /// Kept events before or after a sequence number.
    History,
    /// Become the only owner of a shared object.
    Claim,
    /// Give up a shared object.
    Release,
    /// A shared object's pose and state, from its owner; coalesced and sent on the tick.
    Object,
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
            RoomKind::History => "history",
            RoomKind::Claim => "claim",
            RoomKind::Release => "release",
            RoomKind::Object => "object",
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
            "history" => RoomKind::History,
            "claim" => RoomKind::Claim,
            "release" => RoomKind::Release,
            "object" => RoomKind::Object,
            _ => return None,
        })
    }

    /// Whether a message of this kind must carry `data` (join, leave and list need none).
    pub fn needs_data(self) -> bool {
        !matches!(self, RoomKind::Join | RoomKind::Leave | RoomKind::List)
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
        /// The password, when given. Any password is accepted until there are accounts.
        pass: Option<String>,
    },
    /// `{"system":"resume","options":{"token":T,"rooms":{R:SEQ,..}}}`
    Resume {
        /// The token of the last login or resume.
        token: String,
        /// The last seq the client received, per room.
        rooms: Vec<(String, u64)>,
    },
    /// `{"system":"logout"}`
    Logout,
    /// `{"system":"register","options":{"user":U,"pass":P}}`
    Register {
        /// Requested name, unchecked.
        user: String,
        /// The password, unchecked.
        pass: String,
    },
    /// `{"system":"password","options":{"old":P,"new":Q}}`
    Password {
        /// The current password.
        old: String,
        /// The new one, unchecked.
        new: String,
    },
    /// `{"system":"ping"}`
    Ping,
    /// `{"system":"rooms","options":{"after":R,"limit":N}}`, options optional.
    Rooms {
        /// Start after this room name (the `next` of the previous page).
        after: Option<String>,
        /// Rooms per page.
        limit: Option<usize>,
    },
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

impl Request<'_> {
    /// The JSON body, as a client sends it; `data` goes out byte for byte.
    pub fn encode(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct System<'a, O> {
            system: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            options: Option<O>,
        }
        #[derive(Serialize)]
        struct Login<'a> {
            user: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            pass: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Register<'a> {
            user: &'a str,
            pass: &'a str,
        }
        #[derive(Serialize)]
        struct Password<'a> {
            old: &'a str,
            new: &'a str,
        }
        #[derive(Serialize)]
        struct Resume<'a> {
            token: &'a str,
            rooms: serde_json::Map<String, Value>,
        }
        #[derive(Serialize)]
        struct Page<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            after: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            limit: Option<usize>,
        }
        #[derive(Serialize)]
        struct Room<'a> {
            room: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            data: Option<&'a RawValue>,
        }
        let none = None::<()>;
        let encoded = match self {
            Request::Login { user, pass } => serde_json::to_vec(&System {
                system: "login",
                options: Some(Login {
                    user,
                    pass: pass.as_deref(),
                }),
            }),
            Request::Resume { token, rooms } => serde_json::to_vec(&System {
                system: "resume",
                options: Some(Resume {
                    token,
                    rooms: rooms
                        .iter()
                        .map(|(room, seq)| (room.clone(), Value::from(*seq)))
                        .collect(),
                }),
            }),
            Request::Logout => serde_json::to_vec(&System {
                system: "logout",
                options: none,
            }),
            Request::Register { user, pass } => serde_json::to_vec(&System {
                system: "register",
                options: Some(Register { user, pass }),
            }),
            Request::Password { old, new } => serde_json::to_vec(&System {
                system: "password",
                options: Some(Password { old, new }),
            }),
            Request::Ping => serde_json::to_vec(&System {
                system: "ping",
                options: none,
            }),
            Request::Rooms { after, limit } => serde_json::to_vec(&System {
                system: "rooms",
                options: (after.is_some() || limit.is_some()).then_some(Page {
                    after: after.as_deref(),
                    limit: *limit,
                }),
            }),
            Request::Room { room, kind, data } => serde_json::to_vec(&Room {
                room,
                kind: kind.as_str(),
                data: *data,
            }),
        };
        // Strings and raw JSON always serialize.
        encoded.unwrap_or_default()
    }
}

/// A message that is not well-formed: always code 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
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
pub(crate) fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
struct RegisterOptions {
    user: String,
    pass: String,
}

#[derive(Deserialize)]
struct PasswordOptions {
    old: String,
    new: String,
}

#[derive(Deserialize)]
struct ResumeOptions {
    token: String,
    #[serde(default)]
    rooms: std::collections::BTreeMap<String, u64>,
}

#[derive(Deserialize)]
struct RoomsOptions {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
}

#[derive(Deserialize)]
struct LoginOptions {
    user: String,
    #[serde(default)]
    pass: Option<String>,
}

/// Parses one frame body.
pub fn decode_request(body: &[u8]) -> Result<Request<'_>, BadRequest> {
    let text =
        std::str::from_utf8(body).map_err(|_| BadRequest::new("Message is not valid UTF-8."))?;
    if !text.trim_start().starts_with('{') {
        return Err(BadRequest::new("Message must be a JSON object."));
    }
    let envelope: Envelope<'_> = serde_json::from_str(text)
        .map_err(|err| BadRequest::new(format!("Malformed JSON: {}.", brief(&err))))?;
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
        "logout" => Ok(Request::Logout),
        "register" => {
            let bad = || {
                BadRequest::new(
                    "register needs \"options\": {\"user\": NAME, \"pass\": PASSWORD}, both strings.",
                )
            };
            let options = options.filter(|o| o.get().starts_with('{')).ok_or_else(bad)?;
            let options: RegisterOptions =
                serde_json::from_str(options.get()).map_err(|_| bad())?;
            Ok(Request::Register {
                user: options.user,
                pass: options.pass,
            })
        }
        "password" => {
            let bad = || {
                BadRequest::new(
                    "password needs \"options\": {\"old\": PASSWORD, \"new\": PASSWORD}, both strings.",
                )
            };
            let options = options.filter(|o| o.get().starts_with('{')).ok_or_else(bad)?;
            let options: PasswordOptions =
                serde_json::from_str(options.get()).map_err(|_| bad())?;
            Ok(Request::Password {
                old: options.old,
                new: options.new,
            })
        }
        "resume" => {
            let bad = || {
                BadRequest::new(
                    "resume needs \"options\": {\"token\": TOKEN, \"rooms\": {ROOM: LAST_SEQ, ...}}.",
                )
            };
            let options = options
                .filter(|o| o.get().starts_with('{'))
                .ok_or_else(bad)?;
            let options: ResumeOptions = serde_json::from_str(options.get()).map_err(|_| bad())?;
            Ok(Request::Resume {
                token: options.token,
                rooms: options.rooms.into_iter().collect(),
            })
        }
        "rooms" => {
            let Some(options) = options else {
                return Ok(Request::Rooms {
                    after: None,
                    limit: None,
                });
            };
            let bad = || {
                BadRequest::new(
                    "rooms \"options\" may hold a string \"after\" and a positive integer \"limit\".",
                )
            };
            if !options.get().starts_with('{') {
                return Err(bad()); // serde would read an array as a struct, by position
            }
            let options: RoomsOptions = serde_json::from_str(options.get()).map_err(|_| bad())?;
            if options.limit == Some(0) {
                return Err(bad());
            }
            Ok(Request::Rooms {
                after: options.after,
                limit: options
                    .limit
                    .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            })
        }
        "login" => {
            let options = options.ok_or_else(|| {
                BadRequest::new("login needs \"options\": {\"user\": NAME, \"pass\": PASSWORD}.")
            })?;
            let options: LoginOptions = serde_json::from_str(options.get()).map_err(|err| {
                BadRequest::new(format!(
                    "login \"options\" must be an object with a string \"user\" and an optional string \"pass\": {}.", brief(&err)
                ))
            })?;
            Ok(Request::Login {
                user: options.user,
                pass: options.pass,
            })
        }
        other => Err(BadRequest::new(format!(
            "Unknown system command {}: use login, register, resume, logout, password, ping or rooms.",
            Quote(other)
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
            "Unknown type {}: use join, leave, list, msg, transform, game, history, claim, release or object.",
            Quote(&kind)
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
                "msg data is not portable JSON: {}.",
                brief(&err)
            )))
        })?;
    }
    Ok(Request::Room {
        room,
        kind: parsed,
        data: envelope.data,
    })
}

/// A parser's error for the client's eyes: serde quotes the offending value, so it is cut like
/// any other quoted input.
pub(crate) fn brief(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.char_indices().nth(2 * QUOTE_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

fn string_field<T: for<'de> Deserialize<'de>>(raw: &RawValue, name: &str) -> Result<T, BadRequest> {
    serde_json::from_str(raw.get())
        .map_err(|_| BadRequest::new(format!("Field \"{name}\" must be a string.")))
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

/// Most events one history query returns.
pub const MAX_HISTORY_QUERY: usize = 100;
/// Events a history query returns when it names no limit.
pub const DEFAULT_HISTORY_QUERY: usize = 50;

/// Which kept events a history query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryRange {
    /// The most recent ones with a seq below this one.
    Before(u64),
    /// The first ones with a seq above this one.
    After(u64),
}

/// A `history` message's data, parsed: `{"before":SEQ,"limit":N}` or `{"after":SEQ,...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Before or after which seq.
    pub range: HistoryRange,
    /// How many events at most, 1..=[`MAX_HISTORY_QUERY`].
    pub limit: usize,
}

/// A history query that cannot be answered as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadHistoryQuery {
    /// Not an object with exactly one of `before` and `after` as a non-negative integer.
    #[error("A history query needs exactly one of \"before\" and \"after\", a seq (a non-negative integer), and may have a \"limit\".")]
    Range,
    /// `limit` is not a positive integer.
    #[error("A history query's \"limit\" must be a positive integer (at most {MAX_HISTORY_QUERY} events are returned).")]
    Limit,
}

#[derive(Deserialize)]
struct HistoryFields {
    #[serde(default)]
    before: Option<Value>,
    #[serde(default)]
    after: Option<Value>,
    #[serde(default)]
    limit: Option<Value>,
}

impl HistoryQuery {
    /// Reads a `history` message's data.
    pub fn parse(data: &RawValue) -> Result<HistoryQuery, BadHistoryQuery> {
        if !data.get().starts_with('{') {
            return Err(BadHistoryQuery::Range);
        }
        let fields: HistoryFields =
            serde_json::from_str(data.get()).map_err(|_| BadHistoryQuery::Range)?;
        let seq = |value: Value| value.as_u64().ok_or(BadHistoryQuery::Range);
        let range = match (fields.before, fields.after) {
            (Some(before), None) => HistoryRange::Before(seq(before)?),
            (None, Some(after)) => HistoryRange::After(seq(after)?),
            _ => return Err(BadHistoryQuery::Range),
        };
        let limit = match fields.limit {
            None => DEFAULT_HISTORY_QUERY,
            Some(limit) => match limit.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => return Err(BadHistoryQuery::Limit),
            },
        };
        Ok(HistoryQuery {
            range,
            limit: limit.min(MAX_HISTORY_QUERY),
        })
    }
}

/// A `game` message's data that is none of the commands; the text of a 422.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid game command: data must be {{\"start\": GAME}}, {{\"join\": true}}, {{\"move\": MOVE}} or {{\"restart\": true}}.")]
pub struct BadGameCommand;

/// What a `game` message's data asks for.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GameCommand {
    /// `{"start": NAME}`: start a game in the room and take the first seat.
    Start(String),
    /// `{"join": true}`: take a seat.
    #[serde(serialize_with = "as_true")]
    Join,
    /// `{"move": M}`: play a move.
    Move(Value),
    /// `{"restart": true}`: start a finished game again.
    #[serde(serialize_with = "as_true")]
    Restart,
}

fn as_true<S: serde::Serializer>(serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(true)
}

impl GameCommand {
    /// Reads a `game` message's data.
    pub fn parse(data: &RawValue) -> Result<GameCommand, BadGameCommand> {
        let value: Value = serde_json::from_str(data.get()).map_err(|_| BadGameCommand)?;
        let object = value.as_object().ok_or(BadGameCommand)?;
        if let Some(name) = object.get("start") {
            return name
                .as_str()
                .map(|name| GameCommand::Start(name.to_owned()))
                .ok_or(BadGameCommand);
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
        Err(BadGameCommand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Request<'_>, BadRequest> {
        decode_request(json.as_bytes())
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn system_messages() {
        assert!(matches!(parse(r#"{"system":"ping"}"#), Ok(Request::Ping)));
        assert!(matches!(
            parse(r#"{"system":"rooms","x":1}"#),
            Ok(Request::Rooms {
                after: None,
                limit: None
            })
        ));
        match parse(r#"{"system":"rooms","options":{"after":"b","limit":10}}"#) {
            Ok(Request::Rooms { after, limit }) => {
                assert_eq!((after.as_deref(), limit), (Some("b"), Some(10)));
            }
            other => panic!("{other:?}"),
        }
        for bad in [r#"{"limit":0}"#, r#"{"limit":-1}"#, r#"{"after":1}"#, "[]"] {
            let body = format!(r#"{{"system":"rooms","options":{bad}}}"#);
            assert!(decode_request(body.as_bytes()).is_err(), "{bad}");
        }
        match parse(r#"{"system":"login","options":{"user":"Tibi","pass":"1234"}}"#) {
            Ok(Request::Login { user, pass }) => {
                assert_eq!(user, "Tibi");
                assert_eq!(pass.as_deref(), Some("1234"));
            }
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
    fn encoded_requests_parse_back_to_themselves() {
        let data = raw(r#"{"text":"hi"}"#);
        let requests = [
            Request::Login {
                user: "Tibi".into(),
                pass: Some("1234".into()),
            },
            Request::Ping,
            Request::Logout,
            Request::Register {
                user: "alice".into(),
                pass: "correct horse".into(),
            },
            Request::Password {
                old: "a".into(),
                new: "b".into(),
            },
            Request::Resume {
                token: "abc".into(),
                rooms: vec![("lobby".into(), 3), ("vr".into(), 0)],
            },
            Request::Rooms {
                after: None,
                limit: None,
            },
            Request::Rooms {
                after: Some("lobby".into()),
                limit: Some(20),
            },
            Request::Room {
                room: "café".into(),
                kind: RoomKind::Msg,
                data: Some(&data),
            },
            Request::Room {
                room: "vr".into(),
                kind: RoomKind::Join,
                data: None,
            },
        ];
        for request in &requests {
            let body = request.encode();
            let back = decode_request(&body).unwrap();
            assert_eq!(format!("{back:?}"), format!("{request:?}"));
        }
    }

    #[test]
    fn client_input_is_not_reflected_whole() {
        let long = "x".repeat(60_000);
        for body in [
            format!(r#"{{"room":"a","type":"{long}"}}"#),
            format!(r#"{{"system":"{long}"}}"#),
            format!(r#"{{"system":"login","options":{{"user":["{long}"]}}}}"#),
            format!(r#"{{"room":"a","type":"msg","data":{{"{long}":1e999}}}}"#),
        ] {
            let err = decode_request(body.as_bytes()).unwrap_err();
            assert!(
                err.message.len() < 400,
                "{} bytes: {}",
                err.message.len(),
                &err.message[..400]
            );
        }
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
    fn resume_and_logout_parse() {
        match parse(r#"{"system":"resume","options":{"token":"t1","rooms":{"lobby":41,"vr":7}}}"#) {
            Ok(Request::Resume { token, rooms }) => {
                assert_eq!(token, "t1");
                assert_eq!(rooms, [("lobby".to_owned(), 41), ("vr".to_owned(), 7)]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(r#"{"system":"resume","options":{"token":"t"}}"#),
            Ok(Request::Resume { .. })
        ));
        for bad in [
            r#"{"system":"resume"}"#,
            r#"{"system":"resume","options":{"rooms":{}}}"#,
            r#"{"system":"resume","options":{"token":"t","rooms":{"a":-1}}}"#,
            r#"{"system":"resume","options":["t"]}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            parse(r#"{"system":"logout"}"#),
            Ok(Request::Logout)
        ));
    }

    #[test]
    fn history_queries() {
        let q = |json: &str| HistoryQuery::parse(&raw(json));
        assert_eq!(
            q(r#"{"before":10,"limit":5}"#),
            Ok(HistoryQuery {
                range: HistoryRange::Before(10),
                limit: 5
            })
        );
        assert_eq!(
            q(r#"{"after":0}"#),
            Ok(HistoryQuery {
                range: HistoryRange::After(0),
                limit: DEFAULT_HISTORY_QUERY
            })
        );
        assert_eq!(
            q(r#"{"after":0,"limit":1000}"#).unwrap().limit,
            MAX_HISTORY_QUERY
        );
        for bad in [
            r#"{}"#,
            r#"{"before":1,"after":2}"#,
            r#"{"before":-1}"#,
            "[1]",
            r#"{"after":"3"}"#,
        ] {
            assert_eq!(q(bad), Err(BadHistoryQuery::Range), "{bad}");
        }
        for bad in [
            r#"{"after":1,"limit":0}"#,
            r#"{"after":1,"limit":2.5}"#,
            r#"{"after":1,"limit":"9"}"#,
        ] {
            assert_eq!(q(bad), Err(BadHistoryQuery::Limit), "{bad}");
        }
    }

    #[test]
    fn game_commands() {
        let cases = [
            (
                r#"{"start":"tictactoe"}"#,
                GameCommand::Start("tictactoe".into()),
            ),
            (r#"{"move":4}"#, GameCommand::Move(4.into())),
            (r#"{"join":true}"#, GameCommand::Join),
            (r#"{"restart":true}"#, GameCommand::Restart),
        ];
        for (json, command) in cases {
            assert_eq!(GameCommand::parse(&raw(json)), Ok(command.clone()));
            assert_eq!(serde_json::to_string(&command).unwrap(), json);
        }
        assert_eq!(GameCommand::parse(&raw(r#""start""#)), Err(BadGameCommand));
    }
}
