//! The server under test: embedded on a thread of this process, a child process started from
//! the `roomcast` binary next to this one, a cluster of such processes on a `redis-server` it
//! starts too, or any address (or addresses, one per node). Reads CPU time and memory from
//! /proc, so the figures are the server's own (a cluster's: every node's and Redis's),
//! not the load generator's.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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
        addrs: Vec<SocketAddr>,
    },
    /// Nodes sharing rooms over a Redis this bench started.
    Cluster {
        nodes: Vec<Target>,
        redis: Child,
    },
}

impl Target {
    pub fn embedded(config: Config) -> io::Result<Target> {
        let handle = roomcast::Server::bind(config)?.spawn()?;
        let tid = find_thread("roomcast");
        Ok(Target::Embedded { handle, tid })
    }

    /// Starts a `redis-server` (nothing on disk) on a free port and `count` nodes on it, each
    /// with `flags`; all pinned to `cpu` if given.
    pub fn cluster(count: usize, flags: &[String], cpu: Option<usize>) -> io::Result<Target> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = pinned("redis-server", cpu);
        let redis = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| {
                io::Error::new(err.kind(), format!("cannot start redis-server: {err}"))
            })?;
        let mut target = Target::Cluster {
            nodes: Vec::new(),
            redis,
        };
        wait_for_redis(port)?;
        let url = format!("redis://127.0.0.1:{port}");
        for i in 0..count {
            let mut node_flags = flags.to_vec();
            node_flags.extend([
                "--redis".into(),
                url.clone(),
                "--node-id".into(),
                format!("bench{i}"),
            ]);
            let node = Target::spawn(&node_flags, cpu)?;
            if let Target::Cluster { nodes, .. } = &mut target {
                nodes.push(node);
            }
        }
        Ok(target)
    }

    /// Starts `roomcast` (the binary beside this one) with `flags`, pinned to `cpu` if given.
    pub fn spawn(flags: &[String], cpu: Option<usize>) -> io::Result<Target> {
        let exe = std::env::current_exe()?.with_file_name("roomcast");
        let mut command = pinned(&exe, cpu);
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

    /// The (first) address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs()[0]
    }

    /// Every node's address: clients spread over them.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            Target::Embedded { handle, .. } => vec![handle.local_addr()],
            Target::Process { addr, .. } => vec![*addr],
            Target::Remote { addrs } => addrs.clone(),
            Target::Cluster { nodes, .. } => nodes.iter().flat_map(Target::addrs).collect(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Embedded { .. } => "embedded (server thread of this process)".into(),
            Target::Process { pid, .. } => format!("process {pid}"),
            Target::Remote { addrs } => format!("remote {addrs:?} (no CPU/RSS figures)"),
            Target::Cluster { nodes, redis } => format!(
                "{} nodes ({}) on redis-server {}",
                nodes.len(),
                nodes
                    .iter()
                    .map(Target::describe)
                    .collect::<Vec<_>>()
                    .join(", "),
                redis.id()
            ),
        }
    }

    /// Server CPU seconds (user + system) so far.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let path = match self {
            Target::Embedded { tid, .. } => format!("/proc/self/task/{}/stat", (*tid)?),
            Target::Process { pid, .. } => format!("/proc/{pid}/stat"),
            Target::Remote { .. } => return None,
            Target::Cluster { nodes, redis } => {
                let nodes: Option<f64> = nodes.iter().map(Target::cpu_seconds).sum();
                return Some(nodes? + process_cpu(redis.id())?);
            }
        };
        let stat = std::fs::read_to_string(path).ok()?;
        // Fields after the ")" of the command name: utime is the 12th, stime the 13th.
        let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / clock_ticks_per_second())
    }

    /// The CPU seconds of the Redis a cluster target started (part of [`Target::cpu_seconds`]).
    pub fn redis_cpu_seconds(&self) -> Option<f64> {
        match self {
            Target::Cluster { redis, .. } => process_cpu(redis.id()),
            _ => None,
        }
    }

    /// (current, peak) resident memory in bytes. For an embedded server this is the whole
    /// process, load generator included.
    pub fn rss(&self) -> Option<(u64, u64)> {
        let path = match self {
            Target::Embedded { .. } => "/proc/self/status".to_owned(),
            Target::Process { pid, .. } => format!("/proc/{pid}/status"),
            Target::Remote { .. } => return None,
            Target::Cluster { nodes, .. } => {
                // The nodes together (Redis's own memory is not counted).
                return nodes
                    .iter()
                    .map(Target::rss)
                    .try_fold((0, 0), |(a, b), rss| {
                        let (current, peak) = rss?;
                        Some((a + current, b + peak))
                    });
            }
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
            Target::Cluster { nodes, mut redis } => {
                for node in nodes {
                    node.stop();
                }
                let _ = redis.kill();
                let _ = redis.wait();
            }
        }
    }
}

/// `program`, run through `taskset -c CPU` when a CPU is given.
fn pinned(program: impl AsRef<std::ffi::OsStr>, cpu: Option<usize>) -> Command {
    match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// Waits (up to 5 s) until the Redis on `port` answers PING.
fn wait_for_redis(port: u16) -> io::Result<()> {
    for _ in 0..250 {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream.set_read_timeout(Some(Duration::from_millis(200)))?;
            let mut reply = [0u8; 7];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream.read_exact(&mut reply).is_ok()
                && &reply == b"+PONG\r\n"
            {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::other(format!(
        "redis-server on port {port} did not answer"
    )))
}

/// CPU seconds of process `pid`, from /proc.
fn process_cpu(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
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
