//! CloudEvents over HTTP (the HTTP Protocol Binding 1.0) to the protobuf `CloudEvent` of the
//! contract: binary mode (`ce-*` headers, the body as data), and the JSON event format of
//! structured mode (`application/cloudevents+json`) and batched mode
//! (`application/cloudevents-batch+json`).
//!
//! This module converts; it checks nothing the request layer checks. Every rule of an event is
//! [`crate::request`]'s, applied to the converted events exactly as to a gRPC Publish. Only what
//! the protobuf form cannot hold is reported here, under the field path the request layer uses
//! for that attribute (`time` becomes `attributes[time]`, `specversion` `spec_version`):
//! a `time` that is not RFC 3339, a header value that is not percent-encoded UTF-8, a JSON
//! attribute of a type CloudEvents does not have, `data_base64` that is not base64.
//!
//! Data: in binary mode a non-empty body is `text_data` when its content type is text, JSON or
//! XML and it is UTF-8, else `binary_data`. In the JSON format, `data_base64` is `binary_data`;
//! `data` is `text_data`, the JSON text as sent when the content type is JSON or absent, the
//! string itself when it is a JSON string of another content type.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::DateTime;
use eventbus_client::pb;
use eventbus_client::pb::cloud_event::CloudEventAttributeValue;
use eventbus_client::pb::cloud_event::cloud_event_attribute_value::Attr;
use http::HeaderMap;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::request::Violations;

/// The content types of the JSON event format.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
pub const BATCHED_JSON: &str = "application/cloudevents-batch+json";

/// How a request carries its events (HTTP binding section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
    Batched,
}

/// Returns the mode of a request: structured or batched by its content type; binary when it
/// has any `ce-` header. Returns the reason to answer 415 otherwise: another event format
/// (`application/cloudevents+avro`), or no CloudEvent at all.
pub fn mode(headers: &HeaderMap) -> Result<Mode, String> {
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let media = media_type(content_type);
    match media.as_str() {
        STRUCTURED_JSON => return Ok(Mode::Structured),
        BATCHED_JSON => return Ok(Mode::Batched),
        m if m.starts_with("application/cloudevents") => {
            return Err(format!(
                "event format {m} is not supported: send {STRUCTURED_JSON}, {BATCHED_JSON}, or binary mode (ce-* \
                 headers)"
            ));
        }
        _ => {}
    }
    if headers.keys().any(|k| k.as_str().starts_with("ce-")) {
        return Ok(Mode::Binary);
    }
    Err(format!(
        "not a CloudEvent: content type {content_type:?} without ce-* headers; send binary mode (ce-specversion, \
         ce-id, ce-source, ce-type headers, the data as the body), {STRUCTURED_JSON} or {BATCHED_JSON}"
    ))
}

/// Returns the media type of a Content-Type value, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// An event as far as it converts, and what did not (paths relative to the event).
pub type Converted = (pb::CloudEvent, Violations);

/// Converts a binary-mode request: its `ce-` headers, its Content-Type and its body.
pub fn binary(headers: &HeaderMap, body: &[u8]) -> Converted {
    let mut ce = pb::CloudEvent::default();
    let mut violations = Violations::default();
    for name in headers.keys() {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else { continue };
        let Some(value) = headers.get(name) else { continue };
        let set = match header_text(value.as_bytes()) {
            _ if attribute == "datacontenttype" => {
                Err("in binary mode the Content-Type header is the datacontenttype; send no ce-datacontenttype".into())
            }
            Some(text) => set_string(&mut ce, attribute, text),
            None => Err("must be percent-encoded UTF-8 (CloudEvents HTTP binding, 3.1.3.2)".into()),
        };
        if let Err(description) = set {
            violations.extend(Violations::invalid(path(attribute), description));
        }
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).map(|v| v.to_str().map(str::to_owned));
    let content_type = match content_type {
        Some(Ok(ct)) => Some(ct),
        Some(Err(_)) => {
            violations.extend(Violations::invalid(path("datacontenttype"), "the Content-Type must be ASCII"));
            None
        }
        None => None,
    };
    if !body.is_empty() {
        let textual = content_type.as_deref().is_some_and(is_textual);
        ce.data = Some(match std::str::from_utf8(body) {
            Ok(text) if textual => pb::cloud_event::Data::TextData(text.to_owned()),
            _ => pb::cloud_event::Data::BinaryData(body.to_vec()),
        });
    }
    if let Some(ct) = content_type {
        insert(&mut ce, "datacontenttype", Attr::CeString(ct));
    }
    (ce, violations)
}

