//! `eventbus bench`: a load generator and the measurements it makes.
//!
//! By default it starts a server in this process (on its own runtime and threads, on
//! `127.0.0.1:0`, over a temp SQLite file) and runs four workloads, each in a fresh namespace:
//!
//! * `sequential`: one Publish of one ~512-byte event at a time: the latency of one publish;
//! * `pipelined`: C connections x M calls in flight: publish throughput;
//! * `http` (not by default): the same throughput through the HTTP ingress, binary-mode
//!   CloudEvents over C x M keep-alive HTTP/1.1 connections (see [`ingress`]);
//! * `notify`: publish-to-notification latency at fixed rates, open loop (see [`notify`]);
//! * `listeners`: pipelined throughput with 0 to 100k registered listeners (see [`scale`]);
//! * `soak` (not by default): `notify` held at one rate for minutes, a line per minute (see
//!   [`soak`]); the bench exits non-zero if the server falls behind.
//!
//! Latencies go into HDR histograms (microseconds). Server CPU time and RSS come from `/proc`
//! (see [`target`] for what exactly is counted). A progress line goes to stderr every second;
//! results go to stdout as text when each workload ends, or as one JSON object with `--json`.
//!
//! Hazards: the load generator shares the machine (and, in-process, the process) with the
//! server, so on a small machine the numbers are those of both competing for the cores. The
//! workloads leave their data behind: later workloads run on a database the earlier ones grew.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use eventbus_engine::store::Backend;
use prost::Message;
use tonic::transport::{Certificate, ClientTlsConfig};

mod ingress;
mod load;
mod notify;
mod progress;
mod report;
mod scale;
mod soak;
mod target;

use self::progress::Progress;
use self::report::{PublishResult, Report, Resources, WorkloadResult};
use self::target::Target;
use crate::cli::parse;

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Workload {
    /// Publish latency, one call in flight.
    Sequential,
    /// Publish throughput, many calls in flight over several connections.
    Pipelined,
    /// Publish throughput through the HTTP ingress (binary mode, keep-alive), with as many
    /// connections as pipelined has calls in flight.
    Http,
    /// Publish-to-notification latency at fixed rates, open loop.
    Notify,
    /// Pipelined throughput with 0 to 100k registered listeners.
    Listeners,
    /// Publish-to-notification latency at one rate for minutes, a line per minute.
    Soak,
}

/// Flags of `eventbus bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Benches the running server at this address instead of starting one in this process.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["database_url", "relaxed"])]
    pub target: Option<String>,
    /// With --target: the server's pid on this machine, to read its CPU time and RSS from /proc.
    #[arg(long, requires = "target")]
    pub server_pid: Option<u32>,
    /// With --target: the server's HTTP address (host:port, its --http-addr), for the http
    /// workload.
    #[arg(long, value_name = "ADDR", requires = "target")]
    pub target_http: Option<String>,
    /// With --target: PEM CA certificate(s) to trust: the clients speak TLS (an `https://`
    /// target without it trusts the system's roots).
    #[arg(long, value_name = "FILE", requires = "target")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// With --target: the bearer token the clients send (a publisher, listener and subscriber of
    /// the bench's namespaces, `bench-*`).
    #[arg(long, env = "EVENTBUS_TOKEN", hide_env_values = true, requires = "target")]
    pub token: Option<String>,
    /// Database of the in-process server [default: a SQLite file in a temp dir, removed after].
    #[arg(long)]
    pub database_url: Option<String>,
    /// soak: the Postgres database the target server uses (`postgres://...`): each window also
    /// reports the WAL Postgres wrote per published event and the database's size [default: the
    /// --database-url of an in-process server on Postgres].
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Relaxed durability for the in-process server (acknowledged before flushed to disk).
    #[arg(long)]
    pub relaxed: bool,
    /// Workloads to run, comma-separated [default: all but soak].
    #[arg(long, short = 'w', value_enum, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Size of each event's JSON payload, bytes.
    #[arg(long, default_value_t = 512)]
    pub event_bytes: usize,
    /// sequential: events to publish.
    #[arg(long, default_value_t = 5000)]
    pub sequential_events: u64,
    /// pipelined, listeners, notify senders: connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// pipelined, listeners: calls in flight per connection.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// pipelined: events to publish.
    #[arg(long, default_value_t = 100_000)]
    pub pipelined_events: u64,
    /// notify: target publish rates, events per second, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub rates: Vec<u64>,
    /// notify: how long to publish at each rate.
    #[arg(long, default_value = "10s", value_parser = parse::duration)]
    pub rate_duration: Duration,
    /// notify: subscribers (one consumer group, each on its own connection).
    #[arg(long, default_value_t = 2)]
    pub subscribers: usize,
    /// notify: notifications each subscriber may hold unacked.
    #[arg(long, default_value_t = 256)]
    pub subscriber_in_flight: u32,
    /// notify: listeners registered in the namespace besides the one that fires (spread over
    /// --scale-types types as in the listeners workload; no event of the run matches them).
    #[arg(long, default_value_t = 10_000)]
    pub background_listeners: u64,
    /// notify: how long to wait for outstanding notifications after the last send.
    #[arg(long, default_value = "30s", value_parser = parse::duration)]
    pub drain_timeout: Duration,
    /// listeners: listener counts to measure, comma-separated (0 is the baseline).
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000,100000")]
    pub listener_counts: Vec<u64>,
    /// listeners: events to publish at each count.
    #[arg(long, default_value_t = 50_000)]
    pub scale_events: u64,
    /// listeners: event types the listeners spread over.
    #[arg(long, default_value_t = 500)]
    pub scale_types: u64,
    /// listeners: the fraction of the listeners (0 to 1, spread evenly) that carry a CEL
    /// condition on a filter set every event of their type passes: the condition is evaluated on
    /// each such event, and is false for all of them.
    #[arg(long, default_value_t = 0.0, value_parser = parse::fraction)]
    pub condition_share: f64,
    /// soak: publish rate, events per second.
    #[arg(long, default_value_t = 5000)]
    pub soak_rate: u64,
    /// soak: how long to publish.
    #[arg(long, default_value = "10m", value_parser = parse::duration)]
    pub soak_duration: Duration,
    /// How events are published over gRPC: as messages of one PublishStream call per
    /// connection, or a Publish call each.
    #[arg(long, value_enum, default_value_t = load::PublishCall::Stream)]
    pub publish_call: load::PublishCall,
    /// soak: the length of each reported window.
    #[arg(long, default_value = "60s", value_parser = parse::duration)]
    pub soak_window: Duration,
}

