//! roomcast: a room server for VR headsets and multiplayer games.
//!
//! Clients speak length-prefixed JSON over raw TCP (or newline-delimited JSON, for `nc`), log in,
//! join rooms, chat, and stream headset poses. Chat is broadcast at once; poses are coalesced
//! and sent to each room on a fixed tick, so a 90 Hz headset costs a room no more than its
//! `fps`. protocol.md is the wire specification.
//!
//! # Layout
//! | module | owns |
//! |---|---|
//! | [`codec`] | framing only: length prefix or lines, sniffing, the shared outgoing [`codec::Frame`] |
//! | [`protocol`] | message types, codes, parsed names and poses, reply and event encoding |
//! | [`hub`] | the sans-IO core: every protocol rule, driven by `(connection, input, now)` |
//! | [`game`] | server-authoritative games (the `Game` trait and its registry) |
//! | [`clock`] | tick schedule, server time, token bucket: arithmetic on a `now` passed in |
//! | [`config`] | settings, defaults and their validation |
//! | [`net`] | the mio event loop that drives the hub over sockets |
//! | [`client`] | a blocking client for native programs, tests and the bench |
//!
//! # Invariants
//! - `hub` never touches sockets or reads a clock: time comes in as `now`, so every rule is
//!   unit-tested deterministically.
//! - A frame is encoded once; every recipient's queue holds a clone of the same `Bytes`.
//! - Every queue, buffer and name is bounded (see [`config::Config`]).
//!
//! # Embedding
//! ```no_run
//! let server = roomcast::Server::bind(roomcast::Config::default())?;
//! let handle = server.spawn()?;
//! println!("listening on {}", handle.local_addr());
//! handle.shutdown();
//! handle.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod game;
pub mod hub;
pub mod net;
pub mod protocol;

pub use config::Config;
pub use net::{Server, ServerHandle, ShutdownHandle};
