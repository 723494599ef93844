//! VR rooms, tested against the hub alone with an injected clock: tracked parts, interest
//! management at the tick, and shared objects with ownership (protocol.md §11-§13).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::json;

use super::testing::{code, flatten, Harness, T0};
use super::*;

const MS: Duration = Duration::from_millis(1);
/// One tick at the default 20 fps.
const TICK: Duration = Duration::from_millis(50);

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn join(room: &str) -> Value {
    json!({"room": room, "type": "join"})
}

fn rot() -> Value {
    json!({"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0})
}

/// A pose at (x, 1.6, z) as the server writes it back.
fn at(x: f64, z: f64) -> Value {
    json!({"pos": {"x": x, "y": 1.6, "z": z}, "rot": rot()})
}

fn transform(room: &str, data: Value) -> Value {
    json!({"room": room, "type": "transform", "data": data})
}

/// A head at (x, 1.6, z).
fn head(room: &str, x: f64, z: f64) -> Value {
    transform(room, at(x, z))
}

/// A head at (x, 1.6, 0) and these parts.
fn with_parts(room: &str, x: f64, parts: Value) -> Value {
    let mut data = at(x, 0.0);
    data["parts"] = parts;
    transform(room, data)
}

fn hand(x: f64) -> Value {
    json!({"pos": {"x": x, "y": 1.2, "z": 0.3}, "rot": rot()})
}

/// Users who left the lobby for `room`; every output drained.
fn members(h: &mut Harness, room: &str, names: &[&str]) -> Vec<ConnId> {
    let conns: Vec<ConnId> = names
        .iter()
        .map(|name| {
            let c = h.user(name);
            h.send(c, json!({"room": "lobby", "type": "leave"}));
            h.send(c, join(room));
            c
        })
        .collect();
    for &c in &conns {
        h.take(c);
    }
    conns
}

/// Transform events received, by user.
fn poses(events: &[Value]) -> BTreeMap<String, Value> {
    events
        .iter()
        .filter(|e| e["type"] == "transform")
        .map(|e| (e["user"].as_str().unwrap().to_owned(), e["data"].clone()))
        .collect()
}

/// The users of events of one kind, in order.
fn users_of(events: &[Value], kind: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["user"].as_str().unwrap().to_owned())
        .collect()
}

// ---- 1. Tracked parts ----

#[test]
fn parts_ride_in_the_transform_event_latest_wins_per_part() {
    let mut h = Harness::default();
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(
        a,
        with_parts(
            "vr",
            1.0,
            json!({"left_hand": hand(0.1), "right_hand": hand(0.2)}),
        ),
    );
    // Within the same tick: a new head and left hand; the right hand is left as it was.
    h.send(a, with_parts("vr", 2.0, json!({"left_hand": hand(0.5)})));
    h.advance(TICK);
    let frames = h.take(b);
    assert_eq!(frames.len(), 1, "one tick frame");
    let mut expected = at(2.0, 0.0);
    expected["parts"] = json!({"left_hand": hand(0.5), "right_hand": hand(0.2)});
    assert_eq!(
        frames[0],
        json!({"info": "user", "room": "vr", "payload": [
            {"time": T0 + 0.05, "user": "a", "type": "transform", "data": expected}]})
    );
    assert_eq!(h.take(a), frames, "the sender gets the same bytes");
    // A head-only transform keeps the parts: the event still carries the whole avatar.
    h.send(a, head("vr", 3.0, 0.0));
    h.advance(TICK);
    let sent = poses(&h.events(b));
    assert_eq!(sent["a"]["parts"]["right_hand"], hand(0.2));
    assert_eq!(sent["a"]["pos"]["x"], 3.0);
}

#[test]
fn a_part_set_to_null_is_dropped_and_equal_parts_are_no_change() {
    let mut h = Harness::default();
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(
        a,
        with_parts(
            "vr",
            1.0,
            json!({"left_hand": hand(0.1), "right_hand": hand(0.2)}),
        ),
    );
    h.advance(TICK);
    h.take(a);
    h.take(b);
    // The same avatar again is no change: no frame.
    h.send(
        a,
        with_parts(
            "vr",
            1.0,
            json!({"right_hand": hand(0.2), "left_hand": hand(0.1)}),
        ),
    );
    h.advance(TICK);
    assert!(h.take(b).is_empty());
    // The left hand lost tracking: dropping it is a change, even with the head still.
    h.send(a, with_parts("vr", 1.0, json!({"left_hand": null})));
    h.advance(TICK);
    let sent = poses(&h.events(b));
    assert_eq!(sent["a"]["parts"], json!({"right_hand": hand(0.2)}));
    // Dropping the last part leaves a head-only pose, spelled as before parts existed.
    h.send(
        a,
        with_parts("vr", 1.0, json!({"right_hand": null, "nothing": null})),
    );
    h.advance(TICK);
    assert_eq!(poses(&h.events(b))["a"], at(1.0, 0.0));
    // A joiner's snapshot holds the parts as they are now.
    h.send(a, with_parts("vr", 1.0, json!({"tool": hand(0.7)})));
    let c = h.user("c");
    h.send(c, join("vr"));
    h.take(c);
    h.advance(TICK);
    assert_eq!(
        poses(&h.events(c))["a"]["parts"],
        json!({"tool": hand(0.7)})
    );
}

#[test]
fn too_many_parts_is_422_and_changes_nothing() {
    let mut h = Harness::new(Config {
        max_parts: 2,
        ..Config::default()
    });
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    let refusal = |h: &mut Harness, message: Value| {
        let room = message["room"].clone();
        h.send(a, message);
        let reply = h.take(a);
        assert_eq!(code(&reply[0]), 422, "{reply:?}");
        assert_eq!(
            reply[0]["response"]["detail"],
            json!({"room": room, "type": "transform"})
        );
        reply[0]["response"]["msg"].as_str().unwrap().to_owned()
    };
    let three = json!({"a": hand(0.0), "b": hand(0.0), "c": hand(0.0)});
    assert_eq!(
        refusal(&mut h, with_parts("vr", 1.0, three)),
        "Invalid transform: data.parts names 3 parts; at most 2."
    );
    h.send(
        a,
        with_parts("vr", 1.0, json!({"a": hand(0.0), "b": hand(0.0)})),
    );
    // Two held, one more would be three: refused whole (the head does not move either).
    assert!(refusal(&mut h, with_parts("vr", 9.0, json!({"c": hand(0.0)}))).contains("3 tracked"));
    // Dropping one and adding one in the same message is fine.
    h.send(a, with_parts("vr", 1.0, json!({"a": null, "c": hand(0.0)})));
    assert!(h.take(a).is_empty(), "accepted silently");
    h.advance(TICK);
    let sent = poses(&h.events(b));
    assert_eq!(sent["a"]["pos"]["x"], 1.0);
    let names: Vec<&String> = sent["a"]["parts"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["b", "c"]);
    h.take(a);
    // A bad part names its field, and precedes 404 like any invalid transform.
    let bad = with_parts("elsewhere", 1.0, json!({"left_hand": {"pos": {"x": 1}}}));
    assert_eq!(
        refusal(&mut h, bad.clone()).replace("elsewhere", "vr"),
        "Invalid transform: data.parts.left_hand.rot must be an object with x, y, z."
    );
}

// ---- 2. Interest management ----

fn interest(radius: Option<f64>, nearest: Option<usize>) -> Config {
    Config {
        interest_radius: radius,
        interest_nearest: nearest,
        ..Config::default()
    }
}

#[test]
fn a_radius_sends_each_member_only_the_poses_near_its_head() {
    let mut h = Harness::new(interest(Some(5.0), None));
    let [a, b, c] = members(&mut h, "vr", &["a", "b", "c"])[..] else {
        unreachable!()
    };
    h.send(a, head("vr", 0.0, 0.0));
    h.send(b, head("vr", 3.0, 0.0));
    h.send(c, head("vr", 10.0, 0.0));
    h.advance(TICK);
    let seen = |events: Vec<Value>| poses(&events).into_keys().collect::<Vec<_>>();
    assert_eq!(seen(h.events(a)), ["a", "b"]);
    assert_eq!(seen(h.events(b)), ["a", "b"], "b is 7 m from c");
    assert_eq!(seen(h.events(c)), ["c"], "c sees only itself");
    // c walks to 4 m from a: a and b see it come into range; c gets both in full although
    // neither moved.
    h.send(c, head("vr", 4.0, 0.0));
    h.advance(TICK);
    assert_eq!(seen(h.events(a)), ["c"]);
    assert_eq!(seen(h.events(b)), ["c"]);
    let full = poses(&h.events(c));
    assert_eq!(full["a"], at(0.0, 0.0));
    assert_eq!(full["b"], at(3.0, 0.0));
    // a walks away: it is out of range of b and c, and they of it, once each.
    h.send(a, head("vr", -6.0, 0.0));
    h.advance(TICK);
    let events = h.events(b);
    assert_eq!(kinds(&events), ["out_of_range"]);
    assert_eq!(events[0]["user"], "a");
    assert_eq!(events[0]["data"], "");
    assert!(events[0].get("seq").is_none(), "state, not history");
    let events = h.events(a);
    assert_eq!(users_of(&events, "transform"), ["a"]);
    assert_eq!(users_of(&events, "out_of_range"), ["b", "c"]);
    assert_eq!(users_of(&h.events(c), "out_of_range"), ["a"]);
    // Nothing moves: nothing is sent, not even out_of_range again.
    h.advance(3 * TICK);
    assert!(h.take(a).is_empty() && h.take(b).is_empty() && h.take(c).is_empty());
    // b comes to a, which stands still: b gets a in full, a gets b.
    h.send(b, head("vr", -5.0, 0.0));
    h.advance(TICK);
    assert_eq!(poses(&h.events(b))["a"], at(-6.0, 0.0));
    assert_eq!(seen(h.events(a)), ["b"]);
}

#[test]
fn k_nearest_keeps_k_others_and_breaks_ties_by_name() {
    let mut h = Harness::new(interest(None, Some(1)));
    // carol, bob and alice are all 2 m from dave; alice sorts first.
    let [dave, carol, bob, alice] = members(&mut h, "vr", &["dave", "carol", "bob", "alice"])[..]
    else {
        unreachable!()
    };
    h.send(dave, head("vr", 0.0, 0.0));
    h.send(carol, head("vr", 2.0, 0.0));
    h.send(bob, head("vr", 0.0, 2.0));
    h.send(alice, head("vr", -2.0, 0.0));
    h.advance(TICK);
    let seen = |events: Vec<Value>| poses(&events).into_keys().collect::<Vec<_>>();
    assert_eq!(seen(h.events(dave)), ["alice", "dave"]);
    // alice is 4 m from carol and 2.83 m from bob, whose nearest is dave (2 m).
    assert_eq!(seen(h.events(alice)), ["alice", "dave"]);
    assert_eq!(seen(h.events(bob)), ["bob", "dave"]);
    assert_eq!(seen(h.events(carol)), ["carol", "dave"]);
    // carol steps nearer to dave: for dave she replaces alice.
    h.send(carol, head("vr", 1.0, 0.0));
    h.advance(TICK);
    let events = h.events(dave);
    assert_eq!(users_of(&events, "transform"), ["carol"]);
    assert_eq!(users_of(&events, "out_of_range"), ["alice"]);
}

#[test]
fn a_member_without_a_head_pose_sees_no_one_until_it_sends_one() {
    let mut h = Harness::new(interest(Some(5.0), None));
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, head("vr", 0.0, 0.0));
    h.advance(TICK);
    assert_eq!(poses(&h.events(a)).len(), 1);
    assert!(
        h.take(b).is_empty(),
        "no head pose: nowhere, nothing in range"
    );
    // Chat is not filtered.
    h.send(a, json!({"room": "vr", "type": "msg", "data": "hi"}));
    assert_eq!(kinds(&h.events(b)), ["msg"]);
    // A joiner too gets nothing at its first tick, then everyone in range in full.
    let c = h.user("c");
    h.send(c, join("vr"));
    h.take(c);
    h.send(a, head("vr", 0.5, 0.0));
    h.advance(TICK);
    assert!(poses(&h.events(c)).is_empty());
    h.send(c, head("vr", 1.0, 1.0));
    h.advance(TICK);
    let seen = poses(&h.events(c));
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(
        seen["a"],
        at(0.5, 0.0),
        "a did not move this tick: sent in full"
    );
}

