//! protocol.md §6 "Limits": the server stays bounded in total, not just per connection, while
//! attackers do what costs them little and the server much. Each test keeps two bystanders
//! chatting and checks that they lose nothing. Memory is read from the real `roomcast`
//! process, which counts its heap against `--max-memory`.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, framed, start, Binary, Bystanders, RawConn, TestClient};

/// The tests of this file measure processes and load the machine: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const MIB: u64 = 1024 * 1024;

/// Logs in a client that sends requests and never reads a byte of what comes back.
fn never_reader(addr: std::net::SocketAddr, user: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let login = json!({"system": "login", "options": {"user": user}});
    stream
        .write_all(&framed(login.to_string().as_bytes()))
        .expect("login");
    stream
}

#[test]
fn never_reading_joiners_of_full_histories_do_not_pin_the_server_s_memory() {
    let _serial = serial();
    let server = Binary::start("", "--log-level info");
    let mut bystanders = Bystanders::new(server.addr);
    // Two rooms with histories of ~4 MiB each (the per-room bound is --max-outbuf / 2),
    // filled by forty users who each stay within the default rate limit's burst (a 60 KB
    // msg costs 15 tokens of 100).
    let mut fillers = Vec::new();
    for filler in 0..40 {
        let mut client = TestClient::login(server.addr, &format!("filler{filler}"));
        let room = ["big1", "big2"][filler % 2];
        client.client.join(room).unwrap();
        for i in 0..4 {
            let pad = "x".repeat(60_000);
            client
                .client
                .msg(room, &json!({"i": i, "pad": pad}))
                .unwrap();
        }
        client.client.ping().unwrap(); // every msg was handled before the joiners come
        fillers.push(client);
    }
    let Some(before) = server.rss_bytes() else {
        eprintln!("skipping: /proc/PID/status is not readable here");
        return;
    };
    // 200 clients log in, join both rooms (126 bytes each) and never read.
    let mut attackers = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..200 {
        let mut stream = never_reader(server.addr, &format!("sink{i}"));
        for room in ["big1", "big2"] {
            let join = json!({"room": room, "type": "join"}).to_string();
            stream.write_all(&framed(join.as_bytes())).unwrap();
        }
        attackers.push(stream);
        if i % 20 == 19 {
            slowest = slowest.max(bystanders.converse_slowest(2));
        }
    }
    slowest = slowest.max(bystanders.converse_slowest(10));
    let after = server.rss_bytes().unwrap_or(before);
    eprintln!(
        "RSS {} MiB -> {} MiB; slowest bystander msg {slowest:?}",
        before / MIB,
        after / MIB
    );
    // Before histories were shared, each joiner pinned a private 8 MiB copy: 1.6 GiB here.
    assert!(
        after < before + 160 * MIB,
        "RSS grew from {} MiB to {} MiB",
        before / MIB,
        after / MIB
    );
    assert!(
        slowest < Duration::from_millis(250),
        "a bystander waited {slowest:?}"
    );
    drop(attackers);
    drop(fillers);
}

