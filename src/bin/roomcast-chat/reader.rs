//! The reader thread: everything the server sends, printed for a person.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError, Event, EventBatch, Reconnected, Reply, ServerMessage};

use crate::render::{clean, clock, render_game, say, text_of, unix_now};
use crate::session::Shared;

/// At most one pose summary per room per this period.
const POSE_SUMMARY_PERIOD: Duration = Duration::from_secs(10);

/// The reader thread: prints what the server sends until the connection ends.
pub struct Reader {
    pub shared: Arc<Shared>,
    /// Transform events counted per room since its last summary.
    pub poses: BTreeMap<String, PoseCount>,
    /// The last error that closes a connection (408, 413, 503 ...), to explain the EOF.
    pub fatal: Option<String>,
}

pub struct PoseCount {
    since: Instant,
    events: u64,
    users: BTreeSet<String>,
}

impl Reader {
    /// Returns why the connection ended.
    pub fn run(mut self, mut client: Client) -> String {
        loop {
            let message = client.recv();
            if let Some(reconnected) = client.take_reconnected() {
                say(&reconnected_line(&reconnected));
                self.password_answer_lost();
            }
            match message {
                Ok(ServerMessage::Reply(reply)) => {
                    if let Some(new) = self.password_answered(&reply) {
                        // What a fresh login sends from now on, should the session expire.
                        client.set_password(&new);
                    }
                    self.reply(&reply);
                }
                Ok(ServerMessage::Events(batch)) => self.batch(&batch),
                // An unknown message shape: skip it (the frame itself was consumed).
                Err(ClientError::Json(err)) => say(&format!("! ignored a message: {err}")),
                Err(ClientError::Closed) => {
                    return match self.fatal.take() {
                        Some(reason) => format!("the server closed the connection ({reason})"),
                        None => "the server closed the connection".to_owned(),
                    }
                }
                // Only a reconnect turns a refusal into an error: the fresh login after an
                // expired session (403 when the password was changed elsewhere), or a resume.
                Err(ClientError::Refused { code, msg, .. }) => {
                    return format!("coming back was refused: {code} {}", clean(&msg))
                }
                Err(err) => return err.to_string(),
            }
        }
    }

    /// If `reply` answers the oldest `/password` still waiting, takes it off the queue;
    /// returns the new password when the change was made. A password change's answers carry
    /// neither a room nor a user: 200 "Password changed.", or 401, 403 (a wrong old password,
    /// or a guest), 422 (the new one too short), 429 (dropped by the rate limit) or 503
    /// "Busy, try again.".
    pub fn password_answered(&mut self, reply: &Reply) -> Option<String> {
        let about = reply.detail.get("room").is_some() || reply.detail.get("user").is_some();
        let changed = reply.code == 200 && reply.msg == "Password changed.";
        let refused = matches!(reply.code, 401 | 403 | 422 | 429)
            || (reply.code == 503 && reply.msg == "Busy, try again.");
        if about || !(changed || (reply.is_error() && refused)) {
            return None;
        }
        let new = self.shared.passwords().pop_front();
        new.filter(|_| changed)
    }

    /// The connection was replaced: answers to `/password` requests sent on the old one are
    /// lost, and whether they were made is unknown.
    pub fn password_answer_lost(&mut self) {
        let lost = {
            let mut waiting = self.shared.passwords();
            let lost = waiting.len();
            waiting.clear();
            lost
        };
        if lost > 0 {
            say("! /password got no answer before the connection was lost; it may or may not have been changed");
        }
    }

    pub fn reply(&mut self, reply: &Reply) {
        if reply.is_error() {
            let text = format!("{} {}", reply.code, clean(&reply.msg));
            say(&format!("! {text}"));
            // Room-level refusals carry {"room", "type"}; the ones that close do not.
            let closes = matches!(reply.code, 400 | 408 | 413 | 503)
                && reply.detail.get("room").is_none()
                && reply.detail.get("type").is_none();
            if closes {
                self.fatal = Some(text);
            }
            return;
        }
        if let Some(rooms) = reply.detail["rooms"].as_array() {
            let list: Vec<String> = rooms
                .iter()
                .map(|room| {
                    let name = room["room"]
                        .as_str()
                        .map_or_else(|| room["room"].to_string(), clean);
                    format!("{name} ({})", room["users"])
                })
                .collect();
            say(&format!("* rooms: {}", list.join(", ")));
        } else {
            say(&format!("* {} {}", reply.code, clean(&reply.msg)));
        }
    }

