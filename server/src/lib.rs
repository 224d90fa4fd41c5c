//! eventbus-server: the process. It serves the `eventbus.v1.EventBusService` contract over gRPC
//! (with health checks and reflection) on top of the engine's store, and owns everything a
//! process owns: sockets, configuration, signals, telemetry. Requests are checked and converted
//! for the engine in [`request`] (every limit named in [`limits`]), answers converted back in
//! [`convert`]; errors become status codes in [`status`] only; the health of the event bus
//! service follows the database ([`readiness`]). [`security`] keeps an unprotected server on
//! loopback and terminates TLS. [`http`] serves metrics, probes and the CloudEvents ingress on
//! the HTTP listener.

// Functions fit on a screen (the threshold is in .clippy.toml), tests and benches aside.
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use eventbus_client::FILE_DESCRIPTOR_SET;
use eventbus_client::pb::event_bus_service_server::EventBusServiceServer;
use eventbus_client::pb::token_service_server::TokenServiceServer;
use eventbus_engine::store::{Durability, Store};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;

pub mod config;
pub mod console;
pub mod convert;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod readiness;
pub mod request;
pub mod security;
pub mod service;
pub mod status;
pub mod subscribe;
pub mod telemetry;

pub use config::{Limits, ServeArgs, ServerConfig, TlsFiles};
use metrics::{Metrics, StoreObserver};
pub use service::EventBus;

/// The listeners of a server: gRPC, and HTTP (`--http-addr`) when bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    pub grpc: TcpListener,
    /// `None`: [`serve`] binds `ServerConfig::http_addr` itself, if set.
    pub http: Option<TcpListener>,
}

impl Listeners {
    /// Refuses listeners others can reach without TLS and client authentication (see
    /// [`security::check_exposure`]); [`serve`] checks it too, callers may check first.
    pub fn check_exposure(&self, config: &ServerConfig) -> anyhow::Result<()> {
        security::check_exposure(self.grpc.local_addr().context("reading the bound address")?, config)?;
        if let Some(http) = &self.http {
            let addr = http.local_addr().context("reading the bound HTTP address")?;
            security::check_listener_exposure("--http-addr", addr, config)?;
        }
        Ok(())
    }
}

impl From<TcpListener> for Listeners {
    fn from(grpc: TcpListener) -> Self {
        Self { grpc, http: None }
    }
}

/// Serves on already bound listeners until `shutdown` completes, then shuts down gracefully:
/// stops accepting, lets unary calls in flight finish, and ends Subscribe streams with
/// UNAVAILABLE (clients reconnect elsewhere or later).
///
/// Refuses to start, before opening the store, on a listener others can reach without TLS and
/// client authentication (see [`security::check_exposure`]) or with TLS files that do not load.
pub async fn serve(
    listeners: impl Into<Listeners>,
    mut config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = secure(listeners.into(), &config).await?;
    let metrics = Arc::new(Metrics::default());
    if config.traces || config.http_addr.is_some() || listener.http.is_some() {
        let observer = StoreObserver { metrics: metrics.clone(), traces: config.traces };
        config.store.observer = Some(Arc::new(observer));
    }
    let location = config.store.database_location();
    let store = Store::open(config.store.clone()).await.with_context(|| format!("opening the database {location}"))?;
    run(listener, store, config, metrics, shutdown).await
}

/// Like [`serve`], with a store the caller opened (trigger spans and the fired and
/// publish-to-ack metrics need the observer [`serve`] gives the store it opens).
pub async fn serve_store(
    listeners: impl Into<Listeners>,
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = secure(listeners.into(), &config).await?;
    run(listener, store, config, Arc::new(Metrics::default()), shutdown).await
}

/// The bound listeners, with their TLS acceptors and the tokens they accept, if any.
struct Listener {
    tcp: TcpListener,
    tls: Option<security::tls::Acceptor>,
    tokens: Option<security::auth::Tokens>,
    http: Option<(TcpListener, Option<security::tls::Acceptor>)>,
}

/// Binds the HTTP listener if the caller did not and `--http-addr` asks for one, checks that
/// the listeners may serve with this configuration, and loads the TLS and token files.
async fn secure(listeners: Listeners, config: &ServerConfig) -> anyhow::Result<Listener> {
    let Listeners { grpc, http } = listeners;
    let http = match (http, config.http_addr) {
        (Some(http), _) => Some(http),
        (None, Some(wanted)) => {
            Some(TcpListener::bind(wanted).await.with_context(|| format!("binding the HTTP listener on {wanted}"))?)
        }
        (None, None) => None,
    };
    let listeners = Listeners { grpc, http };
    listeners.check_exposure(config)?;
    let Listeners { grpc: tcp, http } = listeners;
    let tls = config.tls.as_ref().map(security::tls::Acceptor::load).transpose().context("loading the TLS files")?;
    let http_tls = match (&http, &config.tls) {
        (Some(_), Some(files)) => {
            Some(security::tls::Acceptor::load_for(files, security::tls::HTTP).context("loading the TLS files")?)
        }
        _ => None,
    };
    let tokens =
        security::auth::Tokens::configured(config.admin_token_file.as_deref(), &config.certificate_principals)?;
    Ok(Listener { tcp, tls, tokens, http: http.map(|l| (l, http_tls)) })
}

