package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// produce publishes cfg.orders orders in windows, each window's payments and shipments in the
// next window's Publish once the server lists the window's WAIT listeners (see the package doc).
func produce(ctx context.Context, client *eventbus.Client, cfg config, stdout io.Writer) error {
	rng := rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15))
	var pending []string // orders published whose payment and shipment are not
	var created, followUps int
	for next := 1; next <= cfg.orders || len(pending) > 0; {
		var batch []*eventbusv1.CloudEvent
		var window []string
		for ; next <= cfg.orders && len(window) < cfg.window; next++ {
			id := orderID(next)
			window = append(window, id)
			batch = append(batch, orderCreated(id))
		}
		if len(pending) > 0 {
			if err := waitForWaitListeners(ctx, client, cfg.namespace, pending); err != nil {
				return err
			}
			for _, id := range pending {
				batch = append(batch, paymentReceived(id), shipmentSent(id))
			}
		}
		rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		if err := publish(ctx, client, cfg.namespace, batch); err != nil {
			return err
		}
		created += len(window)
		followUps += 2 * len(pending)
		pending = window
	}
	fmt.Fprintf(stdout, "producer: published %d orders and %d payment and shipment events\n", created, followUps)
	return nil
}

// The events. Their ids derive from the order, so publishing an order twice (a rerun of the
// producer on the same namespace, or a retried Publish) stores it once.

func orderCreated(id string) *eventbusv1.CloudEvent {
	return mustBuild(eventbus.NewEvent("/shop/orders", typeOrderCreated).
		WithID(instanceID(id)+"/created").
		WithSubject(instanceID(id)).
		WithTime(time.Now()).
		WithExtension(orderIDAttribute, id).
		WithJSON(map[string]any{"orderid": id, "amount_cents": 1999}))
}

func paymentReceived(id string) *eventbusv1.CloudEvent {
	return mustBuild(eventbus.NewEvent("/shop/payments", typePayment).
		WithID(instanceID(id)+"/paid").
		WithExtension(orderIDAttribute, id).
		WithJSON(map[string]any{"orderid": id, "amount_cents": 1999}))
}

func shipmentSent(id string) *eventbusv1.CloudEvent {
	return mustBuild(eventbus.NewEvent("/shop/shipping", typeShipment).
		WithID(instanceID(id)+"/shipped").
		WithExtension(orderIDAttribute, id).
		WithJSON(map[string]any{"orderid": id, "carrier": "post"}))
}

func mustBuild(b *eventbus.EventBuilder) *eventbusv1.CloudEvent {
	if err := b.Err(); err != nil {
		panic(err) // the events above are constant in shape: a failure is a bug here
	}
	return b.Build()
}

func publish(ctx context.Context, client *eventbus.Client, namespace string, events []*eventbusv1.CloudEvent) error {
	resp, err := client.Publish(ctx, &eventbusv1.PublishRequest{Namespace: namespace, Events: events})
	if err != nil {
		return fmt.Errorf("publishing %d events: %w", len(events), err)
	}
	if len(resp.GetResults()) != len(events) {
		return fmt.Errorf("publishing %d events: %d results", len(events), len(resp.GetResults()))
	}
	return nil
}

// waitForWaitListeners returns once the server lists a WAIT listener for each order's
// instance (active or already finished), polling each until it appears.
func waitForWaitListeners(ctx context.Context, client *eventbus.Client, namespace string, ids []string) error {
	for _, id := range ids {
		delay := 2 * time.Millisecond
		for {
			resp, err := client.ListListeners(ctx, &eventbusv1.ListListenersRequest{
				Namespace:       namespace,
				Kind:            eventbusv1.ListenerKind_LISTENER_KIND_WAIT,
				InstanceId:      instanceID(id),
				IncludeFinished: true,
				PageSize:        1,
			})
			if err != nil {
				return fmt.Errorf("listing the WAIT listener of %s: %w", instanceID(id), err)
			}
			if len(resp.GetListeners()) > 0 {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for the WAIT listener of %s: %w", instanceID(id), context.Cause(ctx))
			case <-time.After(delay):
			}
			delay = min(2*delay, 100*time.Millisecond)
		}
	}
	return nil
}
