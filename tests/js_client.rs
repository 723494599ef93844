//! The JavaScript client (`clients/js/roomcast.js`) against embedded servers: Node's own test
//! runner runs the module's tests in `clients/js/test/`, which talk to the servers started
//! here over real sockets, and this test passes when every one of them does.
//!
//! What the Node tests get, in environment variables:
//! - `ROOMCAST_ADDR`: a server with the default settings;
//! - `ROOMCAST_PROXY`: a [`Proxy`] to it that can fail like a network (named `main`);
//! - `ROOMCAST_SHORT_ADDR`, `ROOMCAST_SHORT_PROXY`: a server with a 1 s idle timeout and a
//!   0.5 s resume grace, so keep-alive pings and expired sessions take a second, and its
//!   proxy (named `short`);
//! - `ROOMCAST_DOOMED_ADDR`, `ROOMCAST_DOOMED_PROXY`: a server that keeps only 3 history
//!   events per room, so a resume can find its missed events gone, and that the tests may
//!   shut down; and its proxy (both named `doomed`);
//! - `ROOMCAST_CONTROL`: a line-based control port: `main cut_after N`, `main cut_now`,
//!   `main restore` (and the same for `short` and `doomed`), `doomed shutdown`; each
//!   answered `ok`.
//!
//! Skipped, with the reason on stderr, when `node` is not installed (`.ci/run` installs it).
//! Node runs under a deadline and is killed past it; a failure prints its whole output.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use roomcast::{Config, ShutdownHandle};
use support::proxy::Proxy;
use support::{config, start};

const NODE: &str = "node";
/// Longest Node may run before it is killed and the test fails (the tests take a few seconds).
const NODE_TIMEOUT: Duration = Duration::from_secs(60);
/// Node tests there are; fewer means some were lost (a file that failed to load, say).
const MIN_TESTS: usize = 33;
/// Node tests that may be skipped: the WebSocket ones, on a Node without a WebSocket (18).
const MAY_SKIP: usize = 2;

#[test]
fn js_client_tests_pass_against_the_server() {
    let Some(version) = node_version() else {
        eprintln!(
            "js_client_tests_pass_against_the_server: skipped: `{NODE}` is not installed \
             (apt-get install -y nodejs)"
        );
        return;
    };
    let main = start(config());
    let short = start(Config {
        idle_timeout: Duration::from_secs(1),
        resume_grace: Duration::from_millis(500),
        ..config()
    });
    let doomed = start(Config {
        history: 3,
        ..config()
    });
    let proxies = vec![
        ("main".to_owned(), Proxy::start(main.local_addr())),
        ("short".to_owned(), Proxy::start(short.local_addr())),
        ("doomed".to_owned(), Proxy::start(doomed.local_addr())),
    ];
    let env = [
        ("ROOMCAST_ADDR", main.local_addr().to_string()),
        ("ROOMCAST_PROXY", proxies[0].1.addr.to_string()),
        ("ROOMCAST_SHORT_ADDR", short.local_addr().to_string()),
        ("ROOMCAST_SHORT_PROXY", proxies[1].1.addr.to_string()),
        ("ROOMCAST_DOOMED_ADDR", doomed.local_addr().to_string()),
        ("ROOMCAST_DOOMED_PROXY", proxies[2].1.addr.to_string()),
    ];
    let control = Control::start(proxies, doomed.shutdown_handle());

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js");
    let mut command = Command::new(NODE);
    // Node 20 has a WebSocket client behind this flag (Node 22 has it by default); without
    // it the WebSocket tests skip themselves.
    if node_accepts("--experimental-websocket") {
        command.arg("--experimental-websocket");
    }
    command
        .arg("--test")
        .arg("--test-reporter=tap")
        .args(test_files(&dir.join("test")))
        .current_dir(&dir)
        .envs(env)
        .env("ROOMCAST_CONTROL", control.addr.to_string())
        .stdin(Stdio::null());
    let started = Instant::now();
    let (status, stdout, stderr) = run_bounded(command, NODE_TIMEOUT);
    let took = started.elapsed();
    drop(control);
    let report = format!("node {version}, {took:.1?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}");

    let count_of = |name: &str| -> Option<usize> {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("# {name} ")))
            .and_then(|n| n.trim().parse().ok())
    };
    let count = |name: &str| -> usize {
        count_of(name).unwrap_or_else(|| panic!("no \"# {name}\" line in the TAP report\n{report}"))
    };
    assert_eq!(status, Some(0), "node --test failed\n{report}");
    assert_eq!(count("fail"), 0, "{report}");
    // Older Node versions may not report cancellations.
    assert_eq!(count_of("cancelled").unwrap_or(0), 0, "{report}");
    assert!(
        count("tests") >= MIN_TESTS,
        "only {} Node tests ran, expected at least {MIN_TESTS}\n{report}",
        count("tests")
    );
    // Only the WebSocket tests may skip, and only for want of a WebSocket in this Node.
    let skips: Vec<&str> = stdout.lines().filter(|l| l.contains("# SKIP")).collect();
    assert!(
        skips.len() <= MAY_SKIP && skips.iter().all(|l| l.contains("has no WebSocket")),
        "unexpected skips: {skips:#?}\n{report}"
    );
    assert_eq!(count("pass") + skips.len(), count("tests"), "{report}");
    // The summary, skips and their reasons included (visible with --nocapture).
    for line in stdout.lines() {
        if line.starts_with("# ") && !line.starts_with("# Subtest") || line.contains("# SKIP") {
            println!("{line}");
        }
    }
    println!("node {version}: {took:.1?}");
    main.shutdown();
    short.shutdown();
    doomed.shutdown();
}

