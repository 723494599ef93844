//! Server settings, their defaults, and the checks that turn a bad value into a clear start-up
//! error instead of a surprise at run time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

/// What clients are told to accept from the server: no server frame is larger.
pub const CLIENT_FRAME_LIMIT: usize = 16 * 1024 * 1024;

/// Largest frame a client may be allowed to send: the echo of a msg adds the event's envelope
/// (time, user, type, room: well under 1 KiB), and must stay within [`CLIENT_FRAME_LIMIT`].
pub const MAX_FRAME_CEILING: usize = CLIENT_FRAME_LIMIT - 64 * 1024;

/// Everything the server can be told. `Config::default()` is what `roomcast` runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (tests).
    pub addr: SocketAddr,
    /// Transform ticks per second; fractional allowed.
    pub fps: f64,
    /// msg/join/leave events kept per room for new members; 0 turns history off.
    pub history: usize,
    /// Largest frame or line a client may send, in bytes.
    pub max_frame: usize,
    /// Bytes queued to one connection before it is cut off as too slow.
    pub max_outbuf: usize,
    /// Connections held at once; one more is answered 503 and closed.
    pub max_clients: usize,
    /// How long a connection may stay without logging in.
    pub login_timeout: Duration,
    /// How long a logged-in connection may stay silent (ping counts); zero turns the idle
    /// timeout off.
    pub idle_timeout: Duration,
    /// Non-transform messages per second per connection; 0 turns the limit off.
    pub rate_limit: f64,
    /// Messages a connection may send at once before the rate applies.
    pub burst: f64,
    /// Rooms one user may be in at once.
    pub max_rooms_per_user: usize,
    /// Members one room may hold.
    pub max_room_members: usize,
    /// Rooms that may exist at once ("lobby" included).
    pub max_rooms: usize,
    /// Rooms one user may hold: created and still in. Creating one more is refused, so a
    /// few connections cannot use up `max_rooms`.
    pub max_held_rooms: usize,
    /// Rooms the users of one IP address may hold together.
    pub max_held_rooms_per_ip: usize,
    /// Connections from one IP address at once; 0 turns the limit off.
    pub max_conns_per_ip: usize,
    /// Transforms per second per connection; excess ones are dropped (they are coalesced
    /// anyway). 0 turns the limit off.
    pub transform_rate: f64,
    /// Transforms a connection may send at once before `transform_rate` applies.
    pub transform_burst: f64,
    /// Heap bytes the whole server may use. Near it, logins and joins are refused (503);
    /// past it, the connections with the largest queues are cut.
    pub max_memory: usize,
    /// Kernel send buffer per connection (SO_SNDBUF), so that `max_outbuf` bounds what a
    /// slow reader pins; 0 keeps the system default.
    pub send_buffer: usize,
    /// How long a game player may take to move before forfeiting the round; zero turns the
    /// turn timeout off.
    pub turn_timeout: Duration,
    /// How long a session whose connection was lost (without a logout) is kept for a
    /// `resume`; zero ends sessions with their connections.
    pub resume_grace: Duration,
    /// Sessions kept detached at once; past it, the one detached longest ends first.
    pub max_detached: usize,
    /// Certificate chain and key (PEM files) for TLS on the same port; `None` leaves TLS off
    /// (a ClientHello then gets a TLS alert).
    pub tls: Option<TlsFiles>,
    /// Networks besides loopback whose clients may read `GET /metrics`.
    pub metrics_allow: Vec<IpNet>,
    /// Where accounts and room histories are kept (SQLite); `None` keeps nothing across a
    /// restart. The library's default is `None`; the `roomcast` binary's is a per-user data
    /// directory.
    pub data_dir: Option<PathBuf>,
    /// Stored events older than this are deleted (`--history-days`); `None` keeps them.
    pub history_max_age: Option<Duration>,
    /// Rooms whose history is kept while they have no members (and in the store); past it,
    /// the least recently active go first.
    pub max_stored_rooms: usize,
    /// Only registered users may log in: unregistered names get 403 like a wrong password.
    pub accounts_only: bool,
    /// Accounts the server may hold.
    pub max_accounts: usize,
    /// How costly password hashes are: the argon2 crate's recommended costs, or the cheapest
    /// (tests only: such hashes protect nothing).
    pub hash_cost: HashCost,

    // VR rooms: tracked parts, interest management, shared objects (protocol.md §11-§13).
    /// Tracked parts one user may have beside its head (hands, controllers, a tool); 0 allows
    /// head-only transforms.
    pub max_parts: usize,
    /// Interest management by distance: each member receives the poses of the members whose
    /// head is within this many metres of its own. `None` (the default) sends every pose to
    /// every member.
    pub interest_radius: Option<f64>,
    /// Interest management by count: each member receives the poses of its K nearest members
    /// (and its own). With `interest_radius` too, the K nearest within the radius.
    pub interest_nearest: Option<usize>,
    /// Shared objects one room may hold (claimed once, until removed or the room goes); 0
    /// turns shared objects off.
    pub max_objects: usize,
    /// Largest `state` of a shared object, in bytes as sent.
    pub max_object_state: usize,
    /// Objects one user may hold at once in one room.
    pub max_claims: usize,

    /// Cluster mode (`--redis`): several nodes share rooms over one Redis. `None` (the
    /// default) runs no Redis code at all.
    pub cluster: Option<ClusterConfig>,
}

