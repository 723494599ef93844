//! Protocol rules, tested against the hub alone with an injected clock: no sockets, no sleeps.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use serde_json::json;

use super::testing::{code, flatten, Harness, T0};
use super::*;
use crate::transport::TransportError;

const MS: Duration = Duration::from_millis(1);

/// The defaults, but with sessions ending with their connections (`--resume-grace 0`).
fn without_resume() -> Config {
    Config {
        resume_grace: Duration::ZERO,
        ..Config::default()
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn msg(room: &str, data: Value) -> Value {
    json!({"room": room, "type": "msg", "data": data})
}

fn join(room: &str) -> Value {
    json!({"room": room, "type": "join"})
}

fn pose(x: f64) -> Value {
    json!({"pos": {"x": x, "y": 1.6, "z": 0.0}, "rot": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}})
}

fn transform(room: &str, x: f64) -> Value {
    json!({"room": room, "type": "transform", "data": pose(x)})
}

#[test]
fn ping_and_rooms_work_before_login() {
    let mut h = Harness::default();
    let c = h.connect();
    h.advance(250 * MS);
    h.send(c, json!({"system": "ping"}));
    let reply = h.take(c);
    assert_eq!(
        reply,
        vec![
            json!({"info": "system", "response": {"time": T0 + 0.25, "code": 200, "msg": "pong", "detail": {}}})
        ]
    );
    h.send(c, json!({"system": "rooms"}));
    assert_eq!(
        h.take(c)[0]["response"]["detail"],
        json!({"rooms": [{"room": "lobby", "users": 0}]})
    );
}

#[test]
fn login_grants_access_then_joins_the_lobby() {
    let mut h = Harness::default();
    let c = h.connect();
    h.send(
        c,
        json!({"system": "login", "options": {"user": "Tibi", "pass": "1234"}}),
    );
    let frames = h.take(c);
    assert_eq!(frames[0]["info"], "system");
    assert_eq!(frames[0]["response"]["code"], 202);
    assert_eq!(frames[0]["response"]["msg"], "Access granted.");
    let detail = &frames[0]["response"]["detail"];
    assert_eq!(detail["user"], "Tibi");
    assert_eq!(detail["idle_timeout"], 120.0);
    let token = detail["resume"].as_str().unwrap();
    assert!(
        token.len() == 32 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    let events = flatten(&frames[1..]);
    assert_eq!(
        events,
        vec![
            json!({"time": T0, "user": "Tibi", "type": "join", "seq": 1, "data": "", "room": "lobby"}),
            json!({"time": T0, "user": "Tibi", "type": "list", "data": ["Tibi"], "room": "lobby"}),
        ]
    );
}

#[test]
fn login_refusals() {
    let mut h = Harness::default();
    let c = h.connect();
    h.send(
        c,
        json!({"system": "login", "options": {"user": "bad name"}}),
    );
    assert_eq!(code(&h.take(c)[0]), 422);
    let _tibi = h.user("Tibi");
    h.send(c, json!({"system": "login", "options": {"user": "tIBI"}}));
    let reply = h.take(c);
    assert_eq!(code(&reply[0]), 409, "names are unique ignoring ASCII case");
    let anna = h.user("anna");
    h.send(
        anna,
        json!({"system": "login", "options": {"user": "anna2"}}),
    );
    let reply = h.take(anna);
    assert_eq!(code(&reply[0]), 409);
    assert!(reply[0]["response"]["msg"]
        .as_str()
        .unwrap()
        .contains("Already logged in"));
}

#[test]
fn room_messages_need_login_and_errors_carry_room_and_type() {
    let mut h = Harness::default();
    let c = h.connect();
    // 401 answers before the invalid room name's 422.
    h.send(c, msg("", json!(1)));
    let reply = h.take(c);
    assert_eq!(code(&reply[0]), 401);
    assert_eq!(reply[0]["info"], "error");
    assert_eq!(
        reply[0]["response"]["detail"],
        json!({"room": "", "type": "msg"})
    );
    // 400 beats 401, and still echoes what could be read.
    h.send(c, json!({"room": "a", "type": "msg"}));
    let reply = h.take(c);
    assert_eq!(code(&reply[0]), 400);
    assert_eq!(
        reply[0]["response"]["detail"],
        json!({"room": "a", "type": "msg"})
    );
}

#[test]
fn error_precedence_after_login() {
    let mut h = Harness::default();
    let c = h.user("u");
    h.send(c, msg("bad\u{1}room", json!(1)));
    assert_eq!(code(&h.take(c)[0]), 422, "invalid name before not-joined");
    h.send(
        c,
        json!({"room": "elsewhere", "type": "transform", "data": {"pos": 1}}),
    );
    let reply = h.take(c);
    assert_eq!(code(&reply[0]), 422, "invalid pose before not-joined");
    assert_eq!(
        reply[0]["response"]["detail"],
        json!({"room": "elsewhere", "type": "transform"})
    );
    for kind in ["leave", "list"] {
        h.send(c, json!({"room": "elsewhere", "type": kind}));
        assert_eq!(code(&h.take(c)[0]), 404, "{kind}");
    }
    h.send(c, msg("elsewhere", json!(1)));
    assert_eq!(code(&h.take(c)[0]), 404);
    h.send(c, transform("elsewhere", 1.0));
    assert_eq!(code(&h.take(c)[0]), 404);
    h.send(c, join("lobby"));
    assert_eq!(code(&h.take(c)[0]), 409);
    h.send(c, json!({"room": "lobby", "type": "dance"}));
    assert_eq!(code(&h.take(c)[0]), 400);
}

#[test]
fn malformed_bodies_get_400_and_the_connection_stays() {
    let mut h = Harness::default();
    let c = h.user("u");
    for body in [
        &b"nope"[..],
        b"[1]",
        b"\xff\xfe",
        b"{\"system\":1}",
        b"{\"system\":\"dance\"}",
        b"{}",
    ] {
        h.send_raw(c, body);
        assert_eq!(
            code(&h.take(c)[0]),
            400,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(h.closed.is_empty());
    h.send(c, json!({"system": "ping"}));
    assert_eq!(code(&h.take(c)[0]), 200);
}

#[test]
fn framing_errors_answer_then_close_and_others_see_a_leave() {
    // The disconnect of --resume-grace 0: sessions end with their connections.
    let mut h = Harness::new(without_resume());
    let a = h.user("a");
    let b = h.user("b");
    h.take(a);
    let too_large = TransportError::TooLarge {
        len: 70000,
        max: 65536,
    };
    h.hub
        .handle(h.now, Input::Malformed(b, too_large.problem()));
    h.pump();
    let reply = h.take(b);
    assert_eq!(code(&reply[0]), 413);
    assert_eq!(reply[0]["response"]["detail"], json!({"max_frame": 65536}));
    assert!(h.closed.contains(&b));
    assert_eq!(kinds(&h.events(a)), ["leave"]);
    let c = h.user("c");
    let zero = TransportError::ZeroLength.problem();
    h.hub.handle(h.now, Input::Malformed(c, zero));
    h.pump();
    assert_eq!(code(&h.take(c)[0]), 400);
    assert!(h.closed.contains(&c));
}

#[test]
fn join_sends_history_then_join_then_list() {
    let mut h = Harness::new(Config {
        history: 2,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, join("r"));
    for i in 0..3 {
        h.send(a, msg("r", json!(i)));
    }
    h.take(a);
    let b = h.user("b");
    h.take(a);
    h.send(b, join("r"));
    let frames = h.take(b);
    assert_eq!(frames[0]["history"], true);
    // The last 2 of join(a), msg 0, msg 1, msg 2, oldest first.
    let history: Vec<&Value> = frames[0]["payload"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["data"])
        .collect();
    assert_eq!(history, [&json!(1), &json!(2)]);
    let events = flatten(&frames[1..]);
    assert_eq!(kinds(&events), ["join", "list"]);
    assert_eq!(events[1]["data"], json!(["a", "b"]));
    assert!(frames[1].get("history").is_none());
    // The old member sees the join, not the list.
    assert_eq!(kinds(&h.events(a)), ["join"]);
}

#[test]
fn history_off_sends_no_history_frame() {
    let mut h = Harness::new(Config {
        history: 0,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, msg("lobby", json!("hi")));
    let b = h.user("b");
    h.send(b, join("lobby"));
    let _ = h.take(b);
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": "c"}}));
    let frames = h.take(c);
    assert!(
        frames.iter().all(|f| f.get("history").is_none()),
        "{frames:?}"
    );
}

#[test]
fn msg_reaches_every_member_once_with_data_untouched() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    let outsider = h.user("o");
    h.send(a, join("r"));
    h.send(b, join("r"));
    for id in [a, b, outsider] {
        h.take(id);
    }
    h.send(a, msg("r", json!("hi")));
    for id in [a, b] {
        let events = h.events(id);
        assert_eq!(
            events,
            vec![
                json!({"time": T0, "user": "a", "type": "msg", "seq": 3, "data": "hi", "room": "r"})
            ]
        );
    }
    assert!(h.take(outsider).is_empty());
    h.send(a, msg("r", Value::Null));
    assert_eq!(h.events(b)[0]["data"], Value::Null);
}

#[test]
fn msg_data_is_forwarded_byte_for_byte() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.take(a);
    let body = br#"{"room":"lobby","type":"msg","data":{"f":1.50, "n" : 1e2, "big": 123456789012345678901234567890}}"#;
    h.hub.handle(h.now, Input::Frame(a, body));
    let mut got = None;
    while let Some(output) = h.hub.poll_output() {
        if let Output::Send { frame, .. } = output {
            got = Some(frame.body());
        }
    }
    let body = String::from_utf8(got.unwrap().to_vec()).unwrap();
    assert!(
        body.contains(r#""data":{"f":1.50, "n" : 1e2, "big": 123456789012345678901234567890}"#),
        "{body}"
    );
}

#[test]
fn events_of_one_pass_are_batched_into_one_frame() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.take(a);
    h.take(b);
    for i in 0..3 {
        h.feed(a, msg("lobby", json!(i)));
        h.feed(b, msg("lobby", json!(i)));
    }
    h.pump();
    let frames = h.take(b);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["payload"].as_array().unwrap().len(), 6);
    assert_eq!(h.take(a), frames, "every member sees one order");
}

#[test]
fn replies_come_after_the_events_their_cause_produced() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.take(a);
    h.feed(a, msg("lobby", json!(1)));
    h.hub
        .handle(h.now, Input::Frame(a, br#"{"system":"ping"}"#));
    h.pump();
    let frames = h.take(a);
    assert_eq!(frames[0]["info"], "user");
    assert_eq!(frames[1]["response"]["msg"], "pong");
}

#[test]
fn leave_reaches_the_leaver_and_empty_rooms_vanish() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, join("r"));
    h.send(b, join("r"));
    h.send(a, msg("r", json!("hello")));
    h.take(a);
    h.take(b);
    h.send(a, json!({"room": "r", "type": "leave", "data": ""}));
    assert_eq!(
        h.events(a),
        vec![json!({"time": T0, "user": "a", "type": "leave", "seq": 4, "data": "", "room": "r"})]
    );
    assert_eq!(kinds(&h.events(b)), ["leave"]);
    h.send(b, json!({"room": "r", "type": "leave"}));
    h.send(b, json!({"system": "rooms"}));
    let reply = h.take(b).pop().unwrap();
    assert_eq!(
        reply["response"]["detail"]["rooms"],
        json!([{"room": "lobby", "users": 2}])
    );
    // A removed room's history goes with it.
    h.send(a, join("r"));
    assert!(h.take(a).iter().all(|f| f.get("history").is_none()));
    // Leaving the lobby is allowed, and the lobby stays.
    h.send(a, json!({"room": "lobby", "type": "leave"}));
    h.send(b, json!({"room": "lobby", "type": "leave"}));
    h.send(b, json!({"system": "rooms"}));
    let reply = h.take(b).pop().unwrap();
    assert_eq!(
        reply["response"]["detail"]["rooms"],
        json!([{"room": "lobby", "users": 0}, {"room": "r", "users": 1}])
    );
}

#[test]
fn disconnect_leaves_every_room() {
    // The disconnect of --resume-grace 0: sessions end with their connections.
    let mut h = Harness::new(without_resume());
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, join("r"));
    h.send(b, join("r"));
    h.take(b);
    h.hub.handle(h.now, Input::Closed(a));
    h.pump();
    let events = h.events(b);
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e["type"] == "leave" && e["user"] == "a"));
    let rooms: HashSet<&str> = events.iter().map(|e| e["room"].as_str().unwrap()).collect();
    assert_eq!(rooms, HashSet::from(["lobby", "r"]));
    assert_eq!(h.hub.session_count(), 1);
    // The name is free again.
    let _again = h.user("A");
}

