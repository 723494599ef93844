//! Cluster mode (`--redis`, README "Running several nodes"): a real `redis-server` started by
//! each test on a free port, and real `roomcast` processes sharing rooms through it. Each test
//! skips, saying why, when `redis-server` is missing (`.ci/run` installs it).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use roomcast::client::{Client, Event, ServerMessage};
use serde_json::{json, Value};
use support::redis::{self, RedisServer, TestCa};
use support::Binary;

/// Starts `count` nodes on one Redis, ids n0, n1, ...
fn nodes(redis: &RedisServer, count: usize, extra: &str) -> Vec<Binary> {
    (0..count)
        .map(|i| {
            Binary::start(
                "",
                &format!("--redis {} --node-id n{i} {extra}", redis.url()),
            )
        })
        .collect()
}

macro_rules! need_redis {
    () => {
        if let Err(why) = redis::available() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A client that reads replies and events as they come, each event with its room.
struct Peer {
    client: Client,
    /// Events read but not yet taken, with whether they came in a history frame.
    events: Vec<(String, bool, Event)>,
    replies: Vec<Value>,
    /// The server closed the connection.
    closed: bool,
}

impl Peer {
    fn connect(addr: SocketAddr) -> Peer {
        let mut client = Client::connect(addr).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        Peer {
            client,
            events: Vec::new(),
            replies: Vec::new(),
            closed: false,
        }
    }

    /// Logs in; the 202's detail.
    fn login(addr: SocketAddr, user: &str) -> (Peer, Value) {
        let mut peer = Peer::connect(addr);
        peer.client
            .send(&json!({"system": "login", "options": {"user": user}}))
            .expect("send");
        let reply = peer.reply();
        assert_eq!(reply["code"], 202, "{user}: {reply}");
        peer.wait(|e| e.iter().any(|(_, _, e)| e.kind == "list"));
        (peer, reply["detail"].clone())
    }

    fn send(&mut self, message: Value) {
        self.client.send(&message).expect("send");
    }

    /// Reads what is there (for at most `for_`).
    fn read_for(&mut self, for_: Duration) {
        let until = Instant::now() + for_;
        while Instant::now() < until && !self.closed {
            match self.client.recv() {
                Ok(ServerMessage::Events(batch)) => {
                    for event in batch.events {
                        self.events.push((batch.room.clone(), batch.history, event));
                    }
                }
                Ok(ServerMessage::Reply(reply)) => self.replies.push(json!({
                    "code": reply.code, "msg": reply.msg, "detail": reply.detail
                })),
                Err(roomcast::client::ClientError::Io(err))
                    if matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(roomcast::client::ClientError::Closed) => {
                    self.closed = true;
                    return;
                }
                Err(err) => panic!("recv: {err}"),
            }
        }
    }

    /// Reads until `done` holds of the events read (at most 20 s).
    fn wait(&mut self, done: impl Fn(&[(String, bool, Event)]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(&self.events) {
            assert!(
                Instant::now() < deadline,
                "waited 20 s; got {:?}",
                self.events
            );
            self.read_for(Duration::from_millis(20));
        }
    }

    /// The next reply (events read meanwhile are kept).
    fn reply(&mut self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.replies.is_empty() {
            assert!(
                Instant::now() < deadline,
                "no reply; events {:?}",
                self.events
            );
            self.read_for(Duration::from_millis(20));
        }
        self.replies.remove(0)
    }

    /// Live msg events of `room`: (seq, data).
    fn msgs(&self, room: &str) -> Vec<(u64, Value)> {
        self.events
            .iter()
            .filter(|(r, history, e)| r == room && !history && e.kind == "msg")
            .map(|(_, _, e)| (e.seq.unwrap_or(0), e.data.clone()))
            .collect()
    }

    fn count(&self, kind: &str, user: &str) -> usize {
        self.events
            .iter()
            .filter(|(_, history, e)| !history && e.kind == kind && e.user == user)
            .count()
    }
}

#[test]
fn chat_across_three_nodes_has_one_order_dense_seqs_and_the_same_history_and_list() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 3, "--rate-limit 0");
    let mut peers: Vec<Peer> = (0..3)
        .map(|i| Peer::login(nodes[i].addr, &format!("u{i}")).0)
        .collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        peer.send(json!({"room": "chat", "type": "join"}));
        peer.wait(|e| e.iter().any(|(r, _, e)| r == "chat" && e.kind == "list"));
        let _ = i;
    }
    peers[0].wait(|e| {
        e.iter()
            .filter(|(r, _, e)| r == "chat" && e.kind == "join")
            .count()
            == 3
    });
    const EACH: usize = 30;
    for n in 0..EACH {
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.send(json!({"room": "chat", "type": "msg", "data": {"from": i, "n": n}}));
        }
    }
    for peer in &mut peers {
        peer.wait(|e| {
            e.iter()
                .filter(|(r, _, e)| r == "chat" && e.kind == "msg")
                .count()
                == 3 * EACH
        });
    }
    let views: Vec<Vec<(u64, Value)>> = peers.iter().map(|p| p.msgs("chat")).collect();
    assert_eq!(views[0], views[1], "one order on every node");
    assert_eq!(views[0], views[2], "one order on every node");
    let seqs: Vec<u64> = views[0].iter().map(|(s, _)| *s).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + 3 * EACH as u64).collect::<Vec<_>>(),
        "dense"
    );
    for from in 0..3 {
        let order: Vec<u64> = views[0]
            .iter()
            .filter(|(_, d)| d["from"] == from)
            .map(|(_, d)| d["n"].as_u64().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..EACH as u64).collect::<Vec<_>>(),
            "a sender's order kept"
        );
    }
    // History and list, asked of every node, are the same.
    let mut answers = Vec::new();
    for peer in &mut peers {
        peer.events.clear();
        peer.send(json!({"room": "chat", "type": "history", "data": {"after": 0, "limit": 100}}));
        peer.send(json!({"room": "chat", "type": "list"}));
        peer.wait(|e| e.iter().any(|(_, _, e)| e.kind == "list"));
        let history: Vec<(Option<u64>, String, Value)> = peer
            .events
            .iter()
            .filter(|(_, history, _)| *history)
            .map(|(_, _, e)| (e.seq, e.user.clone(), e.data.clone()))
            .collect();
        let list = peer
            .events
            .iter()
            .find(|(_, _, e)| e.kind == "list")
            .unwrap()
            .2
            .data
            .clone();
        answers.push((history, list));
    }
    assert_eq!(answers[0].0.len(), 3 + 3 * EACH, "3 joins and every msg");
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0], answers[2]);
    assert_eq!(answers[0].1, json!(["u0", "u1", "u2"]));
    // The rooms list is the cluster's too.
    peers[2].send(json!({"system": "rooms"}));
    let rooms = peers[2].reply();
    assert_eq!(
        rooms["detail"],
        json!({"rooms": [{"room": "chat", "users": 3}, {"room": "lobby", "users": 3}]})
    );
}

