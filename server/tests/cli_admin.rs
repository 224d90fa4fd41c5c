//! The built `eventbus` binary's admin commands against a live server: `groups list | get |
//! seek | rm`, `namespaces list | rm` and `listeners get` with partial state, in text and JSON,
//! with their exit codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, pb};
use eventbus_engine::store::StoreConfig;
use eventbus_server::ServerConfig;
use tokio::sync::oneshot;

#[path = "support/process.rs"]
mod process;

use process::{failed, json_lines, stdout};

/// Runs `eventbus <args> --addr <addr>` with stdin closed (not a terminal).
fn eventbus(addr: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(args)
        .arg("--addr")
        .arg(addr)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_namespaces_commands() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("eventbus.db").display());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(eventbus_server::serve(listener, ServerConfig::new(StoreConfig::new(&url)), async {
        let _ = stopped.await;
    }));
    let client = Client::connect(addr.clone()).await.unwrap();
    client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let all = client.register_listener("ns", ListenerSpecBuilder::start("wf").all(["x", "y"])).await.unwrap();
    let events = (1..=2).map(|i| CloudEventBuilder::new("/cli", "a").id(i.to_string()).build());
    client.publish("ns", events.chain([CloudEventBuilder::new("/cli", "x").id("3").build()])).await.unwrap();
    let req = pb::SubscribeRequest {
        namespace: "ns".into(),
        consumer_group: "g".into(),
        max_in_flight: 1,
        ..Default::default()
    };
    let mut stream = client.raw().subscribe(req).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap();
    assert!(first.is_some());
    let addr = addr.as_str();

    let text = stdout(&eventbus(addr, &["groups", "-n", "ns", "list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    // NAME READ PENDING LEASED DEAD ...: the stream holds 1 (max_in_flight 1), 2 waits.
    assert!(lines[1].split_whitespace().take(5).eq(["g", "1", "1", "1", "0"]), "{text}");
    let listed = json_lines(&eventbus(addr, &["groups", "-n", "ns", "list", "--json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["pending_count"].as_u64(), listed[0]["leased_count"].as_u64()),
        (Some("g"), Some(1), Some(1))
    );
    assert_eq!(listed[0]["connected_stream_count"], 1);

    let got = stdout(&eventbus(addr, &["groups", "-n", "ns", "get", "g"]));
    assert!(got.contains("read position: 1") && got.contains("max attempts:  10"), "{got}");
    failed(&eventbus(addr, &["groups", "-n", "ns", "get", "nope"]), 1, "NOT_FOUND");

    let seeked = json_lines(&eventbus(addr, &["groups", "-n", "ns", "seek", "g", "--latest", "--json"]));
    assert_eq!(
        (seeked[0]["seek_read_sequence"].as_u64(), seeked[0]["dropped_delivery_count"].as_u64()),
        (Some(2), Some(1))
    );
    let text = stdout(&eventbus(addr, &["groups", "-n", "ns", "seek", "g", "--sequence", "1"]));
    assert!(text.starts_with("moved g to read position 0 (0 deliveries dropped)"), "{text}");
    failed(&eventbus(addr, &["groups", "-n", "ns", "seek", "g", "--sequence", "9"]), 1, "FAILED_PRECONDITION");

    let shown = json_lines(&eventbus(addr, &["listeners", "-n", "ns", "get", &all.id, "--json"]));
    assert_eq!(shown[0]["partial_states"][0]["missing_types"], serde_json::json!(["y"]));
    assert_eq!(shown[0]["partial_states"][0]["events"][0]["sequence"], 3);
    let text = stdout(&eventbus(addr, &["listeners", "-n", "ns", "get", &all.id]));
    assert!(text.contains("collected:   (no correlation)") && text.contains("waiting for y"), "{text}");

    failed(&eventbus(addr, &["groups", "-n", "ns", "rm", "g"]), 1, "refusing to delete");
    let removed = json_lines(&eventbus(addr, &["groups", "-n", "ns", "rm", "g", "--yes", "--json"]));
    assert_eq!(removed[0]["deleted"], "g");

    let text = stdout(&eventbus(addr, &["namespaces", "list"]));
    assert!(text.lines().nth(1).unwrap().split_whitespace().eq(["ns", "3", "2", "0", "3", "2"]), "{text}");
    let listed = json_lines(&eventbus(addr, &["namespaces", "list", "--json"]));
    assert_eq!((listed[0]["name"].as_str(), listed[0]["event_count"].as_u64()), (Some("ns"), Some(3)));
    failed(&eventbus(addr, &["namespaces", "rm", "ns"]), 1, "refusing to delete");
    let text = stdout(&eventbus(addr, &["namespaces", "rm", "ns", "--yes"]));
    assert!(text.starts_with("deleted namespace ns: 3 events, 2 listeners, 2 notifications"), "{text}");
    assert!(json_lines(&eventbus(addr, &["namespaces", "list", "--json"])).is_empty());
    failed(&eventbus(addr, &["namespaces", "rm", "ns", "--yes", "--json"]), 1, "NOT_FOUND");

    drop(stream);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
