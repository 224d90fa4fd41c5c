//! The built `eventbus` binary: starts on an ephemeral port, serves a publish and a subscribe
//! over real sockets, answers `eventbus health`, and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, SubscribeOptions};
use futures::StreamExt;

#[path = "support/process.rs"]
mod process;

use process::{start, terminate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = start(dir.path(), &[]).await;
    let client = Client::connect(format!("http://{addr}")).await.unwrap();
    client.register_listener("ns", ListenerSpecBuilder::start("wf").one("a")).await.unwrap();
    let results = client.publish("ns", [CloudEventBuilder::new("/bin", "a").id("1").build()]).await.unwrap();
    assert_eq!(results[0].sequence, 1);
    let mut sub = client.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), sub.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(d.notification().workflow_id, "wf");
    d.ack().await.unwrap();

    let health = |addr: &str, service: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"))
            .args(["health", "--addr", addr, "--service", service])
            .output()
            .unwrap()
    };
    for service in ["", "eventbus.v1.EventBusService"] {
        let out = health(&addr, service);
        assert!(out.status.success(), "health of {service:?}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "SERVING\n");
    }
    assert!(!health(&addr, "no.such.Service").status.success(), "an unknown service is not healthy");
    let https = health(&format!("https://{addr}"), "");
    assert!(!https.status.success(), "https:// never falls back to plaintext: {https:?}");
    assert_eq!(String::from_utf8_lossy(&https.stdout), "");

    let exit = terminate(&mut child).await;
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    assert!(!health(&addr, "").status.success(), "a stopped server is not healthy");
}

/// A SIGTERM sent the moment the server says it is ready (its address file) is a graceful
/// shutdown too: the handler is installed before the file is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_ready_exits_0() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (mut child, _) = start(dir.path(), &[]).await;
        let exit = terminate(&mut child).await;
        assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    }
}