/// A node sends each run of events it accepts (any rooms) as one Redis script call that
/// publishes one message per room: bursts from several members on two nodes in two rooms
/// still arrive in one order per room, with dense seqs, on every node, and data with escaped
/// line breaks survives being split back into events.
#[test]
fn bursts_in_two_rooms_from_two_nodes_keep_one_order_and_dense_seqs() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 2, "--rate-limit 0");
    let mut peers: Vec<Peer> = (0..4)
        .map(|i| Peer::login(nodes[i % 2].addr, &format!("u{i}")).0)
        .collect();
    for room in ["a", "b"] {
        for peer in peers.iter_mut() {
            peer.send(json!({"room": room, "type": "join"}));
            peer.wait(|e| e.iter().any(|(r, _, e)| r == room && e.kind == "list"));
        }
    }
    const EACH: usize = 40;
    for n in 0..EACH {
        for (i, peer) in peers.iter_mut().enumerate() {
            let room = if (n + i) % 2 == 0 { "a" } else { "b" };
            let text = format!("line\nbreak \u{2028} {i}/{n}");
            peer.send(
                json!({"room": room, "type": "msg", "data": {"from": i, "n": n, "text": text}}),
            );
        }
    }
    for peer in &mut peers {
        peer.wait(|e| {
            e.iter()
                .filter(|(_, history, e)| !history && e.kind == "msg")
                .count()
                == 4 * EACH
        });
    }
    for room in ["a", "b"] {
        let views: Vec<Vec<(u64, Value)>> = peers.iter().map(|p| p.msgs(room)).collect();
        for view in &views[1..] {
            assert_eq!(&views[0], view, "one order in {room} on every node");
        }
        assert_eq!(views[0].len(), 2 * EACH);
        let seqs: Vec<u64> = views[0].iter().map(|(s, _)| *s).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + 2 * EACH as u64).collect::<Vec<_>>(),
            "dense seqs in {room}"
        );
        for from in 0..4_u64 {
            let sent: Vec<u64> = views[0]
                .iter()
                .filter(|(_, d)| d["from"] == from)
                .map(|(_, d)| {
                    let n = d["n"].as_u64().unwrap();
                    assert_eq!(d["text"], format!("line\nbreak \u{2028} {from}/{n}"));
                    n
                })
                .collect();
            let expected: Vec<u64> = (0..EACH as u64)
                .filter(|n| (n + from) % 2 == u64::from(room == "b"))
                .collect();
            assert_eq!(sent, expected, "u{from}'s order kept in {room}");
        }
    }
}

