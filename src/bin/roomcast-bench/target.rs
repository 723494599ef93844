//! The server under test: embedded on a thread of this process, a child process started from
//! the `roomcast` binary next to this one, or any address. Reads its CPU time and memory from
//! /proc, so the figures are the server's own, not the load generator's.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use roomcast::{Config, ServerHandle};

pub enum Target {
    Embedded {
        handle: ServerHandle,
        /// The server thread, for its CPU time; `None` if /proc is unreadable.
        tid: Option<u32>,
    },
    Process {
        child: Option<Child>,
        pid: u32,
        addr: SocketAddr,
    },
    Remote {
        addr: SocketAddr,
    },
}

impl Target {
    pub fn embedded(config: Config) -> io::Result<Target> {
        let handle = roomcast::Server::bind(config)?.spawn()?;
        let tid = find_thread("roomcast");
        Ok(Target::Embedded { handle, tid })
    }

    /// Starts `roomcast` (the binary beside this one) with `flags`, pinned to `cpu` if given.
    pub fn spawn(flags: &[String], cpu: Option<usize>) -> io::Result<Target> {
        let exe = std::env::current_exe()?.with_file_name("roomcast");
        let mut command = match cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = command
            .args(["--port", "0", "--log-level", "info"])
            .args(flags)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("cannot start {exe:?}: {err}")))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .ok_or_else(|| io::Error::other("roomcast exited before listening"))??;
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break addr
                    .parse()
                    .map_err(|_| io::Error::other(format!("bad address in log: {line}")))?;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let pid = child.id();
        Ok(Target::Process {
            child: Some(child),
            pid,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Target::Embedded { handle, .. } => handle.local_addr(),
            Target::Process { addr, .. } | Target::Remote { addr } => *addr,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Embedded { .. } => "embedded (server thread of this process)".into(),
            Target::Process { pid, .. } => format!("process {pid}"),
            Target::Remote { addr } => format!("remote {addr} (no CPU/RSS figures)"),
        }
    }

    /// Server CPU seconds (user + system) so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let path = match self {
            Target::Embedded { tid, .. } => format!("/proc/self/task/{}/stat", (*tid)?),
            Target::Process { pid, .. } => format!("/proc/{pid}/stat"),
            Target::Remote { .. } => return None,
        };
        let stat = std::fs::read_to_string(path).ok()?;
        // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / clock_ticks_per_second())
    }

    /// (current, peak) resident memory in bytes. For an embedded server this is the whole
    /// process, load generator included.
    pub fn rss(&self) -> Option<(u64, u64)> {
        let path = match self {
            Target::Embedded { .. } => "/proc/self/status".to_owned(),
            Target::Process { pid, .. } => format!("/proc/{pid}/status"),
            Target::Remote { .. } => return None,
        };
        let status = std::fs::read_to_string(path).ok()?;
        let kib = |key: &str| -> Option<u64> {
            let line = status.lines().find(|l| l.starts_with(key))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        };
        Some((kib("VmRSS:")? * 1024, kib("VmHWM:")? * 1024))
    }

    pub fn stop(self) {
        match self {
            Target::Embedded { handle, .. } => {
                handle.shutdown();
                let _ = handle.join();
            }
            Target::Process { child, .. } => {
                if let Some(mut child) = child {
                    let _ = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status();
                    for _ in 0..50 {
                        if let Ok(Some(_)) = child.try_wait() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Target::Remote { .. } => {}
        }
    }
}

/// The id of this process's thread named `name` (set by `Server::spawn`).
fn find_thread(name: &str) -> Option<u32> {
    for _ in 0..100 {
        for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == name {
                return entry.file_name().to_str()?.parse().ok();
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// USER_HZ: 100 on every Linux this runs on; /proc reports CPU time in these ticks.
fn clock_ticks_per_second() -> f64 {
    100.0
}
