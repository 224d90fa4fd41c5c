use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::error::Error;
use crate::event::{AttrValue, Event, TraceContext};
use crate::listener::{
    CompiledListener, Condition, FilterSet, Listener, ListenerKind, ListenerSpec, ListenerStatus, Policy,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(s)
}

/// Builds events tersely: `ev("a").id("1").ext("k", "v")`.
#[derive(Clone)]
struct Ev(Event);

fn ev(event_type: &str) -> Ev {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ev(Event {
        namespace: "ns".into(),
        sequence: n,
        id: format!("e{n}"),
        source: "/test".into(),
        specversion: "1.0".into(),
        event_type: event_type.into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::new(),
        data: None,
        received_at: t0(),
        trace: TraceContext { traceparent: format!("00-{n:032x}-{n:016x}-01"), tracestate: String::new() },
    })
}

impl Ev {
    fn id(mut self, id: &str) -> Self {
        self.0.id = id.into();
        self
    }
    fn ns(mut self, ns: &str) -> Self {
        self.0.namespace = ns.into();
        self
    }
    fn source(mut self, s: &str) -> Self {
        self.0.source = s.into();
        self
    }
    fn subject(mut self, s: &str) -> Self {
        self.0.subject = Some(s.into());
        self
    }
    fn at(mut self, t: DateTime<Utc>) -> Self {
        self.0.received_at = t;
        self
    }
    fn time(mut self, t: DateTime<Utc>) -> Self {
        self.0.time = Some(t);
        self
    }
    fn ext(mut self, k: &str, v: &str) -> Self {
        self.0.extensions.insert(k.into(), AttrValue::String(v.into()));
        self
    }
    fn ext_value(mut self, k: &str, v: AttrValue) -> Self {
        self.0.extensions.insert(k.into(), v);
        self
    }
}

fn spec(kind: ListenerKind, condition: Condition, types: &[&str]) -> ListenerSpec {
    ListenerSpec {
        kind,
        target: match kind {
            ListenerKind::Start => "wf".into(),
            ListenerKind::Wait => "inst".into(),
        },
        condition,
        types: types.iter().map(|s| s.to_string()).collect(),
        filters: Vec::new(),
        lifespan: None,
        correlate_by: Vec::new(),
        policy: None,
        deadline: None,
    }
}

fn filter(event_type: &str, clauses: &[(&str, &str)]) -> FilterSet {
    FilterSet {
        event_type: event_type.into(),
        attributes: clauses.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        condition: None,
    }
}

struct Harness {
    engine: Engine,
    next_order: i64,
}

impl Harness {
    fn new() -> Self {
        Self { engine: Engine::new(), next_order: 1 }
    }

    fn add_in(&mut self, namespace: &str, spec: ListenerSpec) -> Uuid {
        let id = Uuid::from_u128(self.next_order as u128);
        let listener = Listener {
            id,
            namespace: namespace.into(),
            order: self.next_order,
            spec,
            created_at: t0(),
            trace: TraceContext { traceparent: "00-registration-01".into(), tracestate: String::new() },
            request_id: None,
            status: ListenerStatus::Active,
        };
        self.next_order += 1;
        self.engine.insert(CompiledListener::compile(listener).expect("valid listener"), []);
        id
    }

    fn add(&mut self, spec: ListenerSpec) -> Uuid {
        self.add_in("ns", spec)
    }

    fn eval(&mut self, events: &[Ev]) -> Vec<Action> {
        let events: Vec<Event> = events.iter().map(|e| e.0.clone()).collect();
        self.engine.evaluate(&events, events.last().map_or(t0(), |e| e.received_at)).actions
    }

    fn eval_at(&mut self, events: &[Ev], now: DateTime<Utc>) -> Outcome {
        let events: Vec<Event> = events.iter().map(|e| e.0.clone()).collect();
        self.engine.evaluate(&events, now)
    }
}

