//! Every way the hub says no: one variant per refusal, carrying what its message needs, mapped
//! to a code and a text here and nowhere else.

use std::time::Duration;

use serde_json::{Map, Value};

use crate::frame::Frame;
use crate::game::{self, GameError};
use crate::protocol::{
    encode_reply, BadGameCommand, BadHistoryQuery, BadObject, BadRequest, Code, Label, NameError,
    PoseError, Quote,
};

/// A request the hub refuses; `Display` is the `msg` the client reads.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Not well-formed (the 400 rules of `protocol::request`).
    #[error("{}", .0.message)]
    BadRequest(BadRequest),
    /// A msg, transform or game message without `data`.
    #[error("A {kind} message needs a \"data\" field.")]
    MissingData {
        /// The message type.
        kind: &'static str,
    },
    /// For a message whose connection the hub has already let go (it is being closed); the
    /// event loop stops feeding those, so no client should ever see this.
    #[error("This connection is closing.")]
    Closing,
    /// A room message before login.
    #[error(
        "Log in first: {{\"system\":\"login\",\"options\":{{\"user\":NAME,\"pass\":PASSWORD}}}}."
    )]
    NotLoggedIn,
    /// A user or room name that breaks the rules.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A second login on one connection.
    #[error("Already logged in as {user}.")]
    AlreadyLoggedIn {
        /// The name this connection is logged in as.
        user: String,
    },
    /// The name is in use, ignoring ASCII case.
    #[error("User name {user} is already logged in.")]
    NameTaken {
        /// The requested name.
        user: String,
    },
    /// A room message for a room the user is not in.
    #[error("You are not in room {}.", Quote(.room))]
    NotInRoom {
        /// The room as the client spelled it.
        room: String,
    },
    /// Joining one room more than `--max-rooms-per-user`.
    #[error("You are in {count} rooms, the most one user may join; leave one first.")]
    TooManyRooms {
        /// Rooms the user is in.
        count: usize,
    },
    /// Joining a room at `--max-room-members`.
    #[error("Room {} is full: it holds at most {max} members.", Quote(.room))]
    RoomFull {
        /// The room.
        room: String,
        /// The limit.
        max: usize,
    },
    /// Joining a room the user is already in.
    #[error("You are already in room {}.", Quote(.room))]
    AlreadyJoined {
        /// The room.
        room: String,
    },
    /// Creating a room past `--max-rooms`.
    #[error("The server holds its limit of {max} rooms; join an existing one.")]
    RoomLimit {
        /// The limit.
        max: usize,
    },
    /// A transform whose data is not a pose.
    #[error(transparent)]
    Pose(#[from] PoseError),
    /// A game message whose data is not a command.
    #[error(transparent)]
    GameCommand(#[from] BadGameCommand),
    /// A game command in a room without a game.
    #[error("No game in room {}: start one with {{\"start\": GAME}} (games: {}).", Quote(.room), game::names().join(", "))]
    NoGame {
        /// The room.
        room: String,
    },
    /// Starting a game that is not in the registry.
    #[error("Unknown game {}: available games are {}.", Quote(.name), game::names().join(", "))]
    UnknownGame {
        /// The name asked for.
        name: String,
    },
    /// Starting a game over a running one.
    #[error("A game is running in this room; finish it first.")]
    GameRunning,
    /// The game's rules refused the command.
    #[error(transparent)]
    Game(#[from] GameError),
    /// Over the connection's message rate.
    #[error("Rate limit exceeded: at most {rate} messages per second; message dropped.")]
    RateLimited {
        /// The configured rate.
        rate: f64,
    },
    /// Not logged in within the login timeout.
    #[error("Not logged in within {} s; closing.", .after.as_secs_f64())]
    LoginTimeout {
        /// The timeout.
        after: Duration,
    },
    /// Silent past the idle timeout.
    #[error("Silent for {} s; closing.", .after.as_secs_f64())]
    IdleTimeout {
        /// The timeout.
        after: Duration,
    },
    /// The server is stopping.
    #[error("Server shutting down.")]
    ShuttingDown,
    /// Past `--max-clients` (answered by the event loop, which counts sockets).
    #[error("Server full.")]
    ServerFull,
    /// Past `--max-conns-per-ip` (answered by the event loop).
    #[error("Too many connections from your address: at most {max}.")]
    AddressFull {
        /// The limit.
        max: usize,
    },
    /// The server is near its memory budget: no new logins or joins until it recovers.
    #[error("Server is low on memory; try again later.")]
    LowMemory,
    /// Cluster mode: Redis, which numbers every history event, cannot be reached now.
    #[error("The cluster's message bus (Redis) is unreachable; try again shortly.")]
    ClusterDown,
    /// Cluster mode: a feature that does not work across nodes yet.
    #[error("{what} are not available when the server runs as a cluster (--redis).")]
    NotInCluster {
        /// What, in the plural ("Shared objects").
        what: &'static str,
    },
    /// Cluster mode: the other nodes declared this node dead (it could not reach Redis for
    /// longer than the dead-node timeout) and ended its sessions; told before closing.
    #[error("This node lost contact with the cluster; log in again.")]
    ClusterLost,
    /// A resume with a token that is unknown, used or expired.
    #[error("Session expired.")]
    SessionExpired,
    /// Told to a resumed session's old connection before it is closed.
    #[error("Session resumed on another connection; closing.")]
    ResumedElsewhere,
    /// A resumed room whose missed events are no longer kept (or a seq the room never
    /// reached): its whole kept history follows, to resynchronize from.
    #[error("Missed events are no longer kept; the room's whole kept history follows.")]
    MissedEventsGone,
    /// A history query that cannot be answered as asked.
    #[error(transparent)]
    History(#[from] BadHistoryQuery),
    /// No session token could be drawn from the system's random source.
    #[error("Cannot start a session right now; try again.")]
    NoToken,
    /// A wrong password for a registered name (or, with `--accounts-only`, a name without an
    /// account).
    #[error("Access denied.")]
    AccessDenied,
    /// Too many failed logins for this name or from this address lately.
    #[error("Too many failed logins; try again in a minute.")]
    LoginThrottled,
    /// The password hashing queue is full.
    #[error("Busy, try again.")]
    Busy,
    /// Registering a name that is registered, being registered, or in use by a guest.
    #[error("User name {user} is already registered or in use.")]
    NameRegistered {
        /// The requested name.
        user: String,
    },
    /// A password outside the length rules.
    #[error("Invalid password: use 8 to 1024 bytes (at least 8 characters).")]
    BadPassword,
    /// Registering past `--max-accounts`.
    #[error("The server holds its limit of {max} accounts.")]
    AccountLimit {
        /// The limit.
        max: usize,
    },
    /// A password change from a guest.
    #[error("Only a registered user can change its password.")]
    NotRegistered,
    /// Creating a room past `--max-held-rooms`.
    #[error("You hold {max} rooms you created; leave one before creating another.")]
    HoldingTooMany {
        /// The limit.
        max: usize,
    },
    /// Creating a room past `--max-held-rooms-per-ip`.
    #[error(
        "Users at your address hold {max} rooms they created; leave one before creating another."
    )]
    AddressHoldingTooMany {
        /// The limit.
        max: usize,
    },

    // Shared objects (hub/objects.rs).
    /// A claim, release or object message whose data cannot be used.
    #[error(transparent)]
    Object(#[from] BadObject),
    /// A claim of an object another member holds.
    #[error("Object {} is held by {owner}.", Quote(.object.as_str()))]
    ObjectHeld {
        /// The object.
        object: Label,
        /// Its owner.
        owner: String,
    },
    /// A release or update of an object the sender does not hold.
    #[error("You do not hold object {}.", Quote(.object.as_str()))]
    NotHolder {
        /// The object.
        object: Label,
        /// Who holds it, if anyone.
        owner: Option<String>,
    },
    /// A claim past `--max-claims`.
    #[error("You hold {max} objects in this room, the most one user may hold; release one first.")]
    TooManyClaims {
        /// The limit.
        max: usize,
    },
    /// A claim of a new object past `--max-objects`.
    #[error(
        "This room holds its limit of {max} objects; release one with \"remove\": true first."
    )]
    TooManyObjects {
        /// The limit.
        max: usize,
    },
}

