//! Notification streams that reconnect and resume.
//!
//! A [`Subscription`] yields one [`Delivery`] per notification leased to it; the caller settles
//! each with [`Delivery::ack`] or [`Delivery::nack`].
//!
//! Hazards:
//!
//! * Delivery is at least once. A notification whose lease expires, or whose stream ends before
//!   it is settled, comes back (to this or another stream of the group) with `attempt` one
//!   higher, so the same `fire_id` can be seen twice: make the action idempotent on it.
//! * Reconnecting is such a stream end: after a reconnect the server redelivers every
//!   notification this stream held unsettled, even if an ack was in flight.
//! * Dropping a `Delivery` without settling it leaves it leased until its lease expires
//!   (30 seconds by default), and it counts against `max_in_flight` until then.
//! * A stream that is not polled still holds its leases; they expire and count as failed
//!   attempts. Keep polling, or drop the subscription.
//! * The subscription retries forever on retryable errors (see [`Error::is_retryable`]); wrap
//!   `next()` in a timeout if a long outage must surface.

mod backoff;
#[cfg(test)]
#[cfg(feature = "server")]
mod reconnect_tests;

use std::{
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::{
    Stream, StreamExt,
    stream::{BoxStream, FusedStream},
};
use tonic::Streaming;

pub use self::backoff::Backoff;
use self::backoff::BackoffState;
use crate::{
    Client, Error,
    pb::{self, subscribe_response::Message},
    proto_time,
    trace::TraceContext,
};

/// Where a new consumer group starts; ignored when the group exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// The oldest notification the server still retains.
    #[default]
    Earliest,
    /// Only notifications created after the group.
    Latest,
    /// The first retained notification whose sequence is at least this (at least 1).
    Sequence(u64),
}

/// What to subscribe to; build it with [`SubscribeOptions::new`] and struct update syntax.
///
/// `kinds`, `workflow_ids` and `max_attempts` are fixed when the first Subscribe creates the
/// group; a later Subscribe with other values fails with `FAILED_PRECONDITION`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// The namespace to receive notifications from.
    pub namespace: String,
    /// The consumer group to join (created on first use).
    pub consumer_group: String,
    /// Group filter: only these kinds; empty for all.
    pub kinds: Vec<pb::NotificationKind>,
    /// Group filter: only START notifications for these workflows; empty for all.
    pub workflow_ids: Vec<String>,
    /// Unsettled notifications this stream may hold; 0 for the server default (64), at most
    /// 1024.
    pub max_in_flight: u32,
    /// How long this stream holds each notification before it is redelivered elsewhere; `None`
    /// for the server default (30 seconds), otherwise 1 second to 1 hour.
    pub lease_duration: Option<Duration>,
    /// Where a new group starts.
    pub start: StartPosition,
    /// Group setting: delivery attempts before a notification becomes a dead letter; 0 for the
    /// server default (10), at most 100.
    pub max_attempts: u32,
    /// Delays between reconnect attempts.
    pub backoff: Backoff,
}

impl SubscribeOptions {
    /// Returns options for `consumer_group` of `namespace` with every other setting at its
    /// default.
    pub fn new(namespace: impl Into<String>, consumer_group: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), consumer_group: consumer_group.into(), ..Self::default() }
    }

    /// Returns the Subscribe request these options describe.
    pub fn to_request(&self) -> pb::SubscribeRequest {
        let (start, start_sequence) = match self.start {
            StartPosition::Earliest => (pb::StartPosition::Earliest, 0),
            StartPosition::Latest => (pb::StartPosition::Latest, 0),
            StartPosition::Sequence(sequence) => (pb::StartPosition::Sequence, sequence),
        };
        pb::SubscribeRequest {
            namespace: self.namespace.clone(),
            consumer_group: self.consumer_group.clone(),
            kinds: self.kinds.iter().map(|&kind| kind.into()).collect(),
            workflow_ids: self.workflow_ids.clone(),
            max_in_flight: self.max_in_flight,
            lease_duration: self.lease_duration.and_then(proto_time::nonzero_duration),
            start: start.into(),
            start_sequence,
            max_attempts: self.max_attempts,
        }
    }
}

