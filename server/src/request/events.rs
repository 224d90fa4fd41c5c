//! Publish, GetEvent and ListEvents requests, and the rules of a CloudEvent (`cloudevent.proto`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use eventbus_client::pb;
use eventbus_client::pb::cloud_event::CloudEventAttributeValue;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_engine::event::is_reserved_attribute;
use eventbus_engine::store::{EventKey, EventQuery};
use eventbus_engine::{AttrValue, Data, Event, TraceContext, valid_traceparent};

use super::uri::{is_absolute_uri, is_uri_reference};
use super::{Combine, FromProto, Violations, all, ensure, namespace, opt, page_size, required, timestamp};
use crate::config::Limits;
use crate::limits::{
    MAX_ATTRIBUTE_NAME_BYTES, MAX_EVENT_ID_BYTES, MAX_EVENT_TYPE_BYTES, MAX_SOURCE_BYTES, SPEC_VERSION,
};

/// A checked Publish: events as the store takes them. An event's trace context is its own
/// valid `traceparent` attribute, or empty (the handler then gives it the call's).
#[derive(Debug)]
pub struct Publish {
    pub namespace: String,
    pub events: Vec<Event>,
}

impl FromProto<pb::PublishRequest> for Publish {
    fn from_proto(req: pb::PublishRequest, limits: &Limits) -> Result<Self, Violations> {
        let (max, n) = (limits.max_events_per_publish, req.events.len());
        let events = ensure((1..=max).contains(&n), "events", || format!("must hold 1 to {max} events, not {n}"))
            .and_then(|()| {
                all(req
                    .events
                    .into_iter()
                    .enumerate()
                    .map(|(i, e)| event(e, limits).map_err(|v| v.prefixed(&format!("events[{i}]")))))
            });
        let (namespace, events) = (namespace(req.namespace), events).combine()?;
        Ok(Self { namespace, events })
    }
}

