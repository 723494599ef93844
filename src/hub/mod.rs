//! The sans-IO core: every protocol rule, with no sockets and no clock reads.
//!
//! The event loop feeds [`Hub::handle`] with what happened on a connection and the time it
//! happened, and calls [`Hub::handle_timeout`] when [`Hub::poll_timeout`] says a deadline is due.
//! What the hub wants done comes out of [`Hub::poll_output`]: frames to queue, connections to
//! close. Call order: after any `handle*`, drain `poll_output` (at least once per loop pass;
//! room events are batched until then), then read `poll_timeout`. `now` never goes backwards.
//!
//! Because time is an argument, the fps tick, the timeouts and the rate limit are tested to
//! the millisecond without sleeping (see `tests.rs`, driven by [`testing::Harness`]).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Hub`]: dispatch of each [`Input`] to the connection, session and room rules |
//! | [`ids`] | [`ConnId`], [`SessionId`], [`RoomId`] and the tables they index |
//! | `conns.rs` | per connection: its session, rate bucket, login and idle timeouts, backlog |
//! | `session.rs` | logged-in users: names (unique ignoring ASCII case), rooms, connection |
//! | `room.rs` | one room: members, batch and flush, history, poses and the tick, its game |
//! | `history.rs` | a room's kept events and the frames a joiner gets |
//! | [`outbox`] | [`Output`] and the ordering rule: a direct reply first flushes its rooms |
//! | `refusal.rs` | every refusal: its code and text |
//! | [`testing`] | the scripted-clients harness for unit tests, fuzzing and benches |

mod conns;
mod history;
pub mod ids;
pub mod outbox;
mod refusal;
mod room;
mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use crate::clock::{Ticker, WallClock};
use crate::config::Config;
use crate::frame::Frame;
use crate::protocol::{
    decode_request, echo, encode_event, encode_reply, encode_user_frame, object, one_line, Code,
    GameCommand, Pose, Problem, Request, RoomKind, RoomName, UserName, LOBBY,
};
use conns::Conns;
use history::History;
use ids::Table;
pub use ids::{ConnId, RoomId, SessionId};
pub use outbox::Output;
use outbox::{Outbox, Pending};
pub use refusal::Refusal;
use room::Room;
use session::Sessions;

/// Something that happened on a connection.
#[derive(Debug)]
pub enum Input<'a> {
    /// A connection whose transport is now known. `since` is when it was accepted: the login
    /// timeout counts from there.
    Open {
        /// The connection.
        conn: ConnId,
        /// When it was accepted.
        since: Instant,
    },
    /// One whole message body, framing removed.
    Frame(ConnId, &'a [u8]),
    /// The transport broke (a framing error, already mapped to a code); the hub answers and
    /// closes.
    Malformed(ConnId, Problem),
    /// The connection is gone (EOF, reset, or closed after the hub asked to).
    Closed(ConnId),
    /// The connection's outbound queue passed its soft limit: skip pose ticks for it.
    Backlogged(ConnId),
    /// The queue drained: send it a fresh pose snapshot at the next tick.
    Drained(ConnId),
    /// Tell everyone the server is going away and close every connection.
    Shutdown,
}

/// Fixed texts the protocol promises.
const PONG: &str = "pong";
const ACCESS_GRANTED: &str = "Access granted.";

/// A room message, parsed: the 400 and 422 rules have passed.
enum Action<'a> {
    Join,
    Leave,
    List,
    Msg(&'a RawValue),
    Transform(Pose),
    Game(GameCommand),
}

