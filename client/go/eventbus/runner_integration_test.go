//go:build integration

package eventbus_test

// Integration tests of the Runner against a live eventbus server (see
// server_integration_test.go). They are written against the contract in
// proto/eventbus/v1; every test names its own namespace.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

const (
	workflow  = "fulfilment"
	orderType = "order.created"
	// deliveryTimeout bounds the wait for a notification after its event was published.
	deliveryTimeout = 15 * time.Second
)

var traceparentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)

// delivery is one handler call as the test saw it.
type delivery struct {
	n    *eventbusv1.Notification
	span trace.SpanContext
	at   time.Time
	ctx  context.Context
}

// namespace returns a namespace unique to the test and run.
func namespace(t *testing.T) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '-'
	}, t.Name())
	return "go-it-" + name[:min(len(name), 80)] + "-" + hex.EncodeToString(b[:])
}

func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// registerStart registers the START listener of the tests: one order.created starts fulfilment.
func registerStart(t *testing.T, client *eventbus.Client, ns string) *eventbusv1.Listener {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.RegisterListener(ctx, &eventbusv1.RegisterListenerRequest{
		Namespace: ns,
		Listener: &eventbusv1.ListenerSpec{
			Kind:       eventbusv1.ListenerKind_LISTENER_KIND_START,
			WorkflowId: workflow,
			Condition:  eventbusv1.ListenerCondition_LISTENER_CONDITION_ONE,
			Types:      []string{orderType},
		},
	})
	if err != nil {
		t.Fatalf("RegisterListener: %v", err)
	}
	if resp.GetListener().GetId() == "" {
		t.Fatalf("RegisterListener returned no listener id: %v", resp)
	}
	return resp.GetListener()
}

// publish publishes events with ctx (which may carry a span) and returns their sequences.
func publish(ctx context.Context, t *testing.T, client *eventbus.Client, ns string, events ...*eventbusv1.CloudEvent) []uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := client.Publish(ctx, &eventbusv1.PublishRequest{Namespace: ns, Events: events})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(resp.GetResults()) != len(events) {
		t.Fatalf("Publish returned %d results for %d events", len(resp.GetResults()), len(events))
	}
	var sequences []uint64
	for i, r := range resp.GetResults() {
		if r.GetDuplicate() {
			t.Fatalf("event %d was a duplicate", i)
		}
		sequences = append(sequences, r.GetSequence())
	}
	return sequences
}

func order(id string) *eventbusv1.CloudEvent {
	b := eventbus.NewEvent("/shop/orders", orderType).
		WithSubject("order-"+id).
		WithExtension("orderid", id).
		WithJSON(map[string]any{"orderid": id, "amount": 42})
	if err := b.Err(); err != nil {
		panic(err)
	}
	return b.Build()
}

// startRunner runs r in the background until the test ends; the returned stop cancels Run and
// returns its result.
func startRunner(t *testing.T, r *eventbus.Runner) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("Run did not return within 30s of cancel")
			}
		})
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func next[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		panic("unreachable")
	}
}

func none[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("got %s %v, want none", what, v)
	case <-time.After(d):
	}
}

// assertAcked checks that the group already acked sequence: acking it again acks nothing.
func assertAcked(t *testing.T, client *eventbus.Client, ns, group string, sequence uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.Ack(ctx, &eventbusv1.AckRequest{Namespace: ns, ConsumerGroup: group, Sequences: []uint64{sequence}})
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if resp.GetAckedCount() != 0 {
		t.Errorf("acking sequence %d again acked %d, want 0 (the runner should have acked it)", sequence, resp.GetAckedCount())
	}
}

func recordingHandler(ch chan<- delivery, fail func(n *eventbusv1.Notification) error) func(context.Context, *eventbusv1.Notification) error {
	return func(ctx context.Context, n *eventbusv1.Notification) error {
		ch <- delivery{n: n, span: trace.SpanContextFromContext(ctx), at: time.Now(), ctx: ctx}
		if fail != nil {
			return fail(n)
		}
		return nil
	}
}

func endedSpan(t *testing.T, match func(sdktrace.ReadOnlySpan) bool, what string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans.Ended() {
		if match(s) {
			return s
		}
	}
	t.Fatalf("no recorded span is %s", what)
	return nil
}

