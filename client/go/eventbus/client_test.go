package eventbus

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func TestServiceConfigRetriesTheIdempotentUnaryMethodsOnUnavailable(t *testing.T) {
	var cfg struct {
		MethodConfig []struct {
			Name []struct {
				Service string `json:"service"`
				Method  string `json:"method"`
			} `json:"name"`
			RetryPolicy struct {
				MaxAttempts          int      `json:"maxAttempts"`
				InitialBackoff       string   `json:"initialBackoff"`
				MaxBackoff           string   `json:"maxBackoff"`
				BackoffMultiplier    float64  `json:"backoffMultiplier"`
				RetryableStatusCodes []string `json:"retryableStatusCodes"`
			} `json:"retryPolicy"`
		} `json:"methodConfig"`
	}
	if err := json.Unmarshal([]byte(ServiceConfig), &cfg); err != nil {
		t.Fatalf("ServiceConfig is not JSON: %v\n%s", err, ServiceConfig)
	}
	if len(cfg.MethodConfig) != 1 {
		t.Fatalf("%d method configs, want 1", len(cfg.MethodConfig))
	}
	mc := cfg.MethodConfig[0]
	var methods []string
	for _, n := range mc.Name {
		if n.Service != "eventbus.v1.EventBusService" {
			t.Errorf("service %q, want eventbus.v1.EventBusService", n.Service)
		}
		methods = append(methods, n.Method)
	}
	slices.Sort(methods)
	want := []string{
		"Ack", "ExplainListener", "GetConsumerGroup", "GetEvent", "GetListener",
		"ListConsumerGroups", "ListDeadLetters", "ListEvents", "ListListeners", "ListNamespaces",
		"Publish", "RegisterListener", "ReplayEvents", "SeekConsumerGroup", "UpdateConsumerGroup",
	}
	if !slices.Equal(methods, want) {
		t.Errorf("retried methods %v, want %v (not Subscribe, not %v)", methods, want, NotRetried)
	}
	// Every unary method is either retried or listed as not retried.
	var unary []string
	for _, m := range eventbusv1.EventBusService_ServiceDesc.Methods {
		unary = append(unary, m.MethodName)
	}
	all := slices.Concat(want, NotRetried)
	slices.Sort(all)
	slices.Sort(unary)
	if !slices.Equal(all, unary) {
		t.Errorf("retried %v and not retried %v, want together the unary methods %v", want, NotRetried, unary)
	}
	p := mc.RetryPolicy
	if p.MaxAttempts != 5 || p.InitialBackoff != "0.1s" || p.MaxBackoff != "2s" || p.BackoffMultiplier != 2 {
		t.Errorf("retry policy %+v, want 5 attempts, 0.1s to 2s, multiplier 2", p)
	}
	if !slices.Equal(p.RetryableStatusCodes, []string{"UNAVAILABLE"}) {
		t.Errorf("retryable codes %v, want [UNAVAILABLE]", p.RetryableStatusCodes)
	}
}

func TestUnaryCallsAreRetriedOnUnavailableOnly(t *testing.T) {
	cases := []struct {
		name      string
		errors    []error
		wantCode  codes.Code
		wantCalls int
	}{
		{"two UNAVAILABLE then success", []error{status.Error(codes.Unavailable, "db down"), status.Error(codes.Unavailable, "db down")}, codes.OK, 3},
		{"INVALID_ARGUMENT is final", []error{status.Error(codes.InvalidArgument, "bad")}, codes.InvalidArgument, 1},
		{"five UNAVAILABLE exhaust the attempts", []error{
			status.Error(codes.Unavailable, "1"), status.Error(codes.Unavailable, "2"), status.Error(codes.Unavailable, "3"),
			status.Error(codes.Unavailable, "4"), status.Error(codes.Unavailable, "5"),
		}, codes.Unavailable, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := startFake(t, "")
			client := dialFake(t, fake.addr)
			fake.bus.publishErrors = tc.errors
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			_, err := client.Publish(ctx, &eventbusv1.PublishRequest{
				Namespace: "ns",
				Events:    []*eventbusv1.CloudEvent{NewEvent("/s", "t").Build()},
			})
			if got := status.Code(err); got != tc.wantCode {
				t.Errorf("Publish returned %v, want code %s", err, tc.wantCode)
			}
			fake.bus.mu.Lock()
			defer fake.bus.mu.Unlock()
			if fake.bus.publishCalls != tc.wantCalls {
				t.Errorf("server saw %d Publish calls, want %d", fake.bus.publishCalls, tc.wantCalls)
			}
		})
	}
}

func TestRegisterListenerGetsOneRequestIDAcrossRetries(t *testing.T) {
	fake := startFake(t, "")
	client := dialFake(t, fake.addr)
	fake.bus.registerErrors = []error{status.Error(codes.Unavailable, "db down")}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	req := &eventbusv1.RegisterListenerRequest{Namespace: "ns", Listener: &eventbusv1.ListenerSpec{Kind: eventbusv1.ListenerKind_LISTENER_KIND_START}}
	resp, err := client.RegisterListener(ctx, req)
	if err != nil {
		t.Fatalf("RegisterListener: %v", err)
	}
	if req.GetRequestId() != "" {
		t.Errorf("caller's request was changed: request_id %q", req.GetRequestId())
	}
	fake.bus.mu.Lock()
	ids := slices.Clone(fake.bus.registerIDs)
	fake.bus.mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("server saw request ids %q, want two equal ones (a call and its retry)", ids)
	}
	id, err := uuid.Parse(ids[0])
	if err != nil || id.Version() != 7 {
		t.Errorf("request id %q is not a UUIDv7 (%v)", ids[0], err)
	}
	if resp.GetListener().GetRequestId() != ids[0] {
		t.Errorf("response request_id %q, want %q", resp.GetListener().GetRequestId(), ids[0])
	}

	req.RequestId = "mine"
	if _, err := client.RegisterListener(ctx, req); err != nil {
		t.Fatalf("RegisterListener: %v", err)
	}
	fake.bus.mu.Lock()
	last := fake.bus.registerIDs[len(fake.bus.registerIDs)-1]
	fake.bus.mu.Unlock()
	if last != "mine" {
		t.Errorf("server saw request id %q, want the caller's \"mine\"", last)
	}
}

func TestDialFailsWhenNothingListens(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, addr)
	if err == nil {
		_ = c.Close()
		t.Fatalf("Dial(%s) succeeded with nothing listening", addr)
	}
	if !strings.Contains(err.Error(), "connecting to") || !strings.Contains(err.Error(), addr) {
		t.Errorf("error %q does not say which address failed", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Dial took %s, want it to end with its context", took)
	}
}

func TestWithTokenSendsABearerAuthorizationOnEveryCall(t *testing.T) {
	md, err := bearerToken("ebt_secret").GetRequestMetadata(context.Background(), "/eventbus.v1.EventBusService/Publish")
	if err != nil {
		t.Fatal(err)
	}
	if len(md) != 1 || md["authorization"] != "Bearer ebt_secret" {
		t.Errorf("metadata %v, want only authorization: Bearer ebt_secret", md)
	}
}
