package eventbus

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

const (
	w3cTraceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	w3cParentSpan = "00f067aa0ba902b7"
	w3cTracestate = "congo=t61rcWkgMzE"
	waitLong      = 10 * time.Second
)

type handled struct {
	n      *eventbusv1.Notification
	span   trace.SpanContext
	ctxErr error
}

func TestRunnerHandlesAcksAndContinuesTheTrace(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := sendKeepalive(stream); err != nil {
			return err
		}
		n := notification(1, 1)
		n.Traceparent = "00-" + w3cTraceID + "-" + w3cParentSpan + "-01"
		n.Tracestate = w3cTracestate
		if err := send(stream, n); err != nil {
			return err
		}
		if err := sendKeepalive(stream); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	got := make(chan handled, 10)
	r := &Runner{
		Client:        client,
		Namespace:     "ns",
		ConsumerGroup: "g",
		Kinds:         []eventbusv1.NotificationKind{eventbusv1.NotificationKind_NOTIFICATION_KIND_START},
		WorkflowIDs:   []string{"fulfilment"},
		MaxAttempts:   3,
		MaxInFlight:   8,
		LeaseDuration: 5 * time.Second,
		Handler: func(ctx context.Context, n *eventbusv1.Notification) error {
			got <- handled{n: n, span: trace.SpanContextFromContext(ctx)}
			return nil
		},
		TracerProvider: tp,
		Propagator:     propagation.TraceContext{},
		Logger:         quietLogger(),
	}
	cancel, done := runInBackground(r)
	defer cancel()

	h := within(t, got, waitLong, "the notification")
	if h.n.GetSequence() != 1 {
		t.Errorf("handled sequence %d, want 1", h.n.GetSequence())
	}
	ack := within(t, fake.bus.acks, waitLong, "the ack")
	wantAck := &eventbusv1.AckRequest{Namespace: "ns", ConsumerGroup: "g", Sequences: []uint64{1}}
	if !proto.Equal(ack, wantAck) {
		t.Errorf("ack = %v, want %v", ack, wantAck)
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	nothingWithin(t, got, 0, "another handler call (keepalives must be ignored)")

	req := within(t, fake.bus.subscribes, waitLong, "the Subscribe request")
	wantReq := &eventbusv1.SubscribeRequest{
		Namespace:     "ns",
		ConsumerGroup: "g",
		Kinds:         []eventbusv1.NotificationKind{eventbusv1.NotificationKind_NOTIFICATION_KIND_START},
		WorkflowIds:   []string{"fulfilment"},
		MaxInFlight:   8,
		LeaseDuration: durationpb.New(5 * time.Second),
		MaxAttempts:   3,
	}
	if !proto.Equal(req, wantReq) {
		t.Errorf("Subscribe request = %v, want %v", req, wantReq)
	}

	spans := recorder.Ended()
	if len(spans) != 1 {
		t.Fatalf("recorded %d spans, want 1", len(spans))
	}
	span := spans[0]
	if span.Name() != "process START" || span.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("span %q kind %s, want \"process START\" kind consumer", span.Name(), span.SpanKind())
	}
	if got := span.SpanContext().TraceID().String(); got != w3cTraceID {
		t.Errorf("span trace id %s, want the notification's %s", got, w3cTraceID)
	}
	if got := span.Parent().SpanID().String(); got != w3cParentSpan || !span.Parent().IsRemote() {
		t.Errorf("span parent %s (remote %v), want remote %s", got, span.Parent().IsRemote(), w3cParentSpan)
	}
	if got := span.SpanContext().TraceState().String(); got != w3cTracestate {
		t.Errorf("span tracestate %q, want %q", got, w3cTracestate)
	}
	if h.span.SpanID() != span.SpanContext().SpanID() {
		t.Errorf("handler context carries span %s, want the consumer span %s", h.span.SpanID(), span.SpanContext().SpanID())
	}
	wantAttrs := map[attribute.Key]attribute.Value{
		"messaging.system":               attribute.StringValue("eventbus"),
		"messaging.operation.type":       attribute.StringValue("process"),
		"messaging.operation.name":       attribute.StringValue("process"),
		"messaging.destination.name":     attribute.StringValue("ns"),
		"messaging.consumer.group.name":  attribute.StringValue("g"),
		"messaging.message.id":           attribute.StringValue("fire-1"),
		"eventbus.notification.kind":     attribute.StringValue("START"),
		"eventbus.notification.sequence": attribute.Int64Value(1),
		"eventbus.notification.attempt":  attribute.Int64Value(1),
		"eventbus.workflow.id":           attribute.StringValue("fulfilment"),
	}
	gotAttrs := map[attribute.Key]attribute.Value{}
	for _, kv := range span.Attributes() {
		gotAttrs[kv.Key] = kv.Value
	}
	for k, want := range wantAttrs {
		if got, ok := gotAttrs[k]; !ok || got != want {
			t.Errorf("span attribute %s = %v (present %v), want %v", k, got.Emit(), ok, want.Emit())
		}
	}
}

