//! The Python clients in `examples/python/` against an embedded server: the module's own
//! self-test, then each example program driven the way a person would drive it, through
//! piped stdin, with its stdout read line by line.
//!
//! Every test is skipped (with the reason on stderr) when `python3` is not installed. No
//! child may outlive its test: each runs under a deadline and is killed past it, and a
//! failure prints the child's whole stdout and stderr.
//!
//! The reconnect tests put a [`Proxy`] between a script and the server: it forwards bytes
//! both ways and can cut its connections the way a network failure does (in the middle of a
//! frame, if asked), then refuse new ones until it is restored.

mod support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError, ServerMessage};
use roomcast::config::HashCost;
use roomcast::{Config, Server, ServerHandle};
use serde_json::json;
use support::program::{Program, STEP_TIMEOUT};
use support::proxy::Proxy;

const PYTHON: &str = "python3";
/// Longest a child may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn selftest_passes_against_the_server() {
    if !python_present("selftest_passes_against_the_server") {
        return;
    }
    let server = TestServer::start(Config::default());
    let mut selftest = script("selftest.py", &server.port_args(), false);
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
    let mut alice = script("chat.py", &chat_args("alice"), true);
    alice.wait_for_line("* alice joined #den");
    let mut bob = script("chat.py", &chat_args("bob"), true);
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

    // /who lists the current room's members.
    bob.send_line("/who");
    bob.wait_for_line("#den * members: alice, bob");

    bob.send_line("/quit");
    let bob_out = bob.finish();
    assert_eq!(bob_out.last().map(String::as_str), Some("bye"));
    assert!(
        !bob_out.iter().any(|line| line.contains("up here")),
        "bob is not in #attic: {bob_out:#?}"
    );
    // /quit logged bob out: he left at once (a lost connection would be "away").
    alice.wait_for_line("* bob left #den");
    alice.close_stdin(); // End of input quits, like Ctrl-D.
    assert_eq!(alice.finish().last().map(String::as_str), Some("bye"));
    server.stop();
}

#[test]
fn chat_logs_out_on_ctrl_c() {
    if !python_present("chat_logs_out_on_ctrl_c") {
        return;
    }
    let server = TestServer::start(Config::default());
    let mut bob = watcher(server.addr, "bob", "den");
    let mut alice = script("chat.py", &chat_args(&server.port_args(), "alice"), true);
    alice.wait_for_line("* alice joined #den");
    wait_for_event(&mut bob, |room, e| room == "den" && e.kind == "join");
    alice.interrupt();
    wait_for_event(&mut bob, |room, e| {
        assert_ne!(
            e.kind, "away",
            "Ctrl-C must log out, not drop the connection"
        );
        room == "den" && e.kind == "leave" && e.user == "alice"
    });
    assert_eq!(alice.finish().last().map(String::as_str), Some("bye"));
    server.stop();
}

#[test]
fn chat_rooms_lists_every_page_and_who_lists_members() {
    if !python_present("chat_rooms_lists_every_page_and_who_lists_members") {
        return;
    }
    // 120 rooms: more than one page of the rooms reply (100 by default).
    let server = TestServer::start(Config {
        rate_limit: 0.0,
        max_held_rooms: 200,
        max_rooms_per_user: 200,
        ..test_config()
    });
    let mut builder = Client::connect(server.addr).expect("connect");
    builder.login("builder", "pw").expect("login");
    for n in 0..120 {
        builder.join(&format!("room-{n:03}")).expect("join");
    }
    builder.ping().expect("the joins are done");
    let mut alice = script("chat.py", &chat_args(&server.port_args(), "alice"), true);
    alice.wait_for_line("* alice joined #den");
    alice.send_line("/rooms");
    let header = alice.wait_for_line(" rooms:");
    assert!(header.ends_with("* 122 rooms:"), "{header:?}");
    alice.wait_for_line("*   #den      1 user");
    alice.wait_for_line("*   #lobby    2 users");
    alice.wait_for_line("*   #room-000 1 user");
    alice.wait_for_line("*   #room-119 1 user");
    alice.send_line("/who");
    alice.wait_for_line("#den * members: alice");
    alice.send_line("/quit");
    let out = alice.finish();
    let listed = out.iter().filter(|line| line.contains("*   #")).count();
    assert_eq!(listed, 122, "{}", out.join("\n"));
    server.stop();
}

