//! The event loop's side of the services: it starts them, hands them the hub's `Work` and
//! `Persist` outputs without ever waiting, and brings the hashing service's answers back into
//! the loop through its `mio::Waker`.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::config::{Config, HashCost};
use crate::hub::{Done, Hub, Record, Work};
use crate::quiet::Tally;
use crate::services::hasher::{Hasher, HasherConfig, Job, Outcome};
use crate::services::store::{Store, StoreConfig, StoreError, Write};

/// Writes the store's queue can hold: about 40 ms of its writer's work, so the durability
/// promise (see README) holds even when the queue is full.
const STORE_QUEUE: usize = 4096;

/// Answers of the hashing service, waiting for the loop.
type Answers = Arc<Mutex<VecDeque<(u64, Outcome)>>>;

/// The store (when there is a data directory) and the hashing pool.
pub struct Services {
    store: Option<Store>,
    hasher: Hasher,
    answers: Answers,
    lost_writes: Tally,
}

impl Services {
    /// Opens the store (restoring accounts and rooms into `hub`) and starts the hashing pool,
    /// whose answers wake the loop.
    pub fn start(
        config: &Config,
        hub: &mut Hub,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Result<Services, StartError> {
        let store = match &config.data_dir {
            Some(dir) => Some(open_store(dir, config, hub)?),
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
        })
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

    /// Hands a record to the store; a full queue loses it (counted and logged).
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
    let (accounts, rooms) = (restored.accounts.len(), restored.rooms.len());
    for account in restored.accounts {
        hub.restore_account(&account.name, &account.phc);
    }
    for room in restored.rooms {
        let events = room
            .events
            .into_iter()
            .map(|event| (event.seq, Bytes::from(event.body)));
        hub.restore_room(&room.name, room.last_seq, events);
    }
    log::info!(
        "data in {}: {accounts} accounts, {rooms} rooms restored",
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
}
