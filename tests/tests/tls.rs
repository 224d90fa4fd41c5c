//! TLS on the gRPC listener, end to end with certificates made in the test: TLS works, plaintext
//! and untrusted clients are refused, mutual TLS refuses clients without a certificate of its
//! CA, rotated certificates serve new connections while open streams go on, and the Rust
//! client's subscription runs over TLS with a database token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use eventbus_client::{Client, ClientTlsConfig, ListenerSpecBuilder, SubscribeOptions, pb};
use eventbus_server::TlsFiles;
use eventbus_tests::certs::{Ca, write_server_files};
use eventbus_tests::{Backend, Database, TestServer, delivery_within, event, next_notification, within};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Starts a SQLite server with TLS from `files`; its client trusts `ca`.
async fn start(db: &Database, files: TlsFiles, client: ClientTlsConfig) -> TestServer {
    TestServer::start_connected(db, |c| c.tls = Some(files), |addr| Client::connect_tls(https(addr), client)).await
}

fn https(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// Connects and publishes one event with id `id` to namespace "ns": the code the attempt fails
/// with, or `None` when it succeeds. A refused handshake can surface at connect or at the first
/// call, depending on the TLS version: both count.
async fn publish_over(endpoint: String, tls: Option<ClientTlsConfig>, id: &str) -> Option<Code> {
    let attempt = async {
        let channel = Client::endpoint_with_tls(endpoint, tls)?.connect().await?;
        Client::from_channel(channel).publish("ns", [event("a", id)]).await
    };
    within(Duration::from_secs(10), "the publish to end", attempt).await.err().map(|e| e.code())
}

/// Whether a call failed because the server ended the connection during or right after the
/// handshake. The code is the client stack's, and racy: with TLS 1.3 the client finishes its
/// side of the handshake before the server checks its certificate, so the refusal may end the
/// connection under the first call (UNKNOWN, CANCELLED) or before it (UNAVAILABLE); HTTP/2 sent
/// to a TLS server reads its alert as a protocol error (INTERNAL).
fn dropped_by_the_server(code: Option<Code>) -> bool {
    matches!(code, Some(Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal))
}

/// The ids of the events stored in namespace "ns".
async fn stored_ids(client: &Client) -> Vec<String> {
    let request = pb::ListEventsRequest { namespace: "ns".into(), ..Default::default() };
    let events = client.raw().list_events(request).await.unwrap().into_inner().events;
    events.into_iter().map(|e| e.event.unwrap().id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_calls_and_health_and_refuses_plaintext_and_untrusted_clients() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("eventbus test CA");
    let s = start(&db, write_server_files(dir.path(), &ca.server(), None), ca.trusted_by_client()).await;
    s.client.publish("ns", [event("a", "over-tls")]).await.unwrap();
    let channel = Client::endpoint_with_tls(https(s.addr), Some(ca.trusted_by_client())).unwrap().connect().await;
    let health = HealthClient::new(channel.unwrap()).check(HealthCheckRequest::default()).await.unwrap();
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);

    // A handshake the client refuses fails the connection: UNAVAILABLE.
    let other = Ca::new("another CA");
    let cases = [
        ("a client trusting another CA", Some(other.trusted_by_client())),
        ("https without the CA: the system's roots", None),
    ];
    for (what, tls) in cases {
        assert_eq!(publish_over(https(s.addr), tls, what).await, Some(Code::Unavailable), "{what}");
    }
    let plaintext = publish_over(format!("http://{}", s.addr), None, "plaintext").await;
    assert!(dropped_by_the_server(plaintext), "plaintext: {plaintext:?}");
    assert_eq!(stored_ids(&s.client).await, ["over-tls"], "refused clients stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_of_its_ca() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("eventbus test CA");
    let clients = Ca::new("client CA");
    let files = write_server_files(dir.path(), &ca.server(), Some(&clients));
    let runner = clients.client("runner");
    let s = start(&db, files, ca.trusted_by_client().identity(runner.identity())).await;
    s.client.publish("ns", [event("a", "with-cert")]).await.unwrap();

    let stranger = Ca::new("stranger CA").client("runner");
    let cases = [
        ("no client certificate", ca.trusted_by_client()),
        ("a certificate of another CA", ca.trusted_by_client().identity(stranger.identity())),
        ("the server's own certificate", ca.trusted_by_client().identity(ca.server().identity())),
    ];
    for (what, tls) in cases {
        let refused = publish_over(https(s.addr), Some(tls), what).await;
        assert!(dropped_by_the_server(refused), "{what}: {refused:?}");
    }
    assert_eq!(stored_ids(&s.client).await, ["with-cert"], "refused clients stored nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_serve_new_connections_while_open_streams_go_on() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let old_ca = Ca::new("old CA");
    let files = write_server_files(dir.path(), &old_ca.server(), None);
    let s = start(&db, files, old_ca.trusted_by_client()).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let request = pb::SubscribeRequest { namespace: "ns".into(), consumer_group: "g".into(), ..Default::default() };
    let mut stream = c.raw().subscribe(request).await.unwrap().into_inner();

    let new_ca = Ca::new("new CA");
    write_server_files(dir.path(), &new_ca.server(), None);
    within(Duration::from_secs(10), "a new connection to see the new certificate", async {
        while publish_over(https(s.addr), Some(new_ca.trusted_by_client()), "after").await.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        publish_over(https(s.addr), Some(old_ca.trusted_by_client()), "old").await,
        Some(Code::Unavailable),
        "a new connection trusting only the old CA is refused"
    );
    // The connection made before the rotation still carries calls and its open stream.
    c.publish("ns", [event("a", "before-stream")]).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.extend(next_notification(&mut stream).await.events.into_iter().map(|e| e.id));
    }
    ids.sort();
    assert_eq!(ids, ["after", "before-stream"]);
}

/// Mutual TLS with `[[certificate_principals]]`: a mapped certificate stands for its grants, an
/// unmapped one is UNAUTHENTICATED, and a bearer token wins over the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_client_certificates_stand_for_their_grants() {
    use eventbus_server::security::certificates::CertificateEntry;

    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("eventbus test CA");
    let clients = Ca::new("client CA");
    let files = write_server_files(dir.path(), &ca.server(), Some(&clients));
    let admin = "ebt_adminadminadminadminadminadminadmin00";
    std::fs::write(dir.path().join("admin-token"), admin).unwrap();
    let entry = CertificateEntry { name: "runner".into(), grants: vec!["publisher:shop".into(), "reader:shop".into()] };
    let s = TestServer::start_connected(
        &db,
        |c| {
            c.tls = Some(files);
            c.certificate_principals = vec![entry.check().unwrap()];
            c.admin_token_file = Some(dir.path().join("admin-token"));
        },
        |addr| Client::connect_tls(https(addr), ca.trusted_by_client().identity(clients.client("runner").identity())),
    )
    .await;
    let stranger =
        Client::connect_tls(https(s.addr), ca.trusted_by_client().identity(clients.client("stranger").identity()))
            .await
            .unwrap();
    let publish = |c: &Client, ns: &'static str| {
        let c = c.clone();
        async move { c.publish(ns, [event("a", ns)]).await.err().and_then(|e| e.status().map(|s| s.code())) }
    };
    assert_eq!(publish(&s.client, "shop").await, None, "the runner's certificate grants publisher on shop");
    assert_eq!(publish(&s.client, "other").await, Some(Code::PermissionDenied));
    let delete = pb::DeleteNamespaceRequest { namespace: "shop".into() };
    let denied = s.client.raw().delete_namespace(delete.clone()).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "reader and publisher only");
    assert_eq!(publish(&stranger, "shop").await, Some(Code::Unauthenticated), "a certificate no entry names");
    let with_token = stranger.clone().with_token(admin).unwrap();
    assert_eq!(publish(&with_token, "other").await, None, "a bearer token is judged by itself");
    let listed = pb::ListEventsRequest { namespace: "shop".into(), ..Default::default() };
    let events = s.client.raw().list_events(listed).await.unwrap().into_inner().events;
    assert_eq!(events.len(), 1, "refused calls stored nothing");
}

