//! Counters, gauges and histograms the hub and the event loop bump, rendered for `GET
//! /metrics` in the Prometheus text format (0.0.4) by prometheus-client.
//!
//! The server is single-threaded, so a bump is a plain add on a field or an array slot
//! indexed by an enum: no atomics, no locks, no map lookups on the hot path. Only
//! [`Stats::render`], once per scrape, touches prometheus-client: it copies the numbers
//! into a one-off registry and encodes them.
//!
//! Every table here has a fixed size: labels come from enums (transport, message type) or
//! from the server's own status codes, never from a peer.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Stats::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// What a connection speaks, for the `transport` label of `roomcast_connections`. Whether
/// it runs inside TLS is the separate `tls` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKind {
    /// Accepted, first bytes not seen yet.
    Pending,
    /// Length-prefixed JSON.
    Framed,
    /// Newline-delimited JSON.
    Line,
    /// An HTTP request (the viewer page, `/metrics`), before any upgrade.
    Http,
    /// A WebSocket after the upgrade.
    WebSocket,
}

impl ConnKind {
    /// Every kind, in label order.
    pub const ALL: [ConnKind; 5] = [
        ConnKind::Pending,
        ConnKind::Framed,
        ConnKind::Line,
        ConnKind::Http,
        ConnKind::WebSocket,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::Pending => "pending",
            ConnKind::Framed => "framed",
            ConnKind::Line => "line",
            ConnKind::Http => "http",
            ConnKind::WebSocket => "websocket",
        }
    }
}

/// The client message types, for the `type` label of `roomcast_messages_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `{"system":"login"}`
    Login,
    /// `{"system":"resume"}`
    Resume,
    /// `{"system":"logout"}`
    Logout,
    /// `{"system":"register"}`
    Register,
    /// `{"system":"password"}`
    Password,
    /// `{"system":"ping"}`
    Ping,
    /// `{"system":"rooms"}`
    Rooms,
    /// Room `join`.
    Join,
    /// Room `leave`.
    Leave,
    /// Room `list`.
    List,
    /// Room `msg`.
    Msg,
    /// Room `transform`.
    Transform,
    /// Room `game`.
    Game,
    /// Room `history`.
    History,
    /// Room `claim` (a shared object).
    Claim,
    /// Room `release` (a shared object).
    Release,
    /// Room `object` (a shared object's update).
    Object,
    /// A frame that did not parse as any of the above (answered 400).
    Malformed,
}

impl MessageType {
    /// Every type, in label order.
    pub const ALL: [MessageType; 18] = [
        MessageType::Login,
        MessageType::Resume,
        MessageType::Logout,
        MessageType::Register,
        MessageType::Password,
        MessageType::Ping,
        MessageType::Rooms,
        MessageType::Join,
        MessageType::Leave,
        MessageType::List,
        MessageType::Msg,
        MessageType::Transform,
        MessageType::Game,
        MessageType::History,
        MessageType::Claim,
        MessageType::Release,
        MessageType::Object,
        MessageType::Malformed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Login => "login",
            MessageType::Resume => "resume",
            MessageType::Logout => "logout",
            MessageType::Register => "register",
            MessageType::Password => "password",
            MessageType::Ping => "ping",
            MessageType::Rooms => "rooms",
            MessageType::Join => "join",
            MessageType::Leave => "leave",
            MessageType::List => "list",
            MessageType::Msg => "msg",
            MessageType::Transform => "transform",
            MessageType::Game => "game",
            MessageType::History => "history",
            MessageType::Claim => "claim",
            MessageType::Release => "release",
            MessageType::Object => "object",
            MessageType::Malformed => "malformed",
        }
    }
}

/// Upper bounds, in seconds, of the duration histograms: 10 µs (an idle pass) to 100 ms (a
/// pass far over a 20 fps tick budget of 50 ms).
pub const DURATION_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// A histogram over [`DURATION_BUCKETS`]: per-bucket counts (the last is `+Inf`), sum and
/// count.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&mut self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = DURATION_BUCKETS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their total, in seconds.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

/// Status codes with a slot in the error table: every 4xx and 5xx.
const ERROR_CODES: std::ops::RangeInclusive<u16> = 400..=599;

