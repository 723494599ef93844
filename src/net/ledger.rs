//! What the loop keeps about connections beside the connections themselves: how many hold a
//! place (`--max-clients`), how many per address (`--max-conns-per-ip`), and which are on their
//! way out (drained, lingered, then removed by the reaper).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::conn::{Conn, State};

/// How long a closing connection may take to take its last bytes.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// The places taken and the connections closing.
#[derive(Default)]
pub struct Ledger {
    /// Connections admitted and not yet closing: what `--max-clients` counts.
    pub admitted: usize,
    /// Admitted connections by peer address: what `--max-conns-per-ip` counts.
    pub per_ip: HashMap<IpAddr, usize>,
    /// Slab keys of connections draining, lingering or dead, for the reaper.
    pub closing: Vec<usize>,
}

impl Ledger {
    /// Connections from `ip` holding a place now.
    pub fn held_by(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// A new connection from `ip` takes a place.
    pub fn admit(&mut self, ip: IpAddr) {
        self.admitted += 1;
        *self.per_ip.entry(ip).or_default() += 1;
    }

    /// The connection no longer counts against `--max-clients` and `--max-conns-per-ip`.
    pub fn release(&mut self, conn: &Conn) {
        if !conn.state.is_admitted() {
            return;
        }
        self.admitted -= 1;
        let ip = conn.peer.ip();
        if let Some(count) = self.per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Stops reading from a connection and lets its queue drain before closing.
    pub fn begin_close(&mut self, conn: &mut Conn, now: Instant) {
        self.release(conn);
        if conn.state.is_admitted() || matches!(conn.state, State::Refusing(_)) {
            conn.state = State::Draining(now + DRAIN_TIMEOUT);
            self.closing.push(conn.id.slot());
        }
    }

    /// Drops a connection at the end of the pass without flushing.
    pub fn kill(&mut self, conn: &mut Conn, key: usize) {
        if conn.state == State::Dead {
            return;
        }
        self.release(conn);
        if matches!(
            conn.state,
            State::Greeting | State::Refusing(_) | State::Open
        ) {
            self.closing.push(key);
        }
        conn.state = State::Dead;
    }
}
