//! Every error class end to end, over real sockets against the in-process server: the server's
//! limits (RESOURCE_EXHAUSTED, and what each rejection leaves unchanged), FAILED_PRECONDITION,
//! UNAVAILABLE while the database is away and recovery once it is back (Postgres, through a
//! proxy the test cuts), and internal errors masked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use eventbus_client::pb;
use eventbus_client::{CloudEventBuilder, ListenerSpecBuilder, SubscribeOptions};
use eventbus_tests::{
    Database, Proxy, SOURCE, TestServer, WAIT, dead_letters, delivery_within, event, field_violations, next_delivery,
    next_notification, stream_end, string_attr, within,
};
use tonic::Code;

eventbus_tests::backend_cases!(
    publish_over_the_message_size_is_resource_exhausted,
    more_events_than_the_limit_is_invalid_argument,
    events_over_attribute_and_data_limits_are_resource_exhausted,
    calls_over_the_streams_per_connection_wait_for_a_free_stream,
    subscribe_over_the_subscription_limit_is_resource_exhausted,
    subscribe_with_other_group_settings_is_failed_precondition,
    nack_of_a_settled_notification_is_failed_precondition,
    internal_errors_are_masked,
);

eventbus_tests::backend_cases!(postgres only: database_outage_answers_unavailable_and_recovers);

/// Longest a call may take to answer while the database is away: the pool's acquire timeout
/// (5 s), with a margin. Commands that queue behind a failing one fail with it instead of each
/// waiting the timeout out in turn.
const OUTAGE_ANSWER: Duration = Duration::from_secs(8);

async fn stored_ids(s: &TestServer, ns: &str) -> Vec<(u64, String)> {
    let list = s
        .client
        .raw()
        .list_events(pb::ListEventsRequest { namespace: ns.into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    list.events.into_iter().map(|e| (e.sequence, e.event.unwrap().id)).collect()
}

fn subscribe_request(group: &str) -> pb::SubscribeRequest {
    pb::SubscribeRequest { namespace: "ns".into(), consumer_group: group.into(), ..Default::default() }
}

async fn publish_over_the_message_size_is_resource_exhausted(db: Database) {
    let s = TestServer::start_with(&db, |c| c.limits.max_message_bytes = 64 << 10).await;
    let big = CloudEventBuilder::new(SOURCE, "a").id("big").data_binary("application/octet-stream", vec![7; 65 << 10]);
    let err = s.client.publish("ns", [big.build()]).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.details().is_empty(), "no handler saw the request, so no field is named");
    assert!(stored_ids(&s, "ns").await.is_empty(), "an oversized publish stores nothing");
    let fits =
        CloudEventBuilder::new(SOURCE, "a").id("fits").data_binary("application/octet-stream", vec![7; 60 << 10]);
    let r = s.client.publish("ns", [fits.build()]).await.unwrap();
    assert_eq!((r[0].sequence, r[0].duplicate), (1, false));
    assert_eq!(stored_ids(&s, "ns").await, vec![(1, "fits".to_string())]);
}

/// The contract makes the event count a validation rule (INVALID_ARGUMENT on `events`), not a
/// resource limit; a configured smaller limit behaves the same.
async fn more_events_than_the_limit_is_invalid_argument(db: Database) {
    let s = TestServer::start_with(&db, |c| c.limits.max_events_per_publish = 3).await;
    let four: Vec<_> = (0..4).map(|i| event("a", &i.to_string())).collect();
    let err = s.client.publish("ns", four).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!((status.code(), field_violations(status)), (Code::InvalidArgument, vec!["events".to_string()]));
    assert!(stored_ids(&s, "ns").await.is_empty(), "a rejected publish stores nothing");
    let three: Vec<_> = (0..3).map(|i| event("a", &i.to_string())).collect();
    assert_eq!(s.client.publish("ns", three).await.unwrap().len(), 3);
    assert_eq!(stored_ids(&s, "ns").await.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), vec![1, 2, 3]);
}

