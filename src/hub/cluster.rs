//! Cluster mode (`--redis`): the rules by which several nodes share rooms over one Redis.
//!
//! The hub stays sans-IO: what crosses nodes leaves as [`ClusterOut`] (an `Output::Cluster`)
//! and comes back as [`ClusterIn`] (an `Input::Cluster`); `services/redis.rs` carries both
//! over Redis on threads of its own. What this file decides:
//!
//! - **One order per room.** A history event accepted here is encoded once, as the bytes
//!   around its `seq` ([`Publish::prefix`], [`Publish::suffix`]); one Redis script numbers it
//!   (`INCR`), appends it to the room's stream (history) and publishes it on the room's
//!   channel. Every node, this one included, delivers what arrives on the channel to its own
//!   members in seq order: an event is delivered when its seq is the room's next one, early
//!   ones wait, a gap is read back from the stream ([`ClusterOut::Fetch`]), and a seq already
//!   delivered is dropped, so no member ever gets a seq twice. Events this node's own members
//!   cause are delivered when they come back, never before.
//! - **Membership follows the channel.** A join is answered when its own join event comes back:
//!   the joiner's history is then exactly the events before its join, its list every member on
//!   every node (this node's members and [`Remotes`](super::remote::Remotes) kept from the
//!   room's sync and the join and leave events since). A leaver is removed at once but gets
//!   the room's events up to its own leave event.
//! - **Subscriptions follow local membership**: a room exists on a node (subscribed, synced)
//!   while it has members, joins or leaves in flight here; the lobby always.
//! - **Poses** cross at the tick: the room's changed poses go out as one message, remote ones
//!   are merged into the next local tick (see `room.rs`).
//! - **Names, sessions, the rooms list** live in Redis: a login waits for its name claim, a
//!   resume of a session another node kept claims it there, `rooms` reads Redis.
//! - **Accounts** live in Redis too, and every node holds all of them in memory (see
//!   `cluster_accounts.rs`): a registration or a password change is answered once Redis took
//!   it, and every node hears of it.
//! - **Liveness**: the hub asks for a heartbeat and a dead-node check every
//!   [`HEARTBEAT`]; a node whose heartbeat key lapsed ([`DEAD_AFTER`]) is reaped by one Lua
//!   script on whichever survivor runs it first: one leave event per member it had, its names
//!   freed, so each leave happens once.
//! - **Redis lost**: requests that need a seq, a name or a session are refused with 503
//!   ([`Refusal::ClusterDown`]); local poses and lists keep working; when Redis is back every
//!   room is read from its stream after its last delivered seq; what the stream no longer holds
//!   is told to members as 410 with the kept history, as a resume does.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Map};

pub(crate) use super::cluster_messages::{parse_payload, Header};
pub use super::cluster_messages::{
    AccountRecord, AccountSaved, ClusterIn, ClusterOut, Mode, Publish,
};
use super::ids::{ConnId, RoomId, SessionId};
use super::outbox::Pending;
use super::{context, Hub, Refusal};
use crate::protocol::{
    encode_event, encode_history_event, encode_reply, encode_user_frame, object, Code, RoomKind,
    RoomName, UserName,
};

/// How often a node says it is alive, and looks for dead nodes.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older than this is dead: its members leave.
pub const DEAD_AFTER: Duration = Duration::from_secs(10);
/// A join, login, resume or rooms request whose answer from Redis takes longer than this is
/// answered 503 (the connection is not held any longer).
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// Events kept per room while an earlier one is missing; past it, later ones are dropped
/// (and read back from the stream once the gap is filled).
const MAX_AHEAD: usize = 4096;
/// Events one read of a room's stream returns.
const FETCH_COUNT: usize = 1000;

/// What a request to Redis is for.
#[derive(Debug)]
pub(super) enum Op {
    /// A msg: on failure its sender is told.
    Msg { conn: ConnId, room: String },
    /// A join waiting for its join event.
    Join {
        session: SessionId,
        conn: ConnId,
        room: RoomId,
    },
    /// A login waiting for its name.
    Login { conn: ConnId, user: UserName },
    /// A resume of a session this node does not hold.
    Resume {
        conn: ConnId,
        seen: Vec<(String, u64)>,
    },
    /// A session taken over from another node, waiting for its rooms to sync here.
    Resuming {
        conn: ConnId,
        session: SessionId,
        seen: Vec<(String, u64)>,
        rooms: Vec<RoomId>,
    },
    /// A `rooms` request.
    Rooms { conn: ConnId },
    /// A registration (or, with `change`, a password change) waiting for Redis to keep it.
    Account {
        conn: ConnId,
        user: UserName,
        phc: String,
        change: bool,
    },
    /// A game command waiting for the game's lease, or forwarded to its owner (which answers
    /// only a refusal: an accepted command's event is its answer).
    Game {
        conn: ConnId,
        room: RoomId,
        user: UserName,
        command: crate::protocol::GameCommand,
    },
}

impl Op {
    /// The connection that waits, and whether it is held (not read) meanwhile.
    fn conn(&self) -> (ConnId, bool) {
        match *self {
            Op::Msg { conn, .. } | Op::Game { conn, .. } => (conn, false),
            Op::Join { conn, .. }
            | Op::Login { conn, .. }
            | Op::Resume { conn, .. }
            | Op::Resuming { conn, .. }
            | Op::Account { conn, .. }
            | Op::Rooms { conn } => (conn, true),
        }
    }
}

/// A subscribed room's feed: where its channel's events wait for their turn.
#[derive(Debug, Default)]
struct Feed {
    /// Read from Redis since subscribing: events are delivered from here on.
    synced: bool,
    /// Events after a missing one (or before the sync), by seq: payloads.
    ahead: BTreeMap<u64, Bytes>,
    /// A read of the stream is under way.
    fetching: bool,
}

