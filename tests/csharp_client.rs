//! The C# client in `clients/csharp/` under Mono: the library, the console example and the
//! Unity example (against the UnityEngine stubs in `clients/csharp/tests/`) compile with
//! `mcs`, warnings as errors; then the C# test program runs its own unit tests, and runs
//! against an embedded server with a Rust client ("bob") in its rooms: login, join, chat both
//! ways, poses on the tick, typed errors, a connection cut mid-frame that resumes with exactly
//! the missed events, an expired session (of a registered account, whose login is answered
//! only once its password is checked) that logs in afresh, a takeover and a shutdown that
//! end it without a reconnect, accounts (register, a wrong password refused with 403, a
//! password change, the new password's login), and the Unity example moving bob's avatar
//! smoothly.
//!
//! Every test is skipped (with the reason on stderr) when `mcs` or `mono` is missing; .ci/run
//! installs them. The C# program prints `step: ...` lines at the points where this side acts
//! (cuts the proxy, sends as bob); each wait has a deadline, and no child outlives its test.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread::{self};
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError, Event, ServerMessage};
use roomcast::config::HashCost;
use roomcast::protocol::{Pose, Rotation, Vec3};
use roomcast::{Config, ServerHandle};
use serde_json::json;
use support::program::{Program, STEP_TIMEOUT};
use support::proxy::Proxy;

/// Longest a C# program may run before it is killed and the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn csharp_unit_tests_pass() {
    let Some(dir) = built("csharp_unit_tests_pass") else {
        return;
    };
    let mut tests = mono(dir, "RoomcastTests.exe", &["unit".into()], false);
    assert_all_passed(&tests.finish());
}

#[test]
fn csharp_client_against_the_server() {
    let Some(dir) = built("csharp_client_against_the_server") else {
        return;
    };
    let server = TestServer::start(Config {
        fps: 10.0,
        ..support::config()
    });
    let proxy = Proxy::start(server.addr);
    let mut bob = watcher(server.addr, "bob", "den");
    let mut args = address_args(proxy.addr);
    args.extend(["--direct-port".into(), server.addr.port().to_string()]);
    args.insert(0, "live".into());
    let mut alice = mono(dir, "RoomcastTests.exe", &args, false);

    alice.wait_for_line("step: joined den");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "join" && e.user == "alice"
    });

    alice.wait_for_line("step: said hello");
    let hello = wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "msg" && e.user == "alice"
    });
    assert_eq!(hello.data, json!({"text": "hello from C# ☕", "n": 1}));
    bob.msg("den", "hi alice ☕").expect("msg");

    alice.wait_for_line("step: heard bob");
    let pose = Pose {
        pos: Vec3 {
            x: 1.0,
            y: 1.7,
            z: 0.25,
        },
        rot: Rotation {
            x: 0.0,
            y: 180.0,
            z: 0.0,
            w: None,
        },
    };
    bob.transform("den", &pose).expect("transform");

    alice.wait_for_line("step: poses sent");
    // The head pose of alice's last transform reaches bob on a tick (x = 29 * 0.1 as a float).
    wait_for_event(&mut bob, |room, e| {
        room == "den"
            && e.kind == "transform"
            && e.user == "alice"
            && (e.data["pos"]["x"].as_f64().unwrap_or_default() - 2.9).abs() < 1e-5
            && e.data["rot"]["w"].is_number()
    });

    // The next frame to alice passes whole (m1), the one after (m2) is cut in half, and the
    // proxy refuses her reconnects until restored.
    alice.wait_for_line("step: errors ok");
    proxy.cut_after(1);
    say(&mut bob, "den", "m1");
    say(&mut bob, "den", "m2");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "away" && e.user == "alice"
    });
    say(&mut bob, "den", "m3");
    say(&mut bob, "den", "m4");
    proxy.restore();
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "back" && e.user == "alice"
    });
    say(&mut bob, "den", "m5");

    // Then the C# side takes its own session over from another connection and logs that out.
    alice.wait_for_line("step: done");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "leave" && e.user == "alice"
    });
    assert_all_passed(&alice.finish());
    server.stop();
}