func TestRunnerStartsNewTraceWithoutTraceContext(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		n := notification(1, 1)
		n.Traceparent = "not a traceparent"
		if err := send(stream, n); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	// Run's own context carries a span; a notification without a valid trace context must not
	// become its child.
	runCtx, runSpan := tp.Tracer("test").Start(context.Background(), "run")
	got := make(chan handled, 1)
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		TracerProvider: tp, Propagator: propagation.TraceContext{},
		Handler: func(ctx context.Context, n *eventbusv1.Notification) error {
			got <- handled{n: n, span: trace.SpanContextFromContext(ctx)}
			return nil
		},
	}
	ctx, cancel := context.WithCancel(runCtx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	h := within(t, got, waitLong, "the notification")
	within(t, fake.bus.acks, waitLong, "the ack")
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	runSpan.End()
	if h.span.TraceID() == runSpan.SpanContext().TraceID() {
		t.Errorf("handler span joined Run's trace %s, want a new trace", h.span.TraceID())
	}
	var consumer sdktrace.ReadOnlySpan
	for _, s := range recorder.Ended() {
		if s.Name() == "process START" {
			consumer = s
		}
	}
	if consumer == nil {
		t.Fatal("no consumer span recorded")
	}
	if consumer.Parent().IsValid() {
		t.Errorf("consumer span has parent %s, want a root span", consumer.Parent().SpanID())
	}
}

func TestRunnerNacksFailuresWithBackoff(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(5, 1)); err != nil {
			return err
		}
		if err := send(stream, notification(6, 3)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	recorder := tracetest.NewSpanRecorder()
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		RetryBackoff:   Backoff{Initial: time.Second, Max: time.Minute},
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder)),
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			if n.GetSequence() == 6 {
				panic("kaboom")
			}
			return errors.New("boom")
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	nacks := map[uint64]*eventbusv1.NackRequest{}
	for range 2 {
		n := within(t, fake.bus.nacks, waitLong, "a nack")
		nacks[n.GetSequence()] = n
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	cases := []struct {
		sequence       uint64
		min, max       time.Duration
		reasonContains string
	}{
		// Attempt 1: between half and all of 1s. Attempt 3: of 4s.
		{5, 500 * time.Millisecond, time.Second, "boom"},
		{6, 2 * time.Second, 4 * time.Second, "handler panicked: kaboom"},
	}
	for _, tc := range cases {
		n, ok := nacks[tc.sequence]
		if !ok {
			t.Errorf("no nack for sequence %d", tc.sequence)
			continue
		}
		if n.GetNamespace() != "ns" || n.GetConsumerGroup() != "g" {
			t.Errorf("nack %d for %s/%s, want ns/g", tc.sequence, n.GetNamespace(), n.GetConsumerGroup())
		}
		if d := n.GetRetryAfter().AsDuration(); d < tc.min || d > tc.max {
			t.Errorf("nack %d retry_after %s, want between %s and %s", tc.sequence, d, tc.min, tc.max)
		}
		if !strings.Contains(n.GetReason(), tc.reasonContains) {
			t.Errorf("nack %d reason %q, want it to contain %q", tc.sequence, n.GetReason(), tc.reasonContains)
		}
	}
	nothingWithin(t, fake.bus.acks, 0, "an ack of a failed notification")
	ended := recorder.Ended()
	if len(ended) != 2 {
		t.Fatalf("%d spans ended, want 2 (one per failed notification)", len(ended))
	}
	for _, s := range ended {
		if s.Status().Code.String() != "Error" {
			t.Errorf("span %q status %v, want Error", s.Name(), s.Status())
		}
	}
}

