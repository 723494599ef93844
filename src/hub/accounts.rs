//! Registered users: their names and password hashes as the hub knows them, registrations in
//! flight, and the throttle on failed logins.
//!
//! Passwords are never hashed here: the hub asks the hashing service through an output and
//! gets the result back as an input (see `lifecycle.rs`). This table only holds what those
//! answers are checked against.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failed logins, per name and per address, after which logins are refused for a while.
pub const MAX_FAILURES: u32 = 5;
/// How long a throttled name or address waits.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Names and addresses with recent failures the throttle remembers at most; past it, the
/// oldest windows are forgotten first (an attacker cannot grow the table without bound).
const MAX_TRACKED: usize = 100_000;

/// A registered user.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    /// The name as registered.
    pub name: String,
    /// The password's argon2id PHC string.
    pub phc: String,
    /// Its version in the cluster's Redis (cluster mode; see `cluster_accounts.rs`), 0 when
    /// only this node knows it: a record is applied only over an older one.
    pub version: u64,
}

/// Failures in the current window.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Accounts {
    /// By ASCII-lowercased name.
    by_name: HashMap<String, Account>,
    /// Registrations whose hash is being made: the name is taken meanwhile.
    pending: HashSet<String>,
    by_name_failures: HashMap<String, Failures>,
    by_ip_failures: HashMap<IpAddr, Failures>,
}

impl Accounts {
    /// The account of a folded name.
    pub fn get(&self, folded: &str) -> Option<&Account> {
        self.by_name.get(folded)
    }

    /// Registered, or being registered.
    pub fn is_taken(&self, folded: &str) -> bool {
        self.by_name.contains_key(folded) || self.pending.contains(folded)
    }

    /// Accounts held, registrations in flight included.
    pub fn len(&self) -> usize {
        self.by_name.len() + self.pending.len()
    }

    /// Holds the name while its password is hashed.
    pub fn reserve(&mut self, folded: String) {
        self.pending.insert(folded);
    }

    /// A registration that did not complete gives its name back.
    pub fn release(&mut self, folded: &str) {
        self.pending.remove(folded);
    }

    /// Adds (or, for a password change, replaces) an account.
    pub fn insert(&mut self, name: String, phc: String) {
        let folded = name.to_ascii_lowercase();
        self.pending.remove(&folded);
        self.by_name.insert(
            folded,
            Account {
                name,
                phc,
                version: 0,
            },
        );
    }

    /// Applies the cluster's record of an account if it is newer than the one held (an
    /// announcement and a reload may arrive in either order): whether it was applied.
    pub fn apply(&mut self, name: String, phc: String, version: u64) -> bool {
        let folded = name.to_ascii_lowercase();
        if self
            .by_name
            .get(&folded)
            .is_some_and(|a| a.version >= version)
        {
            return false;
        }
        self.pending.remove(&folded);
        self.by_name.insert(folded, Account { name, phc, version });
        true
    }

    /// Every account held, by folded name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Account)> {
        self.by_name.iter()
    }

    /// Whether logins for this name or from this address are refused now.
    pub fn throttled(&self, now: Instant, folded: &str, ip: IpAddr) -> bool {
        let locked = |failures: Option<&Failures>| {
            failures.is_some_and(|f| {
                f.count >= MAX_FAILURES && now.saturating_duration_since(f.since) < LOCKOUT
            })
        };
        locked(self.by_name_failures.get(folded)) || locked(self.by_ip_failures.get(&ip))
    }

    /// A wrong password for this name from this address.
    pub fn failed(&mut self, now: Instant, folded: &str, ip: IpAddr) {
        bump(&mut self.by_name_failures, folded.to_owned(), now);
        bump(&mut self.by_ip_failures, ip, now);
    }

    /// A right password: the name's failures are forgotten (the address's are not, so one
    /// good account does not reset an address that guesses others).
    pub fn succeeded(&mut self, folded: &str) {
        self.by_name_failures.remove(folded);
    }

    /// Forgets failure windows that ended by `now`.
    pub fn expire(&mut self, now: Instant) {
        let live = |f: &mut Failures| now.saturating_duration_since(f.since) < LOCKOUT;
        self.by_name_failures.retain(|_, f| live(f));
        self.by_ip_failures.retain(|_, f| live(f));
    }
}

fn bump<K: std::hash::Hash + Eq + Clone>(table: &mut HashMap<K, Failures>, key: K, now: Instant) {
    if table.len() >= MAX_TRACKED && !table.contains_key(&key) {
        let oldest = table
            .iter()
            .min_by_key(|(_, f)| f.since)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            table.remove(&oldest);
        }
    }
    let failures = table.entry(key).or_insert(Failures {
        count: 0,
        since: now,
    });
    if now.saturating_duration_since(failures.since) >= LOCKOUT {
        *failures = Failures {
            count: 0,
            since: now,
        };
    }
    failures.count += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_a_name_and_an_address_for_a_minute() {
        let now = Instant::now();
        let ip: IpAddr = [10, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 2].into();
        let mut accounts = Accounts::default();
        for _ in 0..MAX_FAILURES {
            assert!(!accounts.throttled(now, "alice", ip));
            accounts.failed(now, "alice", ip);
        }
        assert!(accounts.throttled(now, "alice", ip));
        assert!(
            accounts.throttled(now, "alice", other),
            "the name, from anywhere"
        );
        assert!(
            accounts.throttled(now, "bob", ip),
            "the address, for any name"
        );
        assert!(!accounts.throttled(now, "bob", other));
        let later = now + LOCKOUT;
        assert!(!accounts.throttled(later, "alice", ip), "a minute later");
        accounts.expire(later);
        assert!(accounts.by_name_failures.is_empty());
    }

    #[test]
    fn a_name_being_registered_is_taken_until_done_or_released() {
        let mut accounts = Accounts::default();
        accounts.reserve("alice".into());
        assert!(accounts.is_taken("alice"));
        accounts.release("alice");
        assert!(!accounts.is_taken("alice"));
        accounts.reserve("alice".into());
        accounts.insert("Alice".into(), "$argon2id$...".into());
        assert!(accounts.is_taken("alice"));
        assert_eq!(
            accounts.get("alice").map(|a| a.name.as_str()),
            Some("Alice")
        );
        assert_eq!(accounts.len(), 1);
    }

    #[test]
    fn the_clusters_records_apply_only_over_older_ones() {
        let mut accounts = Accounts::default();
        accounts.insert("alice".into(), "local".into());
        assert!(
            accounts.apply("Alice".into(), "v2".into(), 2),
            "over a local one"
        );
        assert!(
            !accounts.apply("alice".into(), "v1".into(), 1),
            "an older one"
        );
        assert!(
            !accounts.apply("alice".into(), "again".into(), 2),
            "the same one"
        );
        let alice = accounts
            .get("alice")
            .map(|a| (a.name.as_str(), a.phc.as_str()));
        assert_eq!(alice, Some(("Alice", "v2")));
        accounts.reserve("bob".into());
        assert!(accounts.apply("bob".into(), "b".into(), 1));
        assert_eq!(accounts.len(), 2, "bob's reservation became his account");
    }
}