#[test]
fn poses_cross_nodes_on_the_tick() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 2, "--fps 20");
    let (mut alice, _) = Peer::login(nodes[0].addr, "alice");
    let (mut near, _) = Peer::login(nodes[0].addr, "near");
    let (mut far, _) = Peer::login(nodes[1].addr, "far");
    alice.wait(|e| e.iter().filter(|(_, _, e)| e.kind == "join").count() >= 3);
    // A headset streams at 90 Hz for about half a second: both nodes get its ticks.
    for i in 0..45 {
        alice.send(json!({"room": "lobby", "type": "transform",
            "data": {"pos": {"x": f64::from(i), "y": 1.6, "z": 0}, "rot": {"x": 0, "y": 0, "z": 0, "w": 1}}}));
        std::thread::sleep(Duration::from_millis(11));
        near.read_for(Duration::ZERO);
        far.read_for(Duration::ZERO);
    }
    near.read_for(Duration::from_millis(300));
    far.read_for(Duration::from_millis(300));
    let ticks = |peer: &Peer| -> Vec<Value> {
        peer.events
            .iter()
            .filter(|(_, _, e)| e.kind == "transform" && e.user == "alice")
            .map(|(_, _, e)| e.data["pos"]["x"].clone())
            .collect()
    };
    let (seen_near, seen_far) = (ticks(&near), ticks(&far));
    // About 10 ticks of 50 ms in half a second, coalesced: far fewer than the 45 poses sent.
    assert!(
        (5..=20).contains(&seen_far.len()),
        "other node: {seen_far:?}"
    );
    assert!(
        (5..=20).contains(&seen_near.len()),
        "same node: {seen_near:?}"
    );
    assert_eq!(
        seen_far.last(),
        Some(&json!(44.0)),
        "the latest pose arrived"
    );
    // Latency, one pose at a time: the time from a transform to its arrival on each node.
    let mut measure = |peer: &mut Peer, x: i32| -> Duration {
        peer.events.clear();
        let sent_at = Instant::now();
        alice.send(json!({"room": "lobby", "type": "transform",
            "data": {"pos": {"x": f64::from(x), "y": 1.6, "z": 0}, "rot": {"x": 0, "y": 0, "z": 0, "w": 1}}}));
        let deadline = sent_at + Duration::from_secs(5);
        loop {
            assert!(
                Instant::now() < deadline,
                "pose {x} never arrived: {:?} {:?}",
                peer.events,
                peer.replies
            );
            peer.read_for(Duration::from_millis(1));
            let arrived = peer.events.iter().any(|(_, _, e)| {
                e.kind == "transform"
                    && e.user == "alice"
                    && e.data["pos"]["x"] == json!(f64::from(x))
            });
            if arrived {
                return sent_at.elapsed();
            }
        }
    };
    let mut same = Vec::new();
    let mut other = Vec::new();
    for round in 0..10 {
        same.push(measure(&mut near, 1000 + round * 2));
        other.push(measure(&mut far, 1001 + round * 2));
    }
    same.sort();
    other.sort();
    eprintln!(
        "pose latency at --fps 20: same node median {:?} max {:?}; other node median {:?} max {:?}",
        same[5], same[9], other[5], other[9]
    );
    // At most about one tick more plus a Redis round trip (with room for a loaded machine).
    assert!(
        other[5] < same[5] + Duration::from_millis(50 + 100),
        "{other:?} vs {same:?}"
    );
}

