//! protocol.md §1.5-§1.8, transports on one port: sniffing, WebSocket, the HTTP endpoints and TLS, over
//! real sockets on 127.0.0.1.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use roomcast::config::TlsFiles;
use roomcast::Config;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use support::{config, framed, start, RawConn, TestClient, TIMEOUT};
use tungstenite::{Message, WebSocket};

// ---- helpers: raw WebSocket frames, a tungstenite client, HTTP, TLS ----

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A masked client frame with the given first byte (FIN, opcode).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    roomcast::transport::ws::testing::client_frame(first, payload, [0x11, 0x22, 0x33, 0x44])
}

fn text_frame(value: &Value) -> Vec<u8> {
    client_frame(0x81, value.to_string().as_bytes())
}

/// Sends the upgrade request by hand and reads the 101 head.
fn raw_upgrade(addr: SocketAddr) -> RawConn {
    let mut raw = RawConn::connect(addr);
    raw.write(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    let head = read_head(&mut raw.stream);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    raw
}

fn read_head(stream: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("head byte");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("ASCII head")
}

/// One server frame: (opcode, payload). Server frames are never masked.
fn read_server_frame(stream: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).expect("frame head");
    assert_eq!(head[0] & 0x80, 0x80, "FIN: the server never fragments");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).expect("len");
            u16::from_be_bytes(len) as usize
        }
        127 => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len).expect("len");
            u64::from_be_bytes(len) as usize
        }
        len => len as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).expect("payload");
    (head[0] & 0x0f, payload)
}

fn read_server_json(stream: &mut impl Read) -> Value {
    let (opcode, payload) = read_server_frame(stream);
    assert_eq!(opcode, 1, "a text frame");
    serde_json::from_slice(&payload).expect("JSON text")
}

fn ws_connect<S: Read + Write>(stream: S, addr: SocketAddr, scheme: &str) -> WebSocket<S> {
    let url = format!("{scheme}://{addr}/ws");
    let (ws, response) = tungstenite::client(url.as_str(), stream).expect("WebSocket handshake");
    assert_eq!(response.status(), 101);
    assert!(
        response.headers().get("sec-websocket-extensions").is_none(),
        "no permessage-deflate"
    );
    ws
}

fn ws_send<S: Read + Write>(ws: &mut WebSocket<S>, value: Value) {
    ws.send(Message::text(value.to_string())).expect("send");
}

/// The next text message as JSON (control frames are the library's business).
fn ws_recv<S: Read + Write>(ws: &mut WebSocket<S>) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Events of the next `user` frames until one of `kind` arrives from `from`.
fn ws_until<S: Read + Write>(ws: &mut WebSocket<S>, kind: &str, from: &str) -> Value {
    for _ in 0..50 {
        let frame = ws_recv(ws);
        if let Some(events) = frame["payload"].as_array() {
            if let Some(event) = events
                .iter()
                .find(|e| e["type"] == kind && e["user"] == from)
            {
                return event.clone();
            }
        }
    }
    panic!("no {kind} from {from}");
}

fn ws_login<S: Read + Write>(ws: &mut WebSocket<S>, user: &str) {
    ws_send(
        ws,
        json!({"system":"login","options":{"user":user,"pass":"pw"}}),
    );
    let reply = ws_recv(ws);
    assert_eq!(reply["response"]["code"], 202, "{reply}");
    ws_until(ws, "list", user);
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    stream
}

/// A whole HTTP/1.1 response (the server closes after it): status and body.
fn http_get(stream: &mut (impl Read + Write), path: &str) -> (u16, String, String) {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .expect("request");
    read_response(stream)
}

fn read_response(stream: &mut impl Read) -> (u16, String, String) {
    let mut all = Vec::new();
    let _ = stream.read_to_end(&mut all);
    let text = String::from_utf8(all).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    let status = head[9..12].parse().expect("status");
    (status, head.to_owned(), body.to_owned())
}

