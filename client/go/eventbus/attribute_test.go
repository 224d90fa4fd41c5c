package eventbus

import (
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

func TestExtensionMapping(t *testing.T) {
	abs := mustURL(t, "https://example.com/a?b=c")
	rel := mustURL(t, "/orders/42#x")
	when := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	type value = eventbusv1.CloudEvent_CloudEventAttributeValue
	cases := []struct {
		name string
		in   any
		want *value
		// canonical is the value's canonical string form.
		canonical string
	}{
		{"bool true", true, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBoolean{CeBoolean: true}}, "true"},
		{"bool false", false, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBoolean{CeBoolean: false}}, "false"},
		{"int32", int32(-7), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: -7}}, "-7"},
		{"int32 min", int32(math.MinInt32), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: math.MinInt32}}, "-2147483648"},
		{"int in range", 42, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: 42}}, "42"},
		{"int64 max int32", int64(math.MaxInt32), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: math.MaxInt32}}, "2147483647"},
		{"uint8", uint8(255), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: 255}}, "255"},
		{"string", "héllo", &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: "héllo"}}, "héllo"},
		{"empty string", "", &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: ""}}, ""},
		{"bytes", []byte{0xfb, 0xff, 0x01}, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBytes{CeBytes: []byte{0xfb, 0xff, 0x01}}}, "+/8B"},
		{"bytes padded", []byte("a"), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBytes{CeBytes: []byte("a")}}, "YQ=="},
		{"time whole seconds", when, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(when)}}, "2026-01-02T02:04:05Z"},
		{"time millis", when.Add(120 * time.Millisecond), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(when.Add(120 * time.Millisecond))}}, "2026-01-02T02:04:05.12Z"},
		{"time sub-micros", when.Add(123400 * time.Nanosecond), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(when.Add(123400 * time.Nanosecond))}}, "2026-01-02T02:04:05.0001234Z"},
		{"time nanos", when.Add(5), &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(when.Add(5))}}, "2026-01-02T02:04:05.000000005Z"},
		{"absolute *url.URL", abs, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: "https://example.com/a?b=c"}}, "https://example.com/a?b=c"},
		{"absolute url.URL", *abs, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: "https://example.com/a?b=c"}}, "https://example.com/a?b=c"},
		{"relative *url.URL", rel, &value{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef{CeUriRef: "/orders/42#x"}}, "/orders/42#x"},
		{"attribute value as is", str("x"), str("x"), "x"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewAttributeValue(tc.in)
			if err != nil {
				t.Fatalf("NewAttributeValue(%v) error: %v", tc.in, err)
			}
			if !proto.Equal(got, tc.want) {
				t.Errorf("NewAttributeValue(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if s := AttributeString(got); s != tc.canonical {
				t.Errorf("AttributeString = %q, want %q", s, tc.canonical)
			}
		})
	}
}

func TestNewAttributeValueCopiesBytes(t *testing.T) {
	in := []byte{1, 2, 3}
	v, err := NewAttributeValue(in)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 9
	if got := v.GetCeBytes()[0]; got != 1 {
		t.Errorf("attribute bytes follow the caller's slice: got %d, want 1", got)
	}
}

func TestNewAttributeValueRejects(t *testing.T) {
	var nilURL *url.URL
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"float", 1.5, "unsupported attribute type float64"},
		{"nil", nil, "unsupported attribute type <nil>"},
		{"int64 too large", int64(math.MaxInt32) + 1, "outside the 32-bit range"},
		{"int64 too small", int64(math.MinInt32) - 1, "outside the 32-bit range"},
		{"uint32 too large", uint32(math.MaxInt32) + 1, "outside the 32-bit range"},
		{"string not UTF-8", "\xc3\x28", "not valid UTF-8"},
		{"nil url", nilURL, "nil *url.URL"},
		{"time out of range", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), "time"},
		{"empty attribute value", &eventbusv1.CloudEvent_CloudEventAttributeValue{}, "no type set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAttributeValue(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewAttributeValue(%v) error = %v, want one containing %q", tc.in, err, tc.want)
			}
		})
	}
}

func TestAttribute(t *testing.T) {
	e := NewEvent("/src", "t.x").WithID("id-1").WithExtension("count", 3).WithSubject("s").Build()
	cases := []struct {
		name   string
		want   string
		wantOK bool
	}{
		{"id", "id-1", true},
		{"source", "/src", true},
		{"specversion", "1.0", true},
		{"type", "t.x", true},
		{"subject", "s", true},
		{"count", "3", true},
		{"missing", "", false},
	}
	for _, tc := range cases {
		got, ok := Attribute(e, tc.name)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("Attribute(%q) = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.wantOK)
		}
	}
	if got := AttributeString(nil); got != "" {
		t.Errorf("AttributeString(nil) = %q, want empty", got)
	}
}

func TestQuoteGlob(t *testing.T) {
	cases := map[string]string{
		"":            "",
		"order-42":    "order-42",
		"a*b?c":       `a\*b\?c`,
		`[x]{y,z}\`:   `\[x\]\{y\,z\}\\`,
		"héllo*":      `héllo\*`,
		"\xff*broken": "\xff\\*broken",
	}
	for in, want := range cases {
		if got := QuoteGlob(in); got != want {
			t.Errorf("QuoteGlob(%q) = %q, want %q", in, got, want)
		}
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
