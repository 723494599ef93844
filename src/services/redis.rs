//! The Redis bridge (cluster mode, `--redis`): carries the hub's [`ClusterOut`] requests to
//! Redis and brings back [`ClusterIn`] answers and channel messages, on two threads of its
//! own, so the event loop never waits on Redis.
//!
//! - The **command thread** owns one connection. It takes requests from a bounded queue
//!   (a full queue is answered at once: [`Full`]), sends each batch of consecutive requests
//!   as one pipeline (so a busy room costs one round trip per batch, not per event), and hands
//!   each answer to `deliver`. Requests on one connection are carried out in order, so the
//!   events one node publishes in a room keep their order.
//! - **Events are batched.** Within a pipeline, each run of consecutive
//!   [`ClusterOut::Publish`] (of any rooms; cut before any other request, so that request
//!   keeps its place, and at `BATCH` events or about `BATCH_BYTES`) is one call of the
//!   batch script ([`PUBLISH_BATCH`](scripts::PUBLISH_BATCH)), which numbers each event as
//!   the single-event logic would and publishes ONE message per room holding that room's
//!   payloads. Per event, a script call and a pub/sub message (parsed by the redis crate on
//!   every node) were most of what an event cost; a busy node now pays them once per run.
//!   Each event still gets its own outcome: one the script failed on fails alone.
//! - The **subscriber thread** owns a second connection in pub/sub mode: the rooms' channels
//!   (subscribed and unsubscribed on the command thread's request, confirmed before the room
//!   is read, so no event falls between the read and the subscription) and this node's control
//!   channel. It splits each events message back into one [`ClusterIn::Event`] per payload
//!   (slices of the message, not copies), so the hub sees exactly what it saw when each event
//!   was its own message; a message that does not split cleanly is dropped whole and logged
//!   (the hub reads the gap back from the stream).
//!
//! **Redis lost.** When either connection fails, `deliver` gets [`ClusterIn::Down`] (once per
//! outage); both reconnect with a backoff from 100 ms to 2 s. Meanwhile requests a client
//! waits for fail at once ([`ClusterIn::Failed`]), events the server made itself (leave, away,
//! back) and session bookkeeping are kept (up to [`MAX_RETRY`]) and sent first when Redis is
//! back, and the rest (poses, heartbeats) is dropped. Once both connections are back and the
//! channels subscribed again, `deliver` gets [`ClusterIn::Up`] and the hub reads every room's
//! stream from where it stopped.
//!
//! **Accounts.** The subscriber also listens to the accounts channel; each time both
//! connections are (back) up, the command thread reads every account (`HSCAN`, page by page)
//! and hands them over as one [`ClusterIn::Accounts`], after the subscription, so no change
//! falls between the read and the announcements.
//!
//! **TLS.** A `rediss://` URL makes both connections TLS (the redis crate's rustls, on our
//! ring provider); Redis's certificate is verified against `--redis-ca` or the system's roots,
//! and a client certificate is shown when given. What fails at start is told apart
//! ([`BridgeError::Certificate`], [`BridgeError::Handshake`], ...), found inside the crate's
//! error.

use std::collections::{BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::{Client, Connection, Pipeline, Script, Value};

pub use super::redis_connect::BridgeError;
use super::redis_connect::{
    connect, is_connection_error, open_client, server_version, start_error, version_of, IO_TIMEOUT,
    MIN_VERSION,
};
use super::redis_replies::{
    bytes_of, int_of, read_account, read_accounts_page, read_claimed, read_control, read_published,
    read_rooms, read_saved, read_stream, read_sync, split_events, Published,
};
use super::redis_scripts::{
    self as scripts, account_value, node_key, parse_room_channel, room_key, ACCOUNTS,
};
use crate::config::{hide_password, TlsFiles};
use crate::hub::cluster::DEAD_AFTER;
use crate::hub::cluster_messages::{ClusterIn, ClusterOut, Publish};

/// Requests the queue from the loop holds.
pub const QUEUE: usize = 65_536;
/// Requests sent in one pipeline at most, and events in one call of the batch script.
const BATCH: usize = 512;
/// Bytes of events (their prefixes, suffixes and game states) past which a run of events is
/// cut into another script call: what one call publishes to a room is one message, and
/// Redis cuts off a subscriber whose output buffer passes 32 MB (its default).
const BATCH_BYTES: usize = 1 << 20;
/// Server-made events and session changes kept while Redis is away; past it the oldest go
/// (logged).
pub const MAX_RETRY: usize = 100_000;
/// First and longest wait between reconnection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How often the subscriber looks at its requests when no message arrives.
const SUBSCRIBER_POLL: Duration = Duration::from_millis(200);
/// Accounts read per `HSCAN` page when loading them.
const ACCOUNTS_PAGE: usize = 1000;

/// Where and who: what the bridge needs to start.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// `redis://...`, or `rediss://...` for TLS.
    pub url: String,
    /// PEM file of the CA certificate(s) Redis's TLS certificate must chain to; `None` trusts
    /// the system's roots (`rediss://` only).
    pub ca: Option<PathBuf>,
    /// This node's client certificate and key, for a Redis that asks for one.
    pub client: Option<TlsFiles>,
    /// This node's id.
    pub node: String,
    /// Events each room's stream keeps (`MAXLEN ~`).
    pub stream_len: usize,
}

