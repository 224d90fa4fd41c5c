//! PublishStream end to end, on SQLite and Postgres: each message is a Publish answered in
//! request order with its id, batches are sequenced in stream order (also past the server's
//! read-ahead), a refused message fails alone and stores nothing, and a message that cannot be
//! read ends the call after the answers to the messages before it. (Per-message permissions are
//! in the permissions suite, a database outage in the outage suite.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventbus_client::pb;
use eventbus_client::pb::publish_stream_response::Outcome;
use eventbus_tests::{Database, TestServer, WAIT, event, within};
use http_body_util::BodyExt;
use prost::Message;
use tonic::Code;
use tonic::codegen::{Service, http};

eventbus_tests::backend_cases!(
    messages_are_answered_in_order_and_sequenced_in_stream_order,
    a_refused_message_fails_alone_and_stores_nothing,
    an_unreadable_message_ends_the_call_after_the_answers_before_it,
    shutting_down_ends_the_stream_unavailable,
);

fn message(id: u64, namespace: &str, events: Vec<pb::CloudEvent>) -> pb::PublishStreamRequest {
    pb::PublishStreamRequest { id, publish: Some(pb::PublishRequest { namespace: namespace.into(), events }) }
}

/// Sends `messages` on one PublishStream call, closes the sending side, and returns every
/// answer and how the call ended.
async fn exchange(s: &TestServer, messages: Vec<pb::PublishStreamRequest>) -> (Vec<pb::PublishStreamResponse>, Code) {
    let mut answers = s.client.raw().publish_stream(futures::stream::iter(messages)).await.unwrap().into_inner();
    let mut got = Vec::new();
    loop {
        match answers.message().await {
            Ok(Some(answer)) => got.push(answer),
            Ok(None) => return (got, Code::Ok),
            Err(status) => return (got, status.code()),
        }
    }
}

/// The (sequence, duplicate) of each event of a published answer.
fn published(answer: &pb::PublishStreamResponse) -> Vec<(u64, bool)> {
    match &answer.outcome {
        Some(Outcome::Published(p)) => p.results.iter().map(|r| (r.sequence, r.duplicate)).collect(),
        other => panic!("message {} was not published: {other:?}", answer.id),
    }
}

/// The code and field violations of a refused answer.
fn refused(answer: &pb::PublishStreamResponse) -> (Code, Vec<String>) {
    match &answer.outcome {
        Some(Outcome::Error(e)) => (Code::from(e.code), e.field_violations.iter().map(|v| v.field.clone()).collect()),
        other => panic!("message {} was not refused: {other:?}", answer.id),
    }
}

async fn event_ids(s: &TestServer, ns: &str) -> Vec<String> {
    let req = pb::ListEventsRequest { namespace: ns.into(), page_size: 1000, ..Default::default() };
    let list = s.client.raw().list_events(req).await.unwrap().into_inner();
    list.events.into_iter().map(|e| e.event.unwrap().id).collect()
}

async fn messages_are_answered_in_order_and_sequenced_in_stream_order(db: Database) {
    let s = TestServer::start(&db).await;
    // More messages than the server reads ahead of its answers (1024), two events each, ids
    // that are not in order.
    let n = 1500u64;
    let messages = (0..n)
        .map(|i| message(n - i, "ns", vec![event("a", &format!("{i}a")), event("a", &format!("{i}b"))]))
        .collect();
    let (answers, end) = exchange(&s, messages).await;
    assert_eq!(end, Code::Ok, "closing the sending side ends the call once everything is answered");
    assert_eq!(answers.iter().map(|a| a.id).collect::<Vec<_>>(), (1..=n).rev().collect::<Vec<_>>());
    for (i, answer) in answers.iter().enumerate() {
        let first = 2 * i as u64 + 1;
        assert_eq!(published(answer), [(first, false), (first + 1, false)], "message {i}");
    }
    assert_eq!(event_ids(&s, "ns").await.len(), 1000, "a full page of the 3000 stored");

    // The Rust client's Publisher: concurrent publishes on one stream, each with its answer.
    let publisher = s.client.publisher().await.unwrap();
    let publishes = (0..100).map(|i| {
        let publisher = publisher.clone();
        async move { publisher.publish("ns2", [event("a", &format!("p{i}"))]).await.unwrap() }
    });
    let answered: Vec<u64> = futures::future::join_all(publishes).await.into_iter().map(|r| r[0].sequence).collect();
    let mut sequences = answered.clone();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=100).collect::<Vec<_>>());
    // Each publish got its own answer: the sequence it was told holds its event.
    for (i, sequence) in answered.into_iter().enumerate() {
        let key = Some(pb::get_event_request::Key::Sequence(sequence));
        let stored = s.client.raw().get_event(pb::GetEventRequest { namespace: "ns2".into(), key }).await.unwrap();
        assert_eq!(stored.into_inner().event.unwrap().event.unwrap().id, format!("p{i}"), "publish {i}");
    }
    let again = publisher.publish("ns2", [event("a", "p7")]).await.unwrap();
    assert!(again[0].duplicate, "a stored id is a duplicate on the stream too");
}