#[test]
fn chat_resumes_after_a_connection_cut_mid_frame() {
    if !python_present("chat_resumes_after_a_connection_cut_mid_frame") {
        return;
    }
    let server = TestServer::start(Config::default());
    let proxy = Proxy::start(server.addr);
    let mut bob = watcher(server.addr, "bob", "den");
    let mut alice = script("chat.py", &chat_args(&proxy.port_args(), "alice"), true);
    alice.wait_for_line("* alice joined #den");
    wait_for_event(&mut bob, |room, e| room == "den" && e.kind == "join");
    for n in 0..5 {
        say(&mut bob, n);
    }
    alice.wait_for_line("#den <bob> m4");

    // The next frame reaches alice whole, the one after it only half: then the connection
    // is cut both ways, and the proxy refuses alice's reconnects for a while.
    proxy.cut_after(1);
    say(&mut bob, 5);
    say(&mut bob, 6);
    alice.wait_for_line("#den <bob> m5");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "away" && e.user == "alice"
    });
    for n in 7..10 {
        say(&mut bob, n);
    }
    proxy.restore();

    let line = alice.wait_for_line("reconnected");
    assert!(
        line.ends_with("* reconnected, 4 missed messages replayed"),
        "{line:?}"
    );
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "back" && e.user == "alice"
    });
    alice.wait_for_line("#den (missed) <bob> m9");
    say(&mut bob, 10);
    alice.wait_for_line("#den <bob> m10");
    alice.send_line("/quit");
    let out = alice.finish();
    assert_eq!(out.last().map(String::as_str), Some("bye"));

    // Every message exactly once, in order; the ones sent while alice was away replayed.
    let said: Vec<&String> = out.iter().filter(|l| l.contains("<bob> m")).collect();
    let numbers: Vec<u32> = said.iter().map(|l| said_number(l)).collect();
    assert_eq!(numbers, (0..=10).collect::<Vec<_>>(), "{}", out.join("\n"));
    for line in &said {
        let n = said_number(line);
        assert_eq!(line.contains("(missed)"), (6..=9).contains(&n), "{line:?}");
    }
    let reconnects: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].contains("reconnected"))
        .collect();
    let m5 = out.iter().position(|l| l.ends_with("<bob> m5")).unwrap();
    let m6 = out.iter().position(|l| l.ends_with("<bob> m6")).unwrap();
    assert!(
        reconnects.len() == 1 && m5 < reconnects[0] && reconnects[0] < m6,
        "one reconnect line, between m5 and m6:\n{}",
        out.join("\n")
    );
    server.stop();
}

#[test]
fn chat_logs_in_again_when_its_session_expired() {
    if !python_present("chat_logs_in_again_when_its_session_expired") {
        return;
    }
    // No resume grace: a lost connection ends the session, so the resume gets 410.
    let server = TestServer::start(Config {
        resume_grace: Duration::ZERO,
        ..test_config()
    });
    let proxy = Proxy::start(server.addr);
    let mut bob = watcher(server.addr, "bob", "den");
    let mut alice = script("chat.py", &chat_args(&proxy.port_args(), "alice"), true);
    alice.wait_for_line("* alice joined #den");
    say(&mut bob, 0);
    alice.wait_for_line("#den <bob> m0");
    proxy.cut_now();
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "leave" && e.user == "alice"
    });
    say(&mut bob, 1);
    say(&mut bob, 2);
    proxy.restore();

    let line = alice.wait_for_line("reconnected");
    assert!(
        line.ends_with(
            "* reconnected, 2 missed messages replayed; the session had expired: logged in \
             again and re-joined the rooms"
        ),
        "{line:?}"
    );
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "join" && e.user == "alice"
    });
    alice.wait_for_line("#den (missed) <bob> m2");
    say(&mut bob, 3);
    alice.wait_for_line("#den <bob> m3");
    alice.send_line("/quit");
    let out = alice.finish();
    let numbers: Vec<u32> = out
        .iter()
        .filter(|l| l.contains("<bob> m"))
        .map(|l| said_number(l))
        .collect();
    assert_eq!(numbers, vec![0, 1, 2, 3], "{}", out.join("\n"));
    server.stop();
}

