//! Building CloudEvents.

use std::time::SystemTime;

use base64::Engine as _;
use prost_types::Timestamp;
use serde::Serialize;

use crate::{
    Error,
    pb::{
        self,
        cloud_event::{CloudEventAttributeValue, Data, cloud_event_attribute_value::Attr},
    },
};

/// The CloudEvents specification version every event carries.
pub const SPEC_VERSION: &str = "1.0";

/// Builds a [`pb::CloudEvent`].
///
/// The builder sets `specversion` and, unless [`id`](Self::id) is called, an id that is a fresh
/// UUIDv7: event ids come from clients, never from the server, so that a retried Publish is
/// recognised as a duplicate. Reuse the built event (not the builder) when retrying.
///
/// The builder does not validate; the server rejects invalid events with `INVALID_ARGUMENT`
/// (extension names must be 1 to 64 characters of `[a-z0-9]`).
#[derive(Debug, Clone)]
#[must_use]
pub struct CloudEventBuilder {
    id: Option<String>,
    event: pb::CloudEvent,
}

impl CloudEventBuilder {
    /// Starts an event with its `source` (a URI reference) and `type`.
    pub fn new(source: impl Into<String>, event_type: impl Into<String>) -> Self {
        let event = pb::CloudEvent {
            source: source.into(),
            spec_version: SPEC_VERSION.to_owned(),
            r#type: event_type.into(),
            ..Default::default()
        };
        Self { id: None, event }
    }

    /// Sets the event id; by default it is a new UUIDv7 string.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the `subject` attribute.
    pub fn subject(self, subject: impl Into<String>) -> Self {
        self.attribute("subject", AttributeValue::String(subject.into()))
    }

    /// Sets the `time` attribute: when the occurrence happened.
    pub fn time(self, time: SystemTime) -> Self {
        self.attribute("time", AttributeValue::from(time))
    }

    /// Sets the `dataschema` attribute, an absolute URI.
    pub fn dataschema(self, uri: impl Into<String>) -> Self {
        self.attribute("dataschema", AttributeValue::Uri(uri.into()))
    }

    /// Serializes `data` as JSON into the text payload and sets `datacontenttype` to
    /// `application/json`.
    ///
    /// Returns [`Error::Json`] when `data` cannot be serialized.
    pub fn data_json<T: Serialize + ?Sized>(self, data: &T) -> Result<Self, Error> {
        let text = serde_json::to_string(data).map_err(Error::Json)?;
        Ok(self.data_text("application/json", text))
    }

    /// Sets a text payload and its `datacontenttype`, for example `text/plain`.
    pub fn data_text(self, content_type: impl Into<String>, text: impl Into<String>) -> Self {
        self.data(content_type.into(), Data::TextData(text.into()))
    }

    /// Sets a binary payload and its `datacontenttype`, for example `application/octet-stream`.
    pub fn data_binary(self, content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.data(content_type.into(), Data::BinaryData(data.into()))
    }

    /// Sets a protobuf payload and sets `datacontenttype` to `application/protobuf`; the
    /// message's type URL travels in the `Any`.
    pub fn data_proto(self, data: prost_types::Any) -> Self {
        self.data("application/protobuf".to_owned(), Data::ProtoData(data))
    }

    /// Sets the distributed-tracing extension: `traceparent` and, when non-empty, `tracestate`.
    ///
    /// An event's own `traceparent` wins over the Publish call's metadata for that event.
    pub fn trace(self, traceparent: impl Into<String>, tracestate: impl Into<String>) -> Self {
        let tracestate = tracestate.into();
        let builder = self.attribute("traceparent", AttributeValue::String(traceparent.into()));
        if tracestate.is_empty() {
            builder
        } else {
            builder.attribute("tracestate", AttributeValue::String(tracestate))
        }
    }

    /// Sets an extension attribute, replacing an earlier value of the same name.
    ///
    /// Values convert from `bool`, integers up to 32 bits, strings, bytes and times; use
    /// [`AttributeValue::Uri`] and [`AttributeValue::UriRef`] for URIs.
    pub fn extension(self, name: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        self.attribute(name, value.into())
    }

    /// Returns the event.
    pub fn build(self) -> pb::CloudEvent {
        let Self { id, mut event } = self;
        event.id = id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        event
    }