#[test]
fn interest_frames_share_encoded_events() {
    let mut h = Harness::new(interest(Some(100.0), None));
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, head("vr", 0.0, 0.0));
    h.send(b, head("vr", 1.0, 0.0));
    h.advance(TICK);
    // Everyone is in range: both get the same events (in an order of their own), as with
    // interest management off.
    let sorted = |mut events: Vec<Value>| {
        events.sort_by_key(|e| e["user"].as_str().unwrap().to_owned());
        events
    };
    let for_a = sorted(h.events(a));
    assert_eq!(for_a.len(), 2);
    assert_eq!(for_a, sorted(h.events(b)));
    // A backlogged member skips ticks and then gets everyone in range afresh.
    h.hub.handle(h.now, Input::Backlogged(b));
    h.send(a, head("vr", 2.0, 0.0));
    h.advance(TICK);
    assert!(h.take(b).is_empty());
    h.hub.handle(h.now, Input::Drained(b));
    h.advance(TICK);
    assert_eq!(poses(&h.events(b)).len(), 2, "a and b itself, in full");
}

// ---- 3. Shared objects ----

fn claim(room: &str, object: &str) -> Value {
    json!({"room": room, "type": "claim", "data": {"object": object}})
}

fn release(room: &str, object: &str) -> Value {
    json!({"room": room, "type": "release", "data": {"object": object}})
}

