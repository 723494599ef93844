//! protocol.md, "Client messages": login, rooms, join, leave, list, msg and disconnect over
//! real sockets with the library's client.

mod support;

use std::io::Write;

use roomcast::client::{ClientError, ServerMessage};
use serde_json::json;
use support::{config, framed, start, RawConn, TestClient};

fn without_resume() -> roomcast::Config {
    roomcast::Config {
        resume_grace: std::time::Duration::ZERO,
        ..config()
    }
}

#[test]
fn the_rust_client_chats_across_rooms() {
    let server = start(config());
    let addr = server.local_addr();
    let mut alice = TestClient::login(addr, "alice");
    let mut bob = TestClient::login(addr, "bob");
    alice.expect_event("join"); // bob joined the lobby

    alice.client.join("vr").unwrap();
    let (room, join) = alice.expect_event("join");
    assert_eq!((room.as_str(), join.user.as_str()), ("vr", "alice"));
    assert_eq!(alice.expect_event("list").1.data, json!(["alice"]));

    alice
        .client
        .msg("vr", &json!({"hello": [1, 2.5, null]}))
        .unwrap();
    assert_eq!(
        alice.expect_event("msg").1.data,
        json!({"hello": [1, 2.5, null]})
    );

    // bob joins late: history first (alice's join and msg), then his join, then the list.
    bob.client.join("vr").unwrap();
    match bob.client.recv().unwrap() {
        ServerMessage::Events(batch) => {
            assert!(batch.history);
            assert_eq!(batch.room, "vr");
            let kinds: Vec<&str> = batch.events.iter().map(|e| e.kind.as_str()).collect();
            assert_eq!(kinds, ["join", "msg"]);
        }
        other => panic!("expected history, got {other:?}"),
    }
    assert_eq!(bob.expect_event("join").1.user, "bob");
    assert_eq!(bob.expect_event("list").1.data, json!(["alice", "bob"]));
    assert_eq!(alice.expect_event("join").1.user, "bob");

    bob.client.leave("vr").unwrap();
    assert_eq!(bob.expect_event("leave").1.user, "bob");
    assert_eq!(alice.expect_event("leave").1.user, "bob");

    let rooms = alice.client.rooms().unwrap();
    assert_eq!(
        rooms.detail,
        json!({"rooms": [{"room": "lobby", "users": 2}, {"room": "vr", "users": 1}]})
    );
    match bob
        .client
        .msg("vr", "not a member")
        .map(|_| bob.client.recv_reply())
    {
        Ok(Err(ClientError::Refused { code, detail, .. })) => {
            assert_eq!(code, 404);
            assert_eq!(detail, json!({"room": "vr", "type": "msg"}));
        }
        other => panic!("expected 404, got {other:?}"),
    }
}

#[test]
fn fifty_clients_in_one_room_all_receive_one_msg() {
    let server = start(config());
    let addr = server.local_addr();
    let mut clients: Vec<TestClient> = (0..50)
        .map(|i| {
            let mut c = TestClient::login(addr, &format!("user{i}"));
            c.client.join("arena").unwrap();
            c
        })
        .collect();
    // Drain each client's own join and list plus the joins of everyone after it.
    for (i, c) in clients.iter_mut().enumerate() {
        let mut arena_joins = 0;
        while arena_joins < 50 - i {
            let (room, event) = c.next_event();
            if room == "arena" && event.kind == "join" {
                arena_joins += 1;
            }
        }
    }
    clients[17].client.msg("arena", "one for all").unwrap();
    for c in &mut clients {
        loop {
            let (room, event) = c.next_event();
            if room == "arena" && event.kind == "msg" {
                assert_eq!(event.data, "one for all");
                assert_eq!(event.user, "user17");
                break;
            }
            assert!(
                room == "lobby" || event.kind == "list",
                "unexpected {room} {event:?}"
            );
        }
    }
}

#[test]
fn abrupt_disconnect_mid_frame_is_a_leave_in_every_room() {
    // Sessions end with their connections (--resume-grace 0); tests/sessions.rs has the
    // default, where a lost connection is kept for a resume.
    let server = start(without_resume());
    let addr = server.local_addr();
    let mut watcher = TestClient::login(addr, "watcher");
    watcher.client.join("side").unwrap();
    watcher.expect_event("join");
    watcher.expect_event("list");

    let mut raw = RawConn::connect(addr);
    raw.write(&framed(
        json!({"system": "login", "options": {"user": "ghost"}})
            .to_string()
            .as_bytes(),
    ));
    raw.write(&framed(br#"{"room":"side","type":"join"}"#));
    assert_eq!(raw.read_frame()["response"]["code"], 202);
    watcher.expect_event("join");
    watcher.expect_event("join");
    // Half a frame, then gone.
    raw.stream.write_all(&[0, 0, 0, 50, b'{']).unwrap();
    drop(raw);
    let mut left = [watcher.expect_event("leave"), watcher.expect_event("leave")];
    left.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(left[0].0, "lobby");
    assert_eq!(left[1].0, "side");
    assert!(left.iter().all(|(_, e)| e.user == "ghost"));
}

#[test]
fn user_names_are_unique_ignoring_case_and_free_again_after_disconnect() {
    // Sessions end with their connections (--resume-grace 0); tests/sessions.rs has the
    // default, where a lost connection is kept for a resume.
    let server = start(without_resume());
    let addr = server.local_addr();
    let tibi = TestClient::login(addr, "Tibi");
    let mut other = TestClient::connect(addr);
    match other.client.login("tibi", "x") {
        Err(ClientError::Refused { code: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }
    drop(tibi);
    // The server notices the close on its next pass; retry briefly.
    let deadline = std::time::Instant::now() + support::TIMEOUT;
    loop {
        match other.client.login("tibi", "x") {
            Ok(reply) => {
                assert_eq!(reply.detail["user"], json!("tibi"));
                assert!(reply.detail["resume"].is_string(), "a resume token");
                break;
            }
            Err(ClientError::Refused { code: 409, .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(err) => panic!("{err}"),
        }
    }
    other.expect_event("join");
}

#[test]
fn shutdown_sends_503_to_everyone_and_the_server_stops() {
    let server = start(config());
    let addr = server.local_addr();
    let mut a = TestClient::login(addr, "a");
    let mut raw = RawConn::connect(addr);
    raw.write(&framed(br#"{"system":"ping"}"#));
    raw.read_frame();
    server.shutdown();
    let reply = a.expect_code(503);
    assert_eq!(reply.msg, "Server shutting down.");
    assert_eq!(raw.read_frame()["response"]["msg"], "Server shutting down.");
    assert!(raw.is_closed());
    server.join().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "listener closed"
    );
}
