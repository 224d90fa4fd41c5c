package eventbus

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// session scripts one Subscribe stream of the fake server; its error ends the stream.
type session func(req *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error

// publishSession scripts one PublishStream call of the fake server; its error ends the call.
type publishSession func(stream grpc.BidiStreamingServer[eventbusv1.PublishStreamRequest, eventbusv1.PublishStreamResponse]) error

// fakeBus is an in-process EventBusService for tests that need no eventbus server: Subscribe
// and PublishStream play their queued sessions in order, Ack and Nack are recorded, Publish and
// RegisterListener answer with a scripted sequence of errors.
type fakeBus struct {
	eventbusv1.UnimplementedEventBusServiceServer

	sessions        chan session
	publishSessions chan publishSession
	subscribes      chan *eventbusv1.SubscribeRequest
	acks            chan *eventbusv1.AckRequest
	nacks           chan *eventbusv1.NackRequest

	mu sync.Mutex
	// log records acks, nacks and stream ends in the order the server saw them.
	log []string
	// publishErrors and registerErrors are returned by successive calls until used up.
	publishErrors  []error
	registerErrors []error
	publishCalls   int
	registerIDs    []string
}

func newFakeBus() *fakeBus {
	return &fakeBus{
		sessions:        make(chan session, 16),
		publishSessions: make(chan publishSession, 16),
		subscribes:      make(chan *eventbusv1.SubscribeRequest, 64),
		acks:            make(chan *eventbusv1.AckRequest, 64),
		nacks:           make(chan *eventbusv1.NackRequest, 64),
	}
}

func (f *fakeBus) record(entry string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, entry)
}

func (f *fakeBus) entries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.log...)
}

func (f *fakeBus) Subscribe(req *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
	f.subscribes <- req
	defer f.record("stream closed")
	select {
	case play := <-f.sessions:
		return play(req, stream)
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (f *fakeBus) PublishStream(stream grpc.BidiStreamingServer[eventbusv1.PublishStreamRequest, eventbusv1.PublishStreamResponse]) error {
	select {
	case play := <-f.publishSessions:
		return play(stream)
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

func (f *fakeBus) Ack(_ context.Context, req *eventbusv1.AckRequest) (*eventbusv1.AckResponse, error) {
	f.record(fmt.Sprintf("ack %v", req.GetSequences()))
	f.acks <- req
	return &eventbusv1.AckResponse{AckedCount: uint32(len(req.GetSequences()))}, nil
}

func (f *fakeBus) Nack(_ context.Context, req *eventbusv1.NackRequest) (*eventbusv1.NackResponse, error) {
	f.record(fmt.Sprintf("nack %d", req.GetSequence()))
	f.nacks <- req
	return &eventbusv1.NackResponse{}, nil
}

func (f *fakeBus) Publish(_ context.Context, req *eventbusv1.PublishRequest) (*eventbusv1.PublishResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.publishCalls++
	if len(f.publishErrors) > 0 {
		err := f.publishErrors[0]
		f.publishErrors = f.publishErrors[1:]
		return nil, err
	}
	results := make([]*eventbusv1.PublishResult, len(req.GetEvents()))
	for i := range results {
		results[i] = &eventbusv1.PublishResult{Sequence: uint64(i + 1)}
	}
	return &eventbusv1.PublishResponse{Results: results}, nil
}

func (f *fakeBus) RegisterListener(_ context.Context, req *eventbusv1.RegisterListenerRequest) (*eventbusv1.RegisterListenerResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.registerIDs = append(f.registerIDs, req.GetRequestId())
	if len(f.registerErrors) > 0 {
		err := f.registerErrors[0]
		f.registerErrors = f.registerErrors[1:]
		return nil, err
	}
	return &eventbusv1.RegisterListenerResponse{
		Listener: &eventbusv1.Listener{Id: "l-1", Namespace: req.GetNamespace(), Spec: req.GetListener(), RequestId: req.GetRequestId()},
		Created:  true,
	}, nil
}

// fakeServer serves a fakeBus on a loopback port.
type fakeServer struct {
	bus    *fakeBus
	server *grpc.Server
	addr   string
}

// startFake serves a new fakeBus on 127.0.0.1:0 (or addr) until the test ends.
func startFake(t *testing.T, addr string) *fakeServer {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening on %s: %v", addr, err)
	}
	bus := newFakeBus()
	server := grpc.NewServer()
	eventbusv1.RegisterEventBusServiceServer(server, bus)
	go func() { _ = server.Serve(lis) }()
	t.Cleanup(server.Stop)
	return &fakeServer{bus: bus, server: server, addr: lis.Addr().String()}
}

// dialFake connects a Client to s.
func dialFake(t *testing.T, addr string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// within returns the next value of ch, failing the test after timeout.
func within[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		panic("unreachable")
	}
}

// nothingWithin fails the test if ch yields a value within d (d <= 0: if one is ready now; a
// select between a ready value and an expired timer would pick either at random).
func nothingWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	if d <= 0 {
		select {
		case v := <-ch:
			t.Fatalf("got %s %v, want none", what, v)
		default:
		}
		return
	}
	select {
	case v := <-ch:
		t.Fatalf("got %s %v, want none", what, v)
	case <-time.After(d):
	}
}

func notification(sequence uint64, attempt uint32) *eventbusv1.Notification {
	return &eventbusv1.Notification{
		FireId:        fmt.Sprintf("fire-%d", sequence),
		Sequence:      sequence,
		Kind:          eventbusv1.NotificationKind_NOTIFICATION_KIND_START,
		ListenerId:    "0193a5a0-0000-7000-8000-000000000001",
		WorkflowId:    "fulfilment",
		Attempt:       attempt,
		ConsumerGroup: "g",
		CreateTime:    timestamppb.Now(),
	}
}

func send(stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse], n *eventbusv1.Notification) error {
	return stream.Send(&eventbusv1.SubscribeResponse{Message: &eventbusv1.SubscribeResponse_Notification{Notification: n}})
}

func sendKeepalive(stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
	return stream.Send(&eventbusv1.SubscribeResponse{Message: &eventbusv1.SubscribeResponse_Keepalive{
		Keepalive: &eventbusv1.Keepalive{ServerTime: timestamppb.Now()},
	}})
}

// waitForClose is the end of a session that keeps the stream open until the client leaves.
func waitForClose(stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
	<-stream.Context().Done()
	return status.Error(codes.Canceled, "client went away")
}

// quietLogger drops everything below errors.
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runInBackground starts r.Run and returns its context's cancel function and its result.
func runInBackground(r *Runner) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return cancel, done
}
