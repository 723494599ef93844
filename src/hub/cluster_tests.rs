//! The cluster rules, with several hubs and a fake Redis in memory: [`Bus`] does what the
//! scripts of `services/redis_scripts.rs` do (numbering, streams, membership, names,
//! sessions, reaping) and delivers channel messages in publish order, unless a test holds or
//! drops them. No sockets, no threads, no sleeps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::cluster::{ClusterIn, ClusterOut, Mode};
use super::testing::{code, flatten, Harness};
use super::{ConnId, Input};
use crate::config::{ClusterConfig, Config};

/// What the fake Redis keeps.
#[derive(Default)]
struct Bus {
    seq: HashMap<String, u64>,
    /// Room -> (seq, payload), oldest first.
    streams: HashMap<String, Vec<(u64, Bytes)>>,
    members: HashMap<String, BTreeMap<String, String>>,
    /// Folded name -> (node, name).
    names: HashMap<String, (String, String)>,
    user_rooms: HashMap<String, BTreeSet<String>>,
    sessions: HashMap<String, String>,
    /// Room -> nodes subscribed.
    subs: HashMap<String, BTreeSet<usize>>,
    rooms: BTreeSet<String>,
    /// Nodes whose heartbeat lapsed (reaped at the next check).
    dead: BTreeSet<usize>,
    /// Killed nodes: what they send is lost, nothing reaches them.
    killed: BTreeSet<usize>,
    /// Redis is away: every request fails or is dropped.
    down: bool,
    /// Channel messages to a node are dropped (not delivered) while set.
    deaf: BTreeSet<usize>,
    /// Stream entries kept per room.
    stream_len: usize,
    /// Room -> its game's state.
    games: HashMap<String, Bytes>,
    /// Room -> the node owning its game.
    leases: HashMap<String, usize>,
}

struct Cluster {
    nodes: Vec<Harness>,
    ids: Vec<String>,
    bus: Bus,
    /// Inputs on their way to each node.
    mail: VecDeque<(usize, ClusterIn)>,
}

fn config(id: &str) -> Config {
    Config {
        cluster: Some(ClusterConfig {
            redis_url: "redis://fake:1".into(),
            node_id: id.into(),
        }),
        ..Config::default()
    }
}

impl Cluster {
    fn new(count: usize) -> Cluster {
        Cluster::with(count, |_| {})
    }

