package cesdk

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func TestToProtoMapsEveryAttribute(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 500_000_000, time.UTC)
	e := event.New()
	e.SetID("id-1")
	e.SetSource("/shop/orders")
	e.SetType("order.created")
	e.SetSubject("order-1")
	e.SetTime(when)
	e.SetDataSchema("https://schemas.example.com/order")
	if err := e.SetData(event.ApplicationJSON, map[string]int{"amount": 3}); err != nil {
		t.Fatal(err)
	}
	e.SetExtension("orderid", "1")
	e.SetExtension("Priority", 7)
	e.SetExtension("urgent", true)
	e.SetExtension("blob", []byte{1, 2})
	e.SetExtension("due", when)
	e.SetExtension("callback", &url.URL{Scheme: "https", Host: "cb.example.com"})
	e.SetExtension("ref", types.URIRef{URL: url.URL{Path: "/relative"}})
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}

	got, err := ToProto(e)
	if err != nil {
		t.Fatalf("ToProto: %v", err)
	}
	want := eventbus.NewEvent("/shop/orders", "order.created").WithID("id-1").
		WithSubject("order-1").WithTime(when).
		WithExtension("dataschema", &url.URL{Scheme: "https", Host: "schemas.example.com", Path: "/order"}).
		WithText("application/json", `{"amount":3}`).
		WithExtension("orderid", "1").
		WithExtension("priority", 7).
		WithExtension("urgent", true).
		WithExtension("blob", []byte{1, 2}).
		WithExtension("due", when).
		WithExtension("callback", &url.URL{Scheme: "https", Host: "cb.example.com"}).
		WithExtension("ref", &url.URL{Path: "/relative"}).
		Build()
	if !proto.Equal(got, want) {
		t.Errorf("ToProto =\n%v\nwant\n%v", got, want)
	}
}

func TestRoundTrips(t *testing.T) {
	when := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		pb   *eventbusv1.CloudEvent
	}{
		{"required only", eventbus.NewEvent("/s", "t").WithID("1").Build()},
		{"text", eventbus.NewEvent("/s", "t").WithID("2").WithText("text/plain", "hi").WithSubject("x").WithTime(when).Build()},
		{"json", eventbus.NewEvent("/s", "t").WithID("3").WithJSON(map[string]string{"a": "b"}).Build()},
		{"binary", eventbus.NewEvent("/s", "t").WithID("4").WithBinary("application/octet-stream", []byte{0xff, 0}).Build()},
		{"binary that is valid UTF-8", eventbus.NewEvent("/s", "t").WithID("5").WithBinary("application/octet-stream", []byte("abc")).Build()},
		{"extensions", eventbus.NewEvent("/s", "t").WithID("6").
			WithExtension("n", -3).WithExtension("b", false).WithExtension("s", "v").
			WithExtension("raw", []byte("x")).WithExtension("at", when).
			WithExtension("u", &url.URL{Scheme: "urn", Opaque: "example:a"}).
			WithExtension("r", &url.URL{Path: "a/b"}).Build()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sdk, err := ToSDK(tc.pb)
			if err != nil {
				t.Fatalf("ToSDK: %v", err)
			}
			back, err := ToProto(sdk)
			if err != nil {
				t.Fatalf("ToProto: %v", err)
			}
			if !proto.Equal(back, tc.pb) {
				t.Errorf("round trip changed the event:\n got %v\nwant %v", back, tc.pb)
			}
		})
	}
}

func TestToSDKPayloads(t *testing.T) {
	packed, err := anypb.New(durationpb.New(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		pb          *eventbusv1.CloudEvent
		wantData    []byte
		wantBase64  bool
		contentType string
	}{
		{"text", eventbus.NewEvent("/s", "t").WithText("text/plain", "hi").Build(), []byte("hi"), false, "text/plain"},
		{"binary", eventbus.NewEvent("/s", "t").WithBinary("image/png", []byte{1}).Build(), []byte{1}, true, "image/png"},
		{"proto without content type", &eventbusv1.CloudEvent{
			Id: "p", Source: "/s", SpecVersion: "1.0", Type: "t",
			Data: &eventbusv1.CloudEvent_ProtoData{ProtoData: packed},
		}, packed.GetValue(), true, "application/protobuf"},
		{"no data", eventbus.NewEvent("/s", "t").Build(), nil, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ToSDK(tc.pb)
			if err != nil {
				t.Fatalf("ToSDK: %v", err)
			}
			if !bytes.Equal(e.DataEncoded, tc.wantData) || e.DataBase64 != tc.wantBase64 {
				t.Errorf("data %v (base64 %v), want %v (base64 %v)", e.DataEncoded, e.DataBase64, tc.wantData, tc.wantBase64)
			}
			if e.DataContentType() != tc.contentType {
				t.Errorf("datacontenttype %q, want %q", e.DataContentType(), tc.contentType)
			}
		})
	}
}

func TestConversionErrors(t *testing.T) {
	badTime := eventbus.NewEvent("/s", "t").WithExtension("time", "yesterday").Build()
	badSubject := eventbus.NewEvent("/s", "t").WithExtension("subject", 3).Build()
	oldSpec := eventbus.NewEvent("/s", "t").Build()
	oldSpec.SpecVersion = "0.3"
	noSource := eventbus.NewEvent("", "t").Build()
	cases := []struct {
		name string
		pb   *eventbusv1.CloudEvent
		want string
	}{
		{"time not a timestamp", badTime, `attribute "time": want a timestamp`},
		{"subject not a string", badSubject, `attribute "subject": want a string`},
		{"spec version", oldSpec, `spec version "0.3"`},
		{"invalid for the SDK", noSource, "source"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ToSDK(tc.pb)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ToSDK error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ToProto(event.Event{}); err == nil || !strings.Contains(err.Error(), "no context") {
		t.Errorf("ToProto(empty event) error = %v, want \"no context\"", err)
	}
	v03 := event.New(event.CloudEventsVersionV03)
	if _, err := ToProto(v03); err == nil || !strings.Contains(err.Error(), "spec version") {
		t.Errorf("ToProto(0.3 event) error = %v, want a spec version error", err)
	}
}
