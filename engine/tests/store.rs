//! The store suite: every case is written once and runs on SQLite and on a real Postgres
//! (`EVENTBUS_TEST_DATABASE_URL`, provided by tests/run.sh; its absence fails the Postgres
//! half rather than skipping it). Each case gets a fresh database from the engine's testkit (a
//! temp file, or a schema of its own, dropped after the case).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use eventbus_engine::store::{
    Backend, Consumer, ConsumerOptions, ConsumerStats, Delivery, Durability, EventKey, EventQuery, EventRange,
    GroupBacklog, GroupSpec, ListenerQuery, ListenerSelector, NotificationKind, Position, ReplayMode, ReplayQuery,
    SeekPosition, StartPosition, Store, StoreConfig, trigger_span_id,
};
use eventbus_engine::testkit::TestDatabase;
use eventbus_engine::{
    AttrValue, Condition, Data, ErrorKind, Event, FilterSet, Listener, ListenerKind, ListenerSpec, ListenerStatus,
    TraceContext,
};

/// A test database under the names the cases use: `url`, and `_dir`, the directory of the
/// SQLite file (SQLite only). It keeps the testkit's database, and so its schema, alive.
struct Db {
    url: String,
    _dir: Option<Arc<tempfile::TempDir>>,
    _database: TestDatabase,
}

impl From<TestDatabase> for Db {
    fn from(database: TestDatabase) -> Self {
        Self { url: database.url.clone(), _dir: database.dir.clone(), _database: database }
    }
}

async fn fresh(backend: Backend) -> Db {
    TestDatabase::fresh(backend).await.into()
}

async fn open(db: &Db) -> Store {
    let mut config = StoreConfig::new(&db.url);
    config.sweep_interval = Duration::from_secs(3600);
    Store::open(config).await.unwrap()
}

/// Runs each named `async fn case(db: &Db)` on SQLite and on Postgres (`sqlite::case`,
/// `postgres::case`), each on a fresh database.
macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        eventbus_engine::backend_cases!(by reference: $($name),*);
    };
}

cases!(
    sequences_and_duplicates,
    queued_publishes_are_sequenced_in_queue_order,
    rejected_batch_changes_nothing,
    event_round_trip_and_history,
    listener_lifecycle,
    request_id_makes_registration_idempotent,
    start_notification_reaches_every_group_once,
    lease_expiry_nack_dead_letter_and_redrive,
    one_group_shares_the_load,
    released_leases_go_to_another_consumer,
    group_filters_and_start_positions,
    all_state_survives_restart_and_second_process,
    wait_wakes_once_and_stays_readable,
    deadlines_time_out_exactly_once,
    retention_deletes_old_rows,
    time_bounds_follow_the_sequence,
    sweeper_prunes_partials_past_their_lifespan,
    concurrent_publishes_fire_exactly_once,
    waiting_consumer_gets_notifications_from_the_publish,
    backlog_falls_back_to_ordered_claim,
    direct_delivery_respects_group_filters,
    closed_consumer_releases_to_another,
    consumers_share_direct_deliveries_without_duplicates,
    consumer_claims_what_another_process_published,
    recounts_keep_a_consumers_room_exact_among_leases_and_acks,
    group_backlogs_count_each_state,
);

/// Registers the START listener most cases use: workflow `wf` on every event of type `a`.
async fn start_wf_on_a(store: &Store) -> Listener {
    let spec = spec(ListenerKind::Start, Condition::One, &["a"], "wf");
    store.register_listener("ns", spec, None, Default::default()).await.unwrap().0
}

fn ev(event_type: &str, id: &str) -> Event {
    Event {
        namespace: String::new(),
        sequence: 0,
        id: id.into(),
        source: "/test".into(),
        specversion: "1.0".into(),
        event_type: event_type.into(),
        subject: None,
        time: None,
        datacontenttype: None,
        dataschema: None,
        extensions: BTreeMap::new(),
        data: None,
        received_at: Utc::now(),
        trace: TraceContext::default(),
    }
}

fn with_ext(mut e: Event, k: &str, v: &str) -> Event {
    e.extensions.insert(k.into(), AttrValue::String(v.into()));
    e
}

fn spec(kind: ListenerKind, condition: Condition, types: &[&str], target: &str) -> ListenerSpec {
    ListenerSpec {
        kind,
        target: target.into(),
        condition,
        types: types.iter().map(|t| t.to_string()).collect(),
        filters: Vec::new(),
        lifespan: None,
        correlate_by: Vec::new(),
        policy: None,
        deadline: None,
    }
}

fn group(name: &str) -> GroupSpec {
    GroupSpec { name: name.into(), max_attempts: 10, ..GroupSpec::default() }
}

const LEASE: Duration = Duration::from_secs(60);

async fn sequences_and_duplicates(db: &Db) {
    let store = open(db).await;
    let p = store.publish("ns", vec![ev("a", "1"), ev("a", "2"), ev("a", "1")]).await.unwrap();
    let got: Vec<(u64, bool)> = p.iter().map(|p| (p.sequence, p.duplicate)).collect();
    assert_eq!(got, vec![(1, false), (2, false), (1, true)]);
    let p = store.publish("ns", vec![ev("a", "2"), ev("a", "3")]).await.unwrap();
    let got: Vec<(u64, bool)> = p.iter().map(|p| (p.sequence, p.duplicate)).collect();
    assert_eq!(got, vec![(2, true), (3, false)]);
    // Another namespace has its own sequence and its own keys.
    let p = store.publish("other", vec![ev("a", "1")]).await.unwrap();
    assert_eq!((p[0].sequence, p[0].duplicate), (1, false));
    // A duplicate is not evaluated again.
    start_wf_on_a(&store).await;
    store.publish("ns", vec![ev("a", "1")]).await.unwrap();
    store.ensure_group("ns", group("g")).await.unwrap();
    assert!(store.claim("ns", "g", "c", 10, LEASE).await.unwrap().is_empty());
}

async fn queued_publishes_are_sequenced_in_queue_order(db: &Db) {
    let store = open(db).await;
    // Each batch holds its place from `queue_publish` on, whichever outcome is awaited first.
    let mut pending = Vec::new();
    for i in 0..50 {
        pending
            .push(store.queue_publish("ns", vec![ev("a", &format!("{i}a")), ev("a", &format!("{i}b"))]).await.unwrap());
    }
    let mut got = Vec::new();
    for p in pending.into_iter().rev() {
        got.push(p.outcome().await.unwrap().iter().map(|p| p.sequence).collect::<Vec<_>>());
    }
    got.reverse();
    let expected: Vec<Vec<u64>> = (0..50).map(|i| vec![2 * i + 1, 2 * i + 2]).collect();
    assert_eq!(got, expected);
}