/// A worker on the Rust client over TLS, with a token made through TokenService (listener,
/// publisher and subscriber on "ns"): it registers, publishes, receives and acks; outside its
/// grants it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_runs_over_tls_with_a_database_token() {
    let db = Database::fresh(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("CA");
    let files = write_server_files(dir.path(), &ca.server(), None);
    let admin = "ebt_0123456789abcdefghijklmnopqrstuvwxyz-_";
    let admin_file = dir.path().join("admin");
    std::fs::write(&admin_file, admin).unwrap();
    let tweak = |c: &mut eventbus_server::ServerConfig| {
        c.tls = Some(files);
        c.admin_token_file = Some(admin_file);
    };
    let s =
        TestServer::start_connected(&db, tweak, |addr| Client::connect_tls(https(addr), ca.trusted_by_client())).await;
    let admin = s.client.clone().with_token(admin).unwrap();
    let grants = [pb::Role::Listener, pb::Role::Publisher, pb::Role::Subscriber]
        .map(|role| pb::Grant { role: role as i32, namespaces: "ns".into() })
        .to_vec();
    let request = pb::CreateTokenRequest { name: "worker".into(), grants, expire_time: None };
    let secret = admin.tokens().create_token(request).await.unwrap().into_inner().secret;

    let worker = Client::connect_tls(https(s.addr), ca.trusted_by_client()).await.unwrap().with_token(&secret).unwrap();
    worker.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let mut sub = worker.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    worker.publish("ns", [event("a", "1")]).await.unwrap();
    let d = delivery_within(Duration::from_secs(10), "the delivery over TLS", &mut sub).await;
    assert_eq!(d.notification().workflow_id, "wf");
    assert_eq!(d.notification().events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["1"]);
    d.ack().await.unwrap();
    let refused = worker.publish("other", [event("a", "2")]).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
}
