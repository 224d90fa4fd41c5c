//! Closed-loop load: a fixed number of calls kept in flight over several connections, each
//! call's latency recorded in an HDR histogram (microseconds).
//!
//! Hazard: closed loop means a slow call delays the next one of its slot, so these latencies
//! suffer coordinated omission under overload; the notification latency workload is the open
//! loop one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus_client::{Client, CloudEventBuilder, Publisher, pb};
use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::transport::ClientTlsConfig;

use super::progress::Progress;

/// Largest latency the histograms track: one hour, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

/// Returns an empty latency histogram: 1 microsecond to 1 hour, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant histogram bounds are valid")
}

/// Records a latency.
pub fn record(hist: &mut Histogram<u64>, latency: Duration) {
    hist.saturating_record(u64::try_from(latency.as_micros()).unwrap_or(MAX_MICROS).clamp(1, MAX_MICROS));
}

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        Self {
            count: hist.len(),
            p50_us: hist.value_at_quantile(0.5),
            p90_us: hist.value_at_quantile(0.9),
            p99_us: hist.value_at_quantile(0.99),
            p999_us: hist.value_at_quantile(0.999),
            max_us: hist.max(),
            mean_us: (hist.mean() * 10.0).round() / 10.0,
        }
    }
}

/// Returns a JSON payload of exactly `bytes` bytes (at least the unpadded object, ~90 bytes).
pub fn payload(bytes: usize) -> String {
    let head = r#"{"order":"o-000123","customer":"c-42","amount_cents":129900,"currency":"EUR","note":""#;
    let tail = r#""}"#;
    let pad = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad))
}

/// Returns an event of `event_type` with a fresh UUIDv7 id and `data` as JSON payload.
pub fn event(source: &str, event_type: &str, data: &str) -> pb::CloudEvent {
    CloudEventBuilder::new(source, event_type).data_text("application/json", data).build()
}

/// Opens `n` clients, each on its own connection.
pub async fn connect(dial: &Dial, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        clients.push(dial.client().await?);
    }
    Ok(clients)
}

/// Opens `n` senders, each a client on its own connection publishing as `dial` says.
pub async fn senders(dial: &Dial, n: usize) -> anyhow::Result<Vec<Sender>> {
    let mut senders = Vec::with_capacity(n);
    for client in connect(dial, n).await? {
        senders.push(Sender::open(client, dial.publish_call).await?);
    }
    Ok(senders)
}

/// The clients of `senders`, for calls other than publishing.
pub fn clients_of(senders: &[Sender]) -> Vec<Client> {
    senders.iter().map(|sender| sender.client().clone()).collect()
}

/// How the bench publishes over gRPC (`--publish-call`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishCall {
    /// Each publish a message of one PublishStream call per connection.
    #[default]
    Stream,
    /// Each publish a Publish call of its own.
    Unary,
}

/// A client that publishes as its [`PublishCall`] says.
#[derive(Debug, Clone)]
pub struct Sender {
    client: Client,
    stream: Option<Publisher>,
}

impl Sender {
    /// Opens the PublishStream call of a `Stream` sender.
    pub async fn open(client: Client, how: PublishCall) -> anyhow::Result<Self> {
        let stream = match how {
            PublishCall::Stream => Some(client.publisher().await.context("opening a PublishStream")?),
            PublishCall::Unary => None,
        };
        Ok(Self { client, stream })
    }

    /// The client, for calls other than publishing.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Publishes `events` to `namespace`.
    pub async fn publish(
        &self,
        namespace: impl Into<String>,
        events: impl IntoIterator<Item = pb::CloudEvent>,
    ) -> Result<Vec<pb::PublishResult>, eventbus_client::Error> {
        match &self.stream {
            Some(stream) => stream.publish(namespace, events).await,
            None => self.client.publish(namespace, events).await,
        }
    }
}

/// How the bench's clients reach the server: its address, and TLS and a token when it wants
/// them (`--ca-cert`, `--token`), and how they publish (`--publish-call`).
#[derive(Debug, Clone)]
pub struct Dial {
    pub addr: String,
    pub tls: Option<ClientTlsConfig>,
    pub token: Option<String>,
    pub publish_call: PublishCall,
}

impl Dial {
    /// A client on a connection of its own.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let addr = self.addr.clone();
        let client = match &self.tls {
            Some(tls) => Client::connect_tls(addr, tls.clone()).await,
            None => Client::connect(addr).await,
        };
        let client = client.with_context(|| format!("connecting to {}", self.addr))?;
        match &self.token {
            Some(token) => client.with_token(token).context("the bench's token"),
            None => Ok(client),
        }
    }
}

/// The outcome of a closed-loop run.
#[derive(Debug)]
pub struct Run {
    pub hist: Histogram<u64>,
    pub elapsed: Duration,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Run {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Makes `n` calls `op(client, i)` for i in `0..n`, with `in_flight` calls outstanding on each
/// client (a gRPC client, or an HTTP connection), and counts them on `progress`.
pub async fn drive<C, E, F, Fut>(clients: &[C], in_flight: usize, n: u64, progress: &Progress, op: F) -> Run
where
    C: Clone + Send + 'static,
    E: std::fmt::Display,
    F: Fn(C, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let done = progress.counter();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for slot in 0..clients.len() * in_flight.max(1) {
        let client = clients[slot % clients.len()].clone();
        let (next, done, op) = (next.clone(), done.clone(), op.clone());
        tasks.spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t0 = Instant::now();
                match op(client.clone(), i).await {
                    Ok(()) => {
                        record(&mut hist, t0.elapsed());
                        ok += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (hist, ok, errors, first_error)
        });
    }
    let mut run = Run { hist: histogram(), elapsed: Duration::ZERO, ok: 0, errors: 0, first_error: None };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((hist, ok, errors, first_error)) => {
                let _ = run.hist.add(&hist);
                run.ok += ok;
                run.errors += errors;
                if run.first_error.is_none() {
                    run.first_error = first_error;
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert_with(|| format!("load task failed: {e}"));
            }
        }
    }
    run.elapsed = start.elapsed();
    run
}

/// Publishes `n` events from `make(i)` one per call, `in_flight` calls per client at a time.
pub async fn publish<M>(
    senders: &[Sender],
    namespace: &str,
    in_flight: usize,
    n: u64,
    progress: &Progress,
    make: M,
) -> Run
where
    M: Fn(u64) -> pb::CloudEvent + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let namespace: Arc<str> = namespace.into();
    drive(senders, in_flight, n, progress, move |sender: Sender, i| {
        let event = make(i);
        let namespace = namespace.clone();
        async move { sender.publish(namespace.as_ref(), [event]).await.map(drop) }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_and_is_json() {
        for size in [128, 512, 4096] {
            let p = payload(size);
            assert_eq!(p.len(), size);
            assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
        }
        assert!(serde_json::from_str::<serde_json::Value>(&payload(1)).is_ok());
    }

    #[test]
    fn latency_percentiles() {
        let mut hist = histogram();
        for ms in 1..=1000u64 {
            record(&mut hist, Duration::from_micros(ms * 1000));
        }
        let l = Latency::of(&hist);
        assert_eq!(l.count, 1000);
        assert!((499_000..=501_000).contains(&l.p50_us), "{l:?}");
        assert!((989_000..=991_000).contains(&l.p99_us), "{l:?}");
        assert!(l.max_us >= 999_000, "{l:?}");
        assert_eq!(Latency::of(&histogram()).count, 0);
    }
}