impl Refusal {
    /// The code it travels with.
    pub fn code(&self) -> Code {
        match self {
            Refusal::BadRequest(_)
            | Refusal::MissingData { .. }
            | Refusal::Closing
            | Refusal::History(BadHistoryQuery::Range) => Code::BadRequest,
            Refusal::History(BadHistoryQuery::Limit) => Code::Unprocessable,
            Refusal::SessionExpired | Refusal::MissedEventsGone => Code::Gone,
            Refusal::ResumedElsewhere => Code::Conflict,
            Refusal::NotLoggedIn => Code::Unauthorized,
            Refusal::AccessDenied | Refusal::NotRegistered => Code::Forbidden,
            Refusal::LoginThrottled => Code::TooManyRequests,
            Refusal::NameRegistered { .. } => Code::Conflict,
            Refusal::BadPassword => Code::Unprocessable,
            Refusal::Busy | Refusal::AccountLimit { .. } => Code::Unavailable,
            Refusal::NotInRoom { .. } => Code::NotFound,
            Refusal::LoginTimeout { .. } | Refusal::IdleTimeout { .. } => Code::RequestTimeout,
            Refusal::AlreadyLoggedIn { .. }
            | Refusal::NameTaken { .. }
            | Refusal::AlreadyJoined { .. }
            | Refusal::GameRunning
            | Refusal::ObjectHeld { .. } => Code::Conflict,
            Refusal::NotHolder { .. } => Code::Forbidden,
            Refusal::Name(_)
            | Refusal::TooManyRooms { .. }
            | Refusal::RoomFull { .. }
            | Refusal::Pose(_)
            | Refusal::GameCommand(_)
            | Refusal::NoGame { .. }
            | Refusal::UnknownGame { .. }
            | Refusal::Game(_)
            | Refusal::HoldingTooMany { .. }
            | Refusal::AddressHoldingTooMany { .. }
            | Refusal::Object(_)
            | Refusal::TooManyClaims { .. }
            | Refusal::TooManyObjects { .. } => Code::Unprocessable,
            Refusal::RateLimited { .. } => Code::TooManyRequests,
            Refusal::RoomLimit { .. }
            | Refusal::ShuttingDown
            | Refusal::ServerFull
            | Refusal::AddressFull { .. }
            | Refusal::LowMemory
            | Refusal::NoToken
            | Refusal::ClusterDown
            | Refusal::NotInCluster { .. }
            | Refusal::ClusterLost => Code::Unavailable,
        }
    }

