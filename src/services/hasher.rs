//! The password hashing pool: Argon2id in PHC strings, on a few worker threads fed by a bounded
//! queue, because one hash costs tens of milliseconds and 19 MiB by design, which the event loop
//! cannot spend.
//!
//! A login or a registration becomes a [`Job`] with an id the caller picks (a connection's, say);
//! [`Hasher::submit`] queues it or answers [`Busy`] at once, and a worker later calls `deliver(id,
//! outcome)`. Capacity is explicit: at most `workers` hashes run at once, at most `queue` wait,
//! so a burst of logins costs bounded memory and is refused rather than queued without end.

use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::Zeroizing;

use crate::quiet::Tally;

/// Largest memory cost (KiB) of a stored hash that is verified: a PHC string read from disk
/// must not be able to make a worker allocate gigabytes. 1 GiB is 50 times the default.
const MAX_VERIFY_M_COST: u32 = 1024 * 1024;
/// Largest time cost of a stored hash that is verified, for the same reason (default: 2).
const MAX_VERIFY_T_COST: u32 = 64;
/// Largest parallelism of a stored hash that is verified (default: 1).
const MAX_VERIFY_P_COST: u32 = 64;
/// A worker that had no job for this long gives its argon2 memory back (19 MiB each with the
/// default costs).
const RELEASE_MEMORY_AFTER: Duration = Duration::from_secs(30);
/// What an unknown user's password is checked against; never a real password's hash.
const DUMMY_PASSWORD: &[u8] = b"roomcast: no such user";
/// The dummy hash's salt: fixed, since it protects nothing and needs no randomness.
const DUMMY_SALT: &[u8] = b"roomcast-dummy-salt";

/// How many hashes may run and wait, and how costly each one is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HasherConfig {
    /// Worker threads, each hashing one password at a time with `params.m_cost()` KiB of memory;
    /// 0 is taken as 1.
    pub workers: usize,
    /// Jobs that may wait for a worker; one more is refused with [`Busy`].
    pub queue: usize,
    /// Argon2 costs for new hashes (verification uses the costs stored in each PHC string).
    pub params: Params,
}

impl Default for HasherConfig {
    /// The argon2 crate's recommended costs (m = 19 MiB, t = 2, p = 1: OWASP's Argon2id
    /// minimum), two workers, and room for 64 waiting jobs.
    fn default() -> Self {
        HasherConfig {
            workers: 2,
            queue: 64,
            params: Params::DEFAULT,
        }
    }
}

impl HasherConfig {
    /// The cheapest costs argon2 allows (8 KiB, one pass): for tests, where hashing must be
    /// quick and its strength does not matter. Never for a server that stores real passwords.
    pub fn cheap(workers: usize, queue: usize) -> Self {
        HasherConfig {
            workers,
            queue,
            params: cheap_params(),
        }
    }
}

/// Work for the pool. The password is wiped from memory once the job is done or dropped.
pub enum Job {
    /// Make a PHC string for a new password (registration, password change).
    Hash {
        /// The password as the user typed it.
        password: String,
    },
    /// Check a login's password against the account's PHC string; `None` for a user name with
    /// no account, which is checked against a dummy hash of the same cost, so that the answer
    /// takes as long as for a real account and does not tell which names exist.
    Verify {
        /// The password as the user typed it.
        password: String,
        /// The account's stored PHC string, if the account exists.
        phc: Option<String>,
    },
}

impl fmt::Debug for Job {
    /// Never prints a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Hash { .. } => f.write_str("Hash { password: <hidden> }"),
            Job::Verify { phc, .. } => write!(
                f,
                "Verify {{ password: <hidden>, account: {} }}",
                phc.is_some()
            ),
        }
    }
}

/// What a job came to, handed to `deliver` with the job's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The PHC string of a [`Job::Hash`], to store with the account.
    Hashed(Result<String, HashError>),
    /// Whether a [`Job::Verify`]'s password matched; false for an unknown user and for a
    /// stored PHC string that cannot be read.
    Verified(bool),
}

/// Why a password could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    /// The operating system gave no random bytes for the salt.
    #[error("no random salt from the operating system: {0}")]
    Salt(String),
    /// argon2 refused the password or the parameters (a password over 4 GiB, say).
    #[error("argon2 could not hash the password: {0}")]
    Argon2(argon2::password_hash::Error),
}