fn ids(actions: &[Action]) -> Vec<Vec<String>> {
    actions.iter().map(|a| a.events.iter().map(|e| e.id.clone()).collect()).collect()
}

fn fired_listeners(actions: &[Action]) -> Vec<Uuid> {
    actions.iter().map(|a| a.listener_id).collect()
}

// Rule 1: namespace and exact, case-sensitive type.
#[test]
fn reaches_only_same_namespace_and_exact_type() {
    let mut h = Harness::new();
    let l = h.add(spec(ListenerKind::Start, Condition::One, &["order.created"]));
    let cases = [
        (ev("order.created"), 1),
        (ev("order.created").ns("other"), 0),
        (ev("Order.Created"), 0),
        (ev("order.created.v2"), 0),
        (ev("order"), 0),
    ];
    for (e, want) in cases {
        let actions = h.eval(std::slice::from_ref(&e));
        assert_eq!(actions.len(), want, "{:?}", e.0.event_type);
        if want == 1 {
            assert_eq!(actions[0].listener_id, l);
            assert_eq!(actions[0].kind, ActionKind::Start { workflow_id: "wf".into() });
        }
    }
}

// Rule 2: filters.
#[test]
fn filter_semantics() {
    let t = t0() + chrono::Duration::milliseconds(250);
    let cases: Vec<(&str, Vec<FilterSet>, Ev, bool)> = vec![
        ("no set passes", vec![], ev("a"), true),
        ("exact match", vec![filter("a", &[("region", "eu")])], ev("a").ext("region", "eu"), true),
        ("exact is not prefix", vec![filter("a", &[("region", "eu")])], ev("a").ext("region", "eu-west"), false),
        ("glob star", vec![filter("a", &[("region", "eu-*")])], ev("a").ext("region", "eu-west"), true),
        (
            "star crosses slash",
            vec![filter("a", &[("source", "https://acme.io/*")])],
            ev("a").source("https://acme.io/a/b"),
            true,
        ),
        ("values case-sensitive", vec![filter("a", &[("region", "EU")])], ev("a").ext("region", "eu"), false),
        ("names case-insensitive", vec![filter("a", &[("Region", "eu")])], ev("a").ext("region", "eu"), true),
        ("context name case-insensitive", vec![filter("a", &[("SUBJECT", "x")])], ev("a").subject("x"), true),
        ("missing attribute fails even with star", vec![filter("a", &[("region", "*")])], ev("a"), false),
        ("missing subject fails even with star", vec![filter("a", &[("subject", "*")])], ev("a"), false),
        (
            "all clauses of a set must match",
            vec![filter("a", &[("region", "eu"), ("tier", "gold")])],
            ev("a").ext("region", "eu").ext("tier", "silver"),
            false,
        ),
        (
            "any set may match",
            vec![filter("a", &[("region", "us")]), filter("a", &[("region", "eu")])],
            ev("a").ext("region", "eu"),
            true,
        ),
        (
            "any set may match, reversed",
            vec![filter("a", &[("region", "eu")]), filter("a", &[("region", "us")])],
            ev("a").ext("region", "eu"),
            true,
        ),
        ("filter sees id", vec![filter("a", &[("id", "order-*")])], ev("a").id("order-7"), true),
        ("filter sees subject", vec![filter("a", &[("subject", "orders/42")])], ev("a").subject("orders/42"), true),
        ("filter sees time", vec![filter("a", &[("time", "2026-11-22T10:00:00.25Z")])], ev("a").time(t), true),
        ("filter sees type", vec![filter("a", &[("type", "a")])], ev("a"), true),
        ("filter sees specversion", vec![filter("a", &[("specversion", "1.0")])], ev("a"), true),
        (
            "boolean canonical",
            vec![filter("a", &[("paid", "true")])],
            ev("a").ext_value("paid", AttrValue::Boolean(true)),
            true,
        ),
        (
            "integer canonical",
            vec![filter("a", &[("qty", "4*")])],
            ev("a").ext_value("qty", AttrValue::Integer(42)),
            true,
        ),
        (
            "bytes canonical",
            vec![filter("a", &[("blob", "AAE=")])],
            ev("a").ext_value("blob", AttrValue::Bytes(vec![0, 1])),
            true,
        ),
        (
            "timestamp ext canonical",
            vec![filter("a", &[("due", "2026-11-22T10:00:00Z")])],
            ev("a").ext_value("due", AttrValue::Timestamp(t0())),
            true,
        ),
        ("question mark", vec![filter("a", &[("region", "e?")])], ev("a").ext("region", "eu"), true),
        ("character class", vec![filter("a", &[("region", "[ab]u")])], ev("a").ext("region", "eu"), false),
    ];
    for (name, filters, event, want) in cases {
        let mut h = Harness::new();
        let mut s = spec(ListenerKind::Start, Condition::One, &["a"]);
        s.filters = filters;
        h.add(s);
        assert_eq!(h.eval(&[event]).len(), usize::from(want), "{name}");
    }
}

