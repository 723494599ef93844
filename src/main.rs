//! `roomcast`: flags to `Config`, logger, bind, run until SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::alloc::System;

use cap::Cap;
use clap::Parser;
use ipnet::IpNet;
use roomcast::config::{ClusterConfig, TlsFiles};
use roomcast::{Config, Server};

/// Counts every heap byte, so --max-memory is held against what the process really uses.
#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

fn heap_bytes() -> usize {
    ALLOCATOR.allocated()
}

/// A room server for VR headsets and multiplayer games: JSON over TCP, WebSocket and TLS on one
/// port, with /metrics, /healthz and a live viewer page for browsers.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on: an IP address, or a host name (such as localhost) whose first
    /// address, IPv4 first, is used.
    #[arg(long, default_value = "127.0.0.1", value_parser = listen_address)]
    ip: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 42069)]
    port: u16,
    /// Transform ticks per second (fractional allowed, above 0 and at most 1000).
    #[arg(long, default_value_t = 20.0)]
    fps: f64,
    /// msg/join/leave events kept per room for joiners (0 turns history off).
    #[arg(long, default_value_t = 100)]
    history: usize,
    /// Largest frame or line a client may send, in bytes.
    #[arg(long, default_value_t = 65536)]
    max_frame: usize,
    /// Bytes queued to one connection before it is disconnected as too slow.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_outbuf: usize,
    /// Connections held at once; one more gets 503 "Server full.".
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// Seconds a connection may take to log in (above 0).
    #[arg(long, default_value = "10", value_parser = seconds)]
    login_timeout: Duration,
    /// Seconds a logged-in connection may stay silent, ping included (0 turns it off).
    #[arg(long, default_value = "120", value_parser = seconds)]
    idle_timeout: Duration,
    /// Non-transform messages per second per connection (0 turns the limit off).
    #[arg(long, default_value_t = 50.0)]
    rate_limit: f64,
    /// Messages a connection may send in a burst before the rate applies.
    #[arg(long, default_value_t = 100.0)]
    burst: f64,
    /// Rooms one user may be in at once.
    #[arg(long, default_value_t = 64)]
    max_rooms_per_user: usize,
    /// Members one room may hold.
    #[arg(long, default_value_t = 1000)]
    max_room_members: usize,
    /// Rooms that may exist at once.
    #[arg(long, default_value_t = 10_000)]
    max_rooms: usize,
    /// Rooms one user may hold (created and still in); one more is refused (422).
    #[arg(long, default_value_t = 16)]
    max_held_rooms: usize,
    /// Rooms the users of one IP address may hold together.
    #[arg(long, default_value_t = 256)]
    max_held_rooms_per_ip: usize,
    /// Connections from one IP address at once (0 turns the limit off).
    #[arg(long, default_value_t = 256)]
    max_conns_per_ip: usize,
    /// Transforms per second per connection; excess ones are dropped (0 turns the limit off).
    #[arg(long, default_value_t = 300.0)]
    transform_rate: f64,
    /// Transforms a connection may send at once before --transform-rate applies.
    #[arg(long, default_value_t = 60.0)]
    transform_burst: f64,
    /// Heap bytes the server may use: near it logins and joins get 503, past it the largest
    /// queues are cut.
    #[arg(long, default_value_t = 1 << 30)]
    max_memory: usize,
    /// Kernel send buffer per connection in bytes (0 keeps the system default).
    #[arg(long, default_value_t = 256 * 1024)]
    send_buffer: usize,
    /// Seconds a game player may take to move before forfeiting the round (0 turns it off).
    #[arg(long, default_value = "60", value_parser = seconds)]
    turn_timeout: Duration,
    /// Seconds a session whose connection was lost is kept for a resume (0 turns it off).
    #[arg(long, default_value = "30", value_parser = seconds)]
    resume_grace: Duration,
    /// Sessions kept for a resume at once; past it, the oldest ends first.
    #[arg(long, default_value_t = 10_000)]
    max_detached: usize,
    /// PEM certificate chain for TLS on the same port (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS (with --tls-cert).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A network (CIDR, e.g. 10.0.0.0/8) whose clients may read /metrics besides loopback;
    /// repeat it for more.
    #[arg(long, value_name = "CIDR")]
    metrics_allow: Vec<IpNet>,
    /// Where accounts and room histories are kept (created if missing). Default:
    /// $XDG_DATA_HOME/roomcast, else ~/.local/share/roomcast, else ./roomcast-data.
    /// An empty value keeps nothing, like --ephemeral.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Keep nothing on disk: accounts, histories and sequence numbers end with the process.
    #[arg(long, conflicts_with = "data_dir")]
    ephemeral: bool,
    /// Stored events older than this many days are deleted (fractional allowed).
    #[arg(long)]
    history_days: Option<f64>,
    /// Rooms whose history is kept while empty, and in the store; the least recently active
    /// go first.
    #[arg(long, default_value_t = 10_000)]
    max_stored_rooms: usize,
    /// Only registered users may log in (unregistered names get 403).
    #[arg(long)]
    accounts_only: bool,
    /// Accounts the server may hold (with --redis, counted over the whole cluster).
    #[arg(long, default_value_t = 100_000)]
    max_accounts: usize,
    // VR rooms: tracked parts, interest management, shared objects.
    /// Tracked parts one user may have beside its head (0: head-only transforms).
    #[arg(long, default_value_t = 8)]
    max_parts: usize,
    /// Each member receives the poses of members within this many metres of its head (0: off).
    #[arg(long, default_value_t = 0.0)]
    interest_radius: f64,
    /// Each member receives the poses of its K nearest members (0: off).
    #[arg(long, default_value_t = 0)]
    interest_nearest: usize,
    /// Shared objects one room may hold (0 turns shared objects off).
    #[arg(long, default_value_t = 64)]
    max_objects: usize,
    /// Largest state of a shared object, in bytes.
    #[arg(long, default_value_t = 1024)]
    max_object_state: usize,
    /// Objects one user may hold at once in one room.
    #[arg(long, default_value_t = 8)]
    max_claims: usize,
    /// Run as a node of a cluster sharing rooms and accounts over this Redis:
    /// redis://[:PASSWORD@]HOST:PORT[/DB], or rediss://... for TLS (its certificate is
    /// verified). Without it no Redis code runs.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// PEM file of the CA certificate(s) that signed Redis's TLS certificate (a private CA),
    /// trusted instead of the system's roots; needs a rediss:// URL.
    #[arg(long, value_name = "PATH", requires = "redis")]
    redis_ca: Option<PathBuf>,
    /// PEM certificate chain of this node, for a Redis that asks clients for one (with
    /// --redis-key; rediss:// only).
    #[arg(long, value_name = "PATH", requires_all = ["redis", "redis_key"])]
    redis_cert: Option<PathBuf>,
    /// PEM private key of --redis-cert.
    #[arg(long, value_name = "PATH", requires = "redis_cert")]
    redis_key: Option<PathBuf>,
    /// This node's id in the cluster (1 to 64 of A-Z a-z 0-9 _ - .; default: random).
    /// Reusing a dead node's id at restart ends what that node left at once.
    #[arg(long, requires = "redis")]
    node_id: Option<String>,
    /// Log level; RUST_LOG, when set, refines it (e.g. RUST_LOG=roomcast=debug).
    #[arg(long, default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
}

