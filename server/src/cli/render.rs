//! How the CLI shows wire messages: JSON objects for `--json` (events in the CloudEvents JSON
//! format, enums as lower-case names, times as RFC 3339, durations as `"600s"`), and short text
//! for people.

use base64::Engine as _;
use eventbus_client::pb::cloud_event::Data;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use eventbus_client::{AttributeValue, pb};
use serde_json::{Map, Value, json};

/// Returns a protobuf timestamp in the canonical form of timestamp attributes: RFC 3339 in UTC,
/// without trailing fractional zeros (`2026-11-22T10:00:00.25Z`), so that every time the CLI
/// shows can be pasted into a filter.
pub fn time(ts: &prost_types::Timestamp) -> String {
    AttributeValue::Timestamp(*ts).canonical_string()
}

fn opt_time(ts: Option<&prost_types::Timestamp>) -> Value {
    ts.map_or(Value::Null, |t| Value::String(time(t)))
}

/// Returns a protobuf duration the way the protobuf JSON mapping writes it: `"600s"`, `"1.5s"`.
pub fn duration(d: &prost_types::Duration) -> String {
    if d.nanos == 0 {
        format!("{}s", d.seconds)
    } else {
        let frac = format!("{:09}", d.nanos.unsigned_abs());
        format!("{}.{}s", d.seconds, frac.trim_end_matches('0'))
    }
}

/// Returns an attribute value's canonical string (see `CloudEvent` in the proto), or an empty
/// string for a value with no type set.
pub fn attribute_text(value: &pb::cloud_event::CloudEventAttributeValue) -> String {
    AttributeValue::from_proto(value).map(|v| v.canonical_string()).unwrap_or_default()
}

fn attribute_json(value: &pb::cloud_event::CloudEventAttributeValue) -> Value {
    match &value.attr {
        Some(Attr::CeBoolean(b)) => Value::Bool(*b),
        Some(Attr::CeInteger(n)) => Value::from(*n),
        _ => Value::String(attribute_text(value)),
    }
}

fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Returns an event in the CloudEvents JSON format: the context attributes at the top level,
/// JSON payloads as `data` values, other text as a `data` string, binary as `data_base64`.
/// Protobuf payloads, which that format lacks, become `data_proto` with `type_url` and
/// `value_base64`.
pub fn event_json(event: &pb::CloudEvent) -> Value {
    let mut obj = Map::new();
    obj.insert("specversion".into(), Value::String(event.spec_version.clone()));
    obj.insert("id".into(), Value::String(event.id.clone()));
    obj.insert("source".into(), Value::String(event.source.clone()));
    obj.insert("type".into(), Value::String(event.r#type.clone()));
    let mut names: Vec<&String> = event.attributes.keys().collect();
    names.sort();
    for name in names {
        obj.insert(name.clone(), attribute_json(&event.attributes[name]));
    }
    let content_type = event.attributes.get("datacontenttype").map(attribute_text).unwrap_or_default();
    let b64 = &base64::engine::general_purpose::STANDARD;
    match &event.data {
        Some(Data::TextData(text)) => {
            let value = is_json_media_type(&content_type)
                .then(|| serde_json::from_str::<Value>(text).ok())
                .flatten()
                .unwrap_or_else(|| Value::String(text.clone()));
            obj.insert("data".into(), value);
        }
        Some(Data::BinaryData(bytes)) => {
            obj.insert("data_base64".into(), Value::String(b64.encode(bytes)));
        }
        Some(Data::ProtoData(any)) => {
            obj.insert(
                "data_proto".into(),
                json!({ "type_url": any.type_url, "value_base64": b64.encode(&any.value) }),
            );
        }
        None => {}
    }
    Value::Object(obj)
}

/// Returns a stored event: `sequence`, `receive_time`, trace context and the `event`.
pub fn stored_event_json(stored: &pb::StoredEvent) -> Value {
    json!({
        "sequence": stored.sequence,
        "receive_time": opt_time(stored.receive_time.as_ref()),
        "traceparent": stored.traceparent,
        "tracestate": stored.tracestate,
        "event": stored.event.as_ref().map_or(Value::Null, event_json),
    })
}

pub fn listener_kind(kind: pb::ListenerKind) -> &'static str {
    match kind {
        pb::ListenerKind::Start => "start",
        pb::ListenerKind::Wait => "wait",
        pb::ListenerKind::Unspecified => "unspecified",
    }
}

pub fn condition(condition: pb::ListenerCondition) -> &'static str {
    match condition {
        pb::ListenerCondition::One => "one",
        pb::ListenerCondition::Any => "any",
        pb::ListenerCondition::All => "all",
        pb::ListenerCondition::Unspecified => "unspecified",
    }
}

