//! [`Publisher`]: many publishes in flight on one PublishStream call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::Error;
use crate::pb;

/// Requests a publisher lets wait for room on its stream before [`Publisher::publish`] waits.
const QUEUE: usize = 256;

type Waiting = HashMap<u64, oneshot::Sender<Result<Vec<pb::PublishResult>, Error>>>;

/// Publishes over one PublishStream call: each [`publish`](Self::publish) is one message of the
/// stream, so many can be in flight on one call, without a call each. Open one with
/// [`Client::publisher`](crate::Client::publisher).
///
/// Cloning is cheap; clones share the stream. The server sequences the batches in the order
/// they were sent and answers each as a Publish call would: its error fails only that publish.
/// When the stream itself ends (the server shuts down, the connection breaks), every publish
/// still waiting and every later one fails with the stream's status; publishing the same built
/// events again, on a new publisher, is safe (a stored event id is answered as a duplicate).
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    requests: mpsc::Sender<pb::PublishStreamRequest>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    waiting: Waiting,
    /// Why the stream ended, once it has.
    ended: Option<(Code, String)>,
}

impl Publisher {
    /// Opens the stream with `open` (the client's call, given the requests to send) and starts
    /// the task that hands out its answers.
    pub(crate) async fn open<F, Fut>(open: F) -> Result<Self, Error>
    where
        F: FnOnce(ReceiverStream<pb::PublishStreamRequest>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<tonic::Streaming<pb::PublishStreamResponse>>, Status>>,
    {
        let (requests, rx) = mpsc::channel(QUEUE);
        let answers = open(ReceiverStream::new(rx)).await?.into_inner();
        let shared = Arc::new(Shared { state: Mutex::new(State::default()) });
        tokio::spawn(answer(answers, shared.clone()));
        Ok(Self { shared, requests })
    }

    /// Publishes `events` to `namespace`, as [`Client::publish`](crate::Client::publish) does,
    /// as one message of the stream; returns one result per event, in order.
    pub async fn publish(
        &self,
        namespace: impl Into<String>,
        events: impl IntoIterator<Item = pb::CloudEvent>,
    ) -> Result<Vec<pb::PublishResult>, Error> {
        let publish = pb::PublishRequest { namespace: namespace.into(), events: events.into_iter().collect() };
        let (sender, answer) = oneshot::channel();
        let id = {
            let mut state = self.shared.lock();
            if let Some(ended) = &state.ended {
                return Err(ended_error(ended));
            }
            let id = state.next_id;
            state.next_id += 1;
            state.waiting.insert(id, sender);
            id
        };
        // A publish dropped before its answer (a caller's timeout) stops waiting for it.
        let _waiting = Forget { shared: &self.shared, id };
        if self.requests.send(pb::PublishStreamRequest { id, publish: Some(publish) }).await.is_err() {
            return Err(self.ended());
        }
        answer.await.unwrap_or_else(|_| Err(self.ended()))
    }

    /// How many publishes wait for their answer.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.lock().waiting.len()
    }

    /// The error of a publish made after the stream ended.
    fn ended(&self) -> Error {
        let state = self.shared.lock();
        state.ended.as_ref().map_or_else(|| Error::from(Status::unavailable("the publish stream ended")), ended_error)
    }
}

/// Removes a publish's place among those waiting for an answer when the publish ends, however
/// it ends (answered, failed or dropped).
struct Forget<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.lock().waiting.remove(&self.id);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn ended_error((code, message): &(Code, String)) -> Error {
    Error::from(Status::new(*code, message.clone()))
}

/// Hands each answer of the stream to its publish; when the stream ends, fails the publishes
/// still waiting with its status.
async fn answer(mut answers: tonic::Streaming<pb::PublishStreamResponse>, shared: Arc<Shared>) {
    let ended = loop {
        match answers.next().await {
            Some(Ok(response)) => {
                let Some(sender) = shared.lock().waiting.remove(&response.id) else { continue };
                let outcome = match response.outcome {
                    Some(pb::publish_stream_response::Outcome::Published(published)) => Ok(published.results),
                    Some(pb::publish_stream_response::Outcome::Error(e)) => {
                        Err(Error::from(Status::new(Code::from(e.code), e.message)))
                    }
                    None => Err(Error::from(Status::internal("a PublishStream answer without an outcome"))),
                };
                let _ = sender.send(outcome);
            }
            Some(Err(status)) => break (status.code(), status.message().to_owned()),
            None => break (Code::Unavailable, "the publish stream ended".to_owned()),
        }
    };
    let waiting = {
        let mut state = shared.lock();
        state.ended = Some(ended.clone());
        std::mem::take(&mut state.waiting)
    };
    for (_, sender) in waiting {
        let _ = sender.send(Err(ended_error(&ended)));
    }
}
