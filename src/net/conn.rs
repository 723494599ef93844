//! One socket: its framing, read buffer, outbound queue, remembered writability and how far it
//! has got in closing.

use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;

use super::out_queue::OutQueue;
use crate::codec::{Decoder, Frame, Mode};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Reading and writing.
    Open,
    /// No more reading; flush the queue, then close (until the deadline).
    Draining(Instant),
    /// Our side is shut down; discard what the peer still sends until it closes, so closing
    /// does not reset the connection and destroy the last reply in flight.
    Lingering(Instant),
    /// Remove at the end of the pass.
    Dead,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    pub decoder: Decoder,
    /// Empty (no allocation) while the connection is idle: idle connections must be cheap.
    pub read_buf: BytesMut,
    pub out: OutQueue,
    pub state: State,
    /// Edge-triggered readiness is remembered here: set by a writable event, cleared by
    /// `WouldBlock`.
    pub writable: bool,
    /// In the loop's list of connections with bytes to write.
    pub write_queued: bool,
    /// The hub was told the queue passed its soft limit.
    pub backlogged: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, max_frame: usize) -> Self {
        Conn {
            stream,
            decoder: Decoder::new(max_frame),
            read_buf: BytesMut::new(),
            out: OutQueue::default(),
            state: State::Open,
            writable: false,
            write_queued: false,
            backlogged: false,
        }
    }

    /// The framing to answer in. A connection that has sent nothing yet (a 503 on accept, a
    /// login timeout) is answered in the default framing.
    pub fn mode(&self) -> Mode {
        self.decoder.mode().unwrap_or(Mode::Framed)
    }

    /// Queues a frame in this connection's framing.
    pub fn queue(&mut self, frame: &Frame) {
        for chunk in frame.chunks(self.mode()) {
            self.out.push(chunk);
        }
    }

    /// Whether the hub still expects to talk through this connection.
    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    /// The moment a closing connection is given up on.
    pub fn close_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Draining(deadline) | State::Lingering(deadline) => Some(deadline),
            State::Open | State::Dead => None,
        }
    }
}
