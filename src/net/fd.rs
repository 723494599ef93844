//! File descriptors: enough of them for `--max-clients`, and one held in reserve so that a
//! server out of descriptors can still tell a newcomer it is full instead of leaving it in the
//! backlog with no byte.

use std::fs::File;
use std::io::{self, Write};

use mio::net::TcpListener;

/// Descriptors the server needs besides one per client: listener, poll, waker, spare, logs,
/// and the store's and services' files.
const OVERHEAD: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to what `max_clients` needs, up to the hard limit. Returns
/// the limit now in force, and a warning naming the numbers when it is short.
pub fn raise_limit(max_clients: usize) -> (u64, Option<String>) {
    let want = max_clients as u64 + OVERHEAD;
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(err) => return (0, Some(format!("cannot read the descriptor limit: {err}"))),
    };
    if soft >= want {
        return (soft, None);
    }
    let target = want.min(hard);
    let now = match rlimit::Resource::NOFILE.set(target, hard) {
        Ok(()) => target,
        Err(_) => soft,
    };
    let warning = (now < want).then(|| {
        format!(
            "open-file limit is {now} (hard limit {hard}); --max-clients {max_clients} needs {want}: \
             connections past about {} will be refused with 503 \"Server full.\"",
            now.saturating_sub(OVERHEAD)
        )
    });
    (now, warning)
}

/// One descriptor kept open for the moment the process runs out: closing it makes room to
/// accept one connection, answer it and close it again.
#[derive(Debug)]
pub struct Spare(Option<File>);

impl Spare {
    pub fn new() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    /// With the spare descriptor freed: accepts one pending connection from `listener`,
    /// writes `refusal` to it, closes it. `Ok(false)` when nothing was pending or the spare
    /// could not be freed (the caller backs off).
    pub fn refuse_one(&mut self, listener: &TcpListener, refusal: &[u8]) -> io::Result<bool> {
        if self.0.take().is_none() {
            return Ok(false);
        }
        let result = match listener.accept() {
            Ok((mut stream, _)) => {
                // Best effort: a fresh socket's buffer takes a short reply at once.
                let _ = stream.write_all(refusal);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(err) => Err(err),
        };
        self.0 = File::open("/dev/null").ok();
        result
    }
}
