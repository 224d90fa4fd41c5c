//! Publish-to-notification latency at a fixed rate, open loop.
//!
//! Sends are scheduled at fixed intervals from a start time (`start + i / rate`) and issued
//! without waiting for earlier ones, so a slow server does not slow the sender down (no
//! coordinated omission). Event `i` carries `i` as its id; a subscriber that receives the START
//! notification for it computes the latency from the *intended* send time of `i` to the arrival.
//! If the sender itself falls behind its schedule, that lag is part of the latency, as it would be
//! for a real producer, and is reported as `max_send_lag`. The sender paces on a thread of its
//! own with the OS's sleep (tens of microseconds late), not with Tokio's timer, which rounds every
//! deadline up to the next millisecond and would add up to a millisecond to every sample.
//!
//! The namespace also holds `background_listeners` listeners (those of the listener scale
//! workload) that no event of the run matches, so evaluation works against a realistic index.
//!
//! Hazard: a notification delivered twice (lease expiry, reconnect) is counted once, at its first
//! arrival.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus_client::{Client, CloudEventBuilder, ListenerSpecBuilder, SubscribeOptions, Subscription};
use futures::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::load::{self, Latency};
use super::progress::Progress;
use super::report::Resources;
use super::scale;
use super::soak::{self, Window};
use super::target::Meter;

const EVENT_TYPE: &str = "bench.notify.v1";
const WORKFLOW: &str = "bench-notify";
const GROUP: &str = "bench-runners";

/// Settings of one fixed-rate run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dial: load::Dial,
    pub namespace: String,
    pub rate: u64,
    pub duration: Duration,
    pub subscribers: usize,
    pub connections: usize,
    pub max_in_flight: u32,
    pub payload: Arc<str>,
    /// How long to wait for the last notifications after the last send.
    pub drain: Duration,
    /// Listeners registered besides the one that fires; no event of the run matches them.
    pub background_listeners: u64,
    /// Event types the background listeners spread over.
    pub background_types: u64,
}

/// The outcome of one fixed-rate run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RateResult {
    pub namespace: String,
    pub target_rate: u64,
    pub events: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub received: u64,
    pub duplicates: u64,
    pub missing: u64,
    /// Events scheduled per second actually issued: (events - 1) / (last send - first send).
    pub achieved_send_rate: f64,
    /// First-time notifications per second, from the first intended send to the last arrival.
    pub delivery_rate: f64,
    /// Largest delay of a send behind its schedule, in the load generator.
    pub max_send_lag_us: u64,
    /// Intended send time to the notification's arrival at a subscriber.
    pub latency: Latency,
    /// Intended send time to the Publish response.
    pub publish_latency: Latency,
    pub resources: Resources,
    pub first_error: Option<String>,
}

/// Returns when event `i` is meant to be sent.
fn intended(start: Instant, rate: u64, i: u64) -> Instant {
    start + Duration::from_nanos(i.saturating_mul(1_000_000_000) / rate.max(1))
}

/// Runs one fixed-rate measurement in a fresh namespace.
pub async fn run(s: &Settings, meter: Meter) -> anyhow::Result<RateResult> {
    Ok(run_in_windows(s, meter, None, None).await?.0)
}

