//! `roomcast-chat`: a small IRC-like terminal client for a roomcast server.
//!
//! ```text
//! roomcast-chat --user alice [--pass P] [--host 127.0.0.1] [--port 42069] [--room lobby]
//! ```
//!
//! Plain lines are chat messages to the current room; `/help` lists the commands, including
//! `/game ...` to play the server's tic-tac-toe by hand.
//!
//! # Threads
//! - The **reader** owns the [`Client`] after login and prints everything the server sends.
//! - A **stdin** thread turns typed lines into [`Input::Line`].
//! - The **Ctrl-C** handler sends [`Input::Interrupt`].
//! - The **main** thread takes [`Input`]s off one channel, writes requests to a clone of the
//!   socket, and decides when to exit. The reader reports the end of the connection on the
//!   same channel, so nothing blocks the main thread but that channel.
//!
//! # Exit status
//! 0 after `/quit`, end of input or Ctrl-C; 1 when connecting or logging in fails, or when the
//! server closes the connection (the reason is printed first).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, Write};
use std::net::{Shutdown, TcpStream};
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use roomcast::client::{Client, ClientError, Event, EventBatch, Reply, ServerMessage};
use roomcast::codec::{Frame, Mode};
use serde_json::{json, Value};

/// How long login may take before we give up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After `/quit`, how long we wait for the server to send what it still owes us.
const QUIT_DRAIN: Duration = Duration::from_secs(2);
/// At most one pose summary per room per this period.
const POSE_SUMMARY_PERIOD: Duration = Duration::from_secs(10);

const HELP: &str = "\
commands:
  TEXT              say TEXT in the current room (//TEXT sends a line starting with /)
  /join ROOM        join ROOM and make it the current room
  /leave ROOM       leave ROOM
  /room ROOM        make ROOM the current room
  /who              who is in the current room
  /rooms            every room and its member count
  /ping             ask the server for a pong
  /game start [tictactoe]   start a game in the current room (you take the first seat)
  /game join        take the free seat
  /game move N      play cell N: 0 1 2 / 3 4 5 / 6 7 8
  /game restart     new round of a finished game (marks swap)
  /quit             leave (so do end of input and Ctrl-C)
  /help             this text";

/// A terminal chat client for a roomcast server.
#[derive(Parser, Debug)]
#[command(name = "roomcast-chat", version, about, after_help = HELP)]
struct Args {
    /// User name: 1 to 32 of A-Z a-z 0-9 _ - .
    #[arg(long)]
    user: String,
    /// Password (any password is accepted today).
    #[arg(long, default_value = "")]
    pass: String,
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long, default_value_t = 42069)]
    port: u16,
    /// Room to start in (login always joins lobby; another room is joined as well).
    #[arg(long, default_value = "lobby")]
    room: String,
}

/// Everything the main thread waits for, from every source.
enum Input {
    /// A line typed on stdin, without its terminator.
    Line(String),
    /// Stdin ended.
    Eof,
    /// Ctrl-C or SIGTERM.
    Interrupt,
    /// The connection ended; the text says why.
    Closed(String),
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("roomcast-chat: {message}");
            ExitCode::from(1)
        }
    }
}

