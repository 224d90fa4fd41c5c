package eventbus

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestIsRetryable(t *testing.T) {
	cases := []struct {
		code codes.Code
		want bool
	}{
		{codes.Unavailable, true},
		{codes.Unknown, true},
		{codes.Internal, true},
		{codes.Canceled, true},
		{codes.DeadlineExceeded, true},
		{codes.ResourceExhausted, true},
		{codes.Aborted, true},
		{codes.DataLoss, true},
		{codes.InvalidArgument, false},
		{codes.NotFound, false},
		{codes.AlreadyExists, false},
		{codes.FailedPrecondition, false},
		{codes.OutOfRange, false},
		{codes.PermissionDenied, false},
		{codes.Unauthenticated, false},
		{codes.Unimplemented, false},
	}
	for _, tc := range cases {
		err := status.Error(tc.code, "x")
		if got := IsRetryable(err); got != tc.want {
			t.Errorf("IsRetryable(%s) = %v, want %v", tc.code, got, tc.want)
		}
		wrapped := fmt.Errorf("context: %w", err)
		if got := IsRetryable(wrapped); got != tc.want {
			t.Errorf("IsRetryable(wrapped %s) = %v, want %v", tc.code, got, tc.want)
		}
	}
	if IsRetryable(nil) {
		t.Error("IsRetryable(nil) = true, want false")
	}
	for _, err := range []error{io.ErrUnexpectedEOF, errors.New("connection reset"), errStreamEnded} {
		if !IsRetryable(err) {
			t.Errorf("IsRetryable(%v) = false, want true for an error without a status", err)
		}
	}
}
