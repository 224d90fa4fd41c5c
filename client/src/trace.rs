//! W3C Trace Context in call metadata, without OpenTelemetry.
//!
//! The server continues the trace named by the `traceparent` and `tracestate` metadata of each
//! call, and records it with published events. This module puts those two keys on requests in
//! three ways:
//!
//! * per request: [`WithTrace::with_trace`] on a `tonic::Request`, which fails on values that
//!   cannot be metadata;
//! * per task: [`scope`] runs a future with a [`TraceContext`] in a task-local, which the
//!   [`Client`](crate::Client) methods and [`TraceInterceptor::task_local`] read;
//! * per closure: [`Client::with_trace_source`](crate::Client::with_trace_source) and
//!   [`TraceInterceptor::new`] call a function for each request, for example one that formats
//!   the current OpenTelemetry span context.
//!
//! Hazards: a task-local does not cross `tokio::spawn`, so a spawned task must enter its own
//! [`scope`]. The second and third ways silently skip a context whose values are not valid
//! metadata (tracing must not fail a call). Neither checks the W3C syntax of the values; the
//! server ignores a malformed `traceparent`.

use std::{fmt, future::Future, sync::Arc};

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::{Error, pb};

/// Metadata key of the W3C `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";

/// Metadata key of the W3C `tracestate` header.
pub const TRACESTATE: &str = "tracestate";

tokio::task_local! {
    static CURRENT: TraceContext;
}

/// A W3C Trace Context: a `traceparent` and the `tracestate` that goes with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceContext {
    /// The `traceparent` value, for example
    /// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    pub traceparent: String,
    /// The `tracestate` value; empty when there is none.
    pub tracestate: String,
}

impl TraceContext {
    /// Creates a trace context; an empty `tracestate` means none.
    pub fn new(traceparent: impl Into<String>, tracestate: impl Into<String>) -> Self {
        Self { traceparent: traceparent.into(), tracestate: tracestate.into() }
    }

    /// Returns the trace context a notification carries for its runner to continue, or `None`
    /// when its trigger carried none.
    pub fn from_notification(notification: &pb::Notification) -> Option<Self> {
        (!notification.traceparent.is_empty())
            .then(|| Self::new(notification.traceparent.clone(), notification.tracestate.clone()))
    }

    /// Reads `traceparent` and `tracestate` from metadata; returns `None` without a
    /// `traceparent` or when a value is not visible ASCII.
    pub fn extract(metadata: &MetadataMap) -> Option<Self> {
        let traceparent = metadata.get(TRACEPARENT)?.to_str().ok()?;
        let tracestate = match metadata.get(TRACESTATE) {
            Some(value) => value.to_str().ok()?,
            None => "",
        };
        Some(Self::new(traceparent, tracestate))
    }

    /// Writes `traceparent` and, when non-empty, `tracestate` into metadata, replacing values
    /// already there.
    ///
    /// Returns [`Error::InvalidArgument`] and leaves the metadata unchanged when `traceparent` is
    /// empty or a value is not valid metadata (visible ASCII).
    pub fn inject(&self, metadata: &mut MetadataMap) -> Result<(), Error> {
        if self.traceparent.is_empty() {
            return Err(Error::InvalidArgument { what: "traceparent", reason: "empty".to_owned() });
        }
        let traceparent = ascii_value(TRACEPARENT, &self.traceparent)?;
        let tracestate =
            if self.tracestate.is_empty() { None } else { Some(ascii_value(TRACESTATE, &self.tracestate)?) };
        metadata.insert(TRACEPARENT, traceparent);
        match tracestate {
            Some(value) => {
                metadata.insert(TRACESTATE, value);
            }
            None => {
                metadata.remove(TRACESTATE);
            }
        }
        Ok(())
    }
}

fn ascii_value(what: &'static str, value: &str) -> Result<MetadataValue<tonic::metadata::Ascii>, Error> {
    MetadataValue::try_from(value)
        .map_err(|_| Error::InvalidArgument { what, reason: "not a valid metadata value".to_owned() })
}

