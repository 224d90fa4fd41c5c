//! The administration calls end to end, on SQLite and on Postgres: seeking, updating and deleting
//! consumer groups, deleting namespaces (and nothing else), listing them, and the partial state
//! of ALL listeners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, pb};
use eventbus_engine::store::{ListenerQuery, Store, StoreConfig};
use eventbus_tests::{
    Database, SOURCE, TestServer, WAIT, dead_letters, event, field_violations, next_notification, stream_end,
};
use tonic::{Code, Streaming};

eventbus_tests::backend_cases!(
    seek_then_receive_from_the_new_position,
    update_filters_then_see_them_apply,
    delete_a_group_and_its_deliveries_are_gone,
    delete_a_namespace_and_nothing_of_it_remains,
    delete_a_namespace_in_small_batches,
    another_process_forgets_a_deleted_namespace,
    list_namespaces_and_groups_with_counts,
    partial_state_appears_then_goes_when_complete_or_expired,
);

/// Opens a raw Subscribe stream of group `group` in `ns`.
async fn subscribe(
    c: &Client,
    ns: &str,
    group: &str,
    tweak: impl FnOnce(&mut pb::SubscribeRequest),
) -> Streaming<pb::SubscribeResponse> {
    let mut req = pb::SubscribeRequest { namespace: ns.into(), consumer_group: group.into(), ..Default::default() };
    tweak(&mut req);
    c.raw().subscribe(req).await.unwrap().into_inner()
}

async fn group(c: &Client, ns: &str, group: &str) -> Result<pb::ConsumerGroup, tonic::Status> {
    let req = pb::GetConsumerGroupRequest { namespace: ns.into(), consumer_group: group.into() };
    Ok(c.raw().get_consumer_group(req).await?.into_inner().consumer_group.unwrap())
}

async fn seek(
    c: &Client,
    ns: &str,
    target: pb::SeekTarget,
    sequence: u64,
    time: Option<prost_types::Timestamp>,
) -> Result<pb::SeekConsumerGroupResponse, tonic::Status> {
    let req = pb::SeekConsumerGroupRequest {
        namespace: ns.into(),
        consumer_group: "g".into(),
        target: target as i32,
        sequence,
        time,
    };
    Ok(c.raw().seek_consumer_group(req).await?.into_inner())
}

/// The sequences of the next `n` notifications of a stream, acking each.
async fn take(c: &Client, ns: &str, stream: &mut Streaming<pb::SubscribeResponse>, n: usize) -> Vec<u64> {
    let mut got = Vec::new();
    for _ in 0..n {
        let note = next_notification(stream).await;
        c.ack(ns, "g", [note.sequence]).await.unwrap();
        got.push(note.sequence);
    }
    got
}

