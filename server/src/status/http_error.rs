//! Errors answered over HTTP: the status code, and the JSON body of the gRPC status the same
//! error would be over gRPC (code name, message, field violations).

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use super::ApiError;

/// An error answered over HTTP. The body is
/// `{"error": {"code": "INVALID_ARGUMENT", "message": "...", "field_violations": [{"field": "events[0].source", "description": "is required"}]}}`;
/// a 401 also carries `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    /// (field path, description), as in `google.rpc.BadRequest`.
    pub field_violations: Vec<(String, String)>,
}

impl HttpError {
    /// 400 without field violations: a request that cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::InvalidArgument, message)
    }

    /// 413: the request body is over the limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted, message)
    }

    /// 415: the content type is not one this route reads.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument, message)
    }

    fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field_violations: Vec::new() }
    }

    /// Returns the JSON body.
    pub fn body(&self) -> serde_json::Value {
        let violations: Vec<_> =
            self.field_violations.iter().map(|(f, d)| json!({ "field": f, "description": d })).collect();
        json!({ "error": { "code": code_name(self.code), "message": self.message, "field_violations": violations } })
    }
}

impl From<ApiError> for HttpError {
    /// Goes through the gRPC status, so that both protocols say the same (and internal errors
    /// are logged and masked once, there).
    fn from(e: ApiError) -> Self {
        let status = Status::from(e);
        let field_violations = status
            .get_details_bad_request()
            .map(|b| b.field_violations.into_iter().map(|v| (v.field, v.description)).collect())
            .unwrap_or_default();
        Self {
            status: http_status(status.code()),
            code: status.code(),
            message: status.message().to_owned(),
            field_violations,
        }
    }
}

/// The HTTP status of a gRPC code (as Google's HTTP mapping, except that RESOURCE_EXHAUSTED, a
/// request over a limit here, is 413).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Returns the name of a gRPC code as the protocol spells it: `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> String {
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use eventbus_engine::Error;

    use super::*;
    use crate::request::Violations;

    #[test]
    fn errors_keep_their_grpc_code_message_and_fields() {
        let mut exceeded = Violations::exceeded("events[0].data", "at most 10 bytes of data");
        let cases = [
            (ApiError::from(Violations::invalid("events[0].source", "is required")), 400, "INVALID_ARGUMENT"),
            (ApiError::from(exceeded.clone()), 413, "RESOURCE_EXHAUSTED"),
            (ApiError::Unauthenticated("invalid token"), 401, "UNAUTHENTICATED"),
            (ApiError::PermissionDenied("no"), 403, "PERMISSION_DENIED"),
            (ApiError::Engine(Error::Unavailable("gone".into())), 503, "UNAVAILABLE"),
            (ApiError::Internal("secret".into()), 500, "INTERNAL"),
        ];
        for (e, status, code) in cases {
            let what = format!("{e:?}");
            let answer = HttpError::from(e);
            assert_eq!((answer.status.as_u16(), code_name(answer.code).as_str()), (status, code), "{what}");
        }
        exceeded.extend(Violations::invalid("events[1].id", "is required"));
        let answer = HttpError::from(ApiError::from(exceeded));
        let expected = json!({"error": {"code": "INVALID_ARGUMENT", "message": "events[1].id: is required",
            "field_violations": [{"field": "events[1].id", "description": "is required"}]}});
        assert_eq!(answer.body(), expected);
        let internal = HttpError::from(ApiError::Internal("secret".into()));
        assert_eq!(internal.message, super::super::INTERNAL_MESSAGE);
    }

    #[test]
    fn unauthenticated_asks_for_a_bearer_token() {
        let response = HttpError::from(ApiError::Unauthenticated("invalid token")).into_response();
        assert_eq!(response.headers().get(header::WWW_AUTHENTICATE).unwrap(), "Bearer");
        let response = HttpError::from(ApiError::PermissionDenied("no")).into_response();
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }
}