/// Runs `future` with `context` as the current trace context of the task.
///
/// [`Client`](crate::Client) calls made inside the future (and interceptors made with
/// [`TraceInterceptor::task_local`]) send it. Tasks spawned inside do not inherit it.
pub async fn scope<F: Future>(context: TraceContext, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// Returns the trace context set by the enclosing [`scope`], if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Adds trace context to a request.
pub trait WithTrace: Sized {
    /// Returns the request with `traceparent` and, when non-empty, `tracestate` metadata.
    ///
    /// Returns [`Error::InvalidArgument`] when `traceparent` is empty or a value is not visible
    /// ASCII.
    fn with_trace(self, traceparent: &str, tracestate: &str) -> Result<Self, Error>;
}

impl<T> WithTrace for tonic::Request<T> {
    fn with_trace(mut self, traceparent: &str, tracestate: &str) -> Result<Self, Error> {
        TraceContext::new(traceparent, tracestate).inject(self.metadata_mut())?;
        Ok(self)
    }
}

type SourceFn = dyn Fn() -> Option<TraceContext> + Send + Sync;

/// Where a client finds the trace context of each call: the task-local by default.
#[derive(Clone)]
pub(crate) struct TraceSource(Option<Arc<SourceFn>>);

impl TraceSource {
    /// Returns a source reading the task-local set by [`scope`].
    pub(crate) fn task_local() -> Self {
        Self(None)
    }

    /// Returns a source calling `source` for each call.
    pub(crate) fn from_fn<F>(source: F) -> Self
    where
        F: Fn() -> Option<TraceContext> + Send + Sync + 'static,
    {
        Self(Some(Arc::new(source)))
    }

    /// Returns the trace context for a call about to be made.
    pub(crate) fn get(&self) -> Option<TraceContext> {
        match &self.0 {
            Some(source) => source(),
            None => current(),
        }
    }

    /// Puts the current trace context, if any and valid, on a request's metadata.
    pub(crate) fn apply(&self, metadata: &mut MetadataMap) {
        if let Some(context) = self.get() {
            // Tracing must not fail the call: an invalid context is skipped.
            let _ = context.inject(metadata);
        }
    }
}

impl fmt::Debug for TraceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "TraceSource::Fn" } else { "TraceSource::TaskLocal" })
    }
}

/// A tonic interceptor that adds the current trace context to every call, for use with
/// [`EventBusServiceClient::with_interceptor`](crate::pb::event_bus_service_client::EventBusServiceClient::with_interceptor).
#[derive(Debug, Clone)]
pub struct TraceInterceptor {
    source: TraceSource,
}

impl TraceInterceptor {
    /// Creates an interceptor that sends the trace context set by [`scope`].
    pub fn task_local() -> Self {
        Self { source: TraceSource::task_local() }
    }

    /// Creates an interceptor that calls `source` for each request and sends what it returns.
    pub fn new<F>(source: F) -> Self
    where
        F: Fn() -> Option<TraceContext> + Send + Sync + 'static,
    {
        Self { source: TraceSource::from_fn(source) }
    }
}

impl tonic::service::Interceptor for TraceInterceptor {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.source.apply(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn with_trace_sets_both_keys() {
        let request = tonic::Request::new(()).with_trace(TP, "vendor=1").unwrap();
        assert_eq!(TraceContext::extract(request.metadata()), Some(TraceContext::new(TP, "vendor=1")));
    }

    #[test]
    fn empty_tracestate_is_not_sent() {
        let request = tonic::Request::new(()).with_trace(TP, "").unwrap();
        assert_eq!(request.metadata().get(TRACESTATE), None);
        assert_eq!(request.metadata().get(TRACEPARENT).unwrap(), TP);
    }

    #[test]
    fn invalid_values_are_rejected_without_partial_writes() {
        let error = tonic::Request::new(()).with_trace("", "").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let mut metadata = MetadataMap::new();
        let error = TraceContext::new(TP, "bad\nstate").inject(&mut metadata).unwrap_err();
        assert!(matches!(error, Error::InvalidArgument { what: TRACESTATE, .. }), "{error:?}");
        assert!(metadata.is_empty());
    }

    #[tokio::test]
    async fn interceptor_reads_task_local_scope() {
        let mut interceptor = TraceInterceptor::task_local();
        let outside = interceptor.call(tonic::Request::new(())).unwrap();
        assert!(outside.metadata().is_empty());
        let inside =
            scope(TraceContext::new(TP, ""), async move { interceptor.call(tonic::Request::new(())) }).await.unwrap();
        assert_eq!(inside.metadata().get(TRACEPARENT).unwrap(), TP);
    }

    #[test]
    fn interceptor_skips_invalid_context() {
        let mut interceptor = TraceInterceptor::new(|| Some(TraceContext::new("not\u{7f}ascii", "")));
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        assert!(request.metadata().is_empty());
    }

    #[test]
    fn notification_context() {
        let mut notification = pb::Notification::default();
        assert_eq!(TraceContext::from_notification(&notification), None);
        notification.traceparent = TP.to_owned();
        assert_eq!(TraceContext::from_notification(&notification), Some(TraceContext::new(TP, "")));
    }
}
