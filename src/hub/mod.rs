//! The sans-IO core: every protocol rule, with no sockets and no clock reads.
//!
//! The event loop feeds [`Hub::handle`] with what happened on a connection and the time it
//! happened, and calls [`Hub::handle_timeout`] when [`Hub::poll_timeout`] says a deadline is due.
//! What the hub wants done comes out of [`Hub::poll_output`]: frames to queue, connections to
//! close. Call order: after any `handle*`, drain `poll_output` (at least once per loop pass;
//! room events are batched until then), then read `poll_timeout`. `now` never goes backwards.
//!
//! Because time is an argument, the fps tick, the timeouts and the rate limit are tested to
//! the millisecond without sleeping (see the tests at the bottom).

mod room;
mod session;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use slab::Slab;

use crate::clock::{Ticker, WallClock};
use crate::codec::{DecodeError, Frame};
use crate::config::Config;
use crate::game;
use crate::protocol::{
    decode_request, encode_event, encode_reply, encode_user_frame, one_line, Code, GameCommand,
    Pose, Request, RoomKind, RoomName, UserName, LOBBY,
};
use room::{Room, RoomId};
use session::Session;

/// A connection, as the hub knows it: the event loop's slab key. Never a raw mio `Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub usize);

/// Something that happened on a connection.
#[derive(Debug)]
pub enum Input<'a> {
    /// A connection was accepted.
    Open(ClientId),
    /// One whole message body, framing removed.
    Frame(ClientId, &'a [u8]),
    /// The framing broke (zero length or oversize); the hub answers and closes.
    Malformed(ClientId, DecodeError),
    /// The connection is gone (EOF, reset, or closed after the hub asked to).
    Closed(ClientId),
    /// The connection's outbound queue passed its soft limit: skip pose ticks for it.
    Backlogged(ClientId),
    /// The queue drained: send it a fresh pose snapshot at the next tick.
    Drained(ClientId),
    /// Tell everyone the server is going away and close every connection.
    Shutdown,
}

/// Something the event loop must do.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Queue this frame to this connection.
    Send {
        /// Recipient.
        to: ClientId,
        /// Encoded once; clones share the buffer.
        frame: Frame,
    },
    /// Flush what is queued to this connection, then close it. The hub has already forgotten
    /// it; a later [`Input::Closed`] for it is ignored.
    Close {
        /// The connection.
        id: ClientId,
    },
}

/// Events a room may collect before they are flushed, so a batch frame stays small.
const MAX_BATCH: usize = 256;
/// Bytes of events a room may collect before they are flushed: batching pays off in syscalls
/// long before this, and small frames keep latency and per-client bursts low.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// Largest history frame; a longer history goes out as several consecutive history frames,
/// so no server frame exceeds what clients are told to accept (16 MiB).
const MAX_HISTORY_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// Fixed texts the protocol promises.
const PONG: &str = "pong";
const ACCESS_GRANTED: &str = "Access granted.";
/// Sent to every connection when the server stops.
pub const SHUTTING_DOWN: &str = "Server shutting down.";
/// Sent to a connection over `max_clients`.
pub const SERVER_FULL: &str = "Server full.";

/// The refusal of one request: a code and a message for the client.
type Refusal = (Code, String);

/// For a message whose connection the hub has already let go (it is being closed); the event
/// loop stops feeding those, so no client should ever see this.
fn closing() -> Refusal {
    (Code::BadRequest, "This connection is closing.".to_owned())
}

/// A room message, parsed: the 400 and 422 rules have passed.
enum Action<'a> {
    Join,
    Leave,
    List,
    Msg(&'a RawValue),
    Transform(Pose),
    Game(GameCommand),
}

/// Users, rooms, history and poses, and the rules between them.
pub struct Hub {
    config: Config,
    clock: WallClock,
    /// Indexed by `ClientId`; the event loop's slab keys are dense, so this stays compact.
    sessions: Vec<Option<Session>>,
    session_count: usize,
    /// Logged-in users by ASCII-lowercased name: "Tibi" blocks "tibi".
    users: HashMap<String, ClientId>,
    rooms: Slab<Room>,
    room_ids: HashMap<String, RoomId>,
    lobby: RoomId,
    outputs: VecDeque<Output>,
    /// Rooms with unflushed events, in order of their first event.
    batched_rooms: Vec<RoomId>,
    /// Rooms with pose work for the next tick.
    tick_rooms: Vec<RoomId>,
    ticker: Ticker,
    /// Coarse timer for login and idle timeouts; a per-session timer heap would cost more than
    /// a scan at this cadence.
    housekeeping: Ticker,
    shutting_down: bool,
}

