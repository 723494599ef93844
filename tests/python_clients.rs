//! The Python clients in `examples/python/` against an embedded server: the module's own
//! self-test, then each example program driven the way a person would drive it, through
//! piped stdin, with its stdout read line by line.
//!
//! Every test is skipped (with the reason on stderr) when `python3` is not installed. No
//! child may outlive its test: each runs under a deadline and is killed past it, and a
//! failure prints the child's whole stdout and stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError, ServerMessage};
use roomcast::{Config, Server, ServerHandle};
use serde_json::json;

const PYTHON: &str = "python3";
/// Longest a child may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest to wait for one expected line or event.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn selftest_passes_against_the_server() {
    if !python_present("selftest_passes_against_the_server") {
        return;
    }
    let server = TestServer::start(Config::default());
    let mut selftest = Script::spawn("selftest.py", &server.port_args(), false);
    let stdout = selftest.finish();
    let last = stdout.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("selftest: all ") && last.ends_with(" checks passed"),
        "unexpected last line {last:?}\n{}",
        stdout.join("\n")
    );
    assert!(!stdout.iter().any(|line| line.starts_with("FAIL")));
    server.stop();
}

#[test]
fn chat_users_see_each_others_messages() {
    if !python_present("chat_users_see_each_others_messages") {
        return;
    }
    let server = TestServer::start(Config::default());
    let chat_args = |user: &str| {
        let mut args = server.port_args();
        args.extend(["--user", user, "--room", "den"].map(String::from));
        args
    };
    let mut alice = Script::spawn("chat.py", &chat_args("alice"), true);
    alice.wait_for_line("* alice joined #den");
    let mut bob = Script::spawn("chat.py", &chat_args("bob"), true);
    bob.wait_for_line("* bob joined #den");
    alice.wait_for_line("* bob joined #den");

    bob.send_line("hello from bob, ☕ included");
    let line = alice.wait_for_line("#den <bob> hello from bob, ☕ included");
    assert_local_time_prefix(&line);
    alice.send_line("hi bob, alice here");
    bob.wait_for_line("#den <alice> hi bob, alice here");

    // Commands: a second room, then a message there that only alice is in.
    alice.send_line("/join attic");
    alice.wait_for_line("* alice joined #attic");
    alice.send_line("up here");
    alice.wait_for_line("#attic <alice> up here");
    alice.send_line("/leave nowhere");
    alice.wait_for_line("! 404 You are not in room \"nowhere\".");

    bob.send_line("/quit");
    let bob_out = bob.finish();
    assert_eq!(bob_out.last().map(String::as_str), Some("bye"));
    assert!(
        !bob_out.iter().any(|line| line.contains("up here")),
        "bob is not in #attic: {bob_out:#?}"
    );
    alice.wait_for_line("* bob left #den");
    alice.close_stdin(); // End of input quits, like Ctrl-D.
    assert_eq!(alice.finish().last().map(String::as_str), Some("bye"));
    server.stop();
}

