//! Micro benchmarks of the hot paths, with no sockets: framing, request parsing, event encoding,
//! and the sans-IO hub's msg fan-out and pose tick.
//!
//! Run with `cargo bench --bench micro`. Every hub bench drives one `Hub` whose state returns to
//! the same shape each iteration (history ring full, batches empty), with a fixed `Instant` base
//! advanced by hand; setup and sanity checks run outside the timed code.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use serde_json::value::RawValue;

use roomcast::config::Config;
use roomcast::frame::Frame;
use roomcast::hub::testing::Harness;
use roomcast::hub::ConnId;
use roomcast::protocol::{
    check_portable, decode_request, encode_event, encode_user_frame, Pose, Transform,
};
use roomcast::transport::tls::{TlsConfig, TlsSession};
use roomcast::transport::{framed, line, ws, Transport, TransportKind};

criterion_group!(
    benches,
    decode,
    encode_frame,
    parse_request,
    parse_pose,
    encode_event_frame,
    hub,
    tls_encrypt,
    vr
);
criterion_main!(benches);

/// Frames in the decode buffer: half msgs, half transforms.
const DECODE_FRAMES: usize = 1000;
/// The default `max_frame`.
const MAX_FRAME: usize = 65536;
/// Server time at the hub's base instant.
const T0: f64 = roomcast::hub::testing::T0;
const MS: Duration = Duration::from_millis(1);

/// `decode/framed`, `decode/line`: one read buffer of 1000 typical client frames, taken apart.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, mode) in [
        ("framed", TransportKind::Framed),
        ("line", TransportKind::Line),
    ] {
        let wire = decode_wire(mode);
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_function(name, |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut decoder = Transport::new(mode, MAX_FRAME);
                    let mut count = 0;
                    // The wire is built from valid frames: decoding cannot fail.
                    while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                        black_box(&frame);
                        count += 1;
                    }
                    count
                },
                // ~100 KB per input: keep the batches small.
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

/// `encode/frame`: framing a 200-byte body once, and the per-recipient chunks in each mode.
fn encode_frame(c: &mut Criterion) {
    let body = body_of_len(200);
    let frame = Frame::from_body(&body);
    let mut group = c.benchmark_group("encode/frame");
    group.bench_function("chunks/framed", |b| {
        b.iter(|| framed::chunks(black_box(&frame)))
    });
    group.bench_function("chunks/line", |b| {
        b.iter(|| line::chunks(black_box(&frame)))
    });
    group.bench_function("chunks/websocket", |b| {
        b.iter(|| ws::chunks(black_box(&frame)))
    });
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("from_body/200", |b| {
        b.iter(|| Frame::from_body(black_box(&body)))
    });
    group.finish();
}

/// `parse/request`: the 400-rule parse of the three requests a client sends most.
fn parse_request(c: &mut Criterion) {
    let cases = [
        ("msg_64", msg_body("lobby")),
        ("transform", transform_body("lobby", 1.25)),
        ("login", login_body("user042")),
    ];
    let mut group = c.benchmark_group("parse/request");
    group.throughput(Throughput::Elements(1));
    for (name, body) in &cases {
        assert!(decode_request(body).is_ok(), "{name} must parse");
        group.bench_function(*name, |b| {
            b.iter(|| decode_request(black_box(body)).is_ok())
        });
    }
    // The portable-JSON check on msg data is part of `msg_64` above; priced alone here, it is
    // what that defence adds to every msg.
    let data = raw(&msg_data());
    assert!(check_portable(&data).is_ok());
    group.bench_function("msg_64_portable_check_only", |b| {
        b.iter(|| check_portable(black_box(&data)).is_ok())
    });
    group.finish();
}

/// `parse/pose`: checking a transform's data, with Euler angles and with a quaternion.
fn parse_pose(c: &mut Criterion) {
    let cases = [
        (
            "euler",
            r#"{"pos":{"x":1.25,"y":1.7,"z":-0.5},"rot":{"x":0.0,"y":90.0,"z":0.0}}"#,
        ),
        ("quaternion", &*transform_data(1.25)),
    ]
    .map(|(name, json)| (name, raw(json)));
    let mut group = c.benchmark_group("parse/pose");
    group.throughput(Throughput::Elements(1));
    for (name, data) in &cases {
        assert!(Pose::parse(data).is_ok(), "{name} must parse");
        group.bench_function(*name, |b| b.iter(|| Pose::parse(black_box(data))));
    }
    group.finish();
}