fn object(room: &str, object: &str, x: f64, state: Value) -> Value {
    json!({"room": room, "type": "object", "data": {
        "object": object, "pos": {"x": x, "y": 1.0, "z": 0.0}, "rot": rot(), "state": state}})
}

/// The one reply in `conn`'s inbox: code and detail.
fn reply(h: &mut Harness, conn: ConnId) -> (u64, Value) {
    let frames = h.take(conn);
    assert_eq!(frames.len(), 1, "{frames:?}");
    (code(&frames[0]), frames[0]["response"]["detail"].clone())
}

#[test]
fn a_ball_is_claimed_thrown_released_and_caught() {
    let mut h = Harness::default();
    let [a, b, c] = members(&mut h, "vr", &["a", "b", "c"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "ball"));
    let events = h.events(b);
    assert_eq!(kinds(&events), ["claim"]);
    assert_eq!(events[0]["user"], "a");
    assert_eq!(events[0]["data"], json!({"object": "ball"}));
    let seq = events[0]["seq"]
        .as_u64()
        .expect("claims are history events");
    assert_eq!(h.events(a), events, "the claimant gets its own claim");
    h.take(c);
    // b tries: 409 naming the owner.
    h.send(b, claim("vr", "ball"));
    let (code, detail) = reply(&mut h, b);
    assert_eq!(code, 409);
    assert_eq!(
        detail,
        json!({"room": "vr", "type": "claim", "object": "ball", "owner": "a"})
    );
    // Only the owner moves it: 403 for b, whose update changes nothing.
    h.send(b, object("vr", "ball", 9.0, json!(null)));
    let (code, detail) = reply(&mut h, b);
    assert_eq!(code, 403);
    assert_eq!(detail["owner"], "a");
    // a's updates are coalesced on the tick, latest-wins.
    h.send(a, object("vr", "ball", 1.0, json!({"spin": 1})));
    h.send(a, object("vr", "ball", 2.0, json!({"spin": 2})));
    assert!(h.take(c).is_empty(), "updates wait for the tick");
    h.advance(TICK);
    let events = h.events(c);
    assert_eq!(
        events,
        [
            json!({"time": T0 + 0.05, "user": "a", "type": "object", "room": "vr", "data": {
            "object": "ball", "owner": "a", "pos": {"x": 2.0, "y": 1.0, "z": 0.0},
            "rot": rot(), "state": {"spin": 2}}})
        ]
    );
    h.take(a);
    h.take(b);
    // A state-only update keeps the pose; an equal one is no change.
    h.send(
        a,
        json!({"room": "vr", "type": "object", "data": {"object": "ball", "state": {"spin": 2}}}),
    );
    h.advance(TICK);
    assert!(h.take(c).is_empty());
    // a throws: release. b's release of it first is 403 (it never held it).
    h.send(b, release("vr", "ball"));
    assert_eq!(reply(&mut h, b).0, 403);
    h.send(a, release("vr", "ball"));
    let events = h.events(c);
    assert_eq!(kinds(&events), ["release"]);
    assert_eq!(events[0]["seq"], seq + 1);
    assert_eq!(
        events[0]["data"],
        json!({"object": "ball", "reason": "release"})
    );
    h.take(a);
    h.send(a, release("vr", "ball"));
    let (code, detail) = reply(&mut h, a);
    assert_eq!((code, detail["owner"].clone()), (403, Value::Null));
    // b catches it: claim, and the ball moves on from where a left it.
    h.send(b, claim("vr", "ball"));
    assert_eq!(users_of(&h.events(c), "claim"), ["b"]);
    h.take(a);
    h.send(b, object("vr", "ball", 5.0, json!({"spin": 0})));
    h.advance(TICK);
    let events = h.events(a);
    let update = events.iter().find(|e| e["type"] == "object").unwrap();
    assert_eq!(
        (update["user"].clone(), update["data"]["owner"].clone()),
        (json!("b"), json!("b"))
    );
}