    fn data(mut self, content_type: String, data: Data) -> Self {
        self.event.data = Some(data);
        self.attribute("datacontenttype", AttributeValue::String(content_type))
    }

    fn attribute(mut self, name: impl Into<String>, value: AttributeValue) -> Self {
        self.event.attributes.insert(name.into(), value.into());
        self
    }
}

/// The value of a CloudEvents context attribute: one of the seven CloudEvents types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// CloudEvents Boolean.
    Boolean(bool),
    /// CloudEvents Integer, a signed 32-bit integer.
    Integer(i32),
    /// CloudEvents String.
    String(String),
    /// CloudEvents Binary.
    Bytes(Vec<u8>),
    /// CloudEvents URI: an absolute URI.
    Uri(String),
    /// CloudEvents URI-reference: a URI or a relative reference.
    UriRef(String),
    /// CloudEvents Timestamp.
    Timestamp(Timestamp),
}

impl AttributeValue {
    /// Returns the value of a protobuf attribute value, or `None` when no case is set.
    pub fn from_proto(value: &CloudEventAttributeValue) -> Option<Self> {
        Some(match value.attr.as_ref()? {
            Attr::CeBoolean(v) => Self::Boolean(*v),
            Attr::CeInteger(v) => Self::Integer(*v),
            Attr::CeString(v) => Self::String(v.clone()),
            Attr::CeBytes(v) => Self::Bytes(v.clone()),
            Attr::CeUri(v) => Self::Uri(v.clone()),
            Attr::CeUriRef(v) => Self::UriRef(v.clone()),
            Attr::CeTimestamp(v) => Self::Timestamp(*v),
        })
    }

    /// Returns the attribute `name` of `event`, or `None` when the event does not have it. Only
    /// finds attributes kept in `attributes`, not `id`, `source`, `specversion` or `type`.
    pub fn of(event: &pb::CloudEvent, name: &str) -> Option<Self> {
        event.attributes.get(name).and_then(Self::from_proto)
    }

    /// Returns the canonical string form, which listener filters, `correlate_by` and
    /// `Notification.correlation` compare: Boolean `true` or `false`; Integer in decimal; String,
    /// URI and URI-reference unchanged; Binary in standard base64 with padding; Timestamp in
    /// RFC 3339 in UTC with a `Z`, with fractional seconds only when they are not zero and
    /// without trailing zeros (`2026-11-22T10:00:00Z`, `2026-11-22T10:00:00.25Z`).
    ///
    /// `proto/testdata/canonical_attributes.json` pins these forms for every client. A timestamp
    /// outside the years 1 to 9999, which the server rejects, has no RFC 3339 form; it is
    /// written with a signed year of more than four digits.
    pub fn canonical_string(&self) -> String {
        match self {
            Self::Boolean(b) => b.to_string(),
            Self::Integer(n) => n.to_string(),
            Self::String(s) | Self::Uri(s) | Self::UriRef(s) => s.clone(),
            Self::Bytes(b) => base64::engine::general_purpose::STANDARD.encode(b),
            Self::Timestamp(t) => canonical_time(t),
        }
    }
}

/// Returns `t` in RFC 3339 in UTC without trailing fractional zeros. prost writes 0, 3, 6 or 9
/// fractional digits (the protobuf JSON mapping), so the zeros are trimmed from its text.
fn canonical_time(t: &Timestamp) -> String {
    let text = t.to_string();
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, fraction)) => format!("{whole}.{}Z", fraction.trim_end_matches('0')),
        None => text,
    }
}

impl From<AttributeValue> for CloudEventAttributeValue {
    fn from(value: AttributeValue) -> Self {
        let attr = match value {
            AttributeValue::Boolean(v) => Attr::CeBoolean(v),
            AttributeValue::Integer(v) => Attr::CeInteger(v),
            AttributeValue::String(v) => Attr::CeString(v),
            AttributeValue::Bytes(v) => Attr::CeBytes(v),
            AttributeValue::Uri(v) => Attr::CeUri(v),
            AttributeValue::UriRef(v) => Attr::CeUriRef(v),
            AttributeValue::Timestamp(v) => Attr::CeTimestamp(v),
        };
        CloudEventAttributeValue { attr: Some(attr) }
    }
}

