//! Shared by the integration tests: an embedded server on 127.0.0.1:0 and a blocking test
//! client that never hangs (every read has a timeout).
#![allow(dead_code)] // Each test binary uses a different part of this module.

pub mod program;
pub mod proxy;
pub mod redis;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roomcast::client::{Client, Event, Reply, ServerMessage};
use roomcast::{Config, ServerHandle};
use serde_json::json;

/// Long enough for a loaded 2-core CI machine, short enough that a broken test fails fast.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A config on a free loopback port.
pub fn config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        ..Config::default()
    }
}

pub fn start(config: Config) -> ServerHandle {
    roomcast::Server::bind(config)
        .expect("bind 127.0.0.1:0")
        .spawn()
        .expect("spawn server thread")
}

/// A client whose events are flattened out of their frames, each with its room.
pub struct TestClient {
    pub client: Client,
    pending: VecDeque<(String, Event)>,
    /// History frames received, kept apart from live events: (room, events).
    pub history: Vec<(String, Vec<Event>)>,
}

impl TestClient {
    pub fn connect(addr: SocketAddr) -> TestClient {
        let mut client = Client::connect(addr).expect("connect");
        client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        TestClient {
            client,
            pending: VecDeque::new(),
            history: Vec::new(),
        }
    }

    /// Connects, logs in, and consumes the 202 and the lobby's history, join and list events.
    pub fn login(addr: SocketAddr, user: &str) -> TestClient {
        let mut c = TestClient::connect(addr);
        let reply = c.client.login(user, "pw").expect("login");
        assert_eq!(reply.code, 202);
        c.expect_event("join");
        c.expect_event("list");
        c
    }

    /// The next reply, which must be a system/error reply with this code.
    pub fn expect_code(&mut self, code: u16) -> Reply {
        assert!(self.pending.is_empty(), "unread events: {:?}", self.pending);
        match self.client.recv().expect("recv reply") {
            ServerMessage::Reply(reply) => {
                assert_eq!(reply.code, code, "{reply:?}");
                reply
            }
            other => panic!("expected a {code} reply, got {other:?}"),
        }
    }

    /// The next event, which must be of this kind; returns its room and the event.
    pub fn expect_event(&mut self, kind: &str) -> (String, Event) {
        let (room, event) = self.next_event();
        assert_eq!(event.kind, kind, "in {room}: {event:?}");
        (room, event)
    }

    pub fn next_event(&mut self) -> (String, Event) {
        self.next_event_or_timeout()
            .expect("an event within the read timeout")
    }

