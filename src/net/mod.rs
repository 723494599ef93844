//! The event loop: a thin shell around the [`Hub`]. It accepts, reads, lets each connection's
//! transport turn bytes into messages, hands those to the hub, and writes what the hub asks for.
//! It never looks inside JSON.
//!
//! One pass of [`Server::run`], with the clock read once, right after the poll:
//! 1. poll, with the nearest deadline (hub timer, greeting and refusal deadlines, closing
//!    connections, accept back-off) as the timeout, or zero when a previous pass left work;
//! 2. for each readable socket, read until `WouldBlock` (bounded per pass): the first bytes
//!    fix the transport (a TLS ClientHello starts a TLS session, whose plaintext is sniffed
//!    in turn); framed and line connections, and WebSockets once upgraded, are opened to the
//!    hub, while plain HTTP requests are answered here (`routes`) and closed; whole messages
//!    go to the hub, and after each one the hub's direct replies move to their queues (a
//!    connection the hub paused, or one past its queue limit, is read no further); bytes the
//!    transport answers itself (pongs, the `101`) are queued at once; remember writability
//!    from writable events;
//! 3. connections that hit the read budget last pass, or whose pause ended, read on; accepts
//!    retried after a back-off;
//! 4. greetings and refusals whose deadline passed are settled; the memory budget is checked;
//! 5. run the hub's due timers (always asked: an empty event list proves nothing);
//! 6. drain the hub's outputs into connection queues: one shared buffer per frame;
//! 7. one vectored write pass over connections with pending bytes, bounded per connection
//!    (a TLS connection encrypts its queue as it goes: the encode-once rule stops there);
//! 8. reap closing connections last, so nothing is torn down in the middle of a fan-out; what
//!    that tells the hub is drained and written in the same pass.

mod conn;
mod fd;
mod ledger;
mod out_queue;
mod routes;
mod services;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::clock::WallClock;
use crate::config::Config;
use crate::hub::{ConnId, Hub, Input, Output, Refusal};
use crate::quiet::Tally;
use crate::stats::ConnKind;
use crate::transport::http::{self, HttpRequest};
use crate::transport::tls::{self, TlsConfig, TlsSession};
use crate::transport::{Event, TransportError, TransportKind};
use conn::{Conn, State};
pub use fd::raise_limit as raise_fd_limit;
use ledger::{Ledger, DRAIN_TIMEOUT};
use out_queue::{Flushed, OutQueue};
use services::{Services, StartError};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Bytes read from one connection per pass before the others get their turn.
const READ_BUDGET: usize = 256 * 1024;
/// Bytes written to one connection per pass before the others get their turn.
const WRITE_BUDGET: usize = 256 * 1024;
/// Size of the one read buffer shared by all connections; each keeps only what it must.
const SCRATCH: usize = 64 * 1024;
/// How long a shut-down connection is read and discarded before it is dropped.
const LINGER_TIMEOUT: Duration = Duration::from_millis(500);
/// Pause after an accept error such as EMFILE, so the loop does not spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Connections refused through the spare descriptor in one pass, before backing off.
const SPARE_REFUSALS_PER_PASS: usize = 256;
/// How often the loop looks whether the store caught up, while clients wait for it.
const STORE_RECHECK: Duration = Duration::from_millis(1);
/// How long shutdown waits for queues to flush.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// How long a refused connection is given to send its first bytes, so that its refusal is
/// written in its own framing. Clients speak first (a login, an HTTP request, a TLS hello)
/// within a round trip of connecting; a silent one gets the default framing.
const REFUSAL_GRACE: Duration = Duration::from_millis(250);
/// How often the one-line summary (connections, sessions, rooms, rates) is logged.
const SUMMARY_PERIOD: Duration = Duration::from_secs(60);
/// How often memory use is compared with the budget.
const MEMORY_CHECK: Duration = Duration::from_millis(20);
/// Connections cut in one check when memory is over the budget; the next check sees the
/// effect before cutting more.
const CUTS_PER_CHECK: usize = 64;

/// Where the loop learns how much memory the process uses. The `roomcast` binary installs a
/// counting allocator and reports its exact count; an embedding program without one gets an
/// estimate from the queues and histories the loop and the hub hold.
pub type MemoryGauge = fn() -> usize;

/// A bound server, ready to [`run`](Server::run) or [`spawn`](Server::spawn).
pub struct Server {
    config: Config,
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    conns: Slab<Conn>,
    /// Places taken (`--max-clients`, `--max-conns-per-ip`) and connections closing.
    ledger: Ledger,
    /// Serial number of the next accepted connection: with the slab key, a `ConnId`.
    next_serial: u64,
    hub: Hub,
    services: Option<Services>,
    clock: WallClock,
    signal: Arc<Signal>,
    scratch: Box<[u8]>,
    /// Connections with bytes to write (deduplicated by `Conn::write_queued`).
    pending_writes: Vec<usize>,
    /// Connections that hit the read budget and may have more to read.
    pending_reads: Vec<usize>,
    /// Connections not yet heard from, by deadline (accept order, so deadlines ascend).
    greetings: VecDeque<(Instant, ConnId)>,
    /// Refused connections waiting for their first bytes, by deadline.
    refusals: VecDeque<(Instant, ConnId)>,
    /// Connections the hub paused, by the end of their pause.
    paused: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// Connections left unread while the store catches up, to read again after.
    waiting_for_store: Vec<ConnId>,
    memory_gauge: Option<MemoryGauge>,
    next_memory_check: Instant,
    memory_high: bool,
    spare: fd::Spare,
    accept_retry: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    tallies: Tallies,
    /// The TLS server configuration, when `--tls-cert` and `--tls-key` were given.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// When the next summary line is due, and the totals at the last one.
    next_summary: Instant,
    last_summary: (Instant, u64, u64),
}

