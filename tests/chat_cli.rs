//! `roomcast-chat` driven as a user would: the real binary, piped stdin, its stdout read line by
//! line, against an embedded server on a real socket.
//!
//! Nothing here sleeps: every step waits for a line of output (or the process's exit) with a
//! deadline, and a watchdog kills any child still running after [`CHILD_LIMIT`].

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use roomcast::client::{Client, ServerMessage};
use roomcast::config::HashCost;
use roomcast::protocol::{Pose, Rotation, Vec3};
use roomcast::{Config, ServerHandle};
use serde_json::json;

/// How long one expected line or exit may take on a loaded 2-core machine.
const STEP: Duration = Duration::from_secs(5);
/// A child running longer than this is killed.
const CHILD_LIMIT: Duration = Duration::from_secs(15);

fn start_server() -> ServerHandle {
    start_server_with(Config::default())
}

/// A server on a free port; passwords hashed at the cheapest cost (tests only).
fn start_server_with(config: Config) -> ServerHandle {
    roomcast::Server::bind(Config {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        hash_cost: HashCost::Cheap,
        ..config
    })
    .expect("bind 127.0.0.1:0")
    .spawn()
    .expect("spawn the server")
}

/// One `roomcast-chat` process.
struct Chat {
    name: String,
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line read so far, for failure messages and negative checks.
    seen: Vec<String>,
    /// Dropping it tells the watchdog that the test is done with the child.
    _watchdog: Sender<()>,
}