    fn with(count: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        let ids: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
        let nodes = ids
            .iter()
            .map(|id| {
                let mut config = config(id);
                tweak(&mut config);
                Harness::new(config)
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            ids,
            bus: Bus {
                stream_len: 1000,
                ..Bus::default()
            },
            mail: VecDeque::new(),
        };
        cluster.bus.rooms.insert("lobby".into());
        cluster.settle();
        cluster
    }

    /// Carries every request and answer until nothing moves.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                // Every loop pass runs what is due, as the event loop does.
                let now = self.nodes[i].now;
                self.nodes[i].hub.handle_timeout(now);
                self.nodes[i].pump();
                for out in std::mem::take(&mut self.nodes[i].cluster) {
                    moved = true;
                    self.request(i, out);
                }
            }
            while let Some((i, input)) = self.mail.pop_front() {
                moved = true;
                let h = &mut self.nodes[i];
                h.hub.handle(h.now, Input::Cluster(input));
                h.pump();
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn send(&mut self, node: usize, conn: ConnId, message: Value) {
        self.nodes[node].send(conn, message);
        self.settle();
    }

    /// Logs `name` in on `node`; the login's frames are taken.
    fn user(&mut self, node: usize, name: &str) -> ConnId {
        let conn = self.nodes[node].connect();
        self.send(
            node,
            conn,
            json!({"system": "login", "options": {"user": name}}),
        );
        let replies = self.nodes[node].take(conn);
        assert_eq!(replies[0]["response"]["code"], 202, "{replies:?}");
        conn
    }

    fn advance(&mut self, by: Duration) {
        for h in &mut self.nodes {
            h.advance(by);
        }
        self.settle();
    }

    fn post(&mut self, node: usize, input: ClusterIn) {
        if !self.bus.killed.contains(&node) {
            self.mail.push_back((node, input));
        }
    }

    /// Node `i` is killed: nothing more from it or to it, and the others reap it at their
    /// next dead-node check.
    fn kill(&mut self, node: usize) {
        self.bus.killed.insert(node);
        self.bus.dead.insert(node);
    }

    /// Publishes on a room's channel to its subscribers.
    fn broadcast(&mut self, room: &str, input: impl Fn() -> ClusterIn) {
        let subs: Vec<usize> = self
            .bus
            .subs
            .get(room)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for node in subs {
            if !self.bus.deaf.contains(&node) {
                self.post(node, input());
            }
        }
    }

    /// What a script would do.
    fn request(&mut self, from: usize, out: ClusterOut) {
        if self.bus.killed.contains(&from) {
            return;
        }
        let node = self.ids[from].clone();
        if self.bus.down {
            match out {
                ClusterOut::Publish(p) if !p.retry => {
                    self.post(from, ClusterIn::Failed { op: p.op })
                }
                ClusterOut::ClaimName { op, .. }
                | ClusterOut::ClaimSession { op, .. }
                | ClusterOut::Rooms { op, .. } => self.post(from, ClusterIn::Failed { op }),
                _ => {}
            }
            return;
        }
        match out {
            ClusterOut::Subscribe { room, history } => {
                self.bus.subs.entry(room.clone()).or_default().insert(from);
                let last_seq = self.bus.seq.get(&room).copied().unwrap_or(0);
                let stream = self.bus.streams.get(&room).cloned().unwrap_or_default();
                let skip = stream.len().saturating_sub(history);
                let events = stream.into_iter().skip(skip).map(|(_, p)| p).collect();
                let members = self
                    .bus
                    .members
                    .get(&room)
                    .map(|m| m.iter().map(|(u, n)| (u.clone(), n.clone())).collect())
                    .unwrap_or_default();
                let game = self.bus.games.get(&room).cloned();
                self.post(
                    from,
                    ClusterIn::Synced {
                        room,
                        last_seq,
                        events,
                        members,
                        game,
                    },
                );
            }
            ClusterOut::Unsubscribe { room } => {
                if let Some(subs) = self.bus.subs.get_mut(&room) {
                    subs.remove(&from);
                }
            }
            ClusterOut::Publish(p) => {
                let members = self.bus.members.entry(p.room.clone()).or_default();
                if matches!(p.mode, Mode::Leave | Mode::Member)
                    && members.get(&p.user) != Some(&node)
                {
                    return;
                }
                let seq = self.bus.seq.entry(p.room.clone()).or_default();
                *seq = (*seq + 1).max(p.floor + 1);
                let seq = *seq;
                let payload = Bytes::from(
                    [
                        format!("{seq} {node} {} {} {}\n", p.op, p.kind, p.user).as_bytes(),
                        &p.prefix,
                        seq.to_string().as_bytes(),
                        &p.suffix,
                    ]
                    .concat(),
                );
                match p.mode {
                    Mode::Join => {
                        members.insert(p.user.clone(), node.clone());
                        self.bus.rooms.insert(p.room.clone());
                        let rooms = self.bus.user_rooms.entry(p.folded.clone()).or_default();
                        rooms.insert(p.room.clone());
                    }
                    Mode::Leave => {
                        members.remove(&p.user);
                        if members.is_empty() && p.room != "lobby" {
                            self.bus.rooms.remove(&p.room);
                            self.bus.games.remove(&p.room);
                            self.bus.leases.remove(&p.room);
                        }
                        if let Some(rooms) = self.bus.user_rooms.get_mut(&p.folded) {
                            rooms.remove(&p.room);
                        }
                    }
                    _ => {}
                }
                if let Some(state) = p.state {
                    self.bus.games.insert(p.room.clone(), state);
                }
                self.append(&p.room, seq, payload);
            }
            ClusterOut::Game {
                op,
                room,
                user,
                command,
            } => {
                let owner = *self.bus.leases.entry(room.clone()).or_insert(from);
                if owner == from {
                    let state = self.bus.games.get(&room).cloned();
                    self.post(from, ClusterIn::GameLease { op, room, state });
                } else {
                    self.post(
                        owner,
                        ClusterIn::GameForward {
                            room,
                            user,
                            origin: node,
                            op,
                            command,
                        },
                    );
                }
            }
            ClusterOut::ClaimLease { room } => {
                if !self.bus.leases.contains_key(&room) {
                    self.bus.leases.insert(room.clone(), from);
                    let state = self.bus.games.get(&room).cloned();
                    self.post(from, ClusterIn::GameLease { op: 0, room, state });
                }
            }
            ClusterOut::RenewLease { room } => {
                if self.bus.leases.get(&room) != Some(&from) {
                    self.post(from, ClusterIn::LeaseLost { room });
                }
            }
            ClusterOut::ReleaseLease { room } => {
                if self.bus.leases.get(&room) == Some(&from) {
                    self.bus.leases.remove(&room);
                }
            }
            ClusterOut::GameRefusal {
                node: to,
                op,
                code,
                msg,
            } => {
                if let Some(i) = self.ids.iter().position(|id| *id == to) {
                    self.post(i, ClusterIn::GameRefused { op, code, msg });
                }
            }
            ClusterOut::Fetch { room, after, count } => {
                let events = self
                    .bus
                    .streams
                    .get(&room)
                    .into_iter()
                    .flatten()
                    .filter(|(seq, _)| *seq > after)
                    .take(count)
                    .map(|(_, p)| p.clone())
                    .collect();
                self.post(
                    from,
                    ClusterIn::Fetched {
                        room,
                        after,
                        events,
                    },
                );
            }
            ClusterOut::Poses { room, payload } => {
                self.broadcast(&room, || ClusterIn::Poses {
                    room: room.clone(),
                    payload: payload.clone(),
                });
            }
            ClusterOut::ClaimName { op, folded, user } => {
                let ok = !self.bus.names.contains_key(&folded);
                if ok {
                    self.bus.names.insert(folded, (node, user));
                }
                self.post(from, ClusterIn::NameClaimed { op, ok });
            }
            ClusterOut::ReleaseName { folded } => {
                if self.bus.names.get(&folded).is_some_and(|(n, _)| *n == node) {
                    self.bus.names.remove(&folded);
                    self.bus.user_rooms.remove(&folded);
                }
            }
            ClusterOut::SaveSession { token, folded, old } => {
                if let Some(old) = old {
                    self.bus.sessions.remove(&old);
                }
                self.bus.sessions.insert(token, folded);
            }
            ClusterOut::ExpireSession { .. } => {}
            ClusterOut::DropSession { token } => {
                self.bus.sessions.remove(&token);
            }
            ClusterOut::ClaimSession { op, token } => {
                let found = self.claim_session(&token, &node);
                self.post(from, ClusterIn::SessionClaimed { op, found });
            }
            ClusterOut::Rooms { op, after, limit } => {
                let names: Vec<&String> = self
                    .bus
                    .rooms
                    .iter()
                    .filter(|r| after.as_ref().is_none_or(|a| *r > a))
                    .collect();
                let more = names.len() > limit;
                let rooms = names
                    .into_iter()
                    .take(limit)
                    .map(|r| (r.clone(), self.bus.members.get(r).map_or(0, |m| m.len())))
                    .collect();
                self.post(from, ClusterIn::Rooms { op, rooms, more });
            }
            ClusterOut::Heartbeat => {}
            ClusterOut::Reap { time } => {
                let dead: Vec<usize> = std::mem::take(&mut self.bus.dead).into_iter().collect();
                for victim in dead {
                    self.reap(&node, &self.ids[victim].clone(), &time);
                    // Its leases lapse too.
                    self.bus.leases.retain(|_, owner| *owner != victim);
                }
            }
        }
    }

    fn append(&mut self, room: &str, seq: u64, payload: Bytes) {
        let stream = self.bus.streams.entry(room.to_owned()).or_default();
        stream.push((seq, payload.clone()));
        let excess = stream.len().saturating_sub(self.bus.stream_len);
        stream.drain(..excess);
        self.broadcast(room, || ClusterIn::Event {
            room: room.to_owned(),
            payload: payload.clone(),
        });
    }

    fn claim_session(&mut self, token: &str, to: &str) -> Option<(String, Vec<String>)> {
        let folded = self.bus.sessions.remove(token)?;
        let (from, name) = self.bus.names.get(&folded)?.clone();
        self.bus
            .names
            .insert(folded.clone(), (to.to_owned(), name.clone()));
        let mut moved = Vec::new();
        for room in self.bus.user_rooms.get(&folded).into_iter().flatten() {
            let members = self.bus.members.entry(room.clone()).or_default();
            if members.get(&name) == Some(&from) {
                members.insert(name.clone(), to.to_owned());
                moved.push(room.clone());
            }
        }
        if let Some(i) = self.ids.iter().position(|id| *id == from) {
            self.post(
                i,
                ClusterIn::SessionTaken {
                    token: token.to_owned(),
                    node: to.to_owned(),
                },
            );
        }
        Some((name, moved))
    }

    /// What the reap script does for one dead node.
    fn reap(&mut self, me: &str, victim: &str, time: &str) {
        let held: Vec<(String, String)> = self
            .bus
            .names
            .iter()
            .filter(|(_, (n, _))| n == victim)
            .map(|(f, (_, name))| (f.clone(), name.clone()))
            .collect();
        for (folded, name) in held {
            let rooms: Vec<String> = self
                .bus
                .user_rooms
                .remove(&folded)
                .into_iter()
                .flatten()
                .collect();
            for room in rooms {
                let members = self.bus.members.entry(room.clone()).or_default();
                if members.get(&name).map(String::as_str) != Some(victim) {
                    continue;
                }
                members.remove(&name);
                let seq = self.bus.seq.entry(room.clone()).or_default();
                *seq += 1;
                let seq = *seq;
                let payload = Bytes::from(format!(
                    "{seq} {me} 0 leave {name}\n{{\"time\":{time},\"user\":\"{name}\",\"type\":\"leave\",\"seq\":{seq},\"data\":\"\"}}"
                ));
                self.append(&room, seq, payload);
            }
            self.bus.names.remove(&folded);
        }
    }

    /// Events (flattened) a connection received, taken.
    fn events(&mut self, node: usize, conn: ConnId) -> Vec<Value> {
        self.nodes[node].events(conn)
    }
}

/// The (type, user, seq, data) of each event.
fn seen(events: &[Value]) -> Vec<(String, String, u64, Value)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or("").to_owned(),
                e["user"].as_str().unwrap_or("").to_owned(),
                e["seq"].as_u64().unwrap_or(0),
                e["data"].clone(),
            )
        })
        .collect()
}

