//! protocol.md, "Limits and timeouts": hostile clients over real sockets. Each test keeps two
//! well-behaved bystanders chatting and checks that their sessions are complete, and that the
//! process's memory returns to a bounded level afterwards.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, framed, rss_bytes, start, Binary, Bystanders, RawConn, TestClient};

/// RSS is per process: the tests of this file run one at a time so they measure themselves.
static SERIAL: Mutex<()> = Mutex::new(());

/// Growth of the whole test process tolerated after a hostile run (allocator slack, threads).
const RSS_SLACK: u64 = 64 * 1024 * 1024;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    let _ = env_logger::builder().is_test(true).try_init();
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn wait_for_leave(c: &mut TestClient, user: &str) {
    loop {
        let (_, event) = c.next_event();
        if event.kind == "leave" && event.user == user {
            return;
        }
    }
}

/// No rate limit, and sessions that end with their connections (`--resume-grace 0`): these
/// tests check what a hostile connection's end does to its rooms at once.
fn no_chat_limit() -> roomcast::Config {
    let mut config = config();
    config.rate_limit = 0.0;
    config.resume_grace = Duration::ZERO;
    config
}

#[test]
fn garbage_and_a_4_gib_header_are_refused_and_closed() {
    let _serial = serial();
    let server = start(no_chat_limit());
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let before = rss_bytes();
    for seed in 0..50u32 {
        let mut raw = RawConn::connect(addr);
        // Deterministic junk: xorshift bytes with the high bit set, so no transport starts
        // with them: one plain-text line, then the close.
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        let junk: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as u8) | 0x80
            })
            .collect();
        let _ = raw.stream.write_all(&junk);
        assert_refused_as_unknown(&mut raw);
    }
    let mut raw = RawConn::connect(addr);
    raw.write(&[0xff, 0xff, 0xff, 0xff]);
    assert_refused_as_unknown(&mut raw);
    // A 4 GiB header can only start with 0xff; a framed one over the limit is a 413.
    let mut raw = RawConn::connect(addr);
    raw.write(&[0x00, 0xff, 0xff, 0xff]);
    assert_eq!(raw.read_frame()["response"]["code"], 413);
    assert!(raw.is_closed());
    bystanders.converse(50);
    assert_bounded(before);
}

#[test]
fn slowloris_is_cut_off_by_the_login_timeout() {
    let _serial = serial();
    let mut config = no_chat_limit();
    config.login_timeout = Duration::from_millis(600);
    let server = start(config);
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let mut slow = RawConn::connect(addr);
    let started = Instant::now();
    // A header byte at a time, slower than any real client.
    let header = 1000u32.to_be_bytes();
    for byte in header {
        if slow.stream.write_all(&[byte]).is_err() {
            break;
        }
        bystanders.converse(2);
        std::thread::sleep(Duration::from_millis(250));
    }
    let reply = slow.read_frame();
    assert_eq!(reply["response"]["code"], 408);
    assert!(slow.is_closed());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "closed too early: {took:?}"
    );
    bystanders.converse(10);
}

