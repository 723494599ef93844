//! Repetitive log lines, summarized. Under a flood every connection times out, is refused or is
//! cut off the same way; one line each would be a flood of its own (a timeout storm once wrote
//! ~95 KB of log per second). A [`Tally`] lets the first few lines of a kind through in each
//! ten-second window and then counts, and says how many it held back when the window ends:
//! "1234 more: connection timed out (last 10 s)".

use std::time::{Duration, Instant};

/// The window of a tally.
const WINDOW: Duration = Duration::from_secs(10);
/// Lines of one kind written as they are in each window.
const FIRST: u64 = 10;

/// One kind of repetitive line.
#[derive(Debug)]
pub struct Tally {
    what: &'static str,
    level: log::Level,
    window_start: Option<Instant>,
    in_window: u64,
}

impl Tally {
    /// A tally for lines saying `what`, logged at `level`.
    pub const fn new(what: &'static str, level: log::Level) -> Tally {
        Tally {
            what,
            level,
            window_start: None,
            in_window: 0,
        }
    }

    /// Counts one occurrence at `now`; true when this one should be logged in full (the
    /// caller writes it, with its details). Ends a finished window first.
    pub fn note(&mut self, now: Instant) -> bool {
        self.flush(now);
        self.window_start.get_or_insert(now);
        self.in_window += 1;
        self.in_window <= FIRST && log::log_enabled!(self.level)
    }

    /// Writes the summary of a finished window, if it held lines back; call it now and then
    /// so a flood that stopped is still summed up.
    pub fn flush(&mut self, now: Instant) {
        let Some(start) = self.window_start else {
            return;
        };
        if now.saturating_duration_since(start) < WINDOW {
            return;
        }
        if let Some(held_back) = self.held_back() {
            log::log!(
                self.level,
                "{held_back} more: {} (last {} s)",
                self.what,
                WINDOW.as_secs()
            );
        }
        self.window_start = None;
        self.in_window = 0;
    }

    /// Lines counted but not written in the current window.
    pub fn held_back(&self) -> Option<u64> {
        self.in_window.checked_sub(FIRST).filter(|&n| n > 0)
    }

    /// The level its lines are logged at.
    pub fn level(&self) -> log::Level {
        self.level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_pass_then_they_are_counted_per_window() {
        let start = Instant::now();
        // Error level: enabled whatever the test logger does.
        let mut tally = Tally::new("connection timed out", log::Level::Error);
        let written = (0..25).filter(|_| tally.note(start)).count() as u64;
        assert!(written <= FIRST);
        assert_eq!(tally.held_back(), Some(15));
        tally.flush(start + WINDOW / 2);
        assert_eq!(tally.held_back(), Some(15), "the window is still open");
        tally.flush(start + WINDOW);
        assert_eq!(tally.held_back(), None, "summarized and reset");
        tally.note(start + WINDOW);
        assert_eq!(tally.held_back(), None);
    }
}
