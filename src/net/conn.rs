//! One socket: its transport, read buffer, outbound queue, remembered writability and how far it
//! has got in its life.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;

use super::out_queue::OutQueue;
use crate::frame::Frame;
use crate::hub::ConnId;
use crate::transport::Transport;

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
