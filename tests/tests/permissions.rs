//! The permission table end to end, on SQLite and Postgres: every RPC of EventBusService and
//! TokenService is called with no token, a malformed one, an unknown one, an expired one, a
//! revoked one, a token with the right namespace and the wrong role, one with the right role on
//! another namespace, and the right grant. Each answer's code is exact, and the refused calls
//! changed nothing. Every token but the bootstrap admin's is made through TokenService. Health
//! needs no token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use eventbus_client::{Client, ListenerSpecBuilder, pb};
use eventbus_server::security::permissions::{Requirement, Role, requirement};
use eventbus_tests::{Database, Proxy, TestServer, backend_cases, event};
use prost::Message;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const ADMIN: &str = "ebt_adminadminadminadminadminadminadmin00";

backend_cases!(every_rpc_answers_each_caller_with_the_exact_code);
backend_cases!(postgres only: a_token_that_cannot_be_checked_is_unavailable_not_unauthenticated);

/// What a case works on: the namespace "ns" with one event, one listener and the group "g", and
/// a token ("victim") for the token calls.
struct Fixture {
    listener: String,
    victim: String,
}

/// Every RPC of both services, in the order the right grant calls them, with the code the right
/// grant gets on the fixture (one call may depend on the one before: Subscribe makes "g" again).
const RPCS: [(&str, &str, Code); 27] = [
    ("EventBusService", "Publish", Code::Ok),
    ("EventBusService", "PublishStream", Code::Ok),
    ("EventBusService", "RegisterListener", Code::Ok),
    ("EventBusService", "GetListener", Code::Ok),
    ("EventBusService", "ListListeners", Code::Ok),
    ("EventBusService", "GetEvent", Code::Ok),
    ("EventBusService", "ListEvents", Code::Ok),
    ("EventBusService", "ExplainListener", Code::Ok),
    ("EventBusService", "ReplayEvents", Code::Ok),
    ("EventBusService", "Subscribe", Code::Ok),
    ("EventBusService", "Ack", Code::Ok),
    ("EventBusService", "Nack", Code::NotFound),
    ("EventBusService", "ListDeadLetters", Code::Ok),
    ("EventBusService", "RedriveDeadLetters", Code::Ok),
    ("EventBusService", "ListConsumerGroups", Code::Ok),
    ("EventBusService", "GetConsumerGroup", Code::Ok),
    ("EventBusService", "UpdateConsumerGroup", Code::Ok),
    ("EventBusService", "SeekConsumerGroup", Code::Ok),
    ("EventBusService", "DeleteConsumerGroup", Code::Ok),
    ("EventBusService", "DeleteListener", Code::Ok),
    ("EventBusService", "DeleteListeners", Code::Ok),
    ("EventBusService", "ListNamespaces", Code::Ok),
    ("EventBusService", "DeleteNamespace", Code::Ok),
    ("TokenService", "CreateToken", Code::Ok),
    ("TokenService", "GetToken", Code::Ok),
    ("TokenService", "ListTokens", Code::Ok),
    ("TokenService", "RevokeToken", Code::Ok),
];

/// Calls `method` of `service` with a request on namespace "ns": the code it answers with.
async fn call(client: &Client, fx: &Fixture, service: &str, method: &str) -> Code {
    let result = match service {
        "TokenService" => token_call(client, fx, method).await,
        _ => bus_call(client, fx, method).await,
    };
    result.err().map_or(Code::Ok, |s| s.code())
}