struct Identity {
    files: TlsFiles,
    cert: CertificateDer<'static>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A self-signed certificate for localhost, written where `--tls-cert`/`--tls-key` read it.
fn identity(name: &str) -> Identity {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("rcgen");
    let dir = std::env::temp_dir().join(format!("roomcast-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&files.cert, generated.cert.pem()).expect("cert");
    std::fs::write(&files.key, generated.signing_key.serialize_pem()).expect("key");
    Identity {
        files,
        cert: generated.cert.der().clone(),
        _dir: TempDir(dir),
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_connect(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    rustls::StreamOwned::new(conn, tcp(addr))
}

fn read_frame(stream: &mut impl Read) -> Value {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header).expect("frame header");
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    stream.read_exact(&mut body).expect("frame body");
    serde_json::from_slice(&body).expect("JSON frame")
}

fn pose(x: f64) -> Value {
    json!({"pos":{"x":x,"y":1.6,"z":0.0},"rot":{"x":0.0,"y":0.0,"z":0.0,"w":1.0}})
}

// ---- sniffing ----

#[test]
fn bytes_no_transport_starts_with_get_a_plain_hint_and_a_close() {
    let server = start(config());
    let cases: [(&[u8], &str); 5] = [
        (
            b"\x11\x00\x00\x00{\"system\":\"ping\"}",
            "little-endian length prefix",
        ),
        (b" {\"system\":\"ping\"}\n", "leading whitespace"),
        (b"[{\"system\":\"ping\"}]\n", "a JSON array"),
        (b"\xef\xbb\xbf{\"system\":\"ping\"}\n", "byte-order mark"),
        (b"\x80\x81", "first byte 0x80."),
    ];
    for (wire, cause) in cases {
        let mut raw = RawConn::connect(server.local_addr());
        raw.write(wire);
        let mut answer = String::new();
        raw.stream
            .read_to_string(&mut answer)
            .expect("plain text, then EOF");
        assert!(
            answer.starts_with("roomcast: cannot tell the protocol"),
            "{answer}"
        );
        assert!(answer.contains(cause), "{cause}: {answer}");
        assert!(
            answer.ends_with('\n') && answer.lines().count() == 1,
            "{answer}"
        );
    }
    // The first byte still picks the two framings as before.
    let mut raw = RawConn::connect(server.local_addr());
    raw.write(&framed(br#"{"system":"ping"}"#));
    assert_eq!(raw.read_frame()["response"]["msg"], "pong");
    let mut raw = RawConn::connect(server.local_addr());
    raw.write(b"{\"system\":\"ping\"}\n");
    assert_eq!(raw.read_line()["response"]["msg"], "pong");
    server.shutdown();
    server.join().expect("clean exit");
}

// ---- WebSocket ----

#[test]
fn a_websocket_user_and_a_tcp_user_chat_and_see_each_others_poses() {
    let server = start(Config {
        fps: 50.0,
        ..config()
    });
    let addr = server.local_addr();
    let mut ws = ws_connect(tcp(addr), addr, "ws");
    ws_login(&mut ws, "webby");
    let mut tcp_user = TestClient::login(addr, "tcpy");
    ws_until(&mut ws, "join", "tcpy");

    ws_send(
        &mut ws,
        json!({"room":"lobby","type":"msg","data":"hi from a browser"}),
    );
    let (_, event) = tcp_user.expect_event("msg");
    assert_eq!(event.data, "hi from a browser");
    assert_eq!(
        ws_until(&mut ws, "msg", "webby")["data"],
        "hi from a browser"
    );
    tcp_user
        .client
        .send(&json!({"room":"lobby","type":"msg","data":"hi from TCP"}))
        .expect("send");
    assert_eq!(ws_until(&mut ws, "msg", "tcpy")["data"], "hi from TCP");
    tcp_user.expect_event("msg");

    // Poses: each headset's pose reaches the other on the tick.
    ws_send(&mut ws, json!({"room":"vr","type":"join"}));
    ws_until(&mut ws, "list", "webby");
    tcp_user
        .client
        .send(&json!({"room":"vr","type":"join"}))
        .expect("send");
    tcp_user.expect_event("join");
    tcp_user.expect_event("list");
    ws_until(&mut ws, "join", "tcpy");
    ws_send(
        &mut ws,
        json!({"room":"vr","type":"transform","data":pose(1.5)}),
    );
    tcp_user
        .client
        .send(&json!({"room":"vr","type":"transform","data":pose(-2.0)}))
        .expect("send");
    let seen_by_ws = ws_until(&mut ws, "transform", "tcpy");
    assert_eq!(seen_by_ws["data"]["pos"]["x"], -2.0);
    let seen_by_tcp = loop {
        let (room, event) = tcp_user.next_event();
        if event.kind == "transform" && event.user == "webby" {
            assert_eq!(room, "vr");
            break event;
        }
    };
    assert_eq!(seen_by_tcp.data["pos"]["x"], 1.5);

    ws.close(None).expect("close");
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(err) => panic!("close handshake: {err}"),
        }
    }
    loop {
        let (_, event) = tcp_user.next_event();
        // The session waits --resume-grace for a resume: away, not yet leave.
        if event.kind == "away" {
            assert_eq!(event.user, "webby");
            break;
        }
    }
    server.shutdown();
    server.join().expect("clean exit");
}

#[test]
fn masked_frames_split_at_any_byte_and_fragmented_messages_arrive_whole() {
    let server = start(Config {
        rate_limit: 0.0,
        ..config()
    });
    let mut raw = raw_upgrade(server.local_addr());
    let ping = text_frame(&json!({"system":"ping"}));
    // The same message split at every byte, each in two writes.
    for cut in 0..=ping.len() {
        raw.write(&ping[..cut]);
        raw.stream.flush().expect("flush");
        raw.write(&ping[cut..]);
        let reply = read_server_json(&mut raw.stream);
        assert_eq!(reply["response"]["msg"], "pong", "cut at {cut}");
    }
    // One message in three fragments (text, continuation, final continuation), with a ping
    // between them, written a byte at a time.
    let body = json!({"system":"login","options":{"user":"frag","pass":"pw"}}).to_string();
    let body = body.as_bytes();
    let mut wire = client_frame(0x01, &body[..10]);
    wire.extend(client_frame(0x89, b"between"));
    wire.extend(client_frame(0x00, &body[10..20]));
    wire.extend(client_frame(0x80, &body[20..]));
    for byte in &wire {
        raw.write(&[*byte]);
    }
    let (opcode, payload) = read_server_frame(&mut raw.stream);
    assert_eq!(
        (opcode, &payload[..]),
        (0xA, &b"between"[..]),
        "the pong first"
    );
    let reply = read_server_json(&mut raw.stream);
    assert_eq!(reply["response"]["code"], 202);
}

#[test]
fn ping_is_ponged_and_close_is_echoed() {
    let server = start(config());
    let mut raw = raw_upgrade(server.local_addr());
    raw.write(&client_frame(0x89, b"are you there"));
    assert_eq!(
        read_server_frame(&mut raw.stream),
        (0xA, b"are you there".to_vec())
    );
    raw.write(&client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e']));
    let (opcode, payload) = read_server_frame(&mut raw.stream);
    assert_eq!(opcode, 0x8);
    assert_eq!(&payload[..2], &[0x03, 0xe8], "code 1000 echoed");
    assert!(raw.is_closed());

    // A connection the server closes gets a close frame last: here, a login timeout.
    let server = start(Config {
        login_timeout: Duration::from_millis(200),
        ..config()
    });
    let mut raw = raw_upgrade(server.local_addr());
    let reply = read_server_json(&mut raw.stream);
    assert_eq!(reply["response"]["code"], 408);
    let (opcode, payload) = read_server_frame(&mut raw.stream);
    assert_eq!((opcode, &payload[..2]), (0x8, &[0x03, 0xe8][..]));
    assert!(raw.is_closed());
}

#[test]
fn an_oversize_message_is_413_then_close_1009() {
    let server = start(Config {
        max_frame: 1024,
        ..config()
    });
    let mut raw = raw_upgrade(server.local_addr());
    // Only the header of a 2000-byte message: refused before its payload is read.
    let frame = client_frame(0x81, &[b'x'; 2000]);
    raw.write(&frame[..8]);
    let reply = read_server_json(&mut raw.stream);
    assert_eq!(reply["response"]["code"], 413);
    assert_eq!(reply["response"]["detail"]["max_frame"], 1024);
    let (opcode, payload) = read_server_frame(&mut raw.stream);
    assert_eq!(opcode, 0x8);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
    assert!(raw.is_closed());

    // Binary is refused with 1003, unmasked frames with 1002.
    let mut raw = raw_upgrade(server.local_addr());
    raw.write(&client_frame(0x82, b"{}"));
    assert_eq!(read_server_json(&mut raw.stream)["response"]["code"], 400);
    let (_, payload) = read_server_frame(&mut raw.stream);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1003);
    let mut raw = raw_upgrade(server.local_addr());
    raw.write(&[0x81, 2, b'{', b'}']);
    assert_eq!(read_server_json(&mut raw.stream)["response"]["code"], 400);
    let (_, payload) = read_server_frame(&mut raw.stream);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}

// ---- HTTP ----

#[test]
fn http_endpoints_answer_and_close() {
    let server = start(config());
    let addr = server.local_addr();
    let (status, head, body) = http_get(&mut tcp(addr), "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert!(head.contains("Connection: close"));
    let (status, head, body) = http_get(&mut tcp(addr), "/");
    assert_eq!(status, 200);
    assert!(head.contains("Content-Type: text/html"));
    assert!(body.contains("/viewer.js"));
    for asset in ["/viewer.js", "/roomcast.js", "/viewer.css"] {
        assert_eq!(http_get(&mut tcp(addr), asset).0, 200, "{asset}");
    }
    assert_eq!(http_get(&mut tcp(addr), "/nope").0, 404);
    // A WebSocket upgrade on another path is a 404 too; other methods 405.
    let mut stream = tcp(addr);
    stream
        .write_all(
            format!(
                "GET /chat HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .expect("write");
    assert_eq!(read_response(&mut stream).0, 404);
    let mut stream = tcp(addr);
    stream
        .write_all(b"POST /ws HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut stream).0, 405);
    // A head over 8 KiB is refused without waiting for its end.
    let mut stream = tcp(addr);
    let padding = "a".repeat(9000);
    stream
        .write_all(format!("GET / HTTP/1.1\r\nX-Pad: {padding}").as_bytes())
        .expect("write");
    assert_eq!(read_response(&mut stream).0, 431);
    server.shutdown();
    server.join().expect("clean exit");
}

#[test]
fn healthz_says_503_while_shutting_down() {
    let server = start(config());
    let mut stream = tcp(server.local_addr());
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\n")
        .expect("write");
    // The server has the first bytes before it is told to shut down.
    let mut probe = tcp(server.local_addr());
    assert_eq!(http_get(&mut probe, "/healthz").0, 200);
    server.shutdown();
    stream.write_all(b"\r\n").ok();
    let (status, _, body) = read_response(&mut stream);
    assert_eq!(status, 503, "{body}");
    server.join().expect("clean exit");
}

/// `name{labels} value` lines of a Prometheus text exposition, by series.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("series and value");
        let value = match value {
            "+Inf" => f64::INFINITY,
            number => number.parse().expect("a number"),
        };
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn metrics_count_known_traffic() {
    let server = start(Config {
        fps: 100.0,
        ..config()
    });
    let addr = server.local_addr();
    let mut a = TestClient::login(addr, "ann");
    let mut b = TestClient::login(addr, "ben");
    a.expect_event("join");
    for text in ["one", "two", "three"] {
        a.client
            .send(&json!({"room":"lobby","type":"msg","data":text}))
            .expect("send");
        a.expect_event("msg");
    }
    for _ in 0..3 {
        b.expect_event("msg");
    }
    a.client
        .send(&json!({"room":"nowhere","type":"msg","data":1}))
        .expect("send");
    a.expect_code(404);
    // A pose, and a second before the tick can send the first: one superseded.
    for room in ["vr"] {
        for client in [&mut a, &mut b] {
            client
                .client
                .send(&json!({"room":room,"type":"join"}))
                .expect("send");
        }
    }
    a.client
        .send(&json!({"room":"vr","type":"transform","data":pose(1.0)}))
        .expect("send");
    a.client
        .send(&json!({"room":"vr","type":"transform","data":pose(2.0)}))
        .expect("send");
    let pose_seen = loop {
        let (_, event) = b.next_event();
        if event.kind == "transform" {
            break event;
        }
    };
    assert_eq!(pose_seen.user, "ann");
    let mut ws = ws_connect(tcp(addr), addr, "ws");
    ws_send(&mut ws, json!({"system":"ping"}));
    ws_recv(&mut ws);

    let (status, head, body) = http_get(&mut tcp(addr), "/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(
        head.contains("Content-Type: application/openmetrics-text") || head.contains("text/plain")
    );
    let m = parse_metrics(&body);
    let get = |series: &str| {
        *m.get(series)
            .unwrap_or_else(|| panic!("{series} in\n{body}"))
    };
    for name in [
        "roomcast_sessions",
        "roomcast_rooms",
        "roomcast_events_delivered_total",
        "roomcast_bytes_sent_total",
        "roomcast_pose_ticks_total",
        "roomcast_poses_superseded_total",
        "roomcast_ticks_skipped_backlog_total",
        "roomcast_slow_consumer_disconnects_total",
        "roomcast_tick_duration_seconds_count",
        "roomcast_loop_pass_duration_seconds_count",
    ] {
        get(name);
    }
    assert_eq!(get("roomcast_sessions"), 2.0);
    assert_eq!(get("roomcast_rooms"), 2.0, "lobby and vr");
    assert_eq!(get(r#"roomcast_messages_received_total{type="msg"}"#), 4.0);
    assert_eq!(
        get(r#"roomcast_messages_received_total{type="login"}"#),
        2.0
    );
    assert_eq!(
        get(r#"roomcast_messages_received_total{type="transform"}"#),
        2.0
    );
    assert_eq!(get(r#"roomcast_messages_received_total{type="ping"}"#), 1.0);
    assert_eq!(get(r#"roomcast_errors_total{code="404"}"#), 1.0);
    assert!(get("roomcast_poses_superseded_total") >= 1.0);
    assert!(get("roomcast_pose_ticks_total") >= 1.0);
    assert!(get("roomcast_tick_duration_seconds_count") >= 1.0);
    assert!(get("roomcast_loop_pass_duration_seconds_count") >= 1.0);
    // 3 msgs to 2 members, joins and the pose at least.
    assert!(get("roomcast_events_delivered_total") >= 6.0);
    assert!(get("roomcast_bytes_sent_total") > 1000.0);
    assert_eq!(
        get(r#"roomcast_connections{transport="framed",tls="false"}"#),
        2.0
    );
    assert_eq!(
        get(r#"roomcast_connections{transport="websocket",tls="false"}"#),
        1.0
    );
    assert_eq!(
        get(r#"roomcast_connections{transport="http",tls="false"}"#),
        1.0,
        "this request"
    );
    server.shutdown();
    server.join().expect("clean exit");
}

// ---- TLS ----

#[test]
fn framed_line_http_and_websocket_work_inside_tls() {
    let identity = identity("tls");
    let server = start(Config {
        tls: Some(identity.files.clone()),
        ..config()
    });
    let addr = server.local_addr();

    let mut framed_tls = tls_connect(addr, &identity.cert);
    framed_tls
        .write_all(&framed(
            br#"{"system":"login","options":{"user":"secure","pass":"pw"}}"#,
        ))
        .expect("write");
    assert_eq!(read_frame(&mut framed_tls)["response"]["code"], 202);

    let mut line_tls = tls_connect(addr, &identity.cert);
    line_tls
        .write_all(b"{\"system\":\"ping\"}\n")
        .expect("write");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' {
        line_tls.read_exact(&mut byte).expect("line byte");
        line.push(byte[0]);
    }
    let pong: Value = serde_json::from_slice(&line).expect("JSON line");
    assert_eq!(pong["response"]["msg"], "pong");

    let (status, _, body) = http_get(&mut tls_connect(addr, &identity.cert), "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let mut wss = ws_connect(tls_connect(addr, &identity.cert), addr, "wss");
    ws_login(&mut wss, "wss-user");
    ws_send(
        &mut wss,
        json!({"room":"lobby","type":"msg","data":"encrypted"}),
    );
    assert_eq!(ws_until(&mut wss, "msg", "wss-user")["data"], "encrypted");
    // The framed user in the lobby sees it too.
    let mut seen = false;
    for _ in 0..10 {
        let frame = read_frame(&mut framed_tls);
        if frame["payload"][0]["type"] == "msg" {
            assert_eq!(frame["payload"][0]["data"], "encrypted");
            seen = true;
            break;
        }
    }
    assert!(seen);

    let (status, _, body) = http_get(&mut tcp(addr), "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&body);
    assert_eq!(
        m[r#"roomcast_connections{transport="websocket",tls="true"}"#],
        1.0
    );
    assert_eq!(
        m[r#"roomcast_connections{transport="framed",tls="true"}"#],
        1.0
    );
    server.shutdown();
    server.join().expect("clean exit");
}

#[test]
fn a_client_hello_without_tls_configured_gets_an_alert() {
    let identity = identity("notls");
    let server = start(config());
    let mut client = tls_connect(server.local_addr(), &identity.cert);
    let err = client.write_all(b"{}\n").and_then(|_| {
        let mut buf = [0u8; 16];
        client.read(&mut buf).map(|_| ())
    });
    let err = err.expect_err("the handshake fails");
    assert!(
        err.to_string().contains("HandshakeFailure"),
        "a handshake_failure alert: {err}"
    );
}

// ---- refusals on connect, in the client's framing ----

#[test]
fn refusals_on_connect_reach_websocket_http_and_tls_clients() {
    let identity = identity("refuse");
    let server = start(Config {
        max_clients: 1,
        tls: Some(identity.files.clone()),
        ..config()
    });
    let addr = server.local_addr();
    let _holder = TestClient::login(addr, "holder");

    let mut ws = ws_connect(tcp(addr), addr, "ws");
    let reply = ws_recv(&mut ws);
    assert_eq!(reply["response"]["code"], 503);
    assert_eq!(reply["response"]["msg"], "Server full.");

    let (status, _, body) = http_get(&mut tcp(addr), "/healthz");
    assert_eq!(status, 503);
    let refusal: Value = serde_json::from_str(&body).expect("the refusal as JSON");
    assert_eq!(refusal["response"]["msg"], "Server full.");

    let mut framed_tls = tls_connect(addr, &identity.cert);
    framed_tls
        .write_all(&framed(br#"{"system":"ping"}"#))
        .expect("write");
    assert_eq!(
        read_frame(&mut framed_tls)["response"]["msg"],
        "Server full."
    );
    server.shutdown();
    server.join().expect("clean exit");
}

#[test]
fn a_peer_that_pings_without_reading_is_cut_off_like_a_slow_reader() {
    let server = start(Config {
        max_frame: 1024,
        max_outbuf: 4096,
        max_memory: 1 << 24,
        send_buffer: 4096,
        ..config()
    });
    let mut raw = raw_upgrade(server.local_addr());
    let ping = client_frame(0x89, &[b'p'; 125]);
    let burst: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100)
        .collect();
    // At most 40,000 pings (5 MB of pongs): far past what the kernel buffers hold.
    let mut cut = false;
    for _ in 0..400 {
        if raw.stream.write_all(&burst).is_err() {
            cut = true;
            break;
        }
    }
    if !cut {
        // The last writes fitted into buffers; the server has closed by now all the same.
        assert!(raw.is_closed(), "never cut off");
    }
    let (_, _, body) = http_get(&mut tcp(server.local_addr()), "/metrics");
    assert_eq!(
        parse_metrics(&body)["roomcast_slow_consumer_disconnects_total"],
        1.0
    );
}