#[test]
fn csharp_client_logs_in_afresh_when_its_session_expired() {
    let Some(dir) = built("csharp_client_logs_in_afresh_when_its_session_expired") else {
        return;
    };
    // No resume grace: a lost connection ends the session, so the resume gets 410.
    let server = TestServer::start(Config {
        resume_grace: Duration::ZERO,
        ..support::config()
    });
    // carol is a registered account: her logins are answered only once her password is
    // checked off the server's loop, so the client must not send its re-joins behind the login.
    let mut registrar = Client::connect(server.addr).expect("connect");
    let registered = registrar
        .register("carol", "carol's password")
        .expect("register carol");
    assert!(!registered.is_error(), "{registered:?}");
    let proxy = Proxy::start(server.addr);
    let mut bob = watcher(server.addr, "bob", "den");
    let mut args = address_args(proxy.addr);
    args.extend(["--password".into(), "carol's password".into()]);
    args.insert(0, "expired".into());
    let mut carol = mono(dir, "RoomcastTests.exe", &args, false);

    carol.wait_for_line("step: joined den");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "join" && e.user == "carol"
    });
    say(&mut bob, "den", "e0");
    carol.wait_for_line("step: heard e0");
    proxy.cut_now();
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "leave" && e.user == "carol"
    });
    say(&mut bob, "den", "e1");
    say(&mut bob, "den", "e2");
    proxy.restore();
    carol.wait_for_line("step: rejoined");
    wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "join" && e.user == "carol"
    });
    say(&mut bob, "den", "e3");
    carol.wait_for_line("step: ready for shutdown");
    server.stop();
    assert_all_passed(&carol.finish());
}

#[test]
fn csharp_client_registers_and_logs_in_to_an_account() {
    let Some(dir) = built("csharp_client_registers_and_logs_in_to_an_account") else {
        return;
    };
    let server = TestServer::start(Config {
        hash_cost: HashCost::Cheap,
        ..support::config()
    });
    let mut args = address_args(server.addr);
    args.insert(0, "accounts".into());
    let mut dora = mono(dir, "RoomcastTests.exe", &args, false);
    dora.wait_for_line("step: done");
    assert_all_passed(&dora.finish());

    // The server holds what the C# client did: the account, with the changed password.
    let mut check = Client::connect(server.addr).expect("connect");
    check.set_read_timeout(Some(STEP_TIMEOUT)).expect("timeout");
    match check.login("dora", "dora's password") {
        Err(ClientError::Refused { code: 403, msg, .. }) => assert_eq!(msg, "Access denied."),
        other => panic!("the old password: {other:?}"),
    }
    let reply = check
        .login("dora", "dora's new password")
        .expect("the new password");
    assert_eq!(reply.detail["user"], "dora");
    server.stop();
}

