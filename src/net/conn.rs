//! One socket: its transport (and TLS session, if any), read buffer, outbound queue,
//! remembered writability and how far it has got in its life.

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mio::net::TcpStream;

use super::out_queue::{Flushed, OutQueue};
use crate::frame::Frame;
use crate::hub::ConnId;
use crate::stats::ConnKind;
use crate::transport::tls::TlsSession;
use crate::transport::{Transport, TransportError, TransportKind};

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Accepted; its transport is not known yet, and the hub has not heard of it.
    Greeting,
    /// Accepted only to be refused (server full, shutting down): waiting briefly for the first
    /// bytes so the refusal goes out in the peer's own framing.
    Refusing(Frame),
    /// Reading and writing; the hub knows it.
    Open,
    /// No more reading; flush the queue, then close (until the deadline).
    Draining(Instant),
    /// Our side is shut down; discard what the peer still sends until it closes, so closing
    /// does not reset the connection and destroy the last reply in flight.
    Lingering(Instant),
    /// Remove at the end of the pass.
    Dead,
}

impl State {
    /// Counts against `--max-clients`.
    pub fn is_admitted(&self) -> bool {
        matches!(self, State::Greeting | State::Open)
    }

    /// Still reading what the peer sends.
    pub fn is_reading(&self) -> bool {
        matches!(
            self,
            State::Greeting | State::Refusing(_) | State::Open | State::Lingering(_)
        )
    }
}

#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// When it was accepted: the login timeout counts from here.
    pub accepted: Instant,
    pub transport: Transport,
    /// Empty (no allocation) while the connection is idle: idle connections must be cheap.
    pub read_buf: BytesMut,
    pub out: OutQueue,
    pub state: State,
    /// Edge-triggered readiness is remembered here: set by a writable event, cleared by
    /// `WouldBlock`.
    pub writable: bool,
    /// In the loop's list of connections with bytes to write.
    pub write_queued: bool,
    /// In the loop's list of connections to read again next pass.
    pub read_queued: bool,
    /// The hub was told the queue passed its soft limit.
    pub backlogged: bool,
    /// Not read until then: the hub paused it (over its message budget).
    pub paused_until: Option<Instant>,
    /// The TLS session, when the connection opened with a ClientHello: what is read is
    /// decrypted into `read_buf`, and the out queue is encrypted on its way to the socket
    /// (so the encode-once rule stops here: each TLS peer costs its own encryption).
    pub tls: Option<Box<TlsSession>>,
    /// The first bytes were seen (TLS or not is decided).
    pub sniffed: bool,
    /// How the connection is counted in `roomcast_connections`.
    pub counted: (ConnKind, bool),
    /// The transport error it is closing for, so a WebSocket's close frame carries its code.
    pub closing_error: Option<Box<TransportError>>,
    /// How far the transport's last bytes went: 0 none, 1 the WebSocket close frame, 2 TLS's
    /// close_notify too.
    pub goodbye_stage: u8,
    /// Not read until the hub releases it: a password check is under way.
    pub held: bool,
    /// In the loop's list of connections left unread until the store catches up.
    pub waiting_for_store: bool,
}

impl Conn {
    pub fn new(
        id: ConnId,
        stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
        max_frame: usize,
    ) -> Self {
        Conn {
            id,
            stream,
            peer,
            accepted: now,
            transport: Transport::sniffing(max_frame),
            read_buf: BytesMut::new(),
            out: OutQueue::default(),
            state: State::Greeting,
            writable: true,
            write_queued: false,
            read_queued: false,
            backlogged: false,
            paused_until: None,
            tls: None,
            sniffed: false,
            counted: (ConnKind::Pending, false),
            closing_error: None,
            goodbye_stage: 0,
            held: false,
            waiting_for_store: false,
        }
    }

    /// Queues a frame in this connection's transport.
    pub fn queue(&mut self, frame: &Frame) {
        for chunk in self.transport.chunks(frame) {
            self.out.push(chunk);
        }
    }

    /// Queues bytes the transport made (a handshake reply, a pong, an HTTP response).
    pub fn queue_raw(&mut self, bytes: Bytes) {
        self.out.push(bytes);
    }

    /// Whether anything waits to go to the socket: queued chunks, or TLS records.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// What the connection counts as in `roomcast_connections` now.
    pub fn kind_now(&self) -> (ConnKind, bool) {
        let kind = match self.transport.kind() {
            None => ConnKind::Pending,
            Some(TransportKind::Framed) => ConnKind::Framed,
            Some(TransportKind::Line) => ConnKind::Line,
            Some(TransportKind::Http) => ConnKind::Http,
            Some(TransportKind::WebSocket) => ConnKind::WebSocket,
        };
        (kind, self.tls.is_some())
    }

    /// How it is described in log lines: `websocket over TLS`, `framed`.
    pub fn describe(&self) -> String {
        let kind = self
            .transport
            .kind()
            .map_or("unknown", TransportKind::as_str);
        match self.tls {
            Some(_) => format!("{kind} over TLS"),
            None => kind.to_owned(),
        }
    }

    /// Queues the transport's last bytes once the queue is empty: a WebSocket close frame,
    /// then TLS's close_notify. True when something was queued (keep draining).
    /// Call it only with nothing left to write: the close_notify must follow the close frame.
    pub fn say_goodbye(&mut self) -> bool {
        loop {
            match self.goodbye_stage {
                0 => {
                    self.goodbye_stage = 1;
                    if let Some(bye) = self.transport.goodbye(self.closing_error.as_deref()) {
                        self.out.push(bye);
                        return true;
                    }
                }
                1 => {
                    self.goodbye_stage = 2;
                    if let Some(tls) = self.tls.as_mut().filter(|tls| !tls.is_handshaking()) {
                        tls.close_notify();
                        return true;
                    }
                }
                _ => return false,
            }
        }
    }

    /// One bounded write pass: the queue straight to the socket, or through TLS. Returns how
    /// it ended and the bytes that reached the socket.
    pub fn write(&mut self, budget: usize) -> io::Result<(Flushed, usize)> {
        let Some(tls) = &mut self.tls else {
            let before = self.out.bytes();
            let flushed = self.out.write_to(&mut self.stream, budget)?;
            return Ok((flushed, before - self.out.bytes()));
        };
        let mut sent = 0;
        loop {
            while tls.wants_write() {
                if sent >= budget {
                    return Ok((Flushed::Budget, sent));
                }
                match tls.write_ciphertext(&mut self.stream) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => sent += n,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        return Ok((Flushed::Blocked, sent))
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
            if self.out.is_empty() {
                return Ok((Flushed::All, sent));
            }
            // Encrypt what rustls's buffer takes; its WouldBlock means "write records first".
            let flushed = self.out.write_to(&mut tls.plaintext(), budget)?;
            if flushed != Flushed::All && !tls.wants_write() {
                // Plaintext held back during the handshake: the peer's next flight moves it.
                return Ok((Flushed::Stalled, sent));
            }
        }
    }

    /// Whether the hub asked not to read it now: held, or paused until a moment still to
    /// come.
    pub fn is_paused(&self, now: Instant) -> bool {
        self.held || self.paused_until.is_some_and(|until| until > now)
    }

    /// Whether the hub still expects to talk through this connection.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The moment a closing connection is given up on.
    pub fn close_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Draining(deadline) | State::Lingering(deadline) => Some(deadline),
            _ => None,
        }
    }
}
