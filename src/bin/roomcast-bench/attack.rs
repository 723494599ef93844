//! `attack`: hostile loads against the server's bounds (issue "Bounded in total"), each run
//! beside two well-behaved bystanders whose chat tells whether anyone else was harmed.
//!
//! A run has three phases. The bystanders connect, on their own thread, and wait in their
//! room. The attack is prepared where it needs a stage (long histories, thousands of rooms),
//! and the stage is checked with a probe. Then, for `--seconds`, the attackers attack while
//! the bystanders chat, and the server's CPU time is read over exactly that window.
//!
//! The load generator is one pinned core. The attack loop lowers its own thread's priority
//! (`renice`), so the bystanders' thread runs as soon as a reply reaches it: their latency is
//! then the server's, not the time the attack loop took to come round. Every loop here ends
//! by a deadline; what an attacker queues is topped up only while its socket takes it.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use memchr::memmem;
use roomcast::client::Client;
use serde_json::{json, Value};

use crate::pool::Pool;
use crate::scenarios::{
    clock_micros, cpu_delta, drain_done, field_u64, join, login, progress, set_up_with, Outcome,
};
use crate::stats::{leading_u64, Samples, Sequences, Summary};
use crate::target::Target;

/// What the attackers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Two rooms with ~4 MiB histories; attackers log in, join both and never read.
    History,
    /// ~2,000 rooms with long names; never-logged-in sockets burst rooms requests, never read.
    Rooms,
    /// Logged-in attackers send msgs as fast as their sockets take them.
    Flood,
    /// Like flood, with 64 KiB deeply nested msgs: the costliest thing to parse.
    Nested,
    /// Attackers send invalid transforms as fast as their sockets take them.
    Transforms,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::History => "history",
            Kind::Rooms => "rooms",
            Kind::Flood => "flood",
            Kind::Nested => "nested",
            Kind::Transforms => "transforms",
        }
    }

    /// Attackers when `--attackers` is not given.
    pub fn default_attackers(self) -> usize {
        match self {
            Kind::History => 200,
            _ => 20,
        }
    }

    /// Bytes per attack frame when `--payload` is not given: msg data for flood, the whole
    /// frame body for nested (the default `--max-frame`).
    pub fn default_payload(self) -> usize {
        match self {
            Kind::Nested => 65536,
            _ => 64,
        }
    }

    /// Whether the attackers read what the server sends them.
    fn reads(self) -> bool {
        matches!(self, Kind::Flood | Kind::Nested | Kind::Transforms)
    }
}

pub struct AttackLoad {
    pub kind: Kind,
    pub attackers: usize,
    pub seconds: f64,
    /// msgs per second per bystander.
    pub bystander_rate: f64,
    /// Flood: msg data bytes; nested: frame body bytes.
    pub payload: usize,
    /// Rooms kind: rooms created before the attack.
    pub rooms: usize,
    /// Nested: levels of `[`.
    pub depth: usize,
    /// Whether an attacker the server closes comes back (at most once a second per attacker).
    pub reconnect: bool,
}

/// The bystanders' room; no attacker is in it.
const CALM_ROOM: &str = "calm";
/// The history kind's two rooms.
const HISTORY_ROOMS: [&str; 2] = ["history-a", "history-b"];
/// Fillers per history room: each sends `FILLER_MSGS`, within the burst of 100 tokens (a
/// 60 KB msg costs 15: one token per started 4 KiB).
const FILLERS_PER_ROOM: usize = 20;
const FILLER_MSGS: usize = 4;
/// 20 x 4 x 60 KB = 4.8 MB per room: the history's byte cap (half of `--max-outbuf`, 4 MiB)
/// is what bounds it.
const FILLER_MSG_BYTES: usize = 60_000;
/// Rooms one owner creates: `--max-rooms-per-user` once out of the lobby.
const ROOMS_PER_OWNER: usize = 64;
/// Characters in a created room's name: the longest allowed.
const ROOM_NAME_CHARS: usize = 64;
/// Rooms requests in one attacker's burst, one burst per `BURST_PERIOD`.
const ROOMS_BURST: usize = 1000;
const BURST_PERIOD: Duration = Duration::from_secs(1);
/// An attacker's queue is topped up to this many unwritten bytes, so it always has something
/// for its socket without growing while the socket takes nothing.
const TOP_UP: usize = 64 * 1024;
/// Frames of the flood kinds are queued in blocks of about this many bytes.
const BLOCK: usize = 16 * 1024;
/// Shortest time between two connections of one attacker slot.
const RECONNECT_GAP: Duration = Duration::from_secs(1);
/// Helpers (fillers, owners) ping this often, well within `--idle-timeout`.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Nice value of the attack loop's thread (the bystanders' thread keeps 0).
const ATTACK_NICE: i32 = 10;