async fn bus_call(client: &Client, fx: &Fixture, method: &str) -> Result<(), Status> {
    let mut raw = client.raw();
    let ns = || "ns".to_owned();
    let group = || "g".to_owned();
    match method {
        "Publish" => raw.publish(pb::PublishRequest { namespace: ns(), events: vec![event("a", "x")] }).await.map(drop),
        // The call needs the role somewhere; its message, the role on "ns".
        "PublishStream" => {
            let status = |e: eventbus_client::Error| e.status().cloned().unwrap();
            let publisher = client.publisher().await.map_err(status)?;
            publisher.publish(ns(), [event("a", "y")]).await.map(drop).map_err(status)
        }
        "RegisterListener" => {
            let listener = Some(ListenerSpecBuilder::start("wf2").one("never").into());
            raw.register_listener(pb::RegisterListenerRequest { namespace: ns(), listener, ..Default::default() })
                .await
                .map(drop)
        }
        "GetListener" => {
            let request =
                pb::GetListenerRequest { namespace: ns(), id: fx.listener.clone(), include_partial_state: false };
            raw.get_listener(request).await.map(drop)
        }
        "ListListeners" => {
            raw.list_listeners(pb::ListListenersRequest { namespace: ns(), ..Default::default() }).await.map(drop)
        }
        "GetEvent" => {
            let key = Some(pb::get_event_request::Key::Sequence(1));
            raw.get_event(pb::GetEventRequest { namespace: ns(), key }).await.map(drop)
        }
        "ListEvents" => {
            raw.list_events(pb::ListEventsRequest { namespace: ns(), ..Default::default() }).await.map(drop)
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
        other => admin_call(client, fx, other).await,
    }
}

async fn admin_call(client: &Client, fx: &Fixture, method: &str) -> Result<(), Status> {
    let mut raw = client.raw();
    let ns = || "ns".to_owned();
    let group = || "g".to_owned();
    match method {
        "ListDeadLetters" => {
            let request = pb::ListDeadLettersRequest { namespace: ns(), consumer_group: group(), ..Default::default() };
            raw.list_dead_letters(request).await.map(drop)
        }
        "RedriveDeadLetters" => {
            let request = pb::RedriveDeadLettersRequest { namespace: ns(), consumer_group: group(), sequences: vec![] };
            raw.redrive_dead_letters(request).await.map(drop)
        }
        "ListConsumerGroups" => {
            let request = pb::ListConsumerGroupsRequest { namespace: ns(), ..Default::default() };
            raw.list_consumer_groups(request).await.map(drop)
        }
        "GetConsumerGroup" => {
            let request = pb::GetConsumerGroupRequest { namespace: ns(), consumer_group: group() };
            raw.get_consumer_group(request).await.map(drop)
        }
        "UpdateConsumerGroup" => {
            let update_mask = Some(prost_types::FieldMask { paths: vec!["max_attempts".into()] });
            let request = pb::UpdateConsumerGroupRequest {
                namespace: ns(),
                consumer_group: group(),
                max_attempts: 5,
                update_mask,
                ..Default::default()
            };
            raw.update_consumer_group(request).await.map(drop)
        }
        "SeekConsumerGroup" => {
            let target = pb::SeekTarget::Earliest as i32;
            let request =
                pb::SeekConsumerGroupRequest { namespace: ns(), consumer_group: group(), target, ..Default::default() };
            raw.seek_consumer_group(request).await.map(drop)
        }
        "DeleteConsumerGroup" => {
            let request = pb::DeleteConsumerGroupRequest { namespace: ns(), consumer_group: group() };
            raw.delete_consumer_group(request).await.map(drop)
        }
        "DeleteListener" => {
            raw.delete_listener(pb::DeleteListenerRequest { namespace: ns(), id: fx.listener.clone() }).await.map(drop)
        }
        "DeleteListeners" => {
            let selector = Some(pb::delete_listeners_request::Selector::WorkflowId("wf2".into()));
            raw.delete_listeners(pb::DeleteListenersRequest { namespace: ns(), selector }).await.map(drop)
        }
        "ListNamespaces" => raw.list_namespaces(pb::ListNamespacesRequest::default()).await.map(drop),
        "DeleteNamespace" => raw.delete_namespace(pb::DeleteNamespaceRequest { namespace: ns() }).await.map(drop),
        "ExplainListener" => {
            let target = Some(pb::explain_listener_request::Target::Sequence(1));
            let id = fx.listener.clone();
            let request = pb::ExplainListenerRequest { namespace: ns(), listener_id: id, target, ..Default::default() };
            raw.explain_listener(request).await.map(drop)
        }
        "ReplayEvents" => {
            // A dry run changes nothing; FIRE needs operator (tests/tests/replay.rs).
            let mode = pb::ReplayMode::DryRun.into();
            let id = fx.listener.clone();
            let request = pb::ReplayEventsRequest { namespace: ns(), listener_id: id, mode, ..Default::default() };
            raw.replay_events(request).await.map(drop)
        }
        other => panic!("no call for {other}"),
    }
}

async fn token_call(client: &Client, fx: &Fixture, method: &str) -> Result<(), Status> {
    let mut tokens = client.tokens();
    let id = fx.victim.clone();
    match method {
        "CreateToken" => tokens.create_token(create_request(Role::Reader, "ns", None)).await.map(drop),
        "GetToken" => tokens.get_token(pb::GetTokenRequest { id }).await.map(drop),
        "ListTokens" => tokens.list_tokens(pb::ListTokensRequest::default()).await.map(drop),
        "RevokeToken" => tokens.revoke_token(pb::RevokeTokenRequest { id }).await.map(drop),
        other => panic!("no call for {other}"),
    }
}

fn pb_role(role: Role) -> pb::Role {
    pb::Role::from_str_name(&format!("ROLE_{}", role.as_str().to_ascii_uppercase())).unwrap()
}

fn create_request(role: Role, namespaces: &str, expire_time: Option<SystemTime>) -> pb::CreateTokenRequest {
    let grants = vec![pb::Grant { role: pb_role(role) as i32, namespaces: namespaces.into() }];
    pb::CreateTokenRequest { name: format!("{role} on {namespaces}"), grants, expire_time: expire_time.map(Into::into) }
}

/// Tokens made through TokenService by the admin, one per grant, made on first use.
struct Tokens {
    admin: Client,
    made: HashMap<(Role, String), Client>,
}

impl Tokens {
    async fn create(&self, role: Role, namespaces: &str, expire_time: Option<SystemTime>) -> (String, String) {
        let request = create_request(role, namespaces, expire_time);
        let created = self.admin.tokens().create_token(request).await.unwrap().into_inner();
        (created.token.unwrap().id, created.secret)
    }

    async fn client(&mut self, role: Role, namespaces: &str) -> Client {
        let key = (role, namespaces.to_owned());
        if !self.made.contains_key(&key) {
            let (_, secret) = self.create(role, namespaces, None).await;
            self.made.insert(key.clone(), self.admin.clone().with_token(&secret).unwrap());
        }
        self.made[&key].clone()
    }
}

/// A role that does not include `role` (the highest such one).
fn lesser(role: Role) -> Role {
    match role {
        Role::Publisher | Role::Subscriber | Role::Listener => Role::Reader,
        Role::Reader => Role::Publisher,
        Role::Operator => Role::Listener,
        Role::Admin => Role::Operator,
    }
}

/// The grant the method needs on "ns", a grant of the wrong role there, and one of the right
/// role elsewhere.
fn grants(service: &str, method: &str) -> [(Role, &'static str); 3] {
    match requirement(&format!("/eventbus.v1.{service}/{method}")) {
        Some(Requirement::Namespace(role) | Requirement::EachMessage(role)) => {
            [(role, "ns"), (lesser(role), "ns"), (role, "other")]
        }
        Some(Requirement::Server(role)) => [(role, "*"), (lesser(role), "*"), (role, "ns")],
        other => panic!("{service}/{method} needs {other:?}"),
    }
}

/// What the server holds that a refused call could have changed.
async fn state(admin: &Client, fx: &Fixture) -> Vec<String> {
    let mut raw = admin.raw();
    let ns = || "ns".to_owned();
    let events = raw.list_events(pb::ListEventsRequest { namespace: ns(), ..Default::default() }).await.unwrap();
    let listeners = raw.list_listeners(pb::ListListenersRequest { namespace: ns(), ..Default::default() }).await;
    let group = pb::GetConsumerGroupRequest { namespace: ns(), consumer_group: "g".into() };
    let group = raw.get_consumer_group(group).await.unwrap().into_inner().consumer_group.unwrap();
    let namespaces = raw.list_namespaces(pb::ListNamespacesRequest::default()).await.unwrap().into_inner();
    let mut tokens = admin.tokens();
    let listed = tokens.list_tokens(pb::ListTokensRequest::default()).await.unwrap().into_inner().tokens;
    let victim = tokens.get_token(pb::GetTokenRequest { id: fx.victim.clone() }).await.unwrap().into_inner();
    vec![
        format!("events {}", events.into_inner().events.len()),
        format!("listeners {}", listeners.unwrap().into_inner().listeners.len()),
        format!("group max_attempts {} read {}", group.max_attempts, group.read_sequence),
        format!("namespaces {:?}", namespaces.namespaces.iter().map(|n| n.name.as_str()).collect::<Vec<_>>()),
        format!("tokens {}", listed.len()),
        format!("victim revoked {}", victim.token.unwrap().revoke_time.is_some()),
    ]
}

async fn fixture(admin: &Client, tokens: &Tokens) -> Fixture {
    admin.publish("ns", [event("a", "first")]).await.unwrap();
    let registered = admin.register_listener("ns", ListenerSpecBuilder::start("wf").one("never")).await.unwrap();
    let request = pb::SubscribeRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() };
    drop(admin.raw().subscribe(request).await.unwrap());
    let (victim, _) = tokens.create(Role::Reader, "ns", None).await;
    Fixture { listener: registered.id, victim }
}

/// Every method of both services in the contract, as `Service/Method`.
fn contract() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(eventbus_client::FILE_DESCRIPTOR_SET).unwrap();
    let services = set.file.iter().filter(|f| f.package() == "eventbus.v1").flat_map(|f| &f.service);
    let mut all: Vec<String> =
        services.flat_map(|s| s.method.iter().map(move |m| format!("{}/{}", s.name(), m.name()))).collect();
    all.sort();
    all
}

