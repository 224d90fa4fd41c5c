//! The built `eventbus` binary's token commands against a live server with tokens on: `tokens
//! create | list | get | revoke`, in text and JSON, with their exit codes, and the created
//! tokens at work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use eventbus_client::{Client, CloudEventBuilder};
use eventbus_engine::store::{Backend, StoreConfig};
use eventbus_engine::testkit::TestDatabase;
use eventbus_server::ServerConfig;
use tokio::sync::oneshot;
use tonic::Code;

#[path = "support/process.rs"]
mod process;

use process::{failed, json_lines, stdout};

const ADMIN: &str = "ebt_adminadminadminadminadminadminadmin00";

/// Runs `eventbus <args> --addr <addr>` with `token` in EVENTBUS_TOKEN and stdin closed.
fn eventbus(addr: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"));
    command.args(args).arg("--addr").arg(addr).env_remove("EVENTBUS_NAMESPACE").stdin(Stdio::null());
    match token {
        Some(t) => command.env("EVENTBUS_TOKEN", t),
        None => command.env_remove("EVENTBUS_TOKEN"),
    };
    command.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_created_listed_and_revoked_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, ADMIN).unwrap();
    let url = format!("sqlite://{}", dir.path().join("eventbus.db").display());
    let mut config = ServerConfig::new(StoreConfig::new(&url));
    config.admin_token_file = Some(file);
    config.token_cache = Duration::ZERO;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(eventbus_server::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let admin = Some(ADMIN);
    let a = addr.as_str();

    let created =
        eventbus(a, admin, &["tokens", "create", "--namespace", "shop", "--role", "publisher", "--name", "ci"]);
    let secret = stdout(&created).trim().to_owned();
    assert!(secret.starts_with("ebt_") && secret.len() == 47, "the secret alone on stdout: {secret}");
    let note = String::from_utf8_lossy(&created.stderr);
    assert!(note.contains("(publisher on shop); its secret, shown only now"), "{note}");
    let args =
        ["tokens", "create", "--grant", "reader:team-a.*", "--role", "listener", "-n", "ops", "--expires", "30d"];
    let second = json_lines(&eventbus(a, admin, &[&args[..], &["--json"]].concat()));
    let grants = serde_json::json!([
        { "role": "listener", "namespaces": "ops" },
        { "role": "reader", "namespaces": "team-a.*" },
    ]);
    assert_eq!((&second[0]["grants"], second[0]["state"].as_str()), (&grants, Some("active")));
    assert!(second[0]["expire_time"].is_string() && second[0]["secret"].as_str().unwrap().starts_with("ebt_"));

    // The token works within its grant only.
    let ci = Client::connect(addr.clone()).await.unwrap().with_token(&secret).unwrap();
    ci.publish("shop", [CloudEventBuilder::new("/cli", "a").build()]).await.unwrap();
    let denied = ci.publish("other", [CloudEventBuilder::new("/cli", "a").build()]).await.unwrap_err();
    assert_eq!(denied.status().map(|s| s.code()), Some(Code::PermissionDenied));

    let text = stdout(&eventbus(a, admin, &["tokens", "list"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].split_whitespace().eq(["ID", "NAME", "GRANTS", "STATE", "CREATED", "EXPIRES", "LAST", "USED"]));
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].contains(" ci ") && lines[1].contains("publisher on shop") && lines[1].contains("active"));
    assert!(lines[2].contains("listener on ops, reader on team-a.*") && lines[2].ends_with("never"), "{text}");
    let listed = eventbus(a, admin, &["tokens", "list", "--json"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("ebt_"), "no secret is ever listed");
    let listed = json_lines(&listed);
    let id = listed[0]["id"].as_str().unwrap().to_owned();
    let got = json_lines(&eventbus(a, admin, &["tokens", "get", &id, "--json"]));
    assert_eq!(got[0]["name"], "ci");

    let text = stdout(&eventbus(a, admin, &["tokens", "revoke", &id]));
    assert_eq!(text, format!("revoked token {id} (ci)\n"));
    let revoked = ci.publish("shop", [CloudEventBuilder::new("/cli", "b").build()]).await.unwrap_err();
    assert_eq!(revoked.status().map(|s| s.code()), Some(Code::Unauthenticated));
    let got = json_lines(&eventbus(a, admin, &["tokens", "get", &id, "--json"]));
    assert_eq!(got[0]["state"], "revoked");
    assert!(got[0]["revoke_time"].is_string() && got[0]["last_use_time"].is_string(), "{got:?}");

    failed(&eventbus(a, None, &["tokens", "list"]), 1, "UNAUTHENTICATED");
    failed(&eventbus(a, Some(&secret), &["tokens", "list"]), 1, "UNAUTHENTICATED");
    failed(&eventbus(a, admin, &["tokens", "create", "--name", "x"]), 1, "INVALID_ARGUMENT");
    failed(&eventbus(a, admin, &["tokens", "create", "--role", "root"]), 2, "unknown role \"root\"");
    failed(&eventbus(a, admin, &["tokens", "create", "--grant", "reader:"]), 1, "grants[0].namespaces");
    failed(&eventbus(a, admin, &["tokens", "revoke", "0190b1a2-0000-7000-8000-000000000000"]), 1, "NOT_FOUND");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Two `eventbus serve` processes on one Postgres: a token created and revoked through one is
/// refused by the other within its token cache time, though the other had it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_a_second_server_process_within_the_cache_time() {
    let db = TestDatabase::fresh(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("admin-token");
    std::fs::write(&file, ADMIN).unwrap();
    let cache = Duration::from_secs(2);
    let args = [
        "--database-url",
        db.url.as_str(),
        "--admin-token-file",
        file.to_str().unwrap(),
        "--token-cache-seconds",
        &cache.as_secs().to_string(),
    ];
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (mut first, addr_a) = process::start(&dir_a, &args).await;
    let (mut second, addr_b) = process::start(&dir_b, &args).await;
    let (a, b) = (format!("http://{addr_a}"), format!("http://{addr_b}"));

    let secret = stdout(&eventbus(&a, Some(ADMIN), &["tokens", "create", "-n", "shop", "--role", "reader"]));
    let on = |addr: &str| {
        let (addr, secret) = (addr.to_owned(), secret.trim().to_owned());
        async move {
            let client = Client::connect(addr).await.unwrap().with_token(&secret).unwrap();
            let request = eventbus_client::pb::ListEventsRequest { namespace: "shop".into(), ..Default::default() };
            client.raw().list_events(request).await.err().map_or(Code::Ok, |s| s.code())
        }
    };
    assert_eq!(on(&b).await, Code::Ok, "the second server accepts the token (and caches it)");
    let id =
        json_lines(&eventbus(&a, Some(ADMIN), &["tokens", "list", "--json"]))[0]["id"].as_str().unwrap().to_owned();
    stdout(&eventbus(&a, Some(ADMIN), &["tokens", "revoke", &id]));
    let revoked = Instant::now();
    assert_eq!(on(&a).await, Code::Unauthenticated, "the server that revoked it refuses it at once");
    while on(&b).await != Code::Unauthenticated {
        assert!(
            revoked.elapsed() < cache + Duration::from_secs(2),
            "the second server refuses it within the cache time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    process::terminate(&mut first).await;
    process::terminate(&mut second).await;
}
