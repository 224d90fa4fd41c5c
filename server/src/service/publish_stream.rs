//! PublishStream: many Publish batches over one call. Each message is checked, permitted and put
//! in the writer's queue in the order it arrived (so batches are sequenced in stream order), and
//! answered in that order once its transaction has committed; while earlier answers are pending,
//! later messages are read and queued, up to [`READ_AHEAD`].

use std::future::Future;
use std::pin::Pin;

use eventbus_client::pb;
use eventbus_engine::TraceContext;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::EventBus;
use crate::request::Violations;
use crate::security::auth::{self, Principal};
use crate::status::{self, ApiError};
use crate::telemetry::trace;

/// Messages of one stream read ahead of their answers: past this, the server stops reading the
/// stream until the oldest is answered (flow control holds the client back).
pub const READ_AHEAD: usize = 1024;

const METHOD: &str = "/eventbus.v1.EventBusService/PublishStream";

pub(super) type PublishStream = ReceiverStream<Result<pb::PublishStreamResponse, Status>>;

type Answer = Pin<Box<dyn Future<Output = pb::PublishStreamResponse> + Send>>;

impl EventBus {
    /// Serves a PublishStream call on a task of its own; returns the stream of its answers.
    pub(super) fn publish_stream_inner(
        &self,
        requests: Streaming<pb::PublishStreamRequest>,
        principal: Option<Principal>,
        call: TraceContext,
    ) -> PublishStream {
        let (tx, rx) = mpsc::channel(64);
        let bus = self.clone();
        tokio::spawn(async move { bus.serve_publish_stream(requests, principal.as_ref(), &call, &tx).await });
        ReceiverStream::new(rx)
    }

    /// Reads, queues and answers messages until the client closes its side and every message is
    /// answered, the client goes away, a message cannot be read, or the server shuts down.
    async fn serve_publish_stream(
        &self,
        mut requests: Streaming<pb::PublishStreamRequest>,
        principal: Option<&Principal>,
        call: &TraceContext,
        tx: &mpsc::Sender<Result<pb::PublishStreamResponse, Status>>,
    ) {
        let mut shutdown = self.shutdown.clone();
        let mut pending: FuturesOrdered<Answer> = FuturesOrdered::new();
        // Why reading stopped, once it has: None when the client closed its side.
        let mut ended: Option<Option<Status>> = None;
        loop {
            // A sender gone without a word is a shutdown too (else `changed` would spin).
            if ended.is_none() && (*shutdown.borrow() || shutdown.has_changed().is_err()) {
                ended = Some(Some(Status::from(ApiError::ShuttingDown)));
            }
            if pending.is_empty() && ended.is_some() {
                break;
            }
            let reading = ended.is_none() && pending.len() < READ_AHEAD;
            tokio::select! {
                // Answers first: they free room to read more.
                biased;
                Some(answer) = pending.next(), if !pending.is_empty() => {
                    if tx.send(Ok(answer)).await.is_err() {
                        return;
                    }
                }
                next = requests.message(), if reading => match next {
                    Ok(Some(message)) => pending.push_back(self.queue_message(message, principal, call).await),
                    Ok(None) => ended = Some(None),
                    Err(status) => ended = Some(Some(status::request_fault(&status).unwrap_or(status))),
                },
                _ = shutdown.changed(), if ended.is_none() => {}
                _ = tx.closed() => return,
            }
        }
        if let Some(Some(status)) = ended {
            let _ = tx.send(Err(status)).await;
        }
    }

    /// Checks one message and puts it in the writer's queue; returns the wait for its answer
    /// (already answered when the message was refused).
    async fn queue_message(
        &self,
        message: pb::PublishStreamRequest,
        principal: Option<&Principal>,
        call: &TraceContext,
    ) -> Answer {
        let id = message.id;
        let answer = move |outcome| pb::PublishStreamResponse { id, outcome: Some(outcome) };
        let refused = |e: ApiError| -> Answer {
            let outcome = pb::publish_stream_response::Outcome::Error(status::publish_error(e));
            Box::pin(std::future::ready(answer(outcome)))
        };
        let Some(req) = message.publish else {
            return refused(Violations::invalid("publish", "is required").into());
        };
        if let Some(principal) = principal
            && !principal.may_send(METHOD, &req.namespace)
        {
            return refused(auth::refused_message(&self.metrics, &principal.name, METHOD, &req.namespace));
        }
        let span = self.config.traces.then(|| {
            let span = trace::stream_publish_span(call);
            if let Some(principal) = principal {
                trace::annotate_principal(&span, &principal.name);
            }
            span
        });
        let started = std::time::Instant::now();
        let events = req.events.len() as u64;
        let queued: Result<_, ApiError> = async {
            let (namespace, events) = self.publish_checked(req, call, span.as_ref())?;
            Ok(self.store.queue_publish(&namespace, events).await?)
        }
        .await;
        let bus = self.clone();
        Box::pin(async move {
            let result = async { Ok(super::publish_response(queued?.outcome().await?)) }.await;
            bus.count_publish(&result, events, started);
            drop(span);
            answer(match result {
                Ok(published) => pb::publish_stream_response::Outcome::Published(published),
                Err(e) => pb::publish_stream_response::Outcome::Error(status::publish_error(e)),
            })
        })
    }
}
