//! The one scripted-clients harness, in the spirit of quinn's `Pair`: it drives a [`Hub`] the
//! way the event loop does, with a clock it moves by hand, and keeps what each connection
//! received. The hub's unit tests, the fuzz target and the micro benches all use it (outside
//! this crate's tests it needs the `testing` feature).
//!
//! ```
//! # use roomcast::hub::testing::Harness;
//! # use std::time::Duration;
//! let mut h = Harness::default();
//! let alice = h.user("alice");
//! h.send(alice, serde_json::json!({"room": "lobby", "type": "msg", "data": "hi"}));
//! assert_eq!(h.events(alice)[0]["data"], "hi");
//! h.advance(Duration::from_millis(50));
//! ```

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::{ConnId, Done, Hub, Input, Output, Record, Work};
use crate::clock::WallClock;
use crate::config::Config;
use crate::transport::Transport;

/// Server time at the harness's first instant.
pub const T0: f64 = 1_700_000_000.0;

/// A hub, its clock, and what every connection received.
pub struct Harness {
    /// The hub under test.
    pub hub: Hub,
    /// The instant the harness started at (server time [`T0`]).
    pub start: Instant,
    /// The current instant; [`Harness::advance`] moves it.
    pub now: Instant,
    /// Connections the hub closed.
    pub closed: HashSet<ConnId>,
    /// Connections the hub paused, and until when.
    pub paused: HashMap<ConnId, Instant>,
    /// Connections held while their password work runs, with the bodies sent meanwhile,
    /// handed to the hub when it releases them (as the event loop leaves them unread).
    pub held: HashMap<ConnId, Vec<Vec<u8>>>,
    /// Password work asked for and not yet answered (see [`Harness::run_hasher`]).
    pub work: Vec<(u64, Work)>,
    /// Records handed to the store, in order.
    pub persisted: Vec<Record>,
    /// Requests to Redis (cluster mode), in order, until a test takes them.
    pub cluster: Vec<super::cluster::ClusterOut>,
    config: Config,
    peer: IpAddr,
    next_serial: u64,
    /// Connections open from the peer's side (not closed by the peer).
    connected: HashSet<ConnId>,
    /// Frame bodies received, per connection, in order.
    inbox: HashMap<ConnId, Vec<Bytes>>,
    /// Transports of connections fed raw bytes with [`Harness::wire`].
    transports: HashMap<ConnId, (Transport, BytesMut)>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new(Config::default())
    }
}

impl Harness {
    /// A hub with `config`, its clock at [`T0`].
    pub fn new(config: Config) -> Self {
        let start = Instant::now();
        Harness {
            hub: Hub::new(config.clone(), WallClock::new(start, T0), start),
            start,
            now: start,
            closed: HashSet::new(),
            paused: HashMap::new(),
            held: HashMap::new(),
            work: Vec::new(),
            persisted: Vec::new(),
            cluster: Vec::new(),
            peer: IpAddr::from([127, 0, 0, 1]),
            config,
            next_serial: 0,
            connected: HashSet::new(),
            inbox: HashMap::new(),
            transports: HashMap::new(),
        }
    }

    /// The config the hub runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A new connection whose transport is known, as the event loop reports it; outputs are
    /// drained.
    pub fn connect(&mut self) -> ConnId {
        let conn = self.open();
        self.pump();
        conn
    }

    /// [`Harness::connect`] without draining: part of a longer loop pass.
    pub fn open(&mut self) -> ConnId {
        let serial = self.next_serial;
        self.next_serial += 1;
        let conn = ConnId::new(serial as usize, serial);
        self.connected.insert(conn);
        self.hub.handle(
            self.now,
            Input::Open {
                conn,
                peer: self.peer,
                since: self.now,
            },
        );
        conn
    }

    /// Connections opened from now on come from `peer` (127.0.0.1 until set).
    pub fn set_peer(&mut self, peer: IpAddr) {
        self.peer = peer;
    }