/// A stream of notifications for one consumer group, made by [`Client::subscribe`].
///
/// Keepalive messages are swallowed. When the stream breaks with a retryable error (see
/// [`Error::is_retryable`]) or ends without one, the subscription opens a new one in the same
/// group after a [`Backoff`] delay and goes on; the server redelivers what was left unsettled.
/// A permanent error (for example `INVALID_ARGUMENT`, `NOT_FOUND`, `FAILED_PRECONDITION`,
/// `PERMISSION_DENIED` or `UNAUTHENTICATED`) is yielded once, then the stream ends.
#[must_use = "streams do nothing unless polled"]
pub struct Subscription {
    namespace: Arc<str>,
    consumer_group: Arc<str>,
    inner: futures::stream::Fuse<BoxStream<'static, Result<Delivery, Error>>>,
}

impl Subscription {
    /// Makes the first Subscribe call and returns the subscription on its stream.
    pub(crate) async fn open(
        client: Client,
        options: SubscribeOptions,
        trace: Option<TraceContext>,
    ) -> Result<Self, Error> {
        let mut state = State {
            client,
            namespace: options.namespace.as_str().into(),
            consumer_group: options.consumer_group.as_str().into(),
            request: options.to_request(),
            trace,
            stream: None,
            backoff: BackoffState::new(options.backoff),
            finished: false,
        };
        state.stream = Some(state.connect().await?);
        Ok(Self {
            namespace: state.namespace.clone(),
            consumer_group: state.consumer_group.clone(),
            inner: futures::stream::unfold(state, State::next).boxed().fuse(),
        })
    }

