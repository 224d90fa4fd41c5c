//! The client commands of the built binary against a live server: output and exit codes in
//! text and JSON, and the error cases (JSON errors, NOT_FOUND naming the namespace, `--one a,b`,
//! a closed pipe).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder};
use serde_json::{Value, json};

#[path = "support/process.rs"]
mod process;

use process::{BIN, eventbus, parts, start};

/// A server in a temp dir, stopped (killed) when dropped.
struct Live {
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
    addr: String,
    client: Client,
}

async fn live() -> Live {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start(dir.path(), &[]).await;
    let client = Client::connect(addr.clone()).await.unwrap();
    Live { _dir: dir, _child: child, addr, client }
}

impl Live {
    async fn run(&self, args: &[&str]) -> (Option<i32>, String, String) {
        parts(&eventbus(&self.addr, args, b"").await)
    }

    async fn run_with_input(&self, args: &[&str], input: &str) -> (Option<i32>, String, String) {
        parts(&eventbus(&self.addr, args, input.as_bytes()).await)
    }
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"))).collect()
}

fn ndjson_event(id: usize) -> String {
    json!({"specversion": "1.0", "id": id.to_string(), "source": "/file", "type": "t", "n": id}).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_one_event_and_a_batch_from_ndjson() {
    let live = live().await;
    let one = ["publish", "-n", "shop", "-t", "t", "-s", "/file", "--id", "1"];
    assert_eq!(live.run(&one).await, (Some(0), "published sequence 1 (source /file, id 1)\n".into(), String::new()));
    let (code, out, _) = live.run(&[&one[..], &["--json"]].concat()).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        json_lines(&out),
        [json!({"namespace": "shop", "source": "/file", "id": "1", "sequence": 1, "duplicate": true})]
    );

    // Ids 1 to 2501 with a blank line: id 1 is a duplicate; 2501 events go in three batches.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let mut lines: Vec<String> = (1..=2501).map(ndjson_event).collect();
    lines.insert(7, String::new());
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let path = file.display().to_string();
    let (code, out, err) = live.run(&["publish", "-n", "shop", "--file", &path]).await;
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let expected =
        format!("published 2501 events from {path} in 3 batches: 2500 new, 1 duplicates, sequences 2 to 2501 (");
    assert!(out.starts_with(&expected) && out.ends_with("s)\n"), "{out}");

    let input = format!("{}\n{}\n", ndjson_event(9001), ndjson_event(9002));
    let (code, out, _) = live.run_with_input(&["publish", "-n", "shop", "--file", "-", "--json"], &input).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        json_lines(&out),
        [json!({"namespace": "shop", "events": 2, "new": 2, "duplicates": 0, "batches": 1,
                "first_sequence": 2502, "last_sequence": 2503})]
    );
    let (code, out, _) = live.run(&["events", "get", "-n", "shop", "2503", "--json"]).await;
    assert_eq!(code, Some(0));
    let stored = &json_lines(&out)[0]["event"];
    assert_eq!(stored, &json!({"specversion": "1.0", "id": "9002", "source": "/file", "type": "t", "n": 9002}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_names_the_bad_line() {
    let live = live().await;
    let missing_id = r#"{"specversion":"1.0","source":"/s","type":"t"}"#;
    let input = format!("{}\n{}\n{missing_id}\n", ndjson_event(1), ndjson_event(2));
    let args = ["publish", "-n", "bad", "--file", "-"];
    let (code, out, err) = live.run_with_input(&args, &input).await;
    assert_eq!((code, out.as_str(), err.as_str()), (Some(1), "", "error: line 3: id: required (INVALID_ARGUMENT)\n"));
    let (code, _, err) = live.run_with_input(&[&args[..], &["--json"]].concat(), &input).await;
    assert_eq!(code, Some(1));
    assert_eq!(
        json_lines(&err),
        [json!({"error": {"code": "INVALID_ARGUMENT", "message": "line 3: id: required",
                "field_violations": [{"field": "line 3: id", "description": "required"}]}})]
    );

    // The server rejects the batch: its field path is turned into the line.
    let empty_source = r#"{"specversion":"1.0","id":"x","source":"","type":"t"}"#;
    let input = format!("{}\n\n{empty_source}\n", ndjson_event(1));
    let (code, _, err) = live.run_with_input(&[&args[..], &["--json"]].concat(), &input).await;
    assert_eq!(code, Some(1));
    let error = &json_lines(&err)[0]["error"];
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert_eq!(error["field_violations"][0]["field"], "line 3: events[1].source", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("publishing lines 1 to 3 failed, and 0 events before them were published: "),
        "{message}"
    );
    let (_, out, _) = live.run(&["events", "list", "-n", "bad", "--json"]).await;
    assert_eq!(out, "", "nothing of the rejected batch is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_by_time_and_tail() {
    let live = live().await;
    let event = |id: &str| CloudEventBuilder::new("/s", "t").id(id).build();
    live.client.publish("ev", [event("1"), event("2")]).await.unwrap();
    let sequences = |out: &str| json_lines(out).iter().map(|e| e["sequence"].as_u64().unwrap()).collect::<Vec<_>>();
    let cases: [(&[&str], Vec<u64>); 5] = [
        (&["--since", "10m"], vec![1, 2]),
        (&["--since", "10m", "--after", "1"], vec![2]),
        (&["--until", "2000-01-01T00:00:00Z"], vec![]),
        (&["--since", "2999-01-01T00:00:00Z"], vec![]),
        (&["--since", "1h", "--until", "2999-01-01T00:00:00+02:00"], vec![1, 2]),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> =
            ["events", "list", "-n", "ev", "--json"].into_iter().chain(extra.iter().copied()).collect();
        let (code, out, _) = live.run(&args).await;
        assert_eq!((code, sequences(&out)), (Some(0), expected), "{extra:?}");
    }
    let (code, out, err) = live.run(&["events", "list", "-n", "ev", "--until", "5m"]).await;
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), "", "no events\n"));
    let (code, _, err) = live.run(&["events", "list", "-n", "ev", "--since", "yesterday"]).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("invalid value 'yesterday' for '--since <TIME>'"), "{err}");

    // tail: starts with what is received from now on; --count ends it.
    let mut tail = tokio::process::Command::new(BIN)
        .args(["events", "tail", "-n", "ev", "--count", "2", "--interval", "50ms"])
        .env("EVENTBUS_ADDR", &live.addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(tail.stderr.take().unwrap());
    let mut note = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stderr, &mut note).await.unwrap();
    assert_eq!(note, "following events in namespace ev; Ctrl-C to stop\n");
    live.client.publish("ev", [event("3")]).await.unwrap();
    live.client.publish("ev", [event("4"), event("5")]).await.unwrap();
    let output =
        tokio::time::timeout(std::time::Duration::from_secs(20), tail.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let lines: Vec<Vec<String>> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect();
    let seq_and_id: Vec<(&str, &str)> = lines.iter().map(|l| (l[0].as_str(), l[4].as_str())).collect();
    assert_eq!(seq_and_id, [("3", "3"), ("4", "4")], "events 1 and 2 came before the tail");
    let (code, out, _) = live.run(&["events", "tail", "-n", "ev", "--after", "4", "--count", "1", "--json"]).await;
    assert_eq!((code, sequences(&out)), (Some(0), vec![5]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_settles_as_told_and_dead_letters_redrive() {
    let live = live().await;
    live.client.register_listener("sub", ListenerSpecBuilder::start("wf").one("t")).await.unwrap();
    live.client.publish("sub", [CloudEventBuilder::new("/s", "t").id("1").build()]).await.unwrap();
    let attempt = |out: &str| json_lines(out)[0]["attempt"].as_u64().unwrap();

    // --no-ack leaves it leased; the stream's end counts the attempt, so it comes back as 2.
    let (code, out, _) =
        live.run(&["subscribe", "-n", "sub", "-g", "peek", "--no-ack", "--count", "1", "--json"]).await;
    assert_eq!((code, attempt(&out)), (Some(0), 1));
    let (code, out, _) = live.run(&["subscribe", "-n", "sub", "-g", "peek", "--count", "1", "--json"]).await;
    assert_eq!((code, attempt(&out)), (Some(0), 2));
    let (code, out, _) = live.run(&["dead-letters", "list", "-n", "sub", "-g", "peek", "--json"]).await;
    assert_eq!((code, out.as_str()), (Some(0), ""), "acked, not dead");

    // --nack on the last attempt makes a dead letter with the reason.
    let nack = ["subscribe", "-n", "sub", "-g", "n", "--max-attempts", "1", "--nack", "broken", "--count", "1"];
    let (code, out, err) = live.run(&nack).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("#1 start workflow=wf "), "{out}");
    assert!(err.ends_with("notification 1 is now a dead letter (attempt 1)\n"), "{err}");
    let (code, out, _) = live.run(&["dead-letters", "list", "-n", "sub", "-g", "n", "--json"]).await;
    let letters = json_lines(&out);
    assert_eq!(code, Some(0));
    assert_eq!((letters.len(), &letters[0]["last_error"]), (1, &json!("broken")));
    assert_eq!(letters[0]["notification"]["sequence"], 1);
    let (_, out, _) = live.run(&["dead-letters", "list", "-n", "sub", "-g", "n"]).await;
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("SEQ  DEAD SINCE") && rows[1].starts_with("1    ") && rows[1].ends_with("broken"),
        "{out}"
    );

    let redrive = ["dead-letters", "redrive", "-n", "sub", "-g", "n", "--all"];
    assert_eq!(live.run(&redrive).await, (Some(0), "redrove 1 dead letters of group n\n".into(), String::new()));
    let (code, out, _) = live.run(&[&redrive[..], &["--json"]].concat()).await;
    assert_eq!((code, json_lines(&out)), (Some(0), vec![json!({"group": "n", "redriven": 0})]));
    let (code, _, err) = live.run(&["dead-letters", "redrive", "-n", "sub", "-g", "n"]).await;
    assert_eq!(code, Some(2), "sequences or --all: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_namespace_and_come_as_json() {
    let live = live().await;
    let id = "0190d0b5-5f2a-7000-8000-000000000001";
    let text = format!("error: listener {id} not found in namespace \"default\" (NOT_FOUND)\n");
    assert_eq!(live.run(&["listeners", "get", id]).await, (Some(1), String::new(), text));
    let (code, out, err) = live.run(&["listeners", "get", id, "--json", "-n", "shop"]).await;
    assert_eq!((code, out.as_str()), (Some(1), ""));
    let message = format!("listener {id} not found in namespace \"shop\"");
    assert_eq!(json_lines(&err), [json!({"error": {"code": "NOT_FOUND", "message": message, "field_violations": []}})]);
    let (code, _, err) = live.run(&["dead-letters", "list", "-n", "ops", "-g", "nosuch"]).await;
    assert_eq!(
        (code, err.as_str()),
        (Some(1), "error: consumer group \"nosuch\" not found in namespace \"ops\" (NOT_FOUND)\n")
    );

    let one = ["listeners", "add", "--start", "wf", "--one", "a,b"];
    let (code, _, err) = live.run(&one).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("--one takes exactly one type, and \"a,b\" names several: use --any a,b"), "{err}");
    let (code, _, err) = live.run(&[&one[..], &["--json"]].concat()).await;
    assert_eq!(code, Some(2));
    let error = &json_lines(&err)[0]["error"];
    assert_eq!(error["code"], "INVALID_ARGUMENT");
    assert!(error["message"].as_str().unwrap().starts_with("invalid value 'a,b' for '--one <TYPE>'"), "{error}");
    let (_, out, _) = live.run(&["listeners", "list", "--all", "--json"]).await;
    assert_eq!(out, "", "nothing was registered");
    let add = ["listeners", "add", "--start", "wf", "--any", "a,b", "--request-id", "start-wf"];
    assert_eq!(live.run(&add).await.0, Some(0));
    let (_, out, _) = live.run(&["listeners", "list"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("  REQUEST ID  ") && lines[1].contains("  start-wf"),
        "the listing shows request ids: {out}"
    );

    let (code, _, err) = parts(&eventbus("127.0.0.1:1", &["events", "list", "--json"], b"").await);
    assert_eq!(code, Some(1));
    let error = &json_lines(&err)[0]["error"];
    assert_eq!(error["code"], "UNAVAILABLE");
    assert!(error["message"].as_str().unwrap().starts_with("connecting to 127.0.0.1:1: "), "{error}");
}

/// Runs `eventbus ARGS`, reads one line of its output and closes the pipe; returns the exit
/// code and stderr.
async fn read_one_line_then_close(addr: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .env("EVENTBUS_ADDR", addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_quietly_with_status_0() {
    let live = live().await;
    // More output than a pipe buffers (64 KiB), so the command is still writing when it closes.
    for chunk in 0..3 {
        let events = (0..1000).map(|i| CloudEventBuilder::new("/s", "t").id(format!("{chunk}-{i}")).build());
        live.client.publish("pipe", events).await.unwrap();
    }
    for i in 0..1000 {
        let spec = ListenerSpecBuilder::start(format!("workflow-with-a-longish-name-{i}")).one("some.event.type");
        live.client.register_listener("pipe", spec).await.unwrap();
    }
    for args in [
        &["listeners", "list", "--all", "-n", "pipe"][..],
        &["listeners", "list", "--all", "-n", "pipe", "--json"],
        &["events", "list", "-n", "pipe", "--limit", "0"],
        &["events", "list", "-n", "pipe", "--limit", "0", "--json"],
    ] {
        assert_eq!(read_one_line_then_close(&live.addr, args).await, (Some(0), String::new()), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_is_for_the_command_at_hand() {
    let help = |args: &'static [&'static str]| async move { parts(&eventbus("127.0.0.1:1", args, b"").await) };
    let (code, out, _) = help(&["--help"]).await;
    assert_eq!(code, Some(0));
    assert!(out.starts_with("eventbus: an event bus for workflow engines."), "{out}");
    assert!(out.contains("EVENTBUS_LOG"), "{out}");
    assert!(out.contains("\n  dead-letters  Lists and redrives the dead letters of a consumer group\n"), "{out}");
    for args in [&["serve", "--help"][..], &["bench", "--help"]] {
        let (code, out, _) = help(args).await;
        assert_eq!(code, Some(0));
        assert!(!out.contains("--addr") && !out.contains("--namespace"), "{args:?}: {out}");
    }
    let (_, out, _) = help(&["serve", "--help"]).await;
    assert!(out.contains("database_url, data_file, relaxed_durability"), "{out}");
    let (_, out, _) = help(&["publish", "--help"]).await;
    assert!(out.contains("--addr") && out.contains("--file"), "{out}");
}