/// A cluster member's settings (`--redis`, `--redis-ca`, `--node-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://[:PASSWORD@]HOST:PORT[/DB]`, or `rediss://...` for TLS.
    pub redis_url: String,
    /// PEM file of the CA certificate(s) that Redis's TLS certificate must chain to, instead
    /// of the system's roots (`rediss://` only).
    pub redis_ca: Option<PathBuf>,
    /// This node's client certificate and key, for a Redis that asks for one
    /// (`--redis-cert`, `--redis-key`; `rediss://` only).
    pub redis_client: Option<TlsFiles>,
    /// This node's id: 1 to 64 of `A-Z a-z 0-9 _ - .`, unique in the cluster.
    pub node_id: String,
}

impl ClusterConfig {
    /// Whether `id` can name a node: it travels inside Redis keys and channel messages, split
    /// on spaces and tabs, so it is held to a plain alphabet.
    pub fn valid_node_id(id: &str) -> bool {
        (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    }
}

/// Where TLS's certificate chain and private key are (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The cost of the argon2id password hashes a server makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashCost {
    /// argon2's recommended costs (19 MiB, 2 passes): ~20 ms per hash.
    #[default]
    Standard,
    /// The cheapest costs argon2 allows: for tests, never for real passwords.
    Cheap,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 42069),
            fps: 20.0,
            history: 100,
            max_frame: 65536,
            max_outbuf: 8 * 1024 * 1024,
            max_clients: 10_000,
            login_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            rate_limit: 50.0,
            burst: 100.0,
            max_rooms_per_user: 64,
            max_room_members: 1_000,
            max_rooms: 10_000,
            max_held_rooms: 16,
            max_held_rooms_per_ip: 256,
            max_conns_per_ip: 256,
            transform_rate: 300.0,
            transform_burst: 60.0,
            max_memory: 1 << 30,
            send_buffer: 256 * 1024,
            turn_timeout: Duration::from_secs(60),
            resume_grace: Duration::from_secs(30),
            max_detached: 10_000,
            tls: None,
            metrics_allow: Vec::new(),
            data_dir: None,
            history_max_age: None,
            max_stored_rooms: 10_000,
            accounts_only: false,
            max_accounts: 100_000,
            hash_cost: HashCost::Standard,
            max_parts: 8,
            interest_radius: None,
            interest_nearest: None,
            cluster: None,
            max_objects: 64,
            max_object_state: 1024,
            max_claims: 8,
        }
    }
}

