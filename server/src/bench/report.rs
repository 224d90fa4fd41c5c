//! Bench results: what `--json` prints, and the text shown as each workload finishes.

use serde::Serialize;

use super::load::Latency;
use super::notify::RateResult;
use super::scale::SizeResult;
use super::soak::SoakResult;
use super::target::{DatabaseFiles, Sample, TargetInfo};

/// The server's CPU time and memory over a measurement.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Resources {
    /// Server CPU seconds spent during the measurement.
    pub server_cpu_seconds: Option<f64>,
    /// Server CPU seconds per 1000 events.
    pub server_cpu_seconds_per_1k_events: Option<f64>,
    /// Server CPU seconds per wall-clock second: how many cores it kept busy.
    pub server_cores_busy: Option<f64>,
    /// CPU seconds of the whole process (server and load generator) per 1000 events, when the
    /// server runs in-process.
    pub process_cpu_seconds_per_1k_events: Option<f64>,
    /// Resident set size at the end of the measurement, bytes.
    pub rss_bytes: Option<u64>,
    /// Peak resident set size so far, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Bytes the server wrote to disk during the measurement (`/proc/<pid>/io` `write_bytes`).
    pub bytes_written: Option<u64>,
    /// `bytes_written` per event.
    pub bytes_written_per_event: Option<u64>,
    /// Bytes the disk under the SQLite database wrote during the measurement, for every process
    /// on it (`/proc/diskstats`). `bytes_written` can exceed it: Linux charges a write there with
    /// the whole page-cache folio it dirties.
    pub disk_bytes_written: Option<u64>,
    /// `disk_bytes_written` per event.
    pub disk_bytes_written_per_event: Option<u64>,
    /// The SQLite files at the end of the measurement (`None` for Postgres or unmeasured).
    pub files: Option<DatabaseFiles>,
}

