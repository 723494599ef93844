//! The connections the hub talks through: the session each carries, its message budgets, its
//! liveness (login and idle timeouts) and whether its queue can take pose ticks now.
//!
//! Budgets bound work, not just replies: a frame is charged before it is parsed, by its size.
//! Transforms have their own, larger bucket (a 144 Hz headset fits), and what they cannot pay
//! for is dropped without a reply: poses are coalesced, so a dropped one is superseded anyway.
//! A message the message bucket cannot pay for is dropped too, and the client hears one 429
//! per second at most. Either way the event loop stops reading the socket until the bucket
//! refills, so a flood meets TCP backpressure instead of costing the server its reading.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::ids::{ConnId, ConnMap, SessionId};
use super::refusal::Refusal;
use crate::clock::TokenBucket;
use crate::config::Config;

/// Bytes of a message one token pays for: a 64 KiB message costs 16 tokens, so a flood of
/// the largest, costliest-to-parse messages is held to a sixteenth of the message rate.
pub const TOKEN_BYTES: usize = 4096;

/// Gap between two 429 replies to one connection.
const NOTICE_GAP: Duration = Duration::from_secs(1);

/// One connection's state in the hub.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Set by a successful login.
    pub session: Option<SessionId>,
    /// The peer's address, for per-address limits and logs.
    pub ip: IpAddr,
    messages: TokenBucket,
    transforms: TokenBucket,
    /// When the last 429 went out.
    last_notice: Option<Instant>,
    /// When the connection was accepted: the login timeout counts from here.
    opened: Instant,
    /// Last message of any kind, for the idle timeout.
    last_seen: Instant,
    /// The socket's queue is over its soft limit: pose ticks are skipped until it drains.
    pub backlogged: bool,
}

/// What charging a frame to its bucket decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Paid for: handle it.
    Granted,
    /// The connection is gone: drop the frame.
    Dropped,
    /// Over budget: drop the frame, answer 429 if `notify` (never for a transform), and stop
    /// reading the connection until `until`.
    Limited { notify: bool, until: Instant },
}

/// The per-connection limits, from the config.
#[derive(Debug, Clone, Copy)]
struct Limits {
    rate: f64,
    burst: f64,
    transform_rate: f64,
    transform_burst: f64,
    login_timeout: Duration,
    /// Zero: no idle timeout.
    idle_timeout: Duration,
}

/// Every connection the hub knows, and the limits that apply to each.
#[derive(Debug)]
pub(crate) struct Conns {
    map: ConnMap<Conn>,
    limits: Limits,
}

impl Conns {
    pub fn new(config: &Config) -> Self {
        Conns {
            map: ConnMap::default(),
            limits: Limits {
                rate: config.rate_limit,
                burst: config.burst,
                transform_rate: config.transform_rate,
                transform_burst: config.transform_burst,
                login_timeout: config.login_timeout,
                idle_timeout: config.idle_timeout,
            },
        }
    }

