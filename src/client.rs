//! A blocking client for native programs, tests and the load generator: one `TcpStream`, the
//! server's own transports and wire vocabulary, typed replies and events.
//!
//! It keeps a session alive the way the protocol asks: it pings when it has sent nothing for a
//! third of the server's idle timeout (while it waits in [`Client::recv`]), it remembers the
//! last seq it received in each room and the newest resume token, and, with
//! [`Client::set_auto_reconnect`], it survives a lost connection: it reconnects with backoff,
//! resumes, and hands on exactly the events it missed, as if nothing had happened.
//!
//! ```no_run
//! use roomcast::client::{Client, ServerMessage};
//! # fn main() -> Result<(), roomcast::client::ClientError> {
//! let mut client = Client::connect("127.0.0.1:42069")?;
//! client.login("Tibi", "1234")?;
//! client.set_auto_reconnect(true);
//! client.msg("lobby", &"hello")?;
//! loop {
//!     if let ServerMessage::Events(batch) = client.recv()? {
//!         for event in batch.events {
//!             println!("[{}] {}: {}", batch.room, event.user, event.data);
//!         }
//!     }
//! }
//! # }
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

use crate::config::CLIENT_FRAME_LIMIT;
use crate::protocol::{GameCommand, HistoryRange, Pose, Request, RoomKind};
use crate::transport::{Transport, TransportError, TransportKind};

pub use crate::protocol::{Event, EventBatch, Reply, ServerMessage};

/// Pings go out when nothing was sent for this long, until the server says its idle timeout.
const DEFAULT_PING_EVERY: Duration = Duration::from_secs(40);
/// First wait before a reconnect attempt; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Reconnect attempts before giving up (about the server's default resume grace).
const RECONNECT_ATTEMPTS: u32 = 20;
/// How long the replies to a resume may take.
const RESUME_WAIT: Duration = Duration::from_secs(10);

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed (or a read timed out).
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    /// The server closed the connection.
    #[error("server closed the connection")]
    Closed,
    /// The server's framing was broken.
    #[error("bad frame from server: {0}")]
    Frame(#[from] TransportError),
    /// A frame that is not the JSON the protocol promises.
    #[error("bad message from server: {0}")]
    Json(#[from] serde_json::Error),
    /// The server refused a request with an error code.
    #[error("server error {code}: {msg}")]
    Refused {
        /// The code (400..=599).
        code: u16,
        /// The server's message.
        msg: String,
        /// The detail object.
        detail: Value,
    },
}

impl ClientError {
    /// The connection is gone (not a refusal or a bad message): a reconnect may help.
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Closed | ClientError::Frame(_) => true,
            ClientError::Io(err) => !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }
}

/// What an automatic reconnect did, for the program to tell its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnected {
    /// True when the session was resumed; false when it had expired and the client logged
    /// in afresh and joined its rooms again.
    pub resumed: bool,
    /// msg events among the history events replayed.
    pub missed_msgs: usize,
    /// History events replayed (msg, join, leave, game, away, back).
    pub missed_events: usize,
    /// Rooms whose missed events were no longer kept (the server sent 410 and the whole kept
    /// history instead).
    pub resynced: Vec<String>,
}

/// The sending half, shared with [`ClientWriter`]s on other threads. A reconnect swaps the
/// stream inside, so writers always write to the current connection.
struct Writer {
    stream: TcpStream,
    transport: Transport,
    last_sent: Instant,
}