    /// The next event, or `None` when none came within the read timeout.
    pub fn next_event_or_timeout(&mut self) -> Option<(String, Event)> {
        loop {
            if let Some(next) = self.pending.pop_front() {
                return Some(next);
            }
            let message = match self.client.recv() {
                Ok(message) => message,
                Err(roomcast::client::ClientError::Io(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(err) => panic!("recv event: {err}"),
            };
            match message {
                ServerMessage::Events(batch) if batch.history => {
                    self.history.push((batch.room, batch.events));
                }
                ServerMessage::Events(batch) => {
                    let room = batch.room;
                    self.pending
                        .extend(batch.events.into_iter().map(|e| (room.clone(), e)));
                }
                ServerMessage::Reply(reply) => panic!("expected an event, got {reply:?}"),
            }
        }
    }
}

/// Writes raw bytes and reads raw replies, for the framing tests.
pub struct RawConn {
    pub stream: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        RawConn { stream }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads one length-prefixed frame and parses its JSON.
    pub fn read_frame(&mut self) -> serde_json::Value {
        let mut header = [0u8; 4];
        self.stream.read_exact(&mut header).expect("frame header");
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        self.stream.read_exact(&mut body).expect("frame body");
        serde_json::from_slice(&body).expect("frame is JSON")
    }

    /// Reads one `\n`-terminated line and parses its JSON.
    pub fn read_line(&mut self) -> serde_json::Value {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while byte[0] != b'\n' {
            self.stream.read_exact(&mut byte).expect("line byte");
            line.push(byte[0]);
        }
        serde_json::from_slice(&line).expect("line is JSON")
    }

    /// True when the server closed the connection (EOF or reset) within the timeout.
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// A length-prefixed frame around a body.
pub fn framed(body: &[u8]) -> Vec<u8> {
    let mut wire = (body.len() as u32).to_be_bytes().to_vec();
    wire.extend_from_slice(body);
    wire
}

/// This process's resident memory in bytes, from /proc (Linux); None elsewhere.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Two logged-in users who check that their conversation arrives whole and in order.
pub struct Bystanders {
    pub a: TestClient,
    pub b: TestClient,
    sent: u64,
}

impl Bystanders {
    pub fn new(addr: SocketAddr) -> Bystanders {
        let mut a = TestClient::login(addr, "bystander_a");
        let mut b = TestClient::login(addr, "bystander_b");
        a.expect_event("join");
        // Both must be members before either talks, or the first msgs land in b's history.
        a.client.join("quiet").unwrap();
        a.expect_event("join");
        a.expect_event("list");
        b.client.join("quiet").unwrap();
        b.expect_event("join");
        b.expect_event("list");
        a.expect_event("join");
        Bystanders { a, b, sent: 0 }
    }

    /// Each sends `n` numbered msgs; each must receive all of both, in order.
    pub fn converse(&mut self, n: u64) {
        self.converse_timed(n);
    }

    /// [`Bystanders::converse`], one msg pair at a time; returns the longest a msg took to
    /// come back to its sender.
    pub fn converse_slowest(&mut self, n: u64) -> Duration {
        (0..n)
            .map(|_| {
                let sent = Instant::now();
                self.converse_timed(1);
                sent.elapsed()
            })
            .max()
            .unwrap_or_default()
    }

    fn converse_timed(&mut self, n: u64) {
        let first = self.sent;
        for i in first..first + n {
            self.a
                .client
                .msg("quiet", &json!({"from": "a", "n": i}))
                .unwrap();
            self.b
                .client
                .msg("quiet", &json!({"from": "b", "n": i}))
                .unwrap();
        }
        self.sent += n;
        for c in [&mut self.a, &mut self.b] {
            let mut next = [first, first];
            while next != [self.sent, self.sent] {
                let (room, event) = c.next_event();
                if room != "quiet" || event.kind != "msg" {
                    continue; // joins, leaves and lists of the hostile clients
                }
                let from = usize::from(event.data["from"] == "b");
                assert_eq!(event.data["n"], next[from], "lost or reordered: {event:?}");
                next[from] += 1;
            }
        }
    }
}

/// The real binary, with its address read from its log.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    pub fn start(shell_prefix: &str, args: &str) -> Binary {
        let exe = env!("CARGO_BIN_EXE_roomcast");
        // Tests keep nothing in the user's data directory unless they name one.
        let data = if args.contains("--data-dir") {
            ""
        } else {
            "--ephemeral"
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("{shell_prefix} exec {exe} --port 0 {data} {args}"))
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start roomcast");
        let stderr = child.stderr.take().expect("piped");
        // Read the log on a thread (it also keeps the pipe drained), and wait for the address
        // with a deadline so a server that never says where it listens fails the test.
        let (found, address) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let _ = found.send(addr);
                }
            }
        });
        let logged = address.recv_timeout(Duration::from_secs(10));
        let Some(addr) = logged.ok().and_then(|text| text.parse().ok()) else {
            // Never leave a server behind: a stray one can hold a data directory's lock.
            let _ = child.kill();
            let _ = child.wait();
            panic!("roomcast did not log a socket address within 10 s");
        };
        Binary { child, addr }
    }

    /// User plus system CPU seconds of the process so far, from /proc.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0) // USER_HZ is 100 on Linux
    }

    /// Resident memory of the process, from /proc.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