/// The cluster state of a hub.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// This node's id.
    pub node: String,
    /// Redis is reachable (as far as the last answer said).
    pub up: bool,
    feeds: HashMap<RoomId, Feed>,
    /// Requests waiting for Redis, by id. Ids grow with time, so the first is the oldest: the
    /// next timeout is found without a scan (a busy node has thousands in flight).
    ops: BTreeMap<u64, (Instant, Op)>,
    /// Requests holding each connection (not read until every one is answered).
    holds: HashMap<ConnId, u32>,
    next_op: u64,
    next_beat: Instant,
}

impl Cluster {
    /// The oldest game command of `user` in `room` waiting here (its event came by): the
    /// first, as ids grow with time.
    pub(super) fn waiting_game(&self, room: RoomId, user: &str) -> Option<u64> {
        self.ops
            .iter()
            .find(|(_, (_, op))| {
                matches!(op, Op::Game { room: r, user: u, .. } if *r == room && u.as_str() == user)
            })
            .map(|(&id, _)| id)
    }

    pub fn new(node: String, now: Instant) -> Cluster {
        Cluster {
            node,
            up: true,
            feeds: HashMap::new(),
            ops: BTreeMap::new(),
            holds: HashMap::new(),
            next_op: 1,
            next_beat: now,
        }
    }

    /// When the hub must next run for the cluster: the heartbeat, or an op's timeout.
    pub fn deadline(&self) -> Instant {
        let oldest = self
            .ops
            .first_key_value()
            .map(|(_, (since, _))| *since + OP_TIMEOUT);
        oldest.map_or(self.next_beat, |at| at.min(self.next_beat))
    }
}

/// The seq of a payload, without the rest.
fn payload_seq(payload: &Bytes) -> Option<u64> {
    let end = memchr::memchr(b' ', payload)?;
    std::str::from_utf8(&payload[..end]).ok()?.parse().ok()
}

/// An event encoded once with a placeholder seq, cut around it: what the script puts the real
/// seq between. User names and types hold no quote, so the first `,"seq":0,"data":` is it.
pub(crate) fn split_event<D: serde::Serialize>(
    time: f64,
    user: &str,
    kind: &str,
    data: D,
) -> (Bytes, Bytes) {
    let event = encode_history_event(time, user, kind, 0, data);
    const MARK: &[u8] = b",\"seq\":0,\"data\":";
    match memchr::memmem::find(&event, MARK) {
        Some(at) => (
            event.slice(..at + MARK.len() - 9),
            event.slice(at + MARK.len() - 8..),
        ),
        // Unreachable for the names the hub passes; an empty prefix makes the script's
        // event plainly invalid rather than silently different.
        None => (Bytes::new(), event),
    }
}

impl Hub {
    /// Whether this hub is a cluster member.
    pub(super) fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Refused while Redis is away: what needs a seq, a name or a session from it.
    pub(super) fn cluster_ready(&self) -> Result<(), Refusal> {
        match &self.cluster {
            Some(cluster) if !cluster.up => Err(Refusal::ClusterDown),
            _ => Ok(()),
        }
    }

    pub(super) fn cluster_out(&mut self, out: ClusterOut) {
        self.outbox.cluster(out);
    }

    /// Starts a request; a held connection is not read until it is answered.
    pub(super) fn start_op(&mut self, now: Instant, op: Op) -> u64 {
        let Some(cluster) = &mut self.cluster else {
            return 0;
        };
        let id = cluster.next_op;
        cluster.next_op += 1;
        let (conn, hold) = op.conn();
        cluster.ops.insert(id, (now, op));
        // A registration whose client left while its password was hashed goes on unheld.
        if hold && self.conns.get(conn).is_some() {
            *cluster.holds.entry(conn).or_default() += 1;
            self.outbox.hold(conn);
        }
        id
    }

    /// Ends a request; its connection is read again when nothing else holds it.
    pub(super) fn finish_op(&mut self, id: u64) -> Option<Op> {
        let cluster = self.cluster.as_mut()?;
        let (_, op) = cluster.ops.remove(&id)?;
        let (conn, hold) = op.conn();
        if !hold {
            return Some(op);
        }
        match cluster.holds.get_mut(&conn) {
            Some(count) if *count > 1 => *count -= 1,
            _ => {
                cluster.holds.remove(&conn);
            }
        }
        let still = self.waits_for_redis(conn) || self.waits_for_work(conn);
        if !still && self.conns.get(conn).is_some() {
            self.outbox.release(conn);
        }
        Some(op)
    }