impl Writer {
    fn send_body(&mut self, body: &[u8]) -> io::Result<()> {
        let bytes = self.transport.encode(body);
        self.stream.write_all(&bytes)?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

fn lock(writer: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    // A panic while holding the lock leaves a stream behind: keep using it.
    writer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A handle that sends requests on a [`Client`]'s connection from another thread (a game
/// loop sending poses while a reader thread receives).
#[derive(Clone)]
pub struct ClientWriter(Arc<Mutex<Writer>>);

impl ClientWriter {
    /// Sends a raw JSON body.
    pub fn send_body(&self, body: &[u8]) -> io::Result<()> {
        lock(&self.0).send_body(body)
    }

    /// Sends one request.
    pub fn request(&self, request: &Request<'_>) -> io::Result<()> {
        self.send_body(&request.encode())
    }

    /// Shuts the current connection down (`Both`: its reader sees the end; `Write`: the
    /// server sees the end and still sends what it owes).
    pub fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        lock(&self.0).stream.shutdown(how)
    }
}

/// Who this client logged in as, and what it needs to come back.
#[derive(Debug, Default)]
struct SessionState {
    user: Option<String>,
    pass: Option<String>,
    token: Option<String>,
    /// The last history seq received per room: what a resume asks to continue from.
    last_seq: BTreeMap<String, u64>,
    ping_every: Option<Duration>,
}

/// A blocking connection to a roomcast server.
pub struct Client {
    addrs: Vec<SocketAddr>,
    kind: TransportKind,
    reader: TcpStream,
    writer: Arc<Mutex<Writer>>,
    transport: Transport,
    buf: BytesMut,
    read_timeout: Option<Duration>,
    session: SessionState,
    /// Pongs still owed for pings the client sent on its own; swallowed when they come.
    auto_pongs: usize,
    auto_reconnect: bool,
    /// Messages read during a reconnect, handed on by `recv` in order.
    pending: VecDeque<ServerMessage>,
    last_reconnect: Option<Reconnected>,
}

impl Client {
    /// Connects speaking length-prefixed frames.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, TransportKind::Framed)
    }

    /// Connects speaking the given transport (line mode is what `nc` users speak).
    pub fn connect_with(addr: impl ToSocketAddrs, kind: TransportKind) -> io::Result<Client> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let stream = open(&addrs)?;
        let reader = stream.try_clone()?;
        Ok(Client {
            addrs,
            kind,
            reader,
            writer: Arc::new(Mutex::new(Writer {
                stream,
                transport: Transport::new(kind, CLIENT_FRAME_LIMIT),
                last_sent: Instant::now(),
            })),
            transport: Transport::new(kind, CLIENT_FRAME_LIMIT),
            buf: BytesMut::new(),
            read_timeout: None,
            session: SessionState::default(),
            auto_pongs: 0,
            auto_reconnect: false,
            pending: VecDeque::new(),
            last_reconnect: None,
        })
    }

