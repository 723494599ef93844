//! The hub's counters behind `/metrics` (protocol.md §1.7), driven with the scripted-clients
//! harness: exact counts, no sockets, no sleeps.

use std::time::Duration;

use roomcast::hub::testing::Harness;
use roomcast::hub::Input;
use roomcast::Config;
use serde_json::json;

/// One sample of the rendered exposition, by its series as written.
fn metric(h: &mut Harness, series: &str) -> f64 {
    let text = h.hub.stats().render();
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .unwrap_or_else(|| panic!("{series} in\n{text}"))
        .parse()
        .expect("a number")
}

fn pose(x: f64) -> serde_json::Value {
    json!({"pos":{"x":x,"y":1.6,"z":0.0},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0}})
}

fn two_in_vr() -> (Harness, roomcast::hub::ConnId, roomcast::hub::ConnId) {
    let mut h = Harness::new(Config {
        fps: 20.0,
        ..Config::default()
    });
    let a = h.user("a");
    let b = h.user("b");
    for conn in [a, b] {
        h.send(conn, json!({"room":"vr","type":"join"}));
    }
    h.take(a);
    h.take(b);
    (h, a, b)
}

#[test]
fn poses_coalesced_before_a_tick_are_counted_as_superseded() {
    let (mut h, a, b) = two_in_vr();
    let delivered = metric(&mut h, "roomcast_events_delivered_total");
    for x in [1.0, 2.0, 3.0] {
        h.send(a, json!({"room":"vr","type":"transform","data":pose(x)}));
    }
    assert_eq!(metric(&mut h, "roomcast_poses_superseded_total"), 2.0);
    assert_eq!(metric(&mut h, "roomcast_pose_ticks_total"), 0.0);
    h.advance(Duration::from_millis(50));
    assert_eq!(metric(&mut h, "roomcast_pose_ticks_total"), 1.0);
    // One transform event to each of the two members.
    assert_eq!(
        metric(&mut h, "roomcast_events_delivered_total") - delivered,
        2.0
    );
    let events = h.events(b);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["pos"]["x"], 3.0);
    assert_eq!(
        metric(
            &mut h,
            r#"roomcast_messages_received_total{type="transform"}"#
        ),
        3.0
    );
    // The same pose again changes nothing and supersedes nothing.
    h.send(a, json!({"room":"vr","type":"transform","data":pose(3.0)}));
    assert_eq!(metric(&mut h, "roomcast_poses_superseded_total"), 2.0);
}

#[test]
fn a_msg_counts_one_delivery_per_member_and_errors_count_by_code() {
    let (mut h, a, _b) = two_in_vr();
    let delivered = metric(&mut h, "roomcast_events_delivered_total");
    h.send(a, json!({"room":"vr","type":"msg","data":"hi"}));
    assert_eq!(
        metric(&mut h, "roomcast_events_delivered_total") - delivered,
        2.0
    );
    h.send(a, json!({"room":"nowhere","type":"msg","data":"hi"}));
    h.send(a, json!({"room":"nowhere","type":"leave"}));
    h.send_raw(a, b"not json");
    assert_eq!(metric(&mut h, r#"roomcast_errors_total{code="404"}"#), 2.0);
    assert_eq!(metric(&mut h, r#"roomcast_errors_total{code="400"}"#), 1.0);
    assert_eq!(
        metric(
            &mut h,
            r#"roomcast_messages_received_total{type="malformed"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(&mut h, r#"roomcast_messages_received_total{type="login"}"#),
        2.0
    );
    assert_eq!(
        metric(&mut h, r#"roomcast_messages_received_total{type="join"}"#),
        2.0
    );
    assert_eq!(metric(&mut h, "roomcast_sessions"), 2.0);
    assert_eq!(metric(&mut h, "roomcast_rooms"), 2.0);
}

#[test]
fn a_backlogged_member_skips_ticks_and_the_skip_is_counted() {
    let (mut h, a, b) = two_in_vr();
    h.hub.handle(h.now, Input::Backlogged(b));
    h.send(a, json!({"room":"vr","type":"transform","data":pose(1.0)}));
    h.advance(Duration::from_millis(50));
    assert_eq!(metric(&mut h, "roomcast_ticks_skipped_backlog_total"), 1.0);
    assert!(h.events(b).is_empty(), "nothing for the backlogged member");
    assert_eq!(h.events(a).len(), 1, "the sender still gets the tick");
}

#[test]
fn a_joiners_snapshot_counts_every_pose_it_carries() {
    let (mut h, a, b) = two_in_vr();
    h.send(a, json!({"room":"vr","type":"transform","data":pose(1.0)}));
    h.send(b, json!({"room":"vr","type":"transform","data":pose(2.0)}));
    h.advance(Duration::from_millis(50));
    h.take(a);
    h.take(b);
    let c = h.user("c");
    h.send(c, json!({"room":"vr","type":"join"}));
    h.take(c);
    let delivered = metric(&mut h, "roomcast_events_delivered_total");
    h.advance(Duration::from_millis(50));
    // Nothing changed: c alone gets the snapshot, with both poses.
    assert_eq!(h.events(c).len(), 2);
    assert_eq!(
        metric(&mut h, "roomcast_events_delivered_total") - delivered,
        2.0
    );
}
