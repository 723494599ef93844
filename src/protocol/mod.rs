//! The wire vocabulary, one for the server and [`crate::client`] alike: codes, names, poses,
//! requests, replies and events. protocol.md is the prose of this module.
//!
//! | file | owns |
//! |---|---|
//! | [`names`] | user and room names and their rules |
//! | [`pose`] | headset poses, tracked parts, and their validation |
//! | [`object`] | shared objects: claim, release and update messages |
//! | [`request`] | what clients send: parsing (the 400 rules) and encoding |
//! | [`reply`] | what the server sends: encoding, and parsing for clients |

pub mod names;
pub mod object;
pub mod pose;
pub mod reply;
pub mod request;

use serde_json::{Map, Value};

pub use names::{
    Label, NameError, RoomName, UserName, LOBBY, MAX_LABEL, MAX_ROOM_NAME, MAX_USER_NAME,
};
pub use object::{BadObject, Claim, ObjectUpdate, Release};
pub use pose::{Avatar, Field, Pose, PoseError, Rotation, Subject, Transform, Vec3};
pub use reply::{
    encode_event, encode_history_event, encode_reply, encode_user_frame, Event, EventBatch,
    Problem, Reply, ServerMessage,
};
pub use request::{
    check_portable, decode_request, one_line, BadGameCommand, BadHistoryQuery, BadRequest,
    GameCommand, HistoryQuery, HistoryRange, Request, RoomKind,
};

/// Reply codes. 2xx travel as `"info":"system"`, 4xx/5xx as `"info":"error"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Success with nothing more specific to say (ping, rooms).
    Ok = 200,
    /// An account was registered.
    Created = 201,
    /// Login accepted.
    Accepted = 202,
    /// Malformed: not JSON, not an object, missing or ill-typed field, unknown command or type.
    BadRequest = 400,
    /// A room message before login.
    Unauthorized = 401,
    /// Wrong password (or a name that needs one); a password change by a guest.
    Forbidden = 403,
    /// Leave, list, msg, transform or game for a room the user is not in.
    NotFound = 404,
    /// The session to resume is gone, or a room's missed events are no longer kept.
    Gone = 410,
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

/// Characters of client input an error message may quote: enough to recognise it, too few to
/// turn a refusal into an amplifier (a 60 KB `type` must not come back in a 120 KB error).
pub const QUOTE_LIMIT: usize = 64;

/// Client input as an error message quotes it: in Rust debug quotes, cut after
/// [`QUOTE_LIMIT`] characters and marked with `…` inside the quotes when cut.
pub struct Quote<'a>(pub &'a str);

impl std::fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kept, was_cut) = cut_at(self.0, QUOTE_LIMIT);
        write!(f, "\"{}", kept.escape_debug())?;
        if was_cut {
            f.write_str("…")?;
        }
        f.write_str("\"")
    }
}

/// Client input echoed in a reply's detail: the first [`QUOTE_LIMIT`] characters, and `…`
/// when cut. Valid names are never cut (they are shorter).
pub fn echo(text: &str) -> String {
    match cut_at(text, QUOTE_LIMIT) {
        (kept, false) => kept.to_owned(),
        (kept, true) => format!("{kept}…"),
    }
}

/// The first `limit` characters of `text`, and whether anything was cut.
fn cut_at(text: &str, limit: usize) -> (&str, bool) {
    match text.char_indices().nth(limit) {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    }
}

/// A JSON object's map; anything else is an empty map. For building reply details with
/// `json!`.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_input_is_cut_and_marked() {
        assert_eq!(Quote("dance").to_string(), "\"dance\"");
        assert_eq!(Quote("a\"b\n").to_string(), "\"a\\\"b\\n\"");
        let long = "é".repeat(60_000);
        let quoted = Quote(&long).to_string();
        assert_eq!(quoted.chars().count(), QUOTE_LIMIT + 3);
        assert!(quoted.ends_with("…\""));
        assert_eq!(echo("lobby"), "lobby");
        assert_eq!(echo(&long).chars().count(), QUOTE_LIMIT + 1);
    }
}