    /// Bounds how long [`Client::recv`] waits; `None` waits forever.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.read_timeout = timeout;
        self.reader.set_read_timeout(timeout)
    }

    /// When on, a lost connection is reconnected and the session resumed inside
    /// [`Client::recv`], with backoff; the missed events come out of `recv` as usual, exactly
    /// once. [`Client::take_reconnected`] says it happened.
    pub fn set_auto_reconnect(&mut self, on: bool) {
        self.auto_reconnect = on;
    }

    /// How the last automatic reconnect went, once.
    pub fn take_reconnected(&mut self) -> Option<Reconnected> {
        self.last_reconnect.take()
    }

    /// The newest resume token the server gave, if logged in.
    pub fn resume_token(&self) -> Option<&str> {
        self.session.token.as_deref()
    }

    /// The last history seq received in each room.
    pub fn last_seqs(&self) -> &BTreeMap<String, u64> {
        &self.session.last_seq
    }

    /// The current socket, e.g. to shut it down from another thread.
    pub fn stream(&self) -> &TcpStream {
        &self.reader
    }

    /// A handle to send on this connection from another thread; it follows reconnects.
    pub fn writer(&self) -> ClientWriter {
        ClientWriter(Arc::clone(&self.writer))
    }

    /// Sends a raw JSON body, framed.
    pub fn send_body(&mut self, body: &[u8]) -> io::Result<()> {
        lock(&self.writer).send_body(body)
    }

    /// Sends one request.
    pub fn request(&mut self, request: &Request<'_>) -> io::Result<()> {
        self.send_body(&request.encode())
    }

    /// Sends any serializable message.
    pub fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ClientError> {
        let body = serde_json::to_vec(message)?;
        Ok(self.send_body(&body)?)
    }

    /// Logs in and waits for the answer; a refusal is [`ClientError::Refused`]. The lobby's
    /// join events follow and are left for [`Client::recv`].
    pub fn login(&mut self, user: &str, pass: &str) -> Result<Reply, ClientError> {
        self.request(&Request::Login {
            user: user.to_owned(),
            pass: Some(pass.to_owned()),
        })?;
        let reply = self.recv_reply()?;
        self.session.user = Some(user.to_owned());
        self.session.pass = Some(pass.to_owned());
        Ok(reply)
    }

    /// Registers an account (the server answers 201; it does not log in).
    pub fn register(&mut self, user: &str, pass: &str) -> Result<Reply, ClientError> {
        self.request(&Request::Register {
            user: user.to_owned(),
            pass: pass.to_owned(),
        })?;
        self.recv_reply()
    }

    /// Changes the logged-in account's password.
    pub fn change_password(&mut self, old: &str, new: &str) -> Result<Reply, ClientError> {
        self.request(&Request::Password {
            old: old.to_owned(),
            new: new.to_owned(),
        })?;
        let reply = self.recv_reply()?;
        self.session.pass = Some(new.to_owned());
        Ok(reply)
    }

    /// Resumes a session with its token, continuing each room after the seqs given (the
    /// ones this client received, by default). The missed events follow through
    /// [`Client::recv`].
    pub fn resume(
        &mut self,
        token: &str,
        rooms: &BTreeMap<String, u64>,
    ) -> Result<Reply, ClientError> {
        self.request(&Request::Resume {
            token: token.to_owned(),
            rooms: rooms.iter().map(|(r, s)| (r.clone(), *s)).collect(),
        })?;
        self.recv_reply()
    }

    /// Logs out: the server answers 200, the user leaves every room, the connection closes.
    pub fn logout(&mut self) -> Result<Reply, ClientError> {
        self.auto_reconnect = false;
        self.request(&Request::Logout)?;
        let reply = self.recv_reply()?;
        self.session = SessionState::default();
        Ok(reply)
    }

    /// Sends a ping and waits for the pong.
    pub fn ping(&mut self) -> Result<Reply, ClientError> {
        self.request(&Request::Ping)?;
        self.recv_reply()
    }

    /// Asks for the first page of the room directory and waits for it.
    pub fn rooms(&mut self) -> Result<Reply, ClientError> {
        self.rooms_page(None, None)
    }

    /// Asks for a page of the room directory: the rooms after `after`, at most `limit`.
    pub fn rooms_page(
        &mut self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Reply, ClientError> {
        self.request(&Request::Rooms {
            after: after.map(str::to_owned),
            limit,
        })?;
        self.recv_reply()
    }

    /// Joins a room; the events it causes arrive through [`Client::recv`].
    pub fn join(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, RoomKind::Join, None)
    }

    /// Leaves a room.
    pub fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, RoomKind::Leave, None)
    }

    /// Asks for a room's member list.
    pub fn list(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, RoomKind::List, None)
    }

    /// Says something in a room.
    pub fn msg<T: Serialize + ?Sized>(&mut self, room: &str, data: &T) -> Result<(), ClientError> {
        let data = to_raw_value(data)?;
        self.room_message(room, RoomKind::Msg, Some(&data))
    }

    /// Streams a pose; the server forwards the latest one per tick.
    pub fn transform(&mut self, room: &str, pose: &Pose) -> Result<(), ClientError> {
        let data = to_raw_value(pose)?;
        self.room_message(room, RoomKind::Transform, Some(&data))
    }

    /// Sends a game command, e.g. `{"start": "tictactoe"}` or `{"move": 4}`.
    pub fn game(&mut self, room: &str, command: &Value) -> Result<(), ClientError> {
        let data = to_raw_value(command)?;
        self.room_message(room, RoomKind::Game, Some(&data))
    }

    /// Sends a typed game command.
    pub fn play(&mut self, room: &str, command: &GameCommand) -> Result<(), ClientError> {
        let data = to_raw_value(command)?;
        self.room_message(room, RoomKind::Game, Some(&data))
    }

    /// Asks for kept events of a room before or after a seq; a history frame (or a 200 reply
    /// for an empty range) arrives through [`Client::recv`].
    pub fn history(
        &mut self,
        room: &str,
        range: HistoryRange,
        limit: Option<usize>,
    ) -> Result<(), ClientError> {
        let (key, seq) = match range {
            HistoryRange::Before(seq) => ("before", seq),
            HistoryRange::After(seq) => ("after", seq),
        };
        let mut query = serde_json::Map::new();
        query.insert(key.into(), seq.into());
        if let Some(limit) = limit {
            query.insert("limit".into(), limit.into());
        }
        let data = to_raw_value(&query)?;
        self.room_message(room, RoomKind::History, Some(&data))
    }

    fn room_message(
        &mut self,
        room: &str,
        kind: RoomKind,
        data: Option<&RawValue>,
    ) -> Result<(), ClientError> {
        Ok(self.request(&Request::Room {
            room: room.to_owned(),
            kind,
            data,
        })?)
    }

    /// The next message from the server, blocking (up to the read timeout). Pings go out on
    /// their own while it waits; with auto-reconnect, a lost connection is resumed here.
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        let deadline = self.deadline();
        loop {
            if let Some(message) = self.pending.pop_front() {
                return Ok(message);
            }
            match self.read_message(deadline) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => continue, // an automatic pong
                Err(err) if self.auto_reconnect && err.is_disconnect() => self.reconnect()?,
                Err(err) => return Err(err),
            }
        }
    }

    /// The next frame's raw JSON body.
    pub fn recv_body(&mut self) -> Result<Bytes, ClientError> {
        let deadline = self.deadline();
        self.recv_body_until(deadline)
    }

    /// When a read that starts now must give up.
    fn deadline(&self) -> Option<Instant> {
        self.read_timeout.map(|timeout| Instant::now() + timeout)
    }

    fn recv_body_until(&mut self, deadline: Option<Instant>) -> Result<Bytes, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(body) = self.transport.decode(&mut self.buf)? {
                return Ok(body);
            }
            let now = Instant::now();
            let next_ping = self.next_ping();
            let wait = [deadline, next_ping].into_iter().flatten().min().map(|at| {
                at.saturating_duration_since(now)
                    .max(Duration::from_millis(1))
            });
            self.reader.set_read_timeout(wait)?;
            match self.reader.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    let now = Instant::now();
                    if next_ping.is_some_and(|at| at <= now) {
                        self.request(&Request::Ping)?;
                        self.auto_pongs += 1;
                    } else if deadline.is_some_and(|at| at <= now) {
                        return Err(err.into());
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err.into()),
            }
        }
    }

    /// Reads until the next system or error reply, keeping events for [`Client::recv`];
    /// an error reply is returned as [`ClientError::Refused`].
    pub fn recv_reply(&mut self) -> Result<Reply, ClientError> {
        let deadline = self.deadline();
        let mut events = Vec::new();
        let reply = loop {
            match self.read_message(deadline) {
                Ok(Some(ServerMessage::Reply(reply))) => break Ok(reply),
                Ok(Some(events_frame)) => events.push(events_frame),
                Ok(None) => {}
                Err(err) => break Err(err),
            }
        };
        // Events that arrived before the reply come out of recv first, in order.
        for message in events.into_iter().rev() {
            self.pending.push_front(message);
        }
        let reply = reply?;
        if reply.is_error() {
            return Err(ClientError::Refused {
                code: reply.code,
                msg: reply.msg,
                detail: reply.detail,
            });
        }
        Ok(reply)
    }

    /// One message, with what it says about the session noted; `None` for the pong of an
    /// automatic ping.
    fn read_message(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<ServerMessage>, ClientError> {
        let message = ServerMessage::parse(&self.recv_body_until(deadline)?)?;
        match &message {
            ServerMessage::Reply(reply) => {
                if reply.code == 200 && reply.msg == "pong" && self.auto_pongs > 0 {
                    self.auto_pongs -= 1;
                    return Ok(None);
                }
                if reply.code == 202 {
                    self.note_session(&reply.detail);
                }
                if ends_for_good(reply) {
                    // The server is going away, or another connection took the session: a
                    // reconnect would only fail, or take the session back.
                    self.auto_reconnect = false;
                }
                if reply.code == 200 && reply.msg == "Logged out." {
                    // Logged out on purpose (perhaps through a ClientWriter): the close that
                    // follows is not a connection to win back.
                    self.auto_reconnect = false;
                    self.session = SessionState::default();
                }
            }
            ServerMessage::Events(batch) => {
                if let Some(seq) = batch.events.iter().filter_map(|e| e.seq).max() {
                    self.session.last_seq.insert(batch.room.clone(), seq);
                }
            }
        }
        Ok(Some(message))
    }

    fn note_session(&mut self, detail: &Value) {
        if let Some(token) = detail["resume"].as_str() {
            self.session.token = Some(token.to_owned());
        }
        if let Some(idle) = detail["idle_timeout"].as_f64() {
            // A third of the idle timeout, so two pings may be lost before it bites.
            self.session.ping_every = (idle > 0.0).then(|| Duration::from_secs_f64(idle / 3.0));
        }
    }

    /// When the next automatic ping is due: a third of the idle timeout after the last send.
    fn next_ping(&self) -> Option<Instant> {
        self.session.user.as_ref()?;
        let every = self.session.ping_every.unwrap_or(DEFAULT_PING_EVERY);
        Some(lock(&self.writer).last_sent + every)
    }

    /// Connects again, with backoff, and resumes (or, when the session expired, logs in and
    /// joins the rooms again). The missed events wait in `pending`.
    fn reconnect(&mut self) -> Result<(), ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut last_error = ClientError::Closed;
        for _ in 0..RECONNECT_ATTEMPTS {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match self.try_reconnect() {
                Ok(reconnected) => {
                    self.last_reconnect = Some(reconnected);
                    return Ok(());
                }
                Err(err) if err.is_disconnect() => last_error = err,
                Err(err) => return Err(err),
            }
        }
        Err(last_error)
    }

    fn try_reconnect(&mut self) -> Result<Reconnected, ClientError> {
        let stream = open(&self.addrs)?;
        self.reader = stream.try_clone()?;
        {
            let mut writer = lock(&self.writer);
            writer.stream = stream;
            writer.transport = Transport::new(self.kind, CLIENT_FRAME_LIMIT);
        }
        self.transport = Transport::new(self.kind, CLIENT_FRAME_LIMIT);
        self.buf.clear();
        self.auto_pongs = 0;
        let saved_timeout = self.read_timeout;
        self.read_timeout = Some(RESUME_WAIT);
        let result = self.come_back();
        self.read_timeout = saved_timeout;
        self.reader.set_read_timeout(saved_timeout)?;
        result
    }

    /// On a fresh connection: resume (or log in afresh), and read the replay, keeping it for
    /// `recv`. The resume goes out with a ping: the pong comes after every frame the resume
    /// caused, so it marks the end of the replay.
    fn come_back(&mut self) -> Result<Reconnected, ClientError> {
        let token = self.session.token.clone().unwrap_or_default();
        let seen = self.session.last_seq.clone();
        self.request(&Request::Resume {
            token,
            rooms: seen.iter().map(|(r, s)| (r.clone(), *s)).collect(),
        })?;
        self.request(&Request::Ping)?;
        let mut reconnected = Reconnected {
            resumed: true,
            missed_msgs: 0,
            missed_events: 0,
            resynced: Vec::new(),
        };
        let deadline = self.deadline();
        loop {
            let message = match self.read_message(deadline)? {
                Some(message) => message,
                None => continue,
            };
            match &message {
                ServerMessage::Reply(reply) if reply.code == 200 && reply.msg == "pong" => {
                    return Ok(reconnected);
                }
                ServerMessage::Reply(reply)
                    if reply.code == 410 && reply.detail.get("room").is_none() =>
                {
                    self.read_until_pong(deadline)?;
                    return self.log_in_again();
                }
                ServerMessage::Reply(reply) if reply.code == 410 => {
                    if let Some(room) = reply.detail["room"].as_str() {
                        reconnected.resynced.push(room.to_owned());
                    }
                }
                ServerMessage::Reply(reply) if reply.is_error() => {
                    return Err(ClientError::Refused {
                        code: reply.code,
                        msg: reply.msg.clone(),
                        detail: reply.detail.clone(),
                    });
                }
                ServerMessage::Reply(_) => {}
                ServerMessage::Events(batch) if batch.history => {
                    reconnected.missed_events += batch.events.len();
                    reconnected.missed_msgs +=
                        batch.events.iter().filter(|e| e.kind == "msg").count();
                }
                ServerMessage::Events(_) => {}
            }
            self.pending.push_back(message);
        }
    }

    fn read_until_pong(&mut self, deadline: Option<Instant>) -> Result<(), ClientError> {
        loop {
            if let Some(ServerMessage::Reply(reply)) = self.read_message(deadline)? {
                if reply.code == 200 && reply.msg == "pong" {
                    return Ok(());
                }
            }
        }
    }

    /// The session expired: log in again and join the rooms it was in (their histories come
    /// as for any joiner).
    fn log_in_again(&mut self) -> Result<Reconnected, ClientError> {
        let (Some(user), pass) = (self.session.user.clone(), self.session.pass.clone()) else {
            return Err(ClientError::Refused {
                code: 410,
                msg: "Session expired.".into(),
                detail: Value::Null,
            });
        };
        let rooms: Vec<String> = self.session.last_seq.keys().cloned().collect();
        self.session.last_seq.clear();
        self.request(&Request::Login { user, pass })?;
        self.recv_reply()?;
        for room in rooms.iter().filter(|room| *room != "lobby") {
            self.join(room)?;
        }
        Ok(Reconnected {
            resumed: false,
            missed_msgs: 0,
            missed_events: 0,
            resynced: rooms,
        })
    }
}

/// A refusal after which the server closes and coming back is wrong: it is shutting down or
/// full (503 without a room), the frame was too large (413), or the session was resumed on
/// another connection (409 without a room or user).
fn ends_for_good(reply: &Reply) -> bool {
    let about_a_room = reply.detail.get("room").is_some() || reply.detail.get("user").is_some();
    matches!(reply.code, 409 | 413 | 503) && !about_a_room
}

/// A connected socket with Nagle off: Nagle would hold a pose back until the previous one is
/// acknowledged, a tick late.
fn open(addrs: &[SocketAddr]) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addrs)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}