async fn rejected_batch_changes_nothing(db: &Db) {
    let store = open(db).await;
    let mut bad = ev("a", "2");
    bad.source.clear();
    let err = store.publish("ns", vec![ev("a", "1"), bad]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    match err {
        eventbus_engine::Error::InvalidArgument(v) => assert_eq!(v[0].field, "events[1].source"),
        other => panic!("{other:?}"),
    }
    let page = store.list_events("ns", EventQuery::default()).await.unwrap();
    assert!(page.items.is_empty());
    let p = store.publish("ns", vec![ev("a", "1")]).await.unwrap();
    assert_eq!(p[0].sequence, 1, "a rejected batch consumes no sequence");
}

async fn event_round_trip_and_history(db: &Db) {
    let store = open(db).await;
    let mut e = ev("order.created", "e1");
    e.subject = Some("orders/42".into());
    e.time = Some(Utc::now());
    e.datacontenttype = Some("application/json".into());
    e.dataschema = Some("https://acme.io/schema".into());
    e.data = Some(Data::Text("{\"a\":1}".into()));
    e.trace = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: "k=v".into(),
    };
    for (k, v) in [
        ("flag", AttrValue::Boolean(true)),
        ("count", AttrValue::Integer(-7)),
        ("blob", AttrValue::Bytes(vec![0, 1, 2])),
        ("link", AttrValue::Uri("https://acme.io/x".into())),
        ("rel", AttrValue::UriRef("/x".into())),
        ("when", AttrValue::Timestamp(Utc::now())),
        ("name", AttrValue::String("n".into())),
    ] {
        e.extensions.insert(k.into(), v);
    }
    let mut binary = ev("order.created", "e2");
    binary.data = Some(Data::Binary(vec![9, 8, 7]));
    let mut proto = ev("order.paid", "e3");
    proto.data = Some(Data::Proto { type_url: "type.googleapis.com/x.Y".into(), value: vec![1] });
    proto.source = "/other".into();
    store.publish("ns", vec![e.clone(), binary, proto]).await.unwrap();

    let got = store.get_event("ns", EventKey::Sequence(1)).await.unwrap();
    assert_eq!(got.sequence, 1);
    assert_eq!(got.namespace, "ns");
    let mut want = e.clone();
    want.namespace = "ns".into();
    want.sequence = 1;
    want.received_at = got.received_at;
    assert_eq!(got, want);
    let by_key = store.get_event("ns", EventKey::SourceId { source: "/test".into(), id: "e1".into() }).await.unwrap();
    assert_eq!(by_key, got);
    let missing = store.get_event("other", EventKey::Sequence(1)).await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "another namespace's event is not found");

    let q = |f: fn(&mut EventQuery)| {
        let mut q = EventQuery::default();
        f(&mut q);
        q
    };
    let seqs = |p: eventbus_engine::store::Page<Event>| p.items.iter().map(|e| e.sequence).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.list_events("ns", q(|q| q.event_type = Some("order.created".into()))).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(seqs(store.list_events("ns", q(|q| q.source = Some("/other".into()))).await.unwrap()), vec![3]);
    assert_eq!(seqs(store.list_events("ns", q(|q| q.subject = Some("orders/42".into()))).await.unwrap()), vec![1]);
    assert_eq!(seqs(store.list_events("ns", q(|q| q.after_sequence = Some(1))).await.unwrap()), vec![2, 3]);
    assert_eq!(
        seqs(store.list_events("ns", q(|q| q.end = Some(Utc::now() - chrono::Duration::hours(1)))).await.unwrap()),
        Vec::<u64>::new()
    );
    // Pagination is stable.
    let first = store.list_events("ns", q(|q| q.page_size = 2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.next_page_token.clone().expect("a next page");
    let mut next = EventQuery { page_size: 2, page_token: Some(token), ..EventQuery::default() };
    let second = store.list_events("ns", next.clone()).await.unwrap();
    assert_eq!(seqs(second.clone()), vec![3]);
    assert_eq!(second.next_page_token, None);
    next.page_token = Some("garbage".into());
    assert_eq!(store.list_events("ns", next).await.unwrap_err().kind(), ErrorKind::InvalidArgument);
}

async fn listener_lifecycle(db: &Db) {
    let store = open(db).await;
    let t = TraceContext::default();
    let (a, created) = store
        .register_listener("ns", spec(ListenerKind::Start, Condition::One, &["a"], "wf1"), None, t.clone())
        .await
        .unwrap();
    assert!(created);
    let (b, _) = store
        .register_listener("ns", spec(ListenerKind::Start, Condition::Any, &["a", "b"], "wf2"), None, t.clone())
        .await
        .unwrap();
    let (c, _) = store
        .register_listener("ns", spec(ListenerKind::Wait, Condition::One, &["a"], "i1"), None, t.clone())
        .await
        .unwrap();
    let (d, _) = store
        .register_listener("ns", spec(ListenerKind::Wait, Condition::One, &["b"], "i1"), None, t.clone())
        .await
        .unwrap();
    let (other, _) = store
        .register_listener("other", spec(ListenerKind::Start, Condition::One, &["a"], "wf1"), None, t.clone())
        .await
        .unwrap();
    assert!(a.order < b.order && b.order < c.order);
    assert_eq!(store.get_listener("ns", a.id).await.unwrap(), a);
    assert_eq!(store.get_listener("ns", other.id).await.unwrap_err().kind(), ErrorKind::NotFound);

    let ids =
        |p: eventbus_engine::store::Page<eventbus_engine::Listener>| p.items.iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(ids(store.list_listeners("ns", ListenerQuery::default()).await.unwrap()), vec![a.id, b.id, c.id, d.id]);
    let q = ListenerQuery { kind: Some(ListenerKind::Wait), ..Default::default() };
    assert_eq!(ids(store.list_listeners("ns", q).await.unwrap()), vec![c.id, d.id]);
    let q = ListenerQuery { workflow_id: Some("wf2".into()), ..Default::default() };
    assert_eq!(ids(store.list_listeners("ns", q).await.unwrap()), vec![b.id]);
    let page = store.list_listeners("ns", ListenerQuery { page_size: 3, ..Default::default() }).await.unwrap();
    assert_eq!(page.items.len(), 3);
    let rest = store
        .list_listeners("ns", ListenerQuery { page_size: 3, page_token: page.next_page_token, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ids(rest), vec![d.id]);

    assert_eq!(store.delete_listener("other", a.id).await.unwrap_err().kind(), ErrorKind::NotFound);
    let by_id = store.delete_listeners("other", ListenerSelector::Id(a.id)).await;
    assert_eq!(by_id.unwrap_err().kind(), ErrorKind::NotFound, "an id another namespace's listener has");
    store.delete_listener("ns", a.id).await.unwrap();
    assert_eq!(store.get_listener("ns", a.id).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.delete_listener("ns", a.id).await.unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.delete_listeners("ns", ListenerSelector::Instance("i1".into())).await.unwrap(), 2);
    assert_eq!(store.delete_listeners("ns", ListenerSelector::Workflow("wf1".into())).await.unwrap(), 0);
    assert_eq!(ids(store.list_listeners("ns", ListenerQuery::default()).await.unwrap()), vec![b.id]);
    assert_eq!(store.get_listener("other", other.id).await.unwrap(), other, "other namespace untouched");

    // Deleted listeners no longer fire.
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", vec![ev("a", "1")]).await.unwrap();
    let got = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(got.iter().map(|d| d.notification.listener_id).collect::<Vec<_>>(), vec![b.id]);

    let mut bad = spec(ListenerKind::Start, Condition::One, &["a", "b"], "wf");
    bad.filters.push(FilterSet {
        event_type: "zzz".into(),
        attributes: [("x".to_string(), "y".to_string())].into(),
        condition: None,
    });
    let err = store.register_listener("ns", bad, None, t).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
}

async fn request_id_makes_registration_idempotent(db: &Db) {
    let store = open(db).await;
    let s = spec(ListenerKind::Start, Condition::One, &["a"], "wf");
    let (first, created) =
        store.register_listener("ns", s.clone(), Some("r1".into()), Default::default()).await.unwrap();
    assert!(created);
    let (again, created) =
        store.register_listener("ns", s.clone(), Some("r1".into()), Default::default()).await.unwrap();
    assert!(!created);
    assert_eq!(again, first);
    let other = spec(ListenerKind::Start, Condition::One, &["b"], "wf");
    let err = store.register_listener("ns", other, Some("r1".into()), Default::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    let (elsewhere, created) = store.register_listener("ns2", s, Some("r1".into()), Default::default()).await.unwrap();
    assert!(created && elsewhere.id != first.id, "request ids are per namespace");
    assert_eq!(store.list_listeners("ns", ListenerQuery::default()).await.unwrap().items.len(), 1);
}

async fn start_notification_reaches_every_group_once(db: &Db) {
    let store = open(db).await;
    let trace = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        tracestate: String::new(),
    };
    let l = start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g1")).await.unwrap();
    let mut e = ev("a", "1");
    e.trace = trace.clone();
    store.publish("ns", vec![e, ev("b", "2")]).await.unwrap();
    store.ensure_group("ns", group("g2")).await.unwrap();
    for g in ["g1", "g2"] {
        let got = store.claim("ns", g, "c", 10, LEASE).await.unwrap();
        assert_eq!(got.len(), 1, "{g}");
        let d = &got[0];
        assert_eq!(d.attempt, 1);
        assert_eq!(d.notification.sequence, 1);
        assert_eq!(d.notification.kind, NotificationKind::Start);
        assert_eq!(d.notification.target, "wf");
        assert_eq!(d.notification.listener_id, l.id);
        assert_eq!(d.notification.event_sequences, vec![1]);
        assert_eq!(d.notification.events.len(), 1);
        assert_eq!(d.notification.events[0].id, "1");
        // The notification carries the trigger's span: a child of the event's context.
        assert_eq!(d.notification.trace, trace.child(trigger_span_id(d.notification.fire_id)));
        assert!(store.claim("ns", g, "c", 10, LEASE).await.unwrap().is_empty(), "{g}: leased to one consumer");
        assert_eq!(store.ack("ns", g, vec![1]).await.unwrap(), 1);
        assert_eq!(store.ack("ns", g, vec![1]).await.unwrap(), 0, "acking twice is harmless");
    }
    assert!(store.claim("other", "g1", "c", 10, LEASE).await.unwrap_err().kind() == ErrorKind::NotFound);
    // A group of another namespace, or none at all, is not found by any call that names one.
    for (ns, g) in [("other", "g1"), ("ns", "nope")] {
        let kinds = [
            store.ack(ns, g, vec![1]).await.unwrap_err().kind(),
            store.nack(ns, g, 1, Duration::ZERO, "x".into()).await.unwrap_err().kind(),
            store.redrive(ns, g, vec![]).await.unwrap_err().kind(),
            store.list_dead_letters(ns, g, 10, None).await.unwrap_err().kind(),
        ];
        assert_eq!(kinds, [ErrorKind::NotFound; 4], "{ns}/{g}");
    }
}

async fn lease_expiry_nack_dead_letter_and_redrive(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", GroupSpec { name: "g".into(), max_attempts: 3, ..Default::default() }).await.unwrap();
    store.publish("ns", vec![ev("a", "1")]).await.unwrap();
    // A zero lease expires at once: the next claim gets attempt 2.
    let d = store.claim("ns", "g", "c1", 1, Duration::ZERO).await.unwrap();
    assert_eq!(d[0].attempt, 1);
    let d = store.claim("ns", "g", "c2", 1, LEASE).await.unwrap();
    assert_eq!(d[0].attempt, 2);
    // A nack with a retry time in the future keeps it back; with none it is claimable.
    assert!(!store.nack("ns", "g", 1, Duration::from_secs(3600), "later".into()).await.unwrap());
    assert!(store.claim("ns", "g", "c1", 1, LEASE).await.unwrap().is_empty());
    // A nack after the lease ended (here: given back by the nack before) counts no attempt; it
    // only sets when and why the notification comes again.
    assert!(!store.nack("ns", "g", 1, Duration::ZERO, "sooner".into()).await.unwrap());
    let d = store.claim("ns", "g", "c1", 1, LEASE).await.unwrap();
    assert_eq!((d[0].notification.sequence, d[0].attempt), (1, 3));
    // An ack after the lease ended still counts.
    assert_eq!(store.release("ns", "g", "c1").await.unwrap(), 1);
    assert_eq!(store.ack("ns", "g", vec![1]).await.unwrap(), 1);
    assert!(store.claim("ns", "g", "c1", 1, LEASE).await.unwrap().is_empty(), "acked: not delivered again");
    // Redrive only touches dead letters.
    assert_eq!(store.redrive("ns", "g", vec![]).await.unwrap(), 0);
    assert!(store.list_dead_letters("ns", "g", 10, None).await.unwrap().items.is_empty());
    // Every nack counts an attempt; the one after the last attempt makes a dead letter.
    store.publish("ns", vec![ev("a", "2")]).await.unwrap();
    let d = store.claim("ns", "g", "c1", 1, LEASE).await.unwrap();
    assert_eq!((d[0].notification.sequence, d[0].attempt), (2, 1));
    assert!(!store.nack("ns", "g", 2, Duration::ZERO, "boom 1".into()).await.unwrap());
    let d = store.claim("ns", "g", "c1", 1, LEASE).await.unwrap();
    assert_eq!((d[0].notification.sequence, d[0].attempt), (2, 2));
    assert!(!store.nack("ns", "g", 2, Duration::ZERO, "boom 2".into()).await.unwrap());
    let d = store.claim("ns", "g", "c1", 1, LEASE).await.unwrap();
    assert_eq!((d[0].notification.sequence, d[0].attempt), (2, 3));
    assert!(store.nack("ns", "g", 2, Duration::ZERO, "boom 3".into()).await.unwrap(), "third failure is the last");
    assert!(store.claim("ns", "g", "c1", 1, LEASE).await.unwrap().is_empty());
    let dead = store.list_dead_letters("ns", "g", 10, None).await.unwrap();
    assert_eq!(dead.items.len(), 1);
    assert_eq!(dead.items[0].notification.sequence, 2);
    assert_eq!(dead.items[0].attempt, 3);
    assert_eq!(dead.items[0].last_error, "boom 3");
    assert_eq!(dead.items[0].notification.events.len(), 1);
    assert_eq!(store.redrive("ns", "g", vec![2]).await.unwrap(), 1);
    let d = store.claim("ns", "g", "c1", 1, LEASE).await.unwrap();
    assert_eq!((d[0].notification.sequence, d[0].attempt), (2, 1), "redrive restarts attempts");
    assert_eq!(store.ack("ns", "g", vec![2]).await.unwrap(), 1);
    // An expired lease with no attempts left becomes a dead letter on the next claim.
    store.publish("ns", vec![ev("a", "3")]).await.unwrap();
    for attempt in 1..=3 {
        let d = store.claim("ns", "g", "c1", 1, Duration::ZERO).await.unwrap();
        assert_eq!((d[0].notification.sequence, d[0].attempt), (3, attempt));
    }
    assert!(store.claim("ns", "g", "c1", 1, LEASE).await.unwrap().is_empty());
    let dead = store.list_dead_letters("ns", "g", 10, None).await.unwrap();
    assert_eq!(
        dead.items.iter().map(|d| (d.notification.sequence, d.last_error.as_str())).collect::<Vec<_>>(),
        vec![(3, "lease expired")]
    );
}

async fn one_group_shares_the_load(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    let events: Vec<Event> = (0..10).map(|i| ev("a", &i.to_string())).collect();
    store.publish("ns", events).await.unwrap();
    let mut seen = BTreeSet::new();
    for round in 0..5 {
        for consumer in ["c1", "c2"] {
            let d = store.claim("ns", "g", consumer, 1, LEASE).await.unwrap();
            assert_eq!(d.len(), 1, "round {round}");
            assert!(seen.insert(d[0].notification.sequence), "no notification twice");
        }
    }
    assert_eq!(seen, (1..=10).collect());
    assert!(store.claim("ns", "g", "c3", 10, LEASE).await.unwrap().is_empty());
}

async fn released_leases_go_to_another_consumer(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", vec![ev("a", "1"), ev("a", "2")]).await.unwrap();
    assert_eq!(store.claim("ns", "g", "c1", 10, LEASE).await.unwrap().len(), 2);
    assert_eq!(store.ack("ns", "g", vec![1]).await.unwrap(), 1);
    assert_eq!(store.release("ns", "g", "c1").await.unwrap(), 1);
    let d = store.claim("ns", "g", "c2", 10, LEASE).await.unwrap();
    assert_eq!(d.iter().map(|d| (d.notification.sequence, d.attempt)).collect::<Vec<_>>(), vec![(2, 2)]);
}

async fn group_filters_and_start_positions(db: &Db) {
    let store = open(db).await;
    store
        .register_listener("ns", spec(ListenerKind::Start, Condition::One, &["a"], "wf1"), None, Default::default())
        .await
        .unwrap();
    store
        .register_listener("ns", spec(ListenerKind::Start, Condition::One, &["a"], "wf2"), None, Default::default())
        .await
        .unwrap();
    store
        .register_listener("ns", spec(ListenerKind::Wait, Condition::One, &["a"], "i1"), None, Default::default())
        .await
        .unwrap();
    store.publish("ns", vec![ev("a", "1")]).await.unwrap(); // notifications 1 (wf1), 2 (wf2), 3 (i1)
    let only_wf2 =
        GroupSpec { name: "w".into(), workflow_ids: vec!["wf2".into()], max_attempts: 10, ..Default::default() };
    store.ensure_group("ns", only_wf2.clone()).await.unwrap();
    store.ensure_group("ns", only_wf2).await.unwrap();
    let changed = GroupSpec { name: "w".into(), max_attempts: 10, ..Default::default() };
    assert_eq!(store.ensure_group("ns", changed).await.unwrap_err().kind(), ErrorKind::FailedPrecondition);
    let wakes =
        GroupSpec { name: "k".into(), kinds: vec![NotificationKind::Wake], max_attempts: 10, ..Default::default() };
    store.ensure_group("ns", wakes).await.unwrap();
    let latest = GroupSpec { name: "l".into(), start: StartPosition::Latest, max_attempts: 10, ..Default::default() };
    store.ensure_group("ns", latest).await.unwrap();
    let from2 =
        GroupSpec { name: "s".into(), start: StartPosition::Sequence(2), max_attempts: 10, ..Default::default() };
    store.ensure_group("ns", from2).await.unwrap();
    let seqs = |d: Vec<eventbus_engine::store::Delivery>| d.iter().map(|d| d.notification.sequence).collect::<Vec<_>>();
    assert_eq!(seqs(store.claim("ns", "w", "c", 10, LEASE).await.unwrap()), vec![2]);
    assert_eq!(seqs(store.claim("ns", "k", "c", 10, LEASE).await.unwrap()), vec![3]);
    assert_eq!(seqs(store.claim("ns", "l", "c", 10, LEASE).await.unwrap()), Vec::<u64>::new());
    let shared = store.claim("ns", "s", "c", 10, LEASE).await.unwrap();
    let events: Vec<Vec<&str>> =
        shared.iter().map(|d| d.notification.events.iter().map(|e| e.id.as_str()).collect()).collect();
    assert_eq!(events, vec![vec!["1"], vec!["1"]], "one event feeds both notifications");
    assert_eq!(seqs(shared), vec![2, 3]);
    store.publish("ns", vec![ev("a", "2")]).await.unwrap(); // 4 (wf1), 5 (wf2); i1 is consumed
    assert_eq!(seqs(store.claim("ns", "l", "c", 10, LEASE).await.unwrap()), vec![4, 5]);
    assert_eq!(seqs(store.claim("ns", "w", "c", 10, LEASE).await.unwrap()), vec![5]);
}

async fn all_state_survives_restart_and_second_process(db: &Db) {
    let mut s = spec(ListenerKind::Start, Condition::All, &["payment.received", "shipment.sent"], "fulfil");
    s.correlate_by = vec!["orderid".into()];
    {
        let store = open(db).await;
        store.register_listener("ns", s, None, Default::default()).await.unwrap();
        store.publish("ns", vec![with_ext(ev("payment.received", "p1"), "orderid", "1")]).await.unwrap();
        store.publish("ns", vec![with_ext(ev("payment.received", "p2"), "orderid", "2")]).await.unwrap();
    }
    // A restarted process loads the partial state.
    let store = open(db).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", vec![with_ext(ev("shipment.sent", "s1"), "orderid", "1")]).await.unwrap();
    // A second process on the same database sees what the first one collected and changed.
    let second = open(db).await;
    second.publish("ns", vec![with_ext(ev("shipment.sent", "s2"), "orderid", "2")]).await.unwrap();
    store.publish("ns", vec![with_ext(ev("shipment.sent", "s2b"), "orderid", "2")]).await.unwrap();
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    type Fired = (Vec<(String, String)>, Vec<String>);
    let got: Vec<Fired> = d
        .iter()
        .map(|d| (d.notification.correlation.clone(), d.notification.events.iter().map(|e| e.id.clone()).collect()))
        .collect();
    assert_eq!(
        got,
        vec![
            (vec![("orderid".into(), "1".into())], vec!["p1".to_string(), "s1".into()]),
            (vec![("orderid".into(), "2".into())], vec!["p2".to_string(), "s2".into()]),
        ]
    );
    assert_eq!(store.partial_count("ns", None).await.unwrap(), 1, "only s2b waits for a payment");
}

async fn wait_wakes_once_and_stays_readable(db: &Db) {
    let store = open(db).await;
    let (l, _) = store
        .register_listener("ns", spec(ListenerKind::Wait, Condition::Any, &["a", "b"], "i1"), None, Default::default())
        .await
        .unwrap();
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", vec![ev("a", "1"), ev("b", "2")]).await.unwrap();
    store.publish("ns", vec![ev("b", "3")]).await.unwrap();
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].notification.kind, NotificationKind::Wake);
    assert_eq!(d[0].notification.target, "i1");
    let got = store.get_listener("ns", l.id).await.unwrap();
    assert!(matches!(got.status, ListenerStatus::Fired { fire_id, .. } if fire_id == d[0].notification.fire_id));
    assert!(store.list_listeners("ns", ListenerQuery::default()).await.unwrap().items.is_empty());
    let q = ListenerQuery { include_finished: true, ..Default::default() };
    assert_eq!(store.list_listeners("ns", q).await.unwrap().items.len(), 1);
    // After a restart it is still consumed.
    let store = open(db).await;
    store.publish("ns", vec![ev("a", "4")]).await.unwrap();
    assert!(store.claim("ns", "g", "c", 10, LEASE).await.unwrap().is_empty());
}