impl<'a> Action<'a> {
    fn parse(kind: RoomKind, data: Option<&'a RawValue>) -> Result<Action<'a>, Refusal> {
        Ok(match (kind, data) {
            (RoomKind::Join, _) => Action::Join,
            (RoomKind::Leave, _) => Action::Leave,
            (RoomKind::List, _) => Action::List,
            (RoomKind::Msg, Some(data)) => Action::Msg(data),
            (RoomKind::Transform, Some(data)) => Action::Transform(Pose::parse(data)?),
            (RoomKind::Game, Some(data)) => Action::Game(GameCommand::parse(data)?),
            (RoomKind::Msg | RoomKind::Transform | RoomKind::Game, None) => {
                return Err(Refusal::MissingData {
                    kind: kind.as_str(),
                })
            }
        })
    }
}

/// Connections, sessions, rooms, history and poses, and the rules between them.
pub struct Hub {
    config: Config,
    clock: WallClock,
    conns: Conns,
    sessions: Sessions,
    rooms: Table<RoomId, Room>,
    room_ids: HashMap<String, RoomId>,
    lobby: RoomId,
    outbox: Outbox,
    /// Rooms with pose work for the next tick.
    tick_rooms: Vec<RoomId>,
    ticker: Ticker,
    /// Coarse timer for login and idle timeouts; a per-connection timer heap would cost more
    /// than a scan at this cadence.
    housekeeping: Ticker,
    shutting_down: bool,
}

impl Hub {
    /// A hub with an empty lobby. `clock` turns the loop's instants into server time; `now` is
    /// the origin of the tick schedule.
    pub fn new(config: Config, clock: WallClock, now: Instant) -> Hub {
        let mut rooms = Table::default();
        let history = History::new(config.history, config.max_outbuf / 2);
        let lobby = rooms.insert_with(|id| Room::new(id, RoomName::lobby(), history));
        let mut room_ids = HashMap::new();
        room_ids.insert(LOBBY.to_owned(), lobby);
        let shortest_timeout = config.login_timeout.min(config.idle_timeout);
        let housekeeping_period =
            (shortest_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        Hub {
            ticker: Ticker::new(now, config.tick_period()),
            housekeeping: Ticker::new(now, housekeeping_period),
            conns: Conns::new(
                config.rate_limit,
                config.burst,
                config.login_timeout,
                config.idle_timeout,
            ),
            config,
            clock,
            sessions: Sessions::default(),
            rooms,
            room_ids,
            lobby,
            outbox: Outbox::default(),
            tick_rooms: Vec::new(),
            shutting_down: false,
        }
    }

    /// Feeds one thing that happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Open { conn, since } => self.open(now, conn, since),
            Input::Frame(conn, body) => self.frame(now, conn, body),
            Input::Malformed(conn, problem) => self.malformed(now, conn, problem),
            Input::Closed(conn) => self.disconnect(now, conn),
            Input::Backlogged(conn) => {
                if let Some(state) = self.conns.get_mut(conn) {
                    state.backlogged = true;
                }
            }
            Input::Drained(conn) => self.drained(conn),
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
        if self.outbox.is_empty() {
            self.flush_all();
        }
        self.outbox.pop()
    }

    /// When [`Hub::handle_timeout`] must next run; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = (!self.tick_rooms.is_empty()).then(|| self.ticker.deadline());
        let housekeeping = (self.conns.len() > 0).then(|| self.housekeeping.deadline());
        tick.into_iter().chain(housekeeping).min()
    }