async fn events_over_attribute_and_data_limits_are_resource_exhausted(db: Database) {
    let s = TestServer::start_with(&db, |c| {
        c.limits.max_attributes = 2;
        c.limits.max_data_bytes = 16;
    })
    .await;
    let with_attrs = |id: &str, n: usize| {
        let mut e = event("a", id);
        for i in 0..n {
            e.attributes.insert(format!("ext{i}"), string_attr("x"));
        }
        e
    };
    let with_data =
        |id: &str, n: usize| CloudEventBuilder::new(SOURCE, "a").id(id).data_text("text/plain", "d".repeat(n)).build();
    // data_text sets datacontenttype: one attribute of the two allowed.
    let err =
        s.client.publish("ns", [event("a", "ok"), with_attrs("attrs", 3), with_data("data", 17)]).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(
        (status.code(), field_violations(status)),
        (Code::ResourceExhausted, vec!["events[1].attributes".to_string(), "events[2].data".to_string()])
    );
    assert!(stored_ids(&s, "ns").await.is_empty(), "a publish over a limit stores nothing, not even the valid event");
    let mut invalid = with_attrs("invalid", 3);
    invalid.source.clear();
    let err = s.client.publish("ns", [invalid, with_data("data", 17)]).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(
        (status.code(), field_violations(status)),
        (Code::InvalidArgument, vec!["events[0].source".to_string()]),
        "an invalid request is INVALID_ARGUMENT, whatever limits it also exceeds"
    );
    let r = s.client.publish("ns", [with_attrs("attrs", 2), with_data("data", 16)]).await.unwrap();
    assert_eq!(r.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![1, 2], "exactly at the limits is fine");
    assert_eq!(stored_ids(&s, "ns").await, vec![(1, "attrs".to_string()), (2, "data".to_string())]);
}

/// The per-connection limit is HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS: a client does not open
/// more streams than it allows, so a call over the limit waits for a stream of its connection
/// to end instead of failing; other connections are not affected.
async fn calls_over_the_streams_per_connection_wait_for_a_free_stream(db: Database) {
    let s = TestServer::start_with(&db, |c| c.limits.max_streams_per_connection = 2).await;
    // A first answer on the connection means the client has the server's SETTINGS.
    assert!(stored_ids(&s, "ns").await.is_empty());
    let mut raw = s.client.raw();
    let first = raw.subscribe(subscribe_request("g1")).await.unwrap().into_inner();
    let second = raw.subscribe(subscribe_request("g2")).await.unwrap().into_inner();
    let third = tokio::spawn({
        let client = s.client.clone();
        async move { client.publish("ns", [event("a", "1")]).await }
    });
    let other = eventbus_client::Client::connect(format!("http://{}", s.addr)).await.unwrap();
    let r = within(WAIT, "a publish on another connection", other.publish("ns", [event("a", "2")])).await.unwrap();
    assert_eq!(r[0].sequence, 1, "the other connection's publish went first");
    // No signal exists for a call that has not happened: give it time it would not need.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "a third call on a connection with two open streams waits");
    drop(first);
    let r = within(WAIT, "the waiting call once a stream ended", third).await.unwrap().unwrap();
    assert_eq!((r[0].sequence, r[0].duplicate), (2, false));
    drop(second);
    assert_eq!(stored_ids(&s, "ns").await, vec![(1, "2".to_string()), (2, "1".to_string())]);
}

