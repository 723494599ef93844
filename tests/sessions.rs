//! protocol.md §9 "Sessions": sequence numbers, resume after a lost connection, logout and
//! keep-alive, over real sockets with the library's client.

mod support;

use std::time::{Duration, Instant};

use roomcast::client::{Client, ServerMessage};
use serde_json::json;
use support::{config, start, TestClient, TIMEOUT};

/// Logs in a client with auto-reconnect that reads with the test timeout.
fn resilient(addr: std::net::SocketAddr, user: &str) -> Client {
    let mut client = Client::connect(addr).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    client.login(user, "pw").expect("login");
    client.set_auto_reconnect(true);
    client
}

/// Reads events until a msg with this data arrives; returns every msg data seen on the way,
/// history and live, in order.
fn msgs_until(client: &mut Client, last: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    loop {
        if let ServerMessage::Events(batch) = client.recv().expect("recv") {
            for event in batch.events {
                if event.kind == "msg" {
                    seen.push(event.data.clone());
                    if &event.data == last {
                        return seen;
                    }
                }
            }
        }
    }
}

#[test]
fn a_killed_connection_resumes_with_exactly_the_events_it_missed() {
    let server = start(config());
    let addr = server.local_addr();
    let mut listener = resilient(addr, "listener");
    let mut talker = TestClient::login(addr, "talker");
    listener.join("room").unwrap();
    talker.client.join("room").unwrap();
    for i in 0..5 {
        talker.client.msg("room", &json!(i)).unwrap();
    }
    assert_eq!(msgs_until(&mut listener, &json!(4)).len(), 5);
    // The connection dies under the listener (as a Wi-Fi drop would) while the talker goes on.
    listener
        .stream()
        .shutdown(std::net::Shutdown::Both)
        .unwrap();
    for i in 5..15 {
        talker.client.msg("room", &json!(i)).unwrap();
    }
    let rest = msgs_until(&mut listener, &json!(14));
    assert_eq!(
        rest,
        (5..15).map(|i| json!(i)).collect::<Vec<_>>(),
        "none lost, none twice"
    );
    let reconnected = listener.take_reconnected().expect("it reconnected");
    assert!(reconnected.resumed);
    assert!(reconnected.resynced.is_empty());
    // Whatever the talker sent before the listener's resume came as replay, the rest live.
    assert!(reconnected.missed_msgs <= 10);
    // The others were told it was away, then back; it never left.
    let mut seen = Vec::new();
    talker.client.msg("room", &"done").unwrap();
    loop {
        let (room, event) = talker.next_event();
        if room == "room" {
            seen.push((event.kind.clone(), event.user.clone()));
        }
        if event.kind == "msg" && event.data == json!("done") {
            break;
        }
    }
    assert!(
        seen.contains(&("away".into(), "listener".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("back".into(), "listener".into())),
        "{seen:?}"
    );
    assert!(!seen.iter().any(|(kind, _)| kind == "leave"), "{seen:?}");
}

#[test]
fn a_tictactoe_player_survives_a_reconnect_mid_game() {
    let server = start(config());
    let addr = server.local_addr();
    let mut x = resilient(addr, "x");
    let mut o = TestClient::login(addr, "o");
    x.join("ttt").unwrap();
    o.client.join("ttt").unwrap();
    let wait_game = |client: &mut Client, done: &dyn Fn(&serde_json::Value) -> bool| loop {
        if let ServerMessage::Events(batch) = client.recv().expect("recv") {
            if let Some(game) = batch.events.iter().rev().find(|e| e.kind == "game") {
                if done(&game.data) {
                    return game.data.clone();
                }
            }
        }
    };
    let wait_board = |client: &mut Client, cell: usize| {
        wait_game(client, &|state| !state["board"][cell].is_null())
    };
    x.game("ttt", &json!({"start": "tictactoe"})).unwrap();
    wait_game(&mut x, &|state| state["players"]["X"] == "x");
    o.client.game("ttt", &json!({"join": true})).unwrap();
    wait_game(&mut x, &|state| state["status"] == "playing");
    x.game("ttt", &json!({"move": 4})).unwrap();
    wait_board(&mut x, 4);
    x.stream().shutdown(std::net::Shutdown::Both).unwrap();
    o.client.game("ttt", &json!({"move": 0})).unwrap();
    // Back after the lost connection: the seat is still x's, and it is x's turn.
    let state = wait_board(&mut x, 0);
    assert_eq!(state["status"], "playing");
    assert_eq!(state["players"]["X"], "x");
    assert_eq!(state["turn"], "x");
    x.game("ttt", &json!({"move": 8})).unwrap();
    let state = wait_board(&mut x, 8);
    assert_eq!(state["board"][8], "X");
}

#[test]
fn logout_leaves_every_room_at_once() {
    let server = start(config());
    let addr = server.local_addr();
    let mut stayer = TestClient::login(addr, "stayer");
    let mut leaver = TestClient::login(addr, "leaver");
    stayer.expect_event("join");
    let reply = leaver.client.logout().expect("logout");
    assert_eq!((reply.code, reply.msg.as_str()), (200, "Logged out."));
    let (_, event) = stayer.expect_event("leave");
    assert_eq!(event.user, "leaver");
    assert!(matches!(
        leaver.client.recv(),
        Err(roomcast::client::ClientError::Closed)
    ));
}

#[test]
fn an_idle_client_pings_on_its_own_and_stays_connected() {
    let mut config = config();
    config.idle_timeout = Duration::from_millis(600);
    let server = start(config);
    let mut idle = Client::connect(server.local_addr()).unwrap();
    idle.login("idle", "pw").unwrap();
    idle.set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let started = Instant::now();
    // Nothing to read for 2.5 s, four idle timeouts: the client pings every 200 ms.
    let mut events = 0;
    let outcome = loop {
        match idle.recv() {
            Ok(ServerMessage::Events(_)) => events += 1,
            Ok(ServerMessage::Reply(reply)) => break Ok(reply),
            Err(err) => break Err(err),
        }
    };
    assert!(
        matches!(&outcome, Err(roomcast::client::ClientError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "{outcome:?} after {events} events"
    );
    assert!(started.elapsed() >= Duration::from_millis(2400));
    assert_eq!(idle.ping().unwrap().msg, "pong", "still connected");
}
