//! The Python snippets of README.md ("Talk to it") and protocol.md §3.9 ("stream a pose at 90
//! Hz"), taken from the documents as they are and run against a real server: a reader who
//! copies them gets what the documents say.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use roomcast::client::Client;
use support::{config, start, TIMEOUT};

const PYTHON: &str = "python3";

/// The fenced ```python blocks of a document, in order.
fn python_blocks(document: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(document);
    let text = std::fs::read_to_string(&path).expect("the document is readable");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```python") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs `code` with the default port replaced by `port`; the script gets 20 s.
fn run_python(code: &str, port: u16) -> Output {
    let code = code.replace("42069", &port.to_string());
    let mut child = Command::new(PYTHON)
        .args(["-c", &code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("python output")
}

fn python_present(test: &str) -> bool {
    match Command::new(PYTHON).arg("--version").output() {
        Ok(output) if output.status.success() => true,
        _ => {
            eprintln!("skipping {test}: {PYTHON} is not available; install Python 3 to run it");
            false
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn readme_python_snippets_log_in_stream_and_fail_loudly() {
    if !python_present("readme_python_snippets_log_in_stream_and_fail_loudly") {
        return;
    }
    let blocks = python_blocks("README.md");
    let login = blocks
        .iter()
        .find(|b| b.contains("create_connection"))
        .expect("README's Python login snippet");
    let stream = blocks
        .iter()
        .find(|b| b.contains("\"transform\""))
        .expect("README's pose streaming snippet");
    assert!(login.contains("TCP_NODELAY"), "Nagle stays off: {login}");
    let server = start(config());
    // A watcher in the lobby sees the streamed poses on the tick.
    let mut watcher = Client::connect(server.local_addr()).expect("connect");
    watcher.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    watcher.login("watcher", "").expect("login");

    // The two snippets in a row, as a reader pastes them into one session; shortened to half
    // a second of poses.
    let both = format!("{login}\n{}", stream.replace("90 * 5", "45"));
    let output = run_python(&both, server.local_addr().port());
    assert!(
        output.status.success(),
        "{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(text(&output.stdout).contains("Access granted."));
    let mut poses = 0;
    let until = Instant::now() + TIMEOUT;
    while poses == 0 && Instant::now() < until {
        if let Ok(roomcast::client::ServerMessage::Events(batch)) = watcher.recv() {
            poses += batch
                .events
                .iter()
                .filter(|e| e.kind == "transform" && e.user == "alice")
                .count();
        }
    }
    assert!(poses > 0, "the watcher saw alice's poses");

    // alice is still logged in (the watcher holds the lobby, her session waits for a resume):
    // the same snippet now fails, and says so with a non-zero exit.
    let output = run_python(login, server.local_addr().port());
    assert!(!output.status.success(), "{}", text(&output.stdout));
    assert!(
        text(&output.stderr).contains("login failed: 409"),
        "{}",
        text(&output.stderr)
    );
    server.shutdown();
}

#[test]
fn protocol_pose_streaming_snippet_prints_ticks() {
    if !python_present("protocol_pose_streaming_snippet_prints_ticks") {
        return;
    }
    let blocks = python_blocks("protocol.md");
    let snippet = blocks
        .iter()
        .find(|b| b.contains("one second at 90 Hz"))
        .expect("protocol.md §3.9's snippet");
    assert!(
        snippet.contains("TCP_NODELAY"),
        "Nagle stays off: {snippet}"
    );
    let server = start(config());
    let output = run_python(snippet, server.local_addr().port());
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    // "It prints about 20 lines (one per tick at the default --fps 20)".
    let lines = stdout
        .lines()
        .filter(|l| l.starts_with("vr headset1 {'x': "))
        .count();
    assert!((12..=26).contains(&lines), "{lines} lines:\n{stdout}");
    server.shutdown();
}