fn msgs(events: &[Value]) -> Vec<(u64, Value)> {
    events
        .iter()
        .filter(|e| e["type"] == "msg")
        .map(|e| (e["seq"].as_u64().unwrap_or(0), e["data"].clone()))
        .collect()
}

#[test]
fn chat_across_nodes_has_one_order_and_dense_seqs() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(2, "carol");
    for (i, conn) in [alice, bob, carol].into_iter().enumerate() {
        c.events(i, conn);
    }
    // Each sends before any node hears back: the origin does not deliver its own msg first.
    c.nodes[0].send(alice, json!({"room": "lobby", "type": "msg", "data": "a1"}));
    assert!(
        c.nodes[0].take(alice).is_empty(),
        "not before it comes back"
    );
    c.nodes[1].send(bob, json!({"room": "lobby", "type": "msg", "data": "b1"}));
    c.nodes[2].send(carol, json!({"room": "lobby", "type": "msg", "data": "c1"}));
    c.nodes[0].send(alice, json!({"room": "lobby", "type": "msg", "data": "a2"}));
    c.settle();
    let orders: Vec<Vec<(u64, Value)>> = [alice, bob, carol]
        .into_iter()
        .enumerate()
        .map(|(i, conn)| msgs(&c.events(i, conn)))
        .collect();
    assert_eq!(orders[0].len(), 4);
    assert_eq!(orders[0], orders[1]);
    assert_eq!(orders[0], orders[2]);
    let seqs: Vec<u64> = orders[0].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [4, 5, 6, 7], "after the three joins, dense");
    let a: Vec<&Value> = orders[0]
        .iter()
        .filter(|(_, d)| d.as_str().unwrap().starts_with('a'))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(a, ["a1", "a2"], "one node's order is kept");
}