impl Resources {
    pub fn between(before: &Sample, after: &Sample, events: u64) -> Self {
        let per_1k = |cpu: f64| if events == 0 { 0.0 } else { round3(cpu * 1000.0 / events as f64) };
        let server = before.server_cpu.zip(after.server_cpu).map(|(b, a)| (a - b).max(0.0));
        let process = before.process_cpu.zip(after.process_cpu).map(|(b, a)| (a - b).max(0.0));
        let wall = after.at.saturating_duration_since(before.at).as_secs_f64();
        let written = before.written.zip(after.written).map(|(b, a)| a.saturating_sub(b));
        let disk_written = before.disk_written.zip(after.disk_written).map(|(b, a)| a.saturating_sub(b));
        Self {
            server_cpu_seconds: server.map(round3),
            server_cpu_seconds_per_1k_events: server.map(per_1k),
            server_cores_busy: server.filter(|_| wall > 0.0).map(|s| round3(s / wall)),
            process_cpu_seconds_per_1k_events: process.map(per_1k),
            rss_bytes: after.rss,
            peak_rss_bytes: after.peak_rss,
            bytes_written: written,
            bytes_written_per_event: written.filter(|_| events > 0).map(|w| w / events),
            disk_bytes_written: disk_written,
            disk_bytes_written_per_event: disk_written.filter(|_| events > 0).map(|w| w / events),
            files: after.files,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The result of a closed-loop publish workload.
#[derive(Debug, Clone, Serialize)]
pub struct PublishResult {
    pub namespace: String,
    pub connections: usize,
    pub in_flight: usize,
    pub events: u64,
    pub errors: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Publish call latency (closed loop).
    pub latency: Latency,
    pub resources: Resources,
    pub first_error: Option<String>,
}

/// One workload's results.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "workload", rename_all = "snake_case")]
pub enum WorkloadResult {
    Sequential(PublishResult),
    Pipelined(PublishResult),
    Http(PublishResult),
    Notify {
        subscribers: usize,
        background_listeners: u64,
        consumer_group: &'static str,
        runs: Vec<RateResult>,
    },
    Listeners {
        types: u64,
        events_per_size: u64,
        /// The fraction of the listeners that carry a condition (see [`super::scale`]).
        condition_share: f64,
        connections: usize,
        in_flight: usize,
        runs: Vec<SizeResult>,
    },
    Soak(SoakResult),
}

/// What `eventbus bench --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub version: &'static str,
    pub target: TargetInfo,
    /// How events were published over gRPC (`--publish-call`).
    pub publish_call: super::load::PublishCall,
    pub cores: usize,
    /// Size of the JSON payload of each event, bytes.
    pub event_data_bytes: usize,
    /// Size of one encoded CloudEvent message, bytes.
    pub event_encoded_bytes: usize,
    pub workloads: Vec<WorkloadResult>,
    pub total_seconds: f64,
}

/// Formats microseconds for people: `850us`, `1.24ms`, `12.4ms`, `312ms`, `1.52s`.
pub fn micros(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if us < 1000 {
        format!("{us}us")
    } else if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 100.0 {
        format!("{ms:.1}ms")
    } else if ms < 10_000.0 {
        format!("{ms:.0}ms")
    } else {
        format!("{:.1}s", ms / 1000.0)
    }
}

/// Formats a rate with thousands separators: `12,345`.
pub fn rate(r: f64) -> String {
    let n = r.round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Formats bytes as `1.5 MiB`, or `n/a`.
pub fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "n/a".to_owned(), |b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
}

fn secs(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.3}s"))
}

fn percentiles(l: &Latency) -> String {
    format!("p50 {}  p99 {}  p99.9 {}  max {}", micros(l.p50_us), micros(l.p99_us), micros(l.p999_us), micros(l.max_us))
}

fn resources_line(r: &Resources) -> String {
    let process = match r.process_cpu_seconds_per_1k_events {
        Some(p) => format!(" (whole process incl. load generator {p:.3}s)"),
        None => String::new(),
    };
    let busy = r.server_cores_busy.map_or_else(String::new, |c| format!(", {c:.2} cores busy"));
    format!(
        "server cpu {} per 1k events{process}{busy}; rss {} (peak {}); {}",
        secs(r.server_cpu_seconds_per_1k_events),
        mib(r.rss_bytes),
        mib(r.peak_rss_bytes),
        disk(r)
    )
}

/// Bytes written per event (the process's, and the disk's when known) and the database's files:
/// `written 2.4 kB/event (disk 2.5 kB); db 225.0 MiB, wal 3.1 MiB`.
pub fn disk(r: &Resources) -> String {
    let kb = |b: u64| format!("{:.1} kB", b as f64 / 1000.0);
    let mut written = r.bytes_written_per_event.map_or_else(|| "n/a".to_owned(), |b| format!("{}/event", kb(b)));
    if let Some(d) = r.disk_bytes_written_per_event {
        written.push_str(&format!(" (disk {})", kb(d)));
    }
    match r.files {
        Some(f) => format!("written {written}; db {}, wal {}", mib(Some(f.database_bytes)), mib(Some(f.wal_bytes))),
        None => format!("written {written}"),
    }
}

pub fn print_header(report: &Report) {
    let t = &report.target;
    let what = match (&t.database, t.durability) {
        (Some(db), Some(d)) => format!("in-process server at {} ({db}, durability {d})", t.addr),
        _ => format!("remote server at {}", t.addr),
    };
    let measured = match (t.kind, t.measured_pid) {
        ("in-process", _) => "server cpu = its threads; rss = whole process".to_owned(),
        (_, Some(pid)) => format!("cpu and rss of pid {pid}"),
        _ => "server cpu and rss n/a (remote; --server-pid to measure a local one)".to_owned(),
    };
    println!("eventbus bench {}: {what}; {} cores", report.version, report.cores);
    println!(
        "events: {}-byte JSON payload, {} bytes encoded; {measured}",
        report.event_data_bytes, report.event_encoded_bytes
    );
}

pub fn print_publish(title: &str, r: &PublishResult) {
    println!();
    println!("{title} ({} connection(s) x {} in flight, {} events)", r.connections, r.in_flight, r.events + r.errors);
    println!("  throughput  {} events/s  ({:.2}s)", rate(r.events_per_second), r.seconds);
    println!("  latency     {}", percentiles(&r.latency));
    println!("  resources   {}", resources_line(&r.resources));
    if r.errors > 0 {
        println!("  errors      {} (first: {})", r.errors, r.first_error.as_deref().unwrap_or("?"));
    }
}

pub fn print_notify(subscribers: usize, background_listeners: u64, runs: &[RateResult]) {
    println!();
    println!(
        "publish-to-notification latency (open loop, from intended send time; \
         {subscribers} subscriber(s) in one group, acking; {background_listeners} other listeners)"
    );
    for r in runs {
        println!(
            "  {}/s  sent {} at {}/s (max send lag {}), notified {} at {}/s, missing {}, duplicates {}",
            rate(r.target_rate as f64),
            r.events,
            rate(r.achieved_send_rate),
            micros(r.max_send_lag_us),
            r.received,
            rate(r.delivery_rate),
            r.missing,
            r.duplicates
        );
        println!("      notification  {}", percentiles(&r.latency));
        println!("      publish ack   {}", percentiles(&r.publish_latency));
        println!("      resources     {}", resources_line(&r.resources));
        if let Some(e) = &r.first_error {
            println!("      errors        {} publish errors (first: {e})", r.publish_errors);
        }
    }
}

pub fn print_scale(types: u64, events: u64, condition_share: f64, runs: &[SizeResult]) {
    println!();
    println!("listener scale ({events} events per size over {types} types; ~1% of events match a listener)");
    if condition_share > 0.0 {
        println!(
            "  {}% of the listeners carry a CEL condition, evaluated on every event of their type and false \
             for all (conditioned: count, and conditions evaluated per event)",
            condition_share * 100.0
        );
    }
    let mut rows = vec![[
        "listeners".to_owned(),
        "conditioned".to_owned(),
        "registered".to_owned(),
        "events/s".to_owned(),
        "vs 0".to_owned(),
        "p50".to_owned(),
        "p99".to_owned(),
        "p99.9".to_owned(),
        "cpu/1k ev".to_owned(),
        "written/ev".to_owned(),
        "rss".to_owned(),
    ]];
    for r in runs {
        rows.push([
            r.listeners.to_string(),
            format!("{} ({:.1}/ev)", r.conditioned_listeners, r.conditioned_listeners as f64 / types.max(1) as f64),
            if r.listeners == 0 {
                "-".to_owned()
            } else {
                format!("{:.1}s ({}/s)", r.registration_seconds, rate(r.registrations_per_second))
            },
            rate(r.events_per_second),
            r.ratio_to_zero.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2}")),
            micros(r.latency.p50_us),
            micros(r.latency.p99_us),
            micros(r.latency.p999_us),
            secs(r.resources.server_cpu_seconds_per_1k_events),
            r.resources.bytes_written_per_event.map_or_else(|| "n/a".to_owned(), |b| format!("{b} B")),
            mib(r.resources.rss_bytes),
        ]);
    }
    let mut widths = [0usize; 11];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:>w$}")).collect();
        println!("  {}", cells.join("  "));
    }
    for r in runs {
        if let Some(e) = &r.first_error {
            println!(
                "  {} listeners: {} registration and {} publish errors (first: {e})",
                r.listeners, r.registration_errors, r.publish_errors
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(micros(850), "850us");
        assert_eq!(micros(1240), "1.24ms");
        assert_eq!(micros(12_400), "12.4ms");
        assert_eq!(micros(312_000), "312ms");
        assert_eq!(micros(15_200_000), "15.2s");
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(999.6), "1,000");
        assert_eq!(rate(1_234_567.0), "1,234,567");
        assert_eq!(mib(Some(3 * 1024 * 1024 / 2)), "1.5 MiB");
        assert_eq!(mib(None), "n/a");
    }

    #[test]
    fn bytes_written_with_and_without_the_disk_count() {
        let files = DatabaseFiles { database_bytes: 225 * 1024 * 1024, wal_bytes: 16 * 1024 * 1024 };
        let mut r = Resources { bytes_written_per_event: Some(12_600), files: Some(files), ..Resources::default() };
        assert_eq!(disk(&r), "written 12.6 kB/event; db 225.0 MiB, wal 16.0 MiB");
        r.disk_bytes_written_per_event = Some(9_740);
        assert_eq!(disk(&r), "written 12.6 kB/event (disk 9.7 kB); db 225.0 MiB, wal 16.0 MiB");
        assert_eq!(disk(&Resources::default()), "written n/a");
    }
}
