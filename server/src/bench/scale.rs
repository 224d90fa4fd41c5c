//! Publish throughput as the number of registered listeners grows.
//!
//! Listener `i` (of `count`) listens to type `t(i % types)` with an exact filter
//! `customer = c-<i>`: 90% are START ONE listeners, 5% WAIT ONE listeners (which finish when they
//! fire), and 5% START ALL listeners over `t(k)` and `t(k+1)` correlated by `customer` (which
//! only ever collect their first type, so they hold partial state). Event `e` gets a
//! pseudo-random `j` in `0..100 * max(count, types)`, type `t(j % types)` and customer `c-<j>`,
//! so it matches listener `j` exactly when `j < count`: about 1 event in 100.
//!
//! With `--condition-share F`, a fraction `F` of the listeners, spread evenly over `i`, are
//! instead START ONE listeners of `t(i % types)` whose one filter set is the glob
//! `customer = c-*` with the CEL condition [`CONDITION`]: every event of their type passes the
//! index and the glob, so the condition is evaluated on it (about `F * count / types` conditions
//! per event), and it is false for every event of the bench, so they never fire.

use std::sync::Arc;

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, pb};
use serde::Serialize;

use super::load::{self, Latency};
use super::progress::Progress;
use super::report::Resources;
use super::target::Meter;

/// Settings of one listener count.
#[derive(Debug, Clone)]
pub struct Settings {
    pub namespace: String,
    pub listeners: u64,
    pub types: u64,
    pub events: u64,
    pub in_flight: usize,
    pub payload: Arc<str>,
    /// The fraction of the listeners that carry [`CONDITION`], 0 to 1.
    pub condition_share: f64,
}

/// The outcome of one listener count.
#[derive(Debug, Clone, Serialize)]
pub struct SizeResult {
    pub namespace: String,
    pub listeners: u64,
    pub registration_seconds: f64,
    pub registrations_per_second: f64,
    pub registration_errors: u64,
    /// How many of the listeners carry [`CONDITION`].
    pub conditioned_listeners: u64,
    pub events: u64,
    pub publish_errors: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Events per second relative to the run without listeners (filled in by the caller).
    pub ratio_to_zero: Option<f64>,
    pub latency: Latency,
    pub resources: Resources,
    pub first_error: Option<String>,
}

fn event_type(k: u64) -> String {
    format!("bench.scale.t{k}")
}

/// The condition of the conditioned listeners: it reads the event's data (decoded JSON, the
/// bench's payload has `"amount_cents":129900`) and an extension, and is false for every event
/// the bench publishes.
pub const CONDITION: &str = r#"data.amount_cents >= 100000000 || customer.startsWith("vip-")"#;

/// Returns whether listener `i` is one of the fraction `share` that carry [`CONDITION`]: one in
/// every `1 / share`, evenly spread.
pub fn conditioned(i: u64, share: f64) -> bool {
    ((i + 1) as f64 * share).floor() > (i as f64 * share).floor()
}

/// Returns how many of the first `n` listeners carry [`CONDITION`].
pub fn conditioned_count(n: u64, share: f64) -> u64 {
    (0..n).filter(|&i| conditioned(i, share)).count() as u64
}

/// Returns the spec of listener `i`, one of the fraction `share` that carry [`CONDITION`] or a
/// plain one ([`listener`]).
pub fn spec(i: u64, types: u64, share: f64) -> pb::ListenerSpec {
    if !conditioned(i, share) {
        return listener(i, types);
    }
    let t = event_type(i % types.max(1));
    ListenerSpecBuilder::start(format!("bench-scale-{}", i % 50))
        .one(t.clone())
        .filter_where(t, CONDITION, [("customer", "c-*")])
        .build()
}

