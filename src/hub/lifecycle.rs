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

use super::ids::{ConnId, RoomId, SessionId};
use super::outbox::{Pending, Record, Work};
use super::{context, Done, Hub, Refusal};
use crate::protocol::{
    echo, encode_event, encode_user_frame, object, Code, RoomKind, RoomName, UserName, LOBBY,
};

pub(super) const ACCESS_GRANTED: &str = "Access granted.";
pub(super) const ACCOUNT_CREATED: &str = "Account created.";
pub(super) const PASSWORD_CHANGED: &str = "Password changed.";
const LOGGED_OUT: &str = "Logged out.";

/// Shortest password, in characters.
const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password, in bytes: argon2 takes more, but nobody types it.
const MAX_PASSWORD_BYTES: usize = 1024;

/// What an answer of the hashing service is for.
#[derive(Debug)]
pub(super) enum Job {
    /// A login's password against the account (or the dummy).
    Login { conn: ConnId, user: UserName },
    /// A new account's password hash.
    Register { conn: ConnId, user: UserName },
    /// A password change's old password against the account.
    CheckOldPassword {
        conn: ConnId,
        user: UserName,
        new: String,
    },
    /// A password change's new hash.
    SetPassword { conn: ConnId, user: UserName },
}

impl Job {
    /// The connection that asked.
    fn conn(&self) -> ConnId {
        match self {
            Job::Login { conn, .. }
            | Job::Register { conn, .. }
            | Job::CheckOldPassword { conn, .. }
            | Job::SetPassword { conn, .. } => *conn,
        }
    }
}

fn check_password(pass: &str) -> Result<(), Refusal> {
    if pass.chars().count() < MIN_PASSWORD_CHARS || pass.len() > MAX_PASSWORD_BYTES {
        return Err(Refusal::BadPassword);
    }
    Ok(())
}

impl Hub {
    /// `{"system":"login"}`. A registered name's password is checked by the hashing service
    /// first (the answer comes back in [`Hub::work_done`]); an unregistered name logs in as a
    /// guest at once, unless `--accounts-only`.
    pub(super) fn login(&mut self, now: Instant, conn: ConnId, requested: &str, pass: String) {
        if let Err(refusal) = self.check_login(now, conn, requested, pass) {
            let detail = object(json!({ "user": echo(requested) }));
            self.refuse(now, conn, refusal, &detail);
        }
    }

    fn check_login(
        &mut self,
        now: Instant,
        conn: ConnId,
        requested: &str,
        pass: String,
    ) -> Result<(), Refusal> {
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
        let folded = user.folded();
        if self.accounts.throttled(now, &folded, state.ip) {
            return Err(Refusal::LoginThrottled);
        }
        let phc = self.accounts.get(&folded).map(|a| a.phc.clone());
        if phc.is_some() || self.config.accounts_only {
            let work = Work::Verify {
                password: pass,
                phc,
            };
            self.start_work(work, Job::Login { conn, user });
            return Ok(());
        }
        if self.accounts.is_taken(&folded) {
            return Err(Refusal::NameTaken {
                user: user.as_str().to_owned(),
            });
        }
        self.log_in(now, conn, user)
    }

    /// Starts a session for `user` on `conn` (a guest, or an account whose password checked)
    /// and joins the lobby; an account's own session, detached or still open elsewhere, is
    /// taken over instead.
    fn log_in(&mut self, now: Instant, conn: ConnId, user: UserName) -> Result<(), Refusal> {
        if let Some(existing) = self.sessions.by_name(&user.folded()) {
            if self.accounts.get(&user.folded()).is_some() {
                return self.take_over(now, conn, existing);
            }
        }
        if self.clustered() {
            // The name must be free on every node: Redis says, then the session starts.
            self.cluster_ready()?;
            if self.sessions.by_name(&user.folded()).is_some() {
                return Err(Refusal::NameTaken {
                    user: user.as_str().to_owned(),
                });
            }
            self.claim_name(now, conn, user);
            return Ok(());
        }
        self.start_session(now, conn, user)
    }

