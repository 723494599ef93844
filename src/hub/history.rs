//! A room's recent past, as joiners and resuming clients receive it: the last history events
//! (msg, join, leave, game, away, back) with their sequence numbers, already encoded, bounded
//! by count and by bytes, and counted against the hub's total for histories.
//!
//! The history is kept in segments of about [`SEGMENT_BYTES`], and each segment's frame is
//! encoded once and shared: a hundred joiners of a room with a full history hold one copy of
//! it between them. A new event only changes the newest segment, and trimming only the oldest,
//! so what a joiner costs on its own is at most two small segments, not the whole history
//! (every join is itself a history event, so caching the whole history as one frame would be
//! rebuilt for every joiner).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::frame::Frame;
use crate::protocol::{encode_user_frame, HistoryRange};

/// A segment takes no more events once it holds this many bytes.
const SEGMENT_BYTES: usize = 64 * 1024;
/// ... or this many events.
const SEGMENT_EVENTS: usize = 64;

/// Bytes held by every room's history and cached frames together. Shared by the rooms of one
/// hub, so the hub can hold the sum to its share of the memory budget.
#[derive(Debug, Clone, Default)]
pub(crate) struct HistoryBytes(Arc<AtomicUsize>);

impl HistoryBytes {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.0.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Consecutive events (with their seq) and, once a joiner asked, their frame.
#[derive(Debug, Default)]
struct Segment {
    events: VecDeque<(u64, Bytes)>,
    bytes: usize,
    frame: Option<Frame>,
}

impl Segment {
    fn is_full(&self) -> bool {
        self.bytes >= SEGMENT_BYTES || self.events.len() >= SEGMENT_EVENTS
    }
}

/// The last events of a room, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    segments: VecDeque<Segment>,
    count: usize,
    bytes: usize,
    /// Bytes of cached frames.
    cached: usize,
    /// Events kept; 0 keeps none.
    limit: usize,
    /// Bytes kept, so that a joiner's history always fits its outbound queue.
    max_bytes: usize,
    total: HistoryBytes,
}

impl History {
    pub fn new(limit: usize, max_bytes: usize, total: HistoryBytes) -> Self {
        History {
            segments: VecDeque::new(),
            count: 0,
            bytes: 0,
            cached: 0,
            limit,
            max_bytes,
            total,
        }
    }

    /// Keeps `event`, the room's event number `seq`, dropping the oldest ones past the count or
    /// byte limit. An event larger than the byte limit on its own is not kept.
    pub fn remember(&mut self, seq: u64, event: &Bytes) {
        if self.limit == 0 || event.len() > self.max_bytes {
            return;
        }
        while self.count >= self.limit || self.bytes + event.len() > self.max_bytes {
            if !self.drop_oldest() {
                break;
            }
        }
        if self.segments.back().is_none_or(Segment::is_full) {
            self.segments.push_back(Segment::default());
        }
        let index = self.segments.len() - 1;
        self.forget_frame(index);
        let newest = &mut self.segments[index];
        newest.bytes += event.len();
        newest.events.push_back((seq, event.clone()));
        self.count += 1;
        self.bytes += event.len();
        self.total.add(event.len());
    }

    /// Forgets every event (a cluster node re-reads the room from Redis).
    pub fn clear(&mut self) {
        while self.drop_oldest() {}
    }

    /// Bytes this history holds, cached frames included.
    pub fn bytes(&self) -> usize {
        self.bytes + self.cached
    }

    /// Drops the oldest events until at most `target` bytes of events are left; the bytes
    /// freed (cached frames of the dropped segments included).
    pub fn shrink_to(&mut self, target: usize) -> usize {
        let before = self.bytes();
        while self.bytes > target && self.drop_oldest() {}
        before - self.bytes()
    }

