//! The contract's rules where the store is involved, end to end on both backends: a rejected
//! request stores nothing, page tokens are bound to their namespace and filters, a request_id is
//! free again once its listener is deleted, ALL listeners report the FIRST policy they got; and
//! bodies that do not decode are INVALID_ARGUMENT on every method, with no decoder text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventbus_client::pb::cloud_event::CloudEventAttributeValue;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_client::{ListenerSpecBuilder, pb};
use eventbus_tests::{Database, METHODS, TestServer, event, field_violations};
use tonic::Code;
use tonic::codegen::{Service, http};

eventbus_tests::backend_cases!(
    rejected_requests_store_nothing,
    page_tokens_are_bound_to_namespace_and_filters,
    request_id_is_free_again_after_its_listener_is_deleted,
    all_listeners_without_a_policy_report_first,
    undecodable_bodies_are_invalid_argument_on_every_method,
);

fn attr(a: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(a) }
}

async fn event_ids(s: &TestServer, ns: &str) -> Vec<String> {
    let req = pb::ListEventsRequest { namespace: ns.into(), ..Default::default() };
    let list = s.client.raw().list_events(req).await.unwrap().into_inner();
    list.events.into_iter().map(|e| e.event.unwrap().id).collect()
}

async fn rejected_requests_store_nothing(db: Database) {
    let s = TestServer::start(&db).await;
    let mut uri_ref = event("a", "2");
    uri_ref.attributes.insert("link".into(), attr(Attr::CeUriRef("http://[::1".into())));
    let mut late = event("a", "3");
    let year_10000 = prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 };
    late.attributes.insert("time".into(), attr(Attr::CeTimestamp(year_10000)));
    let long_type = event(&"t".repeat(257), "4");
    let err = s.client.publish("ns", [event("a", "1"), uri_ref, late, long_type]).await.unwrap_err();
    let status = err.status().unwrap();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        field_violations(status),
        ["events[1].attributes[link]", "events[2].attributes[time]", "events[3].type"]
    );
    assert!(event_ids(&s, "ns").await.is_empty(), "a rejected publish stores nothing");

    let clauses = (0..33).map(|i| (format!("x{i}"), "v".to_string())).collect();
    let filter = pb::EventFilter { r#type: "a".into(), attributes: clauses, condition: String::new() };
    let mut spec = ListenerSpecBuilder::start("wf").one("a").build();
    spec.filters = vec![filter];
    let err = s.client.register_listener("ns", spec).await.unwrap_err();
    assert_eq!(field_violations(err.status().unwrap()), ["listener.filters[0].attributes"]);
    let mut spec = ListenerSpecBuilder::start("wf").all(["a", "b"]).build();
    spec.lifespan = Some(prost_types::Duration { seconds: 3651 * 86_400, nanos: 0 });
    let err = s.client.register_listener("ns", spec).await.unwrap_err();
    assert_eq!(field_violations(err.status().unwrap()), ["listener.lifespan"]);
    let listed = s.client.list_listeners("ns", &Default::default()).await.unwrap();
    assert!(listed.is_empty(), "a rejected registration stores nothing");

    let mut raw = s.client.raw();
    let nack = pb::NackRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() };
    let err = raw.nack(nack).await.unwrap_err();
    assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["sequence".to_string()]));
    let sub = pb::SubscribeRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        start: pb::StartPosition::Earliest as i32,
        start_sequence: 5,
        ..Default::default()
    };
    let err = raw.subscribe(sub).await.unwrap_err();
    assert_eq!(field_violations(&err), ["start_sequence"]);
    let ack = pb::AckRequest { namespace: "ns".into(), consumer_group: "g".into(), sequences: vec![1] };
    assert_eq!(raw.ack(ack).await.unwrap_err().code(), Code::NotFound, "the rejected Subscribe made no group");
    let range = pb::ListEventsRequest {
        namespace: "ns".into(),
        start_time: Some(prost_types::Timestamp { seconds: 20, nanos: 0 }),
        end_time: Some(prost_types::Timestamp { seconds: 10, nanos: 0 }),
        ..Default::default()
    };
    assert_eq!(field_violations(&raw.list_events(range).await.unwrap_err()), ["end_time"]);
}