#[test]
fn names_are_unique_across_nodes() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 3, "");
    let (mut alice, _) = Peer::login(nodes[0].addr, "alice");
    let mut other = Peer::connect(nodes[1].addr);
    other.send(json!({"system": "login", "options": {"user": "ALICE"}}));
    let reply = other.reply();
    assert_eq!(reply["code"], 409, "{reply}");
    assert_eq!(reply["msg"], "User name ALICE is already logged in.");
    alice.send(json!({"system": "logout"}));
    assert_eq!(alice.reply()["code"], 200);
    // Freed once the session ended: a login elsewhere may take it.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = Peer::connect(nodes[2].addr);
        again.send(json!({"system": "login", "options": {"user": "Alice"}}));
        let reply = again.reply();
        if reply["code"] == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "{reply}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `message` on a new connection to `addr` until the reply's code is `want`, allowing
/// `meanwhile` until then (an account's announcement takes a moment to reach every node):
/// the connection and the reply.
fn until_code(addr: SocketAddr, message: &Value, want: u64, meanwhile: &[u64]) -> (Peer, Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut peer = Peer::connect(addr);
        peer.send(message.clone());
        let reply = peer.reply();
        if reply["code"] == want {
            return (peer, reply);
        }
        let code = reply["code"].as_u64().unwrap_or(0);
        assert!(meanwhile.contains(&code), "{message}: {reply}");
        assert!(Instant::now() < deadline, "{message}: still {reply}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_account_registered_on_one_node_is_the_clusters() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 3, "");
    let login = |user: &str, pass: Option<&str>| match pass {
        Some(pass) => json!({"system": "login", "options": {"user": user, "pass": pass}}),
        None => json!({"system": "login", "options": {"user": user}}),
    };
    let mut a = Peer::connect(nodes[0].addr);
    a.send(json!({"system": "register", "options": {"user": "Alice", "pass": "correct horse"}}));
    let reply = a.reply();
    assert_eq!(reply["code"], 201, "{reply}");
    assert_eq!(reply["detail"], json!({"user": "Alice"}));
    // Registered once, for the whole cluster: node 1 refuses it again.
    let mut again = Peer::connect(nodes[1].addr);
    again.send(json!({"system": "register", "options": {"user": "alice", "pass": "other horse"}}));
    assert_eq!(again.reply()["code"], 409);

    // Until node 1 has heard of the account, Redis refuses the name to a guest (409); then
    // the wrong password is 403.
    until_code(
        nodes[1].addr,
        &login("alice", Some("wrong horse")),
        403,
        &[409],
    );
    // No guest takes the name on node 2.
    until_code(nodes[2].addr, &login("ALICE", None), 403, &[409]);
    let (mut b, reply) = until_code(
        nodes[1].addr,
        &login("alice", Some("correct horse")),
        202,
        &[],
    );
    assert_eq!(reply["detail"]["user"], "Alice", "the name as registered");

    // A password changed on node 1 is the password on node 2.
    b.send(
        json!({"system": "password", "options": {"old": "correct horse", "new": "battery staple"}}),
    );
    let reply = b.reply();
    assert_eq!(reply["code"], 200, "{reply}");
    b.send(json!({"system": "logout"}));
    assert_eq!(b.reply()["code"], 200);
    let (_, reply) = until_code(
        nodes[2].addr,
        &login("alice", Some("battery staple")),
        202,
        &[403, 409],
    );
    assert_eq!(reply["detail"]["user"], "Alice");
}

/// A node's store from before it joined the cluster: its accounts are offered to Redis at
/// its start, and the other nodes learn them.
#[test]
fn a_nodes_accounts_from_before_the_cluster_are_offered_to_it() {
    need_redis!();
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = format!("--data-dir {}", dir.path().display());
    {
        let alone = Binary::start("", &data);
        let mut peer = Peer::connect(alone.addr);
        peer.send(json!({"system": "register", "options": {"user": "Zoe", "pass": "12345678"}}));
        assert_eq!(peer.reply()["code"], 201);
        // Kept on disk (the writer commits every 20 ms) before the node is killed.
        std::thread::sleep(Duration::from_millis(300));
    }
    let redis = RedisServer::ephemeral();
    let first = nodes(&redis, 1, "");
    let _joined = Binary::start("", &format!("--redis {} --node-id n9 {data}", redis.url()));
    // In Redis once the node connected: a guest can no longer take the name anywhere.
    let client = ::redis::Client::open(redis.url()).expect("Redis URL");
    let mut con = client.get_connection().expect("connect to Redis");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held: bool = ::redis::cmd("HEXISTS")
            .arg("roomcast:accounts")
            .arg("zoe")
            .query(&mut con)
            .expect("HEXISTS");
        if held {
            break;
        }
        assert!(Instant::now() < deadline, "Zoe was never offered to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    let message = json!({"system": "login", "options": {"user": "zoe", "pass": "12345678"}});
    let (_, reply) = until_code(first[0].addr, &message, 202, &[409]);
    assert_eq!(reply["detail"]["user"], "Zoe");
}

#[test]
fn a_node_killed_with_sigkill_has_its_users_leave_once() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let mut nodes = nodes(&redis, 3, "");
    let (mut u0, _) = Peer::login(nodes[0].addr, "u0");
    let (mut u1, _) = Peer::login(nodes[1].addr, "u1");
    let (mut a, _) = Peer::login(nodes[2].addr, "gone_a");
    let (_b, _) = Peer::login(nodes[2].addr, "gone_b");
    for peer in [&mut u0, &mut u1] {
        peer.wait(|e| {
            e.iter()
                .any(|(_, _, e)| e.kind == "join" && e.user == "gone_b")
        });
    }
    // gone_a's node owns a game gone_a plays against u0 (on another node).
    let game = |data: Value| json!({"room": "lobby", "type": "game", "data": data});
    a.send(game(json!({"start": "tictactoe"})));
    a.wait(|e| e.iter().any(|(_, _, e)| e.kind == "game"));
    u0.send(game(json!({"join": true})));
    u0.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["status"] == "playing")
    });
    a.send(game(json!({"move": 4})));
    u0.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["moves"] == 1)
    });
    let killed = Instant::now();
    nodes[2].signal("KILL");
    let _ = nodes[2].child.wait();
    for peer in [&mut u0, &mut u1] {
        peer.wait(|e| {
            ["gone_a", "gone_b"]
                .iter()
                .all(|u| e.iter().any(|(_, _, e)| e.kind == "leave" && e.user == *u))
        });
    }
    let took = killed.elapsed();
    eprintln!("leaves of the killed node's users after {took:?}");
    // Another node took the game over from its last state: gone_a forfeits.
    u1.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["forfeit"] == "gone_a")
    });
    let last = u1
        .events
        .iter()
        .rev()
        .find(|(_, _, e)| e.kind == "game")
        .unwrap();
    assert_eq!(last.2.data["winner"], "u0");
    assert_eq!(
        last.2.data["board"][4], "X",
        "the state before the node died"
    );
    assert!(
        took < Duration::from_secs(15),
        "within the dead-node timeout: {took:?}"
    );
    // Another reaping round passes: still one leave each.
    u0.read_for(Duration::from_millis(2500));
    u1.read_for(Duration::ZERO);
    for peer in [&u0, &u1] {
        assert_eq!(peer.count("leave", "gone_a"), 1);
        assert_eq!(peer.count("leave", "gone_b"), 1);
        assert_eq!(
            peer.count("game", "gone_a"),
            3,
            "start, move, forfeit: once each"
        );
    }
    let seqs: BTreeSet<u64> = u0
        .events
        .iter()
        .filter(|(_, _, e)| e.kind == "leave")
        .filter_map(|(_, _, e)| e.seq)
        .collect();
    assert_eq!(seqs.len(), 2, "each leave has its own seq");
    u0.send(json!({"room": "lobby", "type": "list"}));
    u0.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "list" && e.data == json!(["u0", "u1"]))
    });
    // The dead node's names are free again.
    let (_again, _) = Peer::login(nodes[1].addr, "gone_a");
}

