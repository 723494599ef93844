//! protocol.md, "transform": the tick over real sockets. The rules themselves are unit-tested
//! with an injected clock in src/hub/tests.rs; this checks the loop keeps the cadence.

mod support;

use std::time::{Duration, Instant};

use roomcast::client::ServerMessage;
use roomcast::protocol::{Pose, Rotation, Vec3};
use support::{config, start, TestClient};

fn pose(x: f64) -> Pose {
    Pose {
        pos: Vec3 { x, y: 1.6, z: 0.0 },
        rot: Rotation {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            w: Some(1.0),
        },
    }
}

#[test]
fn fps_10_for_2_seconds_gives_about_20_tick_frames() {
    let mut config = config();
    config.fps = 10.0;
    let server = start(config);
    let addr = server.local_addr();
    let mut headset = TestClient::login(addr, "headset");
    let mut viewer = TestClient::login(addr, "viewer");
    viewer
        .client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    // The headset streams at ~90 Hz for 2 s from its own thread.
    let sender = std::thread::spawn(move || {
        let started = Instant::now();
        let mut i = 0;
        while started.elapsed() < Duration::from_secs(2) {
            headset.client.transform("lobby", &pose(i as f64)).unwrap();
            i += 1;
            std::thread::sleep(Duration::from_millis(11));
        }
        (headset, i)
    });
    let started = Instant::now();
    let mut tick_frames = 0;
    let mut last_x = -1.0;
    while started.elapsed() < Duration::from_millis(2100) {
        match viewer.client.recv() {
            Ok(ServerMessage::Events(batch)) if batch.events[0].kind == "transform" => {
                tick_frames += 1;
                assert_eq!(batch.events.len(), 1, "one event per changed user per tick");
                let x = batch.events[0].data["pos"]["x"].as_f64().unwrap();
                assert!(
                    x > last_x,
                    "poses arrive newest-last, coalesced: {x} after {last_x}"
                );
                last_x = x;
            }
            Ok(_) => {}
            Err(_) => {} // read timeout: keep waiting until the window closes
        }
    }
    let (_headset, sent) = sender.join().unwrap();
    assert!(sent > 100, "the headset sent {sent} poses");
    assert!(
        (15..=25).contains(&tick_frames),
        "{tick_frames} tick frames in 2 s at fps 10"
    );
}