/// Connects and logs in (errors are startup failures), then runs the session.
fn run(args: &Args) -> Result<ExitCode, String> {
    let target = format!("{}:{}", args.host, args.port);
    let mut client = Client::connect((args.host.as_str(), args.port))
        .map_err(|err| format!("cannot connect to {target}: {err}"))?;
    client
        .set_read_timeout(Some(LOGIN_TIMEOUT))
        .map_err(|err| format!("cannot set up the socket: {err}"))?;
    let reply = client
        .login(&args.user, &args.pass)
        .map_err(|err| match err {
            ClientError::Refused { code, msg, .. } => format!("login refused: {code} {msg}"),
            ClientError::Io(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                format!("login failed: no answer from {target} within {LOGIN_TIMEOUT:?}")
            }
            other => format!("login failed: {other}"),
        })?;
    client
        .set_read_timeout(None)
        .map_err(|err| format!("cannot set up the socket: {err}"))?;
    let stream = client
        .stream()
        .try_clone()
        .map_err(|err| format!("cannot set up the socket: {err}"))?;

    let me = reply.detail["user"]
        .as_str()
        .unwrap_or(&args.user)
        .to_owned();
    let (tx, rx) = mpsc::channel();
    let ctrlc_tx = tx.clone();
    if let Err(err) = ctrlc::set_handler(move || {
        let _ = ctrlc_tx.send(Input::Interrupt);
    }) {
        eprintln!("roomcast-chat: Ctrl-C will not quit cleanly: {err}");
    }
    // Printed once Ctrl-C is handled and before any event, so scripts can wait for it.
    say(&format!(
        "* connected to {target} as {me}; /help lists the commands"
    ));

    let shared = Arc::new(Shared {
        me,
        rooms: Mutex::new(RoomState {
            current: "lobby".to_owned(),
            joined: BTreeSet::new(),
        }),
    });
    spawn_reader(client, Arc::clone(&shared), tx.clone())?;
    spawn_stdin(tx)?;

    let mut session = Session {
        writer: stream,
        shared,
        max_body: roomcast::Config::default().max_frame,
    };
    if args.room != "lobby" {
        session.join(&args.room);
    }
    Ok(session.run(&rx))
}

/// State the reader and the main thread both touch.
struct Shared {
    /// Our user name as the server spelled it.
    me: String,
    rooms: Mutex<RoomState>,
}

struct RoomState {
    /// Where plain lines go.
    current: String,
    /// Rooms we are in, as seen from join and leave events.
    joined: BTreeSet<String>,
}

impl Shared {
    fn rooms(&self) -> MutexGuard<'_, RoomState> {
        // A thread that panicked while holding the lock left plain data behind; keep using it.
        self.rooms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn current(&self) -> String {
        self.rooms().current.clone()
    }

    fn is_me(&self, user: &str) -> bool {
        user.eq_ignore_ascii_case(&self.me)
    }
}

/// The main thread: reads [`Input`]s, writes requests.
struct Session {
    writer: TcpStream,
    shared: Arc<Shared>,
    /// Bodies larger than this would make the server close the connection (413).
    max_body: usize,
}

/// What to do after a typed line.
enum Flow {
    Continue,
    Quit,
}

impl Session {
    fn run(&mut self, rx: &Receiver<Input>) -> ExitCode {
        loop {
            // The Ctrl-C handler holds a sender for the life of the process, so the channel
            // never disconnects; treat it as end of input anyway.
            let input = rx.recv().unwrap_or(Input::Eof);
            match input {
                Input::Line(line) => match self.line(&line) {
                    Flow::Continue => {}
                    Flow::Quit => return self.quit(rx),
                },
                Input::Eof | Input::Interrupt => return self.quit(rx),
                Input::Closed(why) => {
                    say(&format!("* disconnected: {why}"));
                    return ExitCode::from(1);
                }
            }
        }
    }

