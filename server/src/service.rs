//! The `EventBusService` handlers (and, in `tokens`, the `TokenService` ones). Each handler is thin: it hands the request message to an
//! `*_inner` method, which checks and converts it ([`crate::request`]) and calls the store; its
//! [`ApiError`] becomes a status in one place ([`crate::status`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use eventbus_client::pb;
use eventbus_client::pb::event_bus_service_server::EventBusService;
use eventbus_engine::TraceContext;
use eventbus_engine::store::Store;
use futures::Stream;
use tokio::sync::{Semaphore, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::config::ServerConfig;
use crate::convert;
use crate::metrics::Metrics;
use crate::request::{
    Ack, DeadLetters, DeleteListeners, FromProto, GetEvent, GetListener, ListEvents, ListListeners, ListenerId, Nack,
    Publish, Redrive, Register, Subscribe,
};
use crate::security::auth::Principal;
use crate::status::ApiError;
use crate::subscribe;
use crate::telemetry::trace;

mod admin;
mod publish_stream;
mod replay;
mod tokens;

/// The service state shared by all calls.
#[derive(Debug, Clone)]
pub struct EventBus {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) subscriptions: Arc<Semaphore>,
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl EventBus {
    pub fn new(store: Store, config: ServerConfig, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) -> Self {
        let subscriptions = Arc::new(Semaphore::new(config.limits.max_subscriptions));
        Self { store, config: Arc::new(config), metrics, subscriptions, shutdown }
    }
}

/// Returns the W3C trace context of a call (empty when it has none or an invalid one).
pub fn trace_of(metadata: &MetadataMap) -> TraceContext {
    trace_of_headers(metadata.as_ref())
}

/// Returns the W3C trace context in the `traceparent` and `tracestate` headers of a request
/// (empty when it has none or an invalid one).
pub fn trace_of_headers(headers: &http::HeaderMap) -> TraceContext {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let traceparent = get("traceparent");
    if eventbus_engine::valid_traceparent(&traceparent) {
        TraceContext { traceparent, tracestate: get("tracestate") }
    } else {
        TraceContext::default()
    }
}

/// The response of a publish: each event's sequence, and whether it was a duplicate.
fn publish_response(published: Vec<eventbus_engine::store::Published>) -> pb::PublishResponse {
    pb::PublishResponse {
        results: published
            .into_iter()
            .map(|p| pb::PublishResult { sequence: p.sequence, duplicate: p.duplicate })
            .collect(),
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

impl EventBus {
    /// Converts a request message with the server's limits (see [`crate::request`]).
    fn checked<P, T: FromProto<P>>(&self, proto: P) -> Result<T, ApiError> {
        Ok(T::from_proto(proto, &self.config.limits)?)
    }

    /// Publishes: the whole path of a Publish call after its transport (gRPC's handler and the
    /// HTTP ingress both end here), with its metrics.
    pub(crate) async fn publish_inner(
        &self,
        req: pb::PublishRequest,
        trace: TraceContext,
    ) -> Result<pb::PublishResponse, ApiError> {
        let started = Instant::now();
        let events = req.events.len() as u64;
        let span = self.config.traces.then(tracing::Span::current);
        let result = async {
            let (namespace, events) = self.publish_checked(req, &trace, span.as_ref())?;
            Ok(publish_response(self.store.publish(&namespace, events).await?))
        }
        .await;
        self.count_publish(&result, events, started);
        result
    }

    /// Checks a publish request and returns its namespace and events, each event with its trace
    /// context: its own, else the call's; with traces on (`span`, the publish span), the
    /// publish span's, the contexts the events carried becoming its links.
    fn publish_checked(
        &self,
        req: pb::PublishRequest,
        call: &TraceContext,
        span: Option<&tracing::Span>,
    ) -> Result<(String, Vec<eventbus_engine::Event>), ApiError> {
        let Publish { namespace, mut events } = self.checked(req)?;
        // An event without a valid traceparent of its own is recorded with the call's.
        for e in events.iter_mut().filter(|e| e.trace.is_empty()) {
            e.trace = call.clone();
        }
        if let Some(span) = span {
            // Triggers are children of the publish span; contexts the events carried themselves
            // become links of it.
            let carried: Vec<TraceContext> = events.iter().map(|e| e.trace.clone()).collect();
            trace::annotate_publish(span, &namespace, events.len(), &carried);
            let publish = trace::of_span(span);
            if !publish.is_empty() {
                for e in &mut events {
                    e.trace = publish.clone();
                }
            }
        }
        Ok((namespace, events))
    }

    /// Counts a publish of `events` events in the metrics.
    fn count_publish(&self, result: &Result<pb::PublishResponse, ApiError>, events: u64, started: Instant) {
        let m = &self.metrics;
        match result {
            Ok(r) => {
                let duplicates = r.results.iter().filter(|p| p.duplicate).count() as u64;
                m.events_published.inc_by(events - duplicates);
                m.events_duplicate.inc_by(duplicates);
            }
            Err(_) => {
                m.events_rejected.inc_by(events);
            }
        }
        m.publish_seconds.observe(started.elapsed().as_secs_f64());
    }

    async fn register_inner(
        &self,
        req: pb::RegisterListenerRequest,
        trace: TraceContext,
    ) -> Result<pb::RegisterListenerResponse, ApiError> {
        let Register { namespace, spec, request_id, look_back } = self.checked(req)?;
        let (listener, created) =
            self.store.register_listener_looking_back(&namespace, spec, request_id, trace, look_back).await?;
        Ok(pb::RegisterListenerResponse { listener: Some(convert::listener_to(listener)), created })
    }

    pub(crate) async fn get_listener_inner(
        &self,
        req: pb::GetListenerRequest,
    ) -> Result<pb::GetListenerResponse, ApiError> {
        let GetListener { namespace, id, partial_state } = self.checked(req)?;
        let l = self.store.get_listener(&namespace, id).await?;
        let mut response = pb::GetListenerResponse { listener: Some(convert::listener_to(l)), ..Default::default() };
        if partial_state {
            let partials = self.store.partial_states(&namespace, id, chrono::Utc::now()).await?;
            response.partial_states = partials.states.into_iter().map(convert::partial_state_to).collect();
            response.partial_states_truncated = partials.truncated;
        }
        Ok(response)
    }

    pub(crate) async fn list_listeners_inner(
        &self,
        req: pb::ListListenersRequest,
    ) -> Result<pb::ListListenersResponse, ApiError> {
        let ListListeners { namespace, query } = self.checked(req)?;
        let page = self.store.list_listeners(&namespace, query).await?;
        Ok(pb::ListListenersResponse {
            listeners: page.items.into_iter().map(convert::listener_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn delete_listener_inner(
        &self,
        req: pb::DeleteListenerRequest,
    ) -> Result<pb::DeleteListenerResponse, ApiError> {
        let ListenerId { namespace, id } = self.checked(req)?;
        self.store.delete_listener(&namespace, id).await?;
        Ok(pb::DeleteListenerResponse {})
    }

    async fn delete_listeners_inner(
        &self,
        req: pb::DeleteListenersRequest,
    ) -> Result<pb::DeleteListenersResponse, ApiError> {
        let DeleteListeners { namespace, selector } = self.checked(req)?;
        let deleted_count = self.store.delete_listeners(&namespace, selector).await?;
        Ok(pb::DeleteListenersResponse { deleted_count })
    }

    async fn ack_inner(&self, req: pb::AckRequest) -> Result<pb::AckResponse, ApiError> {
        let Ack { namespace, group, sequences } = self.checked(req)?;
        let n = self.store.ack(&namespace, &group, sequences).await?;
        Ok(pb::AckResponse { acked_count: n as u32 })
    }

    async fn nack_inner(&self, req: pb::NackRequest) -> Result<pb::NackResponse, ApiError> {
        let Nack { namespace, group, sequence, retry_after, reason } = self.checked(req)?;
        let dead_lettered = self.store.nack(&namespace, &group, sequence, retry_after, reason).await?;
        Ok(pb::NackResponse { dead_lettered })
    }

    pub(crate) async fn list_dead_letters_inner(
        &self,
        req: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, ApiError> {
        let DeadLetters { namespace, group, page_size, page_token } = self.checked(req)?;
        let page = self.store.list_dead_letters(&namespace, &group, page_size, page_token.as_deref()).await?;
        Ok(pb::ListDeadLettersResponse {
            dead_letters: page.items.into_iter().map(|d| convert::dead_letter_to(d, &group)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    pub(crate) async fn redrive_inner(
        &self,
        req: pb::RedriveDeadLettersRequest,
    ) -> Result<pb::RedriveDeadLettersResponse, ApiError> {
        let Redrive { namespace, group, sequences } = self.checked(req)?;
        let redriven_count = self.store.redrive(&namespace, &group, sequences).await?;
        Ok(pb::RedriveDeadLettersResponse { redriven_count })
    }

    pub(crate) async fn get_event_inner(&self, req: pb::GetEventRequest) -> Result<pb::GetEventResponse, ApiError> {
        let GetEvent { namespace, key } = self.checked(req)?;
        let e = self.store.get_event(&namespace, key).await?;
        Ok(pb::GetEventResponse { event: Some(convert::stored_event_to(e)) })
    }

    pub(crate) async fn list_events_inner(
        &self,
        req: pb::ListEventsRequest,
    ) -> Result<pb::ListEventsResponse, ApiError> {
        let ListEvents { namespace, query } = self.checked(req)?;
        let page = self.store.list_events(&namespace, query).await?;
        Ok(pb::ListEventsResponse {
            events: page.items.into_iter().map(convert::stored_event_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn subscribe_inner(&self, req: pb::SubscribeRequest) -> Result<SubscribeStream, ApiError> {
        let options: Subscribe = self.checked(req)?;
        let permit = self.subscriptions.clone().try_acquire_owned().map_err(|_| {
            ApiError::Exhausted("too many open Subscribe streams on this server; retry later or elsewhere".into())
        })?;
        self.store.ensure_group(&options.namespace, options.group.clone()).await?;
        Ok(Box::pin(subscribe::stream(self.clone(), options, permit).await?))
    }
}

#[tonic::async_trait]
impl EventBusService for EventBus {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        let trace = trace_of(req.metadata());
        if self.config.traces
            && let Some(principal) = req.extensions().get::<Principal>()
        {
            trace::annotate_principal(&tracing::Span::current(), &principal.name);
        }
        Ok(Response::new(self.publish_inner(req.into_inner(), trace).await?))
    }

    type PublishStreamStream = publish_stream::PublishStream;

    async fn publish_stream(
        &self,
        req: Request<tonic::Streaming<pb::PublishStreamRequest>>,
    ) -> Result<Response<Self::PublishStreamStream>, Status> {
        let call = trace_of(req.metadata());
        let principal = req.extensions().get::<Principal>().cloned();
        Ok(Response::new(self.publish_stream_inner(req.into_inner(), principal, call)))
    }

    async fn register_listener(
        &self,
        req: Request<pb::RegisterListenerRequest>,
    ) -> Result<Response<pb::RegisterListenerResponse>, Status> {
        // With traces on, a TIMEOUT continues the RegisterListener span (itself a child of the
        // caller's context).
        let span = if self.config.traces { trace::of_span(&tracing::Span::current()) } else { TraceContext::default() };
        let trace = if span.is_empty() { trace_of(req.metadata()) } else { span };
        Ok(Response::new(self.register_inner(req.into_inner(), trace).await?))
    }

    async fn get_listener(
        &self,
        req: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::GetListenerResponse>, Status> {
        Ok(Response::new(self.get_listener_inner(req.into_inner()).await?))
    }

    async fn list_listeners(
        &self,
        req: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        Ok(Response::new(self.list_listeners_inner(req.into_inner()).await?))
    }

    async fn delete_listener(
        &self,
        req: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        Ok(Response::new(self.delete_listener_inner(req.into_inner()).await?))
    }

    async fn delete_listeners(
        &self,
        req: Request<pb::DeleteListenersRequest>,
    ) -> Result<Response<pb::DeleteListenersResponse>, Status> {
        Ok(Response::new(self.delete_listeners_inner(req.into_inner()).await?))
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        Ok(Response::new(self.subscribe_inner(req.into_inner()).await?))
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        Ok(Response::new(self.ack_inner(req.into_inner()).await?))
    }

    async fn nack(&self, req: Request<pb::NackRequest>) -> Result<Response<pb::NackResponse>, Status> {
        Ok(Response::new(self.nack_inner(req.into_inner()).await?))
    }

    async fn list_dead_letters(
        &self,
        req: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        Ok(Response::new(self.list_dead_letters_inner(req.into_inner()).await?))
    }

    async fn redrive_dead_letters(
        &self,
        req: Request<pb::RedriveDeadLettersRequest>,
    ) -> Result<Response<pb::RedriveDeadLettersResponse>, Status> {
        Ok(Response::new(self.redrive_inner(req.into_inner()).await?))
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Result<Response<pb::GetEventResponse>, Status> {
        Ok(Response::new(self.get_event_inner(req.into_inner()).await?))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        Ok(Response::new(self.list_events_inner(req.into_inner()).await?))
    }

    async fn list_namespaces(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        Ok(Response::new(self.list_namespaces_inner(req.into_inner()).await?))
    }

    async fn delete_namespace(
        &self,
        req: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<pb::DeleteNamespaceResponse>, Status> {
        Ok(Response::new(self.delete_namespace_inner(req.into_inner()).await?))
    }

    async fn list_consumer_groups(
        &self,
        req: Request<pb::ListConsumerGroupsRequest>,
    ) -> Result<Response<pb::ListConsumerGroupsResponse>, Status> {
        Ok(Response::new(self.list_groups_inner(req.into_inner()).await?))
    }

    async fn get_consumer_group(
        &self,
        req: Request<pb::GetConsumerGroupRequest>,
    ) -> Result<Response<pb::GetConsumerGroupResponse>, Status> {
        Ok(Response::new(self.get_group_inner(req.into_inner()).await?))
    }

    async fn update_consumer_group(
        &self,
        req: Request<pb::UpdateConsumerGroupRequest>,
    ) -> Result<Response<pb::UpdateConsumerGroupResponse>, Status> {
        Ok(Response::new(self.update_group_inner(req.into_inner()).await?))
    }

    async fn seek_consumer_group(
        &self,
        req: Request<pb::SeekConsumerGroupRequest>,
    ) -> Result<Response<pb::SeekConsumerGroupResponse>, Status> {
        Ok(Response::new(self.seek_group_inner(req.into_inner()).await?))
    }

    async fn delete_consumer_group(
        &self,
        req: Request<pb::DeleteConsumerGroupRequest>,
    ) -> Result<Response<pb::DeleteConsumerGroupResponse>, Status> {
        Ok(Response::new(self.delete_group_inner(req.into_inner()).await?))
    }

    async fn explain_listener(
        &self,
        req: Request<pb::ExplainListenerRequest>,
    ) -> Result<Response<pb::ExplainListenerResponse>, Status> {
        Ok(Response::new(self.explain_inner(req.into_inner()).await?))
    }

    async fn replay_events(
        &self,
        req: Request<pb::ReplayEventsRequest>,
    ) -> Result<Response<pb::ReplayEventsResponse>, Status> {
        let principal = req.extensions().get::<Principal>().cloned();
        Ok(Response::new(self.replay_inner(req.into_inner(), principal).await?))
    }
}