func TestIntegrationRunnerReceivesStartWithEventAndTrace(t *testing.T) {
	srv := startServer(t)
	client := dial(t, srv.addr)
	ns := namespace(t)
	listener := registerStart(t, client, ns)

	event := order("1")
	produceCtx, produce := otel.Tracer("test").Start(context.Background(), "produce order")
	sequences := publish(produceCtx, t, client, ns, event)
	produce.End()

	got := make(chan delivery, 10)
	stop := startRunner(t, &eventbus.Runner{
		Client:        client,
		Namespace:     ns,
		ConsumerGroup: "runners",
		Kinds:         []eventbusv1.NotificationKind{eventbusv1.NotificationKind_NOTIFICATION_KIND_START},
		WorkflowIDs:   []string{workflow},
		Handler:       recordingHandler(got, nil),
		Logger:        quiet(),
	})
	d := next(t, got, deliveryTimeout, "the START notification")
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	n := d.n

	if n.GetKind() != eventbusv1.NotificationKind_NOTIFICATION_KIND_START {
		t.Errorf("kind %s, want START", n.GetKind())
	}
	if n.GetWorkflowId() != workflow || n.GetInstanceId() != "" {
		t.Errorf("workflow_id %q instance_id %q, want %q and empty", n.GetWorkflowId(), n.GetInstanceId(), workflow)
	}
	if n.GetListenerId() != listener.GetId() {
		t.Errorf("listener_id %q, want %q", n.GetListenerId(), listener.GetId())
	}
	if n.GetAttempt() != 1 || n.GetConsumerGroup() != "runners" || n.GetFireId() == "" || n.GetSequence() == 0 {
		t.Errorf("attempt %d group %q fire_id %q sequence %d, want 1, runners, non-empty, non-zero",
			n.GetAttempt(), n.GetConsumerGroup(), n.GetFireId(), n.GetSequence())
	}
	if len(n.GetEvents()) != 1 || !proto.Equal(n.GetEvents()[0], event) {
		t.Errorf("events %v, want exactly the published event %v", n.GetEvents(), event)
	}
	if !slices.Equal(n.GetEventSequences(), sequences) {
		t.Errorf("event_sequences %v, want %v", n.GetEventSequences(), sequences)
	}

	// The notification carries the trigger's span, a child of the Publish call's context (the
	// otelgrpc client span of that call, a child of "produce order"): same trace, and a span id
	// the server derives from the fire id.
	m := traceparentPattern.FindStringSubmatch(n.GetTraceparent())
	if m == nil {
		t.Fatalf("notification traceparent %q is not a W3C traceparent", n.GetTraceparent())
	}
	traceID, parentID := m[1], m[2]
	if want := produce.SpanContext().TraceID().String(); traceID != want {
		t.Errorf("notification trace id %s, want the producer's %s", traceID, want)
	}
	if want := strings.ReplaceAll(n.GetFireId(), "-", "")[:16]; parentID != want {
		t.Errorf("notification traceparent names span %s, want the trigger span %s", parentID, want)
	}

	// The handler ran in a consumer span continuing that trace.
	if got := d.span.TraceID().String(); got != traceID {
		t.Errorf("handler context trace id %s, want %s", got, traceID)
	}
	consumer := endedSpan(t, func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanContext().SpanID() == d.span.SpanID()
	}, "the handler's consumer span")
	if consumer.Name() != "process START" || consumer.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("consumer span %q kind %s, want \"process START\" kind consumer", consumer.Name(), consumer.SpanKind())
	}
	if got := consumer.Parent().SpanID().String(); got != parentID {
		t.Errorf("consumer span parent %s, want %s from the notification", got, parentID)
	}

	assertAcked(t, client, ns, "runners", n.GetSequence())
}

func TestIntegrationHandlerErrorIsRedeliveredWithAttempt2(t *testing.T) {
	srv := startServer(t)
	client := dial(t, srv.addr)
	ns := namespace(t)
	registerStart(t, client, ns)
	publish(context.Background(), t, client, ns, order("2"))

	got := make(chan delivery, 10)
	retry := eventbus.Backoff{Initial: 200 * time.Millisecond, Max: 200 * time.Millisecond}
	stop := startRunner(t, &eventbus.Runner{
		Client:        client,
		Namespace:     ns,
		ConsumerGroup: "runners",
		LeaseDuration: 5 * time.Second,
		RetryBackoff:  retry,
		Handler: recordingHandler(got, func(n *eventbusv1.Notification) error {
			if n.GetAttempt() == 1 {
				return errors.New("payment service down")
			}
			return nil
		}),
		Logger: quiet(),
	})
	first := next(t, got, deliveryTimeout, "the first delivery")
	second := next(t, got, deliveryTimeout, "the redelivery")
	none(t, got, 1500*time.Millisecond, "a third delivery")
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if first.n.GetAttempt() != 1 || second.n.GetAttempt() != 2 {
		t.Errorf("attempts %d then %d, want 1 then 2", first.n.GetAttempt(), second.n.GetAttempt())
	}
	if first.n.GetSequence() != second.n.GetSequence() || first.n.GetFireId() != second.n.GetFireId() {
		t.Errorf("redelivery is sequence %d fire %q, want the same notification (%d, %q)",
			second.n.GetSequence(), second.n.GetFireId(), first.n.GetSequence(), first.n.GetFireId())
	}
	// retry_after was between 100 and 200 ms.
	if gap := second.at.Sub(first.at); gap < retry.Ceiling(0)/2 {
		t.Errorf("redelivered %s after the failure, want at least the retry_after of %s", gap, retry.Ceiling(0)/2)
	}
	assertAcked(t, client, ns, "runners", second.n.GetSequence())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dead, err := client.ListDeadLetters(ctx, &eventbusv1.ListDeadLettersRequest{Namespace: ns, ConsumerGroup: "runners"})
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	if len(dead.GetDeadLetters()) != 0 {
		t.Errorf("dead letters %v, want none", dead.GetDeadLetters())
	}
}

