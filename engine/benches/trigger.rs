//! Cost of evaluating one event as the number of registered listeners grows.
//!
//! Four listeners always listen to the measured event's type: a START ONE, a START ANY whose
//! filter matches, a correlated START ALL and a START ONE whose filter does not match. Around
//! them sit 0, 1k, 10k or 100k background listeners of mixed kinds and conditions, spread over
//! 500 other types, the ALL ones holding partial state. Evaluation looks listeners up by
//! (namespace, type), so the cost per event must follow the four that can match, not the
//! background: the 100k case may cost at most 1.5 times the empty one.
//!
//! `conditions` mirrors the listener-scale workload of `eventbus bench -w listeners`: 10k START
//! ONE listeners over 500 types, each with an exact filter `customer = c-<i>`, and events that
//! each match one of them (`exact`); or the same listeners without the customer clause, so that
//! every event reaches the 20 listeners of its type (`scan`). A share of 0 or 0.1 of the
//! listeners also carry a condition on the event's JSON data and subject, true for every event,
//! so both runs fire the same; the run with conditions may cost at most 1.3 times the other.
//!
//! Run: `cargo bench -p eventbus-engine --bench trigger -- --warm-up-time 1 --measurement-time 3`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{BatchSize, Bencher, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use eventbus_engine::trigger::{CorrelationKey, Partial};
use eventbus_engine::{
    AttrValue, CompiledListener, Condition, Data, Engine, Event, EventRef, FilterSet, Listener, ListenerKind,
    ListenerSpec, ListenerStatus, Policy, TraceContext,
};
use uuid::Uuid;

const NAMESPACE: &str = "bench";
const BACKGROUND_TYPES: usize = 500;
const SIZES: [usize; 4] = [0, 1_000, 10_000, 100_000];
/// The measured events' `orderid` cycles through this many values, so the correlated ALL
/// listener holds at most this many keys however long the benchmark runs.
const ORDERS: u64 = 64;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).single().expect("valid time")
}

fn spec(kind: ListenerKind, condition: Condition, types: &[&str]) -> ListenerSpec {
    ListenerSpec {
        kind,
        target: "wf".into(),
        condition,
        types: types.iter().map(|t| t.to_string()).collect(),
        filters: vec![],
        lifespan: None,
        correlate_by: vec![],
        policy: None,
        deadline: None,
    }
}

fn filter(event_type: &str, attribute: &str, pattern: &str) -> FilterSet {
    FilterSet {
        event_type: event_type.into(),
        attributes: BTreeMap::from([(attribute.into(), pattern.into())]),
        condition: None,
    }
}

fn event_ref(event_type: &str, id: String) -> EventRef {
    EventRef {
        sequence: 0,
        source: "/bench/background".into(),
        id,
        event_type: event_type.into(),
        received_at: now(),
        trace: TraceContext::default(),
    }
}

struct Registry {
    engine: Engine,
    next_order: i64,
}

impl Registry {
    fn add(&mut self, spec: ListenerSpec, partials: Vec<(CorrelationKey, Partial)>) {
        let order = self.next_order;
        self.next_order += 1;
        let listener = Listener {
            id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | order as u128),
            namespace: NAMESPACE.into(),
            order,
            spec,
            created_at: now(),
            trace: TraceContext::default(),
            request_id: None,
            status: ListenerStatus::Active,
        };
        self.engine.insert(CompiledListener::compile(listener).expect("valid listener"), partials);
    }
}

/// The four listeners of the measured type `order.created`.
fn add_fixed(r: &mut Registry) {
    r.add(spec(ListenerKind::Start, Condition::One, &["order.created"]), vec![]);
    r.add(
        ListenerSpec {
            filters: vec![filter("order.created", "region", "eu*")],
            ..spec(ListenerKind::Start, Condition::Any, &["order.created", "order.updated"])
        },
        vec![],
    );
    // LATEST: every measured event replaces the one collected for its order, so each iteration
    // does the same work and the state stays at `ORDERS` keys.
    r.add(
        ListenerSpec {
            correlate_by: vec!["orderid".into()],
            policy: Some(Policy::Latest),
            ..spec(ListenerKind::Start, Condition::All, &["order.created", "payment.received"])
        },
        vec![],
    );
    r.add(
        ListenerSpec {
            filters: vec![filter("order.created", "region", "us")],
            ..spec(ListenerKind::Start, Condition::One, &["order.created"])
        },
        vec![],
    );
}

/// The i-th background listener: START ONE, START ANY with a filter, WAIT ONE with a deadline,
/// or a correlated START ALL holding two partial keys, on types `bg.0` to `bg.499`.
fn add_background(r: &mut Registry, i: usize) {
    let t = |k: usize| format!("bg.{}", k % BACKGROUND_TYPES);
    let (t0, t1, t250) = (t(i), t(i + 1), t(i + 250));
    match i % 4 {
        0 => r.add(spec(ListenerKind::Start, Condition::One, &[&t0]), vec![]),
        1 => r.add(
            ListenerSpec {
                filters: vec![filter(&t0, "region", "eu*")],
                ..spec(ListenerKind::Start, Condition::Any, &[&t0, &t250])
            },
            vec![],
        ),
        2 => r.add(
            ListenerSpec {
                target: format!("inst{i}"),
                deadline: Some(now() + TimeDelta::days(1)),
                ..spec(ListenerKind::Wait, Condition::One, &[&t0])
            },
            vec![],
        ),
        _ => r.add(
            ListenerSpec {
                correlate_by: vec!["orderid".into()],
                lifespan: Some(Duration::from_secs(600)),
                ..spec(ListenerKind::Start, Condition::All, &[&t0, &t1])
            },
            (0..2).map(|k| (vec![format!("{i}-{k}")], vec![event_ref(&t0, format!("bg-{i}-{k}"))])).collect(),
        ),
    }
}