func TestRunnerReconnectsAfterStreamLoss(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(1, 1)); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "server shutting down")
	}
	// Ends with OK: still a break.
	fake.bus.sessions <- func(*eventbusv1.SubscribeRequest, grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		return nil
	}
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		return status.Error(codes.Internal, "internal error")
	}
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(2, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	got := make(chan uint64, 10)
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		ReconnectBackoff: Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond},
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			got <- n.GetSequence()
			return nil
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	for _, want := range []uint64{1, 2} {
		if seq := within(t, got, waitLong, "a notification"); seq != want {
			t.Errorf("handled sequence %d, want %d", seq, want)
		}
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	var requests []*eventbusv1.SubscribeRequest
	for len(fake.bus.subscribes) > 0 {
		requests = append(requests, <-fake.bus.subscribes)
	}
	if len(requests) != 4 {
		t.Fatalf("%d Subscribe calls, want 4 (the first and three reconnects)", len(requests))
	}
	for i, req := range requests[1:] {
		if !proto.Equal(req, requests[0]) {
			t.Errorf("reconnect %d sent %v, want the first request %v", i+1, req, requests[0])
		}
	}
}

func TestRunnerReconnectsAfterServerRestart(t *testing.T) {
	first := startFake(t, "")
	client := dialFake(t, first.addr)
	first.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(1, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	got := make(chan uint64, 10)
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		ReconnectBackoff: Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			got <- n.GetSequence()
			return nil
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	if seq := within(t, got, waitLong, "the first notification"); seq != 1 {
		t.Fatalf("handled sequence %d, want 1", seq)
	}
	within(t, first.bus.acks, waitLong, "the first ack")
	// The connection breaks under the stream (a transport error, not a status from the server).
	first.server.Stop()
	second := startFake(t, first.addr)
	second.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(2, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	if seq := within(t, got, 30*time.Second, "the notification after the restart"); seq != 2 {
		t.Errorf("handled sequence %d, want 2", seq)
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunnerEndsOnPermanentErrors(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	for _, code := range []codes.Code{
		codes.InvalidArgument,
		codes.NotFound,
		codes.FailedPrecondition,
		codes.PermissionDenied,
		codes.Unauthenticated,
	} {
		t.Run(code.String(), func(t *testing.T) {
			fake.bus.sessions <- func(*eventbusv1.SubscribeRequest, grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
				return status.Error(code, "no")
			}
			r := &Runner{
				Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
				Handler: func(context.Context, *eventbusv1.Notification) error { return nil },
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			err := r.Run(ctx)
			if got := status.Code(err); got != code {
				t.Fatalf("Run returned %v (code %s), want code %s", err, got, code)
			}
			if !strings.Contains(err.Error(), "subscribing to ns/g") {
				t.Errorf("error %q does not name the namespace and group", err)
			}
			if n := len(fake.bus.subscribes); n != 1 {
				t.Errorf("%d Subscribe calls, want 1 (no retry)", n)
			}
			for len(fake.bus.subscribes) > 0 {
				<-fake.bus.subscribes
			}
		})
	}
}

func TestRunnerBoundsConcurrency(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		// More than max_in_flight at once: the runner must not run more than 2 anyway.
		for seq := range uint64(5) {
			if err := send(stream, notification(seq+1, 1)); err != nil {
				return err
			}
		}
		return waitForClose(stream)
	}
	var running, peak atomic.Int32
	started := make(chan uint64, 10)
	release := make(chan struct{})
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(), MaxInFlight: 2,
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			now := running.Add(1)
			defer running.Add(-1)
			for {
				p := peak.Load()
				if now <= p || peak.CompareAndSwap(p, now) {
					break
				}
			}
			started <- n.GetSequence()
			<-release
			return nil
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	within(t, started, waitLong, "the first handler")
	within(t, started, waitLong, "the second handler")
	nothingWithin(t, started, 200*time.Millisecond, "a third handler while two run")
	close(release)
	var acked []uint64
	for range 5 {
		acked = append(acked, within(t, fake.bus.acks, waitLong, "an ack").GetSequences()...)
	}
	slices.Sort(acked)
	if !slices.Equal(acked, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("acked %v, want [1 2 3 4 5]", acked)
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrency %d, want 2", p)
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRunnerDrainsBeforeClosingTheStream(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(1, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	started := make(chan struct{})
	release := make(chan struct{})
	ctxErr := make(chan error, 1)
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		Handler: func(ctx context.Context, _ *eventbusv1.Notification) error {
			close(started)
			<-release
			ctxErr <- ctx.Err()
			return nil
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	within(t, started, waitLong, "the handler to start")
	cancel()
	nothingWithin(t, done, 200*time.Millisecond, "Run's return while a handler runs")
	if got := fake.bus.entries(); len(got) != 0 {
		t.Errorf("server saw %v before the handler finished, want nothing (stream still open)", got)
	}
	close(release)
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	if err := <-ctxErr; err != nil {
		t.Errorf("handler context was cancelled (%v) during the drain, want it live", err)
	}
	want := []string{"ack [1]", "stream closed"}
	deadline := time.Now().Add(waitLong)
	for !slices.Equal(fake.bus.entries(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := fake.bus.entries(); !slices.Equal(got, want) {
		t.Errorf("server saw %q, want %q (ack before the stream closes)", got, want)
	}
}

func TestRunnerDrainTimeoutCancelsHandlers(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(1, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	started := make(chan struct{})
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		DrainTimeout: 50 * time.Millisecond,
		Handler: func(ctx context.Context, _ *eventbusv1.Notification) error {
			close(started)
			<-ctx.Done()
			return ctx.Err()
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	within(t, started, waitLong, "the handler to start")
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	nack := within(t, fake.bus.nacks, waitLong, "the nack of the cancelled handler")
	if nack.GetSequence() != 1 || nack.GetReason() != context.Canceled.Error() {
		t.Errorf("nack %v, want sequence 1 with reason %q", nack, context.Canceled.Error())
	}
}

func TestRunnerSkipsRedeliveryOfNotificationInFlight(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	breakStream := make(chan struct{})
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(7, 1)); err != nil {
			return err
		}
		<-breakStream
		return status.Error(codes.Unavailable, "gone")
	}
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		// The server redelivers what the broken stream held, then something new.
		if err := send(stream, notification(7, 2)); err != nil {
			return err
		}
		if err := send(stream, notification(8, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	var mu sync.Mutex
	var calls []uint64
	started7 := make(chan struct{})
	handled8 := make(chan struct{})
	release := make(chan struct{})
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		ReconnectBackoff: Backoff{Initial: time.Millisecond, Max: time.Millisecond},
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			mu.Lock()
			calls = append(calls, n.GetSequence())
			mu.Unlock()
			switch n.GetSequence() {
			case 7:
				close(started7)
				<-release
			case 8:
				close(handled8)
			}
			return nil
		},
	}
	cancel, done := runInBackground(r)
	defer cancel()
	within(t, started7, waitLong, "the handler of 7")
	close(breakStream)
	within(t, handled8, waitLong, "the handler of 8, after the redelivery of 7")
	close(release)
	var acked []uint64
	for range 2 {
		acked = append(acked, within(t, fake.bus.acks, waitLong, "an ack").GetSequences()...)
	}
	slices.Sort(acked)
	if !slices.Equal(acked, []uint64{7, 8}) {
		t.Errorf("acked %v, want [7 8]", acked)
	}
	cancel()
	if err := within(t, done, waitLong, "Run to return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, []uint64{7, 8}) {
		t.Errorf("handler calls %v, want [7 8] (the redelivery of 7 skipped)", calls)
	}
}

func TestRunnerRejectsInvalidConfig(t *testing.T) {
	client, err := NewClient("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	handler := func(context.Context, *eventbusv1.Notification) error { return nil }
	cases := []struct {
		name string
		r    Runner
		want string
	}{
		{"no client", Runner{Namespace: "ns", ConsumerGroup: "g", Handler: handler}, "Client is nil"},
		{"no namespace", Runner{Client: client, ConsumerGroup: "g", Handler: handler}, "Namespace is empty"},
		{"no group", Runner{Client: client, Namespace: "ns", Handler: handler}, "ConsumerGroup is empty"},
		{"no handler", Runner{Client: client, Namespace: "ns", ConsumerGroup: "g"}, "Handler is nil"},
		{"max in flight too large", Runner{Client: client, Namespace: "ns", ConsumerGroup: "g", Handler: handler, MaxInFlight: 1025}, "MaxInFlight 1025"},
		{"max in flight negative", Runner{Client: client, Namespace: "ns", ConsumerGroup: "g", Handler: handler, MaxInFlight: -1}, "MaxInFlight -1"},
		{"negative lease", Runner{Client: client, Namespace: "ns", ConsumerGroup: "g", Handler: handler, LeaseDuration: -time.Second}, "LeaseDuration -1s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestTruncateUTF8(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},
		{"éé", 3, "é"},
		{"\xffab", 10, "\uFFFDab"},
	}
	for _, tc := range cases {
		got := truncateUTF8(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("truncateUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if len(got) > tc.n || !utf8.ValidString(got) {
			t.Errorf("truncateUTF8(%q, %d) = %q: longer than %d bytes or not UTF-8", tc.in, tc.n, got, tc.n)
		}
	}
	long := strings.Repeat("é", 1000)
	if got := truncateUTF8(long, maxReasonBytes); len(got) != 1024 || !utf8.ValidString(got) {
		t.Errorf("truncating 2000 bytes of é gave %d bytes (valid %v), want 1024 valid", len(got), utf8.ValidString(got))
	}
}

func TestKindName(t *testing.T) {
	cases := map[eventbusv1.NotificationKind]string{
		eventbusv1.NotificationKind_NOTIFICATION_KIND_START:   "START",
		eventbusv1.NotificationKind_NOTIFICATION_KIND_WAKE:    "WAKE",
		eventbusv1.NotificationKind_NOTIFICATION_KIND_TIMEOUT: "TIMEOUT",
		eventbusv1.NotificationKind(42):                       "42",
	}
	for kind, want := range cases {
		if got := KindName(kind); got != want {
			t.Errorf("KindName(%d) = %q, want %q", kind, got, want)
		}
	}
}

func TestRunnerEndsWhenItsClientIsClosed(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.sessions <- func(_ *eventbusv1.SubscribeRequest, stream grpc.ServerStreamingServer[eventbusv1.SubscribeResponse]) error {
		if err := send(stream, notification(1, 1)); err != nil {
			return err
		}
		return waitForClose(stream)
	}
	got := make(chan uint64, 1)
	r := &Runner{
		Client: client, Namespace: "ns", ConsumerGroup: "g", Logger: quietLogger(),
		Handler: func(_ context.Context, n *eventbusv1.Notification) error {
			got <- n.GetSequence()
			return nil
		},
	}
	_, done := runInBackground(r)
	within(t, got, waitLong, "the notification")
	within(t, fake.bus.acks, waitLong, "the ack")
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	err := within(t, done, waitLong, "Run to return after Close")
	if err == nil || !strings.Contains(err.Error(), "the client was closed") {
		t.Fatalf("Run returned %v, want an error saying the client was closed", err)
	}
}