/// A setting that cannot work; the message names the flag and the accepted range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `--redis` that is not a `redis://` or `rediss://` URL.
    #[error(
        "--redis must be a URL like redis://HOST:PORT, redis://:PASSWORD@HOST:PORT/DB or (TLS) rediss://HOST:PORT, got {0:?}"
    )]
    RedisUrl(String),
    /// A `rediss://` URL with a fragment: `#insecure` would turn certificate checks off.
    #[error("--redis: Redis's TLS certificate is always verified; a URL fragment such as #insecure is not accepted (use --redis-ca for a private CA), got {0:?}")]
    RedisFragment(String),
    /// `--redis-ca` (or `--redis-cert`) with a URL that does not use TLS.
    #[error("--{flag} needs a TLS URL (rediss://HOST:PORT); --redis {url:?} does not use TLS")]
    RedisNeedsTls {
        /// The flag's name.
        flag: &'static str,
        /// The URL (without its password).
        url: String,
    },
    /// A node id outside the alphabet.
    #[error("--node-id must be 1 to 64 of A-Z a-z 0-9 _ - ., got {0:?}")]
    NodeId(String),
    /// A setting that does not work across nodes yet.
    #[error("--{0} cannot be used with --redis: interest management needs every member's position, and a node knows only its own members' positions")]
    NotInCluster(&'static str),
    /// fps outside (0, 1000] or not a number.
    #[error("--fps must be a number above 0 and at most 1000, got {0}")]
    Fps(f64),
    /// max_frame outside 1..=16 MiB.
    #[error("--max-frame must be between 1 and {MAX_FRAME_CEILING} bytes, got {0}")]
    MaxFrame(usize),
    /// A limit that must be at least one.
    #[error("--{flag} must be at least 1, got {value}")]
    Zero {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: usize,
    },
    /// max_outbuf too small for a joiner's history plus the largest events.
    #[error("--max-outbuf must be at least 4 x --max-frame ({min} bytes), got {value}")]
    OutbufTooSmall {
        /// Smallest accepted value.
        min: usize,
        /// What was given.
        value: usize,
    },
    /// A rate, burst or timeout that is negative or not a number.
    #[error("--{flag} must be a finite number of at least 0, got {value}")]
    Negative {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// A rate limit whose burst cannot let even one message through.
    #[error("--{flag} must be at least 1 when its rate is on, got {value}")]
    Burst {
        /// The flag's name.
        flag: &'static str,
        /// What was given.
        value: f64,
    },
    /// A login timeout of zero would close every connection at once.
    #[error("--login-timeout must be above 0 seconds")]
    LoginTimeout,
    /// An interest radius that is not a distance.
    #[error(
        "--interest-radius must be a finite number of metres above 0 (0 turns it off), got {0}"
    )]
    InterestRadius(f64),
    /// A memory budget too small to hold the queues of a few clients.
    #[error("--max-memory must be at least 4 x --max-outbuf ({min} bytes), got {value}")]
    MemoryTooSmall {
        /// Smallest accepted value.
        min: usize,
        /// What was given.
        value: usize,
    },
}

