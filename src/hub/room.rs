//! One room and the rules that change it: who is in it, its numbered history, the events
//! waiting to go out as one frame, the members' poses (head and tracked parts) and their tick,
//! its shared objects, and its game.
//!
//! Every history event (msg, join, leave, game, away, back) gets the room's next sequence
//! number, dense and increasing by one, and is kept in the history; state (poses, member
//! lists) has none. A client that knows the last seq it received can be sent exactly what it
//! missed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use super::history::History;
use super::ids::{ConnId, RoomId, SessionId};
use super::interest::{Rule, Selector};
use super::objects::Objects;
use super::outbox::{Outbox, Pending, Record};
use super::refusal::Refusal;
use super::remote::Remotes;
use crate::frame::Frame;
use crate::game::{self, Game};
use serde::Serialize;

use crate::protocol::{
    encode_event, encode_history_event, encode_user_frame, Avatar, GameCommand, HistoryRange,
    Label, Pose, PoseError, RoomName, Transform, UserName, Vec3,
};

/// Events a room may collect before they are flushed, so a batch frame stays small.
const MAX_BATCH: usize = 256;
/// Bytes of events a room may collect before they are flushed: batching pays off in syscalls
/// long before this, and small frames keep latency and per-client bursts low.
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// A member and its pose state in this room.
#[derive(Debug)]
pub(crate) struct Member {
    pub session: SessionId,
    /// Where the member's frames go; `None` while its session is detached (it receives
    /// nothing and its pose is out of the ticks until it resumes).
    pub conn: Option<ConnId>,
    pub user: UserName,
    /// The head's pose.
    pose: Option<Pose>,
    /// Tracked parts beside the head, in name order (at most `--max-parts`).
    parts: Vec<(Label, Pose)>,
    /// The pose changed since the last tick.
    pose_changed: bool,
    /// With interest management: the members whose pose this member was last sent, by index
    /// in `members` (kept right when members leave), so one coming into range is sent in full
    /// and one going out gets `out_of_range`.
    visible: Vec<u32>,
    /// The member gets every pose at its next tick instead of the changes (it just joined, or
    /// its queue drained after ticks were skipped).
    needs_snapshot: bool,
}

impl Member {
    /// The member's transform event: its head and every tracked part. `None` without a pose.
    fn event(&self, time: f64) -> Option<Bytes> {
        let head = self.pose.as_ref()?;
        let avatar = Avatar {
            head,
            parts: &self.parts,
        };
        Some(encode_event(time, self.user.as_str(), "transform", avatar))
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    id: RoomId,
    name: RoomName,
    /// Seq of the next history event.
    next_seq: u64,
    /// History events also go to the store.
    persist: bool,
    members: Vec<Member>,
    /// Position of each member in `members`, so a 90 Hz pose update is O(1).
    index: HashMap<SessionId, usize>,
    history: History,
    /// Events produced since the room was last flushed; they go out as one frame.
    batch: Vec<Bytes>,
    batch_bytes: usize,
    /// In the hub's list of rooms with tick work.
    tick_queued: bool,
    game: Option<Box<dyn Game>>,
    /// Whose turn the game is on, and since when (for the turn timeout).
    turn: Option<(String, Instant)>,
    /// The member who created the room, while still in it: holds it against their
    /// `max_held_rooms`.
    holder: Option<SessionId>,
    /// Shared objects and who holds them.
    objects: Objects,
    /// This room's entry in the hub's claim clock: when its earliest claim TTL runs out.
    claim_deadline: Option<Instant>,
    /// Interest selection and its buffers, made at the first tick with interest management.
    selector: Option<Selector>,
    /// Members came or went since the selector last saw their names.
    roster_changed: bool,

    // Cluster mode (`--redis`) only; empty otherwise.
    /// Members on other nodes and their poses.
    pub remote: Remotes,
    /// Local users who left and still get the room's events up to their own leave event,
    /// which comes back from Redis after they left here.
    departing: Vec<(String, ConnId)>,
    /// Local joins waiting for their join event.
    pub joining: usize,
    /// At its ticks the room hands out its members' changed poses for the other nodes.
    pub publish_poses: bool,
    /// The next tick hands out every member's pose, changed or not (another node's member
    /// joined and has none of them).
    pub republish_poses: bool,
    /// What the last tick handed out: each member's name and transform event.
    pub outgoing: Vec<(String, Bytes)>,
    /// This node owns the room's game (holds its lease in Redis): it alone applies commands.
    pub game_owned: bool,
    /// The game's state as the last game event (or the room's sync) said, for joiners, on a
    /// node that does not own the game.
    pub game_cache: Option<Value>,
}

impl Room {
    /// A room whose first history event gets `first_seq`; with `persist`, every history
    /// event is also handed to the store.
    pub fn new(
        id: RoomId,
        name: RoomName,
        history: History,
        first_seq: u64,
        persist: bool,
    ) -> Self {
        Room {
            id,
            name,
            next_seq: first_seq,
            persist,
            members: Vec::new(),
            index: HashMap::new(),
            history,
            batch: Vec::new(),
            batch_bytes: 0,
            tick_queued: false,
            game: None,
            turn: None,
            holder: None,
            objects: Objects::default(),
            claim_deadline: None,
            selector: None,
            roster_changed: true,
            remote: Remotes::default(),
            departing: Vec::new(),
            joining: 0,
            publish_poses: false,
            republish_poses: false,
            outgoing: Vec::new(),
            game_owned: false,
            game_cache: None,
        }
    }