/// Returns the spec of listener `i` without a condition.
pub fn listener(i: u64, types: u64) -> pb::ListenerSpec {
    let types = types.max(1);
    let k = i % types;
    let customer = [("customer", format!("c-{i}"))];
    match i % 20 {
        0 => ListenerSpecBuilder::wait(format!("bench-instance-{i}"))
            .one(event_type(k))
            .filter(event_type(k), customer)
            .build(),
        1 => {
            let next = (k + 1) % types;
            ListenerSpecBuilder::start("bench-scale-all")
                .all([event_type(k), event_type(next)])
                .correlate_by(["customer"])
                .filter(event_type(k), customer.clone())
                .filter(event_type(next), customer)
                .build()
        }
        _ => ListenerSpecBuilder::start(format!("bench-scale-{}", i % 50))
            .one(event_type(k))
            .filter(event_type(k), customer)
            .build(),
    }
}

/// SplitMix64: a fixed pseudo-random sequence, so every run publishes the same events.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Returns the `j` of event `e`: which listener it matches, if `j < listeners`.
pub fn customer_of(e: u64, listeners: u64, types: u64) -> u64 {
    mix(e) % (100 * listeners.max(types).max(1))
}

/// Registers `n` listeners of this workload ([`spec`], the fraction `condition_share` with a
/// condition) over `types` event types in `namespace`, `in_flight` calls per client at a time.
pub async fn register(
    clients: &[Client],
    namespace: &str,
    n: u64,
    types: u64,
    condition_share: f64,
    in_flight: usize,
) -> load::Run {
    let progress = Progress::start(format!("register {n} listeners"), n, "listeners");
    let namespace: Arc<str> = namespace.into();
    let registered = load::drive(clients, in_flight, n, &progress, move |client: Client, i| {
        let namespace = namespace.clone();
        async move { client.register_listener(namespace.as_ref(), spec(i, types, condition_share)).await.map(drop) }
    })
    .await;
    progress.finish();
    registered
}