/// `encode/event_frame`: encoding N msg events and their user frame, as a room flush does.
fn encode_event_frame(c: &mut Criterion) {
    let data = raw(&msg_data());
    let mut group = c.benchmark_group("encode/event_frame");
    for batch in [1usize, 10] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            // Reused like a room's batch vector.
            let mut events: Vec<Bytes> = Vec::with_capacity(batch);
            b.iter(|| {
                events.clear();
                for _ in 0..batch {
                    events.push(encode_event(
                        black_box(T0 + 0.123),
                        "user042",
                        "msg",
                        &*data,
                    ));
                }
                encode_user_frame("lobby", false, &events)
            })
        });
    }
    group.finish();
}

/// `hub/fanout_100`, `hub/fanout_100_batch10`, `hub/tick_20`.
fn hub(c: &mut Criterion) {
    let mut group = c.benchmark_group("hub");
    let msg = msg_body("lobby");

    // One msg in, one frame out to each of 100 members.
    let mut room = Lobby::new(100);
    room.prefill_history(&msg);
    assert_eq!(room.msgs(&msg, 1), 100, "one frame per member");
    group.throughput(Throughput::Elements(100));
    group.bench_function("fanout_100", |b| b.iter(|| room.msgs(&msg, 1)));

    // Ten msgs from ten members in one loop pass: still one frame per member, of ten events.
    let mut room = Lobby::new(100);
    room.prefill_history(&msg);
    assert_eq!(room.msgs(&msg, 10), 100, "the ten msgs share one frame");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("fanout_100_batch10", |b| b.iter(|| room.msgs(&msg, 10)));

    // Twenty changed poses, one tick: each member gets one frame of the twenty poses. Only the
    // tick is timed; the transforms that change the poses run between the timed spans.
    let mut room = Lobby::new(20);
    let poses = [1.25, 1.5].map(|x| {
        (0..room.members.len())
            .map(|_| transform_body("lobby", x))
            .collect::<Vec<_>>()
    });
    let mut which = 0;
    for _ in 0..2 {
        room.set_poses(&poses[which]);
        which ^= 1;
        room.tick();
    }
    room.set_poses(&poses[which]);
    which ^= 1;
    assert_eq!(room.tick(), 20, "one changes frame per member");
    group.throughput(Throughput::Elements(20 * 20));
    group.bench_function("tick_20", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                room.set_poses(&poses[which]);
                which ^= 1;
                let start = Instant::now();
                black_box(room.tick());
                timed += start.elapsed();
            }
            timed
        })
    });
    group.finish();
}

/// VR rooms (issue 15): `vr/parse_hands` (a transform with two hands), and one tick of every
/// member's changed pose: `vr/tick_20_hands` (head and two hands, 20 members), `vr/tick_200`
/// (200 members, every pose to everyone), `vr/tick_200_nearest20` and `vr/tick_200_radius3`
/// (interest management: each member gets its 20 nearest, or those within 3 m; members stand
/// 2 m apart on a square).
fn vr(c: &mut Criterion) {
    let mut group = c.benchmark_group("vr");
    let hands = raw(&hands_data(1.25, 0.0, 0.0));
    assert!(Transform::parse(&hands, 8).is_ok());
    group.bench_function("parse_hands", |b| {
        b.iter(|| Transform::parse(black_box(&hands), 8))
    });
    let square = |i: usize| ((i % 15) as f64 * 2.0, (i / 15) as f64 * 2.0);
    let cases: [(&str, usize, bool, Config); 4] = [
        ("tick_20_hands", 20, true, Config::default()),
        ("tick_200", 200, false, Config::default()),
        (
            "tick_200_nearest20",
            200,
            false,
            Config {
                interest_nearest: Some(20),
                ..Config::default()
            },
        ),
        (
            "tick_200_radius3",
            200,
            false,
            Config {
                interest_radius: Some(3.0),
                ..Config::default()
            },
        ),
    ];
    for (name, count, with_hands, config) in cases {
        let mut room = Lobby::with(count, config);
        let poses = [0.0, 0.25].map(|dx| {
            (0..count)
                .map(|i| {
                    let (x, z) = square(i);
                    let data = match with_hands {
                        true => hands_data(x + dx, 1.6, z),
                        false => head_data(x + dx, z),
                    };
                    format!(r#"{{"room":"lobby","type":"transform","data":{data}}}"#).into_bytes()
                })
                .collect::<Vec<_>>()
        });
        let mut which = 0;
        for _ in 0..3 {
            room.set_poses(&poses[which]);
            which ^= 1;
            room.tick();
        }
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    room.set_poses(&poses[which]);
                    which ^= 1;
                    let start = Instant::now();
                    black_box(room.tick());
                    timed += start.elapsed();
                }
                timed
            })
        });
    }
    group.finish();
}

