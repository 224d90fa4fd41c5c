//! The spans of eventbus and the W3C context conversions they need.
//!
//! - [`RpcSpans`]: a tower layer giving every RPC a server span, child of the context in the
//!   call's `traceparent` / `tracestate` metadata. For Publish it is the `publish` span; a
//!   request to the HTTP ingress gets the same ([`http_publish_span`]).
//! - [`trigger_span`]: the span of a fired listener, reported by the store after commit. Its span
//!   id was fixed by the store (derived from the fire id) and is already in the notification;
//!   [`SpanIds`] makes the SDK use it.
//! - [`deliver_span`]: a notification going out on a Subscribe stream.
//!
//! Hazard: [`SpanIds`] hands out a preset span id through a thread-local, so a trigger span must
//! be started on the thread that set it, with no other span started in between (as
//! [`trigger_span`] does).

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::SystemTime;

use eventbus_engine::TraceContext;
use eventbus_engine::store::{Fired, trigger_span_id};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Link, SpanContext, SpanId, SpanKind, TraceContextExt, TraceId, Tracer};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The messaging system name on every span.
const SYSTEM: &str = "eventbus";

/// Returns the OpenTelemetry context a W3C trace context names (an empty one when invalid).
pub fn context_of(trace: &TraceContext) -> Context {
    let mut carrier = HashMap::with_capacity(2);
    carrier.insert("traceparent".to_owned(), trace.traceparent.clone());
    if !trace.tracestate.is_empty() {
        carrier.insert("tracestate".to_owned(), trace.tracestate.clone());
    }
    TraceContextPropagator::new().extract(&carrier)
}

/// Returns the W3C context of a span (empty when traces are off or the span is disabled).
pub fn of_span(span: &Span) -> TraceContext {
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(2);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    TraceContext {
        traceparent: carrier.remove("traceparent").unwrap_or_default(),
        tracestate: carrier.remove("tracestate").unwrap_or_default(),
    }
}

fn span_context_of(trace: &TraceContext) -> Option<SpanContext> {
    let cx = context_of(trace);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Adds the messaging attributes of the `publish` span (the RPC span of a Publish call) and
/// links it to the contexts events carried themselves (CloudEvents distributed tracing
/// extension) when those differ from the call's.
pub fn annotate_publish(span: &Span, namespace: &str, events: usize, event_contexts: &[TraceContext]) {
    span.set_attribute("messaging.destination.name", namespace.to_owned());
    span.set_attribute("messaging.batch.message_count", events as i64);
    let own = span.context().span().span_context().clone();
    for trace in event_contexts {
        if let Some(sc) = span_context_of(trace)
            && sc.trace_id() != own.trace_id()
        {
            span.add_link(sc);
        }
    }
}

/// Records who made a call on its span: `enduser.id`, the name of the caller's token.
pub fn annotate_principal(span: &Span, principal: &str) {
    span.set_attribute("enduser.id", principal.to_owned());
}

/// Records the span of a fired listener: parent `fired.cause` (the completing event's `publish`
/// span, or for a TIMEOUT the registering call's), links to the other contributing events, and
/// the span id the notification already carries.
pub fn trigger_span(fired: &Fired) {
    let Some(parent) = span_context_of(&fired.cause) else { return };
    let tracer = opentelemetry::global::tracer("eventbus");
    let links = fired.links.iter().filter_map(span_context_of).map(Link::with_context).collect();
    let at = SystemTime::from(fired.at);
    let builder = tracer
        .span_builder("trigger")
        .with_kind(SpanKind::Producer)
        .with_start_time(at)
        .with_links(links)
        .with_attributes([
            KeyValue::new("messaging.system", SYSTEM),
            KeyValue::new("messaging.operation.type", "create"),
            KeyValue::new("messaging.operation.name", "trigger"),
            KeyValue::new("messaging.destination.name", fired.namespace.clone()),
            KeyValue::new("messaging.message.id", fired.fire_id.to_string()),
            KeyValue::new("eventbus.notification.kind", fired.kind.as_str()),
            KeyValue::new("eventbus.notification.sequence", fired.sequence as i64),
            KeyValue::new("eventbus.listener.id", fired.listener_id.to_string()),
            KeyValue::new("eventbus.target", fired.target.clone()),
        ]);
    let parent = Context::new().with_remote_span_context(parent);
    let id = SpanId::from_bytes(trigger_span_id(fired.fire_id));
    let mut span = SpanIds::preset(id, || builder.start_with_context(&tracer, &parent));
    opentelemetry::trace::Span::end_with_timestamp(&mut span, SystemTime::now().max(at));
}

/// Starts the span of a notification going out on a stream, child of the notification's
/// context (the trigger span). The runner continues the span's context.
pub fn deliver_span(namespace: &str, group: &str, fire_id: &str, attempt: u32, trace: &TraceContext) -> Span {
    let span = tracing::info_span!(
        "deliver",
        otel.kind = "producer",
        messaging.system = SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "deliver",
        messaging.destination.name = namespace,
        messaging.consumer.group.name = group,
        messaging.message.id = fire_id,
        eventbus.attempt = attempt,
    );
    let _ = span.set_parent(context_of(trace));
    span
}

thread_local! {
    static PRESET_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random trace and span ids, except that a span started inside [`SpanIds::preset`] gets the
/// preset id.
#[derive(Debug, Default)]
pub struct SpanIds(RandomIdGenerator);

impl SpanIds {
    /// Runs `start` with the next span id on this thread preset to `id`.
    pub fn preset<T>(id: SpanId, start: impl FnOnce() -> T) -> T {
        PRESET_SPAN_ID.set(Some(id));
        let out = start();
        PRESET_SPAN_ID.set(None);
        out
    }
}

impl IdGenerator for SpanIds {
    fn new_trace_id(&self) -> TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        PRESET_SPAN_ID.take().unwrap_or_else(|| self.0.new_span_id())
    }
}

/// A tower layer that runs every RPC in a server span whose parent is the call's W3C context.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcSpans;

impl<S> tower::Layer<S> for RpcSpans {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan { inner }
    }
}

