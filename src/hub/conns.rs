//! The connections the hub talks through: the session each carries, its message budget, its
//! liveness (login and idle timeouts) and whether its queue can take pose ticks now.

use std::time::{Duration, Instant};

use super::ids::{ConnId, ConnMap, SessionId};
use super::refusal::Refusal;
use crate::clock::TokenBucket;

/// One connection's state in the hub.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Set by a successful login.
    pub session: Option<SessionId>,
    bucket: TokenBucket,
    /// When the connection was accepted: the login timeout counts from here.
    opened: Instant,
    /// Last message of any kind, for the idle timeout.
    last_seen: Instant,
    /// The socket's queue is over its soft limit: pose ticks are skipped until it drains.
    pub backlogged: bool,
}

/// Every connection the hub knows, and the limits that apply to each.
#[derive(Debug)]
pub(crate) struct Conns {
    map: ConnMap<Conn>,
    rate: f64,
    burst: f64,
    login_timeout: Duration,
    idle_timeout: Duration,
}

impl Conns {
    pub fn new(rate: f64, burst: f64, login_timeout: Duration, idle_timeout: Duration) -> Self {
        Conns {
            map: ConnMap::default(),
            rate,
            burst,
            login_timeout,
            idle_timeout,
        }
    }

    /// A connection accepted at `since` whose transport is now known.
    pub fn open(&mut self, id: ConnId, since: Instant, now: Instant) {
        self.map.insert(
            id,
            Conn {
                session: None,
                bucket: TokenBucket::new(now, self.burst),
                opened: since,
                last_seen: now,
                backlogged: false,
            },
        );
    }

    /// Forgets a connection.
    pub fn close(&mut self, id: ConnId) -> Option<Conn> {
        self.map.remove(id)
    }

    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.map.get(id)
    }

    pub fn get_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.map.get_mut(id)
    }

    /// The connection sent a message at `now`: it is alive.
    pub fn heard(&mut self, id: ConnId, now: Instant) -> Option<&mut Conn> {
        let conn = self.map.get_mut(id)?;
        conn.last_seen = now;
        Some(conn)
    }

    /// Takes a message's token from the connection's bucket; false means rate limited.
    pub fn take_token(&mut self, id: ConnId, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        self.map
            .get_mut(id)
            .is_some_and(|conn| conn.bucket.take(now, rate, burst))
    }

    /// The configured message rate, for the 429 text.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether pose ticks can be queued to the connection now.
    pub fn reachable(&self, id: ConnId) -> bool {
        self.map.get(id).is_some_and(|conn| !conn.backlogged)
    }

    /// Connections past their login or idle timeout at `now`, with the refusal each gets.
    pub fn expired(&self, now: Instant) -> Vec<(ConnId, Refusal)> {
        self.map
            .iter()
            .filter_map(|(id, conn)| {
                let refusal = match conn.session {
                    None if now.saturating_duration_since(conn.opened) >= self.login_timeout => {
                        Refusal::LoginTimeout {
                            after: self.login_timeout,
                        }
                    }
                    Some(_)
                        if now.saturating_duration_since(conn.last_seen) >= self.idle_timeout =>
                    {
                        Refusal::IdleTimeout {
                            after: self.idle_timeout,
                        }
                    }
                    _ => return None,
                };
                Some((id, refusal))
            })
            .collect()
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Every connection with its state.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.map.iter()
    }

    /// Forgets every connection, returning their ids.
    pub fn drain(&mut self) -> Vec<ConnId> {
        self.map.drain().map(|(id, _)| id).collect()
    }
}
