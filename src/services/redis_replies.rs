//! Reading what Redis answers: the shapes of the scripts' and commands' replies, and the
//! control and account messages of the channels, into the hub's [`ClusterIn`] and its parts.
//! An answer of an unexpected shape reads as `None` (or empty): the caller decides what that
//! means, nothing panics.

use bytes::Bytes;
use redis::Value;

use super::redis_scripts::parse_account;
use crate::hub::cluster_messages::{parse_payload, AccountRecord, AccountSaved, ClusterIn};

pub(super) fn bytes_of(value: &Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::copy_from_slice(bytes)),
        Value::SimpleString(text) => Some(Bytes::copy_from_slice(text.as_bytes())),
        _ => None,
    }
}

pub(super) fn string_of(value: &Value) -> Option<String> {
    bytes_of(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) fn int_of(value: &Value) -> Option<i64> {
    match value {
        Value::Int(n) => Some(*n),
        other => string_of(other)?.parse().ok(),
    }
}

/// The `e` field of each entry of an `XRANGE`/`XREVRANGE` answer, in the answer's order.
pub(super) fn read_stream(value: &Value) -> Vec<Bytes> {
    let Value::Array(entries) = value else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(parts) = entry else {
                return None;
            };
            let Value::Array(fields) = parts.get(1)? else {
                return None;
            };
            fields
                .chunks(2)
                .find(|pair| string_of(&pair[0]).as_deref() == Some("e"))
                .and_then(|pair| pair.get(1).and_then(bytes_of))
        })
        .collect()
}

pub(super) fn read_sync(room: &str, value: Value) -> Option<ClusterIn> {
    let Value::Array(parts) = value else {
        return None;
    };
    let last_seq = u64::try_from(int_of(parts.first()?)?).ok()?;
    let mut events = read_stream(parts.get(1)?);
    events.reverse();
    let Value::Array(flat) = parts.get(2)? else {
        return None;
    };
    let members = flat
        .chunks(2)
        .filter_map(|pair| Some((string_of(pair.first()?)?, string_of(pair.get(1)?)?)))
        .collect();
    Some(ClusterIn::Synced {
        room: room.to_owned(),
        last_seq,
        events,
        members,
        game: parts.get(3).and_then(bytes_of),
    })
}

/// A message on this node's own channel (see `redis_scripts.rs`).
pub(super) fn read_control(payload: &Bytes) -> Option<ClusterIn> {
    if payload.starts_with(b"drop ") {
        let text = std::str::from_utf8(payload).ok()?;
        let mut words = text.split(' ').skip(1);
        return Some(ClusterIn::SessionTaken {
            token: words.next()?.to_owned(),
            node: words.next()?.to_owned(),
        });
    }
    // The command is the rest after five lines: it may hold anything but a raw line break.
    let mut lines = payload.splitn(6, |&b| b == b'\n');
    let text = |part: &[u8]| std::str::from_utf8(part).ok().map(str::to_owned);
    match lines.next()? {
        b"game" => Some(ClusterIn::GameForward {
            room: text(lines.next()?)?,
            user: text(lines.next()?)?,
            origin: text(lines.next()?)?,
            op: text(lines.next()?)?.parse().ok()?,
            command: Bytes::copy_from_slice(lines.next()?),
        }),
        b"refuse" => {
            let mut rest = payload.splitn(4, |&b| b == b'\n').skip(1);
            Some(ClusterIn::GameRefused {
                op: text(rest.next()?)?.parse().ok()?,
                code: text(rest.next()?)?.parse().ok()?,
                msg: text(rest.next()?)?,
            })
        }
        _ => None,
    }
}

/// An account's record, from the hash or the channel.
pub(super) fn read_account(value: &[u8]) -> Option<AccountRecord> {
    let (version, name, phc) = parse_account(value)?;
    Some(AccountRecord {
        name: name.to_owned(),
        phc: phc.to_owned(),
        version,
    })
}

/// One `HSCAN` page of the accounts: the next cursor (0: done) and the records read.
pub(super) fn read_accounts_page(value: &Value) -> Option<(u64, Vec<AccountRecord>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let next = u64::try_from(int_of(parts.first()?)?).ok()?;
    let Value::Array(flat) = parts.get(1)? else {
        return None;
    };
    let records = flat
        .chunks(2)
        .filter_map(|pair| read_account(&bytes_of(pair.get(1)?)?))
        .collect();
    Some((next, records))
}

/// The answer of the register and set-password scripts.
pub(super) fn read_saved(value: &Value) -> Option<AccountSaved> {
    match int_of(value)? {
        0 => Some(AccountSaved::Taken),
        -1 => Some(AccountSaved::Full),
        version => Some(AccountSaved::Saved {
            version: u64::try_from(version).ok()?,
        }),
    }
}