/// The queue to the bridge is full: the request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the queue to Redis is full")]
pub struct Full {
    /// The request's op, when someone waits for its answer (else 0): to be failed.
    pub op: u64,
}

/// The op of a request someone waits for (0 for the others).
fn waiting_op(out: &ClusterOut) -> u64 {
    match out {
        ClusterOut::Publish(Publish { op, .. })
        | ClusterOut::ClaimName { op, .. }
        | ClusterOut::ClaimSession { op, .. }
        | ClusterOut::Rooms { op, .. }
        | ClusterOut::Register { op, .. }
        | ClusterOut::SetPassword { op, .. }
        | ClusterOut::Game { op, .. } => *op,
        _ => 0,
    }
}

type Deliver = Arc<dyn Fn(ClusterIn) + Send + Sync>;

/// Subscription state shared by the two threads.
#[derive(Default)]
struct Subscriptions {
    /// Channels that should be subscribed (restored after a reconnect).
    wanted: BTreeSet<String>,
    /// Changes not yet made, each acknowledged once made (or failed).
    requests: VecDeque<(Vec<String>, Vec<String>, SyncSender<bool>)>,
}

struct Shared {
    subs: Mutex<Subscriptions>,
    /// The subscriber is connected and subscribed to every wanted channel.
    subscriber_up: AtomicBool,
    stop: AtomicBool,
}

/// The running bridge. Dropping it stops it.
pub struct Bridge {
    queue: Option<SyncSender<ClusterOut>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Bridge {
    /// Connects (failing at once if Redis cannot be reached, or is older than 6.2), reaps what
    /// an earlier run with this node id left, registers the node, and starts both threads.
    /// `deliver` is called on the bridge's threads; it should only hand the input over.
    pub fn start(
        config: BridgeConfig,
        deliver: impl Fn(ClusterIn) + Send + Sync + 'static,
    ) -> Result<Bridge, BridgeError> {
        let shown = hide_password(&config.url);
        let client = open_client(&config.url, config.ca.as_deref(), config.client.as_ref())?;
        let tls = config.url.starts_with("rediss://");
        let unreachable = |source| BridgeError::Unreachable {
            url: shown.clone(),
            source,
        };
        let mut con = connect(&client).map_err(|err| start_error(&shown, tls, err))?;
        let version = server_version(&mut con).map_err(unreachable)?;
        if version_of(&version) < MIN_VERSION {
            return Err(BridgeError::TooOld {
                url: shown.clone(),
                version,
            });
        }
        let shared = Arc::new(Shared {
            subs: Mutex::new(Subscriptions::default()),
            subscriber_up: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        {
            let mut subs = lock(&shared.subs);
            subs.wanted.insert(node_key(&config.node));
            subs.wanted.insert(ACCOUNTS.to_owned());
        }
        let mut commands = Commands::new(
            config,
            client.clone(),
            Arc::new(deliver),
            Arc::clone(&shared),
        );
        commands.prepare(&mut con).map_err(unreachable)?;
        let leaves = commands.reap(&mut con, true).map_err(unreachable)?;
        if leaves > 0 {
            log::info!(
                "node {}: {leaves} members of an earlier run with this id left their rooms",
                commands.config.node
            );
        }
        // Registered before anything else: a node killed in its first second is reaped too.
        commands.beat(&mut con).map_err(unreachable)?;
        commands.con = Some(con);
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let mut bridge = Bridge {
            queue: Some(sender),
            shared: Arc::clone(&shared),
            threads: Vec::new(),
        };
        let subscriber = Subscriber {
            client,
            node: commands.config.node.clone(),
            deliver: Arc::clone(&commands.deliver),
            shared: Arc::clone(&shared),
        };
        let thread = thread::Builder::new()
            .name("roomcast-redis-sub".into())
            .spawn(move || subscriber.run())
            .map_err(BridgeError::Thread)?;
        bridge.threads.push(thread);
        let thread = thread::Builder::new()
            .name("roomcast-redis".into())
            .spawn(move || commands.run(receiver))
            .map_err(BridgeError::Thread)?;
        bridge.threads.push(thread);
        Ok(bridge)
    }

    /// Queues a request without blocking.
    pub fn submit(&self, out: ClusterOut) -> Result<(), Full> {
        let op = waiting_op(&out);
        let Some(queue) = &self.queue else {
            return Err(Full { op });
        };
        match queue.try_send(out) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full { op }),
        }
    }

    /// Stops both threads; requests still queued are dropped. Takes at most about
    /// [`SUBSCRIBER_POLL`] plus one round trip.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.queue = None;
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a Redis thread panicked");
            }
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The command thread's state.
struct Commands {
    config: BridgeConfig,
    client: Client,
    con: Option<Connection>,
    deliver: Deliver,
    shared: Arc<Shared>,
    scripts: Arc<Scripts>,
    /// What waits for Redis to come back.
    retry: VecDeque<ClusterOut>,
    /// Rooms whose sync waits for Redis (subscribed, not yet read), with their history count.
    syncs: Vec<(String, usize)>,
    /// Not connected (or not subscribed) since the last time both connections were up.
    down: bool,
    /// The hub was told Down (and so must be told Up).
    told_down: bool,
    /// The node was registered by its last heartbeat (a later one that finds it unregistered
    /// means the others reaped it).
    registered: bool,
}

/// The scripts, with their hashes for `EVALSHA` (loaded on every connection).
struct Scripts {
    publish: Script,
    sync: Script,
    claim_name: Script,
    release_name: Script,
    save_session: Script,
    claim_session: Script,
    heartbeat: Script,
    reap: Script,
    rooms: Script,
    lease: Script,
    renew_lease: Script,
    release_lease: Script,
    register: Script,
    set_password: Script,
    offer_account: Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            publish: Script::new(scripts::PUBLISH_BATCH),
            sync: Script::new(scripts::SYNC),
            claim_name: Script::new(scripts::CLAIM_NAME),
            release_name: Script::new(scripts::RELEASE_NAME),
            save_session: Script::new(scripts::SAVE_SESSION),
            claim_session: Script::new(scripts::CLAIM_SESSION),
            heartbeat: Script::new(scripts::HEARTBEAT),
            reap: Script::new(scripts::REAP),
            rooms: Script::new(scripts::ROOMS),
            lease: Script::new(scripts::LEASE),
            renew_lease: Script::new(scripts::RENEW_LEASE),
            release_lease: Script::new(scripts::RELEASE_LEASE),
            register: Script::new(scripts::REGISTER),
            set_password: Script::new(scripts::SET_PASSWORD),
            offer_account: Script::new(scripts::OFFER_ACCOUNT),
        }
    }

    fn all(&self) -> [&Script; 15] {
        [
            &self.publish,
            &self.sync,
            &self.claim_name,
            &self.release_name,
            &self.save_session,
            &self.claim_session,
            &self.heartbeat,
            &self.reap,
            &self.rooms,
            &self.lease,
            &self.renew_lease,
            &self.release_lease,
            &self.register,
            &self.set_password,
            &self.offer_account,
        ]
    }
}

