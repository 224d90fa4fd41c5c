//! Database outages end to end (Postgres, through a proxy the test cuts or freezes, or by
//! terminating the server's sessions): every call answers UNAVAILABLE, never INTERNAL, within
//! the database timeout; health follows the database; nothing acknowledged is lost. Also the
//! health service as gRPC reflection shows it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventbus_client::pb;
use eventbus_client::{ListenerSpecBuilder, SubscribeOptions};
use eventbus_tests::{Backend, Database, Proxy, TestServer, WAIT, delivery_within, event, next_delivery, within};
use futures::StreamExt;
use tokio::sync::watch;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

eventbus_tests::backend_cases!(postgres only:
    calls_answer_unavailable_within_the_timeout_and_health_follows_the_database,
    a_statement_that_never_answers_is_given_up_in_time,
    terminated_sessions_mid_publish_answer_ok_or_unavailable,
);

/// The database timeout of these servers.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest a call may take while the database is away: the timeout, with a margin.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// Longest health may take to follow the database: two failed probes of up to the timeout each,
/// a probe interval, and a margin.
const HEALTH_WITHIN: Duration = Duration::from_secs(8);

const SERVICE: &str = "eventbus.v1.EventBusService";

async fn start(db: &Database) -> TestServer {
    TestServer::start_with(db, |c| c.store.database_timeout = DATABASE_TIMEOUT).await
}

/// Runs one call and checks that it answers UNAVAILABLE within [`ANSWER_WITHIN`].
async fn unavailable_in_time<T: std::fmt::Debug>(what: &str, call: impl Future<Output = Result<T, tonic::Status>>) {
    let started = Instant::now();
    let status = within(ANSWER_WITHIN, what, call).await.expect_err(what);
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "database unavailable, retry later"), "{what}");
    assert!(started.elapsed() < ANSWER_WITHIN, "{what} took {:?}", started.elapsed());
}

/// Every stored event of the namespace as (sequence, id), through ListEvents page by page.
async fn stored(s: &TestServer, ns: &str) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListEventsRequest { namespace: ns.into(), page_size: 1000, page_token, ..Default::default() };
        let page = s.client.raw().list_events(request).await.unwrap().into_inner();
        out.extend(page.events.into_iter().map(|e| (e.sequence, e.event.unwrap().id)));
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

/// A connection to the server, for the services the client does not wrap.
async fn channel(s: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap()
}

/// The health Watch stream of the event bus service.
async fn watch_health(s: &TestServer) -> tonic::Streaming<HealthCheckResponse> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    let request = HealthCheckRequest { service: SERVICE.into() };
    HealthClient::new(channel).watch(request).await.unwrap().into_inner()
}

/// Waits for the next status of a health Watch stream, within `limit`.
async fn next_status(limit: Duration, what: &str, stream: &mut tonic::Streaming<HealthCheckResponse>) -> ServingStatus {
    let message = within(limit, what, stream.message()).await.unwrap().expect("the watch goes on");
    ServingStatus::try_from(message.status).unwrap()
}

async fn check(s: &TestServer, service: &str) -> ServingStatus {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", s.addr)).unwrap().connect().await.unwrap();
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await.unwrap();
    ServingStatus::try_from(response.into_inner().status).unwrap()
}

fn get_event(sequence: u64) -> pb::GetEventRequest {
    pb::GetEventRequest { namespace: "ns".into(), key: Some(pb::get_event_request::Key::Sequence(sequence)) }
}

