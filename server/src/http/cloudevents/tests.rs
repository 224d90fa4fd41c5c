use http::{HeaderName, HeaderValue};

use super::*;

/// Header names and values.
type Pairs<'a> = &'a [(&'a str, &'a [u8])];

fn headers(pairs: Pairs<'_>) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_bytes(value).unwrap());
    }
    map
}

fn string(ce: &pb::CloudEvent, name: &str) -> Option<String> {
    match ce.attributes.get(name).and_then(|v| v.attr.clone()) {
        Some(Attr::CeString(s) | Attr::CeUri(s)) => Some(s),
        Some(other) => Some(format!("{other:?}")),
        None => None,
    }
}

#[test]
fn modes_follow_the_content_type_then_ce_headers() {
    let cases: [(Pairs<'_>, Result<Mode, &str>); 7] = [
        (&[("content-type", b"application/cloudevents+json; charset=utf-8")], Ok(Mode::Structured)),
        (&[("content-type", b"Application/CloudEvents-Batch+JSON")], Ok(Mode::Batched)),
        (&[("content-type", b"application/json"), ("ce-specversion", b"1.0")], Ok(Mode::Binary)),
        (&[("ce-id", b"1")], Ok(Mode::Binary)),
        (&[("content-type", b"application/cloudevents+json"), ("ce-id", b"1")], Ok(Mode::Structured)),
        (&[("content-type", b"application/cloudevents+avro")], Err("event format application/cloudevents+avro")),
        (&[("content-type", b"application/json")], Err("not a CloudEvent: content type \"application/json\"")),
    ];
    for (h, expected) in cases {
        match (mode(&headers(h)), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{h:?}"),
            (Err(got), Err(want)) => assert!(got.starts_with(want), "{h:?}: {got}"),
            (got, want) => panic!("{h:?}: {got:?}, expected {want:?}"),
        }
    }
}

#[test]
fn header_values_are_unquoted_and_percent_decoded() {
    let cases: [(&[u8], Option<&str>); 7] = [
        (b"plain", Some("plain")),
        (b"Euro%20%E2%82%AC%20%F0%9F%98%80", Some("Euro \u{20ac} \u{1f600}")),
        (b"lower%e2%82%ac", Some("lower\u{20ac}")),
        (b"\"quoted \\\"x\\\" 100%25\"", Some("quoted \"x\" 100%")),
        (b"%C0%A0", None),
        (b"bad%2", None),
        (b"bad%zz", None),
    ];
    for (value, expected) in cases {
        assert_eq!(header_text(value).as_deref(), expected, "{}", String::from_utf8_lossy(value));
    }
}

#[test]
fn binary_mode_maps_headers_content_type_and_body() {
    let h = headers(&[
        ("ce-specversion", b"1.0"),
        ("ce-id", b"a%201"),
        ("ce-source", b"/shop"),
        ("ce-type", b"order.created"),
        ("ce-subject", b"eu/1"),
        ("ce-time", b"2026-12-06T10:00:00.5+01:00"),
        ("ce-dataschema", b"https://acme.io/s"),
        ("ce-tenant", b"acme"),
        ("content-type", b"application/json"),
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    ]);
    let (ce, violations) = binary(&h, br#"{"n":1}"#);
    assert_eq!(violations, Violations::default());
    assert_eq!((ce.spec_version.as_str(), ce.id.as_str(), ce.source.as_str()), ("1.0", "a 1", "/shop"));
    assert_eq!(ce.r#type, "order.created");
    assert_eq!(ce.data, Some(pb::cloud_event::Data::TextData(r#"{"n":1}"#.into())));
    assert_eq!(string(&ce, "datacontenttype").as_deref(), Some("application/json"));
    assert_eq!(string(&ce, "subject").as_deref(), Some("eu/1"));
    assert_eq!(string(&ce, "dataschema").as_deref(), Some("https://acme.io/s"));
    assert_eq!(string(&ce, "tenant").as_deref(), Some("acme"));
    let time = prost_types::Timestamp { seconds: 1_796_547_600, nanos: 500_000_000 };
    assert_eq!(ce.attributes["time"].attr, Some(Attr::CeTimestamp(time)));
    assert_eq!(ce.attributes.len(), 5, "traceparent is the call's, not an attribute");

    let (ce, _) = binary(&headers(&[("ce-id", b"1"), ("content-type", b"application/octet-stream")]), &[0, 159]);
    assert_eq!(ce.data, Some(pb::cloud_event::Data::BinaryData(vec![0, 159])));
    let (ce, _) = binary(&headers(&[("ce-id", b"1"), ("content-type", b"text/plain")]), &[0xff]);
    assert_eq!(ce.data, Some(pb::cloud_event::Data::BinaryData(vec![0xff])), "text that is not UTF-8");
    let (ce, _) = binary(&headers(&[("ce-id", b"1")]), b"");
    assert_eq!((ce.data, ce.attributes.len()), (None, 0));
}

#[test]
fn binary_mode_reports_what_does_not_convert_under_grpc_paths() {
    let h = headers(&[
        ("ce-time", b"yesterday"),
        ("ce-id", b"%FF"),
        ("ce-datacontenttype", b"text/plain"),
        ("ce-specversion", b"%C0%A0"),
    ]);
    let (_, violations) = binary(&h, b"");
    let mut fields = violations.fields();
    fields.sort();
    assert_eq!(fields, ["attributes[datacontenttype]", "attributes[time]", "id", "spec_version"]);
    let time = violations.invalid.iter().find(|v| v.field == "attributes[time]").unwrap();
    assert_eq!(time.description, "must be an RFC 3339 timestamp");
}

#[test]
fn the_json_format_maps_attributes_and_data() {
    let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","subject":"x","time":"2026-12-06T09:00:00Z",
        "dataschema":"https://acme.io/s","count":3,"vip":true,"note":"n","nothing":null,"data":{"b": 2, "a": [1]}}"#;
    let (ce, violations) = structured(body).unwrap();
    assert_eq!(violations, Violations::default());
    assert_eq!(
        (ce.spec_version.as_str(), ce.id.as_str(), ce.source.as_str(), ce.r#type.as_str()),
        ("1.0", "1", "/s", "t")
    );
    assert_eq!(ce.attributes["count"].attr, Some(Attr::CeInteger(3)));
    assert_eq!(ce.attributes["vip"].attr, Some(Attr::CeBoolean(true)));
    assert_eq!(string(&ce, "note").as_deref(), Some("n"));
    assert!(!ce.attributes.contains_key("nothing"), "null is absent");
    assert_eq!(ce.data, Some(pb::cloud_event::Data::TextData(r#"{"b": 2, "a": [1]}"#.into())), "the JSON as sent");

    let data = |members: &str| structured(format!("{{\"id\":\"1\",{members}}}").as_bytes()).unwrap().0.data;
    let text = |s: &str| Some(pb::cloud_event::Data::TextData(s.into()));
    assert_eq!(data(r#""datacontenttype":"text/plain","data":"hi""#), text("hi"));
    assert_eq!(data(r#""datacontenttype":"application/json","data":"hi""#), text("\"hi\""));
    assert_eq!(data(r#""data":"hi""#), text("\"hi\""), "no content type is JSON");
    assert_eq!(data(r#""data_base64":"AJ8=""#), Some(pb::cloud_event::Data::BinaryData(vec![0, 159])));
    assert_eq!(data(r#""data":null"#), None);
}

#[test]
fn the_json_format_reports_what_does_not_convert_under_grpc_paths() {
    let body =
        br#"{"specversion":1,"id":"1","time":"noon","big":4294967296,"list":[1],"data":"x","data_base64":"AA=="}"#;
    let (_, violations) = structured(body).unwrap();
    let found: Vec<(&str, &str)> =
        violations.invalid.iter().map(|v| (v.field.as_str(), v.description.as_str())).collect();
    assert_eq!(
        found,
        [
            ("attributes[big]", "an integer must be from -2^31 to 2^31-1"),
            ("attributes[list]", "must be a string, an integer or a boolean"),
            ("spec_version", "must be a JSON string"),
            ("attributes[time]", "must be an RFC 3339 timestamp"),
            ("data", "set data or data_base64, not both"),
        ]
    );
    let (_, violations) = structured(br#"{"id":"1","data_base64":"%%%"}"#).unwrap();
    assert_eq!(violations.fields(), ["data"]);
    assert_eq!(structured(b"[1]").unwrap_err().fields(), ["events[0]"]);
    assert_eq!(structured(b"{").unwrap_err().fields(), ["events[0]"]);
}

#[test]
fn batches_are_arrays_of_json_events() {
    let events = batched(br#"[{"id":"1"},{"id":"2","data":[1]}]"#).unwrap();
    assert_eq!(events.iter().map(|(ce, _)| ce.id.as_str()).collect::<Vec<_>>(), ["1", "2"]);
    assert!(batched(b"[]").unwrap().is_empty());
    assert_eq!(batched(br#"[{"id":"1"},2,"x"]"#).unwrap_err().fields(), ["events[1]", "events[2]"]);
    assert_eq!(batched(br#"{"id":"1"}"#).unwrap_err().fields(), ["events"]);
}