#[test]
fn restarting_redis_mid_chat_delivers_nothing_twice() {
    need_redis!();
    let mut redis = RedisServer::persistent();
    let nodes = nodes(&redis, 2, "--rate-limit 0");
    let (mut alice, _) = Peer::login(nodes[0].addr, "alice");
    let (mut bob, _) = Peer::login(nodes[1].addr, "bob");
    alice.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "join" && e.user == "bob")
    });
    // Each round must take milliseconds, not a 100 ms read timeout: rounds at that pace kept
    // Redis away for up to 8 s on a loaded machine, so close to the 10 s dead-node timeout
    // that a node's first heartbeat after the restart could come too late.
    for peer in [&mut alice, &mut bob] {
        peer.client
            .set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
    }
    const ROUNDS: u64 = 150;
    for n in 0..ROUNDS {
        if n == ROUNDS / 3 {
            redis.stop();
        }
        if n == ROUNDS / 2 {
            redis.restart();
        }
        alice.send(json!({"room": "lobby", "type": "msg", "data": {"from": "alice", "n": n}}));
        bob.send(json!({"room": "lobby", "type": "msg", "data": {"from": "bob", "n": n}}));
        alice.read_for(Duration::from_millis(5));
        bob.read_for(Duration::from_millis(5));
    }
    alice.read_for(Duration::from_millis(2000));
    bob.read_for(Duration::from_millis(500));
    let refused = |peer: &Peer| peer.replies.iter().filter(|r| r["code"] == 503).count();
    let (alice_refused, bob_refused) = (refused(&alice), refused(&bob));
    let (a, b) = (alice.msgs("lobby"), bob.msgs("lobby"));
    eprintln!(
        "restart: {} msgs delivered; refused while Redis was away: alice {alice_refused}, bob {bob_refused}",
        a.len()
    );
    assert!(
        alice_refused + bob_refused > 0,
        "some were sent while Redis was away"
    );
    assert_eq!(a, b, "both see the same events in the same order");
    let seqs: Vec<u64> = a.iter().map(|(s, _)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "no seq twice, in order: {seqs:?}"
    );
    let unique: BTreeSet<String> = a.iter().map(|(_, d)| d.to_string()).collect();
    assert_eq!(unique.len(), a.len(), "no msg twice");
    for (who, refused) in [("alice", alice_refused), ("bob", bob_refused)] {
        let delivered = a.iter().filter(|(_, d)| d["from"] == who).count() as u64;
        assert!(delivered <= ROUNDS);
        assert!(
            delivered + refused as u64 >= ROUNDS,
            "{who}: every msg was delivered or refused ({delivered} + {refused})"
        );
    }
    for peer in [&alice, &bob] {
        assert!(
            peer.replies.iter().all(|r| r["code"] != 410),
            "nothing lost: {:?}",
            peer.replies
        );
    }
    // Seqs go on after the restart: chat still works.
    alice.send(json!({"room": "lobby", "type": "msg", "data": "after"}));
    bob.wait(|e| e.iter().any(|(_, _, e)| e.data == json!("after")));
}

