//! The HTTP listener (`--http-addr`, off by default; `--metrics-addr` is its older name). [`app`]
//! is the one place where the routes served over HTTP are put together:
//!
//! - `GET /metrics`: Prometheus metrics ([`crate::metrics`]);
//! - `GET /healthz`: 200 while the process serves (liveness);
//! - `GET /readyz`: 200 while the database answers, 503 when it does not and once the server
//!   drains: the state the gRPC health service reports for `eventbus.v1.EventBusService`
//!   ([`crate::readiness`]);
//! - `POST /v1/namespaces/{namespace}/events`: the CloudEvents ingress ([`ingress`]).
//!
//! The first three are open; the ingress needs, when tokens are on, what a gRPC Publish needs
//! (the publisher role on the namespace), checked by the same [`Auth`]. With TLS on, the listener
//! terminates TLS with the same files as gRPC, reloaded the same way, offering HTTP/1.1 (ALPN
//! `http/1.1`); the server refuses to start on a non-loopback HTTP address without TLS and client
//! authentication, as it does for gRPC.
//!
//! Hazard: a shutdown waits for requests in flight; [`serve`] returns once they are answered
//! (idle keep-alive connections are closed at once).

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::EventBus;
use crate::security::auth::Auth;
use crate::security::tls::{self, Acceptor};

pub mod cloudevents;
pub mod ingress;

/// What the routes of the HTTP listener serve from.
#[derive(Debug, Clone)]
pub struct Http {
    pub bus: EventBus,
    /// Set when tokens are on.
    pub auth: Option<Auth>,
    /// Whether the database answers (see [`crate::readiness`]).
    pub ready: watch::Receiver<bool>,
}

/// Returns every route of the HTTP listener.
pub fn app(http: &Http) -> Router {
    let bus = &http.bus;
    let limits = &bus.config.limits;
    Router::new()
        .merge(crate::metrics::router(
            bus.metrics.clone(),
            bus.store.clone(),
            bus.subscriptions.clone(),
            limits.max_subscriptions,
        ))
        .merge(probes(http.ready.clone()))
        .merge(ingress::router(bus.clone(), http.auth.clone()))
        .merge(crate::console::router(bus.clone(), http.auth.as_ref().map(|a| a.tokens().clone())))
}

/// `GET /healthz` and `GET /readyz`.
fn probes(ready: watch::Receiver<bool>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).with_state(ready)
}

async fn readyz(State(ready): State<watch::Receiver<bool>>) -> (StatusCode, &'static str) {
    if *ready.borrow() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: the database cannot be reached, or the server is draining\n")
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is set) until `shutdown` completes, then
/// until the requests in flight are answered.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Acceptor>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    match tls {
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
        Some(acceptor) => {
            let addr = listener.local_addr()?;
            let listener = TlsListener { incoming: tls::incoming(listener, acceptor), addr };
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    }
}

/// The connections of [`tls::incoming`] whose handshake succeeded, as an axum listener.
#[derive(Debug)]
struct TlsListener {
    incoming: ReceiverStream<io::Result<TlsStream<TcpStream>>>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(stream)) => {
                    let peer = stream.get_ref().0.peer_addr().unwrap_or(self.addr);
                    return (stream, peer);
                }
                Some(Err(e)) => tracing::debug!(error = %e, "accepting an HTTP connection failed"),
                // The accepting task ends only when this listener is dropped.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
