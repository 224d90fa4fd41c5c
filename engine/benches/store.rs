//! Store throughput benchmark (not a test): publishes ~512-byte events with many publishes in
//! flight against a store holding many listeners, and reports events/s, latency percentiles
//! and bytes written per event. `--restart N` also measures how long a store holding N events
//! takes to open and serve its first publish.
//!
//! ```text
//! cargo bench -p eventbus-engine --bench store -- [--url URL] [--durability full|relaxed]
//!     [--listeners 10000] [--types 500] [--events 100000] [--in-flight 256] [--restart 0]
//! ```
//! Without `--url` it uses a fresh SQLite file in a temp dir; with a `postgres://` URL it
//! creates a fresh schema there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use eventbus_engine::store::{Backend, Durability, Store, StoreConfig};
use eventbus_engine::{AttrValue, Condition, Data, Event, FilterSet, ListenerKind, ListenerSpec, TraceContext};
use sqlx::{AnyPool, Executor};

struct Args {
    url: Option<String>,
    durability: Durability,
    listeners: usize,
    types: usize,
    events: usize,
    in_flight: usize,
    restart: usize,
}

fn args() -> Args {
    let mut a = Args {
        url: None,
        durability: Durability::Full,
        listeners: 10_000,
        types: 500,
        events: 100_000,
        in_flight: 256,
        restart: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => a.url = Some(value()),
            "--durability" => {
                a.durability = match value().as_str() {
                    "full" => Durability::Full,
                    "relaxed" => Durability::Relaxed,
                    other => panic!("--durability full|relaxed, not {other}"),
                }
            }
            "--listeners" => a.listeners = value().parse().unwrap(),
            "--types" => a.types = value().parse().unwrap(),
            "--events" => a.events = value().parse().unwrap(),
            "--in-flight" => a.in_flight = value().parse().unwrap(),
            "--restart" => a.restart = value().parse().unwrap(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// The listener population: over `types` event types, mostly START listeners filtered on the
/// customer, some ALL listeners correlated by order, some WAIT listeners per instance.
fn listener(i: usize, types: usize) -> ListenerSpec {
    let t = |k: usize| format!("type.{}", k % types);
    let filter = |ty: String, attr: &str, value: String| FilterSet {
        event_type: ty,
        attributes: [(attr.to_string(), value)].into(),
        condition: None,
    };
    match i % 10 {
        0 => ListenerSpec {
            kind: ListenerKind::Start,
            target: format!("wf-{i}"),
            condition: Condition::All,
            types: vec![t(i), t(i + 1)],
            filters: vec![filter(t(i), "customer", format!("c-{i}")), filter(t(i + 1), "customer", format!("c-{i}"))],
            lifespan: Some(Duration::from_secs(600)),
            correlate_by: vec!["orderid".into()],
            policy: None,
            deadline: None,
        },
        1 => ListenerSpec {
            kind: ListenerKind::Wait,
            target: format!("instance-{i}"),
            condition: Condition::Any,
            types: vec![t(i), t(i + 7)],
            filters: vec![
                filter(t(i), "subject", format!("instances/{i}")),
                filter(t(i + 7), "subject", format!("instances/{i}")),
            ],
            lifespan: None,
            correlate_by: Vec::new(),
            policy: None,
            deadline: Some(Utc::now() + chrono::Duration::days(1)),
        },
        _ => ListenerSpec {
            kind: ListenerKind::Start,
            target: format!("wf-{i}"),
            condition: Condition::One,
            types: vec![t(i)],
            filters: vec![filter(t(i), "customer", format!("c-{i}"))],
            lifespan: None,
            correlate_by: Vec::new(),
            policy: None,
            deadline: None,
        },
    }
}

/// A ~512-byte event (attributes, extensions and JSON data as stored) of one of the types;
/// about one in a hundred matches a listener's filter.
fn event(n: usize, types: usize, listeners: usize) -> Event {
    let customer = if n.is_multiple_of(100) && listeners > 0 { n % listeners } else { listeners + n };
    let data = format!(
        "{{\"order\":{n},\"customer\":\"c-{customer}\",\"items\":[{{\"sku\":\"SKU-{n:08}\",\"qty\":2,\"price\":\"19.99\"}}],\
         \"shipping\":{{\"street\":\"1 Long Street\",\"city\":\"Springfield\",\"zip\":\"{n:05}\",\"country\":\"NL\"}},\
         \"note\":\"{}\"}}",
        "x".repeat(120)
    );
    let mut extensions = BTreeMap::new();
    extensions.insert("customer".to_string(), AttrValue::String(format!("c-{customer}")));
    extensions.insert("orderid".to_string(), AttrValue::String(format!("{}", n / 2)));
    Event {
        namespace: String::new(),
        sequence: 0,
        id: format!("evt-{n:012}"),
        source: "https://shop.example/orders".into(),
        specversion: "1.0".into(),
        event_type: format!("type.{}", n % types),
        subject: Some(format!("orders/{n}")),
        time: Some(Utc::now()),
        datacontenttype: Some("application/json".into()),
        dataschema: None,
        extensions,
        data: Some(Data::Text(data)),
        received_at: Utc::now(),
        trace: TraceContext { traceparent: format!("00-{n:032x}-{n:016x}-01"), tracestate: String::new() },
    }
}

fn process_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

async fn pg_wal_lsn(url: &str) -> u64 {
    let pool = AnyPool::connect(url).await.unwrap();
    let lsn: i64 = sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
        .fetch_one(&pool)
        .await
        .unwrap();
    lsn as u64
}

async fn publish_all(
    store: &Store,
    first: usize,
    count: usize,
    in_flight: usize,
    types: usize,
    listeners: usize,
) -> Vec<u64> {
    let next = Arc::new(AtomicU64::new(first as u64));
    let end = (first + count) as u64;
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let store = store.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return latencies;
                }
                let e = event(n as usize, types, listeners);
                let t = Instant::now();
                store.publish("bench", vec![e]).await.unwrap();
                latencies.push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut all = Vec::with_capacity(count);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = match &a.url {
        None => format!("sqlite://{}", dir.path().join("bench.db").display()),
        Some(base) if base.starts_with("postgres") => {
            let admin = AnyPool::connect(base).await.unwrap();
            let schema = format!("bench_{}", uuid::Uuid::now_v7().simple());
            admin.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).await.unwrap();
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
        Some(other) => other.clone(),
    };
    let backend = Backend::from_url(&url).unwrap();
    let mut config = StoreConfig::new(&url);
    config.durability = a.durability;
    config.sweep_interval = Duration::from_secs(3600);
    let store = Store::open(config.clone()).await.unwrap();

    let t = Instant::now();
    let mut regs = Vec::new();
    for chunk in (0..a.listeners).collect::<Vec<_>>().chunks(a.listeners.div_ceil(64).max(1)) {
        let store = store.clone();
        let chunk = chunk.to_vec();
        let types = a.types;
        regs.push(tokio::spawn(async move {
            for i in chunk {
                store.register_listener("bench", listener(i, types), None, TraceContext::default()).await.unwrap();
            }
        }));
    }
    for r in regs {
        r.await.unwrap();
    }
    eprintln!("registered {} listeners over {} types in {:.1?}", a.listeners, a.types, t.elapsed());

    publish_all(&store, 0, 2_000, a.in_flight, a.types, a.listeners).await;
    let (io0, wal0) = match backend {
        Backend::Sqlite => (process_write_bytes(), 0),
        Backend::Postgres => (0, pg_wal_lsn(&url).await),
    };
    let t = Instant::now();
    let lat = publish_all(&store, 2_000, a.events, a.in_flight, a.types, a.listeners).await;
    let secs = t.elapsed().as_secs_f64();
    let written = match backend {
        Backend::Sqlite => process_write_bytes().saturating_sub(io0),
        Backend::Postgres => pg_wal_lsn(&url).await.saturating_sub(wal0),
    };
    let sample = serde_json::to_string(&event(7, a.types, a.listeners).data).unwrap().len();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "backend={:?} durability={:?} listeners={} types={} in_flight={} events={} (data ~{} B)\n  \
         throughput: {:.0} events/s\n  publish latency: p50 {} us, p99 {} us, p99.9 {} us\n  \
         bytes written per event: {} ({})",
        backend,
        a.durability,
        a.listeners,
        a.types,
        a.in_flight,
        a.events,
        sample,
        a.events as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        written / a.events as u64,
        match backend {
            Backend::Sqlite => "process write_bytes, WAL and checkpoints",
            Backend::Postgres => "Postgres WAL",
        }
    );

    if a.restart > 0 {
        let have = 2_000 + a.events;
        if a.restart > have {
            let t = Instant::now();
            publish_all(&store, have, a.restart - have, a.in_flight, a.types, a.listeners).await;
            eprintln!("filled to {} events in {:.1?}", a.restart, t.elapsed());
        }
        drop(store);
        let t = Instant::now();
        let store = Store::open(config).await.unwrap();
        let opened = t.elapsed();
        store.publish("bench", vec![event(usize::MAX / 2, a.types, a.listeners)]).await.unwrap();
        println!(
            "  restart with {} events and {} listeners: open {:.1?}, ready (first publish, listeners loaded) {:.1?}",
            a.restart.max(have),
            a.listeners,
            opened,
            t.elapsed()
        );
    }
}
