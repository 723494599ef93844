//! Inputs found by the fuzz targets in fuzz/, minimized and kept as plain tests, against the
//! sans-IO hub (no sockets).
//!
//! protocol.md §3.8: msg `data` is forwarded byte for byte. serde_json's `RawValue` accepts JSON
//! that a strict parser refuses (numbers beyond a double's range, unpaired UTF-16 surrogate
//! escapes). Up to 1d39558 such data went out, and stayed in the room's history, inside frames
//! that `serde_json::from_slice::<Value>` (and so `roomcast::client::Client::recv`) cannot read;
//! the `request` target found it, and a34a362 refuses such data (`check_portable`). These tests
//! keep that rule at the hub's output: every frame the server sends reads as strict JSON.

use roomcast::hub::testing::Harness;

/// Alice sends a msg with `data` spelled as given; Bob is in the room, Carol joins after.
/// `Harness::take` parses every frame with `serde_json::from_slice::<Value>` and panics on
/// one that is not strict JSON.
fn msg_reaches_members_and_history_as_strict_json(data: &str) {
    let mut h = Harness::default();
    let alice = h.user("alice");
    let bob = h.user("bob");
    h.take(alice);
    h.take(bob);
    let msg = format!(r#"{{"room":"lobby","type":"msg","data":{data}}}"#);
    h.send_raw(alice, msg.as_bytes());
    let sent = h.take(alice).len() + h.take(bob).len();
    assert!(sent > 0, "the msg produced no frame at all");
    // A later joiner gets the room's history.
    let carol = h.user("carol");
    h.take(carol);
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