impl Config {
    /// Checks every setting; the server refuses to start on the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.fps > 0.0 && self.fps <= 1000.0) {
            return Err(ConfigError::Fps(self.fps));
        }
        if !(1..=MAX_FRAME_CEILING).contains(&self.max_frame) {
            return Err(ConfigError::MaxFrame(self.max_frame));
        }
        let at_least_one = [
            ("max-clients", self.max_clients),
            ("max-rooms-per-user", self.max_rooms_per_user),
            ("max-room-members", self.max_room_members),
            ("max-rooms", self.max_rooms),
            ("max-held-rooms", self.max_held_rooms),
            ("max-held-rooms-per-ip", self.max_held_rooms_per_ip),
            ("max-detached", self.max_detached),
            ("max-stored-rooms", self.max_stored_rooms),
        ];
        for (flag, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Zero { flag, value });
            }
        }
        // Half of it bounds a room's history (what a joiner receives at once); the other half
        // leaves room for live events on top.
        let min_outbuf = 4 * self.max_frame;
        if self.max_outbuf < min_outbuf {
            return Err(ConfigError::OutbufTooSmall {
                min: min_outbuf,
                value: self.max_outbuf,
            });
        }
        let rates = [
            ("rate-limit", self.rate_limit),
            ("burst", self.burst),
            ("transform-rate", self.transform_rate),
            ("transform-burst", self.transform_burst),
        ];
        for (flag, value) in rates {
            if !(value.is_finite() && value >= 0.0) {
                return Err(ConfigError::Negative { flag, value });
            }
        }
        if self.rate_limit > 0.0 && self.burst < 1.0 {
            return Err(ConfigError::Burst {
                flag: "burst",
                value: self.burst,
            });
        }
        if self.transform_rate > 0.0 && self.transform_burst < 1.0 {
            return Err(ConfigError::Burst {
                flag: "transform-burst",
                value: self.transform_burst,
            });
        }
        if self.login_timeout.is_zero() {
            return Err(ConfigError::LoginTimeout);
        }
        if let Some(radius) = self.interest_radius {
            if !(radius.is_finite() && radius > 0.0) {
                return Err(ConfigError::InterestRadius(radius));
            }
        }
        if self.interest_nearest == Some(0) {
            return Err(ConfigError::Zero {
                flag: "interest-nearest",
                value: 0,
            });
        }
        if let Some(cluster) = &self.cluster {
            let url = cluster.redis_url.as_str();
            let shown = || hide_password(url);
            let (tls, rest) = match (url.strip_prefix("redis://"), url.strip_prefix("rediss://")) {
                (Some(rest), _) => (false, rest),
                (_, Some(rest)) => (true, rest),
                _ => (false, ""),
            };
            if rest.is_empty() || rest.starts_with('/') {
                return Err(ConfigError::RedisUrl(shown()));
            }
            if rest.contains('#') {
                return Err(ConfigError::RedisFragment(shown()));
            }
            let tls_flags = [
                ("redis-ca", cluster.redis_ca.is_some()),
                ("redis-cert", cluster.redis_client.is_some()),
            ];
            for (flag, given) in tls_flags {
                if given && !tls {
                    return Err(ConfigError::RedisNeedsTls { flag, url: shown() });
                }
            }
            if !ClusterConfig::valid_node_id(&cluster.node_id) {
                return Err(ConfigError::NodeId(cluster.node_id.clone()));
            }
            if self.interest_radius.is_some() {
                return Err(ConfigError::NotInCluster("interest-radius"));
            }
            if self.interest_nearest.is_some() {
                return Err(ConfigError::NotInCluster("interest-nearest"));
            }
        }
        let min_memory = 4 * self.max_outbuf;
        if self.max_memory < min_memory {
            return Err(ConfigError::MemoryTooSmall {
                min: min_memory,
                value: self.max_memory,
            });
        }
        Ok(())
    }

    /// Time between transform ticks.
    pub fn tick_period(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.fps)
    }
}

