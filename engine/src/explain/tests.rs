use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::*;
use crate::event::{AttrValue, TraceContext};
use crate::listener::{FilterSet, Listener, ListenerKind, ListenerSpec, Policy};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(s)
}

fn event(seq: u64, event_type: &str, ext: &[(&str, &str)]) -> Event {
    Event {
        namespace: "ns".into(),
        sequence: seq,
        id: format!("e{seq}"),
        source: "/test".into(),
        specversion: "1.0".into(),
        event_type: event_type.into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: ext.iter().map(|(k, v)| (k.to_string(), AttrValue::String(v.to_string()))).collect(),
        data: None,
        received_at: secs(seq as i64),
        trace: TraceContext::default(),
    }
}

fn subject(mut e: Event, s: &str) -> Event {
    e.subject = Some(s.into());
    e
}

fn json(mut e: Event, data: &str) -> Event {
    e.datacontenttype = Some("application/json".into());
    e.data = Some(crate::event::Data::Text(data.into()));
    e
}

fn listener(kind: ListenerKind, condition: Condition, types: &[&str]) -> Listener {
    Listener {
        id: Uuid::from_u128(7),
        namespace: "ns".into(),
        order: 1,
        spec: ListenerSpec {
            kind,
            target: "t".into(),
            condition,
            types: types.iter().map(|t| t.to_string()).collect(),
            filters: Vec::new(),
            lifespan: None,
            correlate_by: Vec::new(),
            policy: None,
            deadline: None,
        },
        created_at: t0(),
        trace: TraceContext::default(),
        request_id: None,
        status: ListenerStatus::Active,
    }
}

fn filter(event_type: &str, clauses: &[(&str, &str)], condition: Option<&str>) -> FilterSet {
    FilterSet {
        event_type: event_type.into(),
        attributes: clauses.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        condition: condition.map(str::to_owned),
    }
}

/// Walks the events and returns each one's reason.
fn explain(l: Listener, walk: Walk, events: &[Event]) -> Vec<Reason> {
    let mut x = Explainer::new(CompiledListener::compile(l).expect("valid listener"), walk);
    events.iter().map(|e| x.step(e).reason).collect()
}

