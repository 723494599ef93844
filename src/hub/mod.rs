//! The sans-IO core: every protocol rule, with no sockets and no clock reads.
//!
//! The event loop feeds [`Hub::handle`] with what happened on a connection and the time it
//! happened, and calls [`Hub::handle_timeout`] when [`Hub::poll_timeout`] says a deadline is due.
//! What the hub wants done comes out of [`Hub::poll_output`]: frames to queue, connections to
//! close. Call order: after any `handle*`, drain `poll_output` (at least once per loop pass;
//! room events are batched until then), then read `poll_timeout`. `now` never goes backwards.
//!
//! Because time is an argument, the fps tick, the timeouts and the rate limit are tested to
//! the millisecond without sleeping (see `tests.rs`, driven by [`testing::Harness`]).
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | [`Hub`]: dispatch of each [`Input`] to the connection, session and room rules |
//! | [`ids`] | [`ConnId`], [`SessionId`], [`RoomId`] and the tables they index |
//! | `conns.rs` | per connection: its session, rate bucket, login and idle timeouts, backlog |
//! | `session.rs` | logged-in users: names (unique ignoring ASCII case), rooms, connection, resume tokens, detached sessions |
//! | `lifecycle.rs` | login, register, password, resume, logout, a lost connection (detach or end), grace expiry, timeouts, shutdown |
//! | `accounts.rs` | registered users, registrations in flight, the failed-login throttle |
//! | `room.rs` | one room: members, batch and flush, history, poses and the tick, its game |
//! | `history.rs` | a room's kept events and the frames a joiner gets, counted in a total |
//! | `directory.rs` | the rooms list: name order, pages, the first page encoded once |
//! | `interest.rs` | interest management: whose poses each member receives at a tick |
//! | `objects.rs` | shared objects: claims, releases, TTLs, owner-only updates |
//! | [`cluster`] | cluster mode (`--redis`): what crosses nodes, in what order, and what a lost node or a lost Redis means |
//! | `remote.rs` | a room's members on other nodes and their latest poses |
//! | `cluster_accounts.rs` | accounts in a cluster: kept in Redis, every node holding all of them; register and password changes answered once Redis kept them |
//! | `cluster_games.rs` | games in a cluster: one owner node per game (a lease in Redis), commands forwarded to it, takeover from the last state |
//! | [`outbox`] | [`Output`] and the ordering rule: a direct reply first flushes its rooms |
//! | `refusal.rs` | every refusal: its code and text |
//! | [`testing`] | the scripted-clients harness for unit tests, fuzzing and benches |

mod accounts;
pub mod cluster;
mod cluster_accounts;
mod cluster_games;
pub mod cluster_messages;
mod conns;
mod directory;
mod history;
pub mod ids;
mod interest;
mod lifecycle;
mod objects;
pub mod outbox;
mod refusal;
mod remote;
mod room;
mod session;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use memchr::memmem::Finder;

use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::clock::{Ticker, WallClock};
use crate::config::Config;
use crate::frame::Frame;
use crate::protocol::{
    decode_request, echo, encode_event, encode_reply, encode_user_frame, one_line, Claim, Code,
    GameCommand, HistoryQuery, ObjectUpdate, Problem, Release, Request, RoomKind, RoomName,
    Transform, LOBBY,
};
use crate::quiet::Tally;
use crate::stats::{MessageType, Stats};
use conns::{Charge, Conns};
use directory::Directory;
use history::{History, HistoryBytes};
use ids::Table;
pub use ids::{ConnId, RoomId, SessionId};
use interest::Rule;
use outbox::{Outbox, Pending};
pub use outbox::{Output, Record, Work};
pub use refusal::Refusal;
use room::Room;
use session::Sessions;

/// Searchers for the bytes that mark a transform-like message, built once: every message
/// is looked at before it is parsed (its rate bucket depends on it).
static TRANSFORM_TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"transform\""));
static OBJECT_TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"object\""));

/// Something that happened on a connection.
#[derive(Debug)]
pub enum Input<'a> {
    /// A connection whose transport is now known. `since` is when it was accepted: the login
    /// timeout counts from there.
    Open {
        /// The connection.
        conn: ConnId,
        /// The peer's address, for per-address limits.
        peer: IpAddr,
        /// When it was accepted.
        since: Instant,
    },
    /// One whole message body, framing removed.
    Frame(ConnId, &'a [u8]),
    /// The transport broke (a framing error, already mapped to a code); the hub answers and
    /// closes.
    Malformed(ConnId, Problem),
    /// The connection is gone (EOF, reset, or closed after the hub asked to).
    Closed(ConnId),
    /// The connection's outbound queue passed its soft limit: skip pose ticks for it.
    Backlogged(ConnId),
    /// The queue drained: send it a fresh pose snapshot at the next tick.
    Drained(ConnId),
    /// The server's memory use crossed its high (true) or low (false) watermark: while high,
    /// new logins and joins are refused.
    MemoryPressure(bool),
    /// The hashing service answered an `Output::Work`.
    Done {
        /// The id of the work.
        id: u64,
        /// What it came to.
        done: Done,
    },
    /// Cluster mode: what Redis answered or sent.
    Cluster(cluster::ClusterIn),
    /// Tell everyone the server is going away and close every connection.
    Shutdown,
}

