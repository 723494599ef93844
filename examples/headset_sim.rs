//! Simulated VR headsets: each logs in, joins a room and streams a pose moving on a circle,
//! with its two hands (protocol.md §11; `--no-hands` sends the head only), while counting the
//! transform events the server sends back.
//!
//! ```text
//! cargo run --release --example headset_sim -- --headsets 50 --hz 90 --rooms 5 --seconds 10
//! ```
//!
//! Headset `K` logs in as `headsetK` and joins `roomK%R` (it stays in the lobby too). Each
//! headset has a reader thread (a client that stops reading is cut off by the server); a few
//! writer threads send every headset's pose at `--hz` on a fixed schedule, skipping ticks they
//! missed rather than bursting. A summary is printed every second and at the end; the run
//! stops by itself after `--seconds`.
//!
//! With every headset moving, each one should receive about `members of its room × fps`
//! transform events per second (the server coalesces poses to `--fps`, default 20).

use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clap::Parser;
use roomcast::client::{Client, ClientError, ClientWriter};
use roomcast::protocol::{Label, Pose, Rotation, Transform, Vec3};
use serde::Deserialize;
use serde_json::json;

/// Writer threads at most: each serves every W-th headset.
const MAX_WRITERS: usize = 4;
/// How long to keep reading after the last pose, for the server's last ticks.
const GRACE: Duration = Duration::from_millis(300);
/// How long connecting and logging in may take per headset.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// A write blocked this long means the server stopped reading; that headset stops sending,
/// so the run still ends on time.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Simulated headsets streaming poses to a roomcast server.
#[derive(Parser, Debug)]
#[command(
    name = "headset_sim",
    about = "Simulates VR headsets: each logs in, joins a room and streams a pose at --hz; prints what it sends and receives."
)]
struct Args {
    /// Number of headsets (connections).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    headsets: u32,
    /// Poses per second per headset.
    #[arg(long, default_value_t = 90.0)]
    hz: f64,
    /// Number of rooms; headset K joins room K % ROOMS.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    rooms: u32,
    /// How long to stream, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:42069")]
    addr: String,
    /// Send the head only, without the two hands.
    #[arg(long)]
    no_hands: bool,
}

/// Shared by every thread; the main thread prints differences of these.
#[derive(Default)]
struct Counters {
    poses_sent: AtomicU64,
    transform_events: AtomicU64,
    frames: AtomicU64,
    errors: AtomicU64,
    disconnects: AtomicU64,
    stalled: AtomicU64,
}

/// One reading of the counters.
#[derive(Clone, Copy, Default)]
struct Snapshot {
    poses_sent: u64,
    transform_events: u64,
    frames: u64,
    errors: u64,
    disconnects: u64,
    stalled: u64,
}

impl Counters {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            poses_sent: self.poses_sent.load(Ordering::Relaxed),
            transform_events: self.transform_events.load(Ordering::Relaxed),
            frames: self.frames.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
        }
    }
}

