//! `roomcast-bench`: a mio load generator with VR-shaped and chat-shaped loads, against a
//! server it embeds, a `roomcast` process it starts, or any address. Every run is bounded in
//! time and connections and stops by itself. BENCHMARKS.md has the published figures and the
//! commands that produced them.

mod pool;
mod scenarios;
mod stats;
mod target;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

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
    /// Drive a server already listening here (no CPU or memory figures).
    #[arg(long, global = true)]
    addr: Option<SocketAddr>,
    /// Start the `roomcast` binary next to this one as a separate process, measured by /proc.
    #[arg(long, global = true)]
    spawn: bool,
    /// With --spawn: pin the server to this CPU (taskset).
    #[arg(long, global = true)]
    server_cpu: Option<usize>,
    /// Server tick rate.
    #[arg(long, global = true, default_value_t = 30.0)]
    fps: f64,
    /// Server rate limit per connection (0: off, so the load is not throttled).
    #[arg(long, global = true, default_value_t = 0.0)]
    rate_limit: f64,
    /// Seconds of load (the drain of in-flight events comes on top, at most 2 s).
    #[arg(long, global = true, default_value_t = 10.0)]
    seconds: f64,
}

#[derive(Subcommand)]
enum Load {
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
    },
    /// Logged-in connections doing nothing: memory per connection, connect+login rate.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let connections = match &cli.load {
        Load::Chat { rooms, members, .. } => rooms * members,
        Load::Vr { headsets, .. } => *headsets,
        Load::Idle { connections } => *connections,
    };
    let s = &cli.server;
    let target = match start_target(s, connections) {
        Ok(target) => target,
        Err(err) => {
            eprintln!("roomcast-bench: cannot start the server: {err}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("server: {} at {}", target.describe(), target.addr());
    let (name, outcome) = match &cli.load {
        Load::Chat {
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
        Load::Vr {
            headsets,
            room_size,
            hz,
            chat_rate,
        } => {
            let load = VrLoad {
                headsets: *headsets,
                room_size: *room_size,
                hz: *hz,
                fps: s.fps,
                chat_rate: *chat_rate,
                seconds: s.seconds,
            };
            ("vr", scenarios::vr(&target, &load))
        }
        Load::Idle { connections } => ("idle", scenarios::idle(&target, *connections, s.seconds)),
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

fn start_target(s: &ServerArgs, connections: usize) -> std::io::Result<Target> {
    if let Some(addr) = s.addr {
        return Ok(Target::Remote { addr });
    }
    let max_clients = connections + 100;
    if s.spawn {
        let flags: Vec<String> = [
            ("--fps", s.fps.to_string()),
            ("--rate-limit", s.rate_limit.to_string()),
            ("--max-clients", max_clients.to_string()),
            ("--max-room-members", max_clients.to_string()),
            // Every client comes from 127.0.0.1: the per-address cap would refuse all but 256.
            ("--max-conns-per-ip", "0".to_owned()),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value])
        .collect();
        return Target::spawn(&flags, s.server_cpu);
    }
    Target::embedded(roomcast::Config {
        addr: "127.0.0.1:0".parse().expect("literal address"),
        fps: s.fps,
        rate_limit: s.rate_limit,
        max_clients,
        max_room_members: max_clients,
        max_conns_per_ip: 0,
        ..roomcast::Config::default()
    })
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
    for (key, value) in &outcome.figures {
        line.insert((*key).into(), value.clone());
    }
    println!("{}", Value::Object(line));
}