pub(super) fn read_claimed(value: &Value) -> Option<(String, Vec<String>)> {
    let Value::Array(parts) = value else {
        return None;
    };
    let name = string_of(parts.first()?)?;
    let rooms = match parts.get(1) {
        Some(Value::Array(rooms)) => rooms.iter().filter_map(string_of).collect(),
        _ => Vec::new(),
    };
    Some((name, rooms))
}

pub(super) fn read_rooms(value: &Value) -> (Vec<(String, usize)>, bool) {
    let Value::Array(parts) = value else {
        return (Vec::new(), false);
    };
    let more = parts.first().and_then(int_of) == Some(1);
    let rooms = match parts.get(1) {
        Some(Value::Array(flat)) => flat
            .chunks(2)
            .filter_map(|pair| {
                let count = usize::try_from(int_of(pair.get(1)?)?).ok()?;
                Some((string_of(pair.first()?)?, count))
            })
            .collect(),
        _ => Vec::new(),
    };
    (rooms, more)
}

/// Splits a message of a room's events channel into its payloads (zero-copy slices of it),
/// in order: [`PUBLISH_BATCH`](super::redis_scripts::PUBLISH_BATCH) joins a call's payloads
/// of one room by `\n`, and the reaper publishes single ones (a batch of one).
///
/// A payload is a header line and one line of event JSON: the server writes events without
/// raw line breaks (serde_json escapes them in strings, and a msg's raw `data` has those
/// between tokens made spaces, see `protocol::one_line`), so the message is read two lines at
/// a time. That is checked rather than trusted: every header must read as one and every event
/// line must look like one JSON object, else the whole message is refused (`None`: pairing
/// lines after a stray line break would hand the hub events cut in the wrong places). A
/// refused message leaves a gap the hub reads back from the room's stream.
pub(super) fn split_events(message: &Bytes) -> Option<Vec<Bytes>> {
    if message.is_empty() || message.ends_with(b"\n") {
        return None;
    }
    let mut payloads = Vec::with_capacity(1);
    let mut start = 0;
    while start < message.len() {
        let head_end = start + memchr::memchr(b'\n', &message[start..])?;
        let end = memchr::memchr(b'\n', &message[head_end + 1..])
            .map_or(message.len(), |at| head_end + 1 + at);
        let payload = message.slice(start..end);
        let (_, event) = parse_payload(&payload)?;
        if !(event.starts_with(b"{") && event.ends_with(b"}")) {
            return None;
        }
        payloads.push(payload);
        start = end + 1;
    }
    Some(payloads)
}

/// One event's outcome in [`PUBLISH_BATCH`](super::redis_scripts::PUBLISH_BATCH)'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Published {
    /// Numbered (and published).
    Seq(u64),
    /// A leave or member event of a user who is not a member here: nothing happened.
    Skipped,
    /// The script failed on it (its text), or answered in a shape roomcast does not know.
    Failed(String),
}

