//! What the hub asks the event loop to do, and the one ordering rule between its outputs.
//!
//! Room events produced in one loop pass are batched per room and go out as one frame per
//! room, when the pass drains the outbox. A direct reply (a pong, an error, a list) is not
//! batched, so on its own it could overtake the events its own message caused. The rule: **a
//! direct reply first flushes the recipient's rooms** ([`Outbox::direct`]), so every client
//! sees effects in the order of their causes.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::ids::{ConnId, RoomId, Table};
use crate::frame::Frame;

/// Something the event loop must do.
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue this frame to this connection.
    Send {
        /// Recipient.
        to: ConnId,
        /// Encoded once; clones share the buffer.
        frame: Frame,
    },
    /// Flush what is queued to this connection, then close it. The hub has already forgotten
    /// it; a later `Input::Closed` for it is ignored.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Stop reading this connection until `until`: it is over its message budget, and what
    /// it sends in the meantime would only be dropped. TCP backpressure does the rest.
    Pause {
        /// The connection.
        conn: ConnId,
        /// When its bucket holds a token again.
        until: Instant,
    },
    /// Stop reading this connection until a `Release` for it: its login, registration or
    /// password change is being checked off the loop, and what it sent next (a join, a msg)
    /// must be handled after the answer, not refused for want of it.
    Hold {
        /// The connection.
        conn: ConnId,
    },
    /// Read this held connection again.
    Release {
        /// The connection.
        conn: ConnId,
    },
    /// Hand this to the password hashing service; its result comes back as `Input::Done`
    /// with the same id.
    Work {
        /// Names the result.
        id: u64,
        /// What to compute.
        work: Work,
    },
    /// Hand this to the store to keep.
    Persist(Record),
    /// Hand this to Redis (cluster mode); what it answers comes back as `Input::Cluster`.
    Cluster(super::cluster_messages::ClusterOut),
}

/// Password work for the hashing service (argon2id, off the event loop).
#[derive(Clone, PartialEq, Eq)]
pub enum Work {
    /// A PHC string for a new password.
    Hash {
        /// The password.
        password: String,
    },
    /// Whether a password matches a PHC string; `None` checks it against a dummy hash of the
    /// same cost (an unknown name), so the answer takes as long either way.
    Verify {
        /// The password.
        password: String,
        /// The account's PHC string.
        phc: Option<String>,
    },
}

impl std::fmt::Debug for Work {
    /// Never prints a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Work::Hash { .. } => f.write_str("Hash"),
            Work::Verify { phc, .. } => write!(f, "Verify {{ account: {} }}", phc.is_some()),
        }
    }
}

/// A change for the store (with `--data-dir`): what survives a restart.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A history event of a room.
    Event {
        /// The room's name.
        room: String,
        /// Its seq in the room.
        seq: u64,
        /// Server time.
        time: f64,
        /// The encoded event, byte for byte.
        body: Bytes,
    },
    /// A new account.
    Account {
        /// The name as registered.
        name: String,
        /// The password's PHC string.
        phc: String,
    },
    /// A changed password.
    Password {
        /// The account's name.
        name: String,
        /// The new PHC string.
        phc: String,
    },
}

/// Holds events not yet queued for their recipients (a room's batch).
pub(crate) trait Pending {
    /// Queues what is held, now.
    fn flush(&mut self, outbox: &mut Outbox);
}

/// The hub's outputs in order, and the rooms with a batch waiting.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Output>,
    /// Rooms with unflushed events, in order of their first event.
    batched: Vec<RoomId>,
    /// The server's counters. They live here because every room reaches the outbox (its
    /// flush and tick bump them), while the hub owns it: `Hub::stats` lends them out.
    pub stats: crate::stats::Stats,
}

impl Outbox {
    /// Queues a frame for a connection, as is. Broadcasts and ticks use this; replies use
    /// [`Outbox::direct`].
    pub fn send(&mut self, to: ConnId, frame: Frame) {
        self.queue.push_back(Output::Send { to, frame });
    }

    /// Queues a reply for one connection after the pending events of the rooms its user is
    /// in (`member_of`), so it never overtakes them.
    pub fn direct<P: Pending>(
        &mut self,
        to: ConnId,
        frame: Frame,
        rooms: &mut Table<RoomId, P>,
        member_of: &[RoomId],
    ) {
        for &room in member_of {
            if let Some(room) = rooms.get_mut(room) {
                room.flush(self);
            }
        }
        self.send(to, frame);
    }

    /// Asks for password work; the result comes back with `id`.
    pub fn work(&mut self, id: u64, work: Work) {
        self.queue.push_back(Output::Work { id, work });
    }

    /// Asks the store to keep a record.
    pub fn persist(&mut self, record: Record) {
        self.queue.push_back(Output::Persist(record));
    }

    /// Asks Redis for something (cluster mode).
    pub fn cluster(&mut self, out: super::cluster_messages::ClusterOut) {
        self.queue.push_back(Output::Cluster(out));
    }

    /// Asks the event loop to stop reading a connection until `until`.
    pub fn pause(&mut self, conn: ConnId, until: Instant) {
        self.queue.push_back(Output::Pause { conn, until });
    }

    /// Asks the event loop to stop reading a connection until [`Outbox::release`].
    pub fn hold(&mut self, conn: ConnId) {
        self.queue.push_back(Output::Hold { conn });
    }

    /// Asks the event loop to read a held connection again.
    pub fn release(&mut self, conn: ConnId) {
        self.queue.push_back(Output::Release { conn });
    }

    /// Asks the event loop to flush and close a connection.
    pub fn close(&mut self, conn: ConnId) {
        self.queue.push_back(Output::Close { conn });
    }

    /// Notes that `room` holds a batch to flush before the pass ends.
    pub fn batched(&mut self, room: RoomId) {
        self.batched.push(room);
    }

    /// The rooms with a batch waiting, in order of their first event.
    pub fn take_batched(&mut self) -> Vec<RoomId> {
        std::mem::take(&mut self.batched)
    }

    /// A removed room has nothing to flush.
    pub fn forget(&mut self, room: RoomId) {
        self.batched.retain(|&r| r != room);
    }

    /// The next output, in order.
    pub fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// Nothing queued (batches may still wait).
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Room(Vec<Frame>, ConnId);

    impl Pending for Room {
        fn flush(&mut self, outbox: &mut Outbox) {
            for frame in self.0.drain(..) {
                outbox.send(self.1, frame);
            }
        }
    }

    #[test]
    fn a_direct_reply_follows_the_pending_events_of_its_recipient() {
        let conn = ConnId::new(0, 0);
        let event = Frame::from_body(b"{\"event\":1}");
        let reply = Frame::from_body(b"{\"reply\":1}");
        let mut rooms = Table::default();
        let room: RoomId = rooms.insert(Room(vec![event.clone()], conn));
        let mut outbox = Outbox::default();
        outbox.direct(conn, reply.clone(), &mut rooms, &[room]);
        assert_eq!(
            outbox.pop(),
            Some(Output::Send {
                to: conn,
                frame: event
            })
        );
        assert_eq!(
            outbox.pop(),
            Some(Output::Send {
                to: conn,
                frame: reply
            })
        );
        assert!(outbox.is_empty());
    }
}