fn engine_with(background: usize) -> Engine {
    let mut r = Registry { engine: Engine::new(), next_order: 1 };
    // Half the background registered before the fixed listeners and half after, so that they
    // sit in the middle of the creation order.
    for i in 0..background / 2 {
        add_background(&mut r, i);
    }
    add_fixed(&mut r);
    for i in background / 2..background {
        add_background(&mut r, i);
    }
    assert_eq!(r.engine.len(), background + 4);
    r.engine
}

/// The n-th measured event: `order.created` from region `eu-west` for one of `ORDERS` orders.
fn measured_event(n: u64) -> Event {
    Event {
        namespace: NAMESPACE.into(),
        sequence: n,
        id: format!("e{n}"),
        source: "/bench/orders".into(),
        specversion: "1.0".into(),
        event_type: "order.created".into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::from([
            ("region".into(), AttrValue::String("eu-west".into())),
            ("orderid".into(), AttrValue::String((n % ORDERS).to_string())),
        ]),
        data: None,
        received_at: now(),
        trace: TraceContext { traceparent: format!("00-{n:032x}-{n:016x}-01"), tracestate: String::new() },
    }
}

/// Measures evaluating events `make(1)`, `make(2)`, ... one at a time (building them is not
/// measured).
fn evaluate_each(b: &mut Bencher<'_>, engine: &mut Engine, make: fn(u64) -> Event) {
    let mut n = 0;
    b.iter_batched(
        || {
            n += 1;
            make(n)
        },
        |event| {
            let outcome = engine.evaluate(std::slice::from_ref(black_box(&event)), now());
            (event, outcome)
        },
        BatchSize::SmallInput,
    )
}

fn evaluate_one_event(c: &mut Criterion) {
    let mut group = c.benchmark_group("evaluate_one_event");
    group.throughput(Throughput::Elements(1));
    for background in SIZES {
        let mut engine = engine_with(background);
        // What is measured: two listeners fire, the ALL one collects, the fourth is filtered out.
        let outcome = engine.evaluate(&[measured_event(0)], now());
        assert_eq!(outcome.actions.len(), 2, "START ONE and START ANY fire");
        assert_eq!(outcome.partials.len(), 1, "the ALL listener collects");
        group.bench_function(BenchmarkId::new("background_listeners", background), |b| {
            evaluate_each(b, &mut engine, measured_event)
        });
    }
    group.finish();
}

const SCALE_LISTENERS: usize = 10_000;
const SCALE_TYPES: usize = 500;
const CONDITION: &str = r#"data.amount >= 100 && subject.startsWith("eu/")"#;

/// The listener-scale engine: listener `i` listens to `scale.<i % 500>`, with the clause
/// `customer = c-<i>` when `exact`; a `share` of them carry [`CONDITION`].
fn scale_engine(exact: bool, share: f64) -> Engine {
    let mut r = Registry { engine: Engine::new(), next_order: 1 };
    let every = if share > 0.0 { (1.0 / share).round() as usize } else { usize::MAX };
    for i in 0..SCALE_LISTENERS {
        let t = format!("scale.{}", i % SCALE_TYPES);
        let mut set = filter(&t, "customer", &format!("c-{i}"));
        if !exact {
            set.attributes.clear();
        }
        // Two of the 20 listeners of each type (rounds 0 and 10 of the types), 10% of all.
        if (i / SCALE_TYPES).is_multiple_of(every) {
            set.condition = Some(CONDITION.into());
        }
        let filters = if set.attributes.is_empty() && set.condition.is_none() { vec![] } else { vec![set] };
        r.add(ListenerSpec { filters, ..spec(ListenerKind::Start, Condition::One, &[&t]) }, vec![]);
    }
    r.engine
}

/// The n-th event of the listener-scale workload: it matches listener `n % 10k` (and, in the
/// scan variant, every listener of its type); JSON data for which [`CONDITION`] is true.
fn scale_event(n: u64) -> Event {
    let j = n as usize % SCALE_LISTENERS;
    Event {
        event_type: format!("scale.{}", j % SCALE_TYPES),
        subject: Some(format!("eu/orders/{n}")),
        datacontenttype: Some("application/json".into()),
        extensions: BTreeMap::from([("customer".into(), AttrValue::String(format!("c-{j}")))]),
        data: Some(Data::Text(format!(
            r#"{{"order": {n}, "amount": 150, "currency": "EUR", "items": [{{"sku": "a-1", "qty": 1}}, {{"sku": "b-2", "qty": 2}}]}}"#
        ))),
        ..measured_event(n)
    }
}

fn conditions(c: &mut Criterion) {
    let mut group = c.benchmark_group("conditions");
    group.throughput(Throughput::Elements(1));
    for (mode, exact) in [("exact", true), ("scan", false)] {
        for share in [0.0, 0.1] {
            let mut engine = scale_engine(exact, share);
            let fired = engine.evaluate(&[scale_event(0)], now()).actions.len();
            assert_eq!(fired, if exact { 1 } else { SCALE_LISTENERS / SCALE_TYPES }, "every condition is true");
            group.bench_function(BenchmarkId::new(mode, format!("share_{share}")), |b| {
                evaluate_each(b, &mut engine, scale_event)
            });
        }
    }
    group.finish();
}

criterion_group!(benches, evaluate_one_event, conditions);
criterion_main!(benches);
