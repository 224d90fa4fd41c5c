//! Conversions between the wire types (`eventbus_client::pb`) and the engine's, with the
//! validation of everything a client sends. Violations name the field path as the client
//! wrote it (`events[3].attributes[time]`, `listener.types[1]`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventbus_client::pb;
use eventbus_client::pb::cloud_event::CloudEventAttributeValue;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_engine::store::{DeadLetter, Delivery, Notification, NotificationKind};
use eventbus_engine::{
    AttrValue, Condition, Data, Event, FieldViolation, FilterSet, Listener, ListenerKind, ListenerSpec, ListenerStatus,
    Policy, TraceContext, valid_traceparent,
};

use crate::config::Limits;

pub type Violations = Vec<FieldViolation>;

/// Maximum namespace length in bytes.
pub const MAX_NAMESPACE: usize = 128;

/// Checks a namespace: 1 to 128 bytes of ASCII letters, digits, `-`, `_`, `.`.
pub fn namespace(ns: &str, v: &mut Violations) {
    if ns.is_empty() {
        v.push(FieldViolation::new("namespace", "must not be empty"));
    } else if ns.len() > MAX_NAMESPACE {
        v.push(FieldViolation::new("namespace", format!("must be at most {MAX_NAMESPACE} bytes")));
    } else if !ns.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        v.push(FieldViolation::new("namespace", "may hold only ASCII letters, digits, '-', '_' and '.'"));
    }
}

/// Checks a consumer group name (same rules as a namespace).
pub fn group(name: &str, v: &mut Violations) {
    let mut inner = Vec::new();
    namespace(name, &mut inner);
    v.extend(inner.into_iter().map(|x| FieldViolation::new("consumer_group", x.description)));
}

pub fn finish(v: Violations) -> Result<(), tonic::Status> {
    if v.is_empty() { Ok(()) } else { Err(crate::status::invalid(v)) }
}

pub fn time_from(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).ok()?)
}

pub fn time_to(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

pub fn duration_from(d: &prost_types::Duration) -> Option<Duration> {
    if d.seconds < 0 || d.nanos < 0 {
        return None;
    }
    Some(Duration::new(d.seconds as u64, d.nanos as u32))
}

pub fn duration_to(d: Duration) -> prost_types::Duration {
    prost_types::Duration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

const RESERVED: [&str; 5] = ["id", "source", "specversion", "type", "data"];

fn attr_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn has_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, _)) => {
            !scheme.is_empty()
                && scheme.as_bytes()[0].is_ascii_alphabetic()
                && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        }
        None => false,
    }
}

