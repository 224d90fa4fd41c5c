package eventbus

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

type publishServer = grpc.BidiStreamingServer[eventbusv1.PublishStreamRequest, eventbusv1.PublishStreamResponse]

// openPublisher dials addr and opens a Publisher, closed when the test ends.
func openPublisher(t *testing.T, addr string) *Publisher {
	t.Helper()
	p, err := dialFake(t, addr).Publisher(context.Background())
	if err != nil {
		t.Fatalf("Publisher: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func published(id uint64, sequences ...uint64) *eventbusv1.PublishStreamResponse {
	results := make([]*eventbusv1.PublishResult, len(sequences))
	for i, s := range sequences {
		results[i] = &eventbusv1.PublishResult{Sequence: s}
	}
	return &eventbusv1.PublishStreamResponse{Id: id, Outcome: &eventbusv1.PublishStreamResponse_Published{
		Published: &eventbusv1.PublishResponse{Results: results},
	}}
}

func failed(e *eventbusv1.PublishError) *eventbusv1.PublishStreamResponse {
	return &eventbusv1.PublishStreamResponse{Outcome: &eventbusv1.PublishStreamResponse_Error{Error: e}}
}

// untilHalfClose ends a session once the client half-closes the stream.
func untilHalfClose(stream publishServer) error {
	req, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	return status.Errorf(codes.Internal, "fake: message %d after the last scripted one", req.GetId())
}

// answering answers the stream's messages one by one with answers (their ids set to the
// message's), then waits for the half-close.
func answering(answers ...*eventbusv1.PublishStreamResponse) publishSession {
	return func(stream publishServer) error {
		for _, answer := range answers {
			req, err := stream.Recv()
			if err != nil {
				return err
			}
			answer.Id = req.GetId()
			if err := stream.Send(answer); err != nil {
				return err
			}
		}
		return untilHalfClose(stream)
	}
}

func shortContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestPublisherMatchesAnswersToPublishesByID(t *testing.T) {
	fs := startFake(t, "")
	fs.bus.publishSessions <- func(stream publishServer) error {
		// Answer the three messages in reverse order: each Publish must get the answer to its
		// own message, whatever the position.
		var reqs []*eventbusv1.PublishStreamRequest
		for range 3 {
			req, err := stream.Recv()
			if err != nil {
				return err
			}
			reqs = append(reqs, req)
		}
		sequenceOf := map[string]uint64{"a": 1, "b": 2, "c": 3}
		for _, req := range slices.Backward(reqs) {
			if err := stream.Send(published(req.GetId(), sequenceOf[req.GetPublish().GetNamespace()])); err != nil {
				return err
			}
		}
		return untilHalfClose(stream)
	}
	p := openPublisher(t, fs.addr)
	ctx := shortContext(t)

	namespaces := []string{"a", "b", "c"}
	got := make([][]uint64, len(namespaces))
	var wg sync.WaitGroup
	for i, ns := range namespaces {
		wg.Go(func() {
			results, err := p.Publish(ctx, ns, NewEvent("/s", "t").Build())
			if err != nil {
				t.Errorf("Publish to %s: %v", ns, err)
				return
			}
			for _, r := range results {
				got[i] = append(got[i], r.GetSequence())
			}
		})
	}
	wg.Wait()
	if want := [][]uint64{{1}, {2}, {3}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("sequences per namespace a, b, c: %v, want %v", got, want)
	}
}

func TestPublisherMessageErrorsFailOnlyTheirPublish(t *testing.T) {
	fs := startFake(t, "")
	violation := &eventbusv1.FieldViolation{Field: "events[0].source", Description: "must not be empty"}
	fs.bus.publishSessions <- answering(
		failed(&eventbusv1.PublishError{
			Code:            int32(codes.InvalidArgument),
			Message:         "events[0].source: must not be empty",
			FieldViolations: []*eventbusv1.FieldViolation{violation},
		}),
		failed(&eventbusv1.PublishError{Code: int32(codes.Unavailable), Message: "database unavailable"}),
		failed(&eventbusv1.PublishError{Code: 0, Message: "an error without a code"}),
		&eventbusv1.PublishStreamResponse{},
		published(0, 7, 8),
	)
	p := openPublisher(t, fs.addr)
	ctx := shortContext(t)

	wantBadRequest := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "events[0].source", Description: "must not be empty"},
	}}
	cases := []struct {
		code    codes.Code
		message string
		details []proto.Message
	}{
		{codes.InvalidArgument, "events[0].source: must not be empty", []proto.Message{wantBadRequest}},
		{codes.Unavailable, "database unavailable", nil},
		{codes.Unknown, "an error without a code", nil},
		{codes.Internal, "eventbus: a PublishStream answer without an outcome", nil},
	}
	for i, c := range cases {
		results, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build())
		st, ok := status.FromError(err)
		if !ok || st.Code() != c.code || st.Message() != c.message {
			t.Fatalf("publish %d: results %v, error %v; want %s %q", i, results, err, c.code, c.message)
		}
		details := st.Details()
		if len(details) != len(c.details) {
			t.Fatalf("publish %d: details %v, want %v", i, details, c.details)
		}
		for j, d := range details {
			if m, ok := d.(proto.Message); !ok || !proto.Equal(m, c.details[j]) {
				t.Errorf("publish %d: detail %d is %v, want %v", i, j, d, c.details[j])
			}
		}
	}
	results, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build(), NewEvent("/s", "t").Build())
	if err != nil {
		t.Fatalf("publish after the failed ones: %v", err)
	}
	if got := []uint64{results[0].GetSequence(), results[1].GetSequence()}; !slices.Equal(got, []uint64{7, 8}) {
		t.Errorf("sequences %v, want [7 8]", got)
	}
}

