//! A connection's outbound bytes: shared chunks queued as they are, written with one vectored
//! call per pass, counted so the loop can cut off a client that does not read.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes};

/// Chunks handed to one `write_vectored` call; Linux takes up to 1024, this is plenty per call.
const MAX_SLICES: usize = 64;

/// Chunk slots an empty queue keeps; more are freed once it drains.
const IDLE_SLOTS: usize = 8;

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flushed {
    /// Everything was written.
    All,
    /// The socket buffer is full; wait for a writable event.
    Blocked,
    /// The per-pass budget ran out with bytes left; come back next pass.
    Budget,
    /// Nothing can move until the peer speaks (a TLS handshake holds the plaintext back);
    /// the read that moves it queues the write again.
    Stalled,
}

/// Queued chunks and their total size.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    /// Queues a chunk; a clone of a shared frame costs a reference count, not a copy.
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.bytes += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes waiting to be written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Nothing left to write.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Writes until the queue is empty, the socket would block, or about `budget` bytes went
    /// out, so that one fast reader cannot starve the other connections of a pass.
    pub fn write_to<W: Write>(&mut self, writer: &mut W, budget: usize) -> io::Result<Flushed> {
        let mut written_total = 0;
        while !self.chunks.is_empty() {
            if written_total >= budget {
                return Ok(Flushed::Budget);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = self.chunks.len().min(MAX_SLICES);
            for (slice, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slice = IoSlice::new(chunk);
            }
            match writer.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.consume(written);
                    written_total += written;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(Flushed::Blocked),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        if self.chunks.capacity() > IDLE_SLOTS {
            // A burst (a joiner's history, a WebSocket's header-and-body pairs) is over:
            // idle connections must be cheap, so the slots it grew go back.
            self.chunks = VecDeque::new();
        }
        Ok(Flushed::All)
    }

    /// Drops `written` bytes off the front: whole chunks popped, a partial one advanced.
    fn consume(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(written);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `limit` bytes per call and blocks after `capacity` in total.
    struct Trickle {
        out: Vec<u8>,
        limit: usize,
        capacity: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let room = self.capacity - self.out.len();
            if room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.limit).min(room);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            self.write(&joined)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_mid_chunk() {
        let mut queue = OutQueue::default();
        for chunk in ["hello ", "", "shared ", "world"] {
            queue.push(Bytes::from(chunk));
        }
        assert_eq!(queue.bytes(), 18);
        let mut sink = Trickle {
            out: Vec::new(),
            limit: 4,
            capacity: 10,
        };
        assert_eq!(
            queue.write_to(&mut sink, 1 << 20).unwrap(),
            Flushed::Blocked
        );
        assert_eq!(queue.bytes(), 8);
        sink.capacity = 100;
        assert_eq!(queue.write_to(&mut sink, 4).unwrap(), Flushed::Budget);
        assert_eq!(queue.write_to(&mut sink, 1 << 20).unwrap(), Flushed::All);
        assert_eq!(sink.out, b"hello shared world");
        assert!(queue.is_empty());
        assert_eq!(queue.bytes(), 0);
    }
}
