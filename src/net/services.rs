//! The event loop's side of the services: it starts them, hands them the hub's `Work`,
//! `Persist` and `Cluster` outputs without ever waiting, and brings the hashing service's and
//! Redis's answers back into the loop through its `mio::Waker`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::config::{Config, HashCost};
use crate::hub::cluster_messages::{ClusterIn, ClusterOut};
use crate::hub::{Done, Hub, Input, Record, Work};
use crate::quiet::Tally;
use crate::services::hasher::{Hasher, HasherConfig, Job, Outcome};
use crate::services::redis::{Bridge, BridgeConfig, BridgeError, Full};
use crate::services::store::{Store, StoreConfig, StoreError, Write};

/// Channel messages waiting for the loop at most; past it, room events and poses are dropped
/// (a dropped event leaves a gap the hub reads back from the room's stream).
const MAX_CLUSTER_BACKLOG: usize = 200_000;

/// Writes the store's queue can hold: about 20 ms of its writer's work at the ~200,000 writes
/// a second it manages alone (`roomcast-bench store`). The loop stops reading clients at half
/// of it, so the queue does not fill and a write waits well under 100 ms: the durability
/// promise (see README).
const STORE_QUEUE: usize = 4096;

/// The loop stops reading clients when this many writes wait for the store, so that the queue
/// never fills and no write is dropped under a load the disk cannot follow...
const STORE_BUSY_AT: u64 = STORE_QUEUE as u64 / 2;
/// ...and reads again when the store has caught up to this.
const STORE_CAUGHT_UP_AT: u64 = STORE_QUEUE as u64 / 8;

/// Whether the loop holds off reading, given whether it did and the store's backlog: from
/// half the queue until an eighth, so that it neither lets the queue fill nor flips on every
/// write.
fn behind(was_behind: bool, backlog: u64) -> bool {
    match was_behind {
        true => backlog > STORE_CAUGHT_UP_AT,
        false => backlog >= STORE_BUSY_AT,
    }
}

/// Answers of the hashing service, waiting for the loop.
type Answers = Arc<Mutex<VecDeque<(u64, Outcome)>>>;

/// What Redis said, waiting for the loop.
type ClusterAnswers = Arc<Mutex<VecDeque<ClusterIn>>>;

/// The store (when there is a data directory) and the hashing pool.
pub struct Services {
    store: Option<Store>,
    hasher: Hasher,
    answers: Answers,
    lost_writes: Tally,
    /// Clients are not read: the store is behind (see [`Services::store_is_behind`]).
    store_behind: bool,
    behind_since: Tally,
    /// Cluster mode: the Redis bridge and what it said.
    bridge: Option<Bridge>,
    cluster_answers: ClusterAnswers,
    cluster_lost: Tally,
}

impl Services {
    /// Opens the store (restoring accounts and rooms into `hub`) and starts the hashing pool,
    /// whose answers wake the loop.
    pub fn start(
        config: &Config,
        hub: &mut Hub,
        wake: impl Fn() + Send + Sync + Clone + 'static,
    ) -> Result<Services, StartError> {
        let store = match &config.data_dir {
            Some(dir) => Some(open_store(dir, config, hub)?),
            None => None,
        };
        let cluster_answers: ClusterAnswers = Arc::default();
        let bridge = match &config.cluster {
            Some(cluster) => {
                let queue = Arc::clone(&cluster_answers);
                let wake = wake.clone();
                let bridge_config = BridgeConfig {
                    url: cluster.redis_url.clone(),
                    ca: cluster.redis_ca.clone(),
                    client: cluster.redis_client.clone(),
                    node: cluster.node_id.clone(),
                    stream_len: config.history.max(1000),
                };
                let bridge = Bridge::start(bridge_config, move |input| {
                    let mut queue = lock(&queue);
                    let droppable =
                        matches!(input, ClusterIn::Event { .. } | ClusterIn::Poses { .. });
                    if droppable && queue.len() >= MAX_CLUSTER_BACKLOG {
                        return;
                    }
                    // The loop takes the whole queue when woken: one wake-up (a syscall on
                    // each side) per burst of messages, not one per message.
                    let was_empty = queue.is_empty();
                    queue.push_back(input);
                    drop(queue);
                    if was_empty {
                        wake();
                    }
                })
                .map_err(StartError::Redis)?;
                log::info!(
                    "cluster node {}: rooms and accounts are shared over Redis; the store keeps a copy of this node's accounts",
                    cluster.node_id
                );
                Some(bridge)
            }
            None => None,
        };
        let answers: Answers = Arc::default();
        let delivered = Arc::clone(&answers);
        let hasher_config = match config.hash_cost {
            HashCost::Standard => HasherConfig::default(),
            HashCost::Cheap => HasherConfig::cheap(2, 64),
        };
        let hasher = Hasher::start(hasher_config, move |id, outcome| {
            lock(&delivered).push_back((id, outcome));
            wake();
        })
        .map_err(StartError::Hasher)?;
        Ok(Services {
            store,
            hasher,
            answers,
            lost_writes: Tally::new("store writes lost (queue full)", log::Level::Warn),
            store_behind: false,
            behind_since: Tally::new(
                "times clients were not read while the store caught up",
                log::Level::Info,
            ),
            bridge,
            cluster_answers,
            cluster_lost: Tally::new("requests to Redis lost (queue full)", log::Level::Warn),
        })
    }

