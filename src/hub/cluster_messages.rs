//! What the hub and the Redis bridge say to each other (cluster mode, `--redis`): the
//! requests the hub hands out as `Output::Cluster`, what Redis answers or sends back as
//! `Input::Cluster`, and the header the publish script puts before each event. The rules
//! that use them are in `cluster.rs`; `services/redis.rs` carries them.

use std::time::Duration;

use bytes::Bytes;

/// What the hub asks of Redis.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOut {
    /// Subscribe to the room's channels, then read it (last seq, the last `history` events,
    /// the members): answered with [`ClusterIn::Synced`].
    Subscribe {
        /// The room.
        room: String,
        /// Events of its tail to read.
        history: usize,
    },
    /// The room has no member here any more.
    Unsubscribe {
        /// The room.
        room: String,
    },
    /// Number, keep and publish one history event.
    Publish(Publish),
    /// Read the room's stream after `after`: answered with [`ClusterIn::Fetched`].
    Fetch {
        /// The room.
        room: String,
        /// The last seq delivered here.
        after: u64,
        /// At most this many events.
        count: usize,
    },
    /// This node's members' changed poses in a room, for the other nodes: lines of
    /// `USER EVENT` after a first line with the node id.
    Poses {
        /// The room.
        room: String,
        /// The message.
        payload: Bytes,
    },
    /// Claim a user name for this node (`SET NX`): answered with [`ClusterIn::NameClaimed`].
    ClaimName {
        /// Names the answer.
        op: u64,
        /// The name, ASCII-lowercased.
        folded: String,
        /// The name as shown.
        user: String,
        /// A guest's login: refused if the name is registered, even if this node has not
        /// heard of the account yet.
        guest: bool,
    },
    /// Register an account, unless its name is registered or in use, or the cluster holds
    /// `max` accounts: answered with [`ClusterIn::AccountSaved`]; every node hears it as a
    /// [`ClusterIn::Account`].
    Register {
        /// Names the answer.
        op: u64,
        /// The name, ASCII-lowercased.
        folded: String,
        /// The name as registered.
        name: String,
        /// Its password's PHC string.
        phc: String,
        /// This node's `--max-accounts`.
        max: usize,
    },
    /// A registered user's new password hash: answered with [`ClusterIn::AccountSaved`];
    /// every node hears it as a [`ClusterIn::Account`].
    SetPassword {
        /// Names the answer.
        op: u64,
        /// The name, ASCII-lowercased.
        folded: String,
        /// The name as registered.
        name: String,
        /// The new password's PHC string.
        phc: String,
    },
    /// Accounts this node holds that Redis lacks (from this node's store, or ones Redis
    /// lost): each added if its name is still free there (the cluster's account wins), and
    /// announced. Nobody waits for it. Sent in batches (see `cluster_accounts.rs`), so that
    /// a store of many accounts does not overflow the queue to Redis.
    OfferAccounts {
        /// Each account with its name ASCII-lowercased.
        accounts: Vec<(String, AccountRecord)>,
    },
    /// A session ended: the name is free again (if this node still holds it).
    ReleaseName {
        /// The name, ASCII-lowercased.
        folded: String,
    },
    /// Keep what a resume on another node needs: the session's token names its user.
    SaveSession {
        /// The new token.
        token: String,
        /// Its user, ASCII-lowercased.
        folded: String,
        /// The token it replaces.
        old: Option<String>,
    },
    /// The session's connection is lost: its record lives `ttl` (the resume grace).
    ExpireSession {
        /// The token.
        token: String,
        /// The resume grace.
        ttl: Duration,
    },
    /// The session ended.
    DropSession {
        /// The token.
        token: String,
    },
    /// A resume with a token this node does not hold: take the session over from the node
    /// that does. Answered with [`ClusterIn::SessionClaimed`].
    ClaimSession {
        /// Names the answer.
        op: u64,
        /// The token.
        token: String,
    },
    /// One page of the cluster's rooms: answered with [`ClusterIn::Rooms`].
    Rooms {
        /// Names the answer.
        op: u64,
        /// Rooms after this name.
        after: Option<String>,
        /// At most this many.
        limit: usize,
    },
    /// A game command for a room whose game this node does not own: take the game's lease
    /// if nobody holds it (answered with [`ClusterIn::GameLease`], the game's last state), or
    /// forward the command to the node that holds it.
    Game {
        /// Names the answer (and the forwarded command's refusal).
        op: u64,
        /// The room.
        room: String,
        /// Who sent it.
        user: String,
        /// The command, as JSON.
        command: Bytes,
    },
    /// Take the room's game lease if nobody holds it (its owner died): answered with
    /// [`ClusterIn::GameLease`] (op 0) when taken.
    ClaimLease {
        /// The room.
        room: String,
    },
    /// This node still owns the room's game: its lease lives on (answered with
    /// [`ClusterIn::LeaseLost`] if another node holds it now).
    RenewLease {
        /// The room.
        room: String,
    },
    /// This node lets the room's game go (it has no member there any more).
    ReleaseLease {
        /// The room.
        room: String,
    },
    /// A forwarded game command was refused: tell its node.
    GameRefusal {
        /// The node the command came from.
        node: String,
        /// Its op there.
        op: u64,
        /// The refusal's code.
        code: u16,
        /// Its text.
        msg: String,
    },
    /// This node is alive (a key with a [`DEAD_AFTER`] lifetime).
    Heartbeat,
    /// Reap the nodes whose heartbeat lapsed: one leave event per member they had, `time`
    /// (server time, written as JSON) in each.
    Reap {
        /// The leave events' time.
        time: String,
    },
}

