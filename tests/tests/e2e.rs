//! End to end over real sockets: every RPC against the in-process server, on SQLite and on
//! Postgres.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use eventbus_client::pb;
use eventbus_client::{CloudEventBuilder, ListenerSpecBuilder, StartPosition, SubscribeOptions};
use eventbus_engine::store::trigger_span_id;
use eventbus_tests::{
    Database, SOURCE, TestServer, WAIT, dead_letters, event, field_violations, next_delivery, next_notification,
    stream_end, string_attr, within,
};
use tonic::Code;

eventbus_tests::backend_cases!(
    publish_and_history,
    invalid_input_names_the_field_and_changes_nothing,
    listeners_over_grpc,
    subscribe_ack_and_broadcast_across_groups,
    redelivery_after_a_subscriber_dies,
    late_nack_and_ack_after_the_stream_died,
    one_group_shares_the_load_between_streams,
    notification_survives_restart,
    nack_dead_letters_and_redrive,
    graceful_shutdown_ends_streams_with_unavailable,
);

async fn publish_and_history(db: Database) {
    let s = TestServer::start(&db).await;
    let r = s.client.publish("ns", [event("a", "1"), event("b", "2"), event("a", "1")]).await.unwrap();
    assert_eq!(
        r.iter().map(|r| (r.sequence, r.duplicate)).collect::<Vec<_>>(),
        vec![(1, false), (2, false), (1, true)]
    );
    let mut raw = s.client.raw();
    let got = raw
        .get_event(pb::GetEventRequest { namespace: "ns".into(), key: Some(pb::get_event_request::Key::Sequence(2)) })
        .await
        .unwrap()
        .into_inner()
        .event
        .unwrap();
    assert_eq!(got.sequence, 2);
    assert_eq!(got.event.unwrap().id, "2");
    let key = pb::EventKey { source: SOURCE.into(), id: "1".into() };
    let got = raw
        .get_event(pb::GetEventRequest { namespace: "ns".into(), key: Some(pb::get_event_request::Key::SourceId(key)) })
        .await
        .unwrap();
    assert_eq!(got.into_inner().event.unwrap().sequence, 1);
    let missing = raw
        .get_event(pb::GetEventRequest {
            namespace: "other".into(),
            key: Some(pb::get_event_request::Key::Sequence(1)),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "another namespace's event is not revealed");
    let list = raw
        .list_events(pb::ListEventsRequest { namespace: "ns".into(), r#type: "a".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.events.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1]);
    let page = raw
        .list_events(pb::ListEventsRequest { namespace: "ns".into(), page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.events.len(), 1);
    let rest = raw
        .list_events(pb::ListEventsRequest {
            namespace: "ns".into(),
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.events.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![2]);
}

async fn invalid_input_names_the_field_and_changes_nothing(db: Database) {
    let s = TestServer::start(&db).await;
    let mut bad = event("a", "2");
    bad.source.clear();
    let mut bad_ext = event("a", "3");
    bad_ext.attributes.insert("Bad-Name".into(), string_attr("x"));
    let mut shadow = event("a", "4");
    shadow.attributes.insert("type".into(), string_attr("x"));
    let mut version = event("a", "5");
    version.spec_version = "0.3".into();
    let err = s.client.publish("ns", [event("a", "1"), bad, bad_ext, shadow, version]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        field_violations(err.status().unwrap()),
        vec![
            "events[1].source",
            "events[2].attributes[Bad-Name]",
            "events[3].attributes[type]",
            "events[4].spec_version"
        ]
    );
    let mut raw = s.client.raw();
    let list = raw.list_events(pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() }).await.unwrap();
    assert!(list.into_inner().events.is_empty(), "a rejected publish stores nothing");
    let too_many: Vec<_> = (0..1001).map(|i| event("a", &i.to_string())).collect();
    let err = s.client.publish("ns", too_many).await.unwrap_err();
    assert_eq!(
        (err.code(), field_violations(err.status().unwrap())),
        (Code::InvalidArgument, vec!["events".to_string()])
    );
    let err = s.client.publish("bad namespace!", [event("a", "1")]).await.unwrap_err();
    assert_eq!(field_violations(err.status().unwrap()), vec!["namespace"]);
    let err =
        s.client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a").any(["b", "b"])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = s
        .client
        .register_listener(
            "ns",
            pb::ListenerSpec {
                kind: pb::ListenerKind::Wait as i32,
                condition: pb::ListenerCondition::One as i32,
                types: vec!["a".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        field_violations(err.status().unwrap()),
        vec!["listener.instance_id"],
        "a WAIT without a target is rejected"
    );
    let err = s.client.get_listener("ns", "not-a-uuid").await.unwrap_err();
    assert_eq!(field_violations(err.status().unwrap()), vec!["id"]);
    let err = s.client.get_listener("ns", uuid::Uuid::now_v7().to_string()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

async fn listeners_over_grpc(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let a = c.register_listener("ns", ListenerSpecBuilder::start("wf1").one("a")).await.unwrap();
    let b = c
        .register_listener("ns", ListenerSpecBuilder::wait("i1").all(["a", "b"]).correlate_by(["orderid"]))
        .await
        .unwrap();
    let r1 =
        c.register_listener_with_request_id("ns", ListenerSpecBuilder::start("wf2").one("c"), "req-1").await.unwrap();
    let r2 =
        c.register_listener_with_request_id("ns", ListenerSpecBuilder::start("wf2").one("c"), "req-1").await.unwrap();
    assert!(r1.created && !r2.created);
    assert_eq!(r1.listener.id, r2.listener.id);
    let err = c
        .register_listener_with_request_id("ns", ListenerSpecBuilder::start("wf2").one("d"), "req-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(c.get_listener("ns", &a.id).await.unwrap().id, a.id);
    assert_eq!(c.get_listener("other", &a.id).await.unwrap_err().code(), Code::NotFound);
    let all = c.list_listeners("ns", &Default::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(c.delete_listeners_for_instance("ns", "i1").await.unwrap(), 1);
    assert_eq!(c.get_listener("ns", &b.id).await.unwrap_err().code(), Code::NotFound);
    c.delete_listener("ns", &a.id).await.unwrap();
    assert_eq!(c.delete_listener("ns", &a.id).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.delete_listeners_for_workflow("ns", "wf2").await.unwrap(), 1);
    assert!(c.list_listeners("ns", &Default::default()).await.unwrap().is_empty());
}

async fn subscribe_ack_and_broadcast_across_groups(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("order.created")).await.unwrap();
    let mut g1 = c.subscribe(SubscribeOptions::new("ns", "g1")).await.unwrap();
    let mut g2 = c.subscribe(SubscribeOptions::new("ns", "g2")).await.unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    let e = CloudEventBuilder::new("/shop", "order.created").id("o1").trace(traceparent, "").build();
    c.publish("ns", [e]).await.unwrap();
    for sub in [&mut g1, &mut g2] {
        let d = next_delivery(sub).await;
        let n = d.notification();
        assert_eq!(n.kind, pb::NotificationKind::Start as i32);
        assert_eq!(n.workflow_id, "wf");
        assert_eq!(n.attempt, 1);
        assert_eq!(n.events.len(), 1);
        assert_eq!(n.events[0].id, "o1");
        // The trigger's span (its id derived from the fire id), a child of the publish call's.
        let fire_id = uuid::Uuid::parse_str(&n.fire_id).unwrap();
        let trigger_span: String = trigger_span_id(fire_id).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(n.traceparent, format!("00-{trace_id}-{trigger_span}-01"));
        d.ack().await.unwrap();
    }
    assert_eq!(c.ack("ns", "g1", [1]).await.unwrap(), 0, "acking twice is harmless");
}

async fn redelivery_after_a_subscriber_dies(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("ns", [event("a", "1")]).await.unwrap();
    let mut first = c.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = next_delivery(&mut first).await;
    assert_eq!(d.notification().attempt, 1);
    drop(d);
    drop(first); // dies without acking
    let mut second = c.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = next_delivery(&mut second).await;
    assert_eq!((d.notification().sequence, d.notification().attempt), (1, 2));
    d.ack().await.unwrap();
}

async fn late_nack_and_ack_after_the_stream_died(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("ns", [event("a", "1")]).await.unwrap();
    let mut first = c.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = next_delivery(&mut first).await;
    drop(d);
    drop(first); // its leases are released as the stream ends
    // The runner finished late: whether or not the lease ended yet, nack and ack still count.
    assert!(!c.nack("ns", "g", 1, Duration::from_secs(3600), "late").await.unwrap());
    assert_eq!(c.ack("ns", "g", [1]).await.unwrap(), 1);
    c.publish("ns", [event("a", "2")]).await.unwrap();
    let mut second = c.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = next_delivery(&mut second).await;
    assert_eq!((d.notification().sequence, d.notification().attempt), (2, 1), "1 was acked: never again");
    d.ack().await.unwrap();
}

async fn one_group_shares_the_load_between_streams(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let mut o = SubscribeOptions::new("ns", "g");
    o.max_in_flight = 5;
    let mut s1 = c.subscribe(o.clone()).await.unwrap();
    let mut s2 = c.subscribe(o).await.unwrap();
    let events: Vec<_> = (0..10).map(|i| event("a", &i.to_string())).collect();
    c.publish("ns", events).await.unwrap();
    let mut seen = BTreeSet::new();
    for _ in 0..5 {
        for sub in [&mut s1, &mut s2] {
            let d = next_delivery(sub).await;
            assert!(seen.insert(d.notification().sequence), "no notification twice");
        }
    }
    assert_eq!(seen, (1..=10).collect(), "each stream holds 5 (its max in flight), together all 10");
}

async fn notification_survives_restart(db: Database) {
    let s = TestServer::start(&db).await;
    s.client.register_listener("ns", ListenerSpecBuilder::start("wf").all(["a", "b"])).await.unwrap();
    s.client.publish("ns", [event("a", "1")]).await.unwrap();
    s.stop().await;
    let s = TestServer::start(&db).await;
    s.client.publish("ns", [event("b", "2")]).await.unwrap();
    s.stop().await;
    let s = TestServer::start(&db).await;
    let mut sub = s.client.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = next_delivery(&mut sub).await;
    assert_eq!(d.notification().events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), vec!["1", "2"]);
}

async fn nack_dead_letters_and_redrive(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    c.publish("ns", [event("a", "1")]).await.unwrap();
    let mut o = SubscribeOptions::new("ns", "g");
    o.max_attempts = 2;
    o.start = StartPosition::Earliest;
    let mut sub = c.subscribe(o).await.unwrap();
    let d = next_delivery(&mut sub).await;
    assert!(!d.nack(Duration::ZERO, "boom 1").await.unwrap());
    let d = next_delivery(&mut sub).await;
    assert_eq!(d.notification().attempt, 2);
    assert!(d.nack(Duration::ZERO, "boom 2").await.unwrap(), "attempts used up");
    let dead = dead_letters(c, "ns", "g").await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].last_error, "boom 2");
    let n = c
        .raw()
        .redrive_dead_letters(pb::RedriveDeadLettersRequest {
            namespace: "ns".into(),
            consumer_group: "g".into(),
            sequences: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(n.redriven_count, 1);
    let d = next_delivery(&mut sub).await;
    assert_eq!((d.notification().sequence, d.notification().attempt), (1, 1));
    // Nacking it now is FAILED_PRECONDITION: faults.rs, nack_of_a_settled_notification_is_failed_precondition.
    d.ack().await.unwrap();
}

async fn graceful_shutdown_ends_streams_with_unavailable(db: Database) {
    let s = TestServer::start(&db).await;
    s.client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let mut raw = s.client.raw();
    let mut stream = raw
        .subscribe(pb::SubscribeRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    s.client.publish("ns", [event("a", "1")]).await.unwrap();
    // The stream is live before the shutdown: it delivers.
    assert_eq!(next_notification(&mut stream).await.sequence, 1);
    let stopping = tokio::spawn(s.stop());
    assert_eq!(stream_end(WAIT, &mut stream).await, Some(Code::Unavailable));
    within(WAIT, "the server to stop", stopping).await.unwrap();
}
