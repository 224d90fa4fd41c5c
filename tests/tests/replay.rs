//! Explain and replay end to end on both backends: ExplainListener gives the exact reason for
//! each event (type, filter clause, condition false and errored, correlation, before the
//! listener, collected and waiting, fired with the fire id the live notification carries,
//! consumed); ReplayEvents in DRY_RUN changes nothing, in FIRE delivers what never fired and
//! nothing twice, carries an ALL listener's state across pages; bad input gets exact codes and
//! field paths; a registration that looks back evaluates every event exactly once while events
//! are published (on Postgres, through a second server). (Namespace mismatch and after-the-deadline never reach the wire this way: the
//! engine's table tests cover them.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, StartPosition, SubscribeOptions, pb};
use eventbus_tests::{Backend, Database, SOURCE, TestServer, event, field_violations, next_delivery};
use pb::event_explanation::Reason;
use pb::explain_listener_request::Target;
use tonic::Code;

eventbus_tests::backend_cases!(
    explain_gives_the_exact_reason_for_each_event,
    explain_says_a_wait_listener_was_consumed,
    a_dry_run_changes_nothing,
    fire_delivers_what_never_fired_and_nothing_twice,
    a_replay_carries_the_state_across_pages,
    a_replayed_wake_finishes_the_wait_listener,
    bad_input_gets_exact_codes_and_fields,
    a_look_back_registration_evaluates_each_event_once_while_others_publish,
    a_look_back_hands_its_partial_state_to_the_live_listener,
);

const CARRIER: &str = r#"data.carrier == "dhl""#;
const JSON: &str = "application/json";

fn order(id: &str, subject: &str, orderid: Option<&str>) -> pb::CloudEvent {
    let e = CloudEventBuilder::new(SOURCE, "order.created").id(id).subject(subject);
    match orderid {
        Some(o) => e.extension("orderid", o).build(),
        None => e.build(),
    }
}

fn shipment(id: &str, data: &str) -> pb::CloudEvent {
    CloudEventBuilder::new(SOURCE, "shipment.sent").id(id).extension("orderid", "42").data_text(JSON, data).build()
}