/// A head pose at (x, 1.6, z).
fn head_data(x: f64, z: f64) -> String {
    format!(
        r#"{{"pos":{{"x":{x:?},"y":1.6,"z":{z:?}}},"rot":{{"x":0.0,"y":0.7071,"z":0.0,"w":0.7071}}}}"#
    )
}

/// A head at (x, y, z) and two hands beside it.
fn hands_data(x: f64, y: f64, z: f64) -> String {
    let hand = |dx: f64| {
        format!(
            r#"{{"pos":{{"x":{:?},"y":1.2,"z":{:?}}},"rot":{{"x":0.0,"y":0.7071,"z":0.0,"w":0.7071}}}}"#,
            x + dx,
            z + 0.3
        )
    };
    format!(
        r#"{{"pos":{{"x":{x:?},"y":{y:?},"z":{z:?}}},"rot":{{"x":0.0,"y":0.7071,"z":0.0,"w":0.7071}},"parts":{{"left_hand":{},"right_hand":{}}}}}"#,
        hand(-0.2),
        hand(0.2)
    )
}

/// A hub whose members are all logged in (and so in the lobby), driven by the shared harness.
struct Lobby {
    h: Harness,
    members: Vec<ConnId>,
}

impl Lobby {
    /// `count` users logged in, rate limit off, every output drained.
    fn new(count: usize) -> Lobby {
        Lobby::with(count, Config::default())
    }

    /// [`Lobby::new`] with `config` (its rate limit turned off).
    fn with(count: usize, config: Config) -> Lobby {
        let config = Config {
            rate_limit: 0.0,
            max_room_members: count.max(1000),
            ..config
        };
        let mut h = Harness::new(config);
        let members = (0..count).map(|i| h.user(&format!("user{i:03}"))).collect();
        for &member in &members {
            h.take(member);
        }
        Lobby { h, members }
    }

    /// Fills the room's history ring, so the timed msgs find it at its steady size.
    fn prefill_history(&mut self, msg: &[u8]) {
        for _ in 0..Config::default().history {
            self.msgs(msg, 1);
        }
    }

    /// One loop pass: `senders` members send `msg` each, then the outputs are drained.
    /// Returns the number of frames sent.
    fn msgs(&mut self, msg: &[u8], senders: usize) -> usize {
        self.h.now += MS;
        for &id in &self.members[..senders] {
            self.h.feed_raw(id, msg);
        }
        self.h.drain_count()
    }

    /// Every member sends the transform at its index; none of them produces output.
    fn set_poses(&mut self, transforms: &[Vec<u8>]) {
        for (&id, body) in self.members.iter().zip(transforms) {
            self.h.feed_raw(id, body);
        }
        assert_eq!(
            self.h.drain_count(),
            0,
            "transforms are silent until the tick"
        );
    }

    /// Moves to the next deadline (the tick: housekeeping falls on the same grid) and runs it.
    fn tick(&mut self) -> usize {
        // set_poses queued the tick, so a deadline is scheduled.
        self.h.now = self.h.hub.poll_timeout().unwrap();
        self.h.hub.handle_timeout(self.h.now);
        self.h.drain_count()
    }
}

