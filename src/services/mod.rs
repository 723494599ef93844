//! Services: work that must not run on the event loop, because it waits on a disk or burns
//! milliseconds of CPU, done on threads of its own.
//!
//! The loop talks to a service in two directions, and never waits in either:
//! - requests go in with a `submit` that returns at once; when the service's bounded queue is
//!   full it says so (`Full`, `Busy`) instead of blocking, and the hub turns that into a reply;
//! - results come back through a callback that runs on the service's thread. The loop gives
//!   each service a callback that pushes the result onto a queue the loop owns and wakes it
//!   with a `mio::Waker`; on that wake-up the loop drains the queue and hands each result to
//!   the hub as an input. Results are bounded by the requests in flight, so that queue is too.
//!
//! | service | what it does off the loop | results |
//! |---|---|---|
//! | [`store`] | SQLite: accounts and room history, written in small batches by one writer (`store_file`: the schema, its migrations, the directory lock and what goes wrong opening the file) | none: writes are fire-and-forget; start-up reads the database back once |
//! | [`hasher`] | Argon2id hashing and verification on a small worker pool | one [`hasher::Outcome`] per accepted job |
//! | [`redis`] | cluster mode: the hub's requests to Redis, pipelined on one connection, and the rooms' channels on another ([`redis_scripts`]: what is kept there, and the scripts; `redis_connect`: opening the connections, TLS and start-up errors; `redis_replies`: reading what Redis answers, and splitting a room's batched events message) | one `ClusterIn` per answer, channel message, or event of a room's events message |
//!
//! ```no_run
//! use std::sync::{Arc, Mutex};
//! use roomcast::services::hasher::{Hasher, HasherConfig, Job, Outcome};
//!
//! let poll = mio::Poll::new()?;
//! let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0))?);
//! let results: Arc<Mutex<Vec<(u64, Outcome)>>> = Arc::default();
//! let (wake, push) = (Arc::clone(&waker), Arc::clone(&results));
//! let hasher = Hasher::start(HasherConfig::default(), move |id, outcome| {
//!     push.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((id, outcome));
//!     if let Err(err) = wake.wake() {
//!         log::error!("cannot wake the event loop: {err}");
//!     }
//! })?;
//! hasher.submit(1, Job::Hash { password: "hunter2".into() })?;
//! // ... the loop polls; on the waker's token it takes `results` and feeds the hub.
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod hasher;
pub mod redis;
mod redis_connect;
mod redis_replies;
pub mod redis_scripts;
pub mod store;
mod store_file;