async fn subscribe_over_the_subscription_limit_is_resource_exhausted(db: Database) {
    let s = TestServer::start_with(&db, |c| c.limits.max_subscriptions = 2).await;
    s.client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let mut raw = s.client.raw();
    let first = raw.subscribe(subscribe_request("g1")).await.unwrap().into_inner();
    let mut second = raw.subscribe(subscribe_request("g2")).await.unwrap().into_inner();
    let rejected = pb::SubscribeRequest { max_attempts: 5, ..subscribe_request("g3") };
    let err = raw.subscribe(rejected.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(raw.subscribe(rejected).await.unwrap_err().code(), Code::ResourceExhausted);
    // The open streams keep working.
    s.client.publish("ns", [event("a", "1")]).await.unwrap();
    assert_eq!(next_notification(&mut second).await.sequence, 1);
    // A stream that ends frees its slot once the server has released its leases; no signal
    // reaches the client, so poll with a deadline.
    drop(first);
    let other_settings = pb::SubscribeRequest { max_attempts: 7, ..subscribe_request("g3") };
    let deadline = Instant::now() + Duration::from_secs(10);
    let _third = loop {
        match raw.subscribe(other_settings.clone()).await {
            Ok(stream) => break stream.into_inner(),
            Err(e) if e.code() == Code::ResourceExhausted && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // FAILED_PRECONDITION here would mean a rejected Subscribe created g3.
            Err(e) => panic!("a freed slot takes a new stream: {e:?}"),
        }
    };
    let err = raw.subscribe(subscribe_request("g4")).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "exactly two slots: the rejected calls held none");
}

async fn subscribe_with_other_group_settings_is_failed_precondition(db: Database) {
    let s = TestServer::start_with(&db, |c| c.limits.max_subscriptions = 2).await;
    let mut raw = s.client.raw();
    let start = pb::NotificationKind::Start as i32;
    let wake = pb::NotificationKind::Wake as i32;
    let created = pb::SubscribeRequest {
        kinds: vec![start, wake],
        workflow_ids: vec!["wf1".into(), "wf2".into()],
        max_attempts: 3,
        ..subscribe_request("g")
    };
    let _first = raw.subscribe(created.clone()).await.unwrap().into_inner();
    let others = [
        pb::SubscribeRequest { kinds: vec![start], ..created.clone() },
        pb::SubscribeRequest { workflow_ids: vec!["wf1".into()], ..created.clone() },
        pb::SubscribeRequest { max_attempts: 4, ..created.clone() },
        pb::SubscribeRequest { max_attempts: 0, ..created.clone() },
    ];
    for (i, other) in others.into_iter().enumerate() {
        let err = raw.subscribe(other).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "variant {i}: {err:?}");
        assert!(err.details().is_empty());
    }
    // Order, duplicates and per-stream settings do not matter; the rejected calls held no slot
    // and changed nothing.
    let same = pb::SubscribeRequest {
        kinds: vec![wake, start, wake],
        workflow_ids: vec!["wf2".into(), "wf1".into(), "wf2".into()],
        max_in_flight: 7,
        lease_duration: Some(prost_types::Duration { seconds: 5, nanos: 0 }),
        start: pb::StartPosition::Latest as i32,
        ..created.clone()
    };
    let _second = raw.subscribe(same).await.unwrap().into_inner();
}