#[test]
fn a_joiner_gets_the_history_before_its_join_and_every_member_in_its_list() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    c.send(
        0,
        alice,
        json!({"room": "lobby", "type": "msg", "data": "before"}),
    );
    c.events(0, alice);
    let bob_conn = c.nodes[1].connect();
    c.nodes[1].send(
        bob_conn,
        json!({"system": "login", "options": {"user": "bob"}}),
    );
    assert!(
        c.nodes[1].held.contains_key(&bob_conn),
        "held until Redis answers"
    );
    c.settle();
    let frames = c.nodes[1].take(bob_conn);
    assert_eq!(code(&frames[0]), 202);
    assert_eq!(frames[1]["history"], true);
    assert_eq!(
        seen(&flatten(&frames[1..2])),
        [
            ("join".into(), "alice".into(), 1, json!("")),
            ("msg".into(), "alice".into(), 2, json!("before"))
        ]
    );
    assert_eq!(seen(&flatten(&frames[2..3]))[0].2, 3, "its own join, next");
    assert_eq!(flatten(&frames[3..4])[0]["data"], json!(["alice", "bob"]));
    assert_eq!(frames.len(), 4);
    // Both nodes answer list and history alike.
    c.send(0, alice, json!({"room": "lobby", "type": "list"}));
    c.send(1, bob_conn, json!({"room": "lobby", "type": "list"}));
    let (a, b) = (c.events(0, alice), c.events(1, bob_conn));
    assert_eq!(a.last().unwrap()["data"], b.last().unwrap()["data"]);
    let query = json!({"room": "lobby", "type": "history", "data": {"after": 0}});
    c.send(0, alice, query.clone());
    c.send(1, bob_conn, query);
    let (a, b) = (c.nodes[0].take(alice), c.nodes[1].take(bob_conn));
    assert_eq!(a, b, "the same history from every node");
    assert_eq!(flatten(&a).len(), 3);
}