    /// Connections the hub holds (logged in or not).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users logged in.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    fn open(&mut self, now: Instant, conn: ConnId, since: Instant) {
        if self.shutting_down {
            // Accepted before the shutdown, heard from only after it.
            let frame = self.reply_frame(now, &Refusal::ShuttingDown, &Map::new());
            self.outbox.send(conn, frame);
            self.outbox.close(conn);
            return;
        }
        self.conns.open(conn, since, now);
    }

    fn frame(&mut self, now: Instant, conn: ConnId, body: &[u8]) {
        if self.conns.heard(conn, now).is_none() {
            return;
        }
        let request = decode_request(body);
        let exempt = matches!(
            request,
            Ok(Request::Room {
                kind: RoomKind::Transform,
                ..
            })
        );
        if !exempt && !self.conns.take_token(conn, now) {
            let detail = match &request {
                Ok(Request::Room { room, kind, .. }) => context(Some(room), Some(kind.as_str())),
                Err(bad) => context(bad.room.as_deref(), bad.kind.as_deref()),
                Ok(_) => Map::new(),
            };
            let rate = self.conns.rate();
            return self.refuse(now, conn, Refusal::RateLimited { rate }, &detail);
        }
        match request {
            Err(bad) => {
                let detail = context(bad.room.as_deref(), bad.kind.as_deref());
                self.refuse(now, conn, Refusal::BadRequest(bad), &detail);
            }
            Ok(Request::Ping) => self.reply(now, conn, Code::Ok, PONG, &Map::new()),
            Ok(Request::Rooms) => {
                let detail = self.room_directory();
                self.reply(
                    now,
                    conn,
                    Code::Ok,
                    "Rooms and their member counts.",
                    &detail,
                );
            }
            Ok(Request::Login { user, .. }) => self.login(now, conn, &user),
            Ok(Request::Room { room, kind, data }) => {
                if let Err(refusal) = self.room_request(now, conn, &room, kind, data) {
                    let detail = context(Some(&room), Some(kind.as_str()));
                    self.refuse(now, conn, refusal, &detail);
                }
            }
        }
    }

    fn malformed(&mut self, now: Instant, conn: ConnId, problem: Problem) {
        if self.conns.get(conn).is_none() {
            return;
        }
        self.reply(now, conn, problem.code, &problem.message, &problem.detail);
        self.close(now, conn);
    }

    fn login(&mut self, now: Instant, conn: ConnId, requested: &str) {
        match self.try_login(conn, requested) {
            Err(refusal) => {
                let detail = object(json!({ "user": echo(requested) }));
                self.refuse(now, conn, refusal, &detail);
            }
            Ok(session) => {
                let user = self.sessions.get(session).map(|s| s.user.clone());
                let Some(user) = user else { return };
                log::debug!("{conn:?} logged in as {}", user.as_str());
                let detail = object(json!({ "user": user.as_str() }));
                self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
                if let Err(refusal) = self.join(now, session, RoomName::lobby()) {
                    let detail = context(Some(LOBBY), Some(RoomKind::Join.as_str()));
                    self.refuse(now, conn, refusal, &detail);
                }
            }
        }
    }

    fn try_login(&mut self, conn: ConnId, requested: &str) -> Result<SessionId, Refusal> {
        let user = UserName::parse(requested)?;
        let state = self.conns.get(conn).ok_or(Refusal::Closing)?;
        if let Some(current) = state.session.and_then(|s| self.sessions.get(s)) {
            return Err(Refusal::AlreadyLoggedIn {
                user: current.user.as_str().to_owned(),
            });
        }
        let session = self.sessions.login(user, conn)?;
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session);
        }
        Ok(session)
    }

    /// Applies a room message. Checks run in the documented order: 401, then 422 (names, pose,
    /// game command), then 404 / 409.
    fn room_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: &str,
        kind: RoomKind,
        data: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let state = self.conns.get(conn).ok_or(Refusal::Closing)?;
        let session_id = state.session.ok_or(Refusal::NotLoggedIn)?;
        let name = RoomName::parse(room)?;
        // Parse what the message asks for before looking at membership: 422 precedes 404.
        let action = Action::parse(kind, data)?;
        if let Action::Join = action {
            return self.join(now, session_id, name);
        }
        let session = self.sessions.get(session_id).ok_or(Refusal::Closing)?;
        let user = session.user.clone();
        let room_id = self
            .room_ids
            .get(name.as_str())
            .copied()
            .filter(|&room_id| session.is_in(room_id))
            .ok_or_else(|| Refusal::NotInRoom {
                room: room.to_owned(),
            })?;
        match action {
            Action::Join => {} // joined above
            Action::Leave => self.leave(now, session_id, room_id),
            Action::List => {
                let names = self.rooms[room_id].names();
                let event = encode_event(self.time(now), user.as_str(), "list", names);
                let frame = encode_user_frame(name.as_str(), false, [&event]);
                self.send_direct(conn, frame);
            }
            Action::Msg(data) => {
                let data = one_line(data);
                let event = encode_event(self.time(now), user.as_str(), "msg", &*data);
                self.rooms[room_id].broadcast(event, true, &mut self.outbox);
            }
            Action::Transform(pose) => {
                if self.rooms[room_id].set_pose(session_id, pose) {
                    self.queue_tick(room_id);
                }
            }
            Action::Game(command) => {
                let state = self.rooms[room_id].play(&user, command)?;
                let event = encode_event(self.time(now), user.as_str(), "game", state);
                self.rooms[room_id].broadcast(event, false, &mut self.outbox);
            }
        }
        Ok(())
    }

    fn join(&mut self, now: Instant, session_id: SessionId, name: RoomName) -> Result<(), Refusal> {
        let existing = self.room_ids.get(name.as_str()).copied();
        let session = self.sessions.get(session_id).ok_or(Refusal::Closing)?;
        let (conn, user) = (session.conn, session.user.clone());
        let already_in = existing.is_some_and(|room_id| session.is_in(room_id));
        // The documented precedence puts 422 before 409, so the limits are checked first.
        if session.rooms.len() >= self.config.max_rooms_per_user {
            return Err(Refusal::TooManyRooms {
                count: session.rooms.len(),
            });
        }
        if let Some(room_id) = existing.filter(|_| !already_in) {
            if self.rooms[room_id].len() >= self.config.max_room_members {
                return Err(Refusal::RoomFull {
                    room: name.as_str().to_owned(),
                    max: self.config.max_room_members,
                });
            }
        }
        if already_in {
            return Err(Refusal::AlreadyJoined {
                room: name.as_str().to_owned(),
            });
        }
        let room_id = match existing {
            Some(room_id) => room_id,
            None => {
                if self.rooms.len() >= self.config.max_rooms {
                    return Err(Refusal::RoomLimit {
                        max: self.config.max_rooms,
                    });
                }
                let history = History::new(self.config.history, self.config.max_outbuf / 2);
                let room_id = self
                    .rooms
                    .insert_with(|id| Room::new(id, name.clone(), history));
                self.room_ids.insert(name.as_str().to_owned(), room_id);
                room_id
            }
        };
        // Events from before the join go to the old members only: the joiner sees them in
        // the history frame.
        let room = &mut self.rooms[room_id];
        room.flush(&mut self.outbox);
        for frame in room.history_frames() {
            self.send_direct(conn, frame);
        }
        self.rooms[room_id].add(session_id, conn, user.clone());
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.rooms.push(room_id);
        }
        let time = self.time(now);
        let room = &mut self.rooms[room_id];
        room.broadcast(
            encode_event(time, user.as_str(), "join", ""),
            true,
            &mut self.outbox,
        );
        let list = encode_event(time, user.as_str(), "list", room.names());
        let game_state = room
            .game_state()
            .map(|state| encode_event(time, user.as_str(), "game", state));
        let has_poses = room.has_poses();
        self.send_direct(conn, encode_user_frame(name.as_str(), false, [&list]));
        if let Some(state) = game_state {
            self.send_direct(conn, encode_user_frame(name.as_str(), false, [&state]));
        }
        if has_poses {
            self.queue_tick(room_id);
        }
        Ok(())
    }

    fn leave(&mut self, now: Instant, session: SessionId, room_id: RoomId) {
        let Some(user) = self.sessions.get(session).map(|s| s.user.clone()) else {
            return;
        };
        let event = encode_event(self.time(now), user.as_str(), "leave", "");
        let room = &mut self.rooms[room_id];
        room.broadcast(event, true, &mut self.outbox);
        // The leaver gets its own leave event, so flush before it stops being a member.
        room.flush(&mut self.outbox);
        self.remove_member(now, session, room_id, false);
    }

    /// Takes `session` out of the room, tells the others (when `announce`) and the game, and
    /// drops the room if it emptied.
    fn remove_member(&mut self, now: Instant, session: SessionId, room_id: RoomId, announce: bool) {
        if let Some(session) = self.sessions.get_mut(session) {
            session.rooms.retain(|&r| r != room_id);
        }
        let time = self.time(now);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.remove(session) else {
            return;
        };
        if room.is_empty() && room_id != self.lobby {
            if let Some(room) = self.rooms.remove(room_id) {
                self.room_ids.remove(room.name().as_str());
            }
            self.outbox.forget(room_id);
            self.tick_rooms.retain(|&r| r != room_id);
            return;
        }
        let user = member.user.as_str();
        if announce {
            room.broadcast(
                encode_event(time, user, "leave", ""),
                true,
                &mut self.outbox,
            );
        }
        if let Some(state) = room.leave_game(&member.user) {
            room.broadcast(
                encode_event(time, user, "game", state),
                false,
                &mut self.outbox,
            );
        }
    }

    /// The connection is gone: its session ends and its rooms see it leave.
    fn disconnect(&mut self, now: Instant, conn: ConnId) {
        let Some(state) = self.conns.close(conn) else {
            return;
        };
        let Some(session) = state
            .session
            .and_then(|s| self.sessions.end(s).map(|x| (s, x)))
        else {
            return;
        };
        let (session_id, session) = session;
        log::debug!("{conn:?} ({}) disconnected", session.user.as_str());
        for &room_id in &session.rooms {
            // A half-closed client still reads: its last msgs' echoes go out before it leaves.
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.flush(&mut self.outbox);
            }
        }
        for room_id in session.rooms {
            self.remove_member(now, session_id, room_id, true);
        }
    }

    fn drained(&mut self, conn: ConnId) {
        let Some(state) = self.conns.get_mut(conn) else {
            return;
        };
        state.backlogged = false;
        let Some(session_id) = state.session else {
            return;
        };
        let rooms = match self.sessions.get(session_id) {
            Some(session) => session.rooms.clone(),
            None => return,
        };
        for room_id in rooms {
            self.rooms[room_id].resend_poses_to(session_id);
            self.queue_tick(room_id);
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        self.flush_all();
        let frame = self.reply_frame(now, &Refusal::ShuttingDown, &Map::new());
        for conn in self.conns.drain() {
            self.outbox.send(conn, frame.clone());
            self.outbox.close(conn);
        }
        self.sessions.clear();
        self.tick_rooms.clear();
    }

    fn tick(&mut self, now: Instant) {
        let time = self.time(now);
        for room_id in std::mem::take(&mut self.tick_rooms) {
            let Some(room) = self.rooms.get_mut(room_id) else {
                continue;
            };
            let conns = &self.conns;
            room.tick(time, &mut self.outbox, |conn| conns.reachable(conn));
        }
    }

    fn expire(&mut self, now: Instant) {
        for (conn, refusal) in self.conns.expired(now) {
            log::info!("{conn:?}: {refusal}");
            self.refuse(now, conn, refusal, &Map::new());
            self.close(now, conn);
        }
    }

    /// Forgets a connection the hub decided to close: its rooms see it leave now, and the event
    /// loop flushes what is queued before closing the socket.
    fn close(&mut self, now: Instant, conn: ConnId) {
        self.disconnect(now, conn);
        self.outbox.close(conn);
    }

    fn refuse(
        &mut self,
        now: Instant,
        conn: ConnId,
        refusal: Refusal,
        detail: &Map<String, Value>,
    ) {
        let frame = self.reply_frame(now, &refusal, detail);
        self.send_direct(conn, frame);
    }

    fn reply_frame(&self, now: Instant, refusal: &Refusal, detail: &Map<String, Value>) -> Frame {
        refusal.encode_with(self.time(now), detail)
    }

    fn reply(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: Code,
        msg: &str,
        detail: &Map<String, Value>,
    ) {
        let frame = encode_reply(self.time(now), code, msg, detail);
        self.send_direct(conn, frame);
    }

    /// Queues a reply for one connection after the batched events of its rooms (the ordering
    /// rule of [`outbox`]).
    fn send_direct(&mut self, conn: ConnId, frame: Frame) {
        let session = self.conns.get(conn).and_then(|state| state.session);
        let rooms = session
            .and_then(|s| self.sessions.get(s))
            .map(|s| s.rooms.as_slice())
            .unwrap_or_default();
        self.outbox.direct(conn, frame, &mut self.rooms, rooms);
    }

    fn flush_all(&mut self) {
        for room_id in self.outbox.take_batched() {
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.flush(&mut self.outbox);
            }
        }
    }

    fn queue_tick(&mut self, room_id: RoomId) {
        if self.rooms[room_id].queue_tick() {
            self.tick_rooms.push(room_id);
        }
    }

    fn room_directory(&self) -> Map<String, Value> {
        let mut rooms: Vec<(&str, usize)> = self
            .rooms
            .iter()
            .map(|(_, room)| (room.name().as_str(), room.len()))
            .collect();
        rooms.sort_unstable();
        let rooms: Vec<Value> = rooms
            .into_iter()
            .map(|(room, users)| json!({ "room": room, "users": users }))
            .collect();
        object(json!({ "rooms": rooms }))
    }

    fn time(&self, now: Instant) -> f64 {
        self.clock.unix(now)
    }
}

/// `{"room":R,"type":K}` with whichever of the two could be read.
fn context(room: Option<&str>, kind: Option<&str>) -> Map<String, Value> {
    let mut detail = Map::new();
    if let Some(room) = room {
        detail.insert("room".into(), echo(room).into());
    }
    if let Some(kind) = kind {
        detail.insert("type".into(), echo(kind).into());
    }
    detail
}

#[cfg(test)]
mod tests;