#[test]
fn rooms_lists_every_room_sorted_with_counts() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, join("zeta"));
    h.send(b, join("Alpha"));
    h.send(b, join("zeta"));
    h.send(a, json!({"system": "rooms"}));
    let reply = h.take(a).pop().unwrap();
    assert_eq!(
        reply["response"]["detail"]["rooms"],
        json!([{"room": "Alpha", "users": 1}, {"room": "lobby", "users": 2}, {"room": "zeta", "users": 2}])
    );
}

#[test]
fn list_goes_to_the_requester_only() {
    let mut h = Harness::default();
    let a = h.user("b");
    let b = h.user("a");
    h.take(a);
    h.send(b, json!({"room": "lobby", "type": "list", "data": ""}));
    assert!(h.take(a).is_empty());
    assert_eq!(
        h.events(b),
        vec![json!({"time": T0, "user": "a", "type": "list", "data": ["a", "b"], "room": "lobby"})]
    );
}

// ---- Headset transforms ----

#[test]
fn poses_are_coalesced_into_one_frame_per_tick() {
    let mut h = Harness::default(); // fps 20: ticks every 50 ms
    let a = h.user("a");
    let b = h.user("b");
    h.take(a);
    h.take(b);
    for i in 0..50 {
        h.send(a, transform("lobby", i as f64));
    }
    assert!(h.take(b).is_empty(), "poses wait for the tick");
    h.advance(49 * MS);
    assert!(h.take(b).is_empty());
    h.advance(MS);
    let frames = h.take(b);
    assert_eq!(frames.len(), 1);
    // b joined after nobody had a pose, so its first tick is a snapshot: a's latest pose.
    assert_eq!(
        frames[0],
        json!({"info": "user", "room": "lobby", "payload": [
            {"time": T0 + 0.05, "user": "a", "type": "transform", "data": pose(49.0)}]})
    );
    assert_eq!(
        h.take(a),
        frames,
        "the sender gets the tick too, same bytes"
    );
    // Nothing changed: no frame at the next tick. An equal pose is not a change.
    h.send(a, transform("lobby", 49.0));
    h.advance(100 * MS);
    assert!(h.take(b).is_empty());
    h.send(a, transform("lobby", 50.0));
    h.send(b, transform("lobby", 7.0));
    h.advance(50 * MS);
    let events = h.events(b);
    assert_eq!(kinds(&events), ["transform", "transform"]);
}

#[test]
fn tick_cadence_follows_fps_and_skips_missed_ticks() {
    let mut h = Harness::new(Config {
        fps: 10.0,
        ..Config::default()
    });
    let a = h.user("a");
    h.take(a);
    let mut times = Vec::new();
    for i in 0..100 {
        h.send(a, transform("lobby", i as f64));
        h.advance(10 * MS);
        times.extend(
            h.take(a)
                .iter()
                .map(|f| f["payload"][0]["time"].as_f64().unwrap()),
        );
    }
    // One second at 10 fps: ticks at 0.1, 0.2, ... 1.0, exactly on the grid.
    assert_eq!(times.len(), 10);
    for (i, t) in times.iter().enumerate() {
        assert!((t - (T0 + 0.1 * (i + 1) as f64)).abs() < 1e-6, "{times:?}");
    }
    // A loop that wakes 350 ms late sends one tick, not a burst of three.
    h.send(a, transform("lobby", -1.0));
    h.now += 350 * MS;
    h.hub.handle_timeout(h.now);
    h.pump();
    assert_eq!(h.take(a).len(), 1);
    assert_eq!(
        h.hub.poll_timeout(),
        Some(h.hub.housekeeping.deadline()),
        "no pose work, no tick deadline: only the coarse timeout check remains"
    );
}

#[test]
fn joiner_gets_a_snapshot_then_changes_only() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, transform("lobby", 1.0));
    h.send(b, transform("lobby", 2.0));
    h.advance(50 * MS);
    h.take(a);
    h.take(b);
    let c = h.user("c");
    h.take(a);
    h.advance(50 * MS);
    let snapshot = h.events(c);
    let users: HashSet<&str> = snapshot
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, HashSet::from(["a", "b"]));
    assert!(h.take(a).is_empty(), "a snapshot goes to the joiner only");
    h.send(b, transform("lobby", 3.0));
    h.advance(50 * MS);
    let events = h.events(c);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["user"], "b");
}

#[test]
fn leaving_drops_the_pose() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, join("r"));
    h.send(b, join("r"));
    h.send(a, transform("r", 1.0));
    h.send(a, json!({"room": "r", "type": "leave"}));
    h.advance(50 * MS);
    assert!(h.events(b).iter().all(|e| e["type"] != "transform"));
    let c = h.user("c");
    h.send(c, join("r"));
    h.send(b, transform("r", 5.0));
    h.advance(50 * MS);
    let snapshot: Vec<Value> = h
        .events(c)
        .into_iter()
        .filter(|e| e["type"] == "transform")
        .collect();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0]["user"], "b");
}

#[test]
fn backlogged_clients_skip_ticks_and_get_a_snapshot_when_drained() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, transform("lobby", 1.0));
    h.advance(50 * MS);
    h.take(a);
    h.take(b);
    h.hub.handle(h.now, Input::Backlogged(b));
    for i in 0..5 {
        h.send(a, transform("lobby", i as f64 + 10.0));
        h.advance(50 * MS);
    }
    assert!(h.take(b).is_empty());
    assert_eq!(h.take(a).len(), 5);
    // Chat is never skipped.
    h.send(a, msg("lobby", json!("still here")));
    assert_eq!(kinds(&h.events(b)), ["msg"]);
    h.hub.handle(h.now, Input::Drained(b));
    h.advance(50 * MS);
    let events = h.events(b);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"], pose(14.0));
}

#[test]
fn transforms_are_validated_with_the_bad_field_named() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.send(a, json!({"room": "lobby", "type": "transform", "data": {"pos": {"x": 1, "y": 2}, "rot": {"x": 0, "y": 0, "z": 0}}}));
    let reply = h.take(a);
    assert_eq!(code(&reply[0]), 422);
    assert!(reply[0]["response"]["msg"]
        .as_str()
        .unwrap()
        .contains("data.pos.z"));
    h.send(a, json!({"room": "lobby", "type": "transform", "data": {"pos": {"x": 1, "y": 2, "z": 3}, "rot": {"x": 0, "y": 0, "z": 0}, "junk": [1]}}));
    h.advance(50 * MS);
    let events = h.events(a);
    assert_eq!(
        events[0]["data"],
        json!({"pos": {"x": 1.0, "y": 2.0, "z": 3.0}, "rot": {"x": 0.0, "y": 0.0, "z": 0.0}})
    );
}