    /// Whether a request to Redis holds the connection (it is not read meanwhile).
    pub(super) fn waits_for_redis(&self, conn: ConnId) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|cluster| cluster.holds.contains_key(&conn))
    }

    /// A room exists here now: subscribe to it and read it.
    pub(super) fn watch(&mut self, room_id: RoomId) {
        let history = self.config.history;
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        cluster.feeds.insert(room_id, Feed::default());
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        room.publish_poses = true;
        let name = room.name().as_str().to_owned();
        self.cluster_out(ClusterOut::Subscribe {
            room: name,
            history,
        });
    }

    /// The room is gone here.
    pub(super) fn unwatch(&mut self, room_id: RoomId, name: &str) {
        if let Some(cluster) = &mut self.cluster {
            if cluster.feeds.remove(&room_id).is_some() {
                self.cluster_out(ClusterOut::Unsubscribe {
                    room: name.to_owned(),
                });
            }
        }
    }

    /// Removes a room nothing keeps here any more (never the lobby).
    pub(super) fn drop_if_idle(&mut self, room_id: RoomId) {
        let idle = self
            .rooms
            .get(room_id)
            .is_some_and(|room| room.is_idle() && room_id != self.lobby);
        if idle {
            self.tick_rooms.retain(|&r| r != room_id);
            self.remove_room(room_id);
        }
    }

    /// Hands a history event to Redis to number and publish; it is delivered here when it
    /// comes back. `op` names who waits for it.
    pub(super) fn cluster_publish<D: serde::Serialize>(
        &mut self,
        room_id: RoomId,
        time: f64,
        user: &str,
        kind: &'static str,
        data: D,
        op: u64,
    ) {
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let mode = match kind {
            "join" => Mode::Join,
            "leave" => Mode::Leave,
            "away" | "back" => Mode::Member,
            _ => Mode::Plain,
        };
        let state = match kind {
            "game" => serde_json::to_vec(&data).ok().map(Bytes::from),
            _ => None,
        };
        let (prefix, suffix) = split_event(time, user, kind, data);
        let publish = Publish {
            op,
            room: room.name().as_str().to_owned(),
            mode,
            kind,
            user: user.to_owned(),
            folded: user.to_ascii_lowercase(),
            prefix,
            suffix,
            floor: room.next_seq().saturating_sub(1),
            retry: op == 0,
            state,
        };
        self.cluster_out(ClusterOut::Publish(publish));
    }

    /// A msg in cluster mode: numbered by Redis, its sender told if that fails.
    pub(super) fn cluster_msg(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_id: RoomId,
        user: &str,
        data: &serde_json::value::RawValue,
    ) -> Result<(), Refusal> {
        self.cluster_ready()?;
        let room = self.rooms[room_id].name().as_str().to_owned();
        let op = self.start_op(now, Op::Msg { conn, room });
        let time = self.time(now);
        self.cluster_publish(room_id, time, user, "msg", data, op);
        Ok(())
    }

    /// A join in cluster mode, once the limits passed: answered when its join event comes
    /// back (the connection is held meanwhile).
    pub(super) fn cluster_join(
        &mut self,
        now: Instant,
        session: SessionId,
        conn: ConnId,
        user: &UserName,
        room_id: RoomId,
    ) {
        self.rooms[room_id].joining += 1;
        let op = self.start_op(
            now,
            Op::Join {
                session,
                conn,
                room: room_id,
            },
        );
        let time = self.time(now);
        self.cluster_publish(room_id, time, user.as_str(), "join", "", op);
    }

    /// A leave in cluster mode: the member is gone here at once, and gets the room's events
    /// until its own leave event comes back.
    pub(super) fn cluster_leave(&mut self, now: Instant, session: SessionId, room_id: RoomId) {
        let Some((user, conn)) = self.sessions.get(session).map(|s| (s.user.clone(), s.conn))
        else {
            return;
        };
        let time = self.time(now);
        self.cluster_publish(room_id, time, user.as_str(), "leave", "", 0);
        if let Some(conn) = conn {
            self.rooms[room_id].depart(user.as_str(), conn);
        }
        self.remove_member(now, session, room_id, false);
    }

    /// A guest's name (or an account's, once its password checked) is claimed in Redis
    /// before the session starts.
    pub(super) fn claim_name(&mut self, now: Instant, conn: ConnId, user: UserName) {
        let folded = user.folded();
        let shown = user.as_str().to_owned();
        let guest = self.accounts.get(&folded).is_none();
        let op = self.start_op(now, Op::Login { conn, user });
        self.cluster_out(ClusterOut::ClaimName {
            op,
            folded,
            user: shown,
            guest,
        });
    }

    /// A resume with a token this node does not hold: maybe another node kept the session.
    pub(super) fn claim_session(
        &mut self,
        now: Instant,
        conn: ConnId,
        token: &str,
        seen: &[(String, u64)],
    ) {
        if let Err(refusal) = self.cluster_ready() {
            return self.refuse(now, conn, refusal, &Map::new());
        }
        let op = self.start_op(
            now,
            Op::Resume {
                conn,
                seen: seen.to_vec(),
            },
        );
        self.cluster_out(ClusterOut::ClaimSession {
            op,
            token: token.to_owned(),
        });
    }

    /// `{"system":"rooms"}` in cluster mode: a page of the cluster's rooms, from Redis.
    pub(super) fn cluster_rooms(
        &mut self,
        now: Instant,
        conn: ConnId,
        after: Option<String>,
        limit: Option<usize>,
    ) {
        if let Err(refusal) = self.cluster_ready() {
            return self.refuse(now, conn, refusal, &Map::new());
        }
        let limit = limit
            .unwrap_or(super::directory::DEFAULT_PAGE)
            .clamp(1, super::directory::MAX_PAGE);
        let op = self.start_op(now, Op::Rooms { conn });
        self.cluster_out(ClusterOut::Rooms { op, after, limit });
    }

    /// Tells Redis what a resume elsewhere needs: this session's token and user.
    pub(super) fn save_session(&mut self, session: SessionId, old: Option<String>) {
        if self.cluster.is_none() {
            return;
        }
        let Some(session) = self.sessions.get(session) else {
            return;
        };
        let out = ClusterOut::SaveSession {
            token: session.token().to_owned(),
            folded: session.user.folded(),
            old,
        };
        self.cluster_out(out);
    }

    /// A session's connection is lost: its record in Redis lives for the resume grace.
    pub(super) fn expire_session(&mut self, token: &str) {
        if self.cluster.is_some() {
            let ttl = self.config.resume_grace;
            self.cluster_out(ClusterOut::ExpireSession {
                token: token.to_owned(),
                ttl,
            });
        }
    }

    /// A session ended here: its name and record go (after its leave events, which the
    /// bridge sends first: one connection, in order).
    pub(super) fn forget_session(&mut self, token: &str, folded: String) {
        if self.cluster.is_some() {
            self.cluster_out(ClusterOut::DropSession {
                token: token.to_owned(),
            });
            self.cluster_out(ClusterOut::ReleaseName { folded });
        }
    }

    /// The heartbeat and the dead-node check, every [`HEARTBEAT`]; requests unanswered for
    /// [`OP_TIMEOUT`] fail.
    pub(super) fn cluster_timers(&mut self, now: Instant) {
        let time = self.time(now);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if now >= cluster.next_beat {
            cluster.next_beat = now + HEARTBEAT;
            self.cluster_out(ClusterOut::Heartbeat);
            self.cluster_out(ClusterOut::Reap {
                time: serde_json::to_string(&time).unwrap_or_else(|_| "0.0".into()),
            });
            self.game_leases();
        }
        let Some(cluster) = &self.cluster else {
            return;
        };
        // Oldest first: the scan stops at the first request still in time.
        let late: Vec<u64> = cluster
            .ops
            .iter()
            .take_while(|(_, (since, _))| now.saturating_duration_since(*since) >= OP_TIMEOUT)
            .map(|(&id, _)| id)
            .collect();
        for id in late {
            let forwarded = self
                .cluster
                .as_ref()
                .and_then(|c| c.ops.get(&id))
                .is_some_and(|(_, op)| matches!(op, Op::Game { .. }));
            if forwarded {
                // A game command forwarded to its owner is answered only if refused.
                self.finish_op(id);
                continue;
            }
            log::warn!("a request to Redis took over {OP_TIMEOUT:?}: given up");
            self.op_failed(now, id);
        }
    }

    /// Feeds one thing Redis said.
    pub(super) fn cluster_input(&mut self, now: Instant, input: ClusterIn) {
        if self.cluster.is_none() || self.shutting_down {
            return;
        }
        match input {
            ClusterIn::Up => self.cluster_up(),
            ClusterIn::Down => {
                if let Some(cluster) = &mut self.cluster {
                    if cluster.up {
                        log::warn!("Redis is unreachable: messages that need a seq are refused (503) until it is back");
                    }
                    cluster.up = false;
                }
            }
            ClusterIn::Reaped => self.cluster_reset(now),
            ClusterIn::Synced {
                room,
                last_seq,
                events,
                members,
                game,
            } => self.synced(now, &room, last_seq, events, members, game),
            ClusterIn::Event { room, payload } => self.cluster_event(now, &room, payload),
            ClusterIn::Fetched {
                room,
                after,
                events,
            } => self.fetched(now, &room, after, events),
            ClusterIn::Poses { room, payload } => self.remote_poses(&room, &payload),
            ClusterIn::Failed { op } => self.op_failed(now, op),
            ClusterIn::NameClaimed { op, ok } => self.name_claimed(now, op, ok),
            ClusterIn::Accounts { accounts } => self.accounts_loaded(accounts),
            ClusterIn::Account(account) => {
                self.learn_account(account);
            }
            ClusterIn::AccountSaved { op, outcome } => self.account_saved(now, op, outcome),
            ClusterIn::SessionClaimed { op, found } => self.session_claimed(now, op, found),
            ClusterIn::Rooms { op, rooms, more } => self.rooms_page(now, op, rooms, more),
            ClusterIn::SessionTaken { token, node } => self.session_taken(now, &token, &node),
            ClusterIn::GameLease { op, room, state } => self.game_lease(now, op, &room, state),
            ClusterIn::GameForward {
                room,
                user,
                origin,
                op,
                command,
            } => self.game_forward(now, &room, &user, origin, op, &command),
            ClusterIn::GameRefused { op, code, msg } => self.game_refused(now, op, code, &msg),
            ClusterIn::LeaseLost { room } => {
                if let Some(&room_id) = self.room_ids.get(&room) {
                    self.rooms[room_id].disown_game();
                }
            }
        }
    }

    /// Redis is back: every room is read again from where it stopped.
    fn cluster_up(&mut self) {
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        if !cluster.up {
            log::info!("Redis is reachable again: resynchronizing every room");
        }
        cluster.up = true;
        let feeds: Vec<(RoomId, bool)> = cluster
            .feeds
            .iter()
            .map(|(&id, feed)| (id, feed.synced))
            .collect();
        for (room_id, synced) in feeds {
            let Some(room) = self.rooms.get(room_id) else {
                continue;
            };
            let name = room.name().as_str().to_owned();
            let after = room.next_seq().saturating_sub(1);
            let out = match synced {
                true => ClusterOut::Fetch {
                    room: name,
                    after,
                    count: FETCH_COUNT,
                },
                false => ClusterOut::Subscribe {
                    room: name,
                    history: self.config.history,
                },
            };
            if let Some(feed) = self
                .cluster
                .as_mut()
                .and_then(|c| c.feeds.get_mut(&room_id))
            {
                feed.fetching |= synced;
            }
            self.cluster_out(out);
        }
    }

    /// A room's state as Redis holds it, right after subscribing.
    fn synced(
        &mut self,
        now: Instant,
        room: &str,
        last_seq: u64,
        events: Vec<Bytes>,
        members: Vec<(String, String)>,
        game: Option<Bytes>,
    ) {
        let Some(&room_id) = self.room_ids.get(room) else {
            return;
        };
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let node = cluster.node.clone();
        let Some(feed) = cluster.feeds.get_mut(&room_id) else {
            return;
        };
        if feed.synced {
            // Read twice (a retried subscription): the first read and the channel since
            // are ahead of this one.
            return;
        }
        feed.synced = true;
        feed.fetching = false;
        let tail: Vec<(u64, Bytes)> = events
            .iter()
            .filter_map(|payload| {
                let (header, event) = parse_payload(payload)?;
                Some((header.seq, event))
            })
            .collect();
        let room = &mut self.rooms[room_id];
        room.resync(last_seq, tail);
        if !room.game_owned {
            room.game_cache = game.and_then(|state| serde_json::from_slice(&state).ok());
        }
        room.remote.clear();
        for (user, at) in members {
            if at != node {
                room.remote.insert(&user, &at);
            }
        }
        self.drain_feed(now, room_id);
        self.resumes_synced(now);
    }

    /// An event on a room's channel: delivered in seq order.
    fn cluster_event(&mut self, now: Instant, room: &str, payload: Bytes) {
        let Some(&room_id) = self.room_ids.get(room) else {
            return;
        };
        let Some(seq) = payload_seq(&payload) else {
            log::warn!("an unreadable event on room {room:?}'s channel: ignored");
            return;
        };
        let last = self.rooms[room_id].next_seq().saturating_sub(1);
        let Some(feed) = self
            .cluster
            .as_mut()
            .and_then(|c| c.feeds.get_mut(&room_id))
        else {
            return;
        };
        if feed.synced && seq <= last {
            return; // delivered already: never twice
        }
        if feed.ahead.len() < MAX_AHEAD {
            feed.ahead.insert(seq, payload);
        }
        if feed.synced {
            self.drain_feed(now, room_id);
        }
    }

    /// Delivers the room's waiting events while the next one is there; asks the stream for
    /// the ones missing before the rest.
    fn drain_feed(&mut self, now: Instant, room_id: RoomId) {
        loop {
            let Some(room) = self.rooms.get(room_id) else {
                return;
            };
            let next = room.next_seq();
            let Some(feed) = self
                .cluster
                .as_mut()
                .and_then(|c| c.feeds.get_mut(&room_id))
            else {
                return;
            };
            feed.ahead = feed.ahead.split_off(&next);
            let Some(payload) = feed.ahead.remove(&next) else {
                break;
            };
            self.apply_event(now, room_id, next, payload);
        }
        let Some(room) = self.rooms.get(room_id) else {
            return;
        };
        let (name, after) = (room.name().as_str().to_owned(), room.next_seq() - 1);
        let Some(cluster) = &mut self.cluster else {
            return;
        };
        let up = cluster.up;
        let Some(feed) = cluster.feeds.get_mut(&room_id) else {
            return;
        };
        if !feed.ahead.is_empty() && !feed.fetching && up {
            feed.fetching = true;
            self.cluster_out(ClusterOut::Fetch {
                room: name,
                after,
                count: FETCH_COUNT,
            });
        }
    }

    /// What the room's stream held after `after`. Events it no longer holds (trimmed, or
    /// lost by Redis) are gone: the members are told (410) and get the kept history.
    fn fetched(&mut self, now: Instant, room: &str, after: u64, events: Vec<Bytes>) {
        let Some(&room_id) = self.room_ids.get(room) else {
            return;
        };
        let last = self.rooms[room_id].next_seq() - 1;
        let Some(feed) = self
            .cluster
            .as_mut()
            .and_then(|c| c.feeds.get_mut(&room_id))
        else {
            return;
        };
        feed.fetching = false;
        let full = events.len() >= FETCH_COUNT;
        let mut first = None;
        for payload in events {
            let Some(seq) = payload_seq(&payload) else {
                continue;
            };
            first.get_or_insert(seq);
            if seq > last && feed.ahead.len() < MAX_AHEAD {
                feed.ahead.insert(seq, payload);
            }
        }
        if after == last {
            // The first event kept after `last`, in the stream or still on its way.
            let available = first.or_else(|| feed.ahead.keys().next().copied());
            if let Some(available) = available.filter(|&seq| seq > last + 1) {
                self.missed(now, room_id, available - 1);
            }
        }
        self.drain_feed(now, room_id);
        if full {
            if let Some(feed) = self
                .cluster
                .as_mut()
                .and_then(|c| c.feeds.get_mut(&room_id))
            {
                if !feed.fetching {
                    feed.fetching = true;
                    let after = self.rooms[room_id].next_seq() - 1;
                    let room = room.to_owned();
                    self.cluster_out(ClusterOut::Fetch {
                        room,
                        after,
                        count: FETCH_COUNT,
                    });
                }
            }
        }
    }

    /// Events up to `until` cannot be delivered any more: every member here is told so (410,
    /// as for a resume that cannot replay) and sent the kept history, then the room goes on.
    fn missed(&mut self, now: Instant, room_id: RoomId, until: u64) {
        let room = &mut self.rooms[room_id];
        let name = room.name().as_str().to_owned();
        log::warn!(
            "room {name:?}: events {} to {until} are no longer in Redis; members are told (410)",
            room.next_seq()
        );
        room.flush(&mut self.outbox);
        room.skip_to(until);
        let frames = room.history_frames();
        let conns = room.member_conns();
        let detail = object(json!({ "room": name }));
        for conn in conns {
            self.refuse(now, conn, Refusal::MissedEventsGone, &detail);
            for frame in &frames {
                self.send_direct(conn, frame.clone());
            }
        }
    }

    /// One event, in its turn: delivered to the members here, and what it says about the
    /// room's membership applied.
    fn apply_event(&mut self, now: Instant, room_id: RoomId, seq: u64, payload: Bytes) {
        let Some((header, event)) = parse_payload(&payload) else {
            log::warn!("an unreadable event (seq {seq}): skipped");
            self.rooms[room_id].skip_to(seq);
            return;
        };
        let mine = self.cluster.as_ref().is_some_and(|c| c.node == header.node);
        match header.kind {
            "join" => self.apply_join(now, room_id, seq, &header, event, mine),
            "leave" => {
                let room = &mut self.rooms[room_id];
                room.deliver(seq, event, &mut self.outbox);
                if mine {
                    // The leaver gets its own leave event, then nothing more.
                    room.flush(&mut self.outbox);
                    room.departed(header.user);
                }
                // A member of another node (or of a dead node this node reaped).
                room.remote.remove(header.user);
                self.forfeit(now, room_id, header.user);
                self.drop_if_idle(room_id);
            }
            kind => {
                let room = &mut self.rooms[room_id];
                if !mine && kind == "back" && room.remote.contains(header.user) {
                    // A session that resumed on another node is back from there (game
                    // events, by contrast, come from the game's node): its poses come from
                    // that node now.
                    room.remote.insert(header.user, header.node);
                }
                if !mine && kind == "away" {
                    self.rooms[room_id].remote.drop_pose(header.user);
                }
                if kind == "game" {
                    self.game_seen(room_id, &event);
                }
                self.rooms[room_id].deliver(seq, event, &mut self.outbox);
                if mine && header.op != 0 {
                    self.finish_op(header.op);
                }
            }
        }
    }

    fn apply_join(
        &mut self,
        now: Instant,
        room_id: RoomId,
        seq: u64,
        header: &Header<'_>,
        event: Bytes,
        mine: bool,
    ) {
        if !mine {
            let room = &mut self.rooms[room_id];
            room.remote.insert(header.user, header.node);
            room.deliver(seq, event, &mut self.outbox);
            if !room.is_empty() {
                // The newcomer's node has none of this node's poses.
                room.republish_poses = true;
                self.queue_tick(room_id);
            }
            return;
        }
        let op = self.finish_op(header.op);
        let Some(Op::Join {
            session,
            conn,
            room,
        }) = op
        else {
            // A join this node gave up on (it failed, or timed out) that Redis carried out
            // after all: the user leaves again.
            self.rooms[room_id].deliver(seq, event, &mut self.outbox);
            let user = header.user.to_owned();
            let time = self.time(now);
            self.cluster_publish(room_id, time, &user, "leave", "", 0);
            return;
        };
        debug_assert_eq!(room, room_id);
        let room = &mut self.rooms[room_id];
        room.joining = room.joining.saturating_sub(1);
        let user = self.sessions.get(session).map(|s| s.user.clone());
        let live = self
            .sessions
            .get(session)
            .is_some_and(|s| s.conn == Some(conn));
        let (Some(user), true) = (user, live) else {
            // The joiner went away meanwhile: it leaves again.
            room.deliver(seq, event, &mut self.outbox);
            let time = self.time(now);
            self.cluster_publish(room_id, time, header.user, "leave", "", 0);
            self.unhold_room(room_id, session);
            return;
        };
        // Events from before the join go to the old members only: the joiner sees them in
        // the history frames, which hold exactly the events before its own.
        room.flush(&mut self.outbox);
        for frame in room.history_frames() {
            self.send_direct(conn, frame);
        }
        let room = &mut self.rooms[room_id];
        room.add(session, conn, user.clone());
        room.remote.remove(user.as_str());
        room.deliver(seq, event, &mut self.outbox);
        if let Some(session) = self.sessions.get_mut(session) {
            session.rooms.push(room_id);
        }
        let time = self.time(now);
        let room = &mut self.rooms[room_id];
        let name = room.name().as_str().to_owned();
        let list = encode_event(time, user.as_str(), "list", room.names());
        let game = room
            .game_state()
            .map(|state| encode_event(time, user.as_str(), "game", state));
        let has_poses = room.has_poses();
        self.send_direct(conn, encode_user_frame(&name, false, [&list]));
        if let Some(game) = game {
            self.send_direct(conn, encode_user_frame(&name, false, [&game]));
        }
        if has_poses {
            self.queue_tick(room_id);
        }
    }

    /// The room was created for a join that did not happen: its creator does not hold it.
    fn unhold_room(&mut self, room_id: RoomId, session: SessionId) {
        if self.rooms[room_id].unhold(session) {
            let ip = self.sessions.get_mut(session).map(|s| {
                s.held = s.held.saturating_sub(1);
                s.ip
            });
            if let Some(ip) = ip {
                self.unhold_ip(ip);
            }
        }
        self.drop_if_idle(room_id);
    }

    /// A request Redis could not carry out: its client is told (503).
    pub(super) fn op_failed(&mut self, now: Instant, id: u64) {
        let Some(op) = self.finish_op(id) else {
            return;
        };
        match op {
            Op::Msg { conn, room } => {
                let detail = context(Some(&room), Some(RoomKind::Msg.as_str()));
                self.refuse(now, conn, Refusal::ClusterDown, &detail);
            }
            Op::Join {
                session,
                conn,
                room,
            } => {
                let name = self.rooms.get(room).map(|r| r.name().as_str().to_owned());
                if let Some(r) = self.rooms.get_mut(room) {
                    r.joining = r.joining.saturating_sub(1);
                }
                let detail = context(name.as_deref(), Some(RoomKind::Join.as_str()));
                self.refuse(now, conn, Refusal::ClusterDown, &detail);
                if self.rooms.get(room).is_some() {
                    self.unhold_room(room, session);
                }
            }
            Op::Login { conn, user } => {
                let detail = object(json!({ "user": user.as_str() }));
                self.refuse(now, conn, Refusal::ClusterDown, &detail);
            }
            Op::Resume { conn, .. } | Op::Rooms { conn } => {
                self.refuse(now, conn, Refusal::ClusterDown, &Map::new());
            }
            Op::Account {
                conn, user, change, ..
            } => self.account_failed(now, conn, &user, change),
            Op::Game { conn, room, .. } => {
                let name = self.rooms.get(room).map(|r| r.name().as_str().to_owned());
                let detail = context(name.as_deref(), Some(RoomKind::Game.as_str()));
                self.refuse(now, conn, Refusal::ClusterDown, &detail);
            }
            Op::Resuming {
                conn,
                session,
                rooms,
                ..
            } => {
                for room in rooms {
                    if let Some(r) = self.rooms.get_mut(room) {
                        r.joining = r.joining.saturating_sub(1);
                    }
                }
                self.refuse(now, conn, Refusal::ClusterDown, &Map::new());
                if let Some(state) = self.conns.get_mut(conn) {
                    state.session = None;
                }
                // Detached, it ends after the grace with its leave events, as any session.
                self.sessions.detach(session, now);
                if let Some(token) = self.sessions.get(session).map(|s| s.token().to_owned()) {
                    self.expire_session(&token);
                }
            }
        }
    }

    fn name_claimed(&mut self, now: Instant, id: u64, ok: bool) {
        let Some(Op::Login { conn, user }) = self.finish_op(id) else {
            return;
        };
        let gone = self.conns.get(conn).is_none_or(|c| c.session.is_some());
        if ok && gone {
            self.cluster_out(ClusterOut::ReleaseName {
                folded: user.folded(),
            });
            return;
        }
        let detail = object(json!({ "user": user.as_str() }));
        if !ok {
            let refusal = Refusal::NameTaken {
                user: user.as_str().to_owned(),
            };
            return self.refuse(now, conn, refusal, &detail);
        }
        if let Err(refusal) = self.start_session(now, conn, user.clone()) {
            self.cluster_out(ClusterOut::ReleaseName {
                folded: user.folded(),
            });
            self.refuse(now, conn, refusal, &detail);
        }
    }

    /// A session another node kept is this node's now: it joins its rooms here (subscribing
    /// to those it has none of), and is answered once they are all read.
    fn session_claimed(&mut self, now: Instant, id: u64, found: Option<(String, Vec<String>)>) {
        let Some(Op::Resume { conn, seen }) = self.finish_op(id) else {
            return;
        };
        let Some((user, mut rooms)) = found else {
            return self.refuse(now, conn, Refusal::SessionExpired, &Map::new());
        };
        let Some(ip) = self.conns.get(conn).map(|c| c.ip) else {
            return; // gone: the session's record is gone too; the grace of no one runs
        };
        let session = UserName::parse(&user).ok().and_then(|user| {
            let token = self.new_token().ok()?;
            self.sessions.login(user, conn, ip, token).ok()
        });
        let Some(session) = session else {
            return self.refuse(now, conn, Refusal::SessionExpired, &Map::new());
        };
        if let Some(state) = self.conns.get_mut(conn) {
            state.session = Some(session);
        }
        rooms.sort();
        let mut ids = Vec::new();
        for name in rooms {
            let Ok(name) = RoomName::parse(&name) else {
                continue;
            };
            let room_id = match self.room_ids.get(name.as_str()) {
                Some(&id) => id,
                None => self.create_room(name),
            };
            self.rooms[room_id].joining += 1;
            ids.push(room_id);
        }
        self.start_op(
            now,
            Op::Resuming {
                conn,
                session,
                seen,
                rooms: ids,
            },
        );
        self.resumes_synced(now);
    }

    /// Takeovers whose rooms are all read are answered.
    fn resumes_synced(&mut self, now: Instant) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let ready: Vec<u64> = cluster
            .ops
            .iter()
            .filter(|(_, (_, op))| match op {
                Op::Resuming { rooms, .. } => rooms
                    .iter()
                    .all(|r| cluster.feeds.get(r).is_some_and(|f| f.synced)),
                _ => false,
            })
            .map(|(&id, _)| id)
            .collect();
        for id in ready {
            if let Some(Op::Resuming {
                conn,
                session,
                seen,
                rooms,
            }) = self.finish_op(id)
            {
                self.finish_remote_resume(now, conn, session, &seen, rooms);
            }
        }
    }

    /// The resume's answer, as on the node that kept the session (§9.3): 202, then per room
    /// what the client missed and the game; the room hears the user is back.
    fn finish_remote_resume(
        &mut self,
        now: Instant,
        conn: ConnId,
        session: SessionId,
        seen: &[(String, u64)],
        rooms: Vec<RoomId>,
    ) {
        let Some(user) = self.sessions.get(session).map(|s| s.user.clone()) else {
            return;
        };
        if self.logins.note(now) {
            log::info!("{} resumed here from another node", user.as_str());
        }
        self.save_session(session, None);
        let detail = self.session_detail(session, true);
        self.reply(
            now,
            conn,
            Code::Accepted,
            super::lifecycle::ACCESS_GRANTED,
            &detail,
        );
        let time = self.time(now);
        for room_id in rooms {
            let room = &mut self.rooms[room_id];
            room.joining = room.joining.saturating_sub(1);
            room.flush(&mut self.outbox);
            room.add(session, conn, user.clone());
            room.remote.remove(user.as_str());
            if let Some(session) = self.sessions.get_mut(session) {
                session.rooms.push(room_id);
            }
            let room = &mut self.rooms[room_id];
            let name = room.name().as_str().to_owned();
            let after = seen.iter().find(|(r, _)| *r == name).map(|&(_, seq)| seq);
            let (gone, frames) = room.missed_since(after);
            let game = room
                .game_state()
                .map(|state| encode_event(time, user.as_str(), "game", state));
            let has_poses = room.has_poses();
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
            self.cluster_publish(room_id, time, user.as_str(), "back", "", 0);
            if has_poses {
                self.queue_tick(room_id);
            }
        }
    }

    /// Another node resumed this session: it is dropped here without leave events (its
    /// rooms' members on that node carry on), and a still-open connection is told.
    fn session_taken(&mut self, now: Instant, token: &str, node: &str) {
        let Some(session_id) = self.sessions.by_token(token) else {
            return;
        };
        if let Some(conn) = self.sessions.get(session_id).and_then(|s| s.conn) {
            if self.conns.close(conn).is_some() {
                let frame = self.reply_frame(now, &Refusal::ResumedElsewhere, &Map::new());
                self.outbox.send(conn, frame);
                self.outbox.close(conn);
            }
        }
        let Some(session) = self.sessions.end(session_id) else {
            return;
        };
        if self.logins.note(now) {
            log::info!("{} resumed on another node", session.user.as_str());
        }
        for _ in 0..session.held {
            self.unhold_ip(session.ip);
        }
        for room_id in session.rooms {
            let Some(room) = self.rooms.get_mut(room_id) else {
                continue;
            };
            room.flush(&mut self.outbox);
            room.unhold(session_id);
            if room.remove(session_id).is_some() {
                room.remote.insert(session.user.as_str(), node);
            }
            self.drop_if_idle(room_id);
        }
    }

    /// The answer to a rooms request, as the single node words it (§3.3).
    fn rooms_page(&mut self, now: Instant, id: u64, rooms: Vec<(String, usize)>, more: bool) {
        let Some(Op::Rooms { conn }) = self.finish_op(id) else {
            return;
        };
        let next = match more {
            true => rooms.last().map(|(name, _)| name.clone()),
            false => None,
        };
        let rooms: Vec<_> = rooms
            .into_iter()
            .map(|(room, users)| json!({ "room": room, "users": users }))
            .collect();
        let mut detail = object(json!({ "rooms": rooms }));
        if let Some(next) = next {
            detail.insert("next".into(), next.into());
        }
        let frame = encode_reply(
            self.time(now),
            Code::Ok,
            "Rooms and their member counts.",
            &detail,
        );
        self.send_direct(conn, frame);
    }

    /// Poses another node's members sent at its tick: kept, merged into the next tick here.
    fn remote_poses(&mut self, room: &str, payload: &Bytes) {
        let Some(&room_id) = self.room_ids.get(room) else {
            return;
        };
        let Some(newline) = memchr::memchr(b'\n', payload) else {
            return;
        };
        let node = String::from_utf8_lossy(&payload[..newline]).into_owned();
        if self.cluster.as_ref().is_some_and(|c| c.node == node) {
            return;
        }
        let mut changed = false;
        let room_ref = &mut self.rooms[room_id];
        let mut rest = payload.slice(newline + 1..);
        while !rest.is_empty() {
            let end = memchr::memchr(b'\n', &rest).unwrap_or(rest.len());
            let line = rest.slice(..end);
            rest = rest.slice((end + 1).min(rest.len())..);
            let Some(space) = memchr::memchr(b' ', &line) else {
                continue;
            };
            let Ok(user) = std::str::from_utf8(&line[..space]) else {
                continue;
            };
            changed |= room_ref
                .remote
                .set_pose(user, &node, line.slice(space + 1..));
        }
        if changed {
            self.queue_tick(room_id);
        }
    }

    /// After a tick: the poses this node's members changed, for the other nodes, one message
    /// per room (only where other nodes have members).
    pub(super) fn publish_poses(&mut self, room_id: RoomId) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let outgoing = std::mem::take(&mut room.outgoing);
        if outgoing.is_empty() || room.remote.is_empty() {
            return;
        }
        let size: usize = outgoing.iter().map(|(u, e)| u.len() + e.len() + 2).sum();
        let mut payload = Vec::with_capacity(cluster.node.len() + 1 + size);
        payload.extend_from_slice(cluster.node.as_bytes());
        for (user, event) in outgoing {
            payload.push(b'\n');
            payload.extend_from_slice(user.as_bytes());
            payload.push(b' ');
            payload.extend_from_slice(&event);
        }
        let room = room.name().as_str().to_owned();
        self.cluster_out(ClusterOut::Poses {
            room,
            payload: Bytes::from(payload),
        });
    }

    /// The other nodes reaped this node while it could not reach Redis: its sessions are
    /// gone from the cluster. Every connection is told and closed, and the node starts
    /// afresh with an empty lobby.
    fn cluster_reset(&mut self, now: Instant) {
        log::warn!("the cluster declared this node dead (Redis was unreachable too long): every session here ends");
        self.flush_all();
        let frame = self.reply_frame(now, &Refusal::ClusterLost, &Map::new());
        for conn in self.conns.drain() {
            self.outbox.send(conn, frame.clone());
            self.outbox.close(conn);
        }
        self.sessions.clear();
        self.held_by_ip.clear();
        self.tick_rooms.clear();
        let ops = self
            .cluster
            .as_mut()
            .map(|cluster| {
                cluster.holds.clear();
                std::mem::take(&mut cluster.ops)
            })
            .unwrap_or_default();
        for (_, op) in ops.into_values() {
            // A registration in flight gives its name back (its client is gone).
            if let Op::Account {
                user,
                change: false,
                ..
            } = op
            {
                self.accounts.release(&user.folded());
            }
        }
        let rooms: Vec<RoomId> = self.rooms.iter().map(|(id, _)| id).collect();
        for room_id in rooms {
            if room_id != self.lobby {
                self.remove_room(room_id);
            }
        }
        let lobby = self.lobby;
        let members: Vec<SessionId> = self.rooms[lobby].member_sessions();
        for session in members {
            self.rooms[lobby].remove(session);
        }
        self.rooms[lobby].remote.clear();
        self.watch(lobby);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_cut_around_their_seq_and_read_back() {
        let (prefix, suffix) = split_event(1.5, "alice", "msg", "hi");
        assert_eq!(
            &prefix[..],
            br#"{"time":1.5,"user":"alice","type":"msg","seq":"#
        );
        assert_eq!(&suffix[..], br#","data":"hi"}"#);
        let payload = Bytes::from(format!(
            "7 n1 3 msg alice\n{}7{}",
            String::from_utf8_lossy(&prefix),
            String::from_utf8_lossy(&suffix)
        ));
        let (header, event) = parse_payload(&payload).expect("a payload");
        assert_eq!(
            header,
            Header {
                seq: 7,
                node: "n1",
                op: 3,
                kind: "msg",
                user: "alice"
            }
        );
        let event: serde_json::Value = serde_json::from_slice(&event).expect("JSON");
        assert_eq!(event["seq"], 7);
        assert_eq!(payload_seq(&payload), Some(7));
        assert!(parse_payload(&Bytes::from("7 n1 3 msg\n{}")).is_none());
        assert!(parse_payload(&Bytes::from("x n1 3 msg a\n{}")).is_none());
        assert!(parse_payload(&Bytes::from("7 n1 3 msg a b\n{}")).is_none());
    }
}
