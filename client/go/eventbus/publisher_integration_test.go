//go:build integration

package eventbus_test

// Integration tests of the Publisher against a live eventbus server (see
// server_integration_test.go); every test names its own namespace, whose sequences start at 1.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// openPublisher opens a Publisher on client, closed when the test ends.
func openPublisher(t *testing.T, client *eventbus.Client) *eventbus.Publisher {
	t.Helper()
	p, err := client.Publisher(context.Background())
	if err != nil {
		t.Fatalf("Publisher: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// publishing returns what a test of the Publisher needs: a context bounding its calls, a
// namespace of its own and a Publisher on client.
func publishing(t *testing.T, client *eventbus.Client) (context.Context, string, *eventbus.Publisher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx, namespace(t), openPublisher(t, client)
}

// publishOne publishes event on p and returns its result.
func publishOne(ctx context.Context, t *testing.T, p *eventbus.Publisher, ns string, event *eventbusv1.CloudEvent) *eventbusv1.PublishResult {
	t.Helper()
	results, err := p.Publish(ctx, ns, event)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(results) != 1 {
		t.Fatalf("Publish returned %d results for 1 event", len(results))
	}
	return results[0]
}

func TestIntegrationPublisher(t *testing.T) {
	s := startServer(t)
	client := dial(t, s.addr)

	t.Run("many concurrent publishes each get their own answer", func(t *testing.T) {
		ctx, ns, p := publishing(t, client)
		const n = 200
		events := make([]*eventbusv1.CloudEvent, n)
		for i := range events {
			events[i] = eventbus.NewEvent("/shop/orders", orderType).WithID(fmt.Sprintf("order-%d", i)).Build()
		}
		sequences := make([]uint64, n)
		var wg sync.WaitGroup
		for i, event := range events {
			wg.Go(func() {
				results, err := p.Publish(ctx, ns, event)
				if err != nil || len(results) != 1 || results[0].GetDuplicate() {
					t.Errorf("publish %d: %v, %v; want one new event", i, results, err)
					return
				}
				sequences[i] = results[0].GetSequence()
			})
		}
		wg.Wait()
		want := make([]uint64, n)
		for i := range want {
			want[i] = uint64(i + 1)
		}
		if got := slices.Sorted(slices.Values(sequences)); !slices.Equal(got, want) {
			t.Fatalf("sequences %v, want 1 to %d once each", got, n)
		}
		// Each publish was answered with the sequence its own event was stored under.
		resp, err := client.ListEvents(ctx, &eventbusv1.ListEventsRequest{Namespace: ns, PageSize: 1000})
		if err != nil {
			t.Fatalf("ListEvents: %v", err)
		}
		if len(resp.GetEvents()) != n {
			t.Fatalf("%d stored events, want %d", len(resp.GetEvents()), n)
		}
		stored := make(map[uint64]string, n)
		for _, e := range resp.GetEvents() {
			stored[e.GetSequence()] = e.GetEvent().GetId()
		}
		for i, event := range events {
			if stored[sequences[i]] != event.GetId() {
				t.Errorf("publish %d (event %s) was answered with sequence %d, which holds event %s",
					i, event.GetId(), sequences[i], stored[sequences[i]])
			}
		}
	})

	t.Run("an invalid message fails alone", func(t *testing.T) {
		ctx, ns, p := publishing(t, client)
		if r := publishOne(ctx, t, p, ns, order("1")); r.GetSequence() != 1 {
			t.Fatalf("first publish: sequence %d, want 1", r.GetSequence())
		}

		results, err := p.Publish(ctx, ns, eventbus.NewEvent("", orderType).Build())
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "events[0].source") {
			t.Fatalf("event without a source: %v, %v; want INVALID_ARGUMENT naming events[0].source", results, err)
		}
		t.Logf("event without a source: %v", err)
		var fields []string
		for _, d := range st.Details() {
			if bad, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range bad.GetFieldViolations() {
					fields = append(fields, v.GetField())
				}
			}
		}
		if !slices.Equal(fields, []string{"events[0].source"}) {
			t.Errorf("field violations %v, want [events[0].source]", fields)
		}

		if r := publishOne(ctx, t, p, ns, order("2")); r.GetSequence() != 2 || r.GetDuplicate() {
			t.Errorf("publish after the invalid one: %v, want sequence 2, not a duplicate", r)
		}
	})

	t.Run("a duplicate event id is answered with the first sequence", func(t *testing.T) {
		ctx, ns, p := publishing(t, client)
		publishOne(ctx, t, p, ns, order("1"))
		event := order("2")
		first := publishOne(ctx, t, p, ns, event)
		if first.GetSequence() != 2 || first.GetDuplicate() {
			t.Fatalf("first publish: %v, want sequence 2, not a duplicate", first)
		}
		if again := publishOne(ctx, t, p, ns, event); again.GetSequence() != 2 || !again.GetDuplicate() {
			t.Errorf("same event again: %v, want sequence 2, a duplicate", again)
		}
		// Publishing the same built event on a new stream, as after a lost one, is safe too.
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		next := openPublisher(t, client)
		if again := publishOne(ctx, t, next, ns, event); again.GetSequence() != 2 || !again.GetDuplicate() {
			t.Errorf("same event on a new publisher: %v, want sequence 2, a duplicate", again)
		}
	})
}

func TestIntegrationPublisherFailsWithUnavailableWhenTheServerStops(t *testing.T) {
	s := startServer(t)
	client := dial(t, s.addr)
	ctx, ns, p := publishing(t, client)
	if r := publishOne(ctx, t, p, ns, order("1")); r.GetSequence() != 1 {
		t.Fatalf("first publish: sequence %d, want 1", r.GetSequence())
	}

	s.stop(t)
	_, first := p.Publish(ctx, ns, order("2"))
	if status.Code(first) != codes.Unavailable {
		t.Fatalf("publish after the server stopped: %v, want UNAVAILABLE", first)
	}
	t.Logf("the stream ended with %v", first)
	// The stream is over for good: every later publish fails with its status.
	if _, err := p.Publish(ctx, ns, order("3")); err == nil || err.Error() != first.Error() {
		t.Errorf("later publish: %v, want the stream's status %v", err, first)
	}
}