#[test]
fn a_session_resumes_on_another_node() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 2, "");
    let (mut alice, detail) = Peer::login(nodes[0].addr, "alice");
    let (mut bob, _) = Peer::login(nodes[1].addr, "bob");
    alice.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "join" && e.user == "bob")
    });
    let token = detail["resume"]
        .as_str()
        .expect("a resume token")
        .to_owned();
    let seqs = alice.client.last_seqs().clone();
    drop(alice);
    bob.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "away" && e.user == "alice")
    });
    bob.send(json!({"room": "lobby", "type": "msg", "data": "while you were away"}));
    bob.wait(|e| e.iter().any(|(_, _, e)| e.kind == "msg"));
    // The load balancer sends the reconnect to the other node.
    let mut back = Peer::connect(nodes[1].addr);
    back.send(json!({"system": "resume", "options": {"token": token, "rooms": seqs}}));
    let reply = back.reply();
    assert_eq!(reply["code"], 202, "{reply}");
    assert_eq!(reply["detail"]["resumed"], true);
    assert_eq!(reply["detail"]["user"], "alice");
    back.wait(|e| e.iter().any(|(_, _, e)| e.kind == "back"));
    let missed: Vec<(String, Value)> = back
        .events
        .iter()
        .filter(|(_, history, _)| *history)
        .map(|(_, _, e)| (e.kind.clone(), e.data.clone()))
        .collect();
    assert_eq!(
        missed,
        [
            ("away".to_owned(), json!("")),
            ("msg".to_owned(), json!("while you were away"))
        ],
        "exactly what it missed"
    );
    bob.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "back" && e.user == "alice")
    });
    back.send(json!({"room": "lobby", "type": "msg", "data": "hello from node 1"}));
    bob.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.data == json!("hello from node 1"))
    });
    bob.send(json!({"room": "lobby", "type": "list"}));
    bob.wait(|e| e.iter().any(|(_, _, e)| e.kind == "list"));
    let list = bob
        .events
        .iter()
        .rev()
        .find(|(_, _, e)| e.kind == "list")
        .unwrap();
    assert_eq!(list.2.data, json!(["alice", "bob"]), "alice once");
    // The old node let go of the name: alice is node 1's now, node 0 refuses it.
    let mut twin = Peer::connect(nodes[0].addr);
    twin.send(json!({"system": "login", "options": {"user": "alice"}}));
    assert_eq!(twin.reply()["code"], 409);
}

