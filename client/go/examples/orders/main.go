// Command orders is an eventbus example: order fulfilment with a START and a WAIT listener.
//
//	go run ./examples/orders [flags] producer|runner|all
//
// The scenario. A START listener on order.created starts workflow "fulfilment". For each START,
// the runner registers a WAIT listener for the instance "order-<orderid>" with condition ALL
// over payment.received and shipment.sent, correlated by the orderid attribute and filtered on
// that order's id; the WAKE that follows marks the order done. The producer publishes -orders
// orders and, for each, a payment and a shipment.
//
// Why the run is deterministic. A listener only sees events received after it was registered,
// so an order's payment and shipment must be published after its WAIT listener exists. The
// producer makes sure of it through the server, which works whether runner and producer share
// a process or not: it publishes orders in windows of -window, and before it publishes the
// payments and shipments of a window it lists the WAIT listeners of every order in it
// (ListListeners by instance_id) until each exists. Those follow-up events go out in one
// Publish together with the next window's orders, shuffled with a seeded generator
// (-seed), so order creations, payments and shipments of different orders interleave, and for
// some orders the shipment comes before the payment. The START listener is registered by both
// roles with the same request_id, so either may start first.
//
// Verification. The runner counts, per order, the distinct fire_ids of START and WAKE
// notifications (delivery is at least once, fire_id is the idempotency key) and checks each
// WAKE: its correlation and both events carry the order's id. It stops once every order is
// done (or at -timeout), prints the counts and exits non-zero unless every order was started
// exactly once and woken exactly once, with nothing unexpected.
//
// Modes: "all" runs runner and producer in one process (with a fresh namespace unless
// -namespace is given); "runner" and "producer" run one role each and need the same -namespace
// and -orders.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

const (
	workflowID       = "fulfilment"
	typeOrderCreated = "order.created"
	typePayment      = "payment.received"
	typeShipment     = "shipment.sent"
	orderIDAttribute = "orderid"
	consumerGroup    = "fulfilment"
	// startRequestID makes the START listener registration idempotent across roles and runs.
	startRequestID = "orders-example-start-fulfilment"
)

type config struct {
	addr      string
	namespace string
	orders    int
	window    int
	seed      uint64
	timeout   time.Duration
	verbose   bool
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:50051", "eventbus server address (host:port)")
	fs.StringVar(&cfg.namespace, "namespace", "", "namespace to use; required for producer and runner, default for all: a fresh one")
	fs.IntVar(&cfg.orders, "orders", 2000, "number of orders")
	fs.IntVar(&cfg.window, "window", 100, "orders per Publish window (1 to 333)")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the shuffle that interleaves events")
	fs.DurationVar(&cfg.timeout, "timeout", 5*time.Minute, "give up after this long")
	fs.BoolVar(&cfg.verbose, "v", false, "log the client's warnings and retries")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: orders [flags] producer|runner|all\n\n")
		fs.PrintDefaults()
	}
	// The mode may come before or after the flags.
	var mode string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if mode == "" && fs.NArg() == 1 {
		mode = fs.Arg(0)
	} else if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if err := cfg.check(mode); err != nil {
		fmt.Fprintf(stderr, "orders: %v\n", err)
		fs.Usage()
		return 2
	}

	level := slog.LevelError
	if cfg.verbose {
		level = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
	// W3C trace context on every call; spans are only recorded if a TracerProvider is set.
	otel.SetTextMapPropagator(propagation.TraceContext{})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	dialCtx, dialCancel := context.WithTimeout(ctx, 10*time.Second)
	client, err := eventbus.Dial(dialCtx, cfg.addr)
	dialCancel()
	if err != nil {
		fmt.Fprintf(stderr, "orders: %v\n", err)
		return 1
	}
	defer client.Close()

	fmt.Fprintf(stdout, "orders: %s on %s, namespace %s, %d orders\n", mode, cfg.addr, cfg.namespace, cfg.orders)
	if err := registerStartListener(ctx, client, cfg.namespace); err != nil {
		fmt.Fprintf(stderr, "orders: %v\n", err)
		return 1
	}
	switch mode {
	case "producer":
		if err := produce(ctx, client, cfg, stdout); err != nil {
			fmt.Fprintf(stderr, "orders: producer: %v\n", err)
			return 1
		}
		return 0
	case "runner":
		return runRunner(ctx, client, cfg, stdout, stderr, nil)
	default: // all
		return runRunner(ctx, client, cfg, stdout, stderr, func(ctx context.Context) error {
			return produce(ctx, client, cfg, stdout)
		})
	}
}

