//! A blocking client for native programs, tests and the load generator: one `TcpStream`, the
//! same codec as the server, typed replies and events.
//!
//! ```no_run
//! use roomcast::client::{Client, ServerMessage};
//! # fn main() -> Result<(), roomcast::client::ClientError> {
//! let mut client = Client::connect("127.0.0.1:42069")?;
//! client.login("Tibi", "1234")?;
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

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::BytesMut;
use serde::Serialize;
use serde_json::{json, Value};

use crate::codec::{DecodeError, Decoder, Frame, Mode};
use crate::config::CLIENT_FRAME_LIMIT;
use crate::protocol::Pose;

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
    Frame(#[from] DecodeError),
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

/// A `system` or `error` reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// Server time, UNIX seconds.
    pub time: f64,
    /// 2xx for system replies, 4xx/5xx for errors.
    pub code: u16,
    /// Human-readable text.
    pub msg: String,
    /// Code-specific detail, e.g. `{"room": R, "type": K}`.
    pub detail: Value,
}

impl Reply {
    /// Whether this reply reports a failure.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

/// One room event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Server time, UNIX seconds.
    pub time: f64,
    /// Who caused it.
    pub user: String,
    /// join, leave, list, msg, transform or game.
    pub kind: String,
    /// The event's data.
    pub data: Value,
}

/// The events of one frame: all from one room, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    /// The room.
    pub room: String,
    /// True for the history a joiner gets.
    pub history: bool,
    /// At least one event.
    pub events: Vec<Event>,
}

/// Anything the server sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `"info": "system"` or `"info": "error"`.
    Reply(Reply),
    /// `"info": "user"`.
    Events(EventBatch),
}

/// A blocking connection to a roomcast server.
pub struct Client {
    stream: TcpStream,
    mode: Mode,
    decoder: Decoder,
    buf: BytesMut,
}

impl Client {
    /// Connects speaking length-prefixed frames.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, Mode::Framed)
    }

    /// Connects speaking the given framing (line mode is what `nc` users speak).
    pub fn connect_with(addr: impl ToSocketAddrs, mode: Mode) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            mode,
            decoder: Decoder::with_mode(mode, CLIENT_FRAME_LIMIT),
            buf: BytesMut::new(),
        })
    }

    /// Bounds how long [`Client::recv`] waits; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The underlying socket, e.g. to shut it down from another thread.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends a raw JSON body, framed.
    pub fn send_body(&mut self, body: &[u8]) -> io::Result<()> {
        match self.mode {
            Mode::Framed => self
                .stream
                .write_all(&Frame::from_body(body).chunks(Mode::Framed)[0]),
            Mode::Line => {
                let mut line = body.to_vec();
                line.push(b'\n');
                self.stream.write_all(&line)
            }
        }
    }

    /// Sends any serializable message.
    pub fn send<T: Serialize>(&mut self, message: &T) -> Result<(), ClientError> {
        let body = serde_json::to_vec(message)?;
        Ok(self.send_body(&body)?)
    }

    /// Logs in and waits for the answer; a refusal is [`ClientError::Refused`]. The lobby's
    /// join events follow and are left for [`Client::recv`].
    pub fn login(&mut self, user: &str, pass: &str) -> Result<Reply, ClientError> {
        self.send(&json!({"system": "login", "options": {"user": user, "pass": pass}}))?;
        self.recv_reply()
    }

    /// Sends a ping and waits for the pong.
    pub fn ping(&mut self) -> Result<Reply, ClientError> {
        self.send(&json!({"system": "ping"}))?;
        self.recv_reply()
    }

    /// Asks for the room directory and waits for it.
    pub fn rooms(&mut self) -> Result<Reply, ClientError> {
        self.send(&json!({"system": "rooms"}))?;
        self.recv_reply()
    }

    /// Joins a room; the events it causes arrive through [`Client::recv`].
    pub fn join(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, "join", &"")
    }

    /// Leaves a room.
    pub fn leave(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, "leave", &"")
    }

    /// Asks for a room's member list.
    pub fn list(&mut self, room: &str) -> Result<(), ClientError> {
        self.room_message(room, "list", &"")
    }

    /// Says something in a room.
    pub fn msg<T: Serialize + ?Sized>(&mut self, room: &str, data: &T) -> Result<(), ClientError> {
        self.room_message(room, "msg", data)
    }

    /// Streams a pose; the server forwards the latest one per tick.
    pub fn transform(&mut self, room: &str, pose: &Pose) -> Result<(), ClientError> {
        self.room_message(room, "transform", pose)
    }

    /// Sends a game command, e.g. `{"start": "tictactoe"}` or `{"move": 4}`.
    pub fn game(&mut self, room: &str, command: &Value) -> Result<(), ClientError> {
        self.room_message(room, "game", command)
    }

    fn room_message<T: Serialize + ?Sized>(
        &mut self,
        room: &str,
        kind: &str,
        data: &T,
    ) -> Result<(), ClientError> {
        self.send(&json!({"room": room, "type": kind, "data": data}))
    }

    /// The next message from the server, blocking (up to the read timeout).
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        let value: Value = serde_json::from_slice(&self.recv_body()?)?;
        parse_message(value)
    }

    /// The next frame's raw JSON body.
    pub fn recv_body(&mut self) -> Result<bytes::Bytes, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(body) = self.decoder.decode(&mut self.buf)? {
                return Ok(body);
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the next system or error reply, skipping events; an error reply is
    /// returned as [`ClientError::Refused`].
    pub fn recv_reply(&mut self) -> Result<Reply, ClientError> {
        loop {
            if let ServerMessage::Reply(reply) = self.recv()? {
                if reply.is_error() {
                    return Err(ClientError::Refused {
                        code: reply.code,
                        msg: reply.msg,
                        detail: reply.detail,
                    });
                }
                return Ok(reply);
            }
        }
    }
}

fn parse_message(value: Value) -> Result<ServerMessage, ClientError> {
    let bad = |what: &str| {
        ClientError::Json(serde::de::Error::custom(format!(
            "server message without {what}: {value}"
        )))
    };
    match value["info"].as_str() {
        Some("system") | Some("error") => {
            let response = &value["response"];
            Ok(ServerMessage::Reply(Reply {
                time: response["time"].as_f64().ok_or_else(|| bad("time"))?,
                code: response["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .ok_or_else(|| bad("code"))?,
                msg: response["msg"].as_str().unwrap_or_default().to_owned(),
                detail: response["detail"].clone(),
            }))
        }
        Some("user") => {
            let room = value["room"]
                .as_str()
                .ok_or_else(|| bad("room"))?
                .to_owned();
            let payload = value["payload"].as_array().ok_or_else(|| bad("payload"))?;
            let events = payload
                .iter()
                .map(|event| {
                    Ok(Event {
                        time: event["time"].as_f64().ok_or_else(|| bad("event time"))?,
                        user: event["user"].as_str().unwrap_or_default().to_owned(),
                        kind: event["type"]
                            .as_str()
                            .ok_or_else(|| bad("event type"))?
                            .to_owned(),
                        data: event["data"].clone(),
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()?;
            Ok(ServerMessage::Events(EventBatch {
                room,
                history: value["history"] == Value::Bool(true),
                events,
            }))
        }
        _ => Err(bad("a known info")),
    }
}
