//! The progress line on stderr: every second, the phase, how much is done and the rate over the
//! last second. On a terminal it rewrites one line; otherwise it prints one line per second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// A running progress line; [`finish`](Self::finish) (or dropping it) stops it.
#[derive(Debug)]
pub struct Progress {
    done: Arc<AtomicU64>,
    printer: JoinHandle<()>,
    terminal: bool,
}

impl Progress {
    /// Starts reporting `phase`, out of `total` units named `unit` (0: no total).
    pub fn start(phase: impl Into<String>, total: u64, unit: &'static str) -> Self {
        let phase = phase.into();
        let done = Arc::new(AtomicU64::new(0));
        let terminal = std::io::stderr().is_terminal();
        let counter = done.clone();
        let printer = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (start, 0u64);
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = Instant::now();
                let n = counter.load(Ordering::Relaxed);
                let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64().max(1e-9);
                last = (now, n);
                let of = if total > 0 { format!("/{total}") } else { String::new() };
                let line = format!(
                    "[{phase}] {n}{of} {unit}, {rate:.0}/s, {:.0}s elapsed",
                    now.duration_since(start).as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = if terminal { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "{line}") };
                let _ = err.flush();
            }
        });
        Self { done, printer, terminal }
    }

    /// Returns the counter the workload increments.
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Stops the line and clears it on a terminal.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.printer.abort();
        if self.terminal {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
