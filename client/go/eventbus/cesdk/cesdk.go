// Package cesdk converts between eventbus CloudEvents ([eventbusv1.CloudEvent]) and the
// CloudEvents Go SDK's event.Event (github.com/cloudevents/sdk-go/v2/event).
//
// It is a package of its own so that programs that do not use the SDK do not link it (the SDK's
// event package brings json-iterator and modern-go/reflect2 along).
//
// Hazards: the two models do not map one to one.
//
//   - Payload. The SDK keeps encoded bytes plus a DataBase64 flag (the JSON format's data versus
//     data_base64). [ToProto] makes text_data from bytes that are valid UTF-8 and not flagged
//     DataBase64, binary_data otherwise; it never makes proto_data. [ToSDK] sets DataBase64 for
//     binary_data and proto_data. For proto_data the SDK event gets the Any's value bytes and,
//     when datacontenttype is unset, "application/protobuf"; the Any's type URL is dropped.
//   - An empty subject, a zero time and an empty datacontenttype or dataschema read as unset in
//     the SDK, so they are not converted.
//   - SDK extension names may have upper-case letters; the SDK lower-cases them, as eventbus
//     requires.
package cesdk

import (
	"errors"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// ToProto returns the eventbus CloudEvent for an SDK event. It fails for an event without a
// context, with a spec version other than 1.0, or with an extension value of a type the SDK
// does not produce.
func ToProto(e event.Event) (*eventbusv1.CloudEvent, error) {
	if e.Context == nil {
		return nil, errors.New("cesdk: event has no context")
	}
	if v := e.SpecVersion(); v != event.CloudEventsVersionV1 {
		return nil, fmt.Errorf("cesdk: spec version %q is not %s", v, event.CloudEventsVersionV1)
	}
	out := &eventbusv1.CloudEvent{
		Id:          e.ID(),
		Source:      e.Source(),
		SpecVersion: e.SpecVersion(),
		Type:        e.Type(),
		Attributes:  make(map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue),
	}
	set := func(name string, v any) error {
		attr, err := eventbus.NewAttributeValue(v)
		if err != nil {
			return fmt.Errorf("cesdk: attribute %q: %w", name, err)
		}
		out.Attributes[name] = attr
		return nil
	}
	if s := e.Subject(); s != "" {
		if err := set(eventbus.AttributeSubject, s); err != nil {
			return nil, err
		}
	}
	if t := e.Time(); !t.IsZero() {
		if err := set(eventbus.AttributeTime, t); err != nil {
			return nil, err
		}
	}
	if ct := e.DataContentType(); ct != "" {
		if err := set(eventbus.AttributeDataContentType, ct); err != nil {
			return nil, err
		}
	}
	if ds := e.DataSchema(); ds != "" {
		out.Attributes[eventbus.AttributeDataSchema] = uriValue(ds)
	}
	for name, v := range e.Extensions() {
		var err error
		switch v := v.(type) {
		case types.URI:
			out.Attributes[name] = uriValue(v.String())
		case types.URIRef:
			out.Attributes[name] = &eventbusv1.CloudEvent_CloudEventAttributeValue{
				Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef{CeUriRef: v.String()},
			}
		case types.Timestamp:
			err = set(name, v.Time)
		default:
			err = set(name, v)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(out.Attributes) == 0 {
		out.Attributes = nil
	}
	if data := e.DataEncoded; data != nil {
		if !e.DataBase64 && utf8.Valid(data) {
			out.Data = &eventbusv1.CloudEvent_TextData{TextData: string(data)}
		} else {
			out.Data = &eventbusv1.CloudEvent_BinaryData{BinaryData: append([]byte{}, data...)}
		}
	}
	return out, nil
}

// ToSDK returns the SDK event for an eventbus CloudEvent. It fails when the spec version is not
// 1.0, when subject, datacontenttype or dataschema is not a string, time not a timestamp, a URI
// does not parse, or the SDK rejects the result (event.Event.Validate).
func ToSDK(pb *eventbusv1.CloudEvent) (event.Event, error) {
	if v := pb.GetSpecVersion(); v != event.CloudEventsVersionV1 {
		return event.Event{}, fmt.Errorf("cesdk: spec version %q is not %s", v, event.CloudEventsVersionV1)
	}
	e := event.New(event.CloudEventsVersionV1)
	e.SetID(pb.GetId())
	e.SetSource(pb.GetSource())
	e.SetType(pb.GetType())
	for name, attr := range pb.GetAttributes() {
		if err := setAttribute(&e, name, attr); err != nil {
			return event.Event{}, fmt.Errorf("cesdk: attribute %q: %w", name, err)
		}
	}
	switch d := pb.GetData().(type) {
	case *eventbusv1.CloudEvent_TextData:
		e.DataEncoded = []byte(d.TextData)
		e.DataBase64 = false
	case *eventbusv1.CloudEvent_BinaryData:
		e.DataEncoded = append([]byte{}, d.BinaryData...)
		e.DataBase64 = true
	case *eventbusv1.CloudEvent_ProtoData:
		e.DataEncoded = append([]byte{}, d.ProtoData.GetValue()...)
		e.DataBase64 = true
		if e.DataContentType() == "" {
			e.SetDataContentType(eventbus.ContentTypeProtobuf)
		}
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("cesdk: %w", err)
	}
	return e, nil
}

func setAttribute(e *event.Event, name string, attr *eventbusv1.CloudEvent_CloudEventAttributeValue) error {
	switch name {
	case eventbus.AttributeSubject, eventbus.AttributeDataContentType, eventbus.AttributeDataSchema:
		var s string
		switch a := attr.GetAttr().(type) {
		case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeString:
			s = a.CeString
		case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri:
			s = a.CeUri
		default:
			return fmt.Errorf("want a string, got %T", attr.GetAttr())
		}
		switch name {
		case eventbus.AttributeSubject:
			e.SetSubject(s)
		case eventbus.AttributeDataContentType:
			e.SetDataContentType(s)
		default:
			e.SetDataSchema(s)
		}
		return fieldError(e, name)
	case eventbus.AttributeTime:
		ts, ok := attr.GetAttr().(*eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp)
		if !ok {
			return fmt.Errorf("want a timestamp, got %T", attr.GetAttr())
		}
		e.SetTime(ts.CeTimestamp.AsTime())
		return fieldError(e, name)
	}
	v, err := sdkValue(attr)
	if err != nil {
		return err
	}
	e.SetExtension(name, v)
	return fieldError(e, "extension:"+name)
}

// fieldError returns the error the SDK recorded for field by its last setter.
func fieldError(e *event.Event, field string) error {
	return e.FieldErrors[field]
}

// sdkValue returns the SDK's Go value for an attribute value.
func sdkValue(attr *eventbusv1.CloudEvent_CloudEventAttributeValue) (any, error) {
	switch a := attr.GetAttr().(type) {
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeBoolean:
		return a.CeBoolean, nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeInteger:
		return a.CeInteger, nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeString:
		return a.CeString, nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeBytes:
		return append([]byte{}, a.CeBytes...), nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri:
		u, err := url.Parse(a.CeUri)
		if err != nil {
			return nil, err
		}
		return types.URI{URL: *u}, nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeUriRef:
		u, err := url.Parse(a.CeUriRef)
		if err != nil {
			return nil, err
		}
		return types.URIRef{URL: *u}, nil
	case *eventbusv1.CloudEvent_CloudEventAttributeValue_CeTimestamp:
		return types.Timestamp{Time: a.CeTimestamp.AsTime().In(time.UTC)}, nil
	default:
		return nil, errors.New("value has no type set")
	}
}

func uriValue(s string) *eventbusv1.CloudEvent_CloudEventAttributeValue {
	return &eventbusv1.CloudEvent_CloudEventAttributeValue{
		Attr: &eventbusv1.CloudEvent_CloudEventAttributeValue_CeUri{CeUri: s},
	}
}