/// What to do with one pipelined answer.
enum Answer {
    Ignore,
    /// A run of events (one call of the batch script): their ops, in order.
    Publish {
        ops: Vec<u64>,
    },
    Fetch {
        room: String,
        after: u64,
    },
    ClaimName {
        op: u64,
    },
    ClaimSession {
        op: u64,
    },
    Rooms {
        op: u64,
    },
    Account {
        op: u64,
    },
    Heartbeat,
    Reap,
    Lease {
        op: u64,
        room: String,
    },
    Renew {
        room: String,
    },
}

impl Commands {
    fn new(config: BridgeConfig, client: Client, deliver: Deliver, shared: Arc<Shared>) -> Self {
        Commands {
            config,
            client,
            con: None,
            deliver,
            shared,
            scripts: Arc::new(Scripts::new()),
            retry: VecDeque::new(),
            syncs: Vec::new(),
            // Until the subscriber is up; the hub is not told about the start.
            down: true,
            told_down: false,
            registered: false,
        }
    }

    /// Loads the scripts, lists the lobby and beats once (a fresh connection).
    fn prepare(&mut self, con: &mut Connection) -> redis::RedisResult<()> {
        for script in self.scripts.all() {
            script.load(con)?;
        }
        redis::cmd("ZADD")
            .arg("roomcast:rooms")
            .arg(0)
            .arg("lobby")
            .exec(con)?;
        Ok(())
    }

    /// Reaps dead nodes (or, with `own`, what an earlier run with this id left).
    fn reap(&self, con: &mut Connection, own: bool) -> redis::RedisResult<i64> {
        self.scripts
            .reap
            .arg(&self.config.node)
            .arg("0.0")
            .arg(self.config.stream_len)
            .arg(if own { "1" } else { "0" })
            .invoke(con)
    }