/// An ALL listener over orders and shipments, correlated by `orderid`: orders only from `eu/*`,
/// shipments only by DHL.
fn shipping() -> pb::ListenerSpec {
    let mut spec = ListenerSpecBuilder::start("ship")
        .all(["order.created", "shipment.sent"])
        .correlate_by(["orderid"])
        .filter("order.created", [("subject", "eu/*")])
        .build();
    let set = pb::EventFilter { r#type: "shipment.sent".into(), condition: CARRIER.into(), ..Default::default() };
    spec.filters.push(set);
    spec
}

async fn explain(c: &Client, listener: &str, target: Target) -> Result<pb::ExplainListenerResponse, tonic::Status> {
    let request = pb::ExplainListenerRequest {
        namespace: "ns".into(),
        listener_id: listener.into(),
        target: Some(target),
        ..Default::default()
    };
    c.raw().explain_listener(request).await.map(tonic::Response::into_inner)
}

fn whole() -> Target {
    Target::Range(pb::EventRange::default())
}

fn seq(s: u64) -> Option<pb::EventPosition> {
    Some(pb::EventPosition { position: Some(pb::event_position::Position::Sequence(s)) })
}

async fn replay(
    c: &Client,
    listener: &str,
    mode: pb::ReplayMode,
    page_size: i32,
    page_token: String,
) -> Result<pb::ReplayEventsResponse, tonic::Status> {
    let request = pb::ReplayEventsRequest {
        namespace: "ns".into(),
        listener_id: listener.into(),
        mode: mode.into(),
        page_size,
        page_token,
        ..Default::default()
    };
    c.raw().replay_events(request).await.map(tonic::Response::into_inner)
}

/// Subscribes a group from the first notification.
async fn subscriber(c: &Client) -> eventbus_client::Subscription {
    let mut options = SubscribeOptions::new("ns", "g");
    options.start = StartPosition::Earliest;
    c.subscribe(options).await.unwrap()
}

/// Publishes a sentinel event (its listener must be registered) and returns the workflows of
/// the notifications delivered up to and including the sentinel's, acking each.
async fn delivered_until_sentinel(c: &Client, sub: &mut eventbus_client::Subscription, id: &str) -> Vec<String> {
    c.publish("ns", [event("sentinel", id)]).await.unwrap();
    let mut workflows = Vec::new();
    loop {
        let d = next_delivery(sub).await;
        let workflow = d.notification().workflow_id.clone();
        d.ack().await.unwrap();
        if workflow == "sentinel" {
            return workflows;
        }
        workflows.push(workflow);
    }
}

async fn explain_gives_the_exact_reason_for_each_event(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.publish("ns", [order("early", "eu/1", Some("42"))]).await.unwrap();
    let listener = c.register_listener("ns", shipping()).await.unwrap();
    c.publish(
        "ns",
        [
            event("order.paid", "paid"),
            order("us", "us/7", Some("1")),
            order("no-id", "eu/2", None),
            order("eu", "eu/3", Some("42")),
            shipment("ups", r#"{"carrier": "ups"}"#),
            shipment("weight", r#"{"weight": 1}"#),
            shipment("dhl", r#"{"carrier": "dhl"}"#),
        ],
    )
    .await
    .unwrap();
    let mut sub = subscriber(c).await;
    let fired = next_delivery(&mut sub).await;
    let fire_id = fired.notification().fire_id.clone();
    assert_eq!(fired.notification().event_sequences, [5, 8]);

    let got = explain(c, &listener.id, whole()).await.unwrap();
    assert!(got.next_page_token.is_empty());
    let lines: Vec<(u64, bool, String)> =
        got.explanations.iter().map(|e| (e.sequence, e.contributed, e.message.clone())).collect();
    assert!(lines[0].2.starts_with("outside the listener's lifetime: received before it was registered at "));
    let want = [
        (2, false, r#"type "order.paid" is not one of the listener's types"#.to_owned()),
        (3, false, "filter set 0 failed on clause `subject`: pattern `eu/*` vs value `us/7`".to_owned()),
        (4, false, "correlation attribute `orderid` missing".to_owned()),
        (5, true, "collected for key `{orderid: 42}`, still waiting for `shipment.sent`".to_owned()),
        (6, false, format!("filter set 1 failed on condition `{CARRIER}` is false")),
        (7, false, format!("filter set 1 failed on condition `{CARRIER}` errored: No such key: carrier")),
        (8, true, format!("fired as fire id {fire_id}")),
    ];
    assert_eq!(lines[1..], want);
    let reasons: Vec<&Reason> = got.explanations.iter().map(|e| e.reason.as_ref().unwrap()).collect();
    let Reason::Filtered(filtered) = reasons[2] else { panic!("{:?}", reasons[2]) };
    let clause = pb::event_explanation::ClauseMismatch {
        attribute: "subject".into(),
        pattern: "eu/*".into(),
        value: Some("us/7".into()),
    };
    let failure = pb::event_explanation::filter_set_failure::Failure::Clause(clause);
    assert_eq!(
        filtered.failures,
        [pb::event_explanation::FilterSetFailure { filter_index: 0, failure: Some(failure) }]
    );
    let Reason::Collected(collected) = reasons[4] else { panic!("{:?}", reasons[4]) };
    assert_eq!(
        (collected.correlation["orderid"].as_str(), &collected.waiting_for[..]),
        ("42", &["shipment.sent".to_owned()][..])
    );
    let Reason::Fired(f) = reasons[7] else { panic!("{:?}", reasons[7]) };
    assert_eq!((f.fire_id.as_str(), &f.event_sequences[..]), (fire_id.as_str(), &[5, 8][..]));

    // One event, with the state the listener's earlier events built.
    let one = explain(c, &listener.id, Target::Sequence(8)).await.unwrap();
    assert_eq!(one.explanations.len(), 1);
    assert_eq!(one.explanations[0].message, format!("fired as fire id {fire_id}"));
    let key = pb::EventKey { source: SOURCE.into(), id: "eu".into() };
    let by_key = explain(c, &listener.id, Target::SourceId(key)).await.unwrap();
    assert_eq!(by_key.explanations[0].message, "collected for key `{orderid: 42}`, still waiting for `shipment.sent`");
}

async fn explain_says_a_wait_listener_was_consumed(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let listener = c.register_listener("ns", ListenerSpecBuilder::wait("inst").one("payment.received")).await.unwrap();
    c.publish("ns", [event("payment.received", "p1")]).await.unwrap();
    c.publish("ns", [event("payment.received", "p2")]).await.unwrap();
    let got = explain(c, &listener.id, whole()).await.unwrap();
    let fire_id = c.get_listener("ns", listener.id.clone()).await.unwrap().fire_id;
    let messages: Vec<&str> = got.explanations.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages[0], format!("fired as fire id {fire_id}"));
    assert!(messages[1].starts_with(&format!("listener already consumed: fired as {fire_id} at ")), "{messages:?}");
    let Some(Reason::Consumed(consumed)) = &got.explanations[1].reason else { panic!("{got:?}") };
    assert_eq!((consumed.status(), consumed.fire_id.as_str()), (pb::ListenerStatus::Fired, fire_id.as_str()));
}

/// Three orders and an unrelated event stored before a START listener was registered.
async fn orders_then_listener(c: &Client) -> String {
    c.register_listener("ns", ListenerSpecBuilder::start("sentinel").one("sentinel")).await.unwrap();
    c.publish("ns", [event("order.created", "o1"), event("other", "x"), event("order.created", "o2")]).await.unwrap();
    c.publish("ns", [event("order.created", "o3")]).await.unwrap();
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("order.created")).await.unwrap().id
}

async fn a_dry_run_changes_nothing(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let listener = orders_then_listener(c).await;
    let page = replay(c, &listener, pb::ReplayMode::DryRun, 0, String::new()).await.unwrap();
    assert_eq!((page.events_evaluated, page.last_sequence, page.next_page_token.as_str()), (3, 4, ""));
    let fires: Vec<(Vec<u64>, bool, u64)> =
        page.fires.iter().map(|f| (f.event_sequences.clone(), f.created, f.notification_sequence)).collect();
    assert_eq!(fires, [(vec![1], false, 0), (vec![3], false, 0), (vec![4], false, 0)]);
    assert!(page.fires.iter().all(|f| f.target == "wf" && f.kind() == pb::NotificationKind::Start));
    let mut sub = subscriber(c).await;
    assert!(delivered_until_sentinel(c, &mut sub, "s1").await.is_empty(), "a dry run fires nothing");
}

async fn fire_delivers_what_never_fired_and_nothing_twice(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    let listener = orders_then_listener(c).await;
    let dry = replay(c, &listener, pb::ReplayMode::DryRun, 0, String::new()).await.unwrap();
    // Two pages of two events of the listener's types.
    let first = replay(c, &listener, pb::ReplayMode::Fire, 2, String::new()).await.unwrap();
    assert_eq!((first.events_evaluated, first.last_sequence, first.fires.len()), (2, 3, 2));
    assert!(!first.next_page_token.is_empty());
    let second = replay(c, &listener, pb::ReplayMode::Fire, 2, first.next_page_token).await.unwrap();
    assert_eq!((second.events_evaluated, second.last_sequence, second.next_page_token.as_str()), (1, 4, ""));
    let fired: Vec<pb::ReplayedFire> = first.fires.into_iter().chain(second.fires).collect();
    assert!(fired.iter().all(|f| f.created), "{fired:?}");
    assert_eq!(fired.iter().map(|f| f.notification_sequence).collect::<Vec<_>>(), [1, 2, 3]);
    let ids = |fires: &[pb::ReplayedFire]| fires.iter().map(|f| f.fire_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&fired), ids(&dry.fires), "a dry run names the fire ids a fire creates");

    let again = replay(c, &listener, pb::ReplayMode::Fire, 0, String::new()).await.unwrap();
    assert_eq!(ids(&again.fires), ids(&fired));
    assert!(again.fires.iter().all(|f| !f.created && f.notification_sequence == 0), "{again:?}");

    let mut sub = subscriber(c).await;
    assert_eq!(delivered_until_sentinel(c, &mut sub, "s1").await, ["wf", "wf", "wf"], "each fire delivered once");
    // A live event fires as usual, and a replay over it then finds it fired.
    c.publish("ns", [event("order.created", "o4")]).await.unwrap();
    assert_eq!(delivered_until_sentinel(c, &mut sub, "s2").await, ["wf"]);
    let last = replay(c, &listener, pb::ReplayMode::Fire, 0, String::new()).await.unwrap();
    assert_eq!((last.fires.len(), last.fires.iter().filter(|f| f.created).count()), (4, 0));
    assert!(delivered_until_sentinel(c, &mut sub, "s3").await.is_empty());
}

async fn a_replay_carries_the_state_across_pages(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.publish(
        "ns",
        [order("a", "eu/1", Some("42")), order("b", "eu/2", Some("7")), shipment("c", r#"{"carrier": "dhl"}"#)],
    )
    .await
    .unwrap();
    let listener = c.register_listener("ns", shipping()).await.unwrap();
    let (mut token, mut fires, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let page = replay(c, &listener.id, pb::ReplayMode::DryRun, 1, token).await.unwrap();
        pages += 1;
        fires.extend(page.fires);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(fires.len(), 1);
    assert_eq!((fires[0].event_sequences.clone(), fires[0].correlation["orderid"].as_str()), (vec![1, 3], "42"));
}

async fn a_replayed_wake_finishes_the_wait_listener(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.publish("ns", [event("payment.received", "p1"), event("payment.received", "p2")]).await.unwrap();
    let listener = c.register_listener("ns", ListenerSpecBuilder::wait("inst").one("payment.received")).await.unwrap();
    let page = replay(c, &listener.id, pb::ReplayMode::Fire, 0, String::new()).await.unwrap();
    assert_eq!(page.fires.len(), 1, "a WAIT listener fires once: {page:?}");
    assert_eq!((page.fires[0].kind(), page.fires[0].created), (pb::NotificationKind::Wake, true));
    let got = c.get_listener("ns", listener.id.clone()).await.unwrap();
    assert_eq!((got.status(), got.fire_id.as_str()), (pb::ListenerStatus::Fired, page.fires[0].fire_id.as_str()));
    let status = replay(c, &listener.id, pb::ReplayMode::Fire, 0, String::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let dry = replay(c, &listener.id, pb::ReplayMode::DryRun, 0, String::new()).await.unwrap();
    assert_eq!(dry.fires.len(), 1, "a dry run still says what would fire");
}

async fn bad_input_gets_exact_codes_and_fields(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.publish("ns", [event("a", "1"), event("a", "2")]).await.unwrap();
    let unknown = "0190b1a2-0000-7000-8000-000000000000";
    let status = replay(c, unknown, pb::ReplayMode::DryRun, 0, String::new()).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(explain(c, unknown, whole()).await.unwrap_err().code(), Code::NotFound);
    let listener = c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap().id;
    assert_eq!(explain(c, &listener, Target::Sequence(99)).await.unwrap_err().code(), Code::NotFound);

    let backwards = pb::ReplayEventsRequest {
        namespace: "ns".into(),
        listener_id: listener.clone(),
        start: seq(2),
        end: seq(1),
        mode: pb::ReplayMode::DryRun.into(),
        ..Default::default()
    };
    let status = c.raw().replay_events(backwards).await.unwrap_err();
    assert_eq!((status.code(), field_violations(&status)), (Code::InvalidArgument, vec!["end".to_owned()]));
    let no_mode =
        pb::ReplayEventsRequest { namespace: "ns".into(), listener_id: listener.clone(), ..Default::default() };
    let status = c.raw().replay_events(no_mode).await.unwrap_err();
    assert_eq!(field_violations(&status), ["mode"]);
    let range = pb::EventRange { start: seq(2), end: seq(1) };
    let status = explain(c, &listener, Target::Range(range)).await.unwrap_err();
    assert_eq!((status.code(), field_violations(&status)), (Code::InvalidArgument, vec!["range.end".to_owned()]));

    // A token of one replay is refused by another.
    let page = replay(c, &listener, pb::ReplayMode::DryRun, 1, String::new()).await.unwrap();
    let status = replay(c, &listener, pb::ReplayMode::Fire, 1, page.next_page_token).await.unwrap_err();
    assert_eq!((status.code(), field_violations(&status)), (Code::InvalidArgument, vec!["page_token".to_owned()]));
}

async fn a_look_back_registration_evaluates_each_event_once_while_others_publish(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    // On Postgres the concurrent events go through another server process's writer.
    let other = if db.backend() == Backend::Postgres { Some(TestServer::start(&db).await) } else { None };
    let publisher = other.as_ref().map_or(c, |o| &o.client).clone();
    c.register_listener("ns", ListenerSpecBuilder::start("sentinel").one("sentinel")).await.unwrap();
    let before: Vec<pb::CloudEvent> = (0..50).map(|i| event("order.created", &format!("b{i}"))).collect();
    c.publish("ns", before).await.unwrap();
    let during = tokio::spawn(async move {
        for i in 0..40 {
            let batch = [event("order.created", &format!("d{i}")), event("other", &format!("x{i}"))];
            publisher.publish("ns", batch).await.unwrap();
        }
    });
    let request = pb::RegisterListenerRequest {
        namespace: "ns".into(),
        listener: Some(ListenerSpecBuilder::start("wf").one("order.created").into()),
        look_back: seq(1),
        ..Default::default()
    };
    let listener = c.raw().register_listener(request).await.unwrap().into_inner().listener.unwrap();
    during.await.unwrap();
    c.publish("ns", [event("order.created", "after")]).await.unwrap();

    let mut sub = subscriber(c).await;
    c.publish("ns", [event("sentinel", "s")]).await.unwrap();
    let mut sequences = Vec::new();
    loop {
        let d = next_delivery(&mut sub).await;
        let n = d.notification().clone();
        d.ack().await.unwrap();
        match n.workflow_id.as_str() {
            "sentinel" => break,
            _ => sequences.extend(n.event_sequences),
        }
    }
    assert_eq!(sequences.len(), 91, "every order fired once: {sequences:?}");
    let mut distinct = sequences.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 91, "none twice");
    let again = replay(c, &listener.id, pb::ReplayMode::Fire, 1000, String::new()).await.unwrap();
    assert_eq!((again.fires.len(), again.fires.iter().filter(|f| f.created).count()), (91, 0));
}

async fn a_look_back_hands_its_partial_state_to_the_live_listener(db: Database) {
    let s = TestServer::start(&db).await;
    let c = &s.client;
    c.publish("ns", [order("a", "eu/1", Some("42")), order("b", "eu/2", Some("7"))]).await.unwrap();
    let request = pb::RegisterListenerRequest {
        namespace: "ns".into(),
        listener: Some(shipping()),
        look_back: seq(2),
        ..Default::default()
    };
    c.raw().register_listener(request).await.unwrap();
    // On Postgres the completing event goes through another process, which loads the state.
    let other = if db.backend() == Backend::Postgres { Some(TestServer::start(&db).await) } else { None };
    let publisher = other.as_ref().map_or(c, |o| &o.client);
    let ship_7 = CloudEventBuilder::new(SOURCE, "shipment.sent")
        .id("s7")
        .extension("orderid", "7")
        .data_text(JSON, r#"{"carrier": "dhl"}"#)
        .build();
    publisher.publish("ns", [shipment("s42", r#"{"carrier": "dhl"}"#), ship_7]).await.unwrap();
    let mut sub = subscriber(c).await;
    let fired = next_delivery(&mut sub).await;
    let n = fired.notification();
    assert_eq!(
        (n.correlation["orderid"].as_str(), &n.event_sequences[..]),
        ("7", &[2, 4][..]),
        "order 42 is before the look-back"
    );
}
