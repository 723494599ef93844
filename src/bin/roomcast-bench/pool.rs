//! Thousands of client connections on one mio thread: connect, write frames, hand whole
//! received frames to the scenario. The load generator must not be what it measures, so
//! nothing here parses JSON.
//!
//! A pool fails on the first connection the server closes, since a load whose clients vanish
//! measures nothing; the attack scenarios instead [`tolerate closes`](Pool::tolerate_closes),
//! count them, and may [`reconnect`](Pool::reconnect) the slot.
//!
//! The [`Wire`] set once per run ([`set_wire`]) says what every pool speaks: length-prefixed
//! frames over TCP, a WebSocket (one text message per frame, masked with a zero key so the
//! generator copies nothing), or length-prefixed frames inside TLS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// What the pool's connections speak.
#[derive(Clone)]
pub enum Wire {
    /// Length-prefixed JSON over plain TCP.
    Tcp,
    /// A WebSocket on `/ws`.
    Ws,
    /// Length-prefixed JSON inside TLS, trusting this configuration's roots.
    Tls(Arc<rustls::ClientConfig>),
}

static WIRE: OnceLock<Wire> = OnceLock::new();

/// Sets what every pool of this run speaks (once, before any pool connects).
pub fn set_wire(wire: Wire) {
    let _ = WIRE.set(wire);
}

fn wire() -> Wire {
    WIRE.get().cloned().unwrap_or(Wire::Tcp)
}

