package eventbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

// SpecVersion is the CloudEvents specification version every event carries.
const SpecVersion = "1.0"

// Content types the builder sets.
const (
	ContentTypeJSON     = "application/json"
	ContentTypeProtobuf = "application/protobuf"
)

// Names of the optional context attributes, which travel in CloudEvent.Attributes.
const (
	AttributeSubject         = "subject"
	AttributeTime            = "time"
	AttributeDataContentType = "datacontenttype"
	AttributeDataSchema      = "dataschema"
	AttributeTraceparent     = "traceparent"
	AttributeTracestate      = "tracestate"
)

// EventBuilder builds an [eventbusv1.CloudEvent]; start one with [NewEvent].
//
// The builder records the first error of a With method (a value WithJSON cannot encode, an
// invalid extension name or value, text that is not UTF-8) and ignores the calls after it;
// [EventBuilder.Err] returns it and [EventBuilder.Build] then returns nil. It validates no more
// than that: the server answers INVALID_ARGUMENT for the rest (see the CloudEvent message).
type EventBuilder struct {
	event *eventbusv1.CloudEvent
	err   error
}

// NewEvent starts an event with its source (a URI reference, such as "/shop/orders") and type
// (such as "order.created"). Unless [EventBuilder.WithID] sets one, [EventBuilder.Build] gives
// the event a fresh UUIDv7 id: ids come from producers, never from the server, so that a retried
// Publish is recognised as a duplicate. Retry with the built event, not by building again.
func NewEvent(source, eventType string) *EventBuilder {
	return &EventBuilder{event: &eventbusv1.CloudEvent{
		Source:      source,
		SpecVersion: SpecVersion,
		Type:        eventType,
	}}
}

// WithID sets the event id instead of a generated UUIDv7.
func (b *EventBuilder) WithID(id string) *EventBuilder {
	if b.err == nil {
		b.event.Id = id
	}
	return b
}

// WithSubject sets the subject attribute.
func (b *EventBuilder) WithSubject(subject string) *EventBuilder {
	return b.set(AttributeSubject, subject)
}

// WithTime sets the time attribute: when the occurrence happened.
func (b *EventBuilder) WithTime(t time.Time) *EventBuilder {
	return b.set(AttributeTime, t)
}

// WithJSON encodes v with encoding/json as the text payload and sets datacontenttype to
// application/json.
func (b *EventBuilder) WithJSON(v any) *EventBuilder {
	if b.err != nil {
		return b
	}
	text, err := json.Marshal(v)
	if err != nil {
		b.err = fmt.Errorf("eventbus: encoding the JSON payload: %w", err)
		return b
	}
	return b.data(ContentTypeJSON, &eventbusv1.CloudEvent_TextData{TextData: string(text)})
}

// WithText sets a text payload, which must be UTF-8, and its datacontenttype (such as
// "text/plain"); an empty contentType leaves datacontenttype unset.
func (b *EventBuilder) WithText(contentType, text string) *EventBuilder {
	if b.err == nil && !utf8.ValidString(text) {
		b.err = errors.New("eventbus: text payload is not valid UTF-8")
	}
	return b.data(contentType, &eventbusv1.CloudEvent_TextData{TextData: text})
}

// WithBinary sets a binary payload (copied) and its datacontenttype (such as
// "application/octet-stream"); an empty contentType leaves datacontenttype unset.
func (b *EventBuilder) WithBinary(contentType string, data []byte) *EventBuilder {
	return b.data(contentType, &eventbusv1.CloudEvent_BinaryData{BinaryData: append([]byte{}, data...)})
}

// WithProto packs m into the protobuf payload (a google.protobuf.Any, which carries the type
// URL) and sets datacontenttype to application/protobuf.
func (b *EventBuilder) WithProto(m proto.Message) *EventBuilder {
	if b.err != nil {
		return b
	}
	packed, err := anypb.New(m)
	if err != nil {
		b.err = fmt.Errorf("eventbus: packing the protobuf payload: %w", err)
		return b
	}
	return b.data(ContentTypeProtobuf, &eventbusv1.CloudEvent_ProtoData{ProtoData: packed})
}

// WithExtension sets an extension attribute, replacing an earlier value of the same name.
// The name must be 1 to 64 characters of [a-z0-9] and not id, source, specversion, type or data.
// The value's Go type picks the CloudEvents type, see [NewAttributeValue]: string, bool, int32
// (and other integers that fit), []byte, time.Time, *url.URL (absolute: URI, otherwise
// URI-reference).
//
// WithExtension can set the optional attributes too (such as dataschema with an absolute
// *url.URL, or traceparent with a string), with the types the server demands for them.
func (b *EventBuilder) WithExtension(name string, value any) *EventBuilder {
	if b.err == nil {
		if err := checkAttributeName(name); err != nil {
			b.err = err
			return b
		}
	}
	return b.set(name, value)
}

// Err returns the first error of the With calls, or nil.
func (b *EventBuilder) Err() error {
	return b.err
}

// Build returns the event, or nil when a With call failed (see [EventBuilder.Err]). Each call
// returns a new copy; without [EventBuilder.WithID], each has a new id.
func (b *EventBuilder) Build() *eventbusv1.CloudEvent {
	if b.err != nil {
		return nil
	}
	event := proto.CloneOf(b.event)
	if event.Id == "" {
		event.Id = newID()
	}
	return event
}

func (b *EventBuilder) data(contentType string, data any) *EventBuilder {
	if b.err != nil {
		return b
	}
	switch d := data.(type) {
	case *eventbusv1.CloudEvent_TextData:
		b.event.Data = d
	case *eventbusv1.CloudEvent_BinaryData:
		b.event.Data = d
	case *eventbusv1.CloudEvent_ProtoData:
		b.event.Data = d
	}
	if contentType == "" {
		delete(b.event.Attributes, AttributeDataContentType)
		return b
	}
	return b.set(AttributeDataContentType, contentType)
}

func (b *EventBuilder) set(name string, value any) *EventBuilder {
	if b.err != nil {
		return b
	}
	attr, err := NewAttributeValue(value)
	if err != nil {
		b.err = fmt.Errorf("eventbus: attribute %q: %w", name, err)
		return b
	}
	if b.event.Attributes == nil {
		b.event.Attributes = make(map[string]*eventbusv1.CloudEvent_CloudEventAttributeValue)
	}
	b.event.Attributes[name] = attr
	return b
}

// checkAttributeName returns an error unless name may be a key of CloudEvent.Attributes.
func checkAttributeName(name string) error {
	switch name {
	case "id", "source", "specversion", "type", "data":
		return fmt.Errorf("eventbus: %q cannot be an extension attribute", name)
	}
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("eventbus: extension name %q must be 1 to 64 characters", name)
	}
	for _, c := range []byte(name) {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return fmt.Errorf("eventbus: extension name %q may only hold a-z and 0-9", name)
		}
	}
	return nil
}