#[test]
fn filter_of_one_type_does_not_constrain_another() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::Any, &["a", "b"]);
    s.filters = vec![filter("a", &[("region", "eu")])];
    h.add(s);
    assert_eq!(h.eval(&[ev("a").ext("region", "us")]).len(), 0);
    assert_eq!(h.eval(&[ev("b").ext("region", "us")]).len(), 1);
}

// Rule 3 and the Direktiv defect: an OR listener fired once per type occurrence in a batch.
#[test]
fn any_start_fires_once_per_matching_event_in_a_batch() {
    let mut h = Harness::new();
    h.add(spec(ListenerKind::Start, Condition::Any, &["a", "b"]));
    let actions = h.eval(&[ev("a").id("1"), ev("b").id("2")]);
    assert_eq!(ids(&actions), vec![vec!["1"], vec!["2"]]);
}

#[test]
fn batch_is_evaluated_event_by_event_and_listeners_in_creation_order() {
    let mut h = Harness::new();
    let l1 = h.add(spec(ListenerKind::Start, Condition::One, &["a"]));
    let l2 = h.add(spec(ListenerKind::Start, Condition::Any, &["b", "a"]));
    let l3 = h.add(spec(ListenerKind::Start, Condition::One, &["b"]));
    let actions = h.eval(&[ev("b").id("1"), ev("a").id("2")]);
    assert_eq!(fired_listeners(&actions), vec![l2, l3, l1, l2]);
    assert_eq!(ids(&actions), vec![vec!["1"], vec!["1"], vec!["2"], vec!["2"]]);
}

#[test]
fn same_event_twice_in_a_batch_is_evaluated_once() {
    let mut h = Harness::new();
    h.add(spec(ListenerKind::Start, Condition::One, &["a"]));
    assert_eq!(h.eval(&[ev("a").id("1"), ev("a").id("1")]).len(), 1);
}

// Rule 4.
#[test]
fn any_wait_fires_on_first_match_and_is_consumed() {
    let mut h = Harness::new();
    let l = h.add(spec(ListenerKind::Wait, Condition::Any, &["a", "b"]));
    let out = h.eval_at(&[ev("b").id("1"), ev("a").id("2")], t0());
    assert_eq!(ids(&out.actions), vec![vec!["1"]]);
    assert_eq!(out.actions[0].kind, ActionKind::Wake { instance_id: "inst".into() });
    assert_eq!(out.finished.len(), 1);
    assert!(
        matches!(out.finished[0], (id, ListenerStatus::Fired { fire_id, .. }) if id == l && fire_id == out.actions[0].fire_id)
    );
    assert!(h.eval(&[ev("a")]).is_empty(), "consumed listener must not fire again");
    assert!(!h.engine.contains(l));
}