/// Validates and converts one published event. `call_trace` is the Publish call's context,
/// used unless the event carries a valid `traceparent` attribute. Invalid fields go to `v`,
/// fields over the server's limits (attributes, data size) to `exceeded`.
pub fn event_from(
    i: usize,
    ce: pb::CloudEvent,
    call_trace: &TraceContext,
    limits: &Limits,
    v: &mut Violations,
    exceeded: &mut Violations,
) -> Option<Event> {
    let field = |f: &str| format!("events[{i}].{f}");
    let before = (v.len(), exceeded.len());
    for (name, value, max) in [("id", &ce.id, 256), ("source", &ce.source, 1024), ("type", &ce.r#type, 256)] {
        if value.is_empty() {
            v.push(FieldViolation::new(field(name), "is required"));
        } else if value.len() > max {
            v.push(FieldViolation::new(field(name), format!("must be at most {max} bytes")));
        }
    }
    if ce.spec_version != "1.0" {
        v.push(FieldViolation::new(field("spec_version"), "must be \"1.0\""));
    }
    if ce.attributes.len() > limits.max_attributes {
        exceeded
            .push(FieldViolation::new(field("attributes"), format!("at most {} attributes", limits.max_attributes)));
    }
    let data_len = match &ce.data {
        Some(pb::cloud_event::Data::BinaryData(b)) => b.len(),
        Some(pb::cloud_event::Data::TextData(t)) => t.len(),
        Some(pb::cloud_event::Data::ProtoData(a)) => a.value.len() + a.type_url.len(),
        None => 0,
    };
    if data_len > limits.max_data_bytes {
        exceeded.push(FieldViolation::new(field("data"), format!("at most {} bytes of data", limits.max_data_bytes)));
    }
    let mut subject = None;
    let mut time = None;
    let mut datacontenttype = None;
    let mut dataschema = None;
    let mut extensions = BTreeMap::new();
    let mut own_trace = TraceContext::default();
    for (name, value) in ce.attributes {
        // Named only when it is wrong: valid attributes cost no allocation.
        let f = || field(&format!("attributes[{name}]"));
        if !attr_name_ok(&name) {
            v.push(FieldViolation::new(f(), "attribute names are 1 to 64 lower-case ASCII letters and digits"));
            continue;
        }
        if RESERVED.contains(&name.as_str()) {
            v.push(FieldViolation::new(f(), "shadows a context attribute or the data; use the message field"));
            continue;
        }
        let Some(attr) = value.attr else {
            v.push(FieldViolation::new(f(), "has no value"));
            continue;
        };
        let value = match attr {
            Attr::CeBoolean(b) => AttrValue::Boolean(b),
            Attr::CeInteger(n) => AttrValue::Integer(n),
            Attr::CeString(s) => AttrValue::String(s),
            Attr::CeBytes(b) => AttrValue::Bytes(b),
            Attr::CeUri(s) if has_scheme(&s) => AttrValue::Uri(s),
            Attr::CeUri(_) => {
                v.push(FieldViolation::new(f(), "a ce_uri must be an absolute URI"));
                continue;
            }
            Attr::CeUriRef(s) => AttrValue::UriRef(s),
            Attr::CeTimestamp(ts) => match time_from(&ts) {
                Some(t) => AttrValue::Timestamp(t),
                None => {
                    v.push(FieldViolation::new(f(), "timestamp out of range"));
                    continue;
                }
            },
        };
        match (name.as_str(), value) {
            ("subject", AttrValue::String(s)) => subject = Some(s),
            ("datacontenttype", AttrValue::String(s)) => datacontenttype = Some(s),
            ("time", AttrValue::Timestamp(t)) => time = Some(t),
            ("dataschema", AttrValue::Uri(s)) => dataschema = Some(s),
            ("subject" | "datacontenttype", _) => v.push(FieldViolation::new(f(), "must be a ce_string")),
            ("time", _) => v.push(FieldViolation::new(f(), "must be a ce_timestamp")),
            ("dataschema", _) => v.push(FieldViolation::new(f(), "must be a ce_uri")),
            ("traceparent" | "tracestate", AttrValue::String(s)) => {
                if name == "traceparent" {
                    own_trace.traceparent = s.clone();
                } else {
                    own_trace.tracestate = s.clone();
                }
                extensions.insert(name, AttrValue::String(s));
            }
            ("traceparent" | "tracestate", _) => v.push(FieldViolation::new(f(), "must be a ce_string")),
            (_, value) => {
                extensions.insert(name, value);
            }
        }
    }
    if (v.len(), exceeded.len()) != before {
        return None;
    }
    let trace = if valid_traceparent(&own_trace.traceparent) { own_trace } else { call_trace.clone() };
    let data = ce.data.map(|d| match d {
        pb::cloud_event::Data::BinaryData(b) => Data::Binary(b),
        pb::cloud_event::Data::TextData(t) => Data::Text(t),
        pb::cloud_event::Data::ProtoData(a) => Data::Proto { type_url: a.type_url, value: a.value },
    });
    Some(Event {
        namespace: String::new(),
        sequence: 0,
        id: ce.id,
        source: ce.source,
        specversion: ce.spec_version,
        event_type: ce.r#type,
        subject,
        time,
        datacontenttype,
        dataschema,
        extensions,
        data,
        // Set by the store when it stores the event.
        received_at: DateTime::UNIX_EPOCH,
        trace,
    })
}

fn attr(a: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(a) }
}