#[test]
fn a_claim_by_the_owner_refreshes_its_ttl_silently_and_the_ttl_releases() {
    let mut h = Harness::default();
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(
        a,
        json!({"room": "vr", "type": "claim", "data": {"object": "ball", "ttl": 2}}),
    );
    let events = h.events(b);
    assert_eq!(events[0]["data"], json!({"object": "ball", "ttl": 2.0}));
    h.take(a);
    h.advance(1500 * MS);
    // Refresh at 1.5 s: now it runs out at 3.5 s. Nobody is told.
    h.send(
        a,
        json!({"room": "vr", "type": "claim", "data": {"object": "ball", "ttl": 2}}),
    );
    assert!(h.take(a).is_empty() && h.take(b).is_empty());
    h.advance(1999 * MS);
    assert!(h.take(b).is_empty(), "not yet at 3.499 s");
    h.advance(MS);
    let events = h.events(b);
    assert_eq!(kinds(&events), ["release"]);
    assert_eq!(events[0]["time"], T0 + 3.5);
    assert_eq!(events[0]["user"], "a");
    assert_eq!(
        events[0]["data"],
        json!({"object": "ball", "reason": "expired"})
    );
    assert_eq!(
        h.hub.claim_deadlines.len(),
        0,
        "the claim clock is empty again"
    );
    h.take(a);
    // A claim without a TTL holds until released: the clock has nothing.
    h.send(b, claim("vr", "ball"));
    assert!(h.hub.claim_deadlines.is_empty());
    h.advance(Duration::from_secs(100));
    assert!(h.events(a).iter().all(|e| e["type"] != "release"));
}