/// What a writer needs to stream one headset's poses.
struct Headset {
    index: usize,
    room: String,
    /// Shares the client's socket and its send lock, so the client's own keep-alive pings
    /// (sent by the reader while it waits) never cut into a pose.
    writer: ClientWriter,
    alive: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.hz > 0.0 && args.hz <= 1000.0) {
        eprintln!(
            "headset_sim: --hz must be above 0 and at most 1000, got {}",
            args.hz
        );
        return ExitCode::from(2);
    }
    if !(args.seconds > 0.0 && args.seconds <= 86_400.0) {
        eprintln!(
            "headset_sim: --seconds must be above 0 and at most 86400, got {}",
            args.seconds
        );
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("headset_sim: {message}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let count = args.headsets as usize;
    let rooms = args.rooms as usize;
    let counters = Arc::new(Counters::default());
    let stopping = Arc::new(AtomicBool::new(false));

    println!(
        "connecting {count} headsets to {} in {} room(s)...",
        args.addr,
        rooms.min(count)
    );
    let mut headsets = Vec::with_capacity(count);
    let mut readers = Vec::with_capacity(count);
    // Clones to cut the readers loose at the end.
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(count);
    for index in 0..count {
        let room = format!("room{}", index % rooms);
        let (client, writer, stream) = connect(&args.addr, index, &room)?;
        sockets.push(stream);
        let reader = spawn_reader(client, Arc::clone(&counters), Arc::clone(&stopping))
            .map_err(|err| format!("cannot start a reader thread: {err}"))?;
        readers.push(reader);
        headsets.push(Headset {
            index,
            room,
            writer,
            alive: true,
        });
    }

    let writers = count.min(MAX_WRITERS);
    let mut groups: Vec<Vec<Headset>> = (0..writers).map(|_| Vec::new()).collect();
    for headset in headsets {
        groups[headset.index % writers].push(headset);
    }
    println!(
        "streaming at {} Hz for {} s ({writers} writer thread(s))",
        args.hz, args.seconds
    );
    let start = Instant::now();
    let duration = Duration::from_secs_f64(args.seconds);
    let period = Duration::from_secs_f64(1.0 / args.hz);
    let mut writer_threads = Vec::with_capacity(writers);
    let hands = !args.no_hands;
    for group in groups {
        let counters = Arc::clone(&counters);
        let total = count;
        let handle = thread::Builder::new()
            .name("writer".into())
            .spawn(move || write_poses(group, total, start, duration, period, hands, &counters))
            .map_err(|err| format!("cannot start a writer thread: {err}"))?;
        writer_threads.push(handle);
    }

    // One summary line per second while the writers run.
    let mut last = Snapshot::default();
    let mut second = 1u64;
    loop {
        let due = start + Duration::from_secs(second);
        if due > start + duration {
            break;
        }
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let now = counters.snapshot();
        print_line(&format!("[{second:>4} s]"), &now, &last, 1.0, count);
        last = now;
        second += 1;
    }
    for handle in writer_threads {
        let _ = handle.join();
    }
    let streamed = start.elapsed();
    thread::sleep(GRACE);
    stopping.store(true, Ordering::SeqCst);
    for socket in &sockets {
        let _ = socket.shutdown(Shutdown::Both);
    }
    for reader in readers {
        let _ = reader.join();
    }

    let total = counters.snapshot();
    let secs = streamed.as_secs_f64();
    println!("--- done: {count} headsets, {rooms} room(s), {secs:.2} s of streaming ---");
    print_line("[total ]", &total, &Snapshot::default(), 1.0, count);
    print_line("[  avg ]", &total, &Snapshot::default(), secs, count);
    let per_room = count.div_ceil(rooms);
    println!(
        "per headset: {:.1} poses/s sent, {:.1} transform events/s received \
         (a room of {per_room} moving headsets at the server's --fps F gives about {per_room} x F)",
        total.poses_sent as f64 / secs / count as f64,
        total.transform_events as f64 / secs / count as f64,
    );
    if total.disconnects > 0 || total.stalled > 0 {
        return Err(format!(
            "{} headset(s) were disconnected by the server, {} stopped because it did not read",
            total.disconnects, total.stalled
        ));
    }
    Ok(())
}

/// Connects headset `index`, logs in and joins `room`; returns the client for the reader, a
/// writer for the poses, and a socket clone to shut down at the end.
fn connect(
    addr: &str,
    index: usize,
    room: &str,
) -> Result<(Client, ClientWriter, TcpStream), String> {
    let user = format!("headset{index}");
    let mut client =
        Client::connect(addr).map_err(|err| format!("{user}: cannot connect to {addr}: {err}"))?;
    let setup = |err: std::io::Error| format!("{user}: socket set-up failed: {err}");
    client
        .set_read_timeout(Some(LOGIN_TIMEOUT))
        .map_err(setup)?;
    client.login(&user, "").map_err(|err| match err {
        ClientError::Refused { code, msg, .. } => format!("{user}: login refused: {code} {msg}"),
        other => format!("{user}: login failed: {other}"),
    })?;
    if room != "lobby" {
        client
            .join(room)
            .map_err(|err| format!("{user}: cannot join {room}: {err}"))?;
    }
    client.set_read_timeout(None).map_err(setup)?;
    let stream = client.stream().try_clone().map_err(setup)?;
    stream
        .set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(setup)?;
    let writer = client.writer();
    Ok((client, writer, stream))
}

/// Counts what one headset receives until its socket is shut down.
///
/// Frames are decoded into borrowed, mostly skipped fields rather than a `serde_json::Value`:
/// a load generator should spend its CPU sending, not building trees it throws away.
fn spawn_reader(
    mut client: Client,
    counters: Arc<Counters>,
    stopping: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || loop {
            match client.recv_body() {
                Ok(body) => count_frame(&body, &counters),
                Err(err) => {
                    if !stopping.load(Ordering::SeqCst) {
                        counters.disconnects.fetch_add(1, Ordering::Relaxed);
                        eprintln!("a headset lost its connection: {err}");
                    }
                    return;
                }
            }
        })
}

/// The parts of a server frame the simulator counts.
#[derive(Deserialize)]
struct ServerFrame<'a> {
    #[serde(borrow)]
    info: &'a str,
    #[serde(default, borrow)]
    payload: Vec<EventKind<'a>>,
    #[serde(default, borrow)]
    response: Option<Response<'a>>,
}