/// 1000 client frames in `mode`, alternating a msg and a transform, as one read buffer.
fn decode_wire(mode: TransportKind) -> Vec<u8> {
    let bodies = [msg_body("lobby"), transform_body("lobby", 1.25)];
    let mut wire = Vec::new();
    for body in bodies.iter().cycle().take(DECODE_FRAMES) {
        for chunk in Transport::new(mode, MAX_FRAME).chunks(&Frame::from_body(body)) {
            wire.extend_from_slice(&chunk);
        }
    }
    wire
}

/// A msg whose data is a 64-byte JSON object.
fn msg_body(room: &str) -> Vec<u8> {
    format!(r#"{{"room":"{room}","type":"msg","data":{}}}"#, msg_data()).into_bytes()
}

/// `{"text":"..."}`, 64 bytes.
fn msg_data() -> String {
    let text = "hello from the bench, ".repeat(3);
    let data = format!(r#"{{"text":"{}"}}"#, &text[..53]);
    assert_eq!(data.len(), 64);
    data
}

fn transform_body(room: &str, x: f64) -> Vec<u8> {
    format!(
        r#"{{"room":"{room}","type":"transform","data":{}}}"#,
        transform_data(x)
    )
    .into_bytes()
}

/// A headset pose with a quaternion rotation; `x` varies it.
fn transform_data(x: f64) -> String {
    format!(
        r#"{{"pos":{{"x":{x:?},"y":1.7,"z":-0.5}},"rot":{{"x":0.0,"y":0.7071,"z":0.0,"w":0.7071}}}}"#
    )
}

fn login_body(user: &str) -> Vec<u8> {
    format!(r#"{{"system":"login","options":{{"user":"{user}","pass":"secret"}}}}"#).into_bytes()
}

/// A JSON body of exactly `len` bytes, shaped like a one-event user frame.
fn body_of_len(len: usize) -> Vec<u8> {
    let head = r#"{"info":"user","room":"lobby","payload":[{"time":1700000000.123,"user":"user042","type":"msg","data":{"text":""#;
    let tail = r#""}}]}"#;
    let pad = len - head.len() - tail.len();
    let body = format!("{head}{}{tail}", "a".repeat(pad)).into_bytes();
    assert_eq!(body.len(), len);
    body
}

fn raw(json: &str) -> Box<RawValue> {
    // Fixtures are literal JSON.
    RawValue::from_string(json.to_owned()).unwrap()
}

/// `tls/encrypt/N`: what one TLS recipient of an N-byte frame costs on top of the shared
/// chunks: encrypting the WebSocket header and body into a record and taking the ciphertext
/// (the encode-once rule stops at TLS: this is paid per recipient). The handshake is done in
/// memory first, with a certificate made here.
fn tls_encrypt(c: &mut Criterion) {
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{IoSlice, Write};
    use std::sync::Arc;

    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let config = TlsConfig::from_pem_bytes(
        generated.cert.pem().as_bytes(),
        generated.signing_key.serialize_pem().as_bytes(),
    )
    .unwrap();
    let mut server = TlsSession::new(config).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(generated.cert.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client = rustls::ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut plain = BytesMut::new();
    for _ in 0..4 {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        server.feed(&wire, &mut plain).unwrap();
        let back = server.take_ciphertext();
        let mut back = &back[..];
        while !back.is_empty() {
            client.read_tls(&mut back).unwrap();
            client.process_new_packets().unwrap();
        }
    }
    assert!(!server.is_handshaking());

    let mut group = c.benchmark_group("tls/encrypt");
    for len in [200usize, 2000] {
        let frame = Frame::from_body(&body_of_len(len));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(len), |b| {
            b.iter(|| {
                let [header, body] = ws::chunks(&frame);
                let taken = server
                    .plaintext()
                    .write_vectored(&[IoSlice::new(&header), IoSlice::new(&body)])
                    .unwrap();
                black_box(server.take_ciphertext());
                taken
            })
        });
    }
    group.finish();
}
