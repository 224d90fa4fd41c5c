package eventbus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/types/known/durationpb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

const (
	// DefaultMaxInFlight is the Runner's MaxInFlight when it is 0 (the server's default too).
	DefaultMaxInFlight = 64
	// maxMaxInFlight is the largest max_in_flight the server accepts.
	maxMaxInFlight = 1024
	// settleTimeout bounds each Ack and Nack call, retries included.
	settleTimeout = 10 * time.Second
	// maxRetryAfter is the largest retry_after the server accepts.
	maxRetryAfter = 24 * time.Hour
	// maxReasonBytes is the largest Nack reason the server accepts.
	maxReasonBytes = 1024
	// tracerName is the instrumentation scope of the Runner's spans.
	tracerName = "github.com/eventbus-dev/eventbus/client/go/eventbus"
)

// Runner consumes the notifications of one consumer group: it subscribes, calls Handler for
// each notification, up to MaxInFlight at once, acks the notification when Handler returns nil
// and nacks it, to be redelivered after a backoff delay, when Handler returns an error or
// panics. Keepalive messages are ignored. A lost stream (UNAVAILABLE, a transport error, or the
// stream ending) is reopened after a capped, jittered backoff; the server then redelivers what
// the old stream left unsettled.
//
// Handler runs with a context that carries the trace context of the notification's trigger
// (extracted with Propagator from Notification.Traceparent and Tracestate) and a consumer span
// named "process START", "process WAKE" or "process TIMEOUT" with messaging attributes, so the
// spans Handler starts join the trace of the event that caused the notification. The context
// is not cancelled when Run's context is (see DrainTimeout), so that handlers can finish.
//
// Set the fields, then call Run; a Runner is not changed by Run and can run again afterwards.
// Delivery is at least once: Handler must be idempotent on Notification.FireId.
type Runner struct {
	// Client is the connection to use. Required.
	Client *Client
	// Namespace to receive notifications from. Required.
	Namespace string
	// ConsumerGroup this runner joins; created by the first Subscribe that names it. Required.
	ConsumerGroup string

	// Kinds is the group's kind filter, fixed when the group is created: only these kinds.
	// Empty: all kinds.
	Kinds []eventbusv1.NotificationKind
	// WorkflowIDs is the group's workflow filter, fixed when the group is created: only START
	// notifications of these workflows (WAKE and TIMEOUT never pass a non-empty filter).
	// Empty: all.
	WorkflowIDs []string
	// MaxAttempts is the group's delivery attempts before a notification becomes a dead letter,
	// fixed when the group is created. 0: the server's default (10); at most 100.
	MaxAttempts uint32
	// Start is where a new group starts; ignored when the group exists. Unspecified: earliest.
	Start eventbusv1.StartPosition
	// StartSequence is the first sequence to deliver with START_POSITION_SEQUENCE.
	StartSequence uint64

	// MaxInFlight is how many notifications this runner holds and handles at once; also sent
	// as the stream's max_in_flight. 0: DefaultMaxInFlight; at most 1024.
	MaxInFlight int
	// LeaseDuration is how long the server waits for each notification to be settled before it
	// redelivers it as a failed attempt. 0: the server's default (30 seconds); otherwise 1
	// second to 1 hour. Handlers that may run longer need a longer lease.
	LeaseDuration time.Duration

	// Handler handles one notification; nil error acks it, an error nacks it. Required.
	Handler func(ctx context.Context, n *eventbusv1.Notification) error

	// ReconnectBackoff is the delay between reconnect attempts; zero fields take the values of
	// DefaultReconnectBackoff.
	ReconnectBackoff Backoff
	// RetryBackoff gives the Nack retry_after of a failed notification by its attempt (attempt
	// 1 uses RetryBackoff.Delay(0, jitter)); zero fields take the values of
	// DefaultRetryBackoff. Capped at the server's limit of 24 hours.
	RetryBackoff Backoff
	// DrainTimeout is how long Run, once its context is done, waits for running handlers before
	// it cancels their contexts; Run still waits for them to return. 0: never cancel them.
	DrainTimeout time.Duration

	// TracerProvider creates the consumer spans. Nil: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator reads the trace context of notifications. Nil: otel.GetTextMapPropagator().
	Propagator propagation.TextMapPropagator
	// Logger receives reconnects, failed settlements and handler panics. Nil: slog.Default().
	Logger *slog.Logger
}