#[test]
fn wait_wakes_only_its_own_instance() {
    let mut h = Harness::new();
    let mut s1 = spec(ListenerKind::Wait, Condition::One, &["a"]);
    s1.target = "i1".into();
    s1.filters = vec![filter("a", &[("subject", "i1")])];
    let mut s2 = s1.clone();
    s2.target = "i2".into();
    s2.filters = vec![filter("a", &[("subject", "i2")])];
    h.add(s1);
    h.add(s2);
    let actions = h.eval(&[ev("a").subject("i2")]);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].kind, ActionKind::Wake { instance_id: "i2".into() });
}

// Rule 5: ALL.
#[test]
fn all_completes_in_any_order_and_resets_after_firing() {
    for order in [["a", "b", "c"], ["c", "a", "b"], ["b", "c", "a"]] {
        let mut h = Harness::new();
        h.add(spec(ListenerKind::Start, Condition::All, &["a", "b", "c"]));
        let batch: Vec<Ev> = order.iter().map(|t| ev(t).id(t)).collect();
        let actions = h.eval(&batch);
        assert_eq!(ids(&actions), vec![order.iter().map(|s| s.to_string()).collect::<Vec<_>>()], "{order:?}");
        // Reset: a second full set fires again; a partial one does not.
        assert!(h.eval(&[ev("a"), ev("b")]).is_empty());
        assert_eq!(h.eval(&[ev("c")]).len(), 1);
    }
}

#[test]
fn all_first_policy_ignores_later_events_of_a_collected_type() {
    let mut h = Harness::new();
    h.add(spec(ListenerKind::Start, Condition::All, &["a", "b"]));
    let actions = h.eval(&[ev("a").id("a1"), ev("a").id("a2"), ev("b").id("b1")]);
    assert_eq!(ids(&actions), vec![vec!["a1", "b1"]]);
}

#[test]
fn all_latest_policy_replaces_and_orders_by_arrival() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["a", "b", "c"]);
    s.policy = Some(Policy::Latest);
    h.add(s);
    let actions = h.eval(&[ev("a").id("a1"), ev("b").id("b1"), ev("a").id("a2"), ev("c").id("c1")]);
    assert_eq!(ids(&actions), vec![vec!["b1", "a2", "c1"]]);
}

#[test]
fn all_wait_is_consumed_after_firing() {
    let mut h = Harness::new();
    h.add(spec(ListenerKind::Wait, Condition::All, &["a", "b"]));
    let actions = h.eval(&[ev("a"), ev("b"), ev("a"), ev("b")]);
    assert_eq!(actions.len(), 1);
    assert!(matches!(actions[0].kind, ActionKind::Wake { .. }));
}

#[test]
fn all_lifespan_drops_old_events_before_collecting() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["a", "b"]);
    s.lifespan = Some(Duration::from_secs(60));
    h.add(s);
    assert!(h.eval(&[ev("a").id("old").at(secs(0))]).is_empty());
    // Exactly at received_at + lifespan the event is gone.
    assert!(h.eval(&[ev("b").id("b1").at(secs(60))]).is_empty());
    let actions = h.eval(&[ev("a").id("new").at(secs(61))]);
    assert_eq!(ids(&actions), vec![vec!["b1", "new"]]);
}

#[test]
fn all_zero_lifespan_means_forever() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["a", "b"]);
    s.lifespan = Some(Duration::ZERO);
    h.add(s);
    h.eval(&[ev("a").at(secs(0))]);
    assert_eq!(h.eval(&[ev("b").at(secs(1_000_000))]).len(), 1);
}

#[test]
fn prune_drops_expired_partials() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["a", "b"]);
    s.lifespan = Some(Duration::from_secs(10));
    s.correlate_by = vec!["orderid".into()];
    let l = h.add(s);
    h.eval(&[ev("a").ext("orderid", "1").at(secs(0)), ev("a").ext("orderid", "2").at(secs(5))]);
    let out = h.engine.prune(secs(10));
    assert_eq!(out.partials.len(), 1);
    assert_eq!(out.partials.get(&(l, vec!["1".to_string()])), Some(&Vec::new()));
    assert_eq!(h.engine.partials(l).map(|p| p.len()), Some(1));
}