async fn calls_answer_unavailable_within_the_timeout_and_health_follows_the_database(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let s = start(&db.through(proxy.addr)).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let before = c.publish("ns", [event("a", "1"), event("a", "2")]).await.unwrap();
    assert_eq!(before.iter().map(|r| r.sequence).collect::<Vec<_>>(), vec![1, 2]);
    let mut sub = c.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    for seq in [1, 2] {
        let d = next_delivery(&mut sub).await;
        assert_eq!(d.notification().sequence, seq);
        d.ack().await.unwrap();
    }
    let mut health = watch_health(&s).await;
    assert_eq!(next_status(WAIT, "the first health status", &mut health).await, ServingStatus::Serving);

    let publisher = c.publisher().await.unwrap();
    proxy.cut().await;
    let mut raw = c.raw();
    unavailable_in_time("publish", async {
        c.publish("ns", [event("a", "3")]).await.map_err(|e| e.status().unwrap().clone())
    })
    .await;
    // A PublishStream message answers UNAVAILABLE, and its call goes on (below).
    unavailable_in_time("a PublishStream message", async {
        publisher.publish("ns", [event("a", "3")]).await.map_err(|e| e.status().unwrap().clone())
    })
    .await;
    unavailable_in_time("ack", async { c.ack("ns", "g", [1]).await.map_err(|e| e.status().unwrap().clone()) }).await;
    unavailable_in_time("get event", raw.get_event(get_event(1))).await;
    let spec = ListenerSpecBuilder::start("wf2").one("b");
    unavailable_in_time("register", async {
        c.register_listener("ns", spec).await.map_err(|e| e.status().unwrap().clone())
    })
    .await;
    // Calls that come together each answer in time too, not one timeout after another.
    let burst = (0..16).map(|i| {
        let c = c.clone();
        async move { c.publish("ns", [event("a", &format!("burst{i}"))]).await.map_err(|e| e.status().unwrap().clone()) }
    });
    let started = Instant::now();
    for result in within(ANSWER_WITHIN, "a burst of publishes", futures::future::join_all(burst)).await {
        assert_eq!(result.unwrap_err().code(), Code::Unavailable);
    }
    assert!(started.elapsed() < ANSWER_WITHIN, "the burst took {:?}", started.elapsed());

    assert_eq!(next_status(HEALTH_WITHIN, "NOT_SERVING", &mut health).await, ServingStatus::NotServing);
    assert_eq!(check(&s, "").await, ServingStatus::Serving, "the process as a whole stays alive");
    assert_eq!(check(&s, SERVICE).await, ServingStatus::NotServing);

    proxy.restore().await;
    assert_eq!(next_status(HEALTH_WITHIN, "SERVING again", &mut health).await, ServingStatus::Serving);
    // SERVING means the database answered: calls work again, with nothing lost.
    let after = c.publish("ns", [event("a", "3")]).await.unwrap();
    assert_eq!((after[0].sequence, after[0].duplicate), (3, false), "the failed publishes stored nothing");
    let streamed = publisher.publish("ns", [event("a", "4")]).await.unwrap();
    assert_eq!((streamed[0].sequence, streamed[0].duplicate), (4, false), "the stream outlived the outage");
    let ids: Vec<_> = stored(&s, "ns").await.into_values().collect();
    assert_eq!(ids, ["1", "2", "3", "4"], "the events acknowledged before the outage are intact");
    let d = delivery_within(Duration::from_secs(30), "the reconnecting subscription to deliver", &mut sub).await;
    assert_eq!(
        (d.notification().sequence, d.notification().attempt),
        (3, 1),
        "the acks made before the outage held: 1 and 2 are not redelivered"
    );
}

/// A network that silently drops everything while the writer waits for a statement (its
/// publish waits for a namespace lock another session holds): the answer never comes. Calls
/// still answer in time, and once the network is back the server works on new connections
/// instead of waiting on the hung one forever, and the hung session's locks are released.
async fn a_statement_that_never_answers_is_given_up_in_time(db: Database) {
    let name = session_name();
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let s = start(&db.named(&name).through(proxy.addr)).await;
    let c = &s.client;
    assert_eq!(c.publish("ns", [event("a", "1")]).await.unwrap()[0].sequence, 1);
    let admin = admin(&db).await;
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM namespaces WHERE name = 'ns' FOR UPDATE").execute(&mut *lock).await.unwrap();
    let blocked = tokio::spawn({
        let c = c.clone();
        async move { c.publish("ns", [event("a", "2")]).await.map_err(|e| e.status().unwrap().clone()) }
    });
    wait_for_lock(&admin, &name).await;
    proxy.freeze();
    // The statement goes on in the database; its answer is lost on the way.
    lock.rollback().await.unwrap();
    unavailable_in_time("the blocked publish", async { blocked.await.unwrap() }).await;
    let mut raw = c.raw();
    unavailable_in_time("get event", raw.get_event(get_event(1))).await;
    unavailable_in_time("publish", async {
        c.publish("ns", [event("a", "3")]).await.map_err(|e| e.status().unwrap().clone())
    })
    .await;

    proxy.restore().await;
    // Each hung idle connection costs the pool one timeout before it is dropped, and the hung
    // session holds the namespace lock until Postgres ends it; no signal says when, so retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match c.publish("ns", [event("a", "3")]).await {
            Ok(r) => break r,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => continue,
            Err(e) => panic!("publish once the network is back: {e:?}"),
        }
    };
    assert_eq!((after[0].sequence, after[0].duplicate), (2, false), "the given-up publish was rolled back");
    let ids: Vec<_> = stored(&s, "ns").await.into_values().collect();
    assert_eq!(ids, ["1", "3"]);
    admin.close().await;
}

/// A name for the server's sessions, to find them in `pg_stat_activity`.
fn session_name() -> String {
    format!("eventbus_{}", uuid::Uuid::now_v7().simple())
}