#[test]
fn headset_sims_print_each_others_poses() {
    if !python_present("headset_sims_print_each_others_poses") {
        return;
    }
    let server = TestServer::start(Config {
        fps: 10.0,
        ..test_config()
    });
    let sim_args = |user: &str, radius: &str| {
        let mut args = server.port_args();
        let rest = [
            "--user",
            user,
            "--room",
            "vr",
            "--hz",
            "30",
            "--seconds",
            "1.2",
            "--radius",
            radius,
        ];
        args.extend(rest.map(String::from));
        args
    };
    let mut a = Script::spawn("headset_sim.py", &sim_args("hs-a", "1"), false);
    let mut b = Script::spawn("headset_sim.py", &sim_args("hs-b", "2"), false);
    let a_out = a.finish();
    let b_out = b.finish();
    for (out, other, radius) in [(&a_out, "hs-b", 2.0), (&b_out, "hs-a", 1.0)] {
        let poses: Vec<[f64; 3]> = out
            .iter()
            .filter(|line| line.contains(&format!(" #vr {other} pos=(")))
            .map(|line| parse_pos(line))
            .collect();
        // ~1 s together at fps 10; at least a few ticks even on a loaded machine.
        assert!(
            poses.len() >= 3,
            "{} poses of {other}:\n{}",
            poses.len(),
            out.join("\n")
        );
        for [x, y, z] in &poses {
            assert!((y - 1.6).abs() < 1e-9, "height {y}");
            let r = (x * x + z * z).sqrt();
            assert!(
                (r - radius).abs() < 0.01,
                "{other} is off its circle: r = {r}"
            );
        }
        let distinct = poses.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(distinct >= 1, "{other} never moved: {poses:?}");
        let summary = out.last().map(String::as_str).unwrap_or_default();
        assert!(
            summary.starts_with("sent ") && summary.ends_with(&format!("of 1 others ({other})")),
            "summary {summary:?}"
        );
        let sent: u32 = summary["sent ".len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .expect("summary starts with the number of poses sent");
        assert!(sent >= 12, "sent only {sent} poses in 1.2 s at 30 Hz");
    }
    server.stop();
}

#[test]
fn input_sender_reaches_a_rust_client_in_the_room() {
    if !python_present("input_sender_reaches_a_rust_client_in_the_room") {
        return;
    }
    let server = TestServer::start(Config::default());
    let mut watcher = Client::connect(server.addr).expect("connect");
    watcher
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set read timeout");
    watcher.login("watcher", "1234").expect("login");
    watcher.join("arcade").expect("join");
    wait_for_event(&mut watcher, |room, event| {
        room == "arcade" && event.kind == "list"
    });

    let mut args = server.port_args();
    args.extend(["--user", "pad", "--room", "arcade"].map(String::from));
    let mut sender = Script::spawn("input_sender.py", &args, true);
    sender.send_line("w");
    sender.send_line("button 3");
    sender.send_line("axis 1 -0.5");
    sender.close_stdin();
    let out = sender.finish();
    assert!(
        out.iter().any(|line| {
            line.contains("joystick support is off") || line.contains("found no joystick")
        }),
        "no word on joystick support:\n{}",
        out.join("\n")
    );
    let summary = out.last().map(String::as_str).unwrap_or_default();
    assert!(summary.starts_with("sent 5 inputs;"), "summary {summary:?}");

    let expected = vec![
        json!({"input": "key", "key": "w", "pressed": true}),
        json!({"input": "key", "key": "w", "pressed": false}),
        json!({"input": "button", "button": 3, "pressed": true}),
        json!({"input": "button", "button": 3, "pressed": false}),
        json!({"input": "axis", "axis": 1, "value": -0.5}),
    ];
    let mut got = Vec::new();
    let deadline = Instant::now() + STEP_TIMEOUT;
    while got.len() < expected.len() && Instant::now() < deadline {
        match watcher.recv() {
            Ok(ServerMessage::Events(batch)) if batch.room == "arcade" => got.extend(
                batch
                    .events
                    .into_iter()
                    .filter(|e| e.kind == "msg" && e.user == "pad")
                    .map(|e| e.data),
            ),
            Ok(_) => {}
            Err(ClientError::Io(err)) if is_timeout(&err) => {}
            Err(err) => panic!("watcher: {err}"),
        }
    }
    assert_eq!(got, expected);
    server.stop();
}

#[test]
fn input_sender_stops_after_its_seconds() {
    if !python_present("input_sender_stops_after_its_seconds") {
        return;
    }
    let server = TestServer::start(Config::default());
    let mut args = server.port_args();
    args.extend(["--seconds", "0.3", "--no-joystick"].map(String::from));
    let started = Instant::now();
    // Stdin stays open: only --seconds can end it.
    let mut sender = Script::spawn("input_sender.py", &args, true);
    let out = sender.finish_without_closing_stdin();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(out
        .iter()
        .any(|line| line.contains("joystick support is off (--no-joystick)")));
    assert_eq!(
        out.last().map(String::as_str),
        Some("sent 0 inputs; 0 came back from the server")
    );
    server.stop();
}

// --- helpers --------------------------------------------------------------------------

/// Whether Python can run; when not, says why this test is skipped.
fn python_present(test: &str) -> bool {
    match Command::new(PYTHON).arg("--version").output() {
        Ok(output) if output.status.success() => true,
        Ok(output) => {
            eprintln!(
                "skipping {test}: `{PYTHON} --version` exited with {}",
                output.status
            );
            false
        }
        Err(err) => {
            eprintln!(
                "skipping {test}: {PYTHON} is not available ({err}); install Python 3 to run it"
            );
            false
        }
    }
}

/// Defaults, on a free port.
fn test_config() -> Config {
    Config {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        ..Config::default()
    }
}

/// An embedded server on a free port, shut down when dropped (also when a test panics).
struct TestServer {
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

impl TestServer {
    /// Starts `config` on 127.0.0.1:0, whatever its `addr` says.
    fn start(config: Config) -> TestServer {
        let config = Config {
            addr: test_config().addr,
            ..config
        };
        let server = Server::bind(config).expect("bind the test server");
        let handle = server.spawn().expect("spawn the test server");
        TestServer {
            addr: handle.local_addr(),
            handle: Some(handle),
        }
    }

    /// `--host H --port P` for the scripts.
    fn port_args(&self) -> Vec<String> {
        vec![
            "--host".into(),
            self.addr.ip().to_string(),
            "--port".into(),
            self.addr.port().to_string(),
        ]
    }

    /// Shuts down and checks that the loop ended cleanly.
    fn stop(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            handle.join().expect("server loop ended with an error");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            let _ = handle.join();
        }
    }
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join("python")
        .join(name)
}

/// A running Python script: stdin piped (or closed), stdout read line by line on a thread.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<JoinHandle<String>>,
    started: Instant,
}

