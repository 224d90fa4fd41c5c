//! Subscribe streams. Each stream is a consumer of its group: it claims notifications up to its
//! free in-flight room, wakes when its namespace has news (publishes, acks, nacks, released
//! leases) and at a poll interval (expired leases, due retries, other servers' publishes), sends
//! keepalives when idle, and releases its leases when it goes away, so another stream of the
//! group gets them at once.
//!
//! Hazard: the in-flight count is read from the store, so an ack on any server frees room; a
//! stream whose client stops acking holds at most `max_in_flight` notifications until their
//! leases expire.

use std::time::Duration;

use eventbus_client::pb;
use eventbus_engine::FieldViolation;
use eventbus_engine::store::{Delivery, GroupSpec, StartPosition};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use crate::convert::{self, finish};
use crate::service::EventBus;
use crate::status::{to_status, unavailable};
use crate::telemetry::trace;

pub const DEFAULT_MAX_IN_FLIGHT: u32 = 64;
pub const MAX_MAX_IN_FLIGHT: u32 = 1024;
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
pub const MIN_LEASE: Duration = Duration::from_secs(1);
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
pub const MAX_MAX_ATTEMPTS: u32 = 100;

/// A validated Subscribe request.
#[derive(Debug, Clone)]
pub struct Options {
    pub namespace: String,
    pub group: GroupSpec,
    pub max_in_flight: u32,
    pub lease: Duration,
}

impl Options {
    pub fn from_request(req: pb::SubscribeRequest) -> Result<Self, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        convert::group(&req.consumer_group, &mut v);
        let max_in_flight = match req.max_in_flight {
            0 => DEFAULT_MAX_IN_FLIGHT,
            n if n <= MAX_MAX_IN_FLIGHT => n,
            _ => {
                v.push(FieldViolation::new("max_in_flight", format!("at most {MAX_MAX_IN_FLIGHT}")));
                0
            }
        };
        let lease = match req.lease_duration.as_ref().map(convert::duration_from) {
            None => DEFAULT_LEASE,
            Some(Some(d)) if (MIN_LEASE..=MAX_LEASE).contains(&d) => d,
            Some(_) => {
                v.push(FieldViolation::new("lease_duration", "must be 1 second to 1 hour"));
                DEFAULT_LEASE
            }
        };
        let max_attempts = match req.max_attempts {
            0 => DEFAULT_MAX_ATTEMPTS,
            n if n <= MAX_MAX_ATTEMPTS => n,
            _ => {
                v.push(FieldViolation::new("max_attempts", format!("at most {MAX_MAX_ATTEMPTS}")));
                0
            }
        };
        let mut kinds = Vec::new();
        for (i, k) in req.kinds.iter().enumerate() {
            match convert::kind_from(*k) {
                Some(k) => kinds.push(k),
                None => v.push(FieldViolation::new(format!("kinds[{i}]"), "must be START, WAKE or TIMEOUT")),
            }
        }
        if req.workflow_ids.len() > 1000 {
            v.push(FieldViolation::new("workflow_ids", "at most 1000"));
        }
        for (i, w) in req.workflow_ids.iter().enumerate() {
            if w.is_empty() {
                v.push(FieldViolation::new(format!("workflow_ids[{i}]"), "must not be empty"));
            }
        }
        let start = match pb::StartPosition::try_from(req.start) {
            Ok(pb::StartPosition::Unspecified | pb::StartPosition::Earliest) => StartPosition::Earliest,
            Ok(pb::StartPosition::Latest) => StartPosition::Latest,
            Ok(pb::StartPosition::Sequence) if req.start_sequence > 0 => StartPosition::Sequence(req.start_sequence),
            Ok(pb::StartPosition::Sequence) => {
                v.push(FieldViolation::new("start_sequence", "must be at least 1 with start SEQUENCE"));
                StartPosition::Earliest
            }
            Err(_) => {
                v.push(FieldViolation::new("start", "unknown start position"));
                StartPosition::Earliest
            }
        };
        finish(v)?;
        Ok(Self {
            namespace: req.namespace,
            group: GroupSpec { name: req.consumer_group, kinds, workflow_ids: req.workflow_ids, start, max_attempts },
            max_in_flight,
            lease,
        })
    }
}