pub fn policy(policy: pb::ConsumptionPolicy) -> &'static str {
    match policy {
        pb::ConsumptionPolicy::First => "first",
        pb::ConsumptionPolicy::Latest => "latest",
        pb::ConsumptionPolicy::Unspecified => "unspecified",
    }
}

pub fn status(status: pb::ListenerStatus) -> &'static str {
    match status {
        pb::ListenerStatus::Active => "active",
        pb::ListenerStatus::Fired => "fired",
        pb::ListenerStatus::TimedOut => "timed_out",
        pb::ListenerStatus::Unspecified => "unspecified",
    }
}

pub fn notification_kind(kind: pb::NotificationKind) -> &'static str {
    match kind {
        pb::NotificationKind::Start => "start",
        pb::NotificationKind::Wake => "wake",
        pb::NotificationKind::Timeout => "timeout",
        pb::NotificationKind::Unspecified => "unspecified",
    }
}

fn filters_json(filters: &[pb::EventFilter]) -> Value {
    Value::Array(
        filters
            .iter()
            .map(|f| {
                let mut attrs: Vec<(&String, &String)> = f.attributes.iter().collect();
                attrs.sort();
                let attrs: Map<String, Value> =
                    attrs.into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                let mut filter = json!({ "type": f.r#type, "attributes": attrs });
                if !f.condition.is_empty() {
                    filter["condition"] = Value::String(f.condition.clone());
                }
                filter
            })
            .collect(),
    )
}

/// Returns a listener with its spec inlined.
pub fn listener_json(listener: &pb::Listener) -> Value {
    let spec = listener.spec.clone().unwrap_or_default();
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(listener.id.clone()));
    obj.insert("namespace".into(), Value::String(listener.namespace.clone()));
    obj.insert("kind".into(), Value::String(listener_kind(spec.kind()).into()));
    match spec.kind() {
        pb::ListenerKind::Wait => obj.insert("instance_id".into(), Value::String(spec.instance_id.clone())),
        _ => obj.insert("workflow_id".into(), Value::String(spec.workflow_id.clone())),
    };
    obj.insert("condition".into(), Value::String(condition(spec.condition()).into()));
    obj.insert("types".into(), json!(spec.types));
    obj.insert("filters".into(), filters_json(&spec.filters));
    if spec.condition() == pb::ListenerCondition::All {
        obj.insert("correlate_by".into(), json!(spec.correlate_by));
        obj.insert("policy".into(), Value::String(policy(spec.policy()).into()));
        obj.insert("lifespan".into(), spec.lifespan.as_ref().map_or(Value::Null, |d| Value::String(duration(d))));
    }
    if spec.kind() == pb::ListenerKind::Wait {
        obj.insert("deadline".into(), opt_time(spec.deadline.as_ref()));
    }
    obj.insert("status".into(), Value::String(status(listener.status()).into()));
    obj.insert("fire_id".into(), Value::String(listener.fire_id.clone()));
    obj.insert("create_time".into(), opt_time(listener.create_time.as_ref()));
    obj.insert("finish_time".into(), opt_time(listener.finish_time.as_ref()));
    obj.insert("request_id".into(), Value::String(listener.request_id.clone()));
    Value::Object(obj)
}

/// Returns a notification with its events in the CloudEvents JSON format; their stored
/// sequences are in `event_sequences`, index for index.
pub fn notification_json(n: &pb::Notification) -> Value {
    let mut correlation: Vec<(&String, &String)> = n.correlation.iter().collect();
    correlation.sort();
    let correlation: Map<String, Value> =
        correlation.into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "sequence": n.sequence,
        "kind": notification_kind(n.kind()),
        "fire_id": n.fire_id,
        "listener_id": n.listener_id,
        "workflow_id": n.workflow_id,
        "instance_id": n.instance_id,
        "consumer_group": n.consumer_group,
        "attempt": n.attempt,
        "create_time": opt_time(n.create_time.as_ref()),
        "correlation": correlation,
        "event_sequences": n.event_sequences,
        "events": n.events.iter().map(event_json).collect::<Vec<_>>(),
        "traceparent": n.traceparent,
        "tracestate": n.tracestate,
    })
}

/// Returns what a listener does, for people: `start invoice-flow` or `wait inst-7`.
pub fn listener_target(spec: &pb::ListenerSpec) -> String {
    match spec.kind() {
        pb::ListenerKind::Wait => format!("wait {}", spec.instance_id),
        _ => format!("start {}", spec.workflow_id),
    }
}

