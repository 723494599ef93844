//! Fuzzes the sans-IO `Hub` with scripts of connection events for four clients, driven like
//! the event loop drives it: after every step the outputs are drained and checked.
//!
//! Input layout (a short input reads missing bytes as 0, and 0 means "the default"):
//! - 8 header bytes tune `Config` towards small limits (see [`config`]), so "server full",
//!   "room full", history eviction, the rate limit, fps and the timeouts are all reachable;
//! - then steps, each an op byte (`op & 0x0f` is the kind, `op >> 4` picks the client) and its
//!   arguments, as listed in [`Harness::step`].
//!
//! The hub is driven through `hub::testing::Harness`, the same harness as the hub's unit tests:
//! wire bytes go through a sniffing `Transport` as in `net`, so frames and framing errors both
//! reach the hub, and the harness itself asserts that nothing is sent to or closed for a
//! connection the hub closed or the peer left, and that no deadline is due after
//! `handle_timeout(now)`; templated messages build a valid envelope around fuzzed names, numbers
//! and raw `data`, which reaches `decode_request`, `Pose::parse` and `GameCommand::parse`.
//!
//! Checked after every step: nothing panics; every `Send` body is one line of JSON (no raw
//! line break), an object whose `info` is
//! `system` (code 200..=299), `error` (400..=599) or `user` (a non-empty payload of events, sent
//! only after that client's login was accepted); replies carry a message; nothing is sent or
//! closed for a client after the hub closed it or the client went away; event times never go
//! backwards for a client (history frames aside); the hub's session count matches; after
//! `handle_timeout(now)` the next deadline is in the future; login and idle timeouts fire
//! within one housekeeping period.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use roomcast::config::Config;
use roomcast::hub::testing::Harness;
use roomcast::hub::{ConnId, Input};
use roomcast::protocol::UserName;
use roomcast::transport::TransportError;
use serde_json::Value;

const CLIENTS: usize = 4;
const HEADER: usize = 8;
/// Deadlines one `advance` runs one by one before it jumps to its target.
const MAX_STEPS: usize = 64;

const USERS: &[&str] = &[
    "alice", "bob", "Alice", "carol", "a", "x.y-z_1", "", "bad name", "é",
];
const ROOMS: &[&str] = &["lobby", "r1", "r2", "café ☕", "Lobby", " ", "", "a\nb"];
const KINDS: &[&str] = &["join", "leave", "list", "msg", "transform", "game", "dance"];
/// msg data; the numbers of [`NUMBERS`] are offered too.
const DATA: &[&str] = &[
    "\"hi\"",
    "null",
    "{\"a\":[1,2]}",
    "1.50",
    "\"\\u00e9\"",
    "\"\\ud83d\\ude00\"",
    "[]",
    "{\"move\":4}",
    "[1,\n2]",
];
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2.5",
    "-0",
    "1e308",
    "1e999",
    "-1e999",
    "5e-324",
    "\"3\"",
    "null",
    "123456789012345678901234567890",
];
const CELLS: &[&str] = &[
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "-1", "9", "1.5", "\"4\"", "1e99",
];

fuzz_target!(|data: &[u8]| {
    let mut script = Script { data, pos: 0 };
    let mut header = [0u8; HEADER];
    for byte in &mut header {
        *byte = script.byte();
    }
    let Some(config) = config(header) else {
        return;
    };
    let mut fuzz = Fuzz::new(config);
    while !script.done() {
        fuzz.step(&mut script);
        fuzz.check_state();
    }
});

/// The header's tuning of the default config; `None` if the result is not a valid config.
fn config(h: [u8; HEADER]) -> Option<Config> {
    let small = |b: u8| usize::from(b % 4) + 1;
    let mut config = Config::default();
    if h[0] != 0 {
        config.max_clients = small(h[0]);
    }
    if h[1] != 0 {
        config.max_rooms_per_user = small(h[1]);
    }
    if h[2] != 0 {
        config.max_room_members = small(h[2]);
    }
    if h[3] != 0 {
        config.max_rooms = small(h[3]);
    }
    if h[4] != 0 {
        config.history = usize::from(h[4] % 4);
        if h[4] >> 2 != 0 {
            config.max_frame = usize::from(h[4] >> 2) * 8;
        }
    }
    if h[5] != 0 {
        config.rate_limit = f64::from(h[5] % 8);
        config.burst = f64::from((h[5] >> 3) % 4) + 1.0;
    }
    if h[6] != 0 {
        config.fps = [0.5, 1.0, 20.0, 90.0, 1000.0][usize::from(h[6] % 5)];
    }
    if h[7] != 0 {
        config.login_timeout = Duration::from_millis(u64::from(h[7] % 16 + 1) * 100);
        config.idle_timeout = Duration::from_millis(u64::from(h[7] / 16 + 1) * 250);
    }
    config.validate().ok().map(|()| config)
}