/// Repetitive lines of the loop, summarized under floods.
struct Tallies {
    connects: Tally,
    refused: Tally,
    accept_failures: Tally,
    slow: Tally,
}

struct Signal {
    requested: AtomicBool,
    waker: Waker,
}

/// Stops a running server from any thread: every client gets 503 "Server shutting down.",
/// queues flush for at most 2 s, and `run` returns `Ok`.
#[derive(Clone)]
pub struct ShutdownHandle(Arc<Signal>);

impl ShutdownHandle {
    /// Asks the loop to shut down; returns at once.
    pub fn shutdown(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        if let Err(err) = self.0.waker.wake() {
            log::error!("could not wake the event loop for shutdown: {err}");
        }
    }
}

/// A server running on its own thread.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: JoinHandle<io::Result<()>>,
}

impl ServerHandle {
    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Asks the server to shut down; see [`ShutdownHandle`].
    pub fn shutdown(&self) {
        self.shutdown.shutdown();
    }

    /// A handle that can stop the server from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Waits for the loop to end and returns how it ended.
    pub fn join(self) -> io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("server thread panicked")))
    }
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// A setting that cannot work.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The listener or the poller could not be set up.
    #[error("cannot listen: {0}")]
    Io(#[from] io::Error),
    /// The store or the hashing service could not start.
    #[error("{0}")]
    Services(#[from] StartError),
    /// The TLS certificate or key could not be read or used.
    #[error("TLS: {0}")]
    Tls(#[from] crate::transport::tls::TlsError),
}

impl From<BindError> for io::Error {
    fn from(err: BindError) -> io::Error {
        match err {
            BindError::Io(err) => err,
            BindError::Config(err) => io::Error::new(io::ErrorKind::InvalidInput, err),
            BindError::Services(err) => io::Error::other(err),
            BindError::Tls(err) => io::Error::new(io::ErrorKind::InvalidInput, err),
        }
    }
}

impl Server {
    /// Checks the config, binds the listener, opens the store (restoring what it keeps) and
    /// starts the services; serves nothing until run.
    pub fn bind(config: Config) -> Result<Server, BindError> {
        config.validate()?;
        let tls = match &config.tls {
            Some(files) => Some(TlsConfig::from_pem(&files.cert, &files.key)?),
            None => None,
        };
        let poll = Poll::new()?;
        let mut listener = listen(config.addr)?;
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let now = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs_f64())
            .unwrap_or(0.0);
        let clock = WallClock::new(now, unix);
        let mut hub = Hub::new(config.clone(), clock, now);
        let signal = Arc::new(Signal {
            requested: AtomicBool::new(false),
            waker,
        });
        let woken = Arc::clone(&signal);
        let services = Services::start(&config, &mut hub, move || {
            if let Err(err) = woken.waker.wake() {
                log::error!("cannot wake the event loop for a service's answer: {err}");
            }
        })?;
        Ok(Server {
            config,
            poll,
            listener: Some(listener),
            local_addr,
            conns: Slab::new(),
            ledger: Ledger::default(),
            next_serial: 0,
            hub,
            services: Some(services),
            clock,
            signal,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            pending_writes: Vec::new(),
            pending_reads: Vec::new(),
            greetings: VecDeque::new(),
            refusals: VecDeque::new(),
            paused: BinaryHeap::new(),
            waiting_for_store: Vec::new(),
            memory_gauge: None,
            next_memory_check: now,
            memory_high: false,
            spare: fd::Spare::new(),
            accept_retry: None,
            shutdown_deadline: None,
            tls,
            next_summary: now + SUMMARY_PERIOD,
            last_summary: (now, 0, 0),
            tallies: Tallies {
                connects: Tally::new("connections", log::Level::Info),
                refused: Tally::new("connections refused", log::Level::Info),
                accept_failures: Tally::new("accept failures", log::Level::Warn),
                slow: Tally::new("slow readers cut off", log::Level::Warn),
            },
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that stops [`run`](Server::run) from another thread (or a signal handler's).
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.signal.clone())
    }

    /// Reads the process's memory use from `gauge` (e.g. a counting allocator's total)
    /// instead of estimating it.
    pub fn set_memory_gauge(&mut self, gauge: MemoryGauge) {
        self.memory_gauge = Some(gauge);
    }

    /// Runs the loop on a new thread.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let local_addr = self.local_addr;
        let shutdown = self.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("roomcast".into())
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            local_addr,
            shutdown,
            thread,
        })
    }

    /// Serves until shut down. Returns `Err` only if polling itself fails.
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut now = Instant::now();
        loop {
            let timeout = self.poll_timeout(now);
            if let Err(err) = self.poll.poll(&mut events, timeout) {
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            now = Instant::now();
            log::trace!(
                "woke after timeout {timeout:?} with {} events",
                events.iter().count()
            );
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {
                        if self.signal.requested.load(Ordering::SeqCst) {
                            self.begin_shutdown(now);
                        }
                        let answers = self.services.as_ref().map(Services::answers);
                        for (id, done) in answers.into_iter().flatten() {
                            self.hub.handle(now, Input::Done { id, done });
                        }
                        let cluster = self.services.as_ref().map(Services::cluster_answers);
                        for input in cluster.into_iter().flatten() {
                            self.hub.handle(now, Input::Cluster(input));
                        }
                    }
                    Token(key) => {
                        log::trace!("{key}: {event:?}");
                        if event.is_writable() {
                            self.mark_writable(key);
                        }
                        let closing = event.is_read_closed() || event.is_error();
                        if event.is_readable() || closing {
                            self.read(key, now, closing);
                        }
                    }
                }
            }
            self.resume_paused(now);
            self.resume_waiting_for_store(now);
            for key in std::mem::take(&mut self.pending_reads) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.read_queued = false;
                }
                self.read(key, now, true);
            }
            if self.accept_retry.is_some_and(|at| now >= at) {
                self.accept_retry = None;
                self.accept(now);
            }
            self.settle_greetings(now);
            self.check_memory(now);
            self.run_timers(now);
            self.drain_outputs(now);
            self.write_pass(now);
            self.reap(now);
            self.drain_outputs(now);
            self.write_pass(now);
            self.summarize(now);
            // Measured for /metrics only; the pass itself keeps the one `now` read above.
            let pass = now.elapsed();
            self.hub.stats_mut().loop_pass_took(pass);
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    log::info!("shut down ({} connections cut off)", self.conns.len());
                    if let Some(services) = self.services.take() {
                        services.shutdown();
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Runs the hub's due timers, timing the pose tick when one ran (the hub reads no clock).
    fn run_timers(&mut self, now: Instant) {
        let ticks = self.hub.stats_mut().ticks_run();
        let started = Instant::now();
        self.hub.handle_timeout(now);
        if self.hub.stats_mut().ticks_run() != ticks {
            let took = started.elapsed();
            self.hub.stats_mut().tick_took(took);
        }
    }

    /// The one-line summary every minute (at info level, so `--log-level warn` hides it).
    fn summarize(&mut self, now: Instant) {
        if now < self.next_summary {
            return;
        }
        self.next_summary = now + SUMMARY_PERIOD;
        let stats = self.hub.stats();
        let (messages, bytes) = (stats.messages_received(), stats.bytes_sent());
        let (since, last_messages, last_bytes) = self.last_summary;
        let seconds = now.saturating_duration_since(since).as_secs_f64().max(1e-3);
        log::info!(
            "summary: {} connections, {} sessions, {} rooms, {:.1} messages/s, {:.0} bytes/s",
            stats.connections(),
            stats.sessions(),
            stats.rooms(),
            messages.saturating_sub(last_messages) as f64 / seconds,
            bytes.saturating_sub(last_bytes) as f64 / seconds,
        );
        self.last_summary = (now, messages, bytes);
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.pending_reads.is_empty() || !self.pending_writes.is_empty() {
            return Some(Duration::ZERO);
        }
        let closing = self
            .ledger
            .closing
            .iter()
            .filter_map(|&key| self.conns.get(key).and_then(Conn::close_deadline));
        let greeting = self.greetings.front().map(|&(deadline, _)| deadline);
        let refusal = self.refusals.front().map(|&(deadline, _)| deadline);
        let pause = self.paused.peek().map(|Reverse((until, _))| *until);
        // The store has no way to wake the loop when it catches up: look again soon.
        let store = (!self.waiting_for_store.is_empty()).then(|| now + STORE_RECHECK);
        let memory = (!self.conns.is_empty()).then_some(self.next_memory_check);
        self.hub
            .poll_timeout()
            .into_iter()
            .chain(self.accept_retry)
            .chain(self.shutdown_deadline)
            .chain(greeting)
            .chain(refusal)
            .chain(pause)
            .chain(store)
            .chain(memory)
            .chain(closing)
            .chain(Some(self.next_summary))
            .min()
            .map(|deadline| deadline.saturating_duration_since(now))
    }

    fn accept(&mut self, now: Instant) {
        let mut spare_refusals = 0;
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(err) => {
                    // EMFILE and friends: the pending connection stays in the backlog and would
                    // make every retry fail at once. The spare descriptor lets one through to be
                    // told the server is full; past a pass's share, back off instead of spinning.
                    if self.tallies.accept_failures.note(now) {
                        log::warn!("accept failed: {err}");
                    }
                    let refusal = Refusal::ServerFull.encode(self.clock.unix(now));
                    let refused = spare_refusals < SPARE_REFUSALS_PER_PASS
                        && matches!(
                            self.spare.refuse_one(listener, &refusal.length_prefixed()),
                            Ok(true)
                        );
                    if refused {
                        spare_refusals += 1;
                        continue;
                    }
                    self.accept_retry = Some(now + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Sets up an accepted connection: greeting, or refused (server full, address full).
    fn admit(&mut self, mut stream: mio::net::TcpStream, peer: SocketAddr, now: Instant) {
        // Nagle plus delayed ACKs stalls small frames by ~40 ms.
        if let Err(err) = stream.set_nodelay(true) {
            log::debug!("TCP_NODELAY on {peer}: {err}");
        }
        if self.config.send_buffer > 0 {
            // A small kernel buffer keeps what a slow reader pins close to --max-outbuf.
            let socket = socket2::SockRef::from(&stream);
            if let Err(err) = socket.set_send_buffer_size(self.config.send_buffer) {
                log::debug!("SO_SNDBUF on {peer}: {err}");
            }
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(err) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), interest)
        {
            log::warn!("cannot register {peer}: {err}");
            return;
        }
        let id = ConnId::new(key, self.next_serial);
        self.next_serial += 1;
        let mut conn = Conn::new(id, stream, peer, now, self.config.max_frame);
        let from_peer = self.ledger.held_by(peer.ip());
        let refusal = if self.ledger.admitted >= self.config.max_clients {
            Some(Refusal::ServerFull)
        } else if self.config.max_conns_per_ip > 0 && from_peer >= self.config.max_conns_per_ip {
            Some(Refusal::AddressFull {
                max: self.config.max_conns_per_ip,
            })
        } else {
            None
        };
        self.hub.stats_mut().conn_opened(ConnKind::Pending, false);
        match refusal {
            Some(refusal) => {
                if self.tallies.refused.note(now) {
                    log::info!("{peer} refused ({}): {refusal}", refusal.code().as_u16());
                }
                conn.state = State::Refusing(refusal.encode(self.clock.unix(now)));
                self.refusals.push_back((now + REFUSAL_GRACE, id));
            }
            None => {
                self.ledger.admit(peer.ip());
                self.greetings
                    .push_back((now + self.config.login_timeout, id));
                log::debug!("{peer} accepted");
            }
        }
        entry.insert(conn);
    }

    /// Connections silent since they were accepted are opened with the default transport (the
    /// hub then times them out as not logged in); refused ones that stayed silent get their
    /// refusal in the default framing.
    fn settle_greetings(&mut self, now: Instant) {
        while let Some(&(deadline, id)) = self.greetings.front() {
            if deadline > now {
                break;
            }
            self.greetings.pop_front();
            let key = id.slot();
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.id == id) else {
                continue;
            };
            if conn.state != State::Greeting {
                continue;
            }
            if conn.transport.kind() == Some(TransportKind::Http) {
                // Not even a request head within the login timeout.
                conn.queue_raw(http::response(
                    408,
                    "text/plain; charset=utf-8",
                    b"request head not complete within the login timeout\n",
                    &[],
                ));
                want_write(conn, &mut self.pending_writes);
                self.ledger.begin_close(conn, now);
            } else if conn.tls.as_ref().is_some_and(|tls| tls.is_handshaking()) {
                self.ledger.kill(conn, key);
            } else {
                conn.transport.assume(TransportKind::Framed);
                self.open_conn(key, now);
            }
        }
        while let Some(&(deadline, id)) = self.refusals.front() {
            if deadline > now {
                break;
            }
            self.refusals.pop_front();
            if self.conns.get(id.slot()).is_some_and(|c| c.id == id) {
                self.try_refusal(id.slot(), now, true);
            }
        }
        let tallies = &mut self.tallies;
        for tally in [
            &mut tallies.connects,
            &mut tallies.refused,
            &mut tallies.accept_failures,
            &mut tallies.slow,
        ] {
            tally.flush(now);
        }
        if let Some(services) = &mut self.services {
            services.flush_tallies(now);
        }
    }

    /// Compares memory use with the budget: near it, the hub refuses logins and joins; past
    /// it, the connections with the largest queues are cut.
    fn check_memory(&mut self, now: Instant) {
        if now < self.next_memory_check {
            return;
        }
        self.next_memory_check = now + MEMORY_CHECK;
        let used = match self.memory_gauge {
            Some(gauge) => gauge(),
            None => {
                let queued: usize = self.conns.iter().map(|(_, conn)| conn.out.bytes()).sum();
                queued + self.hub.history_bytes()
            }
        };
        let budget = self.config.max_memory;
        let high = used > budget / 10 * 9 || (self.memory_high && used > budget / 10 * 8);
        if high != self.memory_high {
            self.memory_high = high;
            self.hub.handle(now, Input::MemoryPressure(high));
        }
        if used <= budget {
            return;
        }
        let mut queues: Vec<(usize, usize)> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.state.is_admitted() && !conn.out.is_empty())
            .map(|(key, conn)| (conn.out.bytes(), key))
            .collect();
        queues.sort_unstable_by(|a, b| b.cmp(a));
        let mut to_free = used - budget / 10 * 9;
        for (bytes, key) in queues.into_iter().take(CUTS_PER_CHECK) {
            if to_free == 0 {
                break;
            }
            to_free = to_free.saturating_sub(bytes);
            if let Some(conn) = self.conns.get_mut(key) {
                log::warn!(
                    "{} cut off: memory {used} bytes is over --max-memory {budget}, and its queue of {bytes} bytes is among the largest",
                    conn.peer
                );
                self.hub.handle(now, Input::Closed(conn.id));
                self.ledger.kill(conn, key);
            }
        }
    }

    fn mark_writable(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            conn.writable = true;
            if conn.has_output() && !conn.write_queued {
                conn.write_queued = true;
                self.pending_writes.push(key);
            }
        }
    }

    /// Reads what the socket has (up to the per-pass budget) and feeds whole messages to the
    /// hub. `drain` reads on to `WouldBlock` or EOF even after a short read: needed when the
    /// event already reported the peer's close, which will not raise another edge.
    fn read(&mut self, key: usize, now: Instant, drain: bool) {
        self.read_socket(key, now, drain);
        self.recount(key);
    }

    fn read_socket(&mut self, key: usize, now: Instant, drain: bool) {
        if !self.deliver(key, now) {
            return;
        }
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if !conn.state.is_reading() || conn.is_paused(now) {
                return;
            }
            if budget == 0 {
                // One more read next pass, however many events asked for this one.
                if !conn.read_queued {
                    conn.read_queued = true;
                    self.pending_reads.push(key);
                }
                return;
            }
            match conn.stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.peer_closed(key, now);
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    if matches!(conn.state, State::Lingering(_)) {
                        continue; // discard
                    }
                    if !self.take_bytes(key, n, now) || !self.deliver(key, now) {
                        return;
                    }
                    let Some(conn) = self.conns.get_mut(key) else {
                        return;
                    };
                    if matches!(conn.state, State::Refusing(_)) {
                        self.try_refusal(key, now, false);
                        return;
                    }
                    if conn.tls.as_ref().is_some_and(|tls| tls.peer_closed()) {
                        self.peer_closed(key, now);
                        return;
                    }
                    if n < SCRATCH && !drain {
                        // A stream socket's read takes all that is there: a short read means
                        // the buffer was empty just now, and data arriving later raises a new
                        // edge. Skipping the read that would say WouldBlock saves a syscall
                        // per message for the typical small frame.
                        return;
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    log::debug!("{key}: read failed: {err}");
                    self.ledger.kill(conn, key);
                    return;
                }
            }
        }
    }

    /// The peer closed its side (EOF, or TLS close_notify).
    fn peer_closed(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.state {
            State::Open => {
                // Half-close or close: replies already queued still go out.
                self.hub.handle(now, Input::Closed(conn.id));
                self.ledger.begin_close(conn, now);
            }
            State::Refusing(_) => self.try_refusal(key, now, true),
            State::Greeting => self.ledger.kill(conn, key),
            State::Draining(_) => {}
            _ => conn.state = State::Dead,
        }
    }

    /// Takes `n` bytes just read into the scratch buffer: the first ones decide TLS; TLS
    /// records are decrypted into the read buffer, other bytes appended as they are. False
    /// when the connection is closing now (a ClientHello with TLS off, a TLS failure).
    fn take_bytes(&mut self, key: usize, n: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        let received = &self.scratch[..n];
        if !conn.sniffed {
            conn.sniffed = true;
            if received.first().copied().is_some_and(tls::looks_like_tls) {
                let Some(config) = &self.tls else {
                    if self.tallies.refused.note(now) {
                        log::info!(
                            "{} refused: a TLS ClientHello, but TLS is off (start the server with --tls-cert and --tls-key)",
                            conn.peer
                        );
                    }
                    conn.queue_raw(tls::handshake_failure_alert());
                    want_write(conn, &mut self.pending_writes);
                    self.ledger.begin_close(conn, now);
                    return false;
                };
                match TlsSession::new(config.clone()) {
                    Ok(session) => conn.tls = Some(Box::new(session)),
                    Err(err) => {
                        log::warn!("{}: cannot start TLS: {err}", conn.peer);
                        self.ledger.kill(conn, key);
                        return false;
                    }
                }
            }
        }
        let Some(session) = conn.tls.as_mut() else {
            conn.read_buf.extend_from_slice(received);
            return true;
        };
        let fed = session.feed(received, &mut conn.read_buf);
        if conn.has_output() {
            want_write(conn, &mut self.pending_writes);
        }
        let Err(err) = fed else {
            return true;
        };
        if self.tallies.refused.note(now) {
            log::info!("{} TLS failed: {err}", conn.peer);
        }
        if conn.state == State::Open {
            self.hub.handle(now, Input::Closed(conn.id));
        }
        // Nothing more can be encrypted; the alert rustls queued goes out alone.
        conn.out = OutQueue::default();
        conn.goodbye_stage = u8::MAX;
        self.ledger.begin_close(conn, now);
        false
    }

    /// Hands the whole messages in a connection's read buffer to the hub, one at a time, moving
    /// the hub's direct replies to their queues after each; answers what the transport answers
    /// itself (pongs, HTTP requests, the WebSocket upgrade, closes). A connection whose first
    /// bytes say it speaks the protocol is opened to the hub here. False when the connection
    /// must not be read further now (paused, closing, gone).
    fn deliver(&mut self, key: usize, now: Instant) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            match &conn.state {
                State::Open if conn.is_paused(now) => return false,
                State::Open | State::Greeting => {}
                other => return other.is_reading(),
            }
            let id = conn.id;
            if conn.state == State::Open
                && self
                    .services
                    .as_mut()
                    .is_some_and(|s| s.store_is_behind(now))
            {
                if !conn.waiting_for_store {
                    conn.waiting_for_store = true;
                    self.waiting_for_store.push(id);
                }
                return false;
            }
            let event = conn.transport.next_event(&mut conn.read_buf);
            let opens = conn.state == State::Greeting
                && conn.transport.speaks_protocol()
                && !matches!(event, Ok(Some(Event::Upgraded(_))));
            if opens {
                // Framed or line mode: the first byte was enough.
                self.open_conn(key, now);
            }
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            match event {
                Ok(Some(Event::Message(body))) => {
                    self.hub.handle(now, Input::Frame(id, &body));
                    self.move_outputs(now, false);
                }
                Ok(Some(Event::Reply(bytes))) => {
                    conn.queue_raw(bytes);
                    want_write(conn, &mut self.pending_writes);
                    // Pongs skip the hub's rate limit, but not the queue limit: a peer that
                    // pings without reading is cut off like any slow reader.
                    let queued = conn.out.bytes();
                    if queued > self.config.max_outbuf {
                        if self.tallies.slow.note(now) {
                            log::warn!(
                                "{} does not read its pongs: {queued} bytes queued; disconnecting",
                                conn.peer
                            );
                        }
                        self.hub.stats_mut().slow_consumer_disconnect();
                        self.hub.handle(now, Input::Closed(id));
                        self.ledger.kill(conn, key);
                        return false;
                    }
                }
                Ok(Some(Event::Upgraded(accept))) => {
                    conn.queue_raw(accept);
                    want_write(conn, &mut self.pending_writes);
                    self.open_conn(key, now);
                }
                Ok(Some(Event::Request(request))) => {
                    self.respond(key, &request, now);
                    return false;
                }
                Ok(Some(Event::Closed(reply))) => {
                    conn.queue_raw(reply);
                    want_write(conn, &mut self.pending_writes);
                    if conn.state == State::Open {
                        self.hub.handle(now, Input::Closed(id));
                    }
                    self.ledger.begin_close(conn, now);
                    return false;
                }
                Ok(None) => {
                    if conn.read_buf.is_empty() {
                        conn.read_buf = BytesMut::new(); // idle connections hold no buffer
                    }
                    return true;
                }
                Err(err) => {
                    log::debug!("{key}: {err}");
                    if conn.state == State::Open {
                        self.hub.handle(now, Input::Malformed(id, err.problem()));
                        conn.closing_error = Some(Box::new(err));
                    } else {
                        if self.tallies.refused.note(now) {
                            let code = match &err {
                                TransportError::Http(http) => http.status(),
                                other => other.problem().code.as_u16(),
                            };
                            log::info!("{} refused ({code}): {err}", conn.peer);
                        }
                        if let Some(answer) = err.answer() {
                            conn.queue_raw(answer);
                            want_write(conn, &mut self.pending_writes);
                        }
                    }
                    self.ledger.begin_close(conn, now);
                    conn.read_buf = BytesMut::new();
                    return false;
                }
            }
        }
    }

    /// The connection speaks the protocol now: the hub hears of it.
    fn open_conn(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.state = State::Open;
        if self.tallies.connects.note(now) {
            log::info!("{} connected ({})", conn.peer, conn.describe());
        }
        let (id, peer, since) = (conn.id, conn.peer.ip(), conn.accepted);
        self.hub.handle(
            now,
            Input::Open {
                conn: id,
                peer,
                since,
            },
        );
        self.recount(key);
    }

    /// Answers a plain HTTP request and closes the connection.
    fn respond(&mut self, key: usize, request: &HttpRequest, now: Instant) {
        self.recount(key); // counted as http in what it may be about to render
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let context = routes::Context {
            peer: conn.peer.ip(),
            allow: &self.config.metrics_allow,
            shutting_down: self.shutdown_deadline.is_some(),
        };
        let hub = &mut self.hub;
        let response = routes::route(request, &context, || hub.stats().render());
        log::debug!(
            "{} GET {}: {} ({})",
            conn.peer,
            request.path,
            response.status,
            conn.describe()
        );
        for chunk in response.chunks {
            conn.queue_raw(chunk);
        }
        want_write(conn, &mut self.pending_writes);
        self.ledger.begin_close(conn, now);
    }

    /// Keeps `roomcast_connections` in step with what the connection turned out to be.
    fn recount(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let now_kind = conn.kind_now();
        if now_kind != conn.counted {
            let stats = self.hub.stats_mut();
            stats.conn_closed(conn.counted.0, conn.counted.1);
            stats.conn_opened(now_kind.0, now_kind.1);
            conn.counted = now_kind;
        }
    }

    /// Answers a refused connection in the framing it speaks, then closes it. Until
    /// `deadline_passed` it waits for that framing to be known: a TLS handshake to finish, the
    /// first (plaintext) bytes, a whole HTTP head. A WebSocket is upgraded to be told; a plain
    /// HTTP request gets a 503 with the refusal as its JSON body.
    fn try_refusal(&mut self, key: usize, now: Instant, deadline_passed: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let State::Refusing(frame) = &conn.state else {
            return;
        };
        let frame = frame.clone();
        let handshaking = conn.tls.as_ref().is_some_and(|tls| tls.is_handshaking());
        if handshaking {
            if !deadline_passed {
                return;
            }
            // Nothing can be said inside a TLS session not yet set up: just close.
        } else {
            conn.transport.sniff(&conn.read_buf);
            match conn.transport.kind() {
                Some(TransportKind::Http) => match conn.transport.next_event(&mut conn.read_buf) {
                    Ok(Some(Event::Upgraded(accept))) => {
                        conn.queue_raw(accept);
                        conn.queue(&frame);
                    }
                    Ok(None) if !deadline_passed => return,
                    _ => {
                        let body = frame.body();
                        conn.queue_raw(http::response_head(
                            503,
                            "application/json",
                            body.len(),
                            &[("Retry-After", "1")],
                        ));
                        conn.queue_raw(body);
                    }
                },
                None if conn.read_buf.is_empty() && !deadline_passed => return,
                _ => {
                    conn.transport.assume(TransportKind::Framed);
                    conn.queue(&frame);
                }
            }
        }
        conn.read_buf = BytesMut::new();
        want_write(conn, &mut self.pending_writes);
        conn.state = State::Draining(now + DRAIN_TIMEOUT);
        self.ledger.closing.push(key);
    }

    /// Connections whose pause ended are read again (what they sent meanwhile waits in the
    /// socket; the edge it raised was spent while they were paused).
    fn resume_paused(&mut self, now: Instant) {
        while let Some(&Reverse((until, id))) = self.paused.peek() {
            if until > now {
                break;
            }
            self.paused.pop();
            if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                if conn.paused_until.is_some_and(|at| at <= now) {
                    conn.paused_until = None;
                    if !conn.read_queued {
                        conn.read_queued = true;
                        self.pending_reads.push(id.slot());
                    }
                }
            }
        }
    }

    /// Once the store caught up, the connections left unread for it are read again (what they
    /// sent meanwhile waits in their buffers and sockets).
    fn resume_waiting_for_store(&mut self, now: Instant) {
        if self.waiting_for_store.is_empty()
            || self
                .services
                .as_mut()
                .is_some_and(|s| s.store_is_behind(now))
        {
            return;
        }
        for id in std::mem::take(&mut self.waiting_for_store) {
            if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                conn.waiting_for_store = false;
                if !conn.read_queued {
                    conn.read_queued = true;
                    self.pending_reads.push(id.slot());
                }
            }
        }
    }

    /// Moves the hub's outputs into connection queues and enforces the queue limits.
    fn drain_outputs(&mut self, now: Instant) {
        self.move_outputs(now, true);
    }

    /// Moves the hub's outputs into connection queues: all of them (`batches` true, which also
    /// flushes the rooms' batches), or only the direct ones already queued.
    fn move_outputs(&mut self, now: Instant, batches: bool) {
        let max_outbuf = self.config.max_outbuf;
        let soft_limit = max_outbuf / 4;
        loop {
            let output = if batches {
                self.hub.poll_output()
            } else {
                self.hub.poll_direct()
            };
            let Some(output) = output else {
                return;
            };
            match output {
                Output::Send { to, frame } => {
                    let Some(conn) = self.conns.get_mut(to.slot()).filter(|c| c.id == to) else {
                        continue;
                    };
                    if matches!(conn.state, State::Dead | State::Lingering(_)) {
                        continue;
                    }
                    conn.queue(&frame);
                    if !conn.write_queued {
                        conn.write_queued = true;
                        self.pending_writes.push(to.slot());
                    }
                    let queued = conn.out.bytes();
                    if queued > max_outbuf {
                        if self.tallies.slow.note(now) {
                            log::warn!("{} does not read: {queued} bytes queued, over --max-outbuf {max_outbuf}; disconnecting", conn.peer);
                        }
                        self.hub.stats_mut().slow_consumer_disconnect();
                        self.hub.handle(now, Input::Closed(to));
                        self.ledger.kill(conn, to.slot());
                    } else if queued > soft_limit && !conn.backlogged && conn.is_open() {
                        conn.backlogged = true;
                        self.hub.handle(now, Input::Backlogged(to));
                    }
                }
                Output::Close { conn: id } => {
                    if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                        self.ledger.begin_close(conn, now);
                    }
                }
                Output::Work { id, work } => {
                    if let Some(services) = &mut self.services {
                        services.work(&mut self.hub, now, id, work);
                    }
                }
                Output::Persist(record) => {
                    if let Some(services) = &mut self.services {
                        services.persist(now, record);
                    }
                }
                Output::Cluster(out) => {
                    if let Some(services) = &mut self.services {
                        services.cluster(&mut self.hub, now, out);
                    }
                }
                Output::Hold { conn: id } => {
                    if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                        conn.held = true;
                    }
                }
                Output::Release { conn: id } => {
                    if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                        conn.held = false;
                        // What it sent meanwhile waits in its buffer or its socket.
                        if !conn.read_queued {
                            conn.read_queued = true;
                            self.pending_reads.push(id.slot());
                        }
                    }
                }
                Output::Pause { conn: id, until } => {
                    if let Some(conn) = self.conns.get_mut(id.slot()).filter(|c| c.id == id) {
                        conn.paused_until = Some(until);
                        self.paused.push(Reverse((until, id)));
                    }
                }
            }
        }
    }

    /// One bounded, vectored write per connection with pending bytes.
    fn write_pass(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.pending_writes) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.write_queued = false;
            if conn.state == State::Dead || !conn.writable || !conn.has_output() {
                continue; // a writable event queues it again
            }
            let written = conn.write(WRITE_BUDGET);
            if let Ok((_, sent)) = written {
                self.hub.stats_mut().sent_bytes(sent);
            }
            match written.map(|(flushed, _)| flushed) {
                Ok(Flushed::Stalled) => {}
                Ok(Flushed::All) => {
                    if conn.backlogged {
                        conn.backlogged = false;
                        self.hub.handle(now, Input::Drained(conn.id));
                    }
                }
                Ok(Flushed::Blocked) => conn.writable = false,
                Ok(Flushed::Budget) => {
                    conn.write_queued = true;
                    self.pending_writes.push(key);
                }
                Err(err) => {
                    log::debug!("{key}: write failed: {err}");
                    self.hub.handle(now, Input::Closed(conn.id));
                    self.ledger.kill(conn, key);
                }
            }
        }
    }

    /// Advances closing connections and removes the finished ones, telling the hub.
    fn reap(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.ledger.closing) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if let State::Draining(deadline) = conn.state {
                if !conn.has_output() && now < deadline && conn.say_goodbye() {
                    want_write(conn, &mut self.pending_writes);
                    self.ledger.closing.push(key);
                    continue;
                }
            }
            match conn.state {
                State::Draining(deadline) if !conn.has_output() || now >= deadline => {
                    // FIN after the last byte; the peer's leftovers are read and discarded.
                    let _ = conn.stream.shutdown(Shutdown::Write);
                    conn.state = State::Lingering(now + LINGER_TIMEOUT);
                    self.ledger.closing.push(key);
                }
                State::Lingering(deadline) if now < deadline => self.ledger.closing.push(key),
                State::Draining(_) => self.ledger.closing.push(key),
                State::Greeting | State::Refusing(_) | State::Open => {}
                State::Lingering(_) | State::Dead => {
                    let mut conn = self.conns.remove(key);
                    let _ = self.poll.registry().deregister(&mut conn.stream);
                    let (kind, tls) = conn.counted;
                    self.hub.stats_mut().conn_closed(kind, tls);
                    self.hub.handle(now, Input::Closed(conn.id));
                    log::debug!("{} closed", conn.peer);
                }
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        log::info!("shutting down: telling {} connections", self.conns.len());
        self.shutdown_deadline = Some(now + SHUTDOWN_FLUSH);
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.hub.handle(now, Input::Shutdown);
        // Connections the hub has not heard of yet are told by the loop itself.
        let goodbye = Refusal::ShuttingDown.encode(self.clock.unix(now));
        let greeting: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, conn)| conn.state == State::Greeting)
            .map(|(key, _)| key)
            .collect();
        for key in greeting {
            if let Some(conn) = self.conns.get_mut(key) {
                self.ledger.release(conn);
                conn.state = State::Refusing(goodbye.clone());
            }
            self.try_refusal(key, now, true);
        }
    }
}

