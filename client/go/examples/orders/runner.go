package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// fulfilment is the workflow runner's notification handler.
type fulfilment struct {
	client    *eventbus.Client
	namespace string
	tracker   *tracker
}

func (f *fulfilment) handle(ctx context.Context, n *eventbusv1.Notification) error {
	switch n.GetKind() {
	case eventbusv1.NotificationKind_NOTIFICATION_KIND_START:
		return f.start(ctx, n)
	case eventbusv1.NotificationKind_NOTIFICATION_KIND_WAKE:
		f.wake(n)
		return nil
	default:
		f.tracker.problem("unexpected %s notification for %q (fire %s)", eventbus.KindName(n.GetKind()), n.GetInstanceId(), n.GetFireId())
		return nil
	}
}

// start begins an order's fulfilment: it registers the WAIT listener that wakes the instance
// once the order is paid and shipped. An error nacks the START, which comes back later.
func (f *fulfilment) start(ctx context.Context, n *eventbusv1.Notification) error {
	if n.GetWorkflowId() != workflowID || len(n.GetEvents()) != 1 {
		f.tracker.problem("START fire %s: workflow %q with %d events, want %q with 1", n.GetFireId(), n.GetWorkflowId(), len(n.GetEvents()), workflowID)
		return nil
	}
	id, ok := eventbus.Attribute(n.GetEvents()[0], orderIDAttribute)
	if !ok {
		f.tracker.problem("START fire %s: order.created without %s", n.GetFireId(), orderIDAttribute)
		return nil
	}
	// The instance id doubles as request_id: a redelivered START registers nothing new.
	_, err := f.client.RegisterListener(ctx, &eventbusv1.RegisterListenerRequest{
		Namespace: f.namespace,
		RequestId: instanceID(id),
		Listener:  waitSpec(id),
	})
	if err != nil {
		return fmt.Errorf("registering the WAIT listener of %s: %w", instanceID(id), err)
	}
	f.tracker.started(id, n)
	return nil
}

// waitSpec is the WAIT listener of one order: both follow-up events, of that order.
func waitSpec(id string) *eventbusv1.ListenerSpec {
	match := map[string]string{orderIDAttribute: eventbus.QuoteGlob(id)}
	return &eventbusv1.ListenerSpec{
		Kind:        eventbusv1.ListenerKind_LISTENER_KIND_WAIT,
		InstanceId:  instanceID(id),
		Condition:   eventbusv1.ListenerCondition_LISTENER_CONDITION_ALL,
		Types:       []string{typePayment, typeShipment},
		CorrelateBy: []string{orderIDAttribute},
		Filters: []*eventbusv1.EventFilter{
			{Type: typePayment, Attributes: match},
			{Type: typeShipment, Attributes: match},
		},
	}
}

// wake finishes an order, after checking that the WAKE is about that order.
func (f *fulfilment) wake(n *eventbusv1.Notification) {
	id, ok := strings.CutPrefix(n.GetInstanceId(), "order-")
	if !ok {
		f.tracker.problem("WAKE fire %s for unknown instance %q", n.GetFireId(), n.GetInstanceId())
		return
	}
	if got := n.GetCorrelation()[orderIDAttribute]; got != id {
		f.tracker.problem("WAKE of %s correlates orderid %q", n.GetInstanceId(), got)
	}
	var types []string
	for _, e := range n.GetEvents() {
		types = append(types, e.GetType())
		if got, _ := eventbus.Attribute(e, orderIDAttribute); got != id {
			f.tracker.problem("WAKE of %s carries a %s of order %q", n.GetInstanceId(), e.GetType(), got)
		}
	}
	slices.Sort(types)
	if !slices.Equal(types, []string{typePayment, typeShipment}) {
		f.tracker.problem("WAKE of %s carries events %v, want one %s and one %s", n.GetInstanceId(), types, typePayment, typeShipment)
	}
	f.tracker.woken(id, n)
}

// orderRecord is what the runner saw of one order: deliveries per fire_id.
type orderRecord struct {
	starts map[string]int
	wakes  map[string]int
}

// tracker counts what happened to every order.
type tracker struct {
	mu           sync.Mutex
	orders       map[string]*orderRecord
	done         int
	deliveries   map[eventbusv1.NotificationKind]int
	redeliveries map[eventbusv1.NotificationKind]int
	problems     []string
	allDone      chan struct{}
}