#[test]
fn a_game_is_played_from_two_nodes_with_one_owner() {
    need_redis!();
    let redis = RedisServer::ephemeral();
    let nodes = nodes(&redis, 2, "");
    let (mut alice, _) = Peer::login(nodes[0].addr, "alice");
    let (mut bob, _) = Peer::login(nodes[1].addr, "bob");
    alice.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "join" && e.user == "bob")
    });
    let game = |data: Value| json!({"room": "lobby", "type": "game", "data": data});
    alice.send(game(json!({"start": "tictactoe"})));
    bob.wait(|e| e.iter().any(|(_, _, e)| e.kind == "game"));
    bob.send(game(json!({"join": true})));
    alice.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["status"] == "playing")
    });
    alice.send(game(json!({"move": 4})));
    bob.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["moves"] == 1)
    });
    // Refused by the owner (node 0), told on node 1 as a single node tells it.
    bob.send(game(json!({"move": 4})));
    let refusal = bob.reply();
    assert_eq!(refusal["code"], 422, "{refusal}");
    assert_eq!(refusal["msg"], "cell 4 is already taken");
    assert_eq!(refusal["detail"], json!({"room": "lobby", "type": "game"}));
    bob.send(game(json!({"move": 0})));
    alice.wait(|e| {
        e.iter()
            .any(|(_, _, e)| e.kind == "game" && e.data["moves"] == 2)
    });
    let boards = |peer: &Peer| -> Vec<(Option<u64>, Value)> {
        peer.events
            .iter()
            .filter(|(_, _, e)| e.kind == "game")
            .map(|(_, _, e)| (e.seq, e.data.clone()))
            .collect()
    };
    bob.read_for(Duration::from_millis(200));
    assert_eq!(boards(&alice), boards(&bob), "one game, seen alike");
    assert_eq!(boards(&alice).len(), 4);
}

// ---- Redis over TLS (`rediss://`, `--redis-ca`) ----

/// Starts a TLS-only Redis with certificates of a CA made for the test (and, with
/// `client_certs`, that asks clients for one); `None` (having said why) when redis-server
/// cannot start with TLS here.
fn tls_redis(client_certs: bool) -> Option<(TestCa, RedisServer)> {
    if let Err(why) = redis::available() {
        eprintln!("skipped: {why}");
        return None;
    }
    let ca = TestCa::new("of Redis");
    match RedisServer::tls(&ca, client_certs) {
        Ok(server) => Some((ca, server)),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// Runs a node that must fail at start-up: its exit status and what it wrote to stderr.
fn start_failure(args: &str) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
        .args(["--port", "0", "--ephemeral"])
        .args(args.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start roomcast");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("roomcast {args} still runs after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("piped"), &mut stderr)
        .expect("stderr");
    (status.code(), stderr)
}

#[test]
fn nodes_chat_over_a_redis_that_speaks_tls_only() {
    let Some((ca, redis)) = tls_redis(false) else {
        return;
    };
    assert!(redis.url().starts_with("rediss://127.0.0.1:"));
    let extra = format!("--rate-limit 0 --redis-ca {}", ca.ca.display());
    let nodes = nodes(&redis, 2, &extra);
    let mut peers: Vec<Peer> = (0..2)
        .map(|i| Peer::login(nodes[i].addr, &format!("u{i}")).0)
        .collect();
    for peer in &mut peers {
        peer.send(json!({"room": "chat", "type": "join"}));
        peer.wait(|e| e.iter().any(|(r, _, e)| r == "chat" && e.kind == "list"));
    }
    peers[0].wait(|e| {
        e.iter()
            .filter(|(r, _, e)| r == "chat" && e.kind == "join")
            .count()
            == 2
    });
    const EACH: usize = 10;
    for n in 0..EACH {
        for (i, peer) in peers.iter_mut().enumerate() {
            peer.send(json!({"room": "chat", "type": "msg", "data": {"from": i, "n": n}}));
        }
    }
    for peer in &mut peers {
        peer.wait(|e| {
            e.iter()
                .filter(|(r, _, e)| r == "chat" && e.kind == "msg")
                .count()
                == 2 * EACH
        });
    }
    let views: Vec<Vec<(u64, Value)>> = peers.iter().map(|p| p.msgs("chat")).collect();
    assert_eq!(views[0], views[1], "one order on both nodes");
    let seqs: Vec<u64> = views[0].iter().map(|(s, _)| *s).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + 2 * EACH as u64).collect::<Vec<_>>(),
        "dense"
    );
    for from in 0..2 {
        let seen = views[0].iter().filter(|(_, d)| d["from"] == from).count();
        assert_eq!(seen, EACH, "every msg of u{from} seen by both");
    }
}