    pub fn name(&self) -> &RoomName {
        &self.name
    }

    #[cfg(test)]
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn add(&mut self, session: SessionId, conn: ConnId, user: UserName) {
        self.index.insert(session, self.members.len());
        self.members.push(Member {
            session,
            conn: Some(conn),
            user,
            pose: None,
            parts: Vec::new(),
            pose_changed: false,
            visible: Vec::new(),
            needs_snapshot: true,
        });
        self.roster_changed = true;
    }

    pub fn remove(&mut self, session: SessionId) -> Option<Member> {
        let at = self.index.remove(&session)?;
        self.roster_changed = true;
        // The last member moves into the leaver's place: the lists of who saw whom follow.
        let (gone, moved) = (at as u32, self.members.len() as u32 - 1);
        for member in &mut self.members {
            if member.visible.is_empty() {
                continue;
            }
            member.visible.retain(|&i| i != gone);
            for i in &mut member.visible {
                if *i == moved {
                    *i = gone;
                }
            }
        }
        let member = self.members.swap_remove(at);
        if let Some(moved) = self.members.get(at) {
            self.index.insert(moved.session, at);
        }
        Some(member)
    }

    /// Member names in plain string order, the members on other nodes included.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.members.iter().map(|m| m.user.as_str()).collect();
        names.extend(self.remote.names());
        names.sort_unstable();
        names
    }

    /// Members on this node and on the others.
    pub fn cluster_len(&self) -> usize {
        self.members.len() + self.remote.len()
    }

    /// Nothing keeps the room on this node: no member, no join waiting for its event, no
    /// leaver waiting for its own leave event.
    pub fn is_idle(&self) -> bool {
        self.members.is_empty() && self.departing.is_empty() && self.joining == 0
    }

    /// A history event numbered elsewhere (by Redis), in seq order: kept and batched for the
    /// members like a local one.
    pub fn deliver(&mut self, seq: u64, event: Bytes, outbox: &mut Outbox) {
        self.history.remember(seq, &event);
        self.next_seq = seq + 1;
        self.batch(event, outbox);
    }

    /// The room as Redis has it: its last seq and its kept tail (oldest first) replace what
    /// this node had.
    pub fn resync(&mut self, last_seq: u64, tail: impl IntoIterator<Item = (u64, Bytes)>) {
        self.history.clear();
        for (seq, event) in tail {
            self.history.remember(seq, &event);
        }
        self.next_seq = last_seq + 1;
    }

    /// The events a live member missed are gone (Redis lost them, or trimmed them first): it
    /// is told so and gets the kept history to resynchronize from, and numbering goes on
    /// after `last_seq`.
    pub fn skip_to(&mut self, last_seq: u64) {
        self.next_seq = self.next_seq.max(last_seq + 1);
    }