/// `node --version`, or None when Node is not installed.
fn node_version() -> Option<String> {
    let out = Command::new(NODE).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether this Node starts with the flag (unknown flags are an error).
fn node_accepts(flag: &str) -> bool {
    Command::new(NODE)
        .args([flag, "-e", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The test files, named explicitly: how Node reads a directory argument differs by version.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("clients/js/test exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.test.mjs in {}", dir.display());
    files
}

/// Runs a command to its end or kills it at the deadline; returns its exit code (None when
/// killed or ended by a signal), stdout and stderr.
fn run_bounded(mut command: Command, timeout: Duration) -> (Option<i32>, String, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().expect("wait for node") {
            Some(status) => break status.code(),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    let text = |handle: JoinHandle<String>| handle.join().unwrap_or_default();
    let (out, err) = (text(stdout), text(stderr));
    if status.is_none() {
        return (None, out, format!("{err}\n(killed after {timeout:?})"));
    }
    (status, out, err)
}

/// The control port: the Node tests cut and restore the proxies' connections and shut the
/// doomed server down through it, one command per line.
struct Control {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<(String, Proxy)>>>,
}

impl Control {
    fn start(proxies: Vec<(String, Proxy)>, doomed: ShutdownHandle) -> Control {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the control port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("control address");
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => serve(stream, &proxies, &doomed),
                        Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                            thread::sleep(Duration::from_millis(5));
                        }
                        Err(err) => panic!("control accept: {err}"),
                    }
                }
                proxies
            })
        };
        Control {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // The proxies come back and are dropped here: their connections are cut.
            let _ = thread.join();
        }
    }
}

/// Answers the commands of one control connection until it closes (or is silent for 5 s).
fn serve(stream: TcpStream, proxies: &[(String, Proxy)], doomed: &ShutdownHandle) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else {
            return;
        };
        let answer = match execute(line.split_whitespace().collect(), proxies, doomed) {
            Ok(()) => "ok".to_owned(),
            Err(err) => format!("error: {err}"),
        };
        if writeln!(writer, "{answer}").is_err() {
            return;
        }
    }
}

fn execute(
    words: Vec<&str>,
    proxies: &[(String, Proxy)],
    doomed: &ShutdownHandle,
) -> Result<(), String> {
    if words == ["doomed", "shutdown"] {
        doomed.shutdown();
        return Ok(());
    }
    let [name, action, rest @ ..] = words.as_slice() else {
        return Err(format!("not a command: {words:?}"));
    };
    let proxy = proxies
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
        .ok_or_else(|| format!("no proxy named {name}"))?;
    match (*action, rest) {
        ("cut_after", [frames]) => {
            let frames = frames.parse().map_err(|err| format!("{frames}: {err}"))?;
            proxy.cut_after(frames);
        }
        ("cut_now", []) => proxy.cut_now(),
        ("restore", []) => proxy.restore(),
        _ => return Err(format!("unknown action {action} {rest:?}")),
    }
    Ok(())
}
