//! Typed server configuration, resolved once from flags, `EVENTBUS_*` variables and an optional
//! TOML file (flags and variables win over the file, the file over defaults). The settings are
//! defined once, in [`ServeArgs`]: its fields are the flags, the variables and the file's keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use eventbus_engine::store::{Durability, StoreConfig};
use serde::{Deserialize, Serialize};

use crate::limits;
use crate::security::certificates::{CertificateEntry, CertificatePrincipal};
use crate::telemetry::{LogFormat, TelemetryArgs};

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
            max_message_bytes: limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_events_per_publish: limits::DEFAULT_MAX_EVENTS_PER_PUBLISH,
            max_attributes: limits::DEFAULT_MAX_ATTRIBUTES,
            max_data_bytes: limits::DEFAULT_MAX_DATA_BYTES,
            max_streams_per_connection: limits::DEFAULT_MAX_STREAMS_PER_CONNECTION,
            max_subscriptions: limits::DEFAULT_MAX_SUBSCRIPTIONS,
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
    /// Where to serve HTTP (metrics, health, the CloudEvents ingress; see [`crate::http`]);
    /// `None` serves none.
    pub http_addr: Option<SocketAddr>,
    /// Whether OpenTelemetry traces are exported (the subscriber is installed by
    /// [`crate::telemetry::init`]): RPC, trigger and deliver spans are only made then.
    pub traces: bool,
    /// TLS on the gRPC listener; `None` serves plaintext.
    pub tls: Option<TlsFiles>,
    /// Serves on a non-loopback address even without TLS or client authentication (see
    /// [`crate::security::check_exposure`]).
    pub insecure: bool,
    /// Whether gRPC reflection is served (it reveals only the schema).
    pub reflection: bool,
    /// A file holding the bootstrap admin token: set, every call but health and reflection needs
    /// a token (see [`crate::security::auth`]).
    pub admin_token_file: Option<PathBuf>,
    /// Base URL of a Jaeger UI the console links traces to; `None` shows no links.
    pub jaeger_ui_url: Option<String>,
    /// How long what the database says about a token is trusted (see
    /// [`crate::security::tokens`]): a revocation takes effect on this server within this time.
    pub token_cache: Duration,
    /// Mutual-TLS client certificates that stand for principals (see
    /// [`crate::security::certificates`]); any entry turns the checks of calls on.
    pub certificate_principals: Vec<CertificatePrincipal>,
}

/// The PEM files of the listener's TLS, read at start and again whenever they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates that sign client certificates: set, every client must present one
    /// (mutual TLS), and a client without one is refused in the handshake.
    pub client_ca: Option<PathBuf>,
    /// How often the files are read again; changed files replace the certificates for new
    /// connections (open ones keep theirs).
    pub reload_interval: Duration,
}

impl TlsFiles {
    /// TLS with `cert` and `key`, no client authentication, files read again every 2 seconds.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self { cert, key, client_ca: None, reload_interval: limits::DEFAULT_TLS_RELOAD_INTERVAL }
    }
}

impl ServerConfig {
    pub fn new(store: StoreConfig) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            store,
            limits: Limits::default(),
            keepalive: limits::DEFAULT_KEEPALIVE,
            poll_interval: Duration::from_millis(500),
            http_addr: None,
            traces: false,
            tls: None,
            insecure: false,
            reflection: true,
            admin_token_file: None,
            jaeger_ui_url: None,
            token_cache: limits::DEFAULT_TOKEN_CACHE,
            certificate_principals: Vec::new(),
        }
    }
}

