use eventbus_client::pb::cloud_event::Data as PbData;

use super::*;

fn limits() -> Limits {
    Limits { max_events_per_publish: 3, max_attributes: 4, max_data_bytes: 8, ..Limits::default() }
}

fn event() -> pb::CloudEvent {
    pb::CloudEvent {
        id: "1".into(),
        source: "/tests".into(),
        spec_version: "1.0".into(),
        r#type: "a".into(),
        ..Default::default()
    }
}

fn value(attr: Attr) -> CloudEventAttributeValue {
    CloudEventAttributeValue { attr: Some(attr) }
}

fn with_attr(name: &str, attr: Attr) -> pb::CloudEvent {
    let mut e = event();
    e.attributes.insert(name.into(), value(attr));
    e
}

fn ts(seconds: i64) -> Attr {
    Attr::CeTimestamp(prost_types::Timestamp { seconds, nanos: 0 })
}

fn publish(events: Vec<pb::CloudEvent>) -> Result<Publish, Violations> {
    Publish::from_proto(pb::PublishRequest { namespace: "ns".into(), events }, &limits())
}

/// The fields named when publishing `e` alone: none when it is accepted.
fn fields(e: pb::CloudEvent) -> (Vec<String>, Vec<String>) {
    match publish(vec![e]) {
        Ok(_) => (vec![], vec![]),
        Err(v) => {
            (v.invalid.iter().map(|f| f.field.clone()).collect(), v.exceeded.iter().map(|f| f.field.clone()).collect())
        }
    }
}