#[test]
fn names_are_unique_across_nodes_ignoring_case() {
    let mut c = Cluster::new(2);
    c.user(0, "Alice");
    let second = c.nodes[1].connect();
    c.send(
        1,
        second,
        json!({"system": "login", "options": {"user": "alice"}}),
    );
    let frames = c.nodes[1].take(second);
    assert_eq!(code(&frames[0]), 409, "{frames:?}");
    assert!(!c.nodes[1].held.contains_key(&second));
}

#[test]
fn a_leaver_gets_its_own_leave_and_the_room_goes_when_its_last_member_does() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.send(0, alice, json!({"room": "vr", "type": "join"}));
    c.send(1, bob, json!({"room": "vr", "type": "join"}));
    c.events(0, alice);
    c.events(1, bob);
    c.send(0, alice, json!({"room": "vr", "type": "leave"}));
    let a = c.events(0, alice);
    assert_eq!(seen(&a), [("leave".into(), "alice".into(), 3, json!(""))]);
    let b = c.events(1, bob);
    assert_eq!(seen(&b), [("leave".into(), "alice".into(), 3, json!(""))]);
    assert!(!c.bus.subs["vr"].contains(&0), "node 1 unsubscribed");
    c.send(
        1,
        bob,
        json!({"room": "vr", "type": "msg", "data": "alone"}),
    );
    assert!(c.events(0, alice).is_empty(), "no longer a member");
    c.send(0, alice, json!({"room": "vr", "type": "join"}));
    let frames = c.nodes[0].take(alice);
    assert_eq!(frames[0]["history"], true, "vr's history comes from Redis");
    assert_eq!(flatten(&frames[..1]).len(), 4);
}

#[test]
fn a_gap_is_read_back_from_the_stream_and_no_seq_is_delivered_twice() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.events(0, alice);
    c.events(1, bob);
    c.bus.deaf.insert(1);
    c.send(0, alice, json!({"room": "lobby", "type": "msg", "data": 1}));
    c.bus.deaf.clear();
    c.send(0, alice, json!({"room": "lobby", "type": "msg", "data": 2}));
    assert_eq!(
        msgs(&c.events(1, bob)),
        [(3, json!(1)), (4, json!(2))],
        "fetched"
    );
    // The lost message arrives late after all: already delivered, dropped.
    let late = c.bus.streams["lobby"][2].1.clone();
    c.post(
        1,
        ClusterIn::Event {
            room: "lobby".into(),
            payload: late,
        },
    );
    c.settle();
    assert!(c.events(1, bob).is_empty());
}