/// What password work came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The PHC string of a `Work::Hash`, or `None` if hashing failed.
    Hashed(Option<String>),
    /// Whether a `Work::Verify`'s password matched.
    Verified(bool),
    /// The service's queue was full: the work was not done.
    Busy,
}

/// Largest frame taken for a transform before parsing: a head and a handful of parts fit
/// many times over, and anything larger is charged as a message.
const MAX_TRANSFORM_BYTES: usize = 8 * 1024;

/// Fixed texts the protocol promises.
const PONG: &str = "pong";

/// Where resume tokens come from: 16 random bytes, or `None` if the source failed. The event
/// loop's hub draws them from the operating system; tests may give a fixed sequence.
pub type TokenSource = Box<dyn FnMut() -> Option<[u8; 16]> + Send>;

/// 16 bytes from the operating system's random source.
fn os_token() -> Option<[u8; 16]> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes)
}

/// A room message, parsed: the 400 and 422 rules have passed.
enum Action<'a> {
    Join,
    Leave,
    List,
    Msg(&'a RawValue),
    Transform(Transform),
    Game(GameCommand),
    History(HistoryQuery),
    Claim(Claim),
    Release(Release),
    Object(ObjectUpdate<'a>),
}

impl<'a> Action<'a> {
    fn parse(
        kind: RoomKind,
        data: Option<&'a RawValue>,
        config: &Config,
    ) -> Result<Action<'a>, Refusal> {
        Ok(match (kind, data) {
            (RoomKind::Join, _) => Action::Join,
            (RoomKind::Leave, _) => Action::Leave,
            (RoomKind::List, _) => Action::List,
            (RoomKind::Msg, Some(data)) => Action::Msg(data),
            (RoomKind::Transform, Some(data)) => {
                Action::Transform(Transform::parse(data, config.max_parts)?)
            }
            (RoomKind::Game, Some(data)) => Action::Game(GameCommand::parse(data)?),
            (RoomKind::History, Some(data)) => Action::History(HistoryQuery::parse(data)?),
            (RoomKind::Claim, Some(data)) => Action::Claim(Claim::parse(data)?),
            (RoomKind::Release, Some(data)) => Action::Release(Release::parse(data)?),
            (RoomKind::Object, Some(data)) => {
                Action::Object(ObjectUpdate::parse(data, config.max_object_state)?)
            }
            (_, None) => {
                return Err(Refusal::MissingData {
                    kind: kind.as_str(),
                })
            }
        })
    }
}

/// Connections, sessions, rooms, history and poses, and the rules between them.
pub struct Hub {
    config: Config,
    clock: WallClock,
    conns: Conns,
    sessions: Sessions,
    rooms: Table<RoomId, Room>,
    room_ids: HashMap<String, RoomId>,
    directory: Directory,
    lobby: RoomId,
    outbox: Outbox,
    /// Bytes of every room's history together, held under `history_allowance`.
    history_bytes: HistoryBytes,
    history_allowance: usize,
    /// Rooms held (created and still in) by the users of each address.
    held_by_ip: HashMap<IpAddr, usize>,
    /// Memory is near the budget: no new logins or joins.
    low_memory: bool,
    /// Seq of the first event of the next room created: past every seq any earlier room of
    /// any name reached, so a resume can never mix up two lives of a room.
    seq_floor: u64,
    tokens: TokenSource,
    accounts: accounts::Accounts,
    /// Work handed to the hashing service, by id, and what its answer is for.
    jobs: HashMap<u64, lifecycle::Job>,
    next_job: u64,
    /// A store keeps history and accounts (`--data-dir`): history events and account
    /// changes go out as `Output::Persist`, and emptied rooms keep their history.
    persist: bool,
    /// Rooms without members kept for their history (with a store), oldest first.
    dormant: VecDeque<RoomId>,
    /// Lifecycle and timeout lines, summarized under floods.
    logins: Tally,
    timeouts: Tally,
    /// Rooms with pose work for the next tick.
    tick_rooms: Vec<RoomId>,
    /// When each room's earliest object claim runs out (its TTL), earliest first.
    claim_deadlines: BTreeSet<(Instant, RoomId)>,
    ticker: Ticker,
    /// Coarse timer for login and idle timeouts; a per-connection timer heap would cost more
    /// than a scan at this cadence.
    housekeeping: Ticker,
    shutting_down: bool,
    /// Cluster mode (`--redis`): the other nodes, through Redis.
    cluster: Option<cluster::Cluster>,
}