func TestIntegrationRunnerStopsOnCancelAfterInFlightHandlers(t *testing.T) {
	srv := startServer(t)
	client := dial(t, srv.addr)
	ns := namespace(t)
	registerStart(t, client, ns)
	publish(context.Background(), t, client, ns, order("3"))

	got := make(chan delivery, 10)
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &eventbus.Runner{
		Client:        client,
		Namespace:     ns,
		ConsumerGroup: "runners",
		Handler: func(ctx context.Context, n *eventbusv1.Notification) error {
			got <- delivery{n: n, ctx: ctx}
			<-release
			return nil
		},
		Logger: quiet(),
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	d := next(t, got, deliveryTimeout, "the START notification")
	cancel()
	none(t, done, 300*time.Millisecond, "Run's return while its handler runs")
	if err := d.ctx.Err(); err != nil {
		t.Errorf("handler context cancelled (%v) when Run's was, want it live until the handler returns", err)
	}
	close(release)
	if err := next(t, done, 10*time.Second, "Run to return"); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	assertAcked(t, client, ns, "runners", d.n.GetSequence())
}

func TestIntegrationRunnerEndsOnPermanentErrors(t *testing.T) {
	srv := startServer(t)
	client := dial(t, srv.addr)
	ns := namespace(t)
	registerStart(t, client, ns)
	publish(context.Background(), t, client, ns, order("4"))

	// The first runner creates the group with kinds [START].
	got := make(chan delivery, 10)
	stop := startRunner(t, &eventbus.Runner{
		Client:        client,
		Namespace:     ns,
		ConsumerGroup: "runners",
		Kinds:         []eventbusv1.NotificationKind{eventbusv1.NotificationKind_NOTIFICATION_KIND_START},
		Handler:       recordingHandler(got, nil),
		Logger:        quiet(),
	})
	next(t, got, deliveryTimeout, "the START notification")
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	cases := []struct {
		name string
		r    eventbus.Runner
		code codes.Code
	}{
		{"group exists with other kinds", eventbus.Runner{
			Namespace: ns, ConsumerGroup: "runners",
			Kinds: []eventbusv1.NotificationKind{eventbusv1.NotificationKind_NOTIFICATION_KIND_WAKE},
		}, codes.FailedPrecondition},
		{"invalid namespace", eventbus.Runner{Namespace: "not a namespace!", ConsumerGroup: "runners"}, codes.InvalidArgument},
		{"lease too short", eventbus.Runner{Namespace: ns, ConsumerGroup: "other", LeaseDuration: time.Millisecond}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.Client = client
			r.Logger = quiet()
			r.Handler = func(context.Context, *eventbusv1.Notification) error {
				t.Error("handler called, want none")
				return nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := r.Run(ctx)
			if got := status.Code(err); got != tc.code {
				t.Errorf("Run returned %v (code %s), want code %s", err, got, tc.code)
			}
		})
	}
}

func TestIntegrationRunnerReconnectsAfterServerRestart(t *testing.T) {
	srv := startServer(t)
	client := dial(t, srv.addr)
	ns := namespace(t)
	registerStart(t, client, ns)
	publish(context.Background(), t, client, ns, order("5"))

	got := make(chan delivery, 10)
	stop := startRunner(t, &eventbus.Runner{
		Client:           client,
		Namespace:        ns,
		ConsumerGroup:    "runners",
		ReconnectBackoff: eventbus.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		Handler:          recordingHandler(got, nil),
		Logger:           quiet(),
	})
	first := next(t, got, deliveryTimeout, "the notification before the restart")
	// Settle it for sure (the runner acks it too; a second ack changes nothing), so that nothing
	// from before the restart is redelivered after it.
	ackCtx, ackCancel := context.WithTimeout(context.Background(), 10*time.Second)
	_, err := client.Ack(ackCtx, &eventbusv1.AckRequest{Namespace: ns, ConsumerGroup: "runners", Sequences: []uint64{first.n.GetSequence()}})
	ackCancel()
	if err != nil {
		t.Fatalf("Ack: %v", err)
	}

	srv.restart(t)
	publish(context.Background(), t, client, ns, order("6"))
	second := next(t, got, 60*time.Second, "the notification after the restart")
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if len(second.n.GetEvents()) != 1 {
		t.Fatalf("notification after the restart has %d events, want 1", len(second.n.GetEvents()))
	}
	if id, _ := eventbus.Attribute(second.n.GetEvents()[0], "orderid"); id != "6" || second.n.GetAttempt() != 1 {
		t.Errorf("after the restart got order %q attempt %d, want order 6 attempt 1", id, second.n.GetAttempt())
	}
}