    /// Half-closes so the server disconnects us, prints what it still sends, then exits 0.
    fn quit(&mut self, rx: &Receiver<Input>) -> ExitCode {
        if self.writer.shutdown(Shutdown::Write).is_err() {
            return ExitCode::SUCCESS;
        }
        let deadline = Instant::now() + QUIT_DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Input::Line(_) | Input::Eof) => {}
                Ok(Input::Interrupt | Input::Closed(_)) => break,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let _ = self.writer.shutdown(Shutdown::Both);
        ExitCode::SUCCESS
    }

    fn line(&mut self, line: &str) -> Flow {
        if line.trim().is_empty() {
            return Flow::Continue;
        }
        if let Some(text) = line.strip_prefix("//") {
            let text = format!("/{text}");
            self.say_in_current(&text);
            return Flow::Continue;
        }
        if !line.starts_with('/') {
            self.say_in_current(line);
            return Flow::Continue;
        }
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        match (command, args.as_slice()) {
            ("/quit" | "/exit", _) => return Flow::Quit,
            ("/help", _) => say(HELP),
            ("/join", [_, ..]) => self.join(&rest(line)),
            ("/leave", [_, ..]) => {
                let room = rest(line);
                self.send(&json!({"room": room, "type": "leave"}));
            }
            ("/room", [_, ..]) => {
                let room = rest(line);
                let known = self.shared.rooms().joined.contains(&room);
                self.shared.rooms().current = room.clone();
                if known {
                    say(&format!("* current room: {}", clean(&room)));
                } else {
                    say(&format!(
                        "* current room: {} (you are not in it: /join {} first)",
                        clean(&room),
                        clean(&room)
                    ));
                }
            }
            ("/join" | "/leave" | "/room", []) => say(&format!("! usage: {command} ROOM")),
            ("/who" | "/list" | "/names", _) => {
                let room = self.shared.current();
                self.send(&json!({"room": room, "type": "list"}));
            }
            ("/rooms", _) => self.send(&json!({"system": "rooms"})),
            ("/ping", _) => self.send(&json!({"system": "ping"})),
            ("/game", args) => self.game(args),
            _ => say(&format!(
                "! unknown command {}; /help lists them",
                clean(command)
            )),
        }
        Flow::Continue
    }

    fn join(&mut self, room: &str) {
        self.shared.rooms().current = room.to_owned();
        self.send(&json!({"room": room, "type": "join"}));
    }

    fn say_in_current(&mut self, text: &str) {
        let room = self.shared.current();
        self.send(&json!({"room": room, "type": "msg", "data": text}));
    }

    fn game(&mut self, args: &[&str]) {
        let command = match args {
            ["start"] => json!({"start": "tictactoe"}),
            ["start", game] => json!({"start": game}),
            ["join"] => json!({"join": true}),
            ["restart"] => json!({"restart": true}),
            ["move", cell] => match cell.parse::<i64>() {
                Ok(cell) => json!({"move": cell}),
                Err(_) => {
                    say("! usage: /game move N, N a cell from 0 to 8");
                    return;
                }
            },
            _ => {
                say("! usage: /game start [tictactoe] | /game join | /game move N | /game restart");
                return;
            }
        };
        let room = self.shared.current();
        self.send(&json!({"room": room, "type": "game", "data": command}));
    }

    /// Writes one request; a failed write means the connection is going away, which the
    /// reader reports.
    fn send(&mut self, request: &Value) {
        let body = request.to_string().into_bytes();
        if body.len() > self.max_body {
            say(&format!(
                "! not sent: {} bytes is over the server's default limit of {} bytes",
                body.len(),
                self.max_body
            ));
            return;
        }
        let frame = Frame::from_body(&body);
        let [bytes, _] = frame.chunks(Mode::Framed);
        if let Err(err) = self.writer.write_all(&bytes) {
            say(&format!("! could not send: {err}"));
        }
    }
}

/// Everything after the command word, trimmed: room names may contain spaces.
fn rest(line: &str) -> String {
    line.split_once(char::is_whitespace)
        .map(|(_, rest)| rest.trim())
        .unwrap_or_default()
        .to_owned()
}

fn spawn_stdin(tx: Sender<Input>) -> Result<(), String> {
    thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            let mut stdin = stdin.lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match stdin.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&buf);
                        let text = text.trim_end_matches(['\n', '\r']).to_owned();
                        if tx.send(Input::Line(text)).is_err() {
                            return;
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => {
                        eprintln!("roomcast-chat: cannot read input: {err}");
                        break;
                    }
                }
            }
            let _ = tx.send(Input::Eof);
        })
        .map(drop)
        .map_err(|err| format!("cannot start the input thread: {err}"))
}

