//! Thousands of client connections on one mio thread: connect, write frames, hand whole
//! received frames to the scenario. The load generator must not be what it measures, so
//! nothing here parses JSON.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
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
}

pub struct Pool {
    poll: Poll,
    events: Events,
    pub conns: Vec<Conn>,
    scratch: Vec<u8>,
}

impl Pool {
    /// Opens `count` connections (non-blocking; they finish connecting while we write).
    pub fn connect(addr: SocketAddr, count: usize) -> io::Result<Pool> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for index in 0..count {
            let mut stream = TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            poll.registry().register(
                &mut stream,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                inbox: Vec::new(),
                read_at: 0,
                outbox: Vec::new(),
                written: 0,
                bytes_in: 0,
            });
        }
        Ok(Pool {
            poll,
            events: Events::with_capacity(4096),
            conns,
            scratch: vec![0; 256 * 1024],
        })
    }

    /// Queues one length-prefixed frame; it goes out on the next `flush` or `poll`.
    pub fn queue(&mut self, index: usize, body: &[u8]) {
        let conn = &mut self.conns[index];
        conn.outbox
            .extend_from_slice(&(body.len() as u32).to_be_bytes());
        conn.outbox.extend_from_slice(body);
    }

    /// Queues one frame whose body `write_body` appends in place (no allocation per frame).
    pub fn queue_with(&mut self, index: usize, write_body: impl FnOnce(&mut Vec<u8>)) {
        let outbox = &mut self.conns[index].outbox;
        let header_at = outbox.len();
        outbox.extend_from_slice(&[0; 4]);
        write_body(outbox);
        let len = (outbox.len() - header_at - 4) as u32;
        outbox[header_at..header_at + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Writes what each connection has queued, as far as its socket takes it.
    pub fn flush(&mut self) -> io::Result<()> {
        for conn in &mut self.conns {
            write_pending(conn)?;
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
        for event in self.events.iter() {
            let index = event.token().0;
            let conn = &mut self.conns[index];
            if event.is_writable() {
                write_pending(conn)?;
            }
            if !(event.is_readable() || event.is_read_closed()) {
                continue;
            }
            loop {
                match conn.stream.read(&mut self.scratch) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("server closed connection {index}"),
                        ))
                    }
                    Ok(n) => {
                        conn.bytes_in += n as u64;
                        conn.inbox.extend_from_slice(&self.scratch[..n]);
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
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
            }
        }
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

/// Length of the next whole frame's body, if the buffer holds it.
fn next_frame(buf: &[u8]) -> Option<usize> {
    let header: [u8; 4] = buf.get(..4)?.try_into().ok()?;
    let len = u32::from_be_bytes(header) as usize;
    (buf.len() >= 4 + len).then_some(len)
}

fn write_pending(conn: &mut Conn) -> io::Result<()> {
    while conn.written < conn.outbox.len() {
        match conn.stream.write(&conn.outbox[conn.written..]) {
            Ok(n) => conn.written += n,
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