pub fn attack(target: &Target, load: &AttackLoad) -> io::Result<Outcome> {
    let addr = target.addr();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel();
    let rate = load.bystander_rate;
    let bystanders = std::thread::Builder::new()
        .name("bystanders".into())
        .spawn(move || bystanders(addr, rate, ready_tx, start_rx))?;
    if ready_rx.recv().is_err() {
        // The thread hung up before it was ready: its result says why.
        return Err(match bystanders.join() {
            Ok(Err(err)) => err,
            _ => io::Error::other("the bystanders' thread ended before its set-up"),
        });
    }
    let nice = lower_own_priority(ATTACK_NICE);
    let staged = match stage(addr, load) {
        Ok(staged) => staged,
        Err(err) => {
            drop(start_tx);
            let _ = bystanders.join();
            return Err(err);
        }
    };
    let mut helpers = staged.helpers;

    let rss_before = target.rss();
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(load.seconds);
    let _ = start_tx.send(until);
    let run = run_attack(addr, load, &mut helpers, started, until);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_delta(target, cpu_before);
    let rss_after = target.rss();
    let helpers_cut_off = helpers.as_ref().map(|pool| pool.closes);
    drop(helpers);
    let calm = match bystanders.join() {
        Ok(report) => report?,
        Err(_) => return Err(io::Error::other("the bystanders' thread panicked")),
    };
    let attack = run?;
    eprintln!();

    let mib = |bytes: u64| json!(bytes as f64 / 1048576.0);
    let mut figures: Vec<(&'static str, Value)> = vec![
        ("kind", json!(load.kind.name())),
        ("attackers", json!(load.attackers)),
    ];
    if let Some(cpu) = cpu {
        figures.push(("server_cpu_s", json!(cpu)));
        figures.push(("server_cpu_share", json!(cpu / elapsed)));
    }
    // Embedded, /proc/self is the load generator as well: `main` reports that as the process's.
    let own_process = matches!(target, Target::Process { .. });
    if let (true, Some((before, _)), Some((after, peak))) = (own_process, rss_before, rss_after) {
        figures.push(("server_rss_before_attack_mib", mib(before)));
        figures.push(("server_rss_end_mib", mib(after)));
        figures.push(("server_peak_rss_mib", mib(peak)));
    }
    figures.extend([
        ("bystander_sent", json!(calm.sent)),
        ("bystander_delivered", json!(calm.delivered)),
        ("bystander_lost", json!(calm.lost)),
        ("bystander_duplicated", json!(calm.duplicated)),
        ("bystanders_cut_off", json!(calm.cut_off)),
        ("bystander_latency_ms", json!(calm.latency)),
        ("attack_frames_queued", json!(attack.frames_queued)),
        ("attack_bytes_written", json!(attack.bytes_written)),
        ("attackers_cut_off", json!(attack.cut_off)),
        ("attacker_reconnects", json!(attack.reconnects)),
        (
            "attacker_reconnect_failures",
            json!(attack.reconnect_failures),
        ),
    ]);
    // Attackers that never read cannot tell what they were answered: null, not 0.
    let seen = |value: Value| {
        if load.kind.reads() {
            value
        } else {
            Value::Null
        }
    };
    let codes: BTreeMap<String, u64> = attack
        .codes
        .iter()
        .map(|(code, n)| (code.to_string(), *n))
        .collect();
    figures.extend([
        (
            "attacker_frames_received",
            seen(json!(attack.frames_received)),
        ),
        (
            "attacker_bytes_received",
            seen(json!(attack.bytes_received)),
        ),
        ("attacker_msg_events", seen(json!(attack.msg_events))),
        (
            "attacker_429s",
            seen(json!(attack.codes.get(&429).copied().unwrap_or(0))),
        ),
        ("attacker_codes", seen(json!(codes))),
    ]);
    match load.kind {
        Kind::History => figures.push(("history_bytes_per_room", json!(staged.probe))),
        Kind::Rooms => {
            figures.push(("rooms_listed", json!(staged.probe)));
            figures.push(("rooms_bursts_skipped", json!(attack.bursts_skipped)));
        }
        Kind::Flood | Kind::Nested | Kind::Transforms => {
            figures.push(("attack_frame_bytes", json!(attack.frame_bytes)))
        }
    }
    if let Some(cut_off) = helpers_cut_off {
        figures.push(("helpers_cut_off", json!(cut_off)));
    }
    figures.push(("generator_attack_nice", json!(nice)));
    Ok(Outcome { figures })
}