// Rule 6: correlation.
#[test]
fn correlate_by_keeps_partial_state_per_value_tuple() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["payment.received", "shipment.sent"]);
    s.correlate_by = vec!["orderid".into(), "subject".into()];
    h.add(s);
    let actions = h.eval(&[
        ev("payment.received").id("p1").ext("orderid", "1").subject("x"),
        ev("payment.received").id("p2").ext("orderid", "2").subject("x"),
        ev("shipment.sent").id("s0").ext("orderid", "1"), // lacks subject: no match
        ev("shipment.sent").id("s2").ext("orderid", "2").subject("x"),
        ev("shipment.sent").id("s1").ext("orderid", "1").subject("y"), // other tuple
    ]);
    assert_eq!(ids(&actions), vec![vec!["p2", "s2"]]);
    assert_eq!(actions[0].correlation, vec![("orderid".into(), "2".into()), ("subject".into(), "x".into())]);
    let actions = h.eval(&[ev("shipment.sent").id("s1b").ext("orderid", "1").subject("x")]);
    assert_eq!(ids(&actions), vec![vec!["p1", "s1b"]]);
}

#[test]
fn correlated_wait_carries_correlation_values() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Wait, Condition::All, &["a", "b"]);
    s.correlate_by = vec!["orderid".into()];
    h.add(s);
    let actions = h.eval(&[ev("a").ext("orderid", "42"), ev("b").ext("orderid", "42")]);
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].correlation, vec![("orderid".into(), "42".into())]);
}

#[test]
fn thousands_of_orders_in_flight() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Start, Condition::All, &["payment.received", "shipment.sent"]);
    s.correlate_by = vec!["orderid".into()];
    let l = h.add(s);
    let pay: Vec<Ev> = (0..5000).map(|i| ev("payment.received").ext("orderid", &i.to_string())).collect();
    assert!(h.eval(&pay).is_empty());
    let ship: Vec<Ev> = (0..5000).rev().map(|i| ev("shipment.sent").ext("orderid", &i.to_string())).collect();
    let actions = h.eval(&ship);
    assert_eq!(actions.len(), 5000);
    assert_eq!(actions[0].correlation, vec![("orderid".into(), "4999".into())]);
    assert_eq!(h.engine.partials(l).map(|p| p.len()), Some(0));
}

// Rule 7 and the deadline.
#[test]
fn expire_times_out_once_and_consumes() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Wait, Condition::One, &["a"]);
    s.deadline = Some(secs(30));
    let l = h.add(s);
    assert!(h.engine.expire(secs(29)).is_empty());
    let out = h.engine.expire(secs(30));
    assert_eq!(out.actions.len(), 1);
    let a = &out.actions[0];
    assert_eq!(a.kind, ActionKind::Timeout { instance_id: "inst".into() });
    assert_eq!(a.listener_id, l);
    assert_eq!(a.trace.traceparent, "00-registration-01", "a timeout continues the registration's trace");
    assert!(matches!(out.finished[..], [(id, ListenerStatus::TimedOut { .. })] if id == l));
    assert!(h.engine.expire(secs(60)).is_empty());
    assert!(h.eval(&[ev("a").at(secs(10))]).is_empty());
}

#[test]
fn event_at_or_after_deadline_times_out_instead_of_waking() {
    for (at, want_wake) in [(secs(29), true), (secs(30), false), (secs(31), false)] {
        let mut h = Harness::new();
        let mut s = spec(ListenerKind::Wait, Condition::One, &["a"]);
        s.deadline = Some(secs(30));
        h.add(s);
        let actions = h.eval(&[ev("a").at(at)]);
        assert_eq!(actions.len(), 1);
        assert_eq!(matches!(actions[0].kind, ActionKind::Wake { .. }), want_wake, "{at}");
    }
}