/// Returns the wire form of a stored event.
pub fn event_to(e: Event) -> pb::CloudEvent {
    let mut attributes = std::collections::HashMap::new();
    if let Some(s) = e.subject {
        attributes.insert("subject".to_owned(), attr(Attr::CeString(s)));
    }
    if let Some(t) = e.time {
        attributes.insert("time".to_owned(), attr(Attr::CeTimestamp(time_to(t))));
    }
    if let Some(s) = e.datacontenttype {
        attributes.insert("datacontenttype".to_owned(), attr(Attr::CeString(s)));
    }
    if let Some(s) = e.dataschema {
        attributes.insert("dataschema".to_owned(), attr(Attr::CeUri(s)));
    }
    for (name, value) in e.extensions {
        let a = match value {
            AttrValue::Boolean(b) => Attr::CeBoolean(b),
            AttrValue::Integer(n) => Attr::CeInteger(n),
            AttrValue::String(s) => Attr::CeString(s),
            AttrValue::Bytes(b) => Attr::CeBytes(b),
            AttrValue::Uri(s) => Attr::CeUri(s),
            AttrValue::UriRef(s) => Attr::CeUriRef(s),
            AttrValue::Timestamp(t) => Attr::CeTimestamp(time_to(t)),
        };
        attributes.insert(name, attr(a));
    }
    pb::CloudEvent {
        id: e.id,
        source: e.source,
        spec_version: e.specversion,
        r#type: e.event_type,
        attributes,
        data: e.data.map(|d| match d {
            Data::Binary(b) => pb::cloud_event::Data::BinaryData(b),
            Data::Text(t) => pb::cloud_event::Data::TextData(t),
            Data::Proto { type_url, value } => pb::cloud_event::Data::ProtoData(prost_types::Any { type_url, value }),
        }),
    }
}

pub fn stored_event_to(e: Event) -> pb::StoredEvent {
    pb::StoredEvent {
        sequence: e.sequence,
        receive_time: Some(time_to(e.received_at)),
        traceparent: e.trace.traceparent.clone(),
        tracestate: e.trace.tracestate.clone(),
        event: Some(event_to(e)),
    }
}

