//! The one place that names `tonic::Code`: every error a call can end with is an [`ApiError`],
//! turned into a gRPC status here, through the engine's [`ErrorKind`]. Invalid input becomes
//! INVALID_ARGUMENT with `google.rpc.BadRequest` field violations; internal errors are logged here,
//! once, in full, and answered "internal error" and nothing more.
//!
//! [`RequestFaults`] does the same for what tonic answers before a handler runs: bodies that do
//! not decode, and messages over the size limit.
//!
//! Over HTTP ([`HttpError`]) the same error becomes an HTTP status and a JSON body
//! `{"error": {"code", "message", "field_violations"}}` carrying the gRPC code's name and the
//! very message and field violations a gRPC caller gets.

use std::task::{Context, Poll};

use eventbus_engine::{Error, ErrorKind, FieldViolation};
use futures::TryFutureExt;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::request::Violations;

pub use http_error::{HttpError, code_name};

mod http_error;

/// The only message an INTERNAL status carries.
pub const INTERNAL_MESSAGE: &str = "internal error";

/// Why a call failed.
#[derive(Debug)]
pub enum ApiError {
    /// The store or the engine said no, or failed.
    Engine(Error),
    /// The request breaks rules of the contract.
    Invalid(Violations),
    /// A server-wide limit (open streams) is reached.
    Exhausted(String),
    /// The server is shutting down; clients reconnect.
    ShuttingDown,
    /// A fault of the server itself.
    Internal(String),
    /// The call carries no valid token.
    Unauthenticated(&'static str),
    /// The caller's token does not allow the call.
    PermissionDenied(&'static str),
    /// The request body is not a valid message of its method.
    Malformed,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => Self::Invalid(v.into()),
            e => Self::Engine(e),
        }
    }
}

impl From<Violations> for ApiError {
    fn from(v: Violations) -> Self {
        Self::Invalid(v)
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Engine(e) => engine_status(e),
            ApiError::Invalid(v) => violations_status(v),
            ApiError::Exhausted(message) => Status::resource_exhausted(message),
            ApiError::ShuttingDown => Status::unavailable("server shutting down; reconnect"),
            ApiError::Internal(what) => internal(&what),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::PermissionDenied(message) => Status::permission_denied(message),
            ApiError::Malformed => Status::invalid_argument(MALFORMED),
        }
    }
}

fn engine_status(e: Error) -> Status {
    match e.kind() {
        ErrorKind::NotFound => Status::not_found(e.to_string()),
        ErrorKind::AlreadyExists => Status::already_exists(e.to_string()),
        ErrorKind::FailedPrecondition => Status::failed_precondition(e.to_string()),
        ErrorKind::Unavailable => {
            tracing::warn!(error = %e, "database unavailable");
            Status::unavailable("database unavailable, retry later")
        }
        ErrorKind::InvalidArgument => match e {
            Error::InvalidArgument(v) => violations_status(v.into()),
            other => internal(&other),
        },
        ErrorKind::Internal => internal(&e),
    }
}

/// The error of one message of a PublishStream: the code, message and field violations of the
/// status a Publish call would have ended with.
pub fn publish_error(e: ApiError) -> eventbus_client::pb::PublishError {
    let status = Status::from(e);
    let field_violations = status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| eventbus_client::pb::FieldViolation { field: v.field, description: v.description })
                .collect()
        })
        .unwrap_or_default();
    eventbus_client::pb::PublishError {
        code: status.code() as i32,
        message: status.message().to_owned(),
        field_violations,
    }
}

/// Logs an internal error in full and returns the status that says nothing of it.
fn internal(e: &dyn std::fmt::Debug) -> Status {
    tracing::error!(error = ?e, "internal error");
    Status::internal(INTERNAL_MESSAGE)
}

/// INVALID_ARGUMENT naming every invalid field; when none is invalid but some are over a server
/// limit, RESOURCE_EXHAUSTED naming those.
fn violations_status(v: Violations) -> Status {
    if v.invalid.is_empty() && !v.exceeded.is_empty() {
        with_violations(Code::ResourceExhausted, v.exceeded)
    } else {
        with_violations(Code::InvalidArgument, v.invalid)
    }
}

fn with_violations(code: Code, violations: Vec<FieldViolation>) -> Status {
    let message = violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let mut details = ErrorDetails::new();
    for v in &violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(code, message, details)
}

/// Returns the HTTP status that stands for a gRPC code (the mapping of google.rpc.Code), for
/// what the server answers over HTTP.
pub fn http_status(code: Code) -> http::StatusCode {
    use http::StatusCode as H;
    match code {
        Code::Ok => H::OK,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => H::BAD_REQUEST,
        Code::Unauthenticated => H::UNAUTHORIZED,
        Code::PermissionDenied => H::FORBIDDEN,
        Code::NotFound => H::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => H::CONFLICT,
        Code::ResourceExhausted => H::TOO_MANY_REQUESTS,
        Code::Cancelled => H::from_u16(499).unwrap_or(H::BAD_REQUEST),
        Code::Unimplemented => H::NOT_IMPLEMENTED,
        Code::Unavailable => H::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => H::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => H::INTERNAL_SERVER_ERROR,
    }
}