    pub fn batch(&mut self, batch: &EventBatch) {
        let room = clean(&batch.room);
        if batch.history {
            let said: Vec<&Event> = batch.events.iter().filter(|e| e.kind == "msg").collect();
            if !said.is_empty() {
                say(&format!("* earlier in {room}:"));
                for event in said {
                    self.event(&batch.room, &room, event);
                }
            }
            return;
        }
        for event in &batch.events {
            self.event(&batch.room, &room, event);
        }
    }

    /// Prints one live event (`raw_room` is the name as sent, `room` the printable one).
    pub fn event(&mut self, raw_room: &str, room: &str, event: &Event) {
        let prefix = format!("{} [{room}]", clock(event.time));
        let user = clean(&event.user);
        match event.kind.as_str() {
            "msg" => say(&format!("{prefix} {user}: {}", text_of(&event.data))),
            "join" => {
                if self.shared.is_me(&event.user) {
                    self.shared.rooms().joined.insert(raw_room.to_owned());
                }
                say(&format!("{prefix} * {user} joined"));
            }
            "leave" => {
                say(&format!("{prefix} * {user} left"));
                if self.shared.is_me(&event.user) {
                    self.left(raw_room);
                }
                self.poses.remove(raw_room);
            }
            "list" => {
                let names = match event.data.as_array() {
                    Some(names) => names
                        .iter()
                        .map(|name| name.as_str().map_or_else(|| name.to_string(), clean))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => text_of(&event.data),
                };
                say(&format!("{prefix} * in {room}: {names}"));
            }
            "transform" => self.pose(raw_room, room, &event.user),
            "game" => say(&render_game(&prefix, &user, &event.data, &self.shared.me)),
            other => say(&format!(
                "{prefix} * {user} {}: {}",
                clean(other),
                text_of(&event.data)
            )),
        }
    }

    /// We left `room`: if it was the current one, move to another room we are in.
    pub fn left(&mut self, room: &str) {
        let mut rooms = self.shared.rooms();
        rooms.joined.remove(room);
        if rooms.current != room {
            return;
        }
        let next = if rooms.joined.contains("lobby") {
            Some("lobby".to_owned())
        } else {
            rooms.joined.iter().next().cloned()
        };
        match next {
            Some(next) => {
                say(&format!("* current room: {}", clean(&next)));
                rooms.current = next;
            }
            None => say("* you are in no room now: /join one"),
        }
    }

    /// Counts a pose; prints at most one summary per room per [`POSE_SUMMARY_PERIOD`].
    pub fn pose(&mut self, raw_room: &str, room: &str, user: &str) {
        let now = Instant::now();
        let count = self
            .poses
            .entry(raw_room.to_owned())
            .or_insert_with(|| PoseCount {
                since: now,
                events: 0,
                users: BTreeSet::new(),
            });
        count.events += 1;
        if !count.users.contains(user) {
            count.users.insert(clean(user));
        }
        let elapsed = now.duration_since(count.since);
        if elapsed < POSE_SUMMARY_PERIOD {
            return;
        }
        let users: Vec<&str> = count.users.iter().map(String::as_str).collect();
        say(&format!(
            "{} [{room}] * {} pose updates from {} in the last {} s",
            clock(unix_now()),
            count.events,
            users.join(", "),
            elapsed.as_secs()
        ));
        *count = PoseCount {
            since: now,
            events: 0,
            users: BTreeSet::new(),
        };
    }
}

/// What the user is told after the connection came back.
fn reconnected_line(reconnected: &Reconnected) -> String {
    let plural = if reconnected.missed_msgs == 1 {
        ""
    } else {
        "s"
    };
    let mut line = format!(
        "* reconnected, {} missed message{plural} replayed",
        reconnected.missed_msgs
    );
    if !reconnected.resumed {
        line.push_str(" (the session had expired: logged in and joined the rooms again)");
    } else if !reconnected.resynced.is_empty() {
        line.push_str(&format!(
            "; older events of {} are gone, their kept history follows",
            reconnected.resynced.join(", ")
        ));
    }
    line
}
