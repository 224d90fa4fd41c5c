//! `soak`: the notify workload held at one rate for long (10 minutes by default), measured in
//! windows (a minute each), to show whether the server stays where it started.
//!
//! Each window prints one line as it ends: events published (acknowledged) and notifications
//! delivered per second, their latency (p50, p99, p99.9 over the window alone), the
//! notifications outstanding (published, not yet received), the bytes the server wrote per
//! published event, the SQLite files' sizes and the server's RSS. (Per published event, not per
//! delivered notification: while a run falls behind or catches up, those differ, and the bytes
//! are the events'.) The run *falls behind* when the outstanding notifications grew in two
//! windows in a row and stand at more than one second of sends at the end of the second one:
//! then `eventbus bench` exits non-zero, as it does when a notification never arrived.
//!
//! With `--postgres-url` (or an in-process server on Postgres), each line also gives the
//! Postgres WAL written per published event (`pg_current_wal_lsn` at the window's ends:
//! the whole cluster's WAL, so other databases' writes count too) and the database's size.
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

/// The Postgres database a soak watches, over a connection of its own.
#[derive(Debug)]
pub struct PgWatch {
    conn: sqlx::PgConnection,
}

/// What a window saw of Postgres.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PgWindow {
    /// WAL bytes the cluster wrote during the window, per published event.
    pub wal_bytes_per_event: u64,
    /// Size of the database at the window's end.
    pub database_bytes: u64,
}

impl PgWatch {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        use sqlx::Connection;
        let conn = sqlx::PgConnection::connect(url).await?;
        Ok(Self { conn })
    }

    /// The cluster's WAL position (bytes since its start) and the database's size, of the
    /// database watched if any; `None` (with a warning) when Postgres cannot answer.
    async fn sample(watch: &mut Option<Self>) -> Option<(u64, u64)> {
        let this = watch.as_mut()?;
        let q = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, pg_database_size(current_database())";
        match sqlx::query_as::<_, (i64, i64)>(q).fetch_one(&mut this.conn).await {
            Ok((wal, size)) => Some((wal.max(0) as u64, size.max(0) as u64)),
            Err(e) => {
                eprintln!("soak: reading the Postgres WAL position: {e}");
                None
            }
        }
    }
}

/// One window of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// 1 for the first window.
    pub index: usize,
    pub seconds: f64,
    /// Publishes acknowledged per second.
    pub published_per_second: f64,
    pub delivered_per_second: f64,
    pub latency: Latency,
    /// Published but not yet received at the window's end.
    pub outstanding: u64,
    pub resources: Resources,
    /// With a Postgres database watched.
    pub postgres: Option<PgWindow>,
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
        if let Some(i) = growth(&self.windows, self.run.target_rate) {
            let w = &self.windows[i..i + 3];
            Some(format!(
                "the server fell behind: notifications outstanding grew over windows {}-{}: {}, {}, {}",
                w[0].index, w[2].index, w[0].outstanding, w[1].outstanding, w[2].outstanding
            ))
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
    growth(windows, rate).is_some()
}

/// Returns the index of the first of three windows over which the outstanding notifications
/// grew twice, ending above one second of sends.
fn growth(windows: &[Window], rate: u64) -> Option<usize> {
    windows.windows(3).position(|w| {
        w[0].outstanding < w[1].outstanding && w[1].outstanding < w[2].outstanding && w[2].outstanding > rate
    })
}

/// Measures windows of `printing.period` until `stop`, printing each as it ends; reads the WAL
/// position of `postgres` at each window's ends.
pub async fn windows(
    printing: Printing,
    meter: Meter,
    counters: Counters,
    latencies: Arc<Mutex<Histogram<u64>>>,
    mut postgres: Option<PgWatch>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Window> {
    let mut done = Vec::new();
    let mut before = meter.sample();
    let mut pg_before = PgWatch::sample(&mut postgres).await;
    let mut received_before = counters.received.load(Ordering::Relaxed);
    let mut published_before = counters.published.load(Ordering::Relaxed);
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
        let published_total = counters.published.load(Ordering::Relaxed);
        let published = published_total.saturating_sub(published_before);
        let latency = match latencies.lock() {
            Ok(mut h) => {
                let l = Latency::of(&h);
                h.reset();
                l
            }
            Err(_) => Latency::default(),
        };
        let seconds = after.at.saturating_duration_since(before.at).as_secs_f64();
        let pg_after = PgWatch::sample(&mut postgres).await;
        let pg_window = pg_before.zip(pg_after).map(|((wal_before, _), (wal_after, size))| PgWindow {
            wal_bytes_per_event: wal_after.saturating_sub(wal_before) / published.max(1),
            database_bytes: size,
        });
        pg_before = pg_after;
        let window = Window {
            index: done.len() + 1,
            seconds,
            published_per_second: published as f64 / seconds.max(1e-9),
            delivered_per_second: delivered as f64 / seconds.max(1e-9),
            latency,
            outstanding: published_total.saturating_sub(received),
            resources: Resources::between(&before, &after, published),
            postgres: pg_window,
        };
        let line = line(&window);
        if printing.stdout {
            println!("{line}");
        } else {
            eprintln!("{line}");
        }
        done.push(window);
        (before, received_before, published_before) = (after, received, published_total);
    }
    done
}

/// One window as a line of text.
pub fn line(w: &Window) -> String {
    let l = &w.latency;
    let postgres = w.postgres.map_or_else(String::new, |pg| {
        format!(
            "  postgres wal {:.1} kB/event, db {}",
            pg.wal_bytes_per_event as f64 / 1000.0,
            report::mib(Some(pg.database_bytes))
        )
    });
    format!(
        "  window {:>3}  published {}/s  delivered {}/s  p50 {}  p99 {}  p99.9 {}  outstanding {}  {}  rss {}{postgres}",
        w.index,
        report::rate(w.published_per_second),
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
            published_per_second: 5000.0,
            delivered_per_second: 4000.0,
            latency: Latency::default(),
            outstanding,
            resources: Resources::default(),
            postgres: None,
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

    #[test]
    fn falling_behind_names_the_windows_that_grew_even_after_a_catch_up() {
        let windows = [0, 204, 6989, 0]
            .into_iter()
            .enumerate()
            .map(|(i, o)| Window { index: i + 2, ..window(o) })
            .collect::<Vec<_>>();
        let run = RateResult { target_rate: 5000, ..RateResult::default() };
        assert_eq!(
            SoakResult::new(Duration::from_secs(60), windows, run).failure().as_deref(),
            Some("the server fell behind: notifications outstanding grew over windows 2-4: 0, 204, 6989")
        );
    }

    #[test]
    fn a_line_ends_with_postgres_when_watched() {
        let mut w = window(3);
        assert_eq!(
            line(&w),
            "  window   0  published 5,000/s  delivered 4,000/s  p50 0us  p99 0us  p99.9 0us  outstanding 3  \
             written n/a  rss n/a"
        );
        w.postgres = Some(PgWindow { wal_bytes_per_event: 1_870, database_bytes: 3 << 20 });
        assert!(line(&w).ends_with("rss n/a  postgres wal 1.9 kB/event, db 3.0 MiB"), "{}", line(&w));
    }
}