/// Runs one fixed-rate measurement in a fresh namespace; with a `window` period, also measures
/// (and prints) each such period on its own ([`soak`]).
pub async fn run_in_windows(
    s: &Settings,
    meter: Meter,
    window: Option<soak::Printing>,
    postgres: Option<soak::PgWatch>,
) -> anyhow::Result<(RateResult, Vec<Window>)> {
    let n = ((s.rate as f64 * s.duration.as_secs_f64()).round() as u64).max(1);
    let senders = load::senders(&s.dial, s.connections).await?;
    register(s, &load::clients_of(&senders)).await?;
    // Subscriptions first (on their own connections), so the group exists before any event.
    let subscriptions = subscribe(s).await?;

    let progress = Progress::start(format!("notify {}/s", s.rate), n, "notifications");
    let seen: Arc<Vec<AtomicBool>> = Arc::new((0..n).map(|_| AtomicBool::new(false)).collect());
    let received = progress.counter();
    let published_so_far = Arc::new(AtomicU64::new(0));
    // Latencies per window, only when windows are reported.
    let window_hist = window.map(|_| Arc::new(Mutex::new(load::histogram())));
    let (stop_tx, stop_rx) = watch::channel(false);
    let before = meter.sample();
    // A short lead, so the first sends are not already late.
    let start = Instant::now() + Duration::from_millis(20);
    let mut readers = tokio::task::JoinSet::new();
    for (client, subscription) in subscriptions {
        let reader = Reader {
            client,
            namespace: s.namespace.clone(),
            start,
            rate: s.rate,
            seen: seen.clone(),
            received: received.clone(),
            window: window_hist.clone(),
        };
        readers.spawn(reader.read(subscription, stop_rx.clone()));
    }
    let windows = window.zip(window_hist).map(|(printing, latencies)| {
        let counters = soak::Counters { published: published_so_far.clone(), received: received.clone() };
        tokio::spawn(soak::windows(printing, meter, counters, latencies, postgres, stop_rx.clone()))
    });

    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let pacer = pace(s, senders, start, n, done_tx)?;
    let sent = collect_publishes(done_rx, start, s.rate, &published_so_far).await;
    let (max_lag, last_send) = pacer.join().map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;

    // Wait for the stragglers, then stop the readers.
    let deadline = last_send + s.drain;
    while received.load(Ordering::Relaxed) < sent.published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = meter.sample();
    let _ = stop_tx.send(true);
    let read = join_readers(readers, start).await?;
    progress.finish();
    let windows = match windows {
        Some(task) => task.await.context("window task")?,
        None => Vec::new(),
    };
    let got = received.load(Ordering::Relaxed);
    let send_span = last_send.saturating_duration_since(start).as_secs_f64();
    let result = RateResult {
        namespace: s.namespace.clone(),
        target_rate: s.rate,
        events: n,
        published: sent.published,
        publish_errors: sent.errors,
        received: got,
        duplicates: read.duplicates,
        missing: n.saturating_sub(got),
        achieved_send_rate: if n > 1 && send_span > 0.0 { (n - 1) as f64 / send_span } else { 0.0 },
        delivery_rate: got as f64 / read.last_arrival.saturating_duration_since(start).as_secs_f64().max(1e-9),
        max_send_lag_us: u64::try_from(max_lag.as_micros()).unwrap_or(u64::MAX),
        latency: Latency::of(&read.hist),
        publish_latency: Latency::of(&sent.hist),
        resources: Resources::between(&before, &after, got),
        first_error: sent.first_error.or(read.error),
    };
    Ok((result, windows))
}

/// Registers the START listener that fires, and the background listeners.
async fn register(s: &Settings, senders: &[Client]) -> anyhow::Result<()> {
    senders[0]
        .register_listener(s.namespace.as_str(), ListenerSpecBuilder::start(WORKFLOW).one(EVENT_TYPE))
        .await
        .context("registering the START listener")?;
    if s.background_listeners > 0 {
        let types = s.background_types.max(1);
        let registered = scale::register(senders, &s.namespace, s.background_listeners, types, 0.0, 64).await;
        if let Some(e) = registered.first_error {
            anyhow::bail!("registering background listeners: {e}");
        }
    }
    Ok(())
}

/// Subscribes `s.subscribers` (at least one) to the group, each on a connection of its own.
async fn subscribe(s: &Settings) -> anyhow::Result<Vec<(Client, Subscription)>> {
    let mut subscriptions = Vec::new();
    for _ in 0..s.subscribers.max(1) {
        let client = s.dial.client().await.context("connecting a subscriber")?;
        let options =
            SubscribeOptions { max_in_flight: s.max_in_flight, ..SubscribeOptions::new(s.namespace.as_str(), GROUP) };
        let subscription = client.subscribe(options).await.context("subscribing")?;
        subscriptions.push((client, subscription));
    }
    Ok(subscriptions)
}

/// The outcome of one publish of the pacer: the index of its event, and when it completed.
type Done = (u64, Result<Instant, eventbus_client::Error>);

/// Starts the open-loop sender: a pacing thread that starts the publish of event `i` on the
/// runtime when due, and reports its outcome to `done`. The thread returns its largest lag
/// behind the schedule and the time of its last send.
fn pace(
    s: &Settings,
    senders: Vec<load::Sender>,
    start: Instant,
    n: u64,
    done_tx: mpsc::UnboundedSender<Done>,
) -> std::io::Result<std::thread::JoinHandle<(Duration, Instant)>> {
    let (runtime, rate, namespace, payload) =
        (tokio::runtime::Handle::current(), s.rate, s.namespace.clone(), s.payload.clone());
    std::thread::Builder::new().name("bench-pacer".into()).spawn(move || {
        let (mut max_lag, mut last_send) = (Duration::ZERO, start);
        for i in 0..n {
            let due = intended(start, rate, i);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            last_send = Instant::now();
            max_lag = max_lag.max(last_send.saturating_duration_since(due));
            let sender = senders[(i as usize) % senders.len()].clone();
            let (namespace, payload, done) = (namespace.clone(), payload.clone(), done_tx.clone());
            runtime.spawn(async move {
                let event = CloudEventBuilder::new("/bench/notify", EVENT_TYPE)
                    .id(i.to_string())
                    .data_text("application/json", payload.as_ref())
                    .build();
                let _ = done.send((i, sender.publish(namespace, [event]).await.map(|_| Instant::now())));
            });
        }
        (max_lag, last_send)
    })
}

/// What the publishes of one run came to.
struct Sent {
    /// Publish latencies, from the intended send time.
    hist: Histogram<u64>,
    published: u64,
    errors: u64,
    first_error: Option<String>,
}