    /// One heartbeat, outside a pipeline (at start).
    fn beat(&mut self, con: &mut Connection) -> redis::RedisResult<()> {
        let node = &self.config.node;
        let _: i64 = self
            .scripts
            .heartbeat
            .key(node_key(node))
            .key("roomcast:nodes")
            .arg(node)
            .arg(DEAD_AFTER.as_millis() as u64)
            .invoke(con)?;
        self.registered = true;
        Ok(())
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn run(mut self, receiver: Receiver<ClusterOut>) {
        // The subscriber connects right after the start: the first requests wait for it.
        let started = Instant::now();
        while !self.shared().subscriber_up.load(Ordering::SeqCst) && started.elapsed() < IO_TIMEOUT
        {
            thread::sleep(Duration::from_millis(2));
        }
        let mut backoff = BACKOFF.0;
        let mut next_attempt = Instant::now();
        loop {
            if self.shared().stop.load(Ordering::SeqCst) {
                return;
            }
            let subscriber_up = self.shared().subscriber_up.load(Ordering::SeqCst);
            if self.con.is_none() || !subscriber_up {
                self.went_down();
            }
            if self.con.is_none() && Instant::now() >= next_attempt {
                match connect(&self.client).and_then(|mut con| {
                    self.prepare(&mut con)?;
                    Ok(con)
                }) {
                    Ok(con) => {
                        self.con = Some(con);
                        backoff = BACKOFF.0;
                    }
                    Err(err) => {
                        log::debug!("Redis still unreachable: {err}");
                        next_attempt = Instant::now() + backoff;
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                }
            }
            if self.down && self.con.is_some() && subscriber_up {
                self.came_back();
            }
            let first = match receiver.recv_timeout(BACKOFF.0) {
                Ok(out) => out,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(out) => batch.push(out),
                    Err(_) => break,
                }
            }
            self.carry_out(batch);
        }
    }

    /// Redis is lost: said once.
    fn went_down(&mut self) {
        // Both connections start afresh: the command one may be as dead as the other.
        self.con = None;
        if !self.down {
            self.down = true;
            self.told_down = true;
            log::warn!("Redis connection lost; reconnecting");
            (self.deliver)(ClusterIn::Down);
        }
    }

    /// Both connections are back: what waited goes first (kept requests, then the reads of
    /// rooms subscribed meanwhile), then the hub hears.
    fn came_back(&mut self) {
        self.down = false;
        let waiting: Vec<ClusterOut> = self.retry.drain(..).collect();
        let count = waiting.len();
        self.carry_out(waiting);
        for (room, history) in std::mem::take(&mut self.syncs) {
            self.subscription(ClusterOut::Subscribe { room, history });
        }
        if self.down {
            return; // lost again meanwhile
        }
        self.load_accounts();
        if self.down {
            return;
        }
        if std::mem::take(&mut self.told_down) {
            log::info!("Redis connection back ({count} kept requests sent)");
            (self.deliver)(ClusterIn::Up);
        }
    }

    /// Reads every account, page by page, and hands them to the hub at once. A failure
    /// leaves it to the next reconnection (a lost connection), or says so (anything else).
    fn load_accounts(&mut self) {
        let mut accounts = Vec::new();
        let mut cursor = 0_u64;
        loop {
            let page = self.with_con(|con, _| {
                let value: Value = redis::cmd("HSCAN")
                    .arg(ACCOUNTS)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(ACCOUNTS_PAGE)
                    .query(con)?;
                Ok(value)
            });
            let page = match page {
                Ok(page) => page,
                Err(err) => {
                    if !is_connection_error(&err) {
                        log::error!("cannot read the cluster's accounts from Redis: {err}");
                    }
                    return;
                }
            };
            let Some((next, records)) = read_accounts_page(&page) else {
                log::error!("Redis answered HSCAN in a shape roomcast does not know");
                return;
            };
            accounts.extend(records);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        (self.deliver)(ClusterIn::Accounts { accounts });
    }

    /// Carries out a batch: runs of pipelinable requests as one pipeline each, subscriptions
    /// on their own.
    fn carry_out(&mut self, batch: Vec<ClusterOut>) {
        let mut run = Vec::new();
        for out in batch {
            match out {
                ClusterOut::Subscribe { .. } | ClusterOut::Unsubscribe { .. } => {
                    self.pipeline(std::mem::take(&mut run));
                    self.subscription(out);
                }
                other => run.push(other),
            }
        }
        self.pipeline(run);
    }

    /// Subscribes (confirmed by the subscriber before the room is read) or unsubscribes.
    fn subscription(&mut self, out: ClusterOut) {
        let (room, subscribe, history) = match &out {
            ClusterOut::Subscribe { room, history } => (room.clone(), true, *history),
            ClusterOut::Unsubscribe { room } => (room.clone(), false, 0),
            _ => return,
        };
        let channels = vec![room_key(&room, "events"), room_key(&room, "poses")];
        let (ack, acked) = mpsc::sync_channel(1);
        {
            let mut subs = lock(&self.shared().subs);
            let (sub, unsub) = match subscribe {
                true => (channels, Vec::new()),
                false => (Vec::new(), channels),
            };
            for channel in &sub {
                subs.wanted.insert(channel.clone());
            }
            for channel in &unsub {
                subs.wanted.remove(channel);
            }
            subs.requests.push_back((sub, unsub, ack));
        }
        if !subscribe {
            // The subscriber applies it when it can; nothing waits.
            return;
        }
        let waited = Instant::now();
        while !self.shared().subscriber_up.load(Ordering::SeqCst) && waited.elapsed() < IO_TIMEOUT {
            thread::sleep(Duration::from_millis(5));
        }
        if self.con.is_none() || self.down && !self.shared().subscriber_up.load(Ordering::SeqCst) {
            // Read once Redis is back (the subscriber subscribes when it reconnects).
            self.syncs.retain(|(r, _)| *r != room);
            self.syncs.push((room, history));
            return;
        }
        // Wake the subscriber, which may be waiting for a message.
        let woke = self.with_con(|con, node| {
            redis::cmd("PUBLISH")
                .arg(node_key(node))
                .arg("wake")
                .exec(con)
        });
        let confirmed = woke.is_ok() && matches!(acked.recv_timeout(IO_TIMEOUT), Ok(true));
        if !confirmed {
            // The subscriber is lost: read once it is back.
            self.syncs.retain(|(r, _)| *r != room);
            self.syncs.push((room, history));
            return;
        }
        let scripts = Arc::clone(&self.scripts);
        let synced = self.with_con(|con, _| {
            let value: Value = scripts
                .sync
                .key(room_key(&room, "seq"))
                .key(room_key(&room, "history"))
                .key(room_key(&room, "members"))
                .key(room_key(&room, "game"))
                .arg(history)
                .invoke(con)?;
            Ok(value)
        });
        match synced {
            Ok(value) => match read_sync(&room, value) {
                Some(input) => (self.deliver)(input),
                None => log::error!(
                    "Redis answered the sync of room {room:?} in a shape roomcast does not know"
                ),
            },
            Err(err) => {
                log::debug!("sync of room {room:?} failed: {err}");
                self.syncs.push((room, history));
            }
        }
    }

    /// Runs `f` on the connection; a failure drops the connection (Redis counts as lost).
    fn with_con<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &str) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let Some(con) = self.con.as_mut() else {
            return Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "Redis is unreachable",
            )));
        };
        let result = f(con, &self.config.node);
        if let Err(err) = &result {
            if is_connection_error(err) {
                log::debug!("Redis: {err}");
                self.con = None;
                self.went_down();
            }
        }
        result
    }

    /// Sends a run of requests as one pipeline and hands out the answers. While Redis is away
    /// each request fails, waits, or is dropped (see the module doc).
    fn pipeline(&mut self, run: Vec<ClusterOut>) {
        if run.is_empty() {
            return;
        }
        if self.con.is_none() || self.down {
            for out in run {
                self.unreachable(out);
            }
            return;
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        let mut answers = Vec::with_capacity(run.len());
        let mut rest = &run[..];
        while let Some(first) = rest.first() {
            let events = publish_run(rest);
            if events > 0 {
                answers.push(self.add_publishes(&mut pipe, &rest[..events]));
                rest = &rest[events..];
            } else {
                // Requests whose replies are ignored leave no answer: the replies line up.
                answers.extend(self.add(&mut pipe, first));
                rest = &rest[1..];
            }
        }
        let result: redis::RedisResult<Vec<Value>> = self.with_con(|con, _| pipe.query(con));
        match result {
            Ok(values) => {
                if values.len() != answers.len() {
                    log::error!(
                        "Redis answered {} replies for {} requests",
                        values.len(),
                        answers.len()
                    );
                }
                for (answer, value) in answers.into_iter().zip(values) {
                    self.answer(answer, value);
                }
            }
            Err(err) => {
                if !is_connection_error(&err) {
                    log::error!("Redis refused a pipeline: {err}");
                }
                // Which of them Redis carried out is unknown: waited-for requests fail (a msg
                // may have gone through), server-made ones are sent again (a leave is then
                // skipped by its script; an away or back may be numbered twice).
                for out in run {
                    self.unreachable(out);
                }
            }
        }
    }

    /// A request Redis cannot take now.
    fn unreachable(&mut self, out: ClusterOut) {
        let keep = match &out {
            ClusterOut::Publish(Publish { op, retry, .. }) => {
                if !retry {
                    (self.deliver)(ClusterIn::Failed { op: *op });
                }
                *retry
            }
            ClusterOut::ClaimName { op, .. }
            | ClusterOut::ClaimSession { op, .. }
            | ClusterOut::Rooms { op, .. }
            | ClusterOut::Register { op, .. }
            | ClusterOut::SetPassword { op, .. }
            | ClusterOut::Game { op, .. } => {
                (self.deliver)(ClusterIn::Failed { op: *op });
                false
            }
            ClusterOut::ReleaseName { .. }
            | ClusterOut::SaveSession { .. }
            | ClusterOut::ExpireSession { .. }
            | ClusterOut::DropSession { .. }
            | ClusterOut::ReleaseLease { .. }
            | ClusterOut::GameRefusal { .. } => true,
            _ => false,
        };
        if keep {
            if self.retry.len() >= MAX_RETRY {
                self.retry.pop_front();
                log::warn!("Redis away too long: a kept request was dropped");
            }
            self.retry.push_back(out);
        }
    }

    /// Adds a run of events (`ClusterOut::Publish`, see [`publish_run`]) to the pipeline as
    /// one call of the batch script: one script call, and one message per room, for the run.
    fn add_publishes(&self, pipe: &mut Pipeline, run: &[ClusterOut]) -> Answer {
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(self.scripts.publish.get_hash())
            .arg(0)
            .arg(&self.config.node)
            .arg(self.config.stream_len);
        let mut ops = Vec::with_capacity(run.len());
        for out in run {
            let ClusterOut::Publish(p) = out else {
                continue; // publish_run takes nothing else
            };
            cmd.arg(p.mode.as_str())
                .arg(p.op)
                .arg(p.kind)
                .arg(&p.user)
                .arg(&p.folded)
                .arg(&one_line(&p.prefix)[..])
                .arg(&one_line(&p.suffix)[..])
                .arg(p.floor)
                .arg(&p.room)
                .arg(p.state.as_deref().unwrap_or(b""));
            ops.push(p.op);
        }
        Answer::Publish { ops }
    }

    /// Adds one request to the pipeline; how to read its answer (`None`: its replies are
    /// ignored, and `query` leaves them out).
    fn add(&self, pipe: &mut Pipeline, out: &ClusterOut) -> Option<Answer> {
        let node = self.config.node.as_str();
        let evalsha = |pipe: &mut Pipeline, script: &Script, keys: &[&str]| {
            let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
            for key in keys {
                cmd.arg(*key);
            }
        };
        match out {
            ClusterOut::Publish(_) => Some(self.add_publishes(pipe, std::slice::from_ref(out))),
            ClusterOut::Fetch { room, after, count } => {
                pipe.cmd("XRANGE")
                    .arg(room_key(room, "history"))
                    .arg(format!("{}-0", after + 1))
                    .arg("+")
                    .arg("COUNT")
                    .arg(*count);
                Some(Answer::Fetch {
                    room: room.clone(),
                    after: *after,
                })
            }
            ClusterOut::Poses { room, payload } => {
                pipe.cmd("PUBLISH")
                    .arg(room_key(room, "poses"))
                    .arg(&payload[..])
                    .ignore();
                None
            }
            ClusterOut::ClaimName {
                op,
                folded,
                user,
                guest,
            } => {
                let ukey = format!("roomcast:user:{folded}");
                let users = format!("{}:users", node_key(node));
                evalsha(pipe, &self.scripts.claim_name, &[&ukey, &users, ACCOUNTS]);
                pipe.arg(node)
                    .arg(user)
                    .arg(folded)
                    .arg(if *guest { "1" } else { "0" });
                Some(Answer::ClaimName { op: *op })
            }
            ClusterOut::Register {
                op,
                folded,
                name,
                phc,
                max,
            } => {
                let ukey = format!("roomcast:user:{folded}");
                evalsha(pipe, &self.scripts.register, &[ACCOUNTS, &ukey]);
                pipe.arg(folded).arg(name).arg(phc).arg(*max);
                Some(Answer::Account { op: *op })
            }
            ClusterOut::SetPassword {
                op,
                folded,
                name,
                phc,
            } => {
                evalsha(pipe, &self.scripts.set_password, &[ACCOUNTS]);
                pipe.arg(folded).arg(name).arg(phc);
                Some(Answer::Account { op: *op })
            }
            ClusterOut::OfferAccounts { accounts } => {
                for (folded, account) in accounts {
                    let record = account_value(account.version, &account.name, &account.phc);
                    evalsha(pipe, &self.scripts.offer_account, &[ACCOUNTS]);
                    pipe.arg(folded).arg(record).ignore();
                }
                None
            }
            ClusterOut::ReleaseName { folded } => {
                let ukey = format!("roomcast:user:{folded}");
                let users = format!("{}:users", node_key(node));
                let rooms = format!("{ukey}:rooms");
                evalsha(pipe, &self.scripts.release_name, &[&ukey, &users, &rooms]);
                pipe.arg(node).arg(folded).ignore();
                None
            }
            ClusterOut::SaveSession { token, folded, old } => {
                let new_key = format!("roomcast:session:{token}");
                let old_key = old
                    .as_ref()
                    .map_or(new_key.clone(), |old| format!("roomcast:session:{old}"));
                let sessions = format!("{}:sessions", node_key(node));
                evalsha(
                    pipe,
                    &self.scripts.save_session,
                    &[&new_key, &old_key, &sessions],
                );
                pipe.arg(folded)
                    .arg(token)
                    .arg(old.as_deref().unwrap_or(""))
                    .ignore();
                None
            }
            ClusterOut::ExpireSession { token, ttl } => {
                pipe.cmd("PEXPIRE")
                    .arg(format!("roomcast:session:{token}"))
                    .arg(ttl.as_millis().max(1) as u64)
                    .ignore();
                None
            }
            ClusterOut::DropSession { token } => {
                pipe.cmd("DEL")
                    .arg(format!("roomcast:session:{token}"))
                    .ignore();
                pipe.cmd("SREM")
                    .arg(format!("{}:sessions", node_key(node)))
                    .arg(token)
                    .ignore();
                None
            }
            ClusterOut::ClaimSession { op, token } => {
                let key = format!("roomcast:session:{token}");
                evalsha(pipe, &self.scripts.claim_session, &[&key]);
                pipe.arg(token).arg(node);
                Some(Answer::ClaimSession { op: *op })
            }
            ClusterOut::Rooms { op, after, limit } => {
                evalsha(pipe, &self.scripts.rooms, &[]);
                pipe.arg(after.as_deref().unwrap_or("")).arg(*limit);
                Some(Answer::Rooms { op: *op })
            }
            ClusterOut::Game {
                op,
                room,
                user,
                command,
            } => {
                let (lease, game) = (room_key(room, "lease"), room_key(room, "game"));
                let mut forward = format!("game\n{room}\n{user}\n{node}\n{op}\n").into_bytes();
                forward.extend_from_slice(command);
                evalsha(pipe, &self.scripts.lease, &[&lease, &game]);
                pipe.arg(node)
                    .arg(DEAD_AFTER.as_millis() as u64)
                    .arg(forward);
                Some(Answer::Lease {
                    op: *op,
                    room: room.clone(),
                })
            }
            ClusterOut::ClaimLease { room } => {
                let (lease, game) = (room_key(room, "lease"), room_key(room, "game"));
                evalsha(pipe, &self.scripts.lease, &[&lease, &game]);
                pipe.arg(node).arg(DEAD_AFTER.as_millis() as u64).arg("");
                Some(Answer::Lease {
                    op: 0,
                    room: room.clone(),
                })
            }
            ClusterOut::RenewLease { room } => {
                let lease = room_key(room, "lease");
                evalsha(pipe, &self.scripts.renew_lease, &[&lease]);
                pipe.arg(node).arg(DEAD_AFTER.as_millis() as u64);
                Some(Answer::Renew { room: room.clone() })
            }
            ClusterOut::ReleaseLease { room } => {
                let lease = room_key(room, "lease");
                evalsha(pipe, &self.scripts.release_lease, &[&lease]);
                pipe.arg(node).ignore();
                None
            }
            ClusterOut::GameRefusal {
                node: to,
                op,
                code,
                msg,
            } => {
                pipe.cmd("PUBLISH")
                    .arg(node_key(to))
                    .arg(format!("refuse\n{op}\n{code}\n{msg}"))
                    .ignore();
                None
            }
            ClusterOut::Heartbeat => {
                let beat = node_key(node);
                evalsha(pipe, &self.scripts.heartbeat, &[&beat, "roomcast:nodes"]);
                pipe.arg(node).arg(DEAD_AFTER.as_millis() as u64);
                Some(Answer::Heartbeat)
            }
            ClusterOut::Reap { time } => {
                evalsha(pipe, &self.scripts.reap, &[]);
                pipe.arg(node)
                    .arg(time)
                    .arg(self.config.stream_len)
                    .arg("0");
                Some(Answer::Reap)
            }
            ClusterOut::Subscribe { .. } | ClusterOut::Unsubscribe { .. } => {
                // Not pipelined (see carry_out); a harmless placeholder keeps answers aligned.
                pipe.cmd("PING");
                Some(Answer::Ignore)
            }
        }
    }

    /// Hands one answer to the hub.
    fn answer(&mut self, answer: Answer, value: Value) {
        if let Value::ServerError(err) = &value {
            log::error!("Redis refused a request: {err:?}");
            match answer {
                Answer::Publish { ops } => {
                    for op in ops.into_iter().filter(|op| *op != 0) {
                        (self.deliver)(ClusterIn::Failed { op });
                    }
                }
                Answer::ClaimName { op }
                | Answer::ClaimSession { op }
                | Answer::Rooms { op }
                | Answer::Account { op }
                    if op != 0 =>
                {
                    (self.deliver)(ClusterIn::Failed { op })
                }
                _ => {}
            }
            return;
        }
        let input = match answer {
            Answer::Ignore => return,
            Answer::Publish { ops } => {
                // Numbered and skipped events need no answer (the hub hears of its events on
                // the channel, as every node does); one the script failed on is failed alone.
                let outcomes = read_published(&value, ops.len());
                for (op, outcome) in ops.into_iter().zip(outcomes) {
                    if let Published::Failed(err) = outcome {
                        log::error!("Redis could not publish an event: {err}");
                        if op != 0 {
                            (self.deliver)(ClusterIn::Failed { op });
                        }
                    }
                }
                return;
            }
            Answer::Fetch { room, after } => ClusterIn::Fetched {
                events: read_stream(&value),
                room,
                after,
            },
            Answer::ClaimName { op } => ClusterIn::NameClaimed {
                op,
                ok: matches!(value, Value::Int(1)),
            },
            Answer::ClaimSession { op } => ClusterIn::SessionClaimed {
                op,
                found: read_claimed(&value),
            },
            Answer::Rooms { op } => {
                let (rooms, more) = read_rooms(&value);
                ClusterIn::Rooms { op, rooms, more }
            }
            Answer::Account { op } => match read_saved(&value) {
                Some(outcome) => ClusterIn::AccountSaved { op, outcome },
                None => {
                    log::error!("Redis answered an account change with {value:?}");
                    ClusterIn::Failed { op }
                }
            },
            Answer::Heartbeat => {
                let known = matches!(value, Value::Int(1));
                let reaped = self.registered && !known;
                self.registered = true;
                if reaped {
                    ClusterIn::Reaped
                } else {
                    return;
                }
            }
            Answer::Lease { op, room } => {
                let Value::Array(parts) = &value else {
                    return;
                };
                if parts.first().and_then(int_of) != Some(1) {
                    return; // another node owns it (the command went there)
                }
                ClusterIn::GameLease {
                    op,
                    room,
                    state: parts.get(1).and_then(bytes_of),
                }
            }
            Answer::Renew { room } => match value {
                Value::Int(1) => return,
                _ => ClusterIn::LeaseLost { room },
            },
            Answer::Reap => {
                if let Value::Int(leaves) = value {
                    if leaves > 0 {
                        log::info!("reaped dead nodes: {leaves} members left their rooms");
                    }
                }
                return;
            }
        };
        (self.deliver)(input);
    }
}

