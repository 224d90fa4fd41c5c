//! Subscribe streams. Each stream runs a store [`Consumer`] of its group: new notifications are
//! handed to it by the publishing transaction while it has in-flight room, anything else is
//! claimed (see `eventbus_engine::store::consume`). The stream sends keepalives when idle and
//! releases its leases when it goes away, so another stream of the group gets them at once.
//!
//! Hazard: a stream whose client stops acking holds at most `max_in_flight` notifications until
//! their leases expire; an ack made on another server frees its room only at the next poll.

use std::time::Duration;

use eventbus_client::pb;
use eventbus_engine::FieldViolation;
use eventbus_engine::store::{Consumer, ConsumerOptions, Delivery, GroupSpec, StartPosition};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, sleep_until};
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

/// Starts the consumer of a subscriber (its group must exist) and returns its stream; the work
/// runs in a task that ends with the stream.
pub async fn stream(
    bus: EventBus,
    options: Options,
    permit: OwnedSemaphorePermit,
) -> Result<impl Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + use<>, Status> {
    let consumer_options = ConsumerOptions {
        namespace: options.namespace.clone(),
        group: options.group.name.clone(),
        consumer: Uuid::now_v7().to_string(),
        max_in_flight: options.max_in_flight,
        lease: options.lease,
        poll_interval: bus.config.poll_interval,
    };
    let mut consumer = bus.store.consume(consumer_options).await.map_err(to_status)?;
    let (tx, rx) = mpsc::channel(options.max_in_flight as usize + 1);
    tokio::spawn(async move {
        let end = deliver(&bus, &mut consumer, &tx).await;
        if let Err(status) = end {
            let _ = tx.send(Err(status)).await;
        }
        if let Err(e) = consumer.close().await {
            let (ns, group) = (&options.namespace, &options.group.name);
            tracing::warn!(namespace = %ns, group = %group, error = %e, "releasing leases of a closed stream failed");
        }
        drop(permit);
    });
    Ok(ReceiverStream::new(rx))
}

type Sender = mpsc::Sender<Result<pb::SubscribeResponse, Status>>;

/// Delivers until the client goes away (`Ok`) or the stream must end with a status.
async fn deliver(bus: &EventBus, consumer: &mut Consumer, tx: &Sender) -> Result<(), Status> {
    let mut shutdown = bus.shutdown.clone();
    let mut last_sent = Instant::now();
    loop {
        if *shutdown.borrow() {
            return Err(unavailable("server shutting down; reconnect"));
        }
        tokio::select! {
            next = consumer.recv() => match next {
                Some(Ok(delivery)) => {
                    if !send(bus, tx, delivery).await {
                        return Ok(());
                    }
                    last_sent = Instant::now();
                }
                Some(Err(e)) => return Err(to_status(e)),
                None => return Err(Status::internal("internal error")),
            },
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

/// Sends one notification on the stream: the one place a delivery leaves for the client.
/// Returns false if the client went away (the consumer's release then frees the lease).
///
/// With traces on, the send happens in a `deliver` span, child of the notification's trigger
/// span, and the notification carries the deliver span's context instead, so the runner's work
/// is its child.
async fn send(bus: &EventBus, tx: &Sender, delivery: Delivery) -> bool {
    if delivery.attempt > 1 {
        bus.metrics.redeliveries.inc();
    }
    let traced = bus.config.traces && !delivery.notification.trace.is_empty();
    let span = traced.then(|| {
        let n = &delivery.notification;
        trace::deliver_span(&n.namespace, &delivery.group, &n.fire_id.to_string(), delivery.attempt, &n.trace)
    });
    let mut notification = convert::delivery_to(delivery);
    if let Some(deliver) = span.as_ref().map(trace::of_span).filter(|t| !t.is_empty()) {
        notification.traceparent = deliver.traceparent;
        notification.tracestate = deliver.tracestate;
    }
    let message = pb::subscribe_response::Message::Notification(notification);
    tx.send(Ok(pb::SubscribeResponse { message: Some(message) })).await.is_ok()
}