fn spawn_reader(client: Client, shared: Arc<Shared>, tx: Sender<Input>) -> Result<(), String> {
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || {
            let why = Reader {
                shared,
                poses: BTreeMap::new(),
                fatal: None,
            }
            .run(client);
            let _ = tx.send(Input::Closed(why));
        })
        .map(drop)
        .map_err(|err| format!("cannot start the reader thread: {err}"))
}

/// The reader thread: prints what the server sends until the connection ends.
struct Reader {
    shared: Arc<Shared>,
    /// Transform events counted per room since its last summary.
    poses: BTreeMap<String, PoseCount>,
    /// The last error that closes a connection (408, 413, 503 ...), to explain the EOF.
    fatal: Option<String>,
}

struct PoseCount {
    since: Instant,
    events: u64,
    users: BTreeSet<String>,
}

impl Reader {
    /// Returns why the connection ended.
    fn run(mut self, mut client: Client) -> String {
        loop {
            match client.recv() {
                Ok(ServerMessage::Reply(reply)) => self.reply(&reply),
                Ok(ServerMessage::Events(batch)) => self.batch(&batch),
                // An unknown message shape: skip it (the frame itself was consumed).
                Err(ClientError::Json(err)) => say(&format!("! ignored a message: {err}")),
                Err(ClientError::Closed) => {
                    return match self.fatal.take() {
                        Some(reason) => format!("the server closed the connection ({reason})"),
                        None => "the server closed the connection".to_owned(),
                    }
                }
                Err(err) => return err.to_string(),
            }
        }
    }

    fn reply(&mut self, reply: &Reply) {
        if reply.is_error() {
            let text = format!("{} {}", reply.code, clean(&reply.msg));
            say(&format!("! {text}"));
            // Room-level refusals carry {"room", "type"}; the ones that close do not.
            let closes = matches!(reply.code, 400 | 408 | 413 | 503)
                && reply.detail.get("room").is_none()
                && reply.detail.get("type").is_none();
            if closes {
                self.fatal = Some(text);
            }
            return;
        }
        if let Some(rooms) = reply.detail["rooms"].as_array() {
            let list: Vec<String> = rooms
                .iter()
                .map(|room| {
                    let name = room["room"]
                        .as_str()
                        .map_or_else(|| room["room"].to_string(), clean);
                    format!("{name} ({})", room["users"])
                })
                .collect();
            say(&format!("* rooms: {}", list.join(", ")));
        } else {
            say(&format!("* {} {}", reply.code, clean(&reply.msg)));
        }
    }

    fn batch(&mut self, batch: &EventBatch) {
        let room = clean(&batch.room);
        if batch.history {
            let said: Vec<&Event> = batch.events.iter().filter(|e| e.kind == "msg").collect();
            if !said.is_empty() {
                say(&format!("* earlier in {room}:"));
                for event in said {
                    self.event(&batch.room, &room, event);
                }
            }
            return;
        }
        for event in &batch.events {
            self.event(&batch.room, &room, event);
        }
    }

    /// Prints one live event (`raw_room` is the name as sent, `room` the printable one).
    fn event(&mut self, raw_room: &str, room: &str, event: &Event) {
        let prefix = format!("{} [{room}]", clock(event.time));
        let user = clean(&event.user);
        match event.kind.as_str() {
            "msg" => say(&format!("{prefix} {user}: {}", text_of(&event.data))),
            "join" => {
                if self.shared.is_me(&event.user) {
                    self.shared.rooms().joined.insert(raw_room.to_owned());
                }
                say(&format!("{prefix} * {user} joined"));
            }
            "leave" => {
                say(&format!("{prefix} * {user} left"));
                if self.shared.is_me(&event.user) {
                    self.left(raw_room);
                }
                self.poses.remove(raw_room);
            }
            "list" => {
                let names = match event.data.as_array() {
                    Some(names) => names
                        .iter()
                        .map(|name| name.as_str().map_or_else(|| name.to_string(), clean))
                        .collect::<Vec<_>>()
                        .join(", "),
                    None => text_of(&event.data),
                };
                say(&format!("{prefix} * in {room}: {names}"));
            }
            "transform" => self.pose(raw_room, room, &event.user),
            "game" => say(&render_game(&prefix, &user, &event.data, &self.shared)),
            other => say(&format!(
                "{prefix} * {user} {}: {}",
                clean(other),
                text_of(&event.data)
            )),
        }
    }