// ---- Limits, timeouts, shutdown ----

#[test]
fn login_and_idle_timeouts_close_with_408() {
    let mut h = Harness::new(Config {
        login_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        ..without_resume()
    });
    let lurker = h.connect();
    let user = h.user("u");
    h.advance(Duration::from_millis(9_900));
    assert!(h.closed.is_empty());
    h.advance(Duration::from_secs(2));
    assert!(h.closed.contains(&lurker));
    assert_eq!(code(&h.take(lurker)[0]), 408);
    // A ping keeps a logged-in user alive.
    h.advance(Duration::from_secs(100));
    h.send(user, json!({"system": "ping"}));
    h.advance(Duration::from_secs(100));
    assert!(!h.closed.contains(&user));
    h.advance(Duration::from_secs(25));
    assert!(h.closed.contains(&user));
    assert_eq!(h.hub.session_count(), 0);
}

#[test]
fn rate_limit_drops_excess_with_429_but_not_transforms() {
    let mut h = Harness::new(Config {
        rate_limit: 10.0,
        burst: 3.0,
        ..Config::default()
    });
    let a = h.user("a"); // the login took one token
    h.take(a);
    h.send(a, msg("lobby", json!(1)));
    h.send(a, msg("lobby", json!(2)));
    h.send(a, msg("lobby", json!(3)));
    let frames = h.take(a);
    let limited: Vec<&Value> = frames.iter().filter(|f| f["info"] == "error").collect();
    assert_eq!(limited.len(), 1);
    assert_eq!(code(limited[0]), 429);
    assert_eq!(
        limited[0]["response"]["detail"],
        json!({"room": "lobby", "type": "msg"})
    );
    for i in 0..20 {
        h.send(a, transform("lobby", i as f64));
    }
    assert!(h.take(a).is_empty(), "transforms are exempt");
    h.advance(100 * MS);
    h.take(a);
    h.send(a, msg("lobby", json!(4)));
    assert_eq!(
        kinds(&h.events(a)),
        ["msg"],
        "one token back after 100 ms at 10/s"
    );
}

#[test]
fn limits_on_rooms_and_members() {
    // --max-clients counts sockets, so the event loop enforces it (net's tests).
    let mut h = Harness::new(Config {
        max_rooms_per_user: 2,
        max_room_members: 2,
        max_rooms: 3,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, join("r1"));
    h.send(a, join("r2"));
    let reply = h.take(a).pop().unwrap();
    assert_eq!(code(&reply), 422, "lobby + r1 is the per-user limit");
    let b = h.user("b");
    h.send(b, join("r1"));
    h.take(b);
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": "c"}}));
    let replies = h.take(c);
    assert_eq!(code(&replies[0]), 202);
    assert_eq!(code(replies.last().unwrap()), 422, "lobby is full at 2");
    h.send(c, join("r1"));
    assert_eq!(code(&h.take(c)[0]), 422, "r1 is full");
    h.send(c, join("r3"));
    h.send(c, join("r4"));
    let reply = h.take(c).pop().unwrap();
    assert_eq!(code(&reply), 503, "lobby, r1, r3 is the room limit");
    assert_eq!(
        reply["response"]["detail"],
        json!({"room": "r4", "type": "join"})
    );
}

#[test]
fn shutdown_tells_everyone_and_closes() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.connect();
    h.take(a);
    h.hub.handle(h.now, Input::Shutdown);
    h.pump();
    for id in [a, b] {
        let reply = h.take(id);
        assert_eq!(code(&reply[0]), 503);
        assert_eq!(reply[0]["response"]["msg"], "Server shutting down.");
        assert!(h.closed.contains(&id));
    }
    let late = h.connect();
    assert_eq!(code(&h.take(late)[0]), 503);
}

// ---- Games ----

fn game(room: &str, data: Value) -> Value {
    json!({"room": room, "type": "game", "data": data})
}

#[test]
fn a_game_of_tictactoe_in_a_room() {
    let mut h = Harness::default();
    let x = h.user("x");
    let o = h.user("o");
    let watcher = h.user("w");
    for id in [x, o, watcher] {
        h.send(id, join("g"));
    }
    h.take(x);
    h.take(o);
    h.send(x, game("g", json!({"move": 0})));
    assert_eq!(code(&h.take(x)[0]), 422, "no game yet");
    h.send(x, game("g", json!({"start": "tictactoe"})));
    h.send(o, game("g", json!({"join": true})));
    h.send(watcher, game("g", json!({"join": true})));
    assert_eq!(
        code(&h.take(watcher).pop().unwrap()),
        422,
        "both seats taken"
    );
    h.send(o, game("g", json!({"move": 4})));
    assert_eq!(code(&h.take(o).pop().unwrap()), 422, "X moves first");
    for (player, cell) in [(x, 0), (o, 4), (x, 1), (o, 5), (x, 2)] {
        h.send(player, game("g", json!({"move": cell})));
    }
    let states: Vec<Value> = h
        .events(watcher)
        .into_iter()
        .filter(|e| e["type"] == "game")
        .collect();
    let last = &states.last().unwrap()["data"];
    assert_eq!(last["status"], "won");
    assert_eq!(last["winner"], "x");
    assert_eq!(last["line"], json!([0, 1, 2]));
    h.send(o, game("g", json!({"move": 8})));
    assert_eq!(code(&h.take(o).pop().unwrap()), 422, "game over");
    // A joiner receives the current state.
    let late = h.user("late");
    h.send(late, join("g"));
    let events = h.events(late);
    assert_eq!(events.last().unwrap()["type"], "game");
    assert_eq!(events.last().unwrap()["data"]["status"], "won");
}

#[test]
fn a_player_who_disconnects_forfeits() {
    // The disconnect of --resume-grace 0: sessions end with their connections.
    let mut h = Harness::new(without_resume());
    let x = h.user("x");
    let o = h.user("o");
    h.send(x, game("lobby", json!({"start": "tictactoe"})));
    h.send(o, game("lobby", json!({"join": true})));
    h.send(x, game("lobby", json!({"move": 4})));
    h.take(o);
    h.hub.handle(h.now, Input::Closed(x));
    h.pump();
    let events = h.events(o);
    assert_eq!(kinds(&events), ["leave", "game"]);
    assert_eq!(events[1]["data"]["winner"], "o");
    assert_eq!(events[1]["data"]["forfeit"], "x");
}

// ---- Invariants under random traffic ----

#[derive(Debug, Clone)]
enum Action {
    Login(usize),
    Join(usize, usize),
    Leave(usize, usize),
    Msg(usize, usize),
    Disconnect(usize),
    Reconnect(usize),
}

fn action() -> impl Strategy<Value = Action> {
    let user = 0..4usize;
    let room = 0..3usize;
    prop_oneof![
        1 => user.clone().prop_map(Action::Login),
        1 => (user.clone(), room.clone()).prop_map(|(u, r)| Action::Join(u, r)),
        1 => (user.clone(), room.clone()).prop_map(|(u, r)| Action::Leave(u, r)),
        3 => (user.clone(), room).prop_map(|(u, r)| Action::Msg(u, r)),
        1 => user.clone().prop_map(Action::Disconnect),
        1 => user.prop_map(Action::Reconnect),
    ]
}

const ROOMS: [&str; 3] = ["lobby", "r1", "r2"];

/// What the protocol says should happen, kept independently of the hub.
#[derive(Default)]
struct Model {
    logged_in: HashSet<usize>,
    members: HashMap<&'static str, HashSet<usize>>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn membership_and_delivery_invariants_hold(actions in prop::collection::vec(action(), 1..60), batch in any::<bool>()) {
        // Sessions end with their connections here; resume has its own model test.
        let mut h = Harness::new(without_resume());
        // One connection per user slot; reconnecting replaces it.
        let mut conns: Vec<Option<ConnId>> = (0..4).map(|_| Some(h.connect())).collect();
        let mut every_conn: Vec<ConnId> = conns.iter().flatten().copied().collect();
        let mut model = Model::default();
        let mut seq = 0u64;
        // For each msg: the connections the model says must receive it.
        let mut expected: HashMap<u64, HashSet<ConnId>> = HashMap::new();
        let mut gone: HashSet<ConnId> = HashSet::new();
        for action in actions {
            let (slot, message) = match action {
                Action::Login(u) => {
                    if conns[u].is_some() && model.logged_in.insert(u) {
                        model.members.entry("lobby").or_default().insert(u);
                    }
                    (u, Some(json!({"system": "login", "options": {"user": format!("u{u}")}})))
                }
                Action::Join(u, r) => {
                    if conns[u].is_some() && model.logged_in.contains(&u) {
                        model.members.entry(ROOMS[r]).or_default().insert(u);
                    }
                    (u, Some(join(ROOMS[r])))
                }
                Action::Leave(u, r) => {
                    if conns[u].is_some() {
                        model.members.entry(ROOMS[r]).or_default().remove(&u);
                    }
                    (u, Some(json!({"room": ROOMS[r], "type": "leave"})))
                }
                Action::Msg(u, r) => {
                    seq += 1;
                    let members = model.members.entry(ROOMS[r]).or_default();
                    if conns[u].is_some() && members.contains(&u) {
                        expected.insert(seq, members.iter().filter_map(|&m| conns[m]).collect());
                    }
                    (u, Some(msg(ROOMS[r], json!(seq))))
                }
                Action::Disconnect(u) => {
                    if let Some(id) = conns[u].take() {
                        h.hub.handle(h.now, Input::Closed(id));
                        if batch {
                            // Its socket is gone: batched events not yet flushed may not reach it.
                            gone.insert(id);
                        }
                    }
                    model.logged_in.remove(&u);
                    for members in model.members.values_mut() {
                        members.remove(&u);
                    }
                    (u, None)
                }
                Action::Reconnect(u) => {
                    if conns[u].is_none() {
                        let id = h.open();
                        every_conn.push(id);
                        conns[u] = Some(id);
                    }
                    (u, None)
                }
            };
            if let (Some(message), Some(id)) = (message, conns[slot]) {
                h.hub.handle(h.now, Input::Frame(id, message.to_string().as_bytes()));
            }
            if !batch {
                h.pump();
            }
        }
        h.pump();
        check_invariants(&h.hub)?;

