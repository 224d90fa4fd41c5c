package eventbus

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// NotificationCarrier reads a notification's W3C trace context (its traceparent and
// tracestate fields) as a propagation.TextMapCarrier. Set does nothing.
type NotificationCarrier struct {
	Notification *eventbusv1.Notification
}

var _ propagation.TextMapCarrier = NotificationCarrier{}

// Get returns the notification's traceparent or tracestate; "" for any other key.
func (c NotificationCarrier) Get(key string) string {
	switch key {
	case AttributeTraceparent:
		return c.Notification.GetTraceparent()
	case AttributeTracestate:
		return c.Notification.GetTracestate()
	default:
		return ""
	}
}

// Set does nothing: a notification's trace context is the server's record of its trigger.
func (NotificationCarrier) Set(string, string) {}

// Keys returns the keys that have a non-empty value.
func (c NotificationCarrier) Keys() []string {
	var keys []string
	if c.Notification.GetTraceparent() != "" {
		keys = append(keys, AttributeTraceparent)
	}
	if c.Notification.GetTracestate() != "" {
		keys = append(keys, AttributeTracestate)
	}
	return keys
}

// ContextWithNotificationTrace returns ctx carrying the trace context of n's trigger as the
// remote parent, extracted with the global TextMapPropagator, so that spans started from it
// join the trigger's trace. Returns ctx unchanged when n carries none, or when the global
// propagator does not read W3C Trace Context (it is a no-op until otel.SetTextMapPropagator).
func ContextWithNotificationTrace(ctx context.Context, n *eventbusv1.Notification) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, NotificationCarrier{Notification: n})
}