/// The subscriber thread's state.
struct Subscriber {
    client: Client,
    node: String,
    deliver: Deliver,
    shared: Arc<Shared>,
}

impl Subscriber {
    fn run(self) {
        let mut backoff = BACKOFF.0;
        while !self.shared.stop.load(Ordering::SeqCst) {
            match self.session() {
                Ok(()) => return,
                Err(err) => {
                    self.shared.subscriber_up.store(false, Ordering::SeqCst);
                    self.fail_requests();
                    log::debug!("Redis subscriber: {err}");
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                }
            }
        }
    }

    /// Pending subscription changes fail (their channels stay wanted: subscribed on
    /// reconnect).
    fn fail_requests(&self) {
        for (_, _, ack) in lock(&self.shared.subs).requests.drain(..) {
            let _ = ack.try_send(false);
        }
    }

    /// One connection's life: subscribe to every wanted channel, then read messages and make
    /// the subscription changes asked for, until the connection fails (or the bridge stops:
    /// `Ok`).
    fn session(&self) -> redis::RedisResult<()> {
        let mut con = connect(&self.client)?;
        let mut pubsub = con.as_pubsub();
        let wanted: Vec<String> = lock(&self.shared.subs).wanted.iter().cloned().collect();
        if !wanted.is_empty() {
            pubsub.subscribe(&wanted)?;
        }
        pubsub.set_read_timeout(Some(SUBSCRIBER_POLL))?;
        self.shared.subscriber_up.store(true, Ordering::SeqCst);
        loop {
            if self.shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            loop {
                let request = lock(&self.shared.subs).requests.pop_front();
                let Some((sub, unsub, ack)) = request else {
                    break;
                };
                if !sub.is_empty() {
                    pubsub.subscribe(&sub)?;
                }
                if !unsub.is_empty() {
                    pubsub.unsubscribe(&unsub)?;
                }
                let _ = ack.try_send(true);
            }
            let message = match pubsub.get_message() {
                Ok(message) => message,
                Err(err) if err.is_timeout() => continue,
                Err(err) => return Err(err),
            };
            let channel = message.get_channel_name();
            let payload = Bytes::copy_from_slice(message.get_payload_bytes());
            if let Some((room, events)) = parse_room_channel(channel) {
                if !events {
                    let room = room.to_owned();
                    (self.deliver)(ClusterIn::Poses { room, payload });
                } else if let Some(payloads) = split_events(&payload) {
                    // One input per event, as if each had been its own message: the hub
                    // never sees batches.
                    for payload in payloads {
                        let room = room.to_owned();
                        (self.deliver)(ClusterIn::Event { room, payload });
                    }
                } else {
                    log::error!(
                        "a malformed message on room {room:?}'s events channel: dropped (its events are read back from the stream)"
                    );
                }
            } else if channel == ACCOUNTS {
                match read_account(&payload) {
                    Some(account) => (self.deliver)(ClusterIn::Account(account)),
                    None => log::warn!("an unreadable account announcement: ignored"),
                }
            } else if channel == node_key(&self.node) {
                if let Some(input) = read_control(&payload) {
                    (self.deliver)(input);
                }
            }
        }
    }
}

