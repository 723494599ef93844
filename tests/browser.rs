//! A real browser on the viewer page (protocol.md §10.4): headless Chromium loads `/` from a
//! test server, logs in over the WebSocket, sends a chat message that a TCP client receives,
//! and draws the pose a TCP headset sends. A screenshot is kept in
//! `target/browser/viewer.png`.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it); without it the test prints why it
//! skips.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use roomcast::Config;
use serde_json::json;
use support::{config, start, TestClient};

/// How long one Chromium run may take before the test gives up on it.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(90);
/// Runs of the page the test allows before it must have heard the page (see its comment).
const CHROMIUM_ATTEMPTS: u32 = 3;

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Runs headless Chromium on `url` with `extra` flags, a fresh profile and a virtual time
/// budget (timers run at once, the page gets 4 s of its own time); killed past the deadline.
fn run_chromium(exe: &Path, url: &str, extra: &[&str]) -> Output {
    let profile = std::env::temp_dir().join(format!(
        "roomcast-chromium-{}-{}",
        std::process::id(),
        extra.len()
    ));
    let _ = std::fs::remove_dir_all(&profile);
    let mut child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > CHROMIUM_DEADLINE {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("chromium output");
    let _ = std::fs::remove_dir_all(&profile);
    output
}

#[test]
fn chromium_logs_in_chats_and_draws_a_headset() {
    let Some(exe) = chromium() else {
        println!("skipped: no chromium on PATH (apt-get install chromium; .ci/run does)");
        return;
    };
    let server = start(Config {
        fps: 20.0,
        ..config()
    });
    let addr = server.local_addr();

    let mut headset = TestClient::login(addr, "headset1");
    headset
        .client
        .send(&json!({"room":"vr","type":"join"}))
        .expect("join");
    headset.expect_event("join");
    headset.expect_event("list");
    let pose =
        json!({"pos":{"x":1.25,"y":1.6,"z":-0.75},"rot":{"x":0.0,"y":0.38,"z":0.0,"w":0.92}});
    headset
        .client
        .send(&json!({"room":"vr","type":"transform","data":pose}))
        .expect("pose");

    // Chromium's virtual time does not wait for a WebSocket: on a loaded machine the budget
    // can run out before the page is live and has said its message. Such a run is tried
    // again (each with a guest of its own); the headset must hear one of them.
    let url = format!("http://{addr}/?say=hello%20from%20chromium#vr");
    let (said, dom) = (1..=CHROMIUM_ATTEMPTS)
        .find_map(|attempt| {
            let output = run_chromium(&exe, &url, &["--dump-dom"]);
            let dom = String::from_utf8_lossy(&output.stdout).into_owned();
            assert!(
                output.status.success() && !dom.is_empty(),
                "chromium failed: {}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            // The TCP headset, in the room the page shows, receives the page's message.
            while let Some((room, event)) = headset.next_event_or_timeout() {
                if event.kind == "msg" {
                    assert_eq!(room, "vr");
                    return Some((event, dom));
                }
            }
            println!("attempt {attempt}: the page said nothing before its virtual time ran out");
            None
        })
        .expect("the page's message in one of the attempts");
    assert_eq!(said.data, "hello from chromium");
    assert!(said.user.starts_with("viewer-"), "{said:?}");

    // The page's own state, mirrored in the DOM: live, logged in as that guest, showing vr,
    // with the headset's pose in the member list and on the canvas.
    let body = format!(
        r#"<body data-state="ready" data-me="{}" data-room="vr">"#,
        said.user
    );
    assert!(dom.contains(&body), "{body} in\n{dom}");
    assert!(
        dom.contains(r#"<li data-user="headset1" data-x="1.25" data-z="-0.75">"#),
        "headset1's pose listed:\n{dom}"
    );
    assert!(
        dom.contains(r#"data-poses="1""#),
        "one marker drawn:\n{dom}"
    );
    assert!(dom.contains("hello from chromium"), "the chat shows it");

    // A screenshot of the same scene, kept as an artifact.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).expect("artifact dir");
    let shot = dir.join("viewer.png");
    let _ = std::fs::remove_file(&shot);
    let output = run_chromium(
        &exe,
        &format!("http://{addr}/#vr"),
        &[
            "--window-size=1280,720",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|err| {
        panic!(
            "no screenshot ({err}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000);
    println!("screenshot: {}", shot.display());
    server.shutdown();
    server.join().expect("clean exit");
}
