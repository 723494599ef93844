//! protocol.md, "Transport and framing": both framings over real sockets.

mod support;

use serde_json::json;
use support::{config, framed, start, RawConn, TestClient};

fn login_body(user: &str) -> Vec<u8> {
    json!({"system": "login", "options": {"user": user, "pass": "x"}})
        .to_string()
        .into_bytes()
}

#[test]
fn a_frame_written_byte_by_byte_is_one_message() {
    let server = start(config());
    let mut raw = RawConn::connect(server.local_addr());
    for byte in framed(br#"{"system":"ping"}"#) {
        raw.write(&[byte]);
    }
    let reply = raw.read_frame();
    assert_eq!(reply["response"]["code"], 200);
    assert_eq!(reply["response"]["msg"], "pong");
    assert!(reply["response"]["time"].is_f64());
}

#[test]
fn many_frames_in_one_write_and_one_frame_across_writes() {
    let server = start(config());
    let mut raw = RawConn::connect(server.local_addr());
    let mut wire = Vec::new();
    wire.extend(framed(&login_body("batch")));
    for i in 0..20 {
        wire.extend(framed(
            json!({"room": "lobby", "type": "msg", "data": i})
                .to_string()
                .as_bytes(),
        ));
    }
    wire.extend(framed(br#"{"system":"ping"}"#));
    // Cut in odd places: mid-header and mid-body.
    let (a, rest) = wire.split_at(3);
    let (b, c) = rest.split_at(rest.len() / 2 + 1);
    for part in [a, b, c] {
        raw.write(part);
    }
    assert_eq!(raw.read_frame()["response"]["code"], 202);
    let mut seen = Vec::new();
    loop {
        let frame = raw.read_frame();
        if frame["info"] == "system" {
            assert_eq!(frame["response"]["msg"], "pong");
            break;
        }
        for event in frame["payload"].as_array().unwrap() {
            if event["type"] == "msg" {
                seen.push(event["data"].as_i64().unwrap());
            }
        }
    }
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}

#[test]
fn zero_length_frame_is_400_and_closes() {
    let server = start(config());
    let mut raw = RawConn::connect(server.local_addr());
    raw.write(&[0, 0, 0, 0]);
    let reply = raw.read_frame();
    assert_eq!(reply["info"], "error");
    assert_eq!(reply["response"]["code"], 400);
    assert!(raw.is_closed());
}

#[test]
fn oversize_header_is_413_at_once_and_closes() {
    let mut config = config();
    config.max_frame = 1024;
    let server = start(config);
    let mut raw = RawConn::connect(server.local_addr());
    // Only the header: the 413 must not wait for a body that will never come.
    raw.write(&1025u32.to_be_bytes());
    let reply = raw.read_frame();
    assert_eq!(reply["response"]["code"], 413);
    assert_eq!(reply["response"]["detail"]["max_frame"], 1024);
    assert!(raw.is_closed());
    // Exactly max_frame is fine.
    let mut raw = RawConn::connect(server.local_addr());
    let pad = 1024 - r#"{"system":"ping","pad":""}"#.len();
    let body = format!("{{\"system\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(pad));
    assert_eq!(body.len(), 1024);
    raw.write(&framed(body.as_bytes()));
    assert_eq!(raw.read_frame()["response"]["code"], 200);
}

#[test]
fn malformed_body_is_400_and_the_connection_stays_open() {
    let server = start(config());
    let mut raw = RawConn::connect(server.local_addr());
    for body in [&b"not json"[..], b"[1,2]", b"\xff\xfe\xfd", b"42"] {
        raw.write(&framed(body));
        assert_eq!(raw.read_frame()["response"]["code"], 400);
    }
    raw.write(&framed(br#"{"system":"ping"}"#));
    assert_eq!(raw.read_frame()["response"]["code"], 200);
}

#[test]
fn line_mode_is_sniffed_from_the_first_brace() {
    let server = start(config());
    let mut raw = RawConn::connect(server.local_addr());
    raw.write(b"{\"system\":\"ping\"}\r\n\n   \n");
    let reply = raw.read_line();
    assert_eq!(reply["response"]["msg"], "pong");
    raw.write(b"this is not json\n");
    assert_eq!(
        raw.read_line()["response"]["code"],
        400,
        "malformed line, stays open"
    );
    raw.write(&login_body("liner"));
    raw.write(b"\n{\"room\":\"lobby\",\"type\":\"msg\",\"data\":\"hi\"}\n");
    assert_eq!(raw.read_line()["response"]["code"], 202);
    assert_eq!(raw.read_line()["payload"][0]["type"], "join");
    assert_eq!(raw.read_line()["payload"][0]["type"], "list");
    assert_eq!(raw.read_line()["payload"][0]["data"], "hi");
}

#[test]
fn line_mode_and_framed_clients_share_a_room() {
    let server = start(config());
    let mut framed_client = TestClient::login(server.local_addr(), "framed");
    let mut line = RawConn::connect(server.local_addr());
    line.write(&login_body("line"));
    line.write(b"\n");
    assert_eq!(line.read_line()["response"]["code"], 202);
    assert_eq!(
        line.read_line()["history"],
        true,
        "the lobby remembers framed's join"
    );
    assert_eq!(line.read_line()["payload"][0]["type"], "join");
    assert_eq!(line.read_line()["payload"][0]["type"], "list");
    framed_client.expect_event("join");
    framed_client.client.msg("lobby", "to both").unwrap();
    assert_eq!(framed_client.expect_event("msg").1.data, "to both");
    let event = line.read_line();
    assert_eq!(event["payload"][0]["data"], "to both");
    assert_eq!(event["payload"][0]["user"], "framed");
}

#[test]
fn overlong_line_is_413_and_closes() {
    let mut config = config();
    config.max_frame = 100;
    let server = start(config);
    let mut raw = RawConn::connect(server.local_addr());
    raw.write(&[b'{'; 101]);
    let reply = raw.read_line();
    assert_eq!(reply["response"]["code"], 413);
    assert!(raw.is_closed());
}