    /// Sessions of the members here.
    pub fn member_sessions(&self) -> Vec<SessionId> {
        self.members.iter().map(|m| m.session).collect()
    }

    /// Connections of the members here, for telling them all one thing.
    pub fn member_conns(&self) -> Vec<ConnId> {
        self.members.iter().filter_map(|m| m.conn).collect()
    }

    /// `user` left on `conn`; it gets the room's events until its own leave event.
    pub fn depart(&mut self, user: &str, conn: ConnId) {
        self.departing.push((user.to_owned(), conn));
    }

    /// `user`'s own leave event was delivered (and flushed): it gets nothing more. True if it
    /// was departing.
    pub fn departed(&mut self, user: &str) -> bool {
        let before = self.departing.len();
        self.departing.retain(|(u, _)| u != user);
        self.departing.len() != before
    }

    /// Publishes a history event: numbers it, encodes it once, keeps it in the history and
    /// adds it to the batch every member gets. Returns its seq.
    pub fn publish<D: Serialize>(
        &mut self,
        time: f64,
        user: &str,
        kind: &str,
        data: D,
        outbox: &mut Outbox,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = encode_history_event(time, user, kind, seq, data);
        self.history.remember(seq, &event);
        if self.persist {
            outbox.persist(Record::Event {
                room: self.name.as_str().to_owned(),
                seq,
                time,
                body: event.clone(),
            });
        }
        self.batch(event, outbox);
        seq
    }

    /// Puts back a history event read from the store at start-up.
    pub fn restore(&mut self, seq: u64, event: Bytes) {
        self.history.remember(seq, &event);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    /// The store says the room reached `last_seq` (its kept events may be fewer).
    pub fn restore_last_seq(&mut self, last_seq: u64) {
        self.next_seq = self.next_seq.max(last_seq + 1);
    }

    /// The seq the next history event will get: one past the last one published.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn batch(&mut self, event: Bytes, outbox: &mut Outbox) {
        if self.batch.is_empty() {
            outbox.batched(self.id);
        }
        self.batch_bytes += event.len();
        self.batch.push(event);
        if self.batch.len() >= MAX_BATCH || self.batch_bytes >= MAX_BATCH_BYTES {
            self.flush(outbox);
        }
    }

    /// The frames a joiner receives with the room's past, oldest first; encoded once per
    /// change and shared by every joiner.
    pub fn history_frames(&mut self) -> Vec<Frame> {
        self.history.frames(self.name.as_str())
    }

    /// What a resuming member missed since `after` (the last seq it received; `None` if it did
    /// not say): the history frames to send, and whether the client must resynchronize (410)
    /// because what it missed is no longer kept or its seq is beyond this room's latest (a
    /// client from before a restart or from an earlier room of this name).
    pub fn missed_since(&mut self, after: Option<u64>) -> (bool, Vec<Frame>) {
        let last = self.next_seq - 1;
        let whole = |room: &mut Room| room.history.frames(room.name.as_str());
        let Some(after) = after else {
            return (false, whole(self));
        };
        let first_kept = self
            .history
            .kept()
            .map_or(self.next_seq, |(first, _)| first);
        if after > last || after + 1 < first_kept {
            return (true, whole(self));
        }
        (false, self.history.frames_after(self.name.as_str(), after))
    }

    /// At most `limit` kept events next to a seq, in seq order; the kept range when none.
    pub fn query_history(
        &self,
        range: HistoryRange,
        limit: usize,
    ) -> Result<Frame, Option<(u64, u64)>> {
        let events = self.history.query(range, limit);
        if events.is_empty() {
            return Err(self.history.kept());
        }
        Ok(encode_user_frame(self.name.as_str(), true, &events))
    }

    /// Bytes of history (and its cached frames) the room holds.
    pub fn history_bytes(&self) -> usize {
        self.history.bytes()
    }

    /// Drops the oldest history events down to `target` bytes; the bytes freed.
    pub fn shrink_history(&mut self, target: usize) -> usize {
        self.history.shrink_to(target)
    }

    /// The session holding the room (its creator, while a member).
    #[cfg(test)]
    pub fn holder(&self) -> Option<SessionId> {
        self.holder
    }