/// A registered account as the cluster keeps it (`roomcast:accounts` in Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// The name as registered.
    pub name: String,
    /// The password's argon2id PHC string.
    pub phc: String,
    /// Raised by every change in Redis: a node keeps the highest it saw, so an announcement
    /// and a full reload may reach it in either order. 0: known only to this node's store.
    pub version: u64,
}

/// How Redis answered a [`ClusterOut::Register`] or a [`ClusterOut::SetPassword`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSaved {
    /// Kept, with this version.
    Saved {
        /// The account's version now.
        version: u64,
    },
    /// The name is registered (another node was first) or a user of that name is logged in.
    Taken,
    /// The cluster holds the node's `--max-accounts` already.
    Full,
}

/// One history event to number and publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Names this request in a [`ClusterIn::Failed`] and in the event's header; 0: nobody
    /// waits for it.
    pub op: u64,
    /// The room.
    pub room: String,
    /// What the script also does to the room's membership.
    pub mode: Mode,
    /// The event's type.
    pub kind: &'static str,
    /// Who caused it.
    pub user: String,
    /// The user, ASCII-lowercased.
    pub folded: String,
    /// The encoded event up to and including `"seq":`.
    pub prefix: Bytes,
    /// The encoded event from `,"data":` on.
    pub suffix: Bytes,
    /// The last seq this node delivered in the room: the event's seq is above it even if
    /// Redis lost the room's counter.
    pub floor: u64,
    /// Kept and sent again when Redis is back, rather than failed while it is away: events
    /// the server causes (leave, away, back), which no client can retry.
    pub retry: bool,
    /// A game event's state, kept in Redis as the game's (what a node taking the game over
    /// starts from).
    pub state: Option<Bytes>,
}

/// What a published event does to its room's membership in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing (msg, game, claim, release).
    Plain,
    /// The user becomes a member, on this node.
    Join,
    /// The user stops being a member; skipped (nothing published) unless it is a member on
    /// this node: a session another node took over, or reaped, leaves no second time.
    Leave,
    /// Published only if the user is a member on this node (away, back).
    Member,
}

impl Mode {
    /// The word the script reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Join => "join",
            Mode::Leave => "leave",
            Mode::Member => "member",
        }
    }
}

