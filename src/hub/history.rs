//! A room's recent past, as a joiner receives it: the last msg, join and leave events, already
//! encoded, bounded by count and by bytes, and counted against the hub's total for histories.
//!
//! The frames a joiner receives are built once per change and shared: a hundred joiners of a
//! room with a full history hold one copy between them, not a hundred.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::frame::Frame;
use crate::protocol::encode_user_frame;

/// Largest history frame; a longer history goes out as several consecutive history frames,
/// so no server frame exceeds what clients are told to accept (16 MiB).
const MAX_HISTORY_FRAME_BYTES: usize = 8 * 1024 * 1024;

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

/// The last events of a room, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Bytes>,
    bytes: usize,
    /// Events kept; 0 keeps none.
    limit: usize,
    /// Bytes kept, so that a joiner's history always fits its outbound queue.
    max_bytes: usize,
    /// The frames joiners get, built on the first join after a change.
    frames: Option<(Vec<Frame>, usize)>,
    total: HistoryBytes,
}

impl History {
    pub fn new(limit: usize, max_bytes: usize, total: HistoryBytes) -> Self {
        History {
            events: VecDeque::new(),
            bytes: 0,
            limit,
            max_bytes,
            frames: None,
            total,
        }
    }

    /// Keeps `event`, dropping the oldest ones past the count or byte limit. An event larger
    /// than the byte limit on its own is not kept.
    pub fn remember(&mut self, event: &Bytes) {
        if self.limit == 0 || event.len() > self.max_bytes {
            return;
        }
        self.forget_frames();
        while self.events.len() >= self.limit || self.bytes + event.len() > self.max_bytes {
            if !self.drop_oldest() {
                break;
            }
        }
        self.bytes += event.len();
        self.total.add(event.len());
        self.events.push_back(event.clone());
    }

    /// Bytes this history holds, cached frames included.
    pub fn bytes(&self) -> usize {
        self.bytes + self.frames.as_ref().map_or(0, |(_, bytes)| *bytes)
    }

    /// Drops the oldest events until at most `target` bytes of events are left; the bytes
    /// freed.
    pub fn shrink_to(&mut self, target: usize) -> usize {
        let before = self.bytes();
        self.forget_frames();
        while self.bytes > target && self.drop_oldest() {}
        before - self.bytes()
    }

    /// The history frames of room `name`, oldest first; none when the history is empty. Built
    /// once per change and shared by every joiner.
    pub fn frames(&mut self, name: &str) -> Vec<Frame> {
        if let Some((frames, _)) = &self.frames {
            return frames.clone();
        }
        let frames = self.encode(name);
        let bytes = frames.iter().map(Frame::len).sum();
        self.total.add(bytes);
        self.frames = Some((frames.clone(), bytes));
        frames
    }

    fn encode(&self, name: &str) -> Vec<Frame> {
        let mut frames = Vec::new();
        let mut chunk: Vec<&Bytes> = Vec::new();
        let mut chunk_bytes = 0;
        for event in &self.events {
            if !chunk.is_empty() && chunk_bytes + event.len() > MAX_HISTORY_FRAME_BYTES {
                frames.push(encode_user_frame(name, true, chunk.drain(..)));
                chunk_bytes = 0;
            }
            chunk_bytes += event.len();
            chunk.push(event);
        }
        if !chunk.is_empty() {
            frames.push(encode_user_frame(name, true, chunk));
        }
        frames
    }

    fn drop_oldest(&mut self) -> bool {
        match self.events.pop_front() {
            Some(old) => {
                self.bytes -= old.len();
                self.total.sub(old.len());
                true
            }
            None => false,
        }
    }

    fn forget_frames(&mut self) {
        if let Some((_, bytes)) = self.frames.take() {
            self.total.sub(bytes);
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

    #[test]
    fn keeps_the_last_events_within_count_and_bytes() {
        let (mut history, total) = history(3, 10);
        for event in ["aaa", "bbb", "ccc", "ddd"] {
            history.remember(&Bytes::from(event));
        }
        assert_eq!(history.events, ["bbb", "ccc", "ddd"], "count");
        history.remember(&Bytes::from("eeeee"));
        assert_eq!(history.events, ["ddd", "eeeee"], "bytes");
        history.remember(&Bytes::from("x".repeat(11)));
        assert_eq!(history.events.len(), 2, "too large on its own: not kept");
        assert_eq!(total.get(), 8);
        assert_eq!(history.frames("r").len(), 1);
        assert!(total.get() > 8, "the cached frame counts");
        drop(history);
        assert_eq!(total.get(), 0, "a dropped history gives its bytes back");
        assert!(History::new(0, 10, total).frames("r").is_empty());
    }

    #[test]
    fn joiners_share_one_encoding_until_the_history_changes() {
        let (mut history, _) = history(10, 1000);
        history.remember(&Bytes::from("{\"a\":1}"));
        let first = history.frames("r");
        let second = history.frames("r");
        assert_eq!(
            first[0].body().as_ptr(),
            second[0].body().as_ptr(),
            "shared"
        );
        history.remember(&Bytes::from("{\"b\":2}"));
        let third = history.frames("r");
        assert_ne!(first[0], third[0], "rebuilt after a change");
    }

    #[test]
    fn shrinking_frees_the_oldest_events() {
        let (mut history, total) = history(10, 1000);
        for _ in 0..5 {
            history.remember(&Bytes::from("0123456789"));
        }
        history.frames("r");
        let freed = history.shrink_to(20);
        assert_eq!(history.events.len(), 2);
        assert!(freed > 30, "events and the cache: {freed}");
        assert_eq!(total.get(), 20);
    }

    #[test]
    fn a_long_history_is_split_into_frames_under_the_client_limit() {
        let event = Bytes::from(vec![b'1'; 3 * 1024 * 1024]);
        let (mut history, _) = history(100, usize::MAX);
        for _ in 0..5 {
            history.remember(&event);
        }
        let frames = history.frames("r");
        assert_eq!(frames.len(), 3, "2 + 2 + 1 events of 3 MiB");
        assert!(frames
            .iter()
            .all(|f| f.len() < MAX_HISTORY_FRAME_BYTES + 1024));
    }
}
