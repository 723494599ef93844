//! protocol.md §10 "Accounts" and README "Where data lives": accounts and histories kept in a
//! real SQLite file by the real `roomcast` process, across restarts and a `kill -9`.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use roomcast::client::{Client, ClientError, ServerMessage};
use serde_json::json;
use support::{Binary, TIMEOUT};

fn server(dir: &Path) -> Binary {
    Binary::start(
        "",
        &format!("--log-level info --data-dir {}", dir.display()),
    )
}

fn client(server: &Binary) -> Client {
    let mut client = Client::connect(server.addr).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    client
}

/// Stops the server as an operator would (SIGTERM) and waits for it to exit.
fn stop(mut server: Binary) {
    server.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_account_and_a_room_history_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = server(dir.path());
    let mut alice = client(&first);
    let reply = alice.register("alice", "correct horse").expect("register");
    assert_eq!((reply.code, reply.msg.as_str()), (201, "Account created."));
    alice.login("alice", "correct horse").expect("login");
    alice.join("diary").unwrap();
    for text in ["first", "second"] {
        alice.msg("diary", &text).unwrap();
    }
    alice.ping().unwrap();
    stop(first);

    let second = server(dir.path());
    let mut wrong = client(&second);
    match wrong.login("alice", "wrong horse") {
        Err(ClientError::Refused { code: 403, msg, .. }) => assert_eq!(msg, "Access denied."),
        other => panic!("expected 403, got {other:?}"),
    }
    let mut alice = client(&second);
    alice
        .login("alice", "correct horse")
        .expect("the password survived");
    alice.join("diary").unwrap();
    let mut kept = Vec::new();
    let join_seq = loop {
        if let ServerMessage::Events(batch) = alice.recv().unwrap() {
            if batch.room != "diary" {
                continue;
            }
            if batch.history {
                kept.extend(batch.events.iter().map(|e| (e.kind.clone(), e.seq)));
            } else if let Some(join) = batch.events.iter().find(|e| e.kind == "join") {
                break join.seq;
            }
        }
    };
    let msgs: Vec<_> = kept.iter().filter(|(kind, _)| kind == "msg").collect();
    assert_eq!(msgs.len(), 2, "{kept:?}");
    let last_kept = kept.iter().filter_map(|(_, seq)| *seq).max().unwrap();
    assert_eq!(
        join_seq,
        Some(last_kept + 1),
        "seq continues where it stopped"
    );
}

#[test]
fn events_delivered_before_a_kill_9_are_in_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Binary::start(
        "",
        &format!(
            "--log-level info --history 1000000 --rate-limit 0 --data-dir {}",
            dir.path().display()
        ),
    );
    let mut listener = client(&server);
    listener.login("listener", "").unwrap();
    listener.join("busy").unwrap();
    let mut talkers: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = client(&server);
            c.login(&format!("talker{i}"), "").unwrap();
            c.join("busy").unwrap();
            c
        })
        .collect();
    let writers: Vec<_> = talkers
        .iter_mut()
        .map(|c| c.writer())
        .enumerate()
        .map(|(i, writer)| {
            std::thread::spawn(move || {
                let body = |n: u32| {
                    json!({"room": "busy", "type": "msg", "data": {"from": i, "n": n}}).to_string()
                };
                // Heavy chat for up to 3 s; the kill ends it sooner.
                let until = Instant::now() + Duration::from_secs(3);
                let mut n = 0;
                while Instant::now() < until && writer.send_body(body(n).as_bytes()).is_ok() {
                    n += 1;
                }
            })
        })
        .collect();
    // Record when each event reached the listener; kill -9 one second in.
    let kill_at = Instant::now() + Duration::from_secs(1);
    let mut received: Vec<(u64, Instant)> = Vec::new();
    while Instant::now() < kill_at {
        if let Ok(ServerMessage::Events(batch)) = listener.recv() {
            let now = Instant::now();
            received.extend(
                batch
                    .events
                    .iter()
                    .filter_map(|e| e.seq)
                    .map(|seq| (seq, now)),
            );
        }
    }
    let killed = Instant::now();
    server.signal("KILL");
    let _ = server.child.wait();
    for writer in writers {
        let _ = writer.join();
    }
    let db = rusqlite::Connection::open(dir.path().join("roomcast.db")).expect("open the db");
    let mut query = db
        .prepare(
            "SELECT seq FROM events JOIN rooms ON rooms.id = events.room WHERE rooms.name = 'busy'",
        )
        .expect("prepare");
    let stored: BTreeSet<u64> = query
        .query_map([], |row| row.get::<_, i64>(0))
        .expect("query")
        .map(|seq| seq.expect("a seq") as u64)
        .collect();
    let promised: Vec<u64> = received
        .iter()
        .filter(|(_, at)| killed.saturating_duration_since(*at) > Duration::from_millis(100))
        .map(|(seq, _)| *seq)
        .collect();
    assert!(
        promised.len() > 100,
        "only {} events before the kill",
        promised.len()
    );
    let missing: Vec<&u64> = promised
        .iter()
        .filter(|seq| !stored.contains(seq))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events delivered >100 ms before the kill are not in the database: {:?}",
        missing.len(),
        promised.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "{} events delivered before the kill, {} of them >100 ms before, {} stored",
        received.len(),
        promised.len(),
        stored.len()
    );
}

#[test]
fn an_unusable_data_directory_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(
        corrupt.join("roomcast.db"),
        b"this is not a database, just bytes",
    )
    .unwrap();
    for (data_dir, needle) in [(&file, "not a directory"), (&corrupt, "database")] {
        let output = Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--port", "0", "--data-dir"])
            .arg(data_dir)
            .output()
            .expect("run roomcast");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "started on {data_dir:?}: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains(needle),
            "no clear message for {data_dir:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
