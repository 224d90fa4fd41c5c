package eventbus

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// NewAttributeValue returns the CloudEvents attribute value of v, its type picked by v's Go
// type:
//
//	bool                         Boolean     ce_boolean
//	int32, and int, int8, int16,
//	int64, uint, uint8, uint16,
//	uint32, uint64 in int32 range  Integer     ce_integer
//	string (UTF-8)               String      ce_string
//	[]byte (copied)              Binary      ce_bytes
//	time.Time                    Timestamp   ce_timestamp
//	*url.URL, url.URL            URI         ce_uri      when absolute (it has a scheme)
//	                             URI-ref     ce_uri_ref  otherwise
//	*CloudEvent_CloudEventAttributeValue   used as it is (copied)
//
// Returns an error for other types, out-of-range integers, invalid UTF-8, nil pointers and
// times outside the years 1 to 9999.
func NewAttributeValue(v any) (*eventbusv1.CloudEvent_CloudEventAttributeValue, error) {
	type attr = eventbusv1.CloudEvent_CloudEventAttributeValue
	switch v := v.(type) {
	case bool:
		return &attr{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBoolean{CeBoolean: v}}, nil
	case int32:
		return integer(int64(v))
	case int:
		return integer(int64(v))
	case int8:
		return integer(int64(v))
	case int16:
		return integer(int64(v))
	case int64:
		return integer(v)
	case uint:
		return unsigned(uint64(v))
	case uint8:
		return unsigned(uint64(v))
	case uint16:
		return unsigned(uint64(v))
	case uint32:
		return unsigned(uint64(v))
	case uint64:
		return unsigned(v)
	case string:
		if !utf8.ValidString(v) {
			return nil, errors.New("string is not valid UTF-8")
		}
		return &attr{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeString{CeString: v}}, nil
	case []byte:
		return &attr{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeBytes{CeBytes: append([]byte{}, v...)}}, nil
	case time.Time:
		ts := timestamppb.New(v)
		if err := ts.CheckValid(); err != nil {
			return nil, fmt.Errorf("time %s: %w", v, err)
		}
		return &attr{Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp{CeTimestamp: ts}}, nil
	case *url.URL:
		if v == nil {
			return nil, errors.New("nil *url.URL")
		}
		return uri(v)
	case url.URL:
		return uri(&v)
	case *attr:
		if v == nil || v.GetAttr() == nil {
			return nil, errors.New("attribute value with no type set")
		}
		return proto.CloneOf(v), nil
	default:
		return nil, fmt.Errorf("unsupported attribute type %T (want string, bool, an integer, []byte, time.Time or *url.URL)", v)
	}
}

func integer(v int64) (*eventbusv1.CloudEvent_CloudEventAttributeValue, error) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return nil, fmt.Errorf("integer %d is outside the 32-bit range of CloudEvents Integer", v)
	}
	return &eventbusv1.CloudEvent_CloudEventAttributeValue{
		Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger{CeInteger: int32(v)},
	}, nil
}

func unsigned(v uint64) (*eventbusv1.CloudEvent_CloudEventAttributeValue, error) {
	if v > math.MaxInt32 {
		return nil, fmt.Errorf("integer %d is outside the 32-bit range of CloudEvents Integer", v)
	}
	return integer(int64(v))
}

func uri(u *url.URL) (*eventbusv1.CloudEvent_CloudEventAttributeValue, error) {
	s := u.String()
	if !utf8.ValidString(s) {
		return nil, errors.New("URI is not valid UTF-8")
	}
	if u.IsAbs() {
		return &eventbusv1.CloudEvent_CloudEventAttributeValue{
			Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: s},
		}, nil
	}
	return &eventbusv1.CloudEvent_CloudEventAttributeValue{
		Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef{CeUriRef: s},
	}, nil
}

// AttributeString returns the canonical string form of an attribute value, the form listener
// filters, correlate_by and Notification.Correlation work on: Boolean "true" or "false";
// Integer in decimal; String, URI and URI-reference unchanged; Binary in standard base64 with
// padding; Timestamp in RFC 3339 in UTC with a "Z", with fractional seconds only when they are
// not zero and without trailing zeros ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.25Z").
// Returns "" for nil or a value with no type set. The file
// proto/testdata/canonical_attributes.json pins these forms for every client.
func AttributeString(v *eventbusv1.CloudEvent_CloudEventAttributeValue) string {
	switch a := v.GetAttr().(type) {
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeBoolean:
		return strconv.FormatBool(a.CeBoolean)
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger:
		return strconv.FormatInt(int64(a.CeInteger), 10)
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeString:
		return a.CeString
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeBytes:
		return base64.StdEncoding.EncodeToString(a.CeBytes)
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri:
		return a.CeUri
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef:
		return a.CeUriRef
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp:
		return timestampString(a.CeTimestamp)
	default:
		return ""
	}
}

// Attribute returns the canonical string form (see [AttributeString]) of the event's attribute
// name, which may also be one of the required attributes id, source, specversion and type;
// false when the event does not have it.
func Attribute(e *eventbusv1.CloudEvent, name string) (string, bool) {
	switch name {
	case "id":
		return e.GetId(), e.GetId() != ""
	case "source":
		return e.GetSource(), e.GetSource() != ""
	case "specversion":
		return e.GetSpecVersion(), e.GetSpecVersion() != ""
	case "type":
		return e.GetType(), e.GetType() != ""
	}
	v, ok := e.GetAttributes()[name]
	if !ok || v.GetAttr() == nil {
		return "", false
	}
	return AttributeString(v), true
}

// timestampString formats ts in UTC (AsTime's zone, which RFC3339Nano writes as "Z"); the
// layout's ".999999999" writes fractional seconds without trailing zeros, and no dot when they
// are zero.
func timestampString(ts *timestamppb.Timestamp) string {
	return ts.AsTime().Format(time.RFC3339Nano)
}

// QuoteGlob returns a listener filter pattern (see EventFilter) that matches exactly s: it
// puts a backslash before each of \ * ? [ ] { } and ",".
func QuoteGlob(s string) string {
	if !strings.ContainsAny(s, `\*?[]{},`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := range len(s) {
		if strings.IndexByte(`\*?[]{},`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