#[test]
fn late_event_that_would_not_match_leaves_the_deadline_to_the_sweeper() {
    let mut h = Harness::new();
    let mut s = spec(ListenerKind::Wait, Condition::One, &["a"]);
    s.deadline = Some(secs(30));
    s.filters = vec![filter("a", &[("subject", "mine")])];
    let l = h.add(s);
    assert!(h.eval(&[ev("a").subject("other").at(secs(31))]).is_empty());
    assert!(h.engine.contains(l));
    let actions = h.eval(&[ev("a").subject("mine").at(secs(32))]);
    assert_eq!(actions.len(), 1);
    assert!(matches!(actions[0].kind, ActionKind::Timeout { .. }));
}

#[test]
fn exact_filters_are_indexed_without_changing_order() {
    let mut h = Harness::new();
    let exact = |value: &str| {
        let mut s = spec(ListenerKind::Start, Condition::One, &["a"]);
        s.filters = vec![filter("a", &[("customer", value)]), filter("a", &[("customer", "vip"), ("tier", "gold")])];
        s
    };
    let l1 = h.add(exact("c1"));
    let scan = h.add(spec(ListenerKind::Start, Condition::One, &["a"]));
    let l3 = h.add(exact("c2"));
    let l4 = h.add(exact("c1"));
    let actions = h.eval(&[ev("a").ext("customer", "c1")]);
    assert_eq!(fired_listeners(&actions), vec![l1, scan, l4]);
    let actions = h.eval(&[ev("a").ext("customer", "vip").ext("tier", "gold")]);
    assert_eq!(fired_listeners(&actions), vec![l1, scan, l3, l4]);
    assert!(h.engine.remove(l1));
    let actions = h.eval(&[ev("a").ext("customer", "c1")]);
    assert_eq!(fired_listeners(&actions), vec![scan, l4]);
}

// Rule 8.
#[test]
fn same_event_is_never_collected_twice() {
    let mut h = Harness::new();
    h.add(spec(ListenerKind::Start, Condition::All, &["a", "b"]));
    let mut s2 = spec(ListenerKind::Start, Condition::All, &["a", "b"]);
    s2.policy = Some(Policy::Latest);
    h.add(s2);
    h.eval(&[ev("a").id("x")]);
    h.eval(&[ev("a").id("x")]);
    let actions = h.eval(&[ev("b").id("y")]);
    assert_eq!(ids(&actions), vec![vec!["x", "y"], vec!["x", "y"]]);
}

// Rule 9.
#[test]
fn events_are_never_consumed() {
    let mut h = Harness::new();
    let a = h.add(spec(ListenerKind::Start, Condition::One, &["a"]));
    let b = h.add(spec(ListenerKind::Wait, Condition::One, &["a"]));
    let c = h.add(spec(ListenerKind::Start, Condition::All, &["a", "z"]));
    let actions = h.eval(&[ev("a")]);
    assert_eq!(fired_listeners(&actions), vec![a, b]);
    assert_eq!(h.engine.partials(c).map(|p| p.len()), Some(1));
}

// Rule 11.
#[test]
fn fire_ids_are_deterministic_and_actions_carry_all_traces() {
    let run = || {
        let mut h = Harness::new();
        h.add(spec(ListenerKind::Start, Condition::All, &["a", "b"]));
        let events = [ev("a").id("1"), ev("b").id("2")];
        (h.eval(&events), events)
    };
    let (first, events) = run();
    let (second, _) = run();
    assert_eq!(first[0].fire_id, second[0].fire_id);
    let traces: Vec<&TraceContext> = first[0].events.iter().map(|e| &e.trace).collect();
    assert_eq!(traces, vec![&events[0].0.trace, &events[1].0.trace]);
    assert_eq!(first[0].trace, events[1].0.trace, "the completing event's context is the action's");
}

