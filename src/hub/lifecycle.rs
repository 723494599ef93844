//! The life of a connection's session, as the hub's rules: login, resume, logout, a lost
//! connection (detach, or end when resuming is off), the grace running out, timeouts and
//! shutdown.
//!
//! A session is detached rather than ended when its connection is lost without a logout
//! (EOF, reset, idle timeout, a framing error, cut off as a slow reader): its name, rooms and
//! game seat stay, its rooms are told it is `away`, and it receives nothing until a `resume`
//! with its token binds it to a new connection. The resumed client gets, per room, exactly the
//! history events it missed (it says the last seq it received), then the current poses; its
//! rooms are told it is `back`. When the grace runs out, everything happens as for a
//! disconnect: leave events, a forfeit.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::ids::{ConnId, SessionId};
use super::outbox::Pending;
use super::{context, Hub, Refusal};
use crate::protocol::{echo, object, Code, RoomKind, RoomName, UserName, LOBBY};

const ACCESS_GRANTED: &str = "Access granted.";
const LOGGED_OUT: &str = "Logged out.";

impl Hub {
    pub(super) fn login(&mut self, now: Instant, conn: ConnId, requested: &str) {
        let session = match self.try_login(conn, requested) {
            Ok(session) => session,
            Err(refusal) => {
                let detail = object(json!({ "user": echo(requested) }));
                return self.refuse(now, conn, refusal, &detail);
            }
        };
        let Some(session_ref) = self.sessions.get(session) else {
            return;
        };
        let user = session_ref.user.clone();
        if self.logins.note(now) {
            log::info!("{} logged in from {}", user.as_str(), session_ref.ip);
        }
        let detail = self.session_detail(session, false);
        self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
        if let Err(refusal) = self.join(now, session, RoomName::lobby()) {
            let detail = context(Some(LOBBY), Some(RoomKind::Join.as_str()));
            self.refuse(now, conn, refusal, &detail);
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
        if self.low_memory {
            return Err(Refusal::LowMemory);
        }
        let ip = state.ip;
        let token = self.new_token()?;
        let session = self.sessions.login(user, conn, ip, token)?;
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session);
        }
        Ok(session)
    }

    /// The 202's detail: who, the token for the next resume, the idle timeout clients must
    /// ping within.
    fn session_detail(&self, session: SessionId, resumed: bool) -> Map<String, Value> {
        let Some(session) = self.sessions.get(session) else {
            return Map::new();
        };
        let mut detail = object(json!({
            "user": session.user.as_str(),
            "resume": session.token(),
            "idle_timeout": self.config.idle_timeout.as_secs_f64(),
        }));
        if resumed {
            detail.insert("resumed".into(), true.into());
        }
        detail
    }

    /// A fresh resume token: 128 bits from the token source, in hex.
    pub(super) fn new_token(&mut self) -> Result<String, Refusal> {
        let bytes = (self.tokens)().ok_or(Refusal::NoToken)?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// `{"system":"resume"}`: binds the session the token names to this connection and sends,
    /// per room, what the client missed since the seq it names.
    pub(super) fn resume(
        &mut self,
        now: Instant,
        conn: ConnId,
        token: &str,
        seen: &[(String, u64)],
    ) {
        let Some(state) = self.conns.get(conn) else {
            return;
        };
        if let Some(current) = state.session.and_then(|s| self.sessions.get(s)) {
            let refusal = Refusal::AlreadyLoggedIn {
                user: current.user.as_str().to_owned(),
            };
            return self.refuse(now, conn, refusal, &Map::new());
        }
        let Some(session_id) = self.sessions.by_token(token) else {
            return self.refuse(now, conn, Refusal::SessionExpired, &Map::new());
        };
        let token = match self.new_token() {
            Ok(token) => token,
            Err(refusal) => return self.refuse(now, conn, refusal, &Map::new()),
        };
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let rooms = session.rooms.clone();
        // Its rooms were told it went away only if it was detached; a takeover of a live
        // connection is not news to them.
        let was_away = session.conn.is_none();
        // A takeover: the old connection (half-open, or the same user on another network) is
        // told and closed; its closing must not detach the session again.
        if let Some(old) = session.conn.filter(|&old| old != conn) {
            if let Some(old_state) = self.conns.close(old) {
                let frame = self.reply_frame(now, &Refusal::ResumedElsewhere, &Map::new());
                if old_state.session.is_some() {
                    self.outbox.send(old, frame);
                }
                self.outbox.close(old);
            }
        }
        // Events still batched go to the others; the resumer gets them in its replay.
        for &room_id in &rooms {
            self.rooms[room_id].flush(&mut self.outbox);
        }
        self.sessions.attach(session_id, conn);
        self.sessions.rotate_token(session_id, token);
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session_id);
        }
        if self.logins.note(now) {
            if let Some(session) = self.sessions.get(session_id) {
                log::info!("{} resumed from {}", session.user.as_str(), session.ip);
            }
        }
        let detail = self.session_detail(session_id, true);
        self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
        let time = self.time(now);
        let user = self.sessions.get(session_id).map(|s| s.user.clone());
        let Some(user) = user else {
            return;
        };
        for room_id in rooms {
            let room = &mut self.rooms[room_id];
            let name = room.name().as_str().to_owned();
            let after = seen.iter().find(|(r, _)| *r == name).map(|&(_, seq)| seq);
            let (gone, frames) = room.missed_since(after);
            let game = room
                .game_state()
                .map(|state| crate::protocol::encode_event(time, user.as_str(), "game", state));
            if gone {
                let detail = object(json!({ "room": name }));
                self.refuse(now, conn, Refusal::MissedEventsGone, &detail);
            }
            for frame in frames {
                self.send_direct(conn, frame);
            }
            if let Some(game) = game {
                let frame = crate::protocol::encode_user_frame(&name, false, [&game]);
                self.send_direct(conn, frame);
            }
            let room = &mut self.rooms[room_id];
            room.attach(session_id, conn);
            let has_poses = room.has_poses();
            if was_away {
                self.publish(room_id, time, user.as_str(), "back", "");
            }
            if has_poses {
                self.queue_tick(room_id);
            }
        }
    }

    /// `{"system":"logout"}`: 200, the user leaves every room at once, the connection closes.
    pub(super) fn logout(&mut self, now: Instant, conn: ConnId) {
        let session = self
            .conns
            .get_mut(conn)
            .and_then(|state| state.session.take());
        let Some(session) = session else {
            return self.refuse(now, conn, Refusal::NotLoggedIn, &Map::new());
        };
        self.reply(now, conn, Code::Ok, LOGGED_OUT, &Map::new());
        self.end_session(now, session);
        self.conns.close(conn);
        self.outbox.close(conn);
    }

    /// The connection is gone. Its session is detached for the resume grace, or ended at once
    /// when resuming is off (or the server is shutting down).
    pub(super) fn disconnect(&mut self, now: Instant, conn: ConnId) {
        let Some(state) = self.conns.close(conn) else {
            return;
        };
        let Some(session) = state.session else {
            return;
        };
        if self.config.resume_grace.is_zero() || self.shutting_down {
            self.end_session(now, session);
        } else {
            self.detach(now, session);
        }
    }

    fn detach(&mut self, now: Instant, session_id: SessionId) {
        let Some(session) = self.sessions.get(session_id) else {
            return;
        };
        let (user, rooms) = (session.user.clone(), session.rooms.clone());
        if self.logins.note(now) {
            log::info!("{} lost its connection; kept for a resume", user.as_str());
        }
        self.sessions.detach(session_id, now);
        let time = self.time(now);
        for room_id in rooms {
            let room = &mut self.rooms[room_id];
            // A half-closed client still reads: its last msgs' echoes go out before it goes.
            room.flush(&mut self.outbox);
            room.detach(session_id);
            self.publish(room_id, time, user.as_str(), "away", "");
        }
        // Past the limit, the session detached longest ago ends (after this one is detached,
        // so nothing it causes goes to the connection that just ended).
        if self.sessions.detached_count() > self.config.max_detached {
            if let Some(oldest) = self.sessions.oldest_detached() {
                self.end_session(now, oldest);
            }
        }
    }

    /// Ends a session: it leaves every room (the others see it leave, a seated player
    /// forfeits) and its name and token are free again.
    pub(super) fn end_session(&mut self, now: Instant, session_id: SessionId) {
        let Some(session) = self.sessions.end(session_id) else {
            return;
        };
        if self.logins.note(now) {
            log::info!("{} left (from {})", session.user.as_str(), session.ip);
        }
        // The session is gone from the table: release what it held here.
        for _ in 0..session.held {
            self.unhold_ip(session.ip);
        }
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

    /// Detached sessions whose grace ran out end now.
    pub(super) fn expire_detached(&mut self, now: Instant) {
        for session in self.sessions.expired(now, self.config.resume_grace) {
            self.end_session(now, session);
        }
    }

    pub(super) fn shutdown(&mut self, now: Instant) {
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

    /// Login and idle timeouts.
    pub(super) fn expire(&mut self, now: Instant) {
        for (conn, refusal) in self.conns.expired(now) {
            if self.timeouts.note(now) {
                let ip = self.conns.get(conn).map(|c| c.ip);
                log::info!("connection from {ip:?}: {refusal}");
            }
            self.refuse(now, conn, refusal, &Map::new());
            self.close(now, conn);
        }
    }
}