/// The service [`RpcSpans`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct RpcSpan<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for RpcSpan<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let span = rpc_span(&req);
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(async move {
            let response = tracing::Instrument::instrument(future, span.clone()).await;
            if let Ok(r) = &response {
                // Errors answered before any message come back as headers (trailers-only).
                let code = r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
                span.set_attribute("rpc.grpc.status_code", code.parse::<i64>().unwrap_or(2));
                if code != "0" {
                    span.set_status(opentelemetry::trace::Status::error(format!("grpc-status {code}")));
                }
            }
            response
        })
    }
}

fn rpc_span<B>(req: &http::Request<B>) -> Span {
    let path = req.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = if service == "eventbus.v1.EventBusService" && method == "Publish" {
        tracing::info_span!(
            "publish",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            messaging.system = SYSTEM,
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
        )
    } else {
        tracing::info_span!(
            "rpc",
            otel.name = path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method
        )
    };
    continue_caller(&span, req.headers());
    span
}

/// Returns the `publish` span of one message of a PublishStream call, child of the call's W3C
/// context (`call`, from its metadata): a span per message, as a Publish call has.
pub fn stream_publish_span(call: &TraceContext) -> Span {
    let span = tracing::info_span!(
        "publish",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "eventbus.v1.EventBusService",
        rpc.method = "PublishStream",
        messaging.system = SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
    );
    continue_context(&span, call);
    span
}

/// Returns the `publish` span of a request to the HTTP ingress, child of the request's W3C
/// context (its `traceparent` and `tracestate` headers).
pub fn http_publish_span(headers: &http::HeaderMap) -> Span {
    let span = tracing::info_span!(
        "publish",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/v1/namespaces/{namespace}/events",
        messaging.system = SYSTEM,
        messaging.operation.type = "send",
        messaging.operation.name = "publish",
    );
    continue_caller(&span, headers);
    span
}

/// Makes `span` a child of the context in the `traceparent` / `tracestate` headers, if any.
fn continue_caller(span: &Span, headers: &http::HeaderMap) {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    continue_context(span, &TraceContext { traceparent: get("traceparent"), tracestate: get("tracestate") });
}

/// Makes `span` a child of `caller`, if it is a context.
fn continue_context(span: &Span, caller: &TraceContext) {
    if !caller.is_empty() {
        let _ = span.set_parent(context_of(caller));
    }
}