#[test]
fn outcome_reports_final_partial_state() {
    let mut h = Harness::new();
    let l = h.add(spec(ListenerKind::Start, Condition::All, &["a", "b"]));
    let out = h.eval_at(&[ev("a").id("1")], t0());
    assert_eq!(out.partials.get(&(l, vec![])).map(|p| p.len()), Some(1));
    let out = h.eval_at(&[ev("b").id("2")], t0());
    assert_eq!(out.partials.get(&(l, vec![])), Some(&Vec::new()), "fired set is cleared");
}

// Rule 10 and the Direktiv defects on registration.
#[test]
fn validation_names_the_field() {
    let base = || spec(ListenerKind::Start, Condition::All, &["a", "b"]);
    let cases: Vec<(&str, ListenerSpec, &str)> = vec![
        ("duplicate types in ALL", ListenerSpec { types: vec!["a".into(), "a".into()], ..base() }, "types[1]"),
        ("no types", ListenerSpec { types: vec![], ..base() }, "types"),
        ("too many types", ListenerSpec { types: (0..65).map(|i| i.to_string()).collect(), ..base() }, "types"),
        ("empty type", ListenerSpec { types: vec!["a".into(), "".into()], ..base() }, "types[1]"),
        ("ONE with two types", ListenerSpec { condition: Condition::One, ..base() }, "types"),
        ("empty workflow", ListenerSpec { target: "".into(), ..base() }, "workflow_id"),
        ("empty wait target", ListenerSpec { kind: ListenerKind::Wait, target: "".into(), ..base() }, "instance_id"),
        ("long target", ListenerSpec { target: "x".repeat(257), ..base() }, "workflow_id"),
        (
            "lifespan with ANY",
            ListenerSpec { condition: Condition::Any, lifespan: Some(Duration::from_secs(1)), ..base() },
            "lifespan",
        ),
        (
            "correlate with ANY",
            ListenerSpec { condition: Condition::Any, correlate_by: vec!["x".into()], ..base() },
            "correlate_by",
        ),
        (
            "policy with ANY",
            ListenerSpec { condition: Condition::Any, policy: Some(Policy::First), ..base() },
            "policy",
        ),
        ("deadline with START", ListenerSpec { deadline: Some(t0()), ..base() }, "deadline"),
        (
            "filter on unlisted type",
            ListenerSpec { filters: vec![filter("c", &[("x", "y")])], ..base() },
            "filters[0].type",
        ),
        ("bad glob", ListenerSpec { filters: vec![filter("a", &[("x", "[")])], ..base() }, "filters[0].attributes[x]"),
        ("empty filter set", ListenerSpec { filters: vec![filter("a", &[])], ..base() }, "filters[0].attributes"),
        (
            "too many sets",
            ListenerSpec { filters: (0..33).map(|_| filter("a", &[("x", "y")])).collect(), ..base() },
            "filters[32]",
        ),
        (
            "duplicate correlate_by",
            ListenerSpec { correlate_by: vec!["x".into(), "X".into()], ..base() },
            "correlate_by[1]",
        ),
    ];
    for (name, spec, field) in cases {
        match spec.validate() {
            Err(Error::InvalidArgument(v)) => {
                assert!(v.iter().any(|v| v.field == field), "{name}: want field {field}, got {v:?}")
            }
            other => panic!("{name}: want invalid argument, got {other:?}"),
        }
    }
    assert!(base().validate().is_ok());
    assert!(
        ListenerSpec { filters: (0..32).map(|_| filter("a", &[("x", "y")])).collect(), ..base() }.validate().is_ok()
    );
}

#[test]
fn removed_listener_no_longer_fires() {
    let mut h = Harness::new();
    let l = h.add(spec(ListenerKind::Start, Condition::One, &["a"]));
    assert!(h.engine.remove(l));
    assert!(!h.engine.remove(l));
    assert!(h.eval(&[ev("a")]).is_empty());
    assert!(h.engine.is_empty());
}

mod conditions;