/// The redis crate's client for the URL, with the CA and client certificate of
/// `--redis-ca`, `--redis-cert` and `--redis-key` when given.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A thread that panicked while holding it left plain values behind: keep them.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How many requests at the head of `run` go as one call of the batch script: the events
/// (`ClusterOut::Publish`, of any rooms) before the first other request, so that every other
/// request keeps its place (a leave still reaches Redis before the name release queued after
/// it), at most [`BATCH`] of them and about [`BATCH_BYTES`].
fn publish_run(run: &[ClusterOut]) -> usize {
    let mut bytes = 0;
    let mut count = 0;
    for out in run.iter().take(BATCH) {
        let ClusterOut::Publish(p) = out else {
            break;
        };
        bytes += p.prefix.len() + p.suffix.len() + p.state.as_ref().map_or(0, Bytes::len);
        if count > 0 && bytes > BATCH_BYTES {
            break;
        }
        count += 1;
    }
    count
}

/// The event's bytes with any raw line break made a space. The hub's events hold none (a
/// line break in valid JSON can only be whitespace between tokens, which the hub already
/// flattens); this makes sure of it, since a batch message is read line by line
/// ([`split_events`]) and one stray break would make the whole message unreadable.
fn one_line(bytes: &Bytes) -> std::borrow::Cow<'_, [u8]> {
    if memchr::memchr(b'\n', bytes).is_none() {
        return std::borrow::Cow::Borrowed(bytes);
    }
    log::error!("an event held a raw line break: made a space");
    let flat = bytes
        .iter()
        .map(|b| if *b == b'\n' { b' ' } else { *b })
        .collect();
    std::borrow::Cow::Owned(flat)
}