impl Hub {
    /// A hub with an empty lobby. `clock` turns the loop's instants into server time; `now` is
    /// the origin of the tick schedule.
    pub fn new(config: Config, clock: WallClock, now: Instant) -> Hub {
        let mut rooms = Slab::new();
        let lobby = RoomId(rooms.insert(Room::new(RoomName::lobby())));
        let mut room_ids = HashMap::new();
        room_ids.insert(LOBBY.to_owned(), lobby);
        let shortest_timeout = config.login_timeout.min(config.idle_timeout);
        let housekeeping_period =
            (shortest_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        Hub {
            ticker: Ticker::new(now, config.tick_period()),
            housekeeping: Ticker::new(now, housekeeping_period),
            config,
            clock,
            sessions: Vec::new(),
            session_count: 0,
            users: HashMap::new(),
            rooms,
            room_ids,
            lobby,
            outputs: VecDeque::new(),
            batched_rooms: Vec::new(),
            tick_rooms: Vec::new(),
            shutting_down: false,
        }
    }

    /// Feeds one thing that happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Open(id) => self.open(now, id),
            Input::Frame(id, body) => self.frame(now, id, body),
            Input::Malformed(id, error) => self.malformed(now, id, error),
            Input::Closed(id) => {
                if self.session(id).is_some() {
                    self.disconnect(now, id);
                }
            }
            Input::Backlogged(id) => {
                if let Some(session) = self.session_mut(id) {
                    session.backlogged = true;
                }
            }
            Input::Drained(id) => self.drained(id),
            Input::Shutdown => self.shutdown(now),
        }
    }

    /// Runs whatever is due at `now`: the pose tick, login and idle timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ticker.fire(now) && !self.tick_rooms.is_empty() {
            self.tick(now);
        }
        if self.housekeeping.fire(now) {
            self.expire(now);
        }
    }

    /// The next thing to do, if any. Pending room batches are flushed once the direct
    /// replies before them are out, so the order each client sees is the order of causes.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.flush_all();
        }
        self.outputs.pop_front()
    }

    /// When [`Hub::handle_timeout`] must next run; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = (!self.tick_rooms.is_empty()).then(|| self.ticker.deadline());
        let housekeeping = (self.session_count > 0).then(|| self.housekeeping.deadline());
        tick.into_iter().chain(housekeeping).min()
    }

    /// Connections the hub holds (logged in or not).
    pub fn session_count(&self) -> usize {
        self.session_count
    }

    fn session(&self, id: ClientId) -> Option<&Session> {
        self.sessions.get(id.0).and_then(Option::as_ref)
    }

    fn session_mut(&mut self, id: ClientId) -> Option<&mut Session> {
        self.sessions.get_mut(id.0).and_then(Option::as_mut)
    }

    fn open(&mut self, now: Instant, id: ClientId) {
        let refusal = if self.shutting_down {
            Some(SHUTTING_DOWN)
        } else if self.session_count >= self.config.max_clients {
            Some(SERVER_FULL)
        } else {
            None
        };
        if let Some(message) = refusal {
            let frame = encode_reply(self.time(now), Code::Unavailable, message, &Map::new());
            self.outputs.push_back(Output::Send { to: id, frame });
            self.outputs.push_back(Output::Close { id });
            return;
        }
        if self.sessions.len() <= id.0 {
            self.sessions.resize_with(id.0 + 1, || None);
        }
        if self.sessions[id.0].is_none() {
            self.session_count += 1;
        }
        self.sessions[id.0] = Some(Session::new(now, self.config.burst));
    }

    fn frame(&mut self, now: Instant, id: ClientId, body: &[u8]) {
        let (rate, burst) = (self.config.rate_limit, self.config.burst);
        let Some(session) = self.session_mut(id) else {
            return;
        };
        session.last_seen = now;
        let request = decode_request(body);
        let exempt = matches!(
            request,
            Ok(Request::Room {
                kind: RoomKind::Transform,
                ..
            })
        );
        if !exempt && !session.bucket.take(now, rate, burst) {
            let detail = match &request {
                Ok(Request::Room { room, kind, .. }) => context(Some(room), Some(kind.as_str())),
                Err(bad) => context(bad.room.as_deref(), bad.kind.as_deref()),
                Ok(_) => Map::new(),
            };
            let message = format!(
                "Rate limit exceeded: at most {rate} messages per second; message dropped."
            );
            return self.reply(now, id, Code::TooManyRequests, &message, &detail);
        }
        match request {
            Err(bad) => {
                let detail = context(bad.room.as_deref(), bad.kind.as_deref());
                self.reply(now, id, Code::BadRequest, &bad.message, &detail);
            }
            Ok(Request::Ping) => self.reply(now, id, Code::Ok, PONG, &Map::new()),
            Ok(Request::Rooms) => {
                let detail = self.room_directory();
                self.reply(now, id, Code::Ok, "Rooms and their member counts.", &detail);
            }
            Ok(Request::Login { user }) => self.login(now, id, &user),
            Ok(Request::Room { room, kind, data }) => {
                if let Err((code, message)) = self.room_request(now, id, &room, kind, data) {
                    let detail = context(Some(&room), Some(kind.as_str()));
                    self.reply(now, id, code, &message, &detail);
                }
            }
        }
    }

    fn malformed(&mut self, now: Instant, id: ClientId, error: DecodeError) {
        if self.session(id).is_none() {
            return;
        }
        let (code, message, detail) = match error {
            DecodeError::ZeroLength => (
                Code::BadRequest,
                "Zero-length frame: every frame needs a body of 1 or more bytes; closing."
                    .to_owned(),
                Map::new(),
            ),
            DecodeError::TooLarge { len, max } => (
                Code::TooLarge,
                format!("Frame of {len} bytes is over the limit of {max} bytes; closing."),
                json_map(json!({ "max_frame": max })),
            ),
        };
        self.reply(now, id, code, &message, &detail);
        self.close(now, id);
    }

    fn login(&mut self, now: Instant, id: ClientId, requested: &str) {
        let result = self.try_login(id, requested);
        match result {
            Err((code, message)) => {
                let detail = json_map(json!({ "user": requested }));
                self.reply(now, id, code, &message, &detail);
            }
            Ok(user) => {
                log::debug!("{id:?} logged in as {}", user.as_str());
                let detail = json_map(json!({ "user": user.as_str() }));
                self.reply(now, id, Code::Accepted, ACCESS_GRANTED, &detail);
                if let Err((code, message)) = self.join(now, id, user, RoomName::lobby()) {
                    let detail = context(Some(LOBBY), Some(RoomKind::Join.as_str()));
                    self.reply(now, id, code, &message, &detail);
                }
            }
        }
    }

    fn try_login(&mut self, id: ClientId, requested: &str) -> Result<UserName, Refusal> {
        let user = UserName::parse(requested).map_err(|msg| (Code::Unprocessable, msg))?;
        let session = self
            .sessions
            .get_mut(id.0)
            .and_then(Option::as_mut)
            .ok_or_else(closing)?;
        if let Some(current) = &session.user {
            let message = format!("Already logged in as {}.", current.as_str());
            return Err((Code::Conflict, message));
        }
        if self.users.contains_key(&user.folded()) {
            let message = format!("User name {} is already logged in.", user.as_str());
            return Err((Code::Conflict, message));
        }
        session.user = Some(user.clone());
        self.users.insert(user.folded(), id);
        Ok(user)
    }

    /// Applies a room message; `Err` is the refusal to send back. Checks run in the documented
    /// order: 401, then 422 (names, pose, game command), then 404 / 409.
    fn room_request(
        &mut self,
        now: Instant,
        id: ClientId,
        room: &str,
        kind: RoomKind,
        data: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let session = self.session(id).ok_or_else(closing)?;
        let Some(user) = session.user.clone() else {
            let message = "Log in first: {\"system\":\"login\",\"options\":{\"user\":NAME,\"pass\":PASSWORD}}.";
            return Err((Code::Unauthorized, message.to_owned()));
        };
        let name = RoomName::parse(room).map_err(|msg| (Code::Unprocessable, msg))?;
        let unprocessable = |msg| (Code::Unprocessable, msg);
        // Parse what the message asks for before looking at membership: 422 precedes 404.
        let action = match (kind, data) {
            (RoomKind::Join, _) => Action::Join,
            (RoomKind::Leave, _) => Action::Leave,
            (RoomKind::List, _) => Action::List,
            (RoomKind::Msg, Some(data)) => Action::Msg(data),
            (RoomKind::Transform, Some(data)) => {
                Action::Transform(Pose::parse(data).map_err(unprocessable)?)
            }
            (RoomKind::Game, Some(data)) => {
                Action::Game(GameCommand::parse(data).map_err(unprocessable)?)
            }
            (RoomKind::Msg | RoomKind::Transform | RoomKind::Game, None) => {
                let message = format!("A {} message needs a \"data\" field.", kind.as_str());
                return Err((Code::BadRequest, message));
            }
        };
        if let Action::Join = action {
            return self.join(now, id, user, name);
        }
        let room_id = self
            .room_ids
            .get(name.as_str())
            .copied()
            .filter(|&room_id| session.is_in(room_id))
            .ok_or_else(|| (Code::NotFound, format!("You are not in room {room:?}.")))?;
        match action {
            Action::Join => {} // joined above
            Action::Leave => self.leave(now, id, &user, room_id),
            Action::List => {
                let names = self.rooms[room_id.0].names();
                let event = encode_event(self.time(now), user.as_str(), "list", names);
                let frame = encode_user_frame(name.as_str(), false, [&event]);
                self.send(id, frame);
            }
            Action::Msg(data) => {
                let data = one_line(data);
                let event = encode_event(self.time(now), user.as_str(), "msg", &*data);
                self.broadcast(room_id, event, true);
            }
            Action::Transform(pose) => self.set_pose(id, room_id, pose),
            Action::Game(command) => self.game(now, &user, room_id, command)?,
        }
        Ok(())
    }

    fn join(
        &mut self,
        now: Instant,
        id: ClientId,
        user: UserName,
        name: RoomName,
    ) -> Result<(), Refusal> {
        let existing = self.room_ids.get(name.as_str()).copied();
        let session = self.session(id).ok_or_else(closing)?;
        let already_in = existing.is_some_and(|room_id| session.is_in(room_id));
        // The documented precedence puts 422 before 409, so the limits are checked first.
        if session.rooms.len() >= self.config.max_rooms_per_user {
            let message = format!(
                "You are in {} rooms, the most one user may join; leave one first.",
                session.rooms.len()
            );
            return Err((Code::Unprocessable, message));
        }
        if let Some(room_id) = existing.filter(|_| !already_in) {
            if self.rooms[room_id.0].len() >= self.config.max_room_members {
                let message = format!(
                    "Room {:?} is full: it holds at most {} members.",
                    name.as_str(),
                    self.config.max_room_members
                );
                return Err((Code::Unprocessable, message));
            }
        }
        if already_in {
            let message = format!("You are already in room {:?}.", name.as_str());
            return Err((Code::Conflict, message));
        }
        let room_id = match existing {
            Some(room_id) => room_id,
            None => {
                if self.rooms.len() >= self.config.max_rooms {
                    let message = format!(
                        "The server holds its limit of {} rooms; join an existing one.",
                        self.config.max_rooms
                    );
                    return Err((Code::Unavailable, message));
                }
                let room_id = RoomId(self.rooms.insert(Room::new(name.clone())));
                self.room_ids.insert(name.as_str().to_owned(), room_id);
                room_id
            }
        };
        // Events from before the join go to the old members only: the joiner sees them in
        // the history frame.
        self.flush_room(room_id);
        let room = &self.rooms[room_id.0];
        let mut history_frames = Vec::new();
        let mut chunk: Vec<&Bytes> = Vec::new();
        let mut chunk_bytes = 0;
        for event in room.history() {
            if !chunk.is_empty() && chunk_bytes + event.len() > MAX_HISTORY_FRAME_BYTES {
                history_frames.push(encode_user_frame(name.as_str(), true, chunk.drain(..)));
                chunk_bytes = 0;
            }
            chunk_bytes += event.len();
            chunk.push(event);
        }
        if !chunk.is_empty() {
            history_frames.push(encode_user_frame(name.as_str(), true, chunk));
        }
        for frame in history_frames {
            self.send(id, frame);
        }
        self.rooms[room_id.0].add(id, user.clone());
        if let Some(session) = self.session_mut(id) {
            session.rooms.push(room_id);
        }
        let time = self.time(now);
        self.broadcast(room_id, encode_event(time, user.as_str(), "join", ""), true);
        let room = &self.rooms[room_id.0];
        let list = encode_event(time, user.as_str(), "list", room.names());
        let game_state = room
            .game
            .as_ref()
            .map(|game| encode_event(time, user.as_str(), "game", game.state()));
        self.send(id, encode_user_frame(name.as_str(), false, [&list]));
        if let Some(state) = game_state {
            self.send(id, encode_user_frame(name.as_str(), false, [&state]));
        }
        if self.rooms[room_id.0]
            .members()
            .iter()
            .any(|m| m.pose.is_some())
        {
            self.queue_tick(room_id);
        }
        Ok(())
    }

    fn leave(&mut self, now: Instant, id: ClientId, user: &UserName, room_id: RoomId) {
        let event = encode_event(self.time(now), user.as_str(), "leave", "");
        self.broadcast(room_id, event, true);
        // The leaver gets its own leave event, so flush before it stops being a member.
        self.flush_room(room_id);
        self.remove_member(now, id, room_id, false);
    }

    /// Takes `id` out of the room, tells the others (when `announce`) and the game, and drops
    /// the room if it emptied.
    fn remove_member(&mut self, now: Instant, id: ClientId, room_id: RoomId, announce: bool) {
        if let Some(session) = self.session_mut(id) {
            session.rooms.retain(|&r| r != room_id);
        }
        let time = self.time(now);
        let room = &mut self.rooms[room_id.0];
        let Some(member) = room.remove(id) else {
            return;
        };
        if room.is_empty() && room_id != self.lobby {
            let room = self.rooms.remove(room_id.0);
            self.room_ids.remove(room.name.as_str());
            self.batched_rooms.retain(|&r| r != room_id);
            self.tick_rooms.retain(|&r| r != room_id);
            return;
        }
        let user = member.user.as_str();
        if announce {
            self.broadcast(room_id, encode_event(time, user, "leave", ""), true);
        }
        let room = &mut self.rooms[room_id.0];
        let game_changed = room.game.as_mut().is_some_and(|game| game.leave(user));
        if let Some(state) = room
            .game
            .as_ref()
            .filter(|_| game_changed)
            .map(|g| g.state())
        {
            self.broadcast(room_id, encode_event(time, user, "game", state), false);
        }
    }

    fn disconnect(&mut self, now: Instant, id: ClientId) {
        let Some(session) = self.sessions.get_mut(id.0).and_then(Option::take) else {
            return;
        };
        self.session_count -= 1;
        let Some(user) = session.user else {
            return;
        };
        log::debug!("{id:?} ({}) disconnected", user.as_str());
        self.users.remove(&user.folded());
        for &room_id in &session.rooms {
            // A half-closed client still reads: its last msgs' echoes go out before it leaves.
            self.flush_room(room_id);
        }
        for room_id in session.rooms {
            self.remove_member(now, id, room_id, true);
        }
    }

    fn set_pose(&mut self, id: ClientId, room_id: RoomId, pose: Pose) {
        let Some(member) = self.rooms[room_id.0].member_mut(id) else {
            return;
        };
        if member.pose == Some(pose) {
            return;
        }
        member.pose = Some(pose);
        member.pose_changed = true;
        self.queue_tick(room_id);
    }

    fn game(
        &mut self,
        now: Instant,
        user: &UserName,
        room_id: RoomId,
        command: GameCommand,
    ) -> Result<(), Refusal> {
        let refuse = |error: game::GameError| (Code::Unprocessable, error.0);
        let room = &mut self.rooms[room_id.0];
        let no_game = || {
            let message = format!(
                "No game in room {:?}: start one with {{\"start\": GAME}} (games: {}).",
                room.name.as_str(),
                game::names().join(", ")
            );
            (Code::Unprocessable, message)
        };
        match command {
            GameCommand::Start(name) => {
                let running = room
                    .game
                    .as_ref()
                    .is_some_and(|game| game.state()["status"] == "playing");
                if running {
                    let message = "A game is running in this room; finish it first.".to_owned();
                    return Err((Code::Conflict, message));
                }
                let mut new_game = game::new_game(&name).ok_or_else(|| {
                    let message = format!(
                        "Unknown game {name:?}: available games are {}.",
                        game::names().join(", ")
                    );
                    (Code::Unprocessable, message)
                })?;
                new_game.join(user.as_str()).map_err(refuse)?;
                room.game = Some(new_game);
            }
            GameCommand::Join => {
                let game = room.game.as_mut().ok_or_else(no_game)?;
                game.join(user.as_str()).map_err(refuse)?;
            }
            GameCommand::Move(mv) => {
                let game = room.game.as_mut().ok_or_else(no_game)?;
                game.apply_move(user.as_str(), &mv).map_err(refuse)?;
            }
            GameCommand::Restart => {
                let game = room.game.as_mut().ok_or_else(no_game)?;
                game.restart().map_err(refuse)?;
            }
        }
        let state = room.game.as_ref().map(|game| game.state());
        let event = encode_event(self.time(now), user.as_str(), "game", state);
        self.broadcast(room_id, event, false);
        Ok(())
    }

    fn drained(&mut self, id: ClientId) {
        let Some(session) = self.session_mut(id) else {
            return;
        };
        session.backlogged = false;
        let rooms = session.rooms.clone();
        for room_id in rooms {
            if let Some(member) = self.rooms[room_id.0].member_mut(id) {
                member.needs_snapshot = true;
            }
            self.queue_tick(room_id);
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.flush_all();
        let frame = encode_reply(
            self.time(now),
            Code::Unavailable,
            SHUTTING_DOWN,
            &Map::new(),
        );
        for (index, slot) in self.sessions.iter_mut().enumerate() {
            if slot.take().is_some() {
                let id = ClientId(index);
                self.outputs.push_back(Output::Send {
                    to: id,
                    frame: frame.clone(),
                });
                self.outputs.push_back(Output::Close { id });
            }
        }
        self.session_count = 0;
        self.users.clear();
    }

    /// Sends each room with pose work one frame of the poses that changed, encoded once; a
    /// member that just joined (or drained a backlog) gets every pose instead.
    fn tick(&mut self, now: Instant) {
        let time = self.time(now);
        for room_id in std::mem::take(&mut self.tick_rooms) {
            // Chat produced before the tick reaches members before the poses.
            self.flush_room(room_id);
            let Some(room) = self.rooms.get_mut(room_id.0) else {
                continue;
            };
            room.tick_queued = false;
            // The full snapshot is only built when some member will get it; in steady
            // streaming only the changed poses are encoded.
            let sessions = &self.sessions;
            let reachable = |id: ClientId| {
                sessions
                    .get(id.0)
                    .and_then(Option::as_ref)
                    .is_some_and(|session| !session.backlogged)
            };
            let wants_snapshot = room
                .members()
                .iter()
                .any(|m| m.needs_snapshot && reachable(m.id));
            let mut changed = Vec::new();
            let mut everyone = Vec::new();
            for member in room.members() {
                let Some(pose) = &member.pose else {
                    continue;
                };
                if !(member.pose_changed || wants_snapshot) {
                    continue;
                }
                let event = encode_event(time, member.user.as_str(), "transform", pose);
                if member.pose_changed {
                    changed.push(event.clone());
                }
                if wants_snapshot {
                    everyone.push(event);
                }
            }
            let name = room.name.as_str();
            let changes = (!changed.is_empty()).then(|| encode_user_frame(name, false, &changed));
            let snapshot =
                (!everyone.is_empty()).then(|| encode_user_frame(name, false, &everyone));
            for member in room.members_mut() {
                member.pose_changed = false;
                if !reachable(member.id) {
                    continue;
                }
                let frame = if member.needs_snapshot {
                    if snapshot.is_some() {
                        member.needs_snapshot = false;
                    }
                    snapshot.clone()
                } else {
                    changes.clone()
                };
                if let Some(frame) = frame {
                    self.outputs.push_back(Output::Send {
                        to: member.id,
                        frame,
                    });
                }
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        let (login, idle) = (self.config.login_timeout, self.config.idle_timeout);
        let expired: Vec<(ClientId, String)> = self
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let session = slot.as_ref()?;
                let message = match &session.user {
                    None if now.saturating_duration_since(session.opened) >= login => {
                        format!("Not logged in within {} s; closing.", login.as_secs_f64())
                    }
                    Some(_) if now.saturating_duration_since(session.last_seen) >= idle => {
                        format!("Silent for {} s; closing.", idle.as_secs_f64())
                    }
                    _ => return None,
                };
                Some((ClientId(index), message))
            })
            .collect();
        for (id, message) in expired {
            log::info!("{id:?}: {message}");
            self.reply(now, id, Code::RequestTimeout, &message, &Map::new());
            self.close(now, id);
        }
    }

    /// Forgets a connection the hub decided to close: its rooms see it leave now, and the event
    /// loop flushes what is queued before closing the socket.
    fn close(&mut self, now: Instant, id: ClientId) {
        self.disconnect(now, id);
        self.outputs.push_back(Output::Close { id });
    }

    fn reply(
        &mut self,
        now: Instant,
        id: ClientId,
        code: Code,
        msg: &str,
        detail: &Map<String, Value>,
    ) {
        let frame = encode_reply(self.time(now), code, msg, detail);
        self.send(id, frame);
    }

    /// Queues a frame for one connection, after any batched events of its rooms, so that it
    /// sees effects in the order of their causes.
    fn send(&mut self, id: ClientId, frame: Frame) {
        if let Some(session) = self.sessions.get(id.0).and_then(Option::as_ref) {
            for &room_id in &session.rooms {
                if !self.rooms[room_id.0].batch.is_empty() {
                    flush(&mut self.rooms[room_id.0], &mut self.outputs);
                }
            }
        }
        self.outputs.push_back(Output::Send { to: id, frame });
    }

    /// Adds an event for every member of the room to the room's batch.
    fn broadcast(&mut self, room_id: RoomId, event: Bytes, remember: bool) {
        let room = &mut self.rooms[room_id.0];
        if remember {
            room.remember(&event, self.config.history, self.config.max_outbuf / 2);
        }
        if room.batch.is_empty() {
            self.batched_rooms.push(room_id);
        }
        room.batch_bytes += event.len();
        room.batch.push(event);
        if room.batch.len() >= MAX_BATCH || room.batch_bytes >= MAX_BATCH_BYTES {
            flush(room, &mut self.outputs);
        }
    }

    fn flush_room(&mut self, room_id: RoomId) {
        if let Some(room) = self.rooms.get_mut(room_id.0) {
            flush(room, &mut self.outputs);
        }
    }

    fn flush_all(&mut self) {
        for room_id in std::mem::take(&mut self.batched_rooms) {
            self.flush_room(room_id);
        }
    }

    fn queue_tick(&mut self, room_id: RoomId) {
        let room = &mut self.rooms[room_id.0];
        if !room.tick_queued {
            room.tick_queued = true;
            self.tick_rooms.push(room_id);
        }
    }

    fn room_directory(&self) -> Map<String, Value> {
        let mut rooms: Vec<(&str, usize)> = self
            .rooms
            .iter()
            .map(|(_, room)| (room.name.as_str(), room.len()))
            .collect();
        rooms.sort_unstable();
        let rooms: Vec<Value> = rooms
            .into_iter()
            .map(|(room, users)| json!({ "room": room, "users": users }))
            .collect();
        json_map(json!({ "rooms": rooms }))
    }

    fn time(&self, now: Instant) -> f64 {
        self.clock.unix(now)
    }
}

/// Encodes a room's pending events once and queues the frame to every member.
fn flush(room: &mut Room, outputs: &mut VecDeque<Output>) {
    if room.batch.is_empty() {
        return;
    }
    let frame = encode_user_frame(room.name.as_str(), false, &room.batch);
    room.batch.clear();
    room.batch_bytes = 0;
    for member in room.members() {
        outputs.push_back(Output::Send {
            to: member.id,
            frame: frame.clone(),
        });
    }
}

/// `{"room":R,"type":K}` with whichever of the two could be read.
fn context(room: Option<&str>, kind: Option<&str>) -> Map<String, Value> {
    let mut detail = Map::new();
    if let Some(room) = room {
        detail.insert("room".into(), room.into());
    }
    if let Some(kind) = kind {
        detail.insert("type".into(), kind.into());
    }
    detail
}

fn json_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests;