#[test]
fn ownership_ends_on_leave_and_session_end_but_not_while_detached() {
    let mut h = Harness::default(); // resume grace 30 s
    let [a, b, c] = members(&mut h, "vr", &["a", "b", "c"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "ball"));
    h.send(a, claim("vr", "bat"));
    h.take(a);
    h.take(b);
    // a leaves: leave, then a release for each object it held (it does not get those).
    h.send(a, json!({"room": "vr", "type": "leave"}));
    let events = h.events(b);
    assert_eq!(kinds(&events), ["leave", "release", "release"]);
    assert_eq!(
        events[1]["data"],
        json!({"object": "ball", "reason": "leave"})
    );
    assert_eq!(events[2]["data"]["object"], "bat");
    assert_eq!(kinds(&h.events(a)), ["leave"]);
    // b's connection drops: b is only away, and keeps the ball.
    h.send(b, claim("vr", "ball"));
    h.take(c);
    h.disconnect(b);
    assert_eq!(kinds(&h.events(c)), ["away"]);
    h.send(c, claim("vr", "ball"));
    assert_eq!(reply(&mut h, c).1["owner"], "b");
    // The grace runs out: the session ends, b leaves and the ball is free.
    h.advance(Duration::from_secs(31));
    let events = h.events(c);
    assert_eq!(kinds(&events), ["leave", "release"]);
    assert_eq!(events[1]["user"], "b");
    h.send(c, claim("vr", "ball"));
    assert_eq!(users_of(&h.events(c), "claim"), ["c"]);
}

#[test]
fn without_resume_a_disconnect_releases_at_once() {
    let mut h = Harness::new(Config {
        resume_grace: Duration::ZERO,
        ..Config::default()
    });
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "ball"));
    h.take(b);
    h.disconnect(a);
    let events = h.events(b);
    assert_eq!(kinds(&events), ["leave", "release"]);
    assert_eq!(events[1]["data"]["reason"], "leave");
}

