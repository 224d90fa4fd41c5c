//! CloudEvents as the engine sees them, and the canonical string form of attribute values that
//! filters and correlation keys compare against.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// The names of the CloudEvents context attributes; an extension must not use one of them.
pub const CONTEXT_ATTRIBUTES: [&str; 8] =
    ["id", "source", "specversion", "type", "subject", "time", "datacontenttype", "dataschema"];

/// The required context attributes, the first four of [`CONTEXT_ATTRIBUTES`]: an event carries
/// them in fields of their own, never among its optional and extension attributes.
pub const REQUIRED_ATTRIBUTES: &[&str] = CONTEXT_ATTRIBUTES.split_at(4).0;

/// Returns whether `name` may not appear among an event's optional and extension attributes:
/// a required context attribute, or `data` (the payload in the CloudEvents JSON format).
pub fn is_reserved_attribute(name: &str) -> bool {
    name == "data" || REQUIRED_ATTRIBUTES.contains(&name)
}

/// A value of one of the CloudEvents attribute types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum AttrValue {
    Boolean(bool),
    Integer(i32),
    String(String),
    Bytes(#[serde(with = "base64_bytes")] Vec<u8>),
    Uri(String),
    UriRef(String),
    Timestamp(DateTime<Utc>),
}

impl AttrValue {
    /// Returns the canonical string form: booleans `true`/`false`, integers in decimal,
    /// timestamps in RFC 3339 UTC (see [`canonical_time`]), bytes in standard base64.
    pub fn canonical(&self) -> Cow<'_, str> {
        match self {
            Self::Boolean(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Self::Integer(i) => Cow::Owned(i.to_string()),
            Self::String(s) | Self::Uri(s) | Self::UriRef(s) => Cow::Borrowed(s),
            Self::Bytes(b) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)),
            Self::Timestamp(t) => Cow::Owned(canonical_time(t)),
        }
    }
}

/// Formats a timestamp as RFC 3339 in UTC with `Z`, with fractional seconds only when they are
/// not zero and without trailing zeros: `2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.25Z`.
pub fn canonical_time(t: &DateTime<Utc>) -> String {
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// The payload of an event, as in the CloudEvents protobuf format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Data {
    Binary(#[serde(with = "base64_bytes")] Vec<u8>),
    Text(String),
    Proto {
        type_url: String,
        #[serde(with = "base64_bytes")]
        value: Vec<u8>,
    },
}

/// A W3C trace context (`traceparent`, `tracestate` headers). The trigger engine carries it
/// untouched; the store derives a trigger's context from it with [`TraceContext::child`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceContext {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceparent: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tracestate: String,
}

impl TraceContext {
    pub fn is_empty(&self) -> bool {
        self.traceparent.is_empty()
    }

    /// Returns the context of a span with id `span_id` whose parent is this context: same trace
    /// id, flags and `tracestate`. Empty when this context has no valid `traceparent` or the span
    /// id is all zeros (both invalid in W3C Trace Context).
    pub fn child(&self, span_id: [u8; 8]) -> TraceContext {
        let parent = &self.traceparent;
        if !valid_traceparent(parent) || span_id == [0; 8] {
            return TraceContext::default();
        }
        let (trace_id, flags) = (&parent[3..35], &parent[53..55]);
        let span: String = span_id.iter().map(|b| format!("{b:02x}")).collect();
        TraceContext { traceparent: format!("00-{trace_id}-{span}-{flags}"), tracestate: self.tracestate.clone() }
    }
}

/// Returns whether `s` is a W3C traceparent: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero
/// (a later version may add `-` and more fields; version 00 may not). Runs for every call and
/// every event: no allocation.
pub fn valid_traceparent(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    let hex = |p: &[u8]| p.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let nonzero = |p: &[u8]| p.iter().any(|&c| c != b'0');
    let (version, trace_id, span_id, flags, rest) = (&b[..2], &b[3..35], &b[36..52], &b[53..55], &b[55..]);
    hex(version)
        && version != b"ff"
        && hex(trace_id)
        && nonzero(trace_id)
        && hex(span_id)
        && nonzero(span_id)
        && hex(flags)
        && (rest.is_empty() || (version != b"00" && rest[0] == b'-'))
}

/// A CloudEvent in a namespace, as stored and evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub namespace: String,
    /// Per-namespace sequence, assigned by the store when the event is accepted (0 before).
    pub sequence: u64,
    pub id: String,
    pub source: String,
    pub specversion: String,
    pub event_type: String,
    pub subject: Option<String>,
    pub time: Option<DateTime<Utc>>,
    pub datacontenttype: Option<String>,
    pub dataschema: Option<String>,
    /// Extension attributes by (lowercase) name.
    pub extensions: BTreeMap<String, AttrValue>,
    pub data: Option<Data>,
    pub received_at: DateTime<Utc>,
    pub trace: TraceContext,
}