#[test]
fn chat_registers_and_logs_in_again_with_its_password_when_its_session_expired() {
    if !python_present(
        "chat_registers_and_logs_in_again_with_its_password_when_its_session_expired",
    ) {
        return;
    }
    // No resume grace: a lost connection ends the session, so the resume gets 410, and the
    // fresh login of a registered name is refused unless it carries the password.
    let server = TestServer::start(Config {
        resume_grace: Duration::ZERO,
        hash_cost: HashCost::Cheap,
        ..test_config()
    });
    let proxy = Proxy::start(server.addr);
    let mut bob = watcher(server.addr, "bob", "den");
    let mut args = chat_args(&proxy.port_args(), "alice");
    args.extend(["--register", "--password", "alice's password"].map(String::from));
    let mut alice = script("chat.py", &args, true);
    alice.wait_for_line("* registered alice");
    alice.wait_for_line("* alice joined #den");
    say(&mut bob, 0);
    alice.wait_for_line("#den <bob> m0");
    proxy.cut_now();
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "leave" && e.user == "alice"
    });
    say(&mut bob, 1);
    proxy.restore();
    let line = alice.wait_for_line("reconnected");
    assert!(
        line.ends_with(
            "* reconnected, 1 missed messages replayed; the session had expired: logged in \
             again and re-joined the rooms"
        ),
        "{line:?}"
    );
    alice.wait_for_line("#den (missed) <bob> m1");
    alice.send_line("/quit");
    assert_eq!(alice.finish().last().map(String::as_str), Some("bye"));

    // The account stays: --register again just logs in (as the name was registered, whatever
    // case was typed); a wrong password is refused with the server's words.
    let mut args = chat_args(&server.port_args(), "ALICE");
    args.extend(["--register", "--password", "alice's password"].map(String::from));
    let mut again = script("chat.py", &args, true);
    again.wait_for_line("* ALICE is registered already; logging in");
    again.wait_for_line("logged in as alice;");
    again.send_line("/quit");
    assert_eq!(again.finish().last().map(String::as_str), Some("bye"));
    let mut args = chat_args(&server.port_args(), "alice");
    args.extend(["--password", "bob's password"].map(String::from));
    let (status, out, stderr) = script("chat.py", &args, true).finish_any();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        "chat.py: login refused: 403 Access denied.",
        "{out:?}"
    );
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
    let mut a = script("headset_sim.py", &sim_args("hs-a", "1"), false);
    let mut b = script("headset_sim.py", &sim_args("hs-b", "2"), false);
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
    let mut sender = script("input_sender.py", &args, true);
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
fn keepalive_outlives_the_idle_timeout() {
    if !python_present("keepalive_outlives_the_idle_timeout") {
        return;
    }
    // Silent for 2.5 s with an idle timeout of 0.9 s: only the keep-alive pings keep it.
    let server = TestServer::start(Config {
        idle_timeout: Duration::from_millis(900),
        ..test_config()
    });
    let mut args = server.port_args();
    args.extend(["--seconds", "2.5", "--no-joystick"].map(String::from));
    let mut sender = script("input_sender.py", &args, true);
    let out = sender.finish_without_closing_stdin();
    assert!(
        !out.iter()
            .any(|l| l.contains("408") || l.contains("connection lost")),
        "{}",
        out.join("\n")
    );
    assert_eq!(
        out.last().map(String::as_str),
        Some("sent 0 inputs; 0 came back from the server")
    );
    server.stop();
}