#[test]
fn joiners_and_resumers_get_every_object_with_its_owner_and_state() {
    let mut h = Harness::default();
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "ball"));
    h.send(a, object("vr", "ball", 1.0, json!("red")));
    h.send(b, claim("vr", "door"));
    h.send(
        b,
        json!({"room": "vr", "type": "object", "data": {"object": "door", "state": "open"}}),
    );
    h.send(b, release("vr", "door"));
    h.advance(TICK);
    let c = h.user("c");
    h.send(c, join("vr"));
    let history: Vec<Value> = h
        .take(c)
        .into_iter()
        .filter(|f| f["history"] == true && f["room"] == "vr")
        .collect();
    let history = flatten(&history)
        .into_iter()
        .filter(|e| e["type"] == "claim" || e["type"] == "release")
        .count();
    assert_eq!(
        history, 3,
        "claims and releases are in the joiner's history"
    );
    h.advance(TICK);
    let events = h.events(c);
    let objects: Vec<&Value> = events.iter().filter(|e| e["type"] == "object").collect();
    assert_eq!(objects.len(), 2, "{events:?}");
    assert_eq!(objects[0]["data"]["object"], "ball");
    assert_eq!(objects[0]["data"]["owner"], "a");
    assert_eq!(objects[0]["data"]["state"], "red");
    assert_eq!(
        objects[1]["data"],
        json!({"object": "door", "owner": null, "state": "open"}),
        "a released object keeps its state"
    );
    assert_eq!(objects[1]["user"], "b", "its last owner");
    // Removing an object forgets it: a later joiner does not get it.
    h.take(b);
    h.send(
        a,
        json!({"room": "vr", "type": "release", "data": {"object": "ball", "remove": true}}),
    );
    assert_eq!(
        h.events(b)[0]["data"],
        json!({"object": "ball", "reason": "release", "removed": true})
    );
    let d = h.user("d");
    h.send(d, join("vr"));
    h.take(d);
    h.advance(TICK);
    let objects: Vec<Value> = h
        .events(d)
        .into_iter()
        .filter(|e| e["type"] == "object")
        .collect();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["data"]["object"], "door");
}

#[test]
fn objects_are_bounded_per_room_per_user_and_in_state() {
    let mut h = Harness::new(Config {
        max_objects: 2,
        max_claims: 1,
        max_object_state: 8,
        ..Config::default()
    });
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "x"));
    h.take(a);
    h.send(a, claim("vr", "y"));
    let (code, _) = reply(&mut h, a);
    assert_eq!(code, 422, "a holds its one claim");
    h.send(b, claim("vr", "y"));
    h.send(b, release("vr", "y"));
    h.take(a);
    h.take(b);
    h.send(b, claim("vr", "z"));
    let frames = h.take(b);
    assert_eq!(code_of(&frames), 422, "x and y exist: the room is full");
    assert!(frames[0]["response"]["msg"]
        .as_str()
        .unwrap()
        .contains("limit of 2 objects"));
    h.send(
        a,
        json!({"room": "vr", "type": "object", "data": {"object": "x", "state": "123456789"}}),
    );
    let frames = h.take(a);
    assert_eq!(code_of(&frames), 422);
    assert_eq!(
        frames[0]["response"]["msg"],
        "Invalid object: data.state is 11 bytes; at most 8."
    );
    // Invalid data is 422 before membership (404).
    h.send(
        a,
        json!({"room": "nowhere", "type": "claim", "data": {"object": "no name"}}),
    );
    assert_eq!(code_of(&h.take(a)), 422);
    h.send(a, claim("nowhere", "x"));
    assert_eq!(code_of(&h.take(a)), 404);
}

fn code_of(frames: &[Value]) -> u64 {
    assert_eq!(frames.len(), 1, "{frames:?}");
    code(&frames[0])
}