/// A zero masking key leaves the payload as it is (the server cannot tell).
const WS_MASK: [u8; 4] = [0; 4];

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
    /// A WebSocket; `upgrading` until its `101` has been read.
    ws: bool,
    upgrading: bool,
    /// The TLS session, for `Wire::Tls`.
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Conn {
    fn new(stream: TcpStream, addr: SocketAddr) -> io::Result<Conn> {
        let mut conn = Conn {
            stream,
            inbox: Vec::new(),
            read_at: 0,
            outbox: Vec::new(),
            written: 0,
            bytes_in: 0,
            bytes_out: 0,
            reading: true,
            closed: false,
            ws: false,
            upgrading: false,
            tls: None,
        };
        conn.start(addr)?;
        Ok(conn)
    }

    /// Sets up the wire on a fresh stream: the upgrade request, or the TLS session.
    fn start(&mut self, addr: SocketAddr) -> io::Result<()> {
        match wire() {
            Wire::Tcp => {}
            Wire::Ws => {
                self.ws = true;
                self.upgrading = true;
                self.outbox.extend_from_slice(
                    format!(
                        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                         Sec-WebSocket-Version: 13\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
            Wire::Tls(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(io::Error::other)?;
                let mut tls =
                    rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
                // The outbox bounds what waits; rustls need not bound it twice.
                tls.set_buffer_limit(None);
                self.tls = Some(Box::new(tls));
            }
        }
        Ok(())
    }

    /// The header in front of a body of `len` bytes: the length prefix, or a masked text
    /// frame's header.
    fn header(&self, len: usize, out: &mut Vec<u8>) {
        if !self.ws {
            out.extend_from_slice(&(len as u32).to_be_bytes());
            return;
        }
        out.push(0x81);
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if let Ok(len) = u16::try_from(len) {
            out.push(0x80 | 126);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&WS_MASK);
    }
}

pub struct Pool {
    poll: Poll,
    events: Events,
    pub conns: Vec<Conn>,
    scratch: Vec<u8>,
    /// Connection `i` goes to `addrs[i % addrs.len()]`: users spread over a cluster's nodes.
    addrs: Vec<SocketAddr>,
    /// Whether a connection the server closes is counted (`closes`) instead of an error.
    tolerate_closes: bool,
    /// Connections found closed by the server.
    pub closes: u64,
}

impl Pool {
    /// Opens `count` connections (non-blocking; they finish connecting while we write).
    pub fn connect(addr: SocketAddr, count: usize) -> io::Result<Pool> {
        Pool::connect_spread(&[addr], count)
    }

    /// Opens `count` connections, connection `i` to `addrs[i % addrs.len()]`.
    pub fn connect_spread(addrs: &[SocketAddr], count: usize) -> io::Result<Pool> {
        if addrs.is_empty() {
            return Err(io::Error::other("no address to connect to"));
        }
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for index in 0..count {
            let addr = addrs[index % addrs.len()];
            conns.push(Conn::new(open(&poll, addr, index)?, addr)?);
        }
        Ok(Pool {
            poll,
            events: Events::with_capacity(4096),
            conns,
            scratch: vec![0; 256 * 1024],
            addrs: addrs.to_vec(),
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
        let addr = self.addrs[index % self.addrs.len()];
        let stream = open(&self.poll, addr, index)?;
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
        conn.start(addr)
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
        let mut header = Vec::with_capacity(14);
        conn.header(body.len(), &mut header);
        conn.outbox.extend_from_slice(&header);
        conn.outbox.extend_from_slice(body);
    }

    /// Queues bytes that are already framed (e.g. a burst of frames encoded once); plain TCP
    /// only (the attack scenarios).
    pub fn queue_raw(&mut self, index: usize, frames: &[u8]) {
        let conn = &mut self.conns[index];
        debug_assert!(
            !conn.ws && conn.tls.is_none(),
            "pre-framed bytes need plain TCP"
        );
        if !conn.closed {
            conn.outbox.extend_from_slice(frames);
        }
    }

    /// Queues one frame whose body `write_body` appends in place (no allocation per frame).
    pub fn queue_with(&mut self, index: usize, write_body: impl FnOnce(&mut Vec<u8>)) {
        if self.conns[index].closed {
            return;
        }
        let conn = &mut self.conns[index];
        let body_at = conn.outbox.len();
        write_body(&mut conn.outbox);
        let mut header = Vec::with_capacity(14);
        conn.header(conn.outbox.len() - body_at, &mut header);
        conn.outbox.splice(body_at..body_at, header);
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
                let handshake_reply = match conn.tls.as_mut() {
                    None => {
                        conn.inbox.extend_from_slice(&scratch[..n]);
                        false
                    }
                    Some(tls) => {
                        decrypt(tls, &scratch[..n], &mut conn.inbox)?;
                        tls.wants_write()
                    }
                };
                if handshake_reply {
                    write_pending(conn)?;
                }
                if conn.upgrading {
                    let Some(end) = conn.inbox.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    if !conn.inbox.starts_with(b"HTTP/1.1 101 ") {
                        return Err(io::Error::other(format!(
                            "connection {index}: the WebSocket upgrade was refused: {}",
                            String::from_utf8_lossy(&conn.inbox[..end])
                        )));
                    }
                    conn.upgrading = false;
                    conn.read_at = end + 4;
                }
                while let Some((header, body)) = next_frame(&conn.inbox[conn.read_at..], conn.ws)? {
                    let start = conn.read_at + header;
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

/// The header and body lengths of the next whole frame, if the buffer holds it: a length
/// prefix, or an unmasked server WebSocket frame (a close frame is the server's verdict).
fn next_frame(buf: &[u8], ws: bool) -> io::Result<Option<(usize, usize)>> {
    if !ws {
        let Some(header) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        return Ok((buf.len() >= 4 + len).then_some((4, len)));
    }
    let (Some(&first), Some(&second)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    let (header, len) = match second & 0x7f {
        126 => match buf.get(2..4) {
            Some(len) => (4, u16::from_be_bytes([len[0], len[1]]) as usize),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(len) => {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(len);
                (10, u64::from_be_bytes(bytes) as usize)
            }
            None => return Ok(None),
        },
        len => (2, len as usize),
    };
    if first & 0x0f == 0x8 {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the server closed the WebSocket",
        ));
    }
    Ok((buf.len() >= header + len).then_some((header, len)))
}

/// Feeds ciphertext to the TLS session and appends the plaintext to `inbox`.
fn decrypt(
    tls: &mut rustls::ClientConnection,
    mut wire: &[u8],
    inbox: &mut Vec<u8>,
) -> io::Result<()> {
    while !wire.is_empty() {
        tls.read_tls(&mut wire)?;
        let state = tls.process_new_packets().map_err(io::Error::other)?;
        let pending = state.plaintext_bytes_to_read();
        let start = inbox.len();
        inbox.resize(start + pending, 0);
        tls.reader().read_exact(&mut inbox[start..])?;
    }
    Ok(())
}

fn write_pending(conn: &mut Conn) -> io::Result<()> {
    if let Some(tls) = conn.tls.as_mut() {
        // Everything queued becomes records at once (the buffer limit is off); then the
        // records go out as far as the socket takes them.
        if conn.written < conn.outbox.len() {
            tls.writer().write_all(&conn.outbox[conn.written..])?;
            conn.outbox.clear();
            conn.written = 0;
        }
        while tls.wants_write() {
            match tls.write_tls(&mut conn.stream) {
                Ok(n) => conn.bytes_out += n as u64,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        return Ok(());
    }
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