    /// Marks the creator as holding the room.
    pub fn hold(&mut self, session: SessionId) {
        self.holder = Some(session);
    }

    /// The holder leaves: nobody holds the room any more. True if `session` held it.
    pub fn unhold(&mut self, session: SessionId) -> bool {
        if self.holder == Some(session) {
            self.holder = None;
            return true;
        }
        false
    }

    /// Stores a member's head pose and applies its part changes (latest-wins per part, `null`
    /// drops one); true when anything changed and the room needs a tick. Refused whole when
    /// the member would track more than `max_parts` parts.
    pub fn set_pose(
        &mut self,
        session: SessionId,
        transform: Transform,
        max_parts: usize,
    ) -> Result<bool, PoseError> {
        let Some(member) = self.member_mut(session) else {
            return Ok(false);
        };
        let Transform { head, parts } = transform;
        if !parts.is_empty() {
            let has = |name: &Label| member.parts.binary_search_by(|(n, _)| n.cmp(name)).is_ok();
            let count = parts
                .iter()
                .fold(member.parts.len(), |count, (name, pose)| {
                    match (has(name), pose) {
                        (false, Some(_)) => count + 1,
                        (true, None) => count - 1,
                        _ => count,
                    }
                });
            if count > max_parts {
                return Err(PoseError::TooManyParts {
                    count,
                    max: max_parts,
                });
            }
        }
        let mut changed = member.pose != Some(head);
        member.pose = Some(head);
        for (name, pose) in parts {
            let at = member.parts.binary_search_by(|(n, _)| n.cmp(&name));
            match (at, pose) {
                (Ok(at), Some(pose)) if member.parts[at].1 != pose => {
                    member.parts[at].1 = pose;
                    changed = true;
                }
                (Ok(_), Some(_)) => {}
                (Ok(at), None) => {
                    member.parts.remove(at);
                    changed = true;
                }
                (Err(at), Some(pose)) => {
                    member.parts.insert(at, (name, pose));
                    changed = true;
                }
                (Err(_), None) => {}
            }
        }
        member.pose_changed |= changed;
        Ok(changed)
    }

    /// Whether a joiner has something to be sent at the next tick: some member's pose, or a
    /// shared object.
    pub fn has_poses(&self) -> bool {
        !self.objects.is_empty()
            || self.members.iter().any(|m| m.pose.is_some())
            || self.remote.has_poses()
    }

    /// The shared objects.
    pub fn objects_mut(&mut self) -> &mut Objects {
        &mut self.objects
    }

    /// Records this room's entry in the hub's claim clock; the one it replaces.
    pub fn set_claim_deadline(&mut self, at: Option<Instant>) -> Option<Instant> {
        std::mem::replace(&mut self.claim_deadline, at)
    }

    /// This room's entry in the hub's claim clock.
    pub fn claim_deadline(&self) -> Option<Instant> {
        self.claim_deadline
    }

    /// The member's session lost its connection: it gets nothing, and its pose leaves the
    /// ticks, until it resumes.
    pub fn detach(&mut self, session: SessionId) {
        if let Some(member) = self.member_mut(session) {
            member.conn = None;
            member.pose = None;
            member.parts.clear();
            member.pose_changed = false;
            member.visible.clear();
        }
    }

    /// The member's session resumed on `conn`: it gets every pose at the next tick.
    pub fn attach(&mut self, session: SessionId, conn: ConnId) {
        if let Some(member) = self.member_mut(session) {
            member.conn = Some(conn);
            member.needs_snapshot = true;
        }
    }

    /// The member gets every pose at the next tick (its queue drained after skipped ticks).
    pub fn resend_poses_to(&mut self, session: SessionId) {
        if let Some(member) = self.member_mut(session) {
            member.needs_snapshot = true;
        }
    }

    /// True when the room was not yet queued for the next tick (the caller queues it).
    pub fn queue_tick(&mut self) -> bool {
        !std::mem::replace(&mut self.tick_queued, true)
    }

