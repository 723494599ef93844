//! One room's state: who is in it, its recent history, the members' latest poses, events waiting
//! to be batched into one frame, and its game. The rules that change it live in `hub`.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::ClientId;
use crate::game::Game;
use crate::protocol::{Pose, RoomName, UserName};

/// Index of a room in the hub's room table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct RoomId(pub usize);

/// A member and its pose state in this room.
#[derive(Debug)]
pub(crate) struct Member {
    pub id: ClientId,
    pub user: UserName,
    pub pose: Option<Pose>,
    /// The pose changed since the last tick.
    pub pose_changed: bool,
    /// The member gets every pose at its next tick instead of the changes (it just joined, or
    /// its queue drained after ticks were skipped).
    pub needs_snapshot: bool,
}

#[derive(Debug)]
pub(crate) struct Room {
    pub name: RoomName,
    members: Vec<Member>,
    /// Position of each member in `members`, so a 90 Hz pose update is O(1).
    index: HashMap<ClientId, usize>,
    /// Last `history` msg/join/leave events, oldest first, already encoded.
    history: VecDeque<Bytes>,
    history_bytes: usize,
    /// Events produced since the room was last flushed; they go out as one frame.
    pub batch: Vec<Bytes>,
    pub batch_bytes: usize,
    /// Queued in the hub's list of rooms with tick work.
    pub tick_queued: bool,
    pub game: Option<Box<dyn Game>>,
}

impl Room {
    pub fn new(name: RoomName) -> Self {
        Room {
            name,
            members: Vec::new(),
            index: HashMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
            batch: Vec::new(),
            batch_bytes: 0,
            tick_queued: false,
            game: None,
        }
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn members_mut(&mut self) -> &mut [Member] {
        &mut self.members
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member_mut(&mut self, id: ClientId) -> Option<&mut Member> {
        let at = *self.index.get(&id)?;
        self.members.get_mut(at)
    }

    pub fn add(&mut self, id: ClientId, user: UserName) {
        self.index.insert(id, self.members.len());
        self.members.push(Member {
            id,
            user,
            pose: None,
            pose_changed: false,
            needs_snapshot: true,
        });
    }

    pub fn remove(&mut self, id: ClientId) -> Option<Member> {
        let at = self.index.remove(&id)?;
        let member = self.members.swap_remove(at);
        if let Some(moved) = self.members.get(at) {
            self.index.insert(moved.id, at);
        }
        Some(member)
    }

    /// Member names in plain string order.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.members.iter().map(|m| m.user.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Keeps `event` among the last `limit` for joiners, and the whole history within
    /// `max_bytes`, so that a joiner's history always fits its outbound queue.
    pub fn remember(&mut self, event: &Bytes, limit: usize, max_bytes: usize) {
        if limit == 0 || event.len() > max_bytes {
            return;
        }
        while self.history.len() >= limit || self.history_bytes + event.len() > max_bytes {
            match self.history.pop_front() {
                Some(old) => self.history_bytes -= old.len(),
                None => break,
            }
        }
        self.history_bytes += event.len();
        self.history.push_back(event.clone());
    }

    pub fn history(&self) -> &VecDeque<Bytes> {
        &self.history
    }
}