        // Every msg reached exactly the members of its room, once; and every member of a room
        // saw that room's msgs in one order (increasing, since they were sent in order).
        let mut delivered: HashMap<u64, HashSet<ConnId>> = HashMap::new();
        for id in every_conn {
            let frames = h.take(id);
            let mut order: HashMap<&str, Vec<u64>> = HashMap::new();
            for frame in frames.iter().filter(|f| f["info"] == "user" && f.get("history").is_none()) {
                let room = frame["room"].as_str().unwrap();
                for event in frame["payload"].as_array().unwrap() {
                    if event["type"] == "msg" {
                        let n = event["data"].as_u64().unwrap();
                        prop_assert!(delivered.entry(n).or_default().insert(id), "msg {} twice to {:?}", n, id);
                        order.entry(room).or_default().push(n);
                    }
                }
            }
            for (room, seqs) in order {
                prop_assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{:?} saw {} out of order: {:?}", id, room, seqs);
            }
        }
        for (n, recipients) in &expected {
            let got = delivered.remove(n).unwrap_or_default();
            prop_assert!(got.is_subset(recipients), "msg {} reached non-members: {:?} vs {:?}", n, got, recipients);
            let missing: Vec<_> = recipients.difference(&got).filter(|id| !gone.contains(id)).collect();
            prop_assert!(missing.is_empty(), "msg {} missed {:?}", n, missing);
        }
        prop_assert!(delivered.is_empty(), "msgs delivered that no member sent: {:?}", delivered);
    }
}

fn check_invariants(hub: &Hub) -> Result<(), TestCaseError> {
    prop_assert!(hub.room_ids.contains_key(LOBBY), "lobby exists");
    for (room_id, room) in hub.rooms.iter() {
        prop_assert_eq!(hub.room_ids.get(room.name().as_str()), Some(&room_id));
        if room_id != hub.lobby {
            prop_assert!(!room.is_empty(), "empty room {} kept", room.name().as_str());
        }
        for member in room.members() {
            let session = hub.sessions.get(member.session);
            prop_assert!(
                session.is_some_and(|s| s.is_in(room_id)),
                "member without session link"
            );
            let session_conn = session.and_then(|s| s.conn);
            prop_assert_eq!(
                member.conn,
                session_conn,
                "member and session agree on the connection"
            );
            if let Some(conn) = member.conn {
                let carried_by = hub.conns.get(conn).and_then(|c| c.session);
                prop_assert_eq!(carried_by, Some(member.session), "member's connection");
            }
        }
    }
    for (session_id, session) in hub.sessions.iter() {
        for &room_id in &session.rooms {
            prop_assert!(
                hub.rooms[room_id].has(session_id),
                "session in room it is not a member of"
            );
        }
        if let Some(conn) = session.conn {
            let carried_by = hub.conns.get(conn).and_then(|c| c.session);
            prop_assert_eq!(carried_by, Some(session_id), "session's connection");
        }
    }
    let logged_in = hub
        .conns
        .iter()
        .filter(|(_, c)| c.session.is_some())
        .count();
    prop_assert_eq!(hub.session_count(), logged_in);
    // Holds: a room's holder is one of its members, and the counts add up.
    let mut held: HashMap<SessionId, usize> = HashMap::new();
    for (_, room) in hub.rooms.iter() {
        if let Some(holder) = room.holder() {
            prop_assert!(room.has(holder), "holder is not a member");
            *held.entry(holder).or_default() += 1;
        }
    }
    let mut by_ip: HashMap<std::net::IpAddr, usize> = HashMap::new();
    for (session_id, session) in hub.sessions.iter() {
        prop_assert_eq!(session.held, held.get(&session_id).copied().unwrap_or(0));
        if session.held > 0 {
            *by_ip.entry(session.ip).or_default() += session.held;
        }
    }
    prop_assert_eq!(&hub.held_by_ip, &by_ip);
    Ok(())
}

#[test]
fn harness_time_starts_at_the_anchor() {
    let h = Harness::default();
    assert_eq!(h.hub.time(h.start), T0);
}

// ---- Found in review ----

#[test]
fn a_closing_client_still_gets_the_echo_of_its_last_msgs() {
    // The disconnect of --resume-grace 0: sessions end with their connections.
    let mut h = Harness::new(without_resume());
    let a = h.user("a");
    let b = h.user("b");
    h.take(a);
    h.take(b);
    // Same pass: msgs, then the half-close is noticed.
    for i in 0..3 {
        h.feed(a, msg("lobby", json!(i)));
    }
    h.hub.handle(h.now, Input::Closed(a));
    h.pump();
    assert_eq!(kinds(&h.events(a)), ["msg", "msg", "msg"]);
    assert_eq!(kinds(&h.events(b)), ["msg", "msg", "msg", "leave"]);
}