    /// Adds what this refusal says beyond `{"room":R,"type":K}` to a room message's detail:
    /// for an object held by someone else, the object and its owner (`null`: nobody).
    pub fn extend_detail(&self, detail: &mut Map<String, Value>) {
        let (object, owner) = match self {
            Refusal::ObjectHeld { object, owner } => (object, Some(owner.as_str())),
            Refusal::NotHolder { object, owner } => (object, owner.as_deref()),
            _ => return,
        };
        detail.insert("object".into(), object.as_str().into());
        detail.insert("owner".into(), owner.map_or(Value::Null, Value::from));
    }

    /// The error reply, with `detail`.
    pub fn encode_with(&self, time: f64, detail: &Map<String, Value>) -> Frame {
        encode_reply(time, self.code(), &self.to_string(), detail)
    }

    /// The error reply, with an empty detail.
    pub fn encode(&self, time: f64) -> Frame {
        self.encode_with(time, &Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_are_the_documented_ones() {
        let cases = [
            (
                Refusal::NotLoggedIn,
                401,
                r#"Log in first: {"system":"login","options":{"user":NAME,"pass":PASSWORD}}."#,
            ),
            (
                Refusal::NoGame { room: "r".into() },
                422,
                r#"No game in room "r": start one with {"start": GAME} (games: tictactoe)."#,
            ),
            (
                Refusal::LoginTimeout {
                    after: Duration::from_secs(10),
                },
                408,
                "Not logged in within 10 s; closing.",
            ),
            (
                Refusal::IdleTimeout {
                    after: Duration::from_millis(2500),
                },
                408,
                "Silent for 2.5 s; closing.",
            ),
            (
                Refusal::RateLimited { rate: 50.0 },
                429,
                "Rate limit exceeded: at most 50 messages per second; message dropped.",
            ),
            (Refusal::ShuttingDown, 503, "Server shutting down."),
            (Refusal::ServerFull, 503, "Server full."),
        ];
        for (refusal, code, text) in cases {
            assert_eq!(refusal.code().as_u16(), code, "{refusal:?}");
            assert_eq!(refusal.to_string(), text);
        }
    }
}