async fn deadlines_time_out_exactly_once(db: &Db) {
    let store = open(db).await;
    let trace = TraceContext {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01".into(),
        tracestate: String::new(),
    };
    let mut s = spec(ListenerKind::Wait, Condition::One, &["a"], "i1");
    s.deadline = Some(Utc::now() + chrono::Duration::hours(1));
    let (l, _) = store.register_listener("ns", s.clone(), None, trace.clone()).await.unwrap();
    let mut past = s.clone();
    past.target = "i2".into();
    past.deadline = Some(Utc::now() - chrono::Duration::seconds(1));
    store.register_listener("ns", past, None, Default::default()).await.unwrap();
    store.ensure_group("ns", group("g")).await.unwrap();
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(
        d.iter().map(|d| (d.notification.kind, d.notification.target.as_str())).collect::<Vec<_>>(),
        vec![(NotificationKind::Timeout, "i2")],
        "a passed deadline times out at once"
    );
    let later = Utc::now() + chrono::Duration::hours(2);
    let second = open(db).await;
    let (r1, r2) = tokio::join!(store.sweep(later), second.sweep(later));
    assert_eq!(r1.unwrap().timed_out + r2.unwrap().timed_out, 1, "two processes sweep, one timeout");
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].notification.kind, NotificationKind::Timeout);
    let want = trace.child(trigger_span_id(d[0].notification.fire_id));
    assert_eq!(d[0].notification.trace, want, "a timeout continues the registration's trace");
    assert!(matches!(store.get_listener("ns", l.id).await.unwrap().status, ListenerStatus::TimedOut { .. }));
    assert_eq!(store.sweep(later).await.unwrap().timed_out, 0);
}

