//! `roomcast-bench store`: the store's writer alone, fed as fast as its queue takes writes, so
//! the figure is what the disk and SQLite can keep, apart from the event loop.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use roomcast::services::store::{Store, StoreConfig, Write};
use serde_json::json;

use crate::scenarios::Outcome;

/// What the writer is fed.
pub struct StoreLoad {
    /// Rooms the events go to, in turn.
    pub rooms: usize,
    /// Events kept per room (`--history`): the writer trims past it as it goes.
    pub history: usize,
    /// Bytes of each event's body.
    pub payload: usize,
    /// Seconds of writing.
    pub seconds: f64,
}

/// Submits events round-robin over the rooms for `load.seconds`, retrying when the queue is
/// full, then waits for the writer to commit them all.
pub fn store(dir: &Path, load: &StoreLoad) -> Result<Outcome, String> {
    let config = StoreConfig {
        history_per_room: load.history,
        history_max_age: None,
        max_rooms: load.rooms.max(1),
        queue: 4096,
    };
    let (store, _) = Store::open(dir, config).map_err(|err| err.to_string())?;
    let names: Vec<String> = (0..load.rooms.max(1)).map(|i| format!("room{i}")).collect();
    let body = Bytes::from(
        json!({"time": 1.7e9, "user": "bench", "type": "msg", "seq": 1, "data": "x".repeat(load.payload)})
            .to_string(),
    );
    let cpu_before = thread_cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(load.seconds);
    let mut submitted = 0u64;
    let mut full_waits = 0u64;
    'load: while Instant::now() < until {
        // A round of every room, then a look at the clock.
        for name in &names {
            let seq = submitted / names.len() as u64 + 1;
            let write = Write::Event {
                room: name.clone(),
                seq,
                time: 1.7e9,
                body: body.clone(),
            };
            while store.submit(write.clone()).is_err() {
                full_waits += 1;
                std::thread::sleep(Duration::from_micros(200));
                if Instant::now() >= until + Duration::from_secs(5) {
                    break 'load;
                }
            }
            submitted += 1;
        }
    }
    let stats_store = store;
    while stats_store.backlog() > 0
        && started.elapsed() < Duration::from_secs_f64(load.seconds + 10.0)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = stats_store.stats();
    let generator_cpu = thread_cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let process_cpu = process_cpu_seconds();
    stats_store.shutdown().map_err(|err| err.to_string())?;
    let mut figures = vec![
        ("events_submitted", json!(submitted)),
        ("events_committed", json!(stats.committed)),
        ("events_lost", json!(stats.lost)),
        (
            "events_persisted_per_s",
            json!(stats.committed as f64 / elapsed),
        ),
        ("queue_full_waits", json!(full_waits)),
    ];
    if let (Some(total), Some(generator)) = (process_cpu, generator_cpu) {
        figures.push(("writer_cpu_s", json!(total - generator)));
    }
    Ok(Outcome { figures })
}

/// CPU seconds of the calling thread, from /proc.
fn thread_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/thread-self/stat")
}

/// CPU seconds of this process, all threads, from /proc.
fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds("/proc/self/stat")
}

fn cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}