#[test]
fn while_redis_is_away_seqs_are_refused_and_what_was_missed_comes_once() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.events(0, alice);
    c.events(1, bob);
    c.post(0, ClusterIn::Down);
    c.settle();
    c.send(
        0,
        alice,
        json!({"room": "lobby", "type": "msg", "data": "x"}),
    );
    let refused = c.nodes[0].take(alice);
    assert_eq!(code(&refused[0]), 503);
    assert_eq!(
        refused[0]["response"]["detail"],
        json!({"room": "lobby", "type": "msg"})
    );
    // Node 1 still reaches Redis; node 0's subscriber missed what it published.
    c.bus.deaf.insert(0);
    c.send(
        1,
        bob,
        json!({"room": "lobby", "type": "msg", "data": "while away"}),
    );
    c.bus.deaf.clear();
    c.post(0, ClusterIn::Up);
    c.settle();
    assert_eq!(msgs(&c.events(0, alice)), [(3, json!("while away"))]);
    c.send(
        0,
        alice,
        json!({"room": "lobby", "type": "msg", "data": "back"}),
    );
    assert_eq!(msgs(&c.events(0, alice)), [(4, json!("back"))]);
    assert_eq!(
        msgs(&c.events(1, bob)),
        [(3, json!("while away")), (4, json!("back"))]
    );
}

#[test]
fn events_the_stream_lost_are_told_as_410_with_the_kept_history() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.events(0, alice);
    c.bus.stream_len = 2;
    c.bus.deaf.insert(1);
    for n in 0..5 {
        c.send(0, alice, json!({"room": "lobby", "type": "msg", "data": n}));
    }
    c.bus.deaf.clear();
    c.nodes[1].take(bob);
    c.post(1, ClusterIn::Down);
    c.post(1, ClusterIn::Up);
    c.settle();
    let frames = c.nodes[1].take(bob);
    assert_eq!(code(&frames[0]), 410, "{frames:?}");
    assert_eq!(frames[0]["response"]["detail"], json!({"room": "lobby"}));
    assert_eq!(frames[1]["history"], true);
    let after: Vec<u64> = flatten(&frames[2..])
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(after, [6, 7], "what the stream still held, once");
}

#[test]
fn poses_cross_nodes_on_the_next_tick() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.events(0, alice);
    c.events(1, bob);
    let pose = json!({"room": "lobby", "type": "transform",
        "data": {"pos": {"x": 1, "y": 1.6, "z": 0}, "rot": {"x": 0, "y": 0, "z": 0, "w": 1}}});
    c.send(0, alice, pose);
    assert!(c.events(1, bob).is_empty());
    // Node 0's tick publishes it; node 1, quiet until then, ticks as soon as it arrives.
    c.advance(Duration::from_millis(50));
    let theirs = c.events(1, bob);
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["user"], "alice");
    assert_eq!(theirs[0]["data"]["pos"]["x"], 1.0);
    assert_eq!(c.events(0, alice).len(), 1);
    c.advance(Duration::from_millis(200));
    assert!(c.events(1, bob).is_empty(), "nothing changed: nothing sent");
    // A newcomer on a third... here bob's node: carol joins and gets alice's pose too.
    let carol = c.user(1, "carol");
    c.advance(Duration::from_millis(100));
    let snapshot = c.events(1, carol);
    assert!(
        snapshot
            .iter()
            .any(|e| e["type"] == "transform" && e["user"] == "alice"),
        "{snapshot:?}"
    );
}

#[test]
fn a_dead_nodes_members_leave_once_and_its_names_are_free() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let _carol = c.user(2, "carol");
    c.events(0, alice);
    c.events(1, bob);
    c.bus.dead.insert(2);
    for h in &mut c.nodes[..2] {
        h.advance(super::cluster::HEARTBEAT);
    }
    c.settle();
    let leaves = |events: &[Value]| events.iter().filter(|e| e["type"] == "leave").count();
    let a = c.events(0, alice);
    assert_eq!(leaves(&a), 1, "{a:?}");
    assert_eq!(a[0]["user"], "carol");
    assert_eq!(leaves(&c.events(1, bob)), 1);
    c.send(0, alice, json!({"room": "lobby", "type": "list"}));
    assert_eq!(c.events(0, alice)[0]["data"], json!(["alice", "bob"]));
    let again = c.nodes[1].connect();
    c.send(
        1,
        again,
        json!({"system": "login", "options": {"user": "carol"}}),
    );
    assert_eq!(code(&c.nodes[1].take(again)[0]), 202);
}