impl Chat {
    fn spawn(name: &str, args: &[&str]) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roomcast-chat"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start roomcast-chat");
        let stdin = child.stdin.take();
        let stdout = lines_of(child.stdout.take().expect("piped stdout"));
        let stderr = lines_of(child.stderr.take().expect("piped stderr"));
        let child = Arc::new(Mutex::new(child));
        let (watchdog, done) = mpsc::channel::<()>();
        let watched = Arc::clone(&child);
        thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = done.recv_timeout(CHILD_LIMIT) {
                let _ = watched.lock().map(|mut child| child.kill());
            }
        });
        Chat {
            name: name.to_owned(),
            child,
            stdin,
            stdout,
            stderr,
            seen: Vec::new(),
            _watchdog: watchdog,
        }
    }

    /// Starts a chat as `user` against `addr`, waits until it is logged in and in the lobby.
    fn login(addr: SocketAddr, user: &str, extra: &[&str]) -> Chat {
        let port = addr.port().to_string();
        let mut args = vec!["--user", user, "--port", &port];
        args.extend_from_slice(extra);
        let mut chat = Chat::spawn(user, &args);
        chat.expect(|l| l.starts_with("* connected to "), "the connected line");
        chat.expect(
            |l| stamped(l).is_some_and(|rest| rest.starts_with("[lobby] * in lobby: ")),
            "the lobby list",
        );
        chat
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to the chat's stdin");
        stdin.flush().expect("flush the chat's stdin");
    }

    /// Reads stdout until a line matches; panics with the transcript after [`STEP`].
    fn expect(&mut self, matches: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(err) => panic!(
                    "{}: no {what} ({err:?}); stdout so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for a line equal to `rest` after an `HH:MM:SS ` stamp.
    fn expect_stamped(&mut self, rest: &str) -> String {
        self.expect(
            |l| stamped(l) == Some(rest),
            &format!("line \"HH:MM:SS {rest}\""),
        )
    }

    fn expect_exact(&mut self, want: &str) {
        self.expect(|l| l == want, &format!("line {want:?}"));
    }

    /// The next `n` stdout lines, whatever they are.
    fn next_lines(&mut self, n: usize) -> Vec<String> {
        let mut lines = Vec::new();
        for _ in 0..n {
            let count = lines.len();
            let line = self.expect(|_| true, &format!("line {} of {n}", count + 1));
            lines.push(line);
        }
        lines
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for stdout to end, then for the exit status; the rest of stdout is kept.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{} did not exit; stdout so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
        let mut child = self.child.lock().expect("child lock");
        child.wait().expect("wait for roomcast-chat")
    }

    /// All of stderr, up to its end (the process's exit).
    fn stderr(&self) -> String {
        let deadline = Instant::now() + STEP;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(RecvTimeoutError::Disconnected) => return lines.join("\n"),
                Err(RecvTimeoutError::Timeout) => panic!("{}: stderr did not end", self.name),
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Forwards the lines of a pipe to a channel, so reads can have a deadline.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// What follows an `HH:MM:SS ` stamp, if the line starts with one.
fn stamped(line: &str) -> Option<&str> {
    let (stamp, rest) = (line.get(..8)?, line.get(8..)?);
    let b = stamp.as_bytes();
    let digits = [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit());
    (digits && b[2] == b':' && b[5] == b':').then_some(rest.strip_prefix(' ')?)
}

/// A Rust client logged in as `user` (in the lobby), reads bounded by [`STEP`].
fn rust_client(addr: SocketAddr, user: &str) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    client.set_read_timeout(Some(STEP)).expect("read timeout");
    client.login(user, "").expect("login");
    client
}

#[test]
fn two_chats_and_a_client_see_each_other() {
    let server = start_server();
    let addr = server.local_addr();
    let mut alice = Chat::login(addr, "alice", &[]);
    let mut bob = Chat::login(addr, "bob", &[]);
    alice.expect_stamped("[lobby] * bob joined");

    bob.type_line("hello from bob");
    alice.expect_stamped("[lobby] bob: hello from bob");
    bob.expect_stamped("[lobby] bob: hello from bob");
    alice.type_line("hi bob, /not a command");
    bob.expect_stamped("[lobby] alice: hi bob, /not a command");
    alice.type_line("//slash");
    bob.expect_stamped("[lobby] alice: /slash");

    // A pose is counted, not printed; a msg whose data is not a string is printed as JSON.
    let mut carol = rust_client(addr, "carol");
    alice.expect_stamped("[lobby] * carol joined");
    let pose = Pose {
        pos: Vec3 {
            x: 1.0,
            y: 1.6,
            z: 0.0,
        },
        rot: Rotation {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: Some(1.0),
        },
    };
    carol.transform("lobby", &pose).expect("send a pose");
    // Once carol has her own pose back, alice (same room, same order) has it too.
    loop {
        match carol.recv().expect("carol's pose tick") {
            ServerMessage::Events(batch) if batch.events.iter().any(|e| e.kind == "transform") => {
                break
            }
            _ => {}
        }
    }
    carol
        .msg("lobby", &json!({"n": 1, "ok": true}))
        .expect("send");
    alice.expect_stamped(r#"[lobby] carol: {"n":1,"ok":true}"#);
    assert!(
        !alice
            .seen
            .iter()
            .any(|l| l.contains("pos") || l.contains("1.6")),
        "a pose was printed: {:#?}",
        alice.seen
    );

    alice.type_line("/quit");
    assert_eq!(alice.wait_exit().code(), Some(0), "/quit exits 0");
    bob.expect_stamped("[lobby] * alice left");
    bob.close_stdin();
    assert_eq!(bob.wait_exit().code(), Some(0), "end of input exits 0");
    assert_eq!(bob.stderr(), "", "bob's stderr");
    server.shutdown();
}

#[test]
fn room_commands() {
    let server = start_server();
    let mut alice = Chat::login(server.local_addr(), "alice", &[]);

    alice.type_line("/join cafe");
    alice.expect_stamped("[cafe] * alice joined");
    alice.expect_stamped("[cafe] * in cafe: alice");
    alice.type_line("espresso");
    alice.expect_stamped("[cafe] alice: espresso");

    alice.type_line("/room lobby");
    alice.expect_exact("* current room: lobby");
    alice.type_line("back in the lobby");
    alice.expect_stamped("[lobby] alice: back in the lobby");
    alice.type_line("/who");
    alice.expect_stamped("[lobby] * in lobby: alice");
    alice.type_line("/rooms");
    alice.expect_exact("* rooms: cafe (1), lobby (1)");

    alice.type_line("/leave nowhere");
    alice.expect_exact(r#"! 404 You are not in room "nowhere"."#);
    alice.type_line("/leave cafe");
    alice.expect_stamped("[cafe] * alice left");
    alice.type_line("/bogus");
    alice.expect_exact("! unknown command /bogus; /help lists them");

    // The reply to a line typed just before end of input still arrives before the exit.
    alice.type_line("/leave nowhere-else");
    alice.close_stdin();
    assert_eq!(alice.wait_exit().code(), Some(0), "end of input exits 0");
    assert!(
        alice
            .seen
            .iter()
            .any(|l| l == r#"! 404 You are not in room "nowhere-else"."#),
        "the last reply was lost: {:#?}",
        alice.seen
    );
    server.shutdown();
}

#[test]
fn tictactoe_between_two_chats() {
    let server = start_server();
    let addr = server.local_addr();
    let mut alice = Chat::login(addr, "alice", &["--room", "ttt"]);
    alice.expect_stamped("[ttt] * in ttt: alice");
    let mut bob = Chat::login(addr, "bob", &["--room", "ttt"]);
    bob.expect_stamped("[ttt] * in ttt: alice, bob");

    alice.type_line("/game start");
    for chat in [&mut alice, &mut bob] {
        chat.expect_stamped("[ttt] * tictactoe (alice): X alice, O (free), 0 moves");
        chat.expect_exact("   waiting for a second player: /game join");
    }
    bob.type_line("/game join");
    alice.expect_exact("   turn: alice (X) - your move: /game move N");
    bob.expect_exact("   turn: alice (X)");

    // alice 4, bob 0, alice 2, bob 1, alice 6: the diagonal 2-4-6. Each player waits for
    // the previous move's board before moving.
    let moves = [
        (4, "1 move"),
        (0, "2 moves"),
        (2, "3 moves"),
        (1, "4 moves"),
    ];
    for (i, (cell, header)) in moves.into_iter().enumerate() {
        let (mover, next) = if i % 2 == 0 {
            (&mut alice, &mut bob)
        } else {
            (&mut bob, &mut alice)
        };
        mover.type_line(&format!("/game move {cell}"));
        let user = mover.name.clone();
        next.expect_stamped(&format!(
            "[ttt] * tictactoe ({user}): X alice, O bob, {header}"
        ));
    }
    bob.type_line("/game move 8");
    bob.expect_exact("! 422 not your turn: waiting for alice");
    alice.type_line("/game move 6");

    let board = [
        "   O | O | X",
        "  ---+---+---",
        "   3 | X | 5",
        "  ---+---+---",
        "   X | 7 | 8",
        "   winner: alice (X), line 2-4-6; /game restart for another round",
    ];
    for chat in [&mut alice, &mut bob] {
        chat.expect_stamped("[ttt] * tictactoe (alice): X alice, O bob, 5 moves");
        assert_eq!(
            chat.next_lines(board.len()),
            board,
            "{}'s final board",
            chat.name
        );
    }
    bob.type_line("/game move 3");
    bob.expect_exact("! 422 the round is over; restart to play again");
    server.shutdown();
}

#[test]
fn unreachable_server_exits_1() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free port")
        .port();
    let mut chat = Chat::spawn("nobody", &["--user", "nobody", "--port", &port.to_string()]);
    assert_eq!(chat.wait_exit().code(), Some(1));
    let stderr = chat.stderr();
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "stderr: {stderr}"
    );
    assert!(chat.seen.is_empty(), "stdout: {:#?}", chat.seen);
}

#[test]
fn refused_login_exits_1() {
    let server = start_server();
    let _alice = rust_client(server.local_addr(), "alice");
    let port = server.local_addr().port().to_string();
    let mut chat = Chat::spawn("ALICE", &["--user", "ALICE", "--port", &port]);
    assert_eq!(chat.wait_exit().code(), Some(1));
    let stderr = chat.stderr();
    assert!(
        stderr.contains("login refused: 409 User name ALICE is already logged in."),
        "stderr: {stderr}"
    );
    server.shutdown();
}

#[test]
fn server_shutdown_is_reported() {
    let server = start_server();
    let mut alice = Chat::login(server.local_addr(), "alice", &[]);
    server.shutdown();
    alice.expect_exact("! 503 Server shutting down.");
    alice.expect_exact(
        "* disconnected: the server closed the connection (503 Server shutting down.)",
    );
    assert_eq!(
        alice.wait_exit().code(),
        Some(1),
        "a lost connection exits 1"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_exits_0_and_leaves() {
    let server = start_server();
    let mut bob = rust_client(server.local_addr(), "bob");
    let mut alice = Chat::login(server.local_addr(), "alice", &[]);
    let pid = alice.child.lock().expect("child lock").id();
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert_eq!(alice.wait_exit().code(), Some(0), "Ctrl-C exits 0");
    // bob sees alice come and go.
    let mut seen = Vec::new();
    while !seen.contains(&("leave".to_owned(), "alice".to_owned())) {
        if let ServerMessage::Events(batch) = bob.recv().expect("alice's leave") {
            seen.extend(batch.events.into_iter().map(|e| (e.kind, e.user)));
        }
    }
    server.shutdown();
}

#[test]
fn a_dropped_connection_is_resumed_with_the_missed_messages() {
    let server = start_server();
    let proxy = support::proxy::Proxy::start(server.local_addr());
    let mut alice = Chat::login(proxy.addr, "alice", &[]);
    let mut bob = rust_client(server.local_addr(), "bob");
    alice.expect_stamped("[lobby] * bob joined");
    // The network fails under alice; bob talks on; the network comes back.
    proxy.cut_now();
    for i in 0..3 {
        bob.msg("lobby", &format!("missed {i}")).expect("send");
    }
    bob.ping().expect("bob's msgs were handled");
    proxy.restore();
    alice.expect(
        |l| l == "* reconnected, 3 missed messages replayed",
        "the reconnect line",
    );
    for i in 0..3 {
        alice.expect_stamped(&format!("[lobby] bob: missed {i}"));
    }
    bob.msg("lobby", &"live again").expect("send");
    alice.expect_stamped("[lobby] bob: live again");
    assert!(
        !alice.seen.iter().any(|l| l.contains("disconnected")),
        "{:?}",
        alice.seen
    );
}

#[test]
fn a_registered_user_logs_in_with_its_password_and_changes_it() {
    let server = start_server();
    let addr = server.local_addr();
    let mut alice = Chat::login(addr, "alice", &["--register", "--pass", "first-pass"]);
    assert!(
        alice
            .seen
            .first()
            .is_some_and(|l| l == "* registered alice"),
        "{:#?}",
        alice.seen
    );
    alice.type_line("/help");
    alice.expect(|l| l.contains("/password OLD NEW"), "/password in /help");
    alice.type_line("/password first-pass");
    alice.expect_exact("! usage: /password OLD NEW (passwords without spaces)");
    alice.type_line("/password wrong-pass second-pass");
    alice.expect_exact("! 403 Access denied.");
    alice.type_line("/password first-pass short");
    alice.expect_exact("! 422 Invalid password: use 8 to 1024 bytes (at least 8 characters).");
    alice.type_line("/password first-pass second-pass");
    alice.expect_exact("* 200 Password changed.");
    alice.type_line("/quit");
    assert_eq!(alice.wait_exit().code(), Some(0));

    // The old password is refused, with the server's words and status 1.
    let port = addr.port().to_string();
    let args = ["--user", "alice", "--pass", "first-pass", "--port", &port];
    let mut old = Chat::spawn("alice (old password)", &args);
    assert_eq!(old.wait_exit().code(), Some(1));
    assert_eq!(
        old.stderr(),
        "roomcast-chat: login refused: 403 Access denied."
    );
    // --register again just logs in, as the name was registered whatever case was typed.
    let mut again = Chat::login(addr, "ALICE", &["--register", "--pass", "second-pass"]);
    assert!(
        again.seen[0] == "* ALICE is registered already; logging in"
            && again.seen[1].starts_with("* connected to ")
            && again.seen[1].ends_with(" as alice; /help lists the commands"),
        "{:#?}",
        again.seen
    );
    again.close_stdin();
    assert_eq!(again.wait_exit().code(), Some(0));
    // A password too short to register is refused before any login.
    let args = [
        "--user",
        "newbie",
        "--register",
        "--pass",
        "short",
        "--port",
        &port,
    ];
    let mut short = Chat::spawn("newbie", &args);
    assert_eq!(short.wait_exit().code(), Some(1));
    assert_eq!(
        short.stderr(),
        "roomcast-chat: register refused: 422 Invalid password: use 8 to 1024 bytes (at least 8 characters)."
    );
    server.shutdown();
}

#[test]
fn an_expired_session_logs_in_again_with_the_current_password() {
    // No resume grace: a lost connection ends the session, so every comeback is a fresh
    // login, which a registered name passes only with its password.
    let server = start_server_with(Config {
        resume_grace: Duration::ZERO,
        ..Config::default()
    });
    let proxy = support::proxy::Proxy::start(server.local_addr());
    let mut alice = Chat::login(proxy.addr, "alice", &["--register", "--pass", "first-pass"]);
    let mut bob = rust_client(server.local_addr(), "bob");
    alice.expect_stamped("[lobby] * bob joined");
    let expired = |alice: &mut Chat| {
        alice.expect(
            |l| {
                l.starts_with("* reconnected, ")
                    && l.ends_with(
                        "(the session had expired: logged in and joined the rooms again)",
                    )
            },
            "the reconnect line of a fresh login",
        );
    };

    // Lost: the fresh login sends the password alice logged in with.
    proxy.cut_now();
    wait_for_leave(&mut bob, "alice");
    proxy.restore();
    expired(&mut alice);
    alice.expect_stamped("[lobby] * alice joined");

    // After /password, it sends the new one.
    alice.type_line("/password first-pass second-pass");
    alice.expect_exact("* 200 Password changed.");
    proxy.cut_now();
    wait_for_leave(&mut bob, "alice");
    proxy.restore();
    expired(&mut alice);
    bob.msg("lobby", &"still there?").expect("send");
    alice.expect_stamped("[lobby] bob: still there?");

    // Changed elsewhere while alice was away: the fresh login is refused, and the chat ends
    // with the server's answer and status 1.
    proxy.cut_now();
    wait_for_leave(&mut bob, "alice");
    let mut elsewhere = Client::connect(server.local_addr()).expect("connect");
    elsewhere
        .set_read_timeout(Some(STEP))
        .expect("read timeout");
    elsewhere.login("alice", "second-pass").expect("login");
    elsewhere
        .change_password("second-pass", "third-pass")
        .expect("change the password");
    elsewhere.logout().expect("logout");
    proxy.restore();
    alice.expect_exact("* disconnected: coming back was refused: 403 Access denied.");
    assert_eq!(alice.wait_exit().code(), Some(1));
    server.shutdown();
}

/// Reads `client`'s events until `user` leaves the lobby; panics after [`STEP`].
fn wait_for_leave(client: &mut Client, user: &str) {
    let deadline = Instant::now() + STEP;
    while Instant::now() < deadline {
        if let ServerMessage::Events(batch) = client.recv().expect("a leave event") {
            if batch
                .events
                .iter()
                .any(|e| e.kind == "leave" && e.user == user && batch.room == "lobby")
            {
                return;
            }
        }
    }
    panic!("{user} did not leave the lobby within {STEP:?}");
}