/// A node id for a node started without `--node-id`: 8 random bytes in hex (the process id
/// if the system has no randomness to give).
fn random_node_id() -> String {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Err(_) => format!("node-{}", std::process::id()),
    }
}

/// $XDG_DATA_HOME/roomcast, else ~/.local/share/roomcast, else ./roomcast-data.
fn default_data_dir() -> PathBuf {
    let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(data) = from_env("XDG_DATA_HOME") {
        return PathBuf::from(data).join("roomcast");
    }
    if let Some(home) = from_env("HOME") {
        return PathBuf::from(home).join(".local/share/roomcast");
    }
    PathBuf::from("roomcast-data")
}

fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{text} is not a positive, finite number of seconds"))
}

/// `--ip`: an IP address as is, or a host name resolved once at start-up. A name stands for
/// several addresses (localhost: 127.0.0.1 and ::1); the server listens on one, IPv4 first,
/// the address family every client can reach.
fn listen_address(text: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(ip);
    }
    let resolved: Vec<IpAddr> = (text, 0)
        .to_socket_addrs()
        .map_err(|err| {
            format!("{text:?} is neither an IP address nor a host name that resolves here ({err})")
        })?
        .map(|addr| addr.ip())
        .collect();
    resolved
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| resolved.first())
        .copied()
        .ok_or_else(|| format!("host name {text:?} has no addresses"))
}