#[test]
fn a_session_resumes_on_another_node_with_what_it_missed() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.send(0, alice, json!({"room": "vr", "type": "join"}));
    c.send(0, alice, json!({"system": "ping"}));
    let token = {
        // The token of the login is gone with its frames: resume once on node 0 to learn one.
        c.nodes[0].disconnect(alice);
        c.settle();
        let bodies = c.bus.sessions.keys().cloned().collect::<Vec<_>>();
        assert_eq!(bodies.len(), 2, "alice's and bob's");
        bodies
            .into_iter()
            .find(|t| c.bus.sessions[t] == "alice")
            .unwrap()
    };
    c.events(1, bob);
    c.send(
        1,
        bob,
        json!({"room": "lobby", "type": "msg", "data": "missed"}),
    );
    let conn = c.nodes[1].connect();
    c.send(
        1,
        conn,
        json!({"system": "resume", "options": {"token": token, "rooms": {"lobby": 2, "vr": 2}}}),
    );
    let frames = c.nodes[1].take(conn);
    assert_eq!(code(&frames[0]), 202, "{frames:?}");
    assert_eq!(frames[0]["response"]["detail"]["resumed"], true);
    let events = flatten(&frames[1..]);
    let lobby: Vec<(String, u64)> = events
        .iter()
        .filter(|e| e["type"] != "back")
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    assert!(lobby.contains(&("away".into(), 3)), "{events:?}");
    assert!(lobby.contains(&("msg".into(), 4)), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e["type"] == "back").count(),
        2,
        "lobby and vr"
    );
    assert!(
        c.nodes[0].hub.session_count() == 0,
        "node 0 dropped its copy"
    );
    c.send(
        1,
        conn,
        json!({"room": "vr", "type": "msg", "data": "here"}),
    );
    assert_eq!(msgs(&c.events(1, conn)), [(4, json!("here"))]);
}

#[test]
fn the_rooms_list_is_the_clusters() {
    let mut c = Cluster::new(2);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    c.send(0, alice, json!({"room": "a-room", "type": "join"}));
    c.send(1, bob, json!({"room": "a-room", "type": "join"}));
    c.send(1, bob, json!({"system": "rooms", "options": {"limit": 1}}));
    let reply = c.nodes[1].take(bob).pop().unwrap();
    assert_eq!(
        reply["response"]["detail"],
        json!({"rooms": [{"room": "a-room", "users": 2}], "next": "a-room"})
    );
}

#[test]
fn shared_objects_are_refused_in_a_cluster() {
    let mut c = Cluster::new(1);
    let alice = c.user(0, "alice");
    c.events(0, alice);
    c.send(
        0,
        alice,
        json!({"room": "lobby", "type": "claim", "data": {"object": "ball"}}),
    );
    let frames = c.nodes[0].take(alice);
    assert_eq!(code(&frames[0]), 503);
    assert_eq!(
        frames[0]["response"]["msg"],
        "Shared objects are not available when the server runs as a cluster (--redis)."
    );
}

#[test]
fn a_game_has_one_owner_node_and_commands_from_other_nodes_go_to_it() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(2, "carol");
    for (i, conn) in [alice, bob, carol].into_iter().enumerate() {
        c.send(i, conn, json!({"room": "ttt", "type": "join"}));
    }
    for (i, conn) in [alice, bob, carol].into_iter().enumerate() {
        c.events(i, conn);
    }
    let game = |data: Value| json!({"room": "ttt", "type": "game", "data": data});
    c.send(0, alice, game(json!({"start": "tictactoe"})));
    c.send(1, bob, game(json!({"join": true})));
    c.send(0, alice, game(json!({"move": 4})));
    // bob, on another node than the game's, plays out of turn: the owner's refusal comes back.
    c.send(1, bob, game(json!({"move": 4})));
    let refused = c.nodes[1].take(bob);
    let refusal = refused
        .iter()
        .find(|f| f["info"] == "error")
        .expect("a refusal");
    assert_eq!(refusal["response"]["code"], 422);
    assert_eq!(refusal["response"]["msg"], "cell 4 is already taken");
    assert_eq!(
        refusal["response"]["detail"],
        json!({"room": "ttt", "type": "game"})
    );
    c.send(1, bob, game(json!({"move": 0})));
    let states: Vec<Vec<Value>> = [alice, bob, carol]
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            c.events(i, conn)
                .into_iter()
                .filter(|e| e["type"] == "game")
                .map(|e| e["data"]["board"].clone())
                .collect()
        })
        .collect();
    assert_eq!(
        states[2].len(),
        4,
        "start, join, two moves: {:?}",
        states[2]
    );
    assert_eq!(states[0], states[2]);
    assert_eq!(states[1].last(), states[2].last());
    assert_eq!(
        states[2][3],
        json!(["O", null, null, null, "X", null, null, null, null])
    );
    // A joiner on any node gets the state.
    let dave = c.user(2, "dave");
    c.send(2, dave, json!({"room": "ttt", "type": "join"}));
    let joined = c.nodes[2].take(dave);
    let state = flatten(&joined[joined.len() - 1..])
        .pop()
        .expect("the game state, last");
    assert_eq!(state["type"], "game");
    assert_eq!(state["data"]["moves"], 2);
}

