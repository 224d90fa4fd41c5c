//! The `http` workload's client: binary-mode CloudEvents (`ce-*` headers, the JSON payload as
//! the body) posted to the HTTP ingress, `POST /v1/namespaces/{namespace}/events`, over
//! HTTP/1.1 keep-alive connections with hyper's client.
//!
//! HTTP/1.1 carries one request at a time per connection, so the workload opens as many
//! connections as the pipelined gRPC workload has calls in flight (connections x in flight):
//! the same concurrency.

use std::sync::Arc;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex;

use super::load::{self, Run};
use super::progress::Progress;

/// One keep-alive connection; requests on it wait for each other.
pub type Connection = Arc<Mutex<SendRequest<Full<Bytes>>>>;

/// Opens `n` connections to `addr` (host:port).
pub async fn connect(addr: &str, n: usize) -> anyhow::Result<Vec<Connection>> {
    let mut connections = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.context("the HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an HTTP connection of the bench ended");
            }
        });
        connections.push(Arc::new(Mutex::new(sender)));
    }
    Ok(connections)
}

/// What each request carries.
#[derive(Debug, Clone)]
pub struct Request {
    /// host:port, for the Host header.
    pub authority: Arc<str>,
    pub namespace: Arc<str>,
    pub source: &'static str,
    pub event_type: &'static str,
    pub payload: Bytes,
}

/// Posts `n` events, one per request, one request in flight per connection.
pub async fn publish(connections: &[Connection], n: u64, progress: &Progress, request: Request) -> Run {
    load::drive(connections, 1, n, progress, move |connection: Connection, _| {
        let request = request.clone();
        async move { post(&connection, &request).await }
    })
    .await
}

/// Posts one event with a fresh UUIDv7 id; an answer other than 200 is an error.
async fn post(connection: &Connection, r: &Request) -> anyhow::Result<()> {
    let id = uuid::Uuid::now_v7().to_string();
    let request = http::Request::post(format!("/v1/namespaces/{}/events", r.namespace))
        .header(http::header::HOST, r.authority.as_ref())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", r.source)
        .header("ce-type", r.event_type)
        .body(Full::new(r.payload.clone()))
        .context("building the request")?;
    let mut sender = connection.lock().await;
    sender.ready().await.context("the connection")?;
    let response = sender.send_request(request).await.context("sending")?;
    let status = response.status();
    let body = response.into_body().collect().await.context("reading the answer")?.to_bytes();
    anyhow::ensure!(status == http::StatusCode::OK, "HTTP {status}: {}", String::from_utf8_lossy(&body));
    Ok(())
}