impl Args {
    fn config(&self) -> Config {
        Config {
            addr: SocketAddr::new(self.ip, self.port),
            fps: self.fps,
            history: self.history,
            max_frame: self.max_frame,
            max_outbuf: self.max_outbuf,
            max_clients: self.max_clients,
            login_timeout: self.login_timeout,
            idle_timeout: self.idle_timeout,
            rate_limit: self.rate_limit,
            burst: self.burst,
            max_rooms_per_user: self.max_rooms_per_user,
            max_room_members: self.max_room_members,
            max_rooms: self.max_rooms,
            max_held_rooms: self.max_held_rooms,
            max_held_rooms_per_ip: self.max_held_rooms_per_ip,
            max_conns_per_ip: self.max_conns_per_ip,
            transform_rate: self.transform_rate,
            transform_burst: self.transform_burst,
            max_memory: self.max_memory,
            send_buffer: self.send_buffer,
            turn_timeout: self.turn_timeout,
            resume_grace: self.resume_grace,
            max_detached: self.max_detached,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            metrics_allow: self.metrics_allow.clone(),
            data_dir: self.data_dir(),
            history_max_age: self
                .history_days
                .and_then(|days| Duration::try_from_secs_f64(days * 86_400.0).ok()),
            max_stored_rooms: self.max_stored_rooms,
            accounts_only: self.accounts_only,
            max_accounts: self.max_accounts,
            hash_cost: roomcast::config::HashCost::Standard,
            max_parts: self.max_parts,
            interest_radius: (self.interest_radius != 0.0).then_some(self.interest_radius),
            interest_nearest: (self.interest_nearest != 0).then_some(self.interest_nearest),
            max_objects: self.max_objects,
            max_object_state: self.max_object_state,
            max_claims: self.max_claims,
            cluster: self.redis.as_ref().map(|url| ClusterConfig {
                redis_url: url.clone(),
                redis_ca: self.redis_ca.clone(),
                redis_client: match (&self.redis_cert, &self.redis_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                    }),
                    _ => None,
                },
                node_id: self.node_id.clone().unwrap_or_else(random_node_id),
            }),
        }
    }

    /// The data directory: the flag, or the per-user default; none with --ephemeral or an
    /// empty --data-dir.
    fn data_dir(&self) -> Option<PathBuf> {
        if self.ephemeral {
            return None;
        }
        match &self.data_dir {
            Some(dir) if dir.as_os_str().is_empty() => None,
            Some(dir) => Some(dir.clone()),
            None => Some(default_data_dir()),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let level = args.log_level.parse().unwrap_or(log::LevelFilter::Info);
    env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .init();
    let config = args.config();
    if let Err(err) = config.validate() {
        eprintln!("roomcast: {err}");
        return ExitCode::from(2);
    }
    let (fd_limit, fd_warning) = roomcast::net::raise_fd_limit(config.max_clients);
    match fd_warning {
        Some(warning) => log::warn!("{warning}"),
        None => log::debug!("open-file limit {fd_limit}"),
    }
    match &config.data_dir {
        Some(dir) => eprintln!("roomcast: data in {}", dir.display()),
        None => eprintln!("roomcast: --ephemeral: nothing is kept across a restart"),
    }
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(err @ roomcast::net::BindError::Tls(_)) => {
            eprintln!("roomcast: {err}");
            return ExitCode::from(2);
        }
        Err(err @ roomcast::net::BindError::Io(_)) => {
            eprintln!(
                "roomcast: cannot listen on {}:{}: {err}",
                args.ip, args.port
            );
            return ExitCode::FAILURE;
        }
        Err(err) => {
            eprintln!("roomcast: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = server;
    server.set_memory_gauge(heap_bytes);
    let shutdown = server.shutdown_handle();
    if let Err(err) = ctrlc::set_handler(move || shutdown.shutdown()) {
        log::warn!("cannot install the SIGINT/SIGTERM handler: {err}");
    }
    log::info!(
        "roomcast listening on {} (fps {}; TLS {}; viewer at http{}://{}/)",
        server.local_addr(),
        args.fps,
        if args.tls_cert.is_some() { "on" } else { "off" },
        if args.tls_cert.is_some() { "s" } else { "" },
        server.local_addr(),
    );
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("roomcast: event loop failed: {err}");
            ExitCode::FAILURE
        }
    }
}