/// The queue is full: the job was not taken and `deliver` will not be called for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("password hashing is busy: too many logins at once, try again shortly")]
pub struct Busy;

/// The pool: a bounded queue and its worker threads. Dropping it is [`Hasher::shutdown`].
pub struct Hasher {
    /// `None` once shut down, which closes the queue.
    queue: Option<SyncSender<Task>>,
    stopping: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl Hasher {
    /// Starts `config.workers` threads. `deliver(id, outcome)` is called on a worker thread for
    /// every accepted job (except those still waiting at shutdown, which are dropped); it
    /// should only hand the outcome over, e.g. push it to a queue and wake the event loop.
    /// A panic in `deliver` is caught and logged, and the worker goes on.
    pub fn start(
        config: HasherConfig,
        deliver: impl Fn(u64, Outcome) + Send + Sync + 'static,
    ) -> io::Result<Hasher> {
        let (sender, receiver) = mpsc::sync_channel(config.queue);
        let shared = Arc::new(Shared {
            receiver: Mutex::new(receiver),
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, config.params),
            dummy: OnceLock::new(),
            bad_hashes: Mutex::new(Tally::new(
                "stored password hashes that cannot be checked",
                log::Level::Error,
            )),
            deliver: Box::new(deliver),
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let mut hasher = Hasher {
            queue: Some(sender),
            stopping: Arc::clone(&stopping),
            workers: Vec::new(),
        };
        for i in 0..config.workers.max(1) {
            let shared = Arc::clone(&shared);
            let stopping = Arc::clone(&stopping);
            let worker = thread::Builder::new()
                .name(format!("roomcast-hash-{i}"))
                .spawn(move || shared.work(&stopping))?;
            // On an early return above, `hasher` is dropped, which stops the workers already
            // started.
            hasher.workers.push(worker);
        }
        Ok(hasher)
    }

    /// Queues `job` without blocking; [`Busy`] when the queue is full (or the pool is shutting
    /// down), in which case the job is dropped and its password wiped.
    pub fn submit(&self, id: u64, job: Job) -> Result<(), Busy> {
        let task = Task::new(id, job);
        let queue = self.queue.as_ref().ok_or(Busy)?;
        match queue.try_send(task) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// Stops the pool: jobs still waiting are dropped undelivered, jobs being hashed finish and
    /// are delivered, and the workers are joined, so this takes at most about one hash.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// First half of a shutdown: no job is taken or started from now on.
    fn close(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Closing the queue wakes idle workers; busy ones see `stopping` after their job.
        self.queue = None;
    }

    fn stop(&mut self) {
        self.close();
        for worker in self.workers.drain(..) {
            if worker.join().is_err() {
                log::error!("a password hashing worker panicked");
            }
        }
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A job as queued: its password in memory that is zeroed when the task is dropped, wherever
/// that happens (done, refused, or discarded at shutdown).
struct Task {
    id: u64,
    password: Zeroizing<String>,
    /// `None` for a hash; `Some(phc)` for a verify.
    verify: Option<Option<String>>,
}

impl Task {
    fn new(id: u64, job: Job) -> Task {
        let (password, verify) = match job {
            Job::Hash { password } => (password, None),
            Job::Verify { password, phc } => (password, Some(phc)),
        };
        Task {
            id,
            password: Zeroizing::new(password),
            verify,
        }
    }
}

/// What the workers share.
struct Shared {
    receiver: Mutex<Receiver<Task>>,
    /// Argon2id with the configured costs, for new hashes and the dummy.
    argon2: Argon2<'static>,
    /// The dummy PHC string, made once, when an unknown user is first checked; `None` if it
    /// could not be made (unusable parameters): unknown users are then refused at once.
    dummy: OnceLock<Option<String>>,
    /// Stored hashes that cannot be checked: one per login attempt on a damaged account.
    bad_hashes: Mutex<Tally>,
    deliver: Box<dyn Fn(u64, Outcome) + Send + Sync>,
}

impl Shared {
    fn work(&self, stopping: &AtomicBool) {
        lower_priority();
        // Taken at the first job, given back after a quiet spell: a server nobody logs in to
        // holds no argon2 memory.
        let mut scratch = Scratch::for_params(self.argon2.params());
        loop {
            // The lock is held only while waiting for a task, never while hashing. Nothing
            // panics while holding it, and a poisoned receiver is still sound to use.
            let task = self
                .receiver
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .recv_timeout(RELEASE_MEMORY_AFTER);
            let task = match task {
                Ok(task) => task,
                Err(RecvTimeoutError::Timeout) => {
                    scratch.release();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return, // closed and empty: shutdown
            };
            if stopping.load(Ordering::SeqCst) {
                continue; // shutdown: drop (and wipe) what is still queued
            }
            let outcome = self.run(&task, &mut scratch);
            let id = task.id;
            drop(task);
            if panic::catch_unwind(AssertUnwindSafe(|| (self.deliver)(id, outcome))).is_err() {
                log::error!("the hasher's deliver callback panicked for job {id}");
            }
        }
    }

    fn run(&self, task: &Task, scratch: &mut Scratch) -> Outcome {
        let password = task.password.as_bytes();
        match &task.verify {
            None => Outcome::Hashed(hash(&self.argon2, password, scratch)),
            Some(Some(phc)) => match verify(password, phc, scratch) {
                Ok(matched) => Outcome::Verified(matched),
                Err(why) => {
                    let mut bad_hashes = self
                        .bad_hashes
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if bad_hashes.note(Instant::now()) {
                        log::error!(
                            "a stored password hash cannot be checked: {why}; login refused"
                        );
                    }
                    Outcome::Verified(false)
                }
            },
            Some(None) => {
                if let Some(dummy) = self.dummy(scratch) {
                    // Same cost as a real verify; the answer is no whatever it says.
                    let _ = verify(password, dummy, scratch);
                }
                Outcome::Verified(false)
            }
        }
    }

    /// The dummy hash, made by the first worker that needs it: the first unknown user's
    /// answer takes two hashes' time, every later one one.
    fn dummy(&self, scratch: &mut Scratch) -> Option<&str> {
        self.dummy
            .get_or_init(|| dummy_phc(&self.argon2, scratch))
            .as_deref()
    }
}

/// A worker's argon2 memory (19 MiB with the default costs), kept from one hash to the next.
/// Allocating it per hash would cost page faults and zeroing every time, and glibc, seeing
/// blocks that large come and go, raises its mmap threshold and keeps them all: hundreds of
/// MiB of RSS after a burst of logins.
#[derive(Default)]
struct Scratch {
    /// Empty until a hash needs it, and again after [`Scratch::release`].
    blocks: Vec<Block>,
    /// The blocks the configured costs need: what is kept.
    kept: usize,
}

impl Scratch {
    /// Memory for hashes with `params`, allocated when first used.
    fn for_params(params: &Params) -> Scratch {
        Scratch {
            blocks: Vec::new(),
            kept: params.block_count(),
        }
    }

    /// Runs `hash` with memory for `params`: this worker's own when the configured costs
    /// cover it, else memory of its own, freed after (an older, costlier hash).
    fn with<T>(&mut self, params: &Params, hash: impl FnOnce(&mut [Block]) -> T) -> T {
        let count = params.block_count();
        if count > self.kept {
            return hash(&mut vec![Block::default(); count]);
        }
        if self.blocks.len() < self.kept {
            self.blocks = vec![Block::default(); self.kept];
        }
        hash(&mut self.blocks[..count])
    }

    /// Gives the memory back until the next hash.
    fn release(&mut self) {
        self.blocks = Vec::new();
    }
}

/// Hashing yields to the event loop when they share a core: a login may wait a few
/// milliseconds longer, a pose or a ping should not. Linux applies nice values per thread.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread, with no pointers involved.
    unsafe {
        let tid = libc::gettid();
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) != 0 {
            log::debug!(
                "cannot lower the hashing thread's priority: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// A new PHC string for `password`, with a random 16-byte salt from the OS.
fn hash(argon2: &Argon2<'_>, password: &[u8], scratch: &mut Scratch) -> Result<String, HashError> {
    let mut salt = [0u8; Salt::RECOMMENDED_LENGTH];
    OsRng
        .try_fill_bytes(&mut salt)
        .map_err(|err| HashError::Salt(err.to_string()))?;
    phc_for(argon2, password, &salt, scratch).map_err(HashError::Argon2)
}

/// The PHC string of `password` with `salt`, as `PasswordHasher::hash_password` writes it,
/// computed in `scratch`.
fn phc_for(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &[u8],
    scratch: &mut Scratch,
) -> Result<String, argon2::password_hash::Error> {
    let params = argon2.params();
    let salt_string = SaltString::encode_b64(salt)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(output_len, |out| {
        scratch
            .with(params, |blocks| {
                argon2.hash_password_into_with_memory(password, salt, out, blocks)
            })
            .map_err(Into::into)
    })?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params)?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches `phc`, with the algorithm and costs written in `phc`; `Err`
/// says why a stored string cannot be checked: it does not parse, or its costs are beyond
/// reason. What `PasswordVerifier::verify_password` does, in `scratch`.
fn verify(password: &[u8], phc: &str, scratch: &mut Scratch) -> Result<bool, String> {
    let parsed = PasswordHash::new(phc).map_err(|err| format!("it is not a PHC string ({err})"))?;
    let params =
        Params::try_from(&parsed).map_err(|err| format!("its parameters are unusable ({err})"))?;
    if params.m_cost() > MAX_VERIFY_M_COST
        || params.t_cost() > MAX_VERIFY_T_COST
        || params.p_cost() > MAX_VERIFY_P_COST
    {
        return Err(format!(
            "it asks for m={} KiB, t={}, p={}, beyond what is verified",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Err("it has no salt or no hash".to_owned());
    };
    let algorithm = Algorithm::try_from(parsed.algorithm)
        .map_err(|err| format!("its algorithm is not argon2 ({err})"))?;
    let version = match parsed.version {
        Some(version) => {
            Version::try_from(version).map_err(|err| format!("its version is unknown ({err})"))?
        }
        None => Version::default(),
    };
    let mut salt_buf = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buf)
        .map_err(|err| format!("its salt is unusable ({err})"))?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = Output::init_with(expected.len(), |out| {
        scratch
            .with(&params, |blocks| {
                argon2.hash_password_into_with_memory(password, salt, out, blocks)
            })
            .map_err(Into::into)
    })
    .map_err(|err| format!("argon2 cannot verify it ({err})"))?;
    // `Output`'s equality takes the same time wherever the first difference is.
    Ok(computed == expected)
}

/// The PHC string unknown users are checked against: the configured costs, a fixed salt.
fn dummy_phc(argon2: &Argon2<'_>, scratch: &mut Scratch) -> Option<String> {
    match phc_for(argon2, DUMMY_PASSWORD, DUMMY_SALT, scratch) {
        Ok(phc) => Some(phc),
        Err(err) => {
            log::error!(
                "cannot make the dummy password hash ({err}): unknown users are refused at once"
            );
            None
        }
    }
}

/// argon2's minimum costs: 8 KiB, one pass, one lane.
fn cheap_params() -> Params {
    match Params::new(Params::MIN_M_COST, Params::MIN_T_COST, 1, None) {
        Ok(params) => params,
        // Unreachable: argon2's own minimums are valid together (8 KiB >= 8 x 1 lane).
        Err(_) => Params::DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::Receiver;
    use std::time::Duration;

    /// A pool whose outcomes arrive on a channel.
    fn pool(config: HasherConfig) -> (Hasher, Receiver<(u64, Outcome)>) {
        let (send, outcomes) = mpsc::channel();
        let send = Mutex::new(send);
        let hasher = Hasher::start(config, move |id, outcome| {
            let _ = send.lock().unwrap().send((id, outcome));
        })
        .unwrap();
        (hasher, outcomes)
    }

    fn next(outcomes: &Receiver<(u64, Outcome)>) -> (u64, Outcome) {
        outcomes.recv_timeout(Duration::from_secs(60)).unwrap()
    }

    fn hash_of(hasher: &Hasher, outcomes: &Receiver<(u64, Outcome)>, password: &str) -> String {
        hasher
            .submit(
                0,
                Job::Hash {
                    password: password.into(),
                },
            )
            .unwrap();
        match next(outcomes) {
            (0, Outcome::Hashed(Ok(phc))) => phc,
            other => panic!("{other:?}"),
        }
    }

    fn verified(
        hasher: &Hasher,
        outcomes: &Receiver<(u64, Outcome)>,
        password: &str,
        phc: Option<&str>,
    ) -> bool {
        let job = Job::Verify {
            password: password.into(),
            phc: phc.map(str::to_owned),
        };
        hasher.submit(7, job).unwrap();
        match next(outcomes) {
            (7, Outcome::Verified(ok)) => ok,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_hash_verifies_its_password_and_no_other() {
        let (hasher, outcomes) = pool(HasherConfig::cheap(2, 8));
        let phc = hash_of(&hasher, &outcomes, "correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        assert_ne!(
            phc,
            hash_of(&hasher, &outcomes, "correct horse"),
            "a fresh salt every time"
        );
        assert!(verified(&hasher, &outcomes, "correct horse", Some(&phc)));
        assert!(!verified(&hasher, &outcomes, "correct hors", Some(&phc)));
        assert!(!verified(&hasher, &outcomes, "", Some(&phc)));
    }

    #[test]
    fn an_unknown_user_is_refused_after_a_dummy_hash_of_the_same_cost() {
        let (hasher, outcomes) = pool(HasherConfig::cheap(1, 8));
        assert!(!verified(&hasher, &outcomes, "whatever", None));
        let dummy = hasher_dummy(&HasherConfig::cheap(1, 1).params);
        assert!(
            !verified(
                &hasher,
                &outcomes,
                std::str::from_utf8(DUMMY_PASSWORD).unwrap(),
                None
            ),
            "even the dummy's own password is refused"
        );
        // The dummy is a real hash with the configured costs, so checking it costs what
        // checking a real account costs.
        let parsed = PasswordHash::new(&dummy).unwrap();
        let params = Params::try_from(&parsed).unwrap();
        let costs = |p: &Params| (p.m_cost(), p.t_cost(), p.p_cost());
        assert_eq!(costs(&params), costs(&cheap_params()));
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
    }

    fn hasher_dummy(params: &Params) -> String {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        dummy_phc(&argon2, &mut Scratch::default()).unwrap()
    }

    /// Also reports how long one hash takes with the recommended costs in this build.
    #[test]
    fn unknown_and_known_users_take_about_as_long_with_the_default_costs() {
        let (hasher, outcomes) = pool(HasherConfig {
            workers: 1,
            queue: 4,
            params: Params::DEFAULT,
        });
        // Once the worker is up (it makes the dummy hash first), time one hash.
        assert!(!verified(&hasher, &outcomes, "hunter2", None));
        let started = Instant::now();
        let phc = hash_of(&hasher, &outcomes, "hunter2");
        let hash_time = started.elapsed();
        let time = |phc: Option<&str>| {
            let started = Instant::now();
            verified(&hasher, &outcomes, "hunter2", phc);
            started.elapsed()
        };
        // Interleaved, so that both see the same allocator and machine load; medians of 3.
        let (mut known, mut unknown): (Vec<Duration>, Vec<Duration>) =
            (0..3).map(|_| (time(Some(&phc)), time(None))).unzip();
        known.sort();
        unknown.sort();
        let (known, unknown) = (known[1], unknown[1]);
        println!(
            "argon2id m=19 MiB t=2 p=1: hash {hash_time:?}, verify {known:?}, \
             unknown-user verify {unknown:?}"
        );
        // Generous: only a verify that skipped the hashing would be this much faster.
        assert!(unknown * 5 > known, "{unknown:?} vs {known:?}");
    }

    #[test]
    fn hashes_agree_with_the_argon2_crates_own_hasher_and_verifier() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, cheap_params());
        let mut scratch = Scratch::for_params(&cheap_params());
        // Same salt, same string, byte for byte.
        let salt = SaltString::encode_b64(b"sixteen byte sal").unwrap();
        let theirs = argon2.hash_password(b"pw", &salt).unwrap().to_string();
        let ours = phc_for(&argon2, b"pw", b"sixteen byte sal", &mut scratch).unwrap();
        assert_eq!(ours, theirs);
        // Ours verify with theirs, and a stored hash with other (larger) costs with ours.
        let fresh = hash(&argon2, b"pw", &mut scratch).unwrap();
        let parsed = PasswordHash::new(&fresh).unwrap();
        assert!(argon2.verify_password(b"pw", &parsed).is_ok());
        let costlier = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 2, 1, None).unwrap(),
        );
        let stored = costlier.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(verify(b"pw", &stored, &mut scratch), Ok(true));
        assert_eq!(verify(b"pv", &stored, &mut scratch), Ok(false));
        assert_eq!(
            scratch.blocks.len(),
            cheap_params().block_count(),
            "kept its size"
        );
        scratch.release();
        assert!(scratch.blocks.is_empty(), "given back");
        assert_eq!(
            verify(b"pw", &fresh, &mut scratch),
            Ok(true),
            "and taken again"
        );
    }

    #[test]
    fn a_stored_hash_that_does_not_parse_or_costs_too_much_does_not_verify() {
        let (hasher, outcomes) = pool(HasherConfig::cheap(1, 8));
        for phc in [
            "",
            "not a phc string",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ",
            "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=8,t=100000,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$scrypt$ln=16,r=8,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert!(!verified(&hasher, &outcomes, "pw", Some(phc)), "{phc}");
        }
    }

    #[test]
    fn a_full_queue_answers_busy_at_once() {
        // One worker, held inside `deliver` until the test lets it go (or 10 s pass).
        let (entered, in_deliver) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let (entered, gate) = (Mutex::new(entered), Mutex::new(gate));
        let hasher = Hasher::start(HasherConfig::cheap(1, 2), move |id, _| {
            let _ = entered.lock().unwrap().send(id);
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
        })
        .unwrap();
        let job = || Job::Hash {
            password: "pw".into(),
        };
        hasher.submit(1, job()).unwrap();
        assert_eq!(in_deliver.recv_timeout(Duration::from_secs(10)), Ok(1));
        // The worker is busy: two jobs fill the queue, the third is refused without waiting.
        hasher.submit(2, job()).unwrap();
        hasher.submit(3, job()).unwrap();
        let started = Instant::now();
        assert_eq!(hasher.submit(4, job()), Err(Busy));
        assert!(started.elapsed() < Duration::from_secs(1));
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        let mut ids: Vec<u64> = (0..2)
            .map(|_| in_deliver.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, [2, 3], "the refused job never runs");
        hasher.shutdown();
    }

    #[test]
    fn shutdown_finishes_the_running_job_drops_the_waiting_ones_and_joins() {
        let delivered = Arc::new(Mutex::new(Vec::new()));
        let (entered, in_deliver) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        let (entered, gate) = (Mutex::new(entered), Mutex::new(gate));
        let record = Arc::clone(&delivered);
        let hasher = Hasher::start(HasherConfig::cheap(1, 4), move |id, outcome| {
            let _ = entered.lock().unwrap().send(id);
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(10));
            record.lock().unwrap().push((id, outcome));
        })
        .unwrap();
        for id in 1..=3 {
            let job = Job::Verify {
                password: "pw".into(),
                phc: None,
            };
            hasher.submit(id, job).unwrap();
        }
        assert_eq!(in_deliver.recv_timeout(Duration::from_secs(10)), Ok(1));
        let mut hasher = hasher;
        // What `shutdown` does first, done before job 1 ends so that the order is certain.
        hasher.close();
        assert_eq!(
            hasher.submit(
                9,
                Job::Hash {
                    password: "pw".into()
                }
            ),
            Err(Busy),
            "no job is taken once shutting down"
        );
        release.send(()).unwrap();
        hasher.shutdown();
        assert_eq!(*delivered.lock().unwrap(), [(1, Outcome::Verified(false))]);
        assert_eq!(
            Arc::strong_count(&delivered),
            1,
            "every worker has ended and dropped the callback"
        );
    }

    #[test]
    fn a_panicking_callback_does_not_kill_the_worker() {
        let (send, outcomes) = mpsc::channel();
        let send = Mutex::new(send);
        let hasher = Hasher::start(HasherConfig::cheap(1, 4), move |id, outcome| {
            assert_ne!(id, 1, "the callback panics for job 1");
            let _ = send.lock().unwrap().send((id, outcome));
        })
        .unwrap();
        let job = || Job::Hash {
            password: "pw".into(),
        };
        hasher.submit(1, job()).unwrap();
        hasher.submit(2, job()).unwrap();
        assert!(matches!(next(&outcomes), (2, Outcome::Hashed(Ok(_)))));
    }

    #[test]
    fn jobs_never_show_their_password() {
        let job = Job::Verify {
            password: "s3cret".into(),
            phc: Some("$argon2id$...".into()),
        };
        let shown = format!("{job:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(shown, "Verify { password: <hidden>, account: true }");
    }
}
