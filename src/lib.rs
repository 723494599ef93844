//! roomcast: a room server for VR headsets and multiplayer games.
//!
//! Clients speak length-prefixed JSON over raw TCP (or newline-delimited JSON, for `nc`, or a
//! WebSocket, for browsers; any of them inside TLS, all on one port), log in, join rooms, chat,
//! and stream headset poses. Chat is broadcast at once; poses are coalesced
//! and sent to each room on a fixed tick, so a 90 Hz headset costs a room no more than its
//! `fps`. protocol.md is the wire specification.
//!
//! # Layout
//! | module | owns | may import |
//! |---|---|---|
//! | [`config`] | settings, defaults and their validation | std, ipnet (the `--metrics-allow` type) |
//! | [`clock`] | tick schedule, server time, token bucket: arithmetic on a `now` passed in | std |
//! | [`frame`] | one outgoing message, encoded once with its length prefix and WebSocket header, and the slices each transport sends | bytes |
//! | [`protocol`] | the wire vocabulary: codes, names, poses, requests, replies (server and client) | frame, serde |
//! | [`transport`] | sniffing; framed, line, HTTP and WebSocket decoding; TLS sessions in memory; what a transport answers itself (pongs, closes, HTTP replies, alerts); the viewer's files; transport errors mapped to codes | frame, protocol, httparse, tungstenite, rustls |
//! | [`stats`] | plain counters the hub and the loop bump, rendered for `GET /metrics` | prometheus-client |
//! | [`game`] | server-authoritative games (the `Game` trait and its registry) | serde_json |
//! | [`hub`] | the sans-IO core: every protocol rule, driven by inputs with a `now` | the above but transport |
//! | [`services`] | work off the loop on threads of its own: the SQLite store, the argon2id hashing pool, the Redis bridge of a cluster (`--redis`) | std threads, bytes, quiet, rusqlite, argon2, redis; the hub's cluster messages (`hub::cluster_messages`) |
//! | [`net`] | the mio event loop that drives the hub over sockets; HTTP routes (`/metrics`, `/healthz`, the viewer) | mio, slab, transport, hub, stats |
//! | [`client`] | a blocking client for native programs, tests and the bench | std::net, protocol, transport |
//! | [`quiet`] | repetitive log lines summarized under floods | log |
//!
//! # A msg, from read to write
//! `net` reads the socket into the connection's buffer; the connection's `transport` cuts
//! one body off it; `net` hands it to `Hub::handle` as `Input::Frame(conn, body)`; the hub
//! parses it (`protocol::request`), checks the sender's rate bucket and session (`hub/conns`,
//! `hub/session`), encodes the event once (`protocol::reply`) and adds it to the room's batch
//! and history (`hub/room`, `hub/history`); when the pass drains `Hub::poll_output`, the room
//! flushes its batch as one frame and the outbox (`hub/outbox`) yields one `Output::Send` per
//! member, each a clone of the same buffer; `net` queues each clone's chunks in the
//! recipient's transport (`transport::framed`, `line` or `ws`: a header slice and the shared
//! body) and writes them with one vectored write per connection, or through the connection's
//! TLS session, which encrypts per connection.
//!
//! # Invariants
//! - `hub` never touches sockets or reads a clock: time comes in as `now`, so every rule is
//!   unit-tested deterministically.
//! - A frame is encoded once; every recipient's queue holds a clone of the same `Bytes` (TLS
//!   then encrypts per connection: there the rule stops).
//! - Every queue, buffer and name is bounded (see [`config::Config`]).
//! - Connection ids are never reused while the process runs; a user's session is apart from
//!   the connection that carries it.
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
pub mod config;
pub mod frame;
pub mod game;
pub mod hub;
pub mod net;
pub mod protocol;
pub mod quiet;
pub mod services;
pub mod stats;
pub mod transport;

pub use config::Config;
pub use net::{Server, ServerHandle, ShutdownHandle};