#[test]
fn scripts_exit_non_zero_with_the_error_when_login_fails() {
    if !python_present("scripts_exit_non_zero_with_the_error_when_login_fails") {
        return;
    }
    let server = TestServer::start(Config {
        hash_cost: HashCost::Cheap,
        ..test_config()
    });
    let mut taken = Client::connect(server.addr).expect("connect");
    taken.login("taken", "pw").expect("login");
    taken
        .register("owner", "owner's password")
        .expect("register owner");
    let with = |args: &[&str]| {
        let mut all = server.port_args();
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let cases = [
        ("chat.py", with(&["--user", "taken"]), "409"),
        ("chat.py", with(&["--user", "no spaces"]), "422"),
        (
            "chat.py",
            with(&["--user", "owner", "--password", "a guess"]),
            "chat.py: login refused: 403 Access denied.",
        ),
        (
            "chat.py",
            with(&["--user", "newbie", "--register", "--password", "short"]),
            "chat.py: register refused: 422 Invalid password",
        ),
        ("headset_sim.py", with(&["--user", "TAKEN"]), "409"),
        (
            "input_sender.py",
            with(&["--user", "taken", "--no-joystick"]),
            "409",
        ),
    ];
    for (name, args, code) in cases {
        let (status, _, stderr) = script(name, &args, true).finish_any();
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(code), "{name}: no {code} in {stderr:?}");
    }

    // Nobody listening: a clear error, not a traceback.
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port().to_string()
    };
    let nowhere = ["--host", "127.0.0.1", "--port", &closed_port].map(String::from);
    for name in [
        "roomcast_client.py",
        "chat.py",
        "headset_sim.py",
        "input_sender.py",
    ] {
        let mut args = nowhere.to_vec();
        if name == "chat.py" {
            args.extend(["--user", "x"].map(String::from));
        }
        let (status, _, stderr) = script(name, &args, true).finish_any();
        assert_eq!(status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains("cannot connect") && !stderr.contains("Traceback"),
            "{name}: {stderr:?}"
        );
    }
    server.stop();
}

#[test]
fn module_help_and_check_against_a_server() {
    if !python_present("module_help_and_check_against_a_server") {
        return;
    }
    let (status, help, stderr) =
        script("roomcast_client.py", &["--help".into()], false).finish_any();
    assert!(status.success(), "{stderr}");
    assert!(
        help.first().is_some_and(|l| l.starts_with("usage: ")),
        "{help:?}"
    );
    assert!(help.iter().any(|l| l.contains("--port")), "{help:?}");

    let server = TestServer::start(Config::default());
    let mut args = server.port_args();
    args.extend(["--user", "checker"].map(String::from));
    let out = script("roomcast_client.py", &args, false).finish();
    assert_eq!(
        out.first().map(String::as_str),
        Some("Access granted. as checker; idle timeout 120.0 s")
    );
    assert_eq!(out.last().map(String::as_str), Some("rooms: lobby (1)"));
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
    let mut sender = script("input_sender.py", &args, true);
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

/// Starts `examples/python/NAME` with `args`. Without `piped_stdin`, stdin is empty.
fn script(name: &str, args: &[String], piped_stdin: bool) -> Program {
    let mut command = Command::new(PYTHON);
    command
        .arg(example(name))
        .args(args)
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8");
    Program::spawn(command, name, piped_stdin, CHILD_TIMEOUT)
}

/// `--host H --port P --user USER --room den` for chat.py.
fn chat_args(port_args: &[String], user: &str) -> Vec<String> {
    let mut args = port_args.to_vec();
    args.extend(["--user", user, "--room", "den"].map(String::from));
    args
}

/// A Rust client logged in as `user` and in `room`, its join read.
fn watcher(addr: SocketAddr, user: &str, room: &str) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set read timeout");
    client.login(user, "pw").expect("login");
    client.join(room).expect("join");
    wait_for_event(&mut client, |r, e| r == room && e.kind == "list");
    client
}

/// bob says `m{n}` in #den and waits for its echo, so the server has handled it.
fn say(bob: &mut Client, n: u32) {
    let text = format!("m{n}");
    bob.msg("den", &text).expect("msg");
    wait_for_event(bob, |room, e| {
        room == "den" && e.kind == "msg" && e.data == *text
    });
}

/// The number in a chat line that ends with `<bob> m{n}`.
fn said_number(line: &str) -> u32 {
    line.rsplit_once("<bob> m")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("no message number in {line:?}"))
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