    /// Hands a request to Redis; a full queue fails it at once (the hub answers 503).
    pub fn cluster(&mut self, hub: &mut Hub, now: std::time::Instant, out: ClusterOut) {
        let Some(bridge) = &self.bridge else {
            return;
        };
        let Err(Full { op }) = bridge.submit(out) else {
            return;
        };
        if self.cluster_lost.note(now) {
            log::warn!("the queue to Redis is full: a request was dropped");
        }
        if op != 0 {
            hub.handle(now, Input::Cluster(ClusterIn::Failed { op }));
        }
    }

    /// What Redis said since the last call, for the hub.
    pub fn cluster_answers(&self) -> Vec<ClusterIn> {
        lock(&self.cluster_answers).drain(..).collect()
    }

    /// Hands password work to the pool; a full pool answers `Busy` at once.
    pub fn work(&mut self, hub: &mut Hub, now: std::time::Instant, id: u64, work: Work) {
        let job = match work {
            Work::Hash { password } => Job::Hash { password },
            Work::Verify { password, phc } => Job::Verify { password, phc },
        };
        if self.hasher.submit(id, job).is_err() {
            hub.handle(
                now,
                crate::hub::Input::Done {
                    id,
                    done: Done::Busy,
                },
            );
        }
    }

    /// Hands a record to the store; a full queue (which [`Services::store_is_behind`] keeps
    /// from happening) loses it, counted and logged.
    pub fn persist(&mut self, now: std::time::Instant, record: Record) {
        let Some(store) = &self.store else {
            return;
        };
        let write = match record {
            Record::Event {
                room,
                seq,
                time,
                body,
            } => Write::Event {
                room,
                seq,
                time,
                body,
            },
            Record::Account { name, phc } => Write::Register { name, phc },
            Record::Password { name, phc } => Write::SetPassword { name, phc },
        };
        if let Err(err) = store.submit(write) {
            if self.lost_writes.note(now) {
                log::warn!("store write lost: {err}");
            }
        }
    }

    /// Whether the loop must stop reading clients for now: the store's backlog passed half its
    /// queue, and has not yet come down to an eighth of it. Every message a client sends may
    /// become a history event to persist; while the disk cannot follow, not reading them
    /// (TCP pushes back to the senders) keeps every write, and the durability promise, where
    /// dropping writes would lose them.
    pub fn store_is_behind(&mut self, now: std::time::Instant) -> bool {
        let Some(store) = &self.store else {
            return false;
        };
        let backlog = store.backlog();
        let was_behind = self.store_behind;
        self.store_behind = behind(was_behind, backlog);
        if self.store_behind && !was_behind && self.behind_since.note(now) {
            log::info!("the store is behind ({backlog} writes waiting): clients are not read until it catches up");
        }
        self.store_behind
    }

    /// Reports what the quiet logs held back.
    pub fn flush_tallies(&mut self, now: std::time::Instant) {
        self.lost_writes.flush(now);
        self.behind_since.flush(now);
        self.cluster_lost.flush(now);
    }

    /// The hashing service's answers since the last call, for the hub.
    pub fn answers(&self) -> Vec<(u64, Done)> {
        lock(&self.answers)
            .drain(..)
            .map(|(id, outcome)| {
                let done = match outcome {
                    Outcome::Hashed(Ok(phc)) => Done::Hashed(Some(phc)),
                    Outcome::Hashed(Err(err)) => {
                        log::error!("password hashing failed: {err}");
                        Done::Hashed(None)
                    }
                    Outcome::Verified(ok) => Done::Verified(ok),
                };
                (id, done)
            })
            .collect()
    }

    /// Flushes the store and stops the workers.
    pub fn shutdown(self) {
        if let Some(bridge) = self.bridge {
            bridge.shutdown();
        }
        if let Some(store) = self.store {
            if let Err(err) = store.shutdown() {
                log::error!("the store did not shut down cleanly: {err}");
            }
        }
        self.hasher.shutdown();
    }
}

fn open_store(dir: &Path, config: &Config, hub: &mut Hub) -> Result<Store, StartError> {
    let store_config = StoreConfig {
        history_per_room: config.history,
        history_max_age: config.history_max_age,
        max_rooms: config.max_stored_rooms,
        queue: STORE_QUEUE,
    };
    let (store, restored) = Store::open(dir, store_config).map_err(StartError::Store)?;
    let (accounts, room_count) = (
        restored.accounts.len(),
        match config.cluster {
            Some(_) => 0,
            None => restored.rooms.len(),
        },
    );
    for account in restored.accounts {
        hub.restore_account(&account.name, &account.phc);
    }
    // A cluster keeps room histories in Redis: the store's (from a run without --redis) are
    // left alone.
    let rooms = match config.cluster {
        Some(_) => Vec::new(),
        None => restored.rooms,
    };
    for room in rooms {
        let events = room
            .events
            .into_iter()
            .map(|event| (event.seq, Bytes::from(event.body)));
        hub.restore_room(&room.name, room.last_seq, events);
    }
    log::info!(
        "data in {}: {accounts} accounts, {room_count} rooms restored",
        dir.display()
    );
    Ok(store)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while pushing left a queue of plain values behind: keep it.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A service that could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or its database cannot be used.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The hashing threads could not be started.
    #[error("cannot start the password hashing threads: {0}")]
    Hasher(std::io::Error),
    /// Redis cannot be used (cluster mode).
    #[error("{0}")]
    Redis(#[from] BridgeError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_stops_at_half_the_store_queue_and_starts_again_at_an_eighth() {
        let half = STORE_QUEUE as u64 / 2;
        let eighth = STORE_QUEUE as u64 / 8;
        assert!(!behind(false, half - 1));
        assert!(behind(false, half));
        assert!(behind(true, half - 1), "no flipping just below the mark");
        assert!(behind(true, eighth + 1));
        assert!(!behind(true, eighth));
        assert!(!behind(false, eighth + 1));
    }
}