async fn a_refused_message_fails_alone_and_stores_nothing(db: Database) {
    let s = TestServer::start(&db).await;
    let mut no_source = event("a", "bad");
    no_source.source = String::new();
    let messages = vec![
        message(1, "ns", vec![event("a", "1")]),
        // Validation is all or nothing within a message: "2" is not stored either.
        message(2, "ns", vec![event("a", "2"), no_source]),
        pb::PublishStreamRequest { id: 3, publish: None },
        message(4, "bad namespace!", vec![event("a", "4")]),
        message(5, "ns", vec![event("a", "1")]),
        message(6, "ns", vec![event("a", "6")]),
    ];
    let (answers, end) = exchange(&s, messages).await;
    assert_eq!(end, Code::Ok, "the call goes on past refused messages");
    assert_eq!(answers.iter().map(|a| a.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(published(&answers[0]), [(1, false)]);
    assert_eq!(refused(&answers[1]), (Code::InvalidArgument, vec!["events[1].source".to_owned()]));
    assert_eq!(refused(&answers[2]), (Code::InvalidArgument, vec!["publish".to_owned()]));
    assert_eq!(refused(&answers[3]), (Code::InvalidArgument, vec!["namespace".to_owned()]));
    assert_eq!(published(&answers[4]), [(1, true)], "the same (source, id) again is a duplicate");
    assert_eq!(published(&answers[5]), [(2, false)], "refused messages took no sequence");
    assert_eq!(event_ids(&s, "ns").await, ["1", "6"]);
}

/// One gRPC frame of `message`.
fn frame(message: &impl Message) -> Vec<u8> {
    let body = message.encode_to_vec();
    let mut framed = vec![0];
    framed.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
    framed.extend(body);
    framed
}

async fn an_unreadable_message_ends_the_call_after_the_answers_before_it(db: Database) {
    let s = TestServer::start(&db).await;
    let mut channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    let unreadable: [(&str, &[u8]); 4] = [
        ("a message with wire type 6", b"\0\0\0\0\x01\x0e"),
        ("a message whose field runs past its end", b"\0\0\0\0\x03\x0a\x7fa"),
        ("a frame shorter than its length", b"\0\0\0\0\x64abc"),
        ("an invalid compression flag", b"\x02\0\0\0\0"),
    ];
    for (i, (what, bad)) in unreadable.into_iter().enumerate() {
        let mut body = frame(&message(7, "ns", vec![event("a", &i.to_string())]));
        body.extend_from_slice(bad);
        let request = http::Request::post(format!("http://{}/eventbus.v1.EventBusService/PublishStream", s.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::new(http_body_util::Full::new(prost::bytes::Bytes::from(body))))
            .unwrap();
        std::future::poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
        let response = channel.call(request).await.unwrap();
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().expect("trailers");
        let data = collected.to_bytes();
        let answer = pb::PublishStreamResponse::decode(data.get(5..).expect("one answer")).unwrap();
        assert_eq!((answer.id, published(&answer)), (7, vec![(i as u64 + 1, false)]), "{what}");
        let status = tonic::Status::from_header_map(&trailers).expect("a status in the trailers");
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().starts_with("malformed request"), "{what}: {}", status.message());
    }
    assert_eq!(event_ids(&s, "ns").await, ["0", "1", "2", "3"]);
}

async fn shutting_down_ends_the_stream_unavailable(db: Database) {
    let s = TestServer::start(&db).await;
    let publisher = s.client.publisher().await.unwrap();
    assert_eq!(publisher.publish("ns", [event("a", "1")]).await.unwrap()[0].sequence, 1);
    // An open stream does not hold the shutdown up.
    within(WAIT, "the server to stop with a PublishStream open", s.stop()).await;
    let err = publisher.publish("ns", [event("a", "2")]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
}