    /// Sends the poses and objects that changed since the last tick. A member that just
    /// joined (or drained a backlog) gets every pose and object instead. Members whose
    /// connection cannot take it now (`reachable` false) are skipped and keep their snapshot
    /// due. Without interest management (`interest` `None`) every member gets the same frame,
    /// encoded once; with it, see [`Room::tick_interest`].
    pub fn tick(
        &mut self,
        time: f64,
        outbox: &mut Outbox,
        reachable: impl Fn(Option<ConnId>) -> bool,
        interest: Option<Rule>,
    ) {
        // Chat produced before the tick reaches members before the poses.
        self.flush(outbox);
        self.tick_queued = false;
        let objects = self.objects.changes(time);
        match interest {
            None => self.tick_everyone(time, outbox, &reachable, objects),
            Some(rule) => self.tick_interest(time, outbox, &reachable, rule, &objects),
        }
        for member in &mut self.members {
            member.pose_changed = false;
        }
    }

    /// One frame of every change, encoded once and shared by every member.
    fn tick_everyone(
        &mut self,
        time: f64,
        outbox: &mut Outbox,
        reachable: &impl Fn(Option<ConnId>) -> bool,
        objects: Vec<Bytes>,
    ) {
        // The full snapshot is only built when some member will get it; in steady streaming
        // only the changed poses are encoded.
        let wants_snapshot = self
            .members
            .iter()
            .any(|m| m.needs_snapshot && reachable(m.conn));
        let mut changed = Vec::new();
        let mut everyone = Vec::new();
        let republish = std::mem::take(&mut self.republish_poses) && self.publish_poses;
        let mut outgoing = Vec::new();
        for member in &self.members {
            if !(member.pose_changed || wants_snapshot || republish) {
                continue;
            }
            let Some(event) = member.event(time) else {
                continue;
            };
            if self.publish_poses && (member.pose_changed || republish) {
                outgoing.push((member.user.as_str().to_owned(), event.clone()));
            }
            if member.pose_changed {
                changed.push(event.clone());
            }
            if wants_snapshot {
                everyone.push(event);
            }
        }
        self.outgoing = outgoing;
        let (remote_changed, remote_all) = self.remote.take_changes(wants_snapshot);
        changed.extend(remote_changed);
        everyone.extend(remote_all);
        changed.extend(objects);
        if wants_snapshot {
            everyone.extend(self.objects.snapshot(time));
        }
        let name = self.name.as_str();
        let changes = (!changed.is_empty()).then(|| encode_user_frame(name, false, &changed));
        let snapshot = (!everyone.is_empty()).then(|| encode_user_frame(name, false, &everyone));
        if changes.is_some() || snapshot.is_some() {
            outbox.stats.pose_tick();
        }
        for member in &mut self.members {
            if !reachable(member.conn) {
                if member.conn.is_some() && (changes.is_some() || member.needs_snapshot) {
                    outbox.stats.tick_skipped_backlog();
                }
                continue;
            }
            let poses = if member.needs_snapshot {
                everyone.len()
            } else {
                changed.len()
            };
            let frame = if member.needs_snapshot {
                if snapshot.is_some() {
                    member.needs_snapshot = false;
                }
                snapshot.clone()
            } else {
                changes.clone()
            };
            if let (Some(frame), Some(conn)) = (frame, member.conn) {
                outbox.stats.delivered(poses as u64);
                outbox.send(conn, frame);
            }
        }
    }