/// Everything the server counts. One per server, owned by the loop and lent to the hub.
#[derive(Debug, Clone)]
pub struct Stats {
    /// `[kind][tls]`.
    connections: [[u64; 2]; ConnKind::ALL.len()],
    sessions: u64,
    rooms: u64,
    messages_received: [u64; MessageType::ALL.len()],
    events_delivered: u64,
    bytes_sent: u64,
    pose_ticks: u64,
    poses_superseded: u64,
    ticks_skipped_backlog: u64,
    /// Indexed by `code - 400`.
    errors: [u64; 200],
    slow_consumer_disconnects: u64,
    tick_duration: Histogram,
    loop_pass_duration: Histogram,
    /// Pose ticks run (all rooms at once), so the loop can tell a tick from housekeeping.
    ticks_run: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    /// All zero.
    pub fn new() -> Self {
        Stats {
            connections: [[0; 2]; ConnKind::ALL.len()],
            sessions: 0,
            rooms: 0,
            messages_received: [0; MessageType::ALL.len()],
            events_delivered: 0,
            bytes_sent: 0,
            pose_ticks: 0,
            poses_superseded: 0,
            ticks_skipped_backlog: 0,
            errors: [0; 200],
            slow_consumer_disconnects: 0,
            tick_duration: Histogram::default(),
            loop_pass_duration: Histogram::default(),
            ticks_run: 0,
        }
    }

    /// A connection was accepted (usually as [`ConnKind::Pending`]).
    pub fn conn_opened(&mut self, kind: ConnKind, tls: bool) {
        self.connections[kind as usize][usize::from(tls)] += 1;
    }

    /// A connection was reaped.
    pub fn conn_closed(&mut self, kind: ConnKind, tls: bool) {
        let slot = &mut self.connections[kind as usize][usize::from(tls)];
        debug_assert!(
            *slot > 0,
            "closing a {} connection never opened",
            kind.as_str()
        );
        *slot = slot.saturating_sub(1);
    }

    /// A connection's transport became known (sniffed, or upgraded from HTTP to WebSocket).
    pub fn conn_became(&mut self, from: ConnKind, to: ConnKind, tls: bool) {
        self.conn_closed(from, tls);
        self.conn_opened(to, tls);
    }

    /// Logged-in sessions now (the hub sets it from its table, so it cannot drift).
    pub fn set_sessions(&mut self, sessions: usize) {
        self.sessions = sessions as u64;
    }

    /// Rooms that exist now, lobby included.
    pub fn set_rooms(&mut self, rooms: usize) {
        self.rooms = rooms as u64;
    }

    /// A whole client message arrived.
    pub fn received(&mut self, kind: MessageType) {
        self.messages_received[kind as usize] += 1;
    }

    /// `events` room events were queued to recipients (an event sent to 10 members is 10).
    pub fn delivered(&mut self, events: u64) {
        self.events_delivered += events;
    }

    /// Bytes written to sockets.
    pub fn sent_bytes(&mut self, bytes: usize) {
        self.bytes_sent += bytes as u64;
    }

    /// A room sent a pose tick frame.
    pub fn pose_tick(&mut self) {
        self.pose_ticks += 1;
    }

    /// Poses overwritten by a newer one of the same user before a tick sent them.
    pub fn poses_superseded(&mut self, poses: u64) {
        self.poses_superseded += poses;
    }

    /// A tick frame was not sent to a backlogged member.
    pub fn tick_skipped_backlog(&mut self) {
        self.ticks_skipped_backlog += 1;
    }

    /// An error reply with this status code was sent. Codes outside 400..=599 are not
    /// errors and are ignored.
    pub fn error(&mut self, code: u16) {
        debug_assert!(ERROR_CODES.contains(&code), "{code} is not an error code");
        if ERROR_CODES.contains(&code) {
            self.errors[usize::from(code - 400)] += 1;
        }
    }

    /// A client was cut off over `--max-outbuf`.
    pub fn slow_consumer_disconnect(&mut self) {
        self.slow_consumer_disconnects += 1;
    }