    /// We left `room`: if it was the current one, move to another room we are in.
    fn left(&mut self, room: &str) {
        let mut rooms = self.shared.rooms();
        rooms.joined.remove(room);
        if rooms.current != room {
            return;
        }
        let next = if rooms.joined.contains("lobby") {
            Some("lobby".to_owned())
        } else {
            rooms.joined.iter().next().cloned()
        };
        match next {
            Some(next) => {
                say(&format!("* current room: {}", clean(&next)));
                rooms.current = next;
            }
            None => say("* you are in no room now: /join one"),
        }
    }

    /// Counts a pose; prints at most one summary per room per [`POSE_SUMMARY_PERIOD`].
    fn pose(&mut self, raw_room: &str, room: &str, user: &str) {
        let now = Instant::now();
        let count = self
            .poses
            .entry(raw_room.to_owned())
            .or_insert_with(|| PoseCount {
                since: now,
                events: 0,
                users: BTreeSet::new(),
            });
        count.events += 1;
        if !count.users.contains(user) {
            count.users.insert(clean(user));
        }
        let elapsed = now.duration_since(count.since);
        if elapsed < POSE_SUMMARY_PERIOD {
            return;
        }
        let users: Vec<&str> = count.users.iter().map(String::as_str).collect();
        say(&format!(
            "{} [{room}] * {} pose updates from {} in the last {} s",
            clock(unix_now()),
            count.events,
            users.join(", "),
            elapsed.as_secs()
        ));
        *count = PoseCount {
            since: now,
            events: 0,
            users: BTreeSet::new(),
        };
    }
}

/// A game event: a header, the board as a 3x3 grid and a status line.
fn render_game(prefix: &str, user: &str, state: &Value, shared: &Shared) -> String {
    let game = state["game"].as_str().unwrap_or("?");
    let board = state["board"].as_array().filter(|cells| cells.len() == 9);
    let (Some(board), "tictactoe") = (board, game) else {
        return format!("{prefix} * game by {user}: {}", text_of(state));
    };
    let seat = |mark: &str| state["players"][mark].as_str().map(clean);
    let name_or_free = |mark: &str| seat(mark).unwrap_or_else(|| "(free)".to_owned());
    // "alice (X)", or just the name when the user no longer holds a seat.
    let with_mark = |name: &str| match ["X", "O"]
        .into_iter()
        .find(|&mark| state["players"][mark].as_str() == Some(name))
    {
        Some(mark) => format!("{} ({mark})", clean(name)),
        None => clean(name),
    };
    let moves = match state["moves"].as_u64() {
        Some(1) => "1 move".to_owned(),
        Some(n) => format!("{n} moves"),
        None => "? moves".to_owned(),
    };
    let mut out = format!(
        "{prefix} * tictactoe ({user}): X {}, O {}, {moves}",
        name_or_free("X"),
        name_or_free("O"),
    );
    for (row, cells) in board.chunks(3).enumerate() {
        let cells: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(col, cell)| match cell.as_str() {
                Some(mark) => clean(mark),
                None => (row * 3 + col).to_string(),
            })
            .collect();
        if row > 0 {
            out.push_str("\n  ---+---+---");
        }
        out.push_str("\n   ");
        out.push_str(&cells.join(" | "));
    }
    out.push('\n');
    let name = |key: &str| state[key].as_str().unwrap_or("?");
    let status = match state["status"].as_str().unwrap_or("?") {
        "waiting" => "   waiting for a second player: /game join".to_owned(),
        "playing" => {
            let turn = name("turn");
            let you = if shared.is_me(turn) {
                " - your move: /game move N"
            } else {
                ""
            };
            format!("   turn: {}{you}", with_mark(turn))
        }
        "won" => {
            let winner = name("winner");
            let how = match (state["line"].as_array(), state["forfeit"].as_str()) {
                (Some(line), _) => {
                    let cells: Vec<String> = line.iter().map(Value::to_string).collect();
                    format!("line {}", cells.join("-"))
                }
                (None, Some(quitter)) => format!("{} forfeited", clean(quitter)),
                (None, None) => "won".to_owned(),
            };
            format!(
                "   winner: {}, {how}; /game restart for another round",
                with_mark(winner)
            )
        }
        "draw" => "   draw; /game restart for another round".to_owned(),
        other => format!("   status: {}", clean(other)),
    };
    out.push_str(&status);
    out
}