    /// A connection accepted at `since` whose transport is now known.
    pub fn open(&mut self, id: ConnId, ip: IpAddr, since: Instant, now: Instant) {
        self.map.insert(
            id,
            Conn {
                session: None,
                ip,
                messages: TokenBucket::new(now, self.limits.burst),
                transforms: TokenBucket::new(now, self.limits.transform_burst),
                last_notice: None,
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

    /// The connection sent a frame at `now`: it is alive.
    pub fn heard(&mut self, id: ConnId, now: Instant) -> Option<&mut Conn> {
        let conn = self.map.get_mut(id)?;
        conn.last_seen = now;
        Some(conn)
    }

    /// Charges a message (anything but a transform) of `bytes` to the connection's message
    /// bucket: one token per started [`TOKEN_BYTES`], so the budget bounds the bytes parsed as
    /// well as the messages.
    pub fn charge_message(&mut self, id: ConnId, now: Instant, bytes: usize) -> Charge {
        let Limits { rate, burst, .. } = self.limits;
        let Some(conn) = self.map.get_mut(id) else {
            return Charge::Dropped;
        };
        let cost = bytes.div_ceil(TOKEN_BYTES).max(1) as f64;
        if conn.messages.take_n(now, rate, burst, cost) {
            return Charge::Granted;
        }
        let notify = conn
            .last_notice
            .is_none_or(|at| now.saturating_duration_since(at) >= NOTICE_GAP);
        if notify {
            conn.last_notice = Some(now);
        }
        let until = now + conn.messages.wait(now, rate, burst);
        Charge::Limited { notify, until }
    }

    /// Charges a transform to the connection's transform bucket. One over budget is dropped
    /// without a reply, and the connection is not read until half the burst is back: reading
    /// and dropping a flood would cost the server as much as handling it.
    pub fn charge_transform(&mut self, id: ConnId, now: Instant) -> Charge {
        let Limits {
            transform_rate: rate,
            transform_burst: burst,
            ..
        } = self.limits;
        let Some(conn) = self.map.get_mut(id) else {
            return Charge::Dropped;
        };
        if conn.transforms.take(now, rate, burst) {
            return Charge::Granted;
        }
        let until = now + conn.transforms.wait_for(now, rate, burst, burst / 2.0);
        Charge::Limited {
            notify: false,
            until,
        }
    }

    /// The configured message rate, for the 429 text.
    pub fn rate(&self) -> f64 {
        self.limits.rate
    }

    /// Whether pose ticks can be queued to the connection now.
    pub fn reachable(&self, id: ConnId) -> bool {
        self.map.get(id).is_some_and(|conn| !conn.backlogged)
    }

    /// Connections past their login or idle timeout at `now`, with the refusal each gets.
    pub fn expired(&self, now: Instant) -> Vec<(ConnId, Refusal)> {
        let Limits {
            login_timeout,
            idle_timeout,
            ..
        } = self.limits;
        self.map
            .iter()
            .filter_map(|(id, conn)| {
                let refusal = match conn.session {
                    None if now.saturating_duration_since(conn.opened) >= login_timeout => {
                        Refusal::LoginTimeout {
                            after: login_timeout,
                        }
                    }
                    Some(_)
                        if !idle_timeout.is_zero()
                            && now.saturating_duration_since(conn.last_seen) >= idle_timeout =>
                    {
                        Refusal::IdleTimeout {
                            after: idle_timeout,
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_empty_bucket_limits_with_one_notice_per_second() {
        let config = Config {
            rate_limit: 10.0,
            burst: 2.0,
            transform_rate: 100.0,
            transform_burst: 1.0,
            ..Config::default()
        };
        let mut conns = Conns::new(&config);
        let now = Instant::now();
        let id = ConnId::new(0, 0);
        conns.open(id, IpAddr::from([127, 0, 0, 1]), now, now);
        assert_eq!(conns.charge_message(id, now, 10), Charge::Granted);
        assert_eq!(conns.charge_message(id, now, 10), Charge::Granted);
        let limited = |charge: Charge| match charge {
            Charge::Limited { notify, until } => (notify, until),
            other => panic!("{other:?}"),
        };
        let (notify, until) = limited(conns.charge_message(id, now, 10));
        assert!(notify);
        assert!(until.duration_since(now).abs_diff(100 * MS) < MS / 1000);
        let later = now + 50 * MS;
        let (notify, until) = limited(conns.charge_message(id, later, 10));
        assert!(!notify, "the second refusal within a second is silent");
        assert!(until.duration_since(later).abs_diff(50 * MS) < MS / 1000);
        assert_eq!(
            conns.charge_message(id, now + 100 * MS, 10),
            Charge::Granted
        );
        // A 64 KiB message costs 16 tokens, taken as the whole burst of 2 here.
        let later = now + 2000 * MS;
        assert!(matches!(
            conns.charge_message(id, later, 64 * 1024),
            Charge::Granted
        ));
        assert!(matches!(
            conns.charge_message(id, later, 64 * 1024),
            Charge::Limited { .. }
        ));
        assert_eq!(conns.charge_transform(id, now), Charge::Granted);
        let (notify, until) = limited(conns.charge_transform(id, now));
        assert!(!notify, "a transform over budget is dropped without a word");
        assert!(
            until > now,
            "and the connection paused until some budget is back"
        );
        assert_eq!(conns.charge_transform(id, now + 10 * MS), Charge::Granted);
    }
}