#[test]
fn a_tls_redis_that_cannot_be_trusted_or_spoken_to_stops_the_node_at_start() {
    let Some((ca, redis)) = tls_redis(false) else {
        return;
    };
    let url = redis.url();
    // A CA that did not sign Redis's certificate.
    let stranger = TestCa::new("stranger");
    let (code, stderr) = start_failure(&format!(
        "--redis {url} --redis-ca {}",
        stranger.ca.display()
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Redis at {url} presented a TLS certificate that does not verify"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--redis-ca names the CA"), "{stderr}");
    // No --redis-ca: the system's roots do not know the test's CA either.
    let (code, stderr) = start_failure(&format!("--redis {url}"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
    // A CA file that is not there, or holds no certificate.
    let missing = ca.dir().join("missing.pem");
    let (code, stderr) = start_failure(&format!("--redis {url} --redis-ca {}", missing.display()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot read --redis-ca {}", missing.display())),
        "{stderr}"
    );
    let (code, stderr) = start_failure(&format!("--redis {url} --redis-ca {}", ca.key.display()));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("holds no PEM certificate"), "{stderr}");
    // rediss:// to a Redis that speaks no TLS: the password stays out of the message.
    let plain = RedisServer::ephemeral();
    let plain_url = format!("rediss://:hunter2@127.0.0.1:{}", plain.port);
    let (code, stderr) = start_failure(&format!(
        "--redis {plain_url} --redis-ca {}",
        ca.ca.display()
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no TLS with Redis at rediss://***@127.0.0.1:{}",
            plain.port
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn a_redis_that_asks_for_client_certificates_takes_the_nodes_one() {
    let Some((ca, redis)) = tls_redis(true) else {
        return;
    };
    let url = redis.url();
    let trust = format!("--redis {url} --redis-ca {}", ca.ca.display());
    let node = Binary::start(
        "",
        &format!(
            "{trust} --redis-cert {} --redis-key {}",
            ca.client_cert.display(),
            ca.client_key.display()
        ),
    );
    // A login claims its name in Redis: a 202 means the node's commands go through.
    let (mut peer, _) = Peer::login(node.addr, "alice");
    peer.send(json!({"system": "rooms"}));
    assert_eq!(peer.reply()["code"], 200);
    // Without one, or with one the CA did not sign (Redis's own), the node stops at once.
    let (code, stderr) = start_failure(&trust);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Redis at {url} refused this node's TLS client certificate"
        )),
        "{stderr}"
    );
    let stranger = TestCa::new("stranger");
    let (code, stderr) = start_failure(&format!(
        "{trust} --redis-cert {} --redis-key {}",
        stranger.client_cert.display(),
        stranger.client_key.display()
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refused this node's TLS client certificate"),
        "{stderr}"
    );
    // A key that is not the certificate's.
    let (code, stderr) = start_failure(&format!(
        "{trust} --redis-cert {} --redis-key {}",
        ca.client_cert.display(),
        stranger.client_key.display()
    ));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("TLS settings for Redis"), "{stderr}");
}
