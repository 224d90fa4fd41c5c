package eventbus

import (
	"encoding/json"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// canonicalFixture holds attribute values and their canonical strings, shared by the tests of
// every implementation (see its "comment"). go test runs in the package directory.
const canonicalFixture = "../../../proto/testdata/canonical_attributes.json"

type canonicalCase struct {
	Name      string          `json:"name"`
	Type      string          `json:"type"`
	Value     json.RawMessage `json:"value"`
	Seconds   int64           `json:"seconds"`
	Nanos     int32           `json:"nanos"`
	Canonical string          `json:"canonical"`
}

func readCanonicalFixture(t *testing.T) []canonicalCase {
	t.Helper()
	raw, err := os.ReadFile(canonicalFixture)
	if err != nil {
		t.Fatalf("reading the shared fixture: %v", err)
	}
	var fixture struct {
		Cases []canonicalCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatalf("decoding %s: %v", canonicalFixture, err)
	}
	if len(fixture.Cases) == 0 {
		t.Fatalf("%s has no cases", canonicalFixture)
	}
	return fixture.Cases
}

// input returns the Go value NewAttributeValue takes for the case, or for URIs (which
// NewAttributeValue would re-serialise through url.URL) the attribute value itself.
func (c canonicalCase) input(t *testing.T) any {
	t.Helper()
	decode := func(v any) {
		if err := json.Unmarshal(c.Value, v); err != nil {
			t.Fatalf("decoding the %s value %s: %v", c.Type, c.Value, err)
		}
	}
	switch c.Type {
	case "boolean":
		var b bool
		decode(&b)
		return b
	case "integer":
		var n int64
		decode(&n)
		return n
	case "string":
		var s string
		decode(&s)
		return s
	case "bytes":
		var b []int
		decode(&b)
		out := make([]byte, len(b))
		for i, v := range b {
			out[i] = byte(v)
		}
		return out
	case "uri", "uri_ref":
		var s string
		decode(&s)
		if c.Type == "uri" {
			return &eventbusv1.CloudEvent_CloudEventAttributeValue{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: s}}
		}
		return &eventbusv1.CloudEvent_CloudEventAttributeValue{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef{CeUriRef: s}}
	case "timestamp":
		var s string
		decode(&s)
		when, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("parsing %q: %v", s, err)
		}
		if when.Unix() != c.Seconds || int32(when.Nanosecond()) != c.Nanos {
			t.Fatalf("fixture: %q is %d.%09d, the case says %d.%09d", s, when.Unix(), when.Nanosecond(), c.Seconds, c.Nanos)
		}
		return when
	default:
		t.Fatalf("fixture: unknown type %q", c.Type)
		return nil
	}
}

func TestAttributeStringMatchesSharedFixture(t *testing.T) {
	for _, tc := range readCanonicalFixture(t) {
		t.Run(tc.Name, func(t *testing.T) {
			v, err := NewAttributeValue(tc.input(t))
			if err != nil {
				t.Fatalf("NewAttributeValue: %v", err)
			}
			if got := AttributeString(v); got != tc.Canonical {
				t.Errorf("AttributeString = %q, want %q", got, tc.Canonical)
			}
			if tc.Type != "timestamp" {
				return
			}
			// The value as it arrives on the wire, with no time zone.
			wire := &eventbusv1.CloudEvent_CloudEventAttributeValue{
				Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{
					CeTimestamp: &timestamppb.Timestamp{Seconds: tc.Seconds, Nanos: tc.Nanos},
				},
			}
			if got := AttributeString(wire); got != tc.Canonical {
				t.Errorf("AttributeString(seconds %d, nanos %d) = %q, want %q", tc.Seconds, tc.Nanos, got, tc.Canonical)
			}
		})
	}
}
