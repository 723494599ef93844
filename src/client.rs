//! A blocking client for native programs, tests and the load generator: one `TcpStream`, the
//! server's own transports and wire vocabulary, typed replies and events.
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

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

use crate::config::CLIENT_FRAME_LIMIT;
use crate::protocol::{GameCommand, Pose, Request, RoomKind};
use crate::transport::{Transport, TransportError, TransportKind};

pub use crate::protocol::{Event, EventBatch, Reply, ServerMessage};

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

/// A blocking connection to a roomcast server.
pub struct Client {
    stream: TcpStream,
    transport: Transport,
    buf: BytesMut,
}

impl Client {
    /// Connects speaking length-prefixed frames.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        Client::connect_with(addr, TransportKind::Framed)
    }

    /// Connects speaking the given transport (line mode is what `nc` users speak).
    pub fn connect_with(addr: impl ToSocketAddrs, kind: TransportKind) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        // Nagle would hold a pose back until the previous one is acknowledged.
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            transport: Transport::new(kind, CLIENT_FRAME_LIMIT),
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
        self.stream.write_all(&self.transport.encode(body))
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
        self.recv_reply()
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

    /// The next message from the server, blocking (up to the read timeout).
    pub fn recv(&mut self) -> Result<ServerMessage, ClientError> {
        Ok(ServerMessage::parse(&self.recv_body()?)?)
    }

    /// The next frame's raw JSON body.
    pub fn recv_body(&mut self) -> Result<Bytes, ClientError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(body) = self.transport.decode(&mut self.buf)? {
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
