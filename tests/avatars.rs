//! protocol.md §11-§13 over real sockets: tracked parts, interest management and shared
//! objects. The rules are unit-tested with an injected clock in src/hub/vr_tests.rs; these
//! check that they hold end to end through the event loop.

mod support;

use roomcast::client::Event;
use serde_json::{json, Value};
use support::{config, start, TestClient};

fn rot() -> Value {
    json!({"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0})
}

fn pose(x: f64, y: f64, z: f64) -> Value {
    json!({"pos": {"x": x, "y": y, "z": z}, "rot": rot()})
}

/// Joins `room` and reads up to its list event (events of other rooms and members before it
/// are skipped).
fn enter(c: &mut TestClient, room: &str) {
    c.client.join(room).unwrap();
    let _ = next_of(c, room, "list");
}

/// The next event of `kind` in `room`, skipping others (joins of later members, ticks).
fn next_of(c: &mut TestClient, room: &str, kind: &str) -> Event {
    loop {
        let (at, event) = c.next_event();
        if at == room && event.kind == kind {
            return event;
        }
    }
}

#[test]
fn a_headset_with_two_hands_is_seen_by_another_member() {
    let server = start(config());
    let addr = server.local_addr();
    let mut headset = TestClient::login(addr, "headset");
    let mut viewer = TestClient::login(addr, "viewer");
    enter(&mut headset, "vr");
    enter(&mut viewer, "vr");
    let _ = next_of(&mut headset, "vr", "join");
    let mut data = pose(0.0, 1.6, 0.0);
    data["parts"] = json!({
        "left_hand": pose(-0.2, 1.2, 0.3),
        "right_hand": pose(0.2, 1.2, 0.3),
    });
    headset
        .client
        .send(&json!({"room": "vr", "type": "transform", "data": data}))
        .unwrap();
    let event = next_of(&mut viewer, "vr", "transform");
    assert_eq!(event.user, "headset");
    assert_eq!(event.data, data, "the head and both hands, as sent");
    // The left hand loses tracking: the next event has the right hand only.
    headset
        .client
        .send(&json!({"room": "vr", "type": "transform",
            "data": {"pos": {"x": 0.1, "y": 1.6, "z": 0.0}, "rot": rot(), "parts": {"left_hand": null}}}))
        .unwrap();
    let event = next_of(&mut viewer, "vr", "transform");
    assert_eq!(event.data["pos"]["x"], 0.1);
    assert_eq!(
        event.data["parts"],
        json!({"right_hand": pose(0.2, 1.2, 0.3)})
    );
    // A part that breaks the rules is a 422 naming it.
    headset
        .client
        .send(&json!({"room": "vr", "type": "transform",
            "data": {"pos": {"x": 0, "y": 1.6, "z": 0}, "rot": rot(), "parts": {"left_hand": {"pos": {"x": "far", "y": 0, "z": 0}, "rot": rot()}}}}))
        .unwrap();
    let reply = loop {
        match headset.client.recv().unwrap() {
            roomcast::client::ServerMessage::Reply(reply) => break reply,
            roomcast::client::ServerMessage::Events(_) => continue, // ticks of its own pose
        }
    };
    assert_eq!(reply.code, 422);
    assert_eq!(
        reply.msg,
        "Invalid transform: data.parts.left_hand.pos.x must be a finite number."
    );
}

#[test]
fn a_ball_is_thrown_between_two_users() {
    let server = start(config());
    let addr = server.local_addr();
    let mut alice = TestClient::login(addr, "alice");
    let mut bob = TestClient::login(addr, "bob");
    enter(&mut alice, "court");
    enter(&mut bob, "court");
    let _ = next_of(&mut alice, "court", "join");
    let claim = json!({"room": "court", "type": "claim", "data": {"object": "ball"}});
    alice.client.send(&claim).unwrap();
    let granted = next_of(&mut bob, "court", "claim");
    assert_eq!(
        (granted.user.as_str(), &granted.data),
        ("alice", &json!({"object": "ball"}))
    );
    let first_seq = granted.seq.expect("a history event");
    let _ = next_of(&mut alice, "court", "claim");
    // bob grabs too: 409, alice holds it.
    bob.client.send(&claim).unwrap();
    let refused = bob.expect_code(409);
    assert_eq!(refused.detail["owner"], "alice");
    // alice carries it and throws: her last update wins, then she lets go.
    for x in [0.5, 1.0, 1.5] {
        alice
            .client
            .send(&json!({"room": "court", "type": "object",
                "data": {"object": "ball", "pos": {"x": x, "y": 1.0, "z": 0.0}, "rot": rot(), "state": {"vx": 3.0}}}))
            .unwrap();
    }
    let mut seen = next_of(&mut bob, "court", "object");
    while seen.data["pos"]["x"] != 1.5 {
        seen = next_of(&mut bob, "court", "object");
    }
    assert_eq!(seen.data["owner"], "alice");
    assert_eq!(seen.data["state"], json!({"vx": 3.0}));
    alice
        .client
        .send(&json!({"room": "court", "type": "release", "data": {"object": "ball"}}))
        .unwrap();
    let released = next_of(&mut bob, "court", "release");
    assert_eq!(released.user, "alice");
    assert_eq!(released.seq, Some(first_seq + 1));
    assert_eq!(released.data["reason"], "release");
    // bob catches it.
    bob.client.send(&claim).unwrap();
    let caught = next_of(&mut alice, "court", "claim");
    assert_eq!(caught.user, "bob");
    bob.client
        .send(&json!({"room": "court", "type": "object",
            "data": {"object": "ball", "pos": {"x": 1.6, "y": 0.9, "z": 0.0}, "rot": rot()}}))
        .unwrap();
    let update = next_of(&mut alice, "court", "object");
    assert_eq!(update.user, "bob");
    assert_eq!(update.data["owner"], "bob");
    assert_eq!(update.data["pos"]["x"], 1.6);
    assert_eq!(update.data["state"], json!({"vx": 3.0}), "the state stays");
    // alice may no longer move it.
    alice
        .client
        .send(&json!({"room": "court", "type": "object", "data": {"object": "ball", "state": 0}}))
        .unwrap();
    loop {
        match alice.client.recv().unwrap() {
            roomcast::client::ServerMessage::Reply(reply) => {
                assert_eq!(reply.code, 403);
                assert_eq!(reply.detail["owner"], "bob");
                break;
            }
            roomcast::client::ServerMessage::Events(_) => continue,
        }
    }
}

#[test]
fn with_interest_nearest_a_far_member_is_not_sent() {
    let mut config = config();
    config.interest_nearest = Some(1);
    let server = start(config);
    let addr = server.local_addr();
    let mut clients: Vec<TestClient> = ["a", "b", "c"]
        .iter()
        .map(|name| TestClient::login(addr, name))
        .collect();
    for c in &mut clients {
        enter(c, "plaza");
    }
    // a at the origin and b 1 m away; once a has seen b, c arrives 10 m away.
    for (c, x) in clients.iter_mut().zip([0.0, 1.0]) {
        c.client
            .send(&json!({"room": "plaza", "type": "transform", "data": pose(x, 1.6, 0.0)}))
            .unwrap();
    }
    while next_of(&mut clients[0], "plaza", "transform").user != "b" {}
    clients[2]
        .client
        .send(&json!({"room": "plaza", "type": "transform", "data": pose(10.0, 1.6, 0.0)}))
        .unwrap();
    let mut seen_by_c = next_of(&mut clients[2], "plaza", "transform");
    while seen_by_c.user == "c" {
        seen_by_c = next_of(&mut clients[2], "plaza", "transform");
    }
    assert_eq!(seen_by_c.user, "b", "c's nearest is b");
    // Every tick a gets holds itself and b, never c. The pong comes after every frame sent
    // before it; those frames are then read back.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let a = &mut clients[0];
    a.client.ping().unwrap();
    a.client
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    let mut users = std::collections::BTreeSet::new();
    while let Ok(message) = a.client.recv() {
        if let roomcast::client::ServerMessage::Events(batch) = message {
            for event in batch.events.iter().filter(|e| e.kind == "transform") {
                users.insert(event.user.clone());
            }
        }
    }
    assert!(
        !users.contains("c"),
        "c is not among a's nearest: {users:?}"
    );
}