// Run subscribes and handles notifications until ctx is done or the subscription fails with
// an error a retry would meet again (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
// PERMISSION_DENIED, UNAUTHENTICATED and the other codes [IsRetryable] rejects, for example a
// group that exists with other Kinds). Other failures, including a server that cannot be
// reached, are retried forever; bound Run with a context deadline if an outage must surface.
//
// When ctx is done, Run stops taking notifications, waits for the running handlers and their
// acks or nacks, closes the stream and returns nil. The stream stays open during that drain so
// that the server does not hand the running notifications to other runners meanwhile; what it
// sends during the drain is not handled, and comes back (as a failed attempt) once the stream
// closes. On a permanent failure, or when its Client was closed, it also waits for the running
// handlers, then returns the error, which carries the gRPC status. It returns an error without
// calling the server when the Runner is misconfigured.
func (r *Runner) Run(ctx context.Context) error {
	s, err := r.newRun()
	if err != nil {
		return err
	}
	return s.run(ctx)
}

// run is the state of one Run call.
type run struct {
	client       *Client
	namespace    string
	group        string
	request      *eventbusv1.SubscribeRequest
	handler      func(context.Context, *eventbusv1.Notification) error
	reconnect    Backoff
	retry        Backoff
	drainTimeout time.Duration
	tracer       trace.Tracer
	propagator   propagation.TextMapPropagator
	log          *slog.Logger

	// slots holds one token per notification being handled.
	slots chan struct{}
	// handlers counts handler goroutines, across streams.
	handlers sync.WaitGroup
	// handlerCtx is the parent of handler contexts: Run's values without its cancellation.
	handlerCtx     context.Context
	cancelHandlers context.CancelFunc

	mu sync.Mutex
	// inFlight holds the sequences being handled, to skip their redeliveries.
	inFlight map[uint64]struct{}

	// failures counts stream losses since the last message; only the Run goroutine uses it.
	failures int
}

func (r *Runner) newRun() (*run, error) {
	var problems []string
	if r.Client == nil {
		problems = append(problems, "Client is nil")
	}
	if r.Namespace == "" {
		problems = append(problems, "Namespace is empty")
	}
	if r.ConsumerGroup == "" {
		problems = append(problems, "ConsumerGroup is empty")
	}
	if r.Handler == nil {
		problems = append(problems, "Handler is nil")
	}
	if r.MaxInFlight < 0 || r.MaxInFlight > maxMaxInFlight {
		problems = append(problems, fmt.Sprintf("MaxInFlight %d is not between 0 and %d", r.MaxInFlight, maxMaxInFlight))
	}
	if r.LeaseDuration < 0 {
		problems = append(problems, fmt.Sprintf("LeaseDuration %s is negative", r.LeaseDuration))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("eventbus: invalid Runner: %s", strings.Join(problems, "; "))
	}
	maxInFlight := r.MaxInFlight
	if maxInFlight == 0 {
		maxInFlight = DefaultMaxInFlight
	}
	request := &eventbusv1.SubscribeRequest{
		Namespace:     r.Namespace,
		ConsumerGroup: r.ConsumerGroup,
		Kinds:         slices.Clone(r.Kinds),
		WorkflowIds:   slices.Clone(r.WorkflowIDs),
		MaxInFlight:   uint32(maxInFlight),
		Start:         r.Start,
		StartSequence: r.StartSequence,
		MaxAttempts:   r.MaxAttempts,
	}
	if r.LeaseDuration > 0 {
		request.LeaseDuration = durationpb.New(r.LeaseDuration)
	}
	tp := r.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	propagator := r.Propagator
	if propagator == nil {
		propagator = otel.GetTextMapPropagator()
	}
	log := r.Logger
	if log == nil {
		log = slog.Default()
	}
	return &run{
		client:       r.Client,
		namespace:    r.Namespace,
		group:        r.ConsumerGroup,
		request:      request,
		handler:      r.Handler,
		reconnect:    r.ReconnectBackoff.or(DefaultReconnectBackoff),
		retry:        r.RetryBackoff.or(DefaultRetryBackoff),
		drainTimeout: r.DrainTimeout,
		tracer:       tp.Tracer(tracerName),
		propagator:   propagator,
		log:          log.With("namespace", r.Namespace, "consumer_group", r.ConsumerGroup),
		slots:        make(chan struct{}, maxInFlight),
		inFlight:     make(map[uint64]struct{}),
	}, nil
}