/// Returns the text of a header value: double quotes and backslash escapes undone, then one
/// round of percent-decoding; `None` when the result is not UTF-8 (or a `%` is not followed by
/// two hex digits).
fn header_text(value: &[u8]) -> Option<String> {
    let unquoted = match value {
        [b'"', inner @ .., b'"'] => {
            let mut out = Vec::with_capacity(inner.len());
            let mut escaped = false;
            for &b in inner {
                if !escaped && b == b'\\' {
                    escaped = true;
                } else {
                    out.push(b);
                    escaped = false;
                }
            }
            out
        }
        _ => value.to_vec(),
    };
    let mut bytes = Vec::with_capacity(unquoted.len());
    let mut i = 0;
    while i < unquoted.len() {
        if unquoted[i] == b'%' {
            let hex = unquoted.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            bytes.push(unquoted[i]);
            i += 1;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Returns whether data of this content type is text: `text/*`, JSON or XML.
fn is_textual(content_type: &str) -> bool {
    let media = media_type(content_type);
    media.starts_with("text/") || is_json(&media) || media == "application/xml" || media.ends_with("+xml")
}

/// Returns whether a content type is JSON: `application/json`, `text/json`, `*/*+json`.
fn is_json(content_type: &str) -> bool {
    let media = media_type(content_type);
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// Converts the body of a structured-mode request: one event in the JSON format.
///
/// Returns the violation of a body that is not a JSON object.
pub fn structured(body: &[u8]) -> Result<Converted, Violations> {
    let raw: Box<RawValue> = serde_json::from_slice(body).map_err(not_json)?;
    json_event(&raw).map_err(|v| v.prefixed("events[0]"))
}

/// Converts the body of a batched-mode request: a JSON array of events in the JSON format.
///
/// Returns the violations of a body that is not a JSON array of objects.
pub fn batched(body: &[u8]) -> Result<Vec<Converted>, Violations> {
    let raw: Vec<Box<RawValue>> = serde_json::from_slice(body).map_err(|e| {
        Violations::invalid("events", format!("the body must be a JSON array of CloudEvents in the JSON format: {e}"))
    })?;
    let mut events = Vec::with_capacity(raw.len());
    let mut violations = Violations::default();
    for (i, raw) in raw.iter().enumerate() {
        match json_event(raw) {
            Ok(event) => events.push(event),
            Err(v) => violations.extend(v.prefixed(&format!("events[{i}]"))),
        }
    }
    if violations == Violations::default() { Ok(events) } else { Err(violations) }
}

fn not_json(e: serde_json::Error) -> Violations {
    Violations::invalid("events[0]", format!("the body must be a CloudEvent in the JSON format: {e}"))
}

/// Converts one event of the JSON format; fails only when it is not a JSON object.
fn json_event(raw: &RawValue) -> Result<Converted, Violations> {
    let members: HashMap<String, Box<RawValue>> =
        serde_json::from_str(raw.get()).map_err(|_| Violations::invalid("", "must be a JSON object"))?;
    let mut ce = pb::CloudEvent::default();
    let mut violations = Violations::default();
    let mut names: Vec<&String> = members.keys().collect();
    // Violations in name order, as the request layer orders those of attributes.
    names.sort();
    for name in names {
        if name == "data" || name == "data_base64" {
            continue;
        }
        let value: Value = serde_json::from_str(members[name].get()).unwrap_or(Value::Null);
        if let Err(description) = set_json(&mut ce, name, value) {
            violations.extend(Violations::invalid(path(name), description));
        }
    }
    match json_data(&ce, members.get("data").map(AsRef::as_ref), members.get("data_base64").map(AsRef::as_ref)) {
        Ok(data) => ce.data = data,
        Err(description) => violations.extend(Violations::invalid("data", description)),
    }
    Ok((ce, violations))
}

/// Returns the data of a JSON-format event (see the module docs).
fn json_data(
    ce: &pb::CloudEvent,
    data: Option<&RawValue>,
    base64: Option<&RawValue>,
) -> Result<Option<pb::cloud_event::Data>, String> {
    let null = |raw: &&RawValue| raw.get() == "null";
    match (data.filter(|d| !null(d)), base64.filter(|d| !null(d))) {
        (Some(_), Some(_)) => Err("set data or data_base64, not both".into()),
        (None, None) => Ok(None),
        (None, Some(encoded)) => {
            let decoded = serde_json::from_str::<String>(encoded.get())
                .ok()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or("data_base64 must be a string of base64 (RFC 4648)")?;
            Ok(Some(pb::cloud_event::Data::BinaryData(decoded)))
        }
        (Some(data), None) => {
            let content_type = match ce.attributes.get("datacontenttype").and_then(|v| v.attr.as_ref()) {
                Some(Attr::CeString(ct)) => Some(ct.as_str()),
                _ => None,
            };
            let text = match serde_json::from_str::<String>(data.get()) {
                Ok(s) if !content_type.is_none_or(is_json) => s,
                _ => data.get().to_owned(),
            };
            Ok(Some(pb::cloud_event::Data::TextData(text)))
        }
    }
}

/// Sets attribute `name` of a JSON-format event from its JSON value (null: absent).
fn set_json(ce: &mut pb::CloudEvent, name: &str, value: Value) -> Result<(), String> {
    let is_context = matches!(
        name,
        "id" | "source" | "type" | "specversion" | "subject" | "time" | "datacontenttype" | "dataschema"
    );
    match value {
        Value::Null => Ok(()),
        Value::String(s) => set_string(ce, name, s),
        _ if is_context => Err("must be a JSON string".into()),
        Value::Bool(b) => {
            insert(ce, name, Attr::CeBoolean(b));
            Ok(())
        }
        Value::Number(n) => {
            let n = n.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or("an integer must be from -2^31 to 2^31-1")?;
            insert(ce, name, Attr::CeInteger(n));
            Ok(())
        }
        Value::Array(_) | Value::Object(_) => Err("must be a string, an integer or a boolean".into()),
    }
}

/// Sets attribute `name` from its canonical string form.
fn set_string(ce: &mut pb::CloudEvent, name: &str, s: String) -> Result<(), String> {
    match name {
        "id" => ce.id = s,
        "source" => ce.source = s,
        "type" => ce.r#type = s,
        "specversion" => ce.spec_version = s,
        "time" => {
            let t = DateTime::parse_from_rfc3339(&s).map_err(|_| "must be an RFC 3339 timestamp".to_owned())?;
            let ts = prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 };
            insert(ce, name, Attr::CeTimestamp(ts));
        }
        "dataschema" => insert(ce, name, Attr::CeUri(s)),
        _ => insert(ce, name, Attr::CeString(s)),
    }
    Ok(())
}

fn insert(ce: &mut pb::CloudEvent, name: &str, attr: Attr) {
    ce.attributes.insert(name.to_owned(), CloudEventAttributeValue { attr: Some(attr) });
}

/// Returns the field path of an attribute, relative to the event, as the request layer names
/// it.
fn path(name: &str) -> String {
    match name {
        "id" | "source" | "type" => name.to_owned(),
        "specversion" => "spec_version".to_owned(),
        "data" | "data_base64" => "data".to_owned(),
        _ => format!("attributes[{name}]"),
    }
}

#[cfg(test)]
#[path = "cloudevents/tests.rs"]
mod tests;
