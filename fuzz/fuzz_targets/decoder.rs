//! Fuzzes `transport::Transport`: arbitrary bytes, cut into reads at fuzzer-chosen points.
//!
//! Input layout (short inputs read missing bytes as 0):
//! - byte 0: `max_frame - 1` (so 1..=256, small enough that "too large" is reachable);
//! - byte 1: number of cuts `k` (taken modulo 8);
//! - the next `k` bytes: the length of each read before the last; the last read is the rest;
//! - everything after: the wire bytes, exactly as a peer would send them.
//!
//! Each of the three decoders (sniffing, `Framed`, `Line`) reads the wire once in one read and
//! once in the cut reads. Checked: nothing panics; every body is non-empty and at most
//! `max_frame`; decoding stops at the first error; the cut reads give the same frames, the same
//! error and the same leftover bytes as the single read (the differential check); the sniffing
//! decoder behaves exactly like the explicit decoder of the mode it sniffed (`0x00` framed, `{`
//! line); a first byte that starts no transport (not a letter of an HTTP method, nor a TLS
//! hello) is refused at once, naming that byte.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use roomcast::frame::LENGTH_PREFIX as HEADER_LEN;
use roomcast::transport::{Transport, TransportError as DecodeError, TransportKind as Mode};

const MAX_CUTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let max_frame = usize::from(byte(0)) + 1;
    let cuts = usize::from(byte(1)) % MAX_CUTS;
    let sizes: Vec<usize> = (0..cuts).map(|i| usize::from(byte(2 + i))).collect();
    let wire = data.get(2 + cuts..).unwrap_or_default();
    let reads = split(wire, &sizes);

    let whole_read = [wire];
    let modes = [None, Some(Mode::Framed), Some(Mode::Line)];
    let mut whole_runs = Vec::new();
    for mode in modes {
        let whole = run(mode, max_frame, &whole_read);
        let parts = run(mode, max_frame, &reads);
        check_frames(&whole, max_frame, wire);
        check_frames(&parts, max_frame, wire);
        assert_eq!(
            whole.frames, parts.frames,
            "{mode:?}: cut reads changed the frames"
        );
        assert!(
            same_error(whole.mode, &whole.error, &parts.error),
            "{mode:?}: cut reads changed the error: {:?} vs {:?}",
            whole.error,
            parts.error
        );
        if whole.error.is_none() {
            assert_eq!(
                whole.left, parts.left,
                "{mode:?}: cut reads left other bytes"
            );
        }
        whole_runs.push(whole);
    }

    // The sniffing decoder is the explicit decoder of the mode the first byte names.
    let expected = match wire.first() {
        None => None,
        Some(b'{') => Some(&whole_runs[2]),
        Some(0) => Some(&whole_runs[1]),
        Some(&first) if first.is_ascii_uppercase() || first == 0x16 => None,
        Some(&first) => {
            let refused = matches!(
                whole_runs[0].error,
                Some(DecodeError::Unrecognized { first: seen, .. }) if seen == first
            );
            assert!(
                refused && whole_runs[0].frames.is_empty(),
                "{first:#x} not refused"
            );
            None
        }
    };
    if let Some(expected) = expected {
        assert_eq!(
            &whole_runs[0], expected,
            "sniffing differs from the explicit mode"
        );
    }
});

/// What one decoder made of the wire.
#[derive(Debug, PartialEq)]
struct Run {
    mode: Option<Mode>,
    frames: Vec<Bytes>,
    error: Option<DecodeError>,
    /// Bytes still buffered at the end (meaningful only without an error).
    left: BytesMut,
}

/// Cuts `wire` into reads of the given sizes (clamped), then the rest.
fn split<'a>(wire: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut reads = Vec::new();
    let mut rest = wire;
    for &size in sizes {
        let (head, tail) = rest.split_at(size.min(rest.len()));
        reads.push(head);
        rest = tail;
    }
    reads.push(rest);
    reads
}

/// Feeds the reads one by one, draining whole frames after each, and stops at the first error
/// (the connection is closed then).
fn run(mode: Option<Mode>, max_frame: usize, reads: &[&[u8]]) -> Run {
    let mut decoder = match mode {
        None => Transport::sniffing(max_frame),
        Some(mode) => Transport::new(mode, max_frame),
    };
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(error) => {
                    return Run {
                        mode: decoder.kind(),
                        frames,
                        error: Some(error),
                        left: buf,
                    }
                }
            }
        }
        // Asking again without new bytes changes nothing.
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(None),
            "a second call found a frame"
        );
    }
    Run {
        mode: decoder.kind(),
        frames,
        error: None,
        left: buf,
    }
}

/// Per-frame invariants, and for framed mode that frames and leftover rebuild the wire.
fn check_frames(run: &Run, max_frame: usize, wire: &[u8]) {
    for frame in &run.frames {
        assert!(!frame.is_empty(), "empty body");
        assert!(
            frame.len() <= max_frame,
            "body of {} > {max_frame}",
            frame.len()
        );
    }
    if let Some(DecodeError::TooLarge { len, max }) = &run.error {
        assert_eq!(*max, max_frame);
        assert!(
            *len > max_frame as u64,
            "TooLarge with len {len} <= max {max}"
        );
    }
    match run.mode {
        Some(Mode::Line) => {
            for frame in &run.frames {
                assert!(!frame.contains(&b'\n'), "line body holds a newline");
                assert!(
                    !frame.iter().all(u8::is_ascii_whitespace),
                    "blank line delivered"
                );
            }
        }
        Some(Mode::Framed) if run.error.is_none() => {
            let mut rebuilt = Vec::with_capacity(wire.len());
            for frame in &run.frames {
                rebuilt.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                rebuilt.extend_from_slice(frame);
            }
            rebuilt.extend_from_slice(&run.left);
            assert_eq!(rebuilt, wire, "frames and leftover do not rebuild the wire");
            if run.left.len() >= HEADER_LEN {
                let mut prefix = [0u8; HEADER_LEN];
                prefix.copy_from_slice(&run.left[..HEADER_LEN]);
                let len = u32::from_be_bytes(prefix) as usize;
                assert!(
                    run.left.len() < HEADER_LEN + len,
                    "a whole frame was left behind"
                );
            }
        }
        _ => {}
    }
}

/// Errors match exactly, except the length of an oversize line: that is "bytes buffered so
/// far", which depends on where the reads were cut; and the hint of an unrecognized first byte,
/// which looks at what the first read brought.
fn same_error(mode: Option<Mode>, a: &Option<DecodeError>, b: &Option<DecodeError>) -> bool {
    if let (
        Some(DecodeError::Unrecognized { first: fa, .. }),
        Some(DecodeError::Unrecognized { first: fb, .. }),
    ) = (a, b)
    {
        return fa == fb;
    }
    match (mode, a, b) {
        (
            Some(Mode::Line),
            Some(DecodeError::TooLarge { max: ma, .. }),
            Some(DecodeError::TooLarge { max: mb, .. }),
        ) => ma == mb,
        _ => a == b,
    }
}