/// Returns the stream of one subscriber; the work runs in a task that ends with the stream.
pub fn stream(
    bus: EventBus,
    options: Options,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<pb::SubscribeResponse, Status>> + Send {
    let (tx, rx) = mpsc::channel(options.max_in_flight as usize + 1);
    tokio::spawn(async move {
        let consumer = Uuid::now_v7().to_string();
        let end = deliver(&bus, &options, &consumer, &tx).await;
        if let Err(status) = end {
            let _ = tx.send(Err(status)).await;
        }
        let (ns, group) = (&options.namespace, &options.group.name);
        if let Err(e) = bus.store.release(ns, group, &consumer).await {
            tracing::warn!(namespace = %ns, group = %group, error = %e, "releasing leases of a closed stream failed");
        }
        drop(permit);
    });
    ReceiverStream::new(rx)
}

type Sender = mpsc::Sender<Result<pb::SubscribeResponse, Status>>;

/// Delivers until the client goes away (`Ok`) or the stream must end with a status.
async fn deliver(bus: &EventBus, o: &Options, consumer: &str, tx: &Sender) -> Result<(), Status> {
    let signal = bus.store.signal(&o.namespace);
    let mut shutdown = bus.shutdown.clone();
    let (ns, group) = (o.namespace.as_str(), o.group.name.as_str());
    let mut last_sent = Instant::now();
    loop {
        // Register interest before looking, so news that arrives meanwhile is not missed.
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if *shutdown.borrow() {
            return Err(unavailable("server shutting down; reconnect"));
        }
        let leased = bus.store.leased_count(ns, group, consumer).await.map_err(to_status)?;
        let room = o.max_in_flight.saturating_sub(leased as u32);
        let mut full = false;
        if room > 0 {
            let deliveries = bus.store.claim(ns, group, consumer, room, o.lease).await.map_err(to_status)?;
            full = deliveries.len() as u32 == room;
            for d in deliveries {
                let (notification, _span) = outgoing(bus, d);
                let message = pb::subscribe_response::Message::Notification(notification);
                if tx.send(Ok(pb::SubscribeResponse { message: Some(message) })).await.is_err() {
                    return Ok(());
                }
                last_sent = Instant::now();
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = sleep(bus.config.poll_interval) => {}
            _ = sleep_until(last_sent + bus.config.keepalive) => {
                let keepalive = pb::Keepalive { server_time: Some(convert::time_to(chrono::Utc::now())) };
                let message = pb::subscribe_response::Message::Keepalive(keepalive);
                if tx.send(Ok(pb::SubscribeResponse { message: Some(message) })).await.is_err() {
                    return Ok(());
                }
                last_sent = Instant::now();
            }
            _ = shutdown.changed() => {}
            _ = tx.closed() => return Ok(()),
        }
    }
}

/// Returns a delivery as sent and, when traces are on, its `deliver` span (the span lasts while
/// the caller holds it): the notification then carries that span's context instead of the
/// trigger's, so the runner's work is the deliver span's child.
fn outgoing(bus: &EventBus, d: Delivery) -> (pb::Notification, Option<tracing::Span>) {
    if d.attempt > 1 {
        bus.metrics.redeliveries.inc();
    }
    if !bus.config.traces || d.notification.trace.is_empty() {
        return (convert::delivery_to(d), None);
    }
    let span = trace::deliver_span(
        &d.notification.namespace,
        &d.group,
        &d.notification.fire_id.to_string(),
        d.attempt,
        &d.notification.trace,
    );
    let deliver = trace::trace_of(&span);
    let mut n = convert::delivery_to(d);
    if !deliver.is_empty() {
        n.traceparent = deliver.traceparent;
        n.tracestate = deliver.tracestate;
    }
    (n, Some(span))
}