async fn retention_deletes_old_rows(db: &Db) {
    let mut config = StoreConfig::new(&db.url);
    config.sweep_interval = Duration::from_secs(3600);
    config.retention = Some(Duration::from_secs(3600));
    config.retention_batch = 2;
    let store = Store::open(config).await.unwrap();
    store
        .register_listener("ns", spec(ListenerKind::Wait, Condition::One, &["a"], "i1"), None, Default::default())
        .await
        .unwrap();
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", vec![ev("a", "1"), ev("b", "2"), ev("b", "3")]).await.unwrap();
    store.publish("other", vec![ev("b", "1")]).await.unwrap();
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(d.len(), 2);
    store.ack("ns", "g", vec![1]).await.unwrap();
    assert_eq!(store.sweep(Utc::now()).await.unwrap(), Default::default(), "nothing is old yet");
    let later = Utc::now() + chrono::Duration::hours(2);
    let r = store.sweep(later).await.unwrap();
    assert_eq!(
        (r.events_deleted, r.notifications_deleted, r.listeners_deleted),
        (2 + 1, 1, 1),
        "bounded batches per namespace"
    );
    let r = store.sweep(later).await.unwrap();
    assert_eq!((r.events_deleted, r.notifications_deleted), (1, 0), "notification 2 is still leased");
    assert!(store.list_events("ns", EventQuery::default()).await.unwrap().items.is_empty());
    assert_eq!(
        store
            .list_listeners("ns", ListenerQuery { include_finished: true, ..Default::default() })
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let events = |store: Store| async move {
        let page = store.list_namespaces(10, None).await.unwrap().items;
        page.into_iter().map(|n| (n.name, n.events, n.last_event_sequence)).collect::<Vec<_>>()
    };
    assert_eq!(events(store.clone()).await, [("ns".into(), 0, 3), ("other".into(), 0, 1)]);
    // The active START listener still fires.
    store.publish("ns", vec![ev("a", "4")]).await.unwrap();
    assert_eq!(events(store.clone()).await, [("ns".into(), 1, 4), ("other".into(), 0, 1)]);
    assert_eq!(store.ack("ns", "g", vec![2]).await.unwrap(), 1);
    let d = store.claim("ns", "g", "c", 10, LEASE).await.unwrap();
    assert_eq!(d.iter().map(|d| d.notification.sequence).collect::<Vec<_>>(), vec![3]);
}

/// Time bounds of listings and seeks are found by a binary search over the sequence (there is
/// no index on times): every start and end bound lists exactly the events received in it,
/// with the namespace's other events and another namespace's around it.
async fn time_bounds_follow_the_sequence(db: &Db) {
    let store = open(db).await;
    let listener = start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    for i in 0..37 {
        store.publish("ns", vec![ev("a", &format!("n{i}"))]).await.unwrap();
        store.publish("other", vec![ev("a", &format!("o{i}"))]).await.unwrap();
    }
    let all = store.list_events("ns", EventQuery { page_size: 1000, ..Default::default() }).await.unwrap().items;
    assert_eq!(all.len(), 37);
    let times: Vec<_> = all.iter().map(|e| e.received_at).collect();
    let seqs = |page: Vec<Event>| page.iter().map(|e| e.sequence).collect::<Vec<_>>();
    let early = times[0] - chrono::Duration::seconds(1);
    let late = times[36] + chrono::Duration::seconds(1);
    for t in times.iter().copied().chain([early, late]) {
        let want_from: Vec<u64> = all.iter().filter(|e| e.received_at >= t).map(|e| e.sequence).collect();
        let want_until: Vec<u64> = all.iter().filter(|e| e.received_at < t).map(|e| e.sequence).collect();
        let from = EventQuery { start: Some(t), page_size: 1000, ..Default::default() };
        assert_eq!(seqs(store.list_events("ns", from).await.unwrap().items), want_from, "from {t}");
        let until = EventQuery { end: Some(t), page_size: 1000, ..Default::default() };
        assert_eq!(seqs(store.list_events("ns", until).await.unwrap().items), want_until, "until {t}");
    }
    // A replay by time walks the same events (both ends inclusive).
    for (from, to) in [(times[3], times[30]), (early, times[0]), (times[36], late), (early, late)] {
        let want: Vec<u64> =
            all.iter().filter(|e| e.received_at >= from && e.received_at <= to).map(|e| e.sequence).collect();
        let range = EventRange { from: Some(Position::Time(from)), to: Some(Position::Time(to)) };
        let query = ReplayQuery { range, mode: ReplayMode::DryRun, page_size: 1000, page_token: None };
        let page = store.replay("ns", listener.id, query).await.unwrap();
        let fired: Vec<u64> = page.fires.iter().flat_map(|f| f.event_sequences.clone()).collect();
        assert_eq!(fired, want, "replay from {from} to {to}");
    }
    let none = EventQuery { start: Some(late), ..Default::default() };
    assert!(store.list_events("empty", none).await.unwrap().items.is_empty());
    // A seek by time lands on the first notification created at or after it.
    let d = store.claim("ns", "g", "c", 100, LEASE).await.unwrap();
    assert_eq!(d.len(), 37);
    let created: Vec<_> = d.iter().map(|d| (d.notification.sequence, d.notification.created_at)).collect();
    store.ack("ns", "g", created.iter().map(|c| c.0).collect()).await.unwrap();
    for (seq, at) in [created[0], created[20], created[36]] {
        let want = created.iter().find(|c| c.1 >= at).unwrap().0;
        assert!(want <= seq);
        store.seek_group("ns", "g", SeekPosition::Time(at)).await.unwrap();
        let d = store.claim("ns", "g", "c", 100, LEASE).await.unwrap();
        assert_eq!(d.first().map(|d| d.notification.sequence), Some(want), "seek to {at}");
        store.ack("ns", "g", d.iter().map(|d| d.notification.sequence).collect()).await.unwrap();
    }
    store.seek_group("ns", "g", SeekPosition::Time(late)).await.unwrap();
    assert!(store.claim("ns", "g", "c", 100, LEASE).await.unwrap().is_empty(), "past every notification");
}

async fn sweeper_prunes_partials_past_their_lifespan(db: &Db) {
    let store = open(db).await;
    let mut s = spec(ListenerKind::Start, Condition::All, &["payment.received", "shipment.sent"], "fulfil");
    s.correlate_by = vec!["orderid".into()];
    s.lifespan = Some(Duration::from_secs(60));
    store.register_listener("ns", s, None, Default::default()).await.unwrap();
    store
        .publish(
            "ns",
            vec![
                with_ext(ev("payment.received", "p1"), "orderid", "1"),
                with_ext(ev("payment.received", "p2"), "orderid", "2"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(store.partial_count("ns", None).await.unwrap(), 2);
    assert_eq!(store.sweep(Utc::now()).await.unwrap().partials_pruned, 0, "nothing is past its lifespan yet");
    let later = Utc::now() + chrono::Duration::minutes(2);
    assert_eq!(store.sweep(later).await.unwrap().partials_pruned, 2);
    assert_eq!(store.partial_count("ns", None).await.unwrap(), 0, "pruned in the database too");
}

/// Many tasks on two stores (standing in for two server processes) publish the parts of
/// ALL sets interleaved, and race WAIT wake-ups: every set starts exactly once, every WAIT
/// wakes exactly once, and no partial state is left.
async fn concurrent_publishes_fire_exactly_once(db: &Db) {
    const ORDERS: usize = 1000;
    const WAITS: usize = 100;
    const TASKS: usize = 8;
    let a = open(db).await;
    let b = open(db).await;
    let mut s = spec(ListenerKind::Start, Condition::All, &["payment.received", "shipment.sent"], "fulfil");
    s.correlate_by = vec!["orderid".into()];
    a.register_listener("ns", s, None, Default::default()).await.unwrap();
    for i in 0..WAITS {
        let mut w = spec(ListenerKind::Wait, Condition::One, &["approved"], &format!("i{i}"));
        w.filters.push(FilterSet {
            event_type: "approved".into(),
            attributes: [("subject".to_string(), format!("i{i}"))].into(),
            condition: None,
        });
        b.register_listener("ns", w, None, Default::default()).await.unwrap();
    }
    a.ensure_group("ns", group("g")).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        for (k, store) in [a.clone(), b.clone()].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                for order in (t..ORDERS).step_by(TASKS) {
                    // Store a publishes payments, store b shipments; the order of the two races.
                    let ty = if k == 0 { "payment.received" } else { "shipment.sent" };
                    let e = with_ext(ev(ty, &format!("{ty}-{order}")), "orderid", &order.to_string());
                    store.publish("ns", vec![e]).await.unwrap();
                }
                for i in (t..WAITS).step_by(TASKS) {
                    let mut e = ev("approved", &format!("approved-{k}-{i}"));
                    e.subject = Some(format!("i{i}"));
                    store.publish("ns", vec![e]).await.unwrap();
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut starts = BTreeMap::new();
    let mut wakes = BTreeMap::new();
    loop {
        let d = a.claim("ns", "g", "c", 500, LEASE).await.unwrap();
        if d.is_empty() {
            break;
        }
        for d in &d {
            let n = &d.notification;
            match n.kind {
                NotificationKind::Start => *starts.entry(n.correlation[0].1.clone()).or_insert(0) += 1,
                NotificationKind::Wake => *wakes.entry(n.target.clone()).or_insert(0) += 1,
                NotificationKind::Timeout => panic!("unexpected timeout"),
            }
        }
        a.ack("ns", "g", d.iter().map(|d| d.notification.sequence).collect()).await.unwrap();
    }
    assert_eq!(starts.len(), ORDERS);
    assert!(starts.values().all(|n| *n == 1), "every set starts exactly once");
    assert_eq!(wakes.len(), WAITS);
    assert!(wakes.values().all(|n| *n == 1), "every wait wakes exactly once");
    assert_eq!(a.partial_count("ns", None).await.unwrap(), 0, "no partial state left");
}

/// Starts a consumer that polls rarely, so what it gets without a poll came by the direct path
/// or a claim its own room or a store change asked for.
async fn consumer(store: &Store, group: &str, consumer: &str, max_in_flight: u32, poll: Duration) -> Consumer {
    let options = ConsumerOptions {
        namespace: "ns".into(),
        group: group.into(),
        consumer: consumer.into(),
        max_in_flight,
        lease: LEASE,
        poll_interval: poll,
    };
    store.consume(options).await.unwrap()
}

const RARELY: Duration = Duration::from_secs(3600);

async fn next(c: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.recv()).await.expect("a delivery within 10s").unwrap().unwrap()
}

/// Returns true if the consumer yields nothing for a moment.
async fn quiet(c: &mut Consumer) -> bool {
    tokio::time::timeout(Duration::from_millis(200), c.recv()).await.is_err()
}

async fn waiting_consumer_gets_notifications_from_the_publish(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    let mut all = spec(ListenerKind::Start, Condition::All, &["x", "y"], "both");
    all.correlate_by = vec!["k".into()];
    store.register_listener("ns", all, None, Default::default()).await.unwrap();
    store.ensure_group("ns", group("g")).await.unwrap();
    let mut c = consumer(&store, "g", "c1", 10, RARELY).await;
    store.publish("ns", vec![ev("a", "1")]).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!((d.notification.sequence, d.attempt, d.group.as_str()), (1, 1, "g"));
    assert_eq!(d.notification.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["1"]);
    assert_eq!(c.stats(), ConsumerStats { direct: 1, claimed: 0 });
    // Leased: nobody else in the group gets it.
    assert!(store.claim("ns", "g", "c2", 10, LEASE).await.unwrap().is_empty());
    // Events collected by an earlier transaction come along too.
    store.publish("ns", vec![with_ext(ev("x", "x1"), "k", "1")]).await.unwrap();
    store.publish("ns", vec![with_ext(ev("y", "y1"), "k", "1")]).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.notification.sequence, 2);
    assert_eq!(d.notification.events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["x1", "y1"]);
    assert_eq!(c.stats(), ConsumerStats { direct: 2, claimed: 0 });
    assert_eq!(store.ack("ns", "g", vec![1, 2]).await.unwrap(), 2);
    assert!(quiet(&mut c).await);
    assert_eq!(c.close().await.unwrap(), 0, "nothing left to release");
}

async fn backlog_falls_back_to_ordered_claim(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    store.publish("ns", (1..=3).map(|i| ev("a", &i.to_string())).collect()).await.unwrap();
    let mut c = consumer(&store, "g", "c1", 2, RARELY).await;
    let mut got = vec![next(&mut c).await.notification.sequence, next(&mut c).await.notification.sequence];
    assert!(quiet(&mut c).await, "no room beyond max_in_flight");
    // Behind a backlog a new notification waits its turn.
    store.publish("ns", vec![ev("a", "4")]).await.unwrap();
    assert!(quiet(&mut c).await, "still no room");
    store.ack("ns", "g", vec![got[0]]).await.unwrap();
    got.push(next(&mut c).await.notification.sequence);
    store.ack("ns", "g", vec![got[1]]).await.unwrap();
    got.push(next(&mut c).await.notification.sequence);
    assert_eq!(got, vec![1, 2, 3, 4], "in sequence order");
    assert_eq!(c.stats(), ConsumerStats { direct: 0, claimed: 4 });
    // Once caught up, new notifications come directly again.
    store.ack("ns", "g", vec![3, 4]).await.unwrap();
    assert!(quiet(&mut c).await);
    store.publish("ns", vec![ev("a", "5")]).await.unwrap();
    assert_eq!(next(&mut c).await.notification.sequence, 5);
    assert_eq!(c.stats(), ConsumerStats { direct: 1, claimed: 4 });
    c.close().await.unwrap();
}

async fn direct_delivery_respects_group_filters(db: &Db) {
    let store = open(db).await;
    for wf in ["wf1", "wf2"] {
        store
            .register_listener("ns", spec(ListenerKind::Start, Condition::One, &["a"], wf), None, Default::default())
            .await
            .unwrap();
    }
    let only_wf2 =
        GroupSpec { name: "w".into(), workflow_ids: vec!["wf2".into()], max_attempts: 10, ..Default::default() };
    store.ensure_group("ns", only_wf2).await.unwrap();
    store.ensure_group("ns", group("all")).await.unwrap();
    let mut c = consumer(&store, "w", "c1", 10, RARELY).await;
    store.publish("ns", vec![ev("a", "1")]).await.unwrap(); // 1 (wf1), 2 (wf2)
    let d = next(&mut c).await;
    assert_eq!((d.notification.sequence, d.notification.target.as_str()), (2, "wf2"));
    assert!(quiet(&mut c).await, "wf1 is not for this group");
    assert_eq!(c.stats(), ConsumerStats { direct: 1, claimed: 0 });
    assert!(store.claim("ns", "w", "c2", 10, LEASE).await.unwrap().is_empty());
    // A group without a consumer here is untouched.
    let d = store.claim("ns", "all", "c", 10, LEASE).await.unwrap();
    assert_eq!(d.iter().map(|d| d.notification.sequence).collect::<Vec<_>>(), vec![1, 2]);
    c.close().await.unwrap();
}

async fn closed_consumer_releases_to_another(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    let mut c = consumer(&store, "g", "c1", 10, RARELY).await;
    store.publish("ns", vec![ev("a", "1"), ev("a", "2")]).await.unwrap();
    assert_eq!(next(&mut c).await.notification.sequence, 1);
    assert_eq!(c.close().await.unwrap(), 2, "received or not, both leases are released");
    let d = store.claim("ns", "g", "c2", 10, LEASE).await.unwrap();
    assert_eq!(d.iter().map(|d| (d.notification.sequence, d.attempt)).collect::<Vec<_>>(), vec![(1, 2), (2, 2)]);
}

async fn consumers_share_direct_deliveries_without_duplicates(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    let mut consumers = [consumer(&store, "g", "c1", 3, RARELY).await, consumer(&store, "g", "c2", 3, RARELY).await];
    for i in 0..6 {
        store.publish("ns", vec![ev("a", &i.to_string())]).await.unwrap();
    }
    let mut seen = BTreeSet::new();
    for c in &mut consumers {
        for _ in 0..3 {
            assert!(seen.insert(next(c).await.notification.sequence), "no notification twice");
        }
        assert!(quiet(c).await, "at most max_in_flight each");
    }
    assert_eq!(seen, (1..=6).collect());
    assert!(store.claim("ns", "g", "c3", 10, LEASE).await.unwrap().is_empty(), "all leased");
    let direct: u64 = consumers.iter().map(|c| c.stats().direct).sum();
    assert_eq!(direct, 6);
    for c in consumers {
        c.close().await.unwrap();
    }
}

async fn consumer_claims_what_another_process_published(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    let mut c = consumer(&store, "g", "c1", 1, Duration::from_millis(50)).await;
    let second = open(db).await;
    second.publish("ns", vec![ev("a", "1")]).await.unwrap();
    assert_eq!(next(&mut c).await.notification.sequence, 1);
    assert_eq!(c.stats().claimed, 1, "found at a poll");
    // The consumer's only room is taken: 2 waits for it (no direct delivery).
    store.publish("ns", vec![ev("a", "2")]).await.unwrap();
    // An ack on the other process frees that room here at the next poll.
    second.ack("ns", "g", vec![1]).await.unwrap();
    assert_eq!(next(&mut c).await.notification.sequence, 2);
    assert_eq!(c.stats(), ConsumerStats { direct: 0, claimed: 2 });
    c.close().await.unwrap();
}

async fn recounts_keep_a_consumers_room_exact_among_leases_and_acks(db: &Db) {
    let store = open(db).await;
    start_wf_on_a(&store).await;
    store.ensure_group("ns", group("g")).await.unwrap();
    // Recounts all the time, while leases and acks commit: none may leave the room off, or a
    // consumer that holds nothing could be left without room until its next poll.
    let mut c = consumer(&store, "g", "c1", 3, Duration::from_millis(1)).await;
    for i in 0..200 {
        store.publish("ns", vec![ev("a", &format!("{i}a")), ev("a", &format!("{i}b"))]).await.unwrap();
        let got = [next(&mut c).await.notification.sequence, next(&mut c).await.notification.sequence];
        assert_eq!(c.room(), 1, "round {i}: two of three taken");
        assert_eq!(store.ack("ns", "g", got.to_vec()).await.unwrap(), 2);
        assert_eq!(c.room(), 3, "round {i}: all room back after the ack");
    }
    assert_eq!(c.stats().direct + c.stats().claimed, 400);
    c.close().await.unwrap();
}

async fn group_backlogs_count_each_state(db: &Db) {
    let mut config = StoreConfig::new(&db.url);
    config.sweep_interval = Duration::from_secs(3600);
    config.retention = Some(Duration::from_secs(3600));
    let store = Store::open(config).await.unwrap();
    start_wf_on_a(&store).await;
    store.ensure_group("ns", GroupSpec { name: "once".into(), max_attempts: 1, ..GroupSpec::default() }).await.unwrap();
    store.ensure_group("ns", group("twice")).await.unwrap();
    store.ensure_group("quiet", group("g")).await.unwrap();
    store.publish("ns", (1..=10).map(|i| ev("a", &i.to_string())).collect()).await.unwrap();
    // once: 1-4 leased, 1 nacked (its only attempt: dead), 2 acked; 5-10 unread.
    assert_eq!(store.claim("ns", "once", "c", 4, LEASE).await.unwrap().len(), 4);
    assert!(store.nack("ns", "once", 1, Duration::ZERO, "boom".into()).await.unwrap(), "a dead letter");
    assert_eq!(store.ack("ns", "once", vec![2]).await.unwrap(), 1);
    // twice: 1-2 leased, 1 nacked for a later retry; 3-10 unread.
    assert_eq!(store.claim("ns", "twice", "c", 2, LEASE).await.unwrap().len(), 2);
    assert!(!store.nack("ns", "twice", 1, Duration::from_secs(3600), "later".into()).await.unwrap());
    // r: retention removes 1-5, which its only group read and acked; 6-8 come after.
    store
        .register_listener("r", spec(ListenerKind::Start, Condition::One, &["a"], "wf"), None, Default::default())
        .await
        .unwrap();
    store.ensure_group("r", group("first")).await.unwrap();
    store.publish("r", (1..=5).map(|i| ev("a", &format!("r{i}"))).collect()).await.unwrap();
    assert_eq!(store.ack("r", "first", (1..=5).collect()).await.unwrap(), 0, "not leased yet");
    assert_eq!(store.claim("r", "first", "c", 5, LEASE).await.unwrap().len(), 5);
    assert_eq!(store.ack("r", "first", (1..=5).collect()).await.unwrap(), 5);
    let swept = store.sweep(Utc::now() + chrono::Duration::hours(2)).await.unwrap();
    assert_eq!(swept.notifications_deleted, 5);
    store.publish("r", (6..=8).map(|i| ev("a", &format!("r{i}"))).collect()).await.unwrap();
    // A group that starts at the earliest notification now: from the oldest one stored.
    store.ensure_group("r", group("late")).await.unwrap();
    let counts = |namespace: &str, group: &str, pending, leased, dead| GroupBacklog {
        namespace: namespace.into(),
        group: group.into(),
        pending,
        leased,
        dead,
    };
    let want = vec![
        counts("ns", "once", 6, 2, 1),
        counts("ns", "twice", 9, 1, 0),
        counts("quiet", "g", 0, 0, 0),
        counts("r", "first", 3, 0, 0),
        counts("r", "late", 3, 0, 0),
    ];
    assert_eq!(store.group_backlogs().await.unwrap(), want);
    // The administration calls count the same, with the oldest pending notification's time.
    for b in &want {
        let g = store.get_group(&b.namespace, &b.group).await.unwrap();
        assert_eq!((g.pending, g.leased, g.dead), (b.pending, b.leased, b.dead), "{}/{}", b.namespace, b.group);
        assert_eq!(g.oldest_pending.is_some(), b.pending > 0, "{}/{}", b.namespace, b.group);
    }
}

/// SQLite only: the writer does not checkpoint the WAL itself; the checkpoint thread copies it
/// into the database file soon after commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_is_checkpointed_after_commits() {
    let db = fresh(Backend::Sqlite).await;
    let store = open(&db).await;
    let dir = db._dir.as_ref().unwrap().path();
    let main_size = || std::fs::metadata(dir.join("eventbus.db")).unwrap().len();
    store.publish("ns", vec![ev("a", "0")]).await.unwrap();
    let before = main_size();
    let payload = "x".repeat(4000);
    for i in 1..=50 {
        let mut e = ev("a", &i.to_string());
        e.data = Some(Data::Text(payload.clone()));
        store.publish("ns", vec![e]).await.unwrap();
    }
    // 50 events of 4 kB need at least 50 more pages in the database file, which only a
    // checkpoint writes there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while main_size() < before + 50 * 4096 {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within 10 s: {} bytes", main_size());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// SQLite only: under continuous publishing with readers that keep read transactions open, the
/// WAL file stays under its limit (passive checkpoints alone let it grow for ever), and it is
/// emptied once the writer is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_under_its_limit_with_readers() {
    const LIMIT: u64 = 8 << 20;
    let db = fresh(Backend::Sqlite).await;
    let mut config = StoreConfig::new(&db.url);
    config.sweep_interval = Duration::from_secs(3600);
    config.durability = Durability::Relaxed;
    config.sqlite_wal_limit = LIMIT;
    let store = Store::open(config).await.unwrap();
    let path = db._dir.as_ref().unwrap().path().join("eventbus.db");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two readers, each holding a read transaction open for a few milliseconds at a time, so
    // that a reader is nearly always on some frame of the WAL.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let conn = rusqlite::Connection::open(&path).unwrap();
                let mut reads = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    conn.execute_batch("BEGIN").unwrap();
                    let _: i64 = conn.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
                    std::thread::sleep(Duration::from_millis(3));
                    conn.execute_batch("COMMIT").unwrap();
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let wal = || std::fs::metadata(path.with_file_name("eventbus.db-wal")).map_or(0, |m| m.len());
    let payload = "x".repeat(4000);
    let mut largest = 0;
    // About 30 kB of WAL per publish: several times the limit in all.
    for i in 0..2000 {
        let mut e = ev("a", &i.to_string());
        e.data = Some(Data::Text(payload.clone()));
        store.publish("ns", vec![e]).await.unwrap();
        largest = largest.max(wal());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(largest <= LIMIT, "the WAL reached {largest} bytes, over its limit of {LIMIT}");
    assert!(largest > 0);
    assert_eq!(store.file_sizes().unwrap().wal, wal());
    // Idle: the WAL file is emptied.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal() > 0 {
        assert!(std::time::Instant::now() < deadline, "the WAL still holds {} bytes after 10 s idle", wal());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.get_event("ns", EventKey::Sequence(2000)).await.unwrap().id, "1999");
}