func newTracker(orders int) *tracker {
	t := &tracker{
		orders:       make(map[string]*orderRecord, orders),
		deliveries:   map[eventbusv1.NotificationKind]int{},
		redeliveries: map[eventbusv1.NotificationKind]int{},
		allDone:      make(chan struct{}),
	}
	for i := 1; i <= orders; i++ {
		t.orders[orderID(i)] = &orderRecord{starts: map[string]int{}, wakes: map[string]int{}}
	}
	return t
}

func (t *tracker) record(id string, n *eventbusv1.Notification) *orderRecord {
	t.deliveries[n.GetKind()]++
	if n.GetAttempt() > 1 {
		t.redeliveries[n.GetKind()]++
	}
	o, ok := t.orders[id]
	if !ok {
		t.problems = append(t.problems, fmt.Sprintf("%s for unknown order %q", eventbus.KindName(n.GetKind()), id))
	}
	return o
}

func (t *tracker) started(id string, n *eventbusv1.Notification) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o := t.record(id, n); o != nil {
		o.starts[n.GetFireId()]++
	}
}

func (t *tracker) woken(id string, n *eventbusv1.Notification) {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := t.record(id, n)
	if o == nil {
		return
	}
	o.wakes[n.GetFireId()]++
	if len(o.wakes) == 1 && o.wakes[n.GetFireId()] == 1 {
		t.done++
		if t.done == len(t.orders) {
			close(t.allDone)
		}
	}
}

func (t *tracker) problem(format string, args ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.problems = append(t.problems, fmt.Sprintf(format, args...))
}

// report prints the counts and returns whether every order was started once and woken once
// with no problems.
func (t *tracker) report(w io.Writer, elapsed time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var startedOnce, wokenOnce int
	var notStarted, startedTwice, notWoken, wokenTwice []string
	for id, o := range t.orders {
		switch len(o.starts) {
		case 0:
			notStarted = append(notStarted, id)
		case 1:
			startedOnce++
		default:
			startedTwice = append(startedTwice, id)
		}
		switch len(o.wakes) {
		case 0:
			notWoken = append(notWoken, id)
		case 1:
			wokenOnce++
		default:
			wokenTwice = append(wokenTwice, id)
		}
	}
	start, wake := eventbusv1.NotificationKind_NOTIFICATION_KIND_START, eventbusv1.NotificationKind_NOTIFICATION_KIND_WAKE
	fmt.Fprintf(w, "orders:   %d\n", len(t.orders))
	fmt.Fprintf(w, "started:  %d once, %d not, %d more than once (%d START deliveries, %d redeliveries)\n",
		startedOnce, len(notStarted), len(startedTwice), t.deliveries[start], t.redeliveries[start])
	fmt.Fprintf(w, "woken:    %d once, %d not, %d more than once (%d WAKE deliveries, %d redeliveries)\n",
		wokenOnce, len(notWoken), len(wokenTwice), t.deliveries[wake], t.redeliveries[wake])
	fmt.Fprintf(w, "problems: %d\n", len(t.problems))
	fmt.Fprintf(w, "elapsed:  %s (%.0f orders/s)\n", elapsed.Round(time.Millisecond), float64(t.done)/elapsed.Seconds())
	for _, l := range []struct {
		what string
		ids  []string
	}{{"not started", notStarted}, {"started more than once", startedTwice}, {"not woken", notWoken}, {"woken more than once", wokenTwice}} {
		if len(l.ids) > 0 {
			slices.Sort(l.ids)
			fmt.Fprintf(w, "  %s: %s\n", l.what, sample(l.ids))
		}
	}
	for i, p := range t.problems {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more problems\n", len(t.problems)-10)
			break
		}
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	ok := startedOnce == len(t.orders) && wokenOnce == len(t.orders) && len(t.problems) == 0
	if ok {
		fmt.Fprintln(w, "result:   OK, every order started once and woken once")
	} else {
		fmt.Fprintln(w, "result:   FAILED")
	}
	return ok
}

func sample(ids []string) string {
	if len(ids) <= 10 {
		return strings.Join(ids, " ")
	}
	return fmt.Sprintf("%s ... (%d in all)", strings.Join(ids[:10], " "), len(ids))
}
