//! What the built binary says when it starts: one start line (text and JSON) naming the
//! version, addresses, database, durability, retention and auth mode; database errors that name
//! the file or the server and the operating system's reason, once; no migration notices at INFO.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[path = "support/process.rs"]
mod process;

use process::{BIN, log_of, start, terminate};

/// Starts the server, stops it, and returns its address and log.
async fn start_and_stop(dir: &Path, args: &[&str]) -> (String, String) {
    let (mut child, addr) = start(dir, args).await;
    assert!(terminate(&mut child).await.success());
    (addr, log_of(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_start_line_in_text_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("eventbus.db").display().to_string();
    let (addr, log) = start_and_stop(dir.path(), &["--log-format", "json"]).await;
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let start: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "serving gRPC").collect();
    assert_eq!(start.len(), 1, "{log}");
    assert_eq!(
        start[0]["fields"],
        json!({"message": "serving gRPC", "version": env!("CARGO_PKG_VERSION"), "addr": addr, "http": "none",
               "database": database, "durability": "full", "retention": "forever", "tls": "off",
               "auth": "none"})
    );

    let args = ["--relaxed-durability", "--retention-seconds", "3600", "--metrics-addr", "127.0.0.1:0"];
    let (addr, log) = start_and_stop(dir.path(), &args).await;
    let start: Vec<&str> = log.lines().filter(|l| l.contains("serving")).collect();
    assert_eq!(start.len(), 1, "one start line: {log}");
    let fields = format!("serving gRPC version={} addr={addr} http=127.0.0.1:", env!("CARGO_PKG_VERSION"));
    assert!(start[0].contains(&fields), "{}", start[0]);
    let settings = format!("database={database} durability=relaxed retention=3600s tls=off auth=none");
    assert!(start[0].ends_with(&settings), "{}", start[0]);
    assert!(!log.contains('\x1b'), "no colour codes when stderr is not a terminal: {log:?}");
}

/// Runs `eventbus serve ARGS` (as `uid` when given) and returns its exit code, stderr and how
/// long it took; it must fail to start.
async fn serve_fails(args: &[&str], uid: Option<u32>) -> (Option<i32>, String, Duration) {
    let mut command = tokio::process::Command::new(BIN);
    command.args(["serve", "--listen", "127.0.0.1:0"]).args(args).kill_on_drop(true);
    if let Some(uid) = uid {
        command.uid(uid).gid(uid);
    }
    let started = Instant::now();
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await.expect("exits").unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_errors_name_the_path_and_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let missing = format!("{root}/no/such/x.db");
    let (code, err, _) = serve_fails(&["--data-file", &missing], None).await;
    let expected = format!(
        "error: opening the database {missing}: database unavailable: directory {root}/no/such: No such file or \
         directory (os error 2)\n"
    );
    assert_eq!((code, err), (Some(1), expected));

    // A read-only file and a read-only directory, as a user who may not write them (root may
    // write anything, so as root the server runs as nobody).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = dir.path().join("ro.db");
    std::fs::write(&file, b"").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
    let uid = (std::fs::metadata(&file).unwrap().uid() == 0).then_some(65534);
    let file = file.display().to_string();
    let cases = [
        (file.clone(), "cannot open the file for writing: Permission denied (os error 13)".to_owned()),
        (format!("{root}/new.db"), format!("cannot create the file in {root}: Permission denied (os error 13)")),
    ];
    for (path, reason) in cases {
        let (code, err, _) = serve_fails(&["--data-file", &path], uid).await;
        let expected = format!("error: opening the database {path}: database unavailable: {reason}\n");
        assert_eq!((code, err), (Some(1), expected));
    }
}

fn test_database_url() -> String {
    std::env::var("EVENTBUS_TEST_DATABASE_URL")
        .expect("EVENTBUS_TEST_DATABASE_URL is not set: the Postgres cases need a server (./tests/run.sh starts one)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_errors_name_the_server_and_the_reason_once() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("postgres://postgres@{closed}/eventbus_test");
    let (code, err, took) = serve_fails(&["--database-url", &url], None).await;
    assert_eq!(code, Some(1));
    assert!(err.starts_with(&format!("error: opening the database {url}: database unavailable: ")), "{err}");
    assert_eq!((err.matches("Connection refused").count(), err.lines().count()), (1, 1), "{err}");
    assert!(took < Duration::from_secs(4), "refused at once, not after the pool's timeout: {took:?}");

    let base = test_database_url();
    let (path, query) = base.split_once('?').map_or((base.as_str(), ""), |(p, q)| (p, q));
    let (server, _) = path.rsplit_once('/').unwrap();
    let wrong =
        format!("{server}/no_such_database{}", if query.is_empty() { String::new() } else { format!("?{query}") });
    let (code, err, _) = serve_fails(&["--database-url", &wrong], None).await;
    assert_eq!(code, Some(1));
    assert_eq!(err.matches("does not exist").count(), 1, "{err}");
    assert!(err.ends_with("database error: database \"no_such_database\" does not exist (code 3D000)\n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_notices_stay_below_info() {
    let base = test_database_url();
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&base).await.unwrap();
    let schema = format!("cli_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}"))).execute(&admin).await.unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let dir = tempfile::tempdir().unwrap();
    start_and_stop(dir.path(), &["--database-url", &url]).await;
    // The second start finds the migrations table: Postgres answers with a NOTICE.
    let (_, log) = start_and_stop(dir.path(), &["--database-url", &url]).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"))).execute(&admin).await.unwrap();
    assert!(log.contains("serving gRPC"), "{log}");
    assert!(!log.contains("_sqlx_migrations"), "{log}");
}
