//! `POST /v1/namespaces/{namespace}/events`: CloudEvents over HTTP (binary, structured and
//! batched mode of the HTTP Protocol Binding 1.0), published exactly as a gRPC Publish.
//!
//! In order: the token (when tokens are on: the publisher role on the namespace, as Publish;
//! 401 with `WWW-Authenticate: Bearer`, 403), the mode ([`cloudevents::mode`]; 415), the body (at
//! most the maximum gRPC message size; 413), the conversion ([`cloudevents`]), then
//! [`EventBus::publish_inner`], the function behind the gRPC handler: the same request layer
//! (field violations with the same paths and messages; 400), all-or-nothing batches,
//! deduplication, limits (413 for data over the limit), metrics, and 503 while the database
//! cannot be reached. `traceparent` / `tracestate` continue the caller's trace.
//!
//! Success is 200 `{"events": [{"sequence": 7, "duplicate": false}, ...]}`, one entry per event
//! in the order sent; errors are [`HttpError`]s.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use eventbus_client::pb;
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use tracing::Instrument;

use super::cloudevents::{self, Converted, Mode};
use crate::EventBus;
use crate::request::{FromProto, Publish, Violations};
use crate::security::auth::Auth;
use crate::service::trace_of_headers;
use crate::status::{ApiError, HttpError};
use crate::telemetry::trace;

/// The gRPC method whose permission (and everything else) the ingress shares.
const PUBLISH: &str = "/eventbus.v1.EventBusService/Publish";

/// What the route serves from.
#[derive(Debug, Clone)]
struct Ingress {
    bus: EventBus,
    auth: Option<Auth>,
}

/// Returns the route of the ingress.
pub(crate) fn router(bus: EventBus, auth: Option<Auth>) -> Router {
    Router::new()
        .route("/v1/namespaces/{namespace}/events", axum::routing::post(publish))
        .with_state(Ingress { bus, auth })
}

async fn publish(State(ingress): State<Ingress>, Path(namespace): Path<String>, request: Request) -> Response {
    match ingress.publish(namespace, request).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

impl Ingress {
    async fn publish(&self, namespace: String, request: Request) -> Result<Value, HttpError> {
        let (parts, body) = request.into_parts();
        let principal = match &self.auth {
            Some(auth) => Some(auth.authorize(&parts.headers, PUBLISH, &namespace).await?),
            None => None,
        };
        let mode = cloudevents::mode(&parts.headers).map_err(HttpError::unsupported_media_type)?;
        let body = self.read(body).await?;
        let request = self.convert(namespace, mode, &parts, &body)?;
        let traces = self.bus.config.traces;
        let span = if traces { trace::http_publish_span(&parts.headers) } else { tracing::Span::none() };
        if let Some(principal) = principal.filter(|_| traces) {
            trace::annotate_principal(&span, &principal.name);
        }
        let published = self.bus.publish_inner(request, trace_of_headers(&parts.headers)).instrument(span).await?;
        let events: Vec<Value> =
            published.results.iter().map(|r| json!({ "sequence": r.sequence, "duplicate": r.duplicate })).collect();
        Ok(json!({ "events": events }))
    }

    /// Reads the body, at most the maximum message size.
    async fn read(&self, body: Body) -> Result<axum::body::Bytes, HttpError> {
        let limit = self.bus.config.limits.max_message_bytes;
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => {
                Err(HttpError::too_large(format!("the request body is over {limit} bytes, the maximum message size")))
            }
            Err(e) => Err(HttpError::bad_request(format!("reading the request body failed: {e}"))),
        }
    }

    /// Converts the request into a Publish request. What does not convert is answered with
    /// the request layer's violations of the rest, so that one answer names every field.
    fn convert(
        &self,
        namespace: String,
        mode: Mode,
        parts: &Parts,
        body: &[u8],
    ) -> Result<pb::PublishRequest, HttpError> {
        let converted: Vec<Converted> = match mode {
            Mode::Binary => vec![cloudevents::binary(&parts.headers, body)],
            Mode::Structured => vec![cloudevents::structured(body).map_err(ApiError::from)?],
            Mode::Batched => cloudevents::batched(body).map_err(ApiError::from)?,
        };
        let mut unconverted = Violations::default();
        let mut events = Vec::with_capacity(converted.len());
        for (i, (event, violations)) in converted.into_iter().enumerate() {
            unconverted.extend(violations.prefixed(&format!("events[{i}]")));
            events.push(event);
        }
        let request = pb::PublishRequest { namespace, events };
        if unconverted == Violations::default() {
            return Ok(request);
        }
        // Refused like a Publish the request layer refuses, and counted the same.
        self.bus.metrics.events_rejected.inc_by(request.events.len() as u64);
        let mut all = Publish::from_proto(request, &self.bus.config.limits).err().unwrap_or_default();
        let fields: Vec<String> = unconverted.fields().into_iter().map(str::to_owned).collect();
        all.invalid.retain(|v| !fields.contains(&v.field));
        all.exceeded.retain(|v| !fields.contains(&v.field));
        all.extend(unconverted);
        Err(ApiError::from(all).into())
    }
}