fn key(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn one() -> Listener {
    listener(ListenerKind::Start, Condition::One, &["order.created"])
}

fn all_orders() -> Listener {
    let mut l = listener(ListenerKind::Start, Condition::All, &["order.created", "shipment.sent"]);
    l.spec.correlate_by = vec!["orderid".into()];
    l.spec.policy = Some(Policy::First);
    l
}

#[test]
fn every_reason_is_exact() {
    let fire = |l: &Listener, e: &Event| {
        let mut x = Explainer::new(CompiledListener::compile(l.clone()).unwrap(), Walk::Replay);
        match x.step(e).reason {
            Reason::Fired { fire_id, .. } => fire_id,
            other => panic!("expected a fire, got {other:?}"),
        }
    };
    let mut eu = one();
    eu.spec.filters = vec![filter("order.created", &[("subject", "eu/*")], None)];
    let mut cond = one();
    cond.spec.filters = vec![filter("order.created", &[], Some("data.amount >= 100"))];
    let mut before = one();
    before.created_at = secs(10);
    let mut deadline = listener(ListenerKind::Wait, Condition::One, &["order.created"]);
    deadline.spec.deadline = Some(secs(5));
    let fired_at = Uuid::from_u128(99);
    let mut finished = listener(ListenerKind::Wait, Condition::One, &["order.created"]);
    finished.status = ListenerStatus::Fired { fire_id: fired_at, at: secs(2) };
    let created = event(1, "order.created", &[]);
    let cases: Vec<(&str, Listener, Walk, Vec<Event>, Reason)> = vec![
        (
            "type not listed",
            one(),
            Walk::Explain,
            vec![event(1, "order.paid", &[])],
            Reason::TypeNotListed { event_type: "order.paid".into() },
        ),
        (
            "namespace mismatch",
            one(),
            Walk::Explain,
            vec![Event { namespace: "other".into(), ..event(1, "order.created", &[]) }],
            Reason::NamespaceMismatch { listener: "ns".into(), event: "other".into() },
        ),
        (
            "clause",
            eu.clone(),
            Walk::Explain,
            vec![subject(event(1, "order.created", &[]), "us/7")],
            Reason::Filtered {
                failures: vec![FilterFailure {
                    set: 0,
                    failure: SetFailure::Clause {
                        attribute: "subject".into(),
                        pattern: "eu/*".into(),
                        value: Some("us/7".into()),
                    },
                }],
            },
        ),
        (
            "clause on a missing attribute",
            eu,
            Walk::Explain,
            vec![event(1, "order.created", &[])],
            Reason::Filtered {
                failures: vec![FilterFailure {
                    set: 0,
                    failure: SetFailure::Clause { attribute: "subject".into(), pattern: "eu/*".into(), value: None },
                }],
            },
        ),
        (
            "condition false",
            cond.clone(),
            Walk::Explain,
            vec![json(event(1, "order.created", &[]), r#"{"amount": 5}"#)],
            Reason::Filtered {
                failures: vec![FilterFailure {
                    set: 0,
                    failure: SetFailure::ConditionFalse { condition: "data.amount >= 100".into() },
                }],
            },
        ),
        (
            "condition errored",
            cond,
            Walk::Explain,
            vec![json(event(1, "order.created", &[]), r#"{"total": 5}"#)],
            Reason::Filtered {
                failures: vec![FilterFailure {
                    set: 0,
                    failure: SetFailure::ConditionError {
                        condition: "data.amount >= 100".into(),
                        error: "No such key: amount".into(),
                    },
                }],
            },
        ),
        (
            "correlation missing",
            all_orders(),
            Walk::Explain,
            vec![event(1, "order.created", &[])],
            Reason::CorrelationMissing { attribute: "orderid".into() },
        ),
        (
            "before creation",
            before.clone(),
            Walk::Explain,
            vec![event(1, "order.created", &[])],
            Reason::BeforeCreation { created_at: secs(10) },
        ),
        (
            "a replay ignores the creation",
            before.clone(),
            Walk::Replay,
            vec![created.clone()],
            Reason::Fired { fire_id: fire(&before, &created), key: vec![], event_sequences: vec![1] },
        ),
        (
            "after the deadline",
            deadline.clone(),
            Walk::Explain,
            vec![event(6, "order.created", &[])],
            Reason::AfterDeadline { deadline: secs(5) },
        ),
        (
            "timed out in the walk",
            deadline,
            Walk::Explain,
            vec![event(6, "order.created", &[]), event(7, "order.created", &[])],
            Reason::Consumed {
                status: ListenerStatus::TimedOut {
                    fire_id: Uuid::new_v5(
                        &crate::trigger::FIRE_ID_NAMESPACE,
                        format!("{}/timeout", Uuid::from_u128(7)).as_bytes(),
                    ),
                    at: secs(6),
                },
            },
        ),
        (
            "consumed live",
            finished.clone(),
            Walk::Explain,
            vec![event(3, "order.created", &[])],
            Reason::Consumed { status: ListenerStatus::Fired { fire_id: fired_at, at: secs(2) } },
        ),
        (
            "collected, still waiting",
            all_orders(),
            Walk::Explain,
            vec![event(1, "order.created", &[("orderid", "42")])],
            Reason::Collected { key: key(&[("orderid", "42")]), waiting_for: vec!["shipment.sent".into()] },
        ),
        (
            "policy FIRST keeps the first",
            all_orders(),
            Walk::Explain,
            vec![event(1, "order.created", &[("orderid", "42")]), event(2, "order.created", &[("orderid", "42")])],
            Reason::AlreadyCollected { key: key(&[("orderid", "42")]), kept_sequence: 1 },
        ),
    ];
    for (name, l, walk, events, want) in cases {
        let got = explain(l, walk, &events);
        assert_eq!(got.last(), Some(&want), "{name}: {got:?}");
    }
}

#[test]
fn fired_names_the_engines_fire_id_and_a_wait_is_consumed_after() {
    let mut wait = all_orders();
    wait.spec.kind = ListenerKind::Wait;
    let events = [
        event(1, "order.created", &[("orderid", "42")]),
        event(2, "order.created", &[("orderid", "7")]),
        event(3, "shipment.sent", &[("orderid", "42")]),
        event(4, "shipment.sent", &[("orderid", "7")]),
    ];
    let mut engine = Engine::new();
    engine.insert(CompiledListener::compile(wait.clone()).unwrap(), []);
    let live = engine.evaluate(&events[..3], secs(3));
    assert_eq!(live.actions.len(), 1);
    let fire_id = live.actions[0].fire_id;
    let got = explain(wait, Walk::Explain, &events);
    assert_eq!(
        got,
        [
            Reason::Collected { key: key(&[("orderid", "42")]), waiting_for: vec!["shipment.sent".into()] },
            Reason::Collected { key: key(&[("orderid", "7")]), waiting_for: vec!["shipment.sent".into()] },
            Reason::Fired { fire_id, key: key(&[("orderid", "42")]), event_sequences: vec![1, 3] },
            Reason::Consumed { status: ListenerStatus::Fired { fire_id, at: secs(3) } },
        ]
    );
}

#[test]
fn a_resumed_walk_continues_the_state() {
    let events = [event(1, "order.created", &[("orderid", "42")]), event(2, "shipment.sent", &[("orderid", "42")])];
    let compiled = || CompiledListener::compile(all_orders()).unwrap();
    let mut whole = Explainer::new(compiled(), Walk::Replay);
    let whole: Vec<Reason> = events.iter().map(|e| whole.step(e).reason).collect();
    let mut first = Explainer::new(compiled(), Walk::Replay);
    first.step(&events[0]);
    let state = first.state();
    assert_eq!(state.held(), 1);
    let mut second = Explainer::resume(compiled(), Walk::Replay, state);
    let step = second.step(&events[1]);
    assert_eq!(step.reason, whole[1]);
    assert_eq!(step.fired.map(|a| a.events.len()), Some(2));
    assert_eq!(second.state(), WalkState::default());
}

#[test]
fn messages_read_as_the_issue_says() {
    let cases = [
        (
            Reason::Filtered {
                failures: vec![FilterFailure {
                    set: 1,
                    failure: SetFailure::Clause {
                        attribute: "subject".into(),
                        pattern: "eu/*".into(),
                        value: Some("us/7".into()),
                    },
                }],
            },
            "filter set 1 failed on clause `subject`: pattern `eu/*` vs value `us/7`",
        ),
        (
            Reason::Collected { key: key(&[("orderid", "42")]), waiting_for: vec!["shipment.sent".into()] },
            "collected for key `{orderid: 42}`, still waiting for `shipment.sent`",
        ),
        (Reason::CorrelationMissing { attribute: "orderid".into() }, "correlation attribute `orderid` missing"),
        (
            Reason::Fired { fire_id: Uuid::from_u128(1), key: vec![], event_sequences: vec![1] },
            "fired as fire id 00000000-0000-0000-0000-000000000001",
        ),
    ];
    for (reason, want) in cases {
        assert_eq!(reason.to_string(), want);
    }
}