/// The settings of `eventbus serve`, defined once: each field is a flag (`--max-data-bytes`), an
/// environment variable (`EVENTBUS_MAX_DATA_BYTES`) and a key of the `--config` TOML file
/// (`max_data_bytes`). Flags and variables win over the file, the file over the defaults.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file of settings; its keys are the flags' names with `_` for `-`, and `log_format`
    /// (`main` lists them all in the help).
    #[arg(long, env = "EVENTBUS_CONFIG")]
    #[serde(skip)]
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
    #[arg(long, env = "EVENTBUS_RELAXED_DURABILITY", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub relaxed_durability: Option<bool>,
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
    /// SQLite: the size the WAL file is kept under, MiB; checkpoints start it over at a quarter
    /// of this, and the writer waits for one past half [default: 64].
    #[arg(long, env = "EVENTBUS_SQLITE_WAL_LIMIT_MIB")]
    pub sqlite_wal_limit_mib: Option<u64>,
    /// SQLite: the page size in bytes of a database file created by this server, a power of two
    /// from 512 to 65536; an existing database keeps its own. Smaller pages write fewer bytes per
    /// commit, larger ones make a smaller file [default: 1024].
    #[arg(long, env = "EVENTBUS_SQLITE_PAGE_SIZE")]
    pub sqlite_page_size: Option<u32>,
    /// Microseconds the writer waits for more work before a transaction while calls arrive
    /// during commits (group commit: fewer transactions and bytes written per event under paced
    /// load, at most this much more latency, at least 1 ms on Postgres; a lone caller never
    /// waits, nor a batch of 32 events or more); 0 turns it off [default: 200].
    #[arg(long, env = "EVENTBUS_COMMIT_DELAY_US")]
    pub commit_delay_us: Option<u64>,
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
    /// Another name of --http-addr, from when that listener served only metrics; both given,
    /// they must be the same address.
    #[arg(long, env = "EVENTBUS_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Address of the HTTP listener, e.g. 127.0.0.1:8080: Prometheus metrics (`GET /metrics`),
    /// liveness and readiness (`GET /healthz`, `GET /readyz`) and the CloudEvents ingress
    /// (`POST /v1/namespaces/{namespace}/events`), with the TLS and tokens of gRPC; port 0 picks
    /// a free port [default: none, no HTTP listener].
    #[arg(long, env = "EVENTBUS_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Once listening, write the bound HTTP address to this file (for scripts and tests).
    #[arg(long, env = "EVENTBUS_HTTP_ADDR_FILE")]
    pub http_addr_file: Option<PathBuf>,
    /// OTLP/gRPC endpoint to export traces to, e.g. `http://localhost:4317` [default: none, no
    /// traces]. The standard OTEL_* variables configure the rest.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Base URL of a Jaeger UI, e.g. `http://localhost:16686`: the console links each event and
    /// notification to its trace there [default: none, no links].
    #[arg(long, env = "EVENTBUS_JAEGER_UI_URL")]
    pub jaeger_ui_url: Option<String>,
    /// PEM certificate chain of the gRPC and HTTP listeners: set with --tls-key, the server
    /// speaks only TLS (1.2 or 1.3, ALPN h2 for gRPC, http/1.1 for HTTP). The files are read again every 2 seconds and a changed pair serves
    /// new connections without a restart [default: none, plaintext].
    #[arg(long, env = "EVENTBUS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "EVENTBUS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates for mutual TLS: every client must present a certificate signed by one
    /// of them, or the handshake fails [default: none, no client certificates asked].
    #[arg(long, env = "EVENTBUS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// File holding the bootstrap admin token (`ebt_` and at least 32 letters, digits, '-' or
    /// '_'): set, every call but health and reflection needs `authorization: Bearer <token>`
    /// [default: none, no tokens asked].
    #[arg(long, env = "EVENTBUS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Seconds a server trusts what the database said about a token (its grants, expiry,
    /// revocation): a token revoked on any server is refused here within this time; 0 asks the
    /// database at every call [default: 5].
    #[arg(long, env = "EVENTBUS_TOKEN_CACHE_SECONDS")]
    pub token_cache_seconds: Option<u64>,
    /// Serves on a non-loopback address without TLS or client authentication (refused otherwise);
    /// a warning says so at every start.
    #[arg(long, env = "EVENTBUS_INSECURE", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: Option<bool>,
    /// Serves gRPC reflection (the schema only); `--reflection=false` turns it off [default:
    /// true].
    #[arg(long, env = "EVENTBUS_REFLECTION", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub reflection: Option<bool>,
    /// Mutual-TLS client certificates that stand for principals, in the file only:
    /// `[[certificate_principals]]` tables with `name` (the certificate's subject common name or
    /// a DNS SAN) and `grants` (`["reader:shop"]`); they need --tls-client-ca.
    #[arg(skip)]
    pub certificate_principals: Option<Vec<CertificateEntry>>,
    /// Log line format: the global `--log-format` flag (and `EVENTBUS_LOG_FORMAT`), which `main`
    /// puts here; in the file, `log_format = "json"`.
    #[arg(skip)]
    pub log_format: Option<LogFormat>,
}

/// What `serve` runs with, resolved from [`ServeArgs`].
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: ServerConfig,
    /// Where to write the bound address, if anywhere.
    pub listen_addr_file: Option<PathBuf>,
    /// Where to write the bound HTTP address, if anywhere.
    pub http_addr_file: Option<PathBuf>,
    pub log_format: LogFormat,
    pub telemetry: TelemetryArgs,
}

impl ServeArgs {
    /// Returns these settings over those of the file (each field set here wins).
    fn over(self, file: ServeArgs) -> anyhow::Result<ServeArgs> {
        let table = |s: &ServeArgs| match toml::Value::try_from(s) {
            Ok(toml::Value::Table(t)) => Ok(t),
            Ok(_) => Err(anyhow::anyhow!("settings are not a table")),
            Err(e) => Err(e).context("encoding settings"),
        };
        let mut merged = table(&file)?;
        merged.extend(table(&self)?);
        let config = self.config;
        let merged: ServeArgs = toml::Value::Table(merged).try_into().context("merging settings")?;
        Ok(ServeArgs { config, ..merged })
    }