async fn seek_then_receive_from_the_new_position(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    // One publish each: notification 3 is the first created at its event's receive time.
    for i in 1..=3 {
        c.publish("ns", [event("a", &i.to_string())]).await.unwrap();
    }
    let mut stream = subscribe(c, "ns", "g", |_| {}).await;
    assert_eq!(take(c, "ns", &mut stream, 3).await, [1, 2, 3]);

    // Back to 2: delivered again, as new (attempt 1), in order.
    let r = seek(c, "ns", pb::SeekTarget::Sequence, 2, None).await.unwrap();
    assert_eq!((r.read_sequence, r.dropped_delivery_count), (1, 0));
    let again = next_notification(&mut stream).await;
    assert_eq!((again.sequence, again.attempt), (2, 1));
    c.ack("ns", "g", [2]).await.unwrap();
    assert_eq!(take(c, "ns", &mut stream, 1).await, [3]);

    // Hold 4 unacked, then seek to the latest: the lease is dropped, only 5 comes.
    c.publish("ns", [event("a", "4")]).await.unwrap();
    assert_eq!(next_notification(&mut stream).await.sequence, 4);
    let r = seek(c, "ns", pb::SeekTarget::Latest, 0, None).await.unwrap();
    let g = r.consumer_group.unwrap();
    assert_eq!((g.read_sequence, r.dropped_delivery_count, g.leased_count, g.pending_count), (4, 1, 0, 0));
    assert_eq!(c.ack("ns", "g", [4]).await.unwrap(), 0, "the dropped lease is settled already");
    c.publish("ns", [event("a", "5")]).await.unwrap();
    assert_eq!(take(c, "ns", &mut stream, 1).await, [5]);

    // By time: from notification 3's creation on.
    let third = c
        .raw()
        .list_events(pb::ListEventsRequest {
            namespace: "ns".into(),
            after_sequence: 2,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let r = seek(c, "ns", pb::SeekTarget::Time, 0, third[0].receive_time).await.unwrap();
    assert_eq!(r.read_sequence, 2);
    assert_eq!(take(c, "ns", &mut stream, 3).await, [3, 4, 5]);

    let past = seek(c, "ns", pb::SeekTarget::Sequence, 7, None).await.unwrap_err();
    assert_eq!(past.code(), Code::FailedPrecondition, "{past:?}");
    assert_eq!(seek(c, "ns", pb::SeekTarget::Sequence, 6, None).await.unwrap().read_sequence, 5);
    let invalid = seek(c, "ns", pb::SeekTarget::Sequence, 0, None).await.unwrap_err();
    assert_eq!((invalid.code(), field_violations(&invalid)), (Code::InvalidArgument, vec!["sequence".to_owned()]));
    assert_eq!(seek(c, "other", pb::SeekTarget::Latest, 0, None).await.unwrap_err().code(), Code::NotFound);
}

async fn update_filters_then_see_them_apply(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf1").one("a")).await.unwrap();
    c.register_listener("ns", ListenerSpecBuilder::start("wf2").one("b")).await.unwrap();
    let mut stream = subscribe(c, "ns", "g", |r| r.workflow_ids = vec!["wf1".into()]).await;
    c.publish("ns", [event("a", "1"), event("b", "2")]).await.unwrap();
    assert_eq!(take(c, "ns", &mut stream, 1).await, [1]);

    let req = pb::UpdateConsumerGroupRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        workflow_ids: vec!["wf2".into()],
        max_attempts: 4,
        update_mask: Some(prost_types::FieldMask { paths: vec!["workflow_ids".into(), "max_attempts".into()] }),
        ..Default::default()
    };
    let g = c.raw().update_consumer_group(req.clone()).await.unwrap().into_inner().consumer_group.unwrap();
    assert_eq!((g.workflow_ids.clone(), g.max_attempts, g.kinds.len()), (vec!["wf2".to_owned()], 4, 0));
    assert_eq!(group(c, "ns", "g").await.unwrap(), g, "nothing pending: the same answer");

    // Notification 2 (wf2) was looked at under the old filter; the new one applies from 3 on.
    c.publish("ns", [event("a", "3"), event("b", "4")]).await.unwrap();
    let note = next_notification(&mut stream).await;
    assert_eq!((note.sequence, note.workflow_id.as_str()), (4, "wf2"));
    c.ack("ns", "g", [4]).await.unwrap();
    let g = group(c, "ns", "g").await.unwrap();
    assert_eq!((g.read_sequence, g.pending_count, g.leased_count, g.connected_stream_count), (4, 0, 0, 1));

    let bad = pb::UpdateConsumerGroupRequest { update_mask: None, ..req.clone() };
    let err = c.raw().update_consumer_group(bad).await.unwrap_err();
    assert_eq!(field_violations(&err), ["update_mask", "workflow_ids", "max_attempts"]);
    let missing = pb::UpdateConsumerGroupRequest { consumer_group: "nope".into(), ..req };
    assert_eq!(c.raw().update_consumer_group(missing).await.unwrap_err().code(), Code::NotFound);
}

async fn delete_a_group_and_its_deliveries_are_gone(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("ns", [event("a", "1"), event("a", "2")]).await.unwrap();
    let mut stream = subscribe(c, "ns", "g", |r| r.max_attempts = 1).await;
    let first = next_notification(&mut stream).await;
    assert!(c.nack("ns", "g", first.sequence, Duration::ZERO, "boom").await.unwrap(), "dead at once");
    assert_eq!(next_notification(&mut stream).await.sequence, 2, "leased, not settled");
    assert_eq!(dead_letters(c, "ns", "g").await.unwrap().len(), 1);

    let req = pb::DeleteConsumerGroupRequest { namespace: "ns".into(), consumer_group: "g".into() };
    let deleted = c.raw().delete_consumer_group(req.clone()).await.unwrap().into_inner();
    assert_eq!(deleted.deleted_delivery_count, 2, "the dead letter and the lease");
    assert_eq!(stream_end(WAIT, &mut stream).await, Some(Code::NotFound), "the open stream ends");
    assert_eq!(dead_letters(c, "ns", "g").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(group(c, "ns", "g").await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.raw().delete_consumer_group(req).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(db.count("SELECT COUNT(*) FROM deliveries").await, 0);

    // A new Subscribe starts afresh: from the earliest notification, attempt 1.
    let mut fresh = subscribe(c, "ns", "g", |_| {}).await;
    let again = next_notification(&mut fresh).await;
    assert_eq!((again.sequence, again.attempt), (1, 1));
}

/// Fills a namespace with a row of every kind: events, a START listener, an ALL listener with a
/// partial state, notifications, a group with a dead letter and one with a lease. Returns the
/// streams, which hold their leases while they are open (a closing stream would race the
/// hand-over of the last notification).
async fn fill(c: &Client, ns: &str) -> [Streaming<pb::SubscribeResponse>; 2] {
    c.register_listener(ns, ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.register_listener(ns, ListenerSpecBuilder::start("wf").all(["x", "y"])).await.unwrap();
    c.publish(ns, [event("a", "1"), event("a", "2"), event("x", "3")]).await.unwrap();
    let mut dead = subscribe(c, ns, "dead", |r| r.max_attempts = 1).await;
    let note = next_notification(&mut dead).await;
    assert!(c.nack(ns, "dead", note.sequence, Duration::ZERO, "boom").await.unwrap());
    let mut lagging = subscribe(c, ns, "lagging", |r| r.start = pb::StartPosition::Latest as i32).await;
    c.publish(ns, [event("a", "4")]).await.unwrap();
    assert_eq!(next_notification(&mut lagging).await.sequence, 3);
    [dead, lagging]
}

/// Rows of `ns` per table; partial states by their listener.
async fn rows_of(db: &Database, ns: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in [
        "namespaces WHERE name",
        "events WHERE namespace",
        "listeners WHERE namespace",
        "notifications WHERE namespace",
        "consumer_groups WHERE namespace",
        "deliveries WHERE namespace",
    ] {
        counts.push(db.count(&format!("SELECT COUNT(*) FROM {table} = '{ns}'")).await);
    }
    let partials = "SELECT COUNT(*) FROM partials p JOIN listeners l ON l.id = p.listener_id WHERE l.namespace";
    counts.push(db.count(&format!("{partials} = '{ns}'")).await);
    counts
}

async fn delete_a_namespace_and_nothing_of_it_remains(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let _doomed = fill(c, "doomed").await;
    let _kept = fill(c, "kept").await;
    let kept = rows_of(&db, "kept").await;
    assert!(kept.iter().all(|n| *n > 0), "every table holds rows of the namespace: {kept:?}");
    assert_eq!(rows_of(&db, "doomed").await, kept);

    let req = pb::DeleteNamespaceRequest { namespace: "doomed".into() };
    let d = c.raw().delete_namespace(req.clone()).await.unwrap().into_inner();
    let counts = [
        d.deleted_event_count,
        d.deleted_listener_count,
        d.deleted_partial_state_count,
        d.deleted_notification_count,
        d.deleted_consumer_group_count,
        d.deleted_delivery_count,
    ];
    // Deliveries: `dead` holds 1 dead, 2 and 3 leased; `lagging` holds 3.
    assert_eq!(counts, [4, 2, 1, 3, 2, 4]);
    assert_eq!(rows_of(&db, "doomed").await, [0; 7]);
    assert_eq!(db.count("SELECT COUNT(*) FROM partials WHERE listener_id NOT IN (SELECT id FROM listeners)").await, 0);
    assert_eq!(rows_of(&db, "kept").await, kept, "another namespace is untouched");

    let mut raw = c.raw();
    let get = pb::GetEventRequest { namespace: "doomed".into(), key: Some(pb::get_event_request::Key::Sequence(1)) };
    assert_eq!(raw.get_event(get).await.unwrap_err().code(), Code::NotFound);
    let events = raw.list_events(pb::ListEventsRequest { namespace: "doomed".into(), ..Default::default() });
    assert!(events.await.unwrap().into_inner().events.is_empty());
    let listeners =
        pb::ListListenersRequest { namespace: "doomed".into(), include_finished: true, ..Default::default() };
    assert!(raw.list_listeners(listeners).await.unwrap().into_inner().listeners.is_empty());
    let groups = pb::ListConsumerGroupsRequest { namespace: "doomed".into(), ..Default::default() };
    assert!(raw.list_consumer_groups(groups).await.unwrap().into_inner().consumer_groups.is_empty());
    let names = raw.list_namespaces(pb::ListNamespacesRequest::default()).await.unwrap().into_inner().namespaces;
    assert_eq!(names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["kept"]);
    assert_eq!(raw.delete_namespace(req).await.unwrap_err().code(), Code::NotFound);

    // The name can be used again, from scratch.
    let r = c.publish("doomed", [event("a", "1")]).await.unwrap();
    assert_eq!((r[0].sequence, r[0].duplicate), (1, false));
    assert_eq!(
        db.count("SELECT COUNT(*) FROM notifications WHERE namespace = 'doomed'").await,
        0,
        "no listener survived"
    );
}

async fn delete_a_namespace_in_small_batches(db: Database) {
    let store = Store::open(StoreConfig::new(&db.url)).await.unwrap();
    for ns in ["a", "b"] {
        store.register_listener(ns, eventbus_tests::spec_one("wf", "t"), None, Default::default()).await.unwrap();
        let events: Vec<_> = (0..5).map(|i| eventbus_tests::engine_event("t", &format!("{i}"))).collect();
        store.publish(ns, events).await.unwrap();
    }
    let purged = store.delete_namespace("a", 2).await.unwrap();
    assert_eq!((purged.events, purged.notifications, purged.listeners), (5, 5, 1));
    assert_eq!(rows_of(&db, "a").await, [0; 7]);
    assert_eq!(rows_of(&db, "b").await, [1, 5, 1, 5, 0, 0, 0]);
    assert_eq!(store.delete_namespace("a", 2).await.unwrap_err().kind(), eventbus_engine::ErrorKind::NotFound);
}

/// A process that had loaded a namespace's listeners reloads them after another process deleted
/// the namespace: the deleted listener does not fire there.
async fn another_process_forgets_a_deleted_namespace(db: Database) {
    let one = Store::open(StoreConfig::new(&db.url)).await.unwrap();
    let two = Store::open(StoreConfig::new(&db.url)).await.unwrap();
    one.register_listener("ns", eventbus_tests::spec_one("wf", "t"), None, Default::default()).await.unwrap();
    one.publish("ns", vec![eventbus_tests::engine_event("t", "1")]).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM notifications").await, 1);
    two.delete_namespace("ns", 1000).await.unwrap();
    one.publish("ns", vec![eventbus_tests::engine_event("t", "2")]).await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM notifications").await, 0, "the deleted listener did not fire");
    let listed = one.list_listeners("ns", ListenerQuery::default()).await.unwrap();
    assert!(listed.items.is_empty());
}

async fn list_namespaces_and_groups_with_counts(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("b", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("b", [event("a", "1"), event("a", "2"), event("z", "3")]).await.unwrap();
    c.publish("a", [event("a", "1")]).await.unwrap();
    let _g1 = subscribe(c, "b", "g1", |r| r.max_in_flight = 1).await;
    let _g2 = subscribe(c, "b", "g2", |r| r.kinds = vec![pb::NotificationKind::Wake as i32]).await;

    let mut raw = c.raw();
    let first = raw
        .list_namespaces(pb::ListNamespacesRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.namespaces.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["a"]);
    let rest = raw
        .list_namespaces(pb::ListNamespacesRequest { page_size: 1, page_token: first.next_page_token })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.namespaces,
        [pb::Namespace {
            name: "b".into(),
            event_count: 3,
            active_listener_count: 1,
            consumer_group_count: 2,
            last_event_sequence: 3,
            last_notification_sequence: 2,
        }]
    );
    assert!(rest.next_page_token.is_empty());
    let bad = raw.list_namespaces(pb::ListNamespacesRequest { page_token: "x.y".into(), ..Default::default() });
    assert_eq!(field_violations(&bad.await.unwrap_err()), ["page_token"]);

    let groups = pb::ListConsumerGroupsRequest { namespace: "b".into(), ..Default::default() };
    let groups = raw.list_consumer_groups(groups).await.unwrap().into_inner().consumer_groups;
    let summary: Vec<_> = groups
        .iter()
        .map(|g| {
            (g.name.as_str(), g.pending_count, g.leased_count, g.connected_stream_count, g.oldest_pending_age.is_some())
        })
        .collect();
    // g1 holds one lease (max_in_flight 1), one waits; g2 takes only WAKE: nothing pending.
    assert_eq!(summary, [("g1", 1, 1, 1, true), ("g2", 0, 0, 1, false)]);
    assert_eq!(groups[1].kinds, [pb::NotificationKind::Wake as i32]);
}

async fn get_listener(c: &Client, id: &str) -> pb::GetListenerResponse {
    let req = pb::GetListenerRequest { namespace: "ns".into(), id: id.into(), include_partial_state: true };
    c.raw().get_listener(req).await.unwrap().into_inner()
}

async fn partial_state_appears_then_goes_when_complete_or_expired(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let spec =
        ListenerSpecBuilder::start("wf").all(["a", "b"]).correlate_by(["subject"]).lifespan(Duration::from_secs(3600));
    let id = c.register_listener("ns", spec).await.unwrap().id;
    let a = CloudEventBuilder::new(SOURCE, "a").id("1").subject("k1").build();
    c.publish("ns", [a]).await.unwrap();
    let got = get_listener(c, &id).await;
    assert_eq!(got.partial_states.len(), 1);
    let state = &got.partial_states[0];
    assert_eq!(state.correlation.get("subject").map(String::as_str), Some("k1"));
    assert_eq!(state.missing_types, ["b"]);
    let e = &state.events[0];
    assert_eq!((e.r#type.as_str(), e.id.as_str(), e.source.as_str(), e.sequence), ("a", "1", SOURCE, 1));
    let (received, expires) = (e.receive_time.unwrap(), e.expire_time.unwrap());
    assert_eq!((expires.seconds - received.seconds, expires.nanos), (3600, received.nanos));
    let plain = pb::GetListenerRequest { namespace: "ns".into(), id: id.clone(), include_partial_state: false };
    assert!(c.raw().get_listener(plain).await.unwrap().into_inner().partial_states.is_empty());

    let b = CloudEventBuilder::new(SOURCE, "b").id("2").subject("k1").build();
    c.publish("ns", [b]).await.unwrap();
    assert!(get_listener(c, &id).await.partial_states.is_empty(), "the set completed");

    let spec = ListenerSpecBuilder::start("wf").all(["c", "d"]).lifespan(Duration::from_secs(1));
    let short = c.register_listener("ns", spec).await.unwrap().id;
    c.publish("ns", [event("c", "3")]).await.unwrap();
    let got = get_listener(c, &short).await;
    assert_eq!(got.partial_states.len(), 1);
    assert!(got.partial_states[0].correlation.is_empty());
    // The lifespan is the signal: wait until the collected event's expiry has passed.
    let expires = got.partial_states[0].events[0].expire_time.unwrap();
    let expires = std::time::UNIX_EPOCH + Duration::new(expires.seconds as u64, expires.nanos as u32);
    let left = expires.duration_since(std::time::SystemTime::now()).unwrap_or_default();
    tokio::time::sleep(left + Duration::from_millis(50)).await;
    assert!(get_listener(c, &short).await.partial_states.is_empty(), "the collected event expired");
}