func (s *run) run(ctx context.Context) error {
	s.handlerCtx, s.cancelHandlers = context.WithCancel(context.WithoutCancel(ctx))
	defer s.cancelHandlers()
	for {
		err := s.session(ctx)
		if ctx.Err() != nil {
			s.drain()
			return nil
		}
		if !IsRetryable(err) {
			s.drain()
			return fmt.Errorf("eventbus: subscribing to %s/%s: %w", s.namespace, s.group, err)
		}
		if s.client.conn.GetState() == connectivity.Shutdown {
			s.drain()
			return fmt.Errorf("eventbus: subscribing to %s/%s: the client was closed: %w", s.namespace, s.group, err)
		}
		delay := s.reconnect.next(s.failures)
		s.failures++
		s.log.Warn("eventbus: subscription lost, reconnecting",
			"error", err, "failures", s.failures, "retry_in", delay)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			s.drain()
			return nil
		}
	}
}

// recvResult is one Recv of a Subscribe stream.
type recvResult struct {
	response *eventbusv1.SubscribeResponse
	err      error
}

// session opens one Subscribe stream and dispatches its notifications until the stream breaks
// (returning why) or ctx is done (returning nil once the running handlers are done, before the
// stream is closed, so that the server does not redeliver what they are still working on).
func (s *run) session(ctx context.Context) error {
	// The stream outlives ctx while handlers drain; ctx only cancels the opening call.
	streamCtx, closeStream := context.WithCancel(context.WithoutCancel(ctx))
	defer closeStream()
	stopOpening := context.AfterFunc(ctx, closeStream)
	stream, err := s.client.Subscribe(streamCtx, s.request)
	if !stopOpening() {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	responses := make(chan recvResult)
	go receive(streamCtx, stream, responses)
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			s.drain()
			return nil
		}
		var res recvResult
		select {
		case res = <-responses:
		case <-ctx.Done():
			<-s.slots
			s.drain()
			return nil
		}
		if res.err != nil {
			<-s.slots
			if errors.Is(res.err, io.EOF) {
				return errStreamEnded
			}
			return res.err
		}
		// A message proves the stream healthy: the next loss backs off from the start again.
		s.failures = 0
		n := res.response.GetNotification()
		if n == nil {
			// A keepalive.
			<-s.slots
			continue
		}
		if !s.claim(n.GetSequence()) {
			s.log.Debug("eventbus: skipping a redelivery of a notification still being handled",
				"sequence", n.GetSequence(), "attempt", n.GetAttempt())
			<-s.slots
			continue
		}
		s.handlers.Add(1)
		go s.process(n)
	}
}