#[test]
fn csharp_unity_example_moves_an_avatar_smoothly() {
    let Some(dir) = built("csharp_unity_example_moves_an_avatar_smoothly") else {
        return;
    };
    let server = TestServer::start(Config {
        fps: 10.0,
        ..support::config()
    });
    let mut bob = watcher(server.addr, "bob", "vr");
    let mut args = address_args(server.addr);
    args.insert(0, "unity".into());
    let mut rig = mono(dir, "RoomcastTests.exe", &args, false);

    rig.wait_for_line("step: rig running");
    // The rig's head pose arrives as transform data; its hands travel under "parts", which
    // this server does not forward yet.
    let head = wait_for_event(&mut bob, |room, e| {
        room == "vr" && e.kind == "transform" && e.user == "rig"
    });
    assert_eq!(
        head.data["pos"],
        json!({"x": 0.5, "y": 1.6, "z": -1.0}),
        "{:?}",
        head.data
    );
    assert!(
        (head.data["rot"]["w"].as_f64().unwrap_or_default() - std::f64::consts::FRAC_1_SQRT_2)
            .abs()
            < 1e-6
    );

    // bob walks one metre in a second, as a 50 Hz headset would (51 poses, bounded).
    for step in 0..=50 {
        let pose = Pose {
            pos: Vec3 {
                x: f64::from(step) / 50.0,
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
        bob.transform("vr", &pose).expect("transform");
        thread::sleep(Duration::from_millis(20));
    }
    rig.wait_for_line("step: bob seen");
    bob.leave("vr").expect("leave");
    assert_all_passed(&rig.finish());
    // OnDestroy logged the rig out: it left the lobby at once (a dropped connection would be
    // "away").
    wait_for_event(&mut bob, |room, e| {
        assert_ne!(e.kind, "away", "OnDestroy must log out");
        room == "lobby" && e.kind == "leave" && e.user == "rig"
    });
    server.stop();
}

#[test]
fn csharp_chat_console_example() {
    let Some(dir) = built("csharp_chat_console_example") else {
        return;
    };
    let server = TestServer::start(support::config());
    let mut bob = watcher(server.addr, "bob", "den");
    let mut args = address_args(server.addr);
    args.extend(["--user", "alice", "--room", "den"].map(String::from));
    let mut alice = mono(dir, "ChatConsole.exe", &args, true);

    alice.wait_for_line("* alice joined #den");
    alice.send_line("hello from the console ☕");
    let said = wait_for_event(&mut bob, |room, e| {
        room == "den" && e.kind == "msg" && e.user == "alice"
    });
    assert_eq!(said.data, json!("hello from the console ☕"));
    bob.msg("den", "hi console").expect("msg");
    alice.wait_for_line("#den <bob> hi console");
    alice.send_line("/who");
    alice.wait_for_line("#den * members: alice, bob");
    alice.send_line("/leave nowhere");
    alice.wait_for_line("! 404 You are not in room \"nowhere\".");
    alice.send_line("/quit");
    let out = alice.finish();
    assert_eq!(out.last().map(String::as_str), Some("bye"), "{out:#?}");
    wait_for_event(&mut bob, |room, e| {
        assert_ne!(e.kind, "away", "/quit must log out");
        room == "den" && e.kind == "leave" && e.user == "alice"
    });

    // A registered name: --register makes the account, then only its password logs in.
    let console = |user: &str, password: &str, register: bool| {
        let mut args = address_args(server.addr);
        args.extend(["--user", user, "--password", password].map(String::from));
        if register {
            args.push("--register".into());
        }
        mono(dir, "ChatConsole.exe", &args, true)
    };
    let mut carol = console("carol", "carol's password", true);
    carol.wait_for_line("* logged in as carol");
    carol.send_line("/quit");
    carol.finish();
    let mut intruder = console("carol", "a guess", false);
    intruder.wait_for_line("! 403 Access denied.");
    intruder.wait_for_line("* closed: login refused: 403 Access denied.");
    intruder.finish();
    let mut again = console("CAROL", "carol's password", true);
    again.wait_for_line("* logged in as carol");
    again.send_line("/quit");
    again.finish();
    server.stop();
}

// --- building ------------------------------------------------------------------------------

fn csharp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/csharp")
}

/// The compiled C# programs, built once per test binary; None (with the reason printed) when
/// Mono is not installed.
fn built(test: &str) -> Option<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(dir) => Some(dir),
        Err(reason) => {
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

fn build() -> Result<PathBuf, String> {
    for tool in ["mcs", "mono"] {
        match Command::new(tool).arg("--version").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => return Err(format!("`{tool} --version` exited with {}", output.status)),
            Err(err) => {
                return Err(format!(
                    "{tool} is not available ({err}); install Mono: apt-get install mono-mcs mono-runtime"
                ))
            }
        }
    }
    // One directory per test process, so two runs at once never overwrite each other's
    // assemblies; those of processes that have ended are removed (Linux: /proc tells).
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    if let Ok(entries) = std::fs::read_dir(tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ended = name
                .strip_prefix("csharp-")
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| {
                    Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
                });
            if ended {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let out = tmp.join(format!("csharp-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("create the C# build directory");
    let at = |name: &str| out.join(name).display().to_string();
    let src = csharp_dir();
    let sources = |dir: &str, skip: &[&str]| -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(src.join(dir))
            .expect("list C# sources")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "cs"))
            .filter(|path| !skip.iter().any(|s| path.ends_with(s)))
            .map(|path| path.display().to_string())
            .collect();
        files.sort();
        files
    };
    let lib = at("Roomcast.dll");
    let stubs = at("UnityEngine.dll");
    let sync = at("RoomcastAvatarSync.dll");
    let steps: Vec<(&str, Vec<String>)> = vec![
        (
            "the library",
            [
                vec!["-target:library".into(), format!("-out:{lib}")],
                sources("Roomcast", &[]),
            ]
            .concat(),
        ),
        (
            "the UnityEngine stubs",
            vec![
                "-target:library".into(),
                format!("-out:{stubs}"),
                src.join("tests/UnityStubs.cs").display().to_string(),
            ],
        ),
        (
            "the Unity example",
            vec![
                "-target:library".into(),
                format!("-out:{sync}"),
                format!("-r:{lib}"),
                format!("-r:{stubs}"),
                src.join("examples/Unity/RoomcastAvatarSync.cs")
                    .display()
                    .to_string(),
            ],
        ),
        (
            "the console example",
            vec![
                format!("-out:{}", at("ChatConsole.exe")),
                format!("-r:{lib}"),
                src.join("examples/ChatConsole.cs").display().to_string(),
            ],
        ),
        (
            "the test program",
            [
                vec![
                    format!("-out:{}", at("RoomcastTests.exe")),
                    format!("-r:{lib}"),
                    format!("-r:{stubs}"),
                    format!("-r:{sync}"),
                ],
                sources("tests", &["UnityStubs.cs"]),
            ]
            .concat(),
        ),
    ];
    for (what, args) in steps {
        let output = Command::new("mcs")
            .args(["-nologo", "-warn:4", "-warnaserror+"])
            .args(&args)
            .output()
            .expect("run mcs");
        assert!(
            output.status.success(),
            "mcs failed on {what}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(out)
}

/// The C# program's closing line: `csharp: N passed, 0 failed`, N above 0.
fn assert_all_passed(out: &[String]) {
    let last = out.last().map(String::as_str).unwrap_or_default();
    let passed: u32 = last
        .strip_prefix("csharp: ")
        .and_then(|rest| rest.strip_suffix(" passed, 0 failed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected last line {last:?}\n{}", out.join("\n")));
    assert!(passed > 0, "no C# test ran:\n{}", out.join("\n"));
    assert!(!out.iter().any(|line| line.starts_with("FAIL")));
}

// --- the server and bob ---------------------------------------------------------------------

/// An embedded server, shut down when dropped (also when a test panics).
struct TestServer {
    addr: SocketAddr,
    handle: Option<ServerHandle>,
}

impl TestServer {
    fn start(config: Config) -> TestServer {
        let handle = support::start(config);
        TestServer {
            addr: handle.local_addr(),
            handle: Some(handle),
        }
    }

    /// Shuts down (every client gets 503 "Server shutting down.") and checks the loop ended
    /// cleanly.
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

fn address_args(addr: SocketAddr) -> Vec<String> {
    vec![
        "--host".into(),
        addr.ip().to_string(),
        "--port".into(),
        addr.port().to_string(),
    ]
}

/// A Rust client logged in as `user` and in `room`, its list read.
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

/// bob says `text` in `room` and waits for its echo, so the server has handled it.
fn say(bob: &mut Client, room: &str, text: &str) {
    bob.msg(room, text).expect("msg");
    wait_for_event(bob, |r, e| r == room && e.kind == "msg" && e.data == *text);
}

/// Reads until an event matches and returns it, failing after `STEP_TIMEOUT`.
fn wait_for_event(client: &mut Client, matches: impl Fn(&str, &Event) -> bool) -> Event {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while Instant::now() < deadline {
        match client.recv() {
            Ok(ServerMessage::Events(batch)) => {
                if let Some(event) = batch.events.into_iter().find(|e| matches(&batch.room, e)) {
                    return event;
                }
            }
            Ok(ServerMessage::Reply(reply)) => assert!(!reply.is_error(), "{reply:?}"),
            Err(ClientError::Io(err))
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(err) => panic!("{err}"),
        }
    }
    panic!("no matching event within {STEP_TIMEOUT:?}");
}

// --- a C# program under Mono ----------------------------------------------------------------

/// Starts a C# program under Mono; a stdout line starting with "FAIL" fails any wait.
fn mono(dir: &Path, exe: &str, args: &[String], piped_stdin: bool) -> Program {
    let mut command = Command::new("mono");
    command.arg(dir.join(exe)).args(args);
    let name = format!(
        "{exe} {}",
        args.first().map(String::as_str).unwrap_or_default()
    );
    Program::spawn(command, name, piped_stdin, CHILD_TIMEOUT).failing_on("FAIL")
}