#[test]
fn claims_and_releases_are_replayed_on_resume() {
    let mut h = Harness::default();
    let a = h.connect();
    h.send(a, json!({"system": "login", "options": {"user": "a"}}));
    let token = h.take(a)[0]["response"]["detail"]["resume"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = h.user("b");
    h.take(a);
    h.send(a, claim("lobby", "ball"));
    let last = h.events(a)[0]["seq"].as_u64().unwrap();
    h.disconnect(a);
    h.send(b, claim("lobby", "bat"));
    h.send(b, object("lobby", "bat", 3.0, json!(1)));
    let a2 = h.connect();
    h.send(
        a2,
        json!({"system": "resume", "options": {"token": token, "rooms": {"lobby": last}}}),
    );
    let frames = h.take(a2);
    let replay: Vec<&str> = frames
        .iter()
        .filter(|f| f["history"] == true)
        .flat_map(|f| f["payload"].as_array().unwrap())
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(replay, ["away", "claim"], "b's claim while a was away");
    h.advance(TICK);
    let objects: Vec<Value> = h
        .events(a2)
        .into_iter()
        .filter(|e| e["type"] == "object")
        .collect();
    assert_eq!(objects.len(), 2, "then every object's state at the tick");
    assert_eq!(objects[0]["data"]["owner"], "a", "a still holds the ball");
    assert_eq!(objects[1]["data"]["state"], 1);
}

// ---- Ownership, as a property ----

#[derive(Debug, Clone)]
enum Step {
    Claim(usize, usize, bool),
    Release(usize, usize),
    Update(usize, usize),
    Leave(usize),
    Join(usize),
    Disconnect(usize),
    Resume(usize),
    Logout(usize),
    Wait(u64),
}

const USERS: usize = 3;
const OBJECTS: [&str; 2] = ["ball", "bat"];

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS;
    let object = 0..OBJECTS.len();
    prop_oneof![
        4 => (user.clone(), object.clone(), any::<bool>()).prop_map(|(u, o, t)| Step::Claim(u, o, t)),
        2 => (user.clone(), object.clone()).prop_map(|(u, o)| Step::Release(u, o)),
        2 => (user.clone(), object).prop_map(|(u, o)| Step::Update(u, o)),
        1 => user.clone().prop_map(Step::Leave),
        2 => user.clone().prop_map(Step::Join),
        1 => user.clone().prop_map(Step::Disconnect),
        1 => user.clone().prop_map(Step::Resume),
        1 => user.prop_map(Step::Logout),
        2 => (1u64..3_000).prop_map(Step::Wait),
    ]
}

/// Who holds what and who is in the room, as an observer rebuilds it from the events it
/// receives; every event is checked against what it knew before.
#[derive(Debug, Default)]
struct Observer {
    members: BTreeSet<String>,
    owners: BTreeMap<String, String>,
}

impl Observer {
    fn absorb(&mut self, events: &[Value]) -> Result<(), TestCaseError> {
        for e in events.iter().filter(|e| e["room"] == "vr") {
            let user = e["user"].as_str().unwrap_or_default().to_owned();
            let object = e["data"]["object"].as_str().unwrap_or_default().to_owned();
            match e["type"].as_str().unwrap_or_default() {
                "join" => {
                    self.members.insert(user);
                }
                "leave" => {
                    self.members.remove(&user);
                }
                "claim" => {
                    prop_assert!(self.members.contains(&user), "claim by a non-member: {e}");
                    let before = self.owners.insert(object, user);
                    prop_assert!(before.is_none(), "two owners at once: {e}, was {before:?}");
                }
                "release" => {
                    let before = self.owners.remove(&object);
                    prop_assert_eq!(before, Some(user), "release by a non-owner: {}", e);
                }
                "object" => {
                    let owner = e["data"]["owner"].as_str().map(str::to_owned);
                    prop_assert_eq!(owner.as_ref(), self.owners.get(&object), "{}", e);
                }
                _ => {}
            }
        }
        // After every pass: nobody who left still owns anything.
        for (object, owner) in &self.owners {
            prop_assert!(
                self.members.contains(owner),
                "{owner} left holding {object}"
            );
        }
        Ok(())
    }
}

struct Player {
    name: String,
    conn: Option<ConnId>,
    token: Option<String>,
    in_room: bool,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