impl Event {
    /// Returns the canonical string value of a context attribute or extension, looked up by
    /// name case-insensitively, or `None` when the event does not have it.
    pub fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        let context = |s: &str| name.eq_ignore_ascii_case(s);
        if context("id") {
            Some(Cow::Borrowed(&self.id))
        } else if context("source") {
            Some(Cow::Borrowed(&self.source))
        } else if context("specversion") {
            Some(Cow::Borrowed(&self.specversion))
        } else if context("type") {
            Some(Cow::Borrowed(&self.event_type))
        } else if context("subject") {
            self.subject.as_deref().map(Cow::Borrowed)
        } else if context("time") {
            self.time.as_ref().map(|t| Cow::Owned(canonical_time(t)))
        } else if context("datacontenttype") {
            self.datacontenttype.as_deref().map(Cow::Borrowed)
        } else if context("dataschema") {
            self.dataschema.as_deref().map(Cow::Borrowed)
        } else if let Some(v) = self.extensions.get(name) {
            Some(v.canonical())
        } else {
            self.extensions.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.canonical())
        }
    }

    /// Returns the reference a listener keeps when it collects this event.
    pub fn to_ref(&self) -> EventRef {
        EventRef {
            sequence: self.sequence,
            source: self.source.clone(),
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            received_at: self.received_at,
            trace: self.trace.clone(),
        }
    }
}

/// What a listener remembers of an event it collected, and what an action names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub sequence: u64,
    pub source: String,
    pub id: String,
    pub event_type: String,
    pub received_at: DateTime<Utc>,
    #[serde(default)]
    pub trace: TraceContext,
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn canonical_forms() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
        let cases = [
            (AttrValue::Boolean(true), "true"),
            (AttrValue::Boolean(false), "false"),
            (AttrValue::Integer(-42), "-42"),
            (AttrValue::String("x/y".into()), "x/y"),
            (AttrValue::Bytes(vec![0, 1, 2, 255]), "AAEC/w=="),
            (AttrValue::Uri("https://acme.io/a".into()), "https://acme.io/a"),
            (AttrValue::UriRef("/a/b".into()), "/a/b"),
            (AttrValue::Timestamp(t), "2026-11-22T10:00:00Z"),
            (AttrValue::Timestamp(t + chrono::Duration::milliseconds(250)), "2026-11-22T10:00:00.25Z"),
            (AttrValue::Timestamp(t + chrono::Duration::nanoseconds(1)), "2026-11-22T10:00:00.000000001Z"),
        ];
        for (value, want) in cases {
            assert_eq!(value.canonical(), want, "{value:?}");
        }
    }

    #[test]
    fn canonical_time_converts_offsets_to_utc() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T12:00:00.500+02:00").unwrap();
        assert_eq!(canonical_time(&t.with_timezone(&Utc)), "2026-11-22T10:00:00.5Z");
    }

    /// Attribute values and their canonical strings, shared by the tests of every implementation
    /// (see its "comment").
    const CANONICAL_FIXTURE: &str = include_str!("../../proto/testdata/canonical_attributes.json");

    /// Returns the value of a fixture case; a timestamp is parsed from its RFC 3339 text, and
    /// must be the instant its `seconds` and `nanos` say.
    fn fixture_value(case: &serde_json::Value) -> AttrValue {
        let value = &case["value"];
        let text = || value.as_str().unwrap().to_owned();
        match case["type"].as_str().unwrap() {
            "boolean" => AttrValue::Boolean(value.as_bool().unwrap()),
            "integer" => AttrValue::Integer(i32::try_from(value.as_i64().unwrap()).unwrap()),
            "string" => AttrValue::String(text()),
            "bytes" => AttrValue::Bytes(serde_json::from_value(value.clone()).unwrap()),
            "uri" => AttrValue::Uri(text()),
            "uri_ref" => AttrValue::UriRef(text()),
            "timestamp" => {
                let t = DateTime::parse_from_rfc3339(&text()).unwrap().with_timezone(&Utc);
                let nanos = u32::try_from(case["nanos"].as_u64().unwrap()).unwrap();
                let wire = DateTime::from_timestamp(case["seconds"].as_i64().unwrap(), nanos).unwrap();
                assert_eq!(t, wire, "fixture: {} and its seconds and nanos differ", case["name"]);
                AttrValue::Timestamp(t)
            }
            other => panic!("fixture: unknown type {other}"),
        }
    }

    #[test]
    fn canonical_forms_match_the_shared_fixture() {
        let fixture: serde_json::Value = serde_json::from_str(CANONICAL_FIXTURE).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let value = fixture_value(case);
            assert_eq!(value.canonical(), case["canonical"].as_str().unwrap(), "{}", case["name"]);
        }
    }

    #[test]
    fn reserved_attributes() {
        for name in ["id", "source", "specversion", "type", "data"] {
            assert!(is_reserved_attribute(name), "{name}");
        }
        for name in ["subject", "time", "datacontenttype", "dataschema", "traceparent", "orderid", "ID"] {
            assert!(!is_reserved_attribute(name), "{name}");
        }
    }

    #[test]
    fn traceparents() {
        assert!(valid_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(valid_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-later"));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01é",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0é",
        ] {
            assert!(!valid_traceparent(bad), "{bad}");
        }
    }

    #[test]
    fn child_context_keeps_trace_flags_and_state() {
        let parent = TraceContext {
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into(),
            tracestate: "vendor=x".into(),
        };
        let child = parent.child([1, 2, 3, 4, 5, 6, 7, 0xab]);
        assert_eq!(child.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-01020304050607ab-01");
        assert_eq!(child.tracestate, "vendor=x");
        let invalid = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ];
        for traceparent in invalid {
            let parent = TraceContext { traceparent: traceparent.into(), tracestate: String::new() };
            assert!(parent.child([1; 8]).is_empty(), "{traceparent:?}");
        }
        assert!(TraceContext { traceparent: child.traceparent, tracestate: String::new() }.child([0; 8]).is_empty());
    }
}
