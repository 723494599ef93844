//! The store's database file: its schema and the steps that migrate it, the lock that keeps a
//! second roomcast off the directory, the settings SQLite must accept (a write-ahead log), and
//! what can go wrong opening it, each told as what to do about it ([`StoreError`]). The
//! writer that uses the file is in `store.rs`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

/// The database's file name inside the data directory.
pub const FILE_NAME: &str = "roomcast.db";
/// The file whose lock says a roomcast has the directory.
pub const LOCK_FILE_NAME: &str = "roomcast.lock";

/// Schema steps: `MIGRATIONS[i]` takes a database from `user_version` i to i + 1. A new version
/// appends a step; a step is never edited once released.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: accounts, rooms, events.
    "CREATE TABLE accounts (
         key TEXT PRIMARY KEY,      -- the name in ASCII lower case: names ignore case
         name TEXT NOT NULL,        -- the name as registered
         phc TEXT NOT NULL          -- argon2id PHC string
     ) WITHOUT ROWID;
     CREATE TABLE rooms (
         id INTEGER PRIMARY KEY,
         name TEXT NOT NULL UNIQUE,
         last_seq INTEGER NOT NULL, -- survives its events, so numbering resumes after a restart
         active REAL NOT NULL       -- time of its last event: the least active go first
     );
     CREATE TABLE events (
         id INTEGER PRIMARY KEY,    -- insertion order, which is time order: age pruning
         room INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         time REAL NOT NULL,
         body BLOB NOT NULL         -- the encoded event, byte for byte
     );
     CREATE UNIQUE INDEX events_by_room ON events (room, seq);",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long `open` waits for a lock held by another process (one that is shutting down).
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// Why the store cannot open, or cannot take a write. Messages name the file and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A setting out of range.
    #[error("store setting out of range: {0}")]
    Config(&'static str),
    /// The data directory's path names something else.
    #[error(
        "{path} is not a directory: the data directory must be one (it is created if missing)"
    )]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The data directory is missing and cannot be made.
    #[error("cannot create the data directory {path}: {source}; create it by hand or choose another data directory")]
    CreateDir {
        /// The path given.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The database cannot be opened or written (permissions, read-only file system).
    #[error("cannot open {path} for writing: {source}; check that it and its directory are writable by this user")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The database file exists but is empty: something truncated it, or a first start died
    /// before writing anything.
    #[error("{path} is an empty file, not a roomcast database: restore a backup, or delete it to start with an empty store")]
    Empty {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not SQLite at all.
    #[error("{path} is not an SQLite database ({source}): restore a backup, or move it away to start with an empty store")]
    NotADatabase {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// SQLite found damage, or a value of the wrong kind, in the file.
    #[error("{path} is damaged ({source}): restore a backup, or move it away to start with an empty store")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The lock file cannot be made or locked.
    #[error("cannot lock {path}: {source}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another process holds the database.
    #[error("{path} is in use by another process (another roomcast?): stop it, or choose another data directory")]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The database was written by a newer roomcast.
    #[error("{path} has schema version {found}, and this roomcast knows versions up to {known}: run the newer roomcast that wrote it, or choose another data directory")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// [`SCHEMA_VERSION`].
        known: i64,
    },
    /// The database is SQLite but not roomcast's.
    #[error("{path} is an SQLite database that roomcast did not create (schema version {found}, tables it does not know): choose another data directory")]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// SQLite would not use a write-ahead log, on which the durability promise rests.
    #[error("{path}: SQLite will not use a write-ahead log there (journal mode {mode:?}); put the data directory on a local file system")]
    NoWal {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// Any other SQLite failure (disk full, I/O error).
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the store's writer thread: {0}")]
    Spawn(io::Error),
    /// `submit`: the queue is full, the write is dropped; the writer is behind the disk.
    #[error("the store's write queue is full: the write is dropped")]
    Full,
    /// `submit`: the writer has stopped (shut down, or died); the write is dropped.
    #[error("the store's writer has stopped: the write is dropped")]
    Stopped,
    /// `shutdown`: the writer thread panicked.
    #[error("the store's writer thread panicked")]
    WriterPanicked,
}

/// Takes the directory's lock file, or says who has it.
pub(super) fn lock_directory(dir: &Path) -> Result<fs::File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StoreError::LockFile {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.join(FILE_NAME),
        }),
        Err(fs::TryLockError::Error(source)) => Err(StoreError::LockFile { path, source }),
    }
}

/// Connection settings and the schema check, before anything is read.
pub(super) fn prepare(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let sqlite = |err| classify(path, err);
    conn.busy_timeout(LOCK_WAIT).map_err(sqlite)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite)?;
    conn.set_prepared_statement_cache_capacity(32);
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sqlite)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(sqlite)?;
    // Version 0 is a new file, or somebody else's.
    if found < 0 || (found == 0 && tables > 0) {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            found,
        });
    }
    for (version, step) in (1..)
        .zip(MIGRATIONS)
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let migrate = format!("BEGIN; {step}; PRAGMA user_version = {version}; COMMIT;");
        if let Err(err) = conn.execute_batch(&migrate) {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(sqlite(err));
        }
        log::info!("store: {} now at schema version {version}", path.display());
    }
    Ok(())
}

/// Turns an SQLite error at open into the variant that says what to do about it.
pub(super) fn classify(path: &Path, source: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match &source {
        rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..) => return StoreError::Corrupt { path, source },
        _ => {}
    }
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path, source },
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, source },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked { path },
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
            StoreError::Open { path, source }
        }
        _ => StoreError::Sqlite { path, source },
    }
}