    /// Interest management: each member gets the poses of the members it sees (see
    /// `interest.rs`). Each pose event is encoded at most once per tick, and each member's
    /// frame is those shared encoded events put side by side: no JSON is encoded per
    /// receiver. A member coming into view is sent in full even if it did not move; one going
    /// out of view is sent once as `out_of_range`. Objects are not filtered: every member gets
    /// every object change.
    fn tick_interest(
        &mut self,
        time: f64,
        outbox: &mut Outbox,
        reachable: &impl Fn(Option<ConnId>) -> bool,
        rule: Rule,
        objects: &[Bytes],
    ) {
        let mut selector = self.selector.take().unwrap_or_else(|| Selector::new(rule));
        let positions: Vec<Option<Vec3>> =
            self.members.iter().map(|m| m.pose.map(|p| p.pos)).collect();
        let names: Option<Vec<&str>> = self
            .roster_changed
            .then(|| self.members.iter().map(|m| m.user.as_str()).collect());
        selector.prepare(&positions, names.as_deref());
        self.roster_changed = false;
        let count = self.members.len();
        // Encoded on first use, then shared by every receiver.
        let mut poses: Vec<Option<Bytes>> = vec![None; count];
        let mut gone: Vec<Option<Bytes>> = vec![None; count];
        let mut all_objects: Option<Vec<Bytes>> = None;
        // Per receiver, who it saw last tick and who it sees now: marked with the receiver's
        // number, so the marks need no clearing between receivers.
        let mut saw = vec![0u32; count];
        let mut sees = vec![0u32; count];
        let mut seen = Vec::new();
        let mut payload: Vec<Bytes> = Vec::new();
        for receiver in 0..count {
            let Some(conn) = self.members[receiver].conn.filter(|&c| reachable(Some(c))) else {
                continue;
            };
            let mark = receiver as u32 + 1;
            let fresh = self.members[receiver].needs_snapshot;
            let mut previous = std::mem::take(&mut self.members[receiver].visible);
            for &i in &previous {
                if let Some(slot) = saw.get_mut(i as usize) {
                    *slot = mark;
                }
            }
            selector.visible(receiver, &mut seen);
            payload.clear();
            for &i in &seen {
                let Some(other) = self.members.get(i as usize) else {
                    continue;
                };
                sees[i as usize] = mark;
                let entering = fresh || saw[i as usize] != mark;
                if !(entering || other.pose_changed) {
                    continue;
                }
                let slot = &mut poses[i as usize];
                if slot.is_none() {
                    *slot = other.event(time);
                }
                payload.extend(slot.iter().cloned());
            }
            for &i in &previous {
                let Some(other) = self.members.get(i as usize) else {
                    continue;
                };
                // A detached member has no pose: its away event said so.
                if sees[i as usize] == mark || other.pose.is_none() {
                    continue;
                }
                let event = gone[i as usize].get_or_insert_with(|| {
                    encode_event(time, other.user.as_str(), "out_of_range", "")
                });
                payload.push(event.clone());
            }
            match fresh {
                true => {
                    let all = all_objects.get_or_insert_with(|| self.objects.snapshot(time));
                    payload.extend(all.iter().cloned());
                }
                false => payload.extend(objects.iter().cloned()),
            }
            if !payload.is_empty() {
                outbox.send(conn, encode_user_frame(self.name.as_str(), false, &payload));
            }
            previous.clear();
            previous.extend_from_slice(&seen);
            let member = &mut self.members[receiver];
            member.visible = previous;
            member.needs_snapshot = false;
        }
        self.selector = Some(selector);
    }

    /// Ends every claim the member holds here (it is leaving); the objects, in name order.
    pub fn drop_claims(&mut self, session: SessionId) -> Vec<Label> {
        self.objects.release_all_of(session)
    }

    /// Applies a game command from `user` at `now`; the new state to broadcast, or the
    /// refusal.
    pub fn play(
        &mut self,
        now: Instant,
        user: &UserName,
        command: GameCommand,
    ) -> Result<Value, Refusal> {
        let no_game = || Refusal::NoGame {
            room: self.name.as_str().to_owned(),
        };
        match command {
            GameCommand::Start(name) => {
                if self.game.as_ref().is_some_and(|game| game.is_running()) {
                    return Err(Refusal::GameRunning);
                }
                let mut new_game = game::new_game(&name).ok_or(Refusal::UnknownGame { name })?;
                new_game.join(user.as_str())?;
                self.game = Some(new_game);
            }
            GameCommand::Join => {
                let game = self.game.as_mut().ok_or_else(no_game)?;
                game.join(user.as_str())?;
            }
            GameCommand::Move(mv) => {
                let game = self.game.as_mut().ok_or_else(no_game)?;
                game.apply_move(user.as_str(), &mv)?;
            }
            GameCommand::Restart => {
                let game = self.game.as_mut().ok_or_else(no_game)?;
                game.restart()?;
            }
        }
        self.time_turn(now);
        Ok(self.game_state().unwrap_or(Value::Null))
    }

