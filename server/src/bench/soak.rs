//! `soak`: the notify workload held at one rate for long (10 minutes by default), measured in
//! windows (a minute each), to show whether the server stays where it started.
//!
//! Each window prints one line as it ends: notifications delivered per second, their latency
//! (p50, p99, p99.9 over the window alone), the notifications outstanding (published, not yet
//! received), the bytes the server wrote per delivered notification, the SQLite files' sizes and
//! the server's RSS. The run *falls behind* when the outstanding notifications grew in two
//! windows in a row and stand at more than one second of sends at the end of the second one:
//! then `eventbus bench` exits non-zero, as it does when a notification never arrived.
//!
//! Hazard: the last, partial window (the drain after the last send) is not reported.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::watch;

use super::load::Latency;
use super::notify::RateResult;
use super::report::{self, Resources};
use super::target::Meter;

/// How windows are measured and shown.
#[derive(Debug, Clone, Copy)]
pub struct Printing {
    pub period: Duration,
    /// Print each window's line to stdout (text reports) rather than stderr (`--json`).
    pub stdout: bool,
}

/// The run's counters the windows read.
#[derive(Debug, Clone)]
pub struct Counters {
    /// Publishes acknowledged so far.
    pub published: Arc<AtomicU64>,
    /// First-time notifications received so far.
    pub received: Arc<AtomicU64>,
}

/// One window of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// 1 for the first window.
    pub index: usize,
    pub seconds: f64,
    pub delivered_per_second: f64,
    pub latency: Latency,
    /// Published but not yet received at the window's end.
    pub outstanding: u64,
    pub resources: Resources,
}

/// A whole soak.
#[derive(Debug, Clone, Serialize)]
pub struct SoakResult {
    pub window_seconds: f64,
    pub windows: Vec<Window>,
    pub fell_behind: bool,
    pub run: RateResult,
}

impl SoakResult {
    pub fn new(window: Duration, windows: Vec<Window>, run: RateResult) -> Self {
        let fell_behind = fell_behind(&windows, run.target_rate);
        Self { window_seconds: window.as_secs_f64(), windows, fell_behind, run }
    }

    /// Why the soak failed, if it did.
    pub fn failure(&self) -> Option<String> {
        if self.fell_behind {
            let last = self.windows.last().map_or(0, |w| w.outstanding);
            Some(format!("the server fell behind: {last} notifications outstanding and growing"))
        } else if self.run.missing > 0 {
            Some(format!("{} notifications never arrived", self.run.missing))
        } else {
            None
        }
    }
}

/// Returns whether the outstanding notifications grew in two windows in a row, ending above one
/// second of sends.
pub fn fell_behind(windows: &[Window], rate: u64) -> bool {
    windows
        .windows(3)
        .any(|w| w[0].outstanding < w[1].outstanding && w[1].outstanding < w[2].outstanding && w[2].outstanding > rate)
}

/// Measures windows of `printing.period` until `stop`, printing each as it ends.
pub async fn windows(
    printing: Printing,
    meter: Meter,
    counters: Counters,
    latencies: Arc<Mutex<Histogram<u64>>>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Window> {
    let mut done = Vec::new();
    let mut before = meter.sample();
    let mut received_before = counters.received.load(Ordering::Relaxed);
    let start = tokio::time::Instant::now() + printing.period;
    let mut tick = tokio::time::interval_at(start, printing.period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let after = meter.sample();
        let received = counters.received.load(Ordering::Relaxed);
        let delivered = received - received_before;
        let latency = match latencies.lock() {
            Ok(mut h) => {
                let l = Latency::of(&h);
                h.reset();
                l
            }
            Err(_) => Latency::default(),
        };
        let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
        let window = Window {
            index: done.len() + 1,
            seconds,
            delivered_per_second: delivered as f64 / seconds.max(1e-9),
            latency,
            outstanding: counters.published.load(Ordering::Relaxed).saturating_sub(received),
            resources: Resources::between(&before, &after, delivered),
        };
        let line = line(&window);
        if printing.stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
        done.push(window);
        (before, received_before) = (after, received);
    }
    done
}

/// One window as a line of text.
pub fn line(w: &Window) -> String {
    let l = &w.latency;
    format!(
        "  window {:>3}  delivered {}/s  p50 {}  p99 {}  p99.9 {}  outstanding {}  {}  rss {}",
        w.index,
        report::rate(w.delivered_per_second),
        report::micros(l.p50_us),
        report::micros(l.p99_us),
        report::micros(l.p999_us),
        w.outstanding,
        report::disk(&w.resources),
        report::mib(w.resources.rss_bytes),
    )
}

/// Prints the soak's header before its windows.
pub fn print_header(rate: u64, duration: Duration, window: Duration, subscribers: usize, background: u64) {
    println!();
    println!(
        "soak at {}/s for {:.0}s, a line per {:.0}s window ({subscribers} subscriber(s), {background} other \
         listeners; latency from the intended send time)",
        report::rate(rate as f64),
        duration.as_secs_f64(),
        window.as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(outstanding: u64) -> Window {
        Window {
            index: 0,
            seconds: 60.0,
            delivered_per_second: 5000.0,
            latency: Latency::default(),
            outstanding,
            resources: Resources::default(),
        }
    }

    #[test]
    fn falling_behind_is_two_windows_of_growth_past_a_second_of_sends() {
        let run = |o: &[u64]| fell_behind(&o.iter().copied().map(window).collect::<Vec<_>>(), 5000);
        assert!(!run(&[]));
        assert!(!run(&[10, 20, 30]), "growth within a second of sends");
        assert!(!run(&[10, 9000, 8000, 9500]), "growth in one window only");
        assert!(run(&[10, 4000, 6000]));
        assert!(run(&[0, 0, 100, 3000, 5001]));
        assert!(!run(&[6000, 6000, 6000]), "a steady backlog is not falling behind");
    }
}