/// Reads the fuzz input front to back; past the end every read is 0 or empty.
struct Script<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Script<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn byte(&mut self) -> u8 {
        let byte = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        byte
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn bytes(&mut self, len: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(len).min(self.data.len());
        self.pos = start.saturating_add(len);
        &self.data[start..end]
    }

    /// A length byte and that many bytes.
    fn short_bytes(&mut self) -> &[u8] {
        let len = usize::from(self.byte());
        self.bytes(len)
    }

    /// A string from `list`, or (for bytes from 0xf0) a fuzzed one.
    fn pick(&mut self, list: &[&str]) -> String {
        let choice = self.byte();
        if choice >= 0xf0 {
            String::from_utf8_lossy(self.short_bytes()).into_owned()
        } else {
            list[usize::from(choice) % list.len()].to_owned()
        }
    }

    /// Raw JSON text from `DATA` or `NUMBERS`, or (for bytes from 0xf0) fuzzed bytes, valid
    /// JSON or not.
    fn data(&mut self) -> Vec<u8> {
        let choice = usize::from(self.byte());
        if choice >= 0xf0 {
            self.short_bytes().to_vec()
        } else if choice % 2 == 0 {
            DATA[choice / 2 % DATA.len()].as_bytes().to_vec()
        } else {
            NUMBERS[choice / 2 % NUMBERS.len()].as_bytes().to_vec()
        }
    }
}

/// One client slot: the connection it holds now, if any, and what it has seen.
struct Client {
    conn: Option<ConnId>,
    logged_in: bool,
    opened: Instant,
    last_seen: Instant,
    /// Latest event time this client was sent outside history frames.
    last_time: f64,
}

struct Fuzz {
    h: Harness,
    housekeeping: Duration,
    clients: Vec<Client>,
}

impl Fuzz {
    fn new(config: Config) -> Self {
        let h = Harness::new(config);
        let shortest = h.config().login_timeout.min(h.config().idle_timeout);
        let housekeeping = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let clients = (0..CLIENTS)
            .map(|_| Client {
                conn: None,
                logged_in: false,
                opened: h.now,
                last_seen: h.now,
                last_time: 0.0,
            })
            .collect();
        Fuzz {
            h,
            housekeeping,
            clients,
        }
    }

    /// The slot's connection while the hub has not closed it.
    fn open_conn(&self, index: usize) -> Option<ConnId> {
        self.clients[index]
            .conn
            .filter(|conn| !self.h.closed.contains(conn))
    }

    /// Runs one op from the script.
    fn step(&mut self, script: &mut Script<'_>) {
        let op = script.byte();
        let index = usize::from(op >> 4) % CLIENTS;
        match op & 0x0f {
            0 => {
                // The event loop never reuses a connection id.
                if self.clients[index].conn.is_none() {
                    let conn = self.h.connect();
                    let now = self.h.now;
                    let client = &mut self.clients[index];
                    client.conn = Some(conn);
                    client.logged_in = false;
                    client.opened = now;
                    client.last_seen = now;
                    client.last_time = 0.0;
                }
            }
            1 => {
                if let Some(conn) = self.clients[index].conn.take() {
                    self.h.disconnect(conn);
                }
            }
            2 => {
                let len = usize::from(script.u16());
                let wire = script.bytes(len).to_vec();
                if let Some(conn) = self.open_conn(index) {
                    self.clients[index].last_seen = self.h.now;
                    self.h.wire(conn, &wire);
                }
            }
            3 => {
                let len = usize::from(script.u16());
                let body = script.bytes(len).to_vec();
                self.frame(index, &body);
            }
            4..=9 => {
                let body = template(script);
                self.frame(index, &body);
            }
            10 | 11 => {
                let ms = script.u16();
                self.advance(Duration::from_millis(u64::from(ms)));
            }
            12 => self.input(index, Input::Backlogged),
            13 => self.input(index, Input::Drained),
            14 => {
                let error = match script.byte() % 2 {
                    0 => TransportError::ZeroLength,
                    _ => TransportError::TooLarge {
                        len: u64::from(script.u16()) + self.h.config().max_frame as u64 + 1,
                        max: self.h.config().max_frame,
                    },
                };
                if let Some(conn) = self.open_conn(index) {
                    self.h
                        .hub
                        .handle(self.h.now, Input::Malformed(conn, error.problem()));
                }
            }
            _ => {
                let arg = script.byte();
                if arg == 0xff {
                    self.h.hub.handle(self.h.now, Input::Shutdown);
                } else {
                    self.advance(Duration::from_millis(u64::from(arg)));
                }
            }
        }
        self.h.pump();
        self.check_received();
    }

