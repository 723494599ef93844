//! Inputs found by the fuzz targets in fuzz/, minimized and kept as plain tests, against the
//! sans-IO hub (no sockets).
//!
//! protocol.md §3.8: msg `data` is forwarded byte for byte. serde_json's `RawValue` accepts JSON
//! that a strict parser refuses (numbers beyond a double's range, unpaired UTF-16 surrogate
//! escapes). Up to 1d39558 such data went out, and stayed in the room's history, inside frames
//! that `serde_json::from_slice::<Value>` (and so `roomcast::client::Client::recv`) cannot read;
//! the `request` target found it, and a34a362 refuses such data (`check_portable`). These tests
//! keep that rule at the hub's output: every frame the server sends reads as strict JSON.

use std::time::Instant;

use roomcast::clock::WallClock;
use roomcast::config::Config;
use roomcast::hub::{ClientId, Hub, Input, Output};
use serde_json::{json, Value};

const T0: f64 = 1_700_000_000.0;

/// Opens a connection and logs it in as `user`.
fn user(hub: &mut Hub, now: Instant, id: usize, user: &str) -> ClientId {
    let id = ClientId(id);
    hub.handle(now, Input::Open(id));
    let login = json!({"system": "login", "options": {"user": user, "pass": "x"}}).to_string();
    hub.handle(now, Input::Frame(id, login.as_bytes()));
    id
}

/// Drains the hub and checks that every frame it sends is strict JSON.
fn drain_strict(hub: &mut Hub) -> usize {
    let mut sent = 0;
    while let Some(output) = hub.poll_output() {
        if let Output::Send { to, frame } = output {
            let body = frame.body();
            if let Err(err) = serde_json::from_slice::<Value>(&body) {
                panic!(
                    "frame to {to:?} is not strict JSON ({err}): {}",
                    String::from_utf8_lossy(&body)
                );
            }
            sent += 1;
        }
    }
    sent
}

/// Alice sends a msg with `data` spelled as given; Bob is in the room, Carol joins after.
fn msg_reaches_members_and_history_as_strict_json(data: &str) {
    let now = Instant::now();
    let mut hub = Hub::new(Config::default(), WallClock::new(now, T0), now);
    let alice = user(&mut hub, now, 0, "alice");
    let _bob = user(&mut hub, now, 1, "bob");
    drain_strict(&mut hub);
    let msg = format!(r#"{{"room":"lobby","type":"msg","data":{data}}}"#);
    hub.handle(now, Input::Frame(alice, msg.as_bytes()));
    assert!(
        drain_strict(&mut hub) > 0,
        "the msg produced no frame at all"
    );
    // A later joiner gets the room's history.
    let _carol = user(&mut hub, now, 2, "carol");
    drain_strict(&mut hub);
}

/// Found by `request` (and `hub`): `521436789012345e67234567890`, minimized to `1e999`.
#[test]
fn msg_data_with_a_number_beyond_f64_is_not_forwarded_unreadable() {
    msg_reaches_members_and_history_as_strict_json("1e999");
    msg_reaches_members_and_history_as_strict_json(r#"{"n":[-1e400]}"#);
}

/// The same class: `"\ud800"` is a valid JSON string to `RawValue`, not to a strict parser.
#[test]
fn msg_data_with_a_lone_surrogate_escape_is_not_forwarded_unreadable() {
    msg_reaches_members_and_history_as_strict_json(r#""\ud800""#);
    msg_reaches_members_and_history_as_strict_json(r#"{"s":"\udc00x"}"#);
}