func TestPublisherStreamEndFailsWaitingAndLaterPublishes(t *testing.T) {
	fs := startFake(t, "")
	fs.bus.publishSessions <- func(stream publishServer) error {
		for range 2 {
			if _, err := stream.Recv(); err != nil {
				return err
			}
		}
		return status.Error(codes.Unavailable, "server shutting down")
	}
	p := openPublisher(t, fs.addr)
	ctx := shortContext(t)

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build())
			errs <- err
		}()
	}
	for i := range 2 {
		err := within(t, errs, 5*time.Second, "a waiting publish to fail")
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "server shutting down" {
			t.Errorf("waiting publish %d: %v, want UNAVAILABLE server shutting down", i, err)
		}
	}
	_, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build())
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "server shutting down" {
		t.Errorf("publish after the end: %v, want UNAVAILABLE server shutting down", err)
	}
}

func TestPublisherContextBoundsTheWaitForTheAnswer(t *testing.T) {
	fs := startFake(t, "")
	got := make(chan struct{})
	release := make(chan struct{})
	fs.bus.publishSessions <- func(stream publishServer) error {
		first, err := stream.Recv()
		if err != nil {
			return err
		}
		close(got)
		<-release
		// Answered after its Publish gave up: dropped, not handed to the next one.
		if err := stream.Send(published(first.GetId(), 1)); err != nil {
			return err
		}
		second, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(published(second.GetId(), 2)); err != nil {
			return err
		}
		return untilHalfClose(stream)
	}
	p := openPublisher(t, fs.addr)

	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() {
		_, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build())
		errs <- err
	}()
	within(t, got, 5*time.Second, "the first message")
	cancel()
	if err := within(t, errs, 5*time.Second, "the cancelled publish"); status.Code(err) != codes.Canceled {
		t.Errorf("cancelled publish: %v, want CANCELED", err)
	}
	close(release)
	results, err := p.Publish(shortContext(t), "shop", NewEvent("/s", "t").Build())
	if err != nil || len(results) != 1 || results[0].GetSequence() != 2 {
		t.Errorf("next publish: %v, %v; want sequence 2", results, err)
	}
}

func TestPublisherEndsWithTheContextItWasOpenedWith(t *testing.T) {
	fs := startFake(t, "")
	got := make(chan struct{})
	fs.bus.publishSessions <- func(stream publishServer) error {
		if _, err := stream.Recv(); err != nil {
			return err
		}
		close(got)
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := dialFake(t, fs.addr).Publisher(ctx)
	if err != nil {
		t.Fatalf("Publisher: %v", err)
	}
	errs := make(chan error, 1)
	go func() {
		_, err := p.Publish(context.Background(), "shop", NewEvent("/s", "t").Build())
		errs <- err
	}()
	within(t, got, 5*time.Second, "the message")
	cancel()
	if err := within(t, errs, 5*time.Second, "the waiting publish"); status.Code(err) != codes.Canceled {
		t.Errorf("waiting publish: %v, want CANCELED", err)
	}
}

func TestPublisherCloseHalfClosesTheStream(t *testing.T) {
	fs := startFake(t, "")
	halfClosed := make(chan error, 1)
	fs.bus.publishSessions <- func(stream publishServer) error {
		req, err := stream.Recv()
		if err != nil {
			return err
		}
		if err := stream.Send(published(req.GetId(), 1)); err != nil {
			return err
		}
		err = untilHalfClose(stream)
		halfClosed <- err
		return err
	}
	p := openPublisher(t, fs.addr)
	ctx := shortContext(t)
	if _, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build()); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := within(t, halfClosed, 5*time.Second, "the half-close"); err != nil {
		t.Errorf("the server saw %v, want the end of the requests", err)
	}
	if _, err := p.Publish(ctx, "shop", NewEvent("/s", "t").Build()); !errors.Is(err, ErrPublisherClosed) {
		t.Errorf("Publish after Close: %v, want ErrPublisherClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