    /// Connects and logs in as `name`, and forgets the login replies.
    pub fn user(&mut self, name: &str) -> ConnId {
        let conn = self.connect();
        let login = serde_json::json!({"system": "login", "options": {"user": name, "pass": "x"}});
        self.send(conn, login);
        let replies = self.take(conn);
        assert_eq!(replies[0]["response"]["code"], 202, "{replies:?}");
        conn
    }

    /// Sends a message and drains the outputs, as one loop pass.
    pub fn send(&mut self, conn: ConnId, message: Value) {
        self.send_raw(conn, message.to_string().as_bytes());
    }

    /// Sends a raw body and drains the outputs. A held connection's body waits for its
    /// release.
    pub fn send_raw(&mut self, conn: ConnId, body: &[u8]) {
        if let Some(waiting) = self.held.get_mut(&conn) {
            waiting.push(body.to_vec());
            return;
        }
        self.feed_raw(conn, body);
        self.pump();
    }

    /// Hands the hub a message without draining: several of these are one loop pass.
    pub fn feed(&mut self, conn: ConnId, message: Value) {
        self.feed_raw(conn, message.to_string().as_bytes());
    }

    /// Hands the hub a raw body without draining.
    pub fn feed_raw(&mut self, conn: ConnId, body: &[u8]) {
        self.hub.handle(self.now, Input::Frame(conn, body));
    }

    /// Bytes read from the connection's socket: decoded by a sniffing transport, as the event
    /// loop does, and the whole messages (or the framing error) handed to the hub. Outputs
    /// are drained after every message, which the event loop may also do.
    pub fn wire(&mut self, conn: ConnId, bytes: &[u8]) {
        let max_frame = self.config.max_frame;
        let (transport, buf) = self
            .transports
            .entry(conn)
            .or_insert_with(|| (Transport::sniffing(max_frame), BytesMut::new()));
        buf.extend_from_slice(bytes);
        let mut results = Vec::new();
        loop {
            match transport.decode(buf) {
                Ok(Some(body)) => results.push(Ok(body)),
                Ok(None) => break,
                Err(error) => {
                    results.push(Err(error.problem()));
                    buf.clear();
                    break;
                }
            }
        }
        for result in results {
            // The event loop stops feeding a connection once the hub closed it.
            if self.closed.contains(&conn) {
                return;
            }
            match result {
                Ok(body) => self.hub.handle(self.now, Input::Frame(conn, &body)),
                Err(problem) => self.hub.handle(self.now, Input::Malformed(conn, problem)),
            }
            self.pump();
        }
    }