/// Checks and converts one published event; field paths are relative to the event.
fn event(ce: pb::CloudEvent, limits: &Limits) -> Result<Event, Violations> {
    let spec_version = ensure(ce.spec_version == SPEC_VERSION, "spec_version", || format!("must be {SPEC_VERSION:?}"));
    let source = required("source", ce.source, MAX_SOURCE_BYTES).and_then(|s| {
        ensure(is_uri_reference(&s), "source", || "must be a URI reference (RFC 3986)".into())?;
        Ok(s)
    });
    let (id, source, event_type, (), attributes, data) = (
        required("id", ce.id, MAX_EVENT_ID_BYTES),
        source,
        required("type", ce.r#type, MAX_EVENT_TYPE_BYTES),
        spec_version,
        attributes(ce.attributes, limits),
        data(ce.data, limits),
    )
        .combine()?;
    let trace =
        if valid_traceparent(&attributes.trace.traceparent) { attributes.trace } else { TraceContext::default() };
    Ok(Event {
        namespace: String::new(),
        sequence: 0,
        id,
        source,
        specversion: ce.spec_version,
        event_type,
        subject: attributes.subject,
        time: attributes.time,
        datacontenttype: attributes.datacontenttype,
        dataschema: attributes.dataschema,
        extensions: attributes.extensions,
        data,
        // Set by the store when it stores the event.
        received_at: DateTime::UNIX_EPOCH,
        trace,
    })
}

/// The optional and extension attributes of an event, each in its place.
#[derive(Debug, Default)]
struct Attributes {
    subject: Option<String>,
    time: Option<DateTime<Utc>>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: BTreeMap<String, AttrValue>,
    /// The event's own `traceparent` and `tracestate` (also kept as extensions).
    trace: TraceContext,
}

fn attributes(map: HashMap<String, CloudEventAttributeValue>, limits: &Limits) -> Result<Attributes, Violations> {
    let max = limits.max_attributes;
    if map.len() > max {
        return Err(Violations::exceeded("attributes", format!("at most {max} attributes")));
    }
    let checked = all(map.into_iter().map(|(name, value)| match attribute(&name, value) {
        Ok(value) => Ok((name, value)),
        Err(description) => Err(Violations::invalid(format!("attributes[{name}]"), description)),
    }));
    let checked = checked.map_err(|mut v| {
        // The map's order is random; the client sees its violations in name order.
        v.invalid.sort_by(|a, b| a.field.cmp(&b.field));
        v
    })?;
    let mut a = Attributes::default();
    for (name, value) in checked {
        match (name.as_str(), value) {
            ("subject", AttrValue::String(s)) => a.subject = Some(s),
            ("datacontenttype", AttrValue::String(s)) => a.datacontenttype = Some(s),
            ("time", AttrValue::Timestamp(t)) => a.time = Some(t),
            ("dataschema", AttrValue::Uri(s)) => a.dataschema = Some(s),
            (_, value) => {
                match (name.as_str(), &value) {
                    ("traceparent", AttrValue::String(s)) => a.trace.traceparent = s.clone(),
                    ("tracestate", AttrValue::String(s)) => a.trace.tracestate = s.clone(),
                    _ => {}
                }
                a.extensions.insert(name, value);
            }
        }
    }
    Ok(a)
}

/// Checks one attribute: its name, that it has a value, the value itself and the type its name
/// requires. Returns the description of what is wrong.
fn attribute(name: &str, value: CloudEventAttributeValue) -> Result<AttrValue, String> {
    let name_ok = (1..=MAX_ATTRIBUTE_NAME_BYTES).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !name_ok {
        return Err(format!("attribute names are 1 to {MAX_ATTRIBUTE_NAME_BYTES} lower-case ASCII letters and digits"));
    }
    if is_reserved_attribute(name) {
        return Err("shadows a context attribute or the data; use the message field".into());
    }
    let value = match value.attr.ok_or("has no value")? {
        Attr::CeBoolean(b) => AttrValue::Boolean(b),
        Attr::CeInteger(n) => AttrValue::Integer(n),
        Attr::CeString(s) => AttrValue::String(s),
        Attr::CeBytes(b) => AttrValue::Bytes(b),
        Attr::CeUri(s) if is_absolute_uri(&s) => AttrValue::Uri(s),
        Attr::CeUri(_) => return Err("a ce_uri must be an absolute URI (RFC 3986)".into()),
        Attr::CeUriRef(s) if is_uri_reference(&s) => AttrValue::UriRef(s),
        Attr::CeUriRef(_) => return Err("a ce_uri_ref must be a URI reference (RFC 3986)".into()),
        Attr::CeTimestamp(ts) => AttrValue::Timestamp(timestamp("", &ts).map_err(|_| timestamp_range())?),
    };
    let required_type = match name {
        "subject" | "datacontenttype" | "traceparent" | "tracestate" => {
            Some(("ce_string", matches!(value, AttrValue::String(_))))
        }
        "time" => Some(("ce_timestamp", matches!(value, AttrValue::Timestamp(_)))),
        "dataschema" => Some(("ce_uri", matches!(value, AttrValue::Uri(_)))),
        _ => None,
    };
    match required_type {
        Some((t, false)) => Err(format!("must be a {t}")),
        _ => Ok(value),
    }
}

fn timestamp_range() -> String {
    "must be a timestamp from year 1 to year 9999".into()
}

fn data(data: Option<pb::cloud_event::Data>, limits: &Limits) -> Result<Option<Data>, Violations> {
    let data = data.map(|d| match d {
        pb::cloud_event::Data::BinaryData(b) => Data::Binary(b),
        pb::cloud_event::Data::TextData(t) => Data::Text(t),
        pb::cloud_event::Data::ProtoData(a) => Data::Proto { type_url: a.type_url, value: a.value },
    });
    let len = match &data {
        Some(Data::Binary(b)) => b.len(),
        Some(Data::Text(t)) => t.len(),
        Some(Data::Proto { type_url, value }) => type_url.len() + value.len(),
        None => 0,
    };
    let max = limits.max_data_bytes;
    if len > max {
        return Err(Violations::exceeded("data", format!("at most {max} bytes of data")));
    }
    Ok(data)
}

/// A checked GetEvent.
#[derive(Debug)]
pub struct GetEvent {
    pub namespace: String,
    pub key: EventKey,
}

impl FromProto<pb::GetEventRequest> for GetEvent {
    fn from_proto(req: pb::GetEventRequest, _: &Limits) -> Result<Self, Violations> {
        use pb::get_event_request::Key;
        let key = match req.key {
            Some(Key::Sequence(0)) => Err(Violations::invalid("sequence", "must be at least 1")),
            Some(Key::Sequence(s)) => Ok(EventKey::Sequence(s)),
            Some(Key::SourceId(k)) => source_id(k),
            None => Err(Violations::invalid("key", "set sequence or source_id")),
        };
        let (namespace, key) = (namespace(req.namespace), key).combine()?;
        Ok(Self { namespace, key })
    }
}

/// Checks an event's CloudEvents identity, the field `source_id` of a request.
pub(super) fn source_id(k: pb::EventKey) -> Result<EventKey, Violations> {
    let source = required("source_id.source", k.source, MAX_SOURCE_BYTES);
    let id = required("source_id.id", k.id, MAX_EVENT_ID_BYTES);
    (source, id).combine().map(|(source, id)| EventKey::SourceId { source, id })
}

/// A checked ListEvents.
#[derive(Debug)]
pub struct ListEvents {
    pub namespace: String,
    pub query: EventQuery,
}

impl FromProto<pb::ListEventsRequest> for ListEvents {
    fn from_proto(req: pb::ListEventsRequest, _: &Limits) -> Result<Self, Violations> {
        let start = req.start_time.map(|t| timestamp("start_time", &t)).transpose();
        let end = req.end_time.map(|t| timestamp("end_time", &t)).transpose();
        let order = match (&start, &end) {
            (Ok(Some(s)), Ok(Some(e))) => ensure(e > s, "end_time", || "must be after start_time".into()),
            _ => Ok(()),
        };
        let (namespace, page_size, start, end, ()) =
            (namespace(req.namespace), page_size(req.page_size), start, end, order).combine()?;
        let query = EventQuery {
            event_type: opt(req.r#type),
            source: opt(req.source),
            subject: opt(req.subject),
            start,
            end,
            after_sequence: (req.after_sequence > 0).then_some(req.after_sequence),
            page_size,
            page_token: opt(req.page_token),
        };
        Ok(Self { namespace, query })
    }
}

#[cfg(test)]
#[path = "events/tests.rs"]
mod tests;
