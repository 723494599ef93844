//! Accounts in a cluster (`--redis`): a registered account is the cluster's, not a node's.
//! Redis keeps them all (`roomcast:accounts`, see `services/redis_scripts.rs`), and every node
//! holds all of them in its accounts table, so the rules of `lifecycle.rs` (a registered
//! name needs its password, no guest may take it, register refuses a taken name) hold on
//! every node without asking Redis at each login.
//!
//! - **Loading.** Each time the bridge (re)connects it subscribes to the announcements, then
//!   reads every account ([`ClusterIn::Accounts`](super::cluster::ClusterIn::Accounts)).
//!   A record newer than the one held replaces it: the cluster's account wins over what this
//!   node's store had. Accounts this node holds that Redis lacks (its store's, from before it
//!   joined the cluster, or ones a Redis without persistence lost) are offered back: Redis
//!   adds each only if the name is still free there.
//! - **Registering.** The name is reserved and the password hashed as on one node; then one
//!   script registers the account if no node has the name registered or logged in and the
//!   cluster holds fewer than `--max-accounts`. The client gets 201 only once Redis kept it,
//!   409 when another node was first, 503 while Redis is unreachable.
//! - **A password change** is kept in Redis before its 200.
//! - **Announcements.** Every change is published; each node, this one included, applies
//!   it if it is newer than what it holds (records carry a version Redis raises).
//! - **The store** (`--data-dir`) keeps, as on one node, the accounts registered or changed
//!   through this node; it is what the node offers back at its next start.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::{json, Map};

use super::cluster::{AccountRecord, AccountSaved, ClusterOut, Op};
use super::ids::ConnId;
use super::lifecycle::{ACCOUNT_CREATED, PASSWORD_CHANGED};
use super::outbox::Record;
use super::{Hub, Refusal};
use crate::protocol::{object, Code, UserName};

/// Accounts offered to Redis per request: a few hundred scripts in one pipeline, and a
/// store of 100,000 accounts is a few hundred requests, far from filling the queue.
const OFFER_BATCH: usize = 256;

impl Hub {
    /// A registration's (`change` false) or a password change's new hash is made: Redis is
    /// asked to keep it. A new name stays reserved here until Redis answers.
    pub(super) fn cluster_keep_account(
        &mut self,
        now: Instant,
        conn: ConnId,
        user: UserName,
        phc: String,
        change: bool,
    ) {
        let (folded, name) = (user.folded(), user.as_str().to_owned());
        let op = self.start_op(
            now,
            Op::Account {
                conn,
                user,
                phc: phc.clone(),
                change,
            },
        );
        self.cluster_out(match change {
            false => ClusterOut::Register {
                op,
                folded,
                name,
                phc,
                max: self.config.max_accounts,
            },
            true => ClusterOut::SetPassword {
                op,
                folded,
                name,
                phc,
            },
        });
    }

    /// Redis answered a registration or a password change.
    pub(super) fn account_saved(&mut self, now: Instant, id: u64, outcome: AccountSaved) {
        let Some(Op::Account {
            conn,
            user,
            phc,
            change,
        }) = self.finish_op(id)
        else {
            return;
        };
        let folded = user.folded();
        let detail = match change {
            true => Map::new(),
            false => object(json!({ "user": user.as_str() })),
        };
        let refusal = match outcome {
            AccountSaved::Saved { version } => {
                let name = user.as_str().to_owned();
                // Its announcement may have come first, or a newer change after it.
                self.accounts.apply(name.clone(), phc.clone(), version);
                self.accounts.release(&folded);
                if self.persist {
                    // A password change through this node keeps the account in its store
                    // even if it was registered elsewhere.
                    self.outbox.persist(Record::Account {
                        name: name.clone(),
                        phc: phc.clone(),
                    });
                    if change {
                        self.outbox.persist(Record::Password { name, phc });
                    }
                }
                if !change && self.logins.note(now) {
                    log::info!("{} registered (in the cluster)", user.as_str());
                }
                if self.conns.get(conn).is_some() {
                    match change {
                        true => self.reply(now, conn, Code::Ok, PASSWORD_CHANGED, &detail),
                        false => self.reply(now, conn, Code::Created, ACCOUNT_CREATED, &detail),
                    }
                }
                return;
            }
            AccountSaved::Taken if !change => Refusal::NameRegistered {
                user: user.as_str().to_owned(),
            },
            AccountSaved::Full if !change => Refusal::AccountLimit {
                max: self.config.max_accounts,
            },
            // Not answers a password change gets: Redis did not keep it.
            AccountSaved::Taken | AccountSaved::Full => Refusal::ClusterDown,
        };
        if !change {
            self.accounts.release(&folded);
        }
        if self.conns.get(conn).is_some() {
            self.refuse(now, conn, refusal, &detail);
        }
    }

    /// Redis could not be asked (unreachable, its queue full, or too slow): nothing was
    /// kept for sure, and the client is told 503. (Redis may have kept it after all; the
    /// announcement then brings it, and the name is registered.)
    pub(super) fn account_failed(
        &mut self,
        now: Instant,
        conn: ConnId,
        user: &UserName,
        change: bool,
    ) {
        let detail = match change {
            true => Map::new(),
            false => {
                self.accounts.release(&user.folded());
                object(json!({ "user": user.as_str() }))
            }
        };
        if self.conns.get(conn).is_some() {
            self.refuse(now, conn, Refusal::ClusterDown, &detail);
        }
    }

    /// An account announced by a node, or read from Redis: applied if newer than the one
    /// held. Returns its folded name when it is a valid one.
    pub(super) fn learn_account(&mut self, account: AccountRecord) -> Option<String> {
        let Ok(user) = UserName::parse(&account.name) else {
            log::warn!(
                "Redis holds an account with an invalid name ({:?}): ignored",
                account.name
            );
            return None;
        };
        if account.phc.is_empty() {
            return None;
        }
        let folded = user.folded();
        self.accounts
            .apply(account.name, account.phc, account.version);
        Some(folded)
    }

    /// Every account Redis holds, read as the bridge (re)connected: applied, and the ones
    /// this node holds that Redis lacks are offered back.
    pub(super) fn accounts_loaded(&mut self, accounts: Vec<AccountRecord>) {
        let count = accounts.len();
        let mut seen = HashSet::with_capacity(count);
        for account in accounts {
            if let Some(folded) = self.learn_account(account) {
                seen.insert(folded);
            }
        }
        let offers: Vec<(String, AccountRecord)> = self
            .accounts
            .iter()
            .filter(|(folded, _)| !seen.contains(*folded))
            .map(|(folded, account)| {
                let record = AccountRecord {
                    name: account.name.clone(),
                    phc: account.phc.clone(),
                    version: account.version.max(1),
                };
                (folded.clone(), record)
            })
            .collect();
        if !offers.is_empty() {
            log::info!(
                "{} accounts held here are not in Redis: offered to the cluster",
                offers.len()
            );
        }
        log::debug!("{count} accounts read from Redis");
        let mut offers = offers.into_iter().peekable();
        while offers.peek().is_some() {
            let accounts = offers.by_ref().take(OFFER_BATCH).collect();
            self.cluster_out(ClusterOut::OfferAccounts { accounts });
        }
    }
}