    /// Reads the `--config` file, if any, and returns the settings of flags and variables over
    /// it.
    fn merged(self) -> anyhow::Result<ServeArgs> {
        let Some(path) = &self.config else { return Ok(self) };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: ServeArgs = toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        self.over(file)
    }

    /// Resolves flags, variables, the file and defaults into what `serve` runs with.
    pub fn resolve(self) -> anyhow::Result<Resolved> {
        let s = self.merged()?;
        let data_file = s.data_file.unwrap_or_else(|| PathBuf::from("eventbus.db"));
        let url = s.database_url.unwrap_or_else(|| format!("sqlite://{}", data_file.display()));
        let mut store = StoreConfig::new(url);
        if s.relaxed_durability.unwrap_or(false) {
            store.durability = Durability::Relaxed;
        }
        store.retention = s.retention_seconds.map(Duration::from_secs);
        if let Some(n) = s.pool_size {
            store.pool_size = n;
        }
        if let Some(secs) = s.database_timeout_seconds {
            store.database_timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(mib) = s.sqlite_wal_limit_mib {
            store.sqlite_wal_limit = mib.max(1) << 20;
        }
        if let Some(bytes) = s.sqlite_page_size {
            anyhow::ensure!(
                (512..=65536).contains(&bytes) && bytes.is_power_of_two(),
                "--sqlite-page-size must be a power of two from 512 to 65536, not {bytes}"
            );
            store.sqlite_page_size = bytes;
        }
        if let Some(us) = s.commit_delay_us {
            store.commit_delay = Duration::from_micros(us.min(100_000));
        }
        let mut config = ServerConfig::new(store);
        if let Some(a) = s.listen {
            config.listen = a;
        }
        let l = &mut config.limits;
        l.max_message_bytes = s.max_message_bytes.unwrap_or(l.max_message_bytes);
        l.max_data_bytes = s.max_data_bytes.unwrap_or(l.max_data_bytes);
        l.max_attributes = s.max_attributes.unwrap_or(l.max_attributes);
        l.max_subscriptions = s.max_subscriptions.unwrap_or(l.max_subscriptions);
        l.max_streams_per_connection = s.max_streams_per_connection.unwrap_or(l.max_streams_per_connection);
        if let Some(secs) = s.keepalive_seconds {
            config.keepalive = Duration::from_secs(secs.max(1));
        }
        config.http_addr = http_addr(s.http_addr, s.metrics_addr)?;
        config.tls = tls_files(s.tls_cert, s.tls_key, s.tls_client_ca)?;
        config.insecure = s.insecure.unwrap_or(false);
        config.reflection = s.reflection.unwrap_or(true);
        config.admin_token_file = s.admin_token_file;
        config.jaeger_ui_url = s.jaeger_ui_url.map(|u| u.trim_end_matches('/').to_owned());
        if let Some(secs) = s.token_cache_seconds {
            config.token_cache = Duration::from_secs(secs);
        }
        let principals = s.certificate_principals.unwrap_or_default();
        config.certificate_principals =
            principals.into_iter().map(CertificateEntry::check).collect::<Result<_, _>>()?;
        anyhow::ensure!(
            config.certificate_principals.is_empty() || config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
            "certificate_principals need mutual TLS: set --tls-client-ca (with --tls-cert and --tls-key)"
        );
        let telemetry = TelemetryArgs { otlp_endpoint: s.otlp_endpoint };
        config.traces = telemetry.traces_enabled();
        let log_format = s.log_format.unwrap_or_default();
        Ok(Resolved {
            config,
            listen_addr_file: s.listen_addr_file,
            http_addr_file: s.http_addr_file,
            log_format,
            telemetry,
        })
    }
}

/// Returns the address of the HTTP listener: `--http-addr`, or its older name `--metrics-addr`
/// (one listener serves both, so two different addresses are an error).
fn http_addr(http: Option<SocketAddr>, metrics: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
    match (http, metrics) {
        (Some(h), Some(m)) if h != m => anyhow::bail!(
            "--http-addr {h} and --metrics-addr {m} differ: one HTTP listener serves metrics, health and the \
             ingress; set only --http-addr"
        ),
        (h, m) => Ok(h.or(m)),
    }
}

/// Returns the TLS files of the listener: a certificate and its key go together, and client
/// authentication needs TLS.
fn tls_files(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
) -> anyhow::Result<Option<TlsFiles>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles { client_ca, ..TlsFiles::new(cert, key) })),
        (None, None) if client_ca.is_some() => {
            anyhow::bail!("--tls-client-ca needs TLS: set --tls-cert and --tls-key too")
        }
        (None, None) => Ok(None),
        (Some(_), None) => anyhow::bail!("--tls-cert needs --tls-key"),
        (None, Some(_)) => anyhow::bail!("--tls-key needs --tls-cert"),
    }
}

#[cfg(test)]
#[path = "config/tests.rs"]
mod tests;