    /// Random claims, releases, updates, leaves, joins, lost connections, resumes, logouts and
    /// waits (TTLs, the resume grace) never leave an object with two owners, or owned by
    /// someone who left; what an observer rebuilds from the events matches the hub.
    #[test]
    fn an_object_has_at_most_one_owner_and_it_is_a_member(steps in prop::collection::vec(step(), 1..60)) {
        let mut h = Harness::new(Config {
            resume_grace: Duration::from_secs(2),
            max_claims: 1,
            ..Config::default()
        });
        let watcher = h.user("watcher");
        h.send(watcher, join("vr"));
        let mut observer = Observer::default();
        observer.absorb(&h.events(watcher))?;
        let mut players: Vec<Player> = (0..USERS)
            .map(|i| Player { name: format!("p{i}"), conn: None, token: None, in_room: false })
            .collect();
        for step in steps {
            match step {
                Step::Claim(u, o, ttl) => {
                    let data = match ttl {
                        true => json!({"object": OBJECTS[o], "ttl": 1.5}),
                        false => json!({"object": OBJECTS[o]}),
                    };
                    if let Some(conn) = players[u].conn {
                        h.send(conn, json!({"room": "vr", "type": "claim", "data": data}));
                    }
                }
                Step::Release(u, o) => {
                    if let Some(conn) = players[u].conn {
                        h.send(conn, release("vr", OBJECTS[o]));
                    }
                }
                Step::Update(u, o) => {
                    if let Some(conn) = players[u].conn {
                        h.send(conn, object("vr", OBJECTS[o], 1.0, json!(u)));
                    }
                }
                Step::Leave(u) => {
                    if let Some(conn) = players[u].conn {
                        h.send(conn, json!({"room": "vr", "type": "leave"}));
                        players[u].in_room = false;
                    }
                }
                Step::Join(u) => match players[u].conn {
                    Some(conn) => {
                        h.send(conn, join("vr"));
                        players[u].in_room = true;
                    }
                    None if players[u].token.is_none() => {
                        let conn = h.connect();
                        h.send(conn, json!({"system": "login", "options": {"user": players[u].name}}));
                        let frames = h.take(conn);
                        players[u].token = frames[0]["response"]["detail"]["resume"].as_str().map(str::to_owned);
                        h.send(conn, join("vr"));
                        players[u].conn = Some(conn);
                        players[u].in_room = true;
                    }
                    None => {}
                },
                Step::Disconnect(u) => {
                    if let Some(conn) = players[u].conn.take() {
                        h.disconnect(conn);
                    }
                }
                Step::Resume(u) => {
                    if let (None, Some(token)) = (players[u].conn, players[u].token.clone()) {
                        let conn = h.connect();
                        h.send(conn, json!({"system": "resume", "options": {"token": token}}));
                        let frames = h.take(conn);
                        match code(&frames[0]) {
                            202 => {
                                players[u].token = frames[0]["response"]["detail"]["resume"].as_str().map(str::to_owned);
                                players[u].conn = Some(conn);
                            }
                            _ => {
                                // The grace ran out: the session ended (and left the room).
                                players[u].token = None;
                                players[u].in_room = false;
                                h.disconnect(conn);
                            }
                        }
                    }
                }
                Step::Logout(u) => {
                    if let Some(conn) = players[u].conn.take() {
                        h.send(conn, json!({"system": "logout"}));
                        h.disconnect(conn);
                        players[u].token = None;
                        players[u].in_room = false;
                    }
                }
                Step::Wait(ms) => h.advance(Duration::from_millis(ms)),
            }
            for player in &mut players {
                if let Some(conn) = player.conn {
                    h.take(conn);
                }
            }
            observer.absorb(&h.events(watcher))?;
            // The hub's own view: every owner is a member of the room, and matches the observer.
            let room_id = h.hub.room_ids["vr"];
            let room = &mut h.hub.rooms[room_id];
            let mut owners = BTreeMap::new();
            for (object, owner) in room.objects_mut().owners() {
                if let Some(owner) = owner {
                    prop_assert!(room.has(owner), "{object:?} owned by a non-member");
                    let name = h.hub.sessions.get(owner).map(|s| s.user.as_str().to_owned());
                    prop_assert!(name.is_some(), "{object:?} owned by an ended session");
                    owners.insert(object.as_str().to_owned(), name.unwrap_or_default());
                }
            }
            prop_assert_eq!(&owners, &observer.owners);
        }
    }
}

#[test]
fn object_updates_stream_on_the_transform_bucket() {
    let mut h = Harness::new(Config {
        rate_limit: 1.0,
        burst: 5.0,
        ..Config::default()
    });
    let [a, b] = members(&mut h, "vr", &["a", "b"])[..] else {
        unreachable!()
    };
    h.send(a, claim("vr", "ball"));
    h.take(a);
    h.take(b);
    // 40 updates at once: far past the message burst of 5, within the transform burst of 60.
    for i in 0..40 {
        h.send(a, object("vr", "ball", i as f64, json!(null)));
    }
    assert!(h.take(a).is_empty(), "no 429");
    h.advance(TICK);
    let events = h.events(b);
    assert_eq!(events[0]["data"]["pos"]["x"], 39.0);
}