    /// Starts the turn clock when the turn passed to another player (or stops it).
    fn time_turn(&mut self, now: Instant) {
        let turn = self.game.as_ref().and_then(|game| game.turn());
        match (turn, &self.turn) {
            (Some(player), Some((timed, _))) if player == timed => {}
            (Some(player), _) => self.turn = Some((player.to_owned(), now)),
            (None, _) => self.turn = None,
        }
    }

    /// When the current turn runs out, with `timeout`.
    pub fn turn_deadline(&self, timeout: Duration) -> Option<Instant> {
        self.turn.as_ref().map(|(_, since)| *since + timeout)
    }

    /// The player whose turn ran out by `now` forfeits; the new state when that happened.
    pub fn expire_turn(&mut self, now: Instant, timeout: Duration) -> Option<(String, Value)> {
        let (player, since) = self.turn.clone()?;
        if now.saturating_duration_since(since) < timeout {
            return None;
        }
        let game = self.game.as_mut()?;
        let changed = game.time_out(&player);
        let state = game.state();
        self.time_turn(now);
        changed.then_some((player, state))
    }

    /// The game's state, when the room has a game (here, or, in a cluster, on the node that
    /// owns it).
    pub fn game_state(&self) -> Option<Value> {
        match &self.game {
            Some(game) => Some(game.state()),
            None => self.game_cache.clone(),
        }
    }

    /// This node owns the room's game from now on: `game` is what it was (none yet when no
    /// game was ever started); the turn clock starts again now.
    pub fn own_game(&mut self, game: Option<Box<dyn Game>>, now: Instant) {
        self.game = game;
        self.game_owned = true;
        self.turn = None;
        self.time_turn(now);
    }

    /// Seated players of the game who are no longer members here or on any node: a node
    /// that takes the game over missed their leaves while another node owned it.
    pub fn absent_players(&self) -> Vec<String> {
        let Some(game) = &self.game else {
            return Vec::new();
        };
        let names = self.names();
        game.players()
            .into_iter()
            .filter(|player| !names.contains(player))
            .map(str::to_owned)
            .collect()
    }

    /// Another node owns the room's game now.
    pub fn disown_game(&mut self) {
        if let Some(game) = self.game.take() {
            self.game_cache = Some(game.state());
        }
        self.game_owned = false;
        self.turn = None;
    }

    /// Tells the game `user` is gone; the new state when that changed it (a forfeit).
    pub fn leave_game(&mut self, now: Instant, user: &UserName) -> Option<Value> {
        let game = self.game.as_mut()?;
        let state = game.leave(user.as_str()).then(|| game.state());
        self.time_turn(now);
        state
    }

    fn member_mut(&mut self, session: SessionId) -> Option<&mut Member> {
        let at = *self.index.get(&session)?;
        self.members.get_mut(at)
    }

    /// Member of this room: for the model-based tests' invariants.
    #[cfg(test)]
    pub fn has(&self, session: SessionId) -> bool {
        self.index.contains_key(&session)
    }
}

impl Room {
    /// Whether the member's last pose is still waiting for a tick: a new one supersedes it
    /// (counted in the stats).
    pub fn pose_pending(&self, session: SessionId) -> bool {
        self.index
            .get(&session)
            .and_then(|&i| self.members.get(i))
            .is_some_and(|m| m.pose_changed)
    }
}

impl Pending for Room {
    /// Encodes the pending events once and queues the frame to every member.
    fn flush(&mut self, outbox: &mut Outbox) {
        if self.batch.is_empty() {
            return;
        }
        let frame = encode_user_frame(self.name.as_str(), false, &self.batch);
        let recipients = self.members.iter().filter(|m| m.conn.is_some()).count();
        let recipients = recipients + self.departing.len();
        outbox
            .stats
            .delivered((self.batch.len() * recipients) as u64);
        self.batch.clear();
        self.batch_bytes = 0;
        let members = self.members.iter().filter_map(|member| member.conn);
        let departing = self.departing.iter().map(|&(_, conn)| conn);
        for conn in members.chain(departing) {
            outbox.send(conn, frame.clone());
        }
    }
}