/// A pool of the test's own on the database, behind the server's back.
async fn admin(db: &Database) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.unwrap()
}

/// Waits until a session named `name` waits for a lock, within [`WAIT`] (polling: Postgres sends
/// no signal).
async fn wait_for_lock(admin: &sqlx::AnyPool, name: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        )
        .bind(name)
        .fetch_one(admin)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "a session of the server waits for the lock within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Terminates every session named `name`; returns how many there were.
async fn terminate(admin: &sqlx::AnyPool, name: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t",
    )
    .bind(name)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Postgres ends the server's sessions (`57P01 terminating connection due to administrator
/// command`) while a publish waits in a statement, and then while publishes run: each publish
/// answers OK or UNAVAILABLE, and every OK'd event is stored.
async fn terminated_sessions_mid_publish_answer_ok_or_unavailable(db: Database) {
    let name = session_name();
    let s = start(&db.named(&name)).await;
    let admin = admin(&db).await;
    assert_eq!(s.client.publish("ns", [event("a", "first")]).await.unwrap()[0].sequence, 1);
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM namespaces WHERE name = 'ns' FOR UPDATE").execute(&mut *lock).await.unwrap();
    let blocked = tokio::spawn({
        let c = s.client.clone();
        async move { c.publish("ns", [event("a", "blocked")]).await.map_err(|e| e.status().unwrap().clone()) }
    });
    wait_for_lock(&admin, &name).await;
    assert!(terminate(&admin, &name).await > 0);
    unavailable_in_time("the publish whose session was terminated", async { blocked.await.unwrap() }).await;
    lock.rollback().await.unwrap();

    let (progress, mut progressed) = watch::channel(0_u64);
    let progress = Arc::new(progress);
    let (stop, stopped) = watch::channel(false);
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let c = s.client.clone();
            let progress = progress.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                for i in 0.. {
                    if *stopped.borrow() {
                        break;
                    }
                    let ids: Vec<String> = (0..5).map(|k| format!("p{p}-{i}-{k}")).collect();
                    let r = publish_ids(&c, &ids).await;
                    if r.is_ok() {
                        progress.send_modify(|n| *n += 1);
                    }
                    results.push((ids, r));
                }
                results
            })
        })
        .collect();

    for round in 1..=3_u64 {
        within(WAIT, "publishes to go on", progressed.wait_for(|n| *n >= round * 20)).await.unwrap();
        assert!(terminate(&admin, &name).await > 0, "round {round}: the server's sessions were found");
    }
    within(WAIT, "publishes after the last round", progressed.wait_for(|n| *n >= 80)).await.unwrap();
    stop.send_replace(true);
    admin.close().await;

    let mut results = Vec::new();
    for publisher in publishers {
        results.extend(within(WAIT, "the publishers to stop", publisher).await.unwrap());
    }
    let stored = stored(&s, "ns").await;
    let (mut ok, mut unavailable) = (0, 0);
    for (ids, r) in results {
        match r {
            Ok(sequences) => {
                ok += 1;
                for (id, seq) in ids.iter().zip(sequences) {
                    assert_eq!(stored.get(&seq), Some(id), "acknowledged event {id} is stored as {seq}");
                }
            }
            Err(code) => {
                assert_eq!(code, Code::Unavailable, "publish of {ids:?}");
                unavailable += 1;
            }
        }
    }
    eprintln!("{ok} publishes OK, {unavailable} UNAVAILABLE");
}

/// Publishes events with these ids; returns their sequences or the status code.
async fn publish_ids(c: &eventbus_client::Client, ids: &[String]) -> Result<Vec<u64>, Code> {
    let events = ids.iter().map(|id| event("a", id));
    match c.publish("ns", events).await {
        Ok(results) => Ok(results.iter().map(|r| r.sequence).collect()),
        Err(e) => Err(e.code()),
    }
}

/// `grpcurl -plaintext HOST:PORT list` shows the health service, and `describe` finds it
/// without a proto file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_the_health_service() {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let db = Database::fresh(Backend::Sqlite).await;
    let s = TestServer::start(&db).await;
    let mut client = ServerReflectionClient::new(channel(&s).await);
    let requests = [
        MessageRequest::ListServices(String::new()),
        MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into()),
    ]
    .map(|r| ServerReflectionRequest { host: String::new(), message_request: Some(r) });
    let mut answers = client.server_reflection_info(futures::stream::iter(requests)).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("a service list")
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    let expected = [
        "eventbus.v1.EventBusService",
        "eventbus.v1.TokenService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ];
    assert_eq!(names, expected);
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("the file that defines grpc.health.v1.Health")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