    fn input(&mut self, index: usize, input: fn(ConnId) -> Input<'static>) {
        if let Some(conn) = self.open_conn(index) {
            self.h.hub.handle(self.h.now, input(conn));
        }
    }

    fn frame(&mut self, index: usize, body: &[u8]) {
        if let Some(conn) = self.open_conn(index) {
            self.clients[index].last_seen = self.h.now;
            self.h.feed_raw(conn, body);
        }
    }

    /// Moves the clock forward through the deadlines on the way, as the event loop would; after
    /// `MAX_STEPS` of them the loop "stalls" and jumps to the target, which the hub must absorb
    /// by skipping the ticks it missed (and a 1000 fps tick over a minute stays cheap).
    fn advance(&mut self, by: Duration) {
        self.h.advance_bounded(by, MAX_STEPS);
        self.check_received();
        self.check_timeouts();
    }

    /// Every frame each client received since the last check.
    fn check_received(&mut self) {
        for index in 0..CLIENTS {
            let Some(conn) = self.clients[index].conn else {
                continue;
            };
            for body in self.h.take_bodies(conn) {
                assert!(!body.is_empty(), "empty frame to {conn:?}");
                check_body(&mut self.clients[index], conn, &body);
            }
        }
    }

    /// The hub holds exactly the connections that are open and not closed by it.
    fn check_state(&self) {
        let open = (0..CLIENTS)
            .filter(|&i| self.open_conn(i).is_some())
            .count();
        assert_eq!(self.h.hub.connection_count(), open, "connection count");
        if open > 0 {
            assert!(
                self.h.hub.poll_timeout().is_some(),
                "connections but no housekeeping deadline"
            );
        }
    }

    /// Login and idle timeouts close within one housekeeping period of being due.
    fn check_timeouts(&self) {
        for (index, client) in self.clients.iter().enumerate() {
            if self.open_conn(index).is_none() {
                continue;
            }
            let (since, limit) = if client.logged_in {
                (client.last_seen, self.h.config().idle_timeout)
            } else {
                (client.opened, self.h.config().login_timeout)
            };
            let late = since + limit + self.housekeeping;
            assert!(
                self.h.now < late,
                "client {index} (logged in: {}) still open {:?} after its timeout",
                client.logged_in,
                self.h.now - since
            );
        }
    }
}

