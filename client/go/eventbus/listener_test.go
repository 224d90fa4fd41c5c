package eventbus

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func TestListenerBuilderConditions(t *testing.T) {
	condition := `data.amount >= 100 && subject.startsWith("eu/")`
	got := StartListener("billing").
		Any("payment.received", "refund.issued").
		Where("payment.received", condition, nil).
		Where("refund.issued", "data.amount > 0", map[string]string{"region": "eu-*"}).
		Filter("refund.issued", map[string]string{"region": "us"}).
		Build()
	want := &eventbusv1.ListenerSpec{
		Kind:       eventbusv1.ListenerKind_LISTENER_KIND_START,
		WorkflowId: "billing",
		Condition:  eventbusv1.ListenerCondition_LISTENER_CONDITION_ANY,
		Types:      []string{"payment.received", "refund.issued"},
		Filters: []*eventbusv1.EventFilter{
			{Type: "payment.received", Attributes: map[string]string{}, Condition: condition},
			{Type: "refund.issued", Attributes: map[string]string{"region": "eu-*"}, Condition: "data.amount > 0"},
			{Type: "refund.issued", Attributes: map[string]string{"region": "us"}},
		},
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}

func TestListenerBuilderWaitAll(t *testing.T) {
	deadline := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	b := WaitListener("order-42").
		All("payment.received", "shipment.sent").
		CorrelateBy("orderid").
		Lifespan(2 * time.Hour).
		Policy(eventbusv1.ConsumptionPolicy_CONSUMPTION_POLICY_LATEST).
		Deadline(deadline)
	got := b.Build()
	want := &eventbusv1.ListenerSpec{
		Kind:        eventbusv1.ListenerKind_LISTENER_KIND_WAIT,
		InstanceId:  "order-42",
		Condition:   eventbusv1.ListenerCondition_LISTENER_CONDITION_ALL,
		Types:       []string{"payment.received", "shipment.sent"},
		CorrelateBy: []string{"orderid"},
		Lifespan:    durationpb.New(2 * time.Hour),
		Policy:      eventbusv1.ConsumptionPolicy_CONSUMPTION_POLICY_LATEST,
		Deadline:    timestamppb.New(deadline),
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	got.Types[0] = "changed"
	if b.Lifespan(0).One("x").Build().GetLifespan() != nil || b.Build().Types[0] != "x" {
		t.Fatalf("Build must copy, Lifespan(0) must clear")
	}
}