async fn run(
    listener: Listener,
    store: Store,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.tcp.local_addr().context("reading the bound address")?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<EventBusServiceServer<EventBus>>().await;
    let reflection = reflection(&config)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = config.limits.clone();
    let traces = config.traces;
    let (drain, drain_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = watch::channel(true);
    let readiness = tokio::spawn(readiness::follow_database(store.clone(), health, ready_tx, drain_rx));
    // Ends the probes (and their handle on the store) also when serving fails before a shutdown.
    let probes = readiness.abort_handle();
    let start = StartLine::of(&config);
    let auth = listener.tokens.map(|t| {
        // Database tokens go with the bootstrap token that can manage them.
        let tokens = match config.admin_token_file {
            Some(_) => t.with_store(store.clone(), config.token_cache),
            None => t,
        };
        let tokens = Arc::new(tokens);
        security::auth::Auth::new(tokens, metrics.clone(), limits.max_message_bytes)
    });
    let bus = EventBus::new(store, config, metrics, stop_rx.clone());
    let routes = http::Http { bus: bus.clone(), auth: auth.clone(), ready: ready_rx };
    let http_server = listener.http.map(|(tcp, tls)| start_http(tcp, tls, &routes, stop_rx)).transpose()?;
    let tokens = status::RequestFaults(TokenServiceServer::new(bus.clone()));
    let service = status::RequestFaults(
        EventBusServiceServer::new(bus)
            .max_decoding_message_size(limits.max_message_bytes)
            .max_encoding_message_size(limits.max_message_bytes.max(64 << 20)),
    );
    start.log(addr, http_server.as_ref().map(|(bound, _)| *bound));
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, streams end with UNAVAILABLE");
        // The readiness task reports NOT_SERVING before it ends.
        let _ = drain.send(());
        let _ = readiness.await;
        let _ = stop_tx.send(true);
    };
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .layer(tower::util::option_layer(traces.then_some(telemetry::trace::RpcSpans)))
        .layer(tower::util::option_layer(auth))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(service)
        .add_service(tokens);
    let served = match listener.tls {
        Some(tls) => router.serve_with_incoming_shutdown(security::tls::incoming(listener.tcp, tls), signal).await,
        None => {
            let incoming = TcpListenerStream::new(listener.tcp).map(|conn| {
                if let Ok(c) = &conn {
                    let _ = c.set_nodelay(true);
                }
                conn
            });
            router.serve_with_incoming_shutdown(incoming, signal).await
        }
    }
    .context("serving gRPC");
    if let Some((_, mut server)) = http_server {
        // Requests in flight get a moment to be answered.
        if tokio::time::timeout(HTTP_DRAIN, &mut server).await.is_err() {
            server.abort();
        }
    }
    probes.abort();
    served
}

type HttpServer = (SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>);

/// Starts serving HTTP on `tcp` until `stop` turns true; returns the address and the task.
fn start_http(
    tcp: TcpListener,
    tls: Option<security::tls::Acceptor>,
    routes: &http::Http,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<HttpServer> {
    let bound = tcp.local_addr().context("reading the bound HTTP address")?;
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    Ok((bound, tokio::spawn(http::serve(tcp, tls, http::app(routes), stopped))))
}

/// How long a shutdown waits for HTTP requests in flight.
const HTTP_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The reflection service, if `--reflection` is on.
fn reflection(
    config: &ServerConfig,
) -> anyhow::Result<
    Option<tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>>,
> {
    config
        .reflection
        .then(|| {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .build_v1()
        })
        .transpose()
        .context("building the reflection service")
}

/// What the start line says besides the addresses: the one line an operator reads to know
/// what this process serves.
#[derive(Debug)]
struct StartLine {
    tls: &'static str,
    database: String,
    durability: &'static str,
    retention: String,
    auth: &'static str,
}

impl StartLine {
    fn of(config: &ServerConfig) -> Self {
        Self {
            database: config.store.database_location(),
            durability: match config.store.durability {
                Durability::Full => "full",
                Durability::Relaxed => "relaxed",
            },
            retention: config.store.retention.map_or_else(|| "forever".to_owned(), |r| format!("{}s", r.as_secs())),
            tls: match &config.tls {
                None => "off",
                Some(t) if t.client_ca.is_some() => "mutual",
                Some(_) => "on",
            },
            auth: match (config.admin_token_file.is_some(), config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()))
            {
                (true, true) => "token, client certificate",
                (true, false) => "token",
                (false, true) => "client certificate",
                (false, false) => "none",
            },
        }
    }

    /// Logs `serving gRPC` with the version, the addresses and the settings above.
    fn log(&self, addr: SocketAddr, http: Option<SocketAddr>) {
        let http = http.map_or_else(|| "none".to_owned(), |m| m.to_string());
        tracing::info!(
            version = %env!("CARGO_PKG_VERSION"),
            addr = %addr,
            http = %http,
            database = %self.database,
            durability = %self.durability,
            retention = %self.retention,
            tls = %self.tls,
            auth = %self.auth,
            "serving gRPC"
        );
    }
}

/// Installs the SIGINT and SIGTERM handlers now (a signal that arrives before the returned
/// future is first polled is not lost) and returns a future that completes on either.
#[cfg(unix)]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    })
}

/// Returns a future that completes on Ctrl-C.
#[cfg(not(unix))]
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
}