/// Validates and converts a listener spec; field paths start with `listener.`.
pub fn spec_from(spec: Option<pb::ListenerSpec>, v: &mut Violations) -> Option<ListenerSpec> {
    let Some(s) = spec else {
        v.push(FieldViolation::new("listener", "is required"));
        return None;
    };
    let before = v.len();
    let f = |name: &str| format!("listener.{name}");
    let kind = match pb::ListenerKind::try_from(s.kind) {
        Ok(pb::ListenerKind::Start) => Some(ListenerKind::Start),
        Ok(pb::ListenerKind::Wait) => Some(ListenerKind::Wait),
        _ => {
            v.push(FieldViolation::new(f("kind"), "must be START or WAIT"));
            None
        }
    };
    let condition = match pb::ListenerCondition::try_from(s.condition) {
        Ok(pb::ListenerCondition::One) => Some(Condition::One),
        Ok(pb::ListenerCondition::Any) => Some(Condition::Any),
        Ok(pb::ListenerCondition::All) => Some(Condition::All),
        _ => {
            v.push(FieldViolation::new(f("condition"), "must be ONE, ANY or ALL"));
            None
        }
    };
    let target = match kind {
        Some(ListenerKind::Start) => {
            if !s.instance_id.is_empty() {
                v.push(FieldViolation::new(f("instance_id"), "only allowed with kind WAIT"));
            }
            s.workflow_id
        }
        Some(ListenerKind::Wait) => {
            if !s.workflow_id.is_empty() {
                v.push(FieldViolation::new(f("workflow_id"), "only allowed with kind START"));
            }
            s.instance_id
        }
        None => String::new(),
    };
    let policy = match pb::ConsumptionPolicy::try_from(s.policy) {
        Ok(pb::ConsumptionPolicy::Unspecified) => None,
        Ok(pb::ConsumptionPolicy::First) => Some(Policy::First),
        Ok(pb::ConsumptionPolicy::Latest) => Some(Policy::Latest),
        Err(_) => {
            v.push(FieldViolation::new(f("policy"), "unknown policy"));
            None
        }
    };
    let lifespan = match s.lifespan.as_ref().map(duration_from) {
        None => None,
        Some(Some(d)) => Some(d),
        Some(None) => {
            v.push(FieldViolation::new(f("lifespan"), "must not be negative"));
            None
        }
    };
    let deadline = match s.deadline.as_ref().map(time_from) {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => {
            v.push(FieldViolation::new(f("deadline"), "timestamp out of range"));
            None
        }
    };
    let filters = s
        .filters
        .into_iter()
        .map(|e| FilterSet { event_type: e.r#type, attributes: e.attributes.into_iter().collect() })
        .collect();
    let (Some(kind), Some(condition)) = (kind, condition) else { return None };
    let spec = ListenerSpec {
        kind,
        target,
        condition,
        types: s.types,
        filters,
        lifespan,
        correlate_by: s.correlate_by,
        policy,
        deadline,
    };
    if let Err(eventbus_engine::Error::InvalidArgument(inner)) = spec.validate() {
        v.extend(inner.into_iter().map(|x| x.prefixed("listener")));
    }
    (v.len() == before).then_some(spec)
}

pub fn spec_to(s: ListenerSpec) -> pb::ListenerSpec {
    let (workflow_id, instance_id, kind) = match s.kind {
        ListenerKind::Start => (s.target, String::new(), pb::ListenerKind::Start),
        ListenerKind::Wait => (String::new(), s.target, pb::ListenerKind::Wait),
    };
    pb::ListenerSpec {
        kind: kind as i32,
        workflow_id,
        instance_id,
        condition: match s.condition {
            Condition::One => pb::ListenerCondition::One,
            Condition::Any => pb::ListenerCondition::Any,
            Condition::All => pb::ListenerCondition::All,
        } as i32,
        types: s.types,
        filters: s
            .filters
            .into_iter()
            .map(|f| pb::EventFilter { r#type: f.event_type, attributes: f.attributes.into_iter().collect() })
            .collect(),
        lifespan: s.lifespan.map(duration_to),
        correlate_by: s.correlate_by,
        policy: match s.policy {
            None => pb::ConsumptionPolicy::Unspecified,
            Some(Policy::First) => pb::ConsumptionPolicy::First,
            Some(Policy::Latest) => pb::ConsumptionPolicy::Latest,
        } as i32,
        deadline: s.deadline.map(time_to),
    }
}

pub fn listener_to(l: Listener, request_id: Option<String>) -> pb::Listener {
    let (status, fire_id, finish) = match l.status {
        ListenerStatus::Active => (pb::ListenerStatus::Active, String::new(), None),
        ListenerStatus::Fired { fire_id, at } => (pb::ListenerStatus::Fired, fire_id.to_string(), Some(time_to(at))),
        ListenerStatus::TimedOut { fire_id, at } => {
            (pb::ListenerStatus::TimedOut, fire_id.to_string(), Some(time_to(at)))
        }
    };
    pb::Listener {
        id: l.id.to_string(),
        namespace: l.namespace,
        spec: Some(spec_to(l.spec)),
        status: status as i32,
        fire_id,
        create_time: Some(time_to(l.created_at)),
        finish_time: finish,
        request_id: request_id.unwrap_or_default(),
    }
}

pub fn kind_from(k: i32) -> Option<NotificationKind> {
    match pb::NotificationKind::try_from(k) {
        Ok(pb::NotificationKind::Start) => Some(NotificationKind::Start),
        Ok(pb::NotificationKind::Wake) => Some(NotificationKind::Wake),
        Ok(pb::NotificationKind::Timeout) => Some(NotificationKind::Timeout),
        _ => None,
    }
}

pub fn notification_to(n: Notification, group: &str, attempt: u32) -> pb::Notification {
    let kind = match n.kind {
        NotificationKind::Start => pb::NotificationKind::Start,
        NotificationKind::Wake => pb::NotificationKind::Wake,
        NotificationKind::Timeout => pb::NotificationKind::Timeout,
    };
    let (workflow_id, instance_id) = match n.kind {
        NotificationKind::Start => (n.target, String::new()),
        _ => (String::new(), n.target),
    };
    pb::Notification {
        fire_id: n.fire_id.to_string(),
        sequence: n.sequence,
        kind: kind as i32,
        listener_id: n.listener_id.to_string(),
        workflow_id,
        instance_id,
        correlation: n.correlation.into_iter().collect(),
        events: n.events.into_iter().map(event_to).collect(),
        event_sequences: n.event_sequences,
        attempt,
        create_time: Some(time_to(n.created_at)),
        traceparent: n.trace.traceparent,
        tracestate: n.trace.tracestate,
        consumer_group: group.to_owned(),
    }
}

pub fn delivery_to(d: Delivery) -> pb::Notification {
    notification_to(d.notification, &d.group, d.attempt)
}

pub fn dead_letter_to(d: DeadLetter, group: &str) -> pb::DeadLetter {
    pb::DeadLetter {
        notification: Some(notification_to(d.notification, group, d.attempt)),
        last_error: d.last_error,
        dead_time: Some(time_to(d.dead_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_schemes() {
        assert!(has_scheme("https://acme.io/x"));
        assert!(has_scheme("urn:isbn:1"));
        assert!(!has_scheme("/relative"));
        assert!(!has_scheme("1http://x"));
    }
}