/// The attack's stage, set before the clock starts.
struct Staged {
    /// Fillers or room owners, who stay connected (and read) throughout.
    helpers: Option<Pool>,
    /// History: bytes of one room's history as a joiner receives it. Rooms: rooms listed.
    probe: Option<u64>,
}

fn stage(addr: SocketAddr, load: &AttackLoad) -> io::Result<Staged> {
    match load.kind {
        Kind::History => {
            let mut fillers = Pool::connect(addr, HISTORY_ROOMS.len() * FILLERS_PER_ROOM)?;
            let data = "x".repeat(FILLER_MSG_BYTES);
            set_up_with(&mut fillers, |pool, i| {
                // Each filler is in one room only, so even if it read nothing its queue (the
                // room's msgs, under 5 MB) would stay below --max-outbuf.
                let room = HISTORY_ROOMS[i / FILLERS_PER_ROOM];
                pool.queue(i, &login(&format!("filler{i}")));
                pool.queue(i, br#"{"room":"lobby","type":"leave"}"#);
                pool.queue(i, &join(room));
                let msg = json!({"room": room, "type": "msg", "data": data}).to_string();
                for _ in 0..FILLER_MSGS {
                    pool.queue(i, msg.as_bytes());
                }
            })?;
            fillers.tolerate_closes();
            let probe = history_bytes(addr, HISTORY_ROOMS[0])?;
            Ok(Staged {
                helpers: Some(fillers),
                probe: Some(probe),
            })
        }
        Kind::Rooms => {
            let owners = load.rooms.div_ceil(ROOMS_PER_OWNER);
            let mut pool = Pool::connect(addr, owners)?;
            set_up_with(&mut pool, |pool, i| {
                pool.queue(i, &login(&format!("owner{i}")));
                pool.queue(i, br#"{"room":"lobby","type":"leave"}"#);
                let first = i * ROOMS_PER_OWNER;
                for room in first..load.rooms.min(first + ROOMS_PER_OWNER) {
                    pool.queue(i, &join(&long_room_name(room)));
                }
            })?;
            pool.tolerate_closes();
            let probe = count_rooms(addr)?;
            Ok(Staged {
                helpers: Some(pool),
                probe: Some(probe),
            })
        }
        Kind::Flood | Kind::Nested | Kind::Transforms => Ok(Staged {
            helpers: None,
            probe: None,
        }),
    }
}

/// `room00042-xxx...`: as long as a room name may be.
fn long_room_name(index: usize) -> String {
    let head = format!("room{index:05}-");
    let pad = ROOM_NAME_CHARS.saturating_sub(head.len());
    format!("{head}{}", "x".repeat(pad))
}

/// How long a probe waits for any one frame during the set-up.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// Joins `room` as a reading client and sums the history frames it gets.
fn history_bytes(addr: SocketAddr, room: &str) -> io::Result<u64> {
    let mut probe = Client::connect(addr)?;
    probe.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let failed = |err| io::Error::other(format!("history probe: {err}"));
    probe.login("probe", "bench").map_err(failed)?;
    probe.join(room).map_err(failed)?;
    probe.request(&roomcast::protocol::Request::Ping)?;
    let history = memmem::Finder::new(br#""history":true"#);
    // The lobby's history arrives too, after the login.
    let in_room = format!(r#""room":{}"#, json!(room));
    let in_room = memmem::Finder::new(in_room.as_bytes());
    let pong = memmem::Finder::new(br#""msg":"pong""#);
    let mut bytes = 0;
    // Bounded: the server answers the ping after the join's frames, and each read times out.
    loop {
        let body = probe.recv_body().map_err(failed)?;
        if history.find(&body).is_some() && in_room.find(&body).is_some() {
            bytes += body.len() as u64;
        }
        if pong.find(&body).is_some() {
            return Ok(bytes);
        }
    }
}

/// Pages through the rooms list, 500 at a time (5 requests for 2,000 rooms: within the burst).
fn count_rooms(addr: SocketAddr) -> io::Result<u64> {
    let mut probe = Client::connect(addr)?;
    probe.set_read_timeout(Some(PROBE_TIMEOUT))?;
    let mut after: Option<String> = None;
    let mut rooms = 0;
    for _ in 0..50 {
        let reply = probe
            .rooms_page(after.as_deref(), Some(500))
            .map_err(|err| io::Error::other(format!("rooms probe: {err}")))?;
        rooms += reply.detail["rooms"].as_array().map_or(0, Vec::len) as u64;
        match reply.detail.get("next").and_then(Value::as_str) {
            Some(next) => after = Some(next.to_owned()),
            None => return Ok(rooms),
        }
    }
    Err(io::Error::other("rooms probe: more than 50 pages"))
}

/// What the attackers did and saw.
#[derive(Default)]
struct AttackReport {
    frames_queued: u64,
    bytes_written: u64,
    frames_received: u64,
    bytes_received: u64,
    msg_events: u64,
    codes: BTreeMap<u64, u64>,
    cut_off: u64,
    reconnects: u64,
    /// Reconnections that failed at once (e.g. out of descriptors); retried a second later.
    reconnect_failures: u64,
    bursts_skipped: u64,
    frame_bytes: usize,
}

fn run_attack(
    addr: SocketAddr,
    load: &AttackLoad,
    helpers: &mut Option<Pool>,
    started: Instant,
    until: Instant,
) -> io::Result<AttackReport> {
    let kind = load.kind;
    let n = load.attackers;
    let mut report = AttackReport::default();
    let mut pool = Pool::connect(addr, n)?;
    pool.tolerate_closes();
    let mut generation = vec![0u64; n];
    let mut next_connect = vec![started + RECONNECT_GAP; n];
    // Attack frames, framed once per attacker: a block of them, and how many it holds.
    let blocks: Vec<(Vec<u8>, u64)> = (0..n).map(|i| attack_block(load, i)).collect();
    // Every frame of a block is the same body behind a 4-byte header.
    report.frame_bytes = match blocks.first() {
        Some((block, frames)) if *frames > 0 => block.len() / *frames as usize - 4,
        _ => 0,
    };
    // Rooms bursts start at staggered phases over the first period.
    let mut next_burst: Vec<Instant> = (0..n)
        .map(|i| started + BURST_PERIOD.mul_f64(i as f64 / n as f64))
        .collect();
    for i in 0..n {
        report.frames_queued += greet(&mut pool, kind, i, 0);
    }
    pool.flush()?;

    let code = memmem::Finder::new(br#""code":"#);
    let msg_event = memmem::Finder::new(br#""type":"msg""#);
    let mut on_frame = |_: usize, body: &[u8], _: Instant| {
        report.frames_received += 1;
        if body.starts_with(br#"{"info":"user""#) {
            report.msg_events += msg_event.find_iter(body).count() as u64;
        } else if let Some(at) = code.find(body) {
            if let Some(code) = leading_u64(&body[at + 7..]) {
                *report.codes.entry(code).or_default() += 1;
            }
        }
    };
    let mut frames_queued = 0;
    let mut reconnects = 0;
    let mut reconnect_failures = 0;
    let mut bursts_skipped = 0;
    let mut next_keepalive = started + KEEPALIVE;
    let mut next_progress = started + Duration::from_secs(1);
    let wait = match kind {
        Kind::History | Kind::Rooms => Duration::from_millis(5),
        Kind::Flood | Kind::Nested | Kind::Transforms => Duration::from_millis(1),
    };
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if load.reconnect {
            for i in 0..n {
                if pool.conns[i].closed && now >= next_connect[i] {
                    next_connect[i] = now + RECONNECT_GAP;
                    if pool.reconnect(i).is_err() {
                        reconnect_failures += 1;
                        continue;
                    }
                    generation[i] += 1;
                    reconnects += 1;
                    frames_queued += greet(&mut pool, kind, i, generation[i]);
                    pool.flush_one(i)?;
                }
            }
        }
        match kind {
            Kind::History => {}
            Kind::Rooms => {
                for (i, (burst, frames)) in blocks.iter().enumerate() {
                    if now < next_burst[i] {
                        continue;
                    }
                    next_burst[i] += BURST_PERIOD;
                    if pool.conns[i].closed {
                        continue;
                    }
                    // At most one burst waits unwritten: while the socket takes nothing, the
                    // bursts due are skipped (and counted), so the queue stays bounded.
                    if pool.pending(i) > burst.len() {
                        bursts_skipped += 1;
                        continue;
                    }
                    pool.queue_raw(i, burst);
                    frames_queued += frames;
                    pool.flush_one(i)?;
                }
            }
            Kind::Flood | Kind::Nested | Kind::Transforms => {
                for (i, (block, frames)) in blocks.iter().enumerate() {
                    let pending = pool.pending(i);
                    if pool.conns[i].closed || pending >= TOP_UP {
                        continue; // a writable event writes the rest
                    }
                    for _ in 0..(TOP_UP - pending).div_ceil(block.len().max(1)) {
                        pool.queue_raw(i, block);
                        frames_queued += frames;
                    }
                    pool.flush_one(i)?;
                }
            }
        }
        pool.poll(wait, &mut on_frame)?;
        if let Some(helpers) = helpers.as_mut() {
            if now >= next_keepalive {
                next_keepalive += KEEPALIVE;
                for i in 0..helpers.conns.len() {
                    helpers.queue(i, br#"{"system":"ping"}"#);
                }
                helpers.flush()?;
            }
            helpers.poll(Duration::ZERO, |_, _, _| {})?;
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            let what = format!(
                "attack {}: {} attackers, {} cut off, {} reconnects",
                kind.name(),
                n,
                pool.closes,
                reconnects
            );
            progress(started, load.seconds, &what);
        }
    }
    report.frames_queued += frames_queued;
    report.reconnects = reconnects;
    report.reconnect_failures = reconnect_failures;
    report.bursts_skipped = bursts_skipped;
    report.cut_off = pool.closes;
    report.bytes_written = pool.conns.iter().map(|c| c.bytes_out).sum();
    report.bytes_received = pool.bytes_in();
    Ok(report)
}

/// Queues what attacker `i` sends on connecting (its `generation`-th connection), marks
/// whether it reads, and returns the frames queued.
fn greet(pool: &mut Pool, kind: Kind, i: usize, generation: u64) -> u64 {
    pool.conns[i].reading = kind.reads();
    let user = format!("a{i}g{generation}");
    match kind {
        Kind::History => {
            pool.queue(i, &login(&user));
            for room in HISTORY_ROOMS {
                pool.queue(i, &join(room));
            }
            3
        }
        // Never logged in: its bursts are all it sends.
        Kind::Rooms => 0,
        Kind::Flood | Kind::Nested | Kind::Transforms => {
            pool.queue(i, &login(&user));
            pool.queue(i, br#"{"room":"lobby","type":"leave"}"#);
            pool.queue(i, &join(&own_room(i)));
            3
        }
    }
}

/// Each flooding attacker has a room of its own: what it pays for is its own echo, so the
/// figure is the cost of the messages, not of a fan-out the attackers arranged.
fn own_room(i: usize) -> String {
    format!("atk{i}")
}

/// Attacker `i`'s attack frames, framed: a burst of rooms requests, or a block of about
/// [`BLOCK`] bytes of flood, nested or transform frames; with the number of frames in it.
fn attack_block(load: &AttackLoad, i: usize) -> (Vec<u8>, u64) {
    let room = own_room(i);
    let body = match load.kind {
        Kind::History => return (Vec::new(), 0),
        Kind::Rooms => br#"{"system":"rooms"}"#.to_vec(),
        Kind::Flood => {
            let data = "x".repeat(load.payload);
            json!({"room": room, "type": "msg", "data": data})
                .to_string()
                .into_bytes()
        }
        Kind::Nested => nested_msg(&room, load.depth, load.payload),
        Kind::Transforms => json!({"room": room, "type": "transform", "data": {"pos": 1}})
            .to_string()
            .into_bytes(),
    };
    let count = match load.kind {
        Kind::Rooms => ROOMS_BURST,
        _ => (BLOCK / (body.len() + 4)).max(1),
    };
    let mut block = Vec::with_capacity(count * (body.len() + 4));
    for _ in 0..count {
        block.extend_from_slice(&(body.len() as u32).to_be_bytes());
        block.extend_from_slice(&body);
    }
    (block, count as u64)
}

/// A msg of exactly `size` bytes (when the envelope and brackets fit) whose data is `depth`
/// nested arrays around a run of `0,0,...,0`: the parser descends every level and visits every
/// element, twice (the envelope, then the portable-JSON check).
fn nested_msg(room: &str, depth: usize, size: usize) -> Vec<u8> {
    let mut body = format!(r#"{{"room":"{room}","type":"msg","data":"#).into_bytes();
    body.extend(std::iter::repeat_n(b'[', depth));
    let closing = depth + 1;
    let room_for = size.saturating_sub(body.len() + closing).max(1);
    // `zeros` zeros take 2 x zeros - 1 bytes; an even gap is closed with one space.
    let zeros = room_for.div_ceil(2);
    for k in 0..zeros {
        if k > 0 {
            body.push(b',');
        }
        body.push(b'0');
    }
    if 2 * zeros - 1 < room_for {
        body.push(b' ');
    }
    body.extend(std::iter::repeat_n(b']', depth));
    body.push(b'}');
    body
}

/// Lowers this thread's priority to `nice` with `renice` (std has no setpriority; for a
/// thread id it applies to that thread only). Returns the nice value the thread ends up
/// with, or `None` if it cannot be read.
fn lower_own_priority(nice: i32) -> Option<i64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    let tid = link.file_name()?.to_str()?.to_owned();
    let renice = Command::new("renice")
        .args(["-n", &nice.to_string(), "-p", &tid])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !renice.is_ok_and(|status| status.success()) {
        eprintln!("roomcast-bench: could not renice the attack thread; bystander latency then includes the generator's own delays");
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the ")" of the command name: nice is the 19th field, the 17th here.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(16)?
        .parse()
        .ok()
}

/// What the two bystanders saw.
struct Calm {
    sent: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    cut_off: u64,
    /// Round trip of each bystander's own msgs (send to own echo).
    latency: Summary,
}

/// Two clients in [`CALM_ROOM`], each sending `rate` msgs per second from the start signal
/// until the deadline it carries, and checking both streams. Says `ready` once set up.
fn bystanders(
    addr: SocketAddr,
    rate: f64,
    ready: mpsc::Sender<()>,
    start: mpsc::Receiver<Instant>,
) -> io::Result<Calm> {
    const N: usize = 2;
    let mut pool = Pool::connect(addr, N)?;
    set_up_with(&mut pool, |pool, i| {
        pool.queue(i, &login(&format!("bystander{i}")));
        pool.queue(i, br#"{"room":"lobby","type":"leave"}"#);
        pool.queue(i, &join(CALM_ROOM));
    })?;
    pool.tolerate_closes();
    if ready.send(()).is_err() {
        return Err(io::Error::other("the attack ended before it started"));
    }
    let Ok(until) = start.recv() else {
        // The attack's set-up failed; it reports why.
        return Err(io::Error::other("no attack"));
    };
    let clock = Instant::now();
    let started = Instant::now();
    let mut sent = [0u64; N];
    let mut seqs: Vec<Sequences> = (0..N).map(|_| Sequences::new(N)).collect();
    let mut latency = Samples::default();
    let mut delivered = 0u64;
    let chat = memmem::Finder::new(br#"{"s":"#);
    let mut drained_at = None;
    loop {
        let now = Instant::now();
        if now < until {
            let elapsed = now.duration_since(started).as_secs_f64();
            for (p, sent) in sent.iter_mut().enumerate() {
                // Staggered phases: the two never send in the same instant.
                let due = (elapsed * rate + p as f64 / N as f64) as u64;
                while *sent < due && !pool.conns[p].closed {
                    let t = clock.elapsed().as_micros() as u64;
                    let body = format!(
                        r#"{{"room":"{CALM_ROOM}","type":"msg","data":{{"s":{},"p":{p},"t":{t}}}}}"#,
                        *sent
                    );
                    pool.queue(p, body.as_bytes());
                    *sent += 1;
                }
            }
            pool.flush()?;
        } else {
            let expected = sent.iter().sum::<u64>() * N as u64;
            if drain_done(&mut drained_at, now, delivered, expected) {
                break;
            }
        }
        pool.poll(Duration::from_millis(1), |i, body, now| {
            let at = clock_micros(clock, now);
            for start in chat.find_iter(body) {
                let rest = &body[start + 5..];
                let (Some(seq), Some(p), Some(t)) = (
                    leading_u64(rest),
                    field_u64(rest, b"\"p\":"),
                    field_u64(rest, b"\"t\":"),
                ) else {
                    continue;
                };
                delivered += 1;
                seqs[i].see(p as usize, seq);
                if p as usize == i {
                    latency.push(at.saturating_sub(t));
                }
            }
        })?;
        if pool.conns.iter().all(|c| c.closed) {
            break;
        }
    }
    let mut lost = 0;
    let mut duplicated = 0;
    for seq in &mut seqs {
        seq.finish(&sent);
        lost += seq.lost;
        duplicated += seq.duplicated;
    }
    let summary = latency.summary();
    Ok(Calm {
        sent: sent.iter().sum(),
        delivered,
        lost,
        duplicated,
        cut_off: pool.closes,
        latency: summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_msgs_have_the_size_asked_for_and_the_server_takes_them() {
        use roomcast::protocol::{decode_request, Request, RoomKind};
        for size in [65536, 65535, 4000] {
            let body = nested_msg("atk7", 127, size);
            assert_eq!(body.len(), size);
            // The server's own decoder, portable-JSON check included: a msg it forwards.
            let request = decode_request(&body).expect("a valid msg");
            let Request::Room { kind, data, .. } = request else {
                panic!("not a room message");
            };
            assert_eq!(kind, RoomKind::Msg);
            let data = data.expect("data present").get();
            assert!(data.starts_with(&"[".repeat(127)) && !data.starts_with(&"[".repeat(128)));
        }
    }

    #[test]
    fn room_names_are_as_long_as_allowed() {
        assert_eq!(long_room_name(42).chars().count(), ROOM_NAME_CHARS);
        assert!(long_room_name(1999).starts_with("room01999-"));
    }
}
