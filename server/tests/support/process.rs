//! The built `eventbus` binary as a child process: a server on an ephemeral port, and client
//! commands run against it.

#![allow(dead_code)] // each test target uses part of it

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_eventbus");

/// Starts `eventbus serve` on an ephemeral port with `args`, its log in `dir/log` and, unless
/// `args` name a database, its data in `dir/eventbus.db`; returns it and its address once it is
/// ready (its address file written).
pub async fn start(dir: &Path, args: &[&str]) -> (Child, String) {
    let addr_file = dir.join("addr");
    let _ = std::fs::remove_file(&addr_file);
    let log = std::fs::File::create(dir.join("log")).unwrap();
    let mut command = Command::new(BIN);
    command.args(["serve", "--listen", "127.0.0.1:0", "--listen-addr-file"]).arg(&addr_file).args(args);
    if !args.iter().any(|a| *a == "--database-url" || *a == "--data-file") {
        command.arg("--data-file").arg(dir.join("eventbus.db"));
    }
    let mut child = command.stdout(Stdio::null()).stderr(log).kill_on_drop(true).spawn().unwrap();
    let started = Instant::now();
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file) {
            break a;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("server exited early: {}", log_of(dir));
        }
        assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (child, addr)
}

/// Returns what the server started in `dir` logged.
pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("log")).unwrap_or_default()
}

/// Sends SIGTERM and returns the exit status.
pub async fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().expect("the server is running").to_string();
    let status = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("server did not stop on SIGTERM within 20 s")
        .unwrap()
}

/// Runs `eventbus ARGS` against the server at `addr` (through `EVENTBUS_ADDR`), with `stdin`
/// as its input, and returns its output.
pub async fn eventbus(addr: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env("EVENTBUS_ADDR", addr)
        .env_remove("EVENTBUS_NAMESPACE")
        .env_remove("EVENTBUS_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("eventbus {args:?} did not finish within 60 s"))
        .unwrap()
}

/// The parts of an [`Output`] that tests compare: exit code, stdout, stderr.
pub fn parts(output: &Output) -> (Option<i32>, String, String) {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

/// Returns the stdout of a command that succeeded.
pub fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Returns the JSON objects of a command that succeeded, one per line of its stdout.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    stdout(out).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Checks that a command exited with `code` and said `stderr_has` on stderr.
pub fn failed(out: &Output, code: i32, stderr_has: &str) {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(stderr_has), "{stderr_has:?} not in {stderr}");
}
