package eventbus

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// ListenerBuilder builds an eventbusv1.ListenerSpec; every method returns the builder. Start
// with [StartListener] or [WaitListener], name the condition with One, Any or All, then add
// what else the listener needs:
//
//	spec := eventbus.StartListener("review").
//		One("order.created").
//		Where("order.created", `data.items.size() > 10 && subject.startsWith("eu/")`, nil).
//		Build()
//
// The builder does not validate the combination: the server rejects an invalid spec with
// INVALID_ARGUMENT naming the field (for example filters[0].condition, with the position of a
// syntax error).
type ListenerBuilder struct {
	spec *eventbusv1.ListenerSpec
}

// StartListener returns a builder of a START listener: it starts a new instance of workflowID
// each time its condition is met.
func StartListener(workflowID string) *ListenerBuilder {
	return &ListenerBuilder{spec: &eventbusv1.ListenerSpec{
		Kind:       eventbusv1.ListenerKind_LISTENER_KIND_START,
		WorkflowId: workflowID,
	}}
}

// WaitListener returns a builder of a WAIT listener: it wakes instanceID the first time its
// condition is met.
func WaitListener(instanceID string) *ListenerBuilder {
	return &ListenerBuilder{spec: &eventbusv1.ListenerSpec{
		Kind:       eventbusv1.ListenerKind_LISTENER_KIND_WAIT,
		InstanceId: instanceID,
	}}
}

// One sets condition ONE: each event of eventType meets it. It replaces earlier types.
func (b *ListenerBuilder) One(eventType string) *ListenerBuilder {
	return b.condition(eventbusv1.ListenerCondition_LISTENER_CONDITION_ONE, []string{eventType})
}

// Any sets condition ANY: each event of one of types meets it. It replaces earlier types.
func (b *ListenerBuilder) Any(types ...string) *ListenerBuilder {
	return b.condition(eventbusv1.ListenerCondition_LISTENER_CONDITION_ANY, types)
}

// All sets condition ALL: one event of each of types (per correlation tuple) meets it.
func (b *ListenerBuilder) All(types ...string) *ListenerBuilder {
	return b.condition(eventbusv1.ListenerCondition_LISTENER_CONDITION_ALL, types)
}

func (b *ListenerBuilder) condition(c eventbusv1.ListenerCondition, types []string) *ListenerBuilder {
	b.spec.Condition = c
	b.spec.Types = append([]string(nil), types...)
	return b
}

// Filter adds a filter set for events of eventType: attribute name -> glob pattern. All
// clauses of a set must match; several sets for one type are alternatives.
func (b *ListenerBuilder) Filter(eventType string, attributes map[string]string) *ListenerBuilder {
	return b.Where(eventType, "", attributes)
}

// Where adds a filter set for events of eventType with a CEL condition on the whole event (its
// attributes and extensions by name, and data: decoded JSON, else bytes) and optional clauses,
// e.g. Where("payment.received", "data.amount >= 100", map[string]string{"region": "eu-*"}).
// The set matches when its clauses match and the condition is true; a condition that fails for
// an event (a missing field, a wrong type) is false for it. An empty condition adds a plain
// filter set.
func (b *ListenerBuilder) Where(eventType, condition string, attributes map[string]string) *ListenerBuilder {
	clauses := make(map[string]string, len(attributes))
	for name, pattern := range attributes {
		clauses[name] = pattern
	}
	b.spec.Filters = append(b.spec.Filters, &eventbusv1.EventFilter{
		Type:       eventType,
		Attributes: clauses,
		Condition:  condition,
	})
	return b
}

// CorrelateBy sets, for ALL only, the attribute names whose values tie events together. It
// replaces earlier names.
func (b *ListenerBuilder) CorrelateBy(names ...string) *ListenerBuilder {
	b.spec.CorrelateBy = append([]string(nil), names...)
	return b
}

// Lifespan sets, for ALL only, how long a collected event stays collected; 0 keeps it forever.
func (b *ListenerBuilder) Lifespan(d time.Duration) *ListenerBuilder {
	if d == 0 {
		b.spec.Lifespan = nil
	} else {
		b.spec.Lifespan = durationpb.New(d)
	}
	return b
}

// Policy sets, for ALL only, what a later event of an already collected type does.
func (b *ListenerBuilder) Policy(p eventbusv1.ConsumptionPolicy) *ListenerBuilder {
	b.spec.Policy = p
	return b
}

// Deadline sets, for WAIT only, when to stop waiting; the listener then times out.
func (b *ListenerBuilder) Deadline(t time.Time) *ListenerBuilder {
	b.spec.Deadline = timestamppb.New(t)
	return b
}

// Build returns a copy of the spec built so far.
func (b *ListenerBuilder) Build() *eventbusv1.ListenerSpec {
	return proto.Clone(b.spec).(*eventbusv1.ListenerSpec)
}
