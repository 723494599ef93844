//! `roomcast-bench`: a mio load generator with VR-shaped and chat-shaped loads, against a
//! server it embeds, a `roomcast` process it starts, or any address. Every run is bounded in
//! time and connections and stops by itself. BENCHMARKS.md has the published figures and the
//! commands that produced them.

mod attack;
mod logins;
mod pool;
mod scenarios;
mod stats;
mod store;
mod target;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use attack::{AttackLoad, Kind};
use scenarios::{ChatLoad, Outcome, VrLoad};
use target::Target;

/// Load generator for roomcast.
#[derive(Parser)]
#[command(about)]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    load: Load,
}

#[derive(Args)]
struct ServerArgs {
    /// Drive a server already listening here (no CPU or memory figures); several addresses
    /// (comma-separated, or the flag repeated) are a cluster's nodes, and clients are spread
    /// over them (client i on address i mod N).
    #[arg(long, global = true, value_delimiter = ',')]
    addr: Vec<SocketAddr>,
    /// Start the `roomcast` binary next to this one as a separate process, measured by /proc.
    #[arg(long, global = true)]
    spawn: bool,
    /// With --spawn: start a redis-server and this many nodes sharing rooms over it
    /// (`--redis`), and spread the clients over them; CPU is every node's and Redis's.
    #[arg(long, global = true, requires = "spawn")]
    cluster: Option<usize>,
    /// With --spawn: pin the server (every node and Redis, with --cluster) to this CPU.
    #[arg(long, global = true)]
    server_cpu: Option<usize>,
    /// Server tick rate.
    #[arg(long, global = true, default_value_t = 30.0)]
    fps: f64,
    /// Server rate limit per connection (0: off). Default: 0 for chat, vr and idle, so the
    /// load is not throttled; the server's own default for attack.
    #[arg(long, global = true)]
    rate_limit: Option<f64>,
    /// Seconds of load (the drain of in-flight events comes on top, at most 2 s).
    #[arg(long, global = true, default_value_t = 10.0)]
    seconds: f64,
    /// What the clients speak: length-prefixed frames over TCP, a WebSocket, or frames inside
    /// TLS (the server is started with benches/tls/; with --addr it must use that
    /// certificate). Not for attack.
    #[arg(long, global = true, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// The server keeps its data here (accounts, histories: every history event is written
    /// to SQLite). Default: none (the server runs --ephemeral).
    #[arg(long, global = true)]
    data_dir: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Transport {
    Tcp,
    Ws,
    Tls,
}

/// The bench's own certificate for localhost (benches/tls/README.md).
const BENCH_CERT: &str = include_str!("../../../benches/tls/cert.pem");
const BENCH_CERT_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/tls/cert.pem");
const BENCH_KEY_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/tls/key.pem");

/// A client configuration trusting exactly the bench's certificate.
fn bench_client_tls() -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    let cert = rustls::pki_types::CertificateDer::from_pem_slice(BENCH_CERT.as_bytes())
        .map_err(|err| format!("benches/tls/cert.pem: {err}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).map_err(|err| err.to_string())?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| err.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

#[derive(Subcommand)]
enum Load {
    /// The store's writer alone (no server): events persisted per second to SQLite in
    /// --data-dir (default: a temporary directory, removed after).
    Store {
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Events kept per room, as the server's --history.
        #[arg(long, default_value_t = 100)]
        history: usize,
        /// msg data size in bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
    },
    #[command(flatten)]
    Server(ServerLoad),
}

/// The loads that run against a server.
#[derive(Subcommand)]
enum ServerLoad {
    /// Rooms of chatting members: fan-out throughput, latency, loss.
    Chat {
        #[arg(long, default_value_t = 1)]
        rooms: usize,
        #[arg(long, default_value_t = 100)]
        members: usize,
        /// Publishers per room (the first members).
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        /// msg data size in bytes.
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// msgs per second per publisher; omit for saturation.
        #[arg(long)]
        rate: Option<f64>,
        /// Saturation: msgs in flight per publisher (sent, own echo not yet back).
        #[arg(long, default_value_t = 32)]
        window: u64,
    },
    /// Headsets streaming poses, plus one chat publisher per room whose loss must be 0.
    Vr {
        #[arg(long, default_value_t = 2000)]
        headsets: usize,
        #[arg(long, default_value_t = 20)]
        room_size: usize,
        /// Poses per second per headset.
        #[arg(long, default_value_t = 90.0)]
        hz: f64,
        /// Chat msgs per second per room on the side.
        #[arg(long, default_value_t = 10.0)]
        chat_rate: f64,
        /// Tracked parts each headset sends beside its head (2: left_hand and right_hand).
        #[arg(long, default_value_t = 0)]
        parts: usize,
        /// Server interest management: each member gets its K nearest members' poses (0: off).
        #[arg(long, default_value_t = 0)]
        interest_nearest: usize,
        /// Server interest management: each member gets the poses within this many metres
        /// (0: off). Headsets stand 2 m apart on a square in each room.
        #[arg(long, default_value_t = 0.0)]
        interest_radius: f64,
    },
    /// Registered users logging in (an argon2id check each, off the event loop) and out, while
    /// one more connection pings every 10 ms: logins per second, and the ping round trips
    /// that show whether the loop is ever blocked.
    Logins {
        /// Logins per second; omit for as many as the server answers.
        #[arg(long)]
        rate: Option<f64>,
        /// Accounts registered first and logged into in turn.
        #[arg(long, default_value_t = 20)]
        accounts: usize,
        /// Logins in flight at most.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
    },
    /// Logged-in connections doing nothing: memory per connection, connect+login rate.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
    /// Hostile clients against the server's defences (its defaults), beside two bystanders
    /// chatting in a room of their own: server CPU and memory, and whether bystanders suffered.
    Attack {
        #[arg(long, value_enum)]
        kind: Kind,
        /// Attacking connections (default 200 for history, 20 otherwise).
        #[arg(long)]
        attackers: Option<usize>,
        /// msgs per second per bystander (the server's default limit is 50).
        #[arg(long, default_value_t = 20.0)]
        bystander_rate: f64,
        /// flood: msg data bytes (default 64); nested: frame body bytes (default 65536).
        #[arg(long)]
        payload: Option<usize>,
        /// rooms: rooms created before the attack (64 per owner).
        #[arg(long, default_value_t = 2000)]
        rooms: usize,
        /// nested: levels of `[` in each msg's data.
        #[arg(long, default_value_t = 127)]
        depth: usize,
        /// Whether an attacker the server closes connects again (at most once a second).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        reconnect: bool,
    },
}

/// What the server under test is told beyond its defaults.
struct Settings {
    fps: f64,
    /// `None`: the server's default.
    rate_limit: Option<f64>,
    /// Capacity loads open thousands of connections from one address: they raise
    /// `--max-clients` and `--max-room-members` to this and turn `--max-conns-per-ip` off.
    capacity: Option<usize>,
    /// `--max-held-rooms` and `--max-held-rooms-per-ip`.
    held_rooms: Option<(usize, usize)>,
    /// Serve TLS with the bench's certificate.
    tls: bool,
    /// `--data-dir`; `None`: `--ephemeral`.
    data_dir: Option<std::path::PathBuf>,
    /// `--interest-nearest` and `--interest-radius` (vr), when on.
    interest: (Option<usize>, Option<f64>),
}

impl Settings {
    fn of(s: &ServerArgs, load: &ServerLoad) -> Settings {
        let capacity = |connections: usize| Settings {
            fps: s.fps,
            rate_limit: Some(s.rate_limit.unwrap_or(0.0)),
            capacity: Some(connections + 100),
            held_rooms: None,
            tls: s.transport == Transport::Tls,
            data_dir: s.data_dir.clone(),
            interest: (None, None),
        };
        match load {
            ServerLoad::Chat { rooms, members, .. } => capacity(rooms * members),
            ServerLoad::Vr {
                headsets,
                interest_nearest,
                interest_radius,
                ..
            } => Settings {
                interest: (
                    (*interest_nearest > 0).then_some(*interest_nearest),
                    (*interest_radius > 0.0).then_some(*interest_radius),
                ),
                ..capacity(*headsets)
            },
            ServerLoad::Idle { connections } => capacity(*connections),
            ServerLoad::Logins { concurrency, .. } => capacity(*concurrency),
            ServerLoad::Attack { kind, .. } => Settings {
                fps: s.fps,
                rate_limit: s.rate_limit,
                capacity: None,
                // Room owners hold 64 rooms each, all from 127.0.0.1.
                held_rooms: (*kind == Kind::Rooms).then_some((100, 5000)),
                tls: false,
                data_dir: s.data_dir.clone(),
                interest: (None, None),
            },
        }
    }

    fn flags(&self) -> Vec<String> {
        let mut flags = vec![("--fps", self.fps.to_string())];
        if let Some(rate) = self.rate_limit {
            flags.push(("--rate-limit", rate.to_string()));
        }
        if let Some(max) = self.capacity {
            flags.push(("--max-clients", max.to_string()));
            flags.push(("--max-room-members", max.to_string()));
            flags.push(("--max-conns-per-ip", "0".to_owned()));
        }
        if let Some((per_user, per_ip)) = self.held_rooms {
            flags.push(("--max-held-rooms", per_user.to_string()));
            flags.push(("--max-held-rooms-per-ip", per_ip.to_string()));
        }
        if self.tls {
            flags.push(("--tls-cert", BENCH_CERT_PATH.to_owned()));
            flags.push(("--tls-key", BENCH_KEY_PATH.to_owned()));
        }
        if let Some(k) = self.interest.0 {
            flags.push(("--interest-nearest", k.to_string()));
        }
        if let Some(radius) = self.interest.1 {
            flags.push(("--interest-radius", radius.to_string()));
        }
        let mut flags: Vec<String> = flags
            .into_iter()
            .flat_map(|(flag, value)| [flag.to_owned(), value])
            .collect();
        match &self.data_dir {
            Some(dir) => flags.extend(["--data-dir".to_owned(), dir.display().to_string()]),
            None => flags.push("--ephemeral".to_owned()),
        }
        flags
    }

    fn config(&self) -> roomcast::Config {
        let mut config = roomcast::Config {
            // A literal that always parses.
            addr: "127.0.0.1:0".parse().expect("literal address"),
            fps: self.fps,
            ..roomcast::Config::default()
        };
        if let Some(rate) = self.rate_limit {
            config.rate_limit = rate;
        }
        if let Some(max) = self.capacity {
            config.max_clients = max;
            config.max_room_members = max;
            config.max_conns_per_ip = 0;
        }
        if let Some((per_user, per_ip)) = self.held_rooms {
            config.max_held_rooms = per_user;
            config.max_held_rooms_per_ip = per_ip;
        }
        if self.tls {
            config.tls = Some(roomcast::config::TlsFiles {
                cert: BENCH_CERT_PATH.into(),
                key: BENCH_KEY_PATH.into(),
            });
        }
        config.data_dir.clone_from(&self.data_dir);
        config.interest_nearest = self.interest.0;
        config.interest_radius = self.interest.1;
        config
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let s = &cli.server;
    let load = match &cli.load {
        Load::Store {
            rooms,
            history,
            payload,
        } => return store_only(&cli, *rooms, *history, *payload),
        Load::Server(load) => load,
    };
    let wire = match s.transport {
        Transport::Tcp => pool::Wire::Tcp,
        Transport::Ws => pool::Wire::Ws,
        Transport::Tls => match bench_client_tls() {
            Ok(config) => pool::Wire::Tls(config),
            Err(err) => {
                eprintln!("roomcast-bench: the bench certificate: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    if s.transport != Transport::Tcp && matches!(load, ServerLoad::Attack { .. }) {
        eprintln!("roomcast-bench: attack runs over plain TCP only (--transport tcp)");
        return ExitCode::from(2);
    }
    pool::set_wire(wire);
    let target = match start_target(s, &Settings::of(s, load)) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("roomcast-bench: cannot start the server: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("server: {} at {}", target.describe(), target.addr());
    let (name, outcome) = match load {
        ServerLoad::Chat {
            rooms,
            members,
            publishers,
            payload,
            rate,
            window,
        } => {
            let load = ChatLoad {
                rooms: *rooms,
                members: *members,
                publishers: (*publishers).min(*members),
                payload: *payload,
                rate: *rate,
                window: *window,
                seconds: s.seconds,
            };
            ("chat", scenarios::chat(&target, &load))
        }
        ServerLoad::Vr {
            headsets,
            room_size,
            hz,
            chat_rate,
            parts,
            interest_nearest,
            interest_radius,
        } => {
            let load = VrLoad {
                headsets: *headsets,
                room_size: *room_size,
                hz: *hz,
                fps: s.fps,
                chat_rate: *chat_rate,
                seconds: s.seconds,
                parts: *parts,
                interest_nearest: *interest_nearest,
                interest_radius: *interest_radius,
            };
            ("vr", scenarios::vr(&target, &load))
        }
        ServerLoad::Idle { connections } => {
            ("idle", scenarios::idle(&target, *connections, s.seconds))
        }
        ServerLoad::Logins {
            rate,
            accounts,
            concurrency,
        } => {
            let load = logins::LoginLoad {
                rate: *rate,
                accounts: *accounts,
                concurrency: *concurrency,
                seconds: s.seconds,
            };
            ("logins", logins::logins(&target, &load))
        }
        ServerLoad::Attack {
            kind,
            attackers,
            bystander_rate,
            payload,
            rooms,
            depth,
            reconnect,
        } => {
            let load = AttackLoad {
                kind: *kind,
                attackers: attackers.unwrap_or(kind.default_attackers()),
                seconds: s.seconds,
                bystander_rate: *bystander_rate,
                payload: payload.unwrap_or(kind.default_payload()),
                rooms: *rooms,
                depth: *depth,
                reconnect: *reconnect,
            };
            ("attack", attack::attack(&target, &load))
        }
    };
    let rss = target.rss();
    target.stop();
    match outcome {
        Ok(mut outcome) => {
            if let Some((_, peak)) = rss {
                // Embedded, /proc/self is the server and the load generator together.
                let key = match cli.server.spawn {
                    true => "server_peak_rss_mib",
                    false => "process_peak_rss_mib",
                };
                if !outcome.figures.iter().any(|(k, _)| *k == key) {
                    outcome.figures.push((key, json!(peak as f64 / 1048576.0)));
                }
            }
            report(name, &cli, &outcome);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("roomcast-bench: {name} failed: {err}");
            ExitCode::FAILURE
        }
    }
}

fn start_target(s: &ServerArgs, settings: &Settings) -> std::io::Result<Target> {
    if !s.addr.is_empty() {
        return Ok(Target::Remote {
            addrs: s.addr.clone(),
        });
    }
    if let (true, Some(nodes)) = (s.spawn, s.cluster) {
        return Target::cluster(nodes.max(1), &settings.flags(), s.server_cpu);
    }
    if s.spawn {
        return Target::spawn(&settings.flags(), s.server_cpu);
    }
    Target::embedded(settings.config())
}

/// `roomcast-bench store`: no server, the writer alone.
fn store_only(cli: &Cli, rooms: usize, history: usize, payload: usize) -> ExitCode {
    // Without --data-dir, a directory of its own under the system's temporary directory,
    // removed afterwards.
    let own = std::env::temp_dir().join(format!("roomcast-bench-store-{}", std::process::id()));
    let dir = cli.server.data_dir.clone().unwrap_or_else(|| own.clone());
    let load = store::StoreLoad {
        rooms,
        history,
        payload,
        seconds: cli.server.seconds,
    };
    let outcome = store::store(&dir, &load);
    if cli.server.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&own);
    }
    match outcome {
        Ok(outcome) => {
            report("store", cli, &outcome);
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("roomcast-bench: store failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// A human table on stdout, then one JSON line with the settings and every figure.
fn report(name: &str, cli: &Cli, outcome: &Outcome) {
    println!("{name}: {} s of load", cli.server.seconds);
    for (key, value) in &outcome.figures {
        let shown = match value {
            Value::Number(n) => n.as_f64().map_or(n.to_string(), |f| format!("{f:.3}")),
            other => other.to_string(),
        };
        println!("  {key:<30} {shown}");
    }
    let mut line = Map::new();
    line.insert("scenario".into(), json!(name));
    line.insert("seconds".into(), json!(cli.server.seconds));
    line.insert("fps".into(), json!(cli.server.fps));
    let transport = match cli.server.transport {
        Transport::Tcp => "tcp",
        Transport::Ws => "ws",
        Transport::Tls => "tls",
    };
    line.insert("transport".into(), json!(transport));
    line.insert("cluster_nodes".into(), json!(cli.server.cluster));
    for (key, value) in &outcome.figures {
        line.insert((*key).into(), value.clone());
    }
    println!("{}", Value::Object(line));
}