#[test]
fn history_is_bounded_by_bytes_so_a_joiner_fits_its_queue() {
    let config = Config {
        max_frame: 16 * 1024,
        max_outbuf: 64 * 1024,
        rate_limit: 0.0,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let a = h.user("a");
    for i in 0..20 {
        h.send(a, msg("lobby", json!({"i": i, "pad": "x".repeat(10_000)})));
    }
    let b = h.user("b");
    let _ = b;
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": "c"}}));
    let frames = h.take(c);
    let history = &frames[1];
    assert_eq!(history["history"], true);
    let body_len = history.to_string().len();
    assert!(
        body_len <= 32 * 1024 + 1024,
        "history frame of {body_len} bytes"
    );
    // The newest events are the ones kept, oldest first.
    let kept: Vec<i64> = history["payload"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["i"].as_i64())
        .collect();
    assert_eq!(kept.last(), Some(&19));
    assert!(kept.windows(2).all(|w| w[1] == w[0] + 1), "{kept:?}");
}

#[test]
fn batches_are_cut_by_size() {
    let config = Config {
        rate_limit: 0.0,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let a = h.user("a");
    h.take(a);
    for i in 0..20 {
        let body = msg("lobby", json!({"i": i, "pad": "x".repeat(10_000)})).to_string();
        h.hub.handle(h.now, Input::Frame(a, body.as_bytes()));
    }
    h.pump();
    let frames = h.take(a);
    assert!(frames.len() >= 3, "20 x 10 kB must not be one frame");
    assert_eq!(flatten(&frames).len(), 20);
}

#[test]
fn a_busy_loop_ticks_at_every_deadline() {
    // Each pass takes longer than a period and brings new poses before the timer runs: every
    // deadline must still produce a tick (one, not a burst).
    let mut h = Harness::new(Config {
        fps: 10.0,
        ..Config::default()
    });
    let a = h.user("a");
    let mut ticks = 0;
    for i in 0..20 {
        h.now += 130 * MS;
        h.send(a, transform("lobby", i as f64));
        h.hub.handle_timeout(h.now);
        h.pump();
        ticks += h.take(a).len();
    }
    // 20 passes of 130 ms = 2.6 s: every pass saw a deadline pass, so every pass ticked.
    assert_eq!(ticks, 20);
}

#[test]
fn after_a_quiet_spell_one_tick_catches_up_then_the_grid_resumes() {
    let mut h = Harness::new(Config {
        fps: 5.0,
        ..Config::default()
    }); // 200 ms
    let a = h.user("a");
    h.send(a, transform("lobby", 1.0));
    h.advance(200 * MS);
    assert_eq!(h.take(a).len(), 1, "one tick frame");
    // Quiet for 1.1 s with no timer calls: the stale deadline fires once, at once, and the
    // next one is back on the grid (not a burst of the missed ones).
    h.now += 1_100 * MS;
    h.send(a, transform("lobby", 2.0));
    assert!(h.hub.poll_timeout().is_some_and(|t| t <= h.now));
    h.hub.handle_timeout(h.now);
    h.pump();
    assert_eq!(h.take(a).len(), 1);
    assert_eq!(h.hub.ticker.deadline(), h.start + 1_400 * MS);
    // Quiet again, but the loop wakes (for housekeeping, a ping) in between: the first pose
    // still goes at once, and the next ones wait for the grid together.
    h.advance(1_000 * MS);
    assert!(h.take(a).is_empty());
    h.now += 7 * MS;
    h.send(a, transform("lobby", 3.0));
    h.hub.handle_timeout(h.now);
    h.pump();
    assert_eq!(
        flatten(&h.take(a))[0]["data"]["pos"]["x"],
        json!(3.0),
        "at once"
    );
    h.now += 3 * MS;
    h.send(a, transform("lobby", 4.0));
    h.send(a, transform("lobby", 5.0));
    h.advance(300 * MS);
    let frames = h.take(a);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(flatten(&frames)[0]["data"]["pos"]["x"], json!(5.0));
}

#[test]
fn join_limits_answer_before_already_joined() {
    let mut h = Harness::new(Config {
        max_rooms_per_user: 1,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, join("lobby"));
    assert_eq!(code(&h.take(a)[0]), 422, "422 precedes 409");
}

#[test]
fn line_breaks_in_msg_data_do_not_break_line_mode() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.take(a);
    h.send_raw(
        a,
        b"{\"room\":\"lobby\",\"type\":\"msg\",\"data\":[1,\r\n2]}",
    );
    assert_eq!(h.events(a)[0]["data"], json!([1, 2]));
}

// ---- Bounded: work, memory and names under attack ----

#[test]
fn transforms_have_their_own_bucket_and_excess_is_dropped_silently() {
    let mut h = Harness::new(Config {
        transform_rate: 10.0,
        transform_burst: 3.0,
        ..Config::default()
    });
    let a = h.user("a");
    let b = h.user("b");
    h.take(a);
    h.take(b);
    // Valid or not, five transforms at once: three are paid for, two dropped without a word.
    h.send(a, transform("lobby", 1.0));
    h.send(
        a,
        json!({"room": "lobby", "type": "transform", "data": {"pos": 1}}),
    );
    h.send(a, transform("lobby", 2.0));
    h.send(
        a,
        json!({"room": "lobby", "type": "transform", "data": {"pos": 1}}),
    );
    h.send(a, transform("lobby", 3.0));
    let replies = h.take(a);
    assert_eq!(
        replies.len(),
        1,
        "one 422 for the invalid one paid for: {replies:?}"
    );
    assert_eq!(code(&replies[0]), 422);
    h.advance(50 * MS);
    let poses = h.events(b);
    assert_eq!(poses.len(), 1);
    assert_eq!(
        poses[0]["data"]["pos"]["x"], 2.0,
        "the third one was dropped"
    );
    // Over budget, the connection is not read until half the burst (1.5 tokens at 10/s) is
    // back: a flood costs its sender, not the server's reading.
    let until = h.paused[&a];
    assert!(
        until > h.start + 140 * MS && until <= h.start + 150 * MS,
        "{:?}",
        until - h.start
    );
}

#[test]
fn a_message_flood_gets_one_429_a_second_and_pauses_reading() {
    let mut h = Harness::new(Config {
        rate_limit: 10.0,
        burst: 2.0,
        ..Config::default()
    });
    let a = h.user("a"); // the login took one token
    h.take(a);
    for i in 0..5 {
        h.send(a, msg("lobby", json!(i)));
    }
    let frames = h.take(a);
    let errors: Vec<&Value> = frames.iter().filter(|f| f["info"] == "error").collect();
    assert_eq!(errors.len(), 1, "one 429 for the four refused: {frames:?}");
    assert_eq!(code(errors[0]), 429);
    let until = h.paused[&a];
    assert!(
        until > h.now && until <= h.now + 100 * MS,
        "paused until a token is back"
    );
    // Still flooding within the second: silent.
    h.advance(200 * MS);
    h.take(a);
    for i in 0..5 {
        h.send(a, msg("lobby", json!(i)));
    }
    let frames = h.take(a);
    assert!(frames.iter().all(|f| f["info"] != "error"), "{frames:?}");
    h.advance(Duration::from_secs(1));
    h.send(a, msg("lobby", json!(9)));
    h.send(a, msg("lobby", json!(10)));
    h.send(a, msg("lobby", json!(11)));
    let frames = h.take(a);
    assert_eq!(
        frames.iter().filter(|f| code(f) == 429).count(),
        1,
        "a second later: one"
    );
}

#[test]
fn a_msg_dressed_as_a_transform_pays_both_buckets() {
    let mut h = Harness::new(Config {
        rate_limit: 10.0,
        burst: 1.0,
        ..Config::default()
    });
    let a = h.user("a"); // the login took the only token
    h.take(a);
    h.send(a, msg("lobby", json!("transform")));
    h.send(a, msg("lobby", json!({"type": "transform"})));
    let frames = h.take(a);
    assert_eq!(
        code(&frames[0]),
        429,
        "charged as a message too: {frames:?}"
    );
    assert!(
        frames.iter().all(|f| f["info"] != "user"),
        "nothing got through"
    );
}

#[test]
fn the_rooms_list_is_paged() {
    let mut h = Harness::new(Config {
        rate_limit: 0.0,
        ..Config::default()
    });
    let a = h.user("a");
    for i in 0..5 {
        h.send(a, join(&format!("r{i}")));
    }
    h.take(a);
    h.send(a, json!({"system": "rooms", "options": {"limit": 4}}));
    let page = &h.take(a)[0]["response"]["detail"];
    let names: Vec<&str> = page["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["lobby", "r0", "r1", "r2"]);
    assert_eq!(page["next"], "r2");
    h.send(
        a,
        json!({"system": "rooms", "options": {"after": "r2", "limit": 4}}),
    );
    let page = &h.take(a)[0]["response"]["detail"];
    assert_eq!(
        page["rooms"],
        json!([{"room": "r3", "users": 1}, {"room": "r4", "users": 1}])
    );
    assert!(page.get("next").is_none());
    h.send(a, json!({"system": "rooms", "options": {"limit": 0}}));
    assert_eq!(code(&h.take(a)[0]), 400);
}

#[test]
fn rooms_cannot_be_hoarded_by_a_user_or_an_address() {
    let mut h = Harness::new(Config {
        max_held_rooms: 2,
        max_held_rooms_per_ip: 3,
        rate_limit: 0.0,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, join("a1"));
    h.send(a, join("a2"));
    h.take(a);
    h.send(a, join("a3"));
    let reply = h.take(a).pop().unwrap();
    assert_eq!(code(&reply), 422);
    assert_eq!(
        reply["response"]["msg"],
        "You hold 2 rooms you created; leave one before creating another."
    );
    let b = h.user("b");
    h.send(b, join("b1"));
    h.take(b);
    h.send(b, join("b2"));
    let reply = h.take(b).pop().unwrap();
    assert_eq!(code(&reply), 422, "the address holds 3 already");
    // Joining an existing room is always allowed; leaving a held room frees the hold.
    h.send(b, join("a1"));
    assert!(kinds(&h.events(b)).contains(&"list"), "joined");
    h.send(a, json!({"room": "a2", "type": "leave"}));
    h.take(a);
    h.send(b, join("b2"));
    assert!(kinds(&h.events(b)).contains(&"list"), "joined");
    // Someone else from another address is not held back.
    h.set_peer([10, 0, 0, 2].into());
    let c = h.user("c");
    h.send(c, join("c1"));
    assert_eq!(kinds(&h.events(c))[..2], ["join", "list"]);
}

#[test]
fn a_player_who_lets_the_turn_clock_run_out_forfeits() {
    let mut h = Harness::new(Config {
        turn_timeout: Duration::from_secs(60),
        idle_timeout: Duration::ZERO,
        ..Config::default()
    });
    let x = h.user("x");
    let o = h.user("o");
    h.send(x, game("lobby", json!({"start": "tictactoe"})));
    h.send(o, game("lobby", json!({"join": true})));
    h.send(x, game("lobby", json!({"move": 4})));
    h.take(x);
    h.take(o);
    h.advance(Duration::from_secs(59));
    assert!(h.events(x).is_empty(), "o still has time");
    h.advance(Duration::from_secs(2));
    let events = h.events(x);
    assert_eq!(kinds(&events), ["game"]);
    assert_eq!(events[0]["user"], "o");
    assert_eq!(events[0]["data"]["status"], "won");
    assert_eq!(events[0]["data"]["winner"], "x");
    assert_eq!(events[0]["data"]["forfeit"], "o");
    h.advance(Duration::from_secs(120));
    assert!(h.events(x).is_empty(), "a finished round has no clock");
}

#[test]
fn near_the_memory_budget_logins_and_joins_get_503() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.take(a);
    h.hub.handle(h.now, Input::MemoryPressure(true));
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": "c"}}));
    let reply = &h.take(c)[0];
    assert_eq!(code(reply), 503);
    assert_eq!(
        reply["response"]["msg"],
        "Server is low on memory; try again later."
    );
    h.send(a, join("r"));
    assert_eq!(code(&h.take(a)[0]), 503);
    h.send(a, msg("lobby", json!("still chatting")));
    assert_eq!(kinds(&h.events(a)), ["msg"], "members keep talking");
    h.hub.handle(h.now, Input::MemoryPressure(false));
    h.send(a, join("r"));
    assert_eq!(kinds(&h.events(a))[..2], ["join", "list"]);
}

#[test]
fn histories_together_stay_within_their_share_of_the_budget() {
    let config = Config {
        max_memory: 1 << 20, // histories get a quarter: 256 KiB
        max_outbuf: 256 * 1024,
        max_frame: 16 * 1024,
        rate_limit: 0.0,
        max_held_rooms: 64,
        ..Config::default()
    };
    let mut h = Harness::new(config);
    let a = h.user("a");
    for room in 0..20 {
        let room = format!("r{room}");
        h.send(a, join(&room));
        for i in 0..10 {
            h.send(a, msg(&room, json!({"i": i, "pad": "x".repeat(4000)})));
        }
        h.take(a);
    }
    let held = h.hub.history_bytes();
    assert!(held <= 256 * 1024, "{held} bytes of history");
    assert!(
        held > 128 * 1024,
        "trimmed to just under the share, not emptied: {held}"
    );
    // The newest room keeps its newest events.
    let b = h.user("b");
    h.send(b, join("r19"));
    let history = flatten(&h.take(b)[..1]);
    assert_eq!(history.last().unwrap()["data"]["i"], 9);
}

#[test]
fn refusals_do_not_reflect_long_input() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.take(a);
    let long = "x".repeat(60_000);
    h.send(a, json!({"room": long, "type": long}));
    let body = h.take_bodies(a);
    assert!(body[0].len() < 600, "{} bytes", body[0].len());
    let reply: Value = serde_json::from_slice(&body[0]).unwrap();
    assert!(reply["response"]["detail"]["type"]
        .as_str()
        .unwrap()
        .ends_with('…'));
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": long}}));
    assert!(h.take_bodies(c)[0].len() < 600);
}

#[test]
fn look_alike_room_names_are_one_room_or_refused() {
    let mut h = Harness::default();
    let a = h.user("a");
    let b = h.user("b");
    h.send(a, join("cafe\u{301}"));
    h.send(b, join("caf\u{e9}"));
    h.take(a);
    let events = h.events(b);
    let list = events.iter().find(|e| e["type"] == "list").unwrap();
    assert_eq!(list["data"], json!(["a", "b"]), "one room");
    assert_eq!(list["room"], "caf\u{e9}", "spelled in NFC");
    for name in ["lob\u{200b}by", "l\u{43e}bby", "\u{202e}ybbol"] {
        h.send(a, join(name));
        let reply = &h.take(a)[0];
        assert_eq!(code(reply), 422, "{name:?}");
    }
}

// ---- Sessions: seq, resume, logout, history queries ----

/// The resume token of a login or resume reply.
fn token_of(reply: &Value) -> String {
    reply["response"]["detail"]["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned()
}

/// Logs in `name` and returns the connection and its resume token.
fn login_with_token(h: &mut Harness, name: &str) -> (ConnId, String) {
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": name}}));
    let frames = h.take(c);
    assert_eq!(code(&frames[0]), 202);
    (c, token_of(&frames[0]))
}

fn resume(token: &str, rooms: Value) -> Value {
    json!({"system": "resume", "options": {"token": token, "rooms": rooms}})
}

/// The seq of every history event in `events`.
fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().filter_map(|e| e["seq"].as_u64()).collect()
}

#[test]
fn history_events_are_numbered_densely_per_room_and_state_is_not() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.send(a, join("r"));
    h.send(a, msg("r", json!(1)));
    h.send(a, msg("lobby", json!(2)));
    h.send(a, transform("r", 1.0));
    h.advance(50 * MS);
    let events = h.events(a);
    let in_room = |room: &str| -> Vec<(String, Option<u64>)> {
        events
            .iter()
            .filter(|e| e["room"] == room)
            .map(|e| (e["type"].as_str().unwrap().to_owned(), e["seq"].as_u64()))
            .collect()
    };
    assert_eq!(
        in_room("r"),
        [
            ("join".into(), Some(1)),
            ("list".into(), None),
            ("msg".into(), Some(2)),
            ("transform".into(), None)
        ]
    );
    assert_eq!(
        in_room("lobby"),
        [("msg".into(), Some(2))],
        "lobby: login join was 1"
    );
}

#[test]
fn a_recreated_room_numbers_on_from_past_its_earlier_life() {
    let mut h = Harness::default();
    let a = h.user("a");
    h.send(a, join("r"));
    h.send(a, msg("r", json!("old life")));
    h.send(a, json!({"room": "r", "type": "leave"}));
    h.take(a);
    h.send(a, join("r"));
    let join_seq = h.events(a)[0]["seq"].as_u64().unwrap();
    assert!(
        join_seq > 3,
        "the new life starts past 1..=3, not again at 1: {join_seq}"
    );
}

#[test]
fn a_lost_connection_detaches_and_the_grace_ends_it_with_leave_and_forfeit() {
    let mut h = Harness::new(Config {
        resume_grace: Duration::from_secs(30),
        ..Config::default()
    });
    let x = h.user("x");
    let o = h.user("o");
    h.send(x, game("lobby", json!({"start": "tictactoe"})));
    h.send(o, game("lobby", json!({"join": true})));
    h.take(x);
    h.take(o);
    h.disconnect(x);
    let events = h.events(o);
    assert_eq!(kinds(&events), ["away"], "no leave, no forfeit yet");
    assert_eq!(events[0]["user"], "x");
    // The name stays reserved.
    let c = h.connect();
    h.send(c, json!({"system": "login", "options": {"user": "X"}}));
    assert_eq!(code(&h.take(c)[0]), 409);
    h.advance(Duration::from_secs(29));
    assert!(h.events(o).is_empty());
    h.advance(Duration::from_secs(2));
    let events = h.events(o);
    assert_eq!(kinds(&events), ["leave", "game"]);
    assert_eq!(events[1]["data"]["forfeit"], "x");
    assert_eq!(h.hub.session_count(), 1);
    let d = h.connect();
    h.send(d, json!({"system": "login", "options": {"user": "X"}}));
    assert_eq!(code(&h.take(d)[0]), 202, "the name is free again");
}

#[test]
fn resume_replays_exactly_what_was_missed_then_poses_and_back() {
    let mut h = Harness::default();
    let (a, token) = login_with_token(&mut h, "a");
    let b = h.user("b");
    h.send(a, join("vr"));
    h.send(b, join("vr"));
    h.send(b, msg("vr", json!("seen")));
    h.send(b, transform("vr", 1.0));
    h.advance(50 * MS);
    let seen = h.events(a);
    let last_vr = *seqs(&seen[..]).iter().max().unwrap();
    let last_lobby = seen
        .iter()
        .filter(|e| e["room"] == "lobby")
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap();
    h.disconnect(a);
    h.send(b, msg("vr", json!("missed 1")));
    h.send(b, msg("vr", json!("missed 2")));
    h.take(b);
    let a2 = h.connect();
    h.send(
        a2,
        resume(&token, json!({"vr": last_vr, "lobby": last_lobby})),
    );
    let frames = h.take(a2);
    assert_eq!(code(&frames[0]), 202);
    let detail = &frames[0]["response"]["detail"];
    assert_eq!(
        (detail["user"].clone(), detail["resumed"].clone()),
        (json!("a"), json!(true))
    );
    assert_ne!(token_of(&frames[0]), token, "a new token");
    let replayed: Vec<&Value> = frames.iter().filter(|f| f["history"] == true).collect();
    let replayed = flatten(&replayed.into_iter().cloned().collect::<Vec<_>>());
    let summary: Vec<(String, String)> = replayed
        .iter()
        .map(|e| {
            (
                e["room"].as_str().unwrap().into(),
                e["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("lobby".into(), "away".into()),
            ("vr".into(), "away".into()),
            ("vr".into(), "msg".into()),
            ("vr".into(), "msg".into())
        ],
        "exactly the events after the seqs given, its own away included"
    );
    let live = flatten(
        &frames
            .iter()
            .filter(|f| f["info"] == "user" && f["history"] != true)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(kinds(&live), ["back", "back"]);
    assert_eq!(kinds(&h.events(b)), ["back", "back"]);
    h.advance(50 * MS);
    let snapshot = h.events(a2);
    assert_eq!(kinds(&snapshot), ["transform"], "the current poses");
}

#[test]
fn resume_410s_when_missed_events_are_gone_or_the_seq_is_from_elsewhere() {
    let mut h = Harness::new(Config {
        history: 3,
        rate_limit: 0.0,
        ..Config::default()
    });
    let (a, token) = login_with_token(&mut h, "a");
    let b = h.user("b");
    h.send(a, join("r"));
    h.send(b, join("r"));
    let before = seqs(&h.events(a));
    h.disconnect(a);
    for i in 0..5 {
        h.send(b, msg("r", json!(i)));
    }
    let a2 = h.connect();
    let last = *before.iter().max().unwrap();
    h.send(a2, resume(&token, json!({"r": last, "lobby": 999_999})));
    let frames = h.take(a2);
    let gone: Vec<&Value> = frames.iter().filter(|f| code(f) == 410).collect();
    let rooms: Vec<&Value> = gone
        .iter()
        .map(|f| &f["response"]["detail"]["room"])
        .collect();
    assert_eq!(
        rooms,
        [&json!("lobby"), &json!("r")],
        "lobby: seq beyond latest; r: too old"
    );
    let r_history: Vec<Value> = frames
        .iter()
        .filter(|f| f["history"] == true && f["room"] == "r")
        .cloned()
        .collect();
    assert_eq!(
        flatten(&r_history).len(),
        3,
        "the whole kept history follows"
    );
    // The old token is spent; a used or unknown token is 410 "Session expired.".
    let a3 = h.connect();
    h.send(a3, resume(&token, json!({})));
    let reply = &h.take(a3)[0];
    assert_eq!(code(reply), 410);
    assert_eq!(reply["response"]["msg"], "Session expired.");
}

#[test]
fn resume_takes_over_a_still_open_connection() {
    let mut h = Harness::default();
    let (old, token) = login_with_token(&mut h, "a");
    let b = h.user("b");
    h.take(old);
    h.take(b);
    let new = h.connect();
    h.send(new, resume(&token, json!({})));
    assert_eq!(code(&h.take(new)[0]), 202);
    let notice = h.take(old);
    assert_eq!(code(&notice[0]), 409);
    assert_eq!(
        notice[0]["response"]["msg"],
        "Session resumed on another connection; closing."
    );
    assert!(h.closed.contains(&old));
    // The old connection's end does not detach the session again, and as the session never
    // went away, its rooms hear neither away nor back.
    h.disconnect(old);
    assert!(h.events(b).is_empty());
    h.send(b, msg("lobby", json!("still here?")));
    assert_eq!(kinds(&h.events(new)), ["msg"]);
}

#[test]
fn a_seated_player_keeps_the_seat_through_a_resume() {
    let mut h = Harness::default();
    let (x, token) = login_with_token(&mut h, "x");
    let o = h.user("o");
    h.send(x, game("lobby", json!({"start": "tictactoe"})));
    h.send(o, game("lobby", json!({"join": true})));
    h.take(x);
    h.disconnect(x);
    h.advance(Duration::from_secs(5));
    let x2 = h.connect();
    h.send(x2, resume(&token, json!({})));
    let frames = h.take(x2);
    let game_state = flatten(&frames[1..])
        .into_iter()
        .rfind(|e| e["type"] == "game")
        .unwrap();
    assert_eq!(game_state["data"]["status"], "playing");
    assert_eq!(game_state["data"]["turn"], "x");
    h.send(x2, game("lobby", json!({"move": 4})));
    let events = h.events(o);
    assert_eq!(events.last().unwrap()["data"]["board"][4], "X");
}

#[test]
fn logout_leaves_at_once_and_closes() {
    let mut h = Harness::default();
    let (a, token) = login_with_token(&mut h, "a");
    let b = h.user("b");
    h.take(a);
    h.take(b);
    h.send(a, json!({"system": "logout"}));
    let reply = &h.take(a)[0];
    assert_eq!(
        (code(reply), reply["response"]["msg"].clone()),
        (200, json!("Logged out."))
    );
    assert!(h.closed.contains(&a));
    assert_eq!(kinds(&h.events(b)), ["leave"]);
    let c = h.connect();
    h.send(c, resume(&token, json!({})));
    assert_eq!(
        code(&h.take(c)[0]),
        410,
        "a logged-out session cannot be resumed"
    );
    h.send(c, json!({"system": "logout"}));
    assert_eq!(code(&h.take(c)[0]), 401);
}

#[test]
fn history_queries_answer_members_with_kept_events() {
    let mut h = Harness::new(Config {
        rate_limit: 0.0,
        ..Config::default()
    });
    let a = h.user("a");
    h.send(a, join("r"));
    for i in 0..10 {
        h.send(a, msg("r", json!(i)));
    }
    h.take(a);
    let query = |data: Value| json!({"room": "r", "type": "history", "data": data});
    h.send(a, query(json!({"before": 6, "limit": 2})));
    let frames = h.take(a);
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0]["history"], true);
    assert_eq!(seqs(&flatten(&frames)), [4, 5]);
    h.send(a, query(json!({"after": 9})));
    assert_eq!(seqs(&h.events(a)), [10, 11]);
    h.send(a, query(json!({"after": 11})));
    let reply = &h.take(a)[0];
    assert_eq!(code(reply), 200);
    assert_eq!(reply["response"]["msg"], "No kept events in that range.");
    assert_eq!(
        reply["response"]["detail"],
        json!({"room": "r", "type": "history", "first": 1, "last": 11})
    );
    h.send(a, query(json!({"before": 1, "after": 2})));
    assert_eq!(code(&h.take(a)[0]), 400);
    h.send(a, query(json!({"after": 1, "limit": 0})));
    assert_eq!(code(&h.take(a)[0]), 422);
    let b = h.user("b");
    h.send(b, query(json!({"after": 0})));
    assert_eq!(code(&h.take(b)[0]), 404, "members only");
}

#[test]
fn the_oldest_detached_session_ends_first_past_the_limit() {
    let mut h = Harness::new(Config {
        max_detached: 1,
        ..Config::default()
    });
    let a = h.user("a");
    let b = h.user("b");
    let c = h.user("c");
    h.take(c);
    h.disconnect(a);
    h.disconnect(b);
    assert_eq!(
        kinds(&h.events(c)),
        ["away", "away", "leave"],
        "a ends to make room for b"
    );
    assert_eq!(h.hub.session_count(), 2);
}

#[derive(Debug, Clone)]
enum Flaky {
    Msg(usize, usize),
    /// The connection dies; `mid_frame` first sends half a frame.
    Drop(usize, bool),
    Resume(usize),
    Wait(u16),
}

fn flaky() -> impl Strategy<Value = Flaky> {
    let user = 0..3usize;
    prop_oneof![
        4 => (user.clone(), 0..2usize).prop_map(|(u, r)| Flaky::Msg(u, r)),
        1 => (user.clone(), any::<bool>()).prop_map(|(u, mid)| Flaky::Drop(u, mid)),
        2 => user.prop_map(Flaky::Resume),
        1 => (0..2000u16).prop_map(Flaky::Wait),
    ]
}

/// One client of the resume model: its connection (if connected), its token, and every
/// history event seq it received per room, in arrival order.
struct FlakyClient {
    conn: Option<ConnId>,
    token: String,
    seen: HashMap<String, Vec<u64>>,
}

impl FlakyClient {
    fn absorb(&mut self, frames: &[Value]) {
        for frame in frames {
            if let Some(token) = frame["response"]["detail"]["resume"].as_str() {
                self.token = token.to_owned();
            }
            if frame["info"] != "user" {
                continue;
            }
            let room = frame["room"].as_str().unwrap().to_owned();
            for event in frame["payload"].as_array().unwrap() {
                if let Some(seq) = event["seq"].as_u64() {
                    self.seen.entry(room.clone()).or_default().push(seq);
                }
            }
        }
    }

    fn last_seqs(&self) -> Value {
        let rooms: Map<String, Value> = self
            .seen
            .iter()
            .filter_map(|(room, seqs)| Some((room.clone(), json!(seqs.last()?))))
            .collect();
        Value::Object(rooms)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Connections die at random points (mid-frame too) while others chat; each client resumes
    /// with the last seq it truly received. In the end every client has every room's events
    /// from its first one on, exactly once and in seq order.
    #[test]
    fn resume_delivers_every_event_exactly_once(actions in prop::collection::vec(flaky(), 1..50)) {
        let mut h = Harness::new(Config { rate_limit: 0.0, ..Config::default() });
        let rooms = ["lobby", "r"];
        let mut clients: Vec<FlakyClient> = Vec::new();
        for u in 0..3 {
            let conn = h.connect();
            h.send(conn, json!({"system": "login", "options": {"user": format!("u{u}")}}));
            h.send(conn, join("r"));
            clients.push(FlakyClient { conn: Some(conn), token: String::new(), seen: HashMap::new() });
        }
        for client in &mut clients {
            let frames = h.take(client.conn.unwrap());
            client.absorb(&frames);
        }
        for action in actions {
            match action {
                Flaky::Msg(u, r) => {
                    if let Some(conn) = clients[u].conn {
                        h.send(conn, msg(rooms[r], json!(u)));
                    }
                }
                Flaky::Drop(u, mid_frame) => {
                    if let Some(conn) = clients[u].conn.take() {
                        if mid_frame {
                            let body = msg("r", json!("cut")).to_string();
                            let mut wire = (body.len() as u32).to_be_bytes().to_vec();
                            wire.extend_from_slice(&body.as_bytes()[..body.len() / 2]);
                            h.wire(conn, &wire);
                        }
                        let frames = h.take(conn);
                        clients[u].absorb(&frames);
                        h.disconnect(conn);
                        let frames = h.take(conn);
                        clients[u].absorb(&frames);
                    }
                }
                Flaky::Resume(u) => {
                    if clients[u].conn.is_none() {
                        let conn = h.connect();
                        let request = resume(&clients[u].token, clients[u].last_seqs());
                        h.send(conn, request);
                        clients[u].conn = Some(conn);
                    }
                }
                Flaky::Wait(ms) => h.advance(Duration::from_millis(u64::from(ms))),
            }
            for client in &mut clients {
                if let Some(conn) = client.conn {
                    let frames = h.take(conn);
                    prop_assert!(frames.iter().all(|f| code(f) != 410), "{:?}", frames);
                    client.absorb(&frames);
                }
            }
        }
        // Everyone comes back, then one last msg per room shows where each room ends.
        for client in &mut clients {
            if client.conn.is_none() {
                let conn = h.connect();
                h.send(conn, resume(&client.token, client.last_seqs()));
                client.conn = Some(conn);
            }
        }
        let first = clients[0].conn.unwrap();
        h.send(first, msg("lobby", json!("end")));
        h.send(first, msg("r", json!("end")));
        for client in &mut clients {
            let frames = h.take(client.conn.unwrap());
            client.absorb(&frames);
        }
        for room in rooms {
            let last = *clients[0].seen[room].last().unwrap();
            for (u, client) in clients.iter().enumerate() {
                let seen = &client.seen[room];
                let expected: Vec<u64> = (seen[0]..=last).collect();
                prop_assert_eq!(seen, &expected, "u{} in {}", u, room);
            }
        }
    }
}

// ---- Accounts and the store ----

fn register(user: &str, pass: &str) -> Value {
    json!({"system": "register", "options": {"user": user, "pass": pass}})
}

fn login_with(user: &str, pass: &str) -> Value {
    json!({"system": "login", "options": {"user": user, "pass": pass}})
}

/// Registers `user` with `pass` on a fresh connection, the hashing service answering.
fn registered(h: &mut Harness, user: &str, pass: &str) {
    let c = h.connect();
    h.send(c, register(user, pass));
    assert!(h.take(c).is_empty(), "no answer before the hash is made");
    h.run_hasher();
    let reply = &h.take(c)[0];
    assert_eq!(code(reply), 201, "{reply}");
    assert_eq!(reply["response"]["msg"], "Account created.");
    assert_eq!(reply["response"]["detail"], json!({"user": user}));
}

#[test]
fn register_then_log_in_with_the_password_and_only_with_it() {
    let mut h = Harness::default();
    registered(&mut h, "Alice", "correct horse");
    assert!(h.persisted.is_empty(), "no store: nothing persisted");
    let c = h.connect();
    h.send(c, login_with("alice", "wrong horse"));
    assert!(h.take(c).is_empty(), "the password is checked off the loop");
    h.run_hasher();
    let reply = &h.take(c)[0];
    assert_eq!(
        (code(reply), reply["response"]["msg"].clone()),
        (403, json!("Access denied."))
    );
    assert_eq!(reply["response"]["detail"], json!({"user": "alice"}));
    h.send(c, login_with("ALICE", "correct horse"));
    h.run_hasher();
    let frames = h.take(c);
    assert_eq!(code(&frames[0]), 202);
    assert_eq!(
        frames[0]["response"]["detail"]["user"], "Alice",
        "the registered spelling"
    );
    // A guest cannot take a registered name, with or without a password.
    let d = h.connect();
    h.send(d, json!({"system": "login", "options": {"user": "alice"}}));
    h.run_hasher();
    assert_eq!(code(&h.take(d)[0]), 403);
}

#[test]
fn what_a_client_sends_behind_its_login_waits_for_the_password_check() {
    let mut h = Harness::default();
    registered(&mut h, "alice", "correct horse");
    let c = h.connect();
    // Sent in one go, as a script or `nc` does: the join and the msg must not meet a 401.
    h.send(c, login_with("alice", "correct horse"));
    h.send(c, json!({"room": "den", "type": "join"}));
    h.send(c, json!({"room": "den", "type": "msg", "data": "hi"}));
    assert!(h.held.contains_key(&c), "held while the hash is checked");
    assert!(h.take(c).is_empty());
    h.run_hasher();
    assert!(!h.held.contains_key(&c), "released with the answer");
    let frames = h.take(c);
    assert_eq!(code(&frames[0]), 202);
    assert!(frames.iter().all(|f| f["info"] != "error"), "{frames:?}");
    let events = flatten(&frames[1..]);
    let said: Vec<_> = events
        .iter()
        .filter(|e| e["room"] == "den" && e["type"] == "msg")
        .collect();
    assert_eq!(said.len(), 1, "{frames:?}");
    // A refused login releases too, and what followed it is answered as before login.
    let d = h.connect();
    h.send(d, login_with("alice", "wrong horse"));
    h.send(d, json!({"room": "lobby", "type": "msg", "data": "x"}));
    h.run_hasher();
    let codes: Vec<_> = h.take(d).iter().map(code).collect();
    assert_eq!(codes, [403, 401]);
}

#[test]
fn registration_refusals() {
    let mut h = Harness::default();
    let guest = h.user("guest");
    h.take(guest);
    let c = h.connect();
    for (user, pass, expected) in [
        ("bad name", "long enough", 422),
        ("bob", "short", 422),
        ("bob", &"x".repeat(1025), 422),
        ("GUEST", "long enough", 409),
    ] {
        h.send(c, register(user, pass));
        let reply = &h.take(c)[0];
        assert_eq!(code(reply), expected, "{user} {reply}");
    }
    // A name being registered is taken until the hash comes back.
    h.send(c, register("bob", "long enough"));
    let d = h.connect();
    h.send(d, register("Bob", "also long enough"));
    assert_eq!(code(&h.take(d)[0]), 409);
    h.send(d, json!({"system": "login", "options": {"user": "bob"}}));
    assert_eq!(
        code(&h.take(d)[0]),
        409,
        "no guest under a name being registered"
    );
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 201);
}

#[test]
fn accounts_only_refuses_unknown_names_after_a_full_check() {
    let mut h = Harness::new(Config {
        accounts_only: true,
        ..Config::default()
    });
    let c = h.connect();
    h.send(c, login_with("stranger", "whatever"));
    let pending: Vec<&Work> = h.work.iter().map(|(_, w)| w).collect();
    assert!(
        matches!(pending[..], [Work::Verify { phc: None, .. }]),
        "checked against the dummy hash, so timing tells nothing: {pending:?}"
    );
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 403);
}

#[test]
fn failed_logins_are_throttled_per_name() {
    let mut h = Harness::default();
    registered(&mut h, "alice", "correct horse");
    let c = h.connect();
    for _ in 0..5 {
        h.send(c, login_with("alice", "guess"));
        h.run_hasher();
        assert_eq!(code(&h.take(c)[0]), 403);
    }
    h.send(c, login_with("alice", "correct horse"));
    let reply = &h.take(c)[0];
    assert_eq!(
        code(reply),
        429,
        "even the right password waits out the minute"
    );
    assert!(h.work.is_empty(), "no hash is spent on a throttled login");
    h.advance(Duration::from_secs(61));
    let c = h.connect();
    h.send(c, login_with("alice", "correct horse"));
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 202);
}