/// Runs the bench and prints its results.
pub async fn run(args: BenchArgs, json: bool) -> anyhow::Result<()> {
    let target = match &args.target {
        Some(addr) => {
            let tls = match &args.ca_cert {
                Some(path) => {
                    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                    Some(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
                }
                // An `https://` target trusts the system's roots.
                None => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let addr = if addr.contains("://") { addr.clone() } else { format!("{scheme}://{addr}") };
            let dial = load::Dial { addr, tls, token: args.token.clone(), publish_call: args.publish_call };
            Target::remote(dial, args.server_pid, args.target_http.clone())
        }
        None => {
            let mut target =
                Target::start(args.database_url.clone(), args.relaxed).await.context("starting the server")?;
            target.dial.publish_call = args.publish_call;
            target
        }
    };
    let outcome = run_workloads(&args, &target, json).await;
    let stopped = target.stop().await;
    let report = outcome?;
    stopped?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report).context("encoding the report")?);
    } else {
        println!();
        println!("total {:.1}s", report.total_seconds);
    }
    for w in &report.workloads {
        if let WorkloadResult::Soak(soak) = w
            && let Some(failure) = soak.failure()
        {
            anyhow::bail!("soak failed: {failure}");
        }
    }
    Ok(())
}

async fn run_workloads(args: &BenchArgs, target: &Target, json: bool) -> anyhow::Result<Report> {
    let started = Instant::now();
    let mut workloads = args.workloads.clone();
    if workloads.is_empty() {
        workloads = vec![Workload::Sequential, Workload::Pipelined, Workload::Notify, Workload::Listeners];
    }
    workloads.sort();
    workloads.dedup();
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let bench = Bench {
        args,
        target,
        json,
        payload: load::payload(args.event_bytes).into(),
        run_id: &run_id[run_id.len() - 8..],
    };
    let mut report = Report {
        version: env!("CARGO_PKG_VERSION"),
        target: target.description.clone(),
        publish_call: args.publish_call,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        event_data_bytes: bench.payload.len(),
        event_encoded_bytes: load::event("/bench/publish", "bench.publish.v1", &bench.payload).encoded_len(),
        workloads: Vec::new(),
        total_seconds: 0.0,
    };
    if !json {
        report::print_header(&report);
    }
    for workload in workloads {
        report.workloads.push(bench.run(workload).await?);
    }
    report.total_seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    Ok(report)
}

/// One bench run: its flags and target, and what its workloads share.
struct Bench<'a> {
    args: &'a BenchArgs,
    target: &'a Target,
    json: bool,
    payload: Arc<str>,
    /// Distinguishes this run's namespaces from those of earlier runs on the same database.
    run_id: &'a str,
}