fn check_body(client: &mut Client, to: ConnId, body: &[u8]) {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(err) => panic!(
            "send to {to:?} is not JSON ({err}): {}",
            String::from_utf8_lossy(body)
        ),
    };
    let show = || String::from_utf8_lossy(body).into_owned();
    assert!(value.is_object(), "not an object: {}", show());
    // Line-mode recipients get the body plus "\n": a raw line break would split it.
    assert!(
        !body.contains(&b'\n'),
        "raw line break in a body: {}",
        show()
    );
    match value["info"].as_str() {
        Some(info @ ("system" | "error")) => {
            let response = &value["response"];
            let code = response["code"].as_u64().unwrap_or(0);
            let range = if info == "system" {
                200..=299
            } else {
                400..=599
            };
            assert!(range.contains(&code), "{info} with code {code}: {}", show());
            assert!(
                response["time"].is_number(),
                "reply without time: {}",
                show()
            );
            let msg = response["msg"].as_str().unwrap_or("");
            assert!(!msg.is_empty(), "reply without a message: {}", show());
            assert!(
                response["detail"].is_object(),
                "detail not an object: {}",
                show()
            );
            if code == 202 {
                assert!(!client.logged_in, "second login accepted: {}", show());
                client.logged_in = true;
            }
        }
        Some("user") => {
            assert!(client.logged_in, "user frame before login: {}", show());
            assert!(
                value["room"].is_string(),
                "user frame without room: {}",
                show()
            );
            let payload = value["payload"].as_array();
            let events = payload.filter(|p| !p.is_empty());
            let Some(events) = events else {
                panic!("user frame with empty payload: {}", show());
            };
            let history = value["history"] == Value::Bool(true);
            for event in events {
                let kind = event["type"].as_str().unwrap_or("");
                assert!(
                    KINDS[..6].contains(&kind),
                    "event type {kind:?}: {}",
                    show()
                );
                let user = event["user"].as_str().unwrap_or("");
                assert!(
                    UserName::parse(user).is_ok(),
                    "event user {user:?}: {}",
                    show()
                );
                let time = event["time"].as_f64().expect("event time");
                if !history {
                    assert!(time >= client.last_time, "time went back: {}", show());
                    client.last_time = time;
                }
            }
        }
        other => panic!("info {other:?}: {}", show()),
    }
}

/// A message built around fuzzed fields: valid JSON envelope, fuzzed names and values.
fn template(script: &mut Script<'_>) -> Vec<u8> {
    let json = |s: &str| serde_json::to_string(s).expect("strings serialize");
    match script.byte() % 10 {
        0 => {
            let user = script.pick(USERS);
            format!(
                r#"{{"system":"login","options":{{"user":{},"pass":"x"}}}}"#,
                json(&user)
            )
            .into_bytes()
        }
        1 => br#"{"system":"ping"}"#.to_vec(),
        2 => br#"{"system":"rooms"}"#.to_vec(),
        3 => room_message(&script.pick(ROOMS), "join", None),
        4 => room_message(&script.pick(ROOMS), "leave", None),
        5 => room_message(&script.pick(ROOMS), "list", None),
        6 => {
            let room = script.pick(ROOMS);
            let data = script.data();
            room_message(&room, "msg", Some(&data))
        }
        7 => {
            let room = script.pick(ROOMS);
            let pose = pose(script);
            room_message(&room, "transform", Some(pose.as_bytes()))
        }
        8 => {
            let room = script.pick(ROOMS);
            let command = game_command(script);
            room_message(&room, "game", Some(&command))
        }
        _ => {
            let room = script.pick(ROOMS);
            let kind = script.pick(KINDS);
            let data = script.data();
            room_message(&room, &kind, Some(&data))
        }
    }
}

fn room_message(room: &str, kind: &str, data: Option<&[u8]>) -> Vec<u8> {
    let json = |s: &str| serde_json::to_string(s).expect("strings serialize");
    let mut body = format!(r#"{{"room":{},"type":{}"#, json(room), json(kind)).into_bytes();
    if let Some(data) = data {
        body.extend_from_slice(br#","data":"#);
        body.extend_from_slice(data);
    }
    body.push(b'}');
    body
}

fn pose(script: &mut Script<'_>) -> String {
    let mut number = || NUMBERS[usize::from(script.byte()) % NUMBERS.len()];
    let (px, py, pz) = (number(), number(), number());
    let (rx, ry, rz, rw) = (number(), number(), number(), number());
    let shape = script.byte();
    let w = if shape & 1 == 1 {
        format!(r#","w":{rw}"#)
    } else {
        String::new()
    };
    format!(r#"{{"pos":{{"x":{px},"y":{py},"z":{pz}}},"rot":{{"x":{rx},"y":{ry},"z":{rz}{w}}}}}"#)
}

fn game_command(script: &mut Script<'_>) -> Vec<u8> {
    match script.byte() % 8 {
        0 => br#"{"start":"tictactoe"}"#.to_vec(),
        1 => br#"{"start":"chess"}"#.to_vec(),
        2 => br#"{"join":true}"#.to_vec(),
        3 | 4 => {
            let cell = CELLS[usize::from(script.byte()) % CELLS.len()];
            format!(r#"{{"move":{cell}}}"#).into_bytes()
        }
        5 => br#"{"restart":true}"#.to_vec(),
        6 => br#"{"join":false}"#.to_vec(),
        _ => script.short_bytes().to_vec(),
    }
}