#[test]
fn a_busy_hasher_answers_503() {
    let mut h = Harness::default();
    let c = h.connect();
    h.send(c, register("alice", "correct horse"));
    let (id, _) = h.work.pop().unwrap();
    h.hub.handle(
        h.now,
        Input::Done {
            id,
            done: Done::Busy,
        },
    );
    h.pump();
    let reply = &h.take(c)[0];
    assert_eq!(
        (code(reply), reply["response"]["msg"].clone()),
        (503, json!("Busy, try again."))
    );
    h.send(c, register("alice", "correct horse"));
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 201, "the name was given back");
}

#[test]
fn a_registered_login_takes_over_its_own_session() {
    let mut h = Harness::default();
    registered(&mut h, "alice", "correct horse");
    let old = h.connect();
    h.send(old, login_with("alice", "correct horse"));
    h.run_hasher();
    h.send(old, join("vr"));
    let b = h.user("b");
    h.send(b, join("vr"));
    h.take(old);
    h.take(b);
    // A second device logs in while the first is still connected.
    let new = h.connect();
    h.send(new, login_with("alice", "correct horse"));
    h.run_hasher();
    let frames = h.take(new);
    assert_eq!(code(&frames[0]), 202);
    assert_eq!(frames[0]["response"]["detail"]["resumed"], true);
    let lists: Vec<Value> = flatten(&frames[1..])
        .into_iter()
        .filter(|e| e["type"] == "list")
        .map(|e| e["room"].clone())
        .collect();
    assert_eq!(
        lists,
        [json!("lobby"), json!("vr")],
        "where it is, not what it missed"
    );
    assert_eq!(code(&h.take(old)[0]), 409);
    assert!(h.closed.contains(&old));
    h.send(b, msg("vr", json!("hi")));
    assert_eq!(kinds(&h.events(new)), ["msg"]);
}

