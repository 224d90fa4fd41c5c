// The CloudEvents Go SDK's HTTP client (github.com/cloudevents/sdk-go/v2) against the eventbus
// HTTP ingress, in binary and structured mode; the events are read back over gRPC with the Go
// client.
//
// The server is the caller's (tests/lib/http_ingress.sh starts it): EVENTBUS_HTTP_ADDR and
// EVENTBUS_ADDR (host:port) name its HTTP and gRPC listeners. Without them the test fails; it is
// never skipped.
package http_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/google/uuid"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func addr(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set: tests/lib/http_ingress.sh starts a server and sets it", name)
	}
	return value
}

// send posts e to the namespace's ingress with the SDK's HTTP client and returns the HTTP status.
func send(ctx context.Context, t *testing.T, c cloudevents.Client, e cloudevents.Event) int {
	t.Helper()
	result := c.Send(ctx, e)
	var httpResult *cehttp.Result
	if !cloudevents.ResultAs(result, &httpResult) {
		t.Fatalf("send %s: %v (not an HTTP result)", e.ID(), result)
	}
	if !cloudevents.IsACK(result) {
		t.Fatalf("send %s: not acknowledged: %v", e.ID(), result)
	}
	return httpResult.StatusCode
}

func TestSDKClientPublishesInBinaryAndStructuredMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	namespace := "go-sdk-" + uuid.NewString()[:8]
	target := fmt.Sprintf("http://%s/v1/namespaces/%s/events", addr(t, "EVENTBUS_HTTP_ADDR"), namespace)
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(target))
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	binary := cloudevents.NewEvent()
	binary.SetID("go-1")
	binary.SetSource("/go/sdk")
	binary.SetType("order.created")
	binary.SetSubject("eu/1")
	binary.SetTime(when)
	binary.SetExtension("tenant", "acme")
	if err := binary.SetData(cloudevents.ApplicationJSON, map[string]int{"total": 42}); err != nil {
		t.Fatal(err)
	}
	structured := binary.Clone()
	structured.SetID("go-2")
	if err := structured.SetData("text/plain", "hello"); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		ctx   context.Context
		event cloudevents.Event
	}{
		{ctx, binary},
		{cloudevents.WithEncodingStructured(ctx), structured},
		{ctx, binary}, // a duplicate: acknowledged, stored once
	} {
		if status := send(step.ctx, t, c, step.event); status != http.StatusOK {
			t.Fatalf("send %s: HTTP %d, want 200", step.event.ID(), status)
		}
	}

	client, err := eventbus.Dial(ctx, addr(t, "EVENTBUS_ADDR"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	page, err := client.ListEvents(ctx, &eventbusv1.ListEventsRequest{Namespace: namespace})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 2 {
		t.Fatalf("stored %d events, want 2 (the duplicate stored once): %v", len(page.Events), page.Events)
	}
	first, second := page.Events[0].GetEvent(), page.Events[1].GetEvent()
	if first.GetId() != "go-1" || second.GetId() != "go-2" || page.Events[0].GetSequence() != 1 {
		t.Fatalf("stored %v, want go-1 then go-2", page.Events)
	}
	if got := first.GetTextData(); got != `{"total":42}` {
		t.Errorf("binary mode data %q, want the JSON body", got)
	}
	if got := second.GetTextData(); got != "hello" {
		t.Errorf("structured mode data %q, want hello", got)
	}
	for _, e := range []*eventbusv1.CloudEvent{first, second} {
		attrs := e.GetAttributes()
		if got := attrs["tenant"].GetCeString(); got != "acme" {
			t.Errorf("%s: tenant %q, want acme", e.GetId(), got)
		}
		if got := attrs["subject"].GetCeString(); got != "eu/1" {
			t.Errorf("%s: subject %q, want eu/1", e.GetId(), got)
		}
		if got := attrs["time"].GetCeTimestamp().AsTime(); !got.Equal(when) {
			t.Errorf("%s: time %v, want %v", e.GetId(), got, when)
		}
		if e.GetSource() != "/go/sdk" || e.GetType() != "order.created" || e.GetSpecVersion() != "1.0" {
			t.Errorf("%s: context attributes %v", e.GetId(), e)
		}
	}
}