/// Pending connections the kernel may hold before we accept them. A room server sees storms
/// (a match starts, a venue reconnects after a Wi-Fi drop); std's and mio's 128 overflows into
/// SYN cookies and retransmits, which stall those clients for a second or more.
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener with [`LISTEN_BACKLOG`] (the kernel caps it at `somaxconn`).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Restarting the server must not wait for the old listener's TIME_WAIT sockets.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(TcpListener::from_std(socket.into()))
}

/// Puts the connection in the write pass (once).
fn want_write(conn: &mut Conn, pending_writes: &mut Vec<usize>) {
    if !conn.write_queued {
        conn.write_queued = true;
        pending_writes.push(conn.id.slot());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn server(config: Config) -> Server {
        Server::bind(Config {
            addr: "127.0.0.1:0".parse().expect("literal"),
            ..config
        })
        .expect("bind")
    }

    #[test]
    fn accepted_sockets_have_nodelay() {
        let mut server = server(Config::default());
        let _client = std::net::TcpStream::connect(server.local_addr()).expect("connect");
        // connect() returned, so the connection waits in the backlog.
        server.accept(Instant::now());
        let (_, conn) = server.conns.iter().next().expect("accepted");
        assert!(conn.stream.nodelay().expect("getsockopt"));
        assert!(
            conn.read_buf.capacity() == 0,
            "no read buffer before the first byte"
        );
    }

    /// Reads one reply from a blocking socket in the given framing.
    fn read_reply(stream: &mut std::net::TcpStream, line: bool) -> serde_json::Value {
        let mut all = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            stream.read_exact(&mut byte).expect("reply byte");
            all.push(byte[0]);
            if line && byte[0] == b'\n' {
                return serde_json::from_slice(&all).expect("JSON line");
            }
            if !line && all.len() >= 4 {
                let len = u32::from_be_bytes([all[0], all[1], all[2], all[3]]) as usize;
                if all.len() == 4 + len {
                    return serde_json::from_slice(&all[4..]).expect("JSON frame");
                }
            }
        }
    }

    #[test]
    fn past_max_clients_the_refusal_goes_out_in_the_peers_framing() {
        let server = server(Config {
            max_clients: 1,
            ..Config::default()
        });
        let addr = server.local_addr();
        let handle = server.spawn().expect("spawn");
        let timeout = Some(Duration::from_secs(5));
        let first = std::net::TcpStream::connect(addr).expect("connect");
        // Held, silent: it counts against --max-clients all the same.
        let mut line = std::net::TcpStream::connect(addr).expect("connect");
        line.set_read_timeout(timeout).expect("timeout");
        line.write_all(b"{\"system\":\"ping\"}\n").expect("write");
        let reply = read_reply(&mut line, true);
        assert_eq!(reply["response"]["code"], 503);
        assert_eq!(reply["response"]["msg"], "Server full.");
        let mut silent = std::net::TcpStream::connect(addr).expect("connect");
        silent.set_read_timeout(timeout).expect("timeout");
        let reply = read_reply(&mut silent, false);
        assert_eq!(reply["response"]["msg"], "Server full.", "default framing");
        drop(first);
        handle.shutdown();
        handle.join().expect("clean exit");
    }
}
