//! Latency samples, percentiles, and per-receiver sequence checks (loss and duplicates).

/// Samples in microseconds; exact percentiles by sorting once at the end.
#[derive(Default)]
pub struct Samples(Vec<u32>);

/// Beyond this, every other sample is dropped so memory stays bounded on long runs.
const MAX_SAMPLES: usize = 20_000_000;

impl Samples {
    pub fn push(&mut self, micros: u64) {
        if self.0.len() >= MAX_SAMPLES {
            let mut keep = false;
            self.0.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.0.push(u32::try_from(micros).unwrap_or(u32::MAX));
    }

    /// p50, p99, p99.9 and max, in milliseconds.
    pub fn summary(&mut self) -> Summary {
        self.0.sort_unstable();
        let at = |q: f64| -> f64 {
            if self.0.is_empty() {
                return f64::NAN;
            }
            let index = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len()) - 1;
            f64::from(self.0[index]) / 1000.0
        };
        Summary {
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        }
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

/// What one receiver expects next from each publisher of its room.
pub struct Sequences {
    next: Vec<u64>,
    pub lost: u64,
    pub duplicated: u64,
}

impl Sequences {
    pub fn new(publishers: usize) -> Self {
        Sequences {
            next: vec![0; publishers],
            lost: 0,
            duplicated: 0,
        }
    }

    /// Records sequence `seq` from publisher `from`; a jump is counted as loss, a repeat or
    /// step back as a duplicate.
    pub fn see(&mut self, from: usize, seq: u64) {
        let Some(next) = self.next.get_mut(from) else {
            return;
        };
        if seq < *next {
            self.duplicated += 1;
        } else {
            self.lost += seq - *next;
            *next = seq + 1;
        }
    }

    /// Counts what never arrived of `sent[p]` messages per publisher.
    pub fn finish(&mut self, sent: &[u64]) {
        for (next, &sent) in self.next.iter().zip(sent) {
            self.lost += sent.saturating_sub(*next);
        }
    }
}

/// Parses the unsigned integer at the start of `bytes`.
pub fn leading_u64(bytes: &[u8]) -> Option<u64> {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()
}

/// Parses the number (as the server spelled it) at the start of `bytes`.
pub fn leading_f64(bytes: &[u8]) -> Option<f64> {
    let len = bytes
        .iter()
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'e' | b'E' | b'+'))
        .count();
    std::str::from_utf8(&bytes[..len]).ok()?.parse().ok()
}