    /// The session starts: 202, then the lobby join.
    pub(super) fn start_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        user: UserName,
    ) -> Result<(), Refusal> {
        let ip = self.conns.get(conn).ok_or(Refusal::Closing)?.ip;
        let token = self.new_token()?;
        let session = self.sessions.login(user.clone(), conn, ip, token)?;
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session);
        }
        if self.logins.note(now) {
            log::info!("{} logged in from {ip}", user.as_str());
        }
        self.save_session(session, None);
        let detail = self.session_detail(session, false);
        self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
        if let Err(refusal) = self.join(now, session, RoomName::lobby()) {
            let detail = context(Some(LOBBY), Some(RoomKind::Join.as_str()));
            self.refuse(now, conn, refusal, &detail);
        }
        Ok(())
    }

    /// A registered user logged in while its session lives on (detached, or on another
    /// connection): the session moves to this connection, as a resume without replay. The
    /// client gets each room's member list and game, not its missed events.
    fn take_over(
        &mut self,
        now: Instant,
        conn: ConnId,
        session_id: SessionId,
    ) -> Result<(), Refusal> {
        let token = self.new_token()?;
        let rooms = self.bind(now, conn, session_id, token);
        let detail = self.session_detail(session_id, true);
        self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
        let time = self.time(now);
        for (room_id, was_away) in rooms {
            let Some(user) = self.sessions.get(session_id).map(|s| s.user.clone()) else {
                break;
            };
            let room = &mut self.rooms[room_id];
            let name = room.name().as_str().to_owned();
            let list = encode_event(time, user.as_str(), "list", room.names());
            let game = room
                .game_state()
                .map(|state| encode_event(time, user.as_str(), "game", state));
            self.send_direct(conn, encode_user_frame(&name, false, [&list]));
            if let Some(game) = game {
                self.send_direct(conn, encode_user_frame(&name, false, [&game]));
            }
            self.finish_return(room_id, session_id, conn, time, &user, was_away);
        }
        Ok(())
    }

    /// `{"system":"register"}`: checks the name and password, then has the password hashed;
    /// the account is made when the hash comes back.
    pub(super) fn register(&mut self, now: Instant, conn: ConnId, requested: &str, pass: String) {
        if let Err(refusal) = self.check_register(conn, requested, pass) {
            let detail = object(json!({ "user": echo(requested) }));
            self.refuse(now, conn, refusal, &detail);
        }
    }

    fn check_register(
        &mut self,
        conn: ConnId,
        requested: &str,
        pass: String,
    ) -> Result<(), Refusal> {
        let user = UserName::parse(requested)?;
        check_password(&pass)?;
        // The account is kept in Redis: no point hashing while it cannot be reached.
        self.cluster_ready()?;
        let folded = user.folded();
        if self.accounts.is_taken(&folded) || self.sessions.by_name(&folded).is_some() {
            return Err(Refusal::NameRegistered {
                user: user.as_str().to_owned(),
            });
        }
        if self.accounts.len() >= self.config.max_accounts {
            return Err(Refusal::AccountLimit {
                max: self.config.max_accounts,
            });
        }
        self.accounts.reserve(folded);
        self.start_work(Work::Hash { password: pass }, Job::Register { conn, user });
        Ok(())
    }

    /// `{"system":"password"}`: a registered user's old password is checked, then the new
    /// one hashed and kept.
    pub(super) fn change_password(&mut self, now: Instant, conn: ConnId, old: String, new: String) {
        if let Err(refusal) = self.check_change(conn, old, new) {
            self.refuse(now, conn, refusal, &Map::new());
        }
    }

    fn check_change(&mut self, conn: ConnId, old: String, new: String) -> Result<(), Refusal> {
        let state = self.conns.get(conn).ok_or(Refusal::Closing)?;
        let session = state.session.ok_or(Refusal::NotLoggedIn)?;
        let user = self
            .sessions
            .get(session)
            .ok_or(Refusal::Closing)?
            .user
            .clone();
        let phc = self
            .accounts
            .get(&user.folded())
            .map(|a| a.phc.clone())
            .ok_or(Refusal::NotRegistered)?;
        check_password(&new)?;
        self.cluster_ready()?;
        let work = Work::Verify {
            password: old,
            phc: Some(phc),
        };
        self.start_work(work, Job::CheckOldPassword { conn, user, new });
        Ok(())
    }

    /// Asks the hashing service for `work` and remembers what its answer is for. The
    /// connection is held (not read) until the answer: a client that sends its login and
    /// its first join together gets the join handled as a logged-in user.
    fn start_work(&mut self, work: Work, job: Job) {
        let id = self.next_job;
        self.next_job += 1;
        self.outbox.hold(job.conn());
        self.jobs.insert(id, job);
        self.outbox.work(id, work);
    }

    /// The hashing service answered job `id`.
    pub(super) fn work_done(&mut self, now: Instant, id: u64, done: Done) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let conn = job.conn();
        self.job_answered(now, job, done);
        // A login or registration may wait for Redis now (cluster mode): still held then.
        let still_waiting = self.waits_for_work(conn) || self.waits_for_redis(conn);
        if !still_waiting && self.conns.get(conn).is_some() {
            self.outbox.release(conn);
        }
    }

    /// Whether password work for the connection is under way (it is held meanwhile).
    pub(super) fn waits_for_work(&self, conn: ConnId) -> bool {
        self.jobs.values().any(|job| job.conn() == conn)
    }

    fn job_answered(&mut self, now: Instant, job: Job, done: Done) {
        match (job, done) {
            (Job::Login { conn, user }, Done::Verified(ok)) => {
                self.login_checked(now, conn, user, ok)
            }
            (Job::Register { conn, user }, Done::Hashed(Some(phc))) if self.clustered() => {
                // The name stays reserved here until Redis answers.
                self.cluster_keep_account(now, conn, user, phc, false);
            }
            (Job::SetPassword { conn, user }, Done::Hashed(Some(phc))) if self.clustered() => {
                self.cluster_keep_account(now, conn, user, phc, true);
            }
            (Job::Register { conn, user }, Done::Hashed(Some(phc))) => {
                self.accounts.insert(user.as_str().to_owned(), phc.clone());
                if self.persist {
                    self.outbox.persist(Record::Account {
                        name: user.as_str().to_owned(),
                        phc,
                    });
                }
                if self.logins.note(now) {
                    log::info!("{} registered", user.as_str());
                }
                if self.conns.get(conn).is_some() {
                    let detail = object(json!({ "user": user.as_str() }));
                    self.reply(now, conn, Code::Created, ACCOUNT_CREATED, &detail);
                }
            }
            (Job::CheckOldPassword { conn, user, new }, Done::Verified(true)) => {
                self.accounts.succeeded(&user.folded());
                self.start_work(
                    Work::Hash { password: new },
                    Job::SetPassword { conn, user },
                );
            }
            (Job::CheckOldPassword { conn, user, .. }, Done::Verified(false)) => {
                if let Some(ip) = self.conns.get(conn).map(|c| c.ip) {
                    self.accounts.failed(now, &user.folded(), ip);
                }
                self.refuse(now, conn, Refusal::AccessDenied, &Map::new());
            }
            (Job::SetPassword { conn, user }, Done::Hashed(Some(phc))) => {
                self.accounts.insert(user.as_str().to_owned(), phc.clone());
                if self.persist {
                    self.outbox.persist(Record::Password {
                        name: user.as_str().to_owned(),
                        phc,
                    });
                }
                self.reply(now, conn, Code::Ok, PASSWORD_CHANGED, &Map::new());
            }
            (job, _) => {
                // Busy, a failed hash, or an answer of the wrong kind: nothing was changed.
                let (conn, detail) = match &job {
                    Job::Login { conn, user } | Job::Register { conn, user } => {
                        (*conn, object(json!({ "user": user.as_str() })))
                    }
                    Job::CheckOldPassword { conn, .. } | Job::SetPassword { conn, .. } => {
                        (*conn, Map::new())
                    }
                };
                if let Job::Register { user, .. } = &job {
                    self.accounts.release(&user.folded());
                }
                self.refuse(now, conn, Refusal::Busy, &detail);
            }
        }
    }

    fn login_checked(&mut self, now: Instant, conn: ConnId, user: UserName, ok: bool) {
        let detail = object(json!({ "user": user.as_str() }));
        let Some(ip) = self.conns.get(conn).map(|c| c.ip) else {
            return; // gone meanwhile
        };
        let folded = user.folded();
        if !ok || self.accounts.get(&folded).is_none() {
            self.accounts.failed(now, &folded, ip);
            if self.timeouts.note(now) {
                log::info!(
                    "login refused for {} from {ip}: wrong password",
                    user.as_str()
                );
            }
            return self.refuse(now, conn, Refusal::AccessDenied, &detail);
        }
        self.accounts.succeeded(&folded);
        // The account's name as registered, whatever case this login typed.
        let registered = self.accounts.get(&folded).map(|a| a.name.clone());
        let user = registered
            .and_then(|name| UserName::parse(&name).ok())
            .unwrap_or(user);
        let already = self.conns.get(conn).and_then(|c| c.session);
        if let Some(current) = already.and_then(|s| self.sessions.get(s)) {
            let refusal = Refusal::AlreadyLoggedIn {
                user: current.user.as_str().to_owned(),
            };
            return self.refuse(now, conn, refusal, &detail);
        }
        if let Err(refusal) = self.log_in(now, conn, user) {
            self.refuse(now, conn, refusal, &detail);
        }
    }

    /// The 202's detail: who, the token for the next resume, the idle timeout clients must
    /// ping within.
    pub(super) fn session_detail(&self, session: SessionId, resumed: bool) -> Map<String, Value> {
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
            if self.clustered() {
                // Another node may keep it (a load balancer sent the reconnect elsewhere).
                return self.claim_session(now, conn, token, seen);
            }
            return self.refuse(now, conn, Refusal::SessionExpired, &Map::new());
        };
        let token = match self.new_token() {
            Ok(token) => token,
            Err(refusal) => return self.refuse(now, conn, refusal, &Map::new()),
        };
        let rooms = self.bind(now, conn, session_id, token);
        let detail = self.session_detail(session_id, true);
        self.reply(now, conn, Code::Accepted, ACCESS_GRANTED, &detail);
        let time = self.time(now);
        let user = self.sessions.get(session_id).map(|s| s.user.clone());
        let Some(user) = user else {
            return;
        };
        for (room_id, was_away) in rooms {
            let room = &mut self.rooms[room_id];
            let name = room.name().as_str().to_owned();
            let after = seen.iter().find(|(r, _)| *r == name).map(|&(_, seq)| seq);
            let (gone, frames) = room.missed_since(after);
            let game = room
                .game_state()
                .map(|state| encode_event(time, user.as_str(), "game", state));
            if gone {
                let detail = object(json!({ "room": name }));
                self.refuse(now, conn, Refusal::MissedEventsGone, &detail);
            }
            for frame in frames {
                self.send_direct(conn, frame);
            }
            if let Some(game) = game {
                self.send_direct(conn, encode_user_frame(&name, false, [&game]));
            }
            self.finish_return(room_id, session_id, conn, time, &user, was_away);
        }
    }

    /// Moves a session to `conn` with a new token: a still-open old connection is told and
    /// closed (its closing must not detach the session again), the rooms' batched events go
    /// out to the others first (the returning client gets them in its replay). Returns the
    /// session's rooms, in join order, each with whether the session was away from it.
    fn bind(
        &mut self,
        now: Instant,
        conn: ConnId,
        session_id: SessionId,
        token: String,
    ) -> Vec<(RoomId, bool)> {
        let Some(session) = self.sessions.get(session_id) else {
            return Vec::new();
        };
        let rooms = session.rooms.clone();
        // Its rooms were told it went away only if it was detached; a takeover of a live
        // connection is not news to them.
        let was_away = session.conn.is_none();
        if let Some(old) = session.conn.filter(|&old| old != conn) {
            if let Some(old_state) = self.conns.close(old) {
                let frame = self.reply_frame(now, &Refusal::ResumedElsewhere, &Map::new());
                if old_state.session.is_some() {
                    self.outbox.send(old, frame);
                }
                self.outbox.close(old);
            }
        }
        for &room_id in &rooms {
            self.rooms[room_id].flush(&mut self.outbox);
        }
        self.sessions.attach(session_id, conn);
        let old = self.sessions.get(session_id).map(|s| s.token().to_owned());
        self.sessions.rotate_token(session_id, token);
        self.save_session(session_id, old);
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session_id);
        }
        if self.logins.note(now) {
            if let Some(session) = self.sessions.get(session_id) {
                log::info!("{} is back from {}", session.user.as_str(), session.ip);
            }
        }
        rooms.into_iter().map(|room| (room, was_away)).collect()
    }

    /// The last step of a return to a room: the member speaks through `conn` again, gets the
    /// poses at the next tick, and the room hears it is back if it was away.
    fn finish_return(
        &mut self,
        room_id: RoomId,
        session_id: SessionId,
        conn: ConnId,
        time: f64,
        user: &UserName,
        was_away: bool,
    ) {
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
        if let Some(token) = self.sessions.get(session_id).map(|s| s.token().to_owned()) {
            self.expire_session(&token);
        }
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
        let (token, folded) = (session.token().to_owned(), session.user.folded());
        for room_id in session.rooms {
            self.remove_member(now, session_id, room_id, true);
        }
        self.forget_session(&token, folded);
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