/// Returns a listener's condition, for people: `one t`, `all a,b`.
pub fn listener_condition(spec: &pb::ListenerSpec) -> String {
    format!("{} {}", condition(spec.condition()), spec.types.join(","))
}

/// Returns filter sets, for people, in the `--filter` syntax: `t:region=eu-*&subject=x`.
pub fn filters_text(filters: &[pb::EventFilter]) -> Vec<String> {
    filters
        .iter()
        .map(|f| {
            let mut attrs: Vec<(&String, &String)> = f.attributes.iter().collect();
            attrs.sort();
            let clauses: Vec<String> =
                attrs.into_iter().map(|(k, v)| format!("{k}={}", v.replace('&', r"\&"))).collect();
            match f.condition.as_str() {
                "" => format!("{}:{}", f.r#type, clauses.join("&")),
                condition => format!("{}:{} where {condition}", f.r#type, clauses.join("&")),
            }
        })
        .collect()
}

/// Returns a listener as `key: value` lines.
pub fn listener_text(listener: &pb::Listener) -> String {
    let spec = listener.spec.clone().unwrap_or_default();
    let mut lines = vec![
        format!("id:          {}", listener.id),
        format!("namespace:   {}", listener.namespace),
        format!("action:      {}", listener_target(&spec)),
        format!("condition:   {}", listener_condition(&spec)),
    ];
    for f in filters_text(&spec.filters) {
        lines.push(format!("filter:      {f}"));
    }
    if spec.condition() == pb::ListenerCondition::All {
        if !spec.correlate_by.is_empty() {
            lines.push(format!("correlate:   {}", spec.correlate_by.join(",")));
        }
        lines.push(format!("policy:      {}", policy(spec.policy())));
        if let Some(d) = &spec.lifespan {
            let text = match (u64::try_from(d.seconds), u32::try_from(d.nanos)) {
                (Ok(s), Ok(n)) => super::parse::format_duration(std::time::Duration::new(s, n)),
                _ => duration(d),
            };
            lines.push(format!("lifespan:    {text}"));
        }
    }
    if let Some(d) = &spec.deadline {
        lines.push(format!("deadline:    {}", time(d)));
    }
    lines.push(format!("status:      {}", status(listener.status())));
    if !listener.fire_id.is_empty() {
        lines.push(format!("fire id:     {}", listener.fire_id));
    }
    if let Some(t) = &listener.create_time {
        lines.push(format!("created:     {}", time(t)));
    }
    if let Some(t) = &listener.finish_time {
        lines.push(format!("finished:    {}", time(t)));
    }
    if !listener.request_id.is_empty() {
        lines.push(format!("request id:  {}", listener.request_id));
    }
    lines.join("\n")
}

/// Returns a notification on one line.
pub fn notification_line(n: &pb::Notification) -> String {
    let target = match n.kind() {
        pb::NotificationKind::Start => format!("workflow={}", n.workflow_id),
        _ => format!("instance={}", n.instance_id),
    };
    let events: Vec<String> = n
        .events
        .iter()
        .zip(n.event_sequences.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(e, seq)| match seq {
            Some(seq) => format!("#{seq} {} {} {}", e.r#type, e.source, e.id),
            None => format!("{} {} {}", e.r#type, e.source, e.id),
        })
        .collect();
    let mut line =
        format!("#{} {} {target} fire_id={} attempt={}", n.sequence, notification_kind(n.kind()), n.fire_id, n.attempt);
    if !n.correlation.is_empty() {
        let mut pairs: Vec<String> = n.correlation.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        line.push_str(&format!(" correlation[{}]", pairs.join(",")));
    }
    if !events.is_empty() {
        line.push_str(&format!(" events[{}]", events.join("; ")));
    }
    line
}

/// Returns a stored event as `key: value` lines followed by its payload.
pub fn stored_event_text(stored: &pb::StoredEvent) -> String {
    let event = stored.event.clone().unwrap_or_default();
    let line = |key: &str, value: &dyn std::fmt::Display| format!("{:<17}{value}", format!("{key}:"));
    let mut lines = vec![
        line("sequence", &stored.sequence),
        line("received", &stored.receive_time.as_ref().map(time).unwrap_or_default()),
        line("id", &event.id),
        line("source", &event.source),
        line("type", &event.r#type),
    ];
    let mut names: Vec<&String> = event.attributes.keys().collect();
    names.sort();
    for name in names {
        lines.push(line(name, &attribute_text(&event.attributes[name])));
    }
    if !stored.traceparent.is_empty() {
        lines.push(line("traceparent", &stored.traceparent));
    }
    match &event.data {
        Some(Data::TextData(text)) => {
            lines.push(String::new());
            lines.push(text.clone());
        }
        Some(Data::BinaryData(bytes)) => {
            lines.push(line("data", &format!("{} bytes, base64:", bytes.len())));
            lines.push(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Some(Data::ProtoData(any)) => {
            lines.push(line("data", &format!("protobuf {} ({} bytes)", any.type_url, any.value.len())));
        }
        None => {}
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use eventbus_client::CloudEventBuilder;

    use super::*;

    #[test]
    fn events_render_in_cloudevents_json() {
        let event = CloudEventBuilder::new("/src", "t")
            .id("e1")
            .subject("s")
            .extension("n", 7)
            .data_text("application/json", r#"{"a":1}"#)
            .build();
        assert_eq!(
            event_json(&event),
            json!({
                "specversion": "1.0", "id": "e1", "source": "/src", "type": "t",
                "subject": "s", "n": 7, "datacontenttype": "application/json", "data": {"a": 1}
            })
        );
        let text = CloudEventBuilder::new("/src", "t").id("e2").data_text("text/plain", "hi").build();
        assert_eq!(event_json(&text)["data"], json!("hi"));
        let bin = CloudEventBuilder::new("/src", "t").id("e3").data_binary("application/octet-stream", [1u8]).build();
        assert_eq!(event_json(&bin)["data_base64"], json!("AQ=="));
    }

    /// Attribute values and their canonical strings, shared by the tests of every implementation
    /// (see its "comment").
    const CANONICAL_FIXTURE: &str = include_str!("../../../proto/testdata/canonical_attributes.json");

    /// Returns the value of a fixture case as it arrives on the wire (timestamps from their
    /// `seconds` and `nanos`).
    fn fixture_value(case: &Value) -> pb::cloud_event::CloudEventAttributeValue {
        let value = &case["value"];
        let text = || value.as_str().unwrap().to_owned();
        let attr = match case["type"].as_str().unwrap() {
            "boolean" => Attr::CeBoolean(value.as_bool().unwrap()),
            "integer" => Attr::CeInteger(i32::try_from(value.as_i64().unwrap()).unwrap()),
            "string" => Attr::CeString(text()),
            "bytes" => Attr::CeBytes(serde_json::from_value(value.clone()).unwrap()),
            "uri" => Attr::CeUri(text()),
            "uri_ref" => Attr::CeUriRef(text()),
            "timestamp" => Attr::CeTimestamp(prost_types::Timestamp {
                seconds: case["seconds"].as_i64().unwrap(),
                nanos: i32::try_from(case["nanos"].as_i64().unwrap()).unwrap(),
            }),
            other => panic!("fixture: unknown type {other}"),
        };
        pb::cloud_event::CloudEventAttributeValue { attr: Some(attr) }
    }

    #[test]
    fn attributes_render_in_the_canonical_form_of_the_shared_fixture() {
        let fixture: Value = serde_json::from_str(CANONICAL_FIXTURE).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let (value, name) = (fixture_value(case), &case["name"]);
            assert_eq!(attribute_text(&value), case["canonical"].as_str().unwrap(), "{name}");
            let json = match case["type"].as_str().unwrap() {
                "boolean" | "integer" => case["value"].clone(),
                _ => case["canonical"].clone(),
            };
            assert_eq!(attribute_json(&value), json, "{name}");
        }
    }

    #[test]
    fn filters_show_their_conditions() {
        let filters = [
            pb::EventFilter {
                r#type: "a".into(),
                attributes: [("subject".into(), "eu/*".into())].into(),
                condition: String::new(),
            },
            pb::EventFilter {
                r#type: "b".into(),
                attributes: Default::default(),
                condition: "data.amount >= 100".into(),
            },
        ];
        assert_eq!(filters_text(&filters), ["a:subject=eu/*", "b: where data.amount >= 100"]);
        let json = filters_json(&filters);
        assert_eq!(json[0].get("condition"), None);
        assert_eq!(json[1]["condition"], "data.amount >= 100");
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(duration(&prost_types::Duration { seconds: 600, nanos: 0 }), "600s");
        assert_eq!(duration(&prost_types::Duration { seconds: 1, nanos: 500_000_000 }), "1.5s");
        assert_eq!(time(&prost_types::Timestamp { seconds: 0, nanos: 250_000_000 }), "1970-01-01T00:00:00.25Z");
    }
}