impl Script {
    /// Starts `examples/python/NAME` with `args`. Without `piped_stdin`, stdin is empty.
    fn spawn(name: &str, args: &[String], piped_stdin: bool) -> Script {
        let mut child = Command::new(PYTHON)
            .arg(example(name))
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {PYTHON} {name}: {err}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Script {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            stdout: Vec::new(),
            stderr: Some(stderr),
            started: Instant::now(),
        }
    }

    /// Types a line.
    fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped and open");
        if let Err(err) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            let transcript = self.transcript();
            panic!("{}: cannot write {line:?}: {err}\n{transcript}", self.name);
        }
    }

    /// Ends the input, as Ctrl-D would.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Reads stdout until a line contains `needle`, and returns that line.
    fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    let transcript = self.transcript();
                    panic!(
                        "{}: no line with {needle:?} within {STEP_TIMEOUT:?}\n{transcript}",
                        self.name
                    );
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let transcript = self.transcript();
                    panic!(
                        "{}: exited before printing {needle:?}\n{transcript}",
                        self.name
                    );
                }
            }
        }
    }

    /// Closes stdin, waits for a successful exit and returns every stdout line.
    fn finish(&mut self) -> Vec<String> {
        self.close_stdin();
        self.finish_without_closing_stdin()
    }

    /// Waits for a successful exit (killing the child past its deadline) and returns every
    /// stdout line.
    fn finish_without_closing_stdin(&mut self) -> Vec<String> {
        let status = self.wait_until(self.started + CHILD_TIMEOUT);
        let Some(status) = status else {
            let transcript = self.transcript();
            panic!(
                "{}: still running after {CHILD_TIMEOUT:?}; killed\n{transcript}",
                self.name
            );
        };
        self.drain_stdout();
        if !status.success() {
            let transcript = self.transcript();
            panic!("{}: exited with {status}\n{transcript}", self.name);
        }
        self.stdout.clone()
    }

    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() >= deadline => return None,
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(err) => panic!("{}: cannot wait: {err}", self.name),
            }
        }
    }

    /// Collects the rest of stdout; the reader thread ends when the child's stdout closes.
    fn drain_stdout(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(STEP_TIMEOUT) {
            self.stdout.push(line);
        }
    }

    /// Kills the child if it still runs and returns its stdout and stderr, for a failure.
    fn transcript(&mut self) -> String {
        self.kill();
        self.drain_stdout();
        let stderr = self
            .stderr
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        format!(
            "--- stdout of {} ---\n{}\n--- stderr ---\n{stderr}",
            self.name,
            self.stdout.join("\n")
        )
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Chat lines start with the local time, `HH:MM:SS `.
fn assert_local_time_prefix(line: &str) {
    let stamp = line.get(..9).unwrap_or_default();
    let shape_ok = stamp.len() == 9
        && stamp.char_indices().all(|(i, c)| match i {
            2 | 5 => c == ':',
            8 => c == ' ',
            _ => c.is_ascii_digit(),
        });
    assert!(shape_ok, "line does not start with HH:MM:SS: {line:?}");
}

/// The position in a headset_sim line: `... pos=(+1.000, +1.600, -0.000) rot=(...)`.
fn parse_pos(line: &str) -> [f64; 3] {
    let inner = line
        .split_once("pos=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("no pos=(...) in {line:?}"));
    let numbers: Vec<f64> = inner
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad number in {line:?}"))
        })
        .collect();
    match numbers[..] {
        [x, y, z] => [x, y, z],
        _ => panic!("pos needs 3 numbers: {line:?}"),
    }
}

/// Reads until an event matches, failing after `STEP_TIMEOUT`.
fn wait_for_event(client: &mut Client, matches: impl Fn(&str, &roomcast::client::Event) -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        match client.recv() {
            Ok(ServerMessage::Events(batch)) => {
                if batch.events.iter().any(|event| matches(&batch.room, event)) {
                    return;
                }
            }
            Ok(ServerMessage::Reply(reply)) => assert!(!reply.is_error(), "{reply:?}"),
            Err(ClientError::Io(err)) if is_timeout(&err) => {}
            Err(err) => panic!("{err}"),
        }
    }
    panic!("no matching event within {STEP_TIMEOUT:?}");
}

fn is_timeout(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