/// Records the outcome of every publish; ends when the pacer and every publish it started are
/// done.
async fn collect_publishes(
    mut done_rx: mpsc::UnboundedReceiver<Done>,
    start: Instant,
    rate: u64,
    published_so_far: &AtomicU64,
) -> Sent {
    let mut sent = Sent { hist: load::histogram(), published: 0, errors: 0, first_error: None };
    while let Some((i, result)) = done_rx.recv().await {
        match result {
            Ok(done) => {
                sent.published += 1;
                published_so_far.fetch_add(1, Ordering::Relaxed);
                load::record(&mut sent.hist, done.saturating_duration_since(intended(start, rate, i)));
            }
            Err(e) => {
                sent.errors += 1;
                sent.first_error.get_or_insert_with(|| format!("publish: {e:#}"));
            }
        }
    }
    sent
}

/// Waits for every reader and merges their outcomes (the first error in the order they end).
async fn join_readers(
    mut readers: tokio::task::JoinSet<ReaderOutcome>,
    start: Instant,
) -> anyhow::Result<ReaderOutcome> {
    let mut all = ReaderOutcome { hist: load::histogram(), duplicates: 0, last_arrival: start, error: None };
    while let Some(joined) = readers.join_next().await {
        let outcome = joined.context("subscriber task")?;
        let _ = all.hist.add(&outcome.hist);
        all.duplicates += outcome.duplicates;
        all.last_arrival = all.last_arrival.max(outcome.last_arrival);
        if let Some(e) = outcome.error {
            all.error.get_or_insert(e);
        }
    }
    Ok(all)
}

/// One subscriber: records first arrivals and acks everything through an [`Acker`].
struct Reader {
    client: Client,
    namespace: String,
    start: Instant,
    rate: u64,
    seen: Arc<Vec<AtomicBool>>,
    received: Arc<AtomicU64>,
    /// The latencies of the current window, when windows are reported (see [`soak`]).
    window: Option<Arc<Mutex<Histogram<u64>>>>,
}

struct ReaderOutcome {
    hist: Histogram<u64>,
    duplicates: u64,
    last_arrival: Instant,
    error: Option<String>,
}

impl Reader {
    async fn read(self, mut subscription: Subscription, mut stop: watch::Receiver<bool>) -> ReaderOutcome {
        let (acks, queue) = mpsc::unbounded_channel();
        let acker = tokio::spawn(ack_batches(self.client.clone(), self.namespace.clone(), queue));
        let mut outcome =
            ReaderOutcome { hist: load::histogram(), duplicates: 0, last_arrival: self.start, error: None };
        loop {
            let delivery = tokio::select! {
                biased;
                _ = stop.changed() => break,
                next = subscription.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(e)) => {
                        outcome.error = Some(format!("subscription: {e:#}"));
                        break;
                    }
                    None => break,
                },
            };
            let arrival = Instant::now();
            let notification = delivery.notification();
            for event in &notification.events {
                let Ok(i) = event.id.parse::<u64>() else { continue };
                let Some(flag) = self.seen.get(i as usize) else { continue };
                if flag.swap(true, Ordering::Relaxed) {
                    outcome.duplicates += 1;
                    continue;
                }
                let latency = arrival.saturating_duration_since(intended(self.start, self.rate, i));
                load::record(&mut outcome.hist, latency);
                if let Some(Ok(mut window)) = self.window.as_ref().map(|w| w.lock()) {
                    load::record(&mut window, latency);
                }
                self.received.fetch_add(1, Ordering::Relaxed);
                outcome.last_arrival = outcome.last_arrival.max(arrival);
            }
            let _ = acks.send(notification.sequence);
        }
        drop(acks);
        if let Ok(Some(e)) = acker.await {
            outcome.error.get_or_insert(e);
        }
        outcome
    }
}

/// Acks queued sequences, as many per call as have queued up (at most 1000), one call at a time.
/// Returns the first error.
async fn ack_batches(client: Client, namespace: String, mut queue: mpsc::UnboundedReceiver<u64>) -> Option<String> {
    let mut first_error = None;
    let mut batch = Vec::with_capacity(1000);
    while let Some(sequence) = queue.recv().await {
        batch.push(sequence);
        while batch.len() < 1000 {
            match queue.try_recv() {
                Ok(sequence) => batch.push(sequence),
                Err(_) => break,
            }
        }
        if let Err(e) = client.ack(namespace.as_str(), GROUP, batch.drain(..)).await {
            first_error.get_or_insert_with(|| format!("ack: {e:#}"));
        }
    }
    first_error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_exact_per_index() {
        let start = Instant::now();
        assert_eq!(intended(start, 1000, 0), start);
        assert_eq!(intended(start, 1000, 1500), start + Duration::from_millis(1500));
        assert_eq!(intended(start, 3, 1), start + Duration::from_nanos(333_333_333));
        assert_eq!(intended(start, 3, 3), start + Duration::from_secs(1));
    }
}