#[derive(Deserialize)]
struct EventKind<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
}

#[derive(Deserialize)]
struct Response<'a> {
    code: u16,
    #[serde(borrow)]
    msg: std::borrow::Cow<'a, str>,
}

fn count_frame(body: &[u8], counters: &Counters) {
    let Ok(frame) = serde_json::from_slice::<ServerFrame>(body) else {
        return; // Not a frame this simulator understands; the protocol allows new shapes.
    };
    match (frame.info, frame.response) {
        ("user", _) => {
            counters.frames.fetch_add(1, Ordering::Relaxed);
            let poses = frame
                .payload
                .iter()
                .filter(|e| e.kind == "transform")
                .count();
            counters
                .transform_events
                .fetch_add(poses as u64, Ordering::Relaxed);
        }
        ("error", Some(response)) => {
            let before = counters.errors.fetch_add(1, Ordering::Relaxed);
            if before < 5 {
                eprintln!("server error: {} {}", response.code, response.msg);
            }
        }
        _ => {}
    }
}

/// Sends every headset of `group` a pose per period until `duration` has passed.
fn write_poses(
    mut group: Vec<Headset>,
    total: usize,
    start: Instant,
    duration: Duration,
    period: Duration,
    hands: bool,
    counters: &Counters,
) {
    let mut tick: u32 = 0;
    loop {
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        if elapsed >= duration {
            return;
        }
        let t = elapsed.as_secs_f64();
        for headset in group.iter_mut().filter(|h| h.alive) {
            let head = circle_pose(headset.index, total, t);
            let data = match hands {
                true => with_hands(head),
                false => Transform::head(head),
            };
            let body = serde_json::to_string(&data).map(|data| {
                format!(
                    r#"{{"room":{},"type":"transform","data":{data}}}"#,
                    json!(headset.room)
                )
            });
            let Ok(body) = body else {
                continue; // plain numbers and names always serialize
            };
            match headset.writer.send_body(body.as_bytes()) {
                Ok(()) => {
                    counters.poses_sent.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    // A timed-out write may have sent part of a frame: this socket is done.
                    eprintln!("headset{}: stopped sending: {err}", headset.index);
                    counters.stalled.fetch_add(1, Ordering::Relaxed);
                    headset.alive = false;
                }
            }
        }
        // Next grid point after now: a late writer skips ticks instead of bursting them.
        let now = Instant::now().duration_since(start);
        while period * tick <= now {
            tick = tick.saturating_add(1);
        }
        thread::sleep((period * tick).saturating_sub(Instant::now().duration_since(start)));
    }
}

/// Headset `index` of `total` walks a 1 m circle at head height, one lap per 4 s, facing
/// along the circle; headsets are spread evenly around it.
fn circle_pose(index: usize, total: usize, t: f64) -> Pose {
    use std::f64::consts::TAU;
    let angle = TAU * (index as f64 / total as f64) + TAU * t / 4.0;
    let yaw = -angle;
    Pose {
        pos: Vec3 {
            x: angle.cos(),
            y: 1.6,
            z: angle.sin(),
        },
        rot: Rotation {
            x: 0.0,
            y: (yaw / 2.0).sin(),
            z: 0.0,
            w: Some((yaw / 2.0).cos()),
        },
    }
}

/// The head and two hands held beside it, 0.2 m to each side, 0.4 m below and in front.
fn with_hands(head: Pose) -> Transform {
    let hand = |name: &str, side: f64| {
        // Both names are literals within the part-name rule.
        let name = Label::parse(name).expect("a valid part name");
        let pose = Pose {
            pos: Vec3 {
                x: head.pos.x + side,
                y: head.pos.y - 0.4,
                z: head.pos.z + 0.3,
            },
            rot: head.rot,
        };
        (name, Some(pose))
    };
    Transform {
        head,
        parts: vec![hand("left_hand", -0.2), hand("right_hand", 0.2)],
    }
}

/// One summary line: `now - before`, divided by `secs` (1 for raw counts).
fn print_line(label: &str, now: &Snapshot, before: &Snapshot, secs: f64, headsets: usize) {
    let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
    println!(
        "{label} poses sent {:>9.0}  transform events recv {:>10.0}  frames recv {:>8.0}  \
         (per headset: {:.0} events)  errors {}  disconnects {}  stalled {}",
        rate(now.poses_sent, before.poses_sent),
        rate(now.transform_events, before.transform_events),
        rate(now.frames, before.frames),
        rate(now.transform_events, before.transform_events) / headsets as f64,
        now.errors,
        now.disconnects,
        now.stalled,
    );
}
