//! Property tests of the trigger engine against a reference model.
//!
//! The model is a naive transcription of the trigger rules (engine/README.md): listeners in a
//! `Vec` scanned in creation order, partial state in plain maps, no index, no cleverness. Random
//! listeners and random steps (batches of events, clock advances, `expire`, `expire_namespace`,
//! `prune`, registrations and removals) go to both; after every step the actions, the finished listeners,
//! the reported state changes and the live partial state must agree.
//!
//! The alphabets are small on purpose: four types (two differing only in case), two namespaces,
//! two sources and four ids (so the same event identity recurs within and across batches), and
//! a handful of attribute values and patterns that hit and miss.
//!
//! Filter sets may carry a CEL condition from a small table; the model knows each one only as
//! an opaque predicate over the event (false where the expression fails at run time), written
//! by hand next to its text.
//!
//! A second property ([`replay`]) walks stored events through one listener with the pure
//! replay walk (what `ReplayEvents` and a look-back registration do) and checks that it fires
//! what the model fires, with the fire ids the live engine gives.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use eventbus_engine::trigger::{CorrelationKey, Partial};
use eventbus_engine::{
    Action, ActionKind, AttrValue, CompiledListener, Condition, Data, Engine, Event, EventRef, FilterSet, Listener,
    ListenerKind, ListenerSpec, ListenerStatus, Outcome, Policy, TraceContext,
};
use proptest::prelude::*;
use proptest::sample::select;
use uuid::Uuid;

const TYPES: [&str; 4] = ["a", "b", "c", "A"];
const NAMESPACES: [&str; 2] = ["ns1", "ns2"];
const SOURCES: [&str; 2] = ["/a", "/b"];
const IDS: [&str; 4] = ["1", "2", "3", "4"];
const SUBJECTS: [&str; 2] = ["orders/1", "orders/2"];
const REGIONS: [&str; 3] = ["eu", "eu-west", "us"];

/// Filterable attributes, each with the patterns tried on it.
const FILTERS: [(&str, &[&str]); 7] = [
    ("region", &["eu", "eu-west", "eu*", "*west", "e?", "*", "us"]),
    ("tier", &["gold", "g*", "true", "*"]),
    ("subject", &["orders/1", "orders/*", "*/2", "*"]),
    ("source", &["/a", "/*", "*b"]),
    ("id", &["1", "*", "?"]),
    ("time", &["2026-11-22T10:00:00Z", "*.25Z", "*"]),
    ("orderid", &["1", "1*", "2", "*"]),
];

const CORRELATE_BY: [&str; 3] = ["orderid", "subject", "region"];

