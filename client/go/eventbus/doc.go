// Package eventbus is the Go client layer of eventbus, on top of the generated stubs in
// github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1: a [Client] with sensible
// connection defaults ([Dial]), a CloudEvent builder ([NewEvent]), a [Publisher] that keeps
// many publishes in flight on one stream, and a [Runner] that consumes notifications of a
// consumer group, acks and nacks them, and reconnects.
//
// It depends only on the wire stack (grpc, protobuf, the google.rpc error details),
// OpenTelemetry (API and the otelgrpc instrumentation) and a UUID generator; conversion to and
// from the CloudEvents Go SDK lives in the cesdk sub-package so that importing this package
// does not pull the SDK in.
//
// Hazards:
//
//   - Delivery is at least once. A notification whose lease expires, whose stream ends before it
//     is settled, or that is nacked comes back with Notification.Attempt one higher, possibly to
//     another runner of the group. Make handlers idempotent on Notification.FireId.
//   - A reconnect is such a stream end: the server redelivers everything the old stream held
//     unsettled. The Runner skips a redelivery whose sequence it is still handling, but not one
//     that arrives after the first handling finished.
//   - Trace context flows through the global OpenTelemetry propagator (the client's calls, and
//     the Runner unless its Propagator is set), which is a no-op until the program calls
//     otel.SetTextMapPropagator, for example with propagation.TraceContext{}. Without it Publish
//     calls carry no traceparent and runners start new traces.
//   - The default service config retries unary calls that fail with UNAVAILABLE, except those
//     in [NotRetried] (the deletes, Nack, RedriveDeadLetters), which a call that failed may still
//     have done. It is safe for Publish (idempotent per event id, which is why ids come from the
//     producer) and for RegisterListener only because the client fills in a request_id when the
//     caller left it empty (see [Dial]).
package eventbus
