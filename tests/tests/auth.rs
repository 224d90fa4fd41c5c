//! Tokens end to end: with `--admin-token-file`, every RPC but health needs a valid bearer
//! token, and a refused call changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use eventbus_client::{Client, RawClient, pb};
use eventbus_tests::{Backend, Database, METHODS, TestServer, event};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ADMIN: &str = "ebt_adminadminadminadminadminadminadmin00";

/// Calls `method` in namespace "ns" with a minimal request: the status it fails with, if any.
async fn call(raw: &mut RawClient, method: &str) -> Result<(), Status> {
    let ns = || "ns".to_owned();
    let id = || "0190b1a2-0000-7000-8000-000000000000".to_owned();
    let group = || "g".to_owned();
    match method {
        "Publish" => raw.publish(pb::PublishRequest { namespace: ns(), events: vec![event("a", "x")] }).await.map(drop),
        "RegisterListener" => {
            let listener = eventbus_client::ListenerSpecBuilder::start("wf").one("a").into();
            let request =
                pb::RegisterListenerRequest { namespace: ns(), listener: Some(listener), ..Default::default() };
            raw.register_listener(request).await.map(drop)
        }
        "GetListener" => raw
            .get_listener(pb::GetListenerRequest { namespace: ns(), id: id(), include_partial_state: false })
            .await
            .map(drop),
        "ListListeners" => {
            raw.list_listeners(pb::ListListenersRequest { namespace: ns(), ..Default::default() }).await.map(drop)
        }
        "DeleteListener" => {
            raw.delete_listener(pb::DeleteListenerRequest { namespace: ns(), id: id() }).await.map(drop)
        }
        "DeleteListeners" => {
            let selector = Some(pb::delete_listeners_request::Selector::WorkflowId("wf".into()));
            raw.delete_listeners(pb::DeleteListenersRequest { namespace: ns(), selector }).await.map(drop)
        }
        "Subscribe" => {
            let request = pb::SubscribeRequest { namespace: ns(), consumer_group: group(), ..Default::default() };
            raw.subscribe(request).await.map(drop)
        }
        "Ack" => {
            raw.ack(pb::AckRequest { namespace: ns(), consumer_group: group(), sequences: vec![1] }).await.map(drop)
        }
        "Nack" => {
            let request =
                pb::NackRequest { namespace: ns(), consumer_group: group(), sequence: 1, ..Default::default() };
            raw.nack(request).await.map(drop)
        }
        "ListDeadLetters" => {
            let request = pb::ListDeadLettersRequest { namespace: ns(), consumer_group: group(), ..Default::default() };
            raw.list_dead_letters(request).await.map(drop)
        }
        "RedriveDeadLetters" => {
            let request = pb::RedriveDeadLettersRequest { namespace: ns(), consumer_group: group(), sequences: vec![] };
            raw.redrive_dead_letters(request).await.map(drop)
        }
        "GetEvent" => {
            let key = Some(pb::get_event_request::Key::Sequence(1));
            raw.get_event(pb::GetEventRequest { namespace: ns(), key }).await.map(drop)
        }
        "ListEvents" => {
            raw.list_events(pb::ListEventsRequest { namespace: ns(), ..Default::default() }).await.map(drop)
        }
        "ListNamespaces" => raw.list_namespaces(pb::ListNamespacesRequest::default()).await.map(drop),
        // Another namespace, so that the admin's calls leave "ns" in place.
        "DeleteNamespace" => {
            let request = pb::DeleteNamespaceRequest { namespace: "gone".into() };
            raw.delete_namespace(request).await.map(drop)
        }
        "ListConsumerGroups" => raw
            .list_consumer_groups(pb::ListConsumerGroupsRequest { namespace: ns(), ..Default::default() })
            .await
            .map(drop),
        "GetConsumerGroup" => {
            let request = pb::GetConsumerGroupRequest { namespace: ns(), consumer_group: group() };
            raw.get_consumer_group(request).await.map(drop)
        }
        "UpdateConsumerGroup" => {
            let request =
                pb::UpdateConsumerGroupRequest { namespace: ns(), consumer_group: group(), ..Default::default() };
            raw.update_consumer_group(request).await.map(drop)
        }
        "SeekConsumerGroup" => {
            let request =
                pb::SeekConsumerGroupRequest { namespace: ns(), consumer_group: group(), ..Default::default() };
            raw.seek_consumer_group(request).await.map(drop)
        }
        "DeleteConsumerGroup" => {
            let request = pb::DeleteConsumerGroupRequest { namespace: ns(), consumer_group: group() };
            raw.delete_consumer_group(request).await.map(drop)
        }
        "ExplainListener" => {
            let target = Some(pb::explain_listener_request::Target::Sequence(1));
            let request =
                pb::ExplainListenerRequest { namespace: ns(), listener_id: id(), target, ..Default::default() };
            raw.explain_listener(request).await.map(drop)
        }
        "ReplayEvents" => {
            let mode = pb::ReplayMode::Fire.into();
            let request = pb::ReplayEventsRequest { namespace: ns(), listener_id: id(), mode, ..Default::default() };
            raw.replay_events(request).await.map(drop)
        }
        other => panic!("no call for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_needs_a_valid_token_and_a_refused_call_changes_nothing() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, ADMIN).unwrap();
    let s = TestServer::start_with(&db, |c| c.admin_token_file = Some(file)).await;
    let admin = s.client.clone().with_token(ADMIN).unwrap();

    let unknown = "ebt_unknownunknownunknownunknownunknown00";
    let cases = [("no token", None), ("a malformed token", Some("not-a-token")), ("an unknown token", Some(unknown))];
    for (what, token) in cases {
        let client = match token {
            Some(t) => s.client.clone().with_token(t).unwrap(),
            None => s.client.clone(),
        };
        for method in METHODS {
            let status = call(&mut client.raw(), method).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{method} with {what}: {status:?}");
        }
    }
    let mut raw = admin.raw();
    let events = raw.list_events(pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() }).await;
    assert!(events.unwrap().into_inner().events.is_empty(), "refused publishes stored nothing");
    let listeners = raw.list_listeners(pb::ListListenersRequest { namespace: "ns".into(), ..Default::default() });
    assert!(listeners.await.unwrap().into_inner().listeners.is_empty(), "refused registrations stored nothing");

    for method in METHODS {
        if let Err(status) = call(&mut admin.raw(), method).await {
            let code = status.code();
            assert!(!matches!(code, Code::Unauthenticated | Code::PermissionDenied), "{method} as admin: {status:?}");
        }
    }
    assert_eq!(admin.publish("ns", [event("a", "y")]).await.unwrap()[0].sequence, 2);

    let channel = Client::endpoint(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    let health = HealthClient::new(channel).check(HealthCheckRequest::default()).await;
    assert!(health.is_ok(), "health needs no token: {health:?}");
}