#[test]
fn a_password_change_needs_the_old_password() {
    let mut h = Harness::default();
    registered(&mut h, "alice", "correct horse");
    let c = h.connect();
    h.send(c, login_with("alice", "correct horse"));
    h.run_hasher();
    h.take(c);
    let change =
        |old: &str, new: &str| json!({"system": "password", "options": {"old": old, "new": new}});
    h.send(c, change("wrong horse", "battery staple"));
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 403);
    h.send(c, change("correct horse", "short"));
    assert_eq!(code(&h.take(c)[0]), 422);
    h.send(c, change("correct horse", "battery staple"));
    h.run_hasher(); // the old one checks out
    h.run_hasher(); // the new one is hashed
    let reply = &h.take(c)[0];
    assert_eq!(
        (code(reply), reply["response"]["msg"].clone()),
        (200, json!("Password changed."))
    );
    let d = h.connect();
    h.send(d, login_with("alice", "correct horse"));
    h.run_hasher();
    assert_eq!(code(&h.take(d)[0]), 403, "the old password no longer works");
    let guest = h.user("guest");
    h.take(guest);
    h.send(guest, change("a", "battery staple"));
    assert_eq!(
        code(&h.take(guest)[0]),
        403,
        "a guest has no password to change"
    );
}

#[test]
fn with_a_store_history_and_accounts_are_persisted_and_emptied_rooms_kept() {
    let mut h = Harness::new(Config {
        data_dir: Some("unused-by-the-hub".into()),
        ..Config::default()
    });
    registered(&mut h, "alice", "correct horse");
    assert!(matches!(&h.persisted[..], [Record::Account { name, .. }] if name == "alice"));
    h.persisted.clear();
    let a = h.user("a");
    h.send(a, join("r"));
    h.send(a, msg("r", json!("kept")));
    h.send(a, json!({"room": "r", "type": "leave"}));
    let seqs: Vec<(String, u64)> = h
        .persisted
        .iter()
        .filter_map(|r| match r {
            Record::Event { room, seq, .. } => Some((room.clone(), *seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        [
            ("lobby".into(), 1),
            ("r".into(), 1),
            ("r".into(), 2),
            ("r".into(), 3)
        ]
    );
    h.send(a, json!({"system": "rooms"}));
    let frames = h.take(a);
    let rooms = &frames.last().unwrap()["response"]["detail"]["rooms"];
    assert_eq!(
        rooms,
        &json!([{"room": "lobby", "users": 1}]),
        "empty rooms leave the list"
    );
    // Joined again, the room serves its kept history and numbers on.
    let b = h.user("b");
    h.send(b, join("r"));
    let events = h.events(b);
    let r: Vec<(Value, Value)> = events
        .iter()
        .filter(|e| e["room"] == "r" && e["type"] != "list")
        .map(|e| (e["type"].clone(), e["seq"].clone()))
        .collect();
    assert_eq!(
        r,
        [
            (json!("join"), json!(1)),
            (json!("msg"), json!(2)),
            (json!("leave"), json!(3)),
            (json!("join"), json!(4))
        ]
    );
}

#[test]
fn restored_rooms_serve_their_history_and_continue_their_seq() {
    let mut h = Harness::new(Config {
        data_dir: Some("unused-by-the-hub".into()),
        ..Config::default()
    });
    let event =
        |seq: u64| crate::protocol::encode_history_event(T0 - 60.0, "old", "msg", seq, json!(seq));
    h.hub
        .restore_room("r", 41, [(40, event(40)), (41, event(41))]);
    h.hub.restore_account("alice", "fake:correct horse");
    let a = h.user("a");
    h.send(a, join("r"));
    let events = h.events(a);
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [40, 41, 42], "the restored two, then the join");
    let c = h.connect();
    h.send(c, login_with("alice", "correct horse"));
    h.run_hasher();
    assert_eq!(code(&h.take(c)[0]), 202);
}
