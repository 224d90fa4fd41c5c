//! The crate's error type.

use tonic::Code;

/// Error of every fallible operation of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server, or the gRPC stack on the way, answered a call with a non-OK status.
    #[error("rpc failed with {code:?}: {message}", code = .0.code(), message = .0.message())]
    Status(Box<tonic::Status>),

    /// The channel could not be set up: the endpoint is not a valid URI or the connection
    /// failed.
    #[error("transport error")]
    Transport(#[from] tonic::transport::Error),

    /// Event data could not be serialized as JSON.
    #[error("serializing event data as json")]
    Json(#[source] serde_json::Error),

    /// A value given to the client cannot be sent as it is.
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// What was invalid, for example "traceparent".
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

impl Error {
    /// Returns the gRPC status code of the error.
    ///
    /// A transport error counts as `UNAVAILABLE`; errors raised in the client before anything
    /// was sent count as `INVALID_ARGUMENT`.
    pub fn code(&self) -> Code {
        match self {
            Error::Status(status) => status.code(),
            Error::Transport(_) => Code::Unavailable,
            Error::Json(_) | Error::InvalidArgument { .. } => Code::InvalidArgument,
        }
    }

    /// Returns the status the call ended with, if the error is a status.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status(status) => Some(status),
            _ => None,
        }
    }

    /// Returns whether retrying the same call later can succeed.
    ///
    /// This is the rule [`Subscription`](crate::Subscription) reconnects by. A status is
    /// permanent when its code is one of `INVALID_ARGUMENT`, `NOT_FOUND`, `ALREADY_EXISTS`,
    /// `FAILED_PRECONDITION`, `OUT_OF_RANGE`, `PERMISSION_DENIED`, `UNAUTHENTICATED` or
    /// `UNIMPLEMENTED`; every other status is retryable, because a broken connection reaches the
    /// client as `UNAVAILABLE`, `UNKNOWN`, `INTERNAL` or `CANCELLED` depending on where it broke.
    /// Transport errors are retryable; errors raised in the client are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Status(status) => is_retryable_code(status.code()),
            Error::Transport(_) => true,
            Error::Json(_) | Error::InvalidArgument { .. } => false,
        }
    }
}

/// Returns whether a status with this code is worth retrying (see [`Error::is_retryable`]).
pub(crate) fn is_retryable_code(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::Unimplemented
    )
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        Error::Status(Box::new(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_codes() {
        let cases = [
            (Code::Unavailable, true),
            (Code::Unknown, true),
            (Code::Internal, true),
            (Code::Cancelled, true),
            (Code::DeadlineExceeded, true),
            (Code::ResourceExhausted, true),
            (Code::Aborted, true),
            (Code::InvalidArgument, false),
            (Code::NotFound, false),
            (Code::AlreadyExists, false),
            (Code::FailedPrecondition, false),
            (Code::PermissionDenied, false),
            (Code::Unauthenticated, false),
            (Code::Unimplemented, false),
        ];
        for (code, retryable) in cases {
            let error = Error::from(tonic::Status::new(code, "x"));
            assert_eq!(error.is_retryable(), retryable, "{code:?}");
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn status_display_names_code_and_message() {
        let error = Error::from(tonic::Status::not_found("no listener"));
        assert_eq!(error.to_string(), "rpc failed with NotFound: no listener");
        assert_eq!(error.status().map(tonic::Status::message), Some("no listener"));
    }
}