// receive passes the stream's messages to out until the stream fails or ctx ends.
func receive(ctx context.Context, stream grpc.ServerStreamingClient[eventbusv1.SubscribeResponse], out chan<- recvResult) {
	for {
		response, err := stream.Recv()
		select {
		case out <- recvResult{response: response, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// drain waits for the running handlers, cancelling their contexts after drainTimeout.
func (s *run) drain() {
	if s.drainTimeout > 0 {
		timer := time.AfterFunc(s.drainTimeout, s.cancelHandlers)
		defer timer.Stop()
	}
	s.handlers.Wait()
}

// claim marks sequence as being handled; false if it already is.
func (s *run) claim(sequence uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.inFlight[sequence]; ok {
		return false
	}
	s.inFlight[sequence] = struct{}{}
	return true
}

func (s *run) release(sequence uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, sequence)
}

// settlement is what acking or nacking a notification needs, taken before the handler runs
// (which may modify the notification).
type settlement struct {
	sequence uint64
	attempt  uint32
	fireID   string
}

// process runs the handler on n inside a consumer span, then acks or nacks n.
func (s *run) process(n *eventbusv1.Notification) {
	id := settlement{sequence: n.GetSequence(), attempt: n.GetAttempt(), fireID: n.GetFireId()}
	defer s.handlers.Done()
	defer func() { <-s.slots }()
	defer s.release(id.sequence)

	ctx, span := s.startSpan(s.handlerCtx, n)
	defer span.End()
	err := s.call(ctx, n)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	settleCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err == nil {
		s.ack(settleCtx, id)
	} else {
		s.nack(settleCtx, id, err)
	}
}

// call runs the handler, turning a panic into an error.
func (s *run) call(ctx context.Context, n *eventbusv1.Notification) (err error) {
	sequence, fireID := n.GetSequence(), n.GetFireId()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("eventbus: handler panicked",
				"sequence", sequence, "fire_id", fireID, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return s.handler(ctx, n)
}

func (s *run) ack(ctx context.Context, id settlement) {
	_, err := s.client.Ack(ctx, &eventbusv1.AckRequest{
		Namespace:     s.namespace,
		ConsumerGroup: s.group,
		Sequences:     []uint64{id.sequence},
	})
	if err != nil {
		s.log.Warn("eventbus: ack failed; the notification comes back when its lease expires",
			"sequence", id.sequence, "fire_id", id.fireID, "error", err)
	}
}

func (s *run) nack(ctx context.Context, id settlement, handlerErr error) {
	retryAfter := min(s.retry.next(int(id.attempt)-1), maxRetryAfter)
	resp, err := s.client.Nack(ctx, &eventbusv1.NackRequest{
		Namespace:     s.namespace,
		ConsumerGroup: s.group,
		Sequence:      id.sequence,
		RetryAfter:    durationpb.New(retryAfter),
		Reason:        truncateUTF8(handlerErr.Error(), maxReasonBytes),
	})
	switch {
	case err != nil:
		s.log.Warn("eventbus: nack failed; the notification comes back when its lease expires",
			"sequence", id.sequence, "fire_id", id.fireID, "handler_error", handlerErr, "error", err)
	case resp.GetDeadLettered():
		s.log.Warn("eventbus: handler failed on the last attempt; the notification is a dead letter",
			"sequence", id.sequence, "fire_id", id.fireID, "attempt", id.attempt, "error", handlerErr)
	default:
		s.log.Info("eventbus: handler failed; retrying later",
			"sequence", id.sequence, "fire_id", id.fireID, "attempt", id.attempt,
			"retry_after", retryAfter, "error", handlerErr)
	}
}

// startSpan starts the consumer span of n: a child of n's trigger when n carries a trace
// context the propagator reads, a new root otherwise.
func (s *run) startSpan(ctx context.Context, n *eventbusv1.Notification) (context.Context, trace.Span) {
	carrier := NotificationCarrier{Notification: n}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(s.spanAttributes(n)...),
	}
	if trace.SpanContextFromContext(s.propagator.Extract(context.Background(), carrier)).IsValid() {
		ctx = s.propagator.Extract(ctx, carrier)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	return s.tracer.Start(ctx, "process "+KindName(n.GetKind()), opts...)
}

func (s *run) spanAttributes(n *eventbusv1.Notification) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemKey.String("eventbus"),
		semconv.MessagingOperationTypeProcess,
		semconv.MessagingOperationName("process"),
		semconv.MessagingDestinationName(s.namespace),
		semconv.MessagingConsumerGroupName(s.group),
		semconv.MessagingMessageID(n.GetFireId()),
		attribute.String("eventbus.notification.kind", KindName(n.GetKind())),
		attribute.Int64("eventbus.notification.sequence", int64(n.GetSequence())),
		attribute.Int("eventbus.notification.attempt", int(n.GetAttempt())),
		attribute.String("eventbus.listener.id", n.GetListenerId()),
	}
	if id := n.GetWorkflowId(); id != "" {
		attrs = append(attrs, attribute.String("eventbus.workflow.id", id))
	}
	if id := n.GetInstanceId(); id != "" {
		attrs = append(attrs, attribute.String("eventbus.instance.id", id))
	}
	return attrs
}

// KindName returns the short name of a notification kind: "START", "WAKE", "TIMEOUT", or the
// number of an unknown kind.
func KindName(kind eventbusv1.NotificationKind) string {
	return strings.TrimPrefix(kind.String(), "NOTIFICATION_KIND_")
}

// truncateUTF8 returns s as valid UTF-8 of at most n bytes, cut at a character boundary.
func truncateUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
