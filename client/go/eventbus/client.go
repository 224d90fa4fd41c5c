package eventbus

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// Keepalive pings: sent after this long without traffic, and the connection is dropped when
// one is not answered in time. The server's Subscribe keepalive messages (every 15 seconds of
// idleness) keep streams busy anyway; the pings catch dead peers on quiet connections.
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// Retry policy of the default service config, for unary calls only.
const (
	retryMaxAttempts       = 5
	retryInitialBackoff    = "0.1s"
	retryMaxBackoff        = "2s"
	retryBackoffMultiplier = 2
)

// ServiceConfig is the default gRPC service config of clients made by [Dial] and [NewClient]:
// the unary RPCs of EventBusService that are safe to repeat are retried up to 5 attempts in all,
// with exponential backoff from 100 ms to 2 s, when they fail with UNAVAILABLE. Those in
// [NotRetried] are not, nor is Subscribe: the [Runner] reconnects streams itself. Replace it with
// grpc.WithDefaultServiceConfig.
var ServiceConfig = buildServiceConfig()

// NotRetried lists the unary methods [ServiceConfig] does not retry. UNAVAILABLE does not always
// mean that nothing happened: a call whose database answered late, or whose commit's answer was
// lost, may have taken effect. Repeating one of these would then report something else than what
// happened: DeleteListener, DeleteConsumerGroup and DeleteNamespace would fail with NOT_FOUND,
// DeleteListeners and RedriveDeadLetters would count nothing, and a Nack could count a failed
// attempt twice. Callers that retry them should check the state first (GetListener,
// GetConsumerGroup, ListDeadLetters). Every other method is idempotent: Publish per event id,
// RegisterListener per request_id (which [Dial]'s clients fill in), Ack, the seeks and updates by
// the state they set, and the reads.
var NotRetried = []string{
	"DeleteConsumerGroup", "DeleteListener", "DeleteListeners", "DeleteNamespace", "Nack",
	"RedriveDeadLetters",
}

// Client is a connection to an eventbus server. It embeds the generated
// EventBusServiceClient, so every RPC is a method of Client. Safe for concurrent use.
type Client struct {
	eventbusv1.EventBusServiceClient
	conn   *grpc.ClientConn
	target string
}

// Dial creates a client for target (for example "127.0.0.1:50051" or "dns:///eventbus:50051")
// and waits until its connection is ready or ctx ends, so that a wrong address or a server that
// is down shows at start-up. The connection reconnects by itself later on.
//
// The defaults, applied before opts so that opts override them (see [DefaultDialOptions]):
// plaintext (insecure) transport credentials; keepalive pings after 30 s of inactivity with a
// 10 s timeout; [ServiceConfig]; an otelgrpc stats handler, which creates client spans with the
// global TracerProvider and puts the trace context of ctx into each call's metadata with the
// global TextMapPropagator; and an interceptor that gives RegisterListener calls without a
// request_id a fresh UUIDv7 one, so that retried registrations are not registered twice (the
// caller's request is left unchanged).
//
// Pass grpc.WithTransportCredentials or [WithTLS] for TLS, and [WithToken] for a token.
func Dial(ctx context.Context, target string, opts ...grpc.DialOption) (*Client, error) {
	c, err := NewClient(target, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// NewClient creates a client for target with the same defaults as [Dial] but does not connect:
// the connection is made by the first call.
func NewClient(target string, opts ...grpc.DialOption) (*Client, error) {
	all := append(DefaultDialOptions(), opts...)
	conn, err := grpc.NewClient(target, all...)
	if err != nil {
		return nil, fmt.Errorf("eventbus: client for %q: %w", target, err)
	}
	return &Client{EventBusServiceClient: eventbusv1.NewEventBusServiceClient(conn), conn: conn, target: target}, nil
}

// DefaultDialOptions returns the options [Dial] and [NewClient] apply before the caller's.
func DefaultDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.WithDefaultServiceConfig(ServiceConfig),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithChainUnaryInterceptor(registerRequestID),
	}
}

// WithTLS returns a dial option that replaces the default plaintext credentials with TLS
// configured by cfg (nil: the system roots and default settings).
func WithTLS(cfg *tls.Config) grpc.DialOption {
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// WithToken returns a dial option that sends token as "authorization: Bearer <token>" with
// every call. The token is sent over plaintext connections too (for a server on loopback); use
// it with [WithTLS] anywhere else.
func WithToken(token string) grpc.DialOption {
	return grpc.WithPerRPCCredentials(bearerToken(token))
}

// bearerToken is the per-RPC credential of [WithToken].
type bearerToken string

func (t bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

func (t bearerToken) RequireTransportSecurity() bool {
	return false
}

// Conn returns the underlying connection, for example to create other stubs on it.
func (c *Client) Conn() *grpc.ClientConn {
	return c.conn
}

// Close closes the connection; calls in progress fail with CANCELED.
func (c *Client) Close() error {
	return c.conn.Close()
}

// waitReady connects and returns once the connection is READY, or an error when ctx ends first.
func (c *Client) waitReady(ctx context.Context) error {
	c.conn.Connect()
	for {
		state := c.conn.GetState()
		switch state {
		case connectivity.Ready:
			return nil
		case connectivity.Shutdown:
			return fmt.Errorf("eventbus: connecting to %q: connection closed", c.target)
		case connectivity.Idle:
			c.conn.Connect()
		}
		if !c.conn.WaitForStateChange(ctx, state) {
			return fmt.Errorf("eventbus: connecting to %q: %w (connection %s)", c.target, ctx.Err(), state)
		}
	}
}

// registerRequestID gives a RegisterListener request without a request_id a fresh UUIDv7 one,
// on a copy, so that the retries of the service config cannot register the listener twice.
func registerRequestID(
	ctx context.Context,
	method string,
	req, reply any,
	cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker,
	opts ...grpc.CallOption,
) error {
	if r, ok := req.(*eventbusv1.RegisterListenerRequest); ok && r.GetRequestId() == "" {
		r = proto.CloneOf(r)
		r.RequestId = newID()
		req = r
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// newID returns a new UUIDv7 in its canonical form.
func newID() string {
	// NewV7 only fails when crypto/rand does, which it does not since Go 1.24.
	return uuid.Must(uuid.NewV7()).String()
}

func buildServiceConfig() string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []name      `json:"name"`
		RetryPolicy retryPolicy `json:"retryPolicy"`
	}
	desc := eventbusv1.EventBusService_ServiceDesc
	names := make([]name, 0, len(desc.Methods))
	for _, m := range desc.Methods {
		if !slices.Contains(NotRetried, m.MethodName) {
			names = append(names, name{Service: desc.ServiceName, Method: m.MethodName})
		}
	}
	cfg := struct {
		MethodConfig []methodConfig `json:"methodConfig"`
	}{[]methodConfig{{
		Name: names,
		RetryPolicy: retryPolicy{
			MaxAttempts:          retryMaxAttempts,
			InitialBackoff:       retryInitialBackoff,
			MaxBackoff:           retryMaxBackoff,
			BackoffMultiplier:    retryBackoffMultiplier,
			RetryableStatusCodes: []string{"UNAVAILABLE"},
		},
	}}}
	out, err := json.Marshal(cfg)
	if err != nil {
		panic(errors.Join(errors.New("eventbus: encoding the default service config"), err))
	}
	return string(out)
}