impl Hub {
    /// A hub with an empty lobby. `clock` turns the loop's instants into server time; `now` is
    /// the origin of the tick schedule.
    pub fn new(config: Config, clock: WallClock, now: Instant) -> Hub {
        let mut rooms = Table::default();
        let history_bytes = HistoryBytes::default();
        let history = History::new(config.history, config.max_outbuf / 2, history_bytes.clone());
        let persist = config.data_dir.is_some();
        let cluster = config
            .cluster
            .as_ref()
            .map(|c| cluster::Cluster::new(c.node_id.clone(), now));
        // With a cluster, histories (and accounts) live in Redis; the store keeps this node's
        // accounts only.
        let keep_rooms = persist && cluster.is_none();
        let lobby =
            rooms.insert_with(|id| Room::new(id, RoomName::lobby(), history, 1, keep_rooms));
        let mut room_ids = HashMap::new();
        room_ids.insert(LOBBY.to_owned(), lobby);
        let mut directory = Directory::default();
        directory.insert(LOBBY, lobby);
        let shortest_timeout = match config.idle_timeout.is_zero() {
            true => config.login_timeout,
            false => config.login_timeout.min(config.idle_timeout),
        };
        let housekeeping_period =
            (shortest_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut hub = Hub {
            ticker: Ticker::new(now, config.tick_period()),
            housekeeping: Ticker::new(now, housekeeping_period),
            conns: Conns::new(&config),
            // Histories may take a quarter of the memory budget; queues and buffers the rest.
            history_allowance: config.max_memory / 4,
            config,
            clock,
            sessions: Sessions::default(),
            rooms,
            room_ids,
            directory,
            lobby,
            outbox: Outbox::default(),
            history_bytes,
            held_by_ip: HashMap::new(),
            low_memory: false,
            seq_floor: 1,
            tokens: Box::new(os_token),
            accounts: accounts::Accounts::default(),
            jobs: HashMap::new(),
            next_job: 0,
            persist,
            dormant: VecDeque::new(),
            logins: Tally::new("logins and logouts", log::Level::Info),
            timeouts: Tally::new("connections timed out", log::Level::Info),
            tick_rooms: Vec::new(),
            claim_deadlines: BTreeSet::new(),
            shutting_down: false,
            cluster,
        };
        hub.watch(lobby);
        hub
    }

    /// Rooms keep their history when emptied, and hand their events to the store: with a
    /// data directory, unless Redis keeps the histories (cluster mode).
    fn keeps_rooms(&self) -> bool {
        self.persist && self.cluster.is_none()
    }

    /// Feeds one thing that happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Open { conn, peer, since } => self.open(now, conn, peer, since),
            Input::Frame(conn, body) => self.frame(now, conn, body),
            Input::Malformed(conn, problem) => self.malformed(now, conn, problem),
            Input::Closed(conn) => self.disconnect(now, conn),
            Input::Backlogged(conn) => {
                if let Some(state) = self.conns.get_mut(conn) {
                    state.backlogged = true;
                }
            }
            Input::Drained(conn) => self.drained(conn),
            Input::MemoryPressure(high) => {
                if high != self.low_memory {
                    log::warn!(
                        "memory {}: new logins and joins {}",
                        if high {
                            "near the budget"
                        } else {
                            "back under the budget"
                        },
                        if high { "refused" } else { "accepted again" }
                    );
                }
                self.low_memory = high;
            }
            Input::Done { id, done } => self.work_done(now, id, done),
            Input::Cluster(input) => self.cluster_input(now, input),
            Input::Shutdown => self.shutdown(now),
        }
    }

    /// Runs whatever is due at `now`: the pose tick, login and idle timeouts.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_claims(now);
        // The ticker only moves while there is pose work: after a quiet spell its deadline has
        // passed, so the first pose goes out at once, in the first pass that sees it, whether or
        // not the loop woke for something else meanwhile.
        if !self.tick_rooms.is_empty() && self.ticker.fire(now) {
            self.tick(now);
        }
        if self.housekeeping.fire(now) {
            self.expire(now);
            self.expire_detached(now);
            self.accounts.expire(now);
            self.expire_turns(now);
            self.cluster_timers(now);
            self.logins.flush(now);
            self.timeouts.flush(now);
        }
    }

    /// The next thing to do, if any. Pending room batches are flushed once the direct
    /// replies before them are out, so the order each client sees is the order of causes.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outbox.is_empty() {
            self.flush_all();
        }
        self.outbox.pop()
    }

    /// The next direct output, without flushing room batches: lets the event loop move a
    /// connection's replies to its queue after every frame it reads (a connection over its
    /// queue limit is then stopped at once, not after a whole pass of replies piled up).
    #[must_use]
    pub fn poll_direct(&mut self) -> Option<Output> {
        self.outbox.pop()
    }

    /// Bytes held by room histories (and their cached frames), for the memory estimate.
    pub fn history_bytes(&self) -> usize {
        self.history_bytes.get()
    }

    /// When [`Hub::handle_timeout`] must next run; `None` when nothing is scheduled.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let tick = (!self.tick_rooms.is_empty()).then(|| self.ticker.deadline());
        let watching = self.conns.len() > 0 || self.sessions.detached_count() > 0;
        let housekeeping = watching.then(|| self.housekeeping.deadline());
        let claims = self.claim_deadlines.first().map(|&(at, _)| at);
        // The heartbeat runs on the housekeeping tick, which must then run even when idle.
        let cluster = self
            .cluster
            .as_ref()
            .map(|c| c.deadline().max(self.housekeeping.deadline()));
        tick.into_iter()
            .chain(housekeeping)
            .chain(claims)
            .chain(cluster)
            .min()
    }

    /// Connections the hub holds (logged in or not).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Users logged in (detached sessions included).
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The server's counters, with the session and room gauges brought up to date; the
    /// event loop renders them for `/metrics`.
    pub fn stats(&mut self) -> &Stats {
        let (sessions, rooms) = (self.sessions.len(), self.rooms.len());
        self.outbox.stats.set_sessions(sessions);
        self.outbox.stats.set_rooms(rooms);
        &self.outbox.stats
    }

    /// The counters, for the event loop's own bumps (connections, bytes, pass durations).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.outbox.stats
    }

    /// Draws resume tokens from `source` instead of the operating system (tests).
    pub fn set_token_source(&mut self, source: TokenSource) {
        self.tokens = source;
    }

    fn open(&mut self, now: Instant, conn: ConnId, peer: IpAddr, since: Instant) {
        if self.shutting_down {
            // Accepted before the shutdown, heard from only after it.
            let frame = self.reply_frame(now, &Refusal::ShuttingDown, &Map::new());
            self.outbox.send(conn, frame);
            self.outbox.close(conn);
            return;
        }
        self.conns.open(conn, peer, since, now);
    }

    fn frame(&mut self, now: Instant, conn: ConnId, body: &[u8]) {
        if self.conns.heard(conn, now).is_none() {
            return;
        }
        // Charged before parsing, so a flood costs its sender, not the server. A transform (or
        // a shared object's update, streamed like one) is recognised by its bytes; one that
        // turns out not to be one pays the message bucket too.
        let transform_like = body.len() <= MAX_TRANSFORM_BYTES
            && (TRANSFORM_TYPE.find(body).is_some() || OBJECT_TYPE.find(body).is_some());
        let charge = if transform_like {
            self.conns.charge_transform(conn, now)
        } else {
            self.conns.charge_message(conn, now, body.len())
        };
        if !self.granted(now, conn, body, charge) {
            return;
        }
        let request = decode_request(body);
        self.outbox.stats.received(message_type(&request));
        let is_transform = matches!(
            request,
            Ok(Request::Room {
                kind: RoomKind::Transform | RoomKind::Object,
                ..
            })
        );
        if transform_like && !is_transform {
            let charge = self.conns.charge_message(conn, now, body.len());
            if !self.granted(now, conn, body, charge) {
                return;
            }
        }
        match request {
            Err(bad) => {
                let detail = context(bad.room.as_deref(), bad.kind.as_deref());
                self.refuse(now, conn, Refusal::BadRequest(bad), &detail);
            }
            Ok(Request::Ping) => self.reply(now, conn, Code::Ok, PONG, &Map::new()),
            Ok(Request::Rooms { after, limit }) if self.clustered() => {
                self.cluster_rooms(now, conn, after, limit)
            }
            Ok(Request::Rooms { after, limit }) => {
                let rooms = &self.rooms;
                let users = |id| rooms.get(id).map_or(0, Room::len);
                let detail = self.directory.page(after.as_deref(), limit, users);
                let frame = encode_reply(
                    self.time(now),
                    Code::Ok,
                    "Rooms and their member counts.",
                    &detail,
                );
                self.send_direct(conn, frame);
            }
            Ok(Request::Login { user, pass }) => {
                self.login(now, conn, &user, pass.unwrap_or_default())
            }
            Ok(Request::Register { user, pass }) => self.register(now, conn, &user, pass),
            Ok(Request::Password { old, new }) => self.change_password(now, conn, old, new),
            Ok(Request::Resume { token, rooms }) => self.resume(now, conn, &token, &rooms),
            Ok(Request::Logout) => self.logout(now, conn),
            Ok(Request::Room { room, kind, data }) => {
                if let Err(refusal) = self.room_request(now, conn, &room, kind, data) {
                    let mut detail = context(Some(&room), Some(kind.as_str()));
                    refusal.extend_detail(&mut detail);
                    self.refuse(now, conn, refusal, &detail);
                }
            }
        }
    }

    /// Whether a charge lets the frame through; a refused message is answered (at most once
    /// a second) and the connection paused until its bucket refills.
    fn granted(&mut self, now: Instant, conn: ConnId, body: &[u8], charge: Charge) -> bool {
        match charge {
            Charge::Granted => true,
            Charge::Dropped => false,
            Charge::Limited { notify, until } => {
                if notify {
                    // Parsed only for the reply's detail, at most once a second.
                    let detail = match decode_request(body) {
                        Ok(Request::Room { room, kind, .. }) => {
                            context(Some(&room), Some(kind.as_str()))
                        }
                        Err(bad) => context(bad.room.as_deref(), bad.kind.as_deref()),
                        Ok(_) => Map::new(),
                    };
                    let rate = self.conns.rate();
                    self.refuse(now, conn, Refusal::RateLimited { rate }, &detail);
                }
                self.outbox.pause(conn, until);
                false
            }
        }
    }

    fn malformed(&mut self, now: Instant, conn: ConnId, problem: Problem) {
        if self.conns.get(conn).is_none() {
            return;
        }
        self.reply(now, conn, problem.code, &problem.message, &problem.detail);
        self.close(now, conn);
    }

    /// Applies a room message. Checks run in the documented order: 401, then 422 (names, pose,
    /// game command), then 404 / 409.
    fn room_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        room: &str,
        kind: RoomKind,
        data: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let state = self.conns.get(conn).ok_or(Refusal::Closing)?;
        let session_id = state.session.ok_or(Refusal::NotLoggedIn)?;
        let name = RoomName::parse(room)?;
        // Parse what the message asks for before looking at membership: 422 precedes 404.
        let action = Action::parse(kind, data, &self.config)?;
        if let Action::Join = action {
            return self.join(now, session_id, name);
        }
        let session = self.sessions.get(session_id).ok_or(Refusal::Closing)?;
        let user = session.user.clone();
        let room_id = self
            .room_ids
            .get(name.as_str())
            .copied()
            .filter(|&room_id| session.is_in(room_id))
            .ok_or_else(|| Refusal::NotInRoom {
                room: room.to_owned(),
            })?;
        if self.clustered() {
            let unsupported = match action {
                Action::Claim(_) | Action::Release(_) | Action::Object(_) => Some("Shared objects"),
                _ => None,
            };
            if let Some(what) = unsupported {
                return Err(Refusal::NotInCluster { what });
            }
        }
        match action {
            Action::Join => {} // joined above
            Action::Leave if self.clustered() => {
                self.cluster_ready()?;
                self.cluster_leave(now, session_id, room_id);
            }
            Action::Leave => self.leave(now, session_id, room_id),
            Action::List => {
                let names = self.rooms[room_id].names();
                let event = encode_event(self.time(now), user.as_str(), "list", names);
                let frame = encode_user_frame(name.as_str(), false, [&event]);
                self.send_direct(conn, frame);
            }
            Action::Msg(data) if self.clustered() => {
                let data = one_line(data);
                self.cluster_msg(now, conn, room_id, user.as_str(), &data)?;
            }
            Action::Msg(data) => {
                let data = one_line(data);
                let time = self.time(now);
                self.publish(room_id, time, user.as_str(), "msg", &*data);
            }
            Action::Transform(transform) => {
                if self.rooms[room_id].pose_pending(session_id) {
                    self.outbox.stats.poses_superseded(1);
                }
                let max_parts = self.config.max_parts;
                if self.rooms[room_id].set_pose(session_id, transform, max_parts)? {
                    self.queue_tick(room_id);
                }
            }
            Action::Claim(claim) => self.claim(now, room_id, session_id, &user, claim)?,
            Action::Release(release) => self.release(now, room_id, session_id, &user, release)?,
            Action::Object(update) => self.update_object(room_id, session_id, update)?,
            Action::Game(command) if self.clustered() => {
                self.cluster_game(now, conn, room_id, &user, command)?;
            }
            Action::Game(command) => {
                let state = self.rooms[room_id].play(now, &user, command)?;
                let time = self.time(now);
                self.publish(room_id, time, user.as_str(), "game", state);
            }
            Action::History(query) => {
                match self.rooms[room_id].query_history(query.range, query.limit) {
                    Ok(frame) => self.send_direct(conn, frame),
                    Err(kept) => {
                        let (first, last) = kept.unzip();
                        let mut detail = context(Some(name.as_str()), Some(kind.as_str()));
                        detail.insert("first".into(), first.into());
                        detail.insert("last".into(), last.into());
                        self.reply(
                            now,
                            conn,
                            Code::Ok,
                            "No kept events in that range.",
                            &detail,
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn join(&mut self, now: Instant, session_id: SessionId, name: RoomName) -> Result<(), Refusal> {
        let existing = self.room_ids.get(name.as_str()).copied();
        let session = self.sessions.get(session_id).ok_or(Refusal::Closing)?;
        let conn = session.conn.ok_or(Refusal::Closing)?;
        let user = session.user.clone();
        let already_in = existing.is_some_and(|room_id| session.is_in(room_id));
        // The documented precedence puts 422 before 409, so the limits are checked first.
        if session.rooms.len() >= self.config.max_rooms_per_user {
            return Err(Refusal::TooManyRooms {
                count: session.rooms.len(),
            });
        }
        if let Some(room_id) = existing.filter(|_| !already_in) {
            if self.rooms[room_id].cluster_len() >= self.config.max_room_members {
                return Err(Refusal::RoomFull {
                    room: name.as_str().to_owned(),
                    max: self.config.max_room_members,
                });
            }
        }
        if already_in {
            return Err(Refusal::AlreadyJoined {
                room: name.as_str().to_owned(),
            });
        }
        if self.low_memory {
            return Err(Refusal::LowMemory);
        }
        self.cluster_ready()?;
        let (ip, held) = (session.ip, session.held);
        // A room kept for its history (no members) comes back to life as if created anew,
        // with its history and seq where they stopped.
        let dormant = existing.filter(|&id| id != self.lobby && self.rooms[id].is_empty());
        let room_id = match existing.filter(|_| dormant.is_none()) {
            Some(room_id) => room_id,
            None => {
                if self.rooms.len() - self.dormant.len() >= self.config.max_rooms {
                    return Err(Refusal::RoomLimit {
                        max: self.config.max_rooms,
                    });
                }
                if held >= self.config.max_held_rooms {
                    return Err(Refusal::HoldingTooMany {
                        max: self.config.max_held_rooms,
                    });
                }
                let held_by_ip = self.held_by_ip.get(&ip).copied().unwrap_or(0);
                if held_by_ip >= self.config.max_held_rooms_per_ip {
                    return Err(Refusal::AddressHoldingTooMany {
                        max: self.config.max_held_rooms_per_ip,
                    });
                }
                let room_id = match dormant {
                    Some(room_id) => {
                        self.dormant.retain(|&r| r != room_id);
                        room_id
                    }
                    None => self.create_room(name.clone()),
                };
                self.directory.insert(name.as_str(), room_id);
                self.rooms[room_id].hold(session_id);
                *self.held_by_ip.entry(ip).or_default() += 1;
                if let Some(session) = self.sessions.get_mut(session_id) {
                    session.held += 1;
                }
                room_id
            }
        };
        if self.clustered() {
            self.cluster_join(now, session_id, conn, &user, room_id);
            return Ok(());
        }
        // Events from before the join go to the old members only: the joiner sees them in
        // the history frame.
        let room = &mut self.rooms[room_id];
        room.flush(&mut self.outbox);
        for frame in room.history_frames() {
            self.send_direct(conn, frame);
        }
        self.rooms[room_id].add(session_id, conn, user.clone());
        if let Some(session) = self.sessions.get_mut(session_id) {
            session.rooms.push(room_id);
        }
        let time = self.time(now);
        self.publish(room_id, time, user.as_str(), "join", "");
        let room = &mut self.rooms[room_id];
        let list = encode_event(time, user.as_str(), "list", room.names());
        let game_state = room
            .game_state()
            .map(|state| encode_event(time, user.as_str(), "game", state));
        let has_poses = room.has_poses();
        self.send_direct(conn, encode_user_frame(name.as_str(), false, [&list]));
        if let Some(state) = game_state {
            self.send_direct(conn, encode_user_frame(name.as_str(), false, [&state]));
        }
        if has_poses {
            self.queue_tick(room_id);
        }
        Ok(())
    }

    fn leave(&mut self, now: Instant, session: SessionId, room_id: RoomId) {
        let Some(user) = self.sessions.get(session).map(|s| s.user.clone()) else {
            return;
        };
        let time = self.time(now);
        self.publish(room_id, time, user.as_str(), "leave", "");
        // The leaver gets its own leave event, so flush before it stops being a member.
        self.rooms[room_id].flush(&mut self.outbox);
        self.remove_member(now, session, room_id, false);
    }

    /// Takes `session` out of the room, tells the others (when `announce`) and the game, and
    /// drops the room if it emptied.
    fn remove_member(&mut self, now: Instant, session: SessionId, room_id: RoomId, announce: bool) {
        let ip = self.sessions.get_mut(session).map(|session| {
            session.rooms.retain(|&r| r != room_id);
            session.ip
        });
        let time = self.time(now);
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(member) = room.remove(session) else {
            return;
        };
        let released = room.drop_claims(session);
        let claim_deadline = room.claim_deadline();
        let unheld = room.unhold(session);
        let emptied = match self.cluster.is_some() {
            true => room.is_idle(),
            false => room.is_empty(),
        };
        self.directory.changed();
        if unheld {
            if let Some(session) = self.sessions.get_mut(session) {
                session.held -= 1;
            }
            if let Some(ip) = ip {
                self.unhold_ip(ip);
            }
        }
        if emptied && room_id != self.lobby {
            self.tick_rooms.retain(|&r| r != room_id);
            if self.keeps_rooms() {
                self.make_dormant(room_id);
            } else {
                self.remove_room(room_id);
            }
            self.unschedule_claims(room_id, claim_deadline);
            return;
        }
        let user = member.user.as_str();
        if announce {
            self.publish(room_id, time, user, "leave", "");
        }
        if let Some(state) = self.rooms[room_id].leave_game(now, &member.user) {
            self.publish(room_id, time, user, "game", state);
        }
        self.announce_releases(now, room_id, &member.user, released);
    }

    /// A new room, not yet in the rooms list.
    fn create_room(&mut self, name: RoomName) -> RoomId {
        let history = History::new(
            self.config.history,
            self.config.max_outbuf / 2,
            self.history_bytes.clone(),
        );
        let first_seq = self.seq_floor;
        let persist = self.keeps_rooms();
        let room_id = self
            .rooms
            .insert_with(|id| Room::new(id, name.clone(), history, first_seq, persist));
        self.room_ids.insert(name.as_str().to_owned(), room_id);
        self.watch(room_id);
        room_id
    }

    /// Forgets a room and its history; a room of the same name created later numbers on
    /// from past it.
    fn remove_room(&mut self, room_id: RoomId) {
        if let Some(room) = self.rooms.remove(room_id) {
            self.room_ids.remove(room.name().as_str());
            self.directory.remove(room.name().as_str());
            self.seq_floor = self.seq_floor.max(room.next_seq());
            if room.game_owned {
                self.outbox.cluster(cluster::ClusterOut::ReleaseLease {
                    room: room.name().as_str().to_owned(),
                });
            }
            self.unwatch(room_id, room.name().as_str());
        }
        self.outbox.forget(room_id);
        self.dormant.retain(|&r| r != room_id);
    }

    /// With a store, an emptied room keeps its history for whoever joins it next (it leaves
    /// the rooms list meanwhile); at most `--max-stored-rooms` are kept, the least recently
    /// active go first.
    fn make_dormant(&mut self, room_id: RoomId) {
        if let Some(room) = self.rooms.get(room_id) {
            self.directory.remove(room.name().as_str());
        }
        self.dormant.push_back(room_id);
        while self.dormant.len() > self.config.max_stored_rooms {
            match self.dormant.front().copied() {
                Some(oldest) => self.remove_room(oldest),
                None => break,
            }
        }
    }

    /// Puts back an account read from the store at start-up.
    pub fn restore_account(&mut self, name: &str, phc: &str) {
        self.accounts.insert(name.to_owned(), phc.to_owned());
    }

    /// Puts back a room's history read from the store at start-up: the room is kept (without
    /// members, out of the rooms list) until someone joins it, and its seq continues from
    /// `last_seq`. A name that is not a valid room name (any more) is skipped.
    pub fn restore_room(
        &mut self,
        name: &str,
        last_seq: u64,
        events: impl IntoIterator<Item = (u64, bytes::Bytes)>,
    ) {
        let Ok(name) = RoomName::parse(name) else {
            log::warn!("stored room {name:?} is not a valid room name; skipped");
            return;
        };
        let room_id = match self.room_ids.get(name.as_str()) {
            Some(&room_id) => room_id,
            None => {
                let room_id = self.create_room(name);
                self.make_dormant(room_id);
                room_id
            }
        };
        let Some(room) = self.rooms.get_mut(room_id) else {
            return; // evicted at once: more stored rooms than --max-stored-rooms
        };
        for (seq, event) in events {
            room.restore(seq, event);
        }
        room.restore_last_seq(last_seq);
        self.seq_floor = self.seq_floor.max(last_seq + 1);
    }

    fn unhold_ip(&mut self, ip: IpAddr) {
        if let Some(count) = self.held_by_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.held_by_ip.remove(&ip);
            }
        }
    }

    fn drained(&mut self, conn: ConnId) {
        let Some(state) = self.conns.get_mut(conn) else {
            return;
        };
        state.backlogged = false;
        let Some(session_id) = state.session else {
            return;
        };
        let rooms = match self.sessions.get(session_id) {
            Some(session) => session.rooms.clone(),
            None => return,
        };
        for room_id in rooms {
            self.rooms[room_id].resend_poses_to(session_id);
            self.queue_tick(room_id);
        }
    }

    fn tick(&mut self, now: Instant) {
        self.outbox.stats.tick_ran();
        let time = self.time(now);
        for room_id in std::mem::take(&mut self.tick_rooms) {
            let Some(room) = self.rooms.get_mut(room_id) else {
                continue;
            };
            let conns = &self.conns;
            let reachable = |conn: Option<ConnId>| conn.is_some_and(|c| conns.reachable(c));
            room.tick(time, &mut self.outbox, reachable, Rule::of(&self.config));
            self.publish_poses(room_id);
        }
    }

    /// A game player who let the turn clock run out forfeits the round.
    fn expire_turns(&mut self, now: Instant) {
        let timeout = self.config.turn_timeout;
        if timeout.is_zero() {
            return;
        }
        let due: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.turn_deadline(timeout).is_some_and(|at| at <= now))
            .map(|(id, _)| id)
            .collect();
        let time = self.time(now);
        for room_id in due {
            if let Some((player, state)) = self.rooms[room_id].expire_turn(now, timeout) {
                log::debug!(
                    "{player} ran out of time in {}",
                    self.rooms[room_id].name().as_str()
                );
                self.publish(room_id, time, &player, "game", state);
            }
        }
    }

    /// Publishes a history event in a room (numbered, kept, batched for every member).
    fn publish<D: serde::Serialize>(
        &mut self,
        room_id: RoomId,
        time: f64,
        user: &str,
        kind: &'static str,
        data: D,
    ) {
        if self.clustered() {
            // Numbered by Redis, delivered here when it comes back; server-made events are
            // kept for when Redis is back if it is away.
            return self.cluster_publish(room_id, time, user, kind, data, 0);
        }
        self.rooms[room_id].publish(time, user, kind, data, &mut self.outbox);
        self.after_publish();
    }

    /// Holds the total of all histories to its allowance, dropping the oldest events of the
    /// largest histories when a publish took it over.
    fn after_publish(&mut self) {
        if self.history_bytes.get() > self.history_allowance {
            self.trim_histories();
        }
    }

    /// Frees history bytes from the largest rooms until the total is 10% under the allowance,
    /// so that the scan over rooms runs once per tenth of the allowance, not per event.
    fn trim_histories(&mut self) {
        let target = self.history_allowance / 10 * 9;
        let mut sizes: Vec<(usize, RoomId)> = self
            .rooms
            .iter()
            .map(|(id, room)| (room.history_bytes(), id))
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        for (bytes, room_id) in sizes {
            let excess = self.history_bytes.get().saturating_sub(target);
            if excess == 0 {
                break;
            }
            self.rooms[room_id].shrink_history(bytes.saturating_sub(excess));
        }
    }

    /// Forgets a connection the hub decided to close: its rooms see it leave now, and the event
    /// loop flushes what is queued before closing the socket.
    fn close(&mut self, now: Instant, conn: ConnId) {
        self.disconnect(now, conn);
        self.outbox.close(conn);
    }

    fn refuse(
        &mut self,
        now: Instant,
        conn: ConnId,
        refusal: Refusal,
        detail: &Map<String, Value>,
    ) {
        self.outbox.stats.error(refusal.code().as_u16());
        let frame = self.reply_frame(now, &refusal, detail);
        self.send_direct(conn, frame);
    }

    fn reply_frame(&self, now: Instant, refusal: &Refusal, detail: &Map<String, Value>) -> Frame {
        refusal.encode_with(self.time(now), detail)
    }

    fn reply(
        &mut self,
        now: Instant,
        conn: ConnId,
        code: Code,
        msg: &str,
        detail: &Map<String, Value>,
    ) {
        if code.as_u16() >= 400 {
            self.outbox.stats.error(code.as_u16());
        }
        let frame = encode_reply(self.time(now), code, msg, detail);
        self.send_direct(conn, frame);
    }

    /// Queues a reply for one connection after the batched events of its rooms (the ordering
    /// rule of [`outbox`]).
    fn send_direct(&mut self, conn: ConnId, frame: Frame) {
        let session = self.conns.get(conn).and_then(|state| state.session);
        let rooms = session
            .and_then(|s| self.sessions.get(s))
            .map(|s| s.rooms.as_slice())
            .unwrap_or_default();
        self.outbox.direct(conn, frame, &mut self.rooms, rooms);
    }

    fn flush_all(&mut self) {
        for room_id in self.outbox.take_batched() {
            if let Some(room) = self.rooms.get_mut(room_id) {
                room.flush(&mut self.outbox);
            }
        }
    }

    fn queue_tick(&mut self, room_id: RoomId) {
        if self.rooms[room_id].queue_tick() {
            self.tick_rooms.push(room_id);
        }
    }

    fn time(&self, now: Instant) -> f64 {
        self.clock.unix(now)
    }
}

/// The `type` label of a client message in the stats.
fn message_type(request: &Result<Request<'_>, crate::protocol::BadRequest>) -> MessageType {
    match request {
        Err(_) => MessageType::Malformed,
        Ok(Request::Login { .. }) => MessageType::Login,
        Ok(Request::Resume { .. }) => MessageType::Resume,
        Ok(Request::Logout) => MessageType::Logout,
        Ok(Request::Register { .. }) => MessageType::Register,
        Ok(Request::Password { .. }) => MessageType::Password,
        Ok(Request::Ping) => MessageType::Ping,
        Ok(Request::Rooms { .. }) => MessageType::Rooms,
        Ok(Request::Room { kind, .. }) => match kind {
            RoomKind::Join => MessageType::Join,
            RoomKind::Leave => MessageType::Leave,
            RoomKind::List => MessageType::List,
            RoomKind::Msg => MessageType::Msg,
            RoomKind::Transform => MessageType::Transform,
            RoomKind::Game => MessageType::Game,
            RoomKind::History => MessageType::History,
            RoomKind::Claim => MessageType::Claim,
            RoomKind::Release => MessageType::Release,
            RoomKind::Object => MessageType::Object,
        },
    }
}

/// `{"room":R,"type":K}` with whichever of the two could be read.
fn context(room: Option<&str>, kind: Option<&str>) -> Map<String, Value> {
    let mut detail = Map::new();
    if let Some(room) = room {
        detail.insert("room".into(), echo(room).into());
    }
    if let Some(kind) = kind {
        detail.insert("type".into(), echo(kind).into());
    }
    detail
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod vr_tests;