async fn page_tokens_are_bound_to_namespace_and_filters(db: Database) {
    let s = TestServer::start(&db).await;
    for ns in ["a", "b"] {
        s.client.publish(ns, [event("x", "1"), event("x", "2"), event("x", "3")]).await.unwrap();
        for wf in ["w1", "w2"] {
            s.client.register_listener(ns, ListenerSpecBuilder::start(wf).one("x")).await.unwrap();
        }
    }
    let mut raw = s.client.raw();
    let events = |ns: &str, ty: &str, page_token: &str| pb::ListEventsRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        page_size: 1,
        page_token: page_token.into(),
        ..Default::default()
    };
    let first = raw.list_events(events("a", "x", "")).await.unwrap().into_inner();
    let token = first.next_page_token;
    let next = raw.list_events(events("a", "x", &token)).await.unwrap().into_inner();
    assert_eq!(next.events.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2]);
    for (ns, ty) in [("b", "x"), ("a", ""), ("a", "y")] {
        let err = raw.list_events(events(ns, ty, &token)).await.unwrap_err();
        assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["page_token".to_string()]));
    }
    let listeners = |ns: &str, workflow_id: &str, page_token: &str| pb::ListListenersRequest {
        namespace: ns.into(),
        workflow_id: workflow_id.into(),
        page_size: 1,
        page_token: page_token.into(),
        ..Default::default()
    };
    let first = raw.list_listeners(listeners("a", "", "")).await.unwrap().into_inner();
    let token = first.next_page_token;
    let next = raw.list_listeners(listeners("a", "", &token)).await.unwrap().into_inner();
    assert_eq!(next.listeners.len(), 1);
    for (ns, wf) in [("b", ""), ("a", "w2")] {
        let err = raw.list_listeners(listeners(ns, wf, &token)).await.unwrap_err();
        assert_eq!((err.code(), field_violations(&err)), (Code::InvalidArgument, vec!["page_token".to_string()]));
    }
}

async fn request_id_is_free_again_after_its_listener_is_deleted(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let spec = || ListenerSpecBuilder::start("wf").one("a");
    let first = c.register_listener_with_request_id("ns", spec(), "req-1").await.unwrap();
    assert!(first.created);
    c.delete_listener("ns", &first.listener.id).await.unwrap();
    let second = c.register_listener_with_request_id("ns", spec(), "req-1").await.unwrap();
    assert!(second.created, "a deleted listener's request_id registers a new listener");
    assert_ne!(second.listener.id, first.listener.id);
    assert_eq!(c.get_listener("ns", &second.listener.id).await.unwrap().request_id, "req-1");
    let listed = c.list_listeners("ns", &Default::default()).await.unwrap();
    assert_eq!(listed.iter().map(|l| l.request_id.as_str()).collect::<Vec<_>>(), ["req-1"]);
    let retry = c.register_listener_with_request_id("ns", spec(), "req-1").await.unwrap();
    assert_eq!((retry.created, retry.listener.id.as_str()), (false, second.listener.id.as_str()));
    assert_eq!(c.delete_listeners_for_workflow("ns", "wf").await.unwrap(), 1);
    let third = c.register_listener_with_request_id("ns", ListenerSpecBuilder::start("wf").one("b"), "req-1").await;
    assert!(third.unwrap().created, "after DeleteListeners too, even with another spec");
    let ids: Vec<_> = c.list_listeners("ns", &Default::default()).await.unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(ids.len(), 1);
}

async fn all_listeners_without_a_policy_report_first(db: Database) {
    let s = TestServer::start(&db).await;
    let registered = s.client.register_listener("ns", ListenerSpecBuilder::start("wf").all(["a", "b"])).await.unwrap();
    let policy = |l: &pb::Listener| pb::ConsumptionPolicy::try_from(l.spec.as_ref().unwrap().policy).unwrap();
    assert_eq!(policy(&registered), pb::ConsumptionPolicy::First);
    let got = s.client.get_listener("ns", &registered.id).await.unwrap();
    assert_eq!(policy(&got), pb::ConsumptionPolicy::First);
    let listed = s.client.list_listeners("ns", &Default::default()).await.unwrap();
    assert_eq!(listed.iter().map(policy).collect::<Vec<_>>(), [pb::ConsumptionPolicy::First]);
    let one = s.client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    assert_eq!(policy(&one), pb::ConsumptionPolicy::Unspecified, "only ALL listeners have a policy");
}

/// gRPC request bodies that do not decode; ASCII, so that a `String` can carry them.
const MALFORMED: [(&str, &str); 6] = [
    ("a message with wire type 6", "\0\0\0\0\x01\x0e"),
    ("a message whose field runs past its end", "\0\0\0\0\x03\x0a\x7fa"),
    ("a frame shorter than its length", "\0\0\0\0\x64abc"),
    ("half a frame header", "\0\0\0"),
    ("an invalid compression flag", "\x02\0\0\0\0"),
    ("no message", ""),
];

async fn undecodable_bodies_are_invalid_argument_on_every_method(db: Database) {
    let s = TestServer::start(&db).await;
    let mut channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    for method in METHODS {
        for (what, body) in MALFORMED {
            let request = http::Request::post(format!("http://{}/eventbus.v1.EventBusService/{method}", s.addr))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(tonic::body::Body::new(body.to_owned()))
                .unwrap();
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
            let response = channel.call(request).await.unwrap();
            let status = tonic::Status::from_header_map(response.headers()).expect("a trailers-only answer");
            assert_eq!(status.code(), Code::InvalidArgument, "{method}, {what}: {status:?}");
            let message = status.message();
            assert!(
                message.starts_with("malformed request") && !message.contains("decode"),
                "{method}, {what}: {message}"
            );
        }
    }
    assert!(event_ids(&s, "ns").await.is_empty());
}