#[test]
fn a_rooms_list_flood_from_many_sockets_stays_bounded() {
    let _serial = serial();
    let server = Binary::start(
        "",
        "--log-level info --max-held-rooms 100 --max-held-rooms-per-ip 5000",
    );
    let mut bystanders = Bystanders::new(server.addr);
    // 2,000 rooms with 60-character names, made by owners who stay within the burst.
    let mut owners = Vec::new();
    for owner in 0..40 {
        let mut client = TestClient::login(server.addr, &format!("owner{owner}"));
        for room in 0..50 {
            let name = format!("{owner:02}-{room:03}-{}", "r".repeat(53));
            client.client.join(&name).unwrap();
        }
        client.client.ping().unwrap();
        owners.push(client);
    }
    let Some(before) = server.rss_bytes() else {
        eprintln!("skipping: /proc/PID/status is not readable here");
        return;
    };
    let cpu_before = server.cpu_seconds().unwrap_or(0.0);
    // 20 sockets that never log in, each with 1,000 requests in one write (22 KB).
    let request = framed(br#"{"system":"rooms"}"#);
    let burst: Vec<u8> = request
        .iter()
        .copied()
        .cycle()
        .take(request.len() * 1000)
        .collect();
    let flood_started = Instant::now();
    let mut flooders = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream.write_all(&burst).unwrap();
        flooders.push(stream);
    }
    let slowest = bystanders.converse_slowest(20);
    let after = server.rss_bytes().unwrap_or(before);
    let cpu = server.cpu_seconds().unwrap_or(cpu_before) - cpu_before;
    eprintln!(
        "RSS {} MiB -> {} MiB, server CPU {cpu:.2} s, slowest bystander msg {slowest:?}",
        before / MIB,
        after / MIB
    );
    // Unpaged and charged after the fact, this was 20,000 replies of 280 KB: 5.6 GB.
    assert!(
        after < before + 64 * MIB,
        "RSS grew by {} MiB",
        (after - before) / MIB
    );
    assert!(
        slowest < Duration::from_millis(250),
        "a bystander waited {slowest:?}"
    );
    // The refused requests are not answered one by one: each flooder got its burst of pages,
    // one 429, and then the server stopped reading it.
    let mut probe = RawConn {
        stream: flooders.pop().unwrap(),
    };
    probe
        .stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut codes = Vec::new();
    loop {
        let mut header = [0u8; 4];
        if std::io::Read::read_exact(&mut probe.stream, &mut header).is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
        std::io::Read::read_exact(&mut probe.stream, &mut body).unwrap();
        let reply: serde_json::Value = serde_json::from_slice(&body).unwrap();
        codes.push(reply["response"]["code"].as_u64().unwrap());
    }
    // Answered: the burst of 100, then 50 a second (the default rate); refused: one 429 a
    // second at most, not 900.
    let seconds = flood_started.elapsed().as_secs_f64();
    let pages = codes.iter().filter(|&&c| c == 200).count();
    let limited = codes.iter().filter(|&&c| c == 429).count();
    let allowed = 100.0 + 50.0 * seconds;
    assert!(
        pages >= 100 && pages as f64 <= allowed,
        "{pages} pages in {seconds:.1} s"
    );
    assert!(
        limited >= 1 && limited as f64 <= seconds.ceil() + 1.0,
        "{limited} 429s in {seconds:.1} s"
    );
    drop(owners);
}

#[test]
fn one_address_cannot_take_every_connection() {
    let _serial = serial();
    let mut config = config();
    config.max_conns_per_ip = 3;
    let server = start(config);
    let held: Vec<TestClient> = (0..3)
        .map(|i| TestClient::login(server.local_addr(), &format!("u{i}")))
        .collect();
    let mut fourth = RawConn::connect(server.local_addr());
    fourth.write(&framed(br#"{"system":"ping"}"#));
    let reply = fourth.read_frame();
    assert_eq!(reply["response"]["code"], 503);
    assert_eq!(
        reply["response"]["msg"],
        "Too many connections from your address: at most 3."
    );
    assert!(fourth.is_closed());
    drop(held);
    // Once one leaves, the address may connect again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = RawConn::connect(server.local_addr());
        again.write(&framed(br#"{"system":"ping"}"#));
        if again.read_frame()["response"]["code"] == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the address stayed refused");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_flooding_client_is_throttled_not_answered_per_message() {
    let _serial = serial();
    let mut config = config();
    config.rate_limit = 10.0;
    config.burst = 5.0;
    let server = start(config);
    let mut bystanders = Bystanders::new(server.local_addr());
    let mut flooder = TestClient::login(server.local_addr(), "flooder");
    let start = Instant::now();
    for i in 0..2000 {
        flooder.client.msg("lobby", &json!(i)).unwrap();
    }
    let sent_in = start.elapsed();
    // The bystanders share the rate: login, join and two msgs each stay within the burst.
    bystanders.converse(2);
    flooder
        .client
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    // Read for three seconds: the flood is served at the rate (10 a second), and refused
    // with one 429 a second at most.
    let mut limited = 0;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let Ok(message) = flooder.client.recv() else {
            break;
        };
        if let roomcast::client::ServerMessage::Reply(reply) = message {
            assert_eq!(reply.code, 429, "{reply:?}");
            limited += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // One 429 per second of flooding at most, not one per dropped message.
    assert!(
        limited <= elapsed.ceil() as usize + 1,
        "{limited} 429s in {elapsed:.1} s (the sends took {sent_in:?})"
    );
    assert!(limited >= 1);
}
