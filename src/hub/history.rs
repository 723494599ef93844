//! A room's recent past, as a joiner receives it: the last msg, join and leave events, already
//! encoded, bounded by count and by bytes.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::frame::Frame;
use crate::protocol::encode_user_frame;

/// Largest history frame; a longer history goes out as several consecutive history frames,
/// so no server frame exceeds what clients are told to accept (16 MiB).
const MAX_HISTORY_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// The last events of a room, oldest first.
#[derive(Debug)]
pub(crate) struct History {
    events: VecDeque<Bytes>,
    bytes: usize,
    /// Events kept; 0 keeps none.
    limit: usize,
    /// Bytes kept, so that a joiner's history always fits its outbound queue.
    max_bytes: usize,
}

impl History {
    pub fn new(limit: usize, max_bytes: usize) -> Self {
        History {
            events: VecDeque::new(),
            bytes: 0,
            limit,
            max_bytes,
        }
    }

    /// Keeps `event`, dropping the oldest ones past the count or byte limit. An event larger
    /// than the byte limit on its own is not kept.
    pub fn remember(&mut self, event: &Bytes) {
        if self.limit == 0 || event.len() > self.max_bytes {
            return;
        }
        while self.events.len() >= self.limit || self.bytes + event.len() > self.max_bytes {
            match self.events.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
        self.bytes += event.len();
        self.events.push_back(event.clone());
    }

    /// The history frames of room `name`, oldest first; none when the history is empty.
    pub fn frames(&self, name: &str) -> Vec<Frame> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_events_within_count_and_bytes() {
        let mut history = History::new(3, 10);
        for event in ["aaa", "bbb", "ccc", "ddd"] {
            history.remember(&Bytes::from(event));
        }
        assert_eq!(history.events, ["bbb", "ccc", "ddd"], "count");
        history.remember(&Bytes::from("eeeee"));
        assert_eq!(history.events, ["ddd", "eeeee"], "bytes");
        history.remember(&Bytes::from("x".repeat(11)));
        assert_eq!(history.events.len(), 2, "too large on its own: not kept");
        assert_eq!(history.frames("r").len(), 1);
        assert!(History::new(0, 10).frames("r").is_empty());
    }

    #[test]
    fn a_long_history_is_split_into_frames_under_the_client_limit() {
        let event = Bytes::from(vec![b'1'; 3 * 1024 * 1024]);
        let mut history = History::new(100, usize::MAX);
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
