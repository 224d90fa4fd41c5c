//! Subscribe streams. Each stream runs a store [`Consumer`] of its group: new notifications are
//! handed to it by the publishing transaction while it has in-flight room, anything else is
//! claimed (see `eventbus_engine::store::consume`). The stream sends keepalives when idle and
//! releases its leases when it goes away, so another stream of the group gets them at once.
//!
//! Hazard: a stream whose client stops acking holds at most `max_in_flight` notifications until
//! their leases expire; an ack made on another server frees its room only at the next poll.

use eventbus_client::pb;
use eventbus_engine::store::{Consumer, ConsumerOptions, Delivery};
use futures::Stream;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use uuid::Uuid;

use crate::convert;
use crate::request::Subscribe;
use crate::service::EventBus;
use crate::status::ApiError;
use crate::telemetry::trace;

/// Starts the consumer of a subscriber (its group must exist) and returns its stream; the work
/// runs in a task that ends with the stream.
pub async fn stream(
    bus: EventBus,
    options: Subscribe,
    permit: OwnedSemaphorePermit,
) -> Result<impl Stream<Item = Result<pb::SubscribeResponse, Status>> + Send + use<>, ApiError> {
    let consumer_options = ConsumerOptions {
        namespace: options.namespace.clone(),
        group: options.group.name.clone(),
        consumer: Uuid::now_v7().to_string(),
        max_in_flight: options.max_in_flight,
        lease: options.lease,
        poll_interval: bus.config.poll_interval,
    };
    let mut consumer = bus.store.consume(consumer_options).await?;
    let (tx, rx) = mpsc::channel(options.max_in_flight as usize + 1);
    tokio::spawn(async move {
        let end = deliver(&bus, &mut consumer, &tx).await;
        if let Err(e) = end {
            let _ = tx.send(Err(Status::from(e))).await;
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
async fn deliver(bus: &EventBus, consumer: &mut Consumer, tx: &Sender) -> Result<(), ApiError> {
    let mut shutdown = bus.shutdown.clone();
    let mut last_sent = Instant::now();
    loop {
        if *shutdown.borrow() {
            return Err(ApiError::ShuttingDown);
        }
        tokio::select! {
            next = consumer.recv() => match next {
                Some(Ok(delivery)) => {
                    if !send(bus, tx, delivery).await {
                        return Ok(());
                    }
                    last_sent = Instant::now();
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ApiError::Internal("the consumer ended without an error".into())),
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
