//! The one place that turns engine errors into gRPC statuses. Invalid input becomes
//! INVALID_ARGUMENT with `google.rpc.BadRequest` field violations; internal errors are logged in
//! full and answered as "internal error".

use std::task::{Context, Poll};

use eventbus_engine::{Error, FieldViolation};
use futures::TryFutureExt;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Returns the status a client sees for an engine or store error.
pub fn to_status(e: Error) -> Status {
    match e {
        Error::InvalidArgument(violations) => invalid(violations),
        Error::NotFound(what) => Status::not_found(format!("{what} not found")),
        Error::AlreadyExists(msg) => Status::already_exists(msg),
        Error::FailedPrecondition(msg) => Status::failed_precondition(msg),
        Error::Unavailable(e) => {
            tracing::warn!(error = %e, "database unavailable");
            Status::unavailable("database unavailable, retry later")
        }
        other => {
            tracing::error!(error = ?other, "internal error");
            Status::internal("internal error")
        }
    }
}

/// Returns INVALID_ARGUMENT naming every violated field.
pub fn invalid(violations: Vec<FieldViolation>) -> Status {
    with_violations(Code::InvalidArgument, violations)
}

/// Returns RESOURCE_EXHAUSTED naming every field over a server limit (attributes, data size).
pub fn over_limit(violations: Vec<FieldViolation>) -> Status {
    with_violations(Code::ResourceExhausted, violations)
}

fn with_violations(code: Code, violations: Vec<FieldViolation>) -> Status {
    let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let mut details = ErrorDetails::new();
    for v in &violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(code, message, details)
}

/// Returns RESOURCE_EXHAUSTED for a limit.
pub fn exhausted(message: impl Into<String>) -> Status {
    Status::resource_exhausted(message)
}

/// Returns UNAVAILABLE telling stream clients to reconnect (shutdown, overload).
pub fn unavailable(message: impl Into<String>) -> Status {
    Status::unavailable(message)
}

/// Wraps a gRPC service so that a request larger than the maximum message size is answered
/// RESOURCE_EXHAUSTED, as the gRPC status code table and our contract say; tonic's decoder
/// answers OUT_OF_RANGE. No handler of this server answers OUT_OF_RANGE itself.
#[derive(Debug, Clone)]
pub struct OversizeExhausted<S>(pub S);

impl<S: NamedService> NamedService for OversizeExhausted<S> {
    const NAME: &'static str = S::NAME;
}

type MapResponse<F, B> = futures::future::MapOk<F, fn(http::Response<B>) -> http::Response<B>>;

impl<S, R, B> Service<R> for OversizeExhausted<S>
where
    S: Service<R, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = MapResponse<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        self.0.call(req).map_ok(oversize_exhausted)
    }
}

fn oversize_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    if let Some(status) = Status::from_header_map(response.headers())
        && status.code() == Code::OutOfRange
    {
        let exhausted = Status::resource_exhausted(status.message().to_owned());
        let _ = exhausted.add_header(response.headers_mut());
    }
    response
}