/// The outcomes of `count` events from the batch script's answer, one per event in order;
/// events the answer lacks count as failed.
pub(super) fn read_published(value: &Value, count: usize) -> Vec<Published> {
    let outcomes: &[Value] = match value {
        Value::Array(outcomes) => outcomes,
        _ => &[],
    };
    (0..count)
        .map(|i| match outcomes.get(i) {
            Some(Value::Int(-1)) => Published::Skipped,
            Some(Value::Int(seq)) if *seq > 0 => Published::Seq(*seq as u64),
            Some(other) => Published::Failed(match string_of(other) {
                Some(text) => text,
                None => format!("{other:?}"),
            }),
            None => Published::Failed(format!("no outcome in {value:?}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(seq: u64, event: &str) -> String {
        format!("{seq} n1 7 msg alice\n{event}")
    }

    #[test]
    fn a_batch_message_splits_into_its_payloads_without_copying() {
        let one = payload(
            4,
            r#"{"time":1.0,"user":"alice","type":"msg","seq":4,"data":"a\nb"}"#,
        );
        let two = payload(
            5,
            r#"{"time":1.0,"user":"alice","type":"msg","seq":5,"data":{}}"#,
        );
        let three = "6 n2 0 leave bob\n{\"seq\":6,\"data\":\"\"}";
        let message = Bytes::from(format!("{one}\n{two}\n{three}"));
        let split = split_events(&message).unwrap();
        assert_eq!(split, [one.as_str(), two.as_str(), three]);
        // Slices of the message, not copies.
        let range = message.as_ptr_range();
        for part in &split {
            assert!(range.contains(&part.as_ptr()));
        }
    }

    #[test]
    fn a_single_payload_is_a_batch_of_one() {
        let reaped = "9 n3 0 leave bob\n{\"time\":0.0,\"user\":\"bob\",\"type\":\"leave\",\"seq\":9,\"data\":\"\"}";
        assert_eq!(
            split_events(&Bytes::from(reaped)).unwrap(),
            [Bytes::from(reaped)]
        );
    }

    #[test]
    fn a_malformed_batch_is_refused_whole_without_panicking() {
        let good = payload(4, r#"{"seq":4}"#);
        for bad in [
            String::new(),
            "\n".to_owned(),
            "\n\n".to_owned(),
            format!("{good}\n"),           // a trailing line break
            format!("{good}\n5 n1 7 msg"), // a header without its event
            format!("{good}\n\n{good}"),   // an empty line
            "4 n1 7 msg alice".to_owned(),
            "x n1 7 msg alice\n{}".to_owned(),
            "4 n1 7 msg alice extra\n{}".to_owned(),
            "4 n1 7 msg alice\nnot json".to_owned(),
            // A raw line break inside an event: the halves do not pair up.
            "4 n1 7 msg alice\n{\"data\":\n\"x\"}".to_owned(),
            format!("{good}\n{{\"seq\":5}}\n{good}"),
            "\u{fffd}\u{0}\n{}".to_owned(),
        ] {
            assert_eq!(split_events(&Bytes::from(bad.clone())), None, "{bad:?}");
        }
        let mut bytes = good.into_bytes();
        bytes.extend_from_slice(b"\n\xff\xfe\n{}");
        assert_eq!(split_events(&Bytes::from(bytes)), None);
    }

    #[test]
    fn batch_outcomes_are_read_one_per_event() {
        let answer = Value::Array(vec![
            Value::Int(3),
            Value::Int(-1),
            Value::BulkString(b"WRONGTYPE".to_vec()),
        ]);
        assert_eq!(
            read_published(&answer, 4),
            [
                Published::Seq(3),
                Published::Skipped,
                Published::Failed("WRONGTYPE".into()),
                Published::Failed("no outcome in ".to_owned() + &format!("{answer:?}")),
            ]
        );
        assert!(read_published(&Value::Nil, 2)
            .iter()
            .all(|p| matches!(p, Published::Failed(_))));
    }

    #[test]
    fn control_messages_are_read() {
        assert_eq!(
            read_control(&Bytes::from("drop t1 n2")),
            Some(ClusterIn::SessionTaken {
                token: "t1".into(),
                node: "n2".into()
            })
        );
        assert_eq!(
            read_control(&Bytes::from("game\ncafe ☕\nalice\nn1\n7\n{\"move\":4}")),
            Some(ClusterIn::GameForward {
                room: "cafe ☕".into(),
                user: "alice".into(),
                origin: "n1".into(),
                op: 7,
                command: Bytes::from(r#"{"move":4}"#),
            })
        );
        assert_eq!(
            read_control(&Bytes::from("refuse\n7\n422\ncell 4 is already taken")),
            Some(ClusterIn::GameRefused {
                op: 7,
                code: 422,
                msg: "cell 4 is already taken".into()
            })
        );
        assert_eq!(read_control(&Bytes::from("wake")), None);
        assert_eq!(read_control(&Bytes::from("game\nr")), None);
    }

    #[test]
    fn answers_are_read_from_their_redis_shapes() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, e: &str| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk("e"), bulk(e)])])
        };
        let stream = Value::Array(vec![entry("2-0", "b"), entry("1-0", "a")]);
        assert_eq!(read_stream(&stream), [Bytes::from("b"), Bytes::from("a")]);
        let sync = Value::Array(vec![
            Value::Int(2),
            stream,
            Value::Array(vec![bulk("alice"), bulk("n1")]),
            Value::Nil,
        ]);
        assert_eq!(
            read_sync("r", sync),
            Some(ClusterIn::Synced {
                room: "r".into(),
                last_seq: 2,
                events: vec![Bytes::from("a"), Bytes::from("b")],
                members: vec![("alice".into(), "n1".into())],
                game: None,
            })
        );
        let claimed = Value::Array(vec![bulk("Alice"), Value::Array(vec![bulk("lobby")])]);
        assert_eq!(
            read_claimed(&claimed),
            Some(("Alice".into(), vec!["lobby".into()]))
        );
        assert_eq!(read_claimed(&Value::Nil), None);
        let rooms = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![bulk("a"), Value::Int(3)]),
        ]);
        assert_eq!(read_rooms(&rooms), (vec![("a".into(), 3)], true));
        let page = Value::Array(vec![
            bulk("17"),
            Value::Array(vec![
                bulk("alice"),
                bulk("2\tAlice\t$argon2id$x"),
                bulk("bad"),
                bulk("no record"),
            ]),
        ]);
        assert_eq!(
            read_accounts_page(&page),
            Some((
                17,
                vec![AccountRecord {
                    name: "Alice".into(),
                    phc: "$argon2id$x".into(),
                    version: 2
                }]
            ))
        );
        assert_eq!(
            read_saved(&Value::Int(1)),
            Some(AccountSaved::Saved { version: 1 })
        );
        assert_eq!(read_saved(&Value::Int(0)), Some(AccountSaved::Taken));
        assert_eq!(read_saved(&Value::Int(-1)), Some(AccountSaved::Full));
        assert_eq!(read_saved(&Value::Int(-2)), None);
        assert_eq!(read_saved(&Value::Nil), None);
    }
}
