//! The main thread's side: typed lines become requests, written to the socket.

use std::collections::{BTreeSet, VecDeque};
use std::net::Shutdown;
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use roomcast::client::ClientWriter;
use serde_json::{json, Value};

use crate::render::{clean, say};
use crate::{Input, HELP};

/// After `/quit`, how long we wait for the server to send what it still owes us.
const QUIT_DRAIN: Duration = Duration::from_secs(2);

/// State the reader and the main thread both touch.
pub struct Shared {
    /// Our user name as the server spelled it.
    pub me: String,
    pub rooms: Mutex<RoomState>,
    /// The new passwords of `/password` requests not answered yet, oldest first: the server
    /// answers a connection's requests in order, and the reader hands the one a 200
    /// "Password changed." answers to the client, for a fresh login after an expiry.
    pub passwords: Mutex<VecDeque<String>>,
}

pub struct RoomState {
    /// Where plain lines go.
    pub current: String,
    /// Rooms we are in, as seen from join and leave events.
    pub joined: BTreeSet<String>,
}

impl Shared {
    pub fn rooms(&self) -> MutexGuard<'_, RoomState> {
        // A thread that panicked while holding the lock left plain data behind; keep using it.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn passwords(&self) -> MutexGuard<'_, VecDeque<String>> {
        // As for `rooms`: plain data, still usable after a panic elsewhere.
        self.passwords
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn current(&self) -> String {
        self.rooms().current.clone()
    }

    pub fn is_me(&self, user: &str) -> bool {
        user.eq_ignore_ascii_case(&self.me)
    }
}

/// The main thread: reads [`Input`]s, writes requests.
pub struct Session {
    /// Sends on the reader's client connection, whichever socket it is on after reconnects.
    pub writer: ClientWriter,
    pub shared: Arc<Shared>,
    /// Bodies larger than this would make the server close the connection (413).
    pub max_body: usize,
}

/// What to do after a typed line.
pub enum Flow {
    Continue,
    Quit,
}

impl Session {
    pub fn run(&mut self, rx: &Receiver<Input>) -> ExitCode {
        loop {
            // The Ctrl-C handler holds a sender for the life of the process, so the channel
            // never disconnects; treat it as end of input anyway.
            let input = rx.recv().unwrap_or(Input::Eof);
            match input {
                Input::Line(line) => match self.line(&line) {
                    Flow::Continue => {}
                    Flow::Quit => return self.quit(rx),
                },
                Input::Eof | Input::Interrupt => return self.quit(rx),
                Input::Closed(why) => {
                    say(&format!("* disconnected: {why}"));
                    return ExitCode::from(1);
                }
            }
        }
    }

    /// Logs out (so the rooms see us leave now, instead of keeping the session for a resume),
    /// half-closes, prints what the server still sends, then exits 0.
    pub fn quit(&mut self, rx: &Receiver<Input>) -> ExitCode {
        self.send(&json!({"system": "logout"}));
        if self.writer.shutdown(Shutdown::Write).is_err() {
            return ExitCode::SUCCESS;
        }
        let deadline = Instant::now() + QUIT_DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Input::Line(_) | Input::Eof) => {}
                Ok(Input::Interrupt | Input::Closed(_)) => break,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.writer.shutdown(Shutdown::Both);
        ExitCode::SUCCESS
    }

    pub fn line(&mut self, line: &str) -> Flow {
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        if let Some(text) = line.strip_prefix("//") {
            let text = format!("/{text}");
            self.say_in_current(&text);
            return Flow::Continue;
        }
        if !line.starts_with('/') {
            self.say_in_current(line);
            return Flow::Continue;
        }
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        match (command, args.as_slice()) {
            ("/quit" | "/exit", _) => return Flow::Quit,
            ("/help", _) => say(HELP),
            ("/join", [_, ..]) => self.join(&rest(line)),
            ("/leave", [_, ..]) => {
                let room = rest(line);
                self.send(&json!({"room": room, "type": "leave"}));
            }
            ("/room", [_, ..]) => {
                let room = rest(line);
                let known = self.shared.rooms().joined.contains(&room);
                self.shared.rooms().current = room.clone();
                if known {
                    say(&format!("* current room: {}", clean(&room)));
                } else {
                    say(&format!(
                        "* current room: {} (you are not in it: /join {} first)",
                        clean(&room),
                        clean(&room)
                    ));
                }
            }
            ("/join" | "/leave" | "/room", []) => say(&format!("! usage: {command} ROOM")),
            ("/who" | "/list" | "/names", _) => {
                let room = self.shared.current();
                self.send(&json!({"room": room, "type": "list"}));
            }
            ("/rooms", _) => {
                self.send(&json!({"system": "rooms"}));
            }
            ("/ping", _) => {
                self.send(&json!({"system": "ping"}));
            }
            ("/password", [old, new]) => self.change_password(old, new),
            ("/password", _) => say("! usage: /password OLD NEW (passwords without spaces)"),
            ("/game", args) => self.game(args),
            _ => say(&format!(
                "! unknown command {}; /help lists them",
                clean(command)
            )),
        }
        Flow::Continue
    }

    /// Asks the server to change the password. Noted before it goes out, so that the reader
    /// knows which password a 200 "Password changed." makes the one to log in with.
    pub fn change_password(&mut self, old: &str, new: &str) {
        self.shared.passwords().push_back(new.to_owned());
        let request = json!({"system": "password", "options": {"old": old, "new": new}});
        if !self.send(&request) {
            self.shared.passwords().pop_back();
        }
    }

    pub fn join(&mut self, room: &str) {
        self.shared.rooms().current = room.to_owned();
        self.send(&json!({"room": room, "type": "join"}));
    }

    pub fn say_in_current(&mut self, text: &str) {
        let room = self.shared.current();
        self.send(&json!({"room": room, "type": "msg", "data": text}));
    }

    pub fn game(&mut self, args: &[&str]) {
        let command = match args {
            ["start"] => json!({"start": "tictactoe"}),
            ["start", game] => json!({"start": game}),
            ["join"] => json!({"join": true}),
            ["restart"] => json!({"restart": true}),
            ["move", cell] => match cell.parse::<i64>() {
                Ok(cell) => json!({"move": cell}),
                Err(_) => {
                    say("! usage: /game move N, N a cell from 0 to 8");
                    return;
                }
            },
            _ => {
                say("! usage: /game start [tictactoe] | /game join | /game move N | /game restart");
                return;
            }
        };
        let room = self.shared.current();
        self.send(&json!({"room": room, "type": "game", "data": command}));
    }

    /// Writes one request; false when it was not sent. A failed write means the connection
    /// is going away, which the reader reports.
    pub fn send(&mut self, request: &Value) -> bool {
        let body = request.to_string().into_bytes();
        if body.len() > self.max_body {
            say(&format!(
                "! not sent: {} bytes is over the server's default limit of {} bytes",
                body.len(),
                self.max_body
            ));
            return false;
        }
        if let Err(err) = self.writer.send_body(&body) {
            say(&format!("! could not send: {err}"));
            return false;
        }
        true
    }
}

/// Everything after the command word, trimmed: room names may contain spaces.
pub fn rest(line: &str) -> String {
    line.split_once(char::is_whitespace)
        .map(|(_, rest)| rest.trim())
        .unwrap_or_default()
        .to_owned()
}