impl Bench<'_> {
    /// Runs one workload, printing its results unless the report is JSON.
    async fn run(&self, workload: Workload) -> anyhow::Result<WorkloadResult> {
        match workload {
            Workload::Sequential => self.sequential().await,
            Workload::Pipelined => self.pipelined().await,
            Workload::Http => self.http().await,
            Workload::Notify => self.notify().await,
            Workload::Listeners => self.listeners().await,
            Workload::Soak => self.soak().await,
        }
    }

    /// Returns the namespace of workload `what` in this run.
    fn namespace(&self, what: &str) -> String {
        format!("bench-{}-{what}", self.run_id)
    }

    fn notify_settings(&self, ns: String, rate: u64, duration: Duration) -> notify::Settings {
        let args = self.args;
        notify::Settings {
            dial: self.target.dial.clone(),
            namespace: ns,
            rate,
            duration,
            subscribers: args.subscribers,
            connections: args.connections,
            max_in_flight: args.subscriber_in_flight,
            payload: self.payload.clone(),
            drain: args.drain_timeout,
            background_listeners: args.background_listeners,
            background_types: args.scale_types,
        }
    }

    async fn sequential(&self) -> anyhow::Result<WorkloadResult> {
        let (args, target, payload) = (self.args, self.target, &self.payload);
        let senders = load::senders(&target.dial, 1).await?;
        let ns = self.namespace("sequential");
        let r = publish_workload(&Publisher::Grpc(&senders), &ns, 1, args.sequential_events, payload, target).await?;
        if !self.json {
            report::print_publish("sequential publish", &r);
        }
        Ok(WorkloadResult::Sequential(r))
    }

    async fn pipelined(&self) -> anyhow::Result<WorkloadResult> {
        let (args, target, payload) = (self.args, self.target, &self.payload);
        let senders = load::senders(&target.dial, args.connections).await?;
        let ns = self.namespace("pipelined");
        let publisher = Publisher::Grpc(&senders);
        let r = publish_workload(&publisher, &ns, args.in_flight, args.pipelined_events, payload, target).await?;
        if !self.json {
            report::print_publish("pipelined publish", &r);
        }
        Ok(WorkloadResult::Pipelined(r))
    }

    async fn http(&self) -> anyhow::Result<WorkloadResult> {
        let (args, target, payload) = (self.args, self.target, &self.payload);
        let addr =
            target.http.as_deref().context("the http workload needs the server's HTTP address: --target-http")?;
        let connections = ingress::connect(addr, args.connections * args.in_flight.max(1)).await?;
        let ns = self.namespace("http");
        let publisher = Publisher::Http { addr, connections: &connections };
        let r = publish_workload(&publisher, &ns, 1, args.pipelined_events, payload, target).await?;
        if !self.json {
            report::print_publish("http ingress publish (binary mode, keep-alive)", &r);
        }
        Ok(WorkloadResult::Http(r))
    }

    async fn notify(&self) -> anyhow::Result<WorkloadResult> {
        let args = self.args;
        let mut runs = Vec::new();
        for &rate in &args.rates {
            let settings = self.notify_settings(self.namespace(&format!("notify-{rate}")), rate, args.rate_duration);
            runs.push(notify::run(&settings, self.target.meter).await.with_context(|| format!("notify at {rate}/s"))?);
        }
        if !self.json {
            report::print_notify(args.subscribers, args.background_listeners, &runs);
        }
        Ok(WorkloadResult::Notify {
            subscribers: args.subscribers,
            background_listeners: args.background_listeners,
            consumer_group: "bench-runners",
            runs,
        })
    }

    async fn listeners(&self) -> anyhow::Result<WorkloadResult> {
        let args = self.args;
        let senders = load::senders(&self.target.dial, args.connections).await?;
        let mut runs: Vec<scale::SizeResult> = Vec::new();
        for &count in &args.listener_counts {
            let settings = scale::Settings {
                namespace: self.namespace(&format!("listeners-{count}")),
                listeners: count,
                types: args.scale_types,
                events: args.scale_events,
                in_flight: args.in_flight,
                payload: self.payload.clone(),
                condition_share: args.condition_share,
            };
            runs.push(scale::run(&senders, &settings, self.target.meter).await?);
        }
        let baseline = runs.iter().find(|r| r.listeners == 0).map(|r| r.events_per_second);
        for r in &mut runs {
            r.ratio_to_zero = baseline.filter(|b| *b > 0.0).map(|b| (r.events_per_second / b * 100.0).round() / 100.0);
        }
        if !self.json {
            report::print_scale(args.scale_types, args.scale_events, args.condition_share, &runs);
        }
        Ok(WorkloadResult::Listeners {
            types: args.scale_types,
            events_per_size: args.scale_events,
            condition_share: args.condition_share,
            connections: args.connections,
            in_flight: args.in_flight,
            runs,
        })
    }

    async fn soak(&self) -> anyhow::Result<WorkloadResult> {
        let (args, json) = (self.args, self.json);
        let settings = self.notify_settings(self.namespace("soak"), args.soak_rate, args.soak_duration);
        let in_process =
            args.database_url.as_deref().filter(|u| Backend::from_url(u).is_ok_and(|b| b == Backend::Postgres));
        let postgres = match args.postgres_url.as_deref().or(in_process) {
            Some(url) => Some(
                soak::PgWatch::connect(url)
                    .await
                    .context("connecting to the soak's Postgres (--postgres-url, else the --database-url)")?,
            ),
            None => None,
        };
        if !json {
            soak::print_header(
                args.soak_rate,
                args.soak_duration,
                args.soak_window,
                args.subscribers,
                args.background_listeners,
            );
        }
        let printing = soak::Printing { period: args.soak_window, stdout: !json };
        let (run, windows) =
            notify::run_in_windows(&settings, self.target.meter, Some(printing), postgres).await.context("soak")?;
        let result = soak::SoakResult::new(args.soak_window, windows, run);
        if !json {
            report::print_notify(args.subscribers, args.background_listeners, std::slice::from_ref(&result.run));
        }
        Ok(WorkloadResult::Soak(result))
    }
}

