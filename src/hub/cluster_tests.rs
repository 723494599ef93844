//! The cluster rules, with several hubs and a fake Redis in memory: [`Bus`] does what the
//! scripts of `services/redis_scripts.rs` do (numbering, streams, membership, names,
//! sessions, reaping) and delivers channel messages in publish order, unless a test holds or
//! drops them. No sockets, no threads, no sleeps.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::cluster::{AccountRecord, AccountSaved, ClusterIn, ClusterOut, Mode};
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
    /// Folded name -> the account (`roomcast:accounts`).
    accounts: BTreeMap<String, AccountRecord>,
    /// Answers to account changes are kept here, not posted, while set (a test then
    /// delivers them).
    hold_account_answers: bool,
    held_answers: Vec<(usize, ClusterIn)>,
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
            redis_ca: None,
            redis_client: None,
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
                | ClusterOut::Register { op, .. }
                | ClusterOut::SetPassword { op, .. }
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
            ClusterOut::Register {
                op,
                folded,
                name,
                phc,
                max,
            } => {
                let outcome = if self.bus.accounts.contains_key(&folded)
                    || self.bus.names.contains_key(&folded)
                {
                    AccountSaved::Taken
                } else if self.bus.accounts.len() >= max {
                    AccountSaved::Full
                } else {
                    let account = AccountRecord {
                        name,
                        phc,
                        version: 1,
                    };
                    self.announce(folded, account);
                    AccountSaved::Saved { version: 1 }
                };
                self.answer_account(from, ClusterIn::AccountSaved { op, outcome });
            }
            ClusterOut::SetPassword {
                op,
                folded,
                name,
                phc,
            } => {
                let version = self.bus.accounts.get(&folded).map_or(1, |a| a.version + 1);
                let account = AccountRecord { name, phc, version };
                self.announce(folded, account);
                let outcome = AccountSaved::Saved { version };
                self.answer_account(from, ClusterIn::AccountSaved { op, outcome });
            }
            ClusterOut::OfferAccounts { accounts } => {
                for (folded, account) in accounts {
                    if !self.bus.accounts.contains_key(&folded) {
                        self.announce(folded, account);
                    }
                }
            }
            ClusterOut::ClaimName {
                op,
                folded,
                user,
                guest,
            } => {
                let registered = self.bus.accounts.contains_key(&folded);
                // A guest cannot take a registered name (the script's HEXISTS).
                let refused = guest && registered;
                let ok = !refused && !self.bus.names.contains_key(&folded);
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

    /// Keeps an account and announces it to every node (the accounts channel).
    fn announce(&mut self, folded: String, account: AccountRecord) {
        self.bus.accounts.insert(folded, account.clone());
        for node in 0..self.nodes.len() {
            if !self.bus.deaf.contains(&node) {
                self.post(node, ClusterIn::Account(account.clone()));
            }
        }
    }

    /// The answer to an account change: posted, or kept while a test holds them.
    fn answer_account(&mut self, node: usize, answer: ClusterIn) {
        match self.bus.hold_account_answers {
            true => self.bus.held_answers.push((node, answer)),
            false => self.post(node, answer),
        }
    }

    /// What a (re)connecting bridge hands over: every account.
    fn load_accounts(&mut self, node: usize) {
        let accounts = self.bus.accounts.values().cloned().collect();
        self.post(node, ClusterIn::Accounts { accounts });
        self.settle();
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

/// Sends `message` on a new connection of `node`, answers its password work, and carries
/// everything: what the connection received.
fn with_password(c: &mut Cluster, node: usize, message: Value) -> (ConnId, Vec<Value>) {
    let conn = c.nodes[node].connect();
    c.send(node, conn, message);
    c.nodes[node].run_hasher();
    c.settle();
    let frames = c.nodes[node].take(conn);
    (conn, frames)
}

fn register(c: &mut Cluster, node: usize, user: &str, pass: &str) -> Vec<Value> {
    let message = json!({"system": "register", "options": {"user": user, "pass": pass}});
    with_password(c, node, message).1
}

fn login(c: &mut Cluster, node: usize, user: &str, pass: Option<&str>) -> (ConnId, Vec<Value>) {
    let options = match pass {
        Some(pass) => json!({"user": user, "pass": pass}),
        None => json!({"user": user}),
    };
    with_password(c, node, json!({"system": "login", "options": options}))
}

#[test]
fn a_registration_is_answered_only_once_redis_kept_it_and_every_node_knows_it() {
    let mut c = Cluster::new(3);
    c.bus.hold_account_answers = true;
    let conn = c.nodes[0].connect();
    c.send(
        0,
        conn,
        json!({"system": "register", "options": {"user": "Alice", "pass": "correct horse"}}),
    );
    c.nodes[0].run_hasher();
    let asked = c.nodes[0].cluster.iter().any(|out| {
        matches!(out, ClusterOut::Register { folded, name, phc, max, .. }
            if folded == "alice" && name == "Alice" && phc == "fake:correct horse"
                && *max == c.nodes[0].config().max_accounts)
    });
    assert!(asked, "{:?}", c.nodes[0].cluster);
    c.settle();
    assert!(c.nodes[0].take(conn).is_empty(), "no answer before Redis's");
    assert!(c.nodes[0].held.contains_key(&conn), "not read meanwhile");
    for (node, answer) in std::mem::take(&mut c.bus.held_answers) {
        c.post(node, answer);
    }
    c.settle();
    let frames = c.nodes[0].take(conn);
    assert_eq!(code(&frames[0]), 201, "{frames:?}");
    assert_eq!(frames[0]["response"]["detail"], json!({"user": "Alice"}));
    assert!(!c.nodes[0].held.contains_key(&conn));
    c.bus.hold_account_answers = false;

    // Node 1 never saw the registration but heard of it: the password is needed there.
    let (_, frames) = login(&mut c, 1, "alice", Some("wrong horse"));
    assert_eq!(code(&frames[0]), 403, "{frames:?}");
    let (_, frames) = login(&mut c, 1, "ALICE", None);
    assert_eq!(code(&frames[0]), 403, "no guest takes it: {frames:?}");
    let (bob, frames) = login(&mut c, 1, "alice", Some("correct horse"));
    assert_eq!(code(&frames[0]), 202, "{frames:?}");
    assert_eq!(frames[0]["response"]["detail"]["user"], "Alice");

    // A password changed on node 1 is the password on node 2.
    c.send(
        1,
        bob,
        json!({"system": "password", "options": {"old": "correct horse", "new": "battery staple"}}),
    );
    c.nodes[1].run_hasher();
    c.settle();
    c.nodes[1].run_hasher();
    c.settle();
    let frames = c.nodes[1].take(bob);
    assert_eq!(code(&frames[0]), 200, "{frames:?}");
    assert_eq!(c.bus.accounts["alice"].version, 2);
    c.send(1, bob, json!({"system": "logout"}));
    let (_, frames) = login(&mut c, 2, "alice", Some("correct horse"));
    assert_eq!(code(&frames[0]), 403, "the old one: {frames:?}");
    let (_, frames) = login(&mut c, 2, "alice", Some("battery staple"));
    assert_eq!(code(&frames[0]), 202, "{frames:?}");
}

#[test]
fn a_registration_another_node_won_is_refused_409_and_frees_nothing() {
    let mut c = Cluster::new(2);
    let message = json!({"system": "register", "options": {"user": "bob", "pass": "12345678"}});
    let first = c.nodes[0].connect();
    let second = c.nodes[1].connect();
    c.nodes[0].send(first, message.clone());
    c.nodes[1].send(second, message);
    c.nodes[0].run_hasher();
    c.nodes[1].run_hasher();
    c.settle();
    let frames = c.nodes[0].take(first);
    assert_eq!(code(&frames[0]), 201, "{frames:?}");
    let frames = c.nodes[1].take(second);
    assert_eq!(code(&frames[0]), 409, "{frames:?}");
    assert_eq!(
        frames[0]["response"]["msg"],
        "User name bob is already registered or in use."
    );
    assert!(!c.nodes[1].held.contains_key(&second));
    // The loser holds the winner's account, and no reservation of its own.
    assert_eq!(c.nodes[1].hub.accounts.len(), 1);
    let phc = c.nodes[1].hub.accounts.get("bob").map(|a| a.phc.clone());
    assert_eq!(phc.as_deref(), Some("fake:12345678"));
}

#[test]
fn a_guest_on_another_node_keeps_its_name_from_registration() {
    let mut c = Cluster::new(2);
    c.user(0, "carol");
    let frames = register(&mut c, 1, "Carol", "12345678");
    assert_eq!(code(&frames[0]), 409, "{frames:?}");
    assert!(c.bus.accounts.is_empty());
    assert_eq!(
        c.nodes[1].hub.accounts.len(),
        0,
        "the reservation is given back"
    );
}

#[test]
fn an_account_announced_by_another_node_needs_its_password_here() {
    let mut c = Cluster::new(2);
    c.post(
        1,
        ClusterIn::Account(AccountRecord {
            name: "Dave".into(),
            phc: "fake:secret pass".into(),
            version: 1,
        }),
    );
    c.settle();
    let (_, frames) = login(&mut c, 1, "dave", None);
    assert_eq!(code(&frames[0]), 403, "a guest cannot take it: {frames:?}");
    let frames = register(&mut c, 1, "DAVE", "12345678");
    assert_eq!(code(&frames[0]), 409, "{frames:?}");
    let (_, frames) = login(&mut c, 1, "dave", Some("secret pass"));
    assert_eq!(code(&frames[0]), 202, "{frames:?}");
    assert_eq!(frames[0]["response"]["detail"]["user"], "Dave");
    // A guest whose node has not heard of an account yet is refused by Redis.
    c.bus.accounts.insert(
        "erin".into(),
        AccountRecord {
            name: "erin".into(),
            phc: "fake:x".into(),
            version: 1,
        },
    );
    let (_, frames) = login(&mut c, 0, "erin", None);
    assert_eq!(code(&frames[0]), 409, "{frames:?}");
}

#[test]
fn while_redis_is_away_registrations_are_refused_503_and_keep_no_name() {
    let mut c = Cluster::new(1);
    // Redis fails under a registration whose hash is being made.
    let conn = c.nodes[0].connect();
    c.send(
        0,
        conn,
        json!({"system": "register", "options": {"user": "eve", "pass": "12345678"}}),
    );
    c.bus.down = true;
    c.nodes[0].run_hasher();
    c.settle();
    let frames = c.nodes[0].take(conn);
    assert_eq!(code(&frames[0]), 503, "{frames:?}");
    assert_eq!(
        frames[0]["response"]["msg"],
        "The cluster's message bus (Redis) is unreachable; try again shortly."
    );
    assert_eq!(frames[0]["response"]["detail"], json!({"user": "eve"}));
    assert_eq!(c.nodes[0].hub.accounts.len(), 0);
    // Known to be away: refused before any hashing.
    c.post(0, ClusterIn::Down);
    c.settle();
    c.send(
        0,
        conn,
        json!({"system": "register", "options": {"user": "eve", "pass": "12345678"}}),
    );
    assert!(c.nodes[0].work.is_empty());
    assert_eq!(code(&c.nodes[0].take(conn)[0]), 503);
    c.bus.down = false;
    c.post(0, ClusterIn::Up);
    c.settle();
    let frames = register(&mut c, 0, "eve", "12345678");
    assert_eq!(code(&frames[0]), 201, "{frames:?}");
}

#[test]
fn max_accounts_counts_the_clusters_accounts() {
    let mut c = Cluster::with(2, |config| config.max_accounts = 1);
    assert_eq!(code(&register(&mut c, 0, "alice", "12345678")[0]), 201);
    let frames = register(&mut c, 1, "bob", "12345678");
    assert_eq!(code(&frames[0]), 503, "{frames:?}");
    assert_eq!(
        frames[0]["response"]["msg"],
        "The server holds its limit of 1 accounts."
    );
    // A node that has not heard of the others' accounts is refused by Redis.
    c.bus.accounts.clear();
    c.bus.accounts.insert(
        "carol".into(),
        AccountRecord {
            name: "carol".into(),
            phc: "fake:x".into(),
            version: 1,
        },
    );
    c.nodes[1].hub.accounts = Default::default();
    let frames = register(&mut c, 1, "bob", "12345678");
    assert_eq!(code(&frames[0]), 503, "{frames:?}");
    assert_eq!(
        c.nodes[1].hub.accounts.len(),
        0,
        "the reservation is given back"
    );
}

#[test]
fn a_reload_takes_the_clusters_accounts_and_offers_the_ones_redis_lacks() {
    let mut c = Cluster::new(2);
    // Node 0's store had two accounts from before it joined the cluster.
    c.nodes[0].hub.restore_account("frank", "fake:local frank");
    c.nodes[0].hub.restore_account("Gina", "fake:local gina");
    c.bus.accounts.insert(
        "frank".into(),
        AccountRecord {
            name: "Frank".into(),
            phc: "fake:cluster frank".into(),
            version: 3,
        },
    );
    c.load_accounts(0);
    let frank = c.nodes[0].hub.accounts.get("frank").map(|a| a.phc.clone());
    assert_eq!(
        frank.as_deref(),
        Some("fake:cluster frank"),
        "the cluster's wins"
    );
    assert_eq!(c.bus.accounts["gina"].name, "Gina", "offered");
    assert_eq!(c.bus.accounts["frank"].phc, "fake:cluster frank");
    // Node 1 heard of the offer: Gina's password works there.
    let (_, frames) = login(&mut c, 1, "gina", Some("local gina"));
    assert_eq!(code(&frames[0]), 202, "{frames:?}");
    // A stale record (an announcement older than the reload) changes nothing.
    c.post(
        0,
        ClusterIn::Account(AccountRecord {
            name: "frank".into(),
            phc: "fake:old".into(),
            version: 2,
        }),
    );
    c.settle();
    let frank = c.nodes[0].hub.accounts.get("frank").map(|a| a.phc.clone());
    assert_eq!(frank.as_deref(), Some("fake:cluster frank"));
}

#[test]
fn a_large_store_is_offered_in_batches() {
    let mut c = Cluster::new(2);
    for i in 0..600 {
        c.nodes[0]
            .hub
            .restore_account(&format!("user{i}"), &format!("fake:pass {i}"));
    }
    let h = &mut c.nodes[0];
    h.hub.handle(
        h.now,
        Input::Cluster(ClusterIn::Accounts {
            accounts: Vec::new(),
        }),
    );
    h.pump();
    let batches: Vec<usize> = h
        .cluster
        .iter()
        .filter_map(|out| match out {
            ClusterOut::OfferAccounts { accounts } => Some(accounts.len()),
            _ => None,
        })
        .collect();
    assert_eq!(batches, [256, 256, 88]);
    c.settle();
    assert_eq!(c.bus.accounts.len(), 600);
    assert_eq!(
        c.nodes[1].hub.accounts.len(),
        600,
        "every node heard of them"
    );
}
