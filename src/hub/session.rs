//! One client's logical state, whatever socket carries it: login, rooms, rate bucket, liveness.

use std::time::Instant;

use super::room::RoomId;
use crate::clock::TokenBucket;
use crate::protocol::UserName;

#[derive(Debug)]
pub(crate) struct Session {
    /// Set by a successful login.
    pub user: Option<UserName>,
    /// Rooms joined, in join order (at most `max_rooms_per_user`).
    pub rooms: Vec<RoomId>,
    pub bucket: TokenBucket,
    pub opened: Instant,
    /// Last message of any kind, for the idle timeout.
    pub last_seen: Instant,
    /// The socket's queue is over its soft limit: pose ticks are skipped until it drains.
    pub backlogged: bool,
}

impl Session {
    pub fn new(now: Instant, burst: f64) -> Self {
        Session {
            user: None,
            rooms: Vec::new(),
            bucket: TokenBucket::new(now, burst),
            opened: now,
            last_seen: now,
            backlogged: false,
        }
    }

    pub fn is_in(&self, room: RoomId) -> bool {
        self.rooms.contains(&room)
    }
}
