//! The three loads: chat (fan-out throughput and latency), vr (headsets streaming poses with a
//! chat side stream) and idle (many logged-in connections doing nothing).
//!
//! Payloads are scanned, not parsed: a msg's data is `{"s":SEQ,"p":PUB,"t":MICROS,...}` and is
//! forwarded byte for byte, so a `memmem` for `{"s":` finds each event in a batch frame.

use std::io::{self, Write as _};
use std::time::{Duration, Instant};

use memchr::memmem;
use serde_json::{json, Value};

use crate::pool::Pool;
use crate::stats::{leading_f64, leading_u64, Samples, Sequences};
use crate::target::Target;

/// Time allowed after the load stops for in-flight events to arrive.
pub const DRAIN: Duration = Duration::from_secs(2);

pub struct Outcome {
    /// Named figures, in the order they are printed.
    pub figures: Vec<(&'static str, Value)>,
}

/// Which connections have seen their set-up pong, and the first refusal if any.
struct SetUp {
    pong: memmem::Finder<'static>,
    error: memmem::Finder<'static>,
    ready: Vec<bool>,
    remaining: usize,
    refused: Option<String>,
}

impl SetUp {
    fn on_frame(&mut self, i: usize, body: &[u8]) {
        if self.refused.is_none() && self.error.find(body).is_some() {
            self.refused = Some(String::from_utf8_lossy(body).into_owned());
        }
        if !self.ready[i] && self.pong.find(body).is_some() {
            self.ready[i] = true;
            self.remaining -= 1;
        }
    }
}

/// Logs every connection in, takes it out of the lobby (so logins do not fan out to everyone)
/// and into its room, then waits for a pong on each: replies come after what their messages
/// caused, so a pong means the set-up is done.
fn set_up(pool: &mut Pool, room_of: impl Fn(usize) -> Option<String>) -> io::Result<Duration> {
    set_up_with(pool, |pool, i| {
        pool.queue(i, &login(&format!("u{i}")));
        pool.queue(i, br#"{"room":"lobby","type":"leave"}"#);
        if let Some(room) = room_of(i) {
            pool.queue(i, &join(&room));
        }
    })
}

/// A login frame's body.
pub fn login(user: &str) -> Vec<u8> {
    json!({"system": "login", "options": {"user": user, "pass": "bench"}})
        .to_string()
        .into_bytes()
}

/// A join frame's body.
pub fn join(room: &str) -> Vec<u8> {
    json!({"room": room, "type": "join"})
        .to_string()
        .into_bytes()
}

/// Queues `script(pool, i)` on every connection, then a ping, and waits for a pong on each;
/// any error reply fails the set-up.
pub fn set_up_with(
    pool: &mut Pool,
    mut script: impl FnMut(&mut Pool, usize),
) -> io::Result<Duration> {
    let started = Instant::now();
    let mut state = SetUp {
        pong: memmem::Finder::new(br#""msg":"pong""#),
        error: memmem::Finder::new(br#""info":"error""#),
        ready: vec![false; pool.conns.len()],
        remaining: pool.conns.len(),
        refused: None,
    };
    for i in 0..pool.conns.len() {
        script(pool, i);
        pool.queue(i, br#"{"system":"ping"}"#);
        if i % 256 == 255 {
            pool.flush()?;
            // Let the server accept before its listen backlog overflows. Replies that arrive
            // meanwhile count too.
            pool.poll(Duration::from_millis(1), |i, body, _| {
                state.on_frame(i, body)
            })?;
        }
    }
    pool.flush()?;
    let limit = std::env::var("ROOMCAST_BENCH_SETUP_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let deadline = Instant::now() + Duration::from_secs(limit);
    let mut next_progress = Instant::now() + Duration::from_secs(1);
    loop {
        if let Some(body) = state.refused.take() {
            return Err(io::Error::other(format!("set-up refused: {body}")));
        }
        if state.remaining == 0 {
            return Ok(started.elapsed());
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            let what = format!("set-up: {} connections not ready", state.remaining);
            progress(started, limit as f64, &what);
        }
        if Instant::now() > deadline {
            let stuck = state.ready.iter().position(|r| !r).unwrap_or(0);
            return Err(io::Error::other(format!(
                "{} connections not set up in {limit} s; e.g. #{stuck}: {}",
                state.remaining,
                pool.describe(stuck)
            )));
        }
        pool.poll(Duration::from_millis(50), |i, body, _| {
            state.on_frame(i, body)
        })?;
    }
}

pub fn progress(started: Instant, seconds: f64, what: &str) {
    eprint!(
        "\r[{:5.1}/{seconds:.0} s] {what}        ",
        started.elapsed().as_secs_f64()
    );
}

pub struct ChatLoad {
    pub rooms: usize,
    pub members: usize,
    pub publishers: usize,
    pub payload: usize,
    /// msgs per second per publisher; `None` means saturation with `window` in flight.
    pub rate: Option<f64>,
    pub window: u64,
    pub seconds: f64,
}

pub fn chat(target: &Target, load: &ChatLoad) -> io::Result<Outcome> {
    let ChatLoad {
        rooms,
        members,
        publishers,
        ..
    } = *load;
    let mut pool = Pool::connect_spread(&target.addrs(), rooms * members)?;
    let room_name = |i: usize| format!("chat{}", i / members);
    set_up(&mut pool, |i| Some(room_name(i)))?;

    let pad = "x".repeat(load.payload.saturating_sub(40));
    let clock = Instant::now();
    let publisher_ids: Vec<usize> = (0..rooms)
        .flat_map(|r| (0..publishers).map(move |p| r * members + p))
        .collect();
    let mut sent = vec![0u64; publisher_ids.len()];
    let mut echoed = vec![0u64; publisher_ids.len()];
    let mut seqs: Vec<Sequences> = (0..rooms * members)
        .map(|_| Sequences::new(publishers))
        .collect();
    let mut latency = Samples::default();
    let mut delivered = 0u64;
    let finder = memmem::Finder::new(br#"{"s":"#);

    let cpu_before = target.cpu_seconds();
    let redis_before = target.redis_cpu_seconds();
    let started = Instant::now();
    let load_until = started + Duration::from_secs_f64(load.seconds);
    let mut next_progress = started + Duration::from_secs(1);
    let mut drained_at = None;
    loop {
        let now = Instant::now();
        if now < load_until {
            for (k, &conn) in publisher_ids.iter().enumerate() {
                let due = match load.rate {
                    // Publishers start at staggered phases: independent senders are not
                    // synchronised, and a lock-step schedule would measure its own bursts.
                    Some(rate) => {
                        let phase = k as f64 / publisher_ids.len() as f64;
                        (now.duration_since(started).as_secs_f64() * rate + phase) as u64
                    }
                    None => echoed[k] + load.window,
                };
                while sent[k] < due {
                    let t = clock.elapsed().as_micros() as u64;
                    let body = format!(
                        r#"{{"room":"{}","type":"msg","data":{{"s":{},"p":{},"t":{t},"x":"{pad}"}}}}"#,
                        room_name(conn),
                        sent[k],
                        k % publishers
                    );
                    pool.queue(conn, body.as_bytes());
                    sent[k] += 1;
                }
            }
            pool.flush()?;
        } else {
            let expected = sent.iter().sum::<u64>() * members as u64;
            if drain_done(&mut drained_at, now, delivered, expected) {
                break;
            }
        }
        pool.poll(Duration::from_millis(1), |i, body, now| {
            let room = i / members;
            let at = clock_micros(clock, now);
            for start in finder.find_iter(body) {
                let rest = &body[start + 5..];
                let Some(seq) = leading_u64(rest) else {
                    continue;
                };
                let Some(p) = field_u64(rest, b"\"p\":") else {
                    continue;
                };
                let Some(t) = field_u64(rest, b"\"t\":") else {
                    continue;
                };
                delivered += 1;
                seqs[i].see(p as usize, seq);
                latency.push(at.saturating_sub(t));
                if i == room * members + p as usize {
                    echoed[room * publishers + p as usize] += 1;
                }
            }
        })?;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            let rate = delivered as f64 / started.elapsed().as_secs_f64();
            progress(
                started,
                load.seconds,
                &format!("{:.0} delivered ev/s", rate),
            );
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_delta(target, cpu_before);
    eprintln!();
    let mut lost = 0;
    let mut duplicated = 0;
    for (i, seq) in seqs.iter_mut().enumerate() {
        let room = i / members;
        seq.finish(&sent[room * publishers..(room + 1) * publishers]);
        lost += seq.lost;
        duplicated += seq.duplicated;
    }
    let offered = sent.iter().sum::<u64>() * members as u64;
    let summary = latency.summary();
    let mut figures = vec![
        ("offered_events_per_s", json!(offered as f64 / load.seconds)),
        ("delivered_events_per_s", json!(delivered as f64 / elapsed)),
        ("delivered_events", json!(delivered)),
        ("lost", json!(lost)),
        ("duplicated", json!(duplicated)),
        ("latency_ms", json!(summary)),
    ];
    if let Some(cpu) = cpu {
        figures.push(("server_cpu_s", json!(cpu)));
        figures.push(("events_per_server_cpu_s", json!(delivered as f64 / cpu)));
        // A cluster's CPU is every node's and Redis's: Redis's share apart.
        let redis = target
            .redis_cpu_seconds()
            .zip(redis_before)
            .map(|(a, b)| a - b);
        if let Some(redis) = redis {
            figures.push(("redis_cpu_s", json!(redis)));
        }
        figures.push((
            "server_cpu_us_per_event",
            json!(cpu * 1e6 / delivered.max(1) as f64),
        ));
    }
    Ok(Outcome { figures })
}

/// Eight points on a unit circle, already spelled, so pose encoding does no float formatting.
const CIRCLE: [(&str, &str); 8] = [
    ("0.0", "1.0"),
    ("0.7071", "0.7071"),
    ("1.0", "0.0"),
    ("0.7071", "-0.7071"),
    ("0.0", "-1.0"),
    ("-0.7071", "-0.7071"),
    ("-1.0", "0.0"),
    ("-0.7071", "0.7071"),
];

pub struct VrLoad {
    pub headsets: usize,
    pub room_size: usize,
    pub hz: f64,
    pub fps: f64,
    pub chat_rate: f64,
    pub seconds: f64,
    /// Tracked parts per headset beside the head.
    pub parts: usize,
    /// The server's `--interest-nearest` (0: off); reported with the figures.
    pub interest_nearest: usize,
    /// The server's `--interest-radius` (0: off); reported with the figures.
    pub interest_radius: f64,
}

/// Metres between neighbours on a room's square of headsets.
const SPACING: f64 = 2.0;
/// Radius of the small circle each headset walks around its spot.
const WALK: f64 = 0.5;

/// What a headset sends besides its send time, by its place in the room and the step of its
/// walk, spelled once before the load starts: `"x":..,"y":1.6,"z":..` for the head, then the
/// `,"parts":{...}` to append after its rotation (empty without parts).
struct Avatars {
    heads: Vec<[String; 8]>,
    parts: Vec<[String; 8]>,
}

impl Avatars {
    /// Headsets stand on a square, `SPACING` apart, each walking a circle of `WALK` around its
    /// spot; parts hang beside the head (left_hand, right_hand, then part2, part3, ...).
    fn new(room_size: usize, parts: usize) -> Avatars {
        let side = (room_size as f64).sqrt().ceil().max(1.0) as usize;
        let mut heads = Vec::with_capacity(room_size);
        let mut bodies = Vec::with_capacity(room_size);
        for k in 0..room_size {
            let (home_x, home_z) = ((k % side) as f64 * SPACING, (k / side) as f64 * SPACING);
            let step = |p: usize| {
                let (sin, cos) = CIRCLE[p];
                let (sin, cos): (f64, f64) =
                    (sin.parse().unwrap_or(0.0), cos.parse().unwrap_or(1.0));
                (home_x + WALK * cos, home_z + WALK * sin)
            };
            heads.push(std::array::from_fn(|p| {
                let (x, z) = step(p);
                format!(r#""x":{x:.3},"y":1.6,"z":{z:.3}"#)
            }));
            bodies.push(std::array::from_fn(|p| {
                if parts == 0 {
                    return String::new();
                }
                let (x, z) = step(p);
                let named: Vec<String> = (0..parts)
                    .map(|i| {
                        let name = match i {
                            0 => "left_hand".to_owned(),
                            1 => "right_hand".to_owned(),
                            _ => format!("part{i}"),
                        };
                        let side = if i % 2 == 0 { -0.2 } else { 0.2 };
                        format!(
                            r#""{name}":{{"pos":{{"x":{:.3},"y":1.2,"z":{:.3}}},"rot":{{"x":0,"y":{},"z":0,"w":1}}}}"#,
                            x + side,
                            z + 0.3,
                            CIRCLE[p].1
                        )
                    })
                    .collect();
                format!(r#","parts":{{{}}}"#, named.join(","))
            }));
        }
        Avatars {
            heads,
            parts: bodies,
        }
    }
}

pub fn vr(target: &Target, load: &VrLoad) -> io::Result<Outcome> {
    let VrLoad {
        headsets,
        room_size,
        ..
    } = *load;
    let rooms = headsets.div_ceil(room_size);
    let mut pool = Pool::connect_spread(&target.addrs(), headsets)?;
    // With several nodes, headset i is on node i % nodes: a pose crossed nodes when its
    // sender's node is not its receiver's.
    let nodes = target.addrs().len();
    let user = memmem::Finder::new(br#""user":"u"#);
    let mut age_same = Samples::default();
    let mut age_other = Samples::default();
    let room_name = |i: usize| format!("vr{}", i / room_size);
    set_up(&mut pool, |i| Some(room_name(i)))?;
    let avatars = Avatars::new(room_size, load.parts);

    let clock = Instant::now();
    let period = 1.0 / load.fps;
    let transform = memmem::Finder::new(br#""type":"transform""#);
    // The send time rides in the head's rot.x, the first rot of a tick frame.
    let rot_x = memmem::Finder::new(br#""rot":{"x":"#);
    let chat = memmem::Finder::new(br#"{"s":"#);
    let kind = memmem::Finder::new(br#""type":""#);
    let mut poses_sent = 0u64;
    let mut sent_per_headset = vec![0u64; headsets];
    let mut chat_sent = vec![0u64; rooms];
    let mut seqs: Vec<Sequences> = (0..headsets).map(|_| Sequences::new(1)).collect();
    let mut last_tick: Vec<Option<Instant>> = vec![None; headsets];
    let mut jitter = Samples::default();
    // The same intervals from the tick's own server time (the `time` of its events): what the
    // server did, without the load generator's read latency.
    let mut last_server_tick: Vec<Option<f64>> = vec![None; headsets];
    let mut server_jitter = Samples::default();
    let time_field = memmem::Finder::new(br#""time":"#);
    let mut age = Samples::default();
    let mut pose_events = 0u64;
    let mut chat_delivered = 0u64;

    let bytes_before = pool.bytes_in();
    let cpu_before = target.cpu_seconds();
    let started = Instant::now();
    let load_until = started + Duration::from_secs_f64(load.seconds);
    let mut next_progress = started + Duration::from_secs(1);
    let mut drained_at = None;
    loop {
        let now = Instant::now();
        let running = now < load_until;
        if running {
            let elapsed = now.duration_since(started).as_secs_f64();
            // Send time in whole microseconds rides in rot.x, for the pose age.
            let t_us = clock.elapsed().as_micros() as u64;
            for (i, sent) in sent_per_headset.iter_mut().enumerate() {
                // Headsets start at staggered phases, as real ones do.
                let phase = i as f64 / headsets as f64;
                let due = ((elapsed * load.hz) + phase) as u64;
                if *sent < due {
                    *sent = due;
                    let step = (due % CIRCLE.len() as u64) as usize;
                    let cos = CIRCLE[step].1;
                    let (room, place) = (i / room_size, i % room_size);
                    let (head, parts) = (&avatars.heads[place][step], &avatars.parts[place][step]);
                    pool.queue_with(i, |buf| {
                        let _ = write!(
                            buf,
                            r#"{{"room":"vr{room}","type":"transform","data":{{"pos":{{{head}}},"rot":{{"x":{t_us},"y":{cos},"z":0,"w":1}}{parts}}}}}"#
                        );
                    });
                    poses_sent += 1;
                }
            }
            for (room, sent) in chat_sent.iter_mut().enumerate() {
                let due = (elapsed * load.chat_rate) as u64;
                while *sent < due {
                    let t = clock.elapsed().as_micros() as u64;
                    let body = format!(
                        r#"{{"room":"vr{room}","type":"msg","data":{{"s":{},"p":0,"t":{t}}}}}"#,
                        *sent
                    );
                    pool.queue(room * room_size, body.as_bytes());
                    *sent += 1;
                }
            }
            pool.flush()?;
        } else {
            let expected_chat = (0..headsets).map(|i| chat_sent[i / room_size]).sum();
            if drain_done(&mut drained_at, now, chat_delivered, expected_chat) {
                break;
            }
        }
        pool.poll(Duration::from_micros(500), |i, body, now| {
            // Tick frames hold only transforms (and, with interest management, out_of_range);
            // anything else is the chat side stream.
            let first_type = kind.find(body).map(|at| &body[at + 8..]);
            let tick = first_type.is_some_and(|rest| {
                rest.starts_with(b"transform") || rest.starts_with(b"out_of_range")
            });
            if tick {
                pose_events += transform.find_iter(body).count() as u64;
                if running {
                    if let Some(previous) = last_tick[i] {
                        let interval = now.duration_since(previous).as_secs_f64();
                        jitter.push(((interval - period).abs() * 1e6) as u64);
                    }
                    last_tick[i] = Some(now);
                    let server_time = time_field
                        .find(body)
                        .and_then(|at| leading_f64(&body[at + 7..]));
                    if let Some(t) = server_time {
                        if let Some(previous) = last_server_tick[i] {
                            server_jitter.push((((t - previous) - period).abs() * 1e6) as u64);
                        }
                        last_server_tick[i] = Some(t);
                    }
                }
                // One age sample per frame: the first pose's send time.
                if let Some(start) = rot_x.find(body) {
                    if let Some(sent_us) = leading_f64(&body[start + 11..]) {
                        age.push(clock_micros(clock, now).saturating_sub(sent_us as u64));
                    }
                }
                if nodes > 1 {
                    // Every pose's age, by whether it crossed nodes.
                    let at = clock_micros(clock, now);
                    for event in user.find_iter(body) {
                        let rest = &body[event + 9..];
                        let (Some(sender), Some(start)) = (leading_u64(rest), rot_x.find(rest))
                        else {
                            continue;
                        };
                        let Some(sent_us) = leading_f64(&rest[start + 11..]) else {
                            continue;
                        };
                        let age = at.saturating_sub(sent_us as u64);
                        match sender as usize % nodes == i % nodes {
                            true => age_same.push(age),
                            false => age_other.push(age),
                        }
                    }
                }
                return;
            }
            for start in chat.find_iter(body) {
                if let Some(seq) = leading_u64(&body[start + 5..]) {
                    chat_delivered += 1;
                    seqs[i].see(0, seq);
                }
            }
        })?;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            let rate = pose_events as f64 / started.elapsed().as_secs_f64();
            progress(started, load.seconds, &format!("{rate:.0} pose events/s"));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_delta(target, cpu_before);
    eprintln!();
    let mut chat_lost = 0;
    for (i, seq) in seqs.iter_mut().enumerate() {
        seq.finish(&chat_sent[i / room_size..i / room_size + 1]);
        chat_lost += seq.lost + seq.duplicated;
    }
    let mut figures = vec![
        ("headsets", json!(headsets)),
        ("room_size", json!(room_size)),
        ("hz", json!(load.hz)),
        ("parts", json!(load.parts)),
        ("interest_nearest", json!(load.interest_nearest)),
        ("interest_radius", json!(load.interest_radius)),
        ("poses_sent_per_s", json!(poses_sent as f64 / load.seconds)),
        (
            "pose_events_delivered_per_s",
            json!(pose_events as f64 / elapsed),
        ),
        ("tick_jitter_ms", json!(jitter.summary())),
        ("server_tick_jitter_ms", json!(server_jitter.summary())),
        ("pose_age_ms", json!(age.summary())),
        ("nodes", json!(nodes)),
        ("pose_age_same_node_ms", json!(age_same.summary())),
        ("pose_age_other_node_ms", json!(age_other.summary())),
        (
            "bytes_out_per_s",
            json!((pool.bytes_in() - bytes_before) as f64 / elapsed),
        ),
        ("chat_delivered", json!(chat_delivered)),
        ("chat_lost", json!(chat_lost)),
    ];
    if let Some(cpu) = cpu {
        figures.push(("server_cpu_s", json!(cpu)));
        figures.push(("server_cpu_share", json!(cpu / elapsed)));
        figures.push((
            "server_cpu_us_per_pose_event",
            json!(cpu * 1e6 / pose_events.max(1) as f64),
        ));
    }
    Ok(Outcome { figures })
}

pub fn idle(target: &Target, connections: usize, seconds: f64) -> io::Result<Outcome> {
    let rss_before = target.rss();
    let mut pool = Pool::connect_spread(&target.addrs(), connections)?;
    let took = set_up(&mut pool, |_| None)?;
    let started = Instant::now();
    // Stay connected and idle; the server's housekeeping runs meanwhile.
    while started.elapsed() < Duration::from_secs_f64(seconds) {
        pool.poll(Duration::from_millis(100), |_, _, _| {})?;
        progress(started, seconds, &format!("{connections} idle connections"));
    }
    eprintln!();
    let mut figures = vec![
        ("connections", json!(connections)),
        (
            "connect_login_per_s",
            json!(connections as f64 / took.as_secs_f64()),
        ),
    ];
    if let (Some((before, _)), Some((after, peak))) = (rss_before, target.rss()) {
        figures.push(("server_rss_mib", json!(after as f64 / 1048576.0)));
        figures.push(("server_peak_rss_mib", json!(peak as f64 / 1048576.0)));
        figures.push((
            "rss_per_connection_bytes",
            json!((after.saturating_sub(before)) as f64 / connections as f64),
        ));
    }
    drop(pool);
    Ok(Outcome { figures })
}

/// After the load stops: done once every expected event arrived, or `DRAIN` after the first
/// call, whichever comes first (what is still missing then is counted as lost).
pub fn drain_done(
    drained_at: &mut Option<Instant>,
    now: Instant,
    delivered: u64,
    expected: u64,
) -> bool {
    delivered >= expected || now.duration_since(*drained_at.get_or_insert(now)) > DRAIN
}

pub fn clock_micros(clock: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(clock).as_micros() as u64
}

pub fn field_u64(bytes: &[u8], key: &[u8]) -> Option<u64> {
    let at = memmem::find(&bytes[..bytes.len().min(64)], key)?;
    leading_u64(&bytes[at + key.len()..])
}

pub fn cpu_delta(target: &Target, before: Option<f64>) -> Option<f64> {
    Some(target.cpu_seconds()? - before?)
}