#[test]
fn half_close_still_gets_its_replies() {
    let _serial = serial();
    let server = start(no_chat_limit());
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let mut raw = RawConn::connect(addr);
    raw.write(&framed(
        br#"{"system":"login","options":{"user":"halfway"}}"#,
    ));
    raw.write(&framed(br#"{"room":"quiet","type":"join"}"#));
    raw.write(&framed(br#"{"system":"ping"}"#));
    raw.stream.shutdown(Shutdown::Write).unwrap();
    let mut codes = Vec::new();
    loop {
        let frame = raw.read_frame();
        if frame["info"] != "user" {
            codes.push(frame["response"]["code"].as_u64().unwrap());
        }
        if frame["response"]["msg"] == "pong" {
            break;
        }
    }
    assert_eq!(codes, [202, 200]);
    assert!(raw.is_closed());
    wait_for_leave(&mut bystanders.a, "halfway");
    wait_for_leave(&mut bystanders.b, "halfway");
    bystanders.converse(10);
}

#[test]
fn reset_in_the_middle_of_a_frame_is_a_leave() {
    let _serial = serial();
    let server = start(no_chat_limit());
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(&framed(
            br#"{"system":"login","options":{"user":"resetter"}}"#,
        ))
        .unwrap();
    stream
        .write_all(&framed(br#"{"room":"quiet","type":"join"}"#))
        .unwrap();
    // Wait until the server has answered, and leave its replies unread: closing a socket
    // with unread data sends RST instead of FIN.
    wait_for_join(&mut bystanders.a, "resetter");
    stream.write_all(&[0, 0, 1, 0, b'{', b'"']).unwrap();
    drop(stream);
    wait_for_leave(&mut bystanders.a, "resetter");
    wait_for_leave(&mut bystanders.b, "resetter");
    bystanders.converse(10);
}

fn wait_for_join(c: &mut TestClient, user: &str) {
    loop {
        let (room, event) = c.next_event();
        if room == "quiet" && event.kind == "join" && event.user == user {
            return;
        }
    }
}

#[test]
fn a_thousand_connect_disconnect_cycles_leave_nothing_behind() {
    let _serial = serial();
    let server = start(no_chat_limit());
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let before = rss_bytes();
    for i in 0..1000 {
        let mut stream = TcpStream::connect(addr).unwrap();
        match i % 3 {
            0 => {}
            1 => {
                let login = json!({"system": "login", "options": {"user": format!("cycle{i}")}});
                stream
                    .write_all(&framed(login.to_string().as_bytes()))
                    .unwrap();
            }
            _ => stream.write_all(&[0, 0]).unwrap(),
        }
    }
    bystanders.converse(20);
    // Every cycler is gone: only the bystanders remain logged in.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut probe = TestClient::connect(addr);
        let rooms = probe.client.rooms().unwrap();
        let users = &rooms.detail["rooms"];
        if users == &json!([{"room": "lobby", "users": 2}, {"room": "quiet", "users": 2}]) {
            break;
        }
        assert!(Instant::now() < deadline, "cyclers still present: {users}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_bounded(before);
}

#[test]
fn a_client_that_never_reads_is_cut_off_and_costs_the_others_nothing() {
    let _serial = serial();
    let mut config = no_chat_limit();
    config.max_frame = 16 * 1024;
    config.max_outbuf = 256 * 1024;
    let server = start(config);
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let before = rss_bytes();
    let mut sleeper = TcpStream::connect(addr).unwrap();
    sleeper
        .write_all(&framed(
            br#"{"system":"login","options":{"user":"sleeper"}}"#,
        ))
        .unwrap();
    sleeper
        .write_all(&framed(br#"{"room":"quiet","type":"join"}"#))
        .unwrap();
    wait_for_join(&mut bystanders.a, "sleeper");
    wait_for_join(&mut bystanders.b, "sleeper");
    let mut talker = TestClient::login(addr, "talker");
    talker.client.join("quiet").unwrap();
    // 8 MB of chat towards a client that reads nothing: far beyond its socket buffers and
    // --max-outbuf. The bystanders read as they go, as well-behaved clients do.
    const MSGS: u64 = 1000;
    let pad = "x".repeat(8000);
    let Bystanders { a, b, .. } = &mut bystanders;
    std::thread::scope(|scope| {
        let readers = [a, b].map(|c| scope.spawn(move || talker_msgs_seen(c, MSGS)));
        for i in 0..MSGS {
            talker
                .client
                .msg("quiet", &json!({"i": i, "pad": pad}))
                .unwrap();
            if i % 20 == 19 {
                // Pace on our own echo, so the talker never becomes the slow reader.
                talker_msgs_until(&mut talker, i);
            }
        }
        for reader in readers {
            let (seen, sleeper_left) = reader.join().unwrap();
            assert_eq!(seen, MSGS, "a bystander lost messages");
            assert!(sleeper_left, "the sleeper was not cut off");
        }
    });
    let mut sleeper_got = 0usize;
    sleeper
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = sleeper.read(&mut buf) {
        if n == 0 {
            break;
        }
        sleeper_got += n;
    }
    assert!(
        sleeper_got < 8_000_000,
        "the sleeper got everything: {sleeper_got} bytes"
    );
    drop(talker);
    bystanders.converse(20);
    assert_bounded(before);
}

/// Reads until the talker's last msg; returns how many of its msgs arrived (checking their
/// order) and whether the sleeper's leave was seen.
fn talker_msgs_seen(c: &mut TestClient, total: u64) -> (u64, bool) {
    let (mut next, mut sleeper_left) = (0, false);
    while next < total || !sleeper_left {
        let (_, event) = c.next_event();
        match (event.kind.as_str(), event.user.as_str()) {
            ("msg", "talker") => {
                assert_eq!(event.data["i"], next, "lost or reordered");
                next += 1;
            }
            ("leave", "sleeper") => sleeper_left = true,
            _ => {}
        }
    }
    (next, sleeper_left)
}

fn talker_msgs_until(c: &mut TestClient, last: u64) {
    loop {
        let (_, event) = c.next_event();
        if event.kind == "msg" && event.data["i"] == last {
            return;
        }
    }
}

#[test]
fn one_client_over_max_clients_gets_503() {
    let _serial = serial();
    let mut config = no_chat_limit();
    config.max_clients = 3;
    let server = start(config);
    let addr = server.local_addr();
    let mut bystanders = Bystanders::new(addr);
    let _third = RawConn::connect(addr);
    let mut fourth = RawConn::connect(addr);
    let reply = fourth.read_frame();
    assert_eq!(reply["response"]["code"], 503);
    assert_eq!(reply["response"]["msg"], "Server full.");
    assert!(fourth.is_closed());
    bystanders.converse(10);
}

fn assert_bounded(before: Option<u64>) {
    let (Some(before), Some(after)) = (before, rss_bytes()) else {
        eprintln!("skipping the memory check: /proc/self/status is not readable here");
        return;
    };
    assert!(
        after < before + RSS_SLACK,
        "RSS grew from {before} to {after} bytes"
    );
}

#[test]
fn out_of_file_descriptors_does_not_spin_the_loop() {
    let _serial = serial();
    // 32 descriptors: a dozen for the runtime, the rest for clients; 40 connections exhaust it.
    let server = Binary::start("ulimit -n 32 &&", "--log-level info");
    let mut held = Vec::new();
    for _ in 0..40 {
        match TcpStream::connect(server.addr) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    let Some(before) = server.cpu_seconds() else {
        eprintln!("skipping: /proc/PID/stat is not readable here");
        return;
    };
    std::thread::sleep(Duration::from_secs(1));
    let spent = server.cpu_seconds().unwrap_or(before) - before;
    assert!(
        spent < 0.3,
        "the loop burned {spent} s of CPU in 1 s with accepts failing"
    );
    // Past the limit, a newcomer is told the server is full (through the spare descriptor)
    // instead of waiting in the backlog with no byte.
    let mut late = RawConn::connect(server.addr);
    let reply = late.read_frame();
    assert_eq!(reply["response"]["code"], 503);
    assert_eq!(reply["response"]["msg"], "Server full.");
    assert!(late.is_closed());
    // The accepted ones are still served.
    let mut first = RawConn {
        stream: held.remove(0),
    };
    first
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    first.write(&framed(br#"{"system":"ping"}"#));
    assert_eq!(first.read_frame()["response"]["msg"], "pong");
}

#[test]
fn sigterm_says_goodbye_and_exits_zero() {
    let _serial = serial();
    let mut server = Binary::start("", "--log-level info");
    let mut client = TestClient::login(server.addr, "leaving");
    server.signal("TERM");
    let reply = client.expect_code(503);
    assert_eq!(reply.msg, "Server shutting down.");
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// One plain-text line naming the protocols, then EOF.
fn assert_refused_as_unknown(raw: &mut RawConn) {
    let mut answer = Vec::new();
    let _ = raw.stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("roomcast: cannot tell the protocol from the first byte 0x"),
        "{answer}"
    );
}
