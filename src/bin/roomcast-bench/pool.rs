//! Thousands of client connections on one mio thread: connect, write frames, hand whole
//! received frames to the scenario. The load generator must not be what it measures, so
//! nothing here parses JSON.
//!
//! A pool fails on the first connection the server closes, since a load whose clients vanish
//! measures nothing; the attack scenarios instead [`tolerate closes`](Pool::tolerate_closes),
//! count them, and may [`reconnect`](Pool::reconnect) the slot.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// One client connection's buffers.
pub struct Conn {
    stream: TcpStream,
    inbox: Vec<u8>,
    /// Start of the unconsumed part of `inbox`.
    read_at: usize,
    outbox: Vec<u8>,
    written: usize,
    pub bytes_in: u64,
    /// Bytes the socket took.
    pub bytes_out: u64,
    /// False for a client that never reads: what the server sends piles up in its queues.
    pub reading: bool,
    /// The server closed or reset the connection (only in a pool that tolerates closes).
    pub closed: bool,
}

pub struct Pool {
    poll: Poll,
    events: Events,
    pub conns: Vec<Conn>,
    scratch: Vec<u8>,
    addr: SocketAddr,
    /// Whether a connection the server closes is counted (`closes`) instead of an error.
    tolerate_closes: bool,
    /// Connections found closed by the server.
    pub closes: u64,
}