    /// The history frames of room `name`, oldest first; none when the history is empty. Each
    /// segment's frame is encoded once and shared by every joiner until it changes.
    pub fn frames(&mut self, name: &str) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(self.segments.len());
        for segment in &mut self.segments {
            let frame = match &segment.frame {
                Some(frame) => frame.clone(),
                None => {
                    let frame = encode_user_frame(name, true, segment.events.iter().map(|e| &e.1));
                    self.cached += frame.len();
                    self.total.add(frame.len());
                    segment.frame = Some(frame.clone());
                    frame
                }
            };
            frames.push(frame);
        }
        frames
    }

    /// The seq of the oldest and newest kept events; `None` when nothing is kept.
    pub fn kept(&self) -> Option<(u64, u64)> {
        let first = self.segments.front()?.events.front()?.0;
        let last = self.segments.back()?.events.back()?.0;
        Some((first, last))
    }

    /// The frames of the kept events with a seq above `after`, oldest first: the shared frame
    /// of every segment wholly after it, and a frame of its own for the segment it falls in,
    /// so that a resuming client costs at most one segment.
    pub fn frames_after(&mut self, name: &str, after: u64) -> Vec<Frame> {
        let Some(start) = self
            .segments
            .iter()
            .position(|s| s.events.back().is_some_and(|&(seq, _)| seq > after))
        else {
            return Vec::new();
        };
        let mut frames = Vec::new();
        let straddles = self.segments[start]
            .events
            .front()
            .is_some_and(|&(seq, _)| seq <= after);
        let whole_from = if straddles {
            let events = self.segments[start]
                .events
                .iter()
                .filter(|(seq, _)| *seq > after)
                .map(|(_, event)| event);
            frames.push(encode_user_frame(name, true, events));
            start + 1
        } else {
            start
        };
        let shared = self.frames(name);
        frames.extend(shared.into_iter().skip(whole_from));
        frames
    }

    /// At most `limit` kept events just before `before` (the most recent ones below it) or just
    /// after `after`, in seq order.
    pub fn query(&self, range: HistoryRange, limit: usize) -> Vec<Bytes> {
        let events = self.segments.iter().flat_map(|s| s.events.iter());
        match range {
            HistoryRange::After(after) => events
                .filter(|(seq, _)| *seq > after)
                .take(limit)
                .map(|(_, event)| event.clone())
                .collect(),
            HistoryRange::Before(before) => {
                let older: Vec<&Bytes> = events
                    .filter(|(seq, _)| *seq < before)
                    .map(|(_, event)| event)
                    .collect();
                let skip = older.len().saturating_sub(limit);
                older.into_iter().skip(skip).cloned().collect()
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        self.forget_frame(0);
        let Some(oldest) = self.segments.front_mut() else {
            return false;
        };
        let Some((_, event)) = oldest.events.pop_front() else {
            return false;
        };
        oldest.bytes -= event.len();
        if oldest.events.is_empty() {
            self.segments.pop_front();
        }
        self.count -= 1;
        self.bytes -= event.len();
        self.total.sub(event.len());
        true
    }

    fn forget_frame(&mut self, index: usize) {
        if let Some(frame) = self.segments.get_mut(index).and_then(|s| s.frame.take()) {
            self.cached -= frame.len();
            self.total.sub(frame.len());
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.total.sub(self.bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(limit: usize, max_bytes: usize) -> (History, HistoryBytes) {
        let total = HistoryBytes::default();
        (History::new(limit, max_bytes, total.clone()), total)
    }

    fn events(history: &History) -> Vec<Bytes> {
        history
            .segments
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.1.clone()))
            .collect()
    }

    /// Remembers each event with the next seq, counting from 1.
    fn fill(history: &mut History, events: &[Bytes]) {
        let next = history.kept().map_or(1, |(_, last)| last + 1);
        for (i, event) in events.iter().enumerate() {
            history.remember(next + i as u64, event);
        }
    }

    #[test]
    fn keeps_the_last_events_within_count_and_bytes() {
        let (mut history, total) = history(3, 10);
        for event in ["aaa", "bbb", "ccc", "ddd"] {
            fill(&mut history, &[Bytes::from(event)]);
        }
        assert_eq!(events(&history), ["bbb", "ccc", "ddd"], "count");
        assert_eq!(history.kept(), Some((2, 4)));
        fill(&mut history, &[Bytes::from("eeeee")]);
        assert_eq!(events(&history), ["ddd", "eeeee"], "bytes");
        fill(&mut history, &[Bytes::from("x".repeat(11))]);
        assert_eq!(events(&history).len(), 2, "too large on its own: not kept");
        assert_eq!(total.get(), 8);
        assert_eq!(history.frames("r").len(), 1);
        assert!(total.get() > 8, "the cached frame counts");
        drop(history);
        assert_eq!(total.get(), 0, "a dropped history gives its bytes back");
        assert!(History::new(0, 10, total).frames("r").is_empty());
    }

    #[test]
    fn joiners_share_every_segment_but_the_one_that_changed() {
        let (mut history, _) = history(1000, usize::MAX);
        let big = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(40_000)));
        fill(&mut history, &[big.clone(), big.clone(), big.clone(), big]);
        let first = history.frames("r");
        assert_eq!(first.len(), 2, "64 KiB segments: 2 + 2 events");
        fill(&mut history, &[Bytes::from("{\"join\":1}")]);
        let second = history.frames("r");
        assert_eq!(second.len(), 3);
        for i in 0..2 {
            assert_eq!(
                first[i].body().as_ptr(),
                second[i].body().as_ptr(),
                "segment {i} is shared"
            );
        }
        let third = history.frames("r");
        assert_eq!(second[2].body().as_ptr(), third[2].body().as_ptr());
    }

    #[test]
    fn shrinking_frees_the_oldest_events() {
        let (mut history, total) = history(1000, 1 << 20);
        fill(&mut history, &vec![Bytes::from("0123456789"); 100]);
        history.frames("r");
        let freed = history.shrink_to(200);
        assert_eq!(events(&history).len(), 20);
        assert!(freed > 800, "events and the dropped cache: {freed}");
        assert_eq!(total.get(), history.bytes());
    }

    #[test]
    fn history_frames_stay_far_under_the_client_limit() {
        let event = Bytes::from(vec![b'1'; 3 * 1024 * 1024]);
        let (mut history, _) = history(100, usize::MAX);
        fill(&mut history, &vec![event; 5]);
        let frames = history.frames("r");
        assert_eq!(frames.len(), 5, "one event per segment");
        assert!(frames.iter().all(|f| f.len() < 4 * 1024 * 1024));
    }

    #[test]
    fn resuming_clients_share_every_segment_wholly_after_their_seq() {
        let (mut history, _) = history(1000, usize::MAX);
        let events: Vec<Bytes> = (1..=150)
            .map(|n| Bytes::from(format!("{{\"n\":{n}}}")))
            .collect();
        fill(&mut history, &events);
        let whole = history.frames("r");
        assert_eq!(whole.len(), 3, "64 + 64 + 22 events");
        let after_70 = history.frames_after("r", 70);
        assert_eq!(after_70.len(), 2);
        let partial: serde_json::Value = serde_json::from_slice(&after_70[0].body()).unwrap();
        assert_eq!(partial["payload"][0]["n"], 71);
        assert_eq!(partial["payload"].as_array().unwrap().len(), 58);
        assert_eq!(
            after_70[1].body().as_ptr(),
            whole[2].body().as_ptr(),
            "shared"
        );
        assert_eq!(history.frames_after("r", 128).len(), 1);
        assert!(history.frames_after("r", 150).is_empty());
        assert_eq!(history.frames_after("r", 0).len(), 3);
    }

    #[test]
    fn queries_take_the_events_next_to_a_seq() {
        let (mut history, _) = history(1000, usize::MAX);
        let events: Vec<Bytes> = (1..=10).map(|n| Bytes::from(n.to_string())).collect();
        fill(&mut history, &events);
        let read = |events: Vec<Bytes>| -> Vec<String> {
            events
                .iter()
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect()
        };
        assert_eq!(read(history.query(HistoryRange::Before(5,), 2)), ["3", "4"]);
        assert_eq!(read(history.query(HistoryRange::After(5), 2)), ["6", "7"]);
        assert_eq!(read(history.query(HistoryRange::After(8), 50)), ["9", "10"]);
        assert!(history.query(HistoryRange::Before(1), 50).is_empty());
        assert!(history.query(HistoryRange::After(10), 50).is_empty());
    }
}