/// A Redis URL as messages and logs may show it: its password, if any, replaced by `***`.
pub fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_settings_are_checked() {
        let cluster = |url: &str, id: &str| Config {
            cluster: Some(ClusterConfig {
                redis_url: url.into(),
                redis_ca: None,
                redis_client: None,
                node_id: id.into(),
            }),
            ..Config::default()
        };
        assert_eq!(cluster("redis://127.0.0.1:6379/2", "n1").validate(), Ok(()));
        assert_eq!(cluster("redis://:secret@h:1", "a.b-c_9").validate(), Ok(()));
        for url in ["http://h:1", "redis://", "redis:///0", "127.0.0.1:6379"] {
            assert_eq!(
                cluster(url, "n1").validate(),
                Err(ConfigError::RedisUrl(url.into()))
            );
        }
        for id in ["", "a b", "n\t1", &"x".repeat(65)] {
            assert_eq!(
                cluster("redis://h:1", id).validate(),
                Err(ConfigError::NodeId(id.into()))
            );
        }
        assert_eq!(cluster("rediss://:pw@h:6380/1", "n1").validate(), Ok(()));
        assert_eq!(
            cluster("rediss://:pw@h:1/#insecure", "n1").validate(),
            Err(ConfigError::RedisFragment(
                "rediss://***@h:1/#insecure".into()
            ))
        );
        assert_eq!(
            cluster("rediss://", "n1").validate(),
            Err(ConfigError::RedisUrl("rediss://".into()))
        );
        assert_eq!(
            cluster("http://:pw@h:1", "n1").validate(),
            Err(ConfigError::RedisUrl("http://***@h:1".into())),
            "a password stays out of the message"
        );
        let interest = Config {
            interest_radius: Some(5.0),
            ..cluster("redis://h:1", "n1")
        };
        assert_eq!(
            interest.validate(),
            Err(ConfigError::NotInCluster("interest-radius"))
        );
    }

    #[test]
    fn redis_tls_files_need_a_tls_url() {
        let with = |url: &str, ca: bool, client: bool| Config {
            cluster: Some(ClusterConfig {
                redis_url: url.into(),
                redis_ca: ca.then(|| "ca.pem".into()),
                redis_client: client.then(|| TlsFiles {
                    cert: "node.pem".into(),
                    key: "node.key".into(),
                }),
                node_id: "n1".into(),
            }),
            ..Config::default()
        };
        assert_eq!(
            with("rediss://127.0.0.1:6380", true, false).validate(),
            Ok(())
        );
        assert_eq!(with("rediss://:pw@h:1/2", true, true).validate(), Ok(()));
        assert_eq!(with("rediss://h:1", false, true).validate(), Ok(()));
        assert_eq!(with("redis://h:1", false, false).validate(), Ok(()));
        let err = with("redis://:pw@h:1", true, false).validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::RedisNeedsTls {
                flag: "redis-ca",
                url: "redis://***@h:1".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("--redis-ca needs a TLS URL (rediss://"),
            "{err}"
        );
        assert!(!err.to_string().contains("pw"), "{err}");
        assert_eq!(
            with("redis://h:1", false, true).validate(),
            Err(ConfigError::RedisNeedsTls {
                flag: "redis-cert",
                url: "redis://h:1".into()
            })
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Config::default().tick_period(), Duration::from_millis(50));
    }

    #[test]
    fn fps_must_be_in_range() {
        for fps in [0.0, -1.0, 1000.5, f64::NAN, f64::INFINITY] {
            let config = Config {
                fps,
                ..Config::default()
            };
            assert!(
                matches!(config.validate(), Err(ConfigError::Fps(_))),
                "{fps}"
            );
        }
        let slow = Config {
            fps: 0.5,
            ..Config::default()
        };
        assert_eq!(slow.validate(), Ok(()));
        assert_eq!(slow.tick_period(), Duration::from_secs(2));
    }

    #[test]
    fn limits_are_checked() {
        let config = Config {
            max_frame: 0,
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::MaxFrame(0)));
        let config = Config {
            max_clients: 0,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Zero {
                flag: "max-clients",
                ..
            })
        ));
        let config = Config {
            max_outbuf: 1000,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::OutbufTooSmall { .. })
        ));
        let config = Config {
            burst: 0.5,
            ..Config::default()
        };
        assert_eq!(
            config.validate(),
            Err(ConfigError::Burst {
                flag: "burst",
                value: 0.5
            })
        );
        let config = Config {
            max_memory: 1 << 20,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::MemoryTooSmall { .. })
        ));
        let config = Config {
            login_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::LoginTimeout));
        let config = Config {
            idle_timeout: Duration::ZERO,
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()), "idle timeout 0 is off");
    }

    #[test]
    fn interest_settings_are_checked() {
        for radius in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let config = Config {
                interest_radius: Some(radius),
                ..Config::default()
            };
            assert!(
                matches!(config.validate(), Err(ConfigError::InterestRadius(_))),
                "{radius}"
            );
        }
        let config = Config {
            interest_radius: Some(5.0),
            interest_nearest: Some(20),
            ..Config::default()
        };
        assert_eq!(config.validate(), Ok(()));
        let config = Config {
            interest_nearest: Some(0),
            ..Config::default()
        };
        assert!(config.validate().is_err());
    }
}