/// The answer to a request body that is not a valid message of its method.
const MALFORMED: &str = "malformed request: the body is not a valid protobuf message of this method";

/// Wraps a gRPC service so that what tonic answers before a handler runs follows the contract:
/// - a request larger than the maximum message size is RESOURCE_EXHAUSTED (tonic's decoder says
///   OUT_OF_RANGE; no handler of this server answers OUT_OF_RANGE itself);
/// - a body that does not decode (truncated, bad wire types, bad compression flag, no message)
///   is INVALID_ARGUMENT with a short message (tonic says INTERNAL with the decoder's text).
///
/// Handlers answer INTERNAL only with [`INTERNAL_MESSAGE`]; any other INTERNAL in the response
/// headers (a trailers-only response, sent before any message) therefore comes from decoding the
/// request.
#[derive(Debug, Clone)]
pub struct RequestFaults<S>(pub S);

impl<S: NamedService> NamedService for RequestFaults<S> {
    const NAME: &'static str = S::NAME;
}

type MapResponse<F, B> = futures::future::MapOk<F, fn(http::Response<B>) -> http::Response<B>>;

impl<S, R, B> Service<R> for RequestFaults<S>
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
        self.0.call(req).map_ok(request_fault_status)
    }
}

fn request_fault_status<B>(mut response: http::Response<B>) -> http::Response<B> {
    let Some(status) = Status::from_header_map(response.headers()) else { return response };
    let Some(replaced) = request_fault(&status) else { return response };
    let headers = response.headers_mut();
    headers.remove("grpc-status-details-bin");
    let _ = replaced.add_header(headers);
    response
}

/// The status that tonic's `status` of reading a request message stands for: a message over the
/// size limit is RESOURCE_EXHAUSTED, one that does not decode INVALID_ARGUMENT without the
/// decoder's text; `None` for any other status (for the stream of a streaming call, a client
/// that went away).
pub fn request_fault(status: &Status) -> Option<Status> {
    match status.code() {
        Code::OutOfRange => Some(Status::resource_exhausted(status.message().to_owned())),
        Code::Internal if status.message() != INTERNAL_MESSAGE => {
            tracing::debug!(error = status.message(), "request body did not decode");
            Some(Status::invalid_argument(MALFORMED))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: Status) -> Status {
        let response = status.into_http::<()>();
        Status::from_header_map(request_fault_status(response).headers()).unwrap()
    }

    #[test]
    fn request_faults_follow_the_contract() {
        let decode = Status::internal("failed to decode Protobuf message: invalid wire type value: 6");
        let cases = [
            (decode, Code::InvalidArgument, MALFORMED),
            (Status::internal("Unexpected EOF decoding stream."), Code::InvalidArgument, MALFORMED),
            (Status::internal("Missing request message."), Code::InvalidArgument, MALFORMED),
            (Status::out_of_range("message too large"), Code::ResourceExhausted, "message too large"),
            (Status::internal(INTERNAL_MESSAGE), Code::Internal, INTERNAL_MESSAGE),
            (Status::not_found("listener x not found"), Code::NotFound, "listener x not found"),
        ];
        for (status, code, message) in cases {
            let got = answered(status.clone());
            assert_eq!((got.code(), got.message()), (code, message), "{status:?}");
        }
    }

    #[test]
    fn engine_errors_map_by_kind_and_internals_are_masked() {
        let cases = [
            (Error::NotFound("listener x".into()), Code::NotFound, "listener x not found"),
            (Error::AlreadyExists("taken".into()), Code::AlreadyExists, "taken"),
            (Error::FailedPrecondition("acked".into()), Code::FailedPrecondition, "acked"),
            (Error::Internal("secret detail".into()), Code::Internal, INTERNAL_MESSAGE),
            (Error::invalid("page_token", "bad"), Code::InvalidArgument, "page_token: bad"),
        ];
        for (e, code, message) in cases {
            let status = Status::from(ApiError::from(e));
            assert_eq!((status.code(), status.message()), (code, message));
        }
        let status = Status::from(ApiError::Internal("consumer gone".into()));
        assert_eq!((status.code(), status.message()), (Code::Internal, INTERNAL_MESSAGE));
        assert!(status.details().is_empty());
    }

    #[test]
    fn invalid_fields_win_over_exceeded_ones() {
        let mut v = Violations::exceeded("events[0].data", "too big");
        let status = Status::from(ApiError::from(v.clone()));
        assert_eq!(status.code(), Code::ResourceExhausted);
        v.extend(Violations::invalid("events[1].id", "is required"));
        let status = Status::from(ApiError::from(v));
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "events[1].id: is required"));
    }
}