func (c *config) check(mode string) error {
	switch mode {
	case "all":
		if c.namespace == "" {
			c.namespace = fmt.Sprintf("orders-%d", time.Now().UnixNano())
		}
	case "producer", "runner":
		if c.namespace == "" {
			return fmt.Errorf("%s needs -namespace (the same for producer and runner)", mode)
		}
	case "":
		return errors.New("no mode given")
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if c.orders < 1 {
		return fmt.Errorf("-orders %d: want at least 1", c.orders)
	}
	// A window's Publish holds its orders plus the previous window's two follow-ups each, and
	// Publish takes at most 1000 events.
	if c.window < 1 || 3*c.window > 1000 {
		return fmt.Errorf("-window %d: want 1 to 333", c.window)
	}
	return nil
}

// runRunner runs the runner until every order is done, with produce (if any) beside it, then
// verifies and reports. Returns the exit code.
func runRunner(ctx context.Context, client *eventbus.Client, cfg config, stdout, stderr io.Writer, produce func(context.Context) error) int {
	tracker := newTracker(cfg.orders)
	f := &fulfilment{client: client, namespace: cfg.namespace, tracker: tracker}
	runner := &eventbus.Runner{
		Client:        client,
		Namespace:     cfg.namespace,
		ConsumerGroup: consumerGroup,
		MaxInFlight:   128,
		Handler:       f.handle,
	}
	start := time.Now()
	runCtx, stopRunner := context.WithCancel(ctx)
	defer stopRunner()
	runDone := make(chan error, 1)
	go func() { runDone <- runner.Run(runCtx) }()
	var produceDone chan error
	produceCtx, stopProducer := context.WithCancel(ctx)
	defer stopProducer()
	if produce != nil {
		produceDone = make(chan error, 1)
		go func() { produceDone <- produce(produceCtx) }()
	}

	var failure error
wait:
	for {
		select {
		case <-tracker.allDone:
			break wait
		case <-ctx.Done():
			break wait
		case err := <-produceDone:
			produceDone = nil
			if err != nil {
				failure = fmt.Errorf("producer: %w", err)
				break wait
			}
		case err := <-runDone:
			runDone = nil
			failure = fmt.Errorf("runner stopped early: %v", err)
			break wait
		}
	}
	stopRunner()
	if runDone != nil {
		if err := <-runDone; err != nil && failure == nil {
			failure = fmt.Errorf("runner: %w", err)
		}
	}
	if produceDone != nil {
		// Every order done means every event was published; otherwise stop the producer.
		if ctx.Err() != nil || failure != nil {
			stopProducer()
		}
		if err := <-produceDone; err != nil && failure == nil && ctx.Err() == nil {
			failure = fmt.Errorf("producer: %w", err)
		}
	}
	ok := tracker.report(stdout, time.Since(start))
	switch {
	case failure != nil:
		fmt.Fprintf(stderr, "orders: %v\n", failure)
		return 1
	case !ok && ctx.Err() != nil:
		fmt.Fprintf(stderr, "orders: stopped before every order was done: %v\n", context.Cause(ctx))
		return 1
	case !ok:
		return 1
	}
	return 0
}

func orderID(i int) string {
	return fmt.Sprintf("%06d", i)
}

func instanceID(orderID string) string {
	return "order-" + orderID
}

// registerStartListener registers the START listener on order.created for fulfilment, once
// per namespace whoever calls first (the request_id makes it idempotent).
func registerStartListener(ctx context.Context, client *eventbus.Client, namespace string) error {
	_, err := client.RegisterListener(ctx, &eventbusv1.RegisterListenerRequest{
		Namespace: namespace,
		RequestId: startRequestID,
		Listener: &eventbusv1.ListenerSpec{
			Kind:       eventbusv1.ListenerKind_LISTENER_KIND_START,
			WorkflowId: workflowID,
			Condition:  eventbusv1.ListenerCondition_LISTENER_CONDITION_ONE,
			Types:      []string{typeOrderCreated},
		},
	})
	if err != nil {
		return fmt.Errorf("registering the START listener: %w", err)
	}
	return nil
}