    /// The hub ran a pose tick (over all rooms that needed one).
    pub fn tick_ran(&mut self) {
        self.ticks_run += 1;
    }

    /// Pose ticks run so far.
    pub fn ticks_run(&self) -> u64 {
        self.ticks_run
    }

    /// Open connections of every kind.
    pub fn connections(&self) -> u64 {
        self.connections.iter().flatten().sum()
    }

    /// Client messages received so far, every type.
    pub fn messages_received(&self) -> u64 {
        self.messages_received.iter().sum()
    }

    /// Bytes written to sockets so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Logged-in sessions, as last set.
    pub fn sessions(&self) -> u64 {
        self.sessions
    }

    /// Rooms, as last set.
    pub fn rooms(&self) -> u64 {
        self.rooms
    }

    /// How long one pose tick (all rooms) took.
    pub fn tick_took(&mut self, duration: Duration) {
        self.tick_duration.observe(duration);
    }

    /// How long one pass of the event loop took, poll wait excluded.
    pub fn loop_pass_took(&mut self, duration: Duration) {
        self.loop_pass_duration.observe(duration);
    }

    /// The Prometheus text exposition of everything, for `GET /metrics` (serve it with
    /// [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Snapshot(self.clone())));
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail, and the collector returns only the writer's
        // errors.
        let encoded = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
        debug_assert!(encoded.is_ok());
        out
    }
}

/// A copy of the numbers, owned by the one-off registry of a render.
#[derive(Debug)]
struct Snapshot(Stats);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;

        let mut metric = encoder.encode_descriptor(
            "roomcast_connections",
            "Open connections by transport and whether they run inside TLS.",
            None,
            MetricType::Gauge,
        )?;
        for kind in ConnKind::ALL {
            for tls in [false, true] {
                let labels = [("transport", kind.as_str()), ("tls", bool_label(tls))];
                let value = stats.connections[kind as usize][usize::from(tls)];
                ConstGauge::new(value as i64).encode(metric.encode_family(&labels)?)?;
            }
        }

        gauge(
            &mut encoder,
            "roomcast_sessions",
            "Logged-in users.",
            stats.sessions,
        )?;
        gauge(
            &mut encoder,
            "roomcast_rooms",
            "Rooms that exist, lobby included.",
            stats.rooms,
        )?;

        let mut metric = encoder.encode_descriptor(
            "roomcast_messages_received",
            "Whole client messages received, by type.",
            None,
            MetricType::Counter,
        )?;
        for kind in MessageType::ALL {
            let labels = [("type", kind.as_str())];
            ConstCounter::new(stats.messages_received[kind as usize])
                .encode(metric.encode_family(&labels)?)?;
        }

        counter(
            &mut encoder,
            "roomcast_events_delivered",
            "Room events queued to recipients, one per recipient.",
            stats.events_delivered,
        )?;
        counter(
            &mut encoder,
            "roomcast_bytes_sent",
            "Bytes written to client sockets.",
            stats.bytes_sent,
        )?;
        counter(
            &mut encoder,
            "roomcast_pose_ticks",
            "Pose tick frames sent, one per room and tick.",
            stats.pose_ticks,
        )?;
        counter(
            &mut encoder,
            "roomcast_poses_superseded",
            "Poses replaced by a newer one of the same user before a tick sent them.",
            stats.poses_superseded,
        )?;
        counter(
            &mut encoder,
            "roomcast_ticks_skipped_backlog",
            "Tick frames not sent to a member whose queue was over the soft limit.",
            stats.ticks_skipped_backlog,
        )?;

        let mut metric = encoder.encode_descriptor(
            "roomcast_errors",
            "Error replies sent, by status code.",
            None,
            MetricType::Counter,
        )?;
        for (code, &count) in ERROR_CODES.zip(stats.errors.iter()) {
            if count > 0 {
                let labels = [("code", code)];
                ConstCounter::new(count).encode(metric.encode_family(&labels)?)?;
            }
        }

        counter(
            &mut encoder,
            "roomcast_slow_consumer_disconnects",
            "Clients cut off for queueing more than --max-outbuf.",
            stats.slow_consumer_disconnects,
        )?;

        histogram(
            &mut encoder,
            "roomcast_tick_duration_seconds",
            "Time to run one pose tick over all rooms.",
            &stats.tick_duration,
        )?;
        histogram(
            &mut encoder,
            "roomcast_loop_pass_duration_seconds",
            "Time of one event-loop pass, poll wait excluded.",
            &stats.loop_pass_duration,
        )
    }
}