    /// The peer closed the connection; what was pending for it goes out first.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.pump();
        self.connected.remove(&conn);
        self.transports.remove(&conn);
        self.held.remove(&conn);
        self.hub.handle(self.now, Input::Closed(conn));
        self.pump();
    }

    /// Moves the clock forward, running every deadline on the way in order.
    pub fn advance(&mut self, by: Duration) {
        self.advance_bounded(by, usize::MAX);
    }

    /// [`Harness::advance`], but after `max_steps` deadlines the loop "stalls" and jumps to
    /// the target, which the hub must absorb by skipping what it missed.
    pub fn advance_bounded(&mut self, by: Duration, max_steps: usize) {
        let target = self.now + by;
        let mut steps = 0;
        while let Some(deadline) = self.hub.poll_timeout().filter(|&d| d <= target) {
            steps += 1;
            if steps > max_steps {
                break;
            }
            self.now = self.now.max(deadline);
            self.run_timers();
        }
        self.now = target;
        self.run_timers();
    }

    /// Runs what is due now and drains it; nothing may be left due after.
    pub fn run_timers(&mut self) {
        self.hub.handle_timeout(self.now);
        self.pump();
        if let Some(next) = self.hub.poll_timeout() {
            assert!(
                next > self.now,
                "after handle_timeout(now) a deadline is still due"
            );
        }
    }

    /// Drains the hub's outputs into the inboxes, checking none goes to a connection the hub
    /// closed or the peer left.
    pub fn pump(&mut self) {
        let mut released = Vec::new();
        while let Some(output) = self.hub.poll_output() {
            match output {
                Output::Send { to, frame } => {
                    assert!(!self.closed.contains(&to), "frame after close to {to:?}");
                    assert!(self.connected.contains(&to), "frame to gone {to:?}");
                    self.inbox.entry(to).or_default().push(frame.body());
                }
                Output::Close { conn } => {
                    assert!(self.connected.contains(&conn), "close of gone {conn:?}");
                    assert!(self.closed.insert(conn), "closed twice: {conn:?}");
                }
                Output::Pause { conn, until } => {
                    assert!(until > self.now, "pause of {conn:?} already over");
                    self.paused.insert(conn, until);
                }
                Output::Hold { conn } => {
                    assert!(self.connected.contains(&conn), "hold of gone {conn:?}");
                    self.held.entry(conn).or_default();
                }
                Output::Release { conn } => {
                    let waiting = self.held.remove(&conn);
                    assert!(waiting.is_some(), "release of {conn:?}, never held");
                    released.push((conn, waiting.unwrap_or_default()));
                }
                Output::Work { id, work } => self.work.push((id, work)),
                Output::Persist(record) => self.persisted.push(record),
                Output::Cluster(out) => self.cluster.push(out),
            }
        }
        for (conn, waiting) in released {
            for body in waiting {
                self.send_raw(conn, &body);
            }
        }
    }

    /// Answers every pending password job as a hashing service would, with a fake hash
    /// (`fake:` and the password): what a hash of a password verifies against.
    pub fn run_hasher(&mut self) {
        for (id, work) in std::mem::take(&mut self.work) {
            let done = match work {
                Work::Hash { password } => Done::Hashed(Some(format!("fake:{password}"))),
                Work::Verify { password, phc } => {
                    Done::Verified(phc.is_some_and(|phc| phc == format!("fake:{password}")))
                }
            };
            self.hub.handle(self.now, Input::Done { id, done });
            self.pump();
        }
    }

    /// Drains the outputs without keeping them; the number of frames sent (for benches).
    pub fn drain_count(&mut self) -> usize {
        let mut sent = 0;
        while let Some(output) = self.hub.poll_output() {
            if let Output::Send { .. } = std::hint::black_box(&output) {
                sent += 1;
            }
        }
        sent
    }

    /// Frame bodies received by `conn` since the last take, as bytes.
    pub fn take_bodies(&mut self, conn: ConnId) -> Vec<Bytes> {
        self.inbox.remove(&conn).unwrap_or_default()
    }

    /// Frames received by `conn` since the last take, parsed.
    pub fn take(&mut self, conn: ConnId) -> Vec<Value> {
        self.take_bodies(conn)
            .iter()
            .map(|body| match serde_json::from_slice(body) {
                Ok(value) => value,
                Err(err) => panic!("frame to {conn:?} is not JSON ({err}): {body:?}"),
            })
            .collect()
    }

    /// Events received, flattened out of their frames, each tagged with its room.
    pub fn events(&mut self, conn: ConnId) -> Vec<Value> {
        flatten(&self.take(conn))
    }
}

/// The events of user frames, each tagged with the frame's room.
pub fn flatten(frames: &[Value]) -> Vec<Value> {
    let mut events = Vec::new();
    for frame in frames {
        assert_eq!(frame["info"], "user", "not an event frame: {frame}");
        // Test harness only: a user frame the hub made always carries a payload array.
        let payload = frame["payload"].as_array().expect("payload");
        assert!(!payload.is_empty());
        for event in payload {
            let mut event = event.clone();
            event["room"] = frame["room"].clone();
            events.push(event);
        }
    }
    events
}

/// The code of a reply frame, 0 for anything else.
pub fn code(frame: &Value) -> u64 {
    frame["response"]["code"].as_u64().unwrap_or(0)
}
