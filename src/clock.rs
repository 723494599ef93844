//! Time arithmetic with no clock reads: every function takes `now` from the caller, which is
//! what lets the hub's ticks, timeouts and rate limits be tested without sleeping.

use std::time::{Duration, Instant};

/// Maps the loop's monotonic `Instant`s to the server time `T` that clients see (UNIX seconds).
///
/// Anchored once at start-up, so `T` never jumps when the wall clock is adjusted and tests can
/// pin it to exact values.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    base_instant: Instant,
    base_unix: f64,
}

impl WallClock {
    /// `base_instant` is the same moment as `base_unix` seconds since the UNIX epoch.
    pub fn new(base_instant: Instant, base_unix: f64) -> Self {
        WallClock {
            base_instant,
            base_unix,
        }
    }

    /// Server time at `now`; instants before the anchor map to the anchor.
    pub fn unix(&self, now: Instant) -> f64 {
        self.base_unix
            + now
                .saturating_duration_since(self.base_instant)
                .as_secs_f64()
    }
}

/// A fixed-rate schedule: deadlines at `origin + k * period`, so the cadence never drifts, and a
/// late caller skips the deadlines it missed instead of bursting them.
#[derive(Debug, Clone)]
pub struct Ticker {
    origin: Instant,
    period: Duration,
    /// Index of the next deadline.
    next: u64,
}

impl Ticker {
    /// First deadline one `period` after `origin`. `period` must be non-zero.
    pub fn new(origin: Instant, period: Duration) -> Self {
        Ticker {
            origin,
            period: period.max(Duration::from_nanos(1)),
            next: 1,
        }
    }

    /// The moment the next tick is due.
    pub fn deadline(&self) -> Instant {
        self.at(self.next)
    }

    /// True (once) when a deadline has passed by `now`; moves to the first deadline after
    /// `now`, skipping any that a late loop missed.
    pub fn fire(&mut self, now: Instant) -> bool {
        if now < self.deadline() {
            return false;
        }
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let passed = elapsed / self.period.as_nanos();
        self.next = u64::try_from(passed + 1).unwrap_or(u64::MAX);
        true
    }

    fn at(&self, index: u64) -> Instant {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(index));
        let offset = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.origin + offset
    }
}

/// Token bucket: `rate` tokens per second refill up to `burst`; each message takes one.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(now: Instant, burst: f64) -> Self {
        TokenBucket {
            tokens: burst,
            updated: now,
        }
    }

    /// Takes one token if there is one. A `rate` of zero means unlimited.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.take_n(now, rate, burst, 1.0)
    }

    /// Takes `cost` tokens if there are that many (a cost above the burst is taken as the
    /// burst, so anything can pass eventually). A `rate` of zero means unlimited.
    pub fn take_n(&mut self, now: Instant, rate: f64, burst: f64, cost: f64) -> bool {
        if rate <= 0.0 {
            return true;
        }
        let cost = cost.min(burst);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = self.updated.max(now);
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// How long until a token is there, at `rate`; zero if one is there now.
    pub fn wait(&self, now: Instant, rate: f64, burst: f64) -> Duration {
        self.wait_for(now, rate, burst, 1.0)
    }

    /// How long until `wanted` tokens (at most the burst) are there, at `rate`.
    pub fn wait_for(&self, now: Instant, rate: f64, burst: f64, wanted: f64) -> Duration {
        if rate <= 0.0 {
            return Duration::ZERO;
        }
        let wanted = wanted.min(burst);
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let tokens = (self.tokens + elapsed * rate).min(burst);
        if tokens >= wanted {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((wanted - tokens) / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn wall_clock_is_anchored() {
        let base = Instant::now();
        let clock = WallClock::new(base, 1_700_000_000.0);
        assert_eq!(clock.unix(base + 1500 * MS), 1_700_000_001.5);
    }

    #[test]
    fn ticker_does_not_drift_and_skips_missed_ticks() {
        let origin = Instant::now();
        let mut ticker = Ticker::new(origin, 50 * MS);
        assert_eq!(ticker.deadline(), origin + 50 * MS);
        assert!(!ticker.fire(origin + 49 * MS));
        // Served 7 ms late: the next deadline stays on the grid, not 50 ms after the late tick.
        assert!(ticker.fire(origin + 57 * MS));
        assert_eq!(ticker.deadline(), origin + 100 * MS);
        assert!(!ticker.fire(origin + 57 * MS), "fires once per deadline");
        // A loop stalled for 3.2 periods fires once and resumes on the grid.
        assert!(ticker.fire(origin + 260 * MS));
        assert_eq!(ticker.deadline(), origin + 300 * MS);
    }

    #[test]
    fn token_bucket_refills_at_rate_up_to_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(start, 2.0);
        assert!(bucket.take(start, 10.0, 2.0));
        assert!(bucket.take(start, 10.0, 2.0));
        assert!(!bucket.take(start, 10.0, 2.0));
        assert!(
            bucket.take(start + 100 * MS, 10.0, 2.0),
            "one token per 100 ms"
        );
        assert!(!bucket.take(start + 100 * MS, 10.0, 2.0));
        // A long pause refills only to the burst.
        assert!(bucket.take(start + 10_000 * MS, 10.0, 2.0));
        assert!(bucket.take(start + 10_000 * MS, 10.0, 2.0));
        assert!(!bucket.take(start + 10_000 * MS, 10.0, 2.0));
        assert!(bucket.take(start, 0.0, 2.0), "rate 0 is unlimited");
        let mut sized = TokenBucket::new(start, 10.0);
        assert!(sized.take_n(start, 10.0, 10.0, 6.0));
        assert!(!sized.take_n(start, 10.0, 10.0, 6.0), "4 left");
        assert!(
            sized.take_n(start + 200 * MS, 10.0, 10.0, 6.0),
            "6 after 200 ms"
        );
        let mut huge = TokenBucket::new(start, 10.0);
        assert!(
            huge.take_n(start, 10.0, 10.0, 50.0),
            "a cost over the burst costs the burst"
        );
        let mut empty = TokenBucket::new(start, 1.0);
        assert!(empty.take(start, 4.0, 1.0));
        assert_eq!(empty.wait(start, 4.0, 1.0), 250 * MS);
        let wait = empty.wait(start + 100 * MS, 4.0, 1.0);
        assert!(
            wait.abs_diff(150 * MS) < Duration::from_micros(1),
            "{wait:?}"
        );
        assert_eq!(empty.wait(start + 300 * MS, 4.0, 1.0), Duration::ZERO);
    }
}
