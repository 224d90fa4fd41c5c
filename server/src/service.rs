//! The `EventBusService` handlers. Each handler is thin: it takes the request apart, calls an
//! `*_inner` method that validates and calls the store, and maps errors in one place
//! ([`crate::status`]).

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventbus_client::pb;
use eventbus_client::pb::event_bus_service_server::EventBusService;
use eventbus_engine::store::{EventKey, EventQuery, ListenerQuery, ListenerSelector, Store};
use eventbus_engine::{FieldViolation, ListenerKind, TraceContext};
use futures::Stream;
use tokio::sync::{Semaphore, watch};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::config::ServerConfig;
use crate::convert::{self, Violations, finish};
use crate::metrics::Metrics;
use crate::status::{exhausted, to_status};
use crate::subscribe;
use crate::telemetry::trace;

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
    let get = |k: &str| metadata.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let traceparent = get("traceparent");
    if eventbus_engine::valid_traceparent(&traceparent) {
        TraceContext { traceparent, tracestate: get("tracestate") }
    } else {
        TraceContext::default()
    }
}

fn page_size(n: i32, v: &mut Violations) -> u32 {
    if n < 0 {
        v.push(FieldViolation::new("page_size", "must not be negative"));
        0
    } else {
        n as u32
    }
}

fn uuid(field: &str, s: &str, v: &mut Violations) -> Uuid {
    Uuid::parse_str(s).unwrap_or_else(|_| {
        v.push(FieldViolation::new(field, "must be a UUID"));
        Uuid::nil()
    })
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn sequences(field: &str, seqs: &[u64], allow_empty: bool, v: &mut Violations) {
    if !allow_empty && seqs.is_empty() {
        v.push(FieldViolation::new(field, "must name at least one sequence"));
    }
    if seqs.len() > 1000 {
        v.push(FieldViolation::new(field, "at most 1000 sequences"));
    }
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::SubscribeResponse, Status>> + Send>>;

impl EventBus {
    async fn publish_inner(&self, req: pb::PublishRequest, trace: TraceContext) -> Result<pb::PublishResponse, Status> {
        let started = Instant::now();
        let events = req.events.len() as u64;
        let result = self.publish_events(req, trace).await;
        let m = &self.metrics;
        match &result {
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
        result
    }

    async fn publish_events(
        &self,
        req: pb::PublishRequest,
        trace: TraceContext,
    ) -> Result<pb::PublishResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let max = self.config.limits.max_events_per_publish;
        if req.events.is_empty() || req.events.len() > max {
            v.push(FieldViolation::new("events", format!("must hold 1 to {max} events, not {}", req.events.len())));
            return Err(crate::status::invalid(v));
        }
        let limits = &self.config.limits;
        let mut exceeded = Vec::new();
        let mut events: Vec<_> = req
            .events
            .into_iter()
            .enumerate()
            .filter_map(|(i, e)| convert::event_from(i, e, &trace, limits, &mut v, &mut exceeded))
            .collect();
        finish(v)?;
        if !exceeded.is_empty() {
            return Err(crate::status::over_limit(exceeded));
        }
        if self.config.traces {
            // Triggers are children of the publish span; contexts the events carried themselves
            // become links of it.
            let span = tracing::Span::current();
            let carried: Vec<TraceContext> = events.iter().map(|e| e.trace.clone()).collect();
            trace::annotate_publish(&span, &req.namespace, events.len(), &carried);
            let publish = trace::of_span(&span);
            if !publish.is_empty() {
                for e in &mut events {
                    e.trace = publish.clone();
                }
            }
        }
        let published = self.store.publish(&req.namespace, events).await.map_err(to_status)?;
        Ok(pb::PublishResponse {
            results: published
                .into_iter()
                .map(|p| pb::PublishResult { sequence: p.sequence, duplicate: p.duplicate })
                .collect(),
        })
    }

    async fn register_inner(
        &self,
        req: pb::RegisterListenerRequest,
        trace: TraceContext,
    ) -> Result<pb::RegisterListenerResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        if req.request_id.len() > 128 {
            v.push(FieldViolation::new("request_id", "must be at most 128 bytes"));
        }
        let spec = convert::spec_from(req.listener, &mut v);
        finish(v)?;
        let Some(spec) = spec else { return Err(Status::internal("internal error")) };
        let request_id = opt(req.request_id);
        let (listener, created) =
            self.store.register_listener(&req.namespace, spec, request_id.clone(), trace).await.map_err(to_status)?;
        Ok(pb::RegisterListenerResponse { listener: Some(convert::listener_to(listener, request_id)), created })
    }

    async fn get_listener_inner(&self, req: pb::GetListenerRequest) -> Result<pb::GetListenerResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let id = uuid("id", &req.id, &mut v);
        finish(v)?;
        let l = self.store.get_listener(&req.namespace, id).await.map_err(to_status)?;
        Ok(pb::GetListenerResponse { listener: Some(convert::listener_to(l, None)) })
    }

    async fn list_listeners_inner(&self, req: pb::ListListenersRequest) -> Result<pb::ListListenersResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let page_size = page_size(req.page_size, &mut v);
        let kind = match pb::ListenerKind::try_from(req.kind) {
            Ok(pb::ListenerKind::Unspecified) => None,
            Ok(pb::ListenerKind::Start) => Some(ListenerKind::Start),
            Ok(pb::ListenerKind::Wait) => Some(ListenerKind::Wait),
            Err(_) => {
                v.push(FieldViolation::new("kind", "unknown kind"));
                None
            }
        };
        finish(v)?;
        let query = ListenerQuery {
            kind,
            workflow_id: opt(req.workflow_id),
            instance_id: opt(req.instance_id),
            include_finished: req.include_finished,
            page_size,
            page_token: opt(req.page_token),
        };
        let page = self.store.list_listeners(&req.namespace, query).await.map_err(to_status)?;
        Ok(pb::ListListenersResponse {
            listeners: page.items.into_iter().map(|l| convert::listener_to(l, None)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn delete_listener_inner(
        &self,
        req: pb::DeleteListenerRequest,
    ) -> Result<pb::DeleteListenerResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let id = uuid("id", &req.id, &mut v);
        finish(v)?;
        self.store.delete_listener(&req.namespace, id).await.map_err(to_status)?;
        Ok(pb::DeleteListenerResponse {})
    }

    async fn delete_listeners_inner(
        &self,
        req: pb::DeleteListenersRequest,
    ) -> Result<pb::DeleteListenersResponse, Status> {
        use pb::delete_listeners_request::Selector;
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let selector = match req.selector {
            Some(Selector::WorkflowId(w)) if !w.is_empty() => Some(ListenerSelector::Workflow(w)),
            Some(Selector::InstanceId(i)) if !i.is_empty() => Some(ListenerSelector::Instance(i)),
            Some(Selector::WorkflowId(_)) => {
                v.push(FieldViolation::new("workflow_id", "must not be empty"));
                None
            }
            Some(Selector::InstanceId(_)) => {
                v.push(FieldViolation::new("instance_id", "must not be empty"));
                None
            }
            None => {
                v.push(FieldViolation::new("selector", "set workflow_id or instance_id"));
                None
            }
        };
        finish(v)?;
        let Some(selector) = selector else { return Err(Status::internal("internal error")) };
        let n = self.store.delete_listeners(&req.namespace, selector).await.map_err(to_status)?;
        Ok(pb::DeleteListenersResponse { deleted_count: n })
    }

    async fn ack_inner(&self, req: pb::AckRequest) -> Result<pb::AckResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        convert::group(&req.consumer_group, &mut v);
        sequences("sequences", &req.sequences, false, &mut v);
        finish(v)?;
        let n = self.store.ack(&req.namespace, &req.consumer_group, req.sequences).await.map_err(to_status)?;
        Ok(pb::AckResponse { acked_count: n as u32 })
    }

    async fn nack_inner(&self, req: pb::NackRequest) -> Result<pb::NackResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        convert::group(&req.consumer_group, &mut v);
        let retry_after = match req.retry_after.as_ref().map(convert::duration_from) {
            None => Duration::ZERO,
            Some(Some(d)) if d <= Duration::from_secs(86_400) => d,
            Some(_) => {
                v.push(FieldViolation::new("retry_after", "must be 0 to 24 hours"));
                Duration::ZERO
            }
        };
        if req.reason.len() > 1024 {
            v.push(FieldViolation::new("reason", "must be at most 1024 bytes"));
        }
        finish(v)?;
        let dead = self
            .store
            .nack(&req.namespace, &req.consumer_group, req.sequence, retry_after, req.reason)
            .await
            .map_err(to_status)?;
        Ok(pb::NackResponse { dead_lettered: dead })
    }

    async fn list_dead_letters_inner(
        &self,
        req: pb::ListDeadLettersRequest,
    ) -> Result<pb::ListDeadLettersResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        convert::group(&req.consumer_group, &mut v);
        let size = page_size(req.page_size, &mut v);
        finish(v)?;
        let token = opt(req.page_token);
        let page = self
            .store
            .list_dead_letters(&req.namespace, &req.consumer_group, size, token.as_deref())
            .await
            .map_err(to_status)?;
        Ok(pb::ListDeadLettersResponse {
            dead_letters: page.items.into_iter().map(|d| convert::dead_letter_to(d, &req.consumer_group)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn redrive_inner(
        &self,
        req: pb::RedriveDeadLettersRequest,
    ) -> Result<pb::RedriveDeadLettersResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        convert::group(&req.consumer_group, &mut v);
        sequences("sequences", &req.sequences, true, &mut v);
        finish(v)?;
        let n = self.store.redrive(&req.namespace, &req.consumer_group, req.sequences).await.map_err(to_status)?;
        Ok(pb::RedriveDeadLettersResponse { redriven_count: n })
    }

    async fn get_event_inner(&self, req: pb::GetEventRequest) -> Result<pb::GetEventResponse, Status> {
        use pb::get_event_request::Key;
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let key = match req.key {
            Some(Key::Sequence(s)) if s > 0 => Some(EventKey::Sequence(s)),
            Some(Key::Sequence(_)) => {
                v.push(FieldViolation::new("sequence", "must be at least 1"));
                None
            }
            Some(Key::SourceId(k)) if !k.source.is_empty() && !k.id.is_empty() => {
                Some(EventKey::SourceId { source: k.source, id: k.id })
            }
            Some(Key::SourceId(_)) => {
                v.push(FieldViolation::new("source_id", "source and id must not be empty"));
                None
            }
            None => {
                v.push(FieldViolation::new("key", "set sequence or source_id"));
                None
            }
        };
        finish(v)?;
        let Some(key) = key else { return Err(Status::internal("internal error")) };
        let e = self.store.get_event(&req.namespace, key).await.map_err(to_status)?;
        Ok(pb::GetEventResponse { event: Some(convert::stored_event_to(e)) })
    }

    async fn list_events_inner(&self, req: pb::ListEventsRequest) -> Result<pb::ListEventsResponse, Status> {
        let mut v = Vec::new();
        convert::namespace(&req.namespace, &mut v);
        let page_size = page_size(req.page_size, &mut v);
        let mut time = |field: &str, ts: Option<prost_types::Timestamp>| {
            ts.and_then(|ts| {
                let t = convert::time_from(&ts);
                if t.is_none() {
                    v.push(FieldViolation::new(field, "timestamp out of range"));
                }
                t
            })
        };
        let start = time("start_time", req.start_time);
        let end = time("end_time", req.end_time);
        finish(v)?;
        let query = EventQuery {
            event_type: opt(req.r#type),
            source: opt(req.source),
            subject: opt(req.subject),
            start,
            end,
            after_sequence: (req.after_sequence > 0).then_some(req.after_sequence),
            page_size,
            page_token: opt(req.page_token),
        };
        let page = self.store.list_events(&req.namespace, query).await.map_err(to_status)?;
        Ok(pb::ListEventsResponse {
            events: page.items.into_iter().map(convert::stored_event_to).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    async fn subscribe_inner(&self, req: pb::SubscribeRequest) -> Result<SubscribeStream, Status> {
        let options = subscribe::Options::from_request(req)?;
        let permit = self
            .subscriptions
            .clone()
            .try_acquire_owned()
            .map_err(|_| exhausted("too many open Subscribe streams on this server; retry later or elsewhere"))?;
        self.store.ensure_group(&options.namespace, options.group.clone()).await.map_err(to_status)?;
        Ok(Box::pin(subscribe::stream(self.clone(), options, permit).await?))
    }
}

#[tonic::async_trait]
impl EventBusService for EventBus {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        let trace = trace_of(req.metadata());
        self.publish_inner(req.into_inner(), trace).await.map(Response::new)
    }

    async fn register_listener(
        &self,
        req: Request<pb::RegisterListenerRequest>,
    ) -> Result<Response<pb::RegisterListenerResponse>, Status> {
        // With traces on, a TIMEOUT continues the RegisterListener span (itself a child of the
        // caller's context).
        let span = if self.config.traces { trace::of_span(&tracing::Span::current()) } else { TraceContext::default() };
        let trace = if span.is_empty() { trace_of(req.metadata()) } else { span };
        self.register_inner(req.into_inner(), trace).await.map(Response::new)
    }

    async fn get_listener(
        &self,
        req: Request<pb::GetListenerRequest>,
    ) -> Result<Response<pb::GetListenerResponse>, Status> {
        self.get_listener_inner(req.into_inner()).await.map(Response::new)
    }

    async fn list_listeners(
        &self,
        req: Request<pb::ListListenersRequest>,
    ) -> Result<Response<pb::ListListenersResponse>, Status> {
        self.list_listeners_inner(req.into_inner()).await.map(Response::new)
    }

    async fn delete_listener(
        &self,
        req: Request<pb::DeleteListenerRequest>,
    ) -> Result<Response<pb::DeleteListenerResponse>, Status> {
        self.delete_listener_inner(req.into_inner()).await.map(Response::new)
    }

    async fn delete_listeners(
        &self,
        req: Request<pb::DeleteListenersRequest>,
    ) -> Result<Response<pb::DeleteListenersResponse>, Status> {
        self.delete_listeners_inner(req.into_inner()).await.map(Response::new)
    }

    type SubscribeStream = SubscribeStream;

    async fn subscribe(&self, req: Request<pb::SubscribeRequest>) -> Result<Response<Self::SubscribeStream>, Status> {
        self.subscribe_inner(req.into_inner()).await.map(Response::new)
    }

    async fn ack(&self, req: Request<pb::AckRequest>) -> Result<Response<pb::AckResponse>, Status> {
        self.ack_inner(req.into_inner()).await.map(Response::new)
    }

    async fn nack(&self, req: Request<pb::NackRequest>) -> Result<Response<pb::NackResponse>, Status> {
        self.nack_inner(req.into_inner()).await.map(Response::new)
    }

    async fn list_dead_letters(
        &self,
        req: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        self.list_dead_letters_inner(req.into_inner()).await.map(Response::new)
    }

    async fn redrive_dead_letters(
        &self,
        req: Request<pb::RedriveDeadLettersRequest>,
    ) -> Result<Response<pb::RedriveDeadLettersResponse>, Status> {
        self.redrive_inner(req.into_inner()).await.map(Response::new)
    }

    async fn get_event(&self, req: Request<pb::GetEventRequest>) -> Result<Response<pb::GetEventResponse>, Status> {
        self.get_event_inner(req.into_inner()).await.map(Response::new)
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.list_events_inner(req.into_inner()).await.map(Response::new)
    }
}