#[test]
fn when_a_games_owner_dies_another_node_takes_it_over_from_its_last_state() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let bob = c.user(1, "bob");
    let carol = c.user(2, "carol");
    for (i, conn) in [alice, bob, carol].into_iter().enumerate() {
        c.send(i, conn, json!({"room": "ttt", "type": "join"}));
    }
    let game = |data: Value| json!({"room": "ttt", "type": "game", "data": data});
    // carol's node owns the game: she started it.
    c.send(2, carol, game(json!({"start": "tictactoe"})));
    c.send(0, alice, game(json!({"join": true})));
    c.send(2, carol, game(json!({"move": 4})));
    c.send(0, alice, game(json!({"move": 0})));
    c.events(1, bob);
    c.kill(2);
    for _ in 0..2 {
        for h in &mut c.nodes[..2] {
            h.advance(super::cluster::HEARTBEAT);
        }
        c.settle();
    }
    let seen = c.events(1, bob);
    assert!(
        seen.iter()
            .any(|e| e["type"] == "leave" && e["user"] == "carol"),
        "{seen:?}"
    );
    // carol left (her node died) in a running round: the new owner applies her forfeit.
    let forfeit = seen
        .iter()
        .find(|e| e["type"] == "game")
        .expect("a game event after the takeover");
    assert_eq!(forfeit["data"]["forfeit"], "carol");
    assert_eq!(forfeit["data"]["winner"], "alice");
    assert_eq!(forfeit["data"]["board"][4], "X", "from the last state");
    assert_eq!(forfeit["data"]["board"][0], "O", "from the last state");
    c.send(0, alice, game(json!({"restart": true})));
    c.send(1, bob, game(json!({"join": true})));
    let last = c
        .events(1, bob)
        .into_iter()
        .rev()
        .find(|e| e["type"] == "game")
        .unwrap();
    assert_eq!(last["data"]["status"], "playing", "{last}");
}

#[test]
fn a_session_resumed_on_another_node_sends_its_poses_from_there() {
    let mut c = Cluster::new(3);
    let alice = c.user(0, "alice");
    let carol = c.user(2, "carol");
    c.nodes[0].disconnect(alice);
    c.settle();
    let token = c
        .bus
        .sessions
        .iter()
        .find(|(_, user)| *user == "alice")
        .map(|(token, _)| token.clone())
        .unwrap();
    let back = c.nodes[1].connect();
    c.send(
        1,
        back,
        json!({"system": "resume", "options": {"token": token, "rooms": {"lobby": 3}}}),
    );
    assert_eq!(code(&c.nodes[1].take(back)[0]), 202);
    c.events(2, carol);
    let pose = json!({"room": "lobby", "type": "transform",
        "data": {"pos": {"x": 7, "y": 1.6, "z": 0}, "rot": {"x": 0, "y": 0, "z": 0, "w": 1}}});
    c.send(1, back, pose);
    c.advance(Duration::from_millis(100));
    let seen = c.events(2, carol);
    let moved = seen
        .iter()
        .find(|e| e["type"] == "transform" && e["user"] == "alice");
    assert!(
        moved.is_some(),
        "alice's pose from node 1 reaches node 2: {seen:?}"
    );
}
