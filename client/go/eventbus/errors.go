package eventbus

import (
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errStreamEnded is what a Subscribe stream that ended without an error counts as: the server
// never ends one on its own accord, so it is a break to reconnect after.
var errStreamEnded = errors.New("eventbus: subscribe stream ended")

// IsRetryable reports whether an RPC error is worth retrying with backoff: errors without a
// gRPC status (transport failures) and every status except INVALID_ARGUMENT, NOT_FOUND,
// ALREADY_EXISTS, FAILED_PRECONDITION, OUT_OF_RANGE, PERMISSION_DENIED, UNAUTHENTICATED and
// UNIMPLEMENTED, which a retry of the same request would meet again. Returns false for nil.
func IsRetryable(err error) bool {
	if err == nil {
		return false
	}
	st, ok := status.FromError(err)
	if !ok {
		return true
	}
	switch st.Code() {
	case codes.OK,
		codes.InvalidArgument,
		codes.NotFound,
		codes.AlreadyExists,
		codes.FailedPrecondition,
		codes.OutOfRange,
		codes.PermissionDenied,
		codes.Unauthenticated,
		codes.Unimplemented:
		return false
	default:
		return true
	}
}