/// What Redis answered, or sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterIn {
    /// Redis is reachable again (after [`ClusterIn::Down`]); subscriptions are restored.
    Up,
    /// Redis cannot be reached (said once per outage).
    Down,
    /// The other nodes declared this node dead while it could not reach Redis.
    Reaped,
    /// A subscribed room as Redis holds it.
    Synced {
        /// The room.
        room: String,
        /// Its last seq (0: none yet).
        last_seq: u64,
        /// Its last events (payloads), oldest first.
        events: Vec<Bytes>,
        /// Its members and their nodes.
        members: Vec<(String, String)>,
        /// Its game's last state, if it has a game.
        game: Option<Bytes>,
    },
    /// An event on a room's channel: a header line `SEQ NODE OP TYPE USER`, then the event.
    Event {
        /// The room.
        room: String,
        /// The message.
        payload: Bytes,
    },
    /// The answer to a [`ClusterOut::Fetch`].
    Fetched {
        /// The room.
        room: String,
        /// The seq asked after.
        after: u64,
        /// Payloads, in seq order.
        events: Vec<Bytes>,
    },
    /// A message on a room's poses channel.
    Poses {
        /// The room.
        room: String,
        /// The message.
        payload: Bytes,
    },
    /// A request that needed an answer could not be carried out (Redis unreachable, or its
    /// queue full).
    Failed {
        /// The request.
        op: u64,
    },
    /// The answer to a [`ClusterOut::ClaimName`].
    NameClaimed {
        /// The request.
        op: u64,
        /// The name is this node's now.
        ok: bool,
    },
    /// Every account Redis holds, read when the bridge (re)connected (after subscribing to
    /// the announcements, so none falls between).
    Accounts {
        /// The accounts.
        accounts: Vec<AccountRecord>,
    },
    /// An account registered, offered, or whose password changed, on any node (this one
    /// included).
    Account(AccountRecord),
    /// The answer to a [`ClusterOut::Register`] or a [`ClusterOut::SetPassword`].
    AccountSaved {
        /// The request.
        op: u64,
        /// What Redis did.
        outcome: AccountSaved,
    },
    /// The answer to a [`ClusterOut::ClaimSession`]: the user and its rooms, now this node's;
    /// `None` for an unknown or expired token.
    SessionClaimed {
        /// The request.
        op: u64,
        /// The user and its rooms.
        found: Option<(String, Vec<String>)>,
    },
    /// The answer to a [`ClusterOut::Rooms`].
    Rooms {
        /// The request.
        op: u64,
        /// Rooms and their member counts, in name order.
        rooms: Vec<(String, usize)>,
        /// More rooms follow.
        more: bool,
    },
    /// This node holds the room's game lease now (answer to [`ClusterOut::Game`], or to
    /// [`ClusterOut::ClaimLease`] with op 0): the game's last state, if there was a game.
    GameLease {
        /// The request (0: a claim).
        op: u64,
        /// The room.
        room: String,
        /// The game's last state.
        state: Option<Bytes>,
    },
    /// A game command another node forwarded to this one, which owns the room's game.
    GameForward {
        /// The room.
        room: String,
        /// Who sent it.
        user: String,
        /// The node it came from.
        origin: String,
        /// Its op there.
        op: u64,
        /// The command, as JSON.
        command: Bytes,
    },
    /// The owner refused a command this node forwarded.
    GameRefused {
        /// The request.
        op: u64,
        /// The refusal's code.
        code: u16,
        /// Its text.
        msg: String,
    },
    /// Another node holds the room's game lease (this one let it lapse).
    LeaseLost {
        /// The room.
        room: String,
    },
    /// Another node resumed the session with this token: drop it here without a leave.
    SessionTaken {
        /// The token.
        token: String,
        /// The node that has it now.
        node: String,
    },
}

/// One event's header, as the publish script wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header<'a> {
    pub seq: u64,
    pub node: &'a str,
    pub op: u64,
    pub kind: &'a str,
    pub user: &'a str,
}

/// Splits a payload into its header and its event (a slice of the same buffer).
pub(crate) fn parse_payload(payload: &Bytes) -> Option<(Header<'_>, Bytes)> {
    let newline = memchr::memchr(b'\n', payload)?;
    let head = std::str::from_utf8(&payload[..newline]).ok()?;
    let mut parts = head.split(' ');
    let header = Header {
        seq: parts.next()?.parse().ok()?,
        node: parts.next()?,
        op: parts.next()?.parse().ok()?,
        kind: parts.next()?,
        user: parts.next()?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((header, payload.slice(newline + 1..)))
}
