package eventbus

import (
	"encoding/json"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func str(s string) *eventbusv1.CloudEvent_CloudEventAttributeValue {
	return &eventbusv1.CloudEvent_CloudEventAttributeValue{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: s}}
}

func TestBuilderOutput(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 30, 0, 123_000_000, time.UTC)
	schema, err := url.Parse("https://schemas.example.com/order/v1")
	if err != nil {
		t.Fatal(err)
	}
	type order struct {
		ID     string `json:"id"`
		Amount int    `json:"amount"`
	}
	cases := []struct {
		name  string
		build *EventBuilder
		want  *eventbusv1.CloudEvent
	}{
		{
			name:  "required attributes only",
			build: NewEvent("/shop/orders", "order.created").WithID("o-1"),
			want:  &eventbusv1.CloudEvent{Id: "o-1", Source: "/shop/orders", SpecVersion: "1.0", Type: "order.created"},
		},
		{
			name: "optional attributes and JSON",
			build: NewEvent("/shop/orders", "order.created").WithID("o-2").
				WithSubject("order-2").WithTime(when).WithJSON(order{ID: "2", Amount: 30}).
				WithExtension("dataschema", schema).WithExtension("orderid", "2"),
			want: &eventbusv1.CloudEvent{
				Id: "o-2", Source: "/shop/orders", SpecVersion: "1.0", Type: "order.created",
				Attributes: map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue{
					"subject":         str("order-2"),
					"time":            {Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(when)}},
					"datacontenttype": str("application/json"),
					"dataschema":      {Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: "https://schemas.example.com/order/v1"}},
					"orderid":         str("2"),
				},
				Data: &eventbusv1.CloudEvent_TextData{TextData: `{"id":"2","amount":30}`},
			},
		},
		{
			name:  "text",
			build: NewEvent("s", "t").WithID("x").WithText("text/plain", "héllo"),
			want: &eventbusv1.CloudEvent{
				Id: "x", Source: "s", SpecVersion: "1.0", Type: "t",
				Attributes: map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue{"datacontenttype": str("text/plain")},
				Data:       &eventbusv1.CloudEvent_TextData{TextData: "héllo"},
			},
		},
		{
			name:  "binary without content type replaces earlier data and content type",
			build: NewEvent("s", "t").WithID("x").WithJSON(1).WithBinary("", []byte{0, 1, 2}),
			want: &eventbusv1.CloudEvent{
				Id: "x", Source: "s", SpecVersion: "1.0", Type: "t",
				Attributes: map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue{},
				Data:       &eventbusv1.CloudEvent_BinaryData{BinaryData: []byte{0, 1, 2}},
			},
		},
		{
			name:  "protobuf",
			build: NewEvent("s", "t").WithID("x").WithProto(durationpb.New(time.Second)),
			want: &eventbusv1.CloudEvent{
				Id: "x", Source: "s", SpecVersion: "1.0", Type: "t",
				Attributes: map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue{"datacontenttype": str("application/protobuf")},
				Data:       &eventbusv1.CloudEvent_ProtoData{ProtoData: mustAny(t, durationpb.New(time.Second))},
			},
		},
		{
			name:  "later extension value replaces earlier",
			build: NewEvent("s", "t").WithID("x").WithExtension("n", 1).WithExtension("n", "one"),
			want: &eventbusv1.CloudEvent{
				Id: "x", Source: "s", SpecVersion: "1.0", Type: "t",
				Attributes: map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue{"n": str("one")},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.build.Err(); err != nil {
				t.Fatalf("Err() = %v, want nil", err)
			}
			got := tc.build.Build()
			if diff := cmp.Diff(tc.want, got, protocmp.Transform(), protocmp.IgnoreEmptyMessages()); diff != "" {
				t.Errorf("Build() mismatch (-want +got):\n%s", diff)
			}
			if _, err := proto.Marshal(got); err != nil {
				t.Errorf("built event does not marshal: %v", err)
			}
		})
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestBuildGeneratesDistinctUUIDv7Ids(t *testing.T) {
	b := NewEvent("/s", "t")
	seen := map[string]bool{}
	for range 100 {
		e := b.Build()
		id, err := uuid.Parse(e.GetId())
		if err != nil {
			t.Fatalf("id %q is not a UUID: %v", e.GetId(), err)
		}
		if id.Version() != 7 {
			t.Fatalf("id %q is UUID version %d, want 7", e.GetId(), id.Version())
		}
		if e.GetId() != id.String() {
			t.Fatalf("id %q is not in canonical form %q", e.GetId(), id.String())
		}
		if seen[e.GetId()] {
			t.Fatalf("id %q generated twice", e.GetId())
		}
		seen[e.GetId()] = true
	}
}

func TestBuildReturnsIndependentCopies(t *testing.T) {
	b := NewEvent("/s", "t").WithID("same").WithExtension("a", "1")
	first := b.Build()
	first.Attributes["a"] = str("changed")
	second := b.WithExtension("b", true).Build()
	if got := AttributeString(second.GetAttributes()["a"]); got != "1" {
		t.Errorf("second build has a=%q, want 1 (first build's change leaked)", got)
	}
	if _, ok := first.GetAttributes()["b"]; ok {
		t.Errorf("first build gained attribute b from a later With call")
	}
}

func TestBuilderErrors(t *testing.T) {
	cases := []struct {
		name    string
		build   *EventBuilder
		wantErr string
	}{
		{"json unsupported value", NewEvent("s", "t").WithJSON(func() {}), "encoding the JSON payload"},
		{"json NaN", NewEvent("s", "t").WithJSON(math.NaN()), "encoding the JSON payload"},
		{"text not UTF-8", NewEvent("s", "t").WithText("text/plain", "\xff"), "not valid UTF-8"},
		{"upper-case name", NewEvent("s", "t").WithExtension("orderId", "1"), "may only hold a-z and 0-9"},
		{"dash in name", NewEvent("s", "t").WithExtension("order-id", "1"), "may only hold a-z and 0-9"},
		{"empty name", NewEvent("s", "t").WithExtension("", "1"), "1 to 64 characters"},
		{"long name", NewEvent("s", "t").WithExtension(strings.Repeat("a", 65), "1"), "1 to 64 characters"},
		{"reserved id", NewEvent("s", "t").WithExtension("id", "1"), "cannot be an extension"},
		{"reserved data", NewEvent("s", "t").WithExtension("data", "1"), "cannot be an extension"},
		{"unsupported type", NewEvent("s", "t").WithExtension("f", 1.5), "unsupported attribute type float64"},
		{"integer out of range", NewEvent("s", "t").WithExtension("n", int64(math.MaxInt32)+1), "outside the 32-bit range"},
		{"first error wins", NewEvent("s", "t").WithExtension("A", 1).WithJSON(func() {}), "may only hold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.build.Err()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Err() = %v, want an error containing %q", err, tc.wantErr)
			}
			if e := tc.build.Build(); e != nil {
				t.Errorf("Build() = %v, want nil after an error", e)
			}
		})
	}
}

func TestWithJSONUsesEncodingJSON(t *testing.T) {
	raw := json.RawMessage(`{"a": [1, 2]}`)
	e := NewEvent("s", "t").WithJSON(raw).Build()
	if got := e.GetTextData(); got != `{"a":[1,2]}` {
		t.Errorf("text data = %q, want compacted raw JSON", got)
	}
}
