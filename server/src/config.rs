//! Typed server configuration, resolved once from flags, `EVENTBUS_*` variables and an optional
//! TOML file (flags and variables win over the file, the file over defaults).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use eventbus_engine::store::{Durability, StoreConfig};
use serde::Deserialize;

use crate::telemetry::TelemetryArgs;

/// Request and stream limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Most events in one Publish.
    pub max_events_per_publish: usize,
    /// Most attributes (optional and extension) per event.
    pub max_attributes: usize,
    /// Largest event payload, bytes.
    pub max_data_bytes: usize,
    /// Most concurrent HTTP/2 streams (calls) per connection.
    pub max_streams_per_connection: u32,
    /// Most open Subscribe streams in the server.
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 << 20,
            max_events_per_publish: 1000,
            max_attributes: 64,
            max_data_bytes: 1 << 20,
            max_streams_per_connection: 1024,
            max_subscriptions: 10_000,
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub limits: Limits,
    /// A Subscribe stream sends a keepalive after this long without a message.
    pub keepalive: Duration,
    /// A Subscribe stream also looks for due redeliveries (and, on Postgres, notifications other
    /// servers created) this often.
    pub poll_interval: Duration,
    /// Where to serve Prometheus metrics; `None` serves none.
    pub metrics_addr: Option<SocketAddr>,
    /// Whether OpenTelemetry traces are exported (the subscriber is installed by
    /// [`crate::telemetry::init`]): RPC, trigger and deliver spans are only made then.
    pub traces: bool,
}

impl ServerConfig {
    pub fn new(store: StoreConfig) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            store,
            limits: Limits::default(),
            keepalive: Duration::from_secs(15),
            poll_interval: Duration::from_millis(500),
            metrics_addr: None,
            traces: false,
        }
    }
}

/// `eventbus serve` flags; each also reads an `EVENTBUS_*` variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with `_` for `-`).
    #[arg(long, env = "EVENTBUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on for gRPC [default: 127.0.0.1:50051]; port 0 picks a free port.
    #[arg(long, env = "EVENTBUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Once listening, write the bound address to this file (for scripts and tests).
    #[arg(long, env = "EVENTBUS_LISTEN_ADDR_FILE")]
    pub listen_addr_file: Option<PathBuf>,
    /// Database URL: `sqlite://FILE` (embedded) or `postgres://USER@HOST/DB` (several servers may
    /// share it) [default: sqlite://<data-file>].
    #[arg(long, env = "EVENTBUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// SQLite file used when no database URL is given [default: eventbus.db].
    #[arg(long, env = "EVENTBUS_DATA_FILE")]
    pub data_file: Option<PathBuf>,
    /// Acknowledge a publish once committed, before it is flushed to disk: faster, but a machine
    /// crash may lose the last acknowledged writes.
    #[arg(long, env = "EVENTBUS_RELAXED_DURABILITY")]
    pub relaxed_durability: bool,
    /// Delete events, finished notifications and finished listeners older than this many
    /// seconds [default: keep forever].
    #[arg(long, env = "EVENTBUS_RETENTION_SECONDS")]
    pub retention_seconds: Option<u64>,
    /// Database connections [default: 8].
    #[arg(long, env = "EVENTBUS_POOL_SIZE")]
    pub pool_size: Option<u32>,
    /// Seconds a call waits for the database before it fails with UNAVAILABLE (also the
    /// Postgres statement and idle-in-transaction timeouts) [default: 5].
    #[arg(long, env = "EVENTBUS_DATABASE_TIMEOUT_SECONDS")]
    pub database_timeout_seconds: Option<u64>,
    /// Largest gRPC message, bytes [default: 4194304].
    #[arg(long, env = "EVENTBUS_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest event payload, bytes [default: 1048576].
    #[arg(long, env = "EVENTBUS_MAX_DATA_BYTES")]
    pub max_data_bytes: Option<usize>,
    /// Most attributes per event [default: 64].
    #[arg(long, env = "EVENTBUS_MAX_ATTRIBUTES")]
    pub max_attributes: Option<usize>,
    /// Most open Subscribe streams [default: 10000].
    #[arg(long, env = "EVENTBUS_MAX_SUBSCRIPTIONS")]
    pub max_subscriptions: Option<usize>,
    /// Most concurrent calls per connection [default: 1024].
    #[arg(long, env = "EVENTBUS_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Seconds without a message after which a Subscribe stream gets a keepalive [default: 15].
    #[arg(long, env = "EVENTBUS_KEEPALIVE_SECONDS")]
    pub keepalive_seconds: Option<u64>,
    /// Address to serve Prometheus metrics on (`GET /metrics`), e.g. 127.0.0.1:9464 [default:
    /// none, no metrics endpoint].
    #[arg(long, env = "EVENTBUS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    listen_addr_file: Option<PathBuf>,
    database_url: Option<String>,
    data_file: Option<PathBuf>,
    relaxed_durability: Option<bool>,
    retention_seconds: Option<u64>,
    pool_size: Option<u32>,
    database_timeout_seconds: Option<u64>,
    max_message_bytes: Option<usize>,
    max_data_bytes: Option<usize>,
    max_attributes: Option<usize>,
    max_subscriptions: Option<usize>,
    max_streams_per_connection: Option<u32>,
    keepalive_seconds: Option<u64>,
    metrics_addr: Option<SocketAddr>,
}

impl ServeArgs {
    /// Resolves flags, variables, the file and defaults into a config, and the address file.
    pub fn resolve(self) -> anyhow::Result<(ServerConfig, Option<PathBuf>)> {
        let file: FileConfig = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let data_file = self.data_file.or(file.data_file).unwrap_or_else(|| PathBuf::from("eventbus.db"));
        let url =
            self.database_url.or(file.database_url).unwrap_or_else(|| format!("sqlite://{}", data_file.display()));
        let mut store = StoreConfig::new(url);
        if self.relaxed_durability || file.relaxed_durability.unwrap_or(false) {
            store.durability = Durability::Relaxed;
        }
        store.retention = self.retention_seconds.or(file.retention_seconds).map(Duration::from_secs);
        if let Some(n) = self.pool_size.or(file.pool_size) {
            store.pool_size = n;
        }
        if let Some(s) = self.database_timeout_seconds.or(file.database_timeout_seconds) {
            store.database_timeout = Duration::from_secs(s.max(1));
        }
        let mut config = ServerConfig::new(store);
        if let Some(a) = self.listen.or(file.listen) {
            config.listen = a;
        }
        let l = &mut config.limits;
        if let Some(n) = self.max_message_bytes.or(file.max_message_bytes) {
            l.max_message_bytes = n;
        }
        if let Some(n) = self.max_data_bytes.or(file.max_data_bytes) {
            l.max_data_bytes = n;
        }
        if let Some(n) = self.max_attributes.or(file.max_attributes) {
            l.max_attributes = n;
        }
        if let Some(n) = self.max_subscriptions.or(file.max_subscriptions) {
            l.max_subscriptions = n;
        }
        if let Some(n) = self.max_streams_per_connection.or(file.max_streams_per_connection) {
            l.max_streams_per_connection = n;
        }
        if let Some(s) = self.keepalive_seconds.or(file.keepalive_seconds) {
            config.keepalive = Duration::from_secs(s.max(1));
        }
        config.metrics_addr = self.metrics_addr.or(file.metrics_addr);
        config.traces = self.telemetry.traces_enabled();
        Ok((config, self.listen_addr_file.or(file.listen_addr_file)))
    }
}