fn bool_label(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value as i64).encode(metric)
}

/// A counter; the encoder appends `_total` to `name`.
fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    histogram: &Histogram,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    let mut buckets = [(0.0, 0); DURATION_BUCKETS.len() + 1];
    for (slot, (bound, count)) in buckets.iter_mut().zip(
        DURATION_BUCKETS
            .iter()
            .chain([f64::INFINITY].iter())
            .zip(histogram.buckets),
    ) {
        *slot = (*bound, count);
    }
    metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        histogram.sum,
        histogram.count,
        &buckets,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The parsed exposition: `# TYPE` per family, and every sample keyed by its name and
    /// labels as written (`name{a="b",c="d"}`).
    struct Parsed {
        types: HashMap<String, String>,
        helps: HashMap<String, String>,
        samples: HashMap<String, f64>,
    }

    /// A strict reader of the text format: every line is a HELP, a TYPE or a sample with a
    /// valid name, well-formed labels and a number; a sample's family must be typed first.
    fn parse(text: &str) -> Parsed {
        let mut parsed = Parsed {
            types: HashMap::new(),
            helps: HashMap::new(),
            samples: HashMap::new(),
        };
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty());
                parsed.helps.insert(name.to_owned(), help.to_owned());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert!(parsed.helps.contains_key(name), "HELP before TYPE: {line}");
                parsed.types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                number => number.parse().unwrap_or_else(|_| panic!("value in {line}")),
            };
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels.strip_prefix('{').unwrap().strip_suffix('}').unwrap();
                    for pair in inner.split(',') {
                        let (key, quoted) = pair.split_once('=').unwrap();
                        assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                        assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                    }
                }
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix).filter(|base| {
                        parsed.types.get(*base).map(String::as_str) == Some("histogram")
                    })
                })
                .unwrap_or(name);
            assert!(parsed.types.contains_key(family), "untyped sample: {line}");
            assert!(
                parsed.samples.insert(series.to_owned(), value).is_none(),
                "duplicate series {series}"
            );
        }
        parsed
    }

    #[test]
    fn a_fresh_server_renders_every_family_at_zero() {
        let parsed = parse(&Stats::new().render());
        let want = [
            ("roomcast_connections", "gauge"),
            ("roomcast_sessions", "gauge"),
            ("roomcast_rooms", "gauge"),
            ("roomcast_messages_received_total", "counter"),
            ("roomcast_events_delivered_total", "counter"),
            ("roomcast_bytes_sent_total", "counter"),
            ("roomcast_pose_ticks_total", "counter"),
            ("roomcast_poses_superseded_total", "counter"),
            ("roomcast_ticks_skipped_backlog_total", "counter"),
            ("roomcast_errors_total", "counter"),
            ("roomcast_slow_consumer_disconnects_total", "counter"),
            ("roomcast_tick_duration_seconds", "histogram"),
            ("roomcast_loop_pass_duration_seconds", "histogram"),
        ];
        for (name, kind) in want {
            assert_eq!(
                parsed.types.get(name).map(String::as_str),
                Some(kind),
                "{name}"
            );
        }
        assert_eq!(parsed.types.len(), want.len());
        assert!(parsed
            .samples
            .values()
            .all(|&v| v == 0.0 || v == f64::INFINITY));
        assert_eq!(
            parsed.samples[r#"roomcast_connections{transport="websocket",tls="true"}"#],
            0.0
        );
        assert!(
            !parsed
                .samples
                .keys()
                .any(|k| k.starts_with("roomcast_errors_total")),
            "no error series until an error"
        );
    }

    #[test]
    fn bumps_show_up_with_their_labels() {
        let mut stats = Stats::new();
        stats.conn_opened(ConnKind::Pending, false);
        stats.conn_opened(ConnKind::Pending, false);
        stats.conn_opened(ConnKind::Pending, true);
        stats.conn_became(ConnKind::Pending, ConnKind::Line, false);
        stats.conn_became(ConnKind::Pending, ConnKind::Http, true);
        stats.conn_became(ConnKind::Http, ConnKind::WebSocket, true);
        stats.set_sessions(2);
        stats.set_rooms(3);
        stats.received(MessageType::Msg);
        stats.received(MessageType::Msg);
        stats.received(MessageType::Transform);
        stats.delivered(10);
        stats.delivered(5);
        stats.sent_bytes(1500);
        stats.pose_tick();
        stats.poses_superseded(49);
        stats.tick_skipped_backlog();
        stats.error(404);
        stats.error(404);
        stats.error(503);
        stats.slow_consumer_disconnect();

        let parsed = parse(&stats.render());
        let s = |series: &str| parsed.samples[series];
        assert_eq!(
            s(r#"roomcast_connections{transport="pending",tls="false"}"#),
            1.0
        );
        assert_eq!(
            s(r#"roomcast_connections{transport="line",tls="false"}"#),
            1.0
        );
        assert_eq!(
            s(r#"roomcast_connections{transport="pending",tls="true"}"#),
            0.0
        );
        assert_eq!(
            s(r#"roomcast_connections{transport="http",tls="true"}"#),
            0.0
        );
        assert_eq!(
            s(r#"roomcast_connections{transport="websocket",tls="true"}"#),
            1.0
        );
        assert_eq!(s("roomcast_sessions"), 2.0);
        assert_eq!(s("roomcast_rooms"), 3.0);
        assert_eq!(s(r#"roomcast_messages_received_total{type="msg"}"#), 2.0);
        assert_eq!(
            s(r#"roomcast_messages_received_total{type="transform"}"#),
            1.0
        );
        assert_eq!(s(r#"roomcast_messages_received_total{type="login"}"#), 0.0);
        assert_eq!(s("roomcast_events_delivered_total"), 15.0);
        assert_eq!(s("roomcast_bytes_sent_total"), 1500.0);
        assert_eq!(s("roomcast_pose_ticks_total"), 1.0);
        assert_eq!(s("roomcast_poses_superseded_total"), 49.0);
        assert_eq!(s("roomcast_ticks_skipped_backlog_total"), 1.0);
        assert_eq!(s(r#"roomcast_errors_total{code="404"}"#), 2.0);
        assert_eq!(s(r#"roomcast_errors_total{code="503"}"#), 1.0);
        assert_eq!(s("roomcast_slow_consumer_disconnects_total"), 1.0);
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let mut stats = Stats::new();
        stats.tick_took(Duration::from_micros(5)); // first bucket
        stats.tick_took(Duration::from_micros(100)); // exactly on the 0.0001 bound
        stats.tick_took(Duration::from_millis(3)); // 0.005 bucket
        stats.tick_took(Duration::from_secs(1)); // +Inf only
        stats.loop_pass_took(Duration::from_micros(20));

        let parsed = parse(&stats.render());
        let s = |series: &str| parsed.samples[series];
        let tick = |le: &str| {
            s(&format!(
                r#"roomcast_tick_duration_seconds_bucket{{le="{le}"}}"#
            ))
        };
        assert_eq!(tick("1e-05"), 1.0);
        assert_eq!(tick("5e-05"), 1.0);
        assert_eq!(tick("0.0001"), 2.0, "a bound is inclusive");
        assert_eq!(tick("0.0025"), 2.0);
        assert_eq!(tick("0.005"), 3.0);
        assert_eq!(tick("0.1"), 3.0);
        assert_eq!(tick("+Inf"), 4.0);
        assert_eq!(s("roomcast_tick_duration_seconds_count"), 4.0);
        assert!((s("roomcast_tick_duration_seconds_sum") - 1.003105).abs() < 1e-9);
        assert_eq!(
            s(r#"roomcast_loop_pass_duration_seconds_bucket{le="2.5e-05"}"#),
            1.0
        );
        assert_eq!(stats.tick_duration.count(), 4);
        assert!((stats.loop_pass_duration.sum() - 0.00002).abs() < 1e-12);
    }
}