async fn nack_of_a_settled_notification_is_failed_precondition(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("ns", [event("a", "1"), event("a", "2")]).await.unwrap();
    let mut o = SubscribeOptions::new("ns", "g");
    o.max_attempts = 1;
    let mut sub = c.subscribe(o).await.unwrap();
    let first = next_delivery(&mut sub).await;
    let second = next_delivery(&mut sub).await;
    assert_eq!((first.notification().sequence, second.notification().sequence), (1, 2));
    first.ack().await.unwrap();
    assert!(second.nack(Duration::ZERO, "boom").await.unwrap(), "the only attempt is used up");
    for (seq, why) in [(1, "acked"), (2, "dead")] {
        let err = c.nack("ns", "g", seq, Duration::ZERO, "late").await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "nacking an {why} notification: {err:?}");
    }
    assert_eq!(c.nack("ns", "g", 3, Duration::ZERO, "x").await.unwrap_err().code(), Code::NotFound);
    // A group that does not exist, or exists only in another namespace, is NOT_FOUND for every
    // call that names one.
    for (ns, group) in [("ns", "other"), ("ns2", "g")] {
        let codes = [
            c.ack(ns, group, [1]).await.unwrap_err().code(),
            c.nack(ns, group, 1, Duration::ZERO, "x").await.unwrap_err().code(),
            dead_letters(c, ns, group).await.unwrap_err().code(),
            c.raw()
                .redrive_dead_letters(pb::RedriveDeadLettersRequest {
                    namespace: ns.into(),
                    consumer_group: group.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err()
                .code(),
        ];
        assert_eq!(codes, [Code::NotFound; 4], "{ns}/{group}");
    }
    let dead = dead_letters(c, "ns", "g").await.unwrap();
    assert_eq!(
        dead.iter().map(|d| (d.notification.as_ref().unwrap().sequence, d.last_error.as_str())).collect::<Vec<_>>(),
        vec![(2, "boom")],
        "the rejected nacks changed nothing"
    );
}

async fn internal_errors_are_masked(db: Database) {
    let s = TestServer::start(&db).await;
    s.client.publish("ns", [event("a", "1")]).await.unwrap();
    // Take a table away behind the server's back: its statements fail in the database.
    db.execute("ALTER TABLE events RENAME TO events_gone").await;
    let err = s.client.publish("ns", [event("a", "2")]).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!((status.code(), status.message()), (Code::Internal, "internal error"));
    assert!(status.details().is_empty() && status.metadata().get("grpc-status-details-bin").is_none());
    let err = s
        .client
        .raw()
        .list_events(pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Internal, "internal error"));
}

async fn database_outage_answers_unavailable_and_recovers(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let s = TestServer::start(&db.through(proxy.addr)).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let before = c.publish("ns", [event("a", "1"), event("a", "2")]).await.unwrap();
    assert_eq!(before.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![1, 2]);
    let mut raw = c.raw();
    let mut stream = raw.subscribe(subscribe_request("raw")).await.unwrap().into_inner();
    let mut sub = c.subscribe(SubscribeOptions::new("ns", "sub")).await.unwrap();
    for seq in [1, 2] {
        let d = next_delivery(&mut sub).await;
        assert_eq!(d.notification().sequence, seq);
        d.ack().await.unwrap();
        assert_eq!(next_notification(&mut stream).await.sequence, seq);
        assert_eq!(c.ack("ns", "raw", [seq]).await.unwrap(), 1);
    }

    proxy.cut().await;
    let started = Instant::now();
    let err = within(OUTAGE_ANSWER, "a publish to answer", c.publish("ns", [event("a", "3")])).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "database unavailable, retry later"));
    eprintln!("publish answered UNAVAILABLE after {:?}", started.elapsed());
    let err = within(
        OUTAGE_ANSWER,
        "a read to answer",
        raw.list_events(pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() }),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(
        stream_end(OUTAGE_ANSWER, &mut stream).await,
        Some(Code::Unavailable),
        "a stream whose database went away ends with UNAVAILABLE"
    );

    proxy.restore().await;
    // The pool reconnects on the next call; no signal says when, so retry with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        match c.publish("ns", [event("a", "3")]).await {
            Ok(r) => break r,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish after the database came back: {e:?}"),
        }
    };
    assert_eq!((after[0].sequence, after[0].duplicate), (3, false), "the failed publish stored nothing");
    assert_eq!(
        stored_ids(&s, "ns").await,
        vec![(1, "1".to_string()), (2, "2".to_string()), (3, "3".to_string())],
        "the events published before the outage are intact"
    );
    let d = delivery_within(Duration::from_secs(30), "the reconnecting subscription to deliver", &mut sub).await;
    assert_eq!((d.notification().sequence, d.notification().attempt), (3, 1));
    d.ack().await.unwrap();
    let mut stream = raw.subscribe(subscribe_request("raw")).await.unwrap().into_inner();
    let n = next_notification(&mut stream).await;
    assert_eq!((n.sequence, n.attempt), (3, 1));
}
