//! Games in a cluster (`--redis`): a room's server-authoritative game has exactly one owner
//! node at a time, the holder of the room's game lease in Redis.
//!
//! - The owner applies every command, as a single node does (`room.rs`), and publishes the
//!   new state as the game event; the publish script also keeps that state in Redis as the
//!   game's. Turn timeouts and forfeits (a seated player's leave, from any node, or a dead
//!   node's reaped members) are the owner's too.
//! - A node that does not own the game sends a command to Redis: if nobody holds the lease the
//!   node takes it, with the game's last state, and applies the command itself; otherwise the
//!   command is forwarded to the owner, whose refusal (if any) comes back to the sender's
//!   node. An accepted command is answered by its game event, as on a single node.
//! - The owner renews its lease every heartbeat and lets it go when it has no member in the
//!   room any more. A node with members in a room whose game has no owner (its owner died:
//!   the lease lapsed after [`DEAD_AFTER`](super::cluster::DEAD_AFTER)) takes it over from the
//!   last state at its next heartbeat; the turn clock starts again then.
//! - Every node keeps the last state it saw, for its joiners.

use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::cluster::{ClusterOut, Op};
use super::ids::{ConnId, RoomId};
use super::{context, Hub, Refusal};
use crate::game;
use crate::protocol::{Code, GameCommand, RoomKind, UserName};

impl Hub {
    /// A game command in cluster mode, from a member of the room.
    pub(super) fn cluster_game(
        &mut self,
        now: Instant,
        conn: ConnId,
        room_id: RoomId,
        user: &UserName,
        command: GameCommand,
    ) -> Result<(), Refusal> {
        self.cluster_ready()?;
        if self.rooms[room_id].game_owned {
            let state = self.rooms[room_id].play(now, user, command)?;
            let time = self.time(now);
            self.publish(room_id, time, user.as_str(), "game", state);
            return Ok(());
        }
        let encoded = serde_json::to_vec(&command).unwrap_or_default();
        let room = self.rooms[room_id].name().as_str().to_owned();
        let op = self.start_op(
            now,
            Op::Game {
                conn,
                room: room_id,
                user: user.clone(),
                command,
            },
        );
        self.outbox.cluster(ClusterOut::Game {
            op,
            room,
            user: user.as_str().to_owned(),
            command: Bytes::from(encoded),
        });
        Ok(())
    }

    /// This node holds the room's game lease now: the game comes back from its last state,
    /// and the command that asked for it (if any) is applied.
    pub(super) fn game_lease(&mut self, now: Instant, op: u64, room: &str, state: Option<Bytes>) {
        let Some(&room_id) = self.room_ids.get(room) else {
            // The room went from here meanwhile: let the game go again.
            self.outbox.cluster(ClusterOut::ReleaseLease {
                room: room.to_owned(),
            });
            return;
        };
        let restored = state
            .and_then(|state| serde_json::from_slice(&state).ok())
            .and_then(|state| game::restore_game(&state));
        if !self.rooms[room_id].game_owned {
            if self.logins.note(now) {
                log::info!("this node owns the game of room {room:?} now");
            }
            self.rooms[room_id].own_game(restored, now);
            // Players who left while another node owned the game forfeit now.
            for player in self.rooms[room_id].absent_players() {
                self.forfeit(now, room_id, &player);
            }
        }
        if op == 0 {
            return;
        }
        let Some(Op::Game {
            conn,
            room: for_room,
            user,
            command,
        }) = self.finish_op(op)
        else {
            return;
        };
        if for_room != room_id || self.conns.get(conn).is_none() {
            return;
        }
        if let Err(refusal) = self.cluster_game(now, conn, room_id, &user, command) {
            let detail = context(Some(room), Some(RoomKind::Game.as_str()));
            self.refuse(now, conn, refusal, &detail);
        }
    }

    /// A command another node's member sent, for the game this node owns.
    pub(super) fn game_forward(
        &mut self,
        now: Instant,
        room: &str,
        user: &str,
        origin: String,
        op: u64,
        command: &[u8],
    ) {
        let owned = self
            .room_ids
            .get(room)
            .copied()
            .filter(|&id| self.rooms[id].game_owned);
        let parsed = std::str::from_utf8(command)
            .ok()
            .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
            .and_then(|raw| GameCommand::parse(raw).ok());
        let result = match (owned, parsed, UserName::parse(user)) {
            (Some(room_id), Some(command), Ok(user)) => self.rooms[room_id]
                .play(now, &user, command)
                .map(|state| (room_id, user, state)),
            // The lease moved on meanwhile: the sender tries again.
            _ => Err(Refusal::Busy),
        };
        match result {
            Ok((room_id, user, state)) => {
                let time = self.time(now);
                self.publish(room_id, time, user.as_str(), "game", state);
            }
            Err(refusal) => self.outbox.cluster(ClusterOut::GameRefusal {
                node: origin,
                op,
                code: refusal.code().as_u16(),
                msg: refusal.to_string(),
            }),
        }
    }

    /// The owner refused a command this node forwarded: its sender is told, as by a single
    /// node.
    pub(super) fn game_refused(&mut self, now: Instant, op: u64, code: u16, msg: &str) {
        let Some(Op::Game { conn, room, .. }) = self.finish_op(op) else {
            return;
        };
        let name = self.rooms.get(room).map(|r| r.name().as_str().to_owned());
        let detail = context(name.as_deref(), Some(RoomKind::Game.as_str()));
        let code = match code {
            409 => Code::Conflict,
            404 => Code::NotFound,
            503 => Code::Unavailable,
            _ => Code::Unprocessable,
        };
        self.reply(now, conn, code, msg, &detail);
    }

    /// A game event went by: its state is what joiners here get, and the command it answers
    /// is done.
    pub(super) fn game_seen(&mut self, room_id: RoomId, event: &[u8]) {
        let state = serde_json::from_slice::<serde_json::Value>(event)
            .ok()
            .and_then(|mut event| {
                Some((
                    event.get("user")?.as_str()?.to_owned(),
                    event.get_mut("data")?.take(),
                ))
            });
        let Some((user, state)) = state else {
            return;
        };
        let room = &mut self.rooms[room_id];
        if !room.game_owned {
            room.game_cache = Some(state);
        }
        let done = self
            .cluster
            .as_ref()
            .and_then(|cluster| cluster.waiting_game(room_id, &user));
        if let Some(op) = done {
            self.finish_op(op);
        }
    }

    /// A member left the room (on any node): a seated player of the game this node owns
    /// forfeits.
    pub(super) fn forfeit(&mut self, now: Instant, room_id: RoomId, user: &str) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if !room.game_owned {
            return;
        }
        let Ok(user) = UserName::parse(user) else {
            return;
        };
        if let Some(state) = room.leave_game(now, &user) {
            let time = self.time(now);
            self.publish(room_id, time, user.as_str(), "game", state);
        }
    }

    /// At each heartbeat: the leases of the games this node owns live on; a game nobody owns
    /// (its owner died) is taken over by a node with members in its room.
    pub(super) fn game_leases(&mut self) {
        let mut outs = Vec::new();
        for (_, room) in self.rooms.iter() {
            let name = room.name().as_str().to_owned();
            if room.game_owned {
                outs.push(ClusterOut::RenewLease { room: name });
            } else if room.game_cache.is_some() && !room.is_empty() {
                outs.push(ClusterOut::ClaimLease { room: name });
            }
        }
        for out in outs {
            self.outbox.cluster(out);
        }
    }
}
