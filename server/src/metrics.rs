//! Prometheus metrics, served as OpenMetrics text on `GET /metrics` at their own address when
//! `--metrics-addr` is set (off by default).
//!
//! Counters and histograms are atomics updated in the request path; gauges that describe the
//! database (notifications per consumer group and state, pool use) are read when scraped, so a
//! scrape costs two small queries.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use eventbus_engine::store::{Fired, Observer, Store};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::telemetry::trace;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    namespace: String,
    group: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    file: &'static str,
}

/// The server's metrics; cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_published: Counter,
    pub events_duplicate: Counter,
    pub events_rejected: Counter,
    triggers_fired: Family<KindLabels, Counter>,
    condition_errors: Counter,
    pub redeliveries: Counter,
    pub publish_seconds: Histogram,
    publish_to_ack_seconds: Histogram,
    notifications: Family<GroupLabels, Gauge>,
    open_streams: Gauge,
    db_connections: Family<PoolLabels, Gauge>,
    database_bytes: Family<FileLabels, Gauge>,
    auth_failures: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("eventbus");
        let m = Self {
            events_published: Counter::default(),
            events_duplicate: Counter::default(),
            events_rejected: Counter::default(),
            triggers_fired: Family::default(),
            condition_errors: Counter::default(),
            redeliveries: Counter::default(),
            // 50 us to ~6.5 s.
            publish_seconds: Histogram::new(exponential_buckets(50e-6, 2.0, 18)),
            // 100 us to ~52 min.
            publish_to_ack_seconds: Histogram::new(exponential_buckets(100e-6, 2.5, 20)),
            notifications: Family::default(),
            open_streams: Gauge::default(),
            db_connections: Family::default(),
            database_bytes: Family::default(),
            auth_failures: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("events_published", "Events stored (duplicates excluded)", m.events_published.clone());
        r.register("events_duplicate", "Published events that were already stored", m.events_duplicate.clone());
        r.register("events_rejected", "Events in Publish calls that were refused", m.events_rejected.clone());
        r.register("triggers_fired", "Listeners fired, by notification kind", m.triggers_fired.clone());
        r.register(
            "condition_errors",
            "Filter-set conditions that failed at run time for an event (and so were false)",
            m.condition_errors.clone(),
        );
        r.register("redeliveries", "Notifications delivered again (attempt > 1)", m.redeliveries.clone());
        r.register("publish_duration_seconds", "Publish call latency", m.publish_seconds.clone());
        r.register(
            "publish_to_ack_seconds",
            "From the publish that created a notification to its ack",
            m.publish_to_ack_seconds.clone(),
        );
        r.register(
            "notifications",
            "Notifications per consumer group and state (pending, leased, dead)",
            m.notifications.clone(),
        );
        r.register("open_streams", "Open Subscribe streams", m.open_streams.clone());
        r.register("db_connections", "Read pool connections by state (idle, busy, max)", m.db_connections.clone());
        r.register("database_bytes", "Size of the SQLite database and WAL files", m.database_bytes.clone());
        r.register("auth_failures", "Calls refused by authentication or authorization", m.auth_failures.clone());
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Counts a call refused for `reason` (see [`crate::security::auth::Refusal`]).
    pub fn auth_refused(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Returns how many calls were refused for `reason`.
    #[cfg(test)]
    pub(crate) fn auth_failures(&self, reason: &'static str) -> u64 {
        self.auth_failures.get_or_create(&ReasonLabels { reason }).get()
    }

    /// Reads the gauges from the store and the stream semaphore, then encodes everything.
    pub async fn render(&self, store: &Store, streams: &Semaphore, max_streams: usize) -> anyhow::Result<String> {
        let backlogs = store.group_backlogs().await.context("counting notifications")?;
        self.notifications.clear();
        for b in backlogs {
            for (state, n) in [("pending", b.pending), ("leased", b.leased), ("dead", b.dead)] {
                let labels = GroupLabels { namespace: b.namespace.clone(), group: b.group.clone(), state };
                self.notifications.get_or_create(&labels).set(n as i64);
            }
        }
        let pool = store.pool_stats();
        for (state, n) in [("idle", pool.idle), ("busy", pool.open.saturating_sub(pool.idle)), ("max", pool.max)] {
            self.db_connections.get_or_create(&PoolLabels { state }).set(i64::from(n));
        }
        if let Some(sizes) = store.file_sizes() {
            for (file, n) in [("database", sizes.database), ("wal", sizes.wal)] {
                self.database_bytes.get_or_create(&FileLabels { file }).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        self.open_streams.set(max_streams.saturating_sub(streams.available_permits()) as i64);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the store tells the server after each commit: trigger spans (when traces are on) and
/// the metrics of fired and acknowledged notifications.
#[derive(Debug)]
pub struct StoreObserver {
    pub metrics: Arc<Metrics>,
    pub traces: bool,
}

impl Observer for StoreObserver {
    fn fired(&self, fired: &[Fired]) {
        for f in fired {
            self.metrics.triggers_fired.get_or_create(&KindLabels { kind: f.kind.as_str() }).inc();
            if self.traces {
                trace::trigger_span(f);
            }
        }
    }

    fn acked(&self, _namespace: &str, _group: &str, created_at: &[DateTime<Utc>]) {
        let now = Utc::now();
        for t in created_at {
            let seconds = (now - *t).to_std().map(|d| d.as_secs_f64()).unwrap_or(0.0);
            self.metrics.publish_to_ack_seconds.observe(seconds);
        }
    }

    fn condition_errors(&self, count: u64) {
        self.metrics.condition_errors.inc_by(count);
    }
}

#[derive(Debug, Clone)]
struct Scrape {
    metrics: Arc<Metrics>,
    store: Store,
    streams: Arc<Semaphore>,
    max_streams: usize,
}

/// Binds the metrics address; the returned future serves `/metrics` and the `routes` given
/// (the console) until `shutdown` completes.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    store: Store,
    streams: Arc<Semaphore>,
    max_streams: usize,
    routes: axum::Router,
) -> anyhow::Result<(SocketAddr, impl Future<Output = std::io::Result<()>> + Send + use<>)> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding the metrics listener on {addr}"))?;
    let bound = listener.local_addr().context("reading the metrics address")?;
    let app = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state(Scrape { metrics, store, streams, max_streams })
        .merge(routes);
    Ok((bound, axum::serve(listener, app).into_future()))
}

async fn scrape(State(s): State<Scrape>) -> Response {
    match s.metrics.render(&s.store, &s.streams, s.max_streams).await {
        Ok(text) => ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            .into_response(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "rendering metrics failed");
            (StatusCode::SERVICE_UNAVAILABLE, "metrics unavailable\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_errors_are_counted() {
        let metrics = Arc::new(Metrics::default());
        let observer = StoreObserver { metrics: metrics.clone(), traces: false };
        observer.condition_errors(2);
        observer.condition_errors(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        assert!(text.lines().any(|l| l == "eventbus_condition_errors_total 5"), "{text}");
    }
}