async fn every_rpc_answers_each_caller_with_the_exact_code(db: Database) {
    let mut listed: Vec<String> = RPCS.iter().map(|(s, m, _)| format!("{s}/{m}")).collect();
    listed.sort();
    assert_eq!(listed, contract(), "the table covers every RPC of the contract");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, ADMIN).unwrap();
    let s = TestServer::start_with(&db, |c| c.admin_token_file = Some(file)).await;
    let admin = s.client.clone().with_token(ADMIN).unwrap();
    let mut tokens = Tokens { admin: admin.clone(), made: HashMap::new() };
    let fx = fixture(&admin, &tokens).await;

    let (_, expired) = tokens.create(Role::Admin, "*", Some(SystemTime::now() + Duration::from_secs(1))).await;
    let (revoked_id, revoked) = tokens.create(Role::Admin, "*", None).await;
    admin.tokens().revoke_token(pb::RevokeTokenRequest { id: revoked_id }).await.unwrap();
    let expired = admin.clone().with_token(&expired).unwrap();
    // The expired token expires (one second after its creation).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call(&expired, &fx, "EventBusService", "ListNamespaces").await != Code::Unauthenticated {
        assert!(tokio::time::Instant::now() < deadline, "the token expires within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = state(&admin, &fx).await;
    let unauthenticated = [
        ("no token", s.client.clone()),
        ("a malformed token", s.client.clone().with_token("ebt_short").unwrap()),
        ("an unknown token", s.client.clone().with_token("ebt_unknownunknownunknownunknownunknown00").unwrap()),
        ("an expired token", expired),
        ("a revoked token", s.client.clone().with_token(&revoked).unwrap()),
    ];
    for (service, method, _) in RPCS {
        for (what, client) in &unauthenticated {
            let code = call(client, &fx, service, method).await;
            assert_eq!(code, Code::Unauthenticated, "{service}/{method} with {what}");
        }
        let [_, wrong_role, elsewhere] = grants(service, method);
        for (what, (role, namespaces)) in [("the wrong role", wrong_role), ("another namespace", elsewhere)] {
            let client = tokens.client(role, namespaces).await;
            let code = call(&client, &fx, service, method).await;
            assert_eq!(code, Code::PermissionDenied, "{service}/{method} with {what}: {role} on {namespaces}");
        }
    }
    let mut after = state(&admin, &fx).await;
    // The table's own tokens are the only change.
    after[4] = before[4].clone();
    assert_eq!(after, before, "the refused calls changed nothing");

    for (service, method, expected) in RPCS {
        let [(role, namespaces), _, _] = grants(service, method);
        let client = tokens.client(role, namespaces).await;
        let code = call(&client, &fx, service, method).await;
        assert_eq!(code, expected, "{service}/{method} with the right grant: {role} on {namespaces}");
    }

    let channel = Client::endpoint(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    let health = HealthClient::new(channel).check(HealthCheckRequest::default()).await;
    assert!(health.is_ok(), "health needs no token: {health:?}");
}

async fn a_token_that_cannot_be_checked_is_unavailable_not_unauthenticated(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, ADMIN).unwrap();
    let timeout = Duration::from_secs(2);
    let s = TestServer::start_with(&db.through(proxy.addr), |c| {
        c.admin_token_file = Some(file);
        c.token_cache = Duration::ZERO;
        c.store.database_timeout = timeout;
    })
    .await;
    let admin = s.client.clone().with_token(ADMIN).unwrap();
    let tokens = Tokens { admin: admin.clone(), made: HashMap::new() };
    let (_, secret) = tokens.create(Role::Reader, "*", None).await;
    let reader = s.client.clone().with_token(&secret).unwrap();
    let unknown = s.client.clone().with_token("ebt_unknownunknownunknownunknownunknown00").unwrap();
    let list = |c: &Client| {
        let mut raw = c.raw();
        async move {
            let request = pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() };
            raw.list_events(request).await.err().map_or(Code::Ok, |s| s.code())
        }
    };
    assert_eq!(list(&reader).await, Code::Ok);

    proxy.cut().await;
    let limit = timeout + Duration::from_secs(3);
    for (what, client) in [("a stored token", &reader), ("an unknown token", &unknown)] {
        let started = tokio::time::Instant::now();
        assert_eq!(list(client).await, Code::Unavailable, "{what} while the database is away");
        assert!(started.elapsed() < limit, "{what}: answered within the database timeout");
    }
    proxy.restore().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while list(&reader).await != Code::Ok {
        assert!(tokio::time::Instant::now() < deadline, "the token works again once the database is back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(list(&unknown).await, Code::Unauthenticated);
}
