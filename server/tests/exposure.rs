//! The `eventbus serve` binary refuses to start unprotected on an address others can reach,
//! unless told `--insecure`, and then warns.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How `eventbus serve` ended up.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It exited with this code.
    Exited(Option<i32>),
    /// It bound its listener and wrote the address file (then it was killed).
    Serving,
}

/// Runs `eventbus serve` with `args` on a fresh SQLite file until it exits or writes its
/// address file (within 30 seconds); returns how it ended and its stderr.
fn serve(args: &[&str]) -> (Outcome, String) {
    let dir = tempfile::tempdir().unwrap();
    let addr_file = dir.path().join("addr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .arg("serve")
        .args(args)
        .arg("--data-file")
        .arg(dir.path().join("eventbus.db"))
        .arg("--listen-addr-file")
        .arg(&addr_file)
        .env("EVENTBUS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The address file is the only sign of a started server: look for it between checks.
    let outcome = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Outcome::Exited(status.code());
        }
        if addr_file.exists() {
            child.kill().unwrap();
            break Outcome::Serving;
        }
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("eventbus serve neither exited nor served within 30s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    (outcome, String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn a_non_loopback_address_without_tls_and_client_auth_is_refused() {
    let (outcome, stderr) = serve(&["--listen", "0.0.0.0:0"]);
    assert_eq!(outcome, Outcome::Exited(Some(1)), "{stderr}");
    let (head, tail) = stderr.split_once(" without ").expect(&stderr);
    let last_line = head.rsplit('\n').next().unwrap();
    assert!(last_line.starts_with("error: refusing to serve on 0.0.0.0:"), "{stderr}");
    assert!(
        tail.starts_with(
            "TLS and client authentication: set --tls-cert and --tls-key, and --admin-token-file (tokens) or \
             --tls-client-ca (mutual TLS); or listen on a loopback address (--listen 127.0.0.1:PORT); or pass --insecure to serve unprotected anyway"
        ),
        "{stderr}"
    );
}

#[test]
fn a_non_loopback_http_address_is_refused_too() {
    let (outcome, stderr) = serve(&["--listen", "127.0.0.1:0", "--http-addr", "0.0.0.0:0"]);
    assert_eq!(outcome, Outcome::Exited(Some(1)), "{stderr}");
    let last_line = stderr.trim_end().rsplit('\n').next().unwrap();
    assert!(last_line.starts_with("error: refusing to serve on 0.0.0.0:"), "{stderr}");
    assert!(last_line.contains("or listen on a loopback address (--http-addr 127.0.0.1:PORT)"), "{stderr}");
    let (outcome, stderr) = serve(&["--listen", "127.0.0.1:0", "--http-addr", "0.0.0.0:0", "--insecure"]);
    assert_eq!(outcome, Outcome::Serving, "{stderr}");
}

#[test]
fn insecure_serves_on_any_address_with_a_warning_and_loopback_needs_nothing() {
    let (outcome, stderr) = serve(&["--listen", "0.0.0.0:0", "--insecure"]);
    assert_eq!(outcome, Outcome::Serving, "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("without TLS and client authentication (--insecure)"),
        "{stderr}"
    );
    let (outcome, stderr) = serve(&["--listen", "127.0.0.1:0"]);
    assert_eq!(outcome, Outcome::Serving, "{stderr}");
    assert!(!stderr.contains("WARN"), "{stderr}");
}