/// Who publishes: gRPC clients, or keep-alive connections to the HTTP ingress.
enum Publisher<'a> {
    Grpc(&'a [load::Sender]),
    Http { addr: &'a str, connections: &'a [ingress::Connection] },
}

impl Publisher<'_> {
    fn connections(&self) -> usize {
        match self {
            Publisher::Grpc(senders) => senders.len(),
            Publisher::Http { connections, .. } => connections.len(),
        }
    }

    /// Publishes `n` events of `source` (one per call), `in_flight` calls per connection.
    async fn publish(
        &self,
        namespace: &str,
        in_flight: usize,
        n: u64,
        progress: &Progress,
        source: &'static str,
        payload: &Arc<str>,
    ) -> load::Run {
        match self {
            Publisher::Grpc(senders) => {
                let data = payload.clone();
                load::publish(senders, namespace, in_flight, n, progress, move |_| {
                    load::event(source, "bench.publish.v1", &data)
                })
                .await
            }
            Publisher::Http { addr, connections } => {
                let request = ingress::Request {
                    authority: (*addr).into(),
                    namespace: namespace.into(),
                    source,
                    event_type: "bench.publish.v1",
                    payload: hyper::body::Bytes::copy_from_slice(payload.as_bytes()),
                };
                ingress::publish(connections, n, progress, request).await
            }
        }
    }
}

/// Publishes `events` events through `publisher`, `in_flight` calls per connection, in a fresh
/// namespace.
async fn publish_workload(
    publisher: &Publisher<'_>,
    namespace: &str,
    in_flight: usize,
    events: u64,
    payload: &Arc<str>,
    target: &Target,
) -> anyhow::Result<PublishResult> {
    let connections = publisher.connections();
    let phase = match publisher {
        Publisher::Http { .. } => "http",
        Publisher::Grpc(_) if in_flight == 1 && connections == 1 => "sequential",
        Publisher::Grpc(_) => "pipelined",
    };
    // A short warm-up in its own namespace, so connections and statements are ready.
    let warm = Progress::start(format!("{phase} warm-up"), 0, "events");
    let warmup_events = (events / 50).min(500);
    let warmup = publisher
        .publish(&format!("{namespace}-warmup"), in_flight, warmup_events, &warm, "/bench/warmup", payload)
        .await;
    warm.finish();
    if warmup.ok == 0 && warmup.errors > 0 {
        anyhow::bail!("warm-up publishes failed: {}", warmup.first_error.unwrap_or_default());
    }
    let progress = Progress::start(phase, events, "events");
    let before = target.meter.sample();
    let run = publisher.publish(namespace, in_flight, events, &progress, "/bench/publish", payload).await;
    let after = target.meter.sample();
    progress.finish();
    Ok(PublishResult {
        namespace: namespace.to_owned(),
        connections,
        in_flight,
        events: run.ok,
        errors: run.errors,
        seconds: run.elapsed.as_secs_f64(),
        events_per_second: run.rate(),
        latency: load::Latency::of(&run.hist),
        resources: Resources::between(&before, &after, run.ok),
        first_error: run.first_error,
    })
}
