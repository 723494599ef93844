//! `roomcast-chat`: a small IRC-like terminal client for a roomcast server.
//!
//! ```text
//! roomcast-chat --user alice [--pass P] [--register]
//!               [--host 127.0.0.1] [--port 42069] [--room lobby]
//! ```
//!
//! Plain lines are chat messages to the current room; `/help` lists the commands, including
//! `/game ...` to play the server's tic-tac-toe by hand and `/password OLD NEW`.
//!
//! # Accounts
//! A registered name needs its password (`--pass`); `--register` makes the name an account
//! first (a name registered already just logs in). When a lost connection finds its session
//! expired, the client logs in again with the same password, or with the new one once
//! `/password` has been answered 200.
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
//! 0 after `/quit`, end of input or Ctrl-C; 1 when connecting, registering or logging in fails
//! (the server's answer is printed, e.g. `login refused: 403 Access denied.`), or when the
//! connection ends otherwise (the reason is printed first).

mod reader;
mod render;
mod session;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use clap::Parser;
use roomcast::client::{Client, ClientError};

use reader::Reader;
use render::{clean, say};
use session::{RoomState, Session, Shared};

/// How long login may take before we give up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

pub const HELP: &str = "\
commands:
  TEXT              say TEXT in the current room (//TEXT sends a line starting with /)
  /join ROOM        join ROOM and make it the current room
  /leave ROOM       leave ROOM
  /room ROOM        make ROOM the current room
  /who              who is in the current room
  /rooms            every room and its member count
  /ping             ask the server for a pong
  /password OLD NEW change your account's password (a registered user's)
  /game start [tictactoe]   start a game in the current room (you take the first seat)
  /game join        take the free seat
  /game move N      play cell N: 0 1 2 / 3 4 5 / 6 7 8
  /game restart     new round of a finished game (marks swap)
  /quit             leave (so do end of input and Ctrl-C)
  /help             this text";

/// A terminal chat client for a roomcast server.
#[derive(Parser, Debug)]
#[command(
    name = "roomcast-chat",
    version,
    about = "A terminal chat client for a roomcast server: rooms, chat and tic-tac-toe, IRC style.",
    after_help = HELP
)]
struct Args {
    /// User name: 1 to 32 of A-Z a-z 0-9 _ - .
    #[arg(long)]
    user: String,
    /// Password: needed for a registered name (see --register); a guest's is ignored.
    #[arg(long, default_value = "")]
    pass: String,
    /// Register --user with --pass (8 characters or more) before logging in; a name that is
    /// registered already just logs in.
    #[arg(long)]
    register: bool,
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
pub enum Input {
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
    if args.register {
        match client.register(&args.user, &args.pass) {
            Ok(_) => say(&format!("* registered {}", clean(&args.user))),
            // Registered already (perhaps by an earlier run): the login checks the password.
            Err(ClientError::Refused { code: 409, .. }) => say(&format!(
                "* {} is registered already; logging in",
                clean(&args.user)
            )),
            Err(err) => return Err(failure("register", err, &target)),
        }
    }
    let reply = client
        .login(&args.user, &args.pass)
        .map_err(|err| failure("login", err, &target))?;
    client
        .set_read_timeout(None)
        .map_err(|err| format!("cannot set up the socket: {err}"))?;
    // A dropped connection (Wi-Fi, a laptop lid) is resumed without losing a message.
    client.set_auto_reconnect(true);
    let writer = client.writer();

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
        passwords: Mutex::new(VecDeque::new()),
    });
    spawn_reader(client, Arc::clone(&shared), tx.clone())?;
    spawn_stdin(tx)?;

    let mut session = Session {
        writer,
        shared,
        max_body: roomcast::Config::default().max_frame,
    };
    if args.room != "lobby" {
        session.join(&args.room);
    }
    Ok(session.run(&rx))
}

/// What the user is told when `step` (register or login) failed: the server's own words for a
/// refusal.
fn failure(step: &str, err: ClientError, target: &str) -> String {
    match err {
        ClientError::Refused { code, msg, .. } => format!("{step} refused: {code} {}", clean(&msg)),
        ClientError::Io(err)
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            format!("{step} failed: no answer from {target} within {LOGIN_TIMEOUT:?}")
        }
        other => format!("{step} failed: {other}"),
    }
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