    /// Returns the namespace the subscription reads from.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Returns the consumer group the subscription belongs to.
    pub fn consumer_group(&self) -> &str {
        &self.consumer_group
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl FusedStream for Subscription {
    fn is_terminated(&self) -> bool {
        self.inner.is_terminated()
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("namespace", &self.namespace)
            .field("consumer_group", &self.consumer_group)
            .field("terminated", &self.inner.is_terminated())
            .finish_non_exhaustive()
    }
}

/// The state the subscription stream unfolds over.
struct State {
    client: Client,
    namespace: Arc<str>,
    consumer_group: Arc<str>,
    request: pb::SubscribeRequest,
    trace: Option<TraceContext>,
    stream: Option<Streaming<pb::SubscribeResponse>>,
    backoff: BackoffState,
    finished: bool,
}

impl State {
    /// Makes one Subscribe call.
    async fn connect(&self) -> Result<Streaming<pb::SubscribeResponse>, Error> {
        let mut request = tonic::Request::new(self.request.clone());
        if let Some(trace) = &self.trace {
            // Tracing must not fail the call: an invalid context is skipped.
            let _ = trace.inject(request.metadata_mut());
        }
        Ok(self.client.raw().subscribe(request).await?.into_inner())
    }

    /// Returns the next delivery, reconnecting as often as needed, or the permanent error that
    /// ends the stream.
    async fn next(mut self) -> Option<(Result<Delivery, Error>, Self)> {
        if self.finished {
            return None;
        }
        loop {
            let stream = match self.stream.as_mut() {
                Some(stream) => stream,
                None => {
                    tokio::time::sleep(self.backoff.next_delay()).await;
                    match self.connect().await {
                        Ok(stream) => self.stream.insert(stream),
                        Err(error) if error.is_retryable() => continue,
                        Err(error) => return Some(self.finish(error)),
                    }
                }
            };
            match stream.message().await {
                Ok(Some(response)) => {
                    // A message proves the stream healthy: the next break starts backing off
                    // from the shortest delay again.
                    self.backoff.reset();
                    if let Some(Message::Notification(notification)) = response.message {
                        let delivery = Delivery {
                            client: self.client.clone(),
                            namespace: self.namespace.clone(),
                            consumer_group: self.consumer_group.clone(),
                            notification,
                        };
                        return Some((Ok(delivery), self));
                    }
                }
                // The server never ends a stream on its own accord with OK: treat it as a break.
                Ok(None) => self.stream = None,
                Err(status) => {
                    self.stream = None;
                    let error = Error::from(status);
                    if !error.is_retryable() {
                        return Some(self.finish(error));
                    }
                }
            }
        }
    }

    fn finish(mut self, error: Error) -> (Result<Delivery, Error>, Self) {
        self.finished = true;
        self.stream = None;
        (Err(error), self)
    }
}

/// One notification leased to a subscription, with what is needed to settle it.
#[derive(Debug, Clone)]
pub struct Delivery {
    client: Client,
    namespace: Arc<str>,
    consumer_group: Arc<str>,
    notification: pb::Notification,
}

impl Delivery {
    /// Returns the notification.
    pub fn notification(&self) -> &pb::Notification {
        &self.notification
    }

    /// Returns the notification, dropping the means to settle it.
    pub fn into_notification(self) -> pb::Notification {
        self.notification
    }

    /// Returns the trace context of the notification's trigger, for the runner to continue.
    pub fn trace_context(&self) -> Option<TraceContext> {
        TraceContext::from_notification(&self.notification)
    }

    /// Settles the notification as done (Ack). Acking twice, or after the lease expired, is not
    /// an error.
    pub async fn ack(&self) -> Result<(), Error> {
        self.client
            .ack(self.namespace.as_ref(), self.consumer_group.as_ref(), [self.notification.sequence])
            .await
            .map(drop)
    }

    /// Gives the notification back as a failed attempt (Nack), to be redelivered after
    /// `retry_after` (zero: at once). Returns whether that was its last attempt and it became a
    /// dead letter, with `reason` as its last error.
    ///
    /// Returns `FAILED_PRECONDITION` when it was already acked or dead.
    pub async fn nack(&self, retry_after: Duration, reason: impl Into<String>) -> Result<bool, Error> {
        self.client
            .nack(
                self.namespace.as_ref(),
                self.consumer_group.as_ref(),
                self.notification.sequence,
                retry_after,
                reason,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_leave_server_defaults() {
        let request = SubscribeOptions::new("ns", "group").to_request();
        assert_eq!(
            request,
            pb::SubscribeRequest {
                namespace: "ns".into(),
                consumer_group: "group".into(),
                start: pb::StartPosition::Earliest.into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn options_map_to_request() {
        let options = SubscribeOptions {
            kinds: vec![pb::NotificationKind::Wake, pb::NotificationKind::Timeout],
            workflow_ids: vec!["wf".into()],
            max_in_flight: 8,
            lease_duration: Some(Duration::from_secs(5)),
            start: StartPosition::Sequence(42),
            max_attempts: 3,
            ..SubscribeOptions::new("ns", "group")
        };
        let request = options.to_request();
        assert_eq!(request.kinds().collect::<Vec<_>>(), [pb::NotificationKind::Wake, pb::NotificationKind::Timeout]);
        assert_eq!(request.workflow_ids, ["wf"]);
        assert_eq!(request.max_in_flight, 8);
        assert_eq!(request.lease_duration, Some(prost_types::Duration { seconds: 5, nanos: 0 }));
        assert_eq!(request.start(), pb::StartPosition::Sequence);
        assert_eq!(request.start_sequence, 42);
        assert_eq!(request.max_attempts, 3);

        let latest = SubscribeOptions { start: StartPosition::Latest, ..SubscribeOptions::new("ns", "g") };
        assert_eq!(latest.to_request().start(), pb::StartPosition::Latest);
        assert_eq!(latest.to_request().start_sequence, 0);
    }

    #[tokio::test]
    async fn subscribe_returns_first_attempt_error() {
        let client = Client::connect_lazy("127.0.0.1:1").unwrap();
        let error = client.subscribe(SubscribeOptions::new("ns", "g")).await.unwrap_err();
        assert!(error.is_retryable(), "{error:?}");
    }
}
