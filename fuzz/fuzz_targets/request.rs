//! Fuzzes message parsing alone: `protocol::decode_request` on any frame body, then
//! `Pose::parse` and `GameCommand::parse` on whatever `data` it let through, and the msg data
//! helpers `check_portable` and `one_line` on any JSON value.
//!
//! Checked: nothing panics; only UTF-8 text that starts with `{` is accepted; accepted msg data
//! reads back with a strict parser (`serde_json::Value`); `check_portable` agrees with that
//! strict parser on every JSON text (a differential check of its allocation-free walk);
//! `one_line` leaves no raw line break and does not change the value; a parsed pose is finite
//! and its encoding (what the tick broadcasts) reads back.

#![no_main]

use libfuzzer_sys::fuzz_target;
use roomcast::protocol::{
    check_portable, decode_request, one_line, GameCommand, Pose, Request, RoomKind, RoomName,
    UserName,
};
use serde_json::value::RawValue;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    if let Ok(text) = std::str::from_utf8(body) {
        if let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
            check_json_helpers(raw);
        }
    }
    let Ok(request) = decode_request(body) else {
        return;
    };
    let text = std::str::from_utf8(body).expect("accepted a body that is not UTF-8");
    assert!(text.trim_start().starts_with('{'), "accepted a non-object");
    match request {
        Request::Ping
        | Request::Rooms { .. }
        | Request::Resume { .. }
        | Request::Logout
        | Request::Password { .. } => {}
        Request::Login { user, .. } | Request::Register { user, .. } => {
            let _ = UserName::parse(&user);
        }
        Request::Room { room, kind, data } => {
            let _ = RoomName::parse(&room);
            let Some(data) = data else {
                return;
            };
            if kind == RoomKind::Msg {
                if let Err(err) = serde_json::from_str::<Value>(data.get()) {
                    panic!(
                        "accepted msg data a strict parser refuses ({err}): {}",
                        data.get()
                    );
                }
            }
            if let Ok(pose) = Pose::parse(data) {
                let axes = [
                    pose.pos.x, pose.pos.y, pose.pos.z, pose.rot.x, pose.rot.y, pose.rot.z,
                ];
                assert!(
                    axes.iter().all(|v| v.is_finite()),
                    "non-finite pose {pose:?}"
                );
                assert!(
                    pose.rot.w.is_none_or(f64::is_finite),
                    "non-finite w {pose:?}"
                );
                let encoded = serde_json::to_string(&pose).expect("pose serializes");
                serde_json::from_str::<Value>(&encoded).expect("pose JSON reads back");
            }
            let _ = GameCommand::parse(data);
        }
    }
});

/// `check_portable` is a strict parser without the allocations; `one_line` only swaps
/// whitespace.
fn check_json_helpers(raw: &RawValue) {
    let strict = serde_json::from_str::<Value>(raw.get());
    let portable = check_portable(raw);
    assert_eq!(
        portable.is_ok(),
        strict.is_ok(),
        "check_portable says {portable:?}, a strict parser says {strict:?}: {}",
        raw.get()
    );
    let flat = one_line(raw);
    assert!(
        !flat.get().contains(['\n', '\r']),
        "line break left: {:?}",
        flat.get()
    );
    if let Ok(value) = strict {
        let again: Value = serde_json::from_str(flat.get()).expect("one_line output reads back");
        assert_eq!(value, again, "one_line changed the value");
    }
}