/// Registers the listeners, then publishes the events, in a fresh namespace.
pub async fn run(senders: &[load::Sender], s: &Settings, meter: Meter) -> anyhow::Result<SizeResult> {
    let clients = &load::clients_of(senders)[..];
    let types = s.types.max(1);
    let (mut registration_seconds, mut registrations_per_second, mut registration_errors) = (0.0, 0.0, 0);
    let mut first_error = None;
    if s.listeners > 0 {
        let registered = register(clients, &s.namespace, s.listeners, types, s.condition_share, s.in_flight).await;
        registration_seconds = registered.elapsed.as_secs_f64();
        registrations_per_second = registered.rate();
        registration_errors = registered.errors;
        first_error = registered.first_error.map(|e| format!("register: {e}"));
    }

    let progress = Progress::start(format!("publish, {} listeners", s.listeners), s.events, "events");
    let before = meter.sample();
    let (listeners, payload) = (s.listeners, s.payload.clone());
    let run = load::publish(senders, &s.namespace, s.in_flight, s.events, &progress, move |e| {
        let j = customer_of(e, listeners, types);
        CloudEventBuilder::new("/bench/scale", event_type(j % types))
            .extension("customer", format!("c-{j}"))
            .data_text("application/json", payload.as_ref())
            .build()
    })
    .await;
    let after = meter.sample();
    progress.finish();
    if first_error.is_none() {
        first_error = run.first_error.clone().map(|e| format!("publish: {e}"));
    }
    Ok(SizeResult {
        namespace: s.namespace.clone(),
        listeners: s.listeners,
        registration_seconds,
        registrations_per_second,
        registration_errors,
        conditioned_listeners: conditioned_count(s.listeners, s.condition_share),
        events: run.ok,
        publish_errors: run.errors,
        seconds: run.elapsed.as_secs_f64(),
        events_per_second: run.rate(),
        ratio_to_zero: None,
        latency: Latency::of(&run.hist),
        resources: Resources::between(&before, &after, run.ok),
        first_error,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use eventbus_engine::condition::{Bindings, FilterCondition};
    use eventbus_engine::{AttrValue, Data, Event, TraceContext};

    use super::*;

    #[test]
    fn about_one_event_in_a_hundred_matches_a_listener() {
        for listeners in [1_000u64, 10_000] {
            let events = 100_000u64;
            let matching = (0..events).filter(|&e| customer_of(e, listeners, 500) < listeners).count() as f64;
            let share = matching / events as f64;
            assert!((0.008..0.012).contains(&share), "{listeners}: {share}");
        }
        assert!((0..10_000).all(|e| customer_of(e, 0, 500) < 50_000));
    }

    #[test]
    fn matching_event_has_the_listeners_type_and_customer() {
        let types = 500;
        for i in [0u64, 1, 2, 499, 500, 12_345] {
            let spec = listener(i, types);
            assert_eq!(spec.types[0], event_type(i % types));
            assert_eq!(spec.filters[0].attributes["customer"], format!("c-{i}"));
        }
        assert_eq!(listener(0, types).kind(), pb::ListenerKind::Wait);
        assert_eq!(listener(1, types).condition(), pb::ListenerCondition::All);
        assert_eq!(listener(2, types).condition(), pb::ListenerCondition::One);
    }

    #[test]
    fn the_share_of_conditioned_listeners_is_spread_evenly() {
        let cases = [(0.0, 10_000, 0), (0.1, 10_000, 1000), (0.1, 25, 2), (0.25, 1000, 250), (1.0, 1000, 1000)];
        for (share, n, want) in cases {
            assert_eq!(conditioned_count(n, share), want, "{share} of {n}");
        }
        let first: Vec<u64> = (0..40).filter(|&i| conditioned(i, 0.1)).collect();
        assert_eq!(first, [9, 19, 29, 39]);
        assert_eq!(spec(3, 500, 0.1), listener(3, 500), "a plain listener is unchanged");
    }

    /// An event of the bench with this customer and data, as the engine sees it.
    fn engine_event(customer: &str, data: String) -> Event {
        Event {
            namespace: "bench".into(),
            sequence: 1,
            id: "1".into(),
            source: "/bench/scale".into(),
            specversion: "1.0".into(),
            event_type: event_type(0),
            subject: None,
            time: None,
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            extensions: BTreeMap::from([("customer".to_owned(), AttrValue::String(customer.into()))]),
            data: Some(Data::Text(data)),
            received_at: chrono::Utc::now(),
            trace: TraceContext::default(),
        }
    }

    #[test]
    fn the_condition_is_evaluated_and_false_for_the_bench_events() {
        let condition = FilterCondition::compile(CONDITION).unwrap();
        let rich = load::payload(512).replace("129900", "100000000");
        let cases = [
            ("c-42", load::payload(512), Ok(false)),
            ("c-42", load::payload(90), Ok(false)),
            ("c-42", rich, Ok(true)),
            ("vip-42", load::payload(512), Ok(true)),
        ];
        for (customer, data, want) in cases {
            let event = engine_event(customer, data.clone());
            assert_eq!(condition.eval(&Bindings::new(&event)), want, "{customer} {data}");
        }
    }

    #[test]
    fn a_conditioned_listener_matches_every_event_of_its_type_on_its_globs() {
        let (types, i) = (500u64, 9u64);
        let spec = spec(i, types, 0.1);
        assert_eq!(spec.kind(), pb::ListenerKind::Start);
        assert_eq!(spec.condition(), pb::ListenerCondition::One);
        assert_eq!(spec.types, [event_type(i % types)]);
        assert_eq!(spec.filters.len(), 1);
        assert_eq!(spec.filters[0].r#type, event_type(i % types));
        assert_eq!(spec.filters[0].attributes, HashMap::from([("customer".to_owned(), "c-*".to_owned())]));
        assert_eq!(spec.filters[0].condition, CONDITION);
    }
}