#[test]
fn event_rules_at_and_past_each_boundary() {
    let max_time = crate::limits::MAX_TIMESTAMP_SECONDS;
    let min_time = crate::limits::MIN_TIMESTAMP_SECONDS;
    let long_name = [format!("events[0].attributes[{}]", "x".repeat(65))];
    let long_name: Vec<&str> = long_name.iter().map(String::as_str).collect();
    let cases: Vec<(&str, pb::CloudEvent, &[&str])> = vec![
        ("valid", event(), &[]),
        ("id at 256 bytes", pb::CloudEvent { id: "i".repeat(256), ..event() }, &[]),
        ("id at 257 bytes", pb::CloudEvent { id: "i".repeat(257), ..event() }, &["events[0].id"]),
        ("empty id", pb::CloudEvent { id: String::new(), ..event() }, &["events[0].id"]),
        ("source at 1024 bytes", pb::CloudEvent { source: "s".repeat(1024), ..event() }, &[]),
        ("source at 1025 bytes", pb::CloudEvent { source: "s".repeat(1025), ..event() }, &["events[0].source"]),
        ("source not a URI reference", pb::CloudEvent { source: "a b".into(), ..event() }, &["events[0].source"]),
        ("empty source", pb::CloudEvent { source: String::new(), ..event() }, &["events[0].source"]),
        ("type at 256 bytes", pb::CloudEvent { r#type: "t".repeat(256), ..event() }, &[]),
        ("type at 257 bytes", pb::CloudEvent { r#type: "t".repeat(257), ..event() }, &["events[0].type"]),
        ("empty type", pb::CloudEvent { r#type: String::new(), ..event() }, &["events[0].type"]),
        ("spec version 0.3", pb::CloudEvent { spec_version: "0.3".into(), ..event() }, &["events[0].spec_version"]),
        ("name at 64", with_attr(&"x".repeat(64), Attr::CeInteger(1)), &[]),
        ("name at 65", with_attr(&"x".repeat(65), Attr::CeInteger(1)), &long_name),
        ("upper-case name", with_attr("Orderid", Attr::CeInteger(1)), &["events[0].attributes[Orderid]"]),
        ("reserved id", with_attr("id", Attr::CeString("x".into())), &["events[0].attributes[id]"]),
        ("reserved data", with_attr("data", Attr::CeString("x".into())), &["events[0].attributes[data]"]),
        ("subject as int", with_attr("subject", Attr::CeInteger(1)), &["events[0].attributes[subject]"]),
        ("time as string", with_attr("time", Attr::CeString("now".into())), &["events[0].attributes[time]"]),
        (
            "dataschema as uri_ref",
            with_attr("dataschema", Attr::CeUriRef("/s".into())),
            &["events[0].attributes[dataschema]"],
        ),
        (
            "traceparent as bytes",
            with_attr("traceparent", Attr::CeBytes(vec![1])),
            &["events[0].attributes[traceparent]"],
        ),
        ("uri absolute", with_attr("link", Attr::CeUri("https://acme.io/a".into())), &[]),
        ("uri relative", with_attr("link", Attr::CeUri("/a".into())), &["events[0].attributes[link]"]),
        ("uri_ref relative", with_attr("link", Attr::CeUriRef("../a?b#c".into())), &[]),
        ("uri_ref with a space", with_attr("link", Attr::CeUriRef("a b".into())), &["events[0].attributes[link]"]),
        (
            "uri_ref unclosed literal",
            with_attr("link", Attr::CeUriRef("http://[::1".into())),
            &["events[0].attributes[link]"],
        ),
        ("time in year 9999", with_attr("time", ts(max_time)), &[]),
        ("time in year 10000", with_attr("time", ts(max_time + 1)), &["events[0].attributes[time]"]),
        ("time in year 1", with_attr("time", ts(min_time)), &[]),
        ("time before year 1", with_attr("time", ts(min_time - 1)), &["events[0].attributes[time]"]),
        ("extension timestamp in year 10000", with_attr("due", ts(max_time + 1)), &["events[0].attributes[due]"]),
        (
            "no value",
            {
                let mut e = event();
                e.attributes.insert("x".into(), CloudEventAttributeValue { attr: None });
                e
            },
            &["events[0].attributes[x]"],
        ),
    ];
    for (what, e, want) in cases {
        let (invalid, exceeded) = fields(e);
        assert_eq!(invalid, want, "{what}");
        assert!(exceeded.is_empty(), "{what}");
    }
}

#[test]
fn server_limits_are_exceeded_not_invalid() {
    let mut at = event();
    for name in ["a", "b", "c", "d"] {
        at.attributes.insert(name.into(), value(Attr::CeInteger(1)));
    }
    assert_eq!(fields(at.clone()), (vec![], vec![]));
    at.attributes.insert("e".into(), value(Attr::CeInteger(1)));
    assert_eq!(fields(at), (vec![], vec!["events[0].attributes".to_string()]));
    let data = |n| pb::CloudEvent { data: Some(PbData::BinaryData(vec![0; n])), ..event() };
    assert_eq!(fields(data(8)), (vec![], vec![]));
    assert_eq!(fields(data(9)), (vec![], vec!["events[0].data".to_string()]));
    let both = pb::CloudEvent { id: String::new(), ..data(9) };
    assert_eq!(fields(both), (vec!["events[0].id".to_string()], vec!["events[0].data".to_string()]));
}

#[test]
fn batch_rules() {
    assert_eq!(publish(vec![event(); 3]).map(|p| p.events.len()), Ok(3));
    assert_eq!(publish(vec![event(); 4]).unwrap_err().fields(), ["events"]);
    assert_eq!(publish(vec![]).unwrap_err().fields(), ["events"]);
    let bad = pb::CloudEvent { id: String::new(), ..event() };
    let req = pb::PublishRequest { namespace: String::new(), events: vec![event(), bad.clone(), bad] };
    assert_eq!(
        Publish::from_proto(req, &limits()).unwrap_err().fields(),
        ["namespace", "events[1].id", "events[2].id"]
    );
}

#[test]
fn violations_of_attributes_come_in_name_order() {
    let mut e = event();
    for name in ["z", "m", "a", "k"] {
        e.attributes.insert(name.into(), CloudEventAttributeValue { attr: None });
    }
    let want =
        ["events[0].attributes[a]", "events[0].attributes[k]", "events[0].attributes[m]", "events[0].attributes[z]"];
    assert_eq!(fields(e).0, want);
}

#[test]
fn attributes_land_in_their_places() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut e = with_attr("subject", Attr::CeString("s".into()));
    e.attributes.insert("traceparent".into(), value(Attr::CeString(traceparent.into())));
    e.attributes.insert("orderid".into(), value(Attr::CeInteger(7)));
    let p = publish(vec![e, with_attr("traceparent", Attr::CeString("junk".into()))]).unwrap();
    let (first, second) = (&p.events[0], &p.events[1]);
    assert_eq!(first.subject.as_deref(), Some("s"));
    assert_eq!(first.trace.traceparent, traceparent);
    assert_eq!(first.extensions.keys().collect::<Vec<_>>(), ["orderid", "traceparent"]);
    assert!(second.trace.is_empty(), "an invalid traceparent of its own leaves the call's to the handler");
}

fn get(key: Option<pb::get_event_request::Key>) -> Result<GetEvent, Violations> {
    GetEvent::from_proto(pb::GetEventRequest { namespace: "ns".into(), key }, &limits())
}

#[test]
fn get_event_names_the_exact_subfield() {
    use pb::get_event_request::Key;
    let key = |source: &str, id: &str| Some(Key::SourceId(pb::EventKey { source: source.into(), id: id.into() }));
    let cases: Vec<(Option<Key>, &[&str])> = vec![
        (Some(Key::Sequence(1)), &[]),
        (Some(Key::Sequence(0)), &["sequence"]),
        (key("/s", "1"), &[]),
        (key("", "1"), &["source_id.source"]),
        (key("/s", ""), &["source_id.id"]),
        (key("", ""), &["source_id.source", "source_id.id"]),
        (key(&"s".repeat(1024), &"i".repeat(256)), &[]),
        (key(&"s".repeat(1025), &"i".repeat(257)), &["source_id.source", "source_id.id"]),
        (None, &["key"]),
    ];
    for (key, want) in cases {
        let got = get(key.clone()).err().unwrap_or_default();
        assert_eq!(got.fields(), want, "{key:?}");
    }
}

#[test]
fn list_events_time_range() {
    let t = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let list = |start_time, end_time, page_size| {
        let req =
            pb::ListEventsRequest { namespace: "ns".into(), start_time, end_time, page_size, ..Default::default() };
        ListEvents::from_proto(req, &limits()).err().unwrap_or_default().fields().join(",")
    };
    assert_eq!(list(t(10), t(11), 0), "");
    assert_eq!(list(t(10), t(10), 0), "end_time");
    assert_eq!(list(t(11), t(10), 0), "end_time");
    assert_eq!(list(t(10), None, 0), "");
    assert_eq!(list(None, t(10), 0), "");
    assert_eq!(list(t(crate::limits::MAX_TIMESTAMP_SECONDS + 1), None, -1), "page_size,start_time");
}
