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
    a_frozen_database_answers_unavailable_in_time_and_is_left_behind,
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

    proxy.cut().await;
    let mut raw = c.raw();
    unavailable_in_time("publish", async {
        c.publish("ns", [event("a", "3")]).await.map_err(|e| e.status().unwrap().clone())
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
    let ids: Vec<_> = stored(&s, "ns").await.into_values().collect();
    assert_eq!(ids, ["1", "2", "3"], "the events acknowledged before the outage are intact");
    let d = delivery_within(Duration::from_secs(30), "the reconnecting subscription to deliver", &mut sub).await;
    assert_eq!(
        (d.notification().sequence, d.notification().attempt),
        (3, 1),
        "the acks made before the outage held: 1 and 2 are not redelivered"
    );
}

/// A network that silently drops everything: statements in flight never get an answer. Calls
/// still answer in time, and once the network is back, the server works on new connections
/// instead of waiting on the hung ones forever.
async fn a_frozen_database_answers_unavailable_in_time_and_is_left_behind(db: Database) {
    let mut proxy = Proxy::start(db.server_addr().await).await;
    let s = start(&db.through(proxy.addr)).await;
    let c = &s.client;
    c.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let before = c.publish("ns", [event("a", "1")]).await.unwrap();
    assert_eq!(before[0].sequence, 1);

    // Publishes keep the writer busy while the network freezes under it.
    let (progress, mut progressed) = watch::channel(0_u64);
    let (stop, stopped) = watch::channel(false);
    let load = tokio::spawn({
        let c = c.clone();
        async move {
            let mut results = Vec::new();
            for i in 0.. {
                if *stopped.borrow() {
                    break;
                }
                let id = format!("load{i}");
                let started = Instant::now();
                let r = publish_ids(&c, std::slice::from_ref(&id)).await;
                results.push((id, started.elapsed(), r));
                progress.send_modify(|n| *n += 1);
            }
            results
        }
    });
    within(WAIT, "some publishes", progressed.wait_for(|n| *n >= 5)).await.unwrap();
    proxy.freeze();
    let mut raw = c.raw();
    unavailable_in_time("get event", raw.get_event(get_event(1))).await;
    unavailable_in_time("publish", async {
        c.publish("ns", [event("a", "2")]).await.map_err(|e| e.status().unwrap().clone())
    })
    .await;
    let frozen_at = *progressed.borrow();
    within(WAIT, "publishes to go on answering", progressed.wait_for(|n| *n >= frozen_at + 3)).await.unwrap();

    proxy.restore().await;
    // The hung connections are left behind and new ones serve (the pool drops each hung idle
    // connection after one timeout, so allow a few); no signal says when, so retry.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        match c.publish("ns", [event("a", "after")]).await {
            Ok(r) => break r,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => continue,
            Err(e) => panic!("publish once the network is back: {e:?}"),
        }
    };
    assert!(!after[0].duplicate);
    stop.send_replace(true);
    let results = within(WAIT, "the load to stop", load).await.unwrap();
    let stored = stored(&s, "ns").await;
    for (id, took, r) in &results {
        assert!(*took < ANSWER_WITHIN, "publish {id} took {took:?}");
        match r {
            Ok(sequences) => assert_eq!(stored.get(&sequences[0]), Some(id), "acknowledged publish {id} is stored"),
            Err(code) => assert_eq!(*code, Code::Unavailable, "publish {id}"),
        }
    }
}

/// Postgres ends the server's sessions (`57P01 terminating connection due to administrator
/// command`) while publishes run: each publish answers OK or UNAVAILABLE, and every OK'd event
/// is stored.
async fn terminated_sessions_mid_publish_answer_ok_or_unavailable(db: Database) {
    let name = format!("eventbus_{}", uuid::Uuid::now_v7().simple());
    let s = start(&db.named(&name)).await;
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

    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&db.url).await.unwrap();
    for round in 1..=3_u64 {
        within(WAIT, "publishes to go on", progressed.wait_for(|n| *n >= round * 20)).await.unwrap();
        let terminated: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t",
        )
        .bind(&name)
        .fetch_one(&admin)
        .await
        .unwrap();
        assert!(terminated > 0, "round {round}: the server's sessions were found");
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
    assert_eq!(names, ["eventbus.v1.EventBusService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]);
    let Some(MessageResponse::FileDescriptorResponse(files)) = answers.next().await.unwrap().unwrap().message_response
    else {
        panic!("the file that defines grpc.health.v1.Health")
    };
    assert!(!files.file_descriptor_proto.is_empty());
}