macro_rules! from_integer {
    ($($ty:ty),*) => {$(
        impl From<$ty> for AttributeValue {
            fn from(value: $ty) -> Self {
                Self::Integer(i32::from(value))
            }
        }
    )*};
}
from_integer!(i8, i16, i32, u8, u16);

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        Self::Boolean(value)
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        Self::String(value)
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        Self::String(value.to_owned())
    }
}

impl From<&String> for AttributeValue {
    fn from(value: &String) -> Self {
        Self::String(value.clone())
    }
}

impl From<Vec<u8>> for AttributeValue {
    fn from(value: Vec<u8>) -> Self {
        Self::Bytes(value)
    }
}

impl From<&[u8]> for AttributeValue {
    fn from(value: &[u8]) -> Self {
        Self::Bytes(value.to_vec())
    }
}

impl From<SystemTime> for AttributeValue {
    fn from(value: SystemTime) -> Self {
        Self::Timestamp(Timestamp::from(value))
    }
}

impl From<Timestamp> for AttributeValue {
    fn from(value: Timestamp) -> Self {
        Self::Timestamp(value)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn attr(event: &pb::CloudEvent, name: &str) -> Attr {
        event.attributes[name].attr.clone().unwrap()
    }

    #[test]
    fn minimal_event_has_required_fields_and_uuid_v7_id() {
        let event = CloudEventBuilder::new("/billing", "com.example.invoice.paid").build();
        assert_eq!(event.source, "/billing");
        assert_eq!(event.r#type, "com.example.invoice.paid");
        assert_eq!(event.spec_version, "1.0");
        assert!(event.attributes.is_empty());
        assert_eq!(event.data, None);
        let id = uuid::Uuid::parse_str(&event.id).unwrap();
        assert_eq!(id.get_version_num(), 7);
        assert_eq!(event.id, id.hyphenated().to_string());
    }

    #[test]
    fn generated_ids_differ() {
        let a = CloudEventBuilder::new("s", "t").build();
        let b = CloudEventBuilder::new("s", "t").build();
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn optional_attributes_use_their_cloudevents_types() {
        let time = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let event = CloudEventBuilder::new("s", "t")
            .id("evt-1")
            .subject("inv-7")
            .time(time)
            .dataschema("https://example.com/schema")
            .build();
        assert_eq!(event.id, "evt-1");
        assert_eq!(attr(&event, "subject"), Attr::CeString("inv-7".into()));
        assert_eq!(attr(&event, "time"), Attr::CeTimestamp(Timestamp { seconds: 1_700_000_000, nanos: 5 }));
        assert_eq!(attr(&event, "dataschema"), Attr::CeUri("https://example.com/schema".into()));
        assert_eq!(event.attributes.len(), 3);
    }

    #[test]
    fn data_sets_payload_and_content_type() {
        #[derive(Serialize)]
        struct Invoice {
            id: u32,
            paid: bool,
        }
        let json = CloudEventBuilder::new("s", "t").data_json(&Invoice { id: 7, paid: true }).unwrap().build();
        assert_eq!(json.data, Some(Data::TextData(r#"{"id":7,"paid":true}"#.into())));
        assert_eq!(attr(&json, "datacontenttype"), Attr::CeString("application/json".into()));

        let text = CloudEventBuilder::new("s", "t").data_text("text/plain", "hi").build();
        assert_eq!(text.data, Some(Data::TextData("hi".into())));
        assert_eq!(attr(&text, "datacontenttype"), Attr::CeString("text/plain".into()));

        let binary = CloudEventBuilder::new("s", "t").data_binary("application/octet-stream", [1u8, 2]).build();
        assert_eq!(binary.data, Some(Data::BinaryData(vec![1, 2])));
        assert_eq!(attr(&binary, "datacontenttype"), Attr::CeString("application/octet-stream".into()));

        let any = prost_types::Any { type_url: "type.googleapis.com/x.Y".into(), value: vec![8, 1] };
        let proto = CloudEventBuilder::new("s", "t").data_proto(any.clone()).build();
        assert_eq!(proto.data, Some(Data::ProtoData(any)));
        assert_eq!(attr(&proto, "datacontenttype"), Attr::CeString("application/protobuf".into()));
    }

    #[test]
    fn later_data_replaces_earlier() {
        let event =
            CloudEventBuilder::new("s", "t").data_text("text/plain", "a").data_binary("image/png", vec![0]).build();
        assert_eq!(event.data, Some(Data::BinaryData(vec![0])));
        assert_eq!(attr(&event, "datacontenttype"), Attr::CeString("image/png".into()));
    }

    #[test]
    fn extension_values_map_to_attribute_cases() {
        let ts = Timestamp { seconds: 10, nanos: 0 };
        let cases: Vec<(AttributeValue, Attr)> = vec![
            (true.into(), Attr::CeBoolean(true)),
            (42i32.into(), Attr::CeInteger(42)),
            ((-7i8).into(), Attr::CeInteger(-7)),
            (u16::MAX.into(), Attr::CeInteger(65_535)),
            ("eu".into(), Attr::CeString("eu".into())),
            (String::from("us").into(), Attr::CeString("us".into())),
            (vec![1u8, 2].into(), Attr::CeBytes(vec![1, 2])),
            (b"ab".as_slice().into(), Attr::CeBytes(b"ab".to_vec())),
            (AttributeValue::Uri("https://x".into()), Attr::CeUri("https://x".into())),
            (AttributeValue::UriRef("/x".into()), Attr::CeUriRef("/x".into())),
            ((UNIX_EPOCH + Duration::from_secs(10)).into(), Attr::CeTimestamp(ts)),
            (ts.into(), Attr::CeTimestamp(ts)),
        ];
        for (value, expected) in cases {
            let event = CloudEventBuilder::new("s", "t").extension("ext", value.clone()).build();
            assert_eq!(attr(&event, "ext"), expected, "{value:?}");
            assert_eq!(AttributeValue::of(&event, "ext"), Some(value));
        }
    }

    #[test]
    fn trace_sets_distributed_tracing_extension() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let event = CloudEventBuilder::new("s", "t").trace(tp, "").build();
        assert_eq!(attr(&event, "traceparent"), Attr::CeString(tp.into()));
        assert!(!event.attributes.contains_key("tracestate"));
        let event = CloudEventBuilder::new("s", "t").trace(tp, "v=1").build();
        assert_eq!(attr(&event, "tracestate"), Attr::CeString("v=1".into()));
    }

    /// Attribute values and their canonical strings, shared by the tests of every implementation
    /// (see its "comment").
    const CANONICAL_FIXTURE: &str = include_str!("../../proto/testdata/canonical_attributes.json");

    /// Returns the value of a fixture case; a timestamp is parsed from its RFC 3339 text, and
    /// must be the `Timestamp` its `seconds` and `nanos` say.
    fn fixture_value(case: &serde_json::Value) -> AttributeValue {
        let value = &case["value"];
        let text = || value.as_str().unwrap().to_owned();
        match case["type"].as_str().unwrap() {
            "boolean" => AttributeValue::Boolean(value.as_bool().unwrap()),
            "integer" => AttributeValue::Integer(i32::try_from(value.as_i64().unwrap()).unwrap()),
            "string" => AttributeValue::String(text()),
            "bytes" => AttributeValue::Bytes(serde_json::from_value(value.clone()).unwrap()),
            "uri" => AttributeValue::Uri(text()),
            "uri_ref" => AttributeValue::UriRef(text()),
            "timestamp" => {
                let parsed: Timestamp = text().parse().unwrap();
                let seconds = case["seconds"].as_i64().unwrap();
                let nanos = i32::try_from(case["nanos"].as_i64().unwrap()).unwrap();
                assert_eq!(parsed, Timestamp { seconds, nanos }, "fixture: {}", case["name"]);
                AttributeValue::Timestamp(parsed)
            }
            other => panic!("fixture: unknown type {other}"),
        }
    }

    #[test]
    fn canonical_strings_match_the_shared_fixture() {
        let fixture: serde_json::Value = serde_json::from_str(CANONICAL_FIXTURE).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let value = fixture_value(case);
            assert_eq!(value.canonical_string(), case["canonical"].as_str().unwrap(), "{}", case["name"]);
        }
    }

    #[test]
    fn missing_attribute_is_none() {
        let event = CloudEventBuilder::new("s", "t").build();
        assert_eq!(AttributeValue::of(&event, "subject"), None);
        assert_eq!(AttributeValue::from_proto(&CloudEventAttributeValue { attr: None }), None);
    }
}