/// The payloads events carry (no content type: JSON when it parses), and their `amount` as the
/// model sees it: a number, or `None` where `data.amount` is not one (or fails).
const PAYLOADS: [(&str, Option<f64>); 5] = [
    (r#"{"amount": 50}"#, Some(50.0)),
    (r#"{"amount": 100}"#, Some(100.0)),
    (r#"{"amount": 150.5}"#, Some(150.5)),
    (r#"{"amount": "lots"}"#, None),
    ("not json", None),
];

/// A condition's opaque predicate: whether it is true of the event (false where it fails).
type Predicate = fn(&Published) -> bool;

/// The conditions filter sets may carry, each with its predicate.
const CONDITIONS: [(&str, Predicate); 5] = [
    ("data.amount >= 100", |e| amount(e).is_some_and(|a| a >= 100.0)),
    (r#"subject.startsWith("orders/1")"#, |e| e.event.subject.is_some_and(|s| s.starts_with("orders/1"))),
    (r#"region != "us""#, |e| e.event.region.is_some_and(|r| r != "us")),
    ("int(orderid) > 1", |e| e.event.orderid.is_some_and(|i| orderid_value(i).1.parse::<i64>().is_ok_and(|n| n > 1))),
    // An error on one side of `||` gives way to true on the other (CEL's commutative `||`).
    (r#"time > timestamp("2026-11-22T10:00:00Z") || data.amount < 100"#, |e| {
        e.event.time == Some(1) || amount(e).is_some_and(|a| a < 100.0)
    }),
];

fn amount(e: &Published) -> Option<f64> {
    e.event.payload.and_then(|i| PAYLOADS[i].1)
}

/// Returns the predicate of a condition of [`CONDITIONS`].
fn predicate(condition: &str) -> Predicate {
    CONDITIONS.iter().find(|(text, _)| *text == condition).map(|(_, p)| *p).expect("a condition of the table")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).single().expect("valid time")
}

/// The `time` attribute values events carry, with their canonical form written out by hand.
fn time_value(i: usize) -> (DateTime<Utc>, &'static str) {
    match i {
        0 => (t0(), "2026-11-22T10:00:00Z"),
        _ => (t0() + TimeDelta::milliseconds(250), "2026-11-22T10:00:00.25Z"),
    }
}

/// The `tier` extension values, with their canonical form.
fn tier_value(i: usize) -> (AttrValue, &'static str) {
    match i {
        0 => (AttrValue::String("gold".into()), "gold"),
        1 => (AttrValue::Boolean(true), "true"),
        _ => (AttrValue::Boolean(false), "false"),
    }
}

/// The `orderid` extension values, with their canonical form: a string and an integer can
/// correlate.
fn orderid_value(i: usize) -> (AttrValue, &'static str) {
    match i {
        0 => (AttrValue::String("1".into()), "1"),
        1 => (AttrValue::Integer(1), "1"),
        2 => (AttrValue::String("2".into()), "2"),
        _ => (AttrValue::Integer(12), "12"),
    }
}

/// Spells an attribute name in another case: names are case-insensitive.
fn recase(name: &str, upper: bool) -> String {
    if !upper {
        return name.to_owned();
    }
    let mut chars = name.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Generated input
// ---------------------------------------------------------------------------------------------

/// An event as generated: indices into the value tables above.
#[derive(Debug, Clone)]
struct GenEvent {
    namespace: &'static str,
    event_type: &'static str,
    source: &'static str,
    id: &'static str,
    subject: Option<&'static str>,
    time: Option<usize>,
    region: Option<&'static str>,
    tier: Option<usize>,
    orderid: Option<usize>,
    /// Index into [`PAYLOADS`]; `None`: no data.
    payload: Option<usize>,
    /// Seconds between receipt and evaluation.
    lag: i64,
}

/// An event as published: what both the engine and the model see.
#[derive(Debug, Clone)]
struct Published {
    event: GenEvent,
    sequence: u64,
    received_at: DateTime<Utc>,
    trace: TraceContext,
}

impl Published {
    fn to_event(&self) -> Event {
        let e = &self.event;
        let mut extensions = BTreeMap::new();
        if let Some(r) = e.region {
            extensions.insert("region".to_owned(), AttrValue::String(r.into()));
        }
        if let Some(i) = e.tier {
            extensions.insert("tier".to_owned(), tier_value(i).0);
        }
        if let Some(i) = e.orderid {
            extensions.insert("orderid".to_owned(), orderid_value(i).0);
        }
        Event {
            namespace: e.namespace.into(),
            sequence: self.sequence,
            id: e.id.into(),
            source: e.source.into(),
            specversion: "1.0".into(),
            event_type: e.event_type.into(),
            subject: e.subject.map(Into::into),
            time: e.time.map(|i| time_value(i).0),
            datacontenttype: None,
            dataschema: None,
            extensions,
            data: e.payload.map(|i| Data::Text(PAYLOADS[i].0.into())),
            received_at: self.received_at,
            trace: self.trace.clone(),
        }
    }

    /// Returns the canonical value of an attribute, by name case-insensitively.
    fn attribute(&self, name: &str) -> Option<String> {
        let e = &self.event;
        match name.to_ascii_lowercase().as_str() {
            "id" => Some(e.id.into()),
            "source" => Some(e.source.into()),
            "specversion" => Some("1.0".into()),
            "type" => Some(e.event_type.into()),
            "subject" => e.subject.map(Into::into),
            "time" => e.time.map(|i| time_value(i).1.into()),
            "region" => e.region.map(Into::into),
            "tier" => e.tier.map(|i| tier_value(i).1.into()),
            "orderid" => e.orderid.map(|i| orderid_value(i).1.into()),
            _ => None,
        }
    }

    fn to_ref(&self) -> EventRef {
        EventRef {
            sequence: self.sequence,
            source: self.event.source.into(),
            id: self.event.id.into(),
            event_type: self.event.event_type.into(),
            received_at: self.received_at,
            trace: self.trace.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    Publish(Vec<GenEvent>),
    /// Moves the clock forward by this many seconds.
    Advance(i64),
    Expire,
    ExpireNamespace(&'static str),
    Prune,
    Register(&'static str, ListenerSpec),
    /// Removes the n-th registered listener (modulo the number registered).
    Remove(usize),
}

fn event_strategy() -> impl Strategy<Value = GenEvent> {
    (
        (select(&NAMESPACES[..]), select(&TYPES[..]), select(&SOURCES[..]), select(&IDS[..])),
        proptest::option::of(select(&SUBJECTS[..])),
        proptest::option::of(0..2usize),
        proptest::option::of(select(&REGIONS[..])),
        proptest::option::of(0..3usize),
        proptest::option::of(0..4usize),
        proptest::option::of(0..PAYLOADS.len()),
        prop_oneof![3 => Just(0i64), 1 => Just(2i64)],
    )
        .prop_map(|((namespace, event_type, source, id), subject, time, region, tier, orderid, payload, lag)| {
            GenEvent { namespace, event_type, source, id, subject, time, region, tier, orderid, payload, lag }
        })
}

/// One raw filter set: (index into the listener's types, clauses of (attribute, pattern, upper),
/// index into [`CONDITIONS`]).
type RawFilterSet = (usize, Vec<(usize, usize, bool)>, Option<usize>);

fn spec_strategy() -> impl Strategy<Value = ListenerSpec> {
    let kind = prop_oneof![Just(ListenerKind::Start), Just(ListenerKind::Wait)];
    let condition = prop_oneof![1 => Just(Condition::One), 1 => Just(Condition::Any), 2 => Just(Condition::All)];
    let filters = proptest::collection::vec(
        (
            0..3usize,
            proptest::collection::vec((0..FILTERS.len(), 0..8usize, any::<bool>()), 0..=2),
            proptest::option::weighted(0.3, 0..CONDITIONS.len()),
        ),
        0..=3,
    );
    let lifespan = prop_oneof![
        3 => Just(None),
        1 => Just(Some(Duration::ZERO)),
        3 => Just(Some(Duration::from_secs(5))),
        3 => Just(Some(Duration::from_secs(20))),
        // Longer than any timestamp can hold: still forever, never an overflow.
        1 => Just(Some(Duration::from_secs(u64::MAX))),
    ];
    let policy = prop_oneof![Just(None), Just(Some(Policy::First)), Just(Some(Policy::Latest))];
    (
        (kind, condition),
        (Just(TYPES.to_vec()).prop_shuffle(), 1..=3usize),
        filters,
        lifespan,
        (Just(CORRELATE_BY.to_vec()).prop_shuffle(), 0..=2usize, any::<bool>()),
        policy,
        proptest::option::weighted(0.8, 0..60i64),
        0..100u32,
    )
        .prop_map(
            |((kind, condition), (types, n), filters, lifespan, (correlate, m, upper), policy, deadline, target)| {
                let n = if condition == Condition::One { 1 } else { n };
                let types: Vec<String> = types[..n].iter().map(|t| t.to_string()).collect();
                let all = condition == Condition::All;
                let wait = kind == ListenerKind::Wait;
                ListenerSpec {
                    kind,
                    target: if wait { format!("inst{target}") } else { format!("wf{target}") },
                    condition,
                    filters: filter_sets(&types, &filters),
                    types,
                    lifespan: lifespan.filter(|_| all),
                    correlate_by: if all {
                        correlate[..m].iter().enumerate().map(|(i, c)| recase(c, upper && i == 0)).collect()
                    } else {
                        vec![]
                    },
                    policy: policy.filter(|_| all),
                    deadline: deadline.filter(|_| wait).map(|s| t0() + TimeDelta::seconds(s)),
                }
            },
        )
}

/// Builds filter sets on the listener's types from raw indices.
fn filter_sets(types: &[String], raw: &[RawFilterSet]) -> Vec<FilterSet> {
    raw.iter()
        .map(|(slot, clauses, condition)| {
            // One clause per attribute: names are case-insensitive, so "Region" and "region" clash.
            let mut clauses_by_attribute = BTreeMap::new();
            for &(attr, pattern, upper) in clauses {
                let (name, patterns) = FILTERS[attr];
                clauses_by_attribute.insert(attr, (recase(name, upper), patterns[pattern % patterns.len()].to_owned()));
            }
            // A set needs a clause or a condition.
            let condition = if clauses.is_empty() { Some(condition.unwrap_or(0)) } else { *condition };
            FilterSet {
                event_type: types[slot % types.len()].clone(),
                attributes: clauses_by_attribute.into_values().collect(),
                condition: condition.map(|i| CONDITIONS[i].0.to_owned()),
            }
        })
        .collect()
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => proptest::collection::vec(event_strategy(), 1..=4).prop_map(Step::Publish),
        4 => (0..=8i64).prop_map(Step::Advance),
        2 => Just(Step::Expire),
        1 => select(&NAMESPACES[..]).prop_map(Step::ExpireNamespace),
        1 => Just(Step::Prune),
        1 => (select(&NAMESPACES[..]), spec_strategy()).prop_map(|(ns, spec)| Step::Register(ns, spec)),
        1 => (0..16usize).prop_map(Step::Remove),
    ]
}

// ---------------------------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------------------------

/// An action as the model states it (everything but the fire id, which is checked separately).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fired {
    listener: Uuid,
    namespace: String,
    kind: ActionKind,
    events: Vec<EventRef>,
    correlation: Vec<(String, String)>,
    trace: TraceContext,
}

impl From<&Action> for Fired {
    fn from(a: &Action) -> Self {
        Self {
            listener: a.listener_id,
            namespace: a.namespace.clone(),
            kind: a.kind.clone(),
            events: a.events.clone(),
            correlation: a.correlation.clone(),
            trace: a.trace.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Woke,
    TimedOut,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Observed {
    actions: Vec<Fired>,
    finished: Vec<(Uuid, End)>,
}

#[derive(Debug)]
struct ModelListener {
    id: Uuid,
    namespace: String,
    spec: ListenerSpec,
    trace: TraceContext,
    active: bool,
    /// ALL only: collected events per tuple of correlation values, in collection order.
    partials: BTreeMap<Vec<String>, Vec<EventRef>>,
}

impl ModelListener {
    fn reaches(&self, e: &Published) -> bool {
        self.active && self.namespace == e.event.namespace && self.spec.types.iter().any(|t| t == e.event.event_type)
    }

    /// Rule 2: no filter set for the event's type, or any set whose every clause matches and
    /// whose condition, if any, holds.
    fn passes(&self, e: &Published) -> bool {
        let sets: Vec<&FilterSet> = self.spec.filters.iter().filter(|f| f.event_type == e.event.event_type).collect();
        sets.is_empty()
            || sets.iter().any(|set| {
                set.attributes.iter().all(|(name, pattern)| e.attribute(name).is_some_and(|v| glob(pattern, &v)))
                    && set.condition.as_deref().is_none_or(|c| predicate(c)(e))
            })
    }

    /// Returns whether a collected event is still alive at `now` (lifespan zero or none: forever).
    fn alive(&self, e: &EventRef, now: DateTime<Utc>) -> bool {
        match self.spec.lifespan {
            None => true,
            Some(d) if d.is_zero() => true,
            Some(d) => match TimeDelta::from_std(d).ok().and_then(|d| e.received_at.checked_add_signed(d)) {
                None => true,
                Some(end) => end > now,
            },
        }
    }

    fn fire(&mut self, events: Vec<EventRef>, key: Vec<String>, out: &mut Observed) {
        let trace = events.last().map(|e| e.trace.clone()).unwrap_or_default();
        let kind = match self.spec.kind {
            ListenerKind::Start => ActionKind::Start { workflow_id: self.spec.target.clone() },
            ListenerKind::Wait => ActionKind::Wake { instance_id: self.spec.target.clone() },
        };
        out.actions.push(Fired {
            listener: self.id,
            namespace: self.namespace.clone(),
            kind,
            events,
            correlation: self.spec.correlate_by.iter().cloned().zip(key).collect(),
            trace,
        });
        if self.spec.kind == ListenerKind::Wait {
            self.active = false;
            self.partials.clear();
            out.finished.push((self.id, End::Woke));
        }
    }

    fn time_out(&mut self, out: &mut Observed) {
        out.actions.push(Fired {
            listener: self.id,
            namespace: self.namespace.clone(),
            kind: ActionKind::Timeout { instance_id: self.spec.target.clone() },
            events: vec![],
            correlation: vec![],
            trace: self.trace.clone(),
        });
        self.active = false;
        self.partials.clear();
        out.finished.push((self.id, End::TimedOut));
    }
}

/// Glob matching with the two wildcards the generated patterns use: `*` (any run of
/// characters, `/` included) and `?` (any one character; the values are ASCII).
fn glob(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some((b'?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

#[derive(Debug, Default)]
struct Model {
    /// In creation order.
    listeners: Vec<ModelListener>,
}

impl Model {
    fn evaluate(&mut self, batch: &[Published], now: DateTime<Utc>) -> Observed {
        let mut out = Observed::default();
        let mut seen: Vec<(&str, &str, &str)> = Vec::new();
        for e in batch {
            // Rule 3: an identity seen earlier in the batch is skipped.
            let identity = (e.event.namespace, e.event.source, e.event.id);
            if seen.contains(&identity) {
                continue;
            }
            seen.push(identity);
            for l in &mut self.listeners {
                // Rule 1.
                if !l.reaches(e) {
                    continue;
                }
                // Rule 2.
                if !l.passes(e) {
                    continue;
                }
                // Rule 7: an event that would match a WAIT listener (filters, and for ALL the
                // correlation attributes) but arrives at or after its deadline times it out, at
                // this point of the evaluation order.
                let correlated =
                    l.spec.condition != Condition::All || l.spec.correlate_by.iter().all(|n| e.attribute(n).is_some());
                if correlated && l.spec.deadline.is_some_and(|d| e.received_at >= d) {
                    l.time_out(&mut out);
                    continue;
                }
                match l.spec.condition {
                    // Rule 4.
                    Condition::One | Condition::Any => l.fire(vec![e.to_ref()], vec![], &mut out),
                    // Rules 5, 6 and 8.
                    Condition::All => {
                        let key: Option<Vec<String>> = l.spec.correlate_by.iter().map(|n| e.attribute(n)).collect();
                        let Some(key) = key else { continue };
                        let mut partial = l.partials.remove(&key).unwrap_or_default();
                        partial.retain(|c| l.alive(c, now));
                        // Rule 8, as far as the engine can see: an event the partial holds is not
                        // collected again. (Across publishes, the store's dedup of (source, id) keeps
                        // a repeat from being evaluated at all.)
                        let duplicate = partial.iter().any(|c| c.source == e.event.source && c.id == e.event.id);
                        let same_type = partial.iter().position(|c| c.event_type == e.event.event_type);
                        let collect = match (duplicate, same_type, l.spec.policy.unwrap_or(Policy::First)) {
                            (true, _, _) => false,
                            (false, None, _) => true,
                            (false, Some(_), Policy::First) => false,
                            (false, Some(i), Policy::Latest) => {
                                partial.remove(i);
                                true
                            }
                        };
                        if collect {
                            partial.push(e.to_ref());
                        }
                        let complete = l.spec.types.iter().all(|t| partial.iter().any(|c| c.event_type == *t));
                        if complete {
                            l.fire(partial, key, &mut out);
                        } else if !partial.is_empty() {
                            l.partials.insert(key, partial);
                        }
                    }
                }
            }
        }
        out
    }

    /// Times out the due WAIT listeners, of one namespace or of all.
    fn expire(&mut self, namespace: Option<&str>, now: DateTime<Utc>) -> Observed {
        let mut out = Observed::default();
        let mut due: Vec<(DateTime<Utc>, usize)> = self
            .listeners
            .iter()
            .enumerate()
            .filter(|(_, l)| l.active && namespace.is_none_or(|ns| l.namespace == ns))
            .filter_map(|(i, l)| l.spec.deadline.filter(|d| *d <= now).map(|d| (d, i)))
            .collect();
        // By deadline, then creation order (which is also listener id order here).
        due.sort();
        for (_, i) in due {
            self.listeners[i].time_out(&mut out);
        }
        out
    }

    /// The collected events alive at `now`, per (listener, key), without empty keys.
    fn live(&self, now: DateTime<Utc>) -> BTreeMap<(Uuid, Vec<String>), Vec<EventRef>> {
        let mut live = BTreeMap::new();
        for l in self.listeners.iter().filter(|l| l.active) {
            for (key, partial) in &l.partials {
                let alive: Vec<EventRef> = partial.iter().filter(|e| l.alive(e, now)).cloned().collect();
                if !alive.is_empty() {
                    live.insert((l.id, key.clone()), alive);
                }
            }
        }
        live
    }
}

// ---------------------------------------------------------------------------------------------
// Running both side by side
// ---------------------------------------------------------------------------------------------

/// What a fire id names: the listener, whether it timed out, the contributing (source, id)s.
type Firing = (Uuid, bool, Vec<(String, String)>);

struct Run {
    engine: Engine,
    model: Model,
    now: DateTime<Utc>,
    next_sequence: u64,
    /// Every fire id seen in the run, with the firing it named.
    fire_ids: HashMap<Uuid, Firing>,
}

impl Run {
    fn new() -> Self {
        Self { engine: Engine::new(), model: Model::default(), now: t0(), next_sequence: 1, fire_ids: HashMap::new() }
    }

    /// Registers a listener with both, and returns it.
    fn register(&mut self, namespace: &str, spec: ListenerSpec) -> Listener {
        let order = self.model.listeners.len() as i64 + 1;
        // Ids grow with creation order, so that expire's tie break (by id) is creation order.
        let id = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 | order as u128);
        let trace = TraceContext { traceparent: format!("00-registration-{order}-01"), tracestate: String::new() };
        spec.validate().expect("generated specs are valid");
        let listener = Listener {
            id,
            namespace: namespace.into(),
            order,
            spec: spec.clone(),
            created_at: self.now,
            trace: trace.clone(),
            request_id: None,
            status: ListenerStatus::Active,
        };
        self.engine.insert(CompiledListener::compile(listener.clone()).expect("valid listener compiles"), []);
        self.model.listeners.push(ModelListener {
            id,
            namespace: namespace.into(),
            spec,
            trace,
            active: true,
            partials: BTreeMap::new(),
        });
        listener
    }

    fn step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        let before = self.engine_state();
        let (outcome, want) = match step {
            Step::Publish(events) => {
                let batch: Vec<Published> = events
                    .iter()
                    .map(|e| {
                        let sequence = self.next_sequence;
                        self.next_sequence += 1;
                        Published {
                            event: e.clone(),
                            sequence,
                            received_at: self.now - TimeDelta::seconds(e.lag),
                            trace: TraceContext {
                                traceparent: format!("00-event-{sequence}-01"),
                                tracestate: String::new(),
                            },
                        }
                    })
                    .collect();
                let engine_batch: Vec<Event> = batch.iter().map(Published::to_event).collect();
                (self.engine.evaluate(&engine_batch, self.now), self.model.evaluate(&batch, self.now))
            }
            Step::Advance(secs) => {
                self.now += TimeDelta::seconds(*secs);
                return self.check_live();
            }
            Step::Expire => (self.engine.expire(self.now), self.model.expire(None, self.now)),
            Step::ExpireNamespace(namespace) => {
                (self.engine.expire_namespace(namespace, self.now), self.model.expire(Some(namespace), self.now))
            }
            Step::Prune => (self.engine.prune(self.now), Observed::default()),
            Step::Register(namespace, spec) => {
                self.register(namespace, spec.clone());
                return self.check_live();
            }
            Step::Remove(n) => {
                let i = n % self.model.listeners.len();
                let l = &mut self.model.listeners[i];
                prop_assert_eq!(self.engine.remove(l.id), l.active, "remove returns whether it was active");
                l.active = false;
                l.partials.clear();
                return self.check_live();
            }
        };
        self.check_outcome(&outcome, &want)?;
        self.check_reported_state(&before, &outcome)?;
        self.check_live()
    }

    fn check_outcome(&mut self, outcome: &Outcome, want: &Observed) -> Result<(), TestCaseError> {
        let got = Observed {
            actions: outcome.actions.iter().map(Fired::from).collect(),
            finished: outcome
                .finished
                .iter()
                .map(|(id, status)| match status {
                    ListenerStatus::Fired { .. } => (*id, End::Woke),
                    ListenerStatus::TimedOut { .. } => (*id, End::TimedOut),
                    ListenerStatus::Active => panic!("finished listener {id} reported active"),
                })
                .collect(),
        };
        prop_assert_eq!(&got, want, "engine and model disagree at {}", self.now);

        // A finished listener's status names the action that finished it, at `now`.
        for (id, status) in &outcome.finished {
            let (ListenerStatus::Fired { fire_id, at } | ListenerStatus::TimedOut { fire_id, at }) = status else {
                unreachable!("checked above")
            };
            prop_assert_eq!(*at, self.now);
            let action = outcome.actions.iter().rev().find(|a| a.listener_id == *id);
            prop_assert_eq!(action.map(|a| a.fire_id), Some(*fire_id), "status of {} names its action", id);
        }

        // Fire ids are deterministic (same listener and events, same id) and tell firings apart.
        for a in &outcome.actions {
            prop_assert_eq!(a.fire_id.get_version_num(), 5, "fire ids are UUIDv5");
            let what = (
                a.listener_id,
                matches!(a.kind, ActionKind::Timeout { .. }),
                a.events.iter().map(|e| (e.source.clone(), e.id.clone())).collect::<Vec<_>>(),
            );
            let previous = self.fire_ids.entry(a.fire_id).or_insert_with(|| what.clone());
            prop_assert_eq!(&*previous, &what, "one fire id for two different firings");
        }
        let mut by_content = HashMap::new();
        for (fire_id, what) in &self.fire_ids {
            if let Some(other) = by_content.insert(what, fire_id) {
                prop_assert_eq!(other, fire_id, "two fire ids for the same firing {:?}", what);
            }
        }
        Ok(())
    }

    /// Every (listener, key) whose state changed is in `outcome.partials` with its final value,
    /// and everything reported there is the final value.
    fn check_reported_state(
        &self,
        before: &BTreeMap<(Uuid, CorrelationKey), Partial>,
        outcome: &Outcome,
    ) -> Result<(), TestCaseError> {
        let after = self.engine_state();
        let keys: std::collections::BTreeSet<_> = before.keys().chain(after.keys()).collect();
        for key in keys {
            let final_value = after.get(key).cloned().unwrap_or_default();
            if before.get(key) != after.get(key) {
                prop_assert_eq!(
                    outcome.partials.get(key),
                    Some(&final_value),
                    "changed state of {:?} not reported",
                    key
                );
            }
        }
        for (key, reported) in &outcome.partials {
            prop_assert_eq!(reported, &after.get(key).cloned().unwrap_or_default(), "reported state of {:?}", key);
        }
        Ok(())
    }

    /// The engine holds the model's active listeners and, alive at `now`, the same partial state.
    fn check_live(&self) -> Result<(), TestCaseError> {
        let active = self.model.listeners.iter().filter(|l| l.active).count();
        prop_assert_eq!(self.engine.len(), active);
        for l in &self.model.listeners {
            prop_assert_eq!(self.engine.contains(l.id), l.active, "listener {} active", l.id);
        }
        let mut live = BTreeMap::new();
        for ((id, key), partial) in self.engine_state() {
            let Some(l) = self.model.listeners.iter().find(|l| l.id == id) else {
                return Err(TestCaseError::fail(format!("engine holds state of unknown listener {id}")));
            };
            let alive: Vec<EventRef> = partial.into_iter().filter(|e| l.alive(e, self.now)).collect();
            if !alive.is_empty() {
                live.insert((id, key), alive);
            }
        }
        prop_assert_eq!(live, self.model.live(self.now), "partial state at {}", self.now);
        Ok(())
    }

    /// All partial state the engine holds, keys with an empty partial left out.
    fn engine_state(&self) -> BTreeMap<(Uuid, CorrelationKey), Partial> {
        let mut state = BTreeMap::new();
        for l in &self.model.listeners {
            for (key, partial) in self.engine.partials(l.id).into_iter().flatten() {
                if !partial.is_empty() {
                    state.insert((l.id, key.clone()), partial.clone());
                }
            }
        }
        state
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn engine_agrees_with_the_model(
        listeners in proptest::collection::vec((select(&NAMESPACES[..]), spec_strategy()), 1..=8),
        steps in proptest::collection::vec(step_strategy(), 1..=40),
    ) {
        let mut run = Run::new();
        for (namespace, spec) in listeners {
            run.register(namespace, spec);
        }
        for step in &steps {
            run.step(step)?;
        }
    }
}

#[path = "model/replay.rs"]
mod replay;

// The model itself: its glob matcher against the cases the engine's tests pin down.
#[test]
fn model_glob() {
    let cases = [
        ("eu", "eu", true),
        ("eu", "eu-west", false),
        ("eu*", "eu-west", true),
        ("*west", "eu-west", true),
        ("*", "", true),
        ("orders/*", "orders/1/2", true),
        ("*/2", "orders/2", true),
        ("e?", "eu", true),
        ("e?", "e", false),
        ("?", "10", false),
        ("EU", "eu", false),
    ];
    for (pattern, value, want) in cases {
        assert_eq!(glob(pattern, value), want, "{pattern:?} on {value:?}");
    }
}