impl Pool {
    /// Opens `count` connections (non-blocking; they finish connecting while we write).
    pub fn connect(addr: SocketAddr, count: usize) -> io::Result<Pool> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for index in 0..count {
            conns.push(Conn {
                stream: open(&poll, addr, index)?,
                inbox: Vec::new(),
                read_at: 0,
                outbox: Vec::new(),
                written: 0,
                bytes_in: 0,
                bytes_out: 0,
                reading: true,
                closed: false,
            });
        }
        Ok(Pool {
            poll,
            events: Events::with_capacity(4096),
            conns,
            scratch: vec![0; 256 * 1024],
            addr,
            tolerate_closes: false,
            closes: 0,
        })
    }

    /// From now on a connection the server closes or resets is marked `closed` and counted in
    /// `closes`, instead of failing the run.
    pub fn tolerate_closes(&mut self) {
        self.tolerate_closes = true;
    }

    /// Replaces connection `index` with a new one to the same address, with empty buffers.
    /// Its byte counters carry on.
    pub fn reconnect(&mut self, index: usize) -> io::Result<()> {
        let stream = open(&self.poll, self.addr, index)?;
        let conn = &mut self.conns[index];
        if !conn.closed {
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        conn.stream = stream;
        conn.inbox.clear();
        conn.read_at = 0;
        conn.outbox.clear();
        conn.written = 0;
        conn.closed = false;
        Ok(())
    }

    /// Bytes queued on connection `index` that its socket has not taken yet.
    pub fn pending(&self, index: usize) -> usize {
        let conn = &self.conns[index];
        conn.outbox.len() - conn.written
    }

    /// Queues one length-prefixed frame; it goes out on the next `flush` or `poll`. Nothing
    /// is queued on a closed connection.
    pub fn queue(&mut self, index: usize, body: &[u8]) {
        let conn = &mut self.conns[index];
        if conn.closed {
            return;
        }
        conn.outbox
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        conn.outbox.extend_from_slice(body);
    }

    /// Queues bytes that are already framed (e.g. a burst of frames encoded once).
    pub fn queue_raw(&mut self, index: usize, frames: &[u8]) {
        let conn = &mut self.conns[index];
        if !conn.closed {
            conn.outbox.extend_from_slice(frames);
        }
    }

    /// Queues one frame whose body `write_body` appends in place (no allocation per frame).
    pub fn queue_with(&mut self, index: usize, write_body: impl FnOnce(&mut Vec<u8>)) {
        if self.conns[index].closed {
            return;
        }
        let outbox = &mut self.conns[index].outbox;
        let header_at = outbox.len();
        outbox.extend_from_slice(&[0; 4]);
        write_body(outbox);
        let len = (outbox.len() - header_at - 4) as u32;
        outbox[header_at..header_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes what each connection has queued, as far as its socket takes it.
    pub fn flush(&mut self) -> io::Result<()> {
        for index in 0..self.conns.len() {
            self.flush_one(index)?;
        }
        Ok(())
    }

    /// Writes what connection `index` has queued, as far as its socket takes it.
    pub fn flush_one(&mut self, index: usize) -> io::Result<()> {
        let conn = &mut self.conns[index];
        if conn.closed {
            return Ok(());
        }
        if let Err(err) = write_pending(conn) {
            self.lost(index, err)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for traffic and calls `on_frame(conn, body, now)` for every whole
    /// frame received.
    pub fn poll(
        &mut self,
        timeout: Duration,
        mut on_frame: impl FnMut(usize, &[u8], Instant),
    ) -> io::Result<()> {
        self.poll.poll(&mut self.events, Some(timeout))?;
        let now = Instant::now();
        // The event list is borrowed while connections are closed, which needs `self`.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let result = self.handle_events(&events, &mut on_frame, now);
        self.events = events;
        result
    }

    fn handle_events(
        &mut self,
        events: &Events,
        on_frame: &mut impl FnMut(usize, &[u8], Instant),
        now: Instant,
    ) -> io::Result<()> {
        for event in events.iter() {
            let index = event.token().0;
            let conn = &mut self.conns[index];
            if conn.closed {
                continue;
            }
            if event.is_writable() {
                if let Err(err) = write_pending(conn) {
                    self.lost(index, err)?;
                    continue;
                }
            }
            let closing = event.is_read_closed() || event.is_error();
            if !conn.reading {
                // Nothing is read, so the close itself is the only sign of the server's
                // verdict (a cut-off, a timeout, a refusal).
                if closing {
                    self.lost(index, io::ErrorKind::ConnectionAborted.into())?;
                }
                continue;
            }
            if !(event.is_readable() || closing) {
                continue;
            }
            if let Err(err) = read_frames(conn, &mut self.scratch, index, on_frame, now) {
                self.lost(index, err)?;
            }
        }
        Ok(())
    }

    /// The server closed connection `index`: an error, unless this pool tolerates closes.
    fn lost(&mut self, index: usize, err: io::Error) -> io::Result<()> {
        if !self.tolerate_closes {
            return Err(err);
        }
        let conn = &mut self.conns[index];
        conn.closed = true;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        let _ = conn.stream.shutdown(Shutdown::Both);
        conn.outbox.clear();
        conn.written = 0;
        self.closes += 1;
        Ok(())
    }

    /// Buffer state of one connection, for error messages.
    pub fn describe(&self, index: usize) -> String {
        let c = &self.conns[index];
        format!(
            "{} bytes received, {} buffered unparsed, {} of {} queued bytes written",
            c.bytes_in,
            c.inbox.len() - c.read_at,
            c.written,
            c.outbox.len()
        )
    }

    /// Bytes received over all connections.
    pub fn bytes_in(&self) -> u64 {
        self.conns.iter().map(|c| c.bytes_in).sum()
    }
}

/// Opens a non-blocking connection registered as `Token(index)`; it finishes connecting while
/// frames are queued.
fn open(poll: &Poll, addr: SocketAddr, index: usize) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    poll.registry().register(
        &mut stream,
        Token(index),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    Ok(stream)
}

/// Reads until `WouldBlock`, handing each whole frame to `on_frame`. EOF is an error naming
/// the connection.
fn read_frames(
    conn: &mut Conn,
    scratch: &mut [u8],
    index: usize,
    on_frame: &mut impl FnMut(usize, &[u8], Instant),
    now: Instant,
) -> io::Result<()> {
    loop {
        match conn.stream.read(scratch) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("server closed connection {index}"),
                ))
            }
            Ok(n) => {
                conn.bytes_in += n as u64;
                conn.inbox.extend_from_slice(&scratch[..n]);
                while let Some(body) = next_frame(&conn.inbox[conn.read_at..]) {
                    let start = conn.read_at + 4;
                    on_frame(index, &conn.inbox[start..start + body], now);
                    conn.read_at = start + body;
                }
                if conn.read_at == conn.inbox.len() {
                    conn.inbox.clear();
                    conn.read_at = 0;
                } else if conn.read_at > 1 << 20 {
                    conn.inbox.drain(..conn.read_at);
                    conn.read_at = 0;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

/// Length of the next whole frame's body, if the buffer holds it.
fn next_frame(buf: &[u8]) -> Option<usize> {
    let header: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(header) as usize;
    (buf.len() >= 4 + len).then_some(len)
}

fn write_pending(conn: &mut Conn) -> io::Result<()> {
    while conn.written < conn.outbox.len() {
        match conn.stream.write(&conn.outbox[conn.written..]) {
            Ok(n) => {
                conn.written += n;
                conn.bytes_out += n as u64;
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => return Ok(()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    conn.outbox.clear();
    conn.written = 0;
    Ok(())
}
