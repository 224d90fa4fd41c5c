//! CEL conditions on filter sets, end to end on both backends: a listener with a condition fires
//! only for the events it holds for, whatever the others' data; a bad condition is
//! INVALID_ARGUMENT on `listener.filters[i].condition` with the parser's position; and the
//! conditions that fail at run time reach the store's observer (the server's metric).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use eventbus_client::{CloudEventBuilder, ListenerSpecBuilder, StartPosition, SubscribeOptions, pb};
use eventbus_engine::store::{Fired, Observer, Store, StoreConfig};
use eventbus_engine::{Condition, Data, Event, FilterSet, ListenerKind, ListenerSpec, TraceContext};
use eventbus_tests::{Database, SOURCE, TestServer, event, next_delivery};
use tonic::Code;
use tonic_types::StatusExt;

eventbus_tests::backend_cases!(
    a_condition_fires_only_for_the_matching_event,
    a_bad_condition_is_invalid_argument_naming_the_position,
    runtime_errors_are_counted_and_publish_succeeds,
);

const CONDITION: &str = r#"data.amount >= 100 && subject.startsWith("eu/")"#;

fn payment(id: &str, subject: &str, data: Option<(&str, &str)>) -> pb::CloudEvent {
    let e = CloudEventBuilder::new(SOURCE, "payment.received").id(id).subject(subject);
    match data {
        Some((content_type, text)) => e.data_text(content_type, text).build(),
        None => e.build(),
    }
}

async fn a_condition_fires_only_for_the_matching_event(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let spec =
        ListenerSpecBuilder::start("big-eu-payment").one("payment.received").where_("payment.received", CONDITION);
    let listener = c.register_listener("ns", spec).await.unwrap();
    assert_eq!(listener.spec.unwrap().filters[0].condition, CONDITION, "the condition is kept as registered");
    c.register_listener("ns", ListenerSpecBuilder::start("sentinel").one("sentinel")).await.unwrap();
    let json = "application/json";
    let published = c
        .publish(
            "ns",
            [
                payment("small", "eu/1", Some((json, r#"{"amount": 50}"#))),
                payment("us", "us/2", Some((json, r#"{"amount": 150}"#))),
                payment("no-data", "eu/3", None),
                payment("not-json", "eu/4", Some(("text/plain", r#"{"amount": 150}"#))),
                payment("wrong-type", "eu/5", Some((json, r#"{"amount": "lots"}"#))),
                payment("match", "eu/6", Some((json, r#"{"amount": 150.5, "items": [1, 2]}"#))),
                event("sentinel", "last"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(published.len(), 7, "conditions that fail never fail the publish");
    let mut options = SubscribeOptions::new("ns", "g");
    options.start = StartPosition::Earliest;
    let mut sub = c.subscribe(options).await.unwrap();
    let first = next_delivery(&mut sub).await;
    let n = first.notification();
    assert_eq!((n.workflow_id.as_str(), n.events.len()), ("big-eu-payment", 1));
    assert_eq!(n.events[0].id, "match");
    first.ack().await.unwrap();
    let second = next_delivery(&mut sub).await;
    assert_eq!(second.notification().workflow_id, "sentinel", "nothing fired between the match and the sentinel");
}

async fn a_bad_condition_is_invalid_argument_naming_the_position(db: Database) {
    let s = TestServer::start(&db).await;
    let cases = [
        ("data.amount >=", "invalid expression at line 1, column 15: Syntax error: "),
        ("data.items.exists(i, i.sku == subject)", "line 1, column 31: a macro's body sees only its own variables"),
        (&*format!("true{}", " ".repeat(4093)), "must be at most 4096 bytes, got 4097"),
    ];
    for (condition, want) in cases {
        let spec =
            ListenerSpecBuilder::start("wf").any(["a", "b"]).filter("a", [("region", "eu")]).where_("b", condition);
        let status = s.client.register_listener("ns", spec).await.unwrap_err().status().unwrap().clone();
        assert_eq!(status.code(), Code::InvalidArgument, "{condition}");
        let violations = status.get_details_bad_request().unwrap().field_violations;
        assert_eq!(violations.len(), 1, "{condition}: {violations:?}");
        assert_eq!(violations[0].field, "listener.filters[1].condition");
        assert!(violations[0].description.starts_with(want), "{condition}: {}", violations[0].description);
    }
    assert!(s.client.list_listeners("ns", &Default::default()).await.unwrap().is_empty());
}

/// Counts what the store reports, as the server's metrics do.
#[derive(Debug, Default)]
struct ConditionErrors(AtomicU64);

impl Observer for ConditionErrors {
    fn fired(&self, _: &[Fired]) {}
    fn acked(&self, _: &str, _: &str, _: &[chrono::DateTime<Utc>]) {}
    fn condition_errors(&self, count: u64) {
        self.0.fetch_add(count, Ordering::Relaxed);
    }
}

fn stored_event(id: &str, data: &str) -> Event {
    Event {
        namespace: String::new(),
        sequence: 0,
        id: id.into(),
        source: SOURCE.into(),
        specversion: "1.0".into(),
        event_type: "payment.received".into(),
        subject: Some("eu/1".into()),
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::new(),
        data: Some(Data::Text(data.into())),
        received_at: Utc::now(),
        trace: TraceContext::default(),
    }
}

async fn runtime_errors_are_counted_and_publish_succeeds(db: Database) {
    let errors = Arc::new(ConditionErrors::default());
    let mut config = StoreConfig::new(&db.url);
    config.observer = Some(errors.clone());
    let store = Store::open(config).await.unwrap();
    let spec = ListenerSpec {
        kind: ListenerKind::Start,
        target: "wf".into(),
        condition: Condition::One,
        types: vec!["payment.received".into()],
        filters: vec![FilterSet {
            event_type: "payment.received".into(),
            attributes: BTreeMap::new(),
            condition: Some(CONDITION.into()),
        }],
        lifespan: None,
        correlate_by: vec![],
        policy: None,
        deadline: None,
    };
    store.register_listener("ns", spec, None, TraceContext::default()).await.unwrap();
    let batch = vec![
        stored_event("ok", r#"{"amount": 150}"#),
        stored_event("missing", r#"{"total": 150}"#),
        stored_event("string", r#"{"amount": "lots"}"#),
    ];
    let published = store.publish("ns", batch).await.unwrap();
    assert_eq!(published.len(), 3);
    assert_eq!(errors.0.load(Ordering::Relaxed), 2, "the missing field and the string amount");
    store.publish("ns", vec![stored_event("small", r#"{"amount": 1}"#)]).await.unwrap();
    assert_eq!(errors.0.load(Ordering::Relaxed), 2, "false is not an error");
}