/// A msg's data for the terminal: strings as they are, anything else as JSON.
fn text_of(data: &Value) -> String {
    match data {
        Value::String(text) => clean(text),
        other => clean(&other.to_string()),
    }
}

/// Escapes control characters so a peer cannot move the cursor or clear the screen.
fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Prints a line (or block) at once; a closed stdout is not worth a panic.
fn say(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `HH:MM:SS` in local time for a UNIX time in seconds.
fn clock(unix: f64) -> String {
    let secs = if unix.is_finite() {
        unix.floor() as i64
    } else {
        0
    };
    let (hour, minute, second) = local_time::hms(secs);
    format!("{hour:02}:{minute:02}:{second:02}")
}

#[cfg(unix)]
mod local_time {
    //! The C library's `localtime_r`: std has no time zones and the crate has no time-zone
    //! dependency, and the C library already knows `TZ` and /etc/localtime.

    use std::os::raw::{c_char, c_int, c_long};
    use std::sync::Once;

    /// `struct tm` as glibc, musl and the BSDs lay it out, plus slack in case a libc adds
    /// fields: `localtime_r` writes at most the real struct, which is never larger.
    #[repr(C)]
    struct Tm {
        sec: c_int,
        min: c_int,
        hour: c_int,
        mday: c_int,
        mon: c_int,
        year: c_int,
        wday: c_int,
        yday: c_int,
        isdst: c_int,
        gmtoff: c_long,
        zone: *const c_char,
        slack: [u64; 8],
    }

    extern "C" {
        fn tzset();
        fn localtime_r(time: *const c_long, out: *mut Tm) -> *mut Tm;
    }

    static TZSET: Once = Once::new();

    /// Hour, minute, second of `secs` in the local time zone (UTC if the C library fails).
    pub fn hms(secs: i64) -> (i64, i64, i64) {
        // SAFETY: tzset takes no arguments and only initialises the C library's zone data.
        TZSET.call_once(|| unsafe { tzset() });
        let Some(time) = c_long::try_from(secs).ok() else {
            return utc(secs);
        };
        let mut tm = Tm {
            sec: 0,
            min: 0,
            hour: 0,
            mday: 0,
            mon: 0,
            year: 0,
            wday: 0,
            yday: 0,
            isdst: 0,
            gmtoff: 0,
            zone: std::ptr::null(),
            slack: [0; 8],
        };
        // SAFETY: both pointers are valid for the call; `tm` is at least as large as the C
        // `struct tm`, and localtime_r is the thread-safe variant that writes only into it.
        let result = unsafe { localtime_r(&time, &mut tm) };
        if result.is_null() {
            return utc(secs);
        }
        (i64::from(tm.hour), i64::from(tm.min), i64::from(tm.sec))
    }

    fn utc(secs: i64) -> (i64, i64, i64) {
        let day = secs.rem_euclid(86_400);
        (day / 3600, day / 60 % 60, day % 60)
    }
}

#[cfg(not(unix))]
mod local_time {
    /// Hour, minute, second in UTC (no time-zone support on this platform).
    pub fn hms(secs: i64) -> (i64, i64, i64) {
        let day = secs.rem_euclid(86_400);
        (day / 3600, day / 60 % 60, day % 60)
    }
}
